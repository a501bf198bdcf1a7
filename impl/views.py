"""The /proc and sysfs views of the page allocator, byte for byte in Linux 6.12.117's formats.

Each function takes a booted :class:`impl.page_alloc.PageAllocator` and returns the text the
kernel would print, so that a scenario's output can be diffed against a real machine's files.
Sources: mm/vmstat.c (frag_show_print, pagetypeinfo_show and its helpers, zoneinfo_show_print)
and drivers/base/node.c (node_read_numastat).

What the model does not have is left out, never invented: per-CPU pagesets (the model has no
pcp lists), and every vm stat item other than those named in each function's docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from impl.page_alloc import PageAllocator, Zone
from spec.gfp import MAX_NR_ZONES, MIGRATE_TYPES, MIGRATETYPE_NAMES, ZONE_NAMES

# pagetypeinfo_showfree_print() stops walking a free list at this many entries.
FREELIST_WALK_CAP = 100000
# SECTION_SIZE_BITS on x86-64: memory is onlined in 128 MiB sections; pfn_to_online_page()
# is NULL for pfns in sections with no present memory (the PCI hole below 4 GiB, say).
SECTION_SIZE_BITS = 27
PFN_SECTION_SHIFT = SECTION_SIZE_BITS - 12


@dataclass(frozen=True)
class _ZoneView:
    """A node_zones[] slot as the /proc printers see it: a model zone, or an empty slot."""

    nid: int
    idx: int
    zone: Zone | None

    @property
    def name(self) -> str:
        return ZONE_NAMES[self.idx]

    @property
    def populated(self) -> bool:
        """populated_zone(): present_pages != 0 (not managed: a zone of only reserved pages
        is still populated)."""
        return self.zone is not None and self.zone.present > 0


def _node_zones(a: PageAllocator, nid: int) -> Iterator[_ZoneView]:
    """pgdat->node_zones[0..MAX_NR_ZONES-1]: every zone slot of the node, absent zones as
    empty slots, in zone-index order (walk_zones_in_node())."""
    by_idx = {z.idx: z for z in a.nodes[nid].zones}
    for idx in range(MAX_NR_ZONES):
        yield _ZoneView(nid, idx, by_idx.get(idx))


def _populated_zones(a: PageAllocator, nid: int) -> Iterator[Zone]:
    for zv in _node_zones(a, nid):
        if zv.populated and zv.zone is not None:
            yield zv.zone


def buddyinfo(a: PageAllocator) -> str:
    """/proc/buddyinfo: frag_show_print() for every populated zone of every node.

    free_area[order].nr_free summed over migratetypes; the kernel's pcp pages would not be
    counted either, and the model has none."""
    out: list[str] = []
    orders = range(a.max_order + 1)
    for node in a.nodes:
        for z in _populated_zones(a, node.nid):
            out.append(f"Node {node.nid}, zone {z.name:>8} ")
            out.extend(f"{z.nr_free(o):6d} " for o in orders)
            out.append("\n")
    return "".join(out)


def _online_pageblock_ranges(a: PageAllocator) -> list[tuple[int, int]]:
    """Pageblock-index ranges [lo, hi) inside online memory sections, merged and sorted."""
    shift = PFN_SECTION_SHIFT
    secs: list[tuple[int, int]] = []
    for z in a.zones:
        for s, e in z.cfg.ranges:
            secs.append((s >> shift, ((e - 1) >> shift) + 1))
    secs.sort()
    merged: list[list[int]] = []
    for s, e in secs:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    to_pb = shift - a.pageblock_order
    return [(s << to_pb, e << to_pb) for s, e in merged]


def pageblock_counts(a: PageAllocator, z: Zone,
                     online: list[tuple[int, int]] | None = None) -> list[int]:
    """pagetypeinfo_showblockcount_print(): pageblocks of each migratetype, walking the zone
    from zone_start_pfn in pageblock steps (so an unaligned zone counts each pageblock it
    touches once) and skipping pfns that are not online. Counted with bytes.count over
    slices of pageblock_flags, so a 1 TiB machine costs milliseconds."""
    if online is None:
        online = _online_pageblock_ranges(a)
    pbo = a.pageblock_order
    step = 1 << pbo
    first = z.start >> pbo
    last = first + (z.spanned + step - 1) // step  # exclusive
    counts = [0] * MIGRATE_TYPES
    flags = a.pageblock_flags
    for lo, hi in online:
        lo, hi = max(lo, first), min(hi, last)
        if lo >= hi:
            continue
        chunk = flags[lo:hi]
        for mt in range(MIGRATE_TYPES):
            counts[mt] += chunk.count(mt)
    return counts


def pagetypeinfo(a: PageAllocator) -> str:
    """/proc/pagetypeinfo: pagetypeinfo_show() once per node with memory (the header repeats
    per node, as the seq_file does), free-list lengths per zone x migratetype x order capped
    at 100000 with a '>' prefix, then the 'Number of blocks type' table.

    Omitted: the 'Number of mixed blocks' table, printed only with page_owner enabled."""
    out: list[str] = []
    orders = range(a.max_order + 1)
    online = _online_pageblock_ranges(a)
    for node in a.nodes:
        zones = list(_populated_zones(a, node.nid))
        if not zones:  # memoryless node: !node_state(nid, N_MEMORY)
            continue
        out.append(f"Page block order: {a.pageblock_order}\n")
        out.append(f"Pages per block:  {1 << a.pageblock_order}\n")
        out.append("\n")
        out.append(f"{'Free pages count per migrate type at order':<43} ")
        out.extend(f"{o:6d} " for o in orders)
        out.append("\n")
        for z in zones:
            for mt in range(MIGRATE_TYPES):
                out.append(f"Node {node.nid:4d}, zone {z.name:>8}, type "
                           f"{MIGRATETYPE_NAMES[mt]:>12} ")
                for o in orders:
                    n = z.nr_free(o, mt)
                    if n >= FREELIST_WALK_CAP:
                        out.append(f">{FREELIST_WALK_CAP:6d} ")
                    else:
                        out.append(f"{n:6d} ")
                out.append("\n")
        out.append(f"\n{'Number of blocks type ':<23}")
        out.extend(f"{name:>12} " for name in MIGRATETYPE_NAMES[:MIGRATE_TYPES])
        out.append("\n")
        for z in zones:
            out.append(f"Node {node.nid}, zone {z.name:>8} ")
            out.extend(f"{c:12d} " for c in pageblock_counts(a, z, online))
            out.append("\n")
    return "".join(out)


def _lru_pages_by_zone(a: PageAllocator) -> dict[int, int]:
    """Page-cache pages on each zone's inactive file LRU, by zone id."""
    out: dict[int, int] = {}
    for node in a.nodes:
        for pfn in node.lru:
            zid = a.allocated[pfn][1]
            out[zid] = out.get(zid, 0) + 1
    return out


