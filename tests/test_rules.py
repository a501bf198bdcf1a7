"""The rules of spec/rules.py: each can fail and can hold, on hand-made records and on real
allocator calls; each seeded bug of the review (proofs/seeded_bugs.py) breaks the rule meant to
catch it on a directed scenario; watermark_scale_factor sets the kswapd gaps."""

from __future__ import annotations

import pytest

from impl.abstraction import abstract, alloc_step, check_step, facts, kswapd_step
from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from impl.watermarks import compute_zone_watermarks
from proofs.modelcheck import liveness_witness as mc_liveness_witness
from proofs.seeded_bugs import SEEDED_BUGS
from spec.context import Context
from spec.errors import MachineError
from spec.gfp import (
    __GFP_MEMALLOC,
    __GFP_THISNODE,
    GFP_ATOMIC,
    GFP_DMA32,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOWAIT,
    ZONE_DMA32,
    ZONE_NORMAL,
)
from spec.invariants import STEP_PROPERTIES, step_violations, violated
from spec.rules import (
    aligned_free_runs,
    explain_kswapd,
    explain_step,
    free_intervals,
    kswapd_violations,
    liveness_witness,
    max_aligned_run,
    nonblocking_need,
    state_zone_facts,
    zone_free_pages,
)
from spec.state import KswapdRecord, NumaDelta, StepRecord, ZoneFacts


def _zone(**kw: object) -> ZoneFacts:
    base: dict[str, object] = dict(zid=0, nid=0, zone=ZONE_NORMAL, managed=64, wmark_min=8,
                                   wmark_low=12, wmark_high=16, boost=0,
                                   lowmem_reserve=(0, 0, 0, 0), free=20, max_run=3)
    base.update(kw)
    return ZoneFacts(**base)  # type: ignore[arg-type]


def _failed(gfp: int, order: int = 0, ctx: int = 0, **kw: object) -> StepRecord:
    base: dict[str, object] = dict(op="alloc_pages", gfp=gfp, ctx=ctx, order=order, pfn=-1,
                                   zid=-1, slept=False, free_after=0, mark=0,
                                   no_watermarks=False, pref_nid=0, zones=(_zone(),))
    base.update(kw)
    return StepRecord(**base)  # type: ignore[arg-type]


# --- zone facts ----------------------------------------------------------------------------

def test_max_aligned_run_counts_pages_not_blocks() -> None:
    assert max_aligned_run([], 4) == -1
    # two unmerged order-1 buddies still form an aligned order-2 run
    assert max_aligned_run(free_intervals([(4, 1), (6, 1)], 0, 64), 4) == 2
    # 3..12 is 9 free pages, but the 8-aligned bases are 0 and 8: order 2 is the largest
    assert max_aligned_run(free_intervals([(3, 0), (4, 2), (8, 2)], 0, 64), 4) == 2
    assert max_aligned_run(free_intervals([(0, 4)], 0, 64), 3) == 3  # capped at max_order
    assert free_intervals([(0, 4)], 5, 9) == [(5, 9)]  # clipped to the zone


def test_zone_facts_agree_with_the_per_page_definitions() -> None:
    for m in (MachineConfig.unaligned(), MachineConfig.flat(40, nodes=2, max_order=4)):
        a = PageAllocator(m)
        for o in (0, 1, 2, 3):
            a.alloc_pages_node(-1, GFP_KERNEL, o)
        s = abstract(a)
        for f, g in zip(state_zone_facts(s), facts(a), strict=True):
            assert f == g
            assert f.free == len(zone_free_pages(s, f.zid)) == a.zones[f.zid].free_pages
            runs = [k for k in range(s.max_order + 1) if next(aligned_free_runs(s, f.zid, k),
                                                              None) is not None]
            assert f.max_run == max(runs, default=-1)


# --- liveness (blocking) and no premature failure (non-blocking) -------------------------------

