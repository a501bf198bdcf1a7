"""Bad input to ``kmemspec`` as a new user gives it: one ``kmemspec: error:`` line on stderr,
exit status 2, never a traceback (cli/main.py, cli/check_trace.py). Each case here was a
traceback, a multi-line usage dump or a silent exit 0 before it was fixed."""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest

from cli.main import main
from tests.conftest import one_error_line
from tracecheck import emit

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "tests" / "fixtures" / "linux-6.1" / "2node-4cpu-2g" / "trace.xz"


@pytest.mark.parametrize("argv", [
    [], ["bogus"], ["show"], ["run"], ["check-trace"],
    ["show", "buddyinfo", "--cpus", "x"],
    ["check-trace", str(CAPTURE), "--page-offset", "zz"],
])
def test_argparse_errors_are_one_line(argv: list[str],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert "--help" in one_error_line(argv, capsys)


@pytest.mark.parametrize("cmd", [["show", "buddyinfo"], ["run", "scenarios/basic.scn"]])
def test_a_machine_beyond_64_tib_is_refused(cmd: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """999999tib used to die in a MemoryError while booting (one byte per pageblock)."""
    line = one_error_line([*cmd, "--machine", "999999tib"], capsys)
    assert "64 TiB" in line


def test_64_tib_still_boots_but_65_does_not(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "buddyinfo", "--machine", "64tib"]) == 0
    capsys.readouterr()
    assert "pfn 0x410000000" in one_error_line(["show", "buddyinfo", "--machine", "65tib"],
                                               capsys)


@pytest.mark.parametrize("content", [b"", b"root:x:0:0:root:/root:/bin/bash\n",
                                     bytes(range(256)) * 4])
def test_check_trace_without_a_single_event_is_an_error(
        content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty file, /etc/passwd or a binary used to be 'no violation', exit 0."""
    p = tmp_path / "not-a-trace"
    p.write_bytes(content)
    assert "no kmem or vmalloc trace event" in one_error_line(["check-trace", str(p)], capsys)


def test_check_trace_truncated_xz_is_exit_2_after_its_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A cut .xz: the lines before the cut are checked and reported, but the exit status is
    2, not 0, since most of the trace was never seen."""
    p = tmp_path / "cut.xz"
    p.write_bytes(CAPTURE.read_bytes()[:5000])
    assert main(["check-trace", str(p)]) == 2
    out, err = capsys.readouterr()
    assert "no violation" in out  # the report of what was read
    assert err.startswith("kmemspec: error: ") and len(err.splitlines()) == 1
    assert "ends early" in err and "Traceback" not in err


def test_check_trace_truncated_xz_with_a_violation_is_exit_1(tmp_path: Path) -> None:
    """A violation seen before the cut is certain: exit 1 still wins over the cut."""
    lines = [emit.prefix("a", 1, 0, ".....", 10) + emit.mm_page_alloc(0x100, 1, 0xCC0) + "\n",
             emit.prefix("a", 1, 0, ".....", 20) + emit.mm_page_alloc(0x100, 0, 0xCC0) + "\n"]
    data = lzma.compress("".join(lines * 2000).encode())
    p = tmp_path / "bad-cut.xz"
    p.write_bytes(data[: len(data) // 2])
    assert main(["check-trace", "--json", str(p)]) == 1


def test_check_trace_corrupt_stream_without_events_names_the_corruption(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A zstd magic then garbage: the error says the stream is corrupt, not 'no event'."""
    p = tmp_path / "bad.zst"
    p.write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage" * 10)
    assert "cannot be decoded" in one_error_line(["check-trace", str(p)], capsys)


def test_run_slabinfo_that_is_not_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    """--slabinfo is read only when a scenario boots the slab allocator: a directory used to
    be ignored silently by scenarios without slab operations."""
    line = one_error_line(["run", "scenarios/basic.scn", "--slabinfo", "/"], capsys)
    assert "not a file" in line


def test_oracle_replay_of_a_binary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A binary given to --replay was a UnicodeDecodeError traceback (oracle/run.py)."""
    p = tmp_path / "replay.jsonl"
    p.write_bytes(bytes(range(128, 256)))
    line = one_error_line(["oracle", "--subject", "true", "--replay", str(p)], capsys)
    assert "not UTF-8 text" in line


def test_check_trace_of_other_events_only_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A trace where events/kmem was not enabled (only rss_stat here) checks nothing."""
    lines = [ln for ln in lzma.decompress(CAPTURE.read_bytes()).decode().splitlines(True)
             if ln.startswith("#") or "rss_stat:" in ln]
    assert any("rss_stat:" in ln for ln in lines)
    p = tmp_path / "rss.trace"
    p.write_text("".join(lines))
    assert "no kmem or vmalloc trace event" in one_error_line(["check-trace", str(p)], capsys)


def test_check_trace_of_a_directory_names_it_once(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Was '/dir: /dir: is a directory' (tracecheck/source.py re-wrapped its own error)."""
    line = one_error_line(["check-trace", str(tmp_path)], capsys)
    assert line == f"kmemspec: error: {tmp_path}: is a directory"
