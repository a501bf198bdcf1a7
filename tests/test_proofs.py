"""The Z3 proofs: every obligation proves with the real helpers, every seeded bug is refuted
with a concrete counterexample that checks out on the real allocator, the runner never calls a
vacuous or timed-out obligation proved, and the symbolic transitions agree with the
implementation on concrete states."""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import z3

from impl.abstraction import abstract, check
from impl.page_alloc import PageAllocator
from proofs import obligations as ob
from proofs import registry
from proofs import symbolic as sy
from proofs.core import ProofResult, prove
from proofs.mutants import MUTANTS, Mutant, run_mutant
from proofs.replay import REPLAY_GFP, machine, replay_ops, replay_step
from spec.invariants import violated
from spec.state import MemState

OBLIGATIONS: dict[str, Callable[[], ProofResult]] = {
    "buddy.arithmetic": ob.buddy_arithmetic, "buddy.expand_split": ob.expand_split,
    "direct_map": ob.direct_map, "gfp.blocking": ob.gfp_blocking, "gfp.zones": ob.gfp_zones,
    "context.atomic_never_sleeps": ob.atomic_never_sleeps,
    "watermark.reserve_rule": ob.reserve_rule, "induction.init": sy.induction_init,
    "induction.free": sy.induction_free,
    **{f"induction.alloc.o{k}": partial(sy.induction_alloc, k) for k in range(4)},
}


# --- the runner -----------------------------------------------------------------------------------

def test_a_true_goal_is_proved_and_a_false_one_refuted_with_hex_values() -> None:
    x = z3.BitVec("x", 16)
    r = prove("t", [z3.ULT(x, 10)], z3.ULT(x, 11))
    assert r.ok and r.status == "proved" and r.vacuity == "passed"
    r = prove("f", [z3.ULT(x, 10)], {"x is small": z3.ULT(x, 5), "x fits": z3.ULT(x, 11)})
    assert r.status == "refuted" and not r.ok
    assert r.failed == ["x is small"]
    assert r.counterexample["x"].startswith("0x") and 5 <= int(r.counterexample["x"], 16) < 10


def test_unsatisfiable_hypotheses_are_vacuous_never_proved() -> None:
    x = z3.BitVec("x", 8)
    r = prove("vacuous", [x == 1, x == 2], x == 3)
    assert r.status == "vacuous" and r.vacuity == "failed" and not r.ok
    assert "unsatisfiable" in r.detail


def test_an_unreachable_witness_makes_a_proof_vacuous() -> None:
    x = z3.BitVec("x", 8)
    r = prove("w", [z3.ULT(x, 4)], z3.ULT(x, 5), witnesses={"x is big": z3.UGT(x, 100)})
    assert r.status == "vacuous" and not r.ok
    assert "x is big" in r.detail


def test_a_timeout_is_unknown_and_a_failure() -> None:
    # factoring a 64-bit semiprime: far beyond a 50 ms budget
    a, b = z3.BitVecs("a b", 64)
    n = 4294967291 * 4294967279
    r = prove("hard", [z3.UGT(a, 1), z3.UGT(b, 1), z3.ULT(a, 1 << 32), z3.ULT(b, 1 << 32)],
              z3.ZeroExt(64, a) * z3.ZeroExt(64, b) != n, timeout_ms=50)
    assert r.status in ("unknown", "refuted")
    assert not r.ok


def test_a_case_split_counts_an_impossible_case_as_proved_but_checks_vacuity_once() -> None:
    x = z3.BitVec("x", 8)
    assert prove("case", [x == 1, x == 2], x == 3, check_vacuity=False).status == "proved"


# --- every obligation, real helpers ----------------------------------------------------------

@pytest.mark.parametrize("name", sorted(OBLIGATIONS))
def test_obligation_proves_with_the_real_helpers(name: str) -> None:
    r = OBLIGATIONS[name]()
    assert r.ok, r.summary()
    assert r.vacuity == "passed"


def test_bounded_model_check_from_boot_proves() -> None:
    r = sy.bmc(3)
    assert r.ok, r.summary()


