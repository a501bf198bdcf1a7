"""The invariants of one tree of x86-64 page tables, written once: impl/pgtable.py's trees are
checked with :func:`tree_violations`, and proofs/pgtable.py's induction states the same
per-slot predicates over a symbolic tree (they are kit functions: ints or Z3 bit-vectors).

A tree is its root table, the tables it owns (pfn -> 512 entries) and each table's level
(0 PGD, 1 PUD, 2 PMD, 3 PTE). The rules, from arch/x86/include/asm/pgalloc.h (``*_populate``
write ``_PAGE_TABLE | __pa(table)``), pgtable_types.h and mm/memory.c:

* ``pgtable.root``: the root is a table of the tree at level 0.
* ``pgtable.upper_entry``: a non-empty PGD/PUD/PMD entry is present, carries exactly the
  _PAGE_TABLE flags, and points to a table of the same tree one level down.
* ``pgtable.leaf_entry``: a non-empty PTE is present (_PAGE_PRESENT or _PAGE_PROTNONE) and
  maps no page-table page of the tree (page-table pages belong to the page tables only).
* ``pgtable.tree``: no two upper entries point to the same table, so (levels growing by one
  from the root) the tables form a tree and distinct (table path, index) are distinct slots.
* ``pgtable.linked`` (concrete check only): every table but the root has a parent entry
  (tables emptied by unmapping stay linked, as vunmap leaves them).
* ``pgtable.nr_present`` (concrete check only): the tree's count of present PTEs is right.

Across the trees of one machine (:func:`system_violations`, concrete):

* ``pgtable.disjoint``: no table page belongs to two trees.
* ``pgtable.owned``: the pages the page allocator records as owned by page tables are
  exactly the trees' table pages (a table freed or leaked behind the trees' back shows).
* ``pgtable.nr_page_table_pages``: each node's NR_PAGETABLE (/proc/meminfo ``PageTables``,
  zoneinfo ``nr_page_table_pages``) is the number of that node's tables that
  :func:`counted_in_nr_pagetable` says the kernel counts.

Of a process tree against its VMAs (:func:`unused_table_violations`, concrete):

* ``pgtable.unused_table``: every PUD, PMD and PTE table of a process covers some address of
  a VMA: munmap's free_pgtables() (mm/memory.c free_pgd_range) frees the tables no remaining
  VMA shares, exit frees them all, so a table over unmapped space only is a leak.

The constants are restated from pgtable_types.h, independently of impl/pgtable.py.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from spec.logic import And, Bits, Implies, Not, lshr

_PAGE_PRESENT: Final = 0x1
_PAGE_PROTNONE: Final = 0x100  # _PAGE_BIT_PROTNONE = _PAGE_BIT_GLOBAL
_PAGE_TABLE: Final = 0x67  # __PP | __RW | _USR | ___A | ___D
PTE_PFN_MASK: Final = 0x000FFFFFFFFFF000  # PHYSICAL_PAGE_MASK with __PHYSICAL_MASK_SHIFT 52
PTE_FLAGS_MASK: Final = 0xFFFFFFFFFFFFFFFF ^ PTE_PFN_MASK
LEAF_LEVEL: Final = 3
KERNEL_PGD_BOUNDARY: Final = 256  # a process PGD's entries from here on are init_mm's

INVARIANTS: Final = ("pgtable.root", "pgtable.upper_entry", "pgtable.leaf_entry",
                     "pgtable.tree", "pgtable.linked", "pgtable.nr_present")
SYSTEM_INVARIANTS: Final = ("pgtable.disjoint", "pgtable.owned", "pgtable.nr_page_table_pages",
                            "pgtable.unused_table")
LEVEL_SPAN_SHIFTS: Final = (48, 39, 30, 21)  # the span of one table at each level
PGD_LEVEL: Final = 0
PTE_LEVEL: Final = LEAF_LEVEL


def counted_in_nr_pagetable(level: int, user: bool) -> bool:
    """Whether a table page at ``level`` of a process tree (``user``) or of init_mm's counts
    in NR_PAGETABLE in Linux 6.12: only the ``pagetable_{pud,pmd,pte}_ctor`` of
    include/linux/mm.h add to it. A PGD never (x86 ``_pgd_alloc`` is a plain
    ``__get_free_pages``); init_mm's PTE tables neither (6.12's
    ``__pte_alloc_one_kernel_noprof``, include/asm-generic/pgalloc.h, which vmalloc's
    ``vmap_pte_range`` -> ``__pte_alloc_kernel`` uses, runs no ctor: a ctor came only in
    6.16); PUD and PMD tables always (``__pud_alloc_one_noprof`` / ``__pmd_alloc_one_noprof``
    run theirs for init_mm too), and a process's PTE tables (``__pte_alloc_one_noprof``)."""
    return level != PGD_LEVEL and (user or level != PTE_LEVEL)


def entry_pfn(entry: Bits) -> Bits:
    """The pfn an entry holds: (entry & PTE_PFN_MASK) >> PAGE_SHIFT."""
    return lshr(entry & PTE_PFN_MASK, 12)


def upper_entry_ok(entry: Bits, level: Bits, child_owned: Bits, child_level: Bits) -> Bits:
    """pgtable.upper_entry for one entry of a table at ``level`` (< 3) whose target table
    (entry_pfn(entry)) is ``child_owned`` by the tree at ``child_level``."""
    return Implies(entry != 0, And(entry & _PAGE_PRESENT != 0,
                                   entry & PTE_FLAGS_MASK == _PAGE_TABLE,
                                   child_owned, child_level == level + 1))