def zoneinfo(a: PageAllocator) -> str:
    """/proc/zoneinfo: zoneinfo_show_print() for all MAX_NR_ZONES zone slots of every node,
    absent zones printed as the kernel prints unpopulated ones (zeros, then stop after
    'protection').

    Printed stat items, in the kernel's order: per-node stats nr_inactive_file and
    nr_file_pages (the page cache is the model's only node-level pool); zone stats
    nr_free_pages and nr_zone_inactive_file; all six NUMA events. Omitted: every other vm
    stat item, and the 'pagesets' block (the model has no per-CPU page lists)."""
    out: list[str] = []
    lru = _lru_pages_by_zone(a)
    for node in a.nodes:
        first_populated = True
        for zv in _node_zones(a, node.nid):
            z = zv.zone
            out.append(f"Node {node.nid}, zone {zv.name:>8}")
            if zv.populated and first_populated:
                first_populated = False
                out.append("\n  per-node stats")
                out.append(f"\n      {'nr_inactive_file':<12} {len(node.lru)}")
                out.append(f"\n      {'nr_file_pages':<12} {len(node.lru)}")
            if z is None:
                vals = [0] * 9
                reserve = [0] * MAX_NR_ZONES
            else:
                vals = [z.free_pages, z.boost, *z.wmark, z.spanned, z.present, z.managed]
                reserve = list(z.lowmem_reserve) + [0] * (MAX_NR_ZONES - len(z.lowmem_reserve))
            labels = ("  pages free", "        boost", "        min", "        low",
                      "        high", "        promo", "        spanned", "        present",
                      "        managed")
            for label, v in zip(labels, vals, strict=True):
                out.append(f"\n{label:<17}{v}")
            out.append(f"\n{'        cma':<17}0")
            out.append("\n        protection: (" + ", ".join(str(r) for r in reserve) + ")")
            if not zv.populated or z is None:
                out.append("\n")
                continue
            stats = (
                ("nr_free_pages", z.free_pages),
                ("nr_zone_inactive_file", lru.get(z.zid, 0)),
                ("numa_hit", z.numa_hit),
                ("numa_miss", z.numa_miss),
                ("numa_foreign", z.numa_foreign),
                ("numa_interleave", z.interleave_hit),
                ("numa_local", z.numa_local),
                ("numa_other", z.numa_other),
            )
            for name, v in stats:
                out.append(f"\n      {name:<12} {v}")
            out.append(f"\n  node_unreclaimable:  {0}")
            out.append(f"\n  start_pfn:           {z.start}")
            out.append("\n")
    return "".join(out)


def numastat(a: PageAllocator, nid: int) -> str:
    """/sys/devices/system/node/nodeN/numastat: node_read_numastat(), each NUMA event summed
    over the node's zones (sum_zone_numa_event_state())."""
    zs = a.nodes[nid].zones
    rows = (
        ("numa_hit", sum(z.numa_hit for z in zs)),
        ("numa_miss", sum(z.numa_miss for z in zs)),
        ("numa_foreign", sum(z.numa_foreign for z in zs)),
        ("interleave_hit", sum(z.interleave_hit for z in zs)),
        ("local_node", sum(z.numa_local for z in zs)),
        ("other_node", sum(z.numa_other for z in zs)),
    )
    return "".join(f"{name} {v}\n" for name, v in rows)


def numastat_path(nid: int) -> str:
    return f"/sys/devices/system/node/node{nid}/numastat"


def numastat_all(a: PageAllocator) -> str:
    """Every node's numastat, each under a head(1)-style '==> path <==' line, blank-line
    separated, so one command shows the whole machine."""
    parts = [f"==> {numastat_path(n.nid)} <==\n{numastat(a, n.nid)}" for n in a.nodes]
    return "\n".join(parts)


VIEWS: dict[str, Callable[[PageAllocator], str]] = {
    "buddyinfo": buddyinfo,
    "pagetypeinfo": pagetypeinfo,
    "zoneinfo": zoneinfo,
    "numastat": numastat_all,
}
"""View name -> printer, for ``kmemspec show`` and the scenario runner."""

VIEW_PATHS: dict[str, str] = {
    "buddyinfo": "/proc/buddyinfo",
    "pagetypeinfo": "/proc/pagetypeinfo",
    "zoneinfo": "/proc/zoneinfo",
    "numastat": "/sys/devices/system/node/node*/numastat",
}
"""Where each view lives on a real machine."""
