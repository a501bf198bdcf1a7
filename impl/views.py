"""The /proc and sysfs views of the page allocator, byte for byte in Linux 6.12.117's formats.

Each function takes a booted :class:`impl.page_alloc.PageAllocator` and returns the text the
kernel would print, so that a scenario's output can be diffed against a real machine's files.
Sources: mm/vmstat.c (frag_show_print, pagetypeinfo_show and its helpers, zoneinfo_show_print)
and drivers/base/node.c (node_read_numastat). The views build the structures of
:mod:`impl.procfs` and print them with its renderers; the tests parse files captured from
Debian's 6.12.117 kernel (tests/fixtures/linux-6.12/) with the same parsers, and check that the
renderers reproduce those files byte for byte.

The pinned config is Debian's: CONFIG_ZONE_DEVICE=y (five zones per node in zoneinfo, five
protection entries), no CONFIG_CMA (no CMA migratetype in pagetypeinfo), CONFIG_NUMA. What the
model does not have is printed as the model's truth and documented in zoneinfo_stanzas().
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from impl.page_alloc import PageAllocator, Zone
from impl.procfs import (
    BuddyRow,
    FreeCount,
    Pageset,
    PagetypeNode,
    ZoneStanza,
    render_buddyinfo,
    render_numastat,
    render_pagetypeinfo,
    render_zoneinfo,
)
from impl.watermarks import compute_zone_watermarks, extend_lowmem_reserve
from spec.gfp import (
    KERNEL_MAX_NR_ZONES,
    KERNEL_ZONE_NAMES,
    MAX_NR_ZONES,
    MIGRATE_TYPES,
    MIGRATETYPE_NAMES,
    ZONE_NAMES,
)
from spec.layout import PAGE_SHIFT

# pagetypeinfo_showfree_print() stops walking a free list at this many entries.
FREELIST_WALK_CAP = 100000
# SECTION_SIZE_BITS on x86-64: memory is onlined in 128 MiB sections; pfn_to_online_page()
# is NULL for pfns in sections with no present memory (the PCI hole below 4 GiB, say).
SECTION_SIZE_BITS = 27
PFN_SECTION_SHIFT = SECTION_SIZE_BITS - PAGE_SHIFT

# mm/vmstat.c vmstat_text[] for the pinned config (Debian 6.12.117 amd64: CONFIG_ZSMALLOC,
# CONFIG_UNACCEPTED_MEMORY, CONFIG_NUMA, CONFIG_IOMMU_SUPPORT, CONFIG_SWAP,
# CONFIG_NUMA_BALANCING; no CONFIG_SHADOW_CALL_STACK), as the captured zoneinfo lists them.
ZONE_STAT_ITEMS = (
    "nr_free_pages", "nr_zone_inactive_anon", "nr_zone_active_anon", "nr_zone_inactive_file",
    "nr_zone_active_file", "nr_zone_unevictable", "nr_zone_write_pending", "nr_mlock",
    "nr_bounce", "nr_zspages", "nr_free_cma", "nr_unaccepted")
NUMA_EVENT_ITEMS = ("numa_hit", "numa_miss", "numa_foreign", "numa_interleave", "numa_local",
                    "numa_other")
NODE_STAT_ITEMS = (
    "nr_inactive_anon", "nr_active_anon", "nr_inactive_file", "nr_active_file",
    "nr_unevictable", "nr_slab_reclaimable", "nr_slab_unreclaimable", "nr_isolated_anon",
    "nr_isolated_file", "workingset_nodes", "workingset_refault_anon",
    "workingset_refault_file", "workingset_activate_anon", "workingset_activate_file",
    "workingset_restore_anon", "workingset_restore_file", "workingset_nodereclaim",
    "nr_anon_pages", "nr_mapped", "nr_file_pages", "nr_dirty", "nr_writeback",
    "nr_writeback_temp", "nr_shmem", "nr_shmem_hugepages", "nr_shmem_pmdmapped",
    "nr_file_hugepages", "nr_file_pmdmapped", "nr_anon_transparent_hugepages",
    "nr_vmscan_write", "nr_vmscan_immediate_reclaim", "nr_dirtied", "nr_written",
    "nr_throttled_written", "nr_kernel_misc_reclaimable", "nr_foll_pin_acquired",
    "nr_foll_pin_released", "nr_kernel_stack", "nr_page_table_pages",
    "nr_sec_page_table_pages", "nr_iommu_pages", "nr_swapcached", "pgpromote_success",
    "pgpromote_candidate", "pgdemote_kswapd", "pgdemote_direct", "pgdemote_khugepaged")


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
    """pgdat->node_zones[0..MAX_NR_ZONES-1] of the model: absent zones as empty slots, in
    zone-index order (walk_zones_in_node()). ZONE_DEVICE is never populated, so the views that
    list populated zones only need not visit it."""
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
    orders = range(a.max_order + 1)
    return render_buddyinfo([BuddyRow(node.nid, z.name, tuple(z.nr_free(o) for o in orders))
                             for node in a.nodes for z in _populated_zones(a, node.nid)])


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
    at 100000 with a '>' prefix, then the 'Number of blocks type' table. The migratetypes are
    the pinned config's MIGRATE_TYPES: Unmovable, Movable, Reclaimable, HighAtomic, Isolate.

    Omitted: the 'Number of mixed blocks' table, printed only with page_owner enabled."""
    orders = range(a.max_order + 1)
    online = _online_pageblock_ranges(a)
    nodes: list[PagetypeNode] = []
    for node in a.nodes:
        zones = list(_populated_zones(a, node.nid))
        if not zones:  # memoryless node: !node_state(nid, N_MEMORY)
            continue
        free = [(z.name, MIGRATETYPE_NAMES[mt],
                 tuple(FreeCount(FREELIST_WALK_CAP, True) if n >= FREELIST_WALK_CAP
                       else FreeCount(n) for n in (z.nr_free(o, mt) for o in orders)))
                for z in zones for mt in range(MIGRATE_TYPES)]
        blocks = [(z.name, tuple(pageblock_counts(a, z, online))) for z in zones]
        nodes.append(PagetypeNode(node.nid, a.pageblock_order, 1 << a.pageblock_order,
                                  len(orders), free, MIGRATETYPE_NAMES[:MIGRATE_TYPES], blocks))
    return render_pagetypeinfo(nodes)


