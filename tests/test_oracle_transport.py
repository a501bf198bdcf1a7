"""The subject as a process (oracle/transport.py): the reference subject through its pipes is
accepted, and every way of breaking the transport rules (crash, early exit, hang, garbage on
standard output, an answer twice or out of order, not exiting after bye) is a ``protocol``
verdict with the subject's stderr tail, and no subject process is left behind."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from oracle.machines import hello_of
from oracle.run import check_subject
from oracle.transport import ProcessSubject, ProtocolFailure

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = [sys.executable, "-m", "cli.main", "subject"]

# A correct subject (the reference, in-process) with one transport fault at the 5th request;
# it appends its pid to the file named by its first argument.
FAULTY = """
import json, os, sys, time
sys.path.insert(0, {root!r})
with open(sys.argv[1], "a") as f:
    f.write(f"{{os.getpid()}}\\n")
from cli.subject import Subject
s, n, fault = Subject(), 0, sys.argv[2]
for line in sys.stdin:
    m = json.loads(line)
    n += 1
    a, done = s.handle(m)
    if n == 5 and fault == "crash":
        sys.stderr.write("subject: segfault at 0x0 in buddy_split\\n"); sys.stderr.flush()
        os._exit(139)
    if n == 5 and fault == "exit":
        sys.exit(0)
    if n == 5 and fault == "hang":
        time.sleep(60)
    if n == 5 and fault == "garbage":
        print("debug: splitting order 3", flush=True)
    if n == 5 and fault == "out-of-order":
        a["seq"] += 1
    print(json.dumps(a), flush=True)
    if n == 5 and fault == "twice":
        print(json.dumps(a), flush=True)
    if done:
        if fault == "no-exit":
            time.sleep(60)
        break
"""


def faulty(tmp_path: Path, fault: str) -> tuple[list[str], Path]:
    pids = tmp_path / "pids"
    script = tmp_path / "subject.py"
    script.write_text(FAULTY.format(root=str(ROOT)))
    return [sys.executable, str(script), str(pids), fault], pids


def assert_reaped(pids: Path) -> None:
    started = [int(x) for x in pids.read_text().split()]
    assert started
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize(("fault", "kind"), [
    ("crash", "crash"), ("exit", "exit"), ("hang", "hang"), ("garbage", "garbage"),
    ("twice", "twice"), ("out-of-order", "out-of-order")])
def test_transport_faults_are_protocol_verdicts(tmp_path: Path, fault: str, kind: str) -> None:
    argv, pids = faulty(tmp_path, fault)
    t0 = time.monotonic()
    r = check_subject(argv, seed=0, sequences=1, budget=30.0, shrink_budget=1.0, timeout=2.0,
                      replay_path=str(tmp_path / "r.jsonl"))
    assert time.monotonic() - t0 < 15
    assert r.verdict == "protocol" and r.exit_status == 2
    assert r.failure is not None and r.failure.protocol_kind == kind, r.failure
    if fault == "crash":
        assert "segfault at 0x0" in r.failure.stderr_tail
    assert_reaped(pids)


def test_no_exit_after_bye_is_a_hang(tmp_path: Path) -> None:
    argv, pids = faulty(tmp_path, "no-exit")
    s = ProcessSubject(argv, timeout=2.0, bye_timeout=0.5)
    assert s.request({**hello_of("tiny"), "seq": 1}).get("ok") is True
    with pytest.raises(ProtocolFailure) as e:
        s.request({"op": "bye", "seq": 2})
    assert e.value.kind == "hang" and "bye" in e.value.message
    assert_reaped(pids)


def test_missing_command_is_a_protocol_failure() -> None:
    with pytest.raises(ProtocolFailure, match="cannot start subject"):
        ProcessSubject(["/nonexistent/subject"])
    r = check_subject(["/nonexistent/subject"], budget=5.0)
    assert r.verdict == "protocol" and r.failure is not None
    assert r.failure.protocol_kind == "crash" and "cannot start" in r.failure.message


def test_pipelined_requests_and_clean_bye() -> None:
    with ProcessSubject(REFERENCE) as s:
        assert s.request({**hello_of("tiny"), "seq": 1})["ok"] is True
        reqs = [{"op": "alloc_pages", "seq": i, "order": 0, "gfp": "GFP_KERNEL", "nid": -1,
                 "cpu": 0, "ctx": "process"} for i in range(2, 40)]
        answers = s.request_many(reqs)
        assert [a["seq"] for a in answers] == list(range(2, 40))
        pfns = [a["pfn"] for a in answers if a["pfn"] is not None]
        assert len(set(pfns)) == len(pfns) > 20
        assert s.request({"op": "bye", "seq": 40}) == {"seq": 40, "ok": True}
        assert s.proc.returncode == 0
