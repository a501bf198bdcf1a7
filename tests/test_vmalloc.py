"""vmalloc (impl/vmalloc.py, mm/vmalloc.c): the range allocator, pages and page tables, lazy
purge, the views against real captures, bad input with full state snapshots."""

from __future__ import annotations

import dataclasses
import itertools
import random
from pathlib import Path
from typing import Any

import pytest

from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from impl.pgtable import PAGE_KERNEL, pfn_pte
from impl.procfs import parse_meminfo, parse_vmallocinfo, render_vmallocinfo
from impl.slab_common import SlabAllocator
from impl.vmalloc import (
    OWNER_VMALLOC,
    FreeVmapTree,
    Vmalloc,
    abstract_vm,
    is_within_this_va,
    lazy_max_pages,
)
from spec.context import Context
from spec.errors import (
    BadNodeError,
    SleepInAtomicError,
    VfreeDirectMapError,
    VfreeDoubleError,
    VfreeError,
    VfreeNotAreaStartError,
    VmallocError,
)
from spec.gfp import __GFP_HIGHMEM, __GFP_NOWARN, GFP_KERNEL
from spec.layout import PAGE_SIZE, VMALLOC_START
from spec.vm_state import vm_violations
from tests.conftest import snapshot

FIXTURES = Path(__file__).parent / "fixtures" / "linux-6.12"
P = PAGE_SIZE


def full(v: Vmalloc) -> tuple[Any, ...]:
    """Every bit of state: the page allocator's full snapshot, vmalloc's and every page-table
    entry."""
    return (snapshot(v.pages), v.snapshot(), sorted(v.pgtable.entries()),
            dict(v._lazy_vn), v.free.count)


def without_effects(st: tuple[Any, ...]) -> tuple[Any, ...]:
    pa = {k: val for k, val in st[0].items() if k not in ("effects", "kswapd_awake")}
    return (pa, *st[1:])


def ok(v: Vmalloc) -> None:
    assert vm_violations(abstract_vm(v)) == []
    assert v.free.check() == []


# --- the range allocator ------------------------------------------------------------------------
def test_first_area_guard_page_and_mapping() -> None:
    v = Vmalloc()
    a = v.vmalloc(8192)
    b = v.vmalloc(100)
    assert a == VMALLOC_START
    assert b == a + 3 * P  # two pages and the guard page
    vm = v.find_vm_area(a)
    assert vm is not None and vm.size == 3 * P and vm.nr_pages == 2 and vm.mapped_size == 2 * P
    for i, pfn in enumerate(vm.pages):
        assert v.pages.allocated[pfn][0] == 0 and v.pages.allocated[pfn][2] == OWNER_VMALLOC
        assert v.pgtable.lookup(a + i * P) == pfn_pte(pfn, PAGE_KERNEL)
        assert v.vmalloc_to_pfn(a + i * P + 123) == pfn
        assert v.vmalloc_to_page(a + i * P) == pfn
    assert v.vmalloc_to_pfn(a + 2 * P) is None  # the guard page is never mapped
    assert v.find_vm_area(a + 2 * P) is vm  # but belongs to the area
    assert v.find_vm_area(b + 5 * P) is None
    assert v.is_vmalloc_addr(a) and not v.is_vmalloc_addr(v.pages.page_offset)
    assert v.vmalloc_nr_pages() == 3
    # PUD, PMD and PTE table, on demand; NR_PAGETABLE counts the PUD and PMD only (6.12's
    # pte_alloc_one_kernel runs no pagetable_pte_ctor)
    assert len(v.pgtable.table_pfns()) == 3 and sum(v.pages.nr_page_table_pages) == 2
    ok(v)


