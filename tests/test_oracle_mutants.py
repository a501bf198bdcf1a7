"""Deliberately broken in-process subjects, each the reference with one realistic defect, are
caught by the oracle with the rule they break, a short minimal sequence, and a replay file that
reproduces the failure (and that the reference itself passes). Some defects only show under
pressure: a node driven to its watermark (__GFP_THISNODE ignored, sleeping in atomic context,
a spurious failure) or fragmentation with many frees (a leak on free)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oracle.inprocess import ReferenceSubject
from oracle.run import check_subject, read_replay, replay
from spec.gfp import __GFP_DMA, __GFP_THISNODE, format_gfp, parse_gfp
from spec.slab import KMALLOC_CLASSES

_DMA = __GFP_DMA
_THISNODE = __GFP_THISNODE


class Mutant(ReferenceSubject):
    """The reference, correct, with hooks for one defect. Its slab allocator is booted at
    hello unless ``eager_slab`` is False (pages-only sessions, where slab pages would be
    pages the oracle cannot see): booted lazily, it cannot boot once alloc_pages has
    exhausted memory and then answers every kmalloc with null, which hides kmalloc defects."""

    eager_slab = True

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
    def before(self, msg: dict[str, Any]) -> dict[str, Any]:
        return msg
    def after(self, msg: dict[str, Any], ans: dict[str, Any]) -> dict[str, Any]:
        return ans
    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        ans = self.after(msg, super().request(self.before(msg)))
        if msg["op"] == "hello" and self.eager_slab:
            self._s.handle({"op": "kfree", "seq": 1, "addr": "0x0"})
        if msg["op"] == "alloc_pages" and ans.get("pfn") is not None:
            self.live[ans["pfn"]] = msg["order"]
        elif msg["op"] == "free_pages" and ans.get("ok"):
            self.live.pop(msg["pfn"], None)
        return ans
    def free_pages_total(self) -> int:
        return sum(z.free_pages for z in self._s.a.zones)


class OverlapAfterSplit(Mutant):
    """Every 40th block handed out is one already live (a split that forgot to unlink)."""
    n = 0
    def after(self, msg: dict[str, Any], ans: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "alloc_pages" and ans.get("pfn") is not None:
            self.n += 1
            same = [p for p, o in self.live.items() if o == msg["order"]]
            if self.n % 40 == 0 and same:
                return {**ans, "pfn": same[0]}
        return ans


class Misaligned(Mutant):
    """Blocks of order >= 2 start one page late (an off-by-one in the split)."""
    def after(self, msg: dict[str, Any], ans: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "alloc_pages" and ans.get("pfn") is not None and msg["order"] >= 2:
            return {**ans, "pfn": ans["pfn"] + 1}
        return ans


class DropsGfpBits(Mutant):
    """alloc_pages ignores the gfp bits ``dropped`` (a defect shape shared by the next two)."""

    dropped = 0

    def before(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "alloc_pages":
            return {**msg, "gfp": format_gfp(parse_gfp(msg["gfp"]) & ~self.dropped)}
        return msg


class WrongZoneForDMA(DropsGfpBits):
    """GFP_DMA is ignored: the zone bits are dropped."""

    dropped = _DMA


class IgnoresThisNode(DropsGfpBits):
    """__GFP_THISNODE is dropped: a full node falls back to the other one."""

    dropped = _THISNODE


class SleepsInAtomic(Mutant):
    """The context is ignored: atomic requests with a reclaim mask enter direct reclaim."""
    def before(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "alloc_pages" and msg.get("ctx") == "atomic":
            return {**msg, "ctx": "process"}
        return msg


class SpuriousFailure(Mutant):
    """A watermark check against a quarter of memory: null while plenty is free."""

    eager_slab = False

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "alloc_pages" and self._s.a is not None and \
                self.free_pages_total() < 1024:
            return {"seq": msg["seq"], "pfn": None}
        return super().request(msg)


class LeaksOnFree(Mutant):
    """Every third free_pages is answered ok and forgotten."""

    eager_slab = False

    n = 0
    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "free_pages":
            self.n += 1
            if self.n % 3 == 0 and msg["pfn"] in self.live:
                self.live.pop(msg["pfn"])
                return {"seq": msg["seq"], "ok": True}
        return super().request(msg)


class KmallocClassOffByOne(Mutant):
    """kmalloc(c + 1) is served from the size-c class."""
    def before(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "kmalloc" and msg["size"] - 1 in KMALLOC_CLASSES:
            return {**msg, "size": msg["size"] - 1}
        return msg


CASES: list[tuple[type[Mutant], dict[str, Any], str]] = [
    (OverlapAfterSplit, {}, "overlap"),
    (Misaligned, {}, "align"),
    (WrongZoneForDMA, {}, "range"),
    (KmallocClassOffByOne, {}, "overlap"),
]


def check_caught(cls: type[Mutant], kw: dict[str, Any], rule: str, tmp_path: Path) -> None:
    """The oracle finds the defect with the expected rule, shrinks it, and the replay file
    reproduces it with the broken subject and passes with the reference."""
    path = tmp_path / "failure.jsonl"
    # an eager slab keeps pages that pages-only sessions may not: those mutants run with
    # every feature in every session
    kw = {"pages_only": None if not cls.eager_slab else False, **kw}
    r = check_subject(cls, seed=0, budget=60.0, sequences=10, shrink_budget=2.5,
                      replay_path=str(path), **kw)
    assert r.verdict == "violation" and r.exit_status == 1
    f = r.failure
    assert f is not None and f.rule == rule, f
    assert f.request is not None and f.answer is not None and f.message and f.detail
    assert r.minimal[0]["op"] == "hello" and r.minimal[-1] == f.request
    assert len(r.minimal) < r.stats["requests"]  # shrunk
    header, reqs = read_replay(path)
    assert header["rule"] == rule and reqs == r.minimal
    again = replay(path, cls)
    assert again.verdict == "violation" and again.failure is not None
    assert again.failure.rule == rule
    correct = type("Correct", (Mutant,), {"eager_slab": cls.eager_slab})
    assert replay(path, correct).verdict == "accepted"


@pytest.mark.parametrize(("cls", "kw", "rule"), CASES, ids=[c[0].__name__ for c in CASES])
def test_broken_subject_is_caught(cls: type[Mutant], kw: dict[str, Any], rule: str,
                                  tmp_path: Path) -> None:
    check_caught(cls, kw, rule, tmp_path)
