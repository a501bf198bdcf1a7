"""Deliberately wrong variants of the helpers in proofs/contracts.py, under the very same
contracts (tests/test_crosshair.py checks the docstring conditions are identical, and that
CrossHair finds a counterexample for every function here). Not a test module: no ``test_``
prefix, so pytest does not collect it; CrossHair checks it by path.
"""

from __future__ import annotations

from impl.buddy import combined_pfn, find_buddy_pfn
from impl.direct_map import __pa, __va, pfn_to_virt, virt_to_pfn
from proofs.contracts import REFERENCE_ZONE, _bits, mask_of
from spec.gfp import (
    __GFP_DIRECT_RECLAIM,
    __GFP_DMA,
    __GFP_DMA32,
    __GFP_HIGH,
    __GFP_HIGHMEM,
    __GFP_KSWAPD_RECLAIM,
    __GFP_MOVABLE,
    __GFP_NOMEMALLOC,
    __GFP_RECLAIMABLE,
    GFP_MOVABLE_MASK,
    GFP_VALID_MASK,
    GFP_ZONEMASK,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    ZONE_BAD,
    ZONE_DMA,
    ZONE_MOVABLE,
    format_gfp,
    gfp_is_valid,
    gfp_zone,
    gfp_zone_is_bad,
    parse_gfp,
)
from spec.layout import DIRECT_MAP_SIZE, PAGE_OFFSET, PAGE_SHIFT, PAGE_SIZE
from spec.reserves import (
    ALLOC_CPUSET,
    ALLOC_HIGHATOMIC,
    ALLOC_KSWAPD,
    ALLOC_MIN_RESERVE,
    ALLOC_NO_WATERMARKS,
    ALLOC_NON_BLOCK,
    ALLOC_OOM,
    ALLOC_WMARK_MASK,
    ALLOC_WMARK_MIN,
    gfp_to_alloc_flags,
)

# names the copied conditions use (kept referenced for the linters)
CONDITION_NAMES = (combined_pfn, find_buddy_pfn, GFP_VALID_MASK, MIGRATE_MOVABLE,
                   MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE, ZONE_BAD, ZONE_DMA, REFERENCE_ZONE,
                   ALLOC_CPUSET, ALLOC_HIGHATOMIC, ALLOC_KSWAPD, ALLOC_MIN_RESERVE,
                   ALLOC_NO_WATERMARKS, ALLOC_OOM, ALLOC_WMARK_MASK, ALLOC_WMARK_MIN,
                   virt_to_pfn, gfp_is_valid, DIRECT_MAP_SIZE)

MUTANTS = ("buddy_of", "merged_block", "expand_split", "order_for_size", "va_pa_round_trip",
           "pfn_virt_round_trip", "migratetype_of", "zone_of", "check_gfp_agrees",
           "gfp_round_trip", "adjusted_min", "alloc_flags_of")


def buddy_of(pfn: int, order: int) -> int:
    """BUG: the buddy is always taken above the block (wrong for an upper half).

    pre: 0 <= order <= 20
    pre: 0 <= pfn < 2 ** 40
    pre: pfn % (1 << order) == 0
    post: __return__ != pfn
    post: __return__ >= 0
    post: __return__ % (1 << order) == 0
    post: abs(__return__ - pfn) == 1 << order
    post: __return__ >> (order + 1) == pfn >> (order + 1)
    post: find_buddy_pfn(__return__, order) == pfn
    """
    return pfn + (1 << order)


def merged_block(pfn: int, order: int) -> int:
    """BUG: the merged block starts at the upper buddy (``|`` for ``&``).

    pre: 0 <= order < 20
    pre: 0 <= pfn < 2 ** 40
    pre: pfn % (1 << order) == 0
    post: __return__ % (1 << (order + 1)) == 0
    post: __return__ <= pfn < __return__ + (1 << (order + 1))
    post: __return__ == min(pfn, find_buddy_pfn(pfn, order))
    post: combined_pfn(find_buddy_pfn(pfn, order), pfn) == __return__
    """
    return pfn | find_buddy_pfn(pfn, order)  # type: ignore[no-any-return]


