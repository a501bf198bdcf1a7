"""Hostile and broken subjects, as a third-party allocator's author meets them: every way a
subject can misbehave on the pipe ends in a clear verdict that names the request (never a
traceback, never a hang), with the exit status docs/oracle.md gives (2 for a transport
failure, 1 for a broken rule, the protocol rule's answer checks included), its memory bounded
and every process it started gone. The protocol: ../shared/design/oracle-protocol.md,
"Conventions" and "Start and end"."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

import oracle.transport as transport
from oracle.inprocess import ReferenceSubject
from oracle.judge import Judge
from oracle.machine import RunContext, Session, StopRun
from oracle.machines import hello_of
from oracle.run import check_subject
from oracle.transport import ProcessSubject, ProtocolFailure

ROOT = Path(__file__).resolve().parent.parent
KMEMSPEC = [sys.executable, "-m", "cli.main"]

# The reference subject with one fault at request number ``at`` (hello is 1). Every fault
# is a thing a real subject has done: a debugging print, a crash, a stray child process, ...
HOSTILE = """
import json, os, sys, time
sys.path.insert(0, {root!r})
from cli.subject import Subject
fault, at = sys.argv[1], int(sys.argv[2])
s, n, out = Subject(), 0, sys.stdout
for line in sys.stdin:
    m = json.loads(line)
    n += 1
    a, done = s.handle(m)
    if fault == "unknown-field":
        a["x_allocator_stats"] = {{"free": 1}}
    if fault == "misalign" and m["op"] == "alloc_pages" and a.get("pfn") is not None \
            and m["order"] >= 1:
        sys.stderr.write(f"buddy: split for order {{m['order']}}\\n"); sys.stderr.flush()
        a["pfn"] += 1
    if n == at:
        if fault == "seq-true": a["seq"] = True
        if fault == "seq-float": a["seq"] = float(a["seq"])
        if fault == "seq-string": a["seq"] = str(a["seq"])
        if fault == "array":
            print(json.dumps([a]), flush=True); continue
        if fault == "non-utf8":
            sys.stdout.buffer.write(b'{{"seq": 1, "pfn": "\\xff"}}\\n')
            sys.stdout.flush(); continue
        if fault == "blank": print("", flush=True)
        if fault == "sigsegv": os.kill(os.getpid(), 11)
        if fault == "exit-3": sys.exit(3)
        if fault == "close-stdout":
            os.close(1); time.sleep(30)
        if fault == "trickle":
            out.write(json.dumps(a)[:5]); out.flush(); time.sleep(30)
        if fault == "huge-line":
            try:
                for _ in range(64):
                    out.write("x" * 65536); out.flush()
            except BrokenPipeError:
                os._exit(1)
            time.sleep(30)
        if fault == "stderr-flood":
            for _ in range(64):
                sys.stderr.write("z" * 65535 + "\\n")
            sys.stderr.write("LAST LINE BEFORE THE CRASH\\n"); sys.stderr.flush()
            os._exit(139)
        if fault == "child-holds-stdout":
            if os.fork() == 0:
                time.sleep(30); os._exit(0)
            with open(sys.argv[3], "w") as f:
                f.write("started")
            os._exit(139)
        if fault == "hang": time.sleep(30)
    print(json.dumps(a), flush=True)
    if done:
        if fault == "spew-after-bye":
            while True:
                out.write("{{}}\\n" * 1000); out.flush()
        break
