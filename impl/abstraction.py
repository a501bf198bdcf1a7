"""The abstraction function: implementation state -> specification state (spec/state.py).

``abstract()`` walks every free list (so a block listed twice, or listed but not PageBuddy, is
visible to the invariants), expands the lazy boot ranges, and copies the allocated blocks and
counters. ``alloc_step()`` runs one allocation and describes it as a StepRecord for the step
properties (including which zones its direct reclaim touched, the NUMA counters it moved and
the kswapd runs it waited for); ``kswapd_step()`` runs kswapd and checks spec.rules'
kswapd properties. All are linear in the state size: for tests, the model checker and debug
mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from impl.page_alloc import OWNER_PAGECACHE, PageAllocator, Zone
from impl.watermarks import WMARK_HIGH, WMARK_LOW, WMARK_MIN
from spec.context import Context
from spec.gfp import __GFP_THISNODE, MIGRATE_MOVABLE, gfp_zone
from spec.invariants import step_violations, violated
from spec.layout import NUMA_NO_NODE
from spec.reserves import gfp_to_alloc_flags, no_watermarks, watermark_min_adjusted
from spec.rules import kswapd_violations, numa_delta, zone_facts
from spec.state import (
    AllocBlock,
    FreeBlock,
    KswapdRecord,
    MemState,
    StepRecord,
    ZoneFacts,
    ZoneSpec,
)

_USABLE: dict[int, tuple[object, tuple[tuple[int, int], ...]]] = {}
"""id(ZoneConfig) -> (the config, its usable ranges): a function of the constant config, so
computed once per zone (alloc_step builds zone facts on every failed allocation)."""


def _usable(a: PageAllocator, zid: int) -> tuple[tuple[int, int], ...]:
    cfg = a.zones[zid].cfg
    hit = _USABLE.get(id(cfg))
    if hit is not None and hit[0] is cfg:
        return hit[1]
    out: list[tuple[int, int]] = []
    for s, e in sorted(cfg.ranges):
        cur = s
        for rs, re_ in sorted(r for r in cfg.reserved if s <= r[0] < e):
            if rs > cur:
                out.append((cur, rs))
            cur = max(cur, re_)
        if cur < e:
            out.append((cur, e))
    if len(_USABLE) > 4096:
        _USABLE.clear()
    _USABLE[id(cfg)] = (cfg, tuple(out))
    return tuple(out)


def _zone_spec(a: PageAllocator, z: Zone) -> ZoneSpec:
    return ZoneSpec(z.zid, z.nid, z.idx, z.start, z.end, _usable(a, z.zid), z.managed,
                    z.wmark[WMARK_MIN], z.wmark[WMARK_LOW], z.wmark[WMARK_HIGH], z.boost,
                    tuple(z.lowmem_reserve))


def abstract(a: PageAllocator) -> MemState:
    """The specification's view of ``a``."""
    zones = tuple(_zone_spec(a, z) for z in a.zones)
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


def facts(a: PageAllocator, zones: Iterable[Zone] | None = None) -> tuple[ZoneFacts, ...]:
    """spec.rules.zone_facts of ``zones`` (default: every zone), from the free lists (lazy
    boot blocks included) without building the whole abstract state."""
    return tuple(zone_facts(_zone_spec(a, z), ((p, o) for p, o, _mt in z.free_blocks()),
                            a.max_order)
                 for z in (a.zones if zones is None else zones))


def _pagecache(a: PageAllocator) -> dict[int, int]:
    """pfn -> zid of every page-cache page (by owner, so a bug that loses a page from an LRU
    still shows)."""
    return {p: r[1] for p, r in a.allocated.items() if r[2] == OWNER_PAGECACHE}


@lru_cache(maxsize=4096)
def _mask_facts(gfp: int, order: int) -> tuple[int, bool, int]:
    """gfp_zone, no_watermarks and gfp_to_alloc_flags of a (mask, order): pure functions of
    the spec, evaluated once per pair (alloc_step runs on every model-checker transition)."""
    return int(gfp_zone(gfp)), bool(no_watermarks(gfp)), int(gfp_to_alloc_flags(gfp, order))


@lru_cache(maxsize=4096)
def _min_adjusted(mark: int, alloc_flags: int) -> int:
    return int(watermark_min_adjusted(mark, alloc_flags))


def _kswapd_record(a: PageAllocator, nid: int, boost_before: tuple[int, ...]) -> KswapdRecord:
    node_zones = a.nodes[nid].zones
    left = sum(1 for p, zid in _pagecache(a).items()
               if a.zones[zid].nid == nid and p not in a.refs)
    return KswapdRecord(nid, facts(a, node_zones), boost_before, left)