def test_every_obligation_has_a_seeded_bug() -> None:
    checks = registry.all_checks()
    names = {c.name for c in checks if c.kind in ("proof", "induction", "bmc")}
    # every mutant row says "<obligation>: <bug>" (proofs/mutants.py and proofs/slab.py)
    targeted = {c.what.split(":")[0] for c in checks if c.kind == "mutant"}
    assert {m.obligation for m in MUTANTS} <= targeted
    for n in names:
        base = n.split(".o")[0] if n.startswith("induction.alloc") else n
        assert any(t == n or t.startswith(base) or n.startswith(t) for t in targeted) \
            or n == "induction.init", f"no seeded bug for {n}"


# --- every seeded bug --------------------------------------------------------------------------

@pytest.mark.parametrize("mt", MUTANTS, ids=lambda m: m.name)
def test_seeded_bug_is_refuted_with_a_counterexample(mt: Mutant) -> None:
    res = run_mutant(mt)
    assert res.ok, f"{res.detail}\n{res.proof.summary()}"
    r = res.proof
    assert r.status == "refuted"
    assert r.counterexample, "a refutation carries concrete values"
    if mt.replay:
        assert r.trace, "state counterexamples are printed as operations"
        assert res.replay and all(line.endswith("all invariants hold") for line in res.replay)


def test_bmc_counterexample_is_shortest_and_replays_on_the_real_allocator() -> None:
    from proofs.mutants import expand_forgets_last_half
    r = sy.bmc(3, split=expand_forgets_last_half)
    assert r.status == "refuted"
    assert len(r.trace) == 1 and r.trace[0].startswith("alloc order=")
    assert r.data["violations"], "the decoded state breaks an invariant concretely"
    rp = replay_ops(r.data["ops"])
    assert rp.ok, rp.summary()


def test_induction_counterexample_is_a_concrete_state_and_operation() -> None:
    from proofs.mutants import buddy_self
    r = sy.induction_free(find_buddy=buddy_self)
    assert r.status == "refuted"
    assert r.failed == ["freelist.fully_merged"]
    assert r.data["encoding_ok"]
    pre = sy.memstate_from_data(r.data["pre"])
    assert violated(pre) == []  # any state satisfying the invariants, here a concrete one
    post = sy.memstate_from_data(r.data["post"])
    assert violated(post) == ["freelist.fully_merged"]
    assert replay_step(r.data["pre"], r.data["op"]).ok


# --- replays -------------------------------------------------------------------------------------

def test_replay_of_a_sequence_maps_frees_to_the_real_blocks() -> None:
    ops: list[dict[str, Any]] = [
        {"op": "alloc", "order": 1, "pfn": 0x6}, {"op": "alloc", "order": 0, "pfn": 0x9},
        {"op": "free", "pfn": 0x6, "order": 1}, {"op": "alloc", "order": 3, "pfn": 0x0},
        {"op": "alloc", "order": 3, "pfn": 0x8}, {"op": "free", "pfn": 0x9, "order": 0}]
    rp = replay_ops(ops)
    assert rp.ok, rp.summary()
    assert "fails" in rp.steps[4]  # only one order-3 block is left after step 4
    assert len(rp.steps) == len(ops)


def test_allocator_from_a_decoded_state_is_that_state() -> None:
    a = PageAllocator(machine())
    pfns = [a.alloc_pages(REPLAY_GFP, o) for o in (0, 1, 0, 2)]
    a.free_pages_pfn(pfns[1], 1)  # type: ignore[arg-type]
    ms = abstract(a)
    data = sy.memstate_to_data(ms)
    from proofs.replay import allocator_from_state
    b = allocator_from_state(sy.memstate_from_data(data))
    assert check(b) == []
    assert _same(abstract(b), ms)


# --- the symbolic model agrees with the implementation -----------------------------------------

