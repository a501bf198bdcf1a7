"""Process address spaces: mmap, faults, munmap, fork with copy-on-write, exit; the invariants
of spec/mm_state.py after every step; bad input with full state snapshots; each invariant
shown to catch a corrupted state."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from impl.abstraction import abstract
from impl.fork import Processes, abstract_mm
from impl.machine import MachineConfig
from impl.memory import GFP_ANON_FAULT
from impl.mmap import (
    _PAGE_SPECIAL,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    MMAP_BASE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    TASK_SIZE,
    VM_ACCOUNT,
    VM_IO,
    VM_MAYREAD,
    VM_PFNMAP,
    VM_READ,
    VM_WRITE,
    mmap_base,
)
from impl.page_alloc import PageAllocator
from impl.pgtable import _PAGE_RW, PAGE_COPY, PTE_PFN_MASK
from spec.errors import (
    BadPageMapError,
    BadUserAddressError,
    KmemError,
    MmError,
    MmOomError,
    NoSuchProcessError,
    PageTableBusyError,
    SegfaultError,
)
from spec.gfp import GFP_KERNEL, MIGRATE_MOVABLE, gfp_migratetype
from spec.invariants import violated
from spec.layout import PAGE_SIZE
from spec.mm_state import (
    MM_INVARIANTS,
    MmState,
    PageInfo,
    UserMapping,
    VmaRecord,
    mm_step_violations,
    mm_violations,
)
from spec.pgtable_state import unused_table_violations
from tests.conftest import snapshot

P = PAGE_SIZE


def machine() -> PageAllocator:
    """512 pages, MAX_PAGE_ORDER 4 (pageblocks of 16 pages): small enough to see every page."""
    return PageAllocator(MachineConfig.flat(512, max_order=4, min_pages=4))


def mm_snapshot(ps: Processes) -> dict[str, Any]:
    """Everything a process operation could change: the page allocator's snapshot, every mm
    (VMAs, PTE index, page-table pages and entries), the reverse map, anonymous pages, page
    contents, buffers, pids and statistics."""
    mms = {pid: {"vmas": [(v.vm_start, v.vm_end, v.vm_flags, v.vm_page_prot, v.anon, v.buffer)
                          for v in mm.vmas],
                 "starts": list(mm.starts), "ptes": dict(mm.ptes), "base": mm.mmap_base,
                 "tables": copy.deepcopy(ps.pgd(mm).tables),
                 "nr_present": ps.pgd(mm).nr_present}
           for pid, mm in ps.mms.items()}
    return {"pa": snapshot(ps.pa), "mms": mms, "rmap": copy.deepcopy(ps.rmap),
            "anon": set(ps.anon), "contents": copy.deepcopy(ps.contents),
            "buffers": {b: (list(x.pfns), x.kernel_ref, list(x.maps))
                        for b, x in ps.buffers.items()},
            "buffer_page": dict(ps.buffer_page), "exited": set(ps.exited),
            "next": (ps.next_pid, ps.next_bid), "stats": dict(ps.stats)}


def fill(ps: Processes, pid: int, va: int, keep: int) -> int:
    """Write value i to page i of ``pid``'s mapping at ``va`` until at most ``keep`` pages are
    free (so memory is nearly full of anonymous pages); returns how many pages were written."""
    n = 0
    while ps.pa.nr_free_pages() > keep:
        ps.write(pid, va + n * P, n)
        n += 1
    return n


def check(ps: Processes) -> MmState:
    """Every user-side and page-allocator invariant holds, and no process keeps a page table
    over unmapped space (spec/pgtable_state.py); returns the abstract state."""
    st = abstract_mm(ps)
    assert mm_violations(st) == []
    assert violated(abstract(ps.pa), fast=True) == []
    for mm in ps.mms.values():
        assert unused_table_violations(ps.pgd(mm).table_spans(),
                                       [(v.vm_start, v.vm_end) for v in mm.vmas]) == []
    return st


@pytest.fixture
def ps() -> Processes:
    return Processes(machine())


# --- mmap layout ---------------------------------------------------------------------------------
def test_layout_constants() -> None:
    assert TASK_SIZE == 0x7FFFFFFFF000
    # 128 MiB below TASK_SIZE: the gap is clamped up to MIN_GAP (8 MiB stack + 1 MiB guard)
    assert MMAP_BASE == mmap_base() == 0x7FFFF7FFF000


def test_mmap_top_down_and_merging(ps: Processes) -> None:
    pid = ps.spawn()
    a = ps.mmap(pid, 3 * P)
    assert a == MMAP_BASE - 3 * P
    b = ps.mmap(pid, 1)  # rounded up to a page, placed right below and merged
    assert b == a - P
    mm = ps.mm_of(pid)
    assert [(v.vm_start, v.vm_end) for v in mm.vmas] == [(b, MMAP_BASE)]
    v = mm.vmas[0]
    assert v.vm_flags & (VM_READ | VM_WRITE | VM_MAYREAD | VM_ACCOUNT) == (
        VM_READ | VM_WRITE | VM_MAYREAD | VM_ACCOUNT)
    assert v.vm_page_prot == PAGE_COPY  # private writable: no _PAGE_RW until a write fault
    r = ps.mmap(pid, P, prot=PROT_READ)  # different flags: a VMA of its own
    assert len(mm.vmas) == 2 and r == b - P
    assert ps.maps(pid).splitlines() == [
        f"{r:08x}-{b:08x} r--p 00000000 00:00 0 ",
        f"{b:08x}-{MMAP_BASE:08x} rw-p 00000000 00:00 0 "]
    assert ps.pa.nr_free_pages() == 512 - 2  # only the PGD (order 1): no page before a fault
    check(ps)


def test_hint_and_fixed(ps: Processes) -> None:
    pid = ps.spawn()
    assert ps.mmap(pid, 2 * P, addr=0x10000000) == 0x10000000
    a = ps.mmap(pid, 2 * P, addr=0x10000000)  # taken: top-down from mmap_base instead
    assert a == MMAP_BASE - 2 * P
    ps.write(pid, 0x10000000, 5)
    pfn = ps.resolve(pid, 0x10000000)
    assert pfn is not None
    # MAP_FIXED replaces the mapping: the old page goes back to the buddy allocator
    assert ps.mmap(pid, P, addr=0x10000000, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED) == (
        0x10000000)
    assert ps.resolve(pid, 0x10000000) is None and ps.pa.page_count(pfn) == 0
    assert ps.read(pid, 0x10000000) == 0
    check(ps)


# --- faults --------------------------------------------------------------------------------------
def test_anonymous_fault(ps: Processes) -> None:
    pid = ps.spawn()
    va = ps.mmap(pid, 4 * P)
    pfn = ps.fault(pid, va + P + 123)
    assert ps.resolve(pid, va + P) == pfn and ps.resolve(pid, va) is None
    order, _, _, mt = ps.pa.allocated[pfn]
    assert order == 0 and mt == gfp_migratetype(GFP_ANON_FAULT) == MIGRATE_MOVABLE
    pte = ps.pgd(ps.mm_of(pid)).pte_of(va + P)
    assert (pte & PTE_PFN_MASK) >> 12 == pfn and pte & _PAGE_RW
    assert ps.pa.page_count(pfn) == 1 and ps.mapcount(pfn) == 1
    assert ps.fault(pid, va + P) == pfn  # present and writable: no new page
    # page tables: PGD (order 1) + PUD + PMD + PTE tables, and the page itself
    assert ps.pa.nr_page_table_pages[0] == 3
    assert ps.pa.nr_free_pages() == 512 - 2 - 3 - 1
    ps.write(pid, va + 8, 77)
    assert ps.read(pid, va + 8) == 77 and ps.read(pid, va + 16) == 0
    check(ps)


def test_read_only_mapping_refuses_writes(ps: Processes) -> None:
    pid = ps.spawn()
    va = ps.mmap(pid, P, prot=PROT_READ)
    assert ps.read(pid, va) == 0
    with pytest.raises(SegfaultError, match="SEGV_ACCERR"):
        ps.write(pid, va, 1)


# --- munmap --------------------------------------------------------------------------------------
def test_munmap_splits_and_frees(ps: Processes) -> None:
    pid = ps.spawn()
    va = ps.mmap(pid, 5 * P)
    pfns = [ps.fault(pid, va + i * P) for i in range(5)]
    free = ps.pa.nr_free_pages()
    assert ps.munmap(pid, va + P, 2 * P) == 2
    mm = ps.mm_of(pid)
    assert [(v.vm_start, v.vm_end) for v in mm.vmas] == [(va, va + P), (va + 3 * P, va + 5 * P)]
    assert ps.pa.nr_free_pages() == free + 2
    assert [ps.pa.page_count(p) for p in pfns] == [1, 0, 0, 1, 1]
    with pytest.raises(SegfaultError, match="SEGV_MAPERR"):
        ps.fault(pid, va + P)
    check(ps)
    assert ps.munmap(pid, va, 5 * P) == 3  # across the hole: both pieces go
    assert mm.vmas == [] and mm.ptes == {}
    check(ps)


# --- fork and copy-on-write ----------------------------------------------------------------------
def test_fork_shares_pages_write_protected(ps: Processes) -> None:
    parent = ps.spawn()
    va = ps.mmap(parent, 3 * P)
    pfns = [ps.write(parent, va + i * P, 10 + i) for i in range(3)]
    free = ps.pa.nr_free_pages()
    child = ps.fork(parent)
    # no page copied: only the child's page tables (PGD order 1, PUD, PMD, PTE)
    assert ps.pa.nr_free_pages() == free - 5
    for i, p in enumerate(pfns):
        assert ps.resolve(child, va + i * P) == p
        assert ps.pa.page_count(p) == 2 and ps.mapcount(p) == 2
        assert not ps.pte_writable(ps.mm_of(parent), va + i * P)
        assert not ps.pte_writable(ps.mm_of(child), va + i * P)
    check(ps)
    # the child writes: COW copies page 0 for the child, the parent keeps the old one
    new = ps.write(child, va, 99)
    assert new != pfns[0] and ps.resolve(parent, va) == pfns[0]
    assert ps.read(parent, va) == 10 and ps.read(child, va) == 99
    assert ps.read(child, va + P) == 11  # unwritten pages still shared
    assert ps.pa.page_count(pfns[0]) == 1 and ps.stats["cow_copies"] == 1
    # the parent writes page 0: it is the only user now, so the page is reused, not copied
    assert ps.write(parent, va, 12) == pfns[0]
    assert ps.stats["cow_reuses"] == 1 and ps.stats["cow_copies"] == 1
    check(ps)


def test_exit_frees_everything(ps: Processes) -> None:
    free0 = ps.pa.nr_free_pages()
    parent = ps.spawn()
    va = ps.mmap(parent, 8 * P)
    for i in range(8):
        ps.write(parent, va + i * P, i)
    child = ps.fork(parent)
    ps.write(child, va, 100)
    grandchild = ps.fork(child)
    ps.exit(parent)
    st = check(ps)
    assert all(p.refcount == 2 for pfn, p in st.pages.items())  # child + grandchild share
    ps.exit(child)
    check(ps)
    assert ps.read(grandchild, va) == 100 and ps.read(grandchild, va + 7 * P) == 7
    ps.exit(grandchild)
    assert ps.pa.nr_free_pages() == free0 and ps.pa.allocated == {} and ps.pa.refs == {}
    assert ps.rmap == {} and ps.anon == set() and ps.pa.nr_page_table_pages == [0]
    assert violated(abstract(ps.pa)) == []


def test_cost_per_page_does_not_scan_memory() -> None:
    """munmap of one page of a 1 GiB mapping touches one PTE (the PTE index is consulted, not
    the 262,144 pages of the range); fork copies only present PTEs."""
    pa = PageAllocator(MachineConfig.flat(1 << 16, max_order=10, min_pages=16))
    ps = Processes(pa)
    pid = ps.spawn()
    va = ps.mmap(pid, 1 << 30)
    ps.write(pid, va + (5 << 20), 1)
    child = ps.fork(pid)
    assert len(ps.mm_of(child).ptes) == 1
    assert ps.munmap(pid, va, 1 << 30) == 1
    check(ps)


# --- bad input: typed error, state unchanged -----------------------------------------------------
@pytest.fixture
def busy() -> tuple[Processes, int, int, int]:
    """Two processes sharing COW pages, a munmapped hole, an exited pid, a driver buffer."""
    ps = Processes(machine())
    pid = ps.spawn()
    va = ps.mmap(pid, 6 * P)
    for i in range(6):
        ps.write(pid, va + i * P, i)
    child = ps.fork(pid)
    ps.write(child, va, 50)
    ps.munmap(pid, va + 4 * P, P)
    dead = ps.spawn()
    ps.exit(dead)
    assert ps.alloc_shared_buffer(1) == 1  # a kernel page a driver could insert
    return ps, pid, va, dead


BAD: list[tuple[str, Any, type[KmemError], str]] = [
    ("munmap unaligned", lambda ps, pid, va, dead: ps.munmap(pid, va + 1, P),
     BadUserAddressError, "not page aligned"),
    ("munmap zero length", lambda ps, pid, va, dead: ps.munmap(pid, va, 0),
     BadUserAddressError, "length must be positive"),
    ("munmap kernel address", lambda ps, pid, va, dead: ps.munmap(pid, 0xFFFF888000000000, P),
     BadUserAddressError, "TASK_SIZE"),
    ("munmap past TASK_SIZE", lambda ps, pid, va, dead: ps.munmap(pid, TASK_SIZE - P, 2 * P),
     BadUserAddressError, "TASK_SIZE"),
    ("mmap fixed unaligned", lambda ps, pid, va, dead: ps.mmap(
        pid, P, addr=0x10001, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
     BadUserAddressError, "not page aligned"),
    ("mmap neither shared nor private", lambda ps, pid, va, dead: ps.mmap(
        pid, P, flags=MAP_ANONYMOUS), BadUserAddressError, "neither MAP_SHARED nor"),
    ("mmap of a file", lambda ps, pid, va, dead: ps.mmap(pid, P, flags=MAP_PRIVATE),
     MmError, "only MAP_PRIVATE"),
    ("mmap fixed below mmap_min_addr", lambda ps, pid, va, dead: ps.mmap(
        pid, P, addr=0x1000, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
     BadUserAddressError, "EPERM"),
    ("mmap fixed at 0", lambda ps, pid, va, dead: ps.mmap(
        pid, P, addr=0, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
     BadUserAddressError, "mmap_min_addr"),
    ("mmap fixed beyond TASK_SIZE", lambda ps, pid, va, dead: ps.mmap(
        pid, P, addr=TASK_SIZE, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
     BadUserAddressError, "TASK_SIZE"),
    ("mmap zero length", lambda ps, pid, va, dead: ps.mmap(pid, 0), BadUserAddressError,
     "positive"),
    ("mmap too big", lambda ps, pid, va, dead: ps.mmap(pid, TASK_SIZE), BadUserAddressError,
     "ENOMEM"),
    ("mmap shared anonymous", lambda ps, pid, va, dead: ps.mmap(
        pid, P, flags=MAP_SHARED | MAP_ANONYMOUS), MmError, "only MAP_PRIVATE"),
    ("fault outside every VMA", lambda ps, pid, va, dead: ps.fault(pid, 0x10000),
     SegfaultError, "SEGV_MAPERR"),
    ("write to the unmapped hole", lambda ps, pid, va, dead: ps.write(pid, va + 4 * P, 1),
     SegfaultError, "SIGSEGV"),
    ("fault at a kernel address", lambda ps, pid, va, dead: ps.fault(pid, 0xFFFF888000000000),
     BadUserAddressError, "not a user address"),
    ("fault at a negative address", lambda ps, pid, va, dead: ps.fault(pid, -P),
     BadUserAddressError, "not a user address"),
    ("fault of a dead process", lambda ps, pid, va, dead: ps.fault(dead, va),
     NoSuchProcessError, "has exited"),
    ("mmap in a process that never was", lambda ps, pid, va, dead: ps.mmap(99, P),
     NoSuchProcessError, "does not exist"),
    ("fork of a dead process", lambda ps, pid, va, dead: ps.fork(dead), NoSuchProcessError,
     "has exited"),
    ("exit of a dead process", lambda ps, pid, va, dead: ps.exit(dead), NoSuchProcessError,
     "has exited"),
    ("exit of a pid that never was", lambda ps, pid, va, dead: ps.exit(1000),
     NoSuchProcessError, "does not exist"),
    ("vm_insert_page of a freed page", lambda ps, pid, va, dead: ps.vm_insert_page(
        pid, va + P, 400), BadPageMapError, "page_count 0"),
    ("vm_insert_page of an anonymous page", lambda ps, pid, va, dead: ps.vm_insert_page(
        pid, va + P, ps.resolve(pid, va + 2 * P)), BadPageMapError, "anonymous"),
    ("vm_insert_page outside every VMA", lambda ps, pid, va, dead: ps.vm_insert_page(
        pid, 0x10000, ps.buffers[1].pfns[0]), BadUserAddressError, "EFAULT"),
    ("vm_insert_page over a present PTE", lambda ps, pid, va, dead: ps.vm_insert_page(
        pid, va + P, ps.buffers[1].pfns[0]), BadPageMapError, "EBUSY"),
    ("vm_insert_page of a page-table page", lambda ps, pid, va, dead: ps.vm_insert_page(
        pid, va + 4 * P - P, next(iter(ps.pgd(ps.mm_of(pid)).table_pfns()))),
     BadPageMapError, "owned by the pgtable"),
]


@pytest.mark.parametrize(("name", "op", "exc", "msg"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_leaves_state_unchanged(busy: tuple[Processes, int, int, int], name: str,
                                          op: Any, exc: type[KmemError], msg: str) -> None:
    ps, pid, va, dead = busy
    before = mm_snapshot(ps)
    with pytest.raises(exc, match=msg) as ei:
        op(ps, pid, va, dead)
    assert "\n" not in str(ei.value)
    assert mm_snapshot(ps) == before
    check(ps)


@pytest.mark.parametrize("prot", [PROT_WRITE, PROT_EXEC, PROT_WRITE | PROT_EXEC])
def test_read_of_a_mapping_without_prot_read_works(ps: Processes, prot: int) -> None:
    """x86 access_error(): a read fault needs vma_is_accessible() only (no write-only or
    execute-only PTEs exist), so PROT_WRITE or PROT_EXEC alone reads; a write needs
    PROT_WRITE."""
    pid = ps.spawn()
    va = ps.mmap(pid, P, prot=prot)
    assert ps.read(pid, va) == 0
    if not prot & PROT_WRITE:
        with pytest.raises(SegfaultError, match="SEGV_ACCERR"):
            ps.write(pid, va, 1)
    none = ps.mmap(pid, P, prot=0)  # PROT_NONE: no access at all
    before = mm_snapshot(ps)
    with pytest.raises(SegfaultError, match="SEGV_ACCERR"):
        ps.read(pid, none)
    assert mm_snapshot(ps) == before
    check(ps)


# --- free_pgtables: munmap frees the page tables no remaining VMA shares ------------------------
def test_munmap_of_a_lone_vma_frees_its_page_tables(ps: Processes) -> None:
    """free_pgd_range(floor 0, ceiling 0): the PTE, PMD and PUD tables go; the PGD stays."""
    pid = ps.spawn()
    va = ps.mmap(pid, 4 * P)
    ps.write(pid, va, 1)
    pgd = ps.pgd(ps.mm_of(pid))
    assert len(pgd.table_pfns()) == 4 and ps.pa.nr_page_table_pages == [3]
    free = ps.pa.nr_free_pages()
    assert ps.munmap(pid, va, 4 * P) == 1
    assert pgd.table_pfns() == {pgd.root} and ps.pa.nr_page_table_pages == [0]
    assert ps.pa.nr_free_pages() == free + 1 + 3  # the page and three tables
    check(ps)
    ps.write(pid, ps.mmap(pid, P), 2)  # faults allocate them again
    assert ps.pa.nr_page_table_pages == [3]
    check(ps)


def test_munmap_keeps_tables_another_vma_shares(ps: Processes) -> None:
    """A PTE table two VMAs use stays while either is mapped (floor/ceiling), the partial
    munmap of one VMA frees nothing, and MAP_FIXED over a region frees its tables first."""
    pid = ps.spawn()
    a = ps.mmap(pid, 2 * P)
    b = ps.mmap(pid, 2 * P, prot=PROT_READ)  # other flags: a VMA of its own, right below
    assert b == a - 2 * P and len(ps.mm_of(pid).vmas) == 2
    ps.write(pid, a, 1)
    ps.read(pid, b)
    pgd = ps.pgd(ps.mm_of(pid))
    tables = pgd.table_pfns()
    assert ps.munmap(pid, a + P, P) == 0 and pgd.table_pfns() == tables  # partial
    assert ps.munmap(pid, a, P) == 1 and pgd.table_pfns() == tables  # b shares the table
    check(ps)
    assert ps.munmap(pid, b, 2 * P) == 1
    assert pgd.table_pfns() == {pgd.root} and ps.pa.nr_page_table_pages == [0]
    c = ps.mmap(pid, 2 * P)
    ps.write(pid, c, 3)
    assert ps.pa.nr_page_table_pages == [3]
    ps.mmap(pid, 2 * P, addr=c, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    assert ps.pa.nr_page_table_pages == [0] and ps.resolve(pid, c) is None
    check(ps)


def test_free_pgd_range_refuses_a_table_that_still_maps(ps: Processes) -> None:
    pid = ps.spawn()
    va = ps.mmap(pid, P)
    ps.write(pid, va, 1)
    before = mm_snapshot(ps)
    with pytest.raises(PageTableBusyError):
        ps.pgd(ps.mm_of(pid)).free_pgd_range(va, va + P, 0, 0)
    assert mm_snapshot(ps) == before


def test_unused_table_rule_catches_a_leftover_table(ps: Processes) -> None:
    pid = ps.spawn()
    va = ps.mmap(pid, P)
    ps.write(pid, va, 1)
    mm = ps.mm_of(pid)
    spans = ps.pgd(mm).table_spans()
    assert unused_table_violations(spans, [(va, va + P)]) == []
    bad = unused_table_violations(spans, [(va - (1 << 30), va - (1 << 30) + P)])
    assert {m.split(" table")[0] for m in bad} == {"pgtable.unused_table: level-3",
                                                   "pgtable.unused_table: level-2"}
    assert len(unused_table_violations(spans, [])) == 3


@pytest.mark.parametrize("where", ["below every VMA", "the munmapped hole", "above mmap_base"])
def test_munmap_of_an_unmapped_range_is_a_noop(busy: tuple[Processes, int, int, int],
                                               where: str) -> None:
    """do_vmi_munmap(): vma_find() finds nothing, munmap returns 0 and changes nothing (not
    an error in Linux)."""
    ps, pid, va, _ = busy
    addr = {"below every VMA": 0x10000, "the munmapped hole": va + 4 * P,
            "above mmap_base": MMAP_BASE}[where]
    before = mm_snapshot(ps)
    assert ps.munmap(pid, addr, P) == 0
    assert mm_snapshot(ps) == before
    check(ps)


# --- each invariant catches a corrupted state ----------------------------------------------------
def _state(ps: Processes) -> tuple[MmState, int, int]:
    pid = ps.spawn()
    va = ps.mmap(pid, 2 * P)
    ps.write(pid, va, 1)
    ps.fork(pid)
    return abstract_mm(ps), pid, va


def test_every_invariant_is_registered() -> None:
    assert set(MM_INVARIANTS) == {
        "mm.mapped_pages_referenced", "mm.anon_refcount_exact", "mm.user_addresses",
        "mm.rmap_exact", "mm.pagetables_private", "mm.cow_write_protected", "mm.shared_buffer"}


def _replace_mapping(st: MmState, i: int, **kw: Any) -> MmState:
    ms = list(st.mappings)
    ms[i] = ms[i]._replace(**kw)
    return MmState(st.task_size, st.vmas, tuple(ms), st.pages, st.pagetable_pfns, st.rmap,
                   st.buffer_pages, st.ptes_index)


def _with(st: MmState, **kw: Any) -> MmState:
    d = {"task_size": st.task_size, "vmas": st.vmas, "mappings": st.mappings,
         "pages": st.pages, "pagetable_pfns": st.pagetable_pfns, "rmap": st.rmap,
         "buffer_pages": st.buffer_pages, "ptes_index": st.ptes_index, **kw}
    return MmState(**d)


def _names(st: MmState) -> set[str]:
    return {v.split(":")[0] for v in mm_violations(st)}


def test_invariants_catch_corruption(ps: Processes) -> None:
    st, pid, va = _state(ps)
    assert mm_violations(st) == []
    pfn = st.mappings[0].pfn
    # a mapped page that is free: use after free
    pages = dict(st.pages)
    pages[pfn] = PageInfo(0, -1, -1, False)
    assert "mm.mapped_pages_referenced" in _names(_with(st, pages=pages))
    # one reference short of the two mappings (and not exact for an anonymous page)
    pages[pfn] = PageInfo(1, 0, MIGRATE_MOVABLE, True)
    assert {"mm.mapped_pages_referenced", "mm.anon_refcount_exact"} <= _names(
        _with(st, pages=pages))
    # a leaked reference on an anonymous page
    pages[pfn] = PageInfo(3, 0, MIGRATE_MOVABLE, True)
    assert _names(_with(st, pages=pages)) == {"mm.anon_refcount_exact"}
    # a PTE outside every VMA / unaligned / beyond TASK_SIZE
    assert "mm.user_addresses" in _names(_replace_mapping(st, 0, va=0x10000))
    assert "mm.user_addresses" in _names(_replace_mapping(st, 0, va=va + 8))
    assert "mm.user_addresses" in _names(_replace_mapping(st, 0, va=TASK_SIZE))
    # overlapping VMAs
    v = st.vmas[0]
    assert "mm.user_addresses" in _names(_with(st, vmas=(*st.vmas, VmaRecord(
        v.pid, v.start + P, v.end + P, v.flags, -1))))
    # the reverse map misses a mapping (migration would leave a stale PTE)
    assert "mm.rmap_exact" in _names(_with(st, rmap=st.rmap - {next(iter(st.rmap))}))
    # the PTE index disagrees with the page tables
    assert "mm.rmap_exact" in _names(_with(st, ptes_index=frozenset()))
    # a page-table page mapped into user space
    table = next(iter(st.pagetable_pfns))
    pages = dict(st.pages)
    pages[table] = PageInfo(1, 0, 0, False)
    m = UserMapping(pid, va + P, table, True, False, table)
    assert "mm.pagetables_private" in _names(_with(
        st, mappings=(*st.mappings, m), pages=pages,
        rmap=st.rmap | {(table, pid, va + P)},
        ptes_index=st.ptes_index | {(pid, va + P, table)}))
    # copy-on-write broken: a shared anonymous page writable in one process
    assert _names(_replace_mapping(st, 0, writable=True)) == {"mm.cow_write_protected"}


def test_step_invariant_catches_a_moved_page_table(ps: Processes) -> None:
    st, pid, _va = _state(ps)
    pt = dict(st.pagetable_pfns)
    moved = next(p for p, owner in pt.items() if owner == pid)
    pt[moved + 1000] = pt.pop(moved)
    assert mm_step_violations(st, st) == []
    bad = mm_step_violations(st, _with(st, pagetable_pfns=pt))
    assert bad and bad[0].startswith("mm.unmovable_stay")


def test_mm_violations_on_the_implementation_after_corruption(ps: Processes) -> None:
    """The abstraction reads the real structures: corrupting them is caught."""
    pid = ps.spawn()
    va = ps.mmap(pid, P)
    pfn = ps.fault(pid, va)
    ps.pa.refs[pfn] = 1  # a leaked get_page
    assert _names(abstract_mm(ps)) == {"mm.anon_refcount_exact"}
    del ps.pa.refs[pfn]
    ps.rmap.clear()
    assert _names(abstract_mm(ps)) == {"mm.rmap_exact"}


# --- driver pfn mappings and running out of memory ----------------------------------------------
def test_remap_pfn_range_takes_no_references(ps: Processes) -> None:
    pid = ps.spawn()
    kpfn = ps.pa.alloc_pages(GFP_KERNEL, 1)  # a driver's two contiguous pages
    assert kpfn is not None
    va = ps.mmap(pid, 2 * P, flags=MAP_PRIVATE | MAP_ANONYMOUS)
    ps.remap_pfn_range(pid, va, kpfn, 2)
    vma = ps.mm_of(pid).find_vma(va)
    assert vma is not None and vma.vm_flags & (VM_IO | VM_PFNMAP) == VM_IO | VM_PFNMAP
    assert ps.resolve(pid, va + P) == kpfn + 1 and ps.pa.page_count(kpfn) == 1
    assert ps.pgd(ps.mm_of(pid)).pte_of(va) & _PAGE_SPECIAL
    assert ps.mapcount(kpfn) == 0  # no rmap for raw pfns
    child = ps.fork(pid)
    assert ps.resolve(child, va) == kpfn and ps.pa.page_count(kpfn) == 1
    check(ps)
    ps.exit(child)
    ps.munmap(pid, va, 2 * P)
    assert ps.pa.page_count(kpfn) == 1  # still the driver's
    ps.pa.free_pages_pfn(kpfn, 1)
    check(ps)


def test_remap_pfn_range_bad_input(ps: Processes) -> None:
    pid = ps.spawn()
    va = ps.mmap(pid, 4 * P)
    ps.fault(pid, va)
    for args, exc, msg in [((va + P, 100, 2), BadUserAddressError, "remapped whole"),
                           ((va, 100, 8), BadUserAddressError, "not inside one VMA"),
                           ((va, 100, 4), BadPageMapError, "already mapped"),
                           ((va, -1, 4), BadUserAddressError, "bad pfn")]:
        before = mm_snapshot(ps)
        with pytest.raises(exc, match=msg):
            ps.remap_pfn_range(pid, *args)
        assert mm_snapshot(ps) == before


def test_fault_without_memory_is_oom_and_changes_nothing() -> None:
    pa = PageAllocator(MachineConfig.flat(64, max_order=3, min_pages=2))
    ps = Processes(pa)
    pid = ps.spawn()
    va = ps.mmap(pid, 200 * P)
    n = 0
    with pytest.raises(MmOomError, match="VM_FAULT_OOM"):
        while True:
            before = mm_snapshot(ps)
            ps.fault(pid, va + n * P)
            n += 1
    assert n > 40
    # the failed allocation ran reclaim (kswapd woken, the boost cleared, a sleep and a
    # warn_alloc effect): that is the page allocator's doing, as in the kernel; the rest,
    # every page, list and mapping, is as it was
    after = mm_snapshot(ps)
    for snap in (before, after):
        del snap["pa"]["effects"], snap["pa"]["kswapd_awake"]
        for z in snap["pa"]["zones"]:
            del z["boost"]
    assert after == before
    check(ps)


def test_fork_without_memory_leaves_the_parent_alone() -> None:
    """A fork whose child page tables cannot all be allocated is undone: no pid used, the
    parent's PTEs stay writable, every page the child took is back (the buddy lists may hold
    them in another order, so free pages are compared by count and invariants)."""
    pa = PageAllocator(MachineConfig.flat(64, max_order=3, min_pages=2))
    ps = Processes(pa)
    pid = ps.spawn()
    va = ps.mmap(pid, 64 * P)
    fill(ps, pid, va, keep=6)
    free, nxt = pa.nr_free_pages(), ps.next_pid
    ptes = dict(ps.mm_of(pid).ptes)
    with pytest.raises(MmOomError):
        ps.fork(pid)
    assert pa.nr_free_pages() == free and ps.next_pid == nxt and list(ps.mms) == [pid]
    assert ps.mm_of(pid).ptes == ptes and all(
        ps.pte_writable(ps.mm_of(pid), v) for v in ptes)
    assert all(pa.page_count(p) == 1 for p in ptes.values())
    check(ps)


def test_write_to_a_private_pfn_mapping_copies_without_a_put(ps: Processes) -> None:
    """do_wp_page on a special PTE: vm_normal_page() is NULL, so wp_page_copy copies into a
    new anonymous page and puts nothing on the raw pfn (the driver's page keeps its count)."""
    pid = ps.spawn()
    kpfn = ps.pa.alloc_pages(GFP_KERNEL, 0)
    assert kpfn is not None
    va = ps.mmap(pid, P)
    ps.remap_pfn_range(pid, va, kpfn, 1)
    new = ps.write(pid, va, 9)
    assert new != kpfn and new in ps.anon and ps.pa.page_count(kpfn) == 1
    assert not ps.is_special(ps.mm_of(pid), va)
    check(ps)
    ps.exit(pid)  # the anonymous copy is freed, the driver's page is not touched
    assert ps.pa.page_count(new) == 0 and ps.pa.page_count(kpfn) == 1
    check(ps)
