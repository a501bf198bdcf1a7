"""Oracle benchmarks (part of ``make bench``; ``python -m benchmarks.oracle`` alone).

* In-process: checked requests per second of ``check_subject`` against the reference model
  (oracle.inprocess.ReferenceSubject), wall and CPU; and the oracle's own rate, from a second
  run with the same seed whose subject is timed: its requests over the time spent outside the
  subject (generation, judging, Hypothesis), which is what an in-process Python allocator
  faster than the model would see.
* Subprocess: checked requests per second through the pipes against the C subject of
  examples/subjects (``make subjects``; the reference ``kmemspec subject`` if no C compiler),
  and the bare transport rate (pipelined alloc/free bursts, no judging).
* Shrinking: a subject that forgets every 20th free of an order-0 page on node 1 (a liveness
  violation that needs memory pressure and many frees), in a run with the default 30 s
  budget, which bounds the shrinking; figures: requests sent before the first violation, the
  length of the sequence that showed it, seconds Hypothesis then spent shrinking and the
  length it reached, seconds and replays of the ddmin pass and the final length.

Medians of repetitions; timings are reported, never asserted. On a shared machine they vary
a lot: the CPU rates are the steadier figure.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from oracle.inprocess import ReferenceSubject
from oracle.machines import hello_of
from oracle.run import check_subject
from oracle.transport import DEFAULT_BUDGET, ProcessSubject

ROOT = Path(__file__).resolve().parent.parent
C_SUBJECT = ROOT / "build" / "subjects" / "buddy"
TARGET_INPROCESS = 50_000
TARGET_SUBPROCESS = 20_000
TARGET_SHRINK_S = 30.0
FOUND_AFTER = 10_000


class TimedReference(ReferenceSubject):
    """The reference, counting the CPU seconds spent inside it."""

    spent = 0.0

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        t = time.process_time()
        try:
            return super().request(msg)
        finally:
            TimedReference.spent += time.process_time() - t


class RareLeak(ReferenceSubject):
    """Forgets every 20th free_pages of an order-0 block on node 1 of the small machine."""

    def __init__(self) -> None:
        super().__init__()
        self.frees = 0

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "free_pages" and msg["order"] == 0 and msg["pfn"] >= 2048:
            self.frees += 1
            if self.frees % 20 == 0:
                return {"seq": msg["seq"], "ok": True}
        return super().request(msg)


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else 0.0


def bench_inprocess(reps: int, budget: float) -> dict[str, Any]:
    wall, cpu, own = [], [], []
    for i in range(reps):
        # the rate of the plain reference; the oracle's own share in a second, timed run
        # (two clock reads per request cost ~1.5 µs, ~8% of a request: not the oracle's)
        c0, t0 = time.process_time(), time.perf_counter()
        r = check_subject(ReferenceSubject, seed=i, budget=budget)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        n = r.stats["requests"]
        wall.append(_rate(n, dt))
        cpu.append(_rate(n, dc))
        TimedReference.spent = 0.0
        c0 = time.process_time()
        r = check_subject(TimedReference, seed=i, budget=budget)
        dc = time.process_time() - c0
        own.append(_rate(r.stats["requests"], dc - TimedReference.spent))
    return {"inprocess_per_s_wall": statistics.median(wall),
            "inprocess_per_s_cpu": statistics.median(cpu),
            "inprocess_oracle_only_per_s": statistics.median(own)}


def subject_command() -> tuple[list[str], str]:
    """The C subject, built if needed; else the reference subject."""
    if not C_SUBJECT.exists() and shutil.which("cc") and shutil.which("make"):
        subprocess.run(["make", "-s", "subjects"], cwd=ROOT, check=False,
                       capture_output=True)
    if C_SUBJECT.exists():
        return [str(C_SUBJECT)], "C subject (examples/subjects/buddy.c)"
    return [sys.executable, "-m", "cli.main", "subject"], "reference subject (no C build)"


def bench_transport(argv: list[str], bursts: int = 300) -> float:
    """Pipelined bursts of 64 allocations and their frees, answers parsed, nothing judged."""
    with ProcessSubject(argv) as s:
        s.request({**hello_of("small"), "seq": 1})
        seq, n = 2, 0
        t0 = time.perf_counter()
        for _ in range(bursts):
            reqs = [{"op": "alloc_pages", "seq": seq + i, "order": 0, "gfp": "GFP_ATOMIC",
                     "nid": -1, "cpu": 0, "ctx": "atomic"} for i in range(64)]
            seq += 64
            got = [a["pfn"] for a in s.request_many(reqs) if a.get("pfn") is not None]
            frees = [{"op": "free_pages", "seq": seq + i, "pfn": p, "order": 0}
                     for i, p in enumerate(got)]
            seq += len(frees)
            s.request_many(frees)
            n += 64 + len(frees)
        dt = time.perf_counter() - t0
        s.request({"op": "bye", "seq": seq})
    return _rate(n, dt)


def bench_subprocess(reps: int, budget: float) -> dict[str, Any]:
    argv, what = subject_command()
    wall, cpu, transport = [], [], []
    for i in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        r = check_subject(argv, seed=i, budget=budget)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if r.verdict != "accepted":
            raise RuntimeError(f"{what} not accepted: {r.failure}")
        wall.append(_rate(r.stats["requests"], dt))
        cpu.append(_rate(r.stats["requests"], dc))
        transport.append(bench_transport(argv))
    return {"subject": what, "subprocess_per_s_wall": statistics.median(wall),
            "subprocess_per_s_cpu": statistics.median(cpu),
            "transport_only_per_s": statistics.median(transport)}


def bench_shrink(reps: int, budget: float) -> dict[str, Any]:
    runs = []
    for i in range(reps):
        r = check_subject(RareLeak, pages_only=True, seed=i, budget=budget)
        if r.failure is None or r.failure.rule != "liveness":
            raise RuntimeError(f"the rare leak was not found as liveness: {r.verdict}")
        s = r.stats["shrink"]
        s["total_shrink_seconds"] = round(s["hypothesis_seconds"] + s["ddmin_seconds"], 3)
        runs.append(s)
    med = {k: statistics.median(float(r[k]) for r in runs) for k in runs[0]}
    return {"shrink_runs": runs, "shrink_median": med}


def run(quick: bool = False) -> dict[str, Any]:
    reps = 1 if quick else 3
    out: dict[str, Any] = {}
    out.update(bench_inprocess(reps, 4.0 if quick else 8.0))
    out.update(bench_subprocess(reps, 4.0 if quick else 8.0))
    out.update(bench_shrink(reps, DEFAULT_BUDGET))  # the default run: how far shrinking gets
    return out


def main() -> int:
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
