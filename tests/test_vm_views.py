"""The virtual-memory views against real files, with one parser for the kernel's text and the
model's: /proc/PID/maps (fs/proc/task_mmu.c show_map_vma), the PageTables and Vmalloc* lines
of /proc/meminfo (fs/proc/meminfo.c), zoneinfo's nr_page_table_pages (mm/vmstat.c), and
NR_PAGETABLE itself: which page-table pages Linux 6.12 counts
(spec.pgtable_state.counted_in_nr_pagetable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from impl.fork import Processes
from impl.machine import MachineConfig
from impl.mmap import MAPS_PAD, MapsLine, parse_maps, render_maps, render_maps_line
from impl.page_alloc import PageAllocator
from impl.pgtable import PTE_LEVEL, PUD_LEVEL, PageTable
from impl.procfs import (
    ProcFormatError,
    parse_meminfo,
    parse_vmallocinfo,
    parse_zoneinfo,
    render_meminfo,
    render_vmallocinfo,
)
from impl.views import zoneinfo
from impl.vmalloc import Vmalloc
from spec.errors import VmallocError
from spec.layout import PAGE_SIZE
from spec.pgtable_state import counted_in_nr_pagetable

FIX = Path(__file__).parent / "fixtures"
HOST = FIX / "host-6.18.44-fc-v1045"
CAPTURES = sorted(p for p in (FIX / "linux-6.12").iterdir() if (p / "meminfo").exists())
P = PAGE_SIZE


def _system() -> tuple[PageAllocator, Vmalloc, Processes]:
    pa = PageAllocator(MachineConfig.flat(4096))
    k = PageTable(pa, user=False)
    return pa, Vmalloc(pa, pgtable=k), Processes(pa, kernel=k)


# --- /proc/PID/maps ---------------------------------------------------------------------------

def _real_maps() -> list[tuple[str, str]]:
    out = [("fixture", (HOST / "maps").read_text())]
    live = Path("/proc/self/maps")
    if live.exists():  # not Linux: the fixture alone
        out.append(("live", live.read_text()))
    return out


@pytest.mark.parametrize("which", [w for w, _ in _real_maps()])
def test_real_maps_parse_and_render_byte_for_byte(which: str) -> None:
    """show_map_vma's layout, from real files: 8-digit minimum hex, a trailing space after
    the inode, and a name padded to column 73 (seq_pad after seq_setwidth(72)): also past
    it, as the 16-digit [vsyscall] line shows."""
    text = dict(_real_maps())[which]
    lines = parse_maps(text)
    assert render_maps(lines) == text
    assert any(v.name is None for v in lines)  # an anonymous mapping: no padding at all
    assert any(v.name == "[stack]" for v in lines)
    if which == "fixture":
        vsys = next(v for v in lines if v.name == "[vsyscall]")
        line = render_maps_line(vsys)
        assert line.index("[vsyscall]") == MAPS_PAD + 1 and vsys.start > 0xFFFF_FFFF_FFFF


def test_model_maps_lines_are_real_lines() -> None:
    """The model's /proc/PID/maps parses with the same parser, and an anonymous private
    mapping prints exactly as the real anonymous line of the host's file does."""
    real = parse_maps((HOST / "maps").read_text())
    anon = next(v for v in real if v.name is None and v.perms == "rw-p")
    _, _, ps = _system()
    pid = ps.spawn()
    assert ps.mmap(pid, anon.end - anon.start, addr=anon.start) == anon.start  # a free hint
    mine = parse_maps(ps.maps(pid))
    assert render_maps(mine) == ps.maps(pid)
    assert render_maps_line(anon) in ps.maps(pid).splitlines(keepends=True)
    buf = ps.alloc_shared_buffer(1)
    assert buf is not None
    ps.mmap_buffer(pid, buf)
    named = [v for v in parse_maps(ps.maps(pid)) if v.name is not None]
    assert [v.name for v in named] == [f"/dev/shared_buffer{buf}"] and named[0].perms == "rw-s"


def test_maps_parser_is_strict() -> None:
    good = "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n"
    assert parse_maps(good) == [MapsLine(0x7F0000000000, 0x7F0000001000, "rw-p")]
    for bad in ("7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n",  # no trailing space
                "7f0000000000-7f0000001000 rw-p 00000000 00:00 0  [heap]\n",  # not padded
                "7f0000000000-7f0000001000 rwxq 00000000 00:00 0 \n"):
        with pytest.raises(ValueError):
            parse_maps(bad)


# --- /proc/meminfo: PageTables, SecPageTables, Vmalloc* ------------------------------------

