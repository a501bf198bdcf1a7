"""Buddy arithmetic of mm/page_alloc.c and mm/internal.h, as pure functions.

These are the helpers the allocator's hot path calls and the Z3 proofs call with bit-vectors
(``__find_buddy_pfn``, the combined pfn of ``__free_one_page``, the probe of
``buddy_merge_likely``, the halves ``expand`` puts back on the free lists, ``get_order``).
proofs/inventory.py says which proof covers each one and where the allocator calls it.
"""

from __future__ import annotations

from spec.layout import PAGE_SHIFT
from spec.logic import Bits, If, lshr


def find_buddy_pfn(pfn: Bits, order: Bits) -> Bits:
    """__find_buddy_pfn(): the buddy of the order-``order`` block at ``pfn``."""
    return pfn ^ (1 << order)


def combined_pfn(pfn: Bits, buddy_pfn: Bits) -> Bits:
    """The first pfn of the merged (order + 1) block: ``buddy_pfn & pfn``."""
    return buddy_pfn & pfn


def higher_buddy_pfn(pfn: Bits, buddy_pfn: Bits, order: Bits) -> Bits:
    """buddy_merge_likely()'s probe: the buddy, at ``order`` + 1, of the block that ``pfn``
    and its buddy ``buddy_pfn`` would merge into; written as the one expression the free path
    evaluates, and proved equal to find_buddy_pfn(combined_pfn(pfn, buddy_pfn), order + 1)."""
    return (buddy_pfn & pfn) ^ (1 << (order + 1))


def block_aligned(pfn: Bits, order: Bits) -> Bits:
    """A block of ``order`` must start on a multiple of 2^order."""
    return (pfn & ((1 << order) - 1)) == 0


def expand_halves(pfn: Bits, low: int, high: int) -> list[tuple[Bits, int]]:
    """expand(): splitting the order-``high`` block at ``pfn`` down to ``low`` returns the
    lower page (``pfn`` itself) and puts these upper halves, in this order, at the head of the
    free list of their order."""
    out: list[tuple[Bits, int]] = []
    size = 1 << high
    while high > low:
        high -= 1
        size >>= 1
        out.append((pfn + size, high))
    return out


def get_order(size: Bits) -> Bits:
    """get_order(): smallest n with 2^n pages >= size; ``fls64((size - 1) >> PAGE_SHIFT)``.

    get_order(0) is 52 (BITS_PER_LONG - PAGE_SHIFT) on x86-64, as in include/asm-generic/getorder.h.
    """
    if isinstance(size, int):
        if size == 0:
            return 64 - PAGE_SHIFT
        return ((size - 1) >> PAGE_SHIFT).bit_length()
    # Z3: fls64 as a chain of Ifs over the 64 bit positions.
    x = lshr(size - 1, PAGE_SHIFT)
    r: Bits = 0 * x
    for i in range(64):
        r = If(lshr(x, i) != 0, i + 1 + 0 * x, r)
    return If(size == 0, 64 - PAGE_SHIFT + 0 * x, r)
