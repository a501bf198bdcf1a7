"""x86-64 4-level page tables of Linux 6.12.117 (arch/x86/include/asm/pgtable_64_types.h,
pgtable_types.h, pgtable_64.h, pgalloc.h, arch/x86/mm/pgtable.c, mm/memory.c ``__pud_alloc``,
``__pmd_alloc``, ``__pte_alloc``, include/asm-generic/pgalloc.h, include/linux/pgtable.h).

A :class:`PageTable` is one tree: init_mm's (the kernel's, ``swapper_pg_dir``) or a process's
``mm->pgd``. P4D is folded into the PGD (4-level paging, PTRS_PER_P4D = 1), so a walk is
PGD -> PUD -> PMD -> PTE. Every table page except the kernel's PGD is a real page of the page
allocator, allocated on demand with the caller's mask (GFP_PGTABLE_KERNEL or GFP_PGTABLE_USER),
owned by the tree (``OWNER_PGTABLE`` in ``PageAllocator.allocated``) and, where the kernel's
``pagetable_{pud,pmd,pte}_ctor`` (include/linux/mm.h) runs, counted per node in
``PageAllocator.nr_page_table_pages`` (NR_PAGETABLE): every PUD and PMD table and a process's
PTE tables; not the PGD (a plain ``__get_free_pages`` in 6.12) nor init_mm's PTE tables
(6.12's ``pte_alloc_one_kernel`` runs no ctor). The rule is
:func:`spec.pgtable_state.counted_in_nr_pagetable`.

The kernel's PGD, ``swapper_pg_dir`` (init_top_pgt in arch/x86/kernel/head_64.S), is static in
the kernel image, not a buddy page: the model's init_mm tree has the sentinel root
:data:`SWAPPER_PG_DIR` (-1, never a pfn of memory) and its 512 entries in ``tables[-1]``;
:meth:`PageTable.table_pfns` lists only buddy pages. A process PGD is an order
PGD_ALLOCATION_ORDER (1: the PTI kernel/user pair of CONFIG_MITIGATION_PAGE_TABLE_ISOLATION=y,
Debian's config) block from GFP_PGTABLE_USER; the model keeps the kernel copy (the user copy is
PTI's shadow, not modelled) and, as pgd_ctor() does, may clone the kernel half (entries
KERNEL_PGD_BOUNDARY..511) from init_mm's PGD.

Index arithmetic and entry encoding are kit functions (spec/logic.py operators only), so the
proofs (proofs/pgtable.py) call these very functions with Z3 bit-vectors; the walk of the class
is built from :func:`level_index` and :func:`entry_table_pfn`, which the proofs run too.

Left out: huge pages (PSE at PUD/PMD level), the L1TF pfn inversion of PROT_NONE entries
(protnone_mask in pfn_pte), PTI's user PGD copy, the _PAGE_GLOBAL masking PTI applies to
PAGE_KERNEL, TLB flushing and page-table locks. Tables emptied by vunmap stay (the kernel
keeps init_mm's); a process's go with free_pgd_range() on munmap (the tables no remaining VMA
shares) and with free_tables() at exit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final

from impl.page_alloc import OWNER_PAGES, PageAllocator
from spec.context import Context
from spec.errors import (
    AlreadyMappedError,
    BadPteError,
    BadVirtualAddressError,
    NonCanonicalError,
    NotMappedError,
    PageTableBusyError,
    PageTableError,
    PageTableNoMemError,
)
from spec.gfp import __GFP_ACCOUNT, __GFP_ZERO, GFP_KERNEL
from spec.layout import (
    KERNEL_PGD_BOUNDARY,
    NUMA_NO_NODE,
    PAGE_SHIFT,
    PAGE_SIZE,
    PGDIR_SHIFT,
    PGDIR_SIZE,
    PMD_SHIFT,
    PMD_SIZE,
    PTRS_PER_PGD,
    PTRS_PER_PMD,
    PTRS_PER_PTE,
    PTRS_PER_PUD,
    PUD_SHIFT,
    PUD_SIZE,
    TASK_SIZE_MAX,
    U64_MASK,
    VMALLOC_SIZE,
    VMALLOC_START,
    is_canonical,
    is_user_addr,
)
from spec.layout import P4D_SHIFT as P4D_SHIFT  # re-exported, as the kernel's header has it
from spec.layout import PTRS_PER_P4D as PTRS_PER_P4D  # re-exported
from spec.logic import And, Bits, If, lshr
from spec.pgtable_state import counted_in_nr_pagetable, tree_violations

# --- PTE bits (arch/x86/include/asm/pgtable_types.h) -------------------------------------------
_PAGE_BIT_PRESENT: Final = 0
_PAGE_PRESENT: Final = 1 << 0
_PAGE_RW: Final = 1 << 1
_PAGE_USER: Final = 1 << 2
_PAGE_PWT: Final = 1 << 3
_PAGE_PCD: Final = 1 << 4
_PAGE_ACCESSED: Final = 1 << 5
_PAGE_DIRTY: Final = 1 << 6
_PAGE_PSE: Final = 1 << 7
_PAGE_GLOBAL: Final = 1 << 8
_PAGE_PROTNONE: Final = _PAGE_GLOBAL  # _PAGE_BIT_PROTNONE = _PAGE_BIT_GLOBAL
_PAGE_NX: Final = 1 << 63
_LEAF_PRESENT: Final = _PAGE_PRESENT | _PAGE_PROTNONE  # what pte_present tests
__PHYSICAL_MASK_SHIFT: Final = 52
PTE_PFN_MASK: Final = ((1 << __PHYSICAL_MASK_SHIFT) - 1) & ~(PAGE_SIZE - 1)  # PHYSICAL_PAGE_MASK
PTE_FLAGS_MASK: Final = U64_MASK & ~PTE_PFN_MASK
MAX_PTE_PFN: Final = PTE_PFN_MASK >> PAGE_SHIFT

# protections (pgtable_types.h; _ENC is 0: no memory encryption active)
_PAGE_TABLE: Final = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY  # 0x67
_KERNPG_TABLE: Final = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY  # 0x63
PAGE_NONE: Final = _PAGE_ACCESSED | _PAGE_GLOBAL
PAGE_SHARED: Final = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_SHARED_EXEC: Final = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED
PAGE_COPY_NOEXEC: Final = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_COPY: Final = PAGE_COPY_NOEXEC
PAGE_READONLY: Final = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_READONLY_EXEC: Final = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED
__PAGE_KERNEL_EXEC: Final = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_GLOBAL
PAGE_KERNEL: Final = __PAGE_KERNEL_EXEC | _PAGE_NX  # 0x8000000000000163, vmalloc's default
PAGE_KERNEL_RO: Final = PAGE_KERNEL & ~_PAGE_RW
PAGE_KERNEL_EXEC: Final = __PAGE_KERNEL_EXEC

# --- table allocation (include/asm-generic/pgalloc.h, arch/x86/include/asm/pgalloc.h) ----------
GFP_PGTABLE_KERNEL: Final = GFP_KERNEL | __GFP_ZERO
GFP_PGTABLE_USER: Final = GFP_PGTABLE_KERNEL | __GFP_ACCOUNT
PGD_ALLOCATION_ORDER: Final = 1  # CONFIG_MITIGATION_PAGE_TABLE_ISOLATION=y
OWNER_PGTABLE: Final = "pgtable"  # owner of page-table pages in PageAllocator.allocated
SWAPPER_PG_DIR: Final = -1  # root of init_mm's tree: the static swapper_pg_dir, not a buddy page

PGD_LEVEL: Final = 0
PUD_LEVEL: Final = 1
PMD_LEVEL: Final = 2
PTE_LEVEL: Final = 3
LEVEL_NAMES: Final = ("pgd", "pud", "pmd", "pte")
LEVEL_SHIFTS: Final = (PGDIR_SHIFT, PUD_SHIFT, PMD_SHIFT, PAGE_SHIFT)
_IDX: Final = PTRS_PER_PTE - 1  # every level has 512 entries


# --- kit functions ------------------------------------------------------------------------------

def pgd_index(va: Bits) -> Bits:
    """pgd_index(): bits 47..39 (include/linux/pgtable.h)."""
    return lshr(va, PGDIR_SHIFT) & (PTRS_PER_PGD - 1)


def pud_index(va: Bits) -> Bits:
    """pud_index(): bits 38..30."""
    return lshr(va, PUD_SHIFT) & (PTRS_PER_PUD - 1)


def pmd_index(va: Bits) -> Bits:
    """pmd_index(): bits 29..21."""
    return lshr(va, PMD_SHIFT) & (PTRS_PER_PMD - 1)


def pte_index(va: Bits) -> Bits:
    """pte_index(): bits 20..12."""
    return lshr(va, PAGE_SHIFT) & (PTRS_PER_PTE - 1)


def page_offset_of(va: Bits) -> Bits:
    """The offset inside the page: va & (PAGE_SIZE - 1), i.e. offset_in_page()."""
    return va & (PAGE_SIZE - 1)


def level_index(va: Bits, level: int) -> Bits:
    """The index a walk uses at ``level`` (PGD_LEVEL .. PTE_LEVEL, a Python int): the one walk
    step the class and the proofs share."""
    return (pgd_index, pud_index, pmd_index, pte_index)[level](va)


def va_of(pgd: Bits, pud: Bits, pmd: Bits, pte: Bits, off: Bits) -> Bits:
    """The canonical address with these indices and offset: the inverse of the split, with
    bit 47 sign-extended into bits 63..48."""
    low = ((pgd << PGDIR_SHIFT) | (pud << PUD_SHIFT) | (pmd << PMD_SHIFT) | (pte << PAGE_SHIFT)
           | off)
    return low | (lshr(low, 47) & 1) * (U64_MASK ^ ((1 << 48) - 1))


def pfn_pte(pfn: Bits, prot: Bits) -> Bits:
    """pfn_pte(): (pfn << PAGE_SHIFT) & PTE_PFN_MASK | prot (arch/x86/include/asm/pgtable.h;
    the PROT_NONE pfn inversion is left out)."""
    return ((pfn << PAGE_SHIFT) & PTE_PFN_MASK) | prot


def pte_pfn(pte: Bits) -> Bits:
    """pte_pfn(): (pte & PTE_PFN_MASK) >> PAGE_SHIFT."""
    if type(pte) is int:  # the concrete hot path (unmap_range, lookups): lshr's int case
        return (pte & PTE_PFN_MASK) >> PAGE_SHIFT
    return lshr(pte & PTE_PFN_MASK, PAGE_SHIFT)


def pte_present(pte: Bits) -> Bits:
    """pte_present(): _PAGE_PRESENT or _PAGE_PROTNONE (a PROT_NONE mapping is present)."""
    return pte & (_PAGE_PRESENT | _PAGE_PROTNONE) != 0


def pte_none(pte: Bits) -> Bits:
    """pte_none(): the entry is empty."""
    return pte == 0


def mk_table_entry(pfn: Bits) -> Bits:
    """The entry pointing to a lower table: pgd/p4d/pud/pmd_populate() write
    ``_PAGE_TABLE | __pa(table)`` (arch/x86/include/asm/pgalloc.h), for init_mm too."""
    return pfn_pte(pfn, _PAGE_TABLE)


def entry_table_pfn(entry: Bits) -> Bits:
    """The lower table an upper entry points to: p4d_pgtable()/pud_pgtable()/pmd_page() are
    the entry's pfn, as pte_pfn reads it."""
    return pte_pfn(entry)


