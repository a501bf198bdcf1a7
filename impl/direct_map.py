"""The direct map: every physical page has one logical address, PAGE_OFFSET + phys
(arch/x86/include/asm/page_64.h ``__va``/``__pa``, page.h ``virt_to_page``).

Written with kit operators so the proofs call these very functions with Z3 bit-vectors.
"""

from __future__ import annotations

from spec.layout import PAGE_OFFSET, PAGE_SHIFT
from spec.logic import Bits, lshr


def __va(phys: Bits, page_offset: Bits = PAGE_OFFSET) -> Bits:
    """Logical address of a physical address (the direct-map branch of __va)."""
    return phys + page_offset


def __pa(virt: Bits, page_offset: Bits = PAGE_OFFSET) -> Bits:
    """Physical address of a direct-map address (__phys_addr_nodebug, direct-map branch)."""
    return virt - page_offset


def pfn_to_virt(pfn: Bits, page_offset: Bits = PAGE_OFFSET) -> Bits:
    """page_address(pfn_to_page(pfn)) for a lowmem page: the direct-map address of a pfn."""
    return __va(pfn << PAGE_SHIFT, page_offset)


def virt_to_pfn(virt: Bits, page_offset: Bits = PAGE_OFFSET) -> Bits:
    """page_to_pfn(virt_to_page(virt))."""
    return lshr(__pa(virt, page_offset), PAGE_SHIFT)


def virt_to_page(virt: Bits, page_offset: Bits = PAGE_OFFSET) -> Bits:
    """virt_to_page() (arch/x86/include/asm/page.h): the page of a direct-map address, a
    ``struct page *`` being a pfn in the model (pfn_to_page is the identity on pfns)."""
    return virt_to_pfn(virt, page_offset)


def page_to_virt(pfn: Bits, page_offset: Bits = PAGE_OFFSET) -> Bits:
    """page_to_virt() / page_address() of a lowmem page (include/linux/mm.h): its direct-map
    address."""
    return pfn_to_virt(pfn, page_offset)
