"""Slab and kmalloc benchmarks (part of ``make bench``; ``python -m benchmarks.slab`` alone).

* kmalloc + kfree pairs per second: random sizes 8..8192 bytes, 1000 live objects, each step
  frees a random live object and allocates a new one (GFP_KERNEL, default machine).
* kmem_cache_alloc + kmem_cache_free pairs per second on one 256-byte cache, same pattern.
* Each beside a bare-bones Python slab allocator written here (a dict of free object indices
  per slab, a list of partial slabs per size class), run interleaved in the same process:
  the ratio is what the model's SLUB structure (CPU slab, CPU partial list, node partial
  lists, per-object checks) costs over the plainest correct slab allocator.
* Per-operation cost with 10 versus 10,000 live slabs (one cache, its slabs kept alive by
  one object each): SLUB's paths never walk all slabs, so the two must be close.

Medians of repetitions; timings are reported, never asserted.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

from benchmarks.figures import report
from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from impl.slab_common import SlabAllocator
from spec.gfp import GFP_KERNEL
from spec.slab import KMALLOC_CLASSES

STEPS = 50_000
LIVE = 1000
REPS = 5


class BareSlab:
    """The plainest slab allocator: per size class, slabs of 4 KiB (or one object) with a
    dict of free indices; a list of slabs with free objects; new slabs from a counter."""

    def __init__(self) -> None:
        self.partial: dict[int, list[int]] = {c: [] for c in KMALLOC_CLASSES}
        self.free: dict[int, dict[int, None]] = {}  # slab id -> free object indices
        self.size_of: dict[int, int] = {}
        self.next_slab = 0

    def alloc(self, size: int) -> int:
        c = next(k for k in KMALLOC_CLASSES if k >= size)
        lst = self.partial[c]
        if not lst:
            sid = self.next_slab
            self.next_slab += 1
            n = max(1, 4096 // c)
            self.free[sid] = dict.fromkeys(range(n))
            self.size_of[sid] = c
            lst.append(sid)
        sid = lst[-1]
        fr = self.free[sid]
        idx = next(iter(fr))
        del fr[idx]
        if not fr:
            lst.pop()
        return sid << 20 | idx

    def free_obj(self, obj: int) -> None:
        sid, idx = obj >> 20, obj & 0xFFFFF
        fr = self.free[sid]
        if idx in fr:
            raise ValueError("double free")
        if not fr:
            self.partial[self.size_of[sid]].append(sid)
        fr[idx] = None


def _alloc_256(b: BareSlab, _size: int) -> int:
    return b.alloc(256)


def _pairs(alloc: Callable[[int], int | None], free: Callable[[int], None], sizes: list[int],
           victims: list[int]) -> float:
    """Pairs per second of free(random live) + alloc(next size), LIVE objects kept live."""
    live = [alloc(s) for s in sizes[:LIVE]]
    t0 = time.perf_counter()
    for i in range(STEPS):
        j = victims[i]
        obj = live[j]
        assert obj is not None
        free(obj)
        live[j] = alloc(sizes[i])
    dt = time.perf_counter() - t0
    for obj in live:
        assert obj is not None
        free(obj)
    return STEPS / dt


def bench_kmalloc(seed: int = 1) -> dict[str, float]:
    """kmalloc/kfree and kmem_cache pairs per second, with the bare allocator's beside them."""
    rng = random.Random(seed)
    sizes = [rng.randint(8, 8192) for _ in range(STEPS + LIVE)]
    victims = [rng.randrange(LIVE) for _ in range(STEPS)]
    real, bare, cache, bare_cache = [], [], [], []
    sa = SlabAllocator(PageAllocator(MachineConfig.default()))
    s = sa.kmem_cache_create("bench", 256)
    for _ in range(REPS):
        real.append(_pairs(lambda n: sa.kmalloc(n, GFP_KERNEL), sa.kfree, sizes, victims))
        b = BareSlab()
        bare.append(_pairs(b.alloc, b.free_obj, sizes, victims))
        cache.append(_pairs(lambda n: sa.kmem_cache_alloc(s, GFP_KERNEL),
                            lambda o: sa.kmem_cache_free(s, o), sizes, victims))
        bc = BareSlab()
        bare_cache.append(_pairs(partial(_alloc_256, bc), bc.free_obj, sizes, victims))
    out = {"kmalloc_pairs_per_s": statistics.median(real),
           "bare_kmalloc_pairs_per_s": statistics.median(bare),
           "kmem_cache_pairs_per_s": statistics.median(cache),
           "bare_cache_pairs_per_s": statistics.median(bare_cache)}
    out["kmalloc_ratio"] = out["kmalloc_pairs_per_s"] / out["bare_kmalloc_pairs_per_s"]
    out["kmem_cache_ratio"] = out["kmem_cache_pairs_per_s"] / out["bare_cache_pairs_per_s"]
    return out


def bench_slab_count(seed: int = 2) -> dict[str, float]:
    """ns per kmem_cache_alloc+free pair with 10 and with 10,000 live slabs of one cache."""
    out: dict[str, float] = {}
    for nslabs in (10, 10_000):
        sa = SlabAllocator(PageAllocator(MachineConfig.default()))
        s = sa.kmem_cache_create("many", 2048)  # 16 objects a slab at 8 CPUs
        keep = []
        per = s.oo_objects
        objs = [sa.kmem_cache_alloc(s, GFP_KERNEL) for _ in range(nslabs * per)]
        for k, o in enumerate(objs):  # keep one object per slab: every slab stays live
            assert o is not None
            if k % per:
                sa.kmem_cache_free(s, o)
            else:
                keep.append(o)
        rng = random.Random(seed)
        times = []
        for _ in range(REPS):
            live = [sa.kmem_cache_alloc(s, GFP_KERNEL) for _ in range(LIVE)]
            t0 = time.perf_counter()
            for _ in range(STEPS):
                j = rng.randrange(LIVE)
                o = live[j]
                assert o is not None
                sa.kmem_cache_free(s, o)
                live[j] = sa.kmem_cache_alloc(s, GFP_KERNEL)
            times.append((time.perf_counter() - t0) / STEPS * 1e9)
            for o in live:
                assert o is not None
                sa.kmem_cache_free(s, o)
        out[f"ns_per_pair_{nslabs}_slabs"] = statistics.median(times)
        out[f"live_slabs_{nslabs}"] = float(len(s.slabs))
    out["ratio_10000_vs_10"] = out["ns_per_pair_10000_slabs"] / out["ns_per_pair_10_slabs"]
    return out


def run() -> dict[str, float]:
    """Every slab figure, as a flat dict (``make bench`` merges it into build/bench.json)."""
    return {**bench_kmalloc(), **bench_slab_count()}


def main() -> int:
    return report("slab", run())


if __name__ == "__main__":
    sys.exit(main())
