"""impl/pgtable.py: x86-64 4-level page tables on top of the page allocator, and the
x86-64 layout predicates of spec/layout.py."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from impl.direct_map import page_to_virt, virt_to_page
from impl.machine import MachineConfig
from impl.page_alloc import OWNER_PAGES, PageAllocator
from impl.pgtable import (
    _PAGE_TABLE,
    GFP_PGTABLE_KERNEL,
    GFP_PGTABLE_USER,
    OWNER_PGTABLE,
    PAGE_KERNEL,
    PAGE_NONE,
    PAGE_READONLY,
    PAGE_SHARED,
    PGD_ALLOCATION_ORDER,
    PTE_PFN_MASK,
    SWAPPER_PG_DIR,
    PageTable,
    mk_table_entry,
    page_offset_of,
    pfn_pte,
    pgd_index,
    pmd_index,
    pte_index,
    pte_pfn,
    pte_present,
    pud_index,
    va_of,
)
from impl.vmalloc import Vmalloc
from spec.context import Context
from spec.errors import (
    AlreadyMappedError,
    BadPteError,
    BadVirtualAddressError,
    KmemError,
    NonCanonicalError,
    NotMappedError,
    PageTableBusyError,
    PageTableError,
    PageTableNoMemError,
    SleepInAtomicError,
)
from spec.gfp import GFP_KERNEL
from spec.layout import (
    DIRECT_MAP_SIZE,
    KERNEL_VMALLOC_END,
    PAGE_OFFSET,
    PAGE_SIZE,
    TASK_SIZE_MAX,
    VMALLOC_END,
    VMALLOC_START,
    direct_map_contains,
    is_canonical,
    is_user_addr,
    is_vmalloc_addr,
    virt_addr_valid,
)
from tests.conftest import snapshot

V = VMALLOC_START


def _pa() -> PageAllocator:
    return PageAllocator(MachineConfig.tiny())


def _state(pa: PageAllocator, *trees: PageTable) -> dict[str, Any]:
    return {"pages": snapshot(pa),
            "trees": [(t.root, copy.deepcopy(t.tables), dict(t.levels), t.nr_present, t.freed)
                      for t in trees]}


# --- layout and kit functions ---------------------------------------------------------------

def test_indices_of_known_addresses() -> None:
    """The values Documentation/arch/x86/x86_64/mm.rst's layout gives."""
    assert pgd_index(PAGE_OFFSET) == 273
    assert pgd_index(VMALLOC_START) == 402
    assert pgd_index(KERNEL_VMALLOC_END) == 465
    assert (pgd_index(0xFFFFFFFF80000000), pud_index(0xFFFFFFFF80000000)) == (511, 510)
    va = 0x00007F1234567ABC
    parts = (pgd_index(va), pud_index(va), pmd_index(va), pte_index(va), page_offset_of(va))
    assert parts == (254, 72, 418, 359, 0xABC)
    assert va_of(*parts) == va
    assert va_of(pgd_index(V), pud_index(V), pmd_index(V), pte_index(V), 0) == V


def test_pte_encoding() -> None:
    pte = pfn_pte(0x12345, PAGE_KERNEL)
    assert pte == 0x8000000012345163
    assert pte_pfn(pte) == 0x12345 and pte_present(pte)
    assert pte_present(pfn_pte(7, PAGE_NONE))  # PROT_NONE: _PAGE_PROTNONE counts as present
    assert not pte_present(0)
    assert mk_table_entry(9) == 0x9067 and _PAGE_TABLE == 0x67
    assert PTE_PFN_MASK == 0x000FFFFFFFFFF000