def expand_split(pfn: int, low: int, high: int) -> list[tuple[int, int]]:
    """BUG: an off-by-one loop bound loses the smallest half.

    pre: 0 <= low <= high <= 12
    pre: 0 <= pfn < 2 ** 40
    pre: pfn % (1 << high) == 0
    post: len(__return__) == high - low
    post: [o for _, o in __return__] == list(range(high - 1, low - 1, -1))
    post: all(h % (1 << o) == 0 for h, o in __return__)
    post: all(h == pfn + (1 << o) for h, o in __return__)
    post: sum(1 << o for _, o in __return__) + (1 << low) == 1 << high
    post: all(pfn + (1 << low) <= h and h + (1 << o) <= pfn + (1 << high) for h, o in __return__)
    post: all(a + (1 << oa) <= b or b + (1 << ob) <= a for (a, oa) in __return__ for (b, ob) in __return__ if a != b)
    """  # noqa: E501 - a condition is one line
    out: list[tuple[int, int]] = []
    size = 1 << high
    while high > low + 1:
        high -= 1
        size >>= 1
        out.append((pfn + size, high))
    return out


def order_for_size(size: int) -> int:
    """BUG: fls of size >> PAGE_SHIFT instead of (size - 1) >> PAGE_SHIFT (off by one for
    exact multiples of the page size).

    pre: 1 <= size <= 2 ** 46
    post: 0 <= __return__ <= 46 - PAGE_SHIFT
    post: size <= PAGE_SIZE << __return__
    post: __return__ == 0 or (PAGE_SIZE << (__return__ - 1)) < size
    """
    return (size >> PAGE_SHIFT).bit_length()


