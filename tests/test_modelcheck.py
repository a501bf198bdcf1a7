"""The explicit-state model checker (proofs/modelcheck.py, proofs/mcstate.py): it explores the
whole bounded space of the real allocator cleanly, its state capture is complete and exact,
its key is as fine as the state, and it catches each seeded bug with a shortest path."""

from __future__ import annotations

import pickle
import random
from typing import Any

import pytest

from impl.abstraction import abstract
from impl.page_alloc import PageAllocator
from impl.watermarks import WMARK_HIGH, WMARK_LOW, WMARK_MIN
from proofs import mcstate
from proofs import modelcheck as mc
from proofs.seeded_bugs import SEEDED_BUGS
from spec.gfp import GFP_KERNEL
from spec.state import MemState
from tests import hypothesis_profiles

SMALL = mc.Bounds(max_live=2, max_pagecache=1, per_pfn=True)


def test_small_space_is_exhausted_cleanly() -> None:
    res = mc.ModelChecker(mc.default_machine(8), SMALL).run()
    assert res.violation is None
    assert res.exhausted
    assert res.states > 100 and res.transitions > res.states
    assert res.coverage["allocation succeeded"] > 0
    assert res.coverage["raised SleepInAtomicError"] > 0


@pytest.mark.parametrize(("mutant", "names", "path"), [
    ("no-merge-order1", {"freelist.fully_merged"},
     ["alloc_pages_node(0, GFP_KERNEL, 1, ctx=process) -> 0x0", "free_pages_pfn(0x0, 1)"]),
    ("expand-drops-half", {"buddy.partition", "freelist.free_pages"},
     ["alloc_pages_node(0, GFP_KERNEL, 0, ctx=process) -> 0x0"]),
    ("sleeps-in-atomic", {"error.SleepInAtomicError"},
     ["alloc_pages_node(0, GFP_KERNEL, 0, ctx=hardirq)"]),
    ("ignores-min", {"watermark.reserves"},
     ["alloc_pages_node(0, GFP_KERNEL, 3, ctx=process) -> 0x0",
      "alloc_pages_node(0, GFP_ATOMIC, 3, ctx=process)"]),
])
def test_seeded_bug_is_caught_with_a_shortest_path(mutant: str, names: set[str],
                                                   path: list[str]) -> None:
    res = mc.ModelChecker(mc.default_machine(16), SMALL, mc.MUTANTS[mutant]).run()
    v = res.violation
    assert v is not None, f"mutant {mutant} survived"
    assert names <= {w.removesuffix(" (per-pfn)") for w in v.what}
    # BFS: no shorter path exists, and this one replays from boot
    assert [step.split("  <--")[0] for step in v.path] == path
    assert not res.exhausted


def test_a_mutant_path_replays_cleanly_on_the_real_allocator() -> None:
    """The seeded rows count a violation as the bug's only if the real allocator replays the
    same path cleanly; the replay of the mutant itself breaks the same rule."""
    machine = mc.default_machine()
    res = mc.ModelChecker(machine, mc.Bounds(max_live=4, max_pagecache=2),
                          mc.MUTANTS["steal-no-account"]).run()
    assert res.violation is not None and len(res.violation.ops) == 4
    assert mc.replay(machine, res.violation.ops) == "clean"
    assert mc.replay(machine, res.violation.ops, mc.MUTANTS["steal-no-account"]) == (
        "violates freelist.free_pages at step 4")
    bogus = [mc.Op("free", pfn=8, order=3)]
    assert mc.replay(machine, bogus).startswith("diverges at step 1")


def test_the_real_allocator_passes_the_same_bounds_the_mutants_fail() -> None:
    res = mc.ModelChecker(mc.default_machine(16), SMALL).run()
    assert res.violation is None and res.exhausted


