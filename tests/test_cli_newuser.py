"""What a new user typed and got wrong, found by following README.md and the docs from a fresh
clone (session 3). Each test failed before its fix: a traceback, an exit status that lied, a
report that wrapped in a pipe, a value accepted that can only be a mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import NR_CPUS, main
from cli.scenario import parse_scenario
from spec.errors import ScenarioError
from tests.conftest import one_error_line

ROOT = Path(__file__).resolve().parent.parent
CAPTURE61 = ROOT / "tests" / "fixtures" / "linux-6.1" / "2node-4cpu-2g"
SMALL_TRACE = ROOT / "tests" / "fixtures" / "linux-6.12" / "1node-2cpu-1g" / "trace.xz"


# --- machines and CPUs ---------------------------------------------------------------------------
@pytest.mark.parametrize("cmd", [["show", "buddyinfo"], ["oracle", "--subject", "true"]])
def test_a_binary_machine_file_is_one_line(cmd: list[str], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Was a UnicodeDecodeError traceback (impl/machine.py MachineConfig.from_file)."""
    p = tmp_path / "machine.json"
    p.write_bytes(b"\xff\xfe\x00binary")
    assert "not UTF-8 text" in one_error_line([*cmd, "--machine", str(p)], capsys)


def test_a_machine_file_that_is_not_an_object_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was 'bad machine description: TypeError: list indices must be integers ...'."""
    p = tmp_path / "machine.json"
    p.write_text("[1, 2]\n")
    line = one_error_line(["show", "buddyinfo", "--machine", str(p)], capsys)
    assert "a JSON object" in line and "TypeError" not in line


def test_a_machine_file_without_nodes_names_the_missing_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was 'bad machine description: KeyError: 'nodes''."""
    p = tmp_path / "machine.json"
    p.write_text('{"op": "hello"}\n')
    line = one_error_line(["show", "buddyinfo", "--machine", str(p)], capsys)
    assert "missing field 'nodes'" in line and "KeyError" not in line


