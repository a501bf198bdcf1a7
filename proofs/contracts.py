"""CrossHair contracts (PEP316) on the pure helpers the allocator and the proofs share.

Each function here calls one real helper (impl/buddy.py, impl/direct_map.py, spec/gfp.py,
spec/reserves.py) and states its preconditions (``pre:``) and postconditions (``post:``) in
its docstring. ``crosshair check --analysis_kind=PEP316 proofs/contracts.py`` searches for
inputs that meet the preconditions and break a postcondition. The helpers themselves carry no
runtime asserts: the allocator calls ``expand_halves`` on every split and must stay fast.

A clean CrossHair run is evidence, not proof (it explores paths until its time budget ends);
the facts the project relies on are proved with Z3 in proofs/. The contracts have teeth:
tests/crosshair_mutants.py holds wrong variants of these helpers under the same contracts,
and tests/test_crosshair.py checks that CrossHair finds a counterexample for each.

Bounds in the preconditions (pfn < 2^40, order <= 20...) keep the search on the values the
kernel uses (MAX_PHYSMEM_BITS 46 - PAGE_SHIFT 12 = 34-bit pfns; MAX_PAGE_ORDER <= 20 as
MachineConfig.validate() enforces).
"""

from __future__ import annotations

from impl.buddy import combined_pfn, expand_halves, find_buddy_pfn, get_order
from impl.direct_map import __pa, __va, pfn_to_virt, virt_to_pfn
from spec.errors import GfpError
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
    ZONE_DMA32,
    ZONE_MOVABLE,
    ZONE_NORMAL,
    check_gfp,
    format_gfp,
    gfp_is_valid,
    gfp_migratetype,
    gfp_zone,
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
    watermark_min_adjusted,
)

# Names used only inside the docstring conditions (CrossHair evaluates them in this module).
CONDITION_NAMES = (combined_pfn, find_buddy_pfn, __va, pfn_to_virt, PAGE_OFFSET, PAGE_SHIFT,
                   PAGE_SIZE, DIRECT_MAP_SIZE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE,
                   MIGRATE_UNMOVABLE, ZONE_BAD, ZONE_DMA, ZONE_MOVABLE, gfp_is_valid,
                   ALLOC_CPUSET, ALLOC_KSWAPD, ALLOC_NO_WATERMARKS, ALLOC_OOM, ALLOC_WMARK_MASK,
                   ALLOC_WMARK_MIN, GFP_VALID_MASK)

__all__ = [
    "CONDITION_NAMES", "REFERENCE_ZONE", "adjusted_min", "alloc_flags_of", "buddy_of",
    "check_gfp_agrees", "expand_split", "gfp_round_trip", "mask_of", "merged_block",
    "migratetype_of", "order_for_size", "pfn_virt_round_trip", "va_pa_round_trip", "zone_of",
]

# include/linux/gfp.h's GFP_ZONE_TABLE written out as the comment above it lists it: the
# zone modifier combinations and their zone; every other combination is GFP_ZONE_BAD.
REFERENCE_ZONE: dict[int, int] = {
    0: ZONE_NORMAL,
    __GFP_DMA: ZONE_DMA,
    __GFP_HIGHMEM: ZONE_NORMAL,  # no ZONE_HIGHMEM on x86-64
    __GFP_DMA32: ZONE_DMA32,
    __GFP_MOVABLE: ZONE_NORMAL,
    __GFP_MOVABLE | __GFP_DMA: ZONE_DMA,
    __GFP_MOVABLE | __GFP_HIGHMEM: ZONE_MOVABLE,
    __GFP_MOVABLE | __GFP_DMA32: ZONE_DMA32,
}


# --- buddy arithmetic (impl/buddy.py) --------------------------------------------------------

