"""The explicit-state model checker (proofs/modelcheck.py): it explores the whole bounded
space of the real allocator cleanly, and it catches each seeded bug with a shortest path."""

from __future__ import annotations

import pytest

from impl.abstraction import abstract
from impl.page_alloc import PageAllocator
from proofs import modelcheck as mc
from spec.gfp import GFP_KERNEL
from tests import hypothesis_profiles

SMALL = mc.Bounds(max_live=2, max_pagecache=1)


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


def test_the_real_allocator_passes_the_same_bounds_the_mutants_fail() -> None:
    res = mc.ModelChecker(mc.default_machine(16), mc.Bounds(max_live=2, max_pagecache=1)).run()
    assert res.violation is None and res.exhausted


def test_key_equality_means_equal_abstract_states() -> None:
    """The concrete key is as fine as the abstract state: walk a small space and check that
    equal keys never hide different abstract states (list order included)."""
    seen: dict[object, object] = {}
    a0 = PageAllocator(mc.default_machine(8))
    frontier = [a0]
    import pickle

    for _ in range(3):
        nxt = []
        for a in frontier:
            for op in mc.enabled_ops(a, SMALL):
                b = pickle.loads(pickle.dumps(a))
                try:
                    mc.apply_op(b, mc.state_key(b), op)
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


def test_cli_prints_the_shortest_path_for_a_mutant(capsys: pytest.CaptureFixture[str]) -> None:
    rc = mc.main(["--pages", "16", "--max-live", "2", "--max-pagecache", "1",
                  "--mutant", "no-merge-order1"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "VIOLATION: freelist.fully_merged" in out
    assert "shortest path from boot (2 steps)" in out
    assert "free_pages_pfn(0x0, 1)" in out


@pytest.mark.slow
@hypothesis_profiles.slow
def test_default_run_is_exhaustive_clean_and_not_vacuous(
        capsys: pytest.CaptureFixture[str]) -> None:
    rc = mc.main(["--require-witnesses"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "frontier exhausted" in out
