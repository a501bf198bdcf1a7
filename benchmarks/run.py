"""Benchmarks of the page allocator model: ``make bench`` / ``python -m benchmarks.run``.

0. Ratio: alloc_pages_node + free_pages_pfn pairs per second divided by the pairs per second
   of a bare-bones CPython buddy allocator (:class:`BareBuddy`, written below) running the same
   script in the same process, repetitions interleaved: what all the modelling costs.
1. Throughput: alloc_pages_node + free_pages_pfn pairs per second on the default machine.
2. Scale: boot time and RSS of 1/4/16 TiB machines, each booted in a fresh subprocess.
3. Per-operation cost at 1 GiB vs 1 TiB, interleaved repetitions, same workload and seed.
4. Cost per pair vs memory size (1 GiB .. 16 TiB), plotted to benchmarks/scale.png when
   matplotlib is importable.

Every figure is the median of at least 5 repetitions. Timings are reported, never asserted:
the exit status is 0 whatever the numbers. It is non-zero only when a run is invalid (an
allocation failed, or the free-page count did not come back to its boot value). Every figure
goes to ``build/bench.json`` (``--json`` moves it).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from impl.watermarks import WMARK_HIGH
from spec.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL, gfp_zone
from spec.layout import NUMA_NO_NODE, PAGE_SIZE

ROOT = Path(__file__).resolve().parent.parent
PLOT_PATH = Path(__file__).resolve().parent / "scale.png"
DEFAULT_SEED = 6_12_117
MAX_MIX_ORDER = 3  # orders 0..3, drawn uniformly

# targets
TARGET_PAIRS_PER_S = 200_000
TARGET_BOOT_S = 1.0
TARGET_RSS_MB = 200.0  # decimal megabytes, i.e. 200e6 bytes (stricter than MiB)
TARGET_COST_RATIO = 1.3
TARGET_BARE_RATIO = 1 / 3  # real pairs/s over the bare-bones loop's

SCALE_MACHINES = ("1gib", "1tib", "4tib", "16tib")
SECTIONS = ("ratio", "throughput", "scale", "per_op", "sweep", "slab", "trace", "vmalloc",
            "oracle")
SWEEP_MACHINES = ("1gib", "16gib", "256gib", "1tib", "4tib", "16tib")
PAIR_MACHINES = ("1gib", "1tib")


class BenchError(Exception):
    """The benchmark itself went wrong (a failed allocation, a leak): its figures are void."""


@dataclass(frozen=True)
class Settings:
    quick: bool
    seed: int
    reps: int  # repetitions of every timed figure (>= 5)
    steps: int  # timed alloc+free pairs per repetition
    warmup: int  # untimed pairs before the timed ones
    working_set: int  # live blocks kept allocated
    boot_reps: int  # fresh subprocesses per machine size


def make_settings(quick: bool, seed: int, reps: int | None) -> Settings:
    if quick:
        s = Settings(quick, seed, reps=5, steps=20_000, warmup=5_000, working_set=1000,
                     boot_reps=5)
    else:
        s = Settings(quick, seed, reps=7, steps=100_000, warmup=20_000, working_set=1000,
                     boot_reps=5)
    if reps is not None:
        s = Settings(s.quick, s.seed, max(5, reps), s.steps, s.warmup, s.working_set,
                     max(5, reps))
    return s


# --- workload -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Script:
    """Every random choice of one run, drawn up front so the timed loop does no RNG work.

    ``prefill`` builds the working set; step ``i`` allocates ``orders[i]`` on ``cpus[i]`` and
    frees live block ``victims[i]`` (replacing it with the new one)."""

    prefill_orders: list[int]
    prefill_cpus: list[int]
    orders: list[int]
    victims: list[int]
    cpus: list[int]


def make_script(seed: int, working_set: int, nsteps: int, cpus: Sequence[int]) -> Script:
    rng = random.Random(seed)
    return Script(
        prefill_orders=[rng.randint(0, MAX_MIX_ORDER) for _ in range(working_set)],
        prefill_cpus=[rng.choice(cpus) for _ in range(working_set)],
        orders=[rng.randint(0, MAX_MIX_ORDER) for _ in range(nsteps)],
        victims=[rng.randrange(working_set) for _ in range(nsteps)],
        cpus=[rng.choice(cpus) for _ in range(nsteps)],
    )


def _steps(a: PageAllocator, gfp: int, sc: Script, live_pfn: list[int], live_order: list[int],
           lo: int, hi: int) -> int:
    """Steps [lo, hi) of the script; returns the index of a failed allocation, or -1."""
    alloc = a.alloc_pages_node
    free = a.free_pages_pfn
    orders, victims, cpus = sc.orders, sc.victims, sc.cpus
    for i in range(lo, hi):
        order = orders[i]
        pfn = alloc(NUMA_NO_NODE, gfp, order, cpu=cpus[i])
        if pfn is None:
            return i
        j = victims[i]
        free(live_pfn[j], live_order[j])
        live_pfn[j] = pfn
        live_order[j] = order
    return -1


def run_workload(machine: MachineConfig, gfp: int, sc: Script, warmup: int) -> float:
    """Boot ``machine``, build the working set, run ``warmup`` untimed steps, then time the
    rest of the script. Returns ns per alloc+free pair. Checks afterwards that every page came
    back (free count equals its boot value) so a broken run cannot report a number."""
    return run_workload_timed(machine, gfp, sc, warmup)[0]


def run_workload_timed(machine: MachineConfig, gfp: int, sc: Script, warmup: int
                       ) -> tuple[float, float]:
    """:func:`run_workload`, returning (wall-clock, CPU-time) ns per pair: on a shared machine
    the process's CPU time is the steadier figure."""
    a = PageAllocator(machine)
    free0 = a.nr_free_pages()
    live_pfn: list[int] = []
    live_order: list[int] = []
    for order, cpu in zip(sc.prefill_orders, sc.prefill_cpus, strict=True):
        pfn = a.alloc_pages_node(NUMA_NO_NODE, gfp, order, cpu=cpu)
        if pfn is None:
            raise BenchError(f"{machine.name}: working-set allocation of order {order} failed")
        live_pfn.append(pfn)
        live_order.append(order)
    nsteps = len(sc.orders)
    if _steps(a, gfp, sc, live_pfn, live_order, 0, warmup) >= 0:
        raise BenchError(f"{machine.name}: an allocation failed during warm-up")
    gc.collect()
    c0 = time.thread_time_ns()
    t0 = time.perf_counter_ns()
    failed = _steps(a, gfp, sc, live_pfn, live_order, warmup, nsteps)
    elapsed = time.perf_counter_ns() - t0
    cpu = time.thread_time_ns() - c0
    if failed >= 0:
        raise BenchError(f"{machine.name}: allocation {failed} (order {sc.orders[failed]}) "
                         "failed: the working set does not fit")
    for pfn, order in zip(live_pfn, live_order, strict=True):
        a.free_pages_pfn(pfn, order)
    if a.nr_free_pages() != free0 or a.allocated:
        raise BenchError(f"{machine.name}: free pages {a.nr_free_pages()} != {free0} at boot "
                         f"after freeing everything ({len(a.allocated)} blocks still allocated)")
    return elapsed / (nsteps - warmup), cpu / (nsteps - warmup)