@pytest.mark.parametrize("meminfo", [*CAPTURES, HOST], ids=lambda p: p.name)
def test_meminfo_lines_in_the_kernels_order(meminfo: Path) -> None:
    """The model's lines are real meminfo lines: the same names in the same relative order
    as in every real file, rendered by the renderer that re-prints the real file."""
    text = (meminfo / "meminfo").read_text()
    real = parse_meminfo(text)
    assert render_meminfo(real) == text
    names = [n for n, _, _ in real]
    _, v, _ = _system()
    mine = parse_meminfo(v.meminfo())
    assert render_meminfo(mine) == v.meminfo()
    idx = [names.index(n) for n, _, _ in mine]
    assert idx == sorted(idx) and [n for n, _, _ in mine] == [
        "PageTables", "SecPageTables", "VmallocTotal", "VmallocUsed", "VmallocChunk"]
    assert all(kb for _, _, kb in mine)


def test_pagetables_counts_what_6_12_counts() -> None:
    """NR_PAGETABLE: a process's PUD, PMD and PTE tables and init_mm's PUD and PMD tables,
    never a PGD nor init_mm's PTE tables (6.12's pte_alloc_one_kernel runs no
    pagetable_pte_ctor). PageTables in meminfo and zoneinfo's nr_page_table_pages show it."""
    assert [counted_in_nr_pagetable(lv, True) for lv in range(4)] == [False, True, True, True]
    assert [counted_in_nr_pagetable(lv, False) for lv in range(4)] == [False, True, True, False]
    pa, v, ps = _system()
    a = v.vmalloc(P)
    assert a is not None
    k = v.pgtable
    assert sorted(k.levels[p] for p in k.table_pfns()) == [PUD_LEVEL, 2, PTE_LEVEL]
    assert pa.nr_page_table_pages == [2]  # the PUD and the PMD; not the PTE table
    pid = ps.spawn()
    va = ps.mmap(pid, P)
    ps.fault(pid, va)
    assert pa.nr_page_table_pages == [5]  # + the process's PUD, PMD, PTE (not its PGD)
    assert ("PageTables", 20, True) in parse_meminfo(v.meminfo())
    node0 = next(z for z in parse_zoneinfo(zoneinfo(pa)) if z.per_node is not None)
    assert dict(node0.per_node or [])["nr_page_table_pages"] == 5
    ps.exit(pid)
    assert pa.nr_page_table_pages == [2]
    assert ("PageTables", 8, True) in parse_meminfo(v.meminfo())


# --- /proc/vmallocinfo of this machine ---------------------------------------------------------

def test_host_vmallocinfo_parses_and_renders_byte_for_byte() -> None:
    """The sandbox's own file (6.18, %pK hashed: kptr_restrict 0) goes through the parser the
    model's view is checked with; its sizes are page multiples, its unpurged areas last."""
    text = (HOST / "vmallocinfo").read_text()
    lines = parse_vmallocinfo(text)
    assert render_vmallocinfo(lines) == text
    assert all(x.size % P == 0 for x in lines)
    kinds = [x.kind for x in lines]
    assert "unpurged" in kinds and kinds == sorted(kinds, key=lambda k: k == "unpurged")
    assert any(x.pages and "vmalloc" in x.flags and x.numa for x in lines)


def test_vmalloc_to_pfn_range_is_is_vmalloc_addr() -> None:
    """vmalloc_to_pfn's inline range check (its hot path) agrees with the proved
    spec.layout.is_vmalloc_addr (via Vmalloc.is_vmalloc_addr) at every edge: the range's last
    byte, the kernel's VMALLOC_END, is not a vmalloc address (VM_BUG_ON in the kernel)."""
    _, v, _ = _system()
    for a in (v.vmalloc_start - 1, v.vmalloc_start, v.vmalloc_start + 5 * P + 7,
              v.kernel_vmalloc_end - 1, v.kernel_vmalloc_end, v.vmalloc_end, 0x400000):
        try:
            v.vmalloc_to_pfn(a)
            accepted = True
        except VmallocError:
            accepted = False
        assert accepted == v.is_vmalloc_addr(a), hex(a)


@pytest.mark.parametrize("line", [
    "garbage line",
    "zz-yy r--p 00000000 00:00 0",
    "00400000-00401000 r--p 00000000 00:00 0 [heap]",  # the name not padded to its column
])
def test_maps_parser_refuses_what_show_map_vma_cannot_print(line: str) -> None:
    """The same typed error as every other view parser, naming the line."""
    with pytest.raises(ProcFormatError, match="maps line 1"):
        parse_maps(line + "\n")
