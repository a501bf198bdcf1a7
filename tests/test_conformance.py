"""proofs/conformance.py: the symbolic transitions of proofs/symbolic.py agree with the real
allocator on reachable and corrupted states, and a change to either side alone is caught."""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
import z3

from impl.abstraction import abstract
from impl.buddy import expand_halves
from impl.page_alloc import PageAllocator
from proofs import conformance as cf
from proofs import registry
from proofs import symbolic as sy
from proofs.modelcheck import Bounds, ModelChecker
from spec.gfp import MIGRATE_MOVABLE, MIGRATE_UNMOVABLE
from spec.invariants import violated
from spec.logic import And
from spec.state import FreeBlock, MemState

SMALL = (Bounds(max_live=2, max_pagecache=1, depth=3, per_pfn=False),)
"""About 140 states: enough to exercise every required behaviour (checked below), in well
under 1 s."""


def _states(bounds: Bounds = SMALL[0]) -> list[tuple[bytes, MemState]]:
    """(pickled allocator, abstract state) of every state the model checker reaches."""
    out: list[tuple[bytes, MemState]] = []
    ModelChecker(cf.real_machine(), bounds).run(
        on_state=lambda a, ms: out.append((pickle.dumps(a), ms)))
    return out


# --- the real thing passes, and is not vacuous --------------------------------------------------

def test_conformance_passes_and_exercises_every_behaviour() -> None:
    rep = cf.check(bounds=SMALL)
    assert rep.ok, rep.summary()
    assert rep.missing() == []
    assert rep.states > 100 and rep.corrupted_states > 50
    assert rep.compared["free"] and rep.compared["reclaim"]
    assert rep.coverage["free that merged up to MAX_PAGE_ORDER"]
    assert rep.compared["alloc (__rmqueue_smallest)"] and rep.compared["alloc failed in both"]
    assert set(rep.corrupted) == set(cf.CORRUPTIONS)
    assert "passed" in rep.summary().splitlines()[0]


def test_plain_evaluation_is_the_z3_evaluation_of_the_same_code() -> None:
    """The successor computed on plain values equals the one computed on Z3 constants (the
    encoding the proofs use), for frees and allocations, with the real helpers and a wrong
    one: the conformance check runs the proofs' transition, not a second copy of it."""
    solver = z3.Solver()
    solver.check()
    model = solver.model()
    wrong = {"find_buddy": lambda p, o: p ^ (1 << (o + 1))}

    def forgets_half(p: Any, lo: int, hi: int) -> list[tuple[Any, int]]:
        return expand_halves(p, lo, hi)[:-1]

    states = _states(Bounds(max_live=2, max_pagecache=1, depth=2, per_pfn=False))
    compared = 0
    for _, ms in states[::7]:
        plain = sy.SymState.concrete(ms, cf.MACHINE, plain=True)
        sym = sy.SymState.concrete(ms, cf.MACHINE)
        for pfn, blk in ms.allocated.items():
            for helpers in ({}, wrong):
                p = [x for x in sy.free_paths(plain, pfn, blk.order, **helpers) if all(x.conds)]
                s = [x for x in sy.free_paths(sym, pfn, blk.order, **helpers)
                     if all(z3.is_true(z3.simplify(c)) for c in x.conds)]
                assert len(p) == len(s) == 1
                assert p[0].post.decode() == s[0].post.decode(model)
                compared += 1
        for c in ms.free:
            for k in range(ms.free[c].order + 1):
                for split in (expand_halves, forgets_half):
                    (p1,) = [x for x in sy.alloc_paths(plain, k, c, split=split)
                             if all(x.conds)]
                    (s1,) = [x for x in sy.alloc_paths(sym, k, c, split=split)
                             if all(z3.is_true(z3.simplify(y)) for y in x.conds)]
                    assert p1.post.decode() == s1.post.decode(model)
                    compared += 1
    assert compared > 20


