"""Judge-only cost per request: ``python -m benchmarks.judge``.

Records one session of the reference subject (in-process, ``oracle.inprocess.ReferenceSubject``)
driven by a fixed-seed workload of N requests (default 10,000) on the oracle's ``small``
machine, then replays the recorded (request, answer) pairs through a fresh
``oracle.judge.Judge`` several times: the median time per request is the judge's own cost,
subject excluded. Two workloads: ``mixed`` (pages, kmalloc, slab and vmalloc, strict, liveness
not judged) and ``pages`` (pages only, strict, liveness judged). Also printed: the reference
subject's own time per request while recording. Timings are reported, never asserted; the run
fails only if the judge reports a violation (the reference must pass).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from oracle.inprocess import ReferenceSubject
from oracle.judge import Judge
from oracle.machines import SMALL_HELLO

GFPS = ("GFP_KERNEL", "GFP_ATOMIC", "GFP_NOWAIT", "GFP_DMA", "GFP_KERNEL|__GFP_DMA",
        "GFP_KERNEL|__GFP_DMA32", "GFP_HIGHUSER_MOVABLE", "GFP_KERNEL|__GFP_THISNODE",
        "GFP_KERNEL|__GFP_NORETRY")
KGFPS = ("GFP_KERNEL", "GFP_ATOMIC", "GFP_DMA", "GFP_KERNEL_ACCOUNT", "GFP_KERNEL|__GFP_THISNODE")


def _pick(seq: Any, rng: random.Random) -> Any:
    return seq[rng.randrange(len(seq))]


def workload_request(j: Judge, rng: random.Random, kinds: tuple[str, ...], n: list[int]
                     ) -> dict[str, Any]:
    """One request of the benchmark workload, chosen on the judge's view; about 5% invalid."""
    kind = _pick(kinds, rng)
    where = {"nid": _pick((-1, -1, 0, 1), rng), "cpu": rng.randrange(4),
             "ctx": _pick(("process", "process", "atomic"), rng)}
    bad = rng.random() < 0.05
    if kind == "pages":
        blocks = j.live_blocks()
        if blocks and rng.random() < 0.45:
            pfn, order = _pick(blocks, rng)
            return {"op": "free_pages", "pfn": pfn + bad, "order": order}
        return {"op": "alloc_pages", "order": _pick((0, 0, 0, 1, 2, 3, 5, 9), rng),
                "gfp": _pick(GFPS, rng), **where}
    if kind == "kmalloc":
        live = j.live_kmalloc()
        if live and rng.random() < 0.45:
            return {"op": "kfree", "addr": hex(_pick(live, rng) + 8 * bad)}
        return {"op": "kmalloc", "size": _pick((0, 8, 24, 96, 192, 512, 4096, 8193, 70000), rng),
                "gfp": _pick(KGFPS, rng), **where}
    if kind == "vmalloc":
        live = j.live_vmalloc()
        if live and rng.random() < 0.45:
            return {"op": "vfree", "addr": hex(_pick(live, rng) + 4096 * bad)}
        return {"op": "vmalloc", "size": _pick((1, 4096, 10000, 40000), rng), "gfp": "GFP_KERNEL",
                "cpu": where["cpu"], "ctx": "atomic" if bad else "process"}
    caches = list(j.caches().values())
    x = rng.random()
    if not caches or x < 0.04:
        n[0] += 1
        return {"op": "kmem_cache_create", "name": f"bench{n[0]}",
                "size": _pick((16, 64, 200, 1000), rng), "align": _pick((0, 8, 64), rng)}
    c = _pick(caches, rng)
    if x < 0.55 or not len(c.live):
        return {"op": "kmem_cache_alloc", "name": c.name, "gfp": "GFP_KERNEL", **where}
    if x < 0.97:
        return {"op": "kmem_cache_free", "name": c.name, "addr": hex(_pick(c.live, rng))}
    return {"op": "kmem_cache_destroy", "name": c.name}


def record(n: int, kinds: tuple[str, ...], pages_only: bool, seed: int
           ) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], float]:
    """A judged session of the reference: the pairs, and the subject's time per request."""
    hello = {**SMALL_HELLO, "seq": 1}
    subject = ReferenceSubject()
    j = Judge(hello, strict=True, pages_only=pages_only or None)
    j.check_hello(subject.request(hello))
    rng = random.Random(seed)
    names = [0]
    pairs = []
    t_subject = 0.0
    for seq in range(2, n + 2):
        req = {**workload_request(j, rng, kinds, names), "seq": seq}
        t = time.perf_counter()
        ans = subject.request(req)
        t_subject += time.perf_counter() - t
        if j.observe(req, ans):
            raise SystemExit(f"the reference broke a rule: {j.violations[0]}")
        pairs.append((req, ans))
    return pairs, t_subject / n


def judge_cost(pairs: list[tuple[dict[str, Any], dict[str, Any]]], pages_only: bool,
               reps: int) -> list[float]:
    """Seconds per request of a fresh judge replaying ``pairs``, per repetition."""
    out = []
    for _ in range(reps):
        j = Judge({**SMALL_HELLO, "seq": 1}, strict=True, pages_only=pages_only or None)
        j.check_hello({"seq": 1, "ok": True, "features": ["pages", "kmalloc", "slab", "vmalloc"]})
        t = time.perf_counter()
        for req, ans in pairs:
            j.observe(req, ans)
        out.append((time.perf_counter() - t) / len(pairs))
        assert not j.violations
    return out


def calibration_ns(loops: int = 1_000_000) -> float:
    """ns per iteration of a ``dict.get`` loop: how fast this machine runs Python right now
    (about 48 ns on the idle 2-core sandbox), to read figures taken under load."""
    d = {"a": 1}
    t = time.perf_counter()
    for _ in range(loops):
        d.get("a")
    return (time.perf_counter() - t) / loops * 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    print(f"calibration: {calibration_ns():.0f} ns per dict.get loop iteration")
    for name, kinds, pages_only in (("mixed", ("pages", "kmalloc", "slab", "vmalloc"), False),
                                    ("pages", ("pages",), True)):
        pairs, subj = record(args.requests, kinds, pages_only, args.seed)
        costs = judge_cost(pairs, pages_only, args.reps)
        med = statistics.median(costs) * 1e6
        print(f"{name:6} {len(pairs)} requests: judge {med:.2f} µs/request (min "
              f"{min(costs) * 1e6:.2f}, max {max(costs) * 1e6:.2f}); reference subject "
              f"{subj * 1e6:.2f} µs/request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
