"""The slab model checker (proofs/modelcheck_slab.py): a clean bounded run, its key against
SlabAllocator.snapshot(), its checks failing where they must, and every seeded slab bug of
proofs/seeded_slab_bugs.py caught with a short path that the real allocators replay cleanly."""

from __future__ import annotations

from collections import Counter

import pytest

from impl.slab_common import SlabAllocator
from proofs.checks_extra import parse_result_line, read_modelcheck, read_seeded_modelcheck
from proofs.modelcheck import Before, CheckFailure
from proofs.modelcheck_slab import (
    CACHE_NAME,
    MUTANT_BOUNDS,
    WITNESSES,
    Model,
    SlabBounds,
    SlabModelChecker,
    SlabOp,
    StateKey,
    apply_slab_op,
    boot,
    live_objects,
    main,
    missing_witnesses,
    model_violations,
    replay,
    slab_machine,
    state_violations,
)
from proofs.seeded_slab_bugs import SEEDED_SLAB_BUGS
from spec.context import Context
from spec.errors import NotObjectError, SleepInAtomicError
from spec.gfp import GFP_ATOMIC, GFP_KERNEL

SMALL = SlabBounds(max_live=1, max_slabs=1)


def test_small_bound_is_exhausted_clean_and_key_is_as_fine_as_snapshot() -> None:
    """Every state of a small bound is checked; equal keys always come with equal snapshots
    (the key is at least as fine as SlabAllocator.snapshot())."""
    seen: dict[StateKey, object] = {}

    def on_state(sa: SlabAllocator, model: Model, key: StateKey) -> None:
        snap = sa.snapshot()
        assert seen.setdefault(key, snap) == snap
        assert not state_violations(sa, model, live_objects(boot(slab_machine())))

    res = SlabModelChecker(bounds=SMALL, sizes=(8, 8193), page_orders=(0,)).run(
        on_state=on_state)
    assert res.violation is None, res.violation and res.violation.render()
    assert res.exhausted
    assert res.states == len(seen) > 10
    assert res.coverage["kmalloc succeeded"] and res.coverage["large kmalloc succeeded"]
    assert res.coverage["raised SleepInAtomicError (slab)"]


def test_key_is_as_fine_as_snapshot_on_the_default_operations() -> None:
    """The same on the default operations and bounds, to depth 4 (a few hundred states):
    equal keys, equal snapshots. The converse fails (SlabAllocator.snapshot() leaves out the
    page free-list order, which decides later placements), hence the finer key."""
    seen: dict[StateKey, object] = {}

    def on_state(sa: SlabAllocator, model: Model, key: StateKey) -> None:
        snap = sa.snapshot()
        assert seen.setdefault(key, snap) == snap

    res = SlabModelChecker(bounds=SlabBounds(depth=4)).run(on_state=on_state)
    assert res.violation is None and res.states == len(seen) > 100


def test_a_missing_error_is_a_violation() -> None:
    """An invalid call that does not raise is caught (the check can fail)."""
    sa = boot(slab_machine())
    model: Model = {}
    op = SlabOp("kmalloc", gfp=GFP_KERNEL, size=64)
    addr = apply_slab_op(sa, op, model, Counter(), Before.of(sa.pages), sa.snapshot())[0]
    assert isinstance(addr, int) and model == {addr: ("kmalloc-64", 64)}
    bad = SlabOp("kfree", addr=addr, expect=NotObjectError)  # a valid free, said to be bad
    with pytest.raises(CheckFailure) as e:
        apply_slab_op(sa, bad, dict(model), Counter(), Before.of(sa.pages), sa.snapshot())
    assert e.value.what == ["error.NotObjectError"]


def test_sleep_in_atomic_is_checked_and_changes_nothing() -> None:
    sa = boot(slab_machine())
    snap = sa.snapshot()
    cov: Counter[str] = Counter()
    op = SlabOp("cache_alloc", gfp=GFP_KERNEL, ctx=Context.HARDIRQ, cache=CACHE_NAME,
                expect=SleepInAtomicError)
    assert apply_slab_op(sa, op, {}, cov, Before.of(sa.pages), snap) == (
        "SleepInAtomicError (slab)", False)
    assert sa.snapshot() == snap and cov["raised SleepInAtomicError (slab)"] == 1
    ok = SlabOp("cache_alloc", gfp=GFP_ATOMIC, ctx=Context.HARDIRQ, cache=CACHE_NAME)
    model: Model = {}
    addr, changed = apply_slab_op(sa, ok, model, cov, Before.of(sa.pages), snap)
    assert changed and model == {addr: (CACHE_NAME, 12288)}