def test_layout_predicates() -> None:
    assert is_canonical(0) and is_canonical(TASK_SIZE_MAX) and is_canonical(PAGE_OFFSET)
    assert not is_canonical(1 << 47) and not is_canonical(0xFFFF7FFFFFFFFFFF)
    assert not is_canonical(-1) and not is_canonical(1 << 64)
    assert TASK_SIZE_MAX == 0x00007FFFFFFFF000
    assert is_user_addr(TASK_SIZE_MAX - 1) and not is_user_addr(TASK_SIZE_MAX)
    assert is_vmalloc_addr(VMALLOC_START) and is_vmalloc_addr(KERNEL_VMALLOC_END - 1)
    assert not is_vmalloc_addr(KERNEL_VMALLOC_END) and not is_vmalloc_addr(VMALLOC_START - 1)
    assert KERNEL_VMALLOC_END == 0xFFFFE8FFFFFFFFFF and VMALLOC_END == KERNEL_VMALLOC_END + 1
    assert direct_map_contains(PAGE_OFFSET + DIRECT_MAP_SIZE - 1)
    assert not direct_map_contains(PAGE_OFFSET + DIRECT_MAP_SIZE)
    assert not direct_map_contains(PAGE_OFFSET - 1)
    assert virt_addr_valid(PAGE_OFFSET + 5 * PAGE_SIZE + 3, 32)
    assert not virt_addr_valid(PAGE_OFFSET + 32 * PAGE_SIZE, 32)  # beyond max_pfn
    assert not virt_addr_valid(VMALLOC_START, 1 << 40)  # vmalloc addresses are not
    assert virt_to_page(page_to_virt(77)) == 77 and page_to_virt(1) == PAGE_OFFSET + PAGE_SIZE


# --- kernel tree ------------------------------------------------------------------------------

def test_kernel_map_allocates_three_tables_and_counts_pud_and_pmd() -> None:
    """init_mm's PTE tables are not in NR_PAGETABLE in 6.12 (pte_alloc_one_kernel runs no
    pagetable_pte_ctor, include/asm-generic/pgalloc.h); its PUD and PMD tables are."""
    pa = _pa()
    k = PageTable(pa, user=False)
    assert k.root == SWAPPER_PG_DIR and k.table_pfns() == set()
    assert pa.nr_page_table_pages == [0]
    page = pa.alloc_pages_node(-1, GFP_KERNEL, 0)
    assert page is not None
    k.map_page(V, page, PAGE_KERNEL, gfp=GFP_PGTABLE_KERNEL)
    tables = k.table_pfns()
    assert len(tables) == 3 and pa.nr_page_table_pages == [2]
    assert all(pa.allocated[p][2] == OWNER_PGTABLE and pa.allocated[p][0] == 0 for p in tables)
    assert k.lookup(V) == pfn_pte(page, PAGE_KERNEL) and k.lookup(V + 123) == k.lookup(V)
    assert k.pte_of(V + PAGE_SIZE) == 0 and k.lookup(V + PAGE_SIZE) is None
    # the next page of the same PTE table needs no new table
    k.map_page(V + PAGE_SIZE, page, PAGE_KERNEL, gfp=GFP_PGTABLE_KERNEL)
    assert pa.nr_page_table_pages == [2]
    assert list(k.mappings()) == [(V, pfn_pte(page, PAGE_KERNEL)),
                                  (V + PAGE_SIZE, pfn_pte(page, PAGE_KERNEL))]
    assert k.unmap_page(V) == page and k.lookup(V) is None and k.nr_present == 1
    # emptied tables stay, as vunmap leaves them
    assert k.unmap_page(V + PAGE_SIZE) == page and pa.nr_page_table_pages == [2]
    assert k.table_pfns() == tables and list(k.mappings()) == []


