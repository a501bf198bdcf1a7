"""Requirements of the subject protocol, version 1 (../shared/design/oracle-protocol.md), that no
other test pinned down: each test names the line of the protocol it checks and fails if the
oracle (or the reference subject) stopped keeping it. The table of every requirement, where it
is implemented and which test covers it, is in docs/oracle.md ("Conformance")."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

import oracle.transport as transport
from cli.subject import Subject
from oracle.inprocess import ReferenceSubject
from oracle.judge import INVALID, Judge
from oracle.machines import hello_of
from oracle.run import check_subject, replay
from oracle.transport import ProcessSubject, ProcessSubjectFactory, ProtocolFailure
from spec.gfp import __GFP_DIRECT_RECLAIM, __GFP_DMA32, GFP_NAMES, GFP_ZONEMASK, parse_gfp

PO = 0xFFFF888000000000
ALLOC = {"op": "alloc_pages", "order": 0, "gfp": "GFP_KERNEL", "nid": -1, "cpu": 0,
         "ctx": "process"}


def judge(features: tuple[str, ...] = ("pages", "kmalloc", "slab", "vmalloc"),
          **kw: Any) -> Judge:
    j = Judge(hello_of("small"), **kw)
    assert j.check_hello({"seq": 1, "ok": True, "features": list(features)}) == []
    return j


def rules(j: Judge, seq: int, req: dict[str, Any], **answer: Any) -> list[str]:
    return [v.rule for v in j.observe({**req, "seq": seq}, {"seq": seq, **answer})]


# --- Conventions ------------------------------------------------------------------------------
def test_answers_are_lower_case_hex_with_0x() -> None:
    """"Virtual addresses are strings of lower-case hex with a 0x prefix"."""
    j = judge()
    km = {"op": "kmalloc", "size": 8, "gfp": "GFP_KERNEL", "nid": -1, "cpu": 0,
          "ctx": "process"}
    for bad in (f"{PO + 4096:#X}", "0XFFFF888000001000", f"0x{PO + 8192:_x}",
                f"{PO + 12288:#x} ", f"{PO + 16384:x}"):
        assert rules(j, 2, km, addr=bad) == ["protocol"], bad
    assert rules(j, 2, km, addr=f"{PO + 20480:#x}") == []


def test_slept_only_on_allocation_answers() -> None:
    """"A successful or failed allocation answer may carry "slept": true ... Other answers,
    errors included, carry no slept" (a "slept": false says nothing and is accepted)."""
    j = judge(strict=True)
    assert rules(j, 2, ALLOC, pfn=None, slept=True) == []  # a failed call may have slept
    assert rules(j, 3, ALLOC, pfn=1024) == []
    assert rules(j, 4, {"op": "free_pages", "pfn": 1024, "order": 0}, ok=True,
                 slept=True) == ["protocol"]
    assert rules(j, 5, {"op": "free_pages", "pfn": 1024, "order": 0}, ok=True,
                 slept=False) == []
    assert rules(j, 6, {"op": "kfree", "addr": "0x0"}, ok=True, slept=True) == ["protocol"]


def test_unknown_answer_fields_are_ignored() -> None:
    """The protocol names what an answer must have and is silent on more: docs/oracle.md's
    choice is to ignore other fields (a subject's version, statistics)."""
    j = judge()
    assert rules(j, 2, ALLOC, pfn=1024, x_stats={"free": 3}) == []
    assert rules(j, 3, {"op": "free_pages", "pfn": 1024, "order": 0}, ok=True,
                 note="merged") == []
    assert list(j.live_blocks()) == []


def test_last_line_without_newline_is_garbage(tmp_path: Path) -> None:
    """"Every answer is one JSON object on one line, ending in a newline"."""
    script = tmp_path / "s.py"
    script.write_text("import sys, json\nm = json.loads(sys.stdin.readline())\n"
                      "sys.stdout.write(json.dumps({'seq': m['seq'], 'ok': True, "
                      "'features': ['pages']}))\nsys.stdout.flush()\n")
    with pytest.raises(ProtocolFailure) as e:
        ProcessSubject([sys.executable, str(script)], timeout=5.0).request(
            {**hello_of("tiny"), "seq": 1})
    assert e.value.kind == "garbage" and "has no newline" in e.value.message


