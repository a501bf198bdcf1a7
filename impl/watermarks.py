"""Watermarks and lowmem_reserve as Linux 6.12.117 computes them at boot.

Sources: mm/page_alloc.c (calculate_min_free_kbytes, __setup_per_zone_wmarks,
setup_per_zone_lowmem_reserve), mm/khugepaged.c (set_recommended_min_free_kbytes).
nr_free_buffer_pages() at boot is taken as all managed lowmem (nothing is allocated yet);
the kernel subtracts the high watermarks, which are zero at that point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import isqrt
from typing import TYPE_CHECKING

from impl.machine import ZoneConfig
from spec.gfp import (
    KERNEL_MAX_NR_ZONES,
    MAX_NR_ZONES,
    ZONE_DEVICE,
    ZONE_DMA,
    ZONE_DMA32,
    ZONE_MOVABLE,
    ZONE_NORMAL,
)

if TYPE_CHECKING:
    from impl.machine import MachineConfig

SWAP_CLUSTER_MAX = 32
# enum zone_watermarks (include/linux/mmzone.h): indexes of zone->_watermark[]
WMARK_MIN, WMARK_LOW, WMARK_HIGH, WMARK_PROMO = 0, 1, 2, 3
WATERMARK_SCALE_FACTOR = 10  # vm.watermark_scale_factor default
MIGRATE_PCPTYPES = 3
# sysctl_lowmem_reserve_ratio[MAX_NR_ZONES]: DMA 256, DMA32 256, Normal 32, Movable 0, and
# Device 0 (no initializer); /proc/sys/vm/lowmem_reserve_ratio prints "256 256 32 0 0".
LOWMEM_RESERVE_RATIO = {ZONE_DMA: 256, ZONE_DMA32: 256, ZONE_NORMAL: 32, ZONE_MOVABLE: 0,
                        ZONE_DEVICE: 0}


@dataclass(frozen=True)
class ZoneWatermarks:
    """min, low, high, promo (pages) and lowmem_reserve[MAX_NR_ZONES] of one zone."""

    min: int
    low: int
    high: int
    promo: int
    lowmem_reserve: tuple[int, ...]


def calculate_min_free_kbytes(lowmem_kbytes: int) -> int:
    """clamp(int_sqrt(lowmem_kbytes * 16), 128, 262144)."""
    return max(128, min(262144, isqrt(lowmem_kbytes * 16)))


def recommended_min_free_kbytes(nr_zones: int, pageblock_nr_pages: int, lowmem_pages: int,
                                page_kb: int = 4) -> int:
    """khugepaged's floor: 2 pageblocks per zone plus 3x3 per zone, at most 5% of lowmem."""
    rec = pageblock_nr_pages * nr_zones * 2
    rec += pageblock_nr_pages * nr_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
    rec = min(rec, lowmem_pages // 20)
    return rec * page_kb


THP_MIN_RAM_PAGES = 512 << (20 - 12)  # totalram_pages() < 512 MiB: no THP by default


def min_free_kbytes_for(machine: MachineConfig) -> int:
    """The boot value of vm.min_free_kbytes for this machine."""
    if machine.min_free_kbytes is not None:
        return machine.min_free_kbytes
    lowmem = sum(z.managed for n in machine.nodes for z in n.zones if z.zone != ZONE_MOVABLE)
    mfk = calculate_min_free_kbytes(lowmem * 4)
    totalram = sum(z.managed for n in machine.nodes for z in n.zones)
    # mm/huge_memory.c hugepage_init(): below 512 MiB of RAM THP is switched off and khugepaged
    # never starts, so set_recommended_min_free_kbytes() never raises the floor.
    if machine.thp and totalram >= THP_MIN_RAM_PAGES:
        nr_zones = sum(1 for n in machine.nodes for z in n.zones
                       if z.zone <= ZONE_NORMAL and z.managed > 0)
        rec = recommended_min_free_kbytes(nr_zones, 1 << machine.pageblock_order, lowmem)
        mfk = max(mfk, rec)
    return mfk


def extend_lowmem_reserve(lowmem_reserve: Sequence[int],
                          nr_zones: int = KERNEL_MAX_NR_ZONES) -> tuple[int, ...]:
    """A lowmem_reserve[] padded to ``nr_zones`` entries: zeros up to MAX_NR_ZONES, then each
    column beyond (ZONE_DEVICE) repeats the ZONE_MOVABLE one, because ZONE_DEVICE never has
    managed pages, so setup_per_zone_lowmem_reserve()'s running sum stops growing there."""
    lr = tuple(lowmem_reserve) + (0,) * (MAX_NR_ZONES - len(lowmem_reserve))
    return lr + (lr[ZONE_MOVABLE],) * (nr_zones - len(lr))


def compute_zone_watermarks(machine: MachineConfig, nr_zones: int = MAX_NR_ZONES,
                            ) -> dict[tuple[int, int], ZoneWatermarks]:
    """Watermarks of every (nid, zone index); a zone's explicit ``min`` replaces the computed
    one and low/high follow from it with the kernel's gap formula.

    With ``nr_zones=KERNEL_MAX_NR_ZONES`` every node_zones[] slot of the pinned config is
    computed, populated or not, with lowmem_reserve arrays of that length: for_each_zone()
    walks empty zones too, so an empty ZONE_MOVABLE gets min = low = high = SWAP_CLUSTER_MAX
    (what /proc/zoneinfo prints). The default is the allocator's zones and arrays."""
    pages_min = min_free_kbytes_for(machine) >> 2
    lowmem_pages = sum(z.managed for n in machine.nodes for z in n.zones if z.zone != ZONE_MOVABLE)
    out: dict[tuple[int, int], ZoneWatermarks] = {}
    for node in machine.nodes:
        managed = [0] * nr_zones
        for z in node.zones:
            managed[z.zone] = z.managed
        slots = node.zones
        if nr_zones > MAX_NR_ZONES:
            by_idx = {z.zone: z for z in node.zones}
            # an unpopulated slot: no span, no present or managed pages
            slots = tuple(by_idx.get(i) or ZoneConfig(i, 0, 0, ()) for i in range(nr_zones))
        for z in slots:
            tmp = pages_min * z.managed // lowmem_pages if lowmem_pages else 0
            if z.zone == ZONE_MOVABLE:
                mn = max(SWAP_CLUSTER_MAX, min(128, z.managed // 1024))
            else:
                mn = tmp
            if z.min is not None:
                mn = tmp = z.min
            # __setup_per_zone_wmarks(): max(tmp >> 2, mult_frac(managed, scale, 10000))
            gap = max(tmp >> 2, z.managed * machine.watermark_scale_factor // 10000)
            if z.lowmem_reserve is not None:
                lr = extend_lowmem_reserve(z.lowmem_reserve, nr_zones)
            else:
                ratio = LOWMEM_RESERVE_RATIO[z.zone]
                acc = 0
                lrl = [0] * nr_zones
                for j in range(z.zone + 1, nr_zones):
                    acc += managed[j]
                    lrl[j] = acc // ratio if ratio and z.managed else 0
                lr = tuple(lrl)
            out[(node.nid, z.zone)] = ZoneWatermarks(mn, mn + gap, mn + 2 * gap, mn + 3 * gap, lr)
    return out