"""


def hostile(tmp_path: Path, fault: str, at: int = 5) -> list[str]:
    script = tmp_path / "hostile.py"
    script.write_text(HOSTILE.format(root=str(ROOT)))
    return [sys.executable, str(script), fault, str(at), str(tmp_path / "child")]


def alloc(seq: int) -> dict[str, Any]:
    return {"op": "alloc_pages", "seq": seq, "order": 0, "gfp": "GFP_KERNEL", "nid": -1,
            "cpu": 0, "ctx": "process"}


def drive(argv: list[str], n: int = 8, timeout: float = 2.0) -> ProtocolFailure:
    """hello, then allocations until the transport fails; return the failure."""
    s = ProcessSubject(argv, timeout=timeout, bye_timeout=timeout)
    try:
        s.request({**hello_of("tiny"), "seq": 1})
        for seq in range(2, n):
            s.request(alloc(seq))
        s.request({"op": "bye", "seq": n})
    except ProtocolFailure as e:
        assert s.closed and s.proc.returncode is not None  # reaped before it is reported
        return e
    finally:
        s.close()
    raise AssertionError("the fault went unnoticed")


# --- the transport: one verdict per fault, naming the request ---------------------------------
@pytest.mark.parametrize(("fault", "kind", "says"), [
    ("seq-true", "out-of-order", "seq true where the answer to seq 5"),
    ("seq-float", "out-of-order", "seq 5.0 where the answer to seq 5"),
    ("seq-string", "out-of-order", 'seq "5" where the answer to seq 5'),
    ("array", "garbage", "seq 5 is not a JSON object"),
    ("non-utf8", "garbage", "seq 5 is not JSON"),
    ("blank", "garbage", "seq 5 is not JSON"),
    ("sigsegv", "crash", "killed by signal 11) without answering seq 5"),
    ("exit-3", "crash", "exit status 3) without answering seq 5"),
    ("close-stdout", "exit", "closed its standard output without answering seq 5"),
    ("trickle", "hang", "no answer to seq 5 (alloc_pages) within 0.5 s (only 5 bytes"),
    ("hang", "hang", "no answer to seq 5 (alloc_pages) within 0.5 s"),
])
def test_transport_fault_names_the_request(tmp_path: Path, fault: str, kind: str,
                                           says: str) -> None:
    e = drive(hostile(tmp_path, fault), timeout=0.5)
    assert e.kind == kind and says in e.message, (e.kind, e.message)
    assert e.seq == 5 and e.request is not None and e.request["op"] == "alloc_pages"


def test_huge_line_is_garbage_and_its_buffer_is_released(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A line without end is cut at MAX_LINE_BYTES; the failure keeps 500 bytes of it, and
    the subject object (which a shrinking run keeps alive through the failure's traceback)
    no longer holds the buffer: with 64 MiB lines, a run grew to 0.9 GB before."""
    monkeypatch.setattr(transport, "MAX_LINE_BYTES", 1 << 20)
    s = ProcessSubject(hostile(tmp_path, "huge-line"), timeout=5.0)
    s.request({**hello_of("tiny"), "seq": 1})
    for seq in range(2, 5):
        s.request(alloc(seq))
    with pytest.raises(ProtocolFailure) as e:
        s.request(alloc(5))
    assert e.value.kind == "garbage" and "seq 5 (alloc_pages): more than 1048576 bytes" in \
        e.value.message
    assert e.value.line is not None and len(e.value.line) <= 500
    assert len(s._buf) == 0


def test_child_holding_stdout_does_not_hang_the_oracle(tmp_path: Path) -> None:
    """The subject crashes, a process it forked keeps its stdout open: the verdict is the
    crash within the answer timeout (the read loop used to spin forever), and the forked
    process is killed with the subject's process group."""
    t0 = time.monotonic()
    e = drive(hostile(tmp_path, "child-holds-stdout"), timeout=1.0)
    assert time.monotonic() - t0 < 10
    assert e.kind == "crash" and "without answering seq 5" in e.message
    assert (tmp_path / "child").read_text() == "started"
    out = subprocess.run(["pgrep", "-f", str(tmp_path / "hostile.py")], capture_output=True,
                         text=True)
    assert out.stdout.strip() == "", "a process the subject started outlived it"


def test_endless_output_after_bye_fails_at_once(tmp_path: Path) -> None:
    t0 = time.monotonic()
    e = drive(hostile(tmp_path, "spew-after-bye", at=0), n=4, timeout=5.0)
    assert e.kind == "twice" and "after the answer to bye" in e.message
    assert time.monotonic() - t0 < 4  # not the 5 s bye timeout


def test_stderr_flood_keeps_a_bounded_tail(tmp_path: Path) -> None:
    e = drive(hostile(tmp_path, "stderr-flood"))
    assert e.kind == "crash"
    assert "LAST LINE BEFORE THE CRASH" in e.stderr_tail
    assert len(e.stderr_tail.encode()) <= transport.STDERR_TAIL_BYTES


def test_pipelined_batch_failure_names_the_failing_request(tmp_path: Path) -> None:
    """A hang inside a pipelined burst of 20 allocations: the report's request is the one
    without an answer (seq 5), not the last of the burst, and the log (the replay file) ends
    there."""
    ctx = RunContext(hello_of("tiny"))
    session = Session(ProcessSubject(hostile(tmp_path, "hang"), timeout=0.5), ctx)
    session.start()
    req = {k: v for k, v in alloc(0).items() if k != "seq"}
    with pytest.raises(StopRun):  # a hang ends the whole run (it is not shrunk)
        session.run([req] * 20)
    f = ctx.last_failure
    assert f is not None and f.protocol_kind == "hang"
    assert f.request is not None and f.request["seq"] == 5
    assert [r["seq"] for r in f.log] == [1, 2, 3, 4, 5]


def test_unknown_fields_in_answers_are_ignored(tmp_path: Path) -> None:
    """The protocol names the fields an answer must have; a subject may add its own (a
    version, statistics): docs/oracle.md's choice is to ignore them."""
    r = check_subject(hostile(tmp_path, "unknown-field", at=0), seed=0, sequences=2,
                      steps=6, budget=8.0, pages_only=True)
    assert r.verdict == "accepted", r.as_dict()
    assert r.stats["requests"] > 50