def test_walk_follows_entries() -> None:
    pa = _pa()
    k = PageTable(pa, user=False)
    k.map_page(V, 5, PAGE_KERNEL, gfp=GFP_PGTABLE_KERNEL)
    pgd = k.tables[k.root]
    pud_pfn = pte_pfn(pgd[pgd_index(V)])
    assert pgd[pgd_index(V)] & 0xFFF == _PAGE_TABLE
    pmd_pfn = pte_pfn(k.tables[pud_pfn][pud_index(V)])
    pt_pfn = pte_pfn(k.tables[pmd_pfn][pmd_index(V)])
    assert k.tables[pt_pfn][pte_index(V)] == pfn_pte(5, PAGE_KERNEL)
    assert [k.levels[p] for p in (pud_pfn, pmd_pfn, pt_pfn)] == [1, 2, 3]
    assert k.counted_table_pfns() == {pud_pfn, pmd_pfn}  # not init_mm's PTE table


def test_map_pages_and_unmap_range_cross_a_pte_table() -> None:
    pa = _pa()
    k = PageTable(pa, user=False)
    va = V + 2 * 1024 * 1024 - 2 * PAGE_SIZE  # two pages before a PMD boundary
    k.map_pages(va, [10, 11, 12, 13], PAGE_KERNEL, gfp=GFP_PGTABLE_KERNEL)
    assert pa.nr_page_table_pages == [2]  # PUD, PMD; the two PTE tables are init_mm's
    assert len(k.table_pfns()) == 4
    assert [pte_pfn(k.pte_of(va + i * PAGE_SIZE)) for i in range(4)] == [10, 11, 12, 13]
    assert k.nr_present == 4
    with pytest.raises(AlreadyMappedError):
        k.map_pages(va - PAGE_SIZE, [1, 2], PAGE_KERNEL, gfp=GFP_PGTABLE_KERNEL)
    assert k.pte_of(va - PAGE_SIZE) == 0
    assert k.unmap_range(va - PAGE_SIZE, 6) == [10, 11, 12, 13]  # holes skipped
    assert k.nr_present == 0 and list(k.mappings()) == []


def test_preallocate_vmalloc_pages() -> None:
    pa = PageAllocator(MachineConfig.default())
    k = PageTable(pa, user=False)
    assert k.preallocate_vmalloc_pages() == 64
    assert pa.nr_page_table_pages == [64, 0]
    assert k.preallocate_vmalloc_pages() == 0


# --- process trees ----------------------------------------------------------------------------

def test_process_tree_pgd_and_exit() -> None:
    pa = _pa()
    free0 = pa.nr_free_pages()
    k = PageTable(pa, user=False)
    k.map_page(V, 3, PAGE_KERNEL, gfp=GFP_PGTABLE_KERNEL)
    u = PageTable(pa, user=True, kernel=k)
    assert pa.allocated[u.root][0] == PGD_ALLOCATION_ORDER
    assert pa.allocated[u.root][2] == OWNER_PGTABLE
    assert pa.nr_page_table_pages == [2]  # the PGD is not counted in 6.12
    # pgd_ctor cloned the kernel half
    assert u.tables[u.root][pgd_index(V)] == k.tables[k.root][pgd_index(V)]
    assert u.lookup(V) is None and list(u.mappings()) == []
    u.map_page(0x400000, 4, PAGE_SHARED, gfp=GFP_PGTABLE_USER)
    u.map_page(0x7FFFFFFFE000, 5, PAGE_READONLY, gfp=GFP_PGTABLE_USER)
    assert pa.nr_page_table_pages == [8]  # + the process's PUD, PMD, PTE tables, twice
    assert [va for va, _ in u.mappings()] == [0x400000, 0x7FFFFFFFE000]
    with pytest.raises(PageTableBusyError):
        u.free_tables()
    assert u.unmap_page(0x400000) == 4 and u.unmap_page(0x7FFFFFFFE000) == 5
    u.free_tables()
    assert pa.nr_page_table_pages == [2] and u.freed
    assert pa.nr_free_pages() == free0 - 3
    with pytest.raises(PageTableBusyError):
        u.map_page(0x400000, 4, PAGE_SHARED, gfp=GFP_PGTABLE_USER)
    assert all(rec[2] != OWNER_PGTABLE or p in k.table_pfns()
               for p, rec in pa.allocated.items())


