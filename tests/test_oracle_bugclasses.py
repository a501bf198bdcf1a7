"""Classes of allocator bugs a third-party author may have, each seeded into the reference
subject (in-process, so a run takes a second or two), and each caught by the whole oracle (the
generator finds it, the judge names the rule, shrinking gives a short replay file that shows
it again while the correct subject passes it). The classes not already shown by
tests/test_oracle_mutants.py, tests/test_oracle_pressure.py and the C variants of
tests/test_c_subjects.py: an invalid request refused but carried out anyway, a freed block put
back twice, a one-page leak (seen at the end of the session), sleeping in atomic context in
kmalloc, kmalloc's limits, vmalloc areas sharing pages or in atomic context, refusing every
cache, accepting an interior pointer or the destroy of a busy cache, serving an order above
max_order.

One class is *not* a rule of the protocol, on purpose: failing a GFP_ATOMIC (non-blocking)
allocation while a zone's reserves would still cover it. The kernel does it too (pages on other
CPUs' per-CPU lists, highatomic reserves: only a caller that may reclaim drains them), so the
protocol's ``liveness`` is about blocking requests only; ``--mode exact`` catches it in a
subject that claims the kernel's policy (docs/oracle.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oracle.run import OracleResult, check_subject, read_replay, replay
from tests.test_oracle_mutants import Mutant


def caught(cls: type[Mutant], rules: str | tuple[str, ...], tmp_path: Path,
           shrink: float = 1.0, **kw: Any) -> OracleResult:
    """The oracle finds the defect with one of ``rules``, shrinks it, and its replay file
    shows it again on a fresh subject, while the correct subject passes the same requests."""
    rules = (rules,) if isinstance(rules, str) else rules
    path = tmp_path / "failure.jsonl"
    kw = {"pages_only": None if not cls.eager_slab else False, "seed": 0, "sequences": 8,
          "steps": 15, **kw}
    r = check_subject(cls, budget=30.0, shrink_budget=shrink, replay_path=str(path), **kw)
    assert r.verdict == "violation" and r.exit_status == 1, r.as_dict()
    f = r.failure
    assert f is not None and f.rule in rules, (f.rule, f.message, f.detail) if f else None
    rule = f.rule
    assert f.request is not None and r.minimal[-1] == f.request and f.detail
    assert len(r.minimal) < r.stats["shrink"]["first_length"] or len(r.minimal) <= 4
    header, reqs = read_replay(path)
    assert header["rule"] == rule and reqs == r.minimal
    again = replay(path, cls)
    assert again.failure is not None and again.failure.rule == rule
    correct = type("Correct", (Mutant,), {"eager_slab": cls.eager_slab})
    assert replay(path, correct).verdict == "accepted"
    return r


# --- pages ------------------------------------------------------------------------------------
class FreesDespiteError(Mutant):
    """free_pages with a wrong order frees the block (with its own order) and then answers
    the error: an invalid request that changed the state. The block is later handed out
    while the oracle's view still holds it live."""

    eager_slab = False

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "free_pages" and self.live.get(msg["pfn"], msg["order"]) != msg["order"]:
            order = self.live[msg["pfn"]]
            super().request({**msg, "order": order})
            return {"seq": msg["seq"], "error": "free_pages: wrong order"}
        return super().request(msg)


