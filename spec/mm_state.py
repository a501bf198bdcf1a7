"""The specification's view of process address spaces, and their invariants, each defined once.

An :class:`MmState` is what the processes' page tables, VMAs, the reverse map, the page
references and the drivers' shared buffers say at one moment; ``impl.fork.abstract_mm`` builds
it from the implementation. :func:`mm_violations` checks one state, :func:`mm_step_violations`
two consecutive ones (unmovable pages never change pfn). The tests, the state machine and the
model checker call these; nothing restates them.

Sources: mm/memory.c (do_anonymous_page, do_wp_page, copy_present_pte, vm_insert_page,
zap_pte_range), mm/rmap.c (mapcount), include/linux/mm.h (page_count, folio_mapcount),
mm/migrate.c and mm/compaction.c (only movable pages move), arch/x86/include/asm/
page_64_types.h (TASK_SIZE), arch/x86/mm/pgtable.c (page-table pages are the kernel's).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from typing import NamedTuple

from spec.checks import CheckedInvariant, CheckRegistry
from spec.gfp import MIGRATE_MOVABLE
from spec.layout import PAGE_SIZE


class VmaRecord(NamedTuple):
    """One vm_area_struct of process ``pid``; ``buffer`` the shared buffer a driver mapped
    there (-1 for anonymous memory)."""

    pid: int
    start: int
    end: int
    flags: int
    buffer: int


class UserMapping(NamedTuple):
    """One present user PTE as the page tables say (``pfnmap``: in a VM_PFNMAP VMA, a raw pfn
    without a page reference); ``indexed`` the pfn the mm's own PTE index holds for ``va``
    (-1 if none), which must agree."""

    pid: int
    va: int
    pfn: int
    writable: bool
    pfnmap: bool
    indexed: int


class PageInfo(NamedTuple):
    """A page some mapping, the reverse map or a buffer refers to: page_count() (0 = free),
    the order and migratetype of its allocation (-1 if free), and whether it is anonymous."""

    refcount: int
    order: int
    migratetype: int
    anon: bool


class BufferPage(NamedTuple):
    """Page ``idx`` of shared buffer ``bid``: its pfn (-1 once freed) and whether the kernel
    still holds its reference."""

    bid: int
    idx: int
    pfn: int
    kernel_ref: bool


@dataclass(frozen=True)
class MmState:
    """Every process's VMAs and present PTEs, the pages they reach, the page-table pages of
    every process (pfn -> pid), the reverse map as (pfn, pid, va), the buffers' pages, and the
    mm's PTE index as (pid, va, pfn)."""

    task_size: dict[int, int]
    vmas: tuple[VmaRecord, ...]
    mappings: tuple[UserMapping, ...]
    pages: dict[int, PageInfo]
    pagetable_pfns: dict[int, int]
    rmap: frozenset[tuple[int, int, int]]
    buffer_pages: tuple[BufferPage, ...]
    ptes_index: frozenset[tuple[int, int, int]]


MmInvariant = CheckedInvariant[MmState]
MM_INVARIANTS: CheckRegistry[MmState] = CheckRegistry()
mm_invariant = MM_INVARIANTS.register


def _mapcounts(st: MmState) -> Counter[int]:
    return Counter(m.pfn for m in st.mappings if not m.pfnmap)


@mm_invariant("mm.mapped_pages_referenced",
              "A user PTE (other than a VM_PFNMAP raw pfn) points only to an allocated order-0 "
              "page whose reference count is at least the number of PTEs mapping it.",
              "mm/memory.c do_anonymous_page, copy_present_pte (folio_get), vm_insert_page; "
              "include/linux/mm.h page_count")
def inv_mapped_referenced(st: MmState) -> list[str]:
    out = []
    for pfn, n in sorted(_mapcounts(st).items()):
        p = st.pages.get(pfn)
        if p is None or p.refcount == 0:
            out.append(f"pfn {pfn:#x} is mapped {n} times but is free (use after free)")
        elif p.refcount < n:
            out.append(f"pfn {pfn:#x} is mapped {n} times with page_count {p.refcount}")
        elif p.order != 0:
            out.append(f"pfn {pfn:#x} is mapped but is the head of an order-{p.order} block")
    return out