def test_liveness_blocking() -> None:
    # GFP_KERNEL, min 8: a free run and 20 - 1 >= 8 left: must not fail
    assert "liveness.blocking" in step_violations(_failed(GFP_KERNEL))
    assert step_violations(_failed(GFP_KERNEL, zones=(_zone(free=8),))) == []  # 7 < 8
    assert step_violations(_failed(GFP_KERNEL, zones=(_zone(max_run=1),), order=2)) == []
    # not allowed: another node under __GFP_THISNODE, a higher zone than gfp_zone
    assert step_violations(_failed(GFP_KERNEL | __GFP_THISNODE, zones=(_zone(nid=1),))) == []
    assert step_violations(_failed(GFP_DMA32 | GFP_KERNEL)) == []
    # an atomic context makes the call non-blocking: the other rule applies
    assert step_violations(_failed(GFP_KERNEL, ctx=int(Context.HARDIRQ))) == [
        "watermark.no_premature_failure"]
    assert liveness_witness((_zone(),), 0, GFP_KERNEL, 0) is not None


def test_no_premature_failure_uses_the_reserve_arithmetic() -> None:
    # GFP_ATOMIC with min 8: min - min/2 = 4, 4 - 4/4 = 3 must be left: free 4 serves order 0
    assert nonblocking_need(_zone(), GFP_ATOMIC, 0) == 3
    assert "watermark.no_premature_failure" in step_violations(
        _failed(GFP_ATOMIC, zones=(_zone(free=4),)))
    assert step_violations(_failed(GFP_ATOMIC, zones=(_zone(free=3),))) == []
    # GFP_NOWAIT has no reserve: min itself
    assert nonblocking_need(_zone(), GFP_NOWAIT, 0) == 8
    assert step_violations(_failed(GFP_NOWAIT, zones=(_zone(free=8),))) == []
    assert step_violations(_failed(GFP_NOWAIT, zones=(_zone(free=9),))) != []
    # the boost raises the mark, except for order-0 ALLOC_MIN_RESERVE (zone_watermark_fast)
    assert nonblocking_need(_zone(boost=8), GFP_NOWAIT, 0) == 16
    assert nonblocking_need(_zone(boost=8), GFP_ATOMIC, 0) == 3
    assert nonblocking_need(_zone(boost=8), GFP_ATOMIC, 1) == 6  # 16 - 8 = 8, 8 - 2
    # lowmem_reserve of the request's highest zone
    assert nonblocking_need(_zone(lowmem_reserve=(0, 0, 5, 5)), GFP_NOWAIT, 0) == 13
    # __GFP_MEMALLOC ignores watermarks: any free run serves
    assert "watermark.no_premature_failure" in step_violations(
        _failed(GFP_ATOMIC | __GFP_MEMALLOC, order=1, zones=(_zone(free=2, max_run=1),)))
    assert step_violations(_failed(GFP_ATOMIC | __GFP_MEMALLOC, order=2,
                                   zones=(_zone(free=2, max_run=1),))) == []


def test_no_premature_failure_on_real_calls_and_the_atomic_half_min_bug() -> None:
    """GFP_KERNEL takes a zone down to min, GFP_ATOMIC to 3 pages (min 8): the real
    allocator fails there, the bug that gives GFP_ATOMIC only half of min fails at 4."""
    m = MachineConfig.flat(64, nodes=1, max_order=4, min_pages=8)
    for cls, broken in ((PageAllocator, []), (SEEDED_BUGS["atomic-half-min"].cls,
                                               ["watermark.no_premature_failure"])):
        a = cls(m)
        while a.alloc_pages_node(0, GFP_KERNEL, 0) is not None:
            pass
        assert a.zones[0].free_pages == 8
        while True:
            pfn, rec = alloc_step(a, 0, GFP_ATOMIC, 0, ctx=Context.HARDIRQ)
            if pfn is None:
                break
            assert check_step(rec) == []
        assert check_step(rec) == broken
        assert a.zones[0].free_pages == (3 if cls is PageAllocator else 4)


# --- reclaim scope -----------------------------------------------------------------------------

def test_reclaim_scope_record() -> None:
    ok = _failed(GFP_KERNEL | __GFP_THISNODE, zones=(), reclaimed=((0, ZONE_NORMAL),))
    assert step_violations(ok) == []
    assert step_violations(ok._replace(reclaimed=((1, ZONE_NORMAL),))) == [
        "reclaim.request_scope"]
    dma32 = _failed(GFP_KERNEL | GFP_DMA32, zones=(), reclaimed=((1, ZONE_NORMAL),))
    assert step_violations(dma32) == ["reclaim.request_scope"]
    assert step_violations(dma32._replace(reclaimed=((1, ZONE_DMA32),))) == []


