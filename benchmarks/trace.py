"""Trace checker benchmark (part of ``make bench``; ``python -m benchmarks.trace`` alone).

* The input: traces made by the model (tracecheck/emit.py drives impl/page_alloc.py and
  impl/slab_common.py and prints every event in the kernel's exact TP_printk format: kmalloc
  of random sizes with the large path, kmem_cache_alloc/free of four caches with their slab
  pages, alloc_pages of orders 0-3, batched frees, four CPUs, some softirq context), about
  4,000 objects live, at two lengths (800,000 and 1,600,000 events). They are written once
  to build/ and reused.
* The figure: the whole command, ``kmemspec check-trace FILE --json`` in a fresh process,
  start-up included; events per second from wall time and from the child's CPU time (user +
  sys: this sandbox's 2 cores are shared, so wall time is noisy), medians of repetitions.
* Memory: the child's peak resident set (VmHWM of /proc/self/status: ru_maxrss would count
  the pages of the forking parent, which survive exec) at both lengths: flat when memory
  follows the live objects and not the trace length.
* A bare-bones baseline run beside it (interleaved, same file, fresh process): a loop that
  reads the lines, finds each event's name and keeps live page blocks and objects in two
  dicts by pfn and pointer, with no rule, no format handling and no report. The ratio
  real/bare says how much of the cost is the checking itself.
* Start-up: the CPU time of a process that only imports ``cli.main`` (the fixed cost inside
  every figure above; ``kmemspec``'s other subcommands' imports are most of it).
* Every child runs with Python's bytecode cache on (in build/pycache, out of the tree), as an
  installed ``kmemspec`` does: this sandbox sets PYTHONDONTWRITEBYTECODE, under which each
  start-up compiles every module it imports again (about 0.08 s more per run).

Timings are reported, never asserted.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
LENGTHS = (800_000, 1_600_000)
QUICK_LENGTHS = (100_000, 200_000)
TARGET_EVENTS_PER_S = 300_000
CHILD = ("import resource, sys\n"
         "from cli.main import main\n"
         "rc = main(['check-trace', '--json', sys.argv[1]])\n"
         "# VmHWM, not ru_maxrss: ru_maxrss survives exec and counts the forking parent's pages\n"
         "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
         "print('MAXRSS', hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,\n"
         "      file=sys.stderr)\n"
         "sys.exit(rc)\n")


def trace_file(n: int, seed: int = 1) -> Path:
    """The generated trace of ``n`` events (made once, kept in build/)."""
    from tracecheck.emit import generate

    p = BUILD / f"trace-bench-{n}-s{seed}.txt"
    if not p.exists():
        BUILD.mkdir(exist_ok=True)
        tmp = p.with_suffix(".tmp")
        with tmp.open("w") as f:
            f.writelines(generate(n, seed=seed))
        tmp.replace(p)
    return p

BARE = ("import resource, sys\n"
        "pages = {}; objs = {}; n = 0\n"
        "with open(sys.argv[1]) as f:\n"
        "    for line in f:\n"
        "        if line[0] == '#': continue\n"
        "        head, sep, body = line.partition(': ')\n"
        "        ev, sep2, body = body.partition(': ')\n"
        "        if not sep2: continue\n"
        "        n += 1\n"
        "        kv = dict(t.split('=', 1) for t in body.split() if '=' in t)\n"
        "        if ev == 'mm_page_alloc': pages[kv['pfn']] = kv['order']\n"
        "        elif ev == 'mm_page_free': pages.pop(kv['pfn'], None)\n"
        "        elif ev in ('kmalloc', 'kmem_cache_alloc'): objs[kv['ptr']] = kv['bytes_alloc']\n"
        "        elif ev in ('kfree', 'kmem_cache_free'): objs.pop(kv['ptr'], None)\n"
        "print(n)\n")


def child_env() -> dict[str, str]:
    """The children's environment: bytecode cached in build/pycache (see the docstring)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(BUILD / "pycache")
    return env