def va_pa_round_trip(phys: int) -> int:
    """BUG: __pa rounds down to the page.

    pre: 0 <= phys < DIRECT_MAP_SIZE
    post: __return__ == phys
    post: PAGE_OFFSET <= __va(phys) < PAGE_OFFSET + DIRECT_MAP_SIZE
    """
    return (__pa(__va(phys)) // PAGE_SIZE) * PAGE_SIZE  # type: ignore[no-any-return]


def pfn_virt_round_trip(pfn: int) -> int:
    """BUG: virt_to_pfn shifts by one bit too few.

    pre: 0 <= pfn < DIRECT_MAP_SIZE >> PAGE_SHIFT
    post: __return__ == pfn
    post: pfn_to_virt(pfn) % PAGE_SIZE == 0
    post: virt_to_pfn(pfn_to_virt(pfn) + PAGE_SIZE - 1) == pfn
    """
    return (pfn_to_virt(pfn) - PAGE_OFFSET) >> (PAGE_SHIFT - 1)  # type: ignore[no-any-return]


def migratetype_of(movable: bool, reclaimable: bool, rest: int) -> int:
    """BUG: the shift is off by one bit.

    pre: 0 <= rest <= GFP_VALID_MASK
    pre: not (movable and reclaimable)
    post: __return__ in (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE)
    post: (__return__ == MIGRATE_MOVABLE) == movable
    post: (__return__ == MIGRATE_RECLAIMABLE) == reclaimable
    """
    gfp = (rest & ~GFP_MOVABLE_MASK) | _bits((movable, __GFP_MOVABLE),
                                              (reclaimable, __GFP_RECLAIMABLE))
    return (gfp & GFP_MOVABLE_MASK) >> 4


def zone_of(dma: bool, highmem: bool, dma32: bool, movable: bool, rest: int) -> int:
    """BUG: __GFP_DMA32|__GFP_MOVABLE is sent to ZONE_MOVABLE (a table slip).

    pre: 0 <= rest < 2 ** 26
    post: __return__ == REFERENCE_ZONE.get(_bits((dma, __GFP_DMA), (highmem, __GFP_HIGHMEM), (dma32, __GFP_DMA32), (movable, __GFP_MOVABLE)), ZONE_BAD)
    post: __return__ == ZONE_BAD or ZONE_DMA <= __return__ <= ZONE_MOVABLE
    post: __return__ != ZONE_MOVABLE or (movable and highmem)
    post: not dma or __return__ in (ZONE_DMA, ZONE_BAD)
    """  # noqa: E501 - a condition is one line
    if dma32 and movable and not dma and not highmem:
        return ZONE_MOVABLE
    gfp = (rest & ~GFP_ZONEMASK) | _bits((dma, __GFP_DMA), (highmem, __GFP_HIGHMEM),
                                          (dma32, __GFP_DMA32), (movable, __GFP_MOVABLE))
    return gfp_zone(gfp)  # type: ignore[no-any-return]


def check_gfp_agrees(gfp: int) -> bool:
    """BUG: forgets that __GFP_MOVABLE|__GFP_RECLAIMABLE together is invalid.

    pre: 0 <= gfp < 2 ** 26
    post: __return__ == bool(gfp_is_valid(gfp))
    """
    return not (gfp & ~GFP_VALID_MASK or gfp_zone_is_bad(gfp))


def gfp_round_trip(bits: tuple[bool, ...]) -> int:
    """BUG: the parser drops the hex leftovers (what the protocol's subjects do), so bits
    without a trace name are lost.

    pre: len(bits) == 25
    pre: gfp_is_valid(mask_of(bits))
    post: __return__ == mask_of(bits)
    """
    return parse_gfp(format_gfp(mask_of(bits)), ignore_hex=True)


def adjusted_min(mark: int, min_reserve: bool, non_block: bool, oom: bool,
                 highatomic: bool) -> int:
    """BUG: a non-blocking __GFP_HIGH caller may take half of the rest instead of a quarter.

    pre: 0 <= mark <= 2 ** 32
    post: 0 <= __return__ <= mark
    post: (min_reserve or non_block or oom or highatomic) or __return__ == mark
    post: 16 * __return__ >= 3 * mark
    post: oom or 8 * __return__ >= 3 * mark
    post: oom or non_block or 2 * __return__ >= mark
    post: not (min_reserve and not non_block and not oom) or __return__ == mark - mark // 2
    post: min_reserve or oom or __return__ == mark
    """
    res = min_reserve or non_block or oom or highatomic
    minres = res and min_reserve
    m1 = mark - mark // 2 if minres else mark
    nb = minres and non_block
    m2 = m1 - m1 // 2 if nb else m1
    return m2 - m2 // 2 if res and oom else m2


def alloc_flags_of(high: bool, direct: bool, kswapd: bool, nomemalloc: bool, rest: int,
                   order: int) -> int:
    """BUG: ALLOC_NON_BLOCK is granted whether or not the caller may sleep.

    pre: 0 <= rest <= GFP_VALID_MASK
    pre: 0 <= order <= 10
    post: __return__ & ALLOC_WMARK_MASK == ALLOC_WMARK_MIN
    post: ((__return__ & ALLOC_MIN_RESERVE) != 0) == high
    post: ((__return__ & ALLOC_KSWAPD) != 0) == kswapd
    post: ((__return__ & ALLOC_NON_BLOCK) != 0) == (not direct and not nomemalloc)
    post: ((__return__ & ALLOC_HIGHATOMIC) != 0) == (not direct and not nomemalloc and order > 0 and high)
    post: ((__return__ & ALLOC_CPUSET) != 0) == (direct or not high)
    post: (__return__ & (ALLOC_OOM | ALLOC_NO_WATERMARKS)) == 0
    """  # noqa: E501 - a condition is one line
    relevant = __GFP_HIGH | __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM | __GFP_NOMEMALLOC
    gfp = (rest & ~relevant) | _bits((high, __GFP_HIGH), (direct, __GFP_DIRECT_RECLAIM),
                                     (kswapd, __GFP_KSWAPD_RECLAIM),
                                     (nomemalloc, __GFP_NOMEMALLOC))
    flags = gfp_to_alloc_flags(gfp, order)
    return flags | ALLOC_NON_BLOCK  # type: ignore[no-any-return]