def test_every_modelcheck_entry_of_the_catalogue_names_a_machine() -> None:
    for bug in SEEDED_BUGS.values():
        for where in bug.caught_by:
            if where.startswith("modelcheck:"):
                assert where.removeprefix("modelcheck:") in mc.MACHINES, (bug.name, where)


# --- capture, restore, key -----------------------------------------------------------------

def _walk(a: PageAllocator, steps: int, rng: random.Random, space: mc.OpSpace,
          bounds: mc.Bounds) -> None:
    """Apply ``steps`` random valid operations of the search to ``a``."""
    for _ in range(steps):
        ops = [o for o in mc.enabled_ops(a, bounds, space) if o.expect is None]
        mc.apply_op(a, rng.choice(ops))
        a.effects.clear()


def _fields(a: PageAllocator) -> dict[str, Any]:
    """Every state and stats field of ``a`` (dicts as sorted items, LRU in order)."""
    def norm(v: Any) -> Any:
        if isinstance(v, dict):
            return sorted(v.items())
        if isinstance(v, (list, bytearray)):
            return list(v)
        return v

    out: dict[str, Any] = {n: norm(getattr(a, n)) for n, r in mcstate.ALLOCATOR_FIELDS.items()
                           if r in ("state", "stats") and n not in ("zones", "nodes")}
    for z in a.zones:
        out |= {f"zone{z.zid}.{n}": norm(getattr(z, n))
                for n, r in mcstate.ZONE_FIELDS.items() if r in ("state", "stats")}
    for nd in a.nodes:
        out |= {f"node{nd.nid}.{n}": list(getattr(nd, n)) if n == "lru" else getattr(nd, n)
                for n, r in mcstate.NODE_FIELDS.items() if r == "state"}
    return out


@pytest.mark.parametrize("machine", ["flat16", "zones-unaligned", "numa2"])
def test_capture_restore_round_trip_is_exact(machine: str) -> None:
    """Restoring a capture gives back exactly the allocator that was captured (compared with
    a pickled copy, field by field), after the object has moved on to other states."""
    spec = mc.MACHINES[machine]
    rng = random.Random(7)
    a = PageAllocator(spec.build())
    bounds = mc.Bounds(max_live=4, max_pagecache=2)
    for _ in range(12):
        _walk(a, rng.randrange(1, 4), rng, spec.space, bounds)
        cap = mcstate.capture(a)
        copy = pickle.loads(pickle.dumps(a))
        key = mcstate.state_key(a)
        _walk(a, 3, rng, spec.space, bounds)
        mcstate.restore(a, cap)
        assert _fields(a) == _fields(copy)
        assert mcstate.same(a, cap) and mcstate.same_stats(a, cap)
        assert mcstate.state_key(a) == key
        assert abstract(a) == abstract(copy)


def test_every_field_of_the_allocator_is_classified() -> None:
    """A field added to PageAllocator, Zone or NodeState later must be classified in
    proofs/mcstate.py, or the search refuses to run (it could not capture it)."""
    for build in (mc.default_machine, mc.zones_unaligned_machine, mc.numa2_machine):
        assert mcstate.layout_problems(PageAllocator(build())) == []
    for bug in SEEDED_BUGS.values():
        assert mcstate.layout_problems(bug.cls(mc.default_machine())) == [], bug.name

    class WithCache(PageAllocator):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.hot_cache: dict[int, int] = {}

    problems = mcstate.layout_problems(WithCache(mc.default_machine()))
    assert problems == ["PageAllocator.hot_cache is not classified in proofs/mcstate.py"]
    with pytest.raises(mcstate.LayoutError):
        mc.ModelChecker(mc.default_machine(), SMALL, WithCache).run()


def test_a_write_to_a_constant_field_fails_the_run() -> None:
    class LowersMin(PageAllocator):
        def kswapd(self, nid: int) -> int:
            self.zones[0].wmark[WMARK_MIN] = 0  # a "constant" the capture does not restore
            return super().kswapd(nid)

    res = mc.ModelChecker(mc.default_machine(8), mc.Bounds(max_live=1, max_pagecache=1),
                          LowersMin).run()
    assert res.violation is not None
    assert res.violation.what == ["modelcheck.constant_changed"]