def test_reclaim_scope_on_real_calls() -> None:
    for cls, broken in ((PageAllocator, False),
                        (SEEDED_BUGS["reclaim-all-nodes"].cls, True)):
        a = cls(MachineConfig.flat(64, nodes=2, max_order=4, min_pages=8))
        assert a.pagecache_add(1, 40, cpu=1) > 0
        rec = None
        for _ in range(40):
            _pfn, rec = alloc_step(a, 0, GFP_KERNEL | __GFP_THISNODE, 1)
            if rec.slept or check_step(rec):
                break
        assert rec is not None and rec.slept
        if broken:
            assert (1, ZONE_NORMAL) in rec.reclaimed
            assert "reclaim.request_scope" in check_step(rec)
        else:
            assert all(nid == 0 for nid, _z in rec.reclaimed)
            assert check_step(rec) == []
            assert a.nodes[1].lru  # node 1's page cache untouched


# --- NUMA statistics -----------------------------------------------------------------------------

def test_numa_record() -> None:
    numa = (NumaDelta(0, 0, 0, 0, 1, 0, 0), NumaDelta(1, 1, 0, 1, 0, 1, 0))
    ok = StepRecord("alloc_pages", GFP_KERNEL, 0, 0, 100, 1, False, 50, 8, False, ZONE_NORMAL,
                    1, 0, pref_zid=0, cpu_nid=1, numa=numa)
    assert step_violations(ok) == []
    assert step_violations(ok._replace(numa=(numa[0]._replace(foreign=0), numa[1]))) == [
        "numa.zone_statistics"]
    assert step_violations(ok._replace(cpu_nid=0)) == ["numa.zone_statistics"]  # other
    assert step_violations(ok._replace(pfn=-1)) == ["numa.zone_statistics"]  # failed: none
    assert step_violations(ok._replace(pref_zid=-1)) == ["numa.zone_statistics"]


@pytest.mark.parametrize("bug", ["no-numa-foreign", "numa-no-node-is-0"])
def test_numa_statistics_on_real_calls(bug: str) -> None:
    """Node 0 below its low watermark: an allocation from cpu 0 falls back to node 1, a miss
    on node 1 and a foreign on node 0; from cpu 1 (node 1) it is a local hit on node 1."""
    m = MachineConfig.flat(64, nodes=2, max_order=4, min_pages=8)
    for cls in (PageAllocator, SEEDED_BUGS[bug].cls):
        a = cls(m)
        while a.zones[0].free_pages > a.zones[0].wmark[0] + 1:
            a.alloc_pages_node(0, GFP_KERNEL | __GFP_THISNODE, 0)
        got = []
        for nid, cpu in ((-1, 1), (-1, 0), (0, 0)):
            _pfn, rec = alloc_step(a, nid, GFP_KERNEL, 0, cpu=cpu)
            got += check_step(rec)
        if cls is PageAllocator:
            assert got == []
            assert a.zones[1].numa_miss >= 1 and a.zones[0].numa_foreign >= 1
        else:
            assert "numa.zone_statistics" in got


# --- kswapd ------------------------------------------------------------------------------------

def test_kswapd_record() -> None:
    z = _zone(free=16)
    k = KswapdRecord(0, (z,), (0,), reclaimable=5)
    assert kswapd_violations(k) == ["kswapd.balanced"]  # 16 is not above high 16
    assert kswapd_violations(k._replace(reclaimable=0)) == []
    assert kswapd_violations(k._replace(zones=(_zone(free=17),))) == []
    assert kswapd_violations(k._replace(zones=(_zone(free=17),), boost_before=(4,))) == [
        "kswapd.balanced"]
    assert kswapd_violations(k._replace(zones=(_zone(free=17, lowmem_reserve=(0, 0, 1, 1)),
                                               ))) == ["kswapd.balanced"]
    rec = _failed(GFP_KERNEL, zones=(), kswapd_runs=(k,))
    assert step_violations(rec) == ["kswapd.balanced"]


def test_kswapd_on_real_calls() -> None:
    """Free memory between the low (14) and high (20) watermarks, page cache on the node:
    kswapd must reclaim up to high; the bug that balances to low does nothing."""
    m = MachineConfig.flat(64, nodes=1, max_order=4, min_pages=8, watermark_scale_factor=1000)
    for cls in (PageAllocator, SEEDED_BUGS["kswapd-to-low"].cls):
        a = cls(m)
        assert a.pagecache_add(0, 30) == 30
        while a.zones[0].free_pages > 17:
            a.alloc_pages_node(0, GFP_KERNEL, 0)
        assert a.zones[0].wmark[1] < a.zones[0].free_pages <= a.zones[0].wmark[2]
        n, bad = kswapd_step(a, 0)
        if cls is PageAllocator:
            assert n > 0 and bad == []
        else:
            assert n == 0 and bad == ["kswapd.balanced"]
    with pytest.raises(Exception, match="not online"):
        kswapd_step(PageAllocator(m), 3)