def working_set_fits(machine: MachineConfig, gfp: int, cpu: int, working_set: int) -> str:
    """Check that the worst case of the working set (every live block of order 3, plus the
    one in flight) stays above the high watermark of the zone the CPU allocates from, so no
    run ever enters the slow path by exhaustion; returns a one-line description."""
    a = PageAllocator(machine)
    nid = a.cpu_node[cpu]
    zone = a.zonelist(nid, int(gfp_zone(gfp)), False)[0]
    worst = (working_set + 1) << MAX_MIX_ORDER
    room = zone.free_pages - zone.wmark[WMARK_HIGH]
    if worst >= room:
        raise BenchError(f"{machine.name}: working set up to {worst} pages does not fit above "
                         f"the high watermark of node {nid} {zone.name} ({room} pages)")
    return (f"{machine.name}: working set <= {worst:,} pages, {room:,} pages above the high "
            f"watermark of node {nid} {zone.name} ({100 * worst / room:.1f}% used)")


# --- the bare-bones buddy allocator (the yardstick of figure 0) ---------------------------------
class BareBuddy:
    """The least a CPython buddy allocator can do: one zone, one free list per order (a dict
    used as an ordered set: ``popitem`` takes the most recently added block, like the kernel's
    list head), the order of every free head in one dict, split by halving and merge with the
    buddy ``pfn ^ (1 << order)``. No GFP, nodes, watermarks, migratetypes, statistics or checks.
    """

    __slots__ = ("free_area", "max_order", "nr_free", "order_of")

    def __init__(self, nr_pages: int, max_order: int) -> None:
        self.max_order = max_order
        self.free_area: list[dict[int, None]] = [{} for _ in range(max_order + 1)]
        self.order_of: dict[int, int] = {}
        step = 1 << max_order
        for pfn in range(0, nr_pages - step + 1, step):
            self.free_area[max_order][pfn] = None
            self.order_of[pfn] = max_order
        self.nr_free = nr_pages // step * step

    def alloc(self, order: int) -> int:
        """The first block of the smallest order >= ``order``, split; -1 if none."""
        free_area = self.free_area
        for cur in range(order, self.max_order + 1):
            area = free_area[cur]
            if area:
                pfn, _ = area.popitem()
                del self.order_of[pfn]
                while cur > order:
                    cur -= 1
                    half = pfn + (1 << cur)
                    free_area[cur][half] = None
                    self.order_of[half] = cur
                self.nr_free -= 1 << order
                return pfn
        return -1

    def free(self, pfn: int, order: int) -> None:
        """Merge with free buddies up to max_order, then put the block on its list."""
        order_of = self.order_of
        free_area = self.free_area
        self.nr_free += 1 << order
        while order < self.max_order:
            buddy = pfn ^ (1 << order)
            if order_of.get(buddy) != order:
                break
            del order_of[buddy]
            del free_area[order][buddy]
            pfn &= buddy
            order += 1
        free_area[order][pfn] = None
        order_of[pfn] = order