def test_same_agrees_with_the_key() -> None:
    """``same`` (the cheap comparison every transition makes) says "unchanged" exactly when
    the key is unchanged."""
    rng = random.Random(3)
    spec = mc.MACHINES["numa2"]
    bounds = mc.Bounds(max_live=3, max_pagecache=2)
    a = PageAllocator(spec.build())
    seen_change = seen_same = 0
    for _ in range(150):
        cap = mcstate.capture(a)
        key = mcstate.state_key(a)
        op = rng.choice(mc.enabled_ops(a, bounds, spec.space))
        try:
            mc.apply_op(a, op)
        except mc.CheckFailure as f:  # pragma: no cover - would be a real finding
            pytest.fail(f"{op.label()}: {f.what} {f.detail}")
        a.effects.clear()
        same = mcstate.same(a, cap)
        assert same == (mcstate.state_key(a) == key), op.label()
        seen_same += same
        seen_change += not same
        if rng.random() < 0.3:
            mcstate.restore(a, cap)
    assert seen_change > 20 and seen_same > 20


def _reachable(machine: str, n: int, seed: int) -> tuple[PageAllocator, list[mcstate.Capture]]:
    """An allocator of ``machine`` and captures of ``n`` states reached by random walks."""
    spec = mc.MACHINES[machine]
    rng = random.Random(seed)
    a = PageAllocator(spec.build())
    boot = mcstate.capture(a)
    caps = []
    for _ in range(n):
        if rng.random() < 0.2:
            mcstate.restore(a, boot)
        _walk(a, rng.randrange(1, 4), rng, spec.space, mc.Bounds(max_live=3, max_pagecache=2))
        caps.append(mcstate.capture(a))
    return a, caps


@pytest.mark.parametrize("machine", ["flat16", "numa2"])
def test_key_bytes_agrees_with_the_key(machine: str) -> None:
    """The search dedups on key_bytes: equal bytes exactly when state_key is equal (with and
    without kswapd's awake flag)."""
    a, caps = _reachable(machine, 60, 5)
    keys: dict[bytes, object] = {}
    for awake in (True, False):
        for cap in caps:
            mcstate.restore(a, cap)
            for flag in (False, True):
                a.nodes[0].kswapd_awake = flag
                kb = mcstate.key_bytes(a, awake)
                sk = (awake, mcstate.state_key(a, awake))
                assert keys.setdefault(kb + bytes([awake]), sk) == sk
    assert len(set(keys.values())) == len(keys) > 60


@pytest.mark.parametrize("machine", ["flat16", "zones-unaligned", "numa2"])
def test_the_search_shortcuts_build_the_same_records(machine: str) -> None:
    """What the search passes to alloc_step and kswapd_run (the page cache and zone facts of
    the state before, memoized) and the memoized zone facts give exactly the records of the
    plain calls, for every operation of random reachable states, failures included."""
    from impl.abstraction import _zone_facts, alloc_step, facts, kswapd_run, state_facts
    from spec import rules

    spec = mc.MACHINES[machine]
    a, caps = _reachable(machine, 25, 11)
    b = PageAllocator(spec.build())
    failed = ran = 0
    for cap in caps:
        mcstate.restore(a, cap)
        before = mc.Before.of(a, cap)
        ops = [o for o in mc.enabled_ops(a, mc.Bounds(max_live=4, max_pagecache=2), spec.space)
               if o.expect is None and o.kind in ("alloc", "kswapd")]
        for op in ops:
            mcstate.restore(a, cap)
            mcstate.restore(b, cap)
            before.same_after = None
            got: tuple[object, object]
            want: tuple[object, object]
            if op.kind == "kswapd":
                got = kswapd_run(a, op.nid, zone_facts_after=before.zone_facts_after)
                want = kswapd_run(b, op.nid)
            else:
                got = alloc_step(a, op.nid, op.gfp, op.order, cpu=op.cpu, ctx=op.ctx,
                                 pagecache_before=before.pagecache,
                                 zone_facts_after=before.zone_facts_after)
                want = alloc_step(b, op.nid, op.gfp, op.order, cpu=op.cpu, ctx=op.ctx)
                failed += got[0] is None
            assert got == want, op.label()
            assert facts(a) == tuple(_zone_facts(a, z) for z in a.zones)
            assert state_facts(a) == rules.state_zone_facts(abstract(a))
            ran += 1
    assert ran > 100 and failed > 5