def test_pages_are_scattered_one_by_one() -> None:
    pa = PageAllocator(MachineConfig.flat(4096))
    pfns = [pa.alloc_pages_node(-1, GFP_KERNEL, 0) for _ in range(16)]
    for p in pfns[::2]:
        assert p is not None
        pa.free_pages_pfn(p, 0)
    v = Vmalloc(pa)
    a = v.vmalloc(8 * P)
    assert a is not None
    got = [v.vmalloc_to_pfn(a + i * P) for i in range(8)]
    # order 0 pages from the buddy lists: not physically contiguous
    assert any(y != x + 1 for x, y in itertools.pairwise(got))  # type: ignore[operator]
    assert len(set(got)) == 8
    ok(v)


def test_vmalloc_node_takes_pages_from_that_node() -> None:
    v = Vmalloc(PageAllocator(MachineConfig.default()))
    a = v.vmalloc_node(10 * P, 1, cpu=0)
    assert a is not None
    assert {v.nid_of(p) for p in v.busy[a].pages} == {1}
    assert "N1=10" in v.vmallocinfo()
    with pytest.raises(BadNodeError):
        v.vmalloc_node(P, 5)


def test_lowest_fit_clip_types_and_lazy_reuse() -> None:
    v = Vmalloc(PageAllocator(MachineConfig.flat(8192)))
    a = v.vmalloc(P)  # 2 pages with the guard
    b = v.vmalloc(4 * P)  # 5 pages
    c = v.vmalloc(P)
    assert (a, b, c) == (VMALLOC_START, VMALLOC_START + 2 * P, VMALLOC_START + 7 * P)
    assert a is not None and b is not None and c is not None
    v.vfree(b)
    assert v.lazy == {b: b + 5 * P} and v.vmap_lazy_nr == 5
    d = v.vmalloc(P)  # the lazy area is not reusable before the purge
    assert d == c + 2 * P
    assert v.purge_vmap_area_lazy() == 1
    e = v.vmalloc(P)  # left-edge fit in B's hole
    assert e == b
    f = v.vmalloc(2 * P)  # exactly the rest of the hole: full fit
    assert f == b + 2 * P
    assert [s for s, _ in v.free.blocks()] == [d + 2 * P]  # one free block left: the tail
    ok(v)


def test_no_edge_fit_with_alignment() -> None:
    v = Vmalloc(PageAllocator(MachineConfig.flat(8192)))
    a = v.vmalloc(P)
    got = v.vmalloc_node_range(P, 16 * P, v.vmalloc_start, v.kernel_vmalloc_end, GFP_KERNEL)
    assert got == VMALLOC_START + 16 * P  # aligned: a left remainder [2P, 16P) stays free
    assert next(iter(v.free.blocks())) == (VMALLOC_START + 2 * P, VMALLOC_START + 16 * P)
    assert a is not None
    ok(v)


def test_lazy_purge_when_vmap_lazy_nr_exceeds_lazy_max_pages() -> None:
    v = Vmalloc(PageAllocator(MachineConfig.flat(8192)))  # one CPU: fls(1) * 8192 pages
    assert v.lazy_max == lazy_max_pages(1) == 8192
    n = 0
    while True:
        a = v.vmalloc(255 * P)  # 256 pages of address space each
        assert a is not None
        v.vfree(a)
        n += 256
        if n > 8192:
            break
        assert v.vmap_lazy_nr == n and len(v.lazy) == n // 256
    assert v.lazy == {} and v.vmap_lazy_nr == 0  # the drain work ran
    assert list(v.free.blocks()) == [(v.vmalloc_start, v.vmalloc_end)]
    ok(v)


def test_page_array_is_vmalloced_above_512_pages() -> None:
    v = Vmalloc(PageAllocator(MachineConfig.flat(1 << 16)))
    small = v.vmalloc(512 * P)
    big = v.vmalloc(513 * P)
    assert small is not None and big is not None
    assert v.busy[small].pages_area is None
    arr = v.busy[big].pages_area
    assert arr is not None and arr.nr_pages == 2 and arr.pages_of == big  # 513 * 8 bytes
    assert arr.addr == big + 514 * P  # allocated after the area, as the kernel does
    lines = v.vmallocinfo().splitlines()
    assert lines[1].endswith("pages=513 vmalloc vpages N0=513")
    with pytest.raises(VfreeError):
        v.vfree(arr.addr)  # only kvfree'd with its owner
    v.vfree(big)
    assert arr.addr in v.lazy and big in v.lazy and v.vmalloc_nr_pages() == 512
    ok(v)