@pytest.mark.parametrize(("nodes", "msg"), [
    ('[{"cpus": [0], "zones": []}]', "no node has a zone"),  # was a ValueError traceback
    ('[{"cpus": [-1], "zones": [{"zone": "Normal", "start_pfn": 0, "pages": 4096}]}]',
     "cpu -1 is negative"),  # was accepted
])
def test_machine_files_the_kernel_could_not_boot(nodes: str, msg: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "machine.json"
    p.write_text(f'{{"nodes": {nodes}, "distance": [[10]]}}\n')
    assert msg in one_error_line(["show", "buddyinfo", "--machine", str(p)], capsys)


_ZONE = '{"zone": "Normal", "start_pfn": 0, "pages": 4096}'


@pytest.mark.parametrize(("body", "msg"), [
    # each was silently truncated or coerced before: 1.5 pages -> 1, "no" -> True, -1 kB
    (f'"nodes": [{{"cpus": [0], "zones": [{_ZONE.replace("4096", "4096.5")}]}}]',
     "node 0 zone Normal: pages must be an integer, got 4096.5"),
    (f'"nodes": [{{"cpus": ["0"], "zones": [{_ZONE}]}}]', "node 0: cpu must be an integer"),
    (f'"nodes": [{{"cpus": [0], "zones": [{_ZONE}]}}], "thp": "no"',
     "thp must be true or false, got 'no'"),
    (f'"nodes": [{{"cpus": [0], "zones": [{_ZONE}]}}], "min_free_kbytes": -1',
     "min_free_kbytes -1 is negative"),
    (f'"nodes": [{{"cpus": [0], "zones": [{_ZONE}]}}], "max_order": true',
     "max_order must be an integer, got True"),
])
def test_machine_file_values_of_the_wrong_type_are_refused(
        body: str, msg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "machine.json"
    p.write_text(f'{{{body}, "distance": [[10]]}}\n')
    assert msg in one_error_line(["show", "buddyinfo", "--machine", str(p)], capsys)


def test_a_hello_with_a_fractional_page_count_is_refused() -> None:
    """The protocol's hello is read by the same strict reader as a machine file."""
    import json

    from impl.machine import MachineConfig
    from oracle.machines import EXAMPLE_HELLO
    from spec.errors import MachineError

    hello = json.loads(json.dumps(EXAMPLE_HELLO))
    MachineConfig.from_hello(hello)  # the example itself boots
    hello["nodes"][0]["zones"][0]["pages"] += 0.5
    with pytest.raises(MachineError, match="pages must be an integer"):
        MachineConfig.from_hello(hello)


def test_a_machine_of_zero_bytes_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """--machine 0gib said 'node 0 zone Normal: empty or negative span'."""
    assert "a machine needs memory" in one_error_line(["show", "buddyinfo", "--machine",
                                                       "0gib"], capsys)


@pytest.mark.parametrize("cpus", ["99999999999999999999", str(NR_CPUS // 2 + 1)])
def test_cpus_beyond_nr_cpus_are_refused(cpus: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--cpus 99999999999999999999 was an OverflowError traceback, --cpus 100000 booted
    200,000 CPUs; the kernel has at most NR_CPUS (8192 in Debian's amd64 config)."""
    assert "NR_CPUS 8192" in one_error_line(["show", "buddyinfo", "--cpus", cpus], capsys)


def test_cpus_up_to_nr_cpus_boot(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "buddyinfo", "--cpus", str(NR_CPUS // 2)]) == 0  # two nodes
    assert capsys.readouterr().out.startswith("Node 0, zone      DMA")


@pytest.mark.parametrize("cmd", [["show", "slabinfo"], ["run", "scenarios/slab.scn"]])
def test_a_missing_slabinfo_file_is_said_plainly(cmd: list[str], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Was "cannot read slabinfo X: [Errno 2] No such file or directory: 'X'" (show) and
    "...: not a file" (run) for a file that is simply not there."""
    missing = tmp_path / "slabinfo"
    line = one_error_line([*cmd, "--slabinfo", str(missing)], capsys)
    assert line == f"kmemspec: error: cannot read slabinfo {missing}: No such file or directory"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """'kmemspec --version' said 'the following arguments are required: command'."""
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("kmemspec ") and "Linux 6.12.117" in out


# --- run -----------------------------------------------------------------------------------------
def test_run_summary_counts_agree_in_number(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """'1 errors', 'cpu 0: 1 accesses', '1 lazily freed areas purged'."""
    p = tmp_path / "one.scn"
    p.write_text("alloc_pages order=0 as=a\nfree_pages pfn=$a order=1 expect_error\n"
                 "vmalloc size=4096 as=v\nvfree addr=$v\npurge_vmap\n")
    assert main(["run", str(p), "--views", ""]) == 0
    out = capsys.readouterr().out
    assert "summary: 5 ops, 1 error\n" in out
    assert "cpu 0: 1 access, cost 10 (10.00 per access)" in out
    assert "-> 1 lazily freed area purged" in out


@pytest.mark.parametrize(("line", "msg"), [
    ("[1, 2]", "a JSON line must be an object"),
    ('"alloc_pages"', "a JSON line must be an object"),
    ("alloc_page order=0", "unknown op 'alloc_page' (did you mean alloc_pages?"),
    ("frobnicate", "unknown op 'frobnicate' (ops: alloc_pages,"),
    ('{"op": "hello", "seq": 1, "protocol": 1}', "hello belongs to the subject protocol"),
])
def test_scenario_line_mistakes(line: str, msg: str) -> None:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(line + "\n", "x.scn")
    assert msg in str(e.value)


def test_pagecache_of_more_pages_than_the_node_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """pages=99999999999999 ran for ever (each page past a full node reclaims an older one);
    pages=-3 added nothing and said so without an error."""
    p = tmp_path / "pc.scn"
    p.write_text("pagecache nid=0 pages=99999999999999 expect_error\n"
                 "pagecache nid=0 pages=-3 expect_error\npagecache nid=0 pages=8\n")
    assert main(["run", str(p), "--machine", "tiny", "--views", ""]) == 0
    out = capsys.readouterr().out
    assert "error: pagecache: pages=99999999999999 must be 0.." in out
    assert "-> 8 pages added" in out


def test_run_help_description_is_wrapped(capsys: pytest.CaptureFixture[str]) -> None:
    """The description of 'kmemspec run --help' was one 300-character line."""
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert max(len(ln) for ln in out.splitlines()) <= 100
    assert "operations:\n  alloc_pages order= gfp=" in out


# --- check-trace ---------------------------------------------------------------------------------
def test_check_trace_report_in_a_pipe_does_not_wrap_notes(
        capsys: pytest.CaptureFixture[str]) -> None:
    """In a pipe each note was cut at column 120 and titles carried trailing blanks: the
    report did not look like docs/traces.md and grep missed notes."""
    assert main(["check-trace", str(CAPTURE61 / "trace.xz"), "--formats",
                 str(CAPTURE61 / "kmem_formats"), "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert ("is not an allocator event: counted, not checked\n" in out)
    assert "At the end of the trace (what the trace allocated and did not free)\n" in out
    assert not [ln for ln in out.splitlines() if ln != ln.rstrip()]


def _closed_pipe_status(*args: str) -> int:
    """The exit status of ``kmemspec ARGS`` whose reader closed the pipe before reading."""
    p = subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # as `| head -0` would
    err = p.stderr.read().decode()
    rc = p.wait(timeout=120)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    return rc


def test_check_trace_exit_status_survives_a_closed_pipe(tmp_path: Path) -> None:
    """'kmemspec check-trace clean.trace | head' exited 1 (rich's broken-pipe exit), the
    status of a violation; the status must be the verdict whoever reads the report."""
    assert _closed_pipe_status("check-trace", str(SMALL_TRACE)) == 0
    bad = tmp_path / "bad.trace"
    bad.write_text("a-1 [000] ..... 10.000000: mm_page_alloc: page=0x0 pfn=0x100 order=1 "
                   "migratetype=0 gfp_flags=GFP_KERNEL\n"
                   "a-1 [000] ..... 20.000000: mm_page_alloc: page=0x0 pfn=0x100 order=0 "
                   "migratetype=0 gfp_flags=GFP_KERNEL\n")
    assert _closed_pipe_status("check-trace", str(bad)) == 1


def test_run_exit_status_survives_a_closed_pipe(tmp_path: Path) -> None:
    assert _closed_pipe_status("run", "scenarios/basic.scn") == 0
    p = tmp_path / "fail.scn"
    p.write_text("alloc_pages order=0 expect_null\n")
    assert _closed_pipe_status("run", str(p)) == 1
    # --json writes plain text: its BrokenPipeError came at the last flush and main() made
    # it status 0, an expectation failure hidden
    assert _closed_pipe_status("run", "--json", str(p)) == 1


def test_json_reports_keep_their_status_in_a_closed_pipe(tmp_path: Path) -> None:
    """check-trace --json of a violation: 'Exception ignored ... BrokenPipeError' at exit."""
    bad = tmp_path / "bad.trace"
    bad.write_text("a-1 [000] ..... 10.000000: mm_page_alloc: page=0x0 pfn=0x100 order=1 "
                   "migratetype=0 gfp_flags=GFP_KERNEL\n"
                   "a-1 [000] ..... 20.000000: mm_page_alloc: page=0x0 pfn=0x100 order=0 "
                   "migratetype=0 gfp_flags=GFP_KERNEL\n")
    assert _closed_pipe_status("check-trace", "--json", str(bad)) == 1
    assert _closed_pipe_status("check-trace", "--json", str(SMALL_TRACE)) == 0


@pytest.mark.parametrize(("opt", "value", "msg"), [
    ("--reorder-window", "nan", "finite"),
    ("--reorder-window", "inf", "finite"),
    ("--page-offset", "0x1", "kernel address"),
    ("--page-offset", "0x1ffff888000000000", "kernel address"),
    ("--page-offset", "0xffff888000000001", "page aligned"),
])
def test_check_trace_option_values_that_can_only_be_mistakes(
        opt: str, value: str, msg: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each was accepted: nan/inf windows, a direct-map base of 0x1 or above 2^64 (the trace
    was then checked against a base no kernel has, silently)."""
    assert msg in one_error_line(["check-trace", str(SMALL_TRACE), opt, value], capsys)


def test_check_trace_page_offset_without_0x_still_works(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-trace", str(SMALL_TRACE), "--page-offset", "ffff888000000000"]) == 0
    assert "0xffff888000000000 (given (--page-offset))" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"\xff\xfe\x00binary",
                                     b"Node abc, zone Normal\nspanned 5\nstart_pfn: 1\n"])
def test_check_trace_bad_zoneinfo_is_one_line(content: bytes, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A binary --zoneinfo was a UnicodeDecodeError traceback, 'Node abc' a ValueError one
    (tracecheck/check.py node_ranges_from_zoneinfo)."""
    p = tmp_path / "zoneinfo"
    p.write_bytes(content)
    line = one_error_line(["check-trace", str(SMALL_TRACE), "--zoneinfo", str(p)], capsys)
    assert "no 'Node N, zone' stanza" in line


def test_check_trace_plot_onto_a_file_and_missing_formats_read_plainly(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Were '--plot F: [Errno 17] File exists: 'F'' and '--formats: [Errno 2] No such file
    or directory: 'nosuch''."""
    f = tmp_path / "afile"
    f.write_text("x")
    line = one_error_line(["check-trace", str(SMALL_TRACE), "--plot", str(f)], capsys)
    assert line == f"kmemspec: error: --plot {f}: File exists"
    line = one_error_line(["check-trace", str(SMALL_TRACE), "--formats",
                           str(tmp_path / "nosuch")], capsys)
    assert line == f"kmemspec: error: --formats {tmp_path / 'nosuch'}: No such file or directory"


# --- oracle --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("opt", "value"), [("--budget", "nan"), ("--budget", "inf"),
                                            ("--timeout", "nan"), ("--timeout", "inf")])
def test_oracle_budget_and_timeout_must_be_finite(opt: str, value: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """--budget nan ran for ever (no comparison with nan is true), so did inf."""
    line = one_error_line(["oracle", "--subject", "true", opt, value], capsys)
    assert f"{opt} must be finite" in line