# --- hello: version and features ----------------------------------------------------------------
class HelloAnswer(ReferenceSubject):
    """The reference with its hello answer replaced by ``patch`` (None values remove keys)."""

    patch: ClassVar[dict[str, Any]] = {}

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        ans = super().request(msg)
        if msg["op"] == "hello":
            ans = {k: v for k, v in {**ans, **self.patch}.items() if v is not None}
        return ans


def hello_subject(**patch: Any) -> type[HelloAnswer]:
    return type("Patched", (HelloAnswer,), {"patch": patch})


@pytest.mark.parametrize(("patch", "says"), [
    ({"protocol": 2}, "answers hello with protocol 2; the oracle speaks version 1"),
    ({"protocol": "1"}, "answers hello with protocol '1'"),
    ({"ok": None, "error": "unsupported protocol version 1"},
     "hello answered with an error: unsupported protocol version 1"),
    ({"features": []}, "lists no feature of protocol version 1"),
    ({"features": ["page", "teleport"]}, "lists no feature of protocol version 1"),
])
def test_hello_answers_that_cannot_be_judged(patch: dict[str, Any], says: str) -> None:
    r = check_subject(hello_subject(**patch), seed=0, sequences=2, steps=4, budget=4.0,
                      shrink_budget=0.5)
    assert r.verdict == "violation" and r.failure is not None, r.as_dict()
    assert r.failure.rule == "protocol" and says in r.failure.message, r.failure.message
    assert [q["op"] for q in r.minimal] == ["hello"] and r.exit_status == 1


def test_hello_answer_with_version_1_or_without_name_is_fine() -> None:
    for extra in ({"protocol": 1, "name": "x"}, {}):
        j = Judge(hello_of("tiny"))
        assert j.check_hello({"seq": 1, "ok": True, "features": ["pages"], **extra}) == []


def test_subject_without_pages_is_judged_on_what_it_lists() -> None:
    """A kmalloc-only subject: the default run skips the pages-only sessions (it used to end
    in a Hypothesis traceback: no rule could run); --pages-only is a usage error."""
    r = check_subject(hello_subject(features=["kmalloc"]), seed=0, sequences=3, steps=6,
                      budget=6.0)
    assert r.verdict == "accepted", r.as_dict()
    assert set(r.stats["per_kind"]) <= {"kmalloc", "kfree"} and r.stats["requests"] > 20
    assert any("does not list pages" in n for n in r.notes)
    from spec.errors import KmemError

    with pytest.raises(KmemError, match="does not list the pages feature"):
        check_subject(hello_subject(features=["kmalloc"]), pages_only=True, budget=4.0)


def test_oracle_rejects_a_hello_of_another_version(tmp_path: Path) -> None:
    """A replay file or machine dict whose hello says protocol 2 is refused before a subject
    is started (the oracle only speaks version 1)."""
    from spec.errors import MachineError

    with pytest.raises(MachineError, match="protocol version 1"):
        hello_of({**hello_of("tiny"), "protocol": 2})


# --- exit statuses, as a user runs it ---------------------------------------------------------
def oracle(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KMEMSPEC, "oracle", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_exit_status_of_the_cli(tmp_path: Path) -> None:
    """A crash is a `protocol` verdict: exit status 2, one JSON object, no traceback."""
    p = oracle("--subject", shlex.join(hostile(tmp_path, "sigsegv")), "--budget", "2",
               "--sequences", "2", "--replay-out", str(tmp_path / "r.jsonl"), "--json")
    assert p.returncode == 2, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert out["verdict"] == "protocol" and out["protocol_kind"] == "crash"
    assert "signal 11" in out["message"] and "Traceback" not in p.stderr


def test_stderr_is_kept_for_a_rule_violation_too(tmp_path: Path) -> None:
    """"Anything the subject prints to standard error is kept for the report": the report of
    a broken rule shows the subject's own log, as a transport failure's does."""
    r = check_subject(hostile(tmp_path, "misalign", at=0), seed=0, sequences=3, steps=6,
                      budget=8.0, pages_only=True, shrink_budget=1.0)
    assert r.failure is not None and r.failure.rule == "align", r.as_dict()
    assert "buddy: split for order" in r.failure.stderr_tail


class ReturnsNone(ReferenceSubject):
    """An in-process subject with a bug of its own: its fifth answer is None."""

    n = 0

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        ans = super().request(msg)
        return None if self.n == 5 else ans  # type: ignore[return-value]


def test_in_process_answer_that_is_not_a_dict() -> None:
    r = check_subject(ReturnsNone, pages_only=True, sequences=2, steps=4, budget=4.0,
                      shrink_budget=0.5)
    assert r.verdict == "protocol" and r.failure is not None, r.as_dict()
    assert r.failure.protocol_kind == "garbage" and "is not a JSON object" in r.failure.message
