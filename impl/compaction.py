"""Memory compaction (mm/compaction.c, Linux 6.12.117): migrate movable pages towards the end
of a zone so that free pages merge into high-order blocks.

compact_zone() runs two scanners over one zone: the migrate scanner from the zone start
(isolate_migratepages, one pageblock per call, at most COMPACT_CLUSTER_MAX pages isolated:
PageLRU anonymous pages that are not pinned; free blocks skipped by their order) and the free
scanner from the zone end downwards (isolate_freepages: only MOVABLE pageblocks whose first
page is not itself a free block of pageblock_order or more, suitable_migration_target;
__isolate_free_page takes free blocks off the buddy lists while the zone stays above
min + the block). compaction_alloc() hands out isolated free pages, splitting larger ones
(cc->freepages[order] of 6.12); migrate_pages() (impl/migrate.py) moves each page; what is
left isolated goes back to the buddy allocator at the end (release_free_list). The run ends
when the scanners meet (COMPACT_COMPLETE), or, for a target order, at a pageblock boundary
once a free block of that order exists on the MOVABLE lists (__compact_finished:
COMPACT_SUCCESS).

compact_node()/compact_nodes() are /proc/sys/vm/compact_memory and
/sys/devices/system/node/nodeN/compact: order -1 (is_via_compact_memory), MIGRATE_SYNC, every
pageblock a migration source, the whole zone.

Left out: fast_find_migrateblock/fast_isolate_freepages (the free-list shortcuts), the
pageblock skip bits and cached scanner positions, async mode, deferred compaction, proactive
compaction and kcompactd, capture_control, the fallback-list check of __compact_finished.

Cost: proportional to the zone's pageblocks and the pages it migrates (as the kernel's): free
blocks are skipped by their order, and a free pageblock costs the scanners one lookup each.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from impl.memory import UserMemory
from impl.migrate import migrate_page, migration_refusal
from impl.mmzone import Zone
from impl.page_alloc import OWNER_PAGES
from spec.errors import MigrationError
from spec.gfp import MIGRATE_MOVABLE

COMPACT_CLUSTER_MAX = 32  # SWAP_CLUSTER_MAX (include/linux/swap.h)
COMPACT_CONTINUE, COMPACT_SUCCESS, COMPACT_COMPLETE, COMPACT_SKIPPED = (
    "continue", "success", "complete", "skipped")


@dataclass
class CompactResult:
    """What one compact_zone() did: its enum compact_result and the vmstat counters it adds
    (compact_migrate_scanned, compact_free_scanned, compact_isolated, pgmigrate_success,
    pgmigrate_fail)."""

    zone: str
    nid: int
    order: int
    status: str = COMPACT_CONTINUE
    migrate_scanned: int = 0
    free_scanned: int = 0
    isolated: int = 0
    migrated: int = 0
    failed: int = 0
    moves: list[tuple[int, int]] = field(default_factory=list)  # (old pfn, new pfn)

    def line(self) -> str:
        return (f"node {self.nid} {self.zone}: {self.status}, {self.migrated} pages migrated, "
                f"{self.failed} failed, scanned {self.migrate_scanned} (migrate) / "
                f"{self.free_scanned} (free)")


@dataclass
class CompactControl:
    """struct compact_control: the zone, target order, both scanners' positions, the isolated
    pages waiting to move and the isolated free pages per order."""

    zone: Zone
    order: int
    migrate_pfn: int
    free_pfn: int
    pageblock_order: int
    migratepages: list[int] = field(default_factory=list)
    freepages: list[deque[int]] = field(default_factory=list)
    nr_freepages: int = 0


def _pb_start(pfn: int, pbo: int) -> int:
    return pfn & ~((1 << pbo) - 1)


def _pb_end(pfn: int, pbo: int) -> int:
    return _pb_start(pfn, pbo) + (1 << pbo)


def _scanners_met(cc: CompactControl) -> bool:
    """compact_scanners_met(): the free scanner's pageblock is at or below the migrate one's."""
    pbo = cc.pageblock_order
    return cc.free_pfn >> pbo <= cc.migrate_pfn >> pbo


def _finished(ps: UserMemory, cc: CompactControl) -> str:
    """__compact_finished()."""
    if _scanners_met(cc):
        return COMPACT_COMPLETE
    if cc.order < 0:  # is_via_compact_memory()
        return COMPACT_CONTINUE
    if cc.migrate_pfn & ((1 << cc.pageblock_order) - 1):  # finish the pageblock first
        return COMPACT_CONTINUE
    for o in range(cc.order, ps.pa.max_order + 1):
        if cc.zone.nr_free(o, MIGRATE_MOVABLE):
            return COMPACT_SUCCESS
    return COMPACT_CONTINUE


def _skip(ps: UserMemory, z: Zone, pfn: int) -> int:
    """How far a scanner may jump from ``pfn`` that is not an isolatable page: past an
    allocated block or a free block by its order, else one page (a hole, a reserved page)."""
    pa = ps.pa
    rec = pa.allocated.get(pfn)
    if rec is not None:
        return 1 << rec[0]
    fo = z.free_order_at(pfn)
    if fo >= 0:
        return 1 << fo
    head, order, _ = pa.block_containing(pfn)
    if head >= 0:
        return head + (1 << order) - pfn
    return 1


def isolate_migratepages(ps: UserMemory, cc: CompactControl, res: CompactResult) -> None:
    """isolate_migratepages() + isolate_migratepages_block(): scan one pageblock from
    cc.migrate_pfn, isolating up to COMPACT_CLUSTER_MAX movable, unpinned pages."""
    z, pbo = cc.zone, cc.pageblock_order
    low = max(cc.migrate_pfn, z.start)
    end = min(_pb_end(low, pbo), z.end)
    if end > cc.free_pfn:  # do not cross the free scanner (the scanners have met)
        return
    while low < end:
        res.migrate_scanned += 1
        rec = ps.pa.allocated.get(low)
        if rec is not None and rec[0] == 0 and migration_refusal(ps, low) is None:
            cc.migratepages.append(low)
            res.isolated += 1
            low += 1
            if len(cc.migratepages) == COMPACT_CLUSTER_MAX:
                break
            continue
        low += _skip(ps, z, low)
    cc.migrate_pfn = low


def isolate_freepages(ps: UserMemory, cc: CompactControl, res: CompactResult) -> None:
    """isolate_freepages(): from cc.free_pfn down, pageblock by pageblock, above the migrate
    scanner's pageblock: isolate free blocks of suitable (MOVABLE, not wholly free) pageblocks
    until there are as many free pages as pages to migrate."""
    pa, z, pbo = ps.pa, cc.zone, cc.pageblock_order
    low_pfn = _pb_end(cc.migrate_pfn, pbo)
    block_start = _pb_start(cc.free_pfn, pbo)
    isolate_start = cc.free_pfn
    big = cc.order if cc.order > 0 else pbo
    while block_start >= low_pfn:
        block_end = min(block_start + (1 << pbo), z.end)
        first = max(block_start, z.start)
        head, horder, is_free = pa.block_containing(first)
        suitable = (pa.pageblock_flags[block_start >> pbo] == MIGRATE_MOVABLE
                    and not (is_free and head == first and horder >= big)
                    and not (is_free and horder >= pbo))
        if suitable:
            pfn = isolate_start if first <= isolate_start < block_end else first
            stopped = False
            while pfn < block_end:
                res.free_scanned += 1
                order = pa.isolate_free_page(z, pfn) if z.free_order_at(pfn) >= 0 else -1
                if order >= 0:
                    cc.freepages[order].append(pfn)  # list_add_tail
                    cc.nr_freepages += 1 << order
                    pfn += 1 << order
                    if cc.nr_freepages >= len(cc.migratepages):
                        stopped = True
                        break
                    continue
                if z.free_order_at(pfn) >= 0:  # the watermark refused: stop here
                    stopped = True
                    break
                pfn += _skip(ps, z, pfn)
            if stopped:
                # restart in this block next time, or in the one below if it is done
                cc.free_pfn = pfn if pfn < block_end else block_start - (1 << pbo)
                return
        block_start -= 1 << pbo
        isolate_start = block_start
    cc.free_pfn = isolate_start  # met the migrate scanner


def compaction_alloc(ps: UserMemory, cc: CompactControl, res: CompactResult) -> int | None:
    """compaction_alloc(): the first isolated free page of the smallest order, splitting a
    larger block (the upper halves go to the heads of the lower lists); isolate more first
    if none is left. The page becomes an allocated movable page (post_alloc_hook)."""
    for attempt in range(2):
        for o, lst in enumerate(cc.freepages):
            if lst:
                pfn = lst.popleft()
                while o > 0:
                    o -= 1
                    cc.freepages[o].appendleft(pfn + (1 << o))
                cc.nr_freepages -= 1
                ps.pa.allocated[pfn] = (0, cc.zone.zid, OWNER_PAGES, MIGRATE_MOVABLE)
                return pfn
        if attempt == 0:
            isolate_freepages(ps, cc, res)
    return None


def release_free_list(ps: UserMemory, cc: CompactControl) -> None:
    """release_free_list(): isolated free pages compaction did not use go back (merging)."""
    for o, lst in enumerate(cc.freepages):
        while lst:
            ps.pa.release_isolated_page(cc.zone, lst.popleft(), o)
    cc.nr_freepages = 0


def compaction_suitable(ps: UserMemory, z: Zone, order: int) -> str:
    """compaction_suit_allocation_order() + __compaction_suitable(): SUCCESS if an order
    ``order`` allocation would already pass the low watermark, SKIPPED if the zone lacks
    min (or low, for costly orders) + compact_gap(order) = 2 << order free pages."""
    pa = ps.pa
    if pa._watermark_ok(z, order, z.wmark[1], 0, 0):  # WMARK_LOW
        return COMPACT_SUCCESS
    mark = z.wmark[1] if order > 3 else z.wmark[0]  # PAGE_ALLOC_COSTLY_ORDER
    if not pa._watermark_ok(z, 0, mark + (2 << order), 0, 0):
        return COMPACT_SKIPPED
    return COMPACT_CONTINUE


def compact_zone(ps: UserMemory, z: Zone, order: int = -1) -> CompactResult:
    """compact_zone() of one zone: ``order`` -1 compacts the whole zone (compact_memory), an
    order >= 0 stops once a free block of that order is on the MOVABLE lists."""
    pa = ps.pa
    pbo = pa.pageblock_order
    res = CompactResult(z.name, z.nid, order)
    if order >= 0:
        pre = compaction_suitable(ps, z, order)
        if pre != COMPACT_CONTINUE:
            res.status = pre
            return res
    cc = CompactControl(z, order, z.start, _pb_start(z.end - 1, pbo), pbo,
                        freepages=[deque() for _ in range(pa.max_order + 1)])
    while (status := _finished(ps, cc)) == COMPACT_CONTINUE:
        isolate_migratepages(ps, cc, res)
        for k, pfn in enumerate(cc.migratepages):
            target = compaction_alloc(ps, cc, res)
            if target is None:  # nothing left to isolate above the migrate scanner
                res.failed += len(cc.migratepages) - k  # putback_movable_pages
                cc.free_pfn = cc.migrate_pfn
                break
            try:
                new = migrate_page(ps, pfn, target=target)
            except MigrationError:  # compaction_free(): the target goes back to the list
                del pa.allocated[target]
                cc.freepages[0].appendleft(target)
                cc.nr_freepages += 1
                res.failed += 1
                continue
            res.migrated += 1
            res.moves.append((pfn, new))
        cc.migratepages.clear()
    release_free_list(ps, cc)
    res.status = status
    return res


def compact_node(ps: UserMemory, nid: int) -> list[CompactResult]:
    """compact_node(): every populated zone of node ``nid``, order -1 (whole zones)."""
    from spec.errors import BadNodeError
    if type(nid) is not int or not 0 <= nid < len(ps.pa.nodes):
        raise BadNodeError(f"node {nid!r} is not online (nodes 0..{len(ps.pa.nodes) - 1})")
    return [compact_zone(ps, z) for z in ps.pa.nodes[nid].zones if z.managed > 0]


def compact_nodes(ps: UserMemory) -> list[CompactResult]:
    """compact_nodes(): what writing 1 to /proc/sys/vm/compact_memory does."""
    return [r for n in ps.pa.nodes for r in compact_node(ps, n.nid)]
