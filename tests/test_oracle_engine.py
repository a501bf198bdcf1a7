"""The oracle's engine (oracle/machine.py, oracle/run.py, oracle/machines.py) with in-process
subjects: the reference is accepted in every mode, and what the generator sends stays inside
the protocol (../shared/design/oracle-protocol.md)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from oracle.inprocess import ReferenceSubject
from oracle.judge import Judge
from oracle.machine import (
    _CACHE_BASES,
    _KMALLOC_ALLOWED,
    _KMALLOC_BASES,
    _MODS,
    _NO_ZONE_BITS,
    _PAGE_BASES,
    SubjectStateMachine,
    _mask,
    kmalloc_edge_sizes,
)
from oracle.machines import PRESETS, hello_of
from oracle.run import check_subject, read_replay, replay
from spec.errors import KmemError, MachineError
from spec.gfp import (
    __GFP_DMA,
    __GFP_DMA32,
    __GFP_HIGHMEM,
    __GFP_MOVABLE,
    __GFP_NOFAIL,
    __GFP_THISNODE,
    format_gfp,
    gfp_is_valid,
    parse_gfp,
)
from spec.slab import KMALLOC_CLASSES

FAST = {"budget": 4.0, "sequences": 6, "steps": 12}


# --- machines ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PRESETS)
def test_presets_are_machines_the_reference_boots(name: str) -> None:
    hello = hello_of(name)
    ans = ReferenceSubject().request({**hello, "seq": 1})
    assert ans.get("ok") is True, ans


def test_small_machine_is_what_the_issue_asks() -> None:
    """Two nodes; DMA, DMA32 and Normal zones; a non-zero lowmem_reserve; an unaligned zone
    boundary (blocks at that edge are smaller than 2^max_order)."""
    h = hello_of("small")
    assert len(h["nodes"]) == 2
    zones = [z for n in h["nodes"] for z in n["zones"]]
    assert {z["zone"] for z in zones} == {"DMA", "DMA32", "Normal"}
    assert any(any(z["lowmem_reserve"]) for z in zones)
    assert any(z["start_pfn"] % (1 << h["max_order"]) for z in zones)


def test_machine_file_and_unknown_machine() -> None:
    h = hello_of("machines/small-numa.json")
    assert [z["zone"] for n in h["nodes"] for z in n["zones"]] == ["DMA", "DMA32", "Normal"]
    assert all("min" in z for n in h["nodes"] for z in n["zones"])
    with pytest.raises(MachineError, match="unknown machine"):
        hello_of("no-such-machine")


# --- what is generated ---------------------------------------------------------------------------
def _all_masks(bases: tuple[int, ...], allowed: int = ~0) -> set[int]:
    return {_mask(bases, b, m, t, allowed) for b, m, t in
            itertools.product(range(len(bases)), range(len(_MODS)), (False, True))}


def test_masks_are_valid_and_print_in_trace_notation() -> None:
    page = _all_masks(_PAGE_BASES)
    kmalloc = _all_masks(_KMALLOC_BASES, _KMALLOC_ALLOWED)
    cache = _all_masks(_CACHE_BASES, _NO_ZONE_BITS)
    for m in page | kmalloc | cache:
        assert gfp_is_valid(m), hex(m)
        assert parse_gfp(format_gfp(m)) == m
        assert not m & __GFP_NOFAIL
    assert not any(m & (__GFP_DMA32 | __GFP_HIGHMEM | __GFP_MOVABLE) for m in kmalloc)
    assert not any(m & (__GFP_DMA | __GFP_DMA32 | __GFP_HIGHMEM | __GFP_MOVABLE)
                   for m in cache)
    assert any(m & __GFP_DMA for m in page) and any(m & __GFP_DMA32 for m in page)
    assert any(m & __GFP_THISNODE for m in page)
    assert 0 in page  # "none"


def test_kmalloc_sizes_cover_every_class_edge_and_the_limit() -> None:
    sizes = set(kmalloc_edge_sizes(4096, 8))
    for c in KMALLOC_CLASSES:
        assert {c - 1, c, c + 1} <= sizes
    top = 4096 << 8
    assert {0, 1, top - 1, top, top + 1} <= sizes


class EagerSlabReference(ReferenceSubject):
    """The reference with its slab allocator booted at hello: booted lazily, at the first
    slab request, it cannot boot once alloc_pages has exhausted memory, and then has no
    cache objects to free, which this test wants to see."""

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        ans = super().request(msg)
        if msg["op"] == "hello":
            self._s.handle({"op": "kfree", "seq": 1, "addr": "0x0"})
        return ans


class StrictEagerMachine(SubjectStateMachine):
    strict = True

    def make_subject(self) -> EagerSlabReference:
        return EagerSlabReference()


def test_every_rule_sends_requests_inside_the_protocol() -> None:
    """Each macro-step, called directly with fixed parameters: every request kind of every
    feature is sent, invalid ones too, and every request is one the judge understands
    (observe raises RequestError for anything outside protocol v1)."""
    StrictEagerMachine.context = None
    m = StrictEagerMachine()
    w = (0, 1, False, False, -1, 0)
    m.alloc_pages_burst(burst=(40, 4, True, w, 1))
    m.alloc_pages_until_null(top=0, cap=5000, w=(1, 0, True, True, 1, 3))
    m.free_pages_step(pattern=1, index=0, count=8, seed=2)
    m.fragment_pages(top=1, k=64, w=w)
    m.kmalloc_burst(k=60, size=5, spread=True, w=(0, 2, False, False, 0, 1), seed=3)
    m.kmalloc_until_null(size=60, cap=300, w=(7, 0, False, True, -1, 2))
    m.kfree_step(pattern=3, index=0, count=10, seed=4)
    m.kfree_step(pattern=5, index=0, count=1, seed=0)
    m.free_pages_step(pattern=2, index=0, count=1, seed=0)
    m.cache_create(size=4, align=3)
    m.cache_alloc_burst(cache=0, k=20, w=(1, 1, True, True, 0, 0))
    m.cache_free_step(cache=0, pattern=4, index=0, count=5, seed=5, with_kfree=False)
    m.cache_free_step(cache=0, pattern=0, index=1, count=1, seed=5, with_kfree=True)
    m.vmalloc_burst(k=4, size=3, spread=True, mask=1, cpu=2, seed=6)
    m.vfree_step(pattern=0, index=0, count=1, seed=0)
    for kind in range(16):
        m.invalid_request(kind=kind, index=kind, n=2)
    m.cache_destroy(cache=0)
    m.teardown()
    per_kind = m.ctx.stats.as_dict()["per_kind"]
    for op in ("alloc_pages", "free_pages", "kmalloc", "kfree", "kmem_cache_create",
               "kmem_cache_alloc", "kmem_cache_free", "kmem_cache_destroy", "vmalloc", "vfree"):
        assert per_kind.get(op, {}).get("valid", 0) > 0, (op, per_kind)
    assert sum(c["invalid"] for c in per_kind.values()) >= 8
    assert m.ctx.stats.answers["null"] > 0  # pressure reached the watermarks
    assert m.ctx.last_failure is None


def test_strict_run_against_the_reference_is_accepted() -> None:
    # every session uses every feature: the eager slab keeps pages a pages-only session may not
    r = check_subject(EagerSlabReference, strict=True, seed=1, budget=6.0, sequences=8,
                      steps=20, pages_only=False)
    assert r.verdict == "accepted", r.failure
    assert sum(c["invalid"] for c in r.stats["per_kind"].values()) > 0


# --- the reference is accepted in every mode -----------------------------------------------------
@pytest.mark.parametrize("kw", [{}, {"mode": "exact"}, {"pages_only": True},
                                {"strict": True, "pages_only": True}],
                         ids=["spec", "exact", "pages-only", "strict-pages"])
def test_reference_in_process_is_accepted(kw: dict[str, Any]) -> None:
    r = check_subject(ReferenceSubject, seed=1, **FAST, **kw)  # type: ignore[arg-type]
    assert r.verdict == "accepted", r.failure
    assert r.exit_status == 0 and r.minimal == [] and r.replay_path is None
    assert r.stats["requests"] > 100
    if kw.get("pages_only"):
        assert r.stats["rules_checked"].get("liveness", 0) > 0
        assert set(r.stats["per_kind"]) <= {"alloc_pages", "free_pages"}
    if kw.get("mode") == "exact":
        assert r.stats["rules_checked"].get("exact", 0) > 0


def test_same_seed_same_requests() -> None:
    a = check_subject(ReferenceSubject, seed=7, sequences=3, steps=10, budget=30.0)
    b = check_subject(ReferenceSubject, seed=7, sequences=3, steps=10, budget=30.0)
    assert a.stats["per_kind"] == b.stats["per_kind"]
    assert a.stats["requests"] == b.stats["requests"]


def test_bad_arguments_are_kmem_errors() -> None:
    with pytest.raises(KmemError):
        check_subject(ReferenceSubject, mode="fast")
    with pytest.raises(KmemError):
        check_subject(ReferenceSubject, budget=0)
    with pytest.raises(MachineError):
        check_subject(ReferenceSubject, machine="nowhere")


# --- the subclassable state machine --------------------------------------------------------------
class ReferenceMachine(SubjectStateMachine):
    machine = "tiny"  # 32 pages: too small to boot the reference's slab allocator
    pages_only = True

    def make_subject(self) -> ReferenceSubject:
        return ReferenceSubject()


def test_subclass_runs_as_a_hypothesis_test() -> None:
    from hypothesis import settings
    from hypothesis.stateful import run_state_machine_as_test

    ReferenceMachine.context = None
    run_state_machine_as_test(ReferenceMachine, settings=settings(
        max_examples=5, stateful_step_count=10, deadline=None, database=None))
    ctx = ReferenceMachine.run_context()
    assert ctx.stats.sessions >= 5 and ctx.stats.requests > 0


class BrokenAlign(ReferenceSubject):
    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        ans = super().request(msg)
        if msg["op"] == "alloc_pages" and ans.get("pfn") is not None and msg["order"] >= 1:
            ans["pfn"] += 1
        return ans


class BrokenMachine(SubjectStateMachine):
    machine = "tiny"
    pages_only = True

    def make_subject(self) -> BrokenAlign:
        return BrokenAlign()


def test_subclass_failure_is_an_assertion_naming_the_rule() -> None:
    from hypothesis import Phase, settings
    from hypothesis.stateful import run_state_machine_as_test

    BrokenMachine.context = None
    with pytest.raises(AssertionError, match=r"^align: "):
        run_state_machine_as_test(BrokenMachine, settings=settings(
            max_examples=20, stateful_step_count=10, deadline=None, database=None,
            report_multiple_bugs=False, phases=[Phase.generate]))


# --- replay files --------------------------------------------------------------------------------
def test_replay_file_format_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    r = check_subject(BrokenAlign, machine="tiny", pages_only=True, budget=4.0,
                      replay_path=str(path))
    assert r.verdict == "violation" and r.failure is not None and r.failure.rule == "align"
    header, reqs = read_replay(path)
    assert header["rule"] == "align" and header["machine"] == "tiny" and header["pages_only"]
    assert reqs[0]["op"] == "hello" and reqs == r.minimal
    assert [q["seq"] for q in reqs] == list(range(1, len(reqs) + 1))
    again = replay(path, BrokenAlign)
    assert again.verdict == "violation" and again.failure is not None
    assert again.failure.rule == "align" and again.failure.request == r.failure.request
    assert replay(path, ReferenceSubject).verdict == "accepted"


def test_replay_rejects_files_that_are_not_replays(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"op": "hello"}) + "\n")
    with pytest.raises(KmemError, match="not a kmemspec oracle replay file"):
        replay(p, ReferenceSubject)
    p.write_text("not json\n")
    with pytest.raises(KmemError, match="not JSON Lines"):
        replay(p, ReferenceSubject)
    with pytest.raises(KmemError, match="cannot read"):
        replay(tmp_path / "missing.jsonl", ReferenceSubject)


def test_judge_sees_requests_with_seq() -> None:
    """The judge classifies requests with their seq (it refuses a request without one)."""
    j = Judge(hello_of("tiny"))
    assert j.is_valid({"op": "alloc_pages", "seq": 2, "order": 0, "gfp": "GFP_KERNEL",
                       "nid": -1, "cpu": 0, "ctx": "process"})
