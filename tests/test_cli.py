"""The kmemspec command line, run as a separate process the way a user runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main, with_cpus
from cli.scenario import parse_scenario
from impl.machine import MachineConfig
from spec.errors import ScenarioError

ROOT = Path(__file__).resolve().parent.parent
BUDDY_LINE = re.compile(r"Node \d+, zone [ A-Za-z0-9]{8} (?:[ \d]{5}\d ){11}")


def kmemspec(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=60)


def assert_one_error_line(p: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("kmemspec: error: ")
    for f in fragments:
        assert f in lines[0]


# --- show ----------------------------------------------------------------------------------------
def test_show_buddyinfo_default_machine() -> None:
    p = kmemspec("show", "buddyinfo")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 4
    assert all(BUDDY_LINE.fullmatch(ln) for ln in lines)
    assert lines[3].startswith("Node 1, zone   Normal ")


def test_show_other_views_and_machines() -> None:
    p = kmemspec("show", "zoneinfo", "--machine", "machines/small-numa.json")
    assert p.returncode == 0, p.stderr
    assert "Node 1, zone   Normal\n" in p.stdout
    assert "        managed  64512\n" in p.stdout
    p = kmemspec("show", "numastat", "--machine", "tiny", "--cpus", "2")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("==> /sys/devices/system/node/node0/numastat <==\nnuma_hit 0\n")


def test_show_errors_are_one_line_exit_2() -> None:
    assert_one_error_line(kmemspec("show", "meminfo"), "unknown view 'meminfo'")
    assert_one_error_line(kmemspec("show", "buddyinfo", "--machine", "nosuch"),
                          "unknown machine")
    assert_one_error_line(kmemspec("show", "buddyinfo", "--cpus", "0"), "--cpus")


def test_bad_machine_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"nodes": [{"cpus": [0], "zones": [{"zone": "Highmem", "start_pfn": 0, '
                   '"pages": 8}]}], "distance": [[10]]}')
    assert_one_error_line(kmemspec("show", "buddyinfo", "--machine", str(bad)),
                          "unknown zone name 'Highmem'")
    bad.write_text("{")
    assert_one_error_line(kmemspec("show", "buddyinfo", "--machine", str(bad)),
                          "not valid JSON")


def test_with_cpus_on_the_default_machine_is_numa_cpus_per_node() -> None:
    m = with_cpus(MachineConfig.default(), 2)
    assert m == MachineConfig.numa(cpus_per_node=2, name="default")
    assert m.cpu_node() == {0: 0, 1: 0, 2: 1, 3: 1}


# --- run -----------------------------------------------------------------------------------------
def test_run_basic_scenario() -> None:
    p = kmemspec("run", "scenarios/basic.scn")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "alloc_pages order=3 gfp=GFP_KERNEL nid=-1 cpu=0 ctx=process as=a1 -> pfn 0x" in out
    assert "==> /proc/buddyinfo <==\n" in out
    assert "==> /sys/devices/system/node/node1/numastat <==\n" in out
    assert "allocations: 7 ok, 1 failed" in out
    assert "[expect_null: ok]" in out
    # everything was freed: buddyinfo is back at its boot state
    boot = kmemspec("show", "buddyinfo").stdout
    assert "==> /proc/buddyinfo <==\n" + boot in out


def test_run_error_line_does_not_stop_the_run(tmp_path: Path) -> None:
    scn = tmp_path / "t.scn"
    scn.write_text("# comment\n\nalloc_pages order=2 gfp=GFP_KERNEL cpu=0 as=x\n"
                   "free_pages pfn=$x order=1\n"
                   "free_pages pfn=$x order=2\n"
                   "free_pages pfn=$x order=2\n")
    p = kmemspec("run", str(scn), "--views", "")
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if re.match(r"\s*\d+: ", ln)]
    assert len(lines) == 4
    assert lines[0].startswith("   3: alloc_pages ")
    assert "-> error: free_pages(pfn 0x" in lines[1] and "allocated with order 2" in lines[1]
    assert lines[2].endswith("-> ok")
    assert "double free" in lines[3]
    assert "summary: 4 ops, 2 errors" in p.stdout


def test_run_unparsable_line_exits_2_before_running(tmp_path: Path) -> None:
    scn = tmp_path / "t.scn"
    scn.write_text("alloc_pages order=0\nalloc_pages order=zero\nalloc_pages order=1\n")
    p = kmemspec("run", str(scn))
    assert_one_error_line(p, "t.scn:2:", "order", "'zero' is not an integer")
    assert p.stdout == ""
    scn.write_text("free_pages pfn=$never order=0\n")
    assert_one_error_line(kmemspec("run", str(scn)), "t.scn:1:", "$never")
    scn.write_text('{"op": "alloc_pages", "order": 1,\n')
    assert_one_error_line(kmemspec("run", str(scn)), "not valid JSON")
    assert_one_error_line(kmemspec("run", str(tmp_path / "missing.scn")), "cannot read")


def test_run_json_output() -> None:
    p = kmemspec("run", "scenarios/basic.scn", "--json", "--views", "buddyinfo")
    assert p.returncode == 0, p.stderr
    recs = [json.loads(ln) for ln in p.stdout.splitlines()]
    ops = [r for r in recs if "op" in r]
    assert ops[0]["op"] == "alloc_pages" and ops[0]["zone"] == "Normal"
    assert ops[0]["args"]["gfp"] == "GFP_KERNEL" and ops[0]["distance"] == 10
    assert [r["view"] for r in recs if "view" in r] == ["buddyinfo"]
    summary = recs[-1]["summary"]
    assert summary["allocations_ok"] == 7 and summary["allocations_failed"] == 1
    assert summary["access_cost"]["0"] == {"accesses": 4, "cost": 60}


def test_run_pressure_scenario_reclaims_and_sleeps() -> None:
    p = kmemspec("run", "scenarios/pressure.scn")
    assert p.returncode == 0, p.stdout + p.stderr  # every expect_* held
    out = p.stdout
    assert "FAILED" not in out
    k1 = next(ln for ln in out.splitlines() if "as=k1" in ln)
    assert "node 1 Normal" in k1 and "sleep(node 1: direct reclaim" in k1
    assert "reclaim(node 1: " in k1
    assert "BUG: sleeping function called from invalid context" in out
    assert re.search(r"sleeps \(direct reclaim entered\): [1-9]\d*", out)
    # kswapd is woken by the readahead and runs while the readers sleep in direct reclaim
    m = re.search(r"kswapd wake-ups: (\d+)", out)
    assert m and int(m.group(1)) >= 1
    m = re.search(r"reclaimed pages: \d+ \((\d+) direct, (\d+) by kswapd\)", out)
    assert m and int(m.group(1)) > 0 and int(m.group(2)) > 0


def test_run_bad_input_scenario_reports_every_error() -> None:
    p = kmemspec("run", "scenarios/bad-input.scn", "--views", "")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("-> error: ") == 11
    assert "FAILED" not in p.stdout


def test_run_failed_expectation_exits_1(tmp_path: Path) -> None:
    scn = tmp_path / "t.scn"
    scn.write_text("alloc_pages order=0 expect_null\n")
    p = kmemspec("run", str(scn), "--machine", "tiny", "--views", "")
    assert p.returncode == 1
    assert "[expect_null: FAILED]" in p.stdout


def test_main_in_process_returns_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "buddyinfo", "--machine", "tiny"]) == 0
    assert capsys.readouterr().out == "Node 0, zone   Normal      0      0      0      4 \n"
    assert main(["show", "nope"]) == 2
    assert capsys.readouterr().err.startswith("kmemspec: error: unknown view")


def test_parse_scenario_forms() -> None:
    steps = parse_scenario(
        'alloc_pages order=3 gfp=GFP_KERNEL|__GFP_ZERO nid=-1 cpu=0 ctx=process as=a1\n'
        '{"op": "free_pages", "pfn": "$a1", "order": 3, "seq": 9}\n'
        'get_free_pages order=0 gfp=GFP_ATOMIC cpu=1 as=x  # trailing comment\n'
        'free_pages_addr addr=$x\n'
        'drop_caches\n')
    assert [s.op for s in steps] == ["alloc_pages", "free_pages", "get_free_pages",
                                     "free_pages_addr", "drop_caches"]
    assert steps[0].bind == "a1" and steps[0].args["order"] == 3
    assert steps[3].args["order"] == 0
    for bad, why in (("frobnicate", "unknown op"), ("alloc_pages colour=red", "no field"),
                     ("free_pages order=0", "needs pfn="), ("touch pfn=1 as=t", "no result"),
                     ("alloc_pages gfp=GFP_KERNAL", "unknown gfp flag"),
                     ("enter ctx=nmi", "unknown context"), ("alloc_pages expect_miracle",
                                                            "unknown word")):
        with pytest.raises(ScenarioError, match=why):
            parse_scenario(bad)