def _bare_steps(b: BareBuddy, sc: Script, live_pfn: list[int], live_order: list[int],
                lo: int, hi: int) -> int:
    """Steps [lo, hi) of the script on the bare allocator (the loop of :func:`_steps`)."""
    alloc = b.alloc
    free = b.free
    orders, victims = sc.orders, sc.victims
    for i in range(lo, hi):
        order = orders[i]
        pfn = alloc(order)
        if pfn < 0:
            return i
        j = victims[i]
        free(live_pfn[j], live_order[j])
        live_pfn[j] = pfn
        live_order[j] = order
    return -1


def run_bare(nr_pages: int, max_order: int, sc: Script, warmup: int) -> tuple[float, float]:
    """:func:`run_workload_timed` for :class:`BareBuddy`: (wall-clock, CPU-time) ns per
    alloc+free pair, with the same working set, warm-up and leak check."""
    b = BareBuddy(nr_pages, max_order)
    free0 = b.nr_free
    live_pfn: list[int] = []
    live_order: list[int] = []
    for order in sc.prefill_orders:
        pfn = b.alloc(order)
        if pfn < 0:
            raise BenchError("bare buddy: working-set allocation failed")
        live_pfn.append(pfn)
        live_order.append(order)
    nsteps = len(sc.orders)
    if _bare_steps(b, sc, live_pfn, live_order, 0, warmup) >= 0:
        raise BenchError("bare buddy: an allocation failed during warm-up")
    gc.collect()
    c0 = time.thread_time_ns()
    t0 = time.perf_counter_ns()
    failed = _bare_steps(b, sc, live_pfn, live_order, warmup, nsteps)
    elapsed = time.perf_counter_ns() - t0
    cpu = time.thread_time_ns() - c0
    if failed >= 0:
        raise BenchError(f"bare buddy: allocation {failed} failed")
    for pfn, order in zip(live_pfn, live_order, strict=True):
        b.free(pfn, order)
    if b.nr_free != free0 or len(b.order_of) != free0 >> max_order:
        raise BenchError(f"bare buddy: {b.nr_free} pages in {len(b.order_of)} blocks free "
                         f"after freeing everything, {free0} at start")
    return elapsed / (nsteps - warmup), cpu / (nsteps - warmup)


# --- helpers ------------------------------------------------------------------------------------
def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def spread(xs: Sequence[float]) -> str:
    """min..max relative to the median, as a +-% band."""
    m = median(xs)
    return f"-{100 * (m - min(xs)) / m:.1f}% / +{100 * (max(xs) - m) / m:.1f}%"


def status(ok: bool) -> str:
    return "[bold green]PASS[/]" if ok else "[bold red]MISS[/]"


def size_label(name: str) -> str:
    return name[:-3] + " " + name[-3:].replace("gib", "GiB").replace("tib", "TiB")


def count_label(n: int) -> str:
    """A page count in binary units: 262144 -> 256 Ki."""
    for shift, unit in ((30, "Gi"), (20, "Mi"), (10, "Ki")):
        if n >= 1 << shift:
            return f"{n / (1 << shift):,.4g} {unit}"
    return str(n)


def log(console: Console, msg: str) -> None:
    console.print(f"[dim]… {msg}[/]")


@dataclass
class SummaryRow:
    figure: str
    measured: str
    target: str
    verdict: str  # PASS, MISS or info

    def as_json(self) -> dict[str, str]:
        return {"figure": self.figure, "measured": self.measured, "target": self.target,
                "verdict": self.verdict}