def test_key_equality_means_equal_abstract_states() -> None:
    """The key is as fine as the abstract state: walk a small space and check that equal keys
    never hide different abstract states (list order included)."""
    seen: dict[object, object] = {}
    a0 = PageAllocator(mc.default_machine(8))
    frontier = [a0]
    for _ in range(3):
        nxt = []
        for a in frontier:
            for op in mc.enabled_ops(a, SMALL):
                b = pickle.loads(pickle.dumps(a))
                try:
                    mc.apply_op(b, op)
                except mc.CheckFailure as f:  # pragma: no cover - would be a real finding
                    pytest.fail(f"{op.label()}: {f.what} {f.detail}")
                s = abstract(b)
                akey = (tuple(s.free.values()), tuple(sorted(s.allocated.values())),
                        s.pageblock_mt, tuple(sorted(s.nr_free.items())),
                        tuple(sorted(s.free_pages.items())))
                k = mc.state_key(b)
                if k in seen:
                    assert seen[k] == akey
                else:
                    seen[k] = akey
                    nxt.append(b)
        frontier = nxt
    assert len(seen) > 20


def test_list_order_is_part_of_the_key() -> None:
    """Two states with the same free blocks on the same lists in a different order differ."""
    a = PageAllocator(mc.default_machine(16))
    p0 = a.alloc_pages_node(0, GFP_KERNEL, 0)
    p1 = a.alloc_pages_node(0, GFP_KERNEL, 0)
    p2 = a.alloc_pages_node(0, GFP_KERNEL, 0)
    p3 = a.alloc_pages_node(0, GFP_KERNEL, 0)
    assert None not in (p0, p1, p2, p3)
    b = PageAllocator(mc.default_machine(16))
    for _ in range(4):
        b.alloc_pages_node(0, GFP_KERNEL, 0)
    assert mc.state_key(a) == mc.state_key(b)
    a.free_pages_pfn(p1, 0)  # type: ignore[arg-type]
    a.free_pages_pfn(p3, 0)  # type: ignore[arg-type]
    b.free_pages_pfn(p3, 0)  # type: ignore[arg-type]
    b.free_pages_pfn(p1, 0)  # type: ignore[arg-type]
    assert sorted(abstract(a).free) == sorted(abstract(b).free)
    assert mc.state_key(a) != mc.state_key(b)


def test_kswapd_awake_is_left_out_of_the_key_only_when_unobservable() -> None:
    """Every mask the searches use wakes kswapd itself before sleeping, so whether kswapd is
    awake cannot change what a later call does; a mask that may sleep without waking kswapd
    (GFP_KERNEL & ~__GFP_KSWAPD_RECLAIM, as in GFP_TRANSHUGE) puts the flag back in the key."""
    from spec.gfp import __GFP_KSWAPD_RECLAIM

    for spec in mc.MACHINES.values():
        assert not mcstate.awake_is_observable({s[2] for s in spec.space.alloc})
    assert mcstate.awake_is_observable({GFP_KERNEL & ~__GFP_KSWAPD_RECLAIM})
    a = PageAllocator(mc.default_machine())
    a.nodes[0].kswapd_awake = True
    b = PageAllocator(mc.default_machine())
    assert mcstate.state_key(a, False) == mcstate.state_key(b, False)
    assert mcstate.state_key(a) != mcstate.state_key(b)


