"""Proof obligations about the allocator's arithmetic and decision code (unbounded, bit-precise).

Each obligation is a function returning a :class:`proofs.core.ProofResult`. Its parameters are
the implementation helpers it is about, defaulting to the real ones (the very functions the
allocator calls, written with the logic kit so they accept Z3 bit-vectors); a test passes a
seeded-bug variant instead and expects ``refuted`` (see proofs/mutants.py).

The state obligations (induction over the invariants, bounded model checking) are in
proofs/symbolic.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import z3

from impl.buddy import (
    block_aligned,
    combined_pfn,
    expand_halves,
    find_buddy_pfn,
    higher_buddy_pfn,
)
from impl.direct_map import __pa, __va, pfn_to_virt, virt_to_pfn
from impl.page_alloc import alloc_enters_reclaim
from proofs.core import DEFAULT_TIMEOUT_MS, ProofResult, combine, prove
from spec.context import Context
from spec.gfp import (
    __GFP_DIRECT_RECLAIM,
    __GFP_DMA,
    __GFP_DMA32,
    __GFP_FS,
    __GFP_HIGH,
    __GFP_HIGHMEM,
    __GFP_IO,
    __GFP_MOVABLE,
    __GFP_NOMEMALLOC,
    __GFP_RECLAIM,
    GFP_ATOMIC,
    GFP_MOVABLE_MASK,
    GFP_NOWAIT,
    GFP_ZONEMASK,
    MIGRATE_PCPTYPES,
    ZONE_BAD,
    ZONE_DMA,
    ZONE_DMA32,
    ZONE_MOVABLE,
    ZONE_NORMAL,
    gfp_is_valid,
    gfp_migratetype,
    gfp_zone,
    gfpflags_allow_blocking,
)
from spec.layout import (
    DIRECT_MAP_SIZE,
    MAX_PHYSMEM_BITS,
    PAGE_OFFSET,
    PAGE_SHIFT,
    PAGE_SIZE,
    VMALLOC_END,
    VMALLOC_START,
)
from spec.reserves import gfp_to_alloc_flags, may_sleep, watermark_min_adjusted

Fn = Callable[..., Any]

BUDDY_MAX_ORDER = 62
"""Largest order of obligation (a): the parent order + 1 = 63 must fit in a 64-bit shift."""
SPLIT_MAX_ORDER = 10
"""MAX_PAGE_ORDER of x86-64: obligation (b) enumerates every 0 <= low <= high <= 10."""
GFP_BITS = 32
"""gfp_t is unsigned int: the GFP obligations quantify over every 32-bit mask."""


def _iv(start: Any, order: int | Any, width: int = 66) -> tuple[Any, Any]:
    """The pfn interval [start, start + 2^order) in ``width`` bits, wide enough not to wrap."""
    s = z3.ZeroExt(width - start.size(), start)
    o = order if isinstance(order, int) else z3.ZeroExt(width - order.size(), order)
    size = z3.BitVecVal(1, width) << o
    return s, s + size


def _inside(a: tuple[Any, Any], b: tuple[Any, Any]) -> Any:
    return z3.And(z3.ULE(b[0], a[0]), z3.ULE(a[1], b[1]))


def _disjoint(a: tuple[Any, Any], b: tuple[Any, Any]) -> Any:
    return z3.Or(z3.ULE(a[1], b[0]), z3.ULE(b[1], a[0]))


def _aligned(x: Any, order: int | Any) -> Any:
    """x is a multiple of 2^order, stated with shifts (independently of impl.buddy's mask)."""
    if isinstance(order, int):
        return z3.Extract(order - 1, 0, x) == 0 if order else z3.BoolVal(True)
    return z3.LShR(x, order) << order == x


def _member(q: Any, a: tuple[Any, Any]) -> Any:
    return z3.And(z3.ULE(a[0], q), z3.ULT(q, a[1]))


# --- (a) buddy arithmetic ------------------------------------------------------------------

def buddy_arithmetic(find_buddy: Fn = find_buddy_pfn, combine: Fn = combined_pfn,
                     aligned: Fn = block_aligned, higher: Fn = higher_buddy_pfn,
                     timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """For every 64-bit pfn aligned to 2^order and every order <= 62, the buddy and the merged
    parent are aligned, block and buddy are disjoint and exactly cover the parent, and
    buddy(buddy(pfn)) == pfn; buddy_merge_likely()'s probe (higher_buddy_pfn, the expression
    __free_one_page evaluates) is the buddy of the parent at order + 1 (order <= 61)."""
    pfn, order = z3.BitVecs("pfn order", 64)
    q = z3.BitVec("q", 66)  # any pfn, for the exact-cover statement
    hyps = [z3.ULE(order, BUDDY_MAX_ORDER), _aligned(pfn, order)]
    b = find_buddy(pfn, order)
    par = combine(pfn, b)
    blk, bud = _iv(pfn, order), _iv(b, order)
    parent = _iv(par, order + 1)
    goal = {
        "block_aligned agrees with pfn mod 2^order": aligned(pfn, order) == True,  # noqa: E712
        "buddy is a different block": b != pfn,
        "buddy aligned": z3.And(aligned(b, order) == True,  # noqa: E712
                                _aligned(b, order)),
        "parent aligned to 2^(order+1)": z3.And(aligned(par, order + 1) == True,  # noqa: E712
                                                _aligned(par, order + 1)),
        "block and buddy disjoint": _disjoint(blk, bud),
        "block and buddy inside parent": z3.And(_inside(blk, parent), _inside(bud, parent)),
        "block + buddy exactly cover parent":
            _member(q, parent) == z3.Or(_member(q, blk), _member(q, bud)),
        "parent is block or buddy": z3.Or(par == pfn, par == b),
        "combined_pfn symmetric": combine(b, pfn) == par,
        "buddy(buddy(pfn)) == pfn": find_buddy(b, order) == pfn,
        "higher_buddy_pfn is the parent's buddy at order + 1": z3.Implies(
            z3.ULE(order, BUDDY_MAX_ORDER - 1),
            higher(pfn, b, order) == find_buddy(par, order + 1)),
    }
    return prove("buddy.arithmetic", hyps, goal, timeout_ms,
                 witnesses={"order 62 block": order == BUDDY_MAX_ORDER})


# --- (b) expand(): splitting a block ---------------------------------------------------------

def expand_split(split: Fn = expand_halves, max_order: int = SPLIT_MAX_ORDER,
                 timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """For every 0 <= low <= high <= MAX_PAGE_ORDER and every 64-bit pfn aligned to 2^high
    whose block does not wrap, the halves expand() puts back plus the returned block
    [pfn, pfn + 2^low) are pairwise disjoint, aligned, inside and exactly covering
    [pfn, pfn + 2^high), and the returned block is the lowest one (pfn itself).

    One solver call per (low, high) pair (66 of them), combined into one result."""
    parts = [_expand_pair(split, low, high, timeout_ms)
             for high in range(max_order + 1) for low in range(high + 1)]
    return combine("buddy.expand_split", parts)


def _expand_pair(split: Fn, low: int, high: int, timeout_ms: int) -> ProofResult:
    tag = f"low={low},high={high}"
    pfn = z3.BitVec("pfn", 64)
    q = z3.BitVec("q", 66)
    hyps = [_aligned(pfn, high), z3.ULE(z3.ZeroExt(2, pfn) + (1 << high), 1 << 64)]
    whole = _iv(pfn, high)
    ret = _iv(pfn, low)
    halves = split(pfn, low, high)
    blocks = [ret] + [_iv(h, o) for h, o in halves]
    orders = [low] + [o for _, o in halves]
    starts = [pfn] + [h for h, _ in halves]
    goal = {
        "orders within [low, high)": z3.BoolVal(all(low <= o < high for _, o in halves)),
        "each block aligned to its order": z3.And(
            *(_aligned(s, o) for s, o in zip(starts, orders, strict=True))),
        "blocks inside the split block": z3.And(*(_inside(bl, whole) for bl in blocks)),
        "blocks pairwise disjoint": z3.And(
            *(_disjoint(blocks[i], blocks[j]) for i in range(len(blocks))
              for j in range(i + 1, len(blocks)))),
        "sizes sum to 2^high": z3.BoolVal(sum(1 << o for o in orders) == 1 << high),
        "exact cover of [pfn, pfn + 2^high)": _member(q, whole) == z3.Or(
            *(_member(q, bl) for bl in blocks)),
        "returned block [pfn, pfn + 2^low) is the lowest": z3.And(
            *(z3.ULE(ret[1], bl[0]) for bl in blocks[1:])),
    }
    wit = {"block ending at 2^64": z3.ZeroExt(2, pfn) + (1 << high) == 1 << 64}
    r = prove(tag, hyps, goal, timeout_ms, witnesses=wit)
    r.failed = [f"{tag}: {f}" for f in r.failed]
    return r


# --- (c) the direct map ----------------------------------------------------------------------

def direct_map(va: Fn = __va, pa: Fn = __pa, p2v: Fn = pfn_to_virt, v2p: Fn = virt_to_pfn,
               timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """For every physical address below 2^MAX_PHYSMEM_BITS (46): __pa(__va(p)) == p, __va(p)
    lies in [PAGE_OFFSET, PAGE_OFFSET + 64 TiB) and never in [VMALLOC_START, VMALLOC_END),
    __va is linear (so a physically contiguous block is logically contiguous), and
    virt_to_pfn(pfn_to_virt(pfn)) == pfn; the round trips also hold for every other
    PAGE_OFFSET a machine file may set (MachineConfig.page_offset, which the allocator passes)."""
    p, d = z3.BitVecs("phys delta", 64)
    off = z3.BitVec("page_offset", 64)
    pfn, i = z3.BitVecs("pfn i", 64)
    lim = 1 << MAX_PHYSMEM_BITS
    plim = 1 << (MAX_PHYSMEM_BITS - PAGE_SHIFT)
    hyps = [z3.ULT(p, lim), z3.ULT(d, lim), z3.ULT(p + d, lim),  # p + d < 2^46, no wrap
            z3.ULT(pfn, plim), z3.ULT(i, plim), z3.ULT(pfn + i, plim)]
    v = va(p)
    goal = {
        "layout: direct map is 2^MAX_PHYSMEM_BITS bytes": z3.BoolVal(
            lim == DIRECT_MAP_SIZE),
        "layout: direct map and vmalloc ranges disjoint": z3.BoolVal(
            PAGE_OFFSET + DIRECT_MAP_SIZE <= VMALLOC_START or VMALLOC_END <= PAGE_OFFSET),
        "__pa(__va(p)) == p": pa(v) == p,
        "__va(p) in the direct map": z3.And(z3.UGE(v, PAGE_OFFSET),
                                            z3.ULT(v, PAGE_OFFSET + DIRECT_MAP_SIZE)),
        "__va(p) not in vmalloc space": z3.Or(z3.ULT(v, VMALLOC_START),
                                              z3.UGE(v, VMALLOC_END)),
        "__va(p + d) == __va(p) + d": va(p + d) == v + d,
        "pfn_to_virt(pfn + i) == pfn_to_virt(pfn) + i * PAGE_SIZE":
            p2v(pfn + i) == p2v(pfn) + i * PAGE_SIZE,
        "virt_to_pfn(pfn_to_virt(pfn)) == pfn": v2p(p2v(pfn)) == pfn,
        "pfn_to_virt(pfn) == __va(pfn << PAGE_SHIFT)": p2v(pfn) == va(pfn << PAGE_SHIFT),
        "any PAGE_OFFSET: __pa(__va(p)) == p": pa(va(p, off), off) == p,
        "any PAGE_OFFSET: virt_to_pfn(pfn_to_virt(pfn)) == pfn": v2p(p2v(pfn, off), off) == pfn,
        "any PAGE_OFFSET: pfn_to_virt(pfn) == __va(pfn << PAGE_SHIFT)":
            p2v(pfn, off) == va(pfn << PAGE_SHIFT, off),
    }
    return prove("direct_map", hyps, goal, timeout_ms,
                 witnesses={"last byte of the direct map": p == lim - 1})


# --- (d) GFP masks -----------------------------------------------------------------------------

def gfp_blocking(allow_blocking: Fn = gfpflags_allow_blocking, sleep_rule: Fn = may_sleep,
                 timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """For every 32-bit mask: gfpflags_allow_blocking(gfp) <=> gfp & __GFP_DIRECT_RECLAIM, the
    sleeping rule may_sleep(gfp, ctx) requires it (and process context) for every context,
    and GFP_ATOMIC and GFP_NOWAIT (with any other bits but __GFP_DIRECT_RECLAIM) never block."""
    gfp, extra = z3.BitVecs("gfp extra", GFP_BITS)
    ctx = z3.BitVec("ctx", GFP_BITS)
    hyps = [z3.ULE(ctx, int(max(Context)))]
    no_dr = extra & ~__GFP_DIRECT_RECLAIM
    goal = {
        "allow_blocking(gfp) <=> gfp & __GFP_DIRECT_RECLAIM":
            allow_blocking(gfp) == ((gfp & __GFP_DIRECT_RECLAIM) != 0),
        "may_sleep(gfp, ctx) => __GFP_DIRECT_RECLAIM and process context":
            z3.Implies(sleep_rule(gfp, ctx),
                       z3.And((gfp & __GFP_DIRECT_RECLAIM) != 0, ctx == int(Context.PROCESS))),
        "GFP_ATOMIC never blocks": z3.Not(allow_blocking(z3.BitVecVal(GFP_ATOMIC, GFP_BITS))),
        "GFP_NOWAIT never blocks": z3.Not(allow_blocking(z3.BitVecVal(GFP_NOWAIT, GFP_BITS))),
        "GFP_ATOMIC | other non-reclaim bits never blocks":
            z3.Not(allow_blocking(GFP_ATOMIC | no_dr)),
        "GFP_NOWAIT | other non-reclaim bits never blocks":
            z3.Not(allow_blocking(GFP_NOWAIT | no_dr)),
    }
    return prove("gfp.blocking", hyps, goal, timeout_ms,
                 witnesses={"a sleeping call": sleep_rule(gfp, ctx) == True})  # noqa: E712


# The table in the comment above GFP_ZONE_TABLE (include/linux/gfp.h), for x86-64 (DMA and DMA32
# configured, no HIGHMEM so HIGHMEM means NORMAL): zone-modifier bits -> zone; absent = BAD.
# Written independently of spec.gfp's encoding, as the reference gfp_zone is checked against.
KERNEL_ZONE_COMMENT_TABLE: dict[int, int] = {
    0x0: ZONE_NORMAL,
    __GFP_DMA: ZONE_DMA,
    __GFP_HIGHMEM: ZONE_NORMAL,
    __GFP_DMA32: ZONE_DMA32,
    __GFP_MOVABLE: ZONE_NORMAL,
    __GFP_MOVABLE | __GFP_DMA: ZONE_DMA,
    __GFP_MOVABLE | __GFP_HIGHMEM: ZONE_MOVABLE,
    __GFP_MOVABLE | __GFP_DMA32: ZONE_DMA32,
}


def gfp_zones(zone: Fn = gfp_zone, valid: Fn = gfp_is_valid, migratetype: Fn = gfp_migratetype,
              timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """For every 32-bit mask, gfp_zone is ZONE_BAD or DMA/DMA32/NORMAL/MOVABLE, agrees with
    the kernel's documented zone table, depends only on the zone bits, is a real zone for
    every valid mask (which also has a migratetype below MIGRATE_PCPTYPES), and is NORMAL for
    masks made only of reclaim/IO/FS bits."""
    gfp = z3.BitVec("gfp", GFP_BITS)
    z = zone(gfp)
    bad = z3.BitVecVal(ZONE_BAD, GFP_BITS)  # -1: all ones as a 32-bit vector
    real = z3.Or(*(z == k for k in (ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_MOVABLE)))
    bits = gfp & GFP_ZONEMASK
    expected: Any = bad
    for m, k in KERNEL_ZONE_COMMENT_TABLE.items():
        expected = z3.If(bits == m, z3.BitVecVal(k, GFP_BITS), expected)
    goal = {
        "gfp_zone in {BAD, DMA, DMA32, NORMAL, MOVABLE}": z3.Or(z == bad, real),
        "gfp_zone agrees with the kernel's zone table": z == expected,
        "gfp_zone depends only on the zone modifiers": z == zone(gfp & GFP_ZONEMASK),
        "gfp_is_valid => a real zone": z3.Implies(valid(gfp), real),
        "gfp_is_valid => migratetype < MIGRATE_PCPTYPES":
            z3.Implies(valid(gfp), z3.ULT(migratetype(gfp), MIGRATE_PCPTYPES)),
        "gfp_migratetype reads only the mobility bits":
            migratetype(gfp) == migratetype(gfp & GFP_MOVABLE_MASK),
        "reclaim/IO/FS-only masks => ZONE_NORMAL":
            z3.Implies(gfp & ~(__GFP_RECLAIM | __GFP_IO | __GFP_FS) == 0, z == ZONE_NORMAL),
    }
    return prove("gfp.zones", [], goal, timeout_ms,
                 witnesses={"a bad zone combination": z == bad,
                            "a movable mask": z == ZONE_MOVABLE})


# --- (e) atomic never sleeps; reserves -----------------------------------------------------------

def atomic_never_sleeps(enters_reclaim: Fn = alloc_enters_reclaim, sleep_rule: Fn = may_sleep,
                        timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """For every 32-bit mask, every calling context (process, softirq, hardirq, preempt
    disabled, spinlock) and every memory situation, the allocator's own decision to enter
    direct reclaim (alloc_enters_reclaim) implies may_sleep(gfp, ctx), and it only happens
    after the fast path and the min-watermark attempt both failed."""
    gfp, ctx = z3.BitVecs("gfp ctx", GFP_BITS)
    fast_ok, min_ok = z3.Bools("fast_ok min_ok")
    hyps = [z3.ULE(ctx, int(max(Context)))]
    sleeps = enters_reclaim(gfp, ctx, fast_ok, min_ok)
    goal = {
        "enters reclaim => may_sleep(gfp, ctx)": z3.Implies(sleeps, sleep_rule(gfp, ctx)),
        "enters reclaim => process context": z3.Implies(sleeps, ctx == int(Context.PROCESS)),
        "enters reclaim => fast path and min attempt failed":
            z3.Implies(sleeps, z3.And(z3.Not(fast_ok), z3.Not(min_ok))),
    }
    return prove("context.atomic_never_sleeps", hyps, goal, timeout_ms,
                 witnesses={"some call enters reclaim": sleeps == True})  # noqa: E712


def reserve_rule(adjust: Fn = watermark_min_adjusted, to_alloc_flags: Fn = gfp_to_alloc_flags,
                 timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """For every 32-bit min watermark, every 32-bit mask and every order 0..10, the adjusted
    mark m' = watermark_min_adjusted(mark, gfp_to_alloc_flags(gfp, order)) satisfies
    ceil(3*mark/8) <= m' <= mark (8*m' >= 3*mark: GFP_ATOMIC may use at most 62.5% of min);
    m' == mark exactly when gfp lacks __GFP_HIGH or mark <= 1; m' == mark - mark/2 for
    __GFP_HIGH with __GFP_DIRECT_RECLAIM or __GFP_NOMEMALLOC; otherwise (non-blocking
    __GFP_HIGH, e.g. GFP_ATOMIC) m' == m1 - m1/4 with m1 = mark - mark/2."""
    mark, gfp, order = z3.BitVecs("mark gfp order", 32)
    hyps = [z3.ULE(order, SPLIT_MAX_ORDER)]
    m = adjust(mark, to_alloc_flags(gfp, order))
    w = 36  # 8 * 2^32 fits in 36 bits
    high = (gfp & __GFP_HIGH) != 0
    halves = z3.Or((gfp & __GFP_DIRECT_RECLAIM) != 0, (gfp & __GFP_NOMEMALLOC) != 0)
    m1 = mark - z3.UDiv(mark, 2)
    goal = {
        "8*m' >= 3*mark": z3.UGE(8 * z3.ZeroExt(w - 32, m), 3 * z3.ZeroExt(w - 32, mark)),
        "m' <= mark": z3.ULE(m, mark),
        "no __GFP_HIGH => m' == mark": z3.Implies(z3.Not(high), m == mark),
        "__GFP_HIGH, blocking or NOMEMALLOC => m' == mark - mark/2":
            z3.Implies(z3.And(high, halves), m == m1),
        "__GFP_HIGH, non-blocking => m' == m1 - m1/4":
            z3.Implies(z3.And(high, z3.Not(halves)), m == m1 - z3.UDiv(m1, 4)),
        "m' == mark <=> no __GFP_HIGH or mark <= 1":
            (m == mark) == z3.Or(z3.Not(high), z3.ULE(mark, 1)),
    }
    atomic = z3.BitVecVal(GFP_ATOMIC, 32)
    return prove("watermark.reserve_rule", hyps, goal, timeout_ms,
                 witnesses={"GFP_ATOMIC goes to 3/8 of a mark of 8":
                            z3.And(gfp == atomic, mark == 8, m == 3)})