def test_model_check_sees_a_lost_object() -> None:
    """The model check fails when the allocator and the model disagree on what is live."""
    sa = boot(slab_machine())
    boot_live = live_objects(sa)
    addr = sa.kmalloc(96, GFP_KERNEL)
    assert addr is not None
    assert model_violations(sa, {addr: ("kmalloc-96", 96)}, boot_live) == []
    assert any(v.startswith("model.live_objects") for v in model_violations(sa, {}, boot_live))
    assert any(v.startswith("model.class")
               for v in model_violations(sa, {addr: ("kmalloc-96", 200)}, boot_live))


@pytest.mark.parametrize("name", sorted(SEEDED_SLAB_BUGS))
def test_seeded_slab_bug_is_caught_with_a_short_path(name: str) -> None:
    machine = slab_machine()
    res = SlabModelChecker(machine, MUTANT_BOUNDS, SEEDED_SLAB_BUGS[name].cls).run()
    v = res.violation
    assert v is not None, f"{name} survived"
    # 0 steps: the bug already breaks kmem_cache_init's own slabs (the boot state)
    assert 0 <= len(v.ops) <= 4 and len(v.path) == len(v.ops)
    assert not any(w.startswith("crash.") for w in v.what), v.render()
    assert replay(machine, v.ops) == "clean"  # the real allocators: the violation is the bug's
    assert replay(machine, v.ops, SEEDED_SLAB_BUGS[name].cls).startswith("violates")


def test_cli_prints_a_result_line_the_verify_reader_parses(
        capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--max-live", "1", "--budget", "60"])
    out = capsys.readouterr().out
    r = parse_result_line(out)
    assert r is not None and r["violation"] == "none" and r["exhausted"] == "yes"
    assert rc == 0 and read_modelcheck(out, rc)[0] == "passed"


def test_cli_mutant_row_reads_as_caught(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--mutant", "slab-no-double-free-check"])
    out = capsys.readouterr().out
    assert rc == 1
    status, detail = read_seeded_modelcheck(out, rc)
    assert status == "passed", detail
    assert "error.ObjectDoubleFreeError" in detail


def test_witness_list_is_what_a_clean_run_counts() -> None:
    """Every witness is a coverage key the checker writes (a typo would make it vacuous)."""
    res = SlabModelChecker(bounds=SMALL, sizes=(8,), page_orders=(0,)).run()
    assert set(missing_witnesses(res)) < set(WITNESSES)
    assert "kmalloc succeeded" not in missing_witnesses(res)


class FlushBeforeRaising(SlabAllocator):
    """A wrong kfree() that flushes kmalloc-8's CPU slab before rejecting a bad address."""

    def _diagnose_kfree(self, addr: int) -> None:
        self.flush_all(self.by_name["kmalloc-8"])
        super()._diagnose_kfree(addr)


def test_an_error_that_changes_the_state_is_a_violation() -> None:
    res = SlabModelChecker(bounds=SlabBounds(), sizes=(8,), cls=FlushBeforeRaising).run()
    v = res.violation
    assert v is not None and v.what == ["error.state_unchanged"], v and v.render()
    assert v.path[0].startswith("kmalloc(8") and "kfree" in v.path[-1]


def test_a_bound_not_exhausted_reads_as_unknown_and_a_missing_witness_as_vacuous(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The make verify row is honest: a run stopped by its budget or depth is ``unknown`` (a
    failure), and a clean exhausted run that never exercised a witness is ``vacuous``."""
    rc = main(["--require-exhaustive", "--depth", "2"])
    out = capsys.readouterr().out
    status, detail = read_modelcheck(out, rc)
    assert rc == 3 and status == "unknown", (rc, detail)
    assert parse_result_line(out)["exhausted"] == "no"  # type: ignore[index]
    rc = main(["--require-witnesses", "--max-live", "1", "--sizes", "8"])
    out = capsys.readouterr().out
    status, detail = read_modelcheck(out, rc)
    assert rc == 2 and status == "vacuous" and "never exercised" in out, (rc, detail)