def alloc_step(a: PageAllocator, nid: int, gfp: int, order: int, *, cpu: int = 0,
               ctx: Context | None = None) -> tuple[int | None, StepRecord]:
    """Run alloc_pages_node() and describe the call for the step properties. Raises what the
    allocator raises (state unchanged).

    Direct reclaim is told apart from kswapd by tracing ``a.kswapd`` for the duration of the
    call (an instance attribute shadowing the method, removed afterwards): page-cache pages
    that disappear inside a kswapd run are kswapd's, every other one that disappears is the
    caller's direct reclaim, however the implementation reaches it.

    Runs on every allocation the model checker tries, so the record is built once, from
    plain reads (the zone facts, the only costly part, only for a failed call, whose rules
    read them)."""
    before = len(a.effects)
    allocated = a.allocated
    cache_before = _pagecache(a)
    zones = a.zones
    numa_before = [(z.numa_hit, z.numa_miss, z.numa_foreign, z.numa_local, z.numa_other)
                   for z in zones]
    runs: list[KswapdRecord] = []
    by_kswapd: set[int] = set()
    real_kswapd = a.kswapd

    def traced_kswapd(knid: int) -> int:
        if type(knid) is not int or not 0 <= knid < len(a.nodes):
            return real_kswapd(knid)
        boost = tuple(z.boost for z in a.nodes[knid].zones)
        cache = set(_pagecache(a))
        n = real_kswapd(knid)
        by_kswapd.update(cache - set(_pagecache(a)))
        runs.append(_kswapd_record(a, knid, boost))
        return n

    setattr(a, "kswapd", traced_kswapd)  # noqa: B010 - an instance attribute, on purpose
    try:
        pfn = a.alloc_pages_node(nid, gfp, order, cpu=cpu, ctx=ctx)
    finally:
        delattr(a, "kswapd")
    if ctx is None:
        ctx = a.context(cpu)
    cpu_nid = a.cpu_node[cpu]
    pref = cpu_nid if nid == NUMA_NO_NODE else nid
    hz, no_wmarks, alloc_flags = _mask_facts(gfp, order)
    slept = False
    for e in a.effects[before:]:
        if e.kind == "sleep":
            slept = True
            break
    reclaimed: tuple[tuple[int, int], ...] = ()
    if cache_before:
        cache_after = _pagecache(a)
        reclaimed = tuple(sorted({(zones[zid].nid, zones[zid].idx)
                                  for p, zid in cache_before.items()
                                  if p not in cache_after and p not in by_kswapd}))
    # the real zonelist (PageAllocator's, even when a seeded bug overrides it)
    zl = PageAllocator.zonelist(a, pref, hz, bool(gfp & __GFP_THISNODE))
    numa = tuple(numa_delta(z.zid, z.nid, nb, (z.numa_hit, z.numa_miss, z.numa_foreign,
                                                z.numa_local, z.numa_other))
                 for z, nb in zip(zones, numa_before, strict=True))
    pref_zid = zl[0].zid if zl else -1
    if pfn is None:
        return None, StepRecord("alloc_pages", gfp, int(ctx), order, -1, -1, slept, 0, 0,
                                no_wmarks, -1, -1, pref, facts(a), reclaimed, pref_zid,
                                cpu_nid, numa, tuple(runs))
    z = zones[allocated[pfn][1]]
    mark = _min_adjusted(z.wmark[0], alloc_flags) + z.lowmem_reserve[hz]
    return pfn, StepRecord("alloc_pages", gfp, int(ctx), order, pfn, z.zid, slept,
                           z.free_pages, mark, no_wmarks, z.idx, z.nid, pref, (), reclaimed,
                           pref_zid, cpu_nid, numa, tuple(runs))


def check(a: PageAllocator, *, fast: bool = False) -> list[str]:
    """Names of the invariants the allocator's current state breaks."""
    return violated(abstract(a), fast=fast)


def check_step(r: StepRecord) -> list[str]:
    """Names of the step properties an allocation step breaks (spec/invariants.py and
    spec/rules.py)."""
    return step_violations(r)


def kswapd_run(a: PageAllocator, nid: int) -> tuple[int, KswapdRecord]:
    """Run kswapd(nid) and describe the run for spec.rules' kswapd properties. Raises what the
    allocator raises (state unchanged)."""
    if type(nid) is not int or not 0 <= nid < len(a.nodes):
        a.kswapd(nid)  # raises BadNodeError
        raise AssertionError(f"kswapd({nid!r}) accepted a node that is not online")
    boost = tuple(z.boost for z in a.nodes[nid].zones)
    n = a.kswapd(nid)
    return n, _kswapd_record(a, nid, boost)


def kswapd_step(a: PageAllocator, nid: int) -> tuple[int, list[str]]:
    """Run kswapd(nid) and return (pages reclaimed, names of the kswapd rules it broke:
    spec.rules.KSWAPD_PROPERTIES). Raises what the allocator raises (state unchanged)."""
    n, rec = kswapd_run(a, nid)
    return n, kswapd_violations(rec)
