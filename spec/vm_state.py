"""The specification's view of kernel virtual memory (vmalloc) and its invariants, each defined
once.

The vmalloc range is tiled exactly by live areas, lazily freed (unpurged) areas and free
blocks; each live area is page aligned, ends with an unmapped guard page and maps its pages
contiguously, one PAGE_KERNEL PTE each, to pages the page allocator gave to vmalloc; no page
is mapped twice outside the direct map; page-table pages belong to the page tables alone.
The implementation (impl/vmalloc.py) maps onto :class:`VmState` by
``impl.vmalloc.abstract_vm``; ``vm_violations`` evaluates every invariant on it (tests, the
state machines, the model checker, debug checks).

Sources: mm/vmalloc.c (alloc_vmap_area, __get_vm_area_node's guard page, va_clip,
merge_or_add_vmap_area, free_vmap_area_noflush, __vmalloc_area_node, vmap_pages_range,
vfree), include/linux/vmalloc.h (get_vm_area_size), arch/x86/include/asm/pgtable_64_types.h
(the range).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import NamedTuple

from spec.checks import CheckedInvariant, CheckRegistry
from spec.layout import PAGE_SIZE


class VmArea(NamedTuple):
    """One live vmalloc area: ``size`` is vm->size (guard page included when ``guard``),
    ``pfns`` the pages it was given, in address order (vm->pages); ``requested`` the size the
    caller asked for (vm->requested_size; -1: not known)."""

    start: int
    size: int
    guard: bool
    pfns: tuple[int, ...]
    requested: int = -1


@dataclass(frozen=True)
class VmState:
    """Everything the vmalloc invariants look at.

    ``vmalloc_end`` is exclusive (the kernel's VMALLOC_END + 1); ``lazy`` and ``free`` are
    [start, end) ranges by address; ``mappings`` every present PTE of init_mm outside the
    direct map as (va, pfn); ``table_pfns`` every page-table page of init_mm from the page
    allocator; ``allocated`` the page allocator's allocated blocks as (pfn, order, owner);
    ``nr_vmalloc_pages`` and ``vmap_lazy_nr`` the kernel's counters."""

    vmalloc_start: int
    vmalloc_end: int
    areas: tuple[VmArea, ...]
    lazy: tuple[tuple[int, int], ...]
    free: tuple[tuple[int, int], ...]
    mappings: tuple[tuple[int, int], ...]
    table_pfns: frozenset[int]
    allocated: tuple[tuple[int, int, str], ...]
    nr_vmalloc_pages: int
    vmap_lazy_nr: int
    vmalloc_owner: str = "vmalloc"
    pgtable_owner: str = "pgtable"


VmInvariant = CheckedInvariant[VmState]
VM_INVARIANTS: CheckRegistry[VmState] = CheckRegistry()
vm_invariant = VM_INVARIANTS.register


def _allocated_by_pfn(st: VmState) -> dict[int, tuple[int, str]]:
    """The page allocator's allocated blocks as pfn -> (order, owner)."""
    return {p: (o, owner) for p, o, owner in st.allocated}


def mapped_size(a: VmArea) -> int:
    """get_vm_area_size(): the area without its guard page."""
    return a.size - (PAGE_SIZE if a.guard else 0)


@vm_invariant("vm.area_shape",
              "Every live area is page aligned, a whole number of pages, inside the vmalloc "
              "range (ending at or below the kernel's inclusive VMALLOC_END), maps exactly "
              "the caller's size rounded up to whole pages, and, unless VM_NO_GUARD, is one "
              "guard page longer than that.",
              "mm/vmalloc.c __get_vm_area_node() (size += PAGE_SIZE), alloc_vmap_area() "
              "BUG_ONs, va_alloc() vend check")
def inv_area_shape(st: VmState) -> list[str]:
    out = []
    for a in st.areas:
        if a.start % PAGE_SIZE or a.size % PAGE_SIZE or a.size <= 0:
            out.append(f"area {a.start:#x} (size {a.size}) is not page aligned")
        if a.start < st.vmalloc_start or a.start + a.size > st.vmalloc_end - 1:
            out.append(f"area {a.start:#x}-{a.start + a.size:#x} leaves the vmalloc range "
                       f"{st.vmalloc_start:#x}-{st.vmalloc_end - 1:#x}")
        if mapped_size(a) != len(a.pfns) * PAGE_SIZE:
            out.append(f"area {a.start:#x}: {len(a.pfns)} pages for {mapped_size(a)} mapped "
                       "bytes (guard page missing or extra)")
        if a.requested >= 0 and mapped_size(a) != -(-a.requested // PAGE_SIZE) * PAGE_SIZE:
            out.append(f"area {a.start:#x}: maps {mapped_size(a)} bytes for a request of "
                       f"{a.requested} (PAGE_ALIGN: {-(-a.requested // PAGE_SIZE) * PAGE_SIZE}"
                       "; the guard page taken from the request?)")
    return out


@vm_invariant("vm.tiling",
              "Live areas, unpurged areas and free blocks are disjoint and together cover "
              "the vmalloc range exactly: no address space is lost or handed out twice, and "
              "free blocks never touch (freeing always coalesces).",
              "mm/vmalloc.c va_clip(), merge_or_add_vmap_area(), free_vmap_area_noflush()")
def inv_tiling(st: VmState) -> list[str]:
    out = []
    pieces = sorted([(a.start, a.start + a.size, "area") for a in st.areas]
                    + [(s, e, "unpurged") for s, e in st.lazy]
                    + [(s, e, "free") for s, e in st.free])
    cur = st.vmalloc_start
    prev_kind = ""
    for s, e, kind in pieces:
        if e <= s:
            out.append(f"empty {kind} range at {s:#x}")
        if s < cur:
            out.append(f"{kind} {s:#x}-{e:#x} overlaps the range before it (ending {cur:#x})")
        elif s > cur:
            out.append(f"{cur:#x}-{s:#x} is in no area and not free (address space leaked)")
        if kind == "free" and prev_kind == "free" and s == cur:
            out.append(f"free blocks touch at {s:#x} (not coalesced)")
        cur = max(cur, e)
        prev_kind = kind
    if cur != st.vmalloc_end:
        out.append(f"the range ends at {cur:#x}, not at {st.vmalloc_end:#x}")
    return out


@vm_invariant("vm.contiguous",
              "An area is virtually contiguous: page i of its mapped part has a present PTE "
              "to the area's i-th page; its guard page has no PTE, so two areas never touch.",
              "mm/vmalloc.c vmap_pages_range(), vmap_pte_range(); __get_vm_area_node()")
def inv_contiguous(st: VmState) -> list[str]:
    out = []
    m = dict(st.mappings)
    for a in st.areas:
        for i, pfn in enumerate(a.pfns):
            va = a.start + i * PAGE_SIZE
            got = m.get(va)
            if got != pfn:
                out.append(f"area {a.start:#x} page {i} ({va:#x}) maps "
                           f"{'nothing' if got is None else hex(got)}, expected {pfn:#x}")
        if a.guard and a.start + mapped_size(a) in m:
            out.append(f"area {a.start:#x}: its guard page {a.start + mapped_size(a):#x} "
                       "is mapped")
    return out


@vm_invariant("vm.pages_owned",
              "Every page of an area is an allocated order-0 block owned by vmalloc, given to "
              "that area only; every vmalloc-owned page belongs to a live area; the counter "
              "nr_vmalloc_pages counts them and vmap_lazy_nr the unpurged pages.",
              "mm/vmalloc.c vm_area_alloc_pages(), vfree() (__free_page each page), "
              "nr_vmalloc_pages, vmap_lazy_nr")
def inv_pages_owned(st: VmState) -> list[str]:
    out = []
    alloc = _allocated_by_pfn(st)
    seen: dict[int, int] = {}
    for a in st.areas:
        for pfn in a.pfns:
            if alloc.get(pfn) != (0, st.vmalloc_owner):
                out.append(f"area {a.start:#x}: pfn {pfn:#x} is "
                           f"{alloc.get(pfn, 'free')}, not an order-0 vmalloc page")
            if pfn in seen:
                out.append(f"pfn {pfn:#x} is a page of areas {seen[pfn]:#x} and {a.start:#x}")
            seen[pfn] = a.start
    for p, (_o, owner) in alloc.items():
        if owner == st.vmalloc_owner and p not in seen:
            out.append(f"pfn {p:#x} is owned by vmalloc but in no live area (leaked)")
    n = sum(len(a.pfns) for a in st.areas)
    if st.nr_vmalloc_pages != n:
        out.append(f"nr_vmalloc_pages {st.nr_vmalloc_pages}, but the areas hold {n} pages")
    lazy = sum(e - s for s, e in st.lazy) // PAGE_SIZE
    if st.vmap_lazy_nr != lazy:
        out.append(f"vmap_lazy_nr {st.vmap_lazy_nr}, but {lazy} pages are unpurged")
    return out


@vm_invariant("vm.no_alias",
              "No physical page is mapped at two kernel virtual addresses outside the direct "
              "map, and every such PTE lies in the mapped part of a live area (vfree leaves "
              "no stale PTE).",
              "mm/vmalloc.c vunmap_range_noflush() in remove_vm_area()")
def inv_no_alias(st: VmState) -> list[str]:
    out = []
    by_pfn: dict[int, int] = {}
    for va, pfn in st.mappings:
        if pfn in by_pfn:
            out.append(f"pfn {pfn:#x} is mapped at {by_pfn[pfn]:#x} and {va:#x}")
        by_pfn[pfn] = va
    spans = sorted((a.start, a.start + mapped_size(a)) for a in st.areas)
    starts = [s for s, _ in spans]
    for va, _pfn in st.mappings:
        i = bisect.bisect_right(starts, va) - 1
        if i < 0 or va >= spans[i][1]:
            out.append(f"{va:#x} is mapped but in no live area's pages")
    return out


@vm_invariant("vm.pgtable_pages",
              "Page-table pages are allocated order-0 blocks owned by the page tables and by "
              "nothing else: never free, never a page of an area, never mapped.",
              "mm/memory.c __pte_alloc_kernel(), __pmd_alloc(), __pud_alloc(); "
              "include/linux/mm.h pagetable_alloc()")
def inv_pgtable_pages(st: VmState) -> list[str]:
    out = []
    alloc = _allocated_by_pfn(st)
    area_pfns = {p for a in st.areas for p in a.pfns}
    mapped = {pfn for _va, pfn in st.mappings}
    for p in sorted(st.table_pfns):
        if alloc.get(p) != (0, st.pgtable_owner):
            out.append(f"page-table page {p:#x} is {alloc.get(p, 'free')}, not an order-0 "
                       "page-table block")
        if p in area_pfns:
            out.append(f"page-table page {p:#x} is also a page of a vmalloc area")
        if p in mapped:
            out.append(f"page-table page {p:#x} is mapped in the vmalloc range")
    return out


def vm_violations(st: VmState) -> list[str]:
    """Every violation of every vmalloc invariant, prefixed with the invariant's name."""
    return VM_INVARIANTS.violations(st)