def buddy_of(pfn: int, order: int) -> int:
    """__find_buddy_pfn(): the buddy of an aligned order-``order`` block.

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
    return find_buddy_pfn(pfn, order)  # type: ignore[no-any-return]


def merged_block(pfn: int, order: int) -> int:
    """The head of the order + 1 block a block and its buddy merge into (__free_one_page).

    pre: 0 <= order < 20
    pre: 0 <= pfn < 2 ** 40
    pre: pfn % (1 << order) == 0
    post: __return__ % (1 << (order + 1)) == 0
    post: __return__ <= pfn < __return__ + (1 << (order + 1))
    post: __return__ == min(pfn, find_buddy_pfn(pfn, order))
    post: combined_pfn(find_buddy_pfn(pfn, order), pfn) == __return__
    """
    return combined_pfn(pfn, find_buddy_pfn(pfn, order))  # type: ignore[no-any-return]


def expand_split(pfn: int, low: int, high: int) -> list[tuple[int, int]]:
    """expand(): the halves a split of the order-``high`` block at ``pfn`` down to ``low``
    puts back, largest first; with the kept block [pfn, pfn + 2^low) they tile the block.

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
    return expand_halves(pfn, low, high)


def order_for_size(size: int) -> int:
    """get_order(): the smallest order whose block holds ``size`` bytes.

    pre: 1 <= size <= 2 ** 46
    post: 0 <= __return__ <= 46 - PAGE_SHIFT
    post: size <= PAGE_SIZE << __return__
    post: __return__ == 0 or (PAGE_SIZE << (__return__ - 1)) < size
    """
    return get_order(size)  # type: ignore[no-any-return]


# --- the direct map (impl/direct_map.py) ----------------------------------------------------

def va_pa_round_trip(phys: int) -> int:
    """__pa(__va(phys)) == phys for every physical address the direct map covers.

    pre: 0 <= phys < DIRECT_MAP_SIZE
    post: __return__ == phys
    post: PAGE_OFFSET <= __va(phys) < PAGE_OFFSET + DIRECT_MAP_SIZE
    """
    return __pa(__va(phys))  # type: ignore[no-any-return]


def pfn_virt_round_trip(pfn: int) -> int:
    """virt_to_pfn(pfn_to_virt(pfn)) == pfn, and the address is page aligned.

    pre: 0 <= pfn < DIRECT_MAP_SIZE >> PAGE_SHIFT
    post: __return__ == pfn
    post: pfn_to_virt(pfn) % PAGE_SIZE == 0
    post: virt_to_pfn(pfn_to_virt(pfn) + PAGE_SIZE - 1) == pfn
    """
    return virt_to_pfn(pfn_to_virt(pfn))  # type: ignore[no-any-return]


# --- GFP (spec/gfp.py) ------------------------------------------------------------------------

def _bits(*pairs: tuple[bool, int]) -> int:
    """The mask with each (flag, bit) pair's bit set when the flag is true."""
    out = 0
    for flag, bit in pairs:
        if flag:
            out |= bit
    return out


def migratetype_of(movable: bool, reclaimable: bool, rest: int) -> int:
    """gfp_migratetype(): __GFP_MOVABLE -> MOVABLE, __GFP_RECLAIMABLE -> RECLAIMABLE; no other
    bit matters. (The bits it depends on are symbolic booleans: CrossHair enumerates them.)

    pre: 0 <= rest <= GFP_VALID_MASK
    pre: not (movable and reclaimable)
    post: __return__ in (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE)
    post: (__return__ == MIGRATE_MOVABLE) == movable
    post: (__return__ == MIGRATE_RECLAIMABLE) == reclaimable
    """
    gfp = (rest & ~GFP_MOVABLE_MASK) | _bits((movable, __GFP_MOVABLE),
                                              (reclaimable, __GFP_RECLAIMABLE))
    return gfp_migratetype(gfp)  # type: ignore[no-any-return]