@pytest.mark.parametrize("machine", ["flat16", "numa2"])
def test_leaving_kswapd_awake_out_reaches_the_same_states(machine: str) -> None:
    """Empirically too: with the flag in the key the search reaches the same states (the
    flag aside) and the same verdict, only more of them (within 6 operations of boot)."""
    spec = mc.MACHINES[machine]
    reached: dict[bool, set[object]] = {True: set(), False: set()}
    results = {}
    for with_flag in (True, False):
        seen = reached[with_flag]

        def note(a: PageAllocator, s: MemState, seen: set[object] = seen) -> None:
            seen.add(mcstate.state_key(a, False))

        results[with_flag] = mc.ModelChecker(
            spec.build(), mc.Bounds(max_live=2, max_pagecache=1, depth=6), space=spec.space,
            key_kswapd_awake=with_flag).run(on_state=note)
    # BFS explores every path of up to 6 operations either way
    assert reached[True] == reached[False]
    assert results[True].violation is None and results[False].violation is None
    assert results[True].states > results[False].states > 100


# --- machines, budget, output ----------------------------------------------------------------

def test_named_machines_have_the_shapes_their_bugs_need() -> None:
    zu = PageAllocator(mc.zones_unaligned_machine())
    dma, normal = zu.zones
    assert dma.end == normal.start and normal.start % (1 << zu.max_order)
    assert normal.start % (1 << zu.pageblock_order)
    assert normal.wmark[WMARK_MIN] >= 8 and dma.lowmem_reserve[normal.idx] > 0
    n2 = PageAllocator(mc.numa2_machine())
    boundary = n2.nodes[1].zones[0].start
    assert boundary == n2.nodes[0].zones[-1].end and boundary % (1 << n2.max_order)
    assert n2.cpu_node == {0: 0, 1: 1}
    for z in n2.zones:
        if z.name == "Normal":
            assert z.wmark[WMARK_MIN] >= 8
            assert z.wmark[WMARK_LOW] - z.wmark[WMARK_MIN] >= 3
            assert z.wmark[WMARK_HIGH] - z.wmark[WMARK_LOW] >= 3
    assert n2.zones[0].lowmem_reserve[n2.zones[1].idx] > 0


def test_a_budget_stops_the_search_not_exhausted() -> None:
    res = mc.ModelChecker(mc.default_machine(), mc.Bounds(budget_s=0.0)).run()
    assert not res.exhausted and res.violation is None
    assert any("time budget" in n for n in res.notes)
    assert "exhausted=no" in res.result_line()


def test_cli_prints_the_shortest_path_and_a_result_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    rc = mc.main(["--pages", "16", "--max-live", "2", "--max-pagecache", "1",
                  "--mutant", "no-merge-order1"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "VIOLATION: freelist.fully_merged" in out
    assert "shortest path from boot (2 steps)" in out
    assert "free_pages_pfn(0x0, 1)" in out
    assert out.rstrip().splitlines()[-1].startswith("RESULT machine=flat16 ")
    assert "violation=freelist.fully_merged" in out


def test_cli_exit_3_when_the_bound_is_not_exhausted(capsys: pytest.CaptureFixture[str]) -> None:
    rc = mc.main(["--machine", "numa2", "--max-states", "50", "--require-exhaustive"])
    out = capsys.readouterr().out
    assert rc == 3
    assert "exhausted=no" in out.splitlines()[-1]


@pytest.mark.slow
@hypothesis_profiles.slow
def test_default_run_is_exhaustive_clean_and_not_vacuous(
        capsys: pytest.CaptureFixture[str]) -> None:
    rc = mc.main(["--require-witnesses", "--require-exhaustive"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "frontier exhausted" in out
