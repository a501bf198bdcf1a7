"""``kmemspec check-trace``: exit codes, JSON, plots, standard input, BitmapLiveMap."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from spec.alloc_rules import BitmapLiveMap, LiveMap
from tracecheck import emit

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = sorted((ROOT / "tests" / "fixtures").glob("linux-6.12/*/trace.xz"))[0]


def faulty(tmp_path: Path) -> Path:
    lines = [emit.prefix("a", 1, 0, ".....", 10) + emit.mm_page_alloc(0x100, 1, 0xCC0) + "\n",
             emit.prefix("a", 1, 0, ".....", 20) + emit.mm_page_alloc(0x100, 0, 0xCC0) + "\n"]
    p = tmp_path / "bad.trace"
    p.write_text("".join(lines))
    return p


def test_exit_0_on_a_real_capture(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-trace", str(CAPTURE)]) == 0
    out = capsys.readouterr().out
    assert "no violation" in out and "Busiest call sites" in out and "kmem_cache_alloc" in out


def test_exit_1_on_a_violation_with_json(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-trace", "--json", str(faulty(tmp_path))]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert [(v["rule"], v["lineno"]) for v in doc["violations"]] == [("page.overlap", 2)]


def test_exit_2_on_usage_errors_and_unreadable_files(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-trace", str(tmp_path / "nope")]) == 2
    assert "kmemspec: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["check-trace", "--page-offset", "xyz", str(CAPTURE)])
    assert e.value.code == 2
    assert main(["check-trace", "--top", "0", str(CAPTURE)]) == 2


def test_plots_are_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plots"
    assert main(["check-trace", "--plot", str(out), str(CAPTURE)]) == 0
    for name in ("memory-map.png", "fragmentation.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_standard_input_in_a_subprocess(tmp_path: Path) -> None:
    data = faulty(tmp_path).read_bytes()
    p = subprocess.run([sys.executable, "-m", "cli.main", "check-trace", "--json", "-"],
                       input=data, capture_output=True, cwd=ROOT, timeout=60, check=False)
    assert p.returncode == 1, p.stderr
    assert json.loads(p.stdout)["sources"] == ["<stdin>"]
    assert b"Traceback" not in p.stderr


def test_binary_garbage_is_reported_without_a_traceback(tmp_path: Path) -> None:
    p = tmp_path / "garbage.bin"
    garbage = bytes(random.Random(1).randrange(256) for _ in range(5000))
    p.write_bytes(garbage)
    r = subprocess.run([sys.executable, "-m", "cli.main", "check-trace", "--json", str(p)],
                       capture_output=True, cwd=ROOT, timeout=60, check=False)
    # nothing but garbage is not a trace: one error line, exit 2 (not "no violation")
    assert r.returncode == 2 and b"Traceback" not in r.stderr and not r.stdout
    assert r.stderr.startswith(b"kmemspec: error: ") and len(r.stderr.splitlines()) == 1
    assert b"no kmem or vmalloc trace event" in r.stderr
    # garbage inside a trace is reported line by line and the events are still checked
    event = emit.prefix("a", 1, 0, ".....", 10) + emit.mm_page_alloc(0x100, 1, 0xCC0) + "\n"
    p.write_bytes(garbage + b"\n" + event.encode())
    r = subprocess.run([sys.executable, "-m", "cli.main", "check-trace", "--json", str(p)],
                       capture_output=True, cwd=ROOT, timeout=60, check=False)
    assert r.returncode == 0 and b"Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    assert doc["malformed_total"] >= 1 and len(doc["malformed"]) <= 200


@pytest.mark.parametrize("granule_shift", [0, 3])
def test_bitmap_live_map_agrees_with_live_map(granule_shift: int) -> None:
    """The O(1) LiveMap the checker uses (spec.alloc_rules.BitmapLiveMap) answers as
    spec.alloc_rules.LiveMap does, for granule-aligned intervals, including the
    inlined-by-hand paths' building blocks (raw, unmark)."""
    rng = random.Random(7)
    g = 1 << granule_shift
    for _ in range(120):
        a, b = LiveMap(), BitmapLiveMap(granule_shift)
        for _step in range(200):
            lo = rng.randrange(0, 9000 // g) * g
            hi = lo + g * rng.choice([1, 2, 3, 8, 40, 100, 600, 700, 2000])
            op = rng.random()
            if op < 0.5:
                assert (a.add(lo, hi, (lo,)) is None) == (b.add(lo, hi, (lo,)) is None)
            elif op < 0.8:
                s = rng.choice([x for x, _e, _t in a.items()] or [0])
                assert a.remove(s) == b.remove(s)
            else:
                x = rng.randrange(0, 12000)
                assert a.find(x) == b.find(x)
                assert list(a.irange(lo, hi)) == list(b.irange(lo, hi))
        assert list(a.items()) == list(b.items()) and len(a) == len(b)
        starts, bitmap = b.raw()
        for s, (e, _t) in list(starts.items()):
            del starts[s]
            b.unmark(s, e)
        assert not bitmap and len(b) == 0