def test_freed_tables_return_to_the_allocator_as_plain_pages() -> None:
    pa = _pa()
    u = PageTable(pa, user=True)
    u.map_page(0x1000, 1, PAGE_SHARED, gfp=GFP_PGTABLE_USER)
    tables = u.table_pfns()
    u.unmap_page(0x1000)
    u.free_tables()
    assert not tables & set(pa.allocated)
    assert pa.nr_page_table_pages == [0]
    assert OWNER_PAGES  # the owner a table page is handed back with before free_pages


# --- bad input: typed error, nothing changed -------------------------------------------------

@pytest.mark.parametrize(("user", "va", "pfn", "prot", "err"), [
    (False, 1 << 47, 1, PAGE_KERNEL, NonCanonicalError),
    (False, V + 1, 1, PAGE_KERNEL, BadVirtualAddressError),
    (False, 0x1000, 1, PAGE_KERNEL, BadVirtualAddressError),  # user address in init_mm
    (True, TASK_SIZE_MAX, 1, PAGE_SHARED, BadVirtualAddressError),
    (True, V, 1, PAGE_SHARED, BadVirtualAddressError),  # kernel address in a process
    (True, 0x1000, -1, PAGE_SHARED, BadPteError),
    (True, 0x1000, 1 << 40, PAGE_SHARED, BadPteError),
    (True, 0x1000, 1, 0, BadPteError),  # neither present nor PROT_NONE
    (True, 0x1000, 1, PAGE_SHARED | 0x1000, BadPteError),  # pfn bits in prot
    (True, "0x1000", 1, PAGE_SHARED, BadVirtualAddressError),
])
def test_bad_map_changes_nothing(user: bool, va: Any, pfn: int, prot: int,
                                 err: type[Exception]) -> None:
    pa = _pa()
    t = PageTable(pa, user=user)
    gfp = GFP_PGTABLE_USER if user else GFP_PGTABLE_KERNEL
    t.map_page(0x2000 if user else V + 0x2000, 1, PAGE_SHARED if user else PAGE_KERNEL, gfp=gfp)
    before = _state(pa, t)
    with pytest.raises(err):
        t.map_page(va, pfn, prot, gfp=gfp)
    with pytest.raises(err):
        t.map_pages(va, [pfn], prot, gfp=gfp)
    assert _state(pa, t) == before


def test_double_map_and_unmap_not_mapped_change_nothing() -> None:
    pa = _pa()
    k = PageTable(pa, user=False)
    k.map_page(V, 1, PAGE_KERNEL, gfp=GFP_PGTABLE_KERNEL)
    before = _state(pa, k)
    with pytest.raises(AlreadyMappedError):
        k.map_page(V, 2, PAGE_KERNEL, gfp=GFP_PGTABLE_KERNEL)
    with pytest.raises(NotMappedError):
        k.unmap_page(V + PAGE_SIZE)
    with pytest.raises(NotMappedError):
        k.unmap_page(V + (1 << 30))  # no PMD table there at all
    with pytest.raises(NonCanonicalError):
        k.lookup(1 << 50)
    with pytest.raises(PageTableError):
        k.free_tables()  # init_mm's tables are never freed
    assert _state(pa, k) == before


def test_sleeping_table_allocation_in_atomic_context_changes_nothing() -> None:
    pa = _pa()
    k = PageTable(pa, user=False)
    before = _state(pa, k)
    with pytest.raises(SleepInAtomicError):
        k.map_page(V, 1, PAGE_KERNEL, gfp=GFP_PGTABLE_KERNEL, ctx=Context.HARDIRQ)
    assert _state(pa, k) == before


