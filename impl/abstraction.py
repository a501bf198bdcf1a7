"""The abstraction function: implementation state -> specification state (spec/state.py).

``abstract()`` walks every free list (so a block listed twice, or listed but not PageBuddy, is
visible to the invariants), expands the lazy boot ranges, and copies the allocated blocks and
counters. ``alloc_step()`` runs one allocation and describes it as a StepRecord for the step
properties. Both are linear in the state size: for tests, the model checker and debug mode.
"""

from __future__ import annotations

from impl.page_alloc import PageAllocator
from spec.context import Context
from spec.gfp import MIGRATE_MOVABLE, gfp_zone
from spec.invariants import step_violations, violated
from spec.layout import NUMA_NO_NODE
from spec.reserves import gfp_to_alloc_flags, no_watermarks, watermark_min_adjusted
from spec.state import AllocBlock, FreeBlock, MemState, StepRecord, ZoneSpec


def _usable(a: PageAllocator, zid: int) -> tuple[tuple[int, int], ...]:
    cfg = a.zones[zid].cfg
    out: list[tuple[int, int]] = []
    for s, e in sorted(cfg.ranges):
        cur = s
        for rs, re_ in sorted(r for r in cfg.reserved if s <= r[0] < e):
            if rs > cur:
                out.append((cur, rs))
            cur = max(cur, re_)
        if cur < e:
            out.append((cur, e))
    return tuple(out)


def abstract(a: PageAllocator) -> MemState:
    """The specification's view of ``a``."""
    zones = tuple(ZoneSpec(z.zid, z.nid, z.idx, z.start, z.end, _usable(a, z.zid))
                  for z in a.zones)
    free: dict[int, FreeBlock] = {}
    seen: dict[int, int] = {}
    where: dict[int, tuple[int, int, int]] = {}
    nr_free: dict[tuple[int, int, int], int] = {}
    for z in a.zones:
        for idx in range(len(z.heads)):
            if z.counts[idx]:
                nr_free[(z.zid, idx >> 3, idx & 7)] = z.counts[idx]
            p = z.heads[idx]
            steps = 0
            while p != -1 and steps <= len(z._nxt):
                seen[p] = seen.get(p, 0) + 1
                where[p] = (z.zid, idx >> 3, idx & 7)
                p = z._nxt.get(p, -1)
                steps += 1
        step = 1 << z.max_order
        for s, e in z._lazy:
            for p in range(s, e, step):
                seen[p] = seen.get(p, 0) + 1
                where[p] = (z.zid, z.max_order, MIGRATE_MOVABLE)
        for p, (zid, lo, lmt) in where.items():
            if a.zones[zid] is not z:
                continue
            bi = z._buddy.get(p)
            order = (bi >> 3) if bi is not None else (lo if z.lazy_block_at(p) == p else -1)
            free[p] = FreeBlock(p, order, zid, lo, lmt, seen[p])
        for p, bi in z._buddy.items():
            if p not in free:  # PageBuddy but on no list
                free[p] = FreeBlock(p, bi >> 3, z.zid, bi >> 3, bi & 7, 0)
    allocated = {p: AllocBlock(p, r[0], r[1], r[2], r[3]) for p, r in a.allocated.items()}
    return MemState(a.max_order, a.pageblock_order, zones, free, allocated,
                    bytes(a.pageblock_flags), nr_free, {z.zid: z.free_pages for z in a.zones},
                    pfn_limit=a.max_pfn)


def alloc_step(a: PageAllocator, nid: int, gfp: int, order: int, *, cpu: int = 0,
               ctx: Context | None = None) -> tuple[int | None, StepRecord]:
    """Run alloc_pages_node() and describe the call for the step properties. Raises what the
    allocator raises (state unchanged)."""
    before = len(a.effects)
    pfn = a.alloc_pages_node(nid, gfp, order, cpu=cpu, ctx=ctx)
    effects = a.effects[before:]
    if ctx is None:
        ctx = a.context(cpu)
    pref = a.cpu_node[cpu] if nid == NUMA_NO_NODE else nid
    slept = any(e.kind == "sleep" for e in effects)
    if pfn is None:
        return None, StepRecord("alloc_pages", gfp, int(ctx), order, -1, -1, slept, 0, 0,
                                bool(no_watermarks(gfp)), -1, -1, pref)
    z = a.zones[a.allocated[pfn][1]]
    hz = int(gfp_zone(gfp))
    mark = int(watermark_min_adjusted(z.wmark[0], gfp_to_alloc_flags(gfp, order)))
    mark += z.lowmem_reserve[hz]
    return pfn, StepRecord("alloc_pages", gfp, int(ctx), order, pfn, z.zid, slept,
                           z.free_pages, mark, bool(no_watermarks(gfp)), z.idx, z.nid, pref)


def check(a: PageAllocator, *, fast: bool = False) -> list[str]:
    """Names of the invariants the allocator's current state breaks."""
    return violated(abstract(a), fast=fast)


def check_step(r: StepRecord) -> list[str]:
    """Names of the step properties an allocation step breaks."""
    return step_violations(r)


def kswapd_step(a: PageAllocator, nid: int) -> tuple[int, list[str]]:
    """Run kswapd(nid) and return (pages reclaimed, names of the kswapd rules it broke).
    Raises what the allocator raises (state unchanged)."""
    return a.kswapd(nid), []