def leaf_entry_ok(entry: Bits, target_owned: Bits) -> Bits:
    """pgtable.leaf_entry for one PTE whose target page is (``target_owned``) or is not a
    table of the tree."""
    return Implies(entry != 0, And(entry & (_PAGE_PRESENT | _PAGE_PROTNONE) != 0,
                                   Not(target_owned)))


def children_distinct(e1: Bits, e2: Bits, same_slot: Bits) -> Bits:
    """pgtable.tree for two upper entries: at different slots, non-empty entries point to
    different tables."""
    return Implies(And(e1 != 0, e2 != 0, Not(same_slot)), entry_pfn(e1) != entry_pfn(e2))


def tree_violations(root: int, tables: Mapping[int, Sequence[int]], levels: Mapping[int, int],
                    nr_present: int, user: bool) -> list[str]:
    """Every violated invariant of a concrete tree, as "<name>: <message>" (linear in the
    tree). For a process tree (``user``), PGD entries from KERNEL_PGD_BOUNDARY on are init_mm's
    (pgd_ctor clones them) and are not checked here."""
    out: list[str] = []
    if root not in tables or levels.get(root) != 0:
        out.append(f"pgtable.root: root {root:#x} is not a level-0 table of the tree")
    parent: dict[int, tuple[int, int]] = {}
    present = 0
    for pfn, entries in tables.items():
        lv = levels.get(pfn, -1)
        if len(entries) != 512:
            out.append(f"pgtable.upper_entry: table {pfn:#x} has {len(entries)} entries")
        for i, e in enumerate(entries):
            if user and pfn == root and i >= KERNEL_PGD_BOUNDARY:
                break
            if e == 0:
                continue
            child = int(entry_pfn(e))
            if lv == LEAF_LEVEL:
                if not leaf_entry_ok(e, child in tables):
                    out.append(f"pgtable.leaf_entry: pte {e:#x} at {pfn:#x}[{i}]")
                present += e & (_PAGE_PRESENT | _PAGE_PROTNONE) != 0
                continue
            if not upper_entry_ok(e, lv, child in tables, levels.get(child, -1)):
                out.append(f"pgtable.upper_entry: entry {e:#x} at level {lv} {pfn:#x}[{i}]")
            if child in parent and e & _PAGE_PRESENT:
                out.append(f"pgtable.tree: table {child:#x} is pointed to from "
                           f"{parent[child][0]:#x}[{parent[child][1]}] and {pfn:#x}[{i}]")
            parent[child] = (pfn, i)
    for pfn in tables:
        if pfn != root and pfn not in parent:
            out.append(f"pgtable.linked: table {pfn:#x} has no parent entry")
    if present != nr_present:
        out.append(f"pgtable.nr_present: {present} present PTEs, the tree counts {nr_present}")
    return out


def system_violations(trees: Sequence[tuple[str, bool, Mapping[int, int]]],
                      owned_by_pgtable: Iterable[int], nr_page_table_pages: Sequence[int],
                      nid_of: Callable[[int], int]) -> list[str]:
    """The cross-tree rules (module docstring) of one machine: ``trees`` is (name, user,
    {table pfn: level}) per tree (buddy pages only: init_mm's static PGD is none),
    ``owned_by_pgtable`` the pages the page allocator records as page-table pages,
    ``nr_page_table_pages`` the per-node counter, ``nid_of`` a page's node."""
    out: list[str] = []
    seen: dict[int, str] = {}
    counted = [0] * len(nr_page_table_pages)
    for name, user, levels in trees:
        for pfn, lv in levels.items():
            if pfn in seen:
                out.append(f"pgtable.disjoint: table {pfn:#x} is in {seen[pfn]} and {name}")
            seen[pfn] = name
            if counted_in_nr_pagetable(lv, user):
                counted[nid_of(pfn)] += 1
    owned = set(owned_by_pgtable)
    if owned != set(seen):
        out.append(f"pgtable.owned: pages owned by page tables {sorted(owned - set(seen))} "
                   f"are in no tree; tree pages {sorted(set(seen) - owned)} are not owned")
    if counted != list(nr_page_table_pages):
        out.append(f"pgtable.nr_page_table_pages: counter {list(nr_page_table_pages)}, the "
                   f"trees have {counted} tables the kernel counts")
    return out


def unused_table_violations(spans: Iterable[tuple[int, int, int]],
                            vmas: Sequence[tuple[int, int]]) -> list[str]:
    """``pgtable.unused_table`` for one process tree: ``spans`` is (table pfn, level, the
    first address the table maps) for its PUD/PMD/PTE tables, ``vmas`` the process's
    [vm_start, vm_end) ranges in address order."""
    out = []
    starts = [s for s, _ in vmas]
    for pfn, level, va in spans:
        if level == PGD_LEVEL:
            continue
        end = va + (1 << LEVEL_SPAN_SHIFTS[level])
        i = bisect.bisect_left(starts, end) - 1  # the last VMA starting below the span's end
        if i < 0 or vmas[i][1] <= va:
            out.append(f"pgtable.unused_table: level-{level} table {pfn:#x} maps "
                       f"[{va:#x}, {end:#x}), where no VMA is (free_pgtables frees it)")
    return out