def test_out_of_memory() -> None:
    pa = _pa()
    while pa.alloc_pages_node(-1, GFP_KERNEL, 0) is not None:
        pass
    pa.drain_effects()
    k = PageTable(pa, user=False)
    with pytest.raises(PageTableNoMemError):
        k.map_page(V, 1, PAGE_KERNEL, gfp=GFP_PGTABLE_KERNEL)
    assert k.lookup(V) is None and k.nr_present == 0 and pa.nr_page_table_pages == [0]
    with pytest.raises(PageTableNoMemError):
        PageTable(pa, user=True)


def test_map_pages_out_of_memory_clears_its_ptes() -> None:
    pa = _pa()
    k = PageTable(pa, user=False)
    k.map_page(V, 1, PAGE_KERNEL, gfp=GFP_PGTABLE_KERNEL)
    while pa.alloc_pages_node(-1, GFP_KERNEL, 0) is not None:
        pass
    va = V + 2 * 1024 * 1024 - PAGE_SIZE  # the second page needs a new PTE table
    with pytest.raises(PageTableNoMemError):
        k.map_pages(va, [7, 8], PAGE_KERNEL, gfp=GFP_PGTABLE_KERNEL)
    assert k.pte_of(va) == 0 and k.nr_present == 1
    assert [va for va, _ in k.mappings()] == [V]


# --- probes for tests/test_proved_helpers.py: the page tables run the proved helpers ----------

def pgtable_scenario() -> Any:
    """Kernel and process trees: single maps, a range across a PTE table boundary, walks,
    every mapping, unmaps and the process's exit; the observable result of each."""
    pa = _pa()
    pages = [pa.alloc_pages_node(-1, GFP_KERNEL, 0) for _ in range(9)]  # pfns 0..8
    assert pages == list(range(9))
    k = PageTable(pa, user=False)
    out: list[Any] = []
    for va, pfn in ((V, 1), (V + (1 << 39), 2), (V + (1 << 30), 3), (V + (1 << 21), 4)):
        k.map_page(va, pfn, PAGE_KERNEL, gfp=GFP_PGTABLE_KERNEL)
    k.map_pages(V + (1 << 21) - PAGE_SIZE * 2 + (1 << 30), [5, 6, 7], PAGE_KERNEL,
                gfp=GFP_PGTABLE_KERNEL)
    out.append([(va, k.pte_of(va)) for va, _ in k.mappings()])
    out.append(k.unmap_page(V + (1 << 30)))
    out.append(k.unmap_range(V + (1 << 21) - PAGE_SIZE * 2 + (1 << 30), 3))
    u = PageTable(pa, user=True, kernel=k)
    u.map_page(0x7F0000201000, 8, PAGE_SHARED, gfp=GFP_PGTABLE_USER)
    u.map_page(0x400000, 0, PAGE_SHARED, gfp=GFP_PGTABLE_USER)
    out.append(list(u.mappings()))
    out.append([u.unmap_page(0x400000), u.unmap_page(0x7F0000201000)])
    u.free_tables()
    for p in (5, 6, 7, 8):  # unmapped above: room for vmalloc's pages on a tiny machine
        pa.free_pages_pfn(p, 0)
    v = Vmalloc(pa, pgtable=k)  # vmalloc on the same init_mm tree: its walk's PTE index
    a = v.vmalloc_node_range(3 * PAGE_SIZE, 1, V + 300 * PAGE_SIZE, v.kernel_vmalloc_end,
                             GFP_KERNEL)  # PTE slots 300-302: above any 8-bit index
    assert a is not None
    out.append([v.vmalloc_to_pfn(a + i * PAGE_SIZE + 5) for i in range(4)])
    out.append((sorted(k.table_pfns()), list(pa.nr_page_table_pages), k.violations()))
    return out


def _const(value: Any) -> Any:
    return lambda *args, **kw: value


def vmalloc_addr_scenario() -> Any:
    """Vmalloc.is_vmalloc_addr (spec.layout's proved function on the machine's range) at the
    range's edges, and the vfree diagnosis that uses it."""
    pa = _pa()
    v = Vmalloc(pa)
    edges = (v.vmalloc_start - 1, v.vmalloc_start, v.kernel_vmalloc_end - 1,
             v.kernel_vmalloc_end, 0x400000)
    out: list[Any] = [v.is_vmalloc_addr(a) for a in edges]
    try:
        v.vfree(0x400000)
    except KmemError as e:
        out.append(str(e))
    return out


