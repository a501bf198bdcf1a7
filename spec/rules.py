"""Rules about what one call may do to memory it does not own: when an allocation may fail,
where reclaim may take pages from, how the NUMA counters move, when kswapd may stop.

Each rule is defined once here and registered as a step property (spec/invariants.py
STEP_PROPERTIES, which imports this module), so impl.abstraction.check_step, and through it
the model checker and the state machine, check every one of them on every allocation call.
``kswapd.balanced`` is also registered in :data:`KSWAPD_PROPERTIES`, for a kswapd run on its
own (impl.abstraction.kswapd_step).

Also here, because the rules and the oracle need them: the zone facts the rules read
(:func:`zone_facts`: free pages and the largest aligned free run, counted from the free
blocks), and the subject protocol's liveness rule (:func:`liveness_witness`), the single
definition that proofs/modelcheck.py re-exports.

Sources: mm/page_alloc.c (__alloc_pages, __alloc_pages_slowpath, get_page_from_freelist,
zone_watermark_fast, __zone_watermark_ok, zone_statistics), mm/vmscan.c (try_to_free_pages,
shrink_zones, balance_pgdat, pgdat_balanced), include/linux/gfp.h (gfp_zone, gfp_zonelist).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from spec.alloc_rules import zone_allowed
from spec.gfp import __GFP_THISNODE, format_gfp, gfp_zone
from spec.invariants import step_property
from spec.logic import And, Bits, If, Implies, Not, Or
from spec.reserves import (
    ALLOC_MIN_RESERVE,
    gfp_to_alloc_flags,
    may_sleep,
    no_watermarks,
    watermark_min_adjusted,
)
from spec.state import KswapdRecord, MemState, NumaDelta, StepRecord, ZoneFacts, ZoneSpec

# --- zone facts --------------------------------------------------------------------------------


def free_intervals(blocks: Iterable[tuple[int, int]], lo: int, hi: int
                   ) -> list[tuple[int, int]]:
    """The free (pfn, order) blocks as maximal [start, end) pfn intervals, clipped to
    [lo, hi). By pages: blocks that should have merged but did not still form one run."""
    out: list[tuple[int, int]] = []
    for pfn, order in sorted(blocks):
        if order < 0:
            continue
        s, e = max(pfn, lo), min(pfn + (1 << order), hi)
        if s >= e:
            continue
        if out and out[-1][1] >= s:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def max_aligned_run(intervals: Iterable[tuple[int, int]], max_order: int) -> int:
    """The largest k <= max_order such that some interval holds an aligned run of 2^k pages
    (a 2^k-aligned base b with [b, b + 2^k) inside it); -1 if there is no free page."""
    best = -1
    for s, e in intervals:
        for k in range(max_order, best, -1):
            n = 1 << k
            if -(-s // n) * n + n <= e:
                best = k
                break
    return best


def zone_facts(z: ZoneSpec, blocks: Iterable[tuple[int, int]], max_order: int) -> ZoneFacts:
    """The facts of zone ``z`` whose free blocks (head pfn, order) are ``blocks``."""
    iv = free_intervals(blocks, z.start, z.end)
    return ZoneFacts(z.zid, z.nid, z.zone, z.managed, z.wmark_min, z.wmark_low, z.wmark_high,
                     z.boost, z.lowmem_reserve, sum(e - s for s, e in iv),
                     max_aligned_run(iv, max_order))


def state_zone_facts(s: MemState) -> tuple[ZoneFacts, ...]:
    """The facts of every zone of an abstract state (a block belongs to its head's zone)."""
    per: dict[int, list[tuple[int, int]]] = {z.zid: [] for z in s.zones}
    for b in s.free.values():
        zid = s.zone_at(b.pfn)
        if zid in per:
            per[zid].append((b.pfn, b.order))
    return tuple(zone_facts(z, per[z.zid], s.max_order) for z in s.zones)


def zone_free_pages(s: MemState, zid: int) -> set[int]:
    """The pfns of zone ``zid`` inside free blocks (from the blocks, not from counters).
    Per page: for small machines and for tests."""
    z = s.zones[zid]
    out: set[int] = set()
    for b in s.free.values():
        if s.zone_at(b.pfn) == zid and b.order >= 0:
            out.update(range(max(b.pfn, z.start), min(b.pfn + (1 << b.order), z.end)))
    return out


def aligned_free_runs(s: MemState, zid: int, order: int) -> Iterator[int]:
    """First pfns of the aligned runs of 2^order free pages inside zone ``zid`` (by pages,
    not by blocks: the spec does not assume the free lists are merged). Per page."""
    free = zone_free_pages(s, zid)
    n = 1 << order
    zone = s.zones[zid]
    start = -(-zone.start // n) * n
    for base in range(start, zone.end - n + 1, n):
        if all(p in free for p in range(base, base + n)):
            yield base


# --- when an allocation may fail -------------------------------------------------------------

def allowed_zone(z: ZoneFacts, gfp: int, pref_nid: int) -> bool:
    """A zone the request may allocate from: a managed zone of index <= gfp_zone(gfp), on
    ``pref_nid`` (the requested node, or the CPU's for NUMA_NO_NODE) with __GFP_THISNODE
    (ZONELIST_NOFALLBACK), on any node otherwise (ZONELIST_FALLBACK holds every node)."""
    return bool(z.managed > 0 and zone_allowed(z.zone, gfp)
                and (not gfp & __GFP_THISNODE or z.nid == pref_nid))


def could_serve(z: ZoneFacts, order: int, need: int) -> bool:
    """``z`` holds an aligned free run of 2^order pages and taking it leaves >= ``need``
    free: __zone_watermark_ok()'s ``free - (2^order - 1) > mark + lowmem_reserve``."""
    return z.max_run >= order and z.free - (1 << order) >= need


def _serving_zone(zones: Iterable[ZoneFacts], gfp: int, order: int, pref_nid: int,
                  need: Callable[[ZoneFacts], int]) -> str | None:
    for z in zones:
        if allowed_zone(z, gfp, pref_nid) and could_serve(z, order, need(z)):
            return (f"zone {z.zid} (node {z.nid}, zone index {z.zone}) has {z.free} free "
                    f"pages, needs {need(z)} left after the request, and holds an aligned "
                    f"free run of order {z.max_run} >= {order}")
    return None


def liveness_witness(zones: Iterable[ZoneFacts], pref_nid: int, gfp: int, order: int
                     ) -> str | None:
    """The subject protocol's liveness rule for a failed alloc_pages that may sleep: None
    if failing was allowed, else a description of a zone that could have served it.

    A zone could have served the request if it is allowed (:func:`allowed_zone`), holds an
    aligned free run of 2^order pages and taking it leaves at least min +
    lowmem_reserve[gfp_zone(gfp)] free. ``zones`` are the facts after the call (after any
    direct reclaim it did, and after the kswapd runs that cleared the watermark boosts while
    it slept, so the boost does not enter)."""
    hz = int(gfp_zone(gfp))
    return _serving_zone(zones, gfp, order, pref_nid,
                         lambda z: z.wmark_min + z.lowmem_reserve[hz])


def nonblocking_need(z: ZoneFacts, gfp: int, order: int) -> int:
    """What a call that may not sleep must leave free in ``z`` for the kernel to be allowed to
    fail it: its last chance is the slow path's get_page_from_freelist() at WMARK_MIN with the
    alloc flags of gfp_to_alloc_flags() (no ALLOC_NOFRAGMENT), so the mark is min + boost,
    reduced by the reserve arithmetic of spec.reserves.watermark_min_adjusted (GFP_ATOMIC:
    min - min/2 - (min - min/2)/4), plus lowmem_reserve[gfp_zone(gfp)]; zone_watermark_fast()
    drops the boost for order-0 ALLOC_MIN_RESERVE requests. __GFP_MEMALLOC (without
    __GFP_NOMEMALLOC) ignores watermarks: nothing needs to be left."""
    if no_watermarks(gfp):
        return -(1 << order)
    flags = gfp_to_alloc_flags(gfp, order)
    boost = If(And(order == 0, (flags & ALLOC_MIN_RESERVE) != 0), 0, z.boost)
    return int(watermark_min_adjusted(z.wmark_min + boost, flags)) + z.lowmem_reserve[
        int(gfp_zone(gfp))]


def premature_failure_witness(zones: Iterable[ZoneFacts], pref_nid: int, gfp: int, order: int
                              ) -> str | None:
    """For a failed call that may not sleep: None if failing was allowed, else a zone whose
    reserve still covered the request (:func:`nonblocking_need`). The model has no
    highatomic reserves, CMA or cpusets, the only ways the kernel could still fail here."""
    return _serving_zone(zones, gfp, order, pref_nid,
                         lambda z: nonblocking_need(z, gfp, order))


@step_property("liveness.blocking",
               "A failed allocation that may sleep (process context, __GFP_DIRECT_RECLAIM) had "
               "no allowed zone holding an aligned free run of 2^order pages whose allocation "
               "would leave min + lowmem_reserve[highest_zoneidx] free (the protocol's "
               "liveness rule).",
               "mm/page_alloc.c __alloc_pages_slowpath (direct reclaim, retries); "
               "docs/protocol.md liveness")
def step_liveness(r: StepRecord) -> Bits:
    return Implies(And(r.pfn < 0, len(r.zones) > 0, may_sleep(r.gfp, r.ctx)),
                   liveness_witness(r.zones, r.pref_nid, r.gfp, r.order) is None)


@step_property("watermark.no_premature_failure",
               "A failed allocation that may not sleep had no allowed zone holding an aligned "
               "free run of 2^order pages whose allocation would leave its reserve-adjusted "
               "min (+ boost) + lowmem_reserve[highest_zoneidx] free.",
               "mm/page_alloc.c __alloc_pages_slowpath, get_page_from_freelist, "
               "zone_watermark_fast, __zone_watermark_ok, gfp_to_alloc_flags")
def step_no_premature_failure(r: StepRecord) -> Bits:
    return Implies(And(r.pfn < 0, len(r.zones) > 0, Not(may_sleep(r.gfp, r.ctx))),
                   premature_failure_witness(r.zones, r.pref_nid, r.gfp, r.order) is None)


# --- where reclaim may take pages from ---------------------------------------------------------

@step_property("reclaim.request_scope",
               "Every page direct reclaim freed during an allocation call lies in a zone the "
               "request may allocate from: zone index <= gfp_zone(gfp) and, with "
               "__GFP_THISNODE, on the requested node; the kswapd runs the caller woke and "
               "waited for reclaim their whole node and are kswapd's, not the caller's.",
               "mm/vmscan.c try_to_free_pages, shrink_zones (the request's zonelist and "
               "nodemask, sc->reclaim_idx = gfp_zone), isolate_lru_folios")
def step_reclaim_scope(r: StepRecord) -> Bits:
    hz = gfp_zone(r.gfp)
    thisnode = (r.gfp & __GFP_THISNODE) != 0
    return And(*(And(zidx <= hz, Implies(thisnode, nid == r.pref_nid))
                 for nid, zidx in r.reclaimed))


# --- NUMA statistics ---------------------------------------------------------------------------

def expected_numa(r: StepRecord) -> dict[int, tuple[int, int, int, int, int]]:
    """zone_statistics(preferred_zone, zone, 1) for the call ``r``: the change of (numa_hit,
    numa_miss, numa_foreign, numa_local, numa_other) of every zone that changes. The zone used
    counts a hit if it is on the preferred zone's node, else a miss and the preferred zone a
    foreign; it counts local if it is on the calling CPU's node, else other. A failed call
    counts nothing."""
    out: dict[int, tuple[int, int, int, int, int]] = {}
    if r.pfn < 0:
        return out
    nid = {d.zid: d.nid for d in r.numa}
    used, pref = r.zid, r.pref_zid
    hit = nid.get(used) == nid.get(pref)
    local = nid.get(used) == r.cpu_nid
    out[used] = (int(hit), int(not hit), 0, int(local), int(not local))
    if not hit:
        h, m, f, lo, o = out.get(pref, (0, 0, 0, 0, 0))
        out[pref] = (h, m, f + 1, lo, o)
    return out


@step_property("numa.zone_statistics",
               "A successful allocation call changes the NUMA counters exactly as "
               "zone_statistics(preferred zone, zone used, 1) says (hit or miss on the zone "
               "used, foreign on the preferred zone, local or other by the calling CPU's node); "
               "a failed call changes none.",
               "mm/page_alloc.c zone_statistics, rmqueue; mm/vmstat.c numa_stat items")
def step_numa_statistics(r: StepRecord) -> Bits:
    want = expected_numa(r)
    return And(Implies(And(r.pfn >= 0, len(r.numa) > 0), r.pref_zid >= 0),
               *((d.hit, d.miss, d.foreign, d.local, d.other)
                 == want.get(d.zid, (0, 0, 0, 0, 0)) for d in r.numa))


def numa_delta(zid: int, nid: int, before: tuple[int, int, int, int, int],
               after: tuple[int, int, int, int, int]) -> NumaDelta:
    """The NumaDelta of a zone whose counters went from ``before`` to ``after``."""
    return NumaDelta(zid, nid, *(b - a for a, b in zip(before, after, strict=True)))


# --- kswapd ------------------------------------------------------------------------------------

def node_balanced(k: KswapdRecord) -> Bits:
    """pgdat_balanced(pgdat, 0, highest_zoneidx) after the run: some managed zone of the node
    has free > high watermark + boost (as it was when the run started) +
    lowmem_reserve[highest_zoneidx], highest_zoneidx being the node's highest managed zone
    (the model's kswapd balances the whole node, for order 0). A node without managed zones
    is balanced by definition."""
    managed = [(z, b) for z, b in zip(k.zones, k.boost_before, strict=True) if z.managed > 0]
    if not managed:
        return True
    top = max(z.zone for z, _b in managed)
    return Or(*(z.free > z.wmark_high + b + z.lowmem_reserve[top] for z, b in managed))


def kswapd_balanced(k: KswapdRecord) -> Bits:
    """After a kswapd run the node is balanced, or no reclaimable page cache is left on it."""
    return Or(node_balanced(k), k.reclaimable == 0)


@dataclass(frozen=True)
class KswapdProperty:
    """A named property of one kswapd run."""

    name: str
    meaning: str
    kernel_ref: str
    definition: Callable[[KswapdRecord], Bits]


KSWAPD_MEANING = ("After kswapd(nid) runs, the node is balanced (some managed zone above its "
                  "high watermark + boost + lowmem_reserve[highest zone]) or no reclaimable "
                  "page cache remains on it.")
KSWAPD_REF = "mm/vmscan.c balance_pgdat, pgdat_balanced, zone_watermark_ok_safe"
KSWAPD_PROPERTIES: dict[str, KswapdProperty] = {
    "kswapd.balanced": KswapdProperty("kswapd.balanced", KSWAPD_MEANING, KSWAPD_REF,
                                      kswapd_balanced),
}


@step_property("kswapd.balanced", KSWAPD_MEANING + " Checked on the kswapd runs that happen "
               "while an allocating caller sleeps.", KSWAPD_REF)
def step_kswapd_balanced(r: StepRecord) -> Bits:
    return And(*(kswapd_balanced(k) for k in r.kswapd_runs))


def kswapd_violations(k: KswapdRecord) -> list[str]:
    """Names of the kswapd properties the run ``k`` breaks."""
    return [p.name for p in KSWAPD_PROPERTIES.values() if not p.definition(k)]


# --- explanations --------------------------------------------------------------------------------

def explain_step(r: StepRecord, name: str) -> str:
    """One line saying why the step ``r`` breaks the step property ``name``: the zone that
    could have served a failed call, the zones reclaim touched, the NUMA counters against what
    zone_statistics() says, the kswapd run that stopped early. For failure reports."""
    head = (f"alloc_pages(order {r.order}, {format_gfp(r.gfp)}, ctx {r.ctx}, node "
            f"{r.pref_nid}) -> {'NULL' if r.pfn < 0 else hex(r.pfn)}")
    why = ""
    if name == "liveness.blocking":
        why = liveness_witness(r.zones, r.pref_nid, r.gfp, r.order) or ""
    elif name == "watermark.no_premature_failure":
        why = premature_failure_witness(r.zones, r.pref_nid, r.gfp, r.order) or ""
    elif name == "reclaim.request_scope":
        why = f"direct reclaim freed pages in (node, zone index) {list(r.reclaimed)}"
    elif name == "numa.zone_statistics":
        got = {d.zid: (d.hit, d.miss, d.foreign, d.local, d.other) for d in r.numa
               if any((d.hit, d.miss, d.foreign, d.local, d.other))}
        why = (f"(hit, miss, foreign, local, other) changed by {got}, zone_statistics() says "
               f"{expected_numa(r)} (zone used {r.zid}, preferred zone {r.pref_zid}, cpu node "
               f"{r.cpu_nid})")
    elif name == "kswapd.balanced":
        why = "; ".join(explain_kswapd(k) for k in r.kswapd_runs if not kswapd_balanced(k))
    elif name in ("watermark.reserves", "range.zone_and_node"):
        why = (f"block in zone {r.zid} (node {r.nid}, zone index {r.zone_idx}), "
               f"{r.free_after} free after, mark {r.mark}")
    return f"{head}: {why}" if why else head


def explain_kswapd(k: KswapdRecord) -> str:
    """Why the kswapd run ``k`` breaks kswapd.balanced."""
    zs = ", ".join(f"zone {z.zid}: {z.free} free, high {z.wmark_high} + boost {b}"
                   for z, b in zip(k.zones, k.boost_before, strict=True) if z.managed)
    return (f"kswapd({k.nid}) stopped with {k.reclaimable} reclaimable page-cache pages left "
            f"and no zone above its high watermark ({zs})")
