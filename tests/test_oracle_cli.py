"""``kmemspec oracle`` run the way a user runs it: usage errors are one line with exit status 2,
the reference subject is accepted (exit 0, --json for CI), a broken subject gives exit 1 and a
replay file that ``--replay`` runs again, and Ctrl-C leaves no subject process behind."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from oracle.run import check_subject
from oracle.transport import reap_all
from tests.test_oracle_transport import REFERENCE, ROOT, assert_reaped, faulty

KMEMSPEC = [sys.executable, "-m", "cli.main"]
REFERENCE_CMD = shlex.join(REFERENCE)


def oracle(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KMEMSPEC, "oracle", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


USAGE_ERRORS = [
    ((), "required: --subject"),
    (("--subject", "no-such-subject-command"), "not found"),
    (("--subject", "/nonexistent/bin/subject"), "not an executable file"),
    (("--subject", REFERENCE_CMD, "--budget", "0"), "--budget must be positive"),
    (("--subject", REFERENCE_CMD, "--sequences", "x"), "--sequences must be a number"),
    (("--subject", REFERENCE_CMD, "--mode", "fuzzy"), "invalid choice"),
    (("--subject", REFERENCE_CMD, "--machine", "nowhere"), "unknown machine"),
    (("--subject", REFERENCE_CMD, "--replay", "/nonexistent.jsonl"), "cannot read replay"),
    # refused before the run: a failure found and shrunk must not be lost in a traceback
    (("--subject", REFERENCE_CMD, "--replay-out", "/nonexistent/dir/x.jsonl"),
     "does not exist"),
    (("--subject", REFERENCE_CMD, "--replay-out", "/"), "is a directory"),
]


@pytest.mark.parametrize(("args", "fragment"), USAGE_ERRORS)
def test_usage_errors_are_one_line(args: tuple[str, ...], fragment: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    try:
        rc = main(["oracle", *args])
    except SystemExit as e:  # argparse's own errors
        rc = e.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kmemspec: error: ") and fragment in lines[0], lines[0]


def test_usage_error_as_a_process() -> None:
    p = oracle("--subject", "no-such-subject-command")
    assert p.returncode == 2 and p.stderr.startswith("kmemspec: error: ")
    assert len(p.stderr.splitlines()) == 1 and "Traceback" not in p.stderr


def test_reference_subject_accepted_json() -> None:
    p = oracle("--subject", REFERENCE_CMD, "--sequences", "2", "--steps", "8", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["verdict"] == "accepted" and out["rule"] is None
    assert out["stats"]["sessions"] >= 2 and out["stats"]["requests"] > 0
    assert out["stats"]["rules_checked"]


def test_violation_report_and_replay(tmp_path: Path) -> None:
    """A subject that answers every order >= 1 block one page late: exit 1, the report
    names the rule, request, answer and why; the replay file reproduces it."""
    script = tmp_path / "late.py"
    script.write_text(f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from cli.subject import Subject
s = Subject()
for line in sys.stdin:
    m = json.loads(line)
    a, done = s.handle(m)
    if m["op"] == "alloc_pages" and a.get("pfn") is not None and m["order"] >= 1:
        a["pfn"] += 1
    print(json.dumps(a), flush=True)
    if done:
        break
""")
    cmd = shlex.join([sys.executable, str(script)])
    out = tmp_path / "fail.jsonl"
    p = oracle("--subject", cmd, "--pages-only", "--sequences", "3", "--budget", "6",
               "--replay-out", str(out))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "verdict: violation of rule 'align'" in p.stdout
    for key in ("request:", "answer:", "why:", "minimal sequence", f"replay file: {out}"):
        assert key in p.stdout
    p2 = oracle("--subject", cmd, "--replay", str(out), "--json")
    assert p2.returncode == 1, p2.stderr
    assert json.loads(p2.stdout)["rule"] == "align"
    p3 = oracle("--subject", REFERENCE_CMD, "--replay", str(out))
    assert p3.returncode == 0, p3.stdout + p3.stderr
    assert "verdict: accepted" in p3.stdout


def test_protocol_verdict_exit_2(tmp_path: Path) -> None:
    argv, pids = faulty(tmp_path, "garbage")
    p = oracle("--subject", shlex.join(argv), "--sequences", "1", "--budget", "2",
               "--replay-out", str(tmp_path / "r.jsonl"))
    assert p.returncode == 2, p.stdout + p.stderr
    assert "verdict: protocol (garbage)" in p.stdout
    assert_reaped(pids)


@pytest.mark.parametrize("kw", [{}, {"pages_only": True}, {"strict": True}, {"mode": "exact"}],
                         ids=["spec", "pages-only", "strict", "exact"])
def test_reference_subject_process_is_accepted(kw: dict[str, Any]) -> None:
    r = check_subject(REFERENCE, seed=2, sequences=3, steps=10, budget=20.0, **kw)
    assert r.verdict == "accepted", r.failure
    assert r.stats["sessions"] >= 3
    reap_all()


def test_ctrl_c_leaves_no_subject_behind(tmp_path: Path) -> None:
    """SIGINT to a running ``kmemspec oracle``: it exits 130 and its subjects are gone."""
    argv, pids = faulty(tmp_path, "none")
    p = subprocess.Popen([*KMEMSPEC, "oracle", "--subject", shlex.join(argv), "--budget", "60",
                          "--json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if pids.exists() and len(pids.read_text().split()) >= 3:
                break
            time.sleep(0.1)
        assert pids.exists()
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, (out[-2000:], err[-2000:])
    assert_reaped(pids)