PGTABLE_PROBES: dict[str, tuple[Any, Any]] = {
    "spec.layout.is_vmalloc_addr": (vmalloc_addr_scenario, _const(True)),
    "impl.pgtable.pgd_index": (pgtable_scenario, _const(0)),
    "impl.pgtable.pud_index": (pgtable_scenario, _const(0)),
    "impl.pgtable.pmd_index": (pgtable_scenario, _const(0)),
    "impl.pgtable.pte_index": (pgtable_scenario, lambda va: (va >> 12) & 255),
    "impl.pgtable.page_offset_of": (pgtable_scenario, _const(1)),
    "impl.pgtable.va_of": (pgtable_scenario, lambda a, b, c, d, e: a),
    "impl.pgtable.level_index": (pgtable_scenario, lambda va, level: level),
    "impl.pgtable.walk_step": (pgtable_scenario, lambda e, fresh: (fresh, e)),
    "impl.pgtable.pfn_pte": (pgtable_scenario, lambda pfn, prot: prot),
    "impl.pgtable.ptep_get_and_clear": (pgtable_scenario, lambda pte: (pte, 0)),
    "spec.layout.direct_map_contains": (
        lambda: [virt_addr_valid(PAGE_OFFSET + i * PAGE_SIZE, 4) for i in range(6)],
        _const(False)),
}
"""Proved helper -> (scenario, wrong variant), for tests/test_proved_helpers.py."""


def test_pgtable_scenario_keeps_the_invariants() -> None:
    out = pgtable_scenario()
    assert out[-1][2] == [] and out[1] == 3 and out[2] == [5, 6, 7]


def test_tree_invariants_catch_corruption() -> None:
    """spec/pgtable_state.py on a corrupted copy of a good tree: each rule fires."""
    pa = _pa()
    page = pa.alloc_pages_node(-1, GFP_KERNEL, 0)
    assert page is not None
    k = PageTable(pa, user=False)
    k.map_pages(V, [page, page], PAGE_KERNEL, gfp=GFP_PGTABLE_KERNEL)
    assert k.violations() == []
    pud = pte_pfn(k.tables[k.root][pgd_index(V)])
    pmd = pte_pfn(k.tables[pud][pud_index(V)])
    pt = pte_pfn(k.tables[pmd][pmd_index(V)])

    def broken(edit: Any) -> list[str]:
        t = copy.deepcopy(k)
        t.pa = pa
        edit(t)
        return [v.split(":")[0] for v in t.violations()]

    def flags(t: PageTable) -> None:
        t.tables[pud][pud_index(V)] &= ~0x4  # _KERNPG_TABLE instead of _PAGE_TABLE
    assert broken(flags) == ["pgtable.upper_entry"]

    def shared(t: PageTable) -> None:
        t.tables[pud][pud_index(V) + 1] = t.tables[pud][pud_index(V)]
    assert broken(shared) == ["pgtable.tree"]

    def orphan(t: PageTable) -> None:
        t.tables[pmd][pmd_index(V)] = 0
    assert broken(orphan) == ["pgtable.linked", "pgtable.cache"]  # the cache saw the old path

    def maps_a_table(t: PageTable) -> None:
        t.tables[pt][5] = pfn_pte(pmd, PAGE_KERNEL)
        t.nr_present += 1
    assert broken(maps_a_table) == ["pgtable.leaf_entry"]

    def count(t: PageTable) -> None:
        t.nr_present += 1
    assert broken(count) == ["pgtable.nr_present"]

    def level(t: PageTable) -> None:
        t.levels[pt] = 2
    assert "pgtable.upper_entry" in broken(level)