@mm_invariant("mm.anon_refcount_exact",
              "An anonymous page holds exactly one reference per mapping (no leak, no extra "
              "pin): it goes back to the buddy allocator with its last mapping.",
              "mm/memory.c zap_pte_range (folio_remove_rmap_pte + tlb put), mm/rmap.c")
def inv_anon_exact(st: MmState) -> list[str]:
    counts = _mapcounts(st)
    return [f"anonymous pfn {pfn:#x}: page_count {p.refcount}, mapped {counts.get(pfn, 0)} times"
            for pfn, p in sorted(st.pages.items())
            if p.anon and p.refcount != counts.get(pfn, 0)]


@mm_invariant("mm.user_addresses",
              "Every VMA and every user PTE is page aligned and below TASK_SIZE; VMAs of a "
              "process do not overlap; every PTE lies inside a VMA of its process.",
              "arch/x86/include/asm/page_64_types.h TASK_SIZE; mm/mmap.c get_unmapped_area; "
              "mm/vma.c")
def inv_user_addresses(st: MmState) -> list[str]:
    out = []
    by_pid: dict[int, list[VmaRecord]] = {}
    for v in st.vmas:
        ts = st.task_size.get(v.pid, 0)
        if v.start % PAGE_SIZE or v.end % PAGE_SIZE or not 0 < v.start < v.end <= ts:
            out.append(f"pid {v.pid}: VMA [{v.start:#x}, {v.end:#x}) is not a page-aligned "
                       f"range below TASK_SIZE {ts:#x}")
        by_pid.setdefault(v.pid, []).append(v)
    for pid, vs in by_pid.items():
        vs.sort()
        for a, b in pairwise(vs):
            if b.start < a.end:
                out.append(f"pid {pid}: VMAs [{a.start:#x}, {a.end:#x}) and [{b.start:#x}, "
                           f"{b.end:#x}) overlap")
    for m in st.mappings:
        ts = st.task_size.get(m.pid, 0)
        if m.va % PAGE_SIZE or not 0 <= m.va < ts:
            out.append(f"pid {m.pid}: PTE at {m.va:#x} is not a page-aligned user address")
        elif not any(v.start <= m.va < v.end for v in by_pid.get(m.pid, ())):
            out.append(f"pid {m.pid}: PTE at {m.va:#x} (pfn {m.pfn:#x}) is outside every VMA")
    return out


@mm_invariant("mm.rmap_exact",
              "The reverse map holds exactly the (pfn, pid, va) of every user PTE that maps a "
              "page (so migration finds every one), and the mm's PTE index agrees with the "
              "page tables.",
              "mm/rmap.c folio_add_new_anon_rmap, folio_remove_rmap_pte, try_to_migrate")
def inv_rmap(st: MmState) -> list[str]:
    want = frozenset((m.pfn, m.pid, m.va) for m in st.mappings if not m.pfnmap)
    out = [f"rmap lacks pfn {p:#x} at pid {pid} {va:#x}" for p, pid, va in sorted(want - st.rmap)]
    out += [f"rmap has a stale pfn {p:#x} at pid {pid} {va:#x}"
            for p, pid, va in sorted(st.rmap - want)]
    tables = frozenset((m.pid, m.va, m.pfn) for m in st.mappings)
    out += [f"pid {pid}: PTE index says {va:#x} -> {p:#x}, the page tables disagree"
            for pid, va, p in sorted(st.ptes_index ^ tables)]
    return out


@mm_invariant("mm.pagetables_private",
              "No page-table page of any process is mapped into user space.",
              "arch/x86/mm/pgtable.c pgd_alloc, mm/memory.c __pte_alloc: tables are kernel "
              "pages reached only through the page-table walk")