# --- 0. the real allocator vs the bare-bones one --------------------------------------------------
def bench_ratio(console: Console, st: Settings, summary: list[SummaryRow]) -> dict[str, Any]:
    """GFP_KERNEL on cpu 0 of the default machine vs :class:`BareBuddy` over as many pages as
    the zone that serves it, same script, repetitions interleaved (order alternated) in this
    process. The ratio is real pairs/s / bare pairs/s, by the wall clock and by the process's
    CPU time (the steadier one when other processes share the cores)."""
    machine = MachineConfig.default()
    log(console, working_set_fits(machine, GFP_KERNEL, 0, st.working_set))
    a = PageAllocator(machine)
    zone = a.zonelist(a.cpu_node[0], int(gfp_zone(GFP_KERNEL)), False)[0]
    nr_pages, max_order = zone.free_pages, machine.max_order
    del a
    sc = make_script(st.seed, st.working_set, st.warmup + st.steps, [0])
    reps = st.reps if st.quick else st.reps + 2
    runs: dict[str, list[tuple[float, float]]] = {"real": [], "bare": []}
    for rep in range(reps):
        for k in range(2):
            if (k + rep) % 2 == 0:
                runs["real"].append(run_workload_timed(machine, GFP_KERNEL, sc, st.warmup))
            else:
                runs["bare"].append(run_bare(nr_pages, max_order, sc, st.warmup))
    table = Table(title=f"0. alloc_pages_node + free_pages_pfn vs a bare-bones CPython buddy "
                  f"loop (GFP_KERNEL, cpu 0, {st.working_set} live blocks, orders "
                  f"0-{MAX_MIX_ORDER}, {st.steps:,} pairs x {reps} interleaved reps)")
    for col in ("allocator", "clock", "pairs/s (median)", "ns/pair", "spread (min/max)",
                "ratio real/bare"):
        table.add_column(col, justify="left" if col in ("allocator", "clock") else "right")
    out: dict[str, Any] = {"bare_pages": nr_pages, "max_order": max_order, "reps": reps}
    for ci, clock in enumerate(("wall", "cpu")):
        real = [r[ci] for r in runs["real"]]
        bare = [r[ci] for r in runs["bare"]]
        real_rate, bare_rate = 1e9 / median(real), 1e9 / median(bare)
        ratio = real_rate / bare_rate
        paired = [b / r for r, b in zip(real, bare, strict=True)]
        ok = ratio >= TARGET_BARE_RATIO
        table.add_row("kmemspec PageAllocator", clock, f"{real_rate:,.0f}",
                      f"{median(real):,.0f}", spread(real),
                      f"{ratio:.3f} {status(ok)} (paired {median(paired):.3f})")
        table.add_row(f"BareBuddy ({nr_pages:,} pages)", clock, f"{bare_rate:,.0f}",
                      f"{median(bare):,.0f}", spread(bare), "")
        summary.append(SummaryRow(
            f"real / bare-bones buddy loop, pairs/s ({clock} clock)",
            f"{real_rate:,.0f} / {bare_rate:,.0f} = {ratio:.3f}", f">= {TARGET_BARE_RATIO:.3f}",
            "PASS" if ok else "MISS"))
        out[clock] = {"real_ns_per_pair": real, "bare_ns_per_pair": bare,
                      "median_real_pairs_per_s": real_rate,
                      "median_bare_pairs_per_s": bare_rate, "ratio_of_medians": ratio,
                      "median_paired_ratio": median(paired)}
    console.print(table)
    return out


# --- 1. throughput ------------------------------------------------------------------------------
def bench_throughput(console: Console, st: Settings, summary: list[SummaryRow]) -> list[
        dict[str, Any]]:
    machine = MachineConfig.default()
    node_cpus = [n.cpus[0] for n in machine.nodes]
    variants: list[tuple[str, int, list[int]]] = [
        ("GFP_KERNEL, cpu 0 (node 0)", GFP_KERNEL, [node_cpus[0]]),
        ("GFP_HIGHUSER_MOVABLE, cpu 0 (node 0)", GFP_HIGHUSER_MOVABLE, [node_cpus[0]]),
        (f"GFP_KERNEL, random cpu of {'+'.join(map(str, node_cpus))} (all nodes)",
         GFP_KERNEL, node_cpus),
    ]
    scripts = [make_script(st.seed, st.working_set, st.warmup + st.steps, cpus)
               for _, _, cpus in variants]
    checks = dict.fromkeys(working_set_fits(machine, gfp, cpu, st.working_set)
                           for _, gfp, cpus in variants for cpu in cpus)
    for line in checks:
        log(console, line)
    samples: list[list[float]] = [[] for _ in variants]
    for rep in range(st.reps):
        # interleave the variants, rotating the order, to spread drift over all of them
        for k in range(len(variants)):
            v = (k + rep) % len(variants)
            samples[v].append(run_workload(machine, variants[v][1], scripts[v], st.warmup))
    base = 1e9 / median(samples[0])
    table = Table(title=f"1. Throughput on the {machine.name} machine ({len(machine.nodes)} "
                  f"nodes, {machine.total_pages * PAGE_SIZE / (1 << 30):.1f} GiB present), "
                  f"{st.working_set} live blocks, orders 0-{MAX_MIX_ORDER}, "
                  f"{st.steps:,} pairs x {st.reps} reps")
    for col in ("workload", "pairs/s (median)", "ns/pair", "spread (min/max)", "vs GFP_KERNEL",
                "target", "status"):
        table.add_column(col, justify="left" if col == "workload" else "right")
    out: list[dict[str, Any]] = []
    for (label, gfp, cpus), ns in zip(variants, samples, strict=True):
        rate = 1e9 / median(ns)
        ok = rate >= TARGET_PAIRS_PER_S
        table.add_row(label, f"{rate:,.0f}", f"{median(ns):,.0f}", spread(ns),
                      f"{rate / base:.2f}x", f">= {TARGET_PAIRS_PER_S:,}", status(ok))
        summary.append(SummaryRow(f"throughput: {label}", f"{rate:,.0f} pairs/s",
                                  f">= {TARGET_PAIRS_PER_S:,} pairs/s", "PASS" if ok else "MISS"))
        out.append({"workload": label, "gfp": gfp, "cpus": cpus, "ns_per_pair": ns,
                    "median_ns_per_pair": median(ns), "median_pairs_per_s": rate,
                    "ratio_vs_gfp_kernel": rate / base})
    console.print(table)
    return out