def entry_present(entry: Bits) -> Bits:
    """pgd/pud/pmd_present() of an upper entry: its _PAGE_PRESENT bit."""
    return entry & _PAGE_PRESENT != 0


def walk_step(entry: Bits, fresh: Bits) -> tuple[Bits, Bits]:
    """One level of the allocating walk (pud_alloc/pmd_alloc/pte_alloc): the lower table and
    the entry to store. A present entry leads to its table and stays; a missing one is
    populated with the freshly allocated table ``fresh`` (the caller allocates it only when
    the entry is not present). PageTable's walk and the induction proof both run this."""
    present = entry_present(entry)
    return If(present, entry_table_pfn(entry), fresh), If(present, entry, mk_table_entry(fresh))


def pte_args_ok(pfn: Bits, prot: Bits) -> Bits:
    """Whether (pfn, prot) make a present PTE: the pfn fits PTE_PFN_MASK, prot is a 64-bit
    pgprot without pfn bits, and the result is pte_present."""
    return And(lshr(pfn, 40) == 0, lshr(prot, 64) == 0, prot & PTE_PFN_MASK == 0,
               pte_present(pfn_pte(pfn, prot)))


def ptep_get_and_clear(pte: Bits) -> tuple[Bits, Bits]:
    """ptep_get_and_clear() of a present PTE: (the entry left behind, none; the pfn it
    mapped). Unmapping and the induction proof both run this."""
    return pte & 0, pte_pfn(pte)


