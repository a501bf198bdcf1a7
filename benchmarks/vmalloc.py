"""vmalloc benchmarks (part of ``make bench``; ``python -m benchmarks.vmalloc`` alone).

* vmalloc(64 KiB) + vfree pairs per second on the default machine, 64 live areas, each step
  frees a random live area and allocates a new one (16 order-0 pages in one bulk call,
  alloc_pages_bulk, freed one by one as vfree's __free_page does, 16 PTEs, the range
  allocator, the lazy purge every ~1,900 frees).
* vmalloc_to_pfn lookups per second: random addresses inside the live areas (a page-table
  walk each).
* Each beside a bare-bones vmalloc written here (a bump pointer with exact-size free lists
  for addresses, a Python list of free pfns, a dict as the page table), run interleaved in
  the same process: the ratio is what the model's structure (the augmented free tree, the
  buddy allocator's pages, real 4-level page tables, the checks) costs over the plainest
  correct allocator.
* The cost per vmalloc(64 KiB)+vfree pair with 10 and with 100,000 live areas (one-page
  areas, every other one freed and purged, so the free tree also holds as many holes, too
  small for the request): the range allocator walks one tree path, so the two must be close.

Medians of repetitions; timings are reported, never asserted.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable

from benchmarks.figures import report
from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from impl.vmalloc import Vmalloc

SIZE = 64 * 1024
PAGE = 4096
LIVE = 64
STEPS = 3000
LOOKUPS = 50_000
REPS = 5
TARGET_PAIRS = 20_000
TARGET_LOOKUPS = 500_000


class BareVmalloc:
    """The plainest vmalloc: addresses from a bump pointer and exact-size free lists (with a
    guard page), pages popped from a list of free pfns, PTEs in a dict keyed by page."""

    def __init__(self, pages: int = 1 << 20) -> None:
        self.next = 0xFFFFC90000000000
        self.free_va: dict[int, list[int]] = {}
        self.free_pfns = list(range(pages))
        self.pt: dict[int, int] = {}
        self.areas: dict[int, tuple[int, list[int]]] = {}

    def vmalloc(self, size: int) -> int:
        n = (size + PAGE - 1) // PAGE
        lst = self.free_va.get(n)
        if lst:
            va = lst.pop()
        else:
            va = self.next
            self.next += (n + 1) * PAGE
        pfns = [self.free_pfns.pop() for _ in range(n)]
        for i, p in enumerate(pfns):
            self.pt[(va >> 12) + i] = p
        self.areas[va] = (n, pfns)
        return va

    def vfree(self, va: int) -> None:
        n, pfns = self.areas.pop(va)
        for i in range(n):
            del self.pt[(va >> 12) + i]
        self.free_pfns.extend(pfns)
        self.free_va.setdefault(n, []).append(va)

    def vmalloc_to_pfn(self, va: int) -> int | None:
        return self.pt.get(va >> 12)


def _pairs(alloc: Callable[[int], int | None], free: Callable[[int], None],
           victims: list[int]) -> tuple[float, float]:
    """Pairs per second of vfree(random live) + vmalloc(64 KiB), LIVE areas kept live: by the
    wall clock and by this process's CPU time (the helpers share 2 cores: under load the
    second is the closer estimate of an idle machine)."""
    live = [alloc(SIZE) for _ in range(LIVE)]
    t0, c0 = time.perf_counter(), time.process_time()
    for j in victims:
        a = live[j]
        assert a is not None
        free(a)
        live[j] = alloc(SIZE)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    for a in live:
        assert a is not None
        free(a)
    return len(victims) / dt, len(victims) / max(dc, 1e-9)


def _lookups(alloc: Callable[[int], int | None], free: Callable[[int], None],
             lookup: Callable[[int], int | None], rng: random.Random) -> tuple[float, float]:
    live = [alloc(SIZE) for _ in range(LIVE)]
    addrs = []
    for _ in range(LOOKUPS):
        a = live[rng.randrange(LIVE)]
        assert a is not None
        addrs.append(a + rng.randrange(SIZE))
    t0, c0 = time.perf_counter(), time.process_time()
    for a in addrs:
        lookup(a)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    for a in live:
        assert a is not None
        free(a)
    return LOOKUPS / dt, LOOKUPS / max(dc, 1e-9)


def bench_pairs(seed: int = 1) -> dict[str, float]:
    """vmalloc+vfree pairs and vmalloc_to_pfn lookups per second (wall clock, and CPU time as
    ``*_cpu``), beside the bare vmalloc."""
    rng = random.Random(seed)
    victims = [rng.randrange(LIVE) for _ in range(STEPS)]
    v = Vmalloc(PageAllocator(MachineConfig.default()))
    runs: dict[str, list[tuple[float, float]]] = {"vmalloc_pairs": [], "bare_vmalloc_pairs": [],
                                                  "vmalloc_to_pfn": [], "bare_lookups": []}
    for rep in range(REPS):
        runs["vmalloc_pairs"].append(_pairs(v.vmalloc, v.vfree, victims))
        b = BareVmalloc()
        runs["bare_vmalloc_pairs"].append(_pairs(b.vmalloc, b.vfree, victims))
        runs["vmalloc_to_pfn"].append(_lookups(v.vmalloc, v.vfree, v.vmalloc_to_pfn,
                                               random.Random(rep)))
        b = BareVmalloc()
        runs["bare_lookups"].append(_lookups(b.vmalloc, b.vfree, b.vmalloc_to_pfn,
                                             random.Random(rep)))
    out: dict[str, float] = {}
    for k, rs in runs.items():
        out[f"{k}_per_s"] = statistics.median(r[0] for r in rs)
        out[f"{k}_per_s_cpu"] = statistics.median(r[1] for r in rs)
    out["vmalloc_ratio"] = out["vmalloc_pairs_per_s"] / out["bare_vmalloc_pairs_per_s"]
    out["lookup_ratio"] = out["vmalloc_to_pfn_per_s"] / out["bare_lookups_per_s"]
    return out


def bench_live_areas(counts: tuple[int, ...] = (10, 100_000), seed: int = 2
                     ) -> dict[str, float]:
    """ns per vmalloc(64 KiB)+vfree pair with ``n`` live one-page areas and ``n`` free holes
    between them (2n allocated, every other one freed, the lazy list purged)."""
    out: dict[str, float] = {}
    for n in counts:
        v = Vmalloc(PageAllocator(MachineConfig.default()))
        areas = [v.vmalloc(PAGE) for _ in range(2 * n)]
        for a in areas[::2]:
            assert a is not None
            v.vfree(a)
        v.purge_vmap_area_lazy()
        rng = random.Random(seed)
        victims = [rng.randrange(8) for _ in range(STEPS)]
        times = [_pairs_small(v, victims) for _ in range(REPS)]
        out[f"ns_per_pair_{n}_live"] = statistics.median(1e9 / t[0] for t in times)
        out[f"ns_per_pair_{n}_live_cpu"] = statistics.median(1e9 / t[1] for t in times)
        out[f"live_areas_{n}"] = float(len(v.busy))
        out[f"free_blocks_{n}"] = float(v.free.count)
    lo, hi = counts
    out["ratio_live"] = out[f"ns_per_pair_{hi}_live"] / out[f"ns_per_pair_{lo}_live"]
    out["ratio_live_cpu"] = (out[f"ns_per_pair_{hi}_live_cpu"]
                             / out[f"ns_per_pair_{lo}_live_cpu"])
    return out


def _pairs_small(v: Vmalloc, victims: list[int]) -> tuple[float, float]:
    """Pairs per second (wall, CPU) with 8 areas of 64 KiB in rotation on top of the live
    ones."""
    live = [v.vmalloc(SIZE) for _ in range(8)]
    t0, c0 = time.perf_counter(), time.process_time()
    for j in victims:
        a = live[j]
        assert a is not None
        v.vfree(a)
        live[j] = v.vmalloc(SIZE)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    for a in live:
        assert a is not None
        v.vfree(a)
    return len(victims) / dt, len(victims) / max(dc, 1e-9)


def run(quick: bool = False) -> dict[str, float]:
    """Every vmalloc figure, as a flat dict (``make bench`` merges it into build/bench.json);
    ``quick``: 10 vs 10,000 live areas instead of 100,000."""
    return {**bench_pairs(), **bench_live_areas((10, 10_000) if quick else (10, 100_000))}


def main() -> int:
    return report("vmalloc", run(quick="--quick" in sys.argv))


if __name__ == "__main__":
    sys.exit(main())