# --- 2. scale: boot time and RSS ----------------------------------------------------------------
def boot_probe(name: str) -> dict[str, Any]:
    """Boot ``name`` in a fresh interpreter (benchmarks/boot_probe.py); its JSON line."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.boot_probe", name], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise BenchError(f"boot probe {name} failed (exit {proc.returncode}): "
                         f"{proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def bench_scale(console: Console, st: Settings, summary: list[SummaryRow]) -> list[
        dict[str, Any]]:
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in SCALE_MACHINES}
    for rep in range(st.boot_reps):
        for k in range(len(SCALE_MACHINES)):
            name = SCALE_MACHINES[(k + rep) % len(SCALE_MACHINES)]
            runs[name].append(boot_probe(name))
    table = Table(title=f"2. Scale: boot in a fresh process, median of {st.boot_reps} processes"
                  " (RSS: /proc/self/status; heap: tracemalloc; MB = 10^6 bytes)")
    for col in ("machine", "pages", "boot ms", "boot spread", "vs 1 TiB", "RSS before",
                "RSS after", "RSS delta", "peak RSS", "heap held", "status"):
        table.add_column(col, justify="left" if col == "machine" else "right")
    keys = ("boot_s", "rss_before_kib", "rss_after_kib", "rss_delta_kib", "hwm_after_kib",
            "traced_kib", "traced_peak_kib")
    med = {name: {k: median([float(r[k]) for r in rs]) for k in keys}
           for name, rs in runs.items()}
    ref = med["1tib"]["boot_s"]
    out: list[dict[str, Any]] = []
    for name, rs in runs.items():
        m = med[name]
        mb = {k: m[k] * 1024 / 1e6 for k in keys if k.endswith("_kib")}
        boot_ms = m["boot_s"] * 1e3
        if name == "1tib":
            boot_ok = m["boot_s"] < TARGET_BOOT_S
            rss_ok = mb["hwm_after_kib"] < TARGET_RSS_MB and mb["rss_after_kib"] < TARGET_RSS_MB
            verdict = f"{status(boot_ok)} {status(rss_ok)}"
            summary.append(SummaryRow("1 TiB boot time", f"{boot_ms:.2f} ms",
                                      f"< {TARGET_BOOT_S:g} s", "PASS" if boot_ok else "MISS"))
            summary.append(SummaryRow(
                "1 TiB RSS of the process after boot (peak)",
                f"{mb['rss_after_kib']:.1f} MB ({mb['hwm_after_kib']:.1f} MB), allocator "
                f"+{mb['rss_delta_kib']:.2f} MB",
                f"< {TARGET_RSS_MB:g} MB", "PASS" if rss_ok else "MISS"))
        else:
            verdict = "[dim]info[/]"
            if name != "1gib":
                summary.append(SummaryRow(
                    f"{size_label(name)} boot; RSS after boot; heap (for the record)",
                    f"{boot_ms:.2f} ms; {mb['rss_after_kib']:.1f} MB; "
                    f"{mb['traced_kib']:.2f} MB", "-", "info"))
        table.add_row(size_label(name), count_label(rs[0]["total_pages"]),
                      f"{boot_ms:.2f}", spread([float(r["boot_s"]) for r in rs]),
                      f"{m['boot_s'] / ref:.2f}x", f"{mb['rss_before_kib']:.1f}",
                      f"{mb['rss_after_kib']:.1f}", f"{mb['rss_delta_kib']:+.2f}",
                      f"{mb['hwm_after_kib']:.1f}", f"{mb['traced_kib']:.2f}", verdict)
        out.append({"machine": name, "runs": rs, "median": m})
    console.print(table)
    return out


# --- 3. per-operation cost, 1 GiB vs 1 TiB ------------------------------------------------------
def interleaved_costs(st: Settings, names: Sequence[str], reps: int) -> dict[str, list[float]]:
    """ns per pair of the same GFP_KERNEL cpu-0 script on each machine, repetitions
    interleaved and the machine order rotated every repetition to cancel drift."""
    machines = {n: MachineConfig.named(n) for n in names}
    sc = make_script(st.seed, st.working_set, st.warmup + st.steps, [0])
    for m in machines.values():
        working_set_fits(m, GFP_KERNEL, 0, st.working_set)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(reps):
        for k in range(len(names)):
            n = names[(k + rep) % len(names)]
            samples[n].append(run_workload(machines[n], GFP_KERNEL, sc, st.warmup))
    return samples


def bench_per_op(console: Console, st: Settings, summary: list[SummaryRow]) -> dict[str, Any]:
    small, big = PAIR_MACHINES
    reps = st.reps if st.quick else st.reps + 2
    log(console, working_set_fits(MachineConfig.named(small), GFP_KERNEL, 0, st.working_set))
    samples = interleaved_costs(st, PAIR_MACHINES, reps)
    paired = [b / s for s, b in zip(samples[small], samples[big], strict=True)]
    ratio = median(samples[big]) / median(samples[small])
    ok = ratio <= TARGET_COST_RATIO
    table = Table(title=f"3. Cost per alloc+free pair, {size_label(small)} vs {size_label(big)}"
                  f" (GFP_KERNEL, cpu 0, {st.working_set} live blocks, {st.steps:,} pairs x "
                  f"{reps} interleaved reps)")
    for col in ("machine", "ns/pair (median)", "spread (min/max)", "pairs/s", "ratio"):
        table.add_column(col, justify="left" if col == "machine" else "right")
    for n in PAIR_MACHINES:
        table.add_row(size_label(n), f"{median(samples[n]):,.0f}", spread(samples[n]),
                      f"{1e9 / median(samples[n]):,.0f}",
                      "1.00x" if n == small else f"{ratio:.3f}x")
    table.add_row("[italic]median of per-rep ratios[/]", "", "", "",
                  f"{median(paired):.3f}x")
    table.add_row("[italic]target[/]", "", "", "",
                  f"<= {TARGET_COST_RATIO}x {status(ok)}")
    console.print(table)
    summary.append(SummaryRow(
        f"cost/pair {size_label(big)} vs {size_label(small)}",
        f"{median(samples[big]):,.0f} / {median(samples[small]):,.0f} ns = {ratio:.3f}x",
        f"<= {TARGET_COST_RATIO}x", "PASS" if ok else "MISS"))
    return {"machines": list(PAIR_MACHINES), "ns_per_pair": samples,
            "median_ns_per_pair": {n: median(v) for n, v in samples.items()},
            "ratio_of_medians": ratio, "median_paired_ratio": median(paired)}


# --- 4. cost vs memory size (and the plot) ------------------------------------------------------
def bench_sweep(console: Console, st: Settings, summary: list[SummaryRow]) -> dict[str, Any]:
    samples = interleaved_costs(st, SWEEP_MACHINES, st.reps)
    ref = median(samples[SWEEP_MACHINES[0]])
    table = Table(title=f"4. Cost per pair vs memory size (same script, {st.reps} interleaved "
                  "reps)")
    for col in ("machine", "pages", "ns/pair (median)", "spread (min/max)", "vs 1 GiB"):
        table.add_column(col, justify="left" if col == "machine" else "right")
    for n in SWEEP_MACHINES:
        table.add_row(size_label(n), count_label(MachineConfig.named(n).total_pages),
                      f"{median(samples[n]):,.0f}", spread(samples[n]),
                      f"{median(samples[n]) / ref:.3f}x")
    console.print(table)
    worst = max(SWEEP_MACHINES, key=lambda n: median(samples[n]))
    summary.append(SummaryRow("cost/pair, worst size 1 GiB..16 TiB vs 1 GiB",
                              f"{size_label(worst)}: {median(samples[worst]) / ref:.3f}x",
                              "-", "info"))
    plotted = plot_sweep(samples)
    if plotted:
        console.print(f"plot written to {PLOT_PATH.relative_to(ROOT)}")
    else:
        console.print("[yellow]matplotlib is not installed: plot skipped[/]")
    return {"machines": list(SWEEP_MACHINES), "ns_per_pair": samples,
            "median_ns_per_pair": {n: median(v) for n, v in samples.items()},
            "plot": str(PLOT_PATH) if plotted else None}


def plot_sweep(samples: dict[str, list[float]]) -> bool:
    """benchmarks/scale.png: median and min..max of ns/pair vs memory size; False (and no
    file) when matplotlib is not importable."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    mpl: Any = importlib.import_module("matplotlib")
    mpl.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")
    names = list(samples)
    gib = [MachineConfig.named(n).total_pages * PAGE_SIZE / (1 << 30) for n in names]
    med = [median(samples[n]) for n in names]
    lo = [m - min(samples[n]) for m, n in zip(med, names, strict=True)]
    hi = [max(samples[n]) - m for m, n in zip(med, names, strict=True)]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.errorbar(gib, med, yerr=[lo, hi], marker="o", capsize=3)
    ax.set_xscale("log", base=2)
    ax.set_xticks(gib, [size_label(n) for n in names])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("memory")
    ax.set_ylabel("ns per alloc+free pair (median, min..max)")
    ax.set_title("kmemspec page allocator: cost per operation vs memory size")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(PLOT_PATH, dpi=120)
    plt.close(fig)
    return True


