"""x86-64 4-level paging layout of Linux 6.12 without KASLR
(arch/x86/include/asm/page_64_types.h, page_64.h, pgtable_64_types.h, arch/x86/mm/physaddr.c,
include/linux/mm.h, Documentation/arch/x86/x86_64/mm.rst).

KASLR (CONFIG_RANDOMIZE_MEMORY) moves these bases at boot in 1 GiB steps; the model uses the
documented unrandomised bases, as a kernel booted with ``nokaslr`` has (a machine may give
another direct-map base: the predicates take ``page_offset``).

The predicates are written with the spec/logic.py kit: given ints they compute bools, given
64-bit Z3 bit-vectors they build Z3 terms (addresses are unsigned 64-bit values: ranges are
tested as ``(va - start) mod 2^64 < size``, which is one unsigned comparison in Z3).
"""

from __future__ import annotations

from typing import Final

from spec.logic import And, Bits, Or, _sym, lshr

PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT
PAGE_MASK: Final = ~(PAGE_SIZE - 1) & 0xFFFFFFFFFFFFFFFF  # page_types.h, as an unsigned long
PAGE_OFFSET: Final = 0xFFFF888000000000  # __PAGE_OFFSET_BASE_L4: start of the direct map
DIRECT_MAP_SIZE: Final = 64 << 40  # 64 TiB, up to 0xffffc87fffffffff
MAX_PHYSMEM_BITS: Final = 46  # arch/x86/include/asm/sparsemem.h, 4-level paging
VMALLOC_START: Final = 0xFFFFC90000000000  # __VMALLOC_BASE_L4
VMALLOC_SIZE: Final = 32 << 40  # VMALLOC_SIZE_TB_L4 << 40
VMALLOC_END: Final = VMALLOC_START + VMALLOC_SIZE  # exclusive; the kernel's VMALLOC_END is -1
KERNEL_VMALLOC_END: Final = VMALLOC_END - 1
"""The kernel's own VMALLOC_END value (pgtable_64_types.h: VMALLOC_START + (VMALLOC_SIZE_TB <<
40) - 1), which is_vmalloc_addr() compares with ``<``: its last byte is not a vmalloc address."""
NUMA_NO_NODE: Final = -1

# --- canonical addresses and the user/kernel halves (page_64_types.h) ---------------------------
ADDR_BITS: Final = 64
U64_MASK: Final = (1 << ADDR_BITS) - 1
__VIRTUAL_MASK_SHIFT: Final = 47  # 4-level paging
TASK_SIZE_MAX: Final = (1 << __VIRTUAL_MASK_SHIFT) - PAGE_SIZE  # 0x00007ffffffff000
"""task_size_max(): the user half minus its top page (the guard page against SYSRET to a
non-canonical address, page_64_types.h)."""
DEFAULT_MAP_WINDOW: Final = (1 << 47) - PAGE_SIZE
KERNEL_HALF_START: Final = U64_MASK ^ ((1 << __VIRTUAL_MASK_SHIFT) - 1)  # 0xffff800000000000
__START_KERNEL_map: Final = 0xFFFFFFFF80000000  # the kernel text mapping (page_64_types.h)

# --- the paging geometry (pgtable_64_types.h; P4D folded with 4-level paging) -----------------
PGDIR_SHIFT: Final = 39
P4D_SHIFT: Final = 39
PUD_SHIFT: Final = 30
PMD_SHIFT: Final = 21
PTRS_PER_PGD: Final = 512
PTRS_PER_P4D: Final = 1
PTRS_PER_PUD: Final = 512
PTRS_PER_PMD: Final = 512
PTRS_PER_PTE: Final = 512
PGDIR_SIZE: Final = 1 << PGDIR_SHIFT
PUD_SIZE: Final = 1 << PUD_SHIFT
PMD_SIZE: Final = 1 << PMD_SHIFT
KERNEL_PGD_BOUNDARY: Final = 256  # pgd_index(PAGE_OFFSET) rounded to the kernel half (pgtable.h)
KERNEL_PGD_PTRS: Final = PTRS_PER_PGD - KERNEL_PGD_BOUNDARY


def _ult(a: Bits, b: Bits) -> Bits:
    """Unsigned ``a < b`` (z3.ULT on bit-vectors; Z3's ``<`` is signed)."""
    if _sym(a, b):
        import z3

        return z3.ULT(a, b)
    return a < b


def in_range(va: Bits, start: Bits, size: Bits) -> Bits:
    """start <= va < start + size on unsigned 64-bit values, without overflow: ``(va - start)
    mod 2^64 < size`` (``size`` at most 2^63)."""
    return _ult((va - start) & U64_MASK, size)


def is_canonical(va: Bits) -> Bits:
    """A canonical 48-bit address: bits 63..47 all equal (__is_canonical_address in
    arch/x86/include/asm/page.h, with __VIRTUAL_MASK_SHIFT 47). An int outside [0, 2^64) is
    not an address at all."""
    top = lshr(va, __VIRTUAL_MASK_SHIFT)
    return And(lshr(va, ADDR_BITS) == 0, Or(top == 0, top == (1 << (ADDR_BITS - 47)) - 1))


def is_user_addr(va: Bits) -> Bits:
    """An address a process may map: below TASK_SIZE_MAX (the user half without its guard
    page; access_ok()'s ``valid_user_address``, TASK_SIZE_MAX of page_64_types.h)."""
    return And(lshr(va, ADDR_BITS) == 0, _ult(va, TASK_SIZE_MAX))


def direct_map_contains(va: Bits, page_offset: Bits = PAGE_OFFSET) -> Bits:
    """va lies in the direct map [PAGE_OFFSET, PAGE_OFFSET + DIRECT_MAP_SIZE)."""
    return And(lshr(va, ADDR_BITS) == 0, in_range(va, page_offset, DIRECT_MAP_SIZE))


def is_vmalloc_addr(va: Bits, vmalloc_start: Bits = VMALLOC_START,
                    vmalloc_size: Bits = VMALLOC_SIZE) -> Bits:
    """is_vmalloc_addr() (include/linux/mm.h, CONFIG_MMU): VMALLOC_START <= va < VMALLOC_END
    with the kernel's VMALLOC_END (KERNEL_VMALLOC_END: the range's last byte is excluded).
    A machine with another vmalloc base passes its start and size."""
    return And(lshr(va, ADDR_BITS) == 0, in_range(va, vmalloc_start, vmalloc_size - 1))


def virt_addr_valid(va: Bits, max_pfn: Bits, page_offset: Bits = PAGE_OFFSET) -> Bits:
    """virt_addr_valid() (arch/x86/mm/physaddr.c __virt_addr_valid): a direct-map address whose
    physical address is valid (phys_addr_valid: below 2^MAX_PHYSMEM_BITS) and whose pfn has a
    struct page (pfn_valid: below ``max_pfn``, the model's end of memory). The kernel-image
    branch (addresses above __START_KERNEL_map) is left out: the model has no kernel image, so
    those addresses are not valid here."""
    phys = (va - page_offset) & U64_MASK
    return And(direct_map_contains(va, page_offset), lshr(phys, MAX_PHYSMEM_BITS) == 0,
               _ult(lshr(phys, PAGE_SHIFT), max_pfn))
