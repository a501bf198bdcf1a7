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

from collections.abc import Callable, Iterable
from functools import lru_cache
from itertools import chain
from operator import attrgetter, sub
from typing import cast

from impl.page_alloc import OWNER_PAGECACHE, PageAllocator, Zone
from impl.watermarks import WMARK_HIGH, WMARK_LOW, WMARK_MIN
from spec.context import Context
from spec.gfp import __GFP_THISNODE, MIGRATE_MOVABLE, gfp_zone
from spec.invariants import step_violations, violated
from spec.layout import NUMA_NO_NODE
from spec.reserves import gfp_to_alloc_flags, no_watermarks, watermark_min_adjusted
from spec.rules import kswapd_violations, numa_delta, state_zone_facts, zone_facts
from spec.state import (
    AllocBlock,
    FreeBlock,
    KswapdRecord,
    MemState,
    NumaDelta,
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
        counts = z.counts
        nxt = z._nxt
        limit = len(nxt)
        for idx, p in enumerate(z.heads):
            if counts[idx]:
                nr_free[(z.zid, idx >> 3, idx & 7)] = counts[idx]
            if p == -1:
                continue
            w = (z.zid, idx >> 3, idx & 7)
            steps = 0
            while p != -1 and steps <= limit:  # a cycle stops after every entry
                seen[p] = seen.get(p, 0) + 1
                where[p] = w
                p = nxt.get(p, -1)
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


def _zone_facts(a: PageAllocator, z: Zone) -> ZoneFacts:
    return zone_facts(_zone_spec(a, z), ((p, o) for p, o, _mt in z.free_blocks()), a.max_order)


def facts(a: PageAllocator, zones: Iterable[Zone] | None = None) -> tuple[ZoneFacts, ...]:
    """spec.rules.zone_facts of ``zones`` (default: every zone), from the free lists (lazy
    boot blocks included) without building the whole abstract state. Memoized per allocator
    by everything they read (:meth:`_CallFacts.zone_facts`; tests/test_modelcheck.py
    compares with a fresh computation)."""
    cf = _LAST_CALL_FACTS[0]
    if cf is None or cf.a is not a:
        cf = _call_facts(a)
    return tuple(map(cf.zone_facts, a.zones if zones is None else zones))


def state_facts(a: PageAllocator) -> tuple[ZoneFacts, ...]:
    """spec.rules.state_zone_facts(abstract(a)) (what the liveness rule reads), memoized per
    allocator by everything abstract() builds the free blocks from
    (:meth:`_CallFacts.state_facts`; tests/test_modelcheck.py compares)."""
    cf = _LAST_CALL_FACTS[0]
    if cf is None or cf.a is not a:
        cf = _call_facts(a)
    return cf.state_facts()


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


def _kswapd_record(a: PageAllocator, nid: int, boost_before: tuple[int, ...],
                   zone_facts_after: Callable[[], tuple[ZoneFacts, ...]] | None = None
                   ) -> KswapdRecord:
    node_zones = a.nodes[nid].zones
    left = sum(1 for p, zid in _pagecache(a).items()
               if a.zones[zid].nid == nid and p not in a.refs)
    if zone_facts_after is None:
        return KswapdRecord(nid, facts(a, node_zones), boost_before, left)
    every = zone_facts_after()  # facts(a) of every zone; zid is the index in a.zones
    return KswapdRecord(nid, tuple(every[z.zid] for z in node_zones), boost_before, left)


_Five = tuple[int, int, int, int, int]
_NUMA: Callable[[Zone], _Five] = attrgetter("numa_hit", "numa_miss", "numa_foreign",
                                            "numa_local", "numa_other")
"""A zone's NUMA event counters as a tuple (read in C: alloc_step reads them twice per call)."""


_GFP_THISNODE = __GFP_THISNODE  # (a double-underscore name is mangled inside a class)


class _CallFacts:
    """What alloc_step derives from an allocator's constants alone, per allocator: for each
    call (nid, gfp, order, cpu) the CPU's node, the preferred node, no_watermarks, the
    preferred zone, gfp_zone and gfp_to_alloc_flags; the ``numa`` field for each vector of
    counter changes. All are functions of the call and of constant fields (cpu_node,
    zonelists, zid, nid: proofs/mcstate.py's ``const``), so they are computed once (the
    watermarks, which a test may set, are read live). Also the zone facts, by
    everything they read (:meth:`zone_facts`, :meth:`state_facts`)."""

    __slots__ = ("a", "calls", "facts", "numa", "state", "zero")

    def __init__(self, a: PageAllocator) -> None:
        self.a = a
        self.calls: dict[tuple[int, int, int, int],
                         tuple[int, int, bool, int, int, int]] = {}
        self.zero = tuple(NumaDelta(z.zid, z.nid, 0, 0, 0, 0, 0) for z in a.zones)
        self.numa: dict[tuple[int, ...], tuple[NumaDelta, ...]] = {}
        self.facts: dict[tuple[object, ...], ZoneFacts] = {}
        self.state: dict[tuple[object, ...], tuple[ZoneFacts, ...]] = {}

    def call(self, nid: int, gfp: int, order: int, cpu: int
             ) -> tuple[int, int, bool, int, int, int]:
        a = self.a
        cpu_nid = a.cpu_node[cpu]
        pref = cpu_nid if nid == NUMA_NO_NODE else nid
        hz, no_wmarks, alloc_flags = _mask_facts(gfp, order)
        # the real zonelist (PageAllocator's, even when a seeded bug overrides it)
        zl = PageAllocator.zonelist(a, pref, hz, bool(gfp & _GFP_THISNODE))
        out = (cpu_nid, pref, no_wmarks, zl[0].zid if zl else -1, hz, alloc_flags)
        self.calls[(nid, gfp, order, cpu)] = out
        return out

    def zone_facts(self, z: Zone) -> ZoneFacts:
        """The facts of zone ``z`` of the allocator, by what _zone_spec and free_blocks()
        read: the zone (its constants), boost, managed, watermarks, lowmem_reserve, the
        list heads, the next links and the lazy boot ranges. The same zone with the same
        free lists repeats across the states of a search."""
        key = (z.zid, z.boost, z.managed, tuple(z.wmark), tuple(z.lowmem_reserve),
               tuple(z.heads), tuple(sorted(z._nxt.items())),
               tuple(map(tuple, z._lazy)) if z._lazy else ())
        f = self.facts.get(key)
        if f is None:
            if len(self.facts) > 100_000:
                self.facts.clear()
            f = self.facts[key] = _zone_facts(self.a, z)
        return f

    def state_facts(self) -> tuple[ZoneFacts, ...]:
        """spec.rules.state_zone_facts(abstract(a)), by what it reads: for every zone its
        constants, boost, the list heads, the next links, the PageBuddy entries and the lazy
        boot ranges (abstract() builds the free blocks from these alone)."""
        key = tuple((z.boost, z.managed, tuple(z.wmark), tuple(z.lowmem_reserve),
                     tuple(z.heads), tuple(sorted(z._nxt.items())),
                     tuple(sorted(z._buddy.items())),
                     tuple(map(tuple, z._lazy)) if z._lazy else ()) for z in self.a.zones)
        f = self.state.get(key)
        if f is None:
            if len(self.state) > 100_000:
                self.state.clear()
            f = self.state[key] = state_zone_facts(abstract(self.a))
        return f

    def numa_of(self, before: tuple[int, ...], after: tuple[int, ...]) -> tuple[NumaDelta, ...]:
        """Every zone's spec.rules.numa_delta between the flat counter vectors."""
        diff = tuple(map(sub, after, before))
        out = self.numa.get(diff)
        if out is None:
            zs = self.a.zones
            out = tuple(numa_delta(z.zid, z.nid, cast(_Five, before[5 * i:5 * i + 5]),
                                   cast(_Five, after[5 * i:5 * i + 5])) for i, z in enumerate(zs))
            if len(self.numa) > 4096:
                self.numa.clear()
            self.numa[diff] = out
        return out


_CALL_FACTS: dict[int, _CallFacts] = {}
"""id(allocator) -> its _CallFacts (which holds the allocator, so the id is not reused while
the entry lives); a few allocators at a time."""

_LAST_CALL_FACTS: list[_CallFacts | None] = [None]
"""The entry used last (a model-checker run uses one allocator)."""


def _call_facts(a: PageAllocator) -> _CallFacts:
    cf = _LAST_CALL_FACTS[0]
    if cf is not None and cf.a is a:
        return cf
    cf = _CALL_FACTS.get(id(a))
    if cf is not None and cf.a is a:
        _LAST_CALL_FACTS[0] = cf
        return cf
    if cf is not None and cf.a is a:
        return cf
    if len(_CALL_FACTS) >= 8:
        _CALL_FACTS.clear()
        _LAST_CALL_FACTS[0] = None
    cf = _CALL_FACTS[id(a)] = _LAST_CALL_FACTS[0] = _CallFacts(a)
    return cf


def _numa_vector(zones: list[Zone]) -> tuple[int, ...]:
    """Every zone's NUMA counters, one flat tuple."""
    return tuple(chain.from_iterable(map(_NUMA, zones)))


def alloc_step(a: PageAllocator, nid: int, gfp: int, order: int, *, cpu: int = 0,
               ctx: Context | None = None, pagecache_before: dict[int, int] | None = None,
               zone_facts_after: Callable[[], tuple[ZoneFacts, ...]] | None = None,
               ) -> tuple[int | None, StepRecord]:
    """Run alloc_pages_node() and describe the call for the step properties. Raises what the
    allocator raises (state unchanged).

    Direct reclaim is told apart from kswapd by tracing ``a.kswapd`` for the duration of the
    call (an instance attribute shadowing the method, removed afterwards): page-cache pages
    that disappear inside a kswapd run are kswapd's, every other one that disappears is the
    caller's direct reclaim, however the implementation reaches it.

    Runs on every allocation the model checker tries, so the record is built once, from
    plain reads (the zone facts, the only costly part, only for a failed call, whose rules
    read them) and the per-allocator constants of :class:`_CallFacts`. A caller that already
    knows the state before the call may pass ``pagecache_before`` (what :func:`_pagecache`
    returns now) and ``zone_facts_after`` (a function returning what :func:`facts` of every
    zone would return after the call: the model checker memoizes it for the calls that leave
    the state as it was); the record is the same either way (tests/test_modelcheck.py
    compares them)."""
    before = len(a.effects)
    cache_before = _pagecache(a) if pagecache_before is None else pagecache_before
    zones = a.zones
    numa_before = _NUMA(zones[0]) if len(zones) == 1 else _numa_vector(zones)
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
    cf = _LAST_CALL_FACTS[0]
    if cf is None or cf.a is not a:
        cf = _call_facts(a)
    call = cf.calls.get((nid, gfp, order, cpu))
    if call is None:
        call = cf.call(nid, gfp, order, cpu)
    cpu_nid, pref, no_wmarks, pref_zid, hz, alloc_flags = call
    slept = False
    effects = a.effects
    if len(effects) > before:
        for e in effects[before:]:
            if e.kind == "sleep":
                slept = True
                break
    reclaimed: tuple[tuple[int, int], ...] = ()
    if cache_before:
        # the page-cache pages no longer in _pagecache(a): gone, or given another owner
        allocated = a.allocated
        gone = [p for p in cache_before if (r := allocated.get(p)) is None
                or r[2] != OWNER_PAGECACHE]
        if gone:
            reclaimed = tuple(sorted({(zones[zid].nid, zones[zid].idx)
                                      for p in gone if p not in by_kswapd
                                      for zid in (cache_before[p],)}))
    numa_after = _NUMA(zones[0]) if len(zones) == 1 else _numa_vector(zones)
    numa = cf.zero if numa_after == numa_before else cf.numa_of(numa_before, numa_after)
    if pfn is None:
        return None, _new_record(StepRecord, (
            "alloc_pages", gfp, int(ctx), order, -1, -1, slept, 0, 0, no_wmarks, -1, -1, pref,
            facts(a) if zone_facts_after is None else zone_facts_after(), reclaimed, pref_zid,
            cpu_nid, numa, tuple(runs)))
    z = zones[a.allocated[pfn][1]]
    mark = _min_adjusted(z.wmark[0], alloc_flags) + z.lowmem_reserve[hz]  # read live
    return pfn, _new_record(StepRecord, (
        "alloc_pages", gfp, int(ctx), order, pfn, z.zid, slept, z.free_pages, mark,
        no_wmarks, z.idx, z.nid, pref, (), reclaimed, pref_zid, cpu_nid, numa,
        tuple(runs) if runs else ()))


_new_record = tuple.__new__
"""StepRecord(*fields) without the keyword-capable constructor (the same object; alloc_step
builds one per call)."""


def check(a: PageAllocator, *, fast: bool = False) -> list[str]:
    """Names of the invariants the allocator's current state breaks."""
    return violated(abstract(a), fast=fast)


def check_step(r: StepRecord) -> list[str]:
    """Names of the step properties an allocation step breaks (spec/invariants.py and
    spec/rules.py)."""
    return step_violations(r)


def kswapd_run(a: PageAllocator, nid: int, *,
               zone_facts_after: Callable[[], tuple[ZoneFacts, ...]] | None = None
               ) -> tuple[int, KswapdRecord]:
    """Run kswapd(nid) and describe the run for spec.rules' kswapd properties. Raises what the
    allocator raises (state unchanged). ``zone_facts_after``: as for :func:`alloc_step` (what
    :func:`facts` of every zone returns after the run; the record is the same)."""
    if type(nid) is not int or not 0 <= nid < len(a.nodes):
        a.kswapd(nid)  # raises BadNodeError
        raise AssertionError(f"kswapd({nid!r}) accepted a node that is not online")
    boost = tuple(z.boost for z in a.nodes[nid].zones)
    n = a.kswapd(nid)
    return n, _kswapd_record(a, nid, boost, zone_facts_after)


def kswapd_step(a: PageAllocator, nid: int) -> tuple[int, list[str]]:
    """Run kswapd(nid) and return (pages reclaimed, names of the kswapd rules it broke:
    spec.rules.KSWAPD_PROPERTIES). Raises what the allocator raises (state unchanged)."""
    n, rec = kswapd_run(a, nid)
    return n, kswapd_violations(rec)