# --- driver -------------------------------------------------------------------------------------
# --- 6. slab caches and kmalloc (benchmarks/slab.py) ----------------------------------------------
TARGET_KMALLOC_PAIRS = 150_000
TARGET_CACHE_PAIRS = 250_000


def bench_slab(console: Console, st: Settings, summary: list[SummaryRow]) -> dict[str, Any]:
    """kmalloc/kfree and kmem_cache pairs per second beside a bare-bones slab allocator, and
    the cost per pair with 10 vs 10,000 live slabs (benchmarks/slab.py)."""
    from benchmarks import slab

    log(console, "slab: kmalloc/kfree and kmem_cache pairs vs a bare slab allocator")
    r = slab.run()
    summary.append(SummaryRow(
        "kmalloc+kfree pairs/s (8..8192 bytes, 1000 live)", f"{r['kmalloc_pairs_per_s']:,.0f} "
        f"({r['kmalloc_ratio']:.2f} of bare {r['bare_kmalloc_pairs_per_s']:,.0f})",
        f">= {TARGET_KMALLOC_PAIRS:,}",
        "PASS" if r["kmalloc_pairs_per_s"] >= TARGET_KMALLOC_PAIRS else "MISS"))
    summary.append(SummaryRow(
        "kmem_cache_alloc+free pairs/s (one cache)", f"{r['kmem_cache_pairs_per_s']:,.0f} "
        f"({r['kmem_cache_ratio']:.2f} of bare {r['bare_cache_pairs_per_s']:,.0f})",
        f">= {TARGET_CACHE_PAIRS:,}",
        "PASS" if r["kmem_cache_pairs_per_s"] >= TARGET_CACHE_PAIRS else "MISS"))
    summary.append(SummaryRow(
        "cost per cache pair, 10,000 vs 10 live slabs",
        f"{r['ns_per_pair_10000_slabs']:,.0f} vs {r['ns_per_pair_10_slabs']:,.0f} ns "
        f"({r['ratio_10000_vs_10']:.2f}x)", "flat", "info"))
    return r


