"""Boot one machine in this (fresh) process and print one JSON line: boot time and RSS.

Run by :mod:`benchmarks.run` as ``python -m benchmarks.boot_probe NAME`` so every measurement
starts from a clean interpreter. The allocator modules are imported and the MachineConfig is
built *before* the first VmRSS reading, so ``rss_delta_kib`` is what PageAllocator() itself
costs; ``rss_after_kib`` is the whole process (interpreter included).

RSS deltas depend on the C heap's state: a block malloc serves from already-resident heap
memory (glibc raises its mmap threshold after imports free large blocks) adds nothing to RSS.
So the probe also boots the machine a second time under tracemalloc and reports the bytes the
Python heap holds for it (``traced_kib``) and the peak during boot (``traced_peak_kib``):
those do not depend on the heap's history.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import tracemalloc

from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator


def proc_status_kib(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM), in KiB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m benchmarks.boot_probe MACHINE", file=sys.stderr)
        return 2
    machine = MachineConfig.named(argv[0])
    gc.collect()
    rss_before = proc_status_kib("VmRSS")
    t0 = time.perf_counter()
    alloc = PageAllocator(machine)
    boot_s = time.perf_counter() - t0
    rss_after = proc_status_kib("VmRSS")
    hwm_after = proc_status_kib("VmHWM")
    tracemalloc.start()
    second = PageAllocator(machine)
    traced, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del second
    print(json.dumps({
        "machine": argv[0],
        "boot_s": boot_s,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_delta_kib": rss_after - rss_before,
        "hwm_after_kib": hwm_after,
        "traced_kib": traced / 1024,
        "traced_peak_kib": traced_peak / 1024,
        "total_pages": machine.total_pages,
        "free_pages": alloc.nr_free_pages(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