def test_time_limits_are_5_seconds_unless_told() -> None:
    """"Time limits: 5 seconds per answer and 5 seconds to exit after bye, unless the oracle
    is told otherwise" (--timeout sets both)."""
    f = ProcessSubjectFactory(["true"], spare=False)
    assert f.timeout == 5.0
    assert transport.DEFAULT_TIMEOUT == 5.0 and transport.BYE_TIMEOUT == 5.0
    s = ProcessSubjectFactory([sys.executable, "-c", "pass"], timeout=1.5, spare=False)()
    try:
        assert s.timeout == 1.5 and s.bye_timeout == 1.5
    finally:
        s.close()
    import inspect

    assert inspect.signature(check_subject).parameters["timeout"].default == 5.0


def test_reference_accepts_every_gfp_name_and_ignores_hex_tokens() -> None:
    """"A subject must accept every name of that version, and ignore 0x... tokens"."""
    s = Subject()
    ans, _ = s.handle({**hello_of("small"), "seq": 1})
    assert ans["ok"] is True
    seq = 1
    for name in sorted(GFP_NAMES):  # each alone with GFP_KERNEL is a valid mask
        seq += 1
        ans, _ = s.handle({**ALLOC, "seq": seq, "gfp": f"GFP_KERNEL|{name}|0x4000000"})
        assert "error" not in ans, (name, ans)
    for text in ("none", "0x200", "GFP_ATOMIC|0x200|0x4000000"):
        seq += 1
        ans, _ = s.handle({**ALLOC, "seq": seq, "gfp": text})
        assert "error" not in ans, (text, ans)


# --- Start and end ----------------------------------------------------------------------------
class Bye(ReferenceSubject):
    """The reference whose answer to bye is replaced."""

    answer: dict[str, Any] | None = None

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        ans = super().request(msg)
        if msg["op"] == "bye" and self.answer is not None:
            return {"seq": msg["seq"], **self.answer}
        return ans


@pytest.mark.parametrize("answer", [{"ok": False}, {"error": "busy"}, {}])
def test_bye_must_be_answered_ok(answer: dict[str, Any]) -> None:
    """"The last request is bye; the subject answers {"seq": N, "ok": true} and exits 0"."""
    cls = type("BadBye", (Bye,), {"answer": answer})
    r = check_subject(cls, pages_only=True, sequences=2, steps=3, budget=4.0,
                      shrink_budget=0.5)
    assert r.verdict == "protocol" and r.failure is not None, r.as_dict()
    assert r.failure.protocol_kind == "bye" and r.exit_status == 2
    assert r.minimal[-1]["op"] == "bye"


