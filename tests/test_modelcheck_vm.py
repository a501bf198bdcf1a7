"""proofs/modelcheck_vm.py: the VM model checker explores the real classes, exhausts a small
bound cleanly, and catches each seeded page-table bug with a short path that is clean on the
real classes."""

from __future__ import annotations

import pickle

import pytest

from proofs.modelcheck_vm import (
    BOUNDS,
    MUTANTS,
    Model,
    System,
    VmBounds,
    apply,
    enabled,
    mutant,
    replay,
    search,
    state_key,
    state_violations,
    vm_machine,
    witnesses,
)


def test_fork_bound_is_exhausted_cleanly() -> None:
    run = search(bounds=BOUNDS["fork"])
    assert run.res.violation is None and run.res.exhausted
    assert run.res.states > 50
    assert [w for w in witnesses(BOUNDS["fork"]) if not run.res.coverage[w]] == []


def test_kernel_operations_in_a_shallow_bound() -> None:
    b = VmBounds(max_live=1, max_things=1, max_procs=0, depth=3)
    run = search(bounds=b)
    assert run.res.violation is None and run.res.exhausted
    for w in ("vmalloc", "vfree", "purge", "kmalloc", "kfree", "alloc_pages", "free_pages",
              "vfree refused", "vmalloc in hardirq refused"):
        assert run.res.coverage[w], w


def test_key_survives_pickling_and_detects_changes() -> None:
    s = System(vm_machine())
    m = Model()
    k0 = state_key(s, m)
    s2 = pickle.loads(pickle.dumps(s))
    assert state_key(s2, m) == k0
    m1, _ = apply(s2, m, next(op for op in enabled([], m, BOUNDS["default"])
                              if op.kind == "vmalloc"))
    assert state_key(s2, m1) != k0
    assert state_violations(s2, m1)[0] == []
    assert state_violations(s2, m)[0] != []  # the model no longer matches: an area is live


@pytest.mark.parametrize("bug", sorted(MUTANTS))
def test_each_seeded_bug_is_caught(bug: str) -> None:
    with mutant(bug):
        run = search(bounds=BOUNDS["default"], budget_s=60)
    assert run.res.violation is not None
    assert 1 <= len(run.ops) <= 4
    assert replay(run.ops) == []  # the real classes are clean on the same path