# --- the other seeded bugs of the review ---------------------------------------------------------

def test_thisnode_ignored_and_numa_no_node_bugs_break_the_node_rule() -> None:
    m = MachineConfig.flat(64, nodes=2, max_order=4, min_pages=8)
    for name, nid, cpu in (("ignores-thisnode", 1, 0), ("numa-no-node-is-0", -1, 1)):
        a = SEEDED_BUGS[name].cls(m)
        while a.zones[1].free_pages > 20:
            a.alloc_pages_node(1, GFP_HIGHUSER_MOVABLE | __GFP_THISNODE, 0, cpu=1)
        got: set[str] = set()
        for _ in range(20):
            _pfn, rec = alloc_step(a, nid, GFP_KERNEL | __GFP_THISNODE, 0, cpu=cpu)
            got.update(check_step(rec))
        assert "range.zone_and_node" in got, name


def test_steal_without_accounting_breaks_nr_free_pages() -> None:
    """An unmovable pageblock left with single free pages, the movable one used up: a
    movable request must steal a single page (__rmqueue_steal)."""
    m = MachineConfig.flat(16, nodes=1, max_order=3, min_pages=0)
    seen = []
    for cls in (PageAllocator, SEEDED_BUGS["steal-no-account"].cls):
        a = cls(m)
        unmovable = [a.alloc_pages_node(0, GFP_KERNEL, 0) for _ in range(8)]
        for p in unmovable:
            if p is not None and p % 2:
                a.free_pages_pfn(p, 0)
        movable = [a.alloc_pages_node(0, GFP_HIGHUSER_MOVABLE, 0) for _ in range(9)]
        assert movable[-1] is not None and movable[-1] < 8  # stolen from the unmovable block
        seen.append(violated(abstract(a), fast=True))
    assert seen[0] == [] and "freelist.free_pages" in seen[1]


def test_modelcheck_liveness_witness_is_the_spec_rule() -> None:
    a = PageAllocator(MachineConfig.flat(64, nodes=2, max_order=4, min_pages=8))
    s = abstract(a)
    assert mc_liveness_witness(a, s, -1, GFP_KERNEL, 0, cpu=1) == liveness_witness(
        state_zone_facts(s), 1, GFP_KERNEL, 0)


def test_every_rule_has_a_meaning_and_a_kernel_source() -> None:
    for p in STEP_PROPERTIES.values():
        assert p.meaning.endswith(".") and ("mm/" in p.kernel_ref or "kernel/" in p.kernel_ref
                                            or "include/" in p.kernel_ref)


# --- watermark_scale_factor ----------------------------------------------------------------------

def test_watermark_scale_factor_sets_the_gaps() -> None:
    """__setup_per_zone_wmarks(): gap = max(min / 4, managed * scale / 10000)."""
    for scale, gap in ((10, 2), (1000, 6), (3000, 19)):
        m = MachineConfig.flat(64, nodes=1, max_order=4, min_pages=8,
                               watermark_scale_factor=scale)
        w = compute_zone_watermarks(m)[(0, ZONE_NORMAL)]
        assert (w.min, w.low, w.high) == (8, 8 + gap, 8 + 2 * gap)
    for bad in (0, 3001):
        with pytest.raises(MachineError, match="watermark_scale_factor"):
            MachineConfig.flat(64, watermark_scale_factor=bad)


def test_explanations_name_the_evidence() -> None:
    r = _failed(GFP_ATOMIC, zones=(_zone(free=4),))
    assert "zone 0 (node 0, zone index 2) has 4 free pages, needs 3" in explain_step(
        r, "watermark.no_premature_failure")
    assert "[(1, 2)]" in explain_step(r._replace(reclaimed=((1, 2),)), "reclaim.request_scope")
    k = KswapdRecord(0, (_zone(free=16),), (2,), reclaimable=5)
    assert "5 reclaimable" in explain_kswapd(k) and "high 16 + boost 2" in explain_kswapd(k)