def inv_pagetables(st: MmState) -> list[str]:
    return [f"pid {m.pid} maps page-table page {m.pfn:#x} (of pid "
            f"{st.pagetable_pfns[m.pfn]}) at {m.va:#x}"
            for m in st.mappings if m.pfn in st.pagetable_pfns]


@mm_invariant("mm.cow_write_protected",
              "An anonymous page mapped more than once is mapped read-only everywhere, so a "
              "write copies it first (copy-on-write after fork).",
              "mm/memory.c copy_present_pte (ptep_set_wrprotect), do_wp_page")
def inv_cow(st: MmState) -> list[str]:
    counts = _mapcounts(st)
    return [f"pid {m.pid} maps shared anonymous pfn {m.pfn:#x} writable at {m.va:#x}"
            for m in st.mappings
            if m.writable and not m.pfnmap and counts[m.pfn] > 1
            and st.pages.get(m.pfn, PageInfo(0, -1, -1, False)).anon]


@mm_invariant("mm.shared_buffer",
              "A shared buffer's page is unmovable and not anonymous; its reference count is "
              "its number of mappings plus the kernel's own reference; it is freed (pfn -1) "
              "only when both are gone.",
              "mm/memory.c vm_insert_page (folio_get); include/linux/mm.h put_page; "
              "include/linux/gfp.h gfp_migratetype(GFP_USER) == MIGRATE_UNMOVABLE")
def inv_buffer(st: MmState) -> list[str]:
    counts = _mapcounts(st)
    out = []
    for b in st.buffer_pages:
        if b.pfn < 0:
            if b.kernel_ref:
                out.append(f"buffer {b.bid} page {b.idx} is gone while the kernel holds it")
            continue
        p = st.pages.get(b.pfn, PageInfo(0, -1, -1, False))
        want = counts.get(b.pfn, 0) + b.kernel_ref
        if p.refcount != want:
            out.append(f"buffer {b.bid} page {b.idx} (pfn {b.pfn:#x}): page_count {p.refcount}, "
                       f"expected {want} ({counts.get(b.pfn, 0)} mappings + kernel "
                       f"{int(b.kernel_ref)})")
        if p.anon or p.migratetype == MIGRATE_MOVABLE:
            out.append(f"buffer {b.bid} page {b.idx} (pfn {b.pfn:#x}) is movable or "
                       "anonymous")
    return out


def mm_violations(st: MmState) -> list[str]:
    """Every violation of every invariant above, prefixed with the invariant's name."""
    return MM_INVARIANTS.violations(st)


STEP_INVARIANT = ("mm.unmovable_stay",
                  "Unmovable pages never change pfn: a shared buffer's page keeps its pfn for "
                  "as long as it lives, and a live process's page-table pages stay its own "
                  "until freed (munmap's free_pgtables, exit), never replaced by others.",
                  "mm/compaction.c isolate_migratepages_block (only LRU or movable_ops "
                  "pages), mm/migrate.c")


def mm_step_violations(before: MmState, after: MmState) -> list[str]:
    """The step invariant ``mm.unmovable_stay`` between two consecutive states."""
    out = []
    old = {(b.bid, b.idx): b.pfn for b in before.buffer_pages if b.pfn >= 0}
    for b in after.buffer_pages:
        was = old.get((b.bid, b.idx))
        if was is not None and b.pfn >= 0 and b.pfn != was:
            out.append(f"buffer {b.bid} page {b.idx} moved from pfn {was:#x} to {b.pfn:#x}")
    live = set(after.task_size)
    # munmap's free_pgtables may free a live process's tables, but never replaces one in the
    # same step: a table lost while the pid gained another has moved
    gained = {pid for pfn, pid in after.pagetable_pfns.items()
              if before.pagetable_pfns.get(pfn) != pid}
    for pfn, pid in before.pagetable_pfns.items():
        if pid in live and pid in gained and after.pagetable_pfns.get(pfn) != pid:
            out.append(f"page-table page {pfn:#x} of live pid {pid} moved (lost while the "
                       "process gained another)")
    return [f"{STEP_INVARIANT[0]}: {m}" for m in out]