def test_tree_matches_a_linear_first_fit() -> None:
    """The treap's lowest match equals a linear scan of the free list (the kernel's
    find_vmap_lowest_linear_match debug check) over random allocations and frees."""
    rnd = random.Random(7)
    start, end = 1 << 40, (1 << 40) + (1 << 30)
    for _ in range(3):
        tree = FreeVmapTree(start, end)
        ref = [(start, end)]
        live: list[tuple[int, int]] = []
        for _ in range(400):
            if live and rnd.random() < 0.4:
                s, e = live.pop(rnd.randrange(len(live)))
                v = Vmalloc.__new__(Vmalloc)
                v.free = tree
                v._free_vmap_area(s, e)
                ref.append((s, e))
                ref.sort()
                merged: list[tuple[int, int]] = []
                for a, b in ref:
                    if merged and merged[-1][1] == a:
                        merged[-1] = (merged[-1][0], b)
                    else:
                        merged.append((a, b))
                ref = merged
            else:
                size = rnd.choice([1, 2, 3, 5, 17, 64]) * P
                align = rnd.choice([P, P, P, 4 * P])
                length = size + align - 1 if align > P else size
                # the block holding vstart if the request fits in it, else the first block
                # above vstart of at least the search length (find_vmap_lowest_match)
                lin = next((a for a, b in ref
                            if (a <= start < b and is_within_this_va(a, b, size, align, start))
                            or (a > start and b - a >= length)), None)
                node = tree.lowest_match(size, align, start, length)
                assert (node.start if node else None) == lin
                if node is None:
                    continue
                v = Vmalloc.__new__(Vmalloc)
                v.free = tree
                nva = v._alloc_vmap_area(size, align, start, end - 1)
                live.append((nva, nva + size))
                i = next(k for k, (a, b) in enumerate(ref) if a == lin)
                a, b = ref.pop(i)
                ref[i:i] = [r for r in ((a, nva), (nva + size, b)) if r[1] > r[0]]
            assert list(tree.blocks()) == ref
            assert tree.check() == []


# --- failures and bad input, with full snapshots ------------------------------------------------
def test_size_zero_is_null_with_a_warning() -> None:
    v = Vmalloc()
    before = full(v)
    assert v.vmalloc(0) is None
    assert without_effects(full(v)) == without_effects(before)
    assert [e.kind for e in v.pages.drain_effects()] == ["warn"]
    assert v.vmalloc(0, ctx=Context.HARDIRQ) is None  # WARN_ON_ONCE(!size) comes first


def test_beyond_the_range_is_null_and_changes_nothing() -> None:
    m = dataclasses.replace(MachineConfig.flat(4096), vmalloc_end=VMALLOC_START + 64 * P)
    v = Vmalloc(PageAllocator(m))
    assert v.vmalloc(32 * P) is not None  # 33 pages
    before = full(v)
    # 31 more pages would end exactly at the range's end: va_alloc() wants nva + size <= the
    # kernel's VMALLOC_END, which is end - 1, so the last page is never handed out
    assert v.vmalloc(30 * P) is None
    eff = v.pages.drain_effects()
    assert any("Address range restricted" in e.detail for e in eff)
    assert any("vm_struct allocation failed" in e.detail for e in eff)
    assert full(v) == before
    assert v.vmalloc(29 * P) is not None  # 30 pages: up to the last page, which stays unused
    ok(v)


def test_full_range_purges_lazy_areas_then_retries() -> None:
    m = dataclasses.replace(MachineConfig.flat(4096), vmalloc_end=VMALLOC_START + 64 * P)
    v = Vmalloc(PageAllocator(m))
    a = v.vmalloc(40 * P)
    assert a is not None
    v.vfree(a)
    assert v.lazy
    assert v.vmalloc(40 * P) == a  # reclaim_and_purge_vmap_areas() made room
    assert not v.lazy
    ok(v)