def test_a_z3_term_in_a_plain_state_is_refused() -> None:
    ms = abstract(PageAllocator(cf.real_machine()))
    plain = sy.SymState.concrete(ms, cf.MACHINE, plain=True)
    leaky = dataclasses.replace(plain, fh=(z3.Bool("x"), *plain.fh[1:]))
    with pytest.raises(TypeError, match="not a plain bool"):
        cf.sym_alloc(leaky, 0, 0, 0, cf.Helpers())


# --- what is compared -----------------------------------------------------------------------

def test_diff_names_every_differing_field_and_weak_ignores_migratetypes() -> None:
    ms = abstract(PageAllocator(cf.real_machine()))
    b = ms.free[0]
    other = MemState(ms.max_order, ms.pageblock_order, ms.zones,
                     {**ms.free, 0: FreeBlock(0, b.order, 0, b.order, MIGRATE_UNMOVABLE, 1)},
                     ms.allocated, ms.pageblock_mt,
                     {**ms.nr_free, (0, b.order, MIGRATE_UNMOVABLE): 1,
                      (0, b.order, MIGRATE_MOVABLE): ms.nr_free[(0, b.order, MIGRATE_MOVABLE)] - 1},
                     {0: ms.free_pages[0] + 1}, pfn_limit=ms.pfn_limit)
    lines = cf.diff(ms, other)
    assert any(x.startswith("free block 0x0: symbolic order 3 on list (zone 0, order 3, mt 1)")
               and "mt 0" in x for x in lines), lines
    assert any(x.startswith("nr_free[zone 0][order 3][mt 0]: symbolic 0, implementation 1")
               for x in lines), lines
    assert "NR_FREE_PAGES[zone 0]: symbolic 16, implementation 17" in lines
    assert cf.diff(ms, other, weak=True) == ["NR_FREE_PAGES[zone 0]: symbolic 16, "
                                             "implementation 17"]
    assert cf.diff(ms, ms) == []


def test_every_corruption_breaks_an_invariant_and_the_symbolic_state_holds_it() -> None:
    seen: set[str] = set()
    for i, (blob, _) in enumerate(_states()[::7]):
        for tag, corrupt in cf.CORRUPTIONS.items():
            a = cf._in_place(pickle.loads(blob))
            if not corrupt(a, i):
                continue
            seen.add(tag)
            cms = abstract(a)
            assert violated(cms, fast=True), tag
            assert violated(cms), tag
            assert cf.diff(sy.SymState.concrete(cms, cf.MACHINE, plain=True).decode(), cms) == []
    assert seen == set(cf.CORRUPTIONS)


# --- teeth --------------------------------------------------------------------------------------

EXPECT = {
    "symbolic-buddy-next-order": "free_pages_pfn(",
    "symbolic-merge-keeps-pfn": "free_pages_pfn(",
    "symbolic-split-forgets-half": "alloc_pages_node(",
    "impl-hands-out-top-half": "which no enabled symbolic path",
    "impl-no-merge-order1": "free_pages_pfn(",
}


def test_every_seeded_divergence_is_listed_here() -> None:
    assert set(EXPECT) == set(cf.DIVERGENCES)


@pytest.mark.parametrize("name", sorted(cf.DIVERGENCES))
def test_a_seeded_divergence_fails_with_a_readable_report(name: str) -> None:
    d = cf.DIVERGENCES[name]
    rep = cf.check(bounds=SMALL, helpers=d.helpers, factory=d.factory)
    assert not rep.ok
    assert rep.divergences, rep.summary()
    text = rep.summary()
    assert "FAILED" in text.splitlines()[0]
    first = rep.divergences[0].render()
    assert first.startswith("DIVERGENCE on a reachable state: ")
    assert EXPECT[name] in first, first
    assert "pre-state:" in first and "real free lists" in first
    assert "differs: " in first


def test_the_top_half_bug_keeps_every_invariant_only_conformance_catches_it() -> None:
    mc = ModelChecker(cf.real_machine(), SMALL[0], cf.HandsOutTopHalf).run()
    assert mc.violation is None
    rep = cf.check(bounds=SMALL, factory=cf.HandsOutTopHalf)
    assert "handed out 0x7, which no enabled symbolic path of an order-0 allocation" in (
        rep.divergences[0].render())


