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
    digest,
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
        run = search(bounds=BOUNDS[MUTANTS[bug].bounds], budget_s=60)
    assert run.res.violation is not None
    assert 1 <= len(run.ops) <= 4
    assert replay(run.ops) == []  # the real classes are clean on the same path


def test_vma_bound_is_exhausted_cleanly_with_every_witness() -> None:
    """One process: MAP_FIXED pages below its VMA (same and other flags), munmap of its first
    or last page and of nothing, faults; spec/vma_rules.py checks every mmap and munmap."""
    run = search(bounds=BOUNDS["vma"])
    assert run.res.violation is None and run.res.exhausted
    assert run.res.states > 100
    assert [w for w in witnesses(BOUNDS["vma"]) if not run.res.coverage[w]] == []


def test_digest_is_a_function_of_the_key_value() -> None:
    """Equal keys have equal digests whatever object identity their strings have (pickle's
    memo made an unpickled state, whose owner strings are copies, hash apart: the fork bound
    counted 86 states instead of 84 before munmap freed page tables)."""
    a = "".join(["pa", "ges"])
    k1 = ((1, (0, 0, "pages", 0)), (2, (0, 0, "pages", 0)))
    k2 = ((1, (0, 0, a, 0)), (2, (0, 0, "pages", 0)))
    assert k1 == k2 and k1[0][1][2] is not k2[0][1][2]
    assert digest(k1) == digest(k2)