def test_exceeding_ram_is_null() -> None:
    v = Vmalloc(PageAllocator(MachineConfig.flat(1024)))
    before = full(v)
    assert v.vmalloc(1025 * P) is None
    assert "exceeds total pages" in v.pages.drain_effects()[0].detail
    assert v.vmalloc(1025 * P, gfp=GFP_KERNEL | __GFP_NOWARN) is None
    assert v.pages.drain_effects() == []
    assert full(v) == before


@pytest.mark.parametrize("ctx", [Context.SOFTIRQ, Context.HARDIRQ, Context.PREEMPT_DISABLED,
                                 Context.SPINLOCK])
def test_atomic_context_is_refused_with_state_unchanged(ctx: Context) -> None:
    v = Vmalloc(PageAllocator(MachineConfig.default()))
    v.vmalloc(3 * P)
    before = full(v)
    with pytest.raises(SleepInAtomicError, match="sleeping function called from invalid"):
        v.vmalloc(P, ctx=ctx)
    with pytest.raises(SleepInAtomicError):
        v.vzalloc(P, ctx=ctx, cpu=4)
    assert full(v) == before
    v.pages.enter(ctx, cpu=1)  # the CPU's own context stack
    with pytest.raises(SleepInAtomicError):
        v.vmalloc_node(P, 0, cpu=1)
    v.pages.exit(ctx, cpu=1)
    assert full(v) == before


def test_vfree_context_rules() -> None:
    v = Vmalloc(PageAllocator(MachineConfig.default()))
    a = v.vmalloc(P)
    b = v.vmalloc(P)
    assert a is not None and b is not None
    before = full(v)
    for ctx in (Context.SPINLOCK, Context.PREEMPT_DISABLED):
        with pytest.raises(SleepInAtomicError):
            v.vfree(a, ctx=ctx)
    assert full(v) == before
    v.vfree(a, ctx=Context.HARDIRQ)  # vfree_atomic(): deferred, done here at once
    v.vfree(0)  # NULL
    assert a in v.lazy
    ok(v)


def test_vfree_bad_input_changes_nothing() -> None:
    pa = PageAllocator(MachineConfig.default())
    sa = SlabAllocator(pa)
    v = Vmalloc(pa)
    a = v.vmalloc(4 * P)
    b = v.vmalloc(P)
    assert a is not None and b is not None
    v.vfree(b)
    k = sa.kmalloc(100, GFP_KERNEL)
    assert k is not None
    before = full(v)
    cases: list[tuple[int, type[Exception], str]] = [
        (a + P, VfreeNotAreaStartError, "not its start"),
        (a + 4 * P, VfreeNotAreaStartError, "not its start"),  # its guard page
        (a + 5, VfreeError, "bad address"),
        (b, VfreeDoubleError, "double vfree"),
        (k, VfreeDirectMapError, "direct-map"),
        (pa.page_offset, VfreeDirectMapError, "direct-map"),
        (VMALLOC_START + (1 << 30), VfreeError, "nonexistent vm area"),
        (0xFFFFFFFFA0000000, VfreeError, "not a vmalloc address"),
    ]
    for addr, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            v.vfree(addr)
        assert full(v) == before, hex(addr)
    with pytest.raises(VfreeError):
        v.vfree("0x1")  # type: ignore[arg-type]
    v.purge_vmap_area_lazy()
    with pytest.raises(VfreeError, match="nonexistent"):
        v.vfree(b)  # purged: the kernel's "nonexistent vm area"
    with pytest.raises(VmallocError):
        v.vmalloc_to_pfn(pa.page_offset)
    with pytest.raises(VmallocError):
        v.vmalloc(-1)
    with pytest.raises(VmallocError):
        v.vmalloc_node_range(P, 3, v.vmalloc_start, v.kernel_vmalloc_end, GFP_KERNEL)
    ok(v)