def _lru_pages_by_zone(a: PageAllocator) -> dict[int, int]:
    """Page-cache pages on each zone's inactive file LRU, by zone id."""
    out: dict[int, int] = {}
    for node in a.nodes:
        for pfn in node.lru:
            zid = a.allocated[pfn][1]
            out[zid] = out.get(zid, 0) + 1
    return out


def zone_batchsize(managed: int) -> int:
    """mm/page_alloc.c zone_batchsize(): min(managed >> 10, 1 MiB of pages) / 4, at least 1,
    rounded to 2^n - 1 by rounddown_pow_of_two(b + b/2) - 1; pcp->batch is max(1, that)."""
    batch = max(1, min(managed >> 10, (1 << 20) >> PAGE_SHIFT) // 4)
    return max(1, (1 << ((batch + batch // 2).bit_length() - 1)) - 1)


def calculate_normal_threshold(managed: int, nr_online_cpus: int) -> int:
    """mm/vmstat.c calculate_normal_threshold(): the per-CPU vm stat drift allowed before a
    fold, 2 * fls(cpus) * (1 + fls(managed >> (27 - PAGE_SHIFT))), at most 125."""
    mem = managed >> (27 - PAGE_SHIFT)
    return min(125, 2 * nr_online_cpus.bit_length() * (1 + mem.bit_length()))


def zoneinfo_stanzas(a: PageAllocator) -> list[ZoneStanza]:
    """zoneinfo_show_print()'s data for all KERNEL_MAX_NR_ZONES zone slots of every node
    (DMA, DMA32, Normal, Movable, Device: the pinned config has CONFIG_ZONE_DEVICE=y).

    Model zones show their live watermarks, boost and lowmem_reserve (extended to the Device
    column by impl.watermarks.extend_lowmem_reserve); zone slots the model does not have get
    what impl.watermarks computes for a zone with no pages (an empty Movable zone has
    min = low = high = promo = SWAP_CLUSTER_MAX). 'cma' is printed, as 0: zone_cma_pages() is
    0 without CONFIG_CMA but the line is unconditional.

    Every vm stat item of the pinned config is printed, in the kernel's order, with the
    model's value: the page cache (nr_inactive_file, nr_file_pages, nr_zone_inactive_file),
    nr_free_pages and the six NUMA events are the model's counters; every other item counts
    something the model does not have (anon, slab, shmem, writeback, stacks, page tables...),
    so it is 0, which is the model's truth. Per-CPU pagesets: one per CPU of the machine with
    count 0 and high 0 (the model has no pcp lists, as if each were drained after every call,
    and pcp->high stays at its boot value 0 until a list is used, as an unused zone's pagesets
    show on a real machine), batch from zone_batchsize() and the vm stats threshold from
    calculate_normal_threshold(), both exact. node_unreclaimable is 0 (the model's kswapd
    never gives up)."""
    out: list[ZoneStanza] = []
    lru = _lru_pages_by_zone(a)
    cpus = sorted(a.cpu_node)
    empty = compute_zone_watermarks(a.machine, KERNEL_MAX_NR_ZONES)
    for node in a.nodes:
        by_idx = {z.idx: z for z in node.zones}
        first_populated = True
        for idx in range(KERNEL_MAX_NR_ZONES):
            z = by_idx.get(idx)
            per_node = None
            if z is not None and z.present > 0 and first_populated:
                first_populated = False
                model_node = {"nr_inactive_file": len(node.lru), "nr_file_pages": len(node.lru),
                              "nr_page_table_pages": a.nr_page_table_pages[node.nid]}
                from impl.slab_common import slab_pages_by_node  # slab and large kmalloc pages

                rec, unrec = slab_pages_by_node(a).get(node.nid, (0, 0))
                model_node.update(nr_slab_reclaimable=rec, nr_slab_unreclaimable=unrec)
                per_node = [(k, model_node.get(k, 0)) for k in NODE_STAT_ITEMS]
            if z is None:
                w = empty[(node.nid, idx)]
                out.append(ZoneStanza(
                    node.nid, KERNEL_ZONE_NAMES[idx], None, free=0, boost=0, min=w.min,
                    low=w.low, high=w.high, promo=w.promo, spanned=0, present=0, managed=0,
                    cma=0, protection=w.lowmem_reserve))
                continue
            mn, low, high, promo = z.wmark
            st = ZoneStanza(node.nid, KERNEL_ZONE_NAMES[idx], per_node, free=z.free_pages,
                            boost=z.boost, min=mn, low=low, high=high, promo=promo,
                            spanned=z.spanned, present=z.present, managed=z.managed, cma=0,
                            protection=extend_lowmem_reserve(z.lowmem_reserve))
            out.append(st)
            if z.present == 0:  # !populated_zone(): nothing after 'protection'
                continue
            model_zone = {"nr_free_pages": z.free_pages,
                          "nr_zone_inactive_file": lru.get(z.zid, 0),
                          "numa_hit": z.numa_hit, "numa_miss": z.numa_miss,
                          "numa_foreign": z.numa_foreign, "numa_interleave": z.interleave_hit,
                          "numa_local": z.numa_local, "numa_other": z.numa_other}
            st.stats = [(k, model_zone.get(k, 0)) for k in (*ZONE_STAT_ITEMS, *NUMA_EVENT_ITEMS)]
            batch = zone_batchsize(z.managed)
            thr = calculate_normal_threshold(z.managed, len(cpus))
            st.pagesets = [Pageset(c, [("count", 0), ("high", 0), ("batch", batch)], thr)
                           for c in cpus]
            st.node_unreclaimable = 0
            st.start_pfn = z.start
    return out


def zoneinfo(a: PageAllocator) -> str:
    """/proc/zoneinfo: zoneinfo_show_print() for every zone slot of every node; see
    zoneinfo_stanzas() for where each number comes from."""
    return render_zoneinfo(zoneinfo_stanzas(a))


def numastat(a: PageAllocator, nid: int) -> str:
    """/sys/devices/system/node/nodeN/numastat: node_read_numastat(), each NUMA event summed
    over the node's zones (sum_zone_numa_event_state())."""
    zs = a.nodes[nid].zones
    return render_numastat((sum(z.numa_hit for z in zs), sum(z.numa_miss for z in zs),
                            sum(z.numa_foreign for z in zs), sum(z.interleave_hit for z in zs),
                            sum(z.numa_local for z in zs), sum(z.numa_other for z in zs)))


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