def _same(x: MemState, y: MemState) -> bool:
    return (x.free == y.free and x.allocated.keys() == y.allocated.keys()
            and all(x.allocated[p].order == y.allocated[p].order for p in x.allocated)
            and x.nr_free == y.nr_free and x.free_pages == y.free_pages
            and x.pageblock_mt[:2] == y.pageblock_mt[:2])


def _ground() -> Any:
    s = z3.Solver()
    s.check()
    return s.model()


def _take(paths: list[sy.Path]) -> sy.Path:
    """The one path whose conditions hold on a concrete state."""
    live = [p for p in paths if all(z3.is_true(z3.simplify(c)) for c in p.conds)]
    assert len(live) == 1, [p.conds for p in paths]
    return live[0]


def test_boot_state_is_the_implementations_boot_state() -> None:
    got = sy.SymState.initial(sy.Machine()).decode(_ground())
    assert _same(got, abstract(PageAllocator(machine())))


def test_symbolic_transitions_match_the_implementation_on_random_runs() -> None:
    """Free and alloc paths applied to concrete states give what PageAllocator gives (free
    blocks with their lists, allocated blocks, nr_free, NR_FREE_PAGES)."""
    rng = random.Random(1)
    m = sy.Machine()
    model = _ground()
    for _ in range(30):
        a = PageAllocator(machine())
        live: list[tuple[int, int]] = []
        for _ in range(12):
            before = abstract(a)
            s = sy.SymState.concrete(before, m)
            if live and rng.random() < 0.45:
                pfn, order = live.pop(rng.randrange(len(live)))
                a.free_pages_pfn(pfn, order)
                path = _take(sy.free_paths(s, pfn, order))
            else:
                order = rng.randrange(4)
                got = a.alloc_pages(REPLAY_GFP, order)
                if got is None:
                    continue
                live.append((got, order))
                block = next(b for b in before.free.values()
                             if b.pfn <= got < b.pfn + (1 << b.order))
                assert block.pfn == got  # the kernel hands out the lowest pages
                path = _take(sy.alloc_paths(s, order, got))
            want = abstract(a)
            assert _same(path.post.decode(model), want), (before, want)
            assert violated(want) == []


# --- the registry and the runner ------------------------------------------------------------

def test_check_names_are_unique_and_modes_differ() -> None:
    normal = {c.name for c in registry.all_checks(False)}
    long = {c.name for c in registry.all_checks(True)}
    assert "bmc.k3" in normal and "bmc.k3" not in long and "bmc.k4" in long
    assert {"buddy.arithmetic", "induction.free"} <= normal & long


def test_subprocess_check_maps_exit_codes() -> None:
    ok = registry.subprocess_check("ok", "test", [sys.executable, "-c", "print('fine')"])
    bad = registry.subprocess_check("bad", "test",
                                    [sys.executable, "-c", "import sys; sys.exit(3)"])
    slow = registry.subprocess_check("slow", "test",
                                     [sys.executable, "-c", "import time; time.sleep(5)"],
                                     timeout_s=0.5)
    r = ok.run(False)
    assert r.status == "passed" and "fine" in r.detail
    assert bad.run(False).status == "failed"
    assert slow.run(False).status == "timeout"
    assert not registry.to_rows(bad, bad.run(False))[0].ok


def test_proof_results_become_a_vacuity_row_and_a_proof_row() -> None:
    c = next(c for c in registry.CHECKS if c.name == "gfp.blocking")
    rows = registry.run_named(c.name, False)
    assert [(r.kind, r.status) for r in rows] == [("vacuity", "passed"), ("proof", "proved")]


def test_verify_runs_a_selection_and_writes_json(tmp_path: Path) -> None:
    from proofs.verify import main
    out = tmp_path / "report.json"
    assert main(["--only", "direct_map", "--json", str(out), "--jobs", "1"]) == 0
    rep = json.loads(out.read_text())
    assert rep["ok"]
    assert [(r["name"], r["kind"], r["status"]) for r in rep["rows"]] == [
        ("direct_map", "vacuity", "passed"), ("direct_map", "proof", "proved")]
    assert rep["versions"]["z3"]