def pte_slot(va: Bits) -> tuple[Bits, Bits, Bits, Bits]:
    """The path of a page's PTE: (pgd, pud, pmd) indices naming the PTE table, and the index
    in it. Two addresses share a PTE slot iff they share this tuple."""
    return (pgd_index(va), pud_index(va), pmd_index(va), pte_index(va))


_INT_ONLY = {int}  # map_pages: the types of a list of pfns


# --- the tree -----------------------------------------------------------------------------------

class PageTable:
    """One tree of page tables: init_mm's (kernel, the ``swapper_pg_dir``) or a process's
    mm->pgd. Each table page except the kernel PGD is a real page from the page allocator; its
    512 entries are kept in ``self.tables[table_pfn]`` (a list of 512 ints, 0 = none).

    Cost: map/unmap/lookup touch at most four tables, O(1); table_pfns/mappings/free_tables
    are linear in the tree (invariants, process exit).
    """

    def __init__(self, pa: PageAllocator, *, user: bool, nid: int = 0, cpu: int = 0,
                 ctx: Context | None = None, kernel: PageTable | None = None) -> None:
        """A process tree allocates its PGD (pgd_alloc: __get_free_pages(GFP_PGTABLE_USER,
        PGD_ALLOCATION_ORDER) on ``nid``, NUMA_NO_NODE meaning ``cpu``'s node) and, given
        init_mm's tree as ``kernel``, clones its kernel half (pgd_ctor). init_mm's tree uses
        the static swapper_pg_dir and allocates nothing."""
        self.pa = pa
        self.user = user
        self.tables: dict[int, list[int]] = {}
        self.levels: dict[int, int] = {}  # table pfn -> PGD_LEVEL..PTE_LEVEL
        self.nr_present = 0  # present PTEs (the mm's rss, for every mapping kind)
        # va >> PMD_SHIFT -> the PTE table a walk of that 2 MiB region reaches: a software
        # TLB of page-table pages, emptied whenever a table is freed (free_tables,
        # free_pgd_range; checked by violations(), "pgtable.cache")
        self._pt_cache: dict[int, list[int]] = {}
        self._prots_ok: set[int] = set()  # protections map_pages found valid (pte_args_ok)
        self.freed = False
        if not user:
            self.root = SWAPPER_PG_DIR
        else:
            if kernel is not None and kernel.user:
                raise PageTableError("pgd_ctor clones the kernel half of init_mm's PGD, "
                                     "not of a process's")
            pfn = pa.alloc_pages_node(nid, GFP_PGTABLE_USER, PGD_ALLOCATION_ORDER, cpu=cpu,
                                      ctx=ctx)
            if pfn is None:
                raise PageTableNoMemError("pgd_alloc: -ENOMEM (no order-"
                                          f"{PGD_ALLOCATION_ORDER} block for the PGD)")
            self._own(pfn, count=counted_in_nr_pagetable(PGD_LEVEL, True))
            self.root = pfn
        root = [0] * PTRS_PER_PGD
        if kernel is not None:
            root[KERNEL_PGD_BOUNDARY:] = kernel.tables[kernel.root][KERNEL_PGD_BOUNDARY:]
        self.tables[self.root] = root
        self.levels[self.root] = PGD_LEVEL

    # --- table pages --------------------------------------------------------------------------
    def _own(self, pfn: int, *, count: bool) -> None:
        rec = self.pa.allocated[pfn]
        self.pa.allocated[pfn] = (rec[0], rec[1], OWNER_PGTABLE, rec[3])
        if count:
            self.pa.nr_page_table_pages[self.pa.zones[rec[1]].nid] += 1

    def _release(self, pfn: int, *, count: bool) -> None:
        pa = self.pa
        rec = pa.allocated[pfn]
        if count:
            pa.nr_page_table_pages[pa.zones[rec[1]].nid] -= 1
        pa.allocated[pfn] = (rec[0], rec[1], OWNER_PAGES, rec[3])
        pa.free_pages_pfn(pfn, rec[0])

    def _alloc_table(self, level: int, gfp: int, cpu: int, ctx: Context | None) -> int:
        """pud/pmd/pte_alloc_one(): one zeroed page on the local node (pagetable_alloc is
        alloc_pages(gfp, 0)), counted in NR_PAGETABLE where its ctor runs
        (counted_in_nr_pagetable: not init_mm's PTE tables in 6.12)."""
        pfn = self.pa.alloc_pages_node(NUMA_NO_NODE, gfp, 0, cpu=cpu, ctx=ctx)
        if pfn is None:
            raise PageTableNoMemError(f"__{LEVEL_NAMES[level]}_alloc: -ENOMEM (no page for a "
                                      f"{LEVEL_NAMES[level].upper()} table)")
        self._own(pfn, count=counted_in_nr_pagetable(level, self.user))
        self.tables[pfn] = [0] * PTRS_PER_PTE
        self.levels[pfn] = level
        return pfn

    # --- argument checks (bad input: raise before any change) --------------------------------
    def _check_live(self) -> None:
        if self.freed:
            raise PageTableBusyError("the page tables were freed (free_tables)")

    def _check_va(self, va: int, what: str = "address") -> None:
        if type(va) is not int:
            raise BadVirtualAddressError(f"{what} {va!r} is not an integer")
        if not is_canonical(va):
            raise NonCanonicalError(f"{what} {va:#x} is not canonical (bits 63..47 differ)")
        if page_offset_of(va):
            raise BadVirtualAddressError(f"{what} {va:#x} is not page aligned")
        if self.user:
            if not is_user_addr(va):
                raise BadVirtualAddressError(f"{what} {va:#x} is not a user address (below "
                                             f"TASK_SIZE_MAX {TASK_SIZE_MAX:#x})")
        elif va >> 63 == 0:
            raise BadVirtualAddressError(f"{what} {va:#x} is a user address: init_mm maps "
                                         "the kernel half")

    def _check_range(self, va: int, nr: int) -> None:
        if type(va) is int and type(nr) is int and nr > 0 and not self.user and \
                not va & (PAGE_SIZE - 1) and va >> PMD_SHIFT in self._pt_cache and \
                (va + (nr - 1) * PAGE_SIZE) >> PMD_SHIFT == va >> PMD_SHIFT:
            return  # inside one 2 MiB whose PTE table is cached: a checked kernel va (lookup)
        self._check_va(va)
        if type(nr) is not int or nr < 0:
            raise BadVirtualAddressError(f"page count {nr!r} is not a non-negative integer")
        if nr:
            end = va + (nr - 1) * PAGE_SIZE
            if not self.user and end >> PMD_SHIFT == va >> PMD_SHIFT:
                return  # same 2 MiB as a checked kernel va: same bits 63..21, aligned
            self._check_va(end, "range end")

    @staticmethod
    def _check_pte(pfn: int, prot: int) -> int:
        if type(pfn) is not int or type(prot) is not int or not pte_args_ok(pfn, prot):
            raise BadPteError(f"pfn {pfn!r} and protection {prot!r} do not make a present "
                              f"PTE (pfn 0..{MAX_PTE_PFN:#x}; a 64-bit prot without pfn bits, "
                              "with _PAGE_PRESENT or _PAGE_PROTNONE)")
        return int(pfn_pte(pfn, prot))

    # --- the walk -----------------------------------------------------------------------------
    def _pte_table(self, va: int) -> list[int] | None:
        """pgd_offset -> p4d (folded) -> pud_offset -> pmd_offset: the PTE table, or None."""
        cached = self._pt_cache.get(va >> PMD_SHIFT)
        if cached is not None:
            return cached
        t = self.tables[self.root]
        for level in (PGD_LEVEL, PUD_LEVEL, PMD_LEVEL):
            e = t[level_index(va, level)]
            if not entry_present(e):
                return None
            t = self.tables[entry_table_pfn(e)]
        self._pt_cache[va >> PMD_SHIFT] = t
        return t

    def _pte_table_alloc(self, va: int, gfp: int, cpu: int, ctx: Context | None) -> list[int]:
        """pud_alloc/pmd_alloc/pte_alloc: the walk, allocating each missing level and
        populating its upper entry at once (as __pud_alloc & co. do)."""
        t = self.tables[self.root]
        for level in (PGD_LEVEL, PUD_LEVEL, PMD_LEVEL):
            i = level_index(va, level)
            e = t[i]
            fresh = 0 if entry_present(e) else self._alloc_table(level + 1, gfp, cpu, ctx)
            child, t[i] = walk_step(e, fresh)
            t = self.tables[child]
        self._pt_cache[va >> PMD_SHIFT] = t
        return t

    # --- API ----------------------------------------------------------------------------------
    def map_page(self, va: int, pfn: int, prot: int, *, gfp: int, cpu: int = 0,
                 ctx: Context | None = None) -> None:
        """Install one PTE (vmap_pte_range's set_pte_at / a fault's set_pte_at), allocating
        missing PUD/PMD/PTE tables with ``gfp``. Raises AlreadyMappedError over a present PTE,
        PageTableNoMemError if a table cannot be allocated (no PTE installed; tables already
        populated stay), and the allocator's errors (SleepInAtomicError) unchanged."""
        self._check_live()
        self._check_va(va)
        pte = self._check_pte(pfn, prot)
        t = self._pte_table(va)
        i = pte_index(va)
        if t is not None and not pte_none(t[i]):
            raise AlreadyMappedError(f"{va:#x} is already mapped (pte {t[i]:#x})")
        if t is None:
            t = self._pte_table_alloc(va, gfp, cpu, ctx)
        t[i] = pte
        self.nr_present += 1

    def _chunks(self, va: int, n: int) -> Iterator[tuple[int, int, int, int]]:
        """The range of ``n`` pages from ``va`` cut at PTE-table boundaries: (first page k,
        address, index in the PTE table, pages in this table)."""
        k = 0
        while k < n:
            a = va + k * PAGE_SIZE
            i = pte_index(a)
            m = min(n - k, PTRS_PER_PTE - i)
            yield k, a, i, m
            k += m

    def map_pages(self, va: int, pfns: Sequence[int], prot: int, *, gfp: int, cpu: int = 0,
                  ctx: Context | None = None) -> None:
        """vmap_pages_range(): map ``pfns`` at consecutive pages from ``va``. Every argument is
        checked and every PTE must be none before anything changes; on -ENOMEM the PTEs this
        call installed are cleared again (vmalloc's failure path, vfree) and
        PageTableNoMemError is raised. Works a PTE table at a time."""
        self._check_live()
        n = len(pfns)
        self._check_range(va, n)
        if type(prot) is not int or prot not in self._prots_ok:
            self._check_pte(0, prot)  # prot's part of pte_args_ok; the pfns' part below
            self._prots_ok.add(prot)  # a pure function of prot: checked once per value
        if n and ({*map(type, pfns)} != _INT_ONLY or min(pfns) < 0 or
                  max(pfns) > MAX_PTE_PFN):  # ints in 0..MAX_PTE_PFN, checked at C speed
            for p in pfns:
                if type(p) is not int or not 0 <= p <= MAX_PTE_PFN:
                    self._check_pte(p, prot)  # raises BadPteError
        ptes = [pfn_pte(p, prot) for p in pfns]
        i = pte_index(va)
        if 0 < n <= PTRS_PER_PTE - i:  # one PTE table (vmalloc's usual case), no chunking
            t = self._pte_table(va)
            if t is None:
                t = self._pte_table_alloc(va, gfp, cpu, ctx)  # -ENOMEM: nothing installed
            elif any(t[i:i + n]):
                x = next(x for x in range(i, i + n) if t[x])
                raise AlreadyMappedError(f"{va + (x - i) * PAGE_SIZE:#x} is already mapped "
                                         f"(pte {t[x]:#x})")
            t[i:i + n] = ptes
            self.nr_present += n
            return
        for _, a, i, m in self._chunks(va, n):
            t = self._pte_table(a)
            if t is not None and any(t[i:i + m]):
                x = next(x for x in range(i, i + m) if t[x])
                raise AlreadyMappedError(f"{a + (x - i) * PAGE_SIZE:#x} is already mapped "
                                         f"(pte {t[x]:#x})")
        for k, a, i, m in self._chunks(va, n):
            try:
                t = self._pte_table(a) or self._pte_table_alloc(a, gfp, cpu, ctx)
            except PageTableNoMemError:
                if k:
                    self.nr_present += k
                    self.unmap_range(va, k)
                raise
            t[i:i + m] = ptes[k:k + m]
        self.nr_present += n

    def unmap_page(self, va: int) -> int:
        """Clear one present PTE (ptep_get_and_clear) and return its pfn; NotMappedError if
        there is none. The tables stay."""
        self._check_live()
        self._check_va(va)
        t = self._pte_table(va)
        i = pte_index(va)
        if t is None or not pte_present(t[i]):
            raise NotMappedError(f"{va:#x} is not mapped")
        t[i], pfn = ptep_get_and_clear(t[i])
        self.nr_present -= 1
        return int(pfn)

    def unmap_range(self, va: int, nr: int) -> list[int]:
        """vunmap_range(): clear the PTEs of ``nr`` pages from ``va``; the pfns of those that
        were present, in address order (holes are skipped, as vunmap_pte_range skips none
        entries). The tables stay."""
        self._check_live()
        self._check_range(va, nr)
        out: list[int] = []
        i = pte_index(va)
        if nr <= PTRS_PER_PTE - i:  # one PTE table (vfree's usual case), no chunking
            t = self._pte_table(va)
            if t is not None:
                clear = ptep_get_and_clear
                append = out.append
                for x in range(i, i + nr):
                    pte = t[x]
                    if pte:
                        t[x], pfn = clear(pte)
                        append(pfn)
                self.nr_present -= len(out)
            return out
        for _, a, i, m in self._chunks(va, nr):
            t = self._pte_table(a)
            if t is None:
                continue
            for x in range(i, i + m):
                if t[x]:
                    t[x], pfn = ptep_get_and_clear(t[x])
                    out.append(int(pfn))
        self.nr_present -= len(out)
        return out

    def lookup(self, va: int) -> int | None:
        """The PTE value mapping ``va``'s page if present, else None (a walk as
        vmalloc_to_page/follow_pte do; ``va`` need not be page aligned)."""
        if type(va) is int:  # fast path: a cached PTE table implies a canonical va of this half
            t = self._pt_cache.get(va >> PMD_SHIFT)
            if t is not None:
                pte = t[pte_index(va)]
                return pte if pte_present(pte) else None
        self._check_live()
        if type(va) is not int or not is_canonical(va):
            raise NonCanonicalError(f"address {va!r} is not a canonical address")
        if self.user and va >> 63:
            return None  # the cloned kernel half is init_mm's: look it up there
        if not self.user and va >> 63 == 0:
            return None  # init_mm maps no user address
        t = self._pte_table(va)
        if t is None:
            return None
        pte = t[pte_index(va)]
        return pte if pte_present(pte) else None

    def pte_of(self, va: int) -> int:
        """The PTE of ``va``'s page, 0 if none."""
        pte = self.lookup(va)
        return 0 if pte is None else pte

    def violations(self) -> list[str]:
        """spec/pgtable_state.py's invariants of this tree (linear in the tree)."""
        if self.freed:
            return [] if not self.tables else ["pgtable.root: a freed tree still has tables"]
        out = tree_violations(self.root, self.tables, self.levels, self.nr_present, self.user)
        for key, t in self._pt_cache.items():
            va = (key << PMD_SHIFT) & U64_MASK
            cache, self._pt_cache = self._pt_cache, {}
            try:
                walked = self._pte_table(va)
            finally:
                self._pt_cache = cache
            if walked is not t:
                out.append(f"pgtable.cache: the cached PTE table of {va:#x} is not the one "
                           "the walk reaches")
        return out

    def table_pfns(self) -> set[int]:
        """Every page-table page this tree allocated from the page allocator (PGD, PUD, PMD
        and PTE tables; init_mm's static swapper_pg_dir is not one)."""
        return {p for p in self.tables if p != SWAPPER_PG_DIR}

    def counted_table_pfns(self) -> set[int]:
        """The tables counted in NR_PAGETABLE (counted_in_nr_pagetable): every PUD and PMD
        table, a process's PTE tables; not the PGD, not init_mm's PTE tables."""
        user = self.user
        return {p for p, lv in self.levels.items() if counted_in_nr_pagetable(lv, user)}

    def table_spans(self) -> list[tuple[int, int, int]]:
        """(table pfn, level, first address it maps) of every table of this tree's own half
        (a walk from the root: for invariants)."""
        out = [(self.root, PGD_LEVEL, 0)]
        stack = [(self.root, PGD_LEVEL, 0)]
        while stack:
            pfn, level, base = stack.pop()
            if level == PTE_LEVEL:
                continue
            t = self.tables[pfn]
            rng = self._pgd_range() if level == PGD_LEVEL else range(PTRS_PER_PTE)
            for i in rng:
                if entry_present(t[i]):
                    child = (int(entry_table_pfn(t[i])), level + 1,
                             base + (i << LEVEL_SHIFTS[level]))
                    out.append(child)
                    stack.append(child)
        return out

    def _pgd_range(self) -> range:
        return range(KERNEL_PGD_BOUNDARY) if self.user else range(PTRS_PER_PGD)

    def mappings(self) -> Iterator[tuple[int, int]]:
        """(va, pte) of every present PTE, in address order (the user half of a process
        tree; the whole of init_mm's). Linear in the tree: for invariants."""
        if self.freed:
            return
        tables = self.tables
        pgd = tables[self.root]
        # entry_present / pte_present inlined (bit tests): this walk runs in every check
        for i in self._pgd_range():
            if not pgd[i] & _PAGE_PRESENT:
                continue
            pud = tables[entry_table_pfn(pgd[i])]
            for j, ej in enumerate(pud):
                if not ej & _PAGE_PRESENT:
                    continue
                pmd = tables[entry_table_pfn(ej)]
                for k, ek in enumerate(pmd):
                    if not ek & _PAGE_PRESENT:
                        continue
                    pte = tables[entry_table_pfn(ek)]
                    for m, em in enumerate(pte):
                        if em & _LEAF_PRESENT:
                            yield int(va_of(i, j, k, m, 0)), em

    def entries(self) -> Iterator[tuple[int, int, int, int]]:
        """(table pfn, level, index, entry) of every non-empty entry of this tree's own tables
        (a process tree's cloned kernel half is init_mm's): for invariants."""
        for pfn, t in self.tables.items():
            lv = self.levels[pfn]
            rng = self._pgd_range() if lv == PGD_LEVEL else range(PTRS_PER_PTE)
            for i in rng:
                if t[i]:
                    yield pfn, lv, i, t[i]

    def free_tables(self) -> None:
        """free_pgtables() + pgd_free() at process exit (mm/memory.c free_pgd_range, then
        arch/x86/mm/pgtable.c pgd_free): every table of the user half, PTE tables before the
        PMD above them, then PMD, PUD, and the PGD block. The tree must map nothing
        (PageTableBusyError otherwise: exit_mmap zaps the PTEs first)."""
        self._check_live()
        if not self.user:
            raise PageTableError("init_mm's page tables are never freed")
        if self.nr_present:
            raise PageTableBusyError(f"free_tables: {self.nr_present} pages are still mapped "
                                     "(unmap them first, as exit_mmap's unmap_vmas does)")
        tables = self.tables
        pgd = tables[self.root]
        for i in range(KERNEL_PGD_BOUNDARY):
            if not entry_present(pgd[i]):
                continue
            pud_pfn = entry_table_pfn(pgd[i])
            pud = tables[pud_pfn]
            for j in range(PTRS_PER_PUD):
                if not entry_present(pud[j]):
                    continue
                pmd_pfn = entry_table_pfn(pud[j])
                pmd = tables[pmd_pfn]
                for k in range(PTRS_PER_PMD):
                    if entry_present(pmd[k]):
                        self._release(entry_table_pfn(pmd[k]),
                                      count=counted_in_nr_pagetable(PTE_LEVEL, True))
                self._release(pmd_pfn, count=counted_in_nr_pagetable(PMD_LEVEL, True))
            self._release(pud_pfn, count=counted_in_nr_pagetable(PUD_LEVEL, True))
        self._release(self.root, count=counted_in_nr_pagetable(PGD_LEVEL, True))
        self.tables = {}
        self.levels = {}
        self._pt_cache = {}
        self.freed = True

    def free_pgd_range(self, addr: int, end: int, floor: int, ceiling: int) -> int:
        """mm/memory.c free_pgd_range() on a process tree, after the range was zapped: free
        the PTE tables of [addr, end) and the PMD and PUD tables above them whose whole span
        lies in [floor, ceiling) (no other VMA can use them: ``floor`` is the end of the VMA
        below, 0 for none; ``ceiling`` the start of the VMA above, 0 for the top), with the
        kernel's arithmetic modulo 2^64. Returns how many tables were freed. A table to be
        freed that still maps a page is PageTableBusyError, before anything changes."""
        self._check_live()
        if not self.user:
            raise PageTableError("free_pgd_range is for process page tables")
        plan = self._free_plan(addr, end, floor, ceiling)
        for _, _, pfn, level in plan:
            if level == PTE_LEVEL and any(self.tables[pfn]):
                raise PageTableBusyError(f"free_pgd_range: the PTE table {pfn:#x} still maps "
                                         "pages (zap the range first)")
        freed = 0
        for parent, i, pfn, level in plan:  # children before their parents, as the kernel
            if level != PTE_LEVEL and any(self.tables[pfn]):
                continue  # still has a child outside the range (the kernel has none there)
            self.tables[parent][i] = 0
            del self.tables[pfn], self.levels[pfn]
            self._release(pfn, count=counted_in_nr_pagetable(level, True))
            freed += 1
        if freed:
            self._pt_cache = {}  # a cached PTE table may be gone
        return freed

    def _free_plan(self, addr: int, end: int, floor: int,
                   ceiling: int) -> list[tuple[int, int, int, int]]:
        """The tables free_pgd_range() frees, as (parent table, index, table, level)."""
        m = U64_MASK
        pmd_mask = m ^ (PMD_SIZE - 1)
        out: list[tuple[int, int, int, int]] = []
        addr &= pmd_mask
        if addr < floor:
            addr = (addr + PMD_SIZE) & m
            if not addr:
                return out
        if ceiling:
            ceiling &= pmd_mask
            if not ceiling:
                return out
        if (end - 1) & m > (ceiling - 1) & m:
            end -= PMD_SIZE
        if addr > (end - 1) & m:
            return out

        def span_end(a: int, e: int, size: int) -> int:  # pgd/pud/pmd_addr_end()
            boundary = ((a + size) & m) & (m ^ (size - 1))
            return boundary if (boundary - 1) & m < (e - 1) & m else e

        def free_upper(a: int, e: int, start: int, mask: int) -> bool:
            """The tail of free_pmd_range()/free_pud_range(): may the table go?"""
            start &= mask
            if start < floor:
                return False
            c = ceiling
            if c:
                c &= mask
                if not c:
                    return False
            return not (e - 1) & m > (c - 1) & m

        tables = self.tables
        pgd = tables[self.root]
        a = addr
        while True:  # free_pgd_range -> free_p4d_range (folded) -> free_pud_range
            nxt = span_end(a, end, PGDIR_SIZE)
            gi = int(pgd_index(a))
            if entry_present(pgd[gi]):
                pud_pfn = int(entry_table_pfn(pgd[gi]))
                pud = tables[pud_pfn]
                start_u, b = a, a
                while True:  # free_pud_range -> free_pmd_range
                    nxt_u = span_end(b, nxt, PUD_SIZE)
                    ui = int(pud_index(b))
                    if entry_present(pud[ui]):
                        pmd_pfn = int(entry_table_pfn(pud[ui]))
                        pmd = tables[pmd_pfn]
                        start_m, c2 = b, b
                        while True:  # free_pmd_range -> free_pte_range
                            nxt_m = span_end(c2, nxt_u, PMD_SIZE)
                            mi = int(pmd_index(c2))
                            if entry_present(pmd[mi]):
                                out.append((pmd_pfn, mi, int(entry_table_pfn(pmd[mi])),
                                            PTE_LEVEL))
                            c2 = nxt_m
                            if c2 == nxt_u:
                                break
                        if free_upper(b, nxt_u, start_m, m ^ (PUD_SIZE - 1)):
                            out.append((pud_pfn, ui, pmd_pfn, PMD_LEVEL))
                    b = nxt_u
                    if b == nxt:
                        break
                # P4D folded: P4D_MASK is PGDIR_MASK, p4d_clear clears the PGD entry
                if free_upper(a, nxt, start_u, m ^ (PGDIR_SIZE - 1)):
                    out.append((self.root, gi, pud_pfn, PUD_LEVEL))
            a = nxt
            if a == end:
                return out

    def preallocate_vmalloc_pages(self, gfp: int = GFP_PGTABLE_KERNEL, cpu: int = 0) -> int:
        """preallocate_vmalloc_pages() (arch/x86/mm/init_64.c, from mem_init): the PUD table
        of every PGD slot of the vmalloc range (64 slots of 512 GiB), so that the PGD's kernel
        half never changes after boot and process PGDs cloned from it stay in sync. Optional
        in the model (a small machine cannot spare 64 pages); returns how many it allocated."""
        self._check_live()
        if self.user:
            raise PageTableError("preallocate_vmalloc_pages is for init_mm")
        pgd = self.tables[self.root]
        n = 0
        for i in range(pgd_index(VMALLOC_START), pgd_index(VMALLOC_START + VMALLOC_SIZE - 1) + 1):
            if not entry_present(pgd[i]):
                pgd[i] = mk_table_entry(self._alloc_table(PUD_LEVEL, gfp, cpu, None))
                n += 1
        return n