def test_free_pages_of_a_vmalloc_page_is_refused() -> None:
    from spec.errors import BadFreeError

    v = Vmalloc(PageAllocator(MachineConfig.flat(1024)))
    a = v.vmalloc(P)
    assert a is not None
    pfn = v.busy[a].pages[0]
    with pytest.raises(BadFreeError, match="vmalloc"):
        v.pages.free_pages_pfn(pfn, 0)


def _exhaust(pa: PageAllocator) -> int:
    """How many GFP_KERNEL order-0 pages can be allocated now (all freed again)."""
    got = []
    while (p := pa.alloc_pages_node(-1, GFP_KERNEL | __GFP_HIGHMEM | __GFP_NOWARN, 0)) \
            is not None:
        got.append(p)
    for p in got:
        pa.free_pages_pfn(p, 0)
    pa.drain_effects()
    return len(got)


def content(v: Vmalloc) -> tuple[Any, ...]:
    """What a failed vmalloc must leave as it was: vmalloc's state, every page-table entry,
    the allocated blocks and the free blocks (as sets) of every zone. The free lists' order
    and the NUMA counters record the attempt (pages were taken and given back), as the
    kernel's do."""
    pa = v.pages
    return (v.snapshot(), sorted(v.pgtable.entries()), dict(pa.allocated),
            [(z.free_pages, dict(z._buddy), list(z.counts)) for z in pa.zones],
            list(pa.nr_page_table_pages))


def test_page_allocation_failure_undoes_everything() -> None:
    v = Vmalloc(PageAllocator(MachineConfig.flat(512)))
    assert v.vmalloc(P) is not None  # the page tables of the first 2 MiB exist now
    n = _exhaust(v.pages)
    before = content(v)
    assert v.vmalloc((n + 1) * P) is None
    eff = v.pages.drain_effects()
    assert any("failed to allocate pages" in e.detail for e in eff)
    assert content(v) == before
    assert v.vmalloc(n * P) is not None  # exactly what is left fits
    ok(v)


def test_page_table_failure_unmaps_and_frees_the_pages() -> None:
    v = Vmalloc(PageAllocator(MachineConfig.flat(512)))
    n = _exhaust(v.pages)
    before = content(v)
    assert v.vmalloc(n * P) is None  # the pages fit, the PUD/PMD/PTE tables do not
    eff = v.pages.drain_effects()
    assert any("failed to map pages" in e.detail for e in eff)
    assert content(v) == before  # no table could be allocated at all here
    assert list(v.pgtable.mappings()) == []
    assert not [p for p, r in v.pages.allocated.items() if r[2] == OWNER_VMALLOC]
    ok(v)


# --- views against the real captures --------------------------------------------------------------
def test_vmallocinfo_lines_match_real_ones() -> None:
    """The model prints the same line as the kernel for the same kind of area: a real line's
    size, caller, pages, flags and node counts, from a vmalloc of that size."""
    real = parse_vmallocinfo((FIXTURES / "1node-4cpu-1g" / "vmallocinfo").read_text())
    v = Vmalloc(PageAllocator(MachineConfig.flat(1 << 18)))
    seen = 0
    for r in real:
        if r.kind != "area" or "vmalloc" not in r.flags or r.pages is None or r.phys:
            continue
        a = v.vmalloc(r.pages * P, caller=r.caller or "")
        assert a is not None
        mine = next(x for x in v.vmallocinfo_lines() if x.start == a)
        assert render_vmallocinfo([mine]).split(" ", 1)[1] == \
            render_vmallocinfo([r]).split(" ", 1)[1]
        seen += 1
    assert seen > 20


@pytest.mark.parametrize("capture", sorted(p.name for p in FIXTURES.iterdir()
                                           if (p / "vmallocinfo").exists()))
