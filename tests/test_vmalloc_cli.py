"""``kmemspec show vmallocinfo|meminfo-vmalloc`` and vmalloc scenarios (cli/main.py,
cli/scenario.py, cli/vmalloc_ops.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cli.scenario import Runner, parse_scenario, run_steps
from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from impl.procfs import parse_vmallocinfo
from impl.vmalloc import abstract_vm
from spec.vm_state import vm_violations

ROOT = Path(__file__).resolve().parent.parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_show_vmallocinfo_and_meminfo() -> None:
    p = run("show", "vmallocinfo", "--machine", "tiny")
    assert p.returncode == 0 and p.stdout == ""  # a freshly booted model has no area
    p = run("show", "meminfo-vmalloc")
    assert p.returncode == 0
    assert p.stdout.splitlines() == ["PageTables:            0 kB",
                                     "SecPageTables:         0 kB",
                                     "VmallocTotal:   34359738367 kB",
                                     "VmallocUsed:           0 kB",
                                     "VmallocChunk:          0 kB"]


def test_vmalloc_scenario_meets_every_expectation() -> None:
    p = run("run", str(ROOT / "scenarios" / "vmalloc.scn"), "--views", "meminfo-vmalloc")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "FAILED" not in p.stdout
    assert "==> /proc/vmallocinfo <==" in p.stdout  # shown because the run used vmalloc
    text = p.stdout.split("==> /proc/vmallocinfo <==\n", 1)[1].split("\n\n", 1)[0] + "\n"
    lines = parse_vmallocinfo(text)
    assert any(x.kind == "unpurged" for x in lines)
    assert any("vpages" in x.flags and x.pages == 1024 for x in lines)


def test_vmalloc_scenario_json_and_state() -> None:
    text = (ROOT / "scenarios" / "vmalloc.scn").read_text()
    steps = parse_scenario(text, "vmalloc.scn")
    a = PageAllocator(MachineConfig.default())
    runner = Runner(a)
    records = []
    summary = run_steps(a, steps, lambda o: records.append(o.record), runner=runner)
    assert summary.expect_failed == 0
    first = next(r for r in records if r["op"] == "vmalloc")
    assert first["addr"] == "0xffffc90000000000" and len(first["pfns"]) == 4
    # the pages freed by the scenario's first frees are reused, out of order: scattered
    assert first["pfns"][:2] == [0x100002, 0x100000]
    assert runner.vm is not None
    assert vm_violations(abstract_vm(runner.vm)) == []
    p = run("run", str(ROOT / "scenarios" / "vmalloc.scn"), "--json")
    views = [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith('{"view"')]
    assert [v["view"] for v in views][-1] == "vmallocinfo"