def zone_of(dma: bool, highmem: bool, dma32: bool, movable: bool, rest: int) -> int:
    """gfp_zone(): the highest zone a mask may use, ZONE_BAD for GFP_ZONE_BAD combinations;
    only the four zone modifiers matter.

    pre: 0 <= rest < 2 ** 26
    post: __return__ == REFERENCE_ZONE.get(_bits((dma, __GFP_DMA), (highmem, __GFP_HIGHMEM), (dma32, __GFP_DMA32), (movable, __GFP_MOVABLE)), ZONE_BAD)
    post: __return__ == ZONE_BAD or ZONE_DMA <= __return__ <= ZONE_MOVABLE
    post: __return__ != ZONE_MOVABLE or (movable and highmem)
    post: not dma or __return__ in (ZONE_DMA, ZONE_BAD)
    """  # noqa: E501 - a condition is one line
    gfp = (rest & ~GFP_ZONEMASK) | _bits((dma, __GFP_DMA), (highmem, __GFP_HIGHMEM),
                                          (dma32, __GFP_DMA32), (movable, __GFP_MOVABLE))
    return gfp_zone(gfp)  # type: ignore[no-any-return]


def check_gfp_agrees(gfp: int) -> bool:
    """check_gfp() accepts exactly the masks gfp_is_valid() calls valid, and returns them.

    pre: 0 <= gfp < 2 ** 26
    post: __return__ == bool(gfp_is_valid(gfp))
    """
    try:
        ok = check_gfp(gfp) == gfp
    except GfpError:
        return False
    return ok


def mask_of(bits: tuple[bool, ...]) -> int:
    """The mask whose bit i is ``bits[i]``."""
    out = 0
    for i, b in enumerate(bits):
        if b:
            out |= 1 << i
    return out


def gfp_round_trip(bits: tuple[bool, ...]) -> int:
    """parse_gfp(format_gfp(gfp)) == gfp for every valid mask (the trace notation loses
    nothing: bits without a name, such as __GFP_NO_OBJ_EXT, print as hex and parse back).
    The mask is given bit by bit: CrossHair searches a symbolic int poorly through ``&``.

    pre: len(bits) == 25
    pre: gfp_is_valid(mask_of(bits))
    post: __return__ == mask_of(bits)
    """
    return parse_gfp(format_gfp(mask_of(bits)))


# --- reserves (spec/reserves.py) --------------------------------------------------------------

def adjusted_min(mark: int, min_reserve: bool, non_block: bool, oom: bool,
                 highatomic: bool) -> int:
    """__zone_watermark_ok()'s reserve arithmetic: how far below min a caller may go.
    __GFP_HIGH (ALLOC_MIN_RESERVE) takes half of min, non-blocking __GFP_HIGH a quarter of the
    rest on top (GFP_ATOMIC keeps 37.5%), OOM victims half again; never below 3/16 of min.

    pre: 0 <= mark <= 2 ** 32
    post: 0 <= __return__ <= mark
    post: (min_reserve or non_block or oom or highatomic) or __return__ == mark
    post: 16 * __return__ >= 3 * mark
    post: oom or 8 * __return__ >= 3 * mark
    post: oom or non_block or 2 * __return__ >= mark
    post: not (min_reserve and not non_block and not oom) or __return__ == mark - mark // 2
    post: min_reserve or oom or __return__ == mark
    """
    flags = _bits((min_reserve, ALLOC_MIN_RESERVE), (non_block, ALLOC_NON_BLOCK),
                  (oom, ALLOC_OOM), (highatomic, ALLOC_HIGHATOMIC))
    return watermark_min_adjusted(mark, flags)  # type: ignore[no-any-return]


def alloc_flags_of(high: bool, direct: bool, kswapd: bool, nomemalloc: bool, rest: int,
                   order: int) -> int:
    """gfp_to_alloc_flags(): the slow path checks the min watermark; only __GFP_HIGH grants
    ALLOC_MIN_RESERVE; only callers that cannot sleep get ALLOC_NON_BLOCK or HIGHATOMIC.

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
    return gfp_to_alloc_flags(gfp, order)  # type: ignore[no-any-return]