def run_bare(path: Path) -> dict[str, Any]:
    """One fresh bare-bones replay process (:data:`BARE`) on ``path``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", BARE, str(path)], cwd=ROOT, env=child_env(),
                       capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"events": int(p.stdout), "wall_s": wall, "cpu_s": cpu}


def run_once(path: Path) -> dict[str, Any]:
    """One fresh ``kmemspec check-trace --json`` process on ``path``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, env=child_env(),
                       capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise RuntimeError(f"check-trace exited {p.returncode} on {path}: {p.stderr[-400:]}")
    doc = json.loads(p.stdout)
    maxrss_kb = int(p.stderr.rsplit("MAXRSS", 1)[1].split()[0])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    events = sum(doc["events"].values())
    return {"events": events, "wall_s": wall, "cpu_s": cpu, "maxrss_mb": maxrss_kb / 1024,
            "violations": len(doc["violations"]), "live_objects": doc["live"]["objects"]}


def startup_cpu_s(reps: int = 3) -> float:
    """Median CPU time of a process that imports ``cli.main`` and exits."""
    times = []
    for _ in range(reps):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", "from cli.main import main"], cwd=ROOT,
                       env=child_env(), check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return statistics.median(times)


def run(quick: bool = False, reps: int = 3) -> dict[str, Any]:
    """Both lengths, ``reps`` runs each, interleaved; medians."""
    lengths = QUICK_LENGTHS if quick else LENGTHS
    paths = {n: trace_file(n) for n in lengths}
    startup_cpu_s(1)  # fills the bytecode cache: every measured child starts warm
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in lengths}
    bare: dict[int, list[dict[str, Any]]] = {n: [] for n in lengths}
    for _ in range(reps):
        for n in lengths:
            runs[n].append(run_once(paths[n]))
            bare[n].append(run_bare(paths[n]))
    out: dict[str, Any] = {"load_average": os.getloadavg(), "reps": reps, "lengths": {},
                           "startup_cpu_s": startup_cpu_s(reps)}
    for n in lengths:
        rs = runs[n]
        ev = rs[0]["events"]
        out["lengths"][str(n)] = {
            "events": ev,
            "file_mb": paths[n].stat().st_size / 1e6,
            "wall_s": statistics.median(r["wall_s"] for r in rs),
            "cpu_s": statistics.median(r["cpu_s"] for r in rs),
            "events_per_s_wall": statistics.median(ev / r["wall_s"] for r in rs),
            "events_per_s_cpu": statistics.median(ev / r["cpu_s"] for r in rs),
            "maxrss_mb": statistics.median(r["maxrss_mb"] for r in rs),
            "violations": rs[0]["violations"],
            "live_objects": rs[0]["live_objects"],
            "bare_events_per_s_cpu": statistics.median(b["events"] / b["cpu_s"]
                                                       for b in bare[n]),
        }
        v = out["lengths"][str(n)]
        v["ratio_cpu"] = v["events_per_s_cpu"] / v["bare_events_per_s_cpu"]
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m benchmarks.trace", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="100k and 200k events")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    r = run(args.quick, args.reps)
    print(f"load average {r['load_average'][0]:.2f}; medians of {r['reps']} runs; "
          f"target >= {TARGET_EVENTS_PER_S:,} events/s")
    for n, v in r["lengths"].items():
        print(f"{int(n):>9,} events ({v['file_mb']:.0f} MB): {v['events_per_s_wall']:>9,.0f} "
              f"events/s wall ({v['wall_s']:.2f} s), {v['events_per_s_cpu']:>9,.0f} events/s "
              f"CPU ({v['cpu_s']:.2f} s), peak RSS {v['maxrss_mb']:.1f} MB, "
              f"{v['live_objects']:,} objects live at the end, {v['violations']} violations; "
              f"bare-bones replay {v['bare_events_per_s_cpu']:,.0f} events/s CPU "
              f"(ratio {v['ratio_cpu']:.2f})")
    print(f"start-up (a process importing cli.main): {r['startup_cpu_s']:.2f} s CPU, included "
          f"above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