class FreedTwiceIntoTheList(Mutant):
    """A freed order-0 block goes on its zone's free list twice: the next order-0 allocation
    served from that zone takes the second copy, and the first is handed out again later
    (the block is live twice)."""

    eager_slab = False
    spare: int | None = None

    @staticmethod
    def zone(pfn: int) -> int:
        """The zone of a pfn on the ``small`` machine: DMA 0-399, DMA32 400-2047, Normal."""
        return (pfn >= 400) + (pfn >= 2048)

    def after(self, msg: dict[str, Any], ans: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "free_pages" and ans.get("ok") and msg["order"] == 0:
            self.spare = msg["pfn"]
        elif msg["op"] == "alloc_pages" and msg["order"] == 0 and ans.get("pfn") is not None \
                and self.spare is not None and self.spare != ans["pfn"] \
                and self.zone(self.spare) == self.zone(ans["pfn"]):
            pfn, self.spare = self.spare, None
            return {**ans, "pfn": pfn}
        return ans


class LeaksOnePage(Mutant):
    """The fifth free_pages of an order-0 block is answered ok, and the page is lost: a leak
    of one page that no later request of the session needs to show."""

    eager_slab = False
    n = 0

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "free_pages" and msg["order"] == 0 and msg["pfn"] in self.live:
            self.n += 1
            if self.n == 5:
                self.live.pop(msg["pfn"])
                return {"seq": msg["seq"], "ok": True}
        return super().request(msg)


class ServesAboveMaxOrder(Mutant):
    """An order above max_order is served with a max_order block."""

    eager_slab = False

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "alloc_pages" and msg["order"] > 8:
            return super().request({**msg, "order": 8})
        return super().request(msg)


def test_invalid_request_that_changes_the_state(tmp_path: Path) -> None:
    """The protocol: an invalid request "must leave the subject's state unchanged". The
    oracle cannot look inside; the change shows later: the freed block handed out again
    (overlap) or the oracle's own free of it refused as a double free (free)."""
    r = caught(FreesDespiteError, ("overlap", "free"), tmp_path, strict=True, pages_only=True)
    assert any(q["op"] == "free_pages" for q in r.minimal)


def test_freed_block_handed_out_twice(tmp_path: Path) -> None:
    """Seen when the model hands the block out again (overlap), or when the oracle frees the
    block it holds and the subject calls it free already (free): the same defect."""
    caught(FreedTwiceIntoTheList, ("overlap", "free"), tmp_path, pages_only=True)


def test_memory_leak_shows_at_the_end_of_the_session(tmp_path: Path) -> None:
    """A leak at bye: the drain at the end of every fourth pages-only session
    (SubjectStateMachine._drain: free everything, then allocate until null, order by order)
    fails early by the leaked page, a liveness violation, shrunk to a short replay (this
    seed's run was accepted before the drain)."""
    r = caught(LeaksOnePage, "liveness", tmp_path, shrink=6.0, pages_only=True, seed=1)
    assert len(r.minimal) <= 60
    last = r.minimal[-1]
    assert last["op"] == "alloc_pages" and last["gfp"].startswith("GFP_KERNEL"), last


def test_order_above_max_order_served(tmp_path: Path) -> None:
    r = caught(ServesAboveMaxOrder, "protocol", tmp_path, pages_only=True)
    assert "above max_order" in (r.failure.message if r.failure else "")


# --- kmalloc and slab -------------------------------------------------------------------------
class KmallocSleepsInAtomic(Mutant):
    """kmalloc ignores the context: atomic callers with a reclaiming mask are said to sleep."""

    def after(self, msg: dict[str, Any], ans: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "kmalloc" and msg["ctx"] == "atomic" and "KERNEL" in msg["gfp"]:
            return {**ans, "slept": True}
        return ans


class KmallocZeroIsAnObject(Mutant):
    """kmalloc(0) is served as kmalloc(1)."""

    def before(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "kmalloc" and msg["size"] == 0:
            return {**msg, "size": 1}
        return msg


class KmallocAboveTheLimit(Mutant):
    """A size above KMALLOC_MAX_SIZE wraps around (the size is kept modulo the limit)."""

    def before(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "kmalloc" and msg["size"] > 4096 << 8:
            return {**msg, "size": msg["size"] % (4096 << 8)}
        return msg


class RefusesEveryCache(Mutant):
    """Lists the slab feature but refuses every kmem_cache_create: nothing of the slab rules
    would ever be judged. Only an ENOMEM failure is the kernel's."""

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "kmem_cache_create":
            return {"seq": msg["seq"], "error": "kmem_cache_create: not implemented"}
        return super().request(msg)


class AcceptsInteriorKfree(Mutant):
    """kfree of an address inside a live object frees nothing and answers ok."""

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        ans = super().request(msg)
        if msg["op"] == "kfree" and "error" in ans:
            return {"seq": msg["seq"], "ok": True}
        return ans


class DestroysBusyCache(Mutant):
    """kmem_cache_destroy with objects left answers ok (and keeps the cache)."""

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        ans = super().request(msg)
        if msg["op"] == "kmem_cache_destroy" and "error" in ans:
            return {"seq": msg["seq"], "ok": True}
        return ans


@pytest.mark.parametrize(("cls", "rule", "kw"), [
    (KmallocSleepsInAtomic, "sleep", {}),
    (KmallocZeroIsAnObject, "kmalloc-limits", {}),
    (KmallocAboveTheLimit, "kmalloc-limits", {}),
    (RefusesEveryCache, "protocol", {}),
    (AcceptsInteriorKfree, "free", {"strict": True}),
    (DestroysBusyCache, "free", {"strict": True}),
], ids=lambda x: x.__name__ if isinstance(x, type) else None)
def test_object_bug_is_caught(cls: type[Mutant], rule: str, kw: dict[str, Any],
                              tmp_path: Path) -> None:
    caught(cls, rule, tmp_path, **kw)


# --- vmalloc ----------------------------------------------------------------------------------
class VmallocSharesAPage(Mutant):
    """The second page of every area of two pages or more is the first page of the previous
    area (a page array filled from a stale index)."""

    prev: int | None = None

    def after(self, msg: dict[str, Any], ans: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "vmalloc" and ans.get("addr") is not None:
            pfns = list(ans["pfns"])
            first = pfns[0]
            if self.prev is not None and len(pfns) >= 2:
                pfns[1] = self.prev
            self.prev = first
            return {**ans, "pfns": pfns}
        return ans


class VmallocInAtomic(Mutant):
    """vmalloc in atomic context is served (as if in process context)."""

    def before(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "vmalloc":
            return {**msg, "ctx": "process"}
        return msg


def test_vmalloc_area_pages_shared(tmp_path: Path) -> None:
    caught(VmallocSharesAPage, "overlap", tmp_path)


def test_vmalloc_in_atomic_context_served(tmp_path: Path) -> None:
    caught(VmallocInAtomic, "sleep", tmp_path, strict=True)


# --- not a rule: non-blocking failures --------------------------------------------------------
class FailsEveryAtomicAllocation(Mutant):
    """GFP_ATOMIC (and any mask without __GFP_DIRECT_RECLAIM) always fails."""

    eager_slab = False

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "alloc_pages" and msg["gfp"].startswith(("GFP_ATOMIC", "GFP_NOWAIT")):
            return {"seq": msg["seq"], "pfn": None}
        return super().request(msg)


def test_non_blocking_failures_are_judged_only_in_exact_mode() -> None:
    spec = check_subject(FailsEveryAtomicAllocation, seed=0, sequences=4, steps=12,
                         budget=8.0, pages_only=True)
    assert spec.verdict == "accepted", spec.as_dict()   # the protocol allows it
    assert spec.stats["answers"]["null"] > 0
    exact = check_subject(FailsEveryAtomicAllocation, seed=0, sequences=4, steps=12,
                          budget=8.0, pages_only=True, mode="exact", shrink_budget=1.0)
    assert exact.failure is not None and exact.failure.rule == "exact", exact.as_dict()
    assert exact.failure.request is not None
    assert exact.failure.request["gfp"].startswith(("GFP_ATOMIC", "GFP_NOWAIT"))