# --- 6b. vmalloc (benchmarks/vmalloc.py) ----------------------------------------------------
def bench_vmalloc(console: Console, st: Settings, summary: list[SummaryRow]) -> dict[str, Any]:
    """vmalloc(64 KiB)+vfree pairs and vmalloc_to_pfn lookups per second beside a bare-bones
    vmalloc, and the cost per pair with 10 vs 100,000 live areas (benchmarks/vmalloc.py)."""
    from benchmarks import vmalloc

    log(console, "vmalloc: vmalloc+vfree pairs and lookups vs a bare vmalloc, live areas")
    r = vmalloc.run(quick=st.quick)
    summary.append(SummaryRow(
        "vmalloc(64 KiB)+vfree pairs/s, wall / CPU time (64 live areas)",
        f"{r['vmalloc_pairs_per_s']:,.0f} / {r['vmalloc_pairs_per_s_cpu']:,.0f} "
        f"({r['vmalloc_ratio']:.3f} of bare {r['bare_vmalloc_pairs_per_s']:,.0f})",
        f">= {vmalloc.TARGET_PAIRS:,}",
        "PASS" if r["vmalloc_pairs_per_s"] >= vmalloc.TARGET_PAIRS else "MISS"))
    summary.append(SummaryRow(
        "vmalloc_to_pfn lookups/s, wall / CPU time",
        f"{r['vmalloc_to_pfn_per_s']:,.0f} / {r['vmalloc_to_pfn_per_s_cpu']:,.0f} "
        f"({r['lookup_ratio']:.3f} of bare {r['bare_lookups_per_s']:,.0f})",
        f">= {vmalloc.TARGET_LOOKUPS:,}",
        "PASS" if r["vmalloc_to_pfn_per_s"] >= vmalloc.TARGET_LOOKUPS else "MISS"))
    hi = max(int(k.split("_")[3]) for k in r
             if k.startswith("ns_per_pair_") and k.endswith("_live"))
    summary.append(SummaryRow(
        f"cost per vmalloc pair, {hi:,} vs 10 live areas (CPU time)",
        f"{r[f'ns_per_pair_{hi}_live_cpu']:,.0f} vs {r['ns_per_pair_10_live_cpu']:,.0f} ns "
        f"({r['ratio_live_cpu']:.2f}x)", "flat", "info"))
    return r


# --- 7. the trace checker (benchmarks/trace.py) ---------------------------------------------------
def bench_trace(console: Console, st: Settings, summary: list[SummaryRow]) -> dict[str, Any]:
    """kmemspec check-trace on model-made traces of two lengths: events/s, peak memory."""
    from benchmarks import trace

    log(console, "trace: kmemspec check-trace on generated traces (whole command)")
    r = trace.run(quick=st.quick)
    for n, v in r["lengths"].items():
        summary.append(SummaryRow(
            f"check-trace events/s, {int(n):,} events (wall / CPU)",
            f"{v['events_per_s_wall']:,.0f} / {v['events_per_s_cpu']:,.0f} ({v['ratio_cpu']:.2f} "
            f"of a bare-bones replay's {v['bare_events_per_s_cpu']:,.0f}), peak RSS "
            f"{v['maxrss_mb']:.0f} MB", f">= {trace.TARGET_EVENTS_PER_S:,}",
            "PASS" if v["events_per_s_cpu"] >= trace.TARGET_EVENTS_PER_S else "MISS"))
    return r