class FailsOrder2(PageAllocator):
    """alloc_pages_node fails every order-2 request."""

    def alloc_pages_node(self, nid: int, gfp: int, order: int, **kw: Any) -> int | None:
        return None if order == 2 else super().alloc_pages_node(nid, gfp, order, **kw)


def test_a_failure_the_symbolic_model_does_not_allow_is_a_divergence() -> None:
    rep = cf.check(bounds=SMALL, factory=FailsOrder2)
    d = rep.divergences[0]
    assert d.op.endswith(", 2) -> NULL")
    assert d.what[0].startswith("the implementation failed, the symbolic allocation can take")


class BootsUnmovable(PageAllocator):
    """Boot labels the first pageblock UNMOVABLE (its free block stays on the MOVABLE list)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.pageblock_flags[0] = MIGRATE_UNMOVABLE


def test_the_symbolic_boot_state_is_compared_too() -> None:
    rep = cf.check(bounds=(), factory=BootsUnmovable)
    assert rep.compared["boot state"] == 1
    text = rep.divergences[0].render()
    assert text.startswith("DIVERGENCE on the boot state: boot (memblock_free_all)")
    assert "differs: pageblock 0 migratetype: symbolic 1, implementation 0" in text


def test_a_divergence_only_on_corrupted_states_is_caught(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """The symbolic merge unlinks the buddy from the list of its pageblock's migratetype instead
    of the list it is on: the same thing on every reachable state (freelist.right_list holds
    there), different on a corrupted one."""
    def by_pageblock(s: sy.SymState, p: int, key: tuple[int, int]) -> Any:
        return And(s.lzid[p] == 0, s.lorder[p] == key[0],
                   s.pb[p >> s.m.pageblock_order] == key[1])

    monkeypatch.setattr(sy, "_list_match", by_pageblock)
    rep = cf.check(bounds=SMALL)
    assert rep.divergences, rep.summary()
    assert all(d.where.startswith("corrupted state (") for d in rep.divergences)
    assert any("nr_free[zone 0]" in w for d in rep.divergences for w in d.what)


# --- wiring ---------------------------------------------------------------------------------

def test_cli_passes_and_fails_with_a_seeded_divergence(capsys: pytest.CaptureFixture[str],
                                                       tmp_path: Path) -> None:
    out_json = tmp_path / "conformance.json"
    assert cf.main(["--max-live", "2", "--depth", "3", "--json", str(out_json)]) == 0
    assert "passed" in capsys.readouterr().out
    data = json.loads(out_json.read_text())
    assert data["ok"] and data["states"] > 100 and data["transitions"] > 1000
    assert cf.main(["--max-live", "2", "--depth", "3", "--diverge",
                    "symbolic-buddy-next-order"]) == 1
    out = capsys.readouterr().out
    assert "seeded divergence symbolic-buddy-next-order" in out and "DIVERGENCE" in out


def test_registered_as_a_verify_row_that_reports_counts_or_the_divergence(
        monkeypatch: pytest.MonkeyPatch) -> None:
    (c,) = [c for c in registry.all_checks(False) if c.name == "symbolic.conforms_to_impl"]
    assert c.kind == "conformance"
    monkeypatch.setattr(cf, "DEFAULT_BOUNDS", SMALL)
    row = c.run(False)
    assert row.status == "passed"
    assert re.match(r"\d+ reachable \+ \d+ corrupted states, \d+ transitions compared, "
                    r"0 divergences$", row.detail), row.detail
    monkeypatch.setattr(sy, "_list_match", lambda s, p, key: And(
        s.lzid[p] == 0, s.lorder[p] == key[0], s.pb[p >> s.m.pageblock_order] == key[1]))
    row = c.run(False)
    assert row.status == "failed"
    assert "DIVERGENCE on a corrupted state" in row.detail and "differs: " in row.detail