def test_vmallocinfo_and_meminfo_round_trip(capture: str) -> None:
    text = (FIXTURES / capture / "vmallocinfo").read_text()
    assert render_vmallocinfo(parse_vmallocinfo(text)) == text
    v = Vmalloc(PageAllocator(MachineConfig.default()))
    a = v.vmalloc(5 * P, caller="kernel_clone+0xbd/0x440")
    v.vmalloc(3 * P)
    assert a is not None
    v.vfree(a)
    mine = v.vmallocinfo()
    assert render_vmallocinfo(parse_vmallocinfo(mine)) == mine
    assert mine.splitlines()[-1] == f"{a:#x}-{a + 6 * P:#x}   24576 unpurged vm_area"
    real_mem = dict((n, (val, kb)) for n, val, kb in
                    parse_meminfo((FIXTURES / capture / "meminfo").read_text()))
    model_mem = v.meminfo()
    for line in model_mem.splitlines():
        name = line.split(":")[0]
        assert name in real_mem
    assert model_mem.splitlines()[2] == "VmallocTotal:   34359738367 kB"
    assert real_mem["VmallocTotal"] == (34359738367, True)
    assert real_mem["VmallocChunk"] == (0, True)
    assert model_mem.splitlines()[3] == "VmallocUsed:          12 kB"


def test_vmallocinfo_order_of_vmap_nodes() -> None:
    """With several CPUs the busy areas print per vmap node (16-page zones: node = zone %
    nr_vmap_nodes), as the real files do (their addresses are not sorted)."""
    v = Vmalloc(PageAllocator(MachineConfig.default()))  # 8 CPUs: 8 vmap nodes
    addrs = [v.vmalloc(15 * P) for _ in range(9)]  # 16 pages each: zones 0..8
    assert None not in addrs
    starts = [x.start for x in v.vmallocinfo_lines()]
    assert starts == [addrs[0], addrs[8], *addrs[1:8]]
    one = Vmalloc(PageAllocator(MachineConfig.flat(4096)))  # one CPU: address order
    b = [one.vmalloc(15 * P) for _ in range(9)]
    assert [x.start for x in one.vmallocinfo_lines()] == b


def test_vmalloc_to_pfn_walk_cache_never_reads_stale_tables() -> None:
    v = Vmalloc(PageAllocator(MachineConfig.flat(1024)))
    a = v.vmalloc(2 * P)
    assert a is not None
    pfn = v.busy[a].pages[1]
    assert v.vmalloc_to_pfn(a + P) == pfn  # walks, then remembers the PTE table
    v.pgtable.unmap_page(a + P)  # the PTE changes behind vmalloc's back: seen at once
    assert v.vmalloc_to_pfn(a + P) is None
    v.pgtable.map_page(a + P, pfn, PAGE_KERNEL, gfp=GFP_KERNEL)
    # a restored snapshot replaces the table lists: the cached one is not used any more
    v.pgtable.tables = {k: list(t) for k, t in v.pgtable.tables.items()}
    t = next(k for k, lv in v.pgtable.levels.items() if lv == 3)
    v.pgtable.tables[t][(a >> 12) & 511] = 0
    assert v.vmalloc_to_pfn(a) is None
    assert v.vmalloc_to_pfn(a + P) == pfn
    assert v.vmalloc_to_pfn(a + (1 << 30)) is None  # no tables there at all


@pytest.mark.parametrize("capture", sorted(p.name for p in FIXTURES.iterdir()
                                           if (p / "vmallocinfo").exists()))
def test_real_vmallocinfo_lists_areas_by_vmap_node(capture: str) -> None:
    """The order the model prints (each vmap node's busy list by address, nodes =
    num_possible_cpus, 16-page zones) is the order of every real capture."""
    cpus = int((FIXTURES / capture / "nr_cpus").read_text().split()[0])
    v = Vmalloc(PageAllocator(MachineConfig.flat(1024)))
    v.nr_vmap_nodes = min(max(cpus, 1), 128)
    real = [x.start for x in parse_vmallocinfo((FIXTURES / capture / "vmallocinfo").read_text())
            if x.kind == "area"]
    assert real == sorted(real, key=lambda a: (v.addr_to_node_id(a), a))
    if cpus > 1:
        assert real != sorted(real)  # the rule is visible: not plain address order
