"""The reference subject's per-request caches (cli/subject.py: the parsed gfp, nid, cpu and ctx
of an allocation) change no answer: a session answered with the cache off and one with it on
give the same answers, bad fields are refused every time, and a field of the wrong type never
hits the entry of an equal integer (True == 1)."""

from __future__ import annotations

import random
from typing import Any

import pytest

import cli.subject
from cli.subject import Subject
from oracle.machines import hello_of

GFPS = ("GFP_KERNEL", "GFP_ATOMIC", "GFP_NOWAIT", "GFP_DMA", "GFP_KERNEL|__GFP_DMA32",
        "GFP_KERNEL|__GFP_THISNODE", "GFP_HIGHUSER_MOVABLE", "GFP_KERNEL|0x1000000",
        "__GFP_DMA|__GFP_DMA32", "GFP_BOGUS", "", 7)
NIDS: tuple[Any, ...] = (-1, -1, 0, 1, 1, 2, True, 1.0, None, "0")
CPUS: tuple[Any, ...] = (0, 0, 1, 1, 3, 64, False)
CTXS: tuple[Any, ...] = ("process", "process", "atomic", "atomic", "softirq", 0)


def started() -> Subject:
    s = Subject()
    ans, _ = s.handle({**hello_of("small"), "seq": 1})
    assert ans["ok"] is True
    return s


def session(seed: int, n: int) -> list[dict[str, Any]]:
    """A random session: allocations with good and bad fields, and frees of what they got."""
    rng = random.Random(seed)
    s = started()
    live: list[tuple[str, Any, int]] = []
    out = []
    for seq in range(2, n + 2):
        x = rng.random()
        if live and x < 0.35:
            op, key, order = live.pop(rng.randrange(len(live)))
            req: dict[str, Any] = ({"op": "free_pages", "pfn": key, "order": order}
                                   if op == "pages" else {"op": "kfree", "addr": key})
        else:
            req = {"op": "alloc_pages" if x < 0.75 else "kmalloc",
                   "gfp": rng.choice(GFPS), "cpu": rng.choice(CPUS), "ctx": rng.choice(CTXS)}
            nid = rng.choice(NIDS)
            if nid is not None:
                req["nid"] = nid
            if req["op"] == "alloc_pages":
                req["order"] = rng.choice((0, 0, 1, 3, 11, -1))
            else:
                req["size"] = rng.choice((0, 8, 100, 4096, 70000))
        ans, _ = s.handle({**req, "seq": seq})
        out.append(ans)
        if ans.get("pfn") is not None:
            live.append(("pages", ans["pfn"], req["order"]))
        elif ans.get("addr") not in (None, "0x10"):
            live.append(("kmalloc", ans["addr"], 0))
    assert s.a is not None
    out.append({"free": s.a.nr_free_pages()})
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_cache_changes_no_answer(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = session(seed, 1500)
    assert sum("error" in a for a in cached) > 100  # bad fields were sent, and refused
    assert sum(a.get("pfn") is not None for a in cached) > 100
    assert sum(a.get("addr") is not None for a in cached) > 50
    monkeypatch.setattr(cli.subject, "_WHERE_CACHE_MAX", 0)
    assert session(seed, 1500) == cached


def test_bool_nid_does_not_hit_the_entry_of_node_1() -> None:
    s = started()
    ok, _ = s.handle({"op": "alloc_pages", "seq": 2, "order": 0, "gfp": "GFP_KERNEL",
                      "nid": 1, "cpu": 0, "ctx": "process"})
    assert isinstance(ok["pfn"], int)
    assert s.a is not None
    free = s.a.nr_free_pages()
    for seq, bad in ((3, {"nid": True}), (4, {"cpu": False}), (5, {"nid": 1.0})):
        ans, _ = s.handle({"op": "alloc_pages", "seq": seq, "order": 0, "gfp": "GFP_KERNEL",
                           "nid": 1, "cpu": 0, "ctx": "process", **bad})
        assert "must be an integer" in ans["error"], ans
    assert s.a.nr_free_pages() == free  # the state is unchanged after each error


def test_bad_fields_are_refused_every_time() -> None:
    s = started()
    for seq in (2, 3):
        ans, _ = s.handle({"op": "alloc_pages", "seq": seq, "order": 0, "gfp": "GFP_KERNEL",
                           "nid": -1, "cpu": 64, "ctx": "process"})
        assert ans == {"seq": seq, "error": "cpu 64 does not exist"}
        ans, _ = s.handle({"op": "kmalloc", "seq": seq, "size": 8, "gfp": "GFP_BOGUS",
                           "nid": -1, "cpu": 0, "ctx": "process"})
        assert "GFP_BOGUS" in ans["error"]


def test_atomic_and_process_entries_stay_apart() -> None:
    """GFP_KERNEL in atomic context is served without __GFP_DIRECT_RECLAIM (never sleeps),
    also after the same mask was cached in process context."""
    s = started()
    base = {"op": "alloc_pages", "order": 0, "gfp": "GFP_KERNEL", "nid": -1, "cpu": 0}
    s.handle({**base, "seq": 2, "ctx": "process"})
    assert s.a is not None
    _, _, _, ctx = s._where({**base, "ctx": "atomic"}, s.a)
    gfp_p, *_ = s._where({**base, "ctx": "process"}, s.a)
    gfp_a, *_ = s._where({**base, "ctx": "atomic"}, s.a)
    assert ctx.atomic and gfp_a == gfp_p & ~cli.subject._DIRECT_RECLAIM != gfp_p