# --- 8. the oracle (benchmarks/oracle.py) -------------------------------------------------------
def bench_oracle(console: Console, st: Settings, summary: list[SummaryRow]) -> dict[str, Any]:
    """Checked requests/s in-process and through pipes; time to shrink a late violation."""
    from benchmarks import oracle

    log(console, "oracle: checked requests/s (in-process, subprocess), shrinking a violation")
    r = oracle.run(quick=st.quick)
    summary.append(SummaryRow(
        "oracle in-process checked requests/s (wall / CPU; oracle alone)",
        f"{r['inprocess_per_s_wall']:,.0f} / {r['inprocess_per_s_cpu']:,.0f}; "
        f"{r['inprocess_oracle_only_per_s']:,.0f}", f">= {oracle.TARGET_INPROCESS:,}",
        "PASS" if r["inprocess_per_s_cpu"] >= oracle.TARGET_INPROCESS else "MISS"))
    summary.append(SummaryRow(
        f"oracle subprocess checked requests/s, {r['subject']} (wall / CPU)",
        f"{r['subprocess_per_s_wall']:,.0f} / {r['subprocess_per_s_cpu']:,.0f} (pipes alone "
        f"{r['transport_only_per_s']:,.0f})", f">= {oracle.TARGET_SUBPROCESS:,}",
        "PASS" if r["subprocess_per_s_wall"] >= oracle.TARGET_SUBPROCESS else "MISS"))
    m = r["shrink_median"]
    summary.append(SummaryRow(
        f"oracle: shrink a violation found after {m['found_after_requests']:,.0f} requests",
        f"{m['total_shrink_seconds']:.1f} s to {m['ddmin_length']:.0f} requests (from "
        f"{m['first_length']:.0f})", f"< {oracle.TARGET_SHRINK_S:.0f} s",
        "PASS" if m["total_shrink_seconds"] < oracle.TARGET_SHRINK_S else "MISS"))
    return r


def print_summary(console: Console, summary: list[SummaryRow], wall_s: float) -> None:
    table = Table(title=f"Summary (wall time {wall_s:.1f} s; timings are reported, not asserted)")
    for col in ("figure", "measured", "target", "status"):
        table.add_column(col, justify="left" if col in ("figure", "measured") else "right")
    for r in summary:
        verdict = status(r.verdict == "PASS") if r.verdict in ("PASS", "MISS") else "[dim]info[/]"
        table.add_row(r.figure, r.measured, r.target, verdict)
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split(
        "\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="short run (about 1 min)")
    ap.add_argument("--json", metavar="PATH", type=Path, default=ROOT / "build" / "bench.json",
                    help="where to write the results as JSON (default: build/bench.json)")
    ap.add_argument("--only", metavar="SECTION", action="append", choices=SECTIONS,
                    help=f"run only this section (repeatable): {', '.join(SECTIONS)}")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="workload seed")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per figure (min 5)")
    args = ap.parse_args(argv)
    st = make_settings(args.quick, args.seed, args.reps)
    console = Console(width=None if sys.stdout.isatty() else 140, highlight=False)
    t_start = time.perf_counter()
    load = os.getloadavg()
    console.print(f"[bold]kmemspec benchmarks[/] ({'quick' if st.quick else 'full'}): "
                  f"Python {platform.python_version()} on {platform.machine()}, "
                  f"{os.cpu_count()} CPUs, load average {load[0]:.2f}, seed {st.seed}")
    summary: list[SummaryRow] = []
    results: dict[str, Any] = {}
    sections = {"ratio": bench_ratio, "throughput": bench_throughput, "scale": bench_scale,
                "per_op": bench_per_op, "sweep": bench_sweep, "slab": bench_slab,
                "trace": bench_trace, "vmalloc": bench_vmalloc, "oracle": bench_oracle}
    try:
        for name, fn in sections.items():
            if not args.only or name in args.only:
                results[name] = fn(console, st, summary)
    except BenchError as e:
        console.print(f"[bold red]benchmark invalid:[/] {e}")
        return 1
    wall = time.perf_counter() - t_start
    print_summary(console, summary, wall)
    doc = {
        "meta": {"quick": st.quick, "seed": st.seed, "reps": st.reps, "steps": st.steps,
                 "warmup": st.warmup, "working_set": st.working_set,
                 "boot_reps": st.boot_reps, "python": platform.python_version(),
                 "machine": platform.machine(), "cpus": os.cpu_count(),
                 "loadavg_start": load, "loadavg_end": os.getloadavg(),
                 "wall_s": wall},
        "targets": {"pairs_per_s": TARGET_PAIRS_PER_S, "boot_s": TARGET_BOOT_S,
                    "rss_mb": TARGET_RSS_MB, "cost_ratio": TARGET_COST_RATIO,
                    "bare_ratio": TARGET_BARE_RATIO},
        "sections": list(results),
        **results,
        "summary": [r.as_json() for r in summary],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    console.print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