def test_exit_status_after_bye_must_be_0(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("import sys, json\nfor line in sys.stdin:\n    m = json.loads(line)\n"
                      "    print(json.dumps({'seq': m['seq'], 'ok': True, 'features': "
                      "['pages']}), flush=True)\n    if m['op'] == 'bye':\n"
                      "        sys.exit(4)\n")
    s = ProcessSubject([sys.executable, str(script)], timeout=5.0)
    s.request({**hello_of("tiny"), "seq": 1})
    with pytest.raises(ProtocolFailure) as e:
        s.request({"op": "bye", "seq": 2})
    assert e.value.kind == "exit" and "status 4 after bye" in e.value.message


class Recorder(ReferenceSubject):
    """The reference (its slab allocator booted at hello, so that slab requests succeed
    after pages ran out), recording every request the oracle sends."""

    sent: ClassVar[list[dict[str, Any]]] = []
    features: ClassVar[list[str] | None] = None
    eager: ClassVar[bool] = True  # False for runs with pages-only sessions (liveness)

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        type(self).sent.append(dict(msg))
        ans = super().request(msg)
        if msg["op"] == "hello":
            if self.eager:
                self._s.handle({"op": "kfree", "seq": 1, "addr": "0x0"})
            if self.features is not None:
                ans = {**ans, "features": self.features}
        return ans


FIELDS = {
    "hello": None, "bye": set(),
    "alloc_pages": {"order", "gfp", "nid", "cpu", "ctx"}, "free_pages": {"pfn", "order"},
    "kmalloc": {"size", "gfp", "nid", "cpu", "ctx"}, "kfree": {"addr"},
    "kmem_cache_create": {"name", "size", "align"},
    "kmem_cache_alloc": {"name", "gfp", "nid", "cpu", "ctx"},
    "kmem_cache_free": {"name", "addr"}, "kmem_cache_destroy": {"name"},
    "vmalloc": {"size", "gfp", "cpu", "ctx"}, "vfree": {"addr"},
}


def sessions(sent: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    for r in sent:
        if r["op"] == "hello":
            out.append([])
        out[-1].append(r)
    return out


@pytest.mark.parametrize("strict", [False, True])
def test_what_the_oracle_sends(strict: bool) -> None:
    """Every session: hello first with seq 1, then seq 2, 3, ... without a gap, bye last;
    every request has exactly its fields of the protocol's table, non-negative sizes and
    orders, lower-case hex addresses, nid -1 or a node, a context of the two; "The oracle
    sends invalid requests only in strict mode"."""
    sent: list[dict[str, Any]] = []
    cls = type("Rec", (Recorder,), {"sent": sent})
    r = check_subject(cls, strict=strict, pages_only=False, seed=3, sequences=6, steps=40,
                      budget=20.0)
    assert r.verdict == "accepted", r.as_dict()
    invalid = sum(c["invalid"] for c in r.stats["per_kind"].values())
    assert (invalid > 0) == strict, r.stats["per_kind"]
    seen = set()
    for sess in sessions(sent):
        assert sess[0]["op"] == "hello" and sess[0]["protocol"] == 1
        assert sess[-1]["op"] == "bye"
        assert [q["seq"] for q in sess] == list(range(1, len(sess) + 1))
        for q in sess[1:-1]:
            seen.add(q["op"])
            want = FIELDS[q["op"]]
            assert set(q) - {"op", "seq"} == want, q
            for k in ("size", "order", "pfn", "align"):
                assert k not in q or (type(q[k]) is int and q[k] >= 0), q
            if "addr" in q:
                assert q["addr"] == hex(int(q["addr"], 16)), q
            if "nid" in q:
                assert q["nid"] == -1 or q["nid"] in (0, 1), q
            if "ctx" in q:
                assert q["ctx"] in ("process", "atomic"), q
            gfp = parse_gfp(q["gfp"]) if "gfp" in q else 0
            if q["op"] == "vmalloc":  # "gfp (always allows direct reclaim)"
                assert gfp & __GFP_DIRECT_RECLAIM, q
            if q["op"] == "kmalloc":  # "the oracle sends no kmalloc with __GFP_DMA32"
                assert not gfp & __GFP_DMA32, q
            if q["op"] == "kmem_cache_alloc":  # "sends no zone bits to kmem_cache_alloc"
                assert not gfp & GFP_ZONEMASK, q
    assert seen == set(FIELDS) - {"hello", "bye"}, seen


def test_only_listed_features_are_sent() -> None:
    """"The oracle sends only requests of the listed features"."""
    sent: list[dict[str, Any]] = []
    cls = type("Rec", (Recorder,), {"sent": sent, "features": ["pages", "vmalloc"],
                                    "eager": False})
    r = check_subject(cls, seed=1, sequences=4, steps=15, budget=10.0)
    assert r.verdict == "accepted", r.as_dict()
    ops = {q["op"] for q in sent}
    assert ops == {"hello", "bye", "alloc_pages", "free_pages", "vmalloc", "vfree"}, ops


# --- Requests -------------------------------------------------------------------------------------
def test_double_free_is_invalid_and_its_error_changes_nothing() -> None:
    j = judge(("pages",), strict=True)
    assert rules(j, 2, ALLOC, pfn=2048) == []
    free = {"op": "free_pages", "pfn": 2048, "order": 0}
    assert rules(j, 3, free, ok=True) == []
    kind, why = j.classify({**free, "seq": 4})
    assert kind == INVALID and "no live allocation" in why
    assert rules(j, 4, free, error="double free") == []
    assert rules(j, 5, free, ok=True) == ["free"]
    assert list(j.live_blocks()) == []


def test_kmem_cache_create_error_must_be_enomem() -> None:
    """A valid kmem_cache_create has no null answer; the lead's decision (docs/protocol.md):
    its failure for want of memory is an error that says ENOMEM. Any other error on a valid
    create is a protocol violation (a subject refusing every cache would escape the slab
    rules)."""
    j = judge(strict=True)
    cc = {"op": "kmem_cache_create", "name": "c1", "size": 64, "align": 0}
    assert rules(j, 2, cc, error="ENOMEM: out of memory") == []
    assert "c1" not in j.caches()
    assert rules(j, 3, cc, error="not implemented") == ["protocol"]
    assert rules(j, 4, cc, ok=True) == []
    assert "c1" in j.caches()


@pytest.mark.parametrize("strict", [False, True])
def test_replay_skips_requests_of_features_the_subject_lacks(strict: bool,
                                                            tmp_path: Path) -> None:
    """A replay file made against a subject with kmalloc, replayed (strict or not) against
    one that lists only pages: the kmalloc is not sent (it used to raise RequestError out of
    a strict replay), the rest is judged."""
    import json

    path = tmp_path / "r.jsonl"
    reqs = [{**hello_of("small"), "seq": 1},
            {"op": "kmalloc", "seq": 2, "size": 8, "gfp": "GFP_KERNEL", "nid": -1, "cpu": 0,
             "ctx": "process"},
            {**ALLOC, "seq": 3}, {"op": "bye", "seq": 4}]
    path.write_text("\n".join(json.dumps(r) for r in [
        {"kmemspec_oracle_replay": 1, "rule": "free", "strict": strict}, *reqs]) + "\n")
    sent: list[dict[str, Any]] = []
    cls = type("PagesOnly", (Recorder,), {"sent": sent, "features": ["pages"],
                                          "eager": False})
    r = replay(path, cls)
    assert r.verdict == "accepted" and r.stats["skipped_invalid"] == 1, r.as_dict()
    assert [q["op"] for q in sent] == ["hello", "alloc_pages", "bye"]


def test_every_fourth_liveness_session_ends_with_a_drain() -> None:
    """The drain (docs/oracle.md, "How sequences are generated"): the fourth pages-only session
    frees every live block, then sweeps GFP_KERNEL, GFP_KERNEL|GFP_DMA32, GFP_KERNEL|GFP_DMA
    from max_order down to order 0, each until null; the reference passes it, and the other
    sessions end without one."""
    sent: list[dict[str, Any]] = []
    cls = type("Rec", (Recorder,), {"sent": sent, "eager": False})
    r = check_subject(cls, pages_only=True, seed=0, sequences=4, steps=10, budget=20.0)
    assert r.verdict == "accepted", r.as_dict()
    ss = sessions(sent)
    assert len(ss) >= 4

    def tail(sess: list[dict[str, Any]]) -> dict[str, Any]:
        return sess[-2]  # the last request before bye

    assert (tail(ss[3])["gfp"], tail(ss[3])["order"], tail(ss[3])["nid"]) == (
        "GFP_KERNEL|GFP_DMA", 0, -1)
    sweep = [q for q in ss[3] if q["op"] == "alloc_pages" and q["nid"] == -1
             and q["gfp"].startswith("GFP_KERNEL")]
    assert {q["order"] for q in sweep} == set(range(9))
    assert not any(tail(s).get("gfp") == "GFP_KERNEL|GFP_DMA" and tail(s).get("order") == 0
                   for s in ss[:3])



def test_report_counts_agree_in_number() -> None:
    """A one-request minimal sequence is '1 request', not '1 requests'."""
    import io

    from rich.console import Console

    from oracle.machine import Failure
    from oracle.report import render
    from oracle.run import OracleResult

    req = {"op": "alloc_pages", "seq": 1, "nid": 0, "gfp": "GFP_KERNEL", "order": 11,
           "cpu": 0, "ctx": "process"}
    failure = Failure("violation", "order", "order above max_order served", req,
                      {"seq": 1, "pfn": "0x0"}, "", [req])
    for minimal, want in (([req], "minimal sequence (1 request):"),
                          ([req, req], "minimal sequence (2 requests):")):
        buf = io.StringIO()
        render(OracleResult("violation", None, minimal, None, {"sessions": 1, "requests": 1},
                            failure), Console(file=buf, width=200))
        assert want in buf.getvalue(), buf.getvalue()
