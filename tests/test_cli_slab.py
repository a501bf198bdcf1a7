"""``kmemspec show slabinfo|slabtop`` and slab/kmalloc scenarios (cli/main.py, cli/scenario.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from impl.slab_common import parse_slabinfo

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "tests" / "fixtures" / "linux-6.12" / "1node-4cpu-1g"


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_show_slabinfo_with_a_real_slabinfo_prints_its_caches_and_geometry(tmp_path: Path) -> None:
    machine = tmp_path / "m.json"
    machine.write_text(json.dumps({
        "page_size": 4096, "max_order": 10,
        "nodes": [{"nid": 0, "cpus": [0, 1, 2, 3], "zones": [
            {"zone": "DMA32", "start_pfn": 4096, "pages": 258048, "min": 512}]}],
        "distance": [[10]]}))
    p = run("show", "slabinfo", "--machine", str(machine), "--slabinfo",
            str(CAPTURE / "slabinfo"))
    assert p.returncode == 0, p.stderr
    real = parse_slabinfo((CAPTURE / "slabinfo").read_text(), "capture")
    mine = parse_slabinfo(p.stdout, "kmemspec show slabinfo")  # the same strict parser
    assert [r[0] for r in mine] == [r[0] for r in real]
    assert [r[3:6] for r in mine] == [r[3:6] for r in real]


def test_show_slabtop_and_bad_slabinfo(capsys: object) -> None:
    p = run("show", "slabtop", "--machine", "tiny")
    assert p.returncode == 0 and "Active / Total Objects" in p.stdout
    p = run("show", "slabinfo", "--slabinfo", "/nonexistent/slabinfo")
    assert p.returncode == 2 and p.stderr.startswith("kmemspec: error: cannot read slabinfo")
    assert "Traceback" not in p.stderr


def test_slab_scenario_runs_and_prints_slabinfo() -> None:
    p = run("run", str(ROOT / "scenarios" / "slab.scn"), "--json", "--views", "")
    assert p.returncode == 0, p.stdout + p.stderr
    recs = [json.loads(ln) for ln in p.stdout.splitlines()]
    ops = [r for r in recs if "op" in r]
    assert all(r.get("expect_ok", True) for r in ops)
    by_line = {r["line"]: r for r in ops}
    assert by_line[8]["from"] == "kmalloc-128" and by_line[9]["from"] == "kmalloc-cg-128"
    assert by_line[10]["zone"] == "DMA" and by_line[11]["node"] == 1
    assert any(e["kind"] == "slab_free" for e in by_line[26]["effects"])
    kc = next(r for r in ops if r["op"] == "kcalloc")
    kr = [r for r in ops if r["op"] == "krealloc"]
    assert kr[0]["addr"] == kc["addr"] and kr[1]["addr"] != kc["addr"]  # fits, then moves
    assert next(r for r in ops if r["op"] == "kzalloc")["from"] == "kmalloc-64"
    views = [r for r in recs if "view" in r]
    assert [v["view"] for v in views] == ["slabinfo"]
    assert "dentry_like" not in views[0]["text"]  # destroyed at the end
    assert recs[-1]["summary"]["expectations_failed"] == 0


@pytest.mark.parametrize(("line", "msg"), [
    ("kmem_cache_create name=x size=8 flags=SLAB_BOGUS", "unknown slab flag"),
    ("kmem_cache_alloc gfp=GFP_KERNEL", "needs name="),
    ("kfree", "needs addr="),
    ("kmalloc size=8 as=a\nkfree addr=$b", "no earlier line defines"),
])
def test_slab_scenario_parse_errors(tmp_path: Path, line: str, msg: str) -> None:
    f = tmp_path / "bad.scn"
    f.write_text(line.replace("\\n", "\n") + "\n")
    p = run("run", str(f))
    assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr


def test_machine_file_names_its_slabinfo() -> None:
    """machines/qemu-4cpu-1g.json is the 1-node, 4-CPU qemu capture: its zones and its
    slabinfo's caches, so `show slabinfo` prints the real cache list and geometry."""
    p = run("show", "slabinfo", "--machine", str(ROOT / "machines" / "qemu-4cpu-1g.json"))
    assert p.returncode == 0, p.stderr
    real = parse_slabinfo((CAPTURE / "slabinfo").read_text(), "capture")
    mine = parse_slabinfo(p.stdout, "kmemspec show slabinfo")
    assert [(r[0], r[3:6]) for r in mine] == [(r[0], r[3:6]) for r in real]
