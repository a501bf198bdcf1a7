"""Who may use how much of a zone's reserves, and who may sleep: the rules the allocator must obey.

Sources: mm/internal.h (ALLOC_* flags), mm/page_alloc.c (gfp_to_alloc_flags,
__zone_watermark_ok, __gfp_pfmemalloc_flags), include/linux/gfp.h, kernel/sched/core.c
(__might_resched). These functions are the single definition used by the implementation,
the step properties in spec/invariants.py and the Z3 proofs (they accept Z3 bit-vectors).
"""

from __future__ import annotations

from typing import Final

from spec.context import Context
from spec.gfp import (
    __GFP_DIRECT_RECLAIM,
    __GFP_HIGH,
    __GFP_KSWAPD_RECLAIM,
    __GFP_MEMALLOC,
    __GFP_NOMEMALLOC,
    gfpflags_allow_blocking,
)
from spec.logic import And, Bits, If, Not, udiv

ALLOC_WMARK_MIN: Final = 0
ALLOC_WMARK_LOW: Final = 1
ALLOC_WMARK_HIGH: Final = 2
ALLOC_WMARK_MASK: Final = 3
ALLOC_NO_WATERMARKS: Final = 0x04
ALLOC_OOM: Final = 0x08
ALLOC_NON_BLOCK: Final = 0x10
ALLOC_MIN_RESERVE: Final = 0x20
ALLOC_CPUSET: Final = 0x40
ALLOC_CMA: Final = 0x80
ALLOC_NOFRAGMENT: Final = 0x100
ALLOC_HIGHATOMIC: Final = 0x200
ALLOC_KSWAPD: Final = 0x800
ALLOC_RESERVES: Final = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM


def gfp_to_alloc_flags(gfp: Bits, order: Bits) -> Bits:
    """gfp_to_alloc_flags(): the slow path's flags. __GFP_HIGH and __GFP_KSWAPD_RECLAIM are
    numerically ALLOC_MIN_RESERVE and ALLOC_KSWAPD. (No RT tasks, no CMA in the model.)"""
    f = ALLOC_WMARK_MIN | ALLOC_CPUSET
    f = f | (gfp & (__GFP_HIGH | __GFP_KSWAPD_RECLAIM))
    nonblock = (gfp & __GFP_DIRECT_RECLAIM) == 0
    nomemalloc = (gfp & __GFP_NOMEMALLOC) != 0
    minres = (f & ALLOC_MIN_RESERVE) != 0
    f = If(And(nonblock, Not(nomemalloc)), f | ALLOC_NON_BLOCK, f)
    f = If(And(nonblock, Not(nomemalloc), order > 0, minres), f | ALLOC_HIGHATOMIC, f)
    f = If(And(nonblock, minres), f & ~ALLOC_CPUSET, f)
    return f


def no_watermarks(gfp: Bits) -> Bits:
    """__gfp_pfmemalloc_flags(): __GFP_MEMALLOC without __GFP_NOMEMALLOC ignores watermarks."""
    return And((gfp & __GFP_MEMALLOC) != 0, (gfp & __GFP_NOMEMALLOC) == 0)


def watermark_min_adjusted(mark: Bits, alloc_flags: Bits) -> Bits:
    """__zone_watermark_ok()'s reserve arithmetic: __GFP_HIGH may consume half of min;
    non-blocking __GFP_HIGH (GFP_ATOMIC) a further quarter of the rest: 62.5% in all;
    OOM victims half again. Integer division, as the kernel does."""
    res = (alloc_flags & ALLOC_RESERVES) != 0
    minres = And(res, (alloc_flags & ALLOC_MIN_RESERVE) != 0)
    m1 = If(minres, mark - udiv(mark, 2), mark)
    nb = And(minres, (alloc_flags & ALLOC_NON_BLOCK) != 0)
    m2 = If(nb, m1 - udiv(m1, 4), m1)
    oom = And(res, (alloc_flags & ALLOC_OOM) != 0)
    return If(oom, m2 - udiv(m2, 2), m2)


def may_sleep(gfp: Bits, ctx: Bits) -> Bits:
    """The sleeping rule: a call may sleep only in process context and only with
    __GFP_DIRECT_RECLAIM (gfpflags_allow_blocking). Everything else is atomic and must not."""
    return And(gfpflags_allow_blocking(gfp), ctx == int(Context.PROCESS))
