"""Behaviour of the buddy page allocator model against Linux 6.12.117 (mm/page_alloc.c).

Every expected value below is derived by hand from the kernel source or the facts file
(shared/reference/linux-mm-facts.md §2), not read back from the model.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

import spec.gfp as g
from impl.buddy import block_aligned, combined_pfn, expand_halves, find_buddy_pfn, get_order
from impl.machine import MachineConfig
from impl.page_alloc import OWNER_PAGECACHE, OWNER_PAGES, PageAllocator, Zone
from spec.context import Context
from spec.errors import SleepInAtomicError
from spec.gfp import (
    GFP_ATOMIC,
    GFP_DMA,
    GFP_DMA32,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOWAIT,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    ZONE_DMA,
    ZONE_DMA32,
    ZONE_NORMAL,
)
from spec.layout import PAGE_OFFSET, PAGE_SHIFT
from tests.conftest import snapshot

NOWARN = g.__GFP_NOWARN
HIGH = g.__GFP_HIGH
THISNODE = g.__GFP_THISNODE
MOVABLE = GFP_HIGHUSER_MOVABLE


# --- helpers ----------------------------------------------------------------------------------
def free_list(z: Zone, order: int, mt: int) -> list[int]:
    """free_area[order].free_list[mt] of ``z``, head first."""
    return [p for p, o, m in z.free_blocks() if o == order and m == mt]


def drain_kinds(a: PageAllocator) -> list[str]:
    return [e.kind for e in a.drain_effects()]


def alloc_until_fail(a: PageAllocator, gfp: int, order: int, cpu: int = 0) -> list[int]:
    out: list[int] = []
    while True:
        p = a.alloc_pages(gfp, order, cpu=cpu)
        if p is None:
            return out
        out.append(p)


def check_state(a: PageAllocator) -> None:
    """Structural checks of the whole allocator (local until spec/invariants.py replaces
    them): conservation, alignment, containment, no overlap, buddies merged, list integrity,
    list migratetype == pageblock migratetype."""
    spans: list[tuple[int, int, str]] = []  # [start, end) of every free or allocated block
    pbo = a.pageblock_order
    total_free = 0
    for z in a.zones:
        zone_free = 0
        per_list: dict[int, int] = {}
        free_at: dict[int, int] = {}
        for pfn, order, mt in z.free_blocks():
            size = 1 << order
            assert pfn % size == 0, f"free block {pfn:#x} order {order} unaligned"
            assert z.start <= pfn and pfn + size <= z.end, f"free block {pfn:#x} outside zone"
            assert order <= a.max_order
            spans.append((pfn, pfn + size, "free"))
            # a free block's list is its pageblocks' migratetype (6.12 freelist hygiene)
            first_pb, last_pb = pfn >> pbo, (pfn + size - 1) >> pbo
            for pb in range(first_pb, last_pb + 1):
                assert a.pageblock_flags[pb] == mt, (
                    f"free block {pfn:#x} o{order} on list {mt}, pageblock {pb} is "
                    f"{a.pageblock_flags[pb]}")
            zone_free += size
            idx = order << 3 | mt
            per_list[idx] = per_list.get(idx, 0) + 1
            free_at[pfn] = order
        for pfn, order in free_at.items():
            if order < a.max_order:
                bud = find_buddy_pfn(pfn, order)
                assert free_at.get(bud) != order, (
                    f"free buddies {pfn:#x} and {bud:#x} of order {order} left unmerged")
        assert zone_free == z.free_pages, (z.name, zone_free, z.free_pages)
        for idx in range(len(z.counts)):
            assert z.counts[idx] == per_list.get(idx, 0), (idx, z.counts[idx])
        # the intrusive links are a consistent doubly linked list per index
        for idx in range(len(z.heads)):
            prev, p = -1, z.heads[idx]
            while p != -1:
                assert z._prv[p] == prev and z._buddy[p] == idx
                prev, p = p, z._nxt[p]
            assert z.tails[idx] == prev
        total_free += zone_free
    allocated = 0
    for pfn, (order, zid, who, _mt) in a.allocated.items():
        z = a.zones[zid]
        size = 1 << order
        assert pfn % size == 0 and z.start <= pfn and pfn + size <= z.end
        spans.append((pfn, pfn + size, who))
        allocated += size
    spans.sort()
    for (s1, e1, w1), (s2, _, w2) in itertools.pairwise(spans):
        assert e1 <= s2, f"[{s1:#x}, {e1:#x}) {w1} overlaps {s2:#x} {w2}"
    managed = sum(z.managed for z in a.zones)
    assert total_free + allocated == managed
    assert a.nr_free_pages() == total_free
    for node in a.nodes:
        for pfn in node.lru:
            assert a.allocated[pfn][2] == OWNER_PAGECACHE
            assert a.zones[a.allocated[pfn][1]].nid == node.nid
    assert sum(len(n.lru) for n in a.nodes) == sum(
        1 for r in a.allocated.values() if r[2] == OWNER_PAGECACHE)


def three_nodes() -> MachineConfig:
    base = MachineConfig.flat(64, nodes=3, max_order=3, min_pages=4)
    return dataclasses.replace(base, distance=((10, 30, 20), (30, 10, 20), (20, 20, 10)))


# --- pure buddy arithmetic --------------------------------------------------------------------
def test_buddy_arithmetic() -> None:
    assert find_buddy_pfn(0x1000, 0) == 0x1001
    assert find_buddy_pfn(0x1000, 3) == 0x1008
    assert find_buddy_pfn(0x1008, 3) == 0x1000
    assert combined_pfn(0x1008, 0x1000) == 0x1000
    assert block_aligned(0x1000, 12) and not block_aligned(0x1008, 4)
    # facts §2.3: order 0 from an order-3 block at P: P+4 (o2), P+2 (o1), P+1 (o0)
    assert expand_halves(0x40, 0, 3) == [(0x44, 2), (0x42, 1), (0x41, 0)]
    assert expand_halves(0x40, 3, 3) == []


@pytest.mark.parametrize(("size", "order"), [
    (1, 0), (4096, 0), (4097, 1), (8192, 1), (8193, 2), (16384, 2), (16385, 3),
    (1 << 22, 10), ((1 << 22) + 1, 11), (0, 52),
])
def test_get_order(size: int, order: int) -> None:
    assert get_order(size) == order
    v = z3.simplify(get_order(z3.BitVecVal(size, 64)))
    assert v.as_long() == order


def test_get_order_every_small_size() -> None:
    for size in range(1, 4097):
        assert get_order(size) == 0
    assert get_order(4097) == 1


# --- expand / __rmqueue_smallest --------------------------------------------------------------
def test_expand_returns_lowest_page_and_upper_halves_head_first(tiny: PageAllocator) -> None:
    a = tiny
    z = a.zones[0]
    assert free_list(z, 3, MIGRATE_MOVABLE) == [0, 8, 16, 24]
    p = a.alloc_pages(MOVABLE, 0)
    assert p == 0
    assert a.allocated[0] == (0, z.zid, OWNER_PAGES, MIGRATE_MOVABLE)
    assert free_list(z, 2, MIGRATE_MOVABLE) == [4]
    assert free_list(z, 1, MIGRATE_MOVABLE) == [2]
    assert free_list(z, 0, MIGRATE_MOVABLE) == [1]
    assert free_list(z, 3, MIGRATE_MOVABLE) == [8, 16, 24]
    for o, pfn in ((2, 4), (1, 2), (0, 1)):
        assert z.heads[o << 3 | MIGRATE_MOVABLE] == pfn
        assert z.nr_free(o) == 1
    assert z.free_pages == 31
    check_state(a)


def test_consecutive_order0_allocations_ascend(tiny: PageAllocator) -> None:
    """Lower halves are returned and upper halves queued, so a fresh block is handed out in
    address order (the sglist-merging property expand() documents)."""
    got = [tiny.alloc_pages(MOVABLE, 0) for _ in range(10)]
    assert got == list(range(10))


def test_smallest_order_first(tiny: PageAllocator) -> None:
    a = tiny
    assert a.alloc_pages(MOVABLE, 0) == 0  # leaves 4 (o2), 2 (o1), 1 (o0)
    assert a.alloc_pages(MOVABLE, 1) == 2  # exact fit at order 1, not a split of 4
    assert a.alloc_pages(MOVABLE, 2) == 4
    assert a.alloc_pages(MOVABLE, 0) == 1
    assert a.alloc_pages(MOVABLE, 0) == 8  # block 0 exhausted: split the next order-3 block
    check_state(a)


# --- __free_one_page ---------------------------------------------------------------------------
def test_free_merges_back_to_max_order(tiny: PageAllocator) -> None:
    a = tiny
    z = a.zones[0]
    blocks = [(a.alloc_pages(MOVABLE, o), o) for o in (0, 1, 0, 2, 0, 3, 1)]
    assert all(p is not None for p, _ in blocks)
    check_state(a)
    for p, o in reversed(blocks):
        assert p is not None
        a.free_pages_pfn(p, o)
        check_state(a)
    assert z.free_pages == 32
    assert sorted(p for p, o, _ in z.free_blocks() if o == 3) == [0, 8, 16, 24]
    assert [o for _, o, _ in z.free_blocks()] == [3, 3, 3, 3]


def test_free_merges_in_any_order(tiny: PageAllocator) -> None:
    a = tiny
    pages = [a.alloc_pages(MOVABLE, 0) for _ in range(8)]
    assert pages == list(range(8))
    for p in (5, 2, 7, 0, 3, 6, 1):
        a.free_pages_pfn(p, 0)
    # one page (4) still allocated: 5 is its buddy, 6-7 and 0-3 merged around it
    assert free_list(a.zones[0], 0, MIGRATE_MOVABLE) == [5]
    assert free_list(a.zones[0], 1, MIGRATE_MOVABLE) == [6]
    assert free_list(a.zones[0], 2, MIGRATE_MOVABLE) == [0]
    a.free_pages_pfn(4, 0)
    assert free_list(a.zones[0], 3, MIGRATE_MOVABLE)[0] == 0
    check_state(a)


def test_buddy_merge_likely_tail_and_head() -> None:
    """buddy_merge_likely(): a freed block whose would-be parent's buddy is free goes to the
    tail of its list; otherwise to the head (orders below MAX_PAGE_ORDER - 1 only)."""
    a = PageAllocator(MachineConfig.flat(64, max_order=4, min_pages=1))
    z = a.zones[0]
    mt = MIGRATE_MOVABLE
    assert a.alloc_pages(MOVABLE, 0) == 0  # leaves 8 (o3), 4 (o2), 2 (o1), 1 (o0)
    assert a.alloc_pages(MOVABLE, 0) == 1
    assert a.alloc_pages(MOVABLE, 1) == 2
    assert a.alloc_pages(MOVABLE, 0) == 4  # splits 4: leaves 6 (o1), 5 (o0)
    assert free_list(z, 1, mt) == [6] and free_list(z, 0, mt) == [5]
    # free 2 (o1): buddy 0 is allocated; parent 0's buddy at order 2 is 4, not free -> head
    a.free_pages_pfn(2, 1)
    assert free_list(z, 1, mt) == [2, 6]
    assert z.heads[1 << 3 | mt] == 2
    # free 1 (o0): buddy 0 allocated; parent 0's buddy at order 1 is 2, free at o1 -> tail
    a.free_pages_pfn(1, 0)
    assert free_list(z, 0, mt) == [5, 1]
    assert z.tails[0 << 3 | mt] == 1
    assert z._nxt[5] == 1 and z._prv[1] == 5
    # the head is what the next order-0 allocation gets
    assert a.alloc_pages(MOVABLE, 0) == 5
    check_state(a)


def test_buddy_merge_likely_not_at_max_order_minus_one() -> None:
    """order >= MAX_PAGE_ORDER - 1 always goes to the head, even when the parent's buddy is
    free (buddy_merge_likely returns false there)."""
    a = PageAllocator(MachineConfig.flat(64, max_order=4, min_pages=1))
    z = a.zones[0]
    mt = MIGRATE_MOVABLE
    assert a.alloc_pages(MOVABLE, 3) == 0  # leaves 8 (o3)
    assert a.alloc_pages(MOVABLE, 4) == 16
    assert a.alloc_pages(MOVABLE, 3) == 8
    assert a.alloc_pages(MOVABLE, 3) == 32  # leaves 40 (o3)
    a.free_pages_pfn(16, 4)
    assert free_list(z, 4, mt) == [16, 48]
    # 8 (o3): buddy 0 allocated; parent 0's buddy at order 4 (16) is free, but order 3 is
    # MAX_PAGE_ORDER - 1, so head
    a.free_pages_pfn(8, 3)
    assert free_list(z, 3, mt) == [8, 40]
    check_state(a)


def test_boot_frees_to_tail_in_address_order() -> None:
    """__free_pages_core(FPI_TO_TAIL): boot blocks are queued in address order."""
    a = PageAllocator(MachineConfig.flat(44, max_order=3, min_pages=1))
    z = a.zones[0]
    assert free_list(z, 3, MIGRATE_MOVABLE) == [0, 8, 16, 24, 32]
    assert free_list(z, 2, MIGRATE_MOVABLE) == [40]
    assert z.free_pages == 44
    check_state(a)


# --- split_large_buddy ------------------------------------------------------------------------
def test_blocks_above_pageblock_order_freed_per_pageblock(monkeypatch: pytest.MonkeyPatch) -> None:
    a = PageAllocator(MachineConfig.flat(2048, max_order=10, min_pages=8))
    assert a.pageblock_order == 9
    z = a.zones[0]
    p = a.alloc_pages(MOVABLE, 10)
    assert p == 0
    calls: list[tuple[int, int, int]] = []
    real = a._free_one_page

    def spy(zone: Zone, pfn: int, order: int, mt: int, to_tail: bool) -> None:
        calls.append((pfn, order, mt))
        real(zone, pfn, order, mt, to_tail)

    monkeypatch.setattr(a, "_free_one_page", spy)
    a.free_pages_pfn(0, 10)
    assert calls == [(0, 9, MIGRATE_MOVABLE), (512, 9, MIGRATE_MOVABLE)]
    # ... and the two pageblocks merge back into one MAX_PAGE_ORDER block
    assert free_list(z, 10, MIGRATE_MOVABLE) == [0, 1024]
    assert z.nr_free(9) == 0
    assert z.free_pages == 2048
    check_state(a)


def test_split_large_buddy_uses_each_pageblocks_type() -> None:
    """Each pageblock is freed with its own migratetype; merging two pageblocks of different
    (mergeable) types relabels the buddy's pageblock to the freed one's type."""
    a = PageAllocator(MachineConfig.flat(2048, max_order=10, min_pages=8))
    z = a.zones[0]
    assert a.alloc_pages(MOVABLE, 10) == 0
    a.pageblock_flags[1] = MIGRATE_UNMOVABLE  # as if the second half were relabelled
    a.free_pages_pfn(0, 10)
    # pageblock 0 freed MOVABLE; pageblock 1 freed UNMOVABLE merges with it and
    # change_pageblock_range() relabels pageblock 0 UNMOVABLE
    assert free_list(z, 10, MIGRATE_UNMOVABLE) == [0]
    assert a.pageblock_flags[0] == a.pageblock_flags[1] == MIGRATE_UNMOVABLE
    assert free_list(z, 10, MIGRATE_MOVABLE) == [1024]
    check_state(a)


# --- migratetype fallback ---------------------------------------------------------------------
def test_unmovable_claims_max_order_movable_block() -> None:
    a = PageAllocator(MachineConfig.flat(4096, max_order=10, min_pages=16))
    z = a.zones[0]
    assert list(a.pageblock_flags[:8]) == [MIGRATE_MOVABLE] * 8
    p = a.alloc_pages(GFP_KERNEL, 0)
    assert p == 0
    # try_to_steal_block(current_order >= pageblock_order): both pageblocks of the order-10
    # block now UNMOVABLE, and the rest of it split onto the UNMOVABLE lists
    assert list(a.pageblock_flags[:8]) == [MIGRATE_UNMOVABLE] * 2 + [MIGRATE_MOVABLE] * 6
    for o in range(10):
        assert free_list(z, o, MIGRATE_UNMOVABLE) == [1 << o]
    assert free_list(z, 10, MIGRATE_MOVABLE) == [1024, 2048, 3072]
    # a MOVABLE request uses the MOVABLE lists, not the claimed block
    assert a.alloc_pages(MOVABLE, 0) == 1024
    assert a.pageblock_flags[2] == MIGRATE_MOVABLE
    # the next UNMOVABLE request comes from the claimed block
    assert a.alloc_pages(GFP_KERNEL, 0) == 1
    # RECLAIMABLE falls back to UNMOVABLE first, but only MOVABLE has an order-10 block,
    # and __rmqueue_claim looks at the largest order first
    assert a.alloc_pages(GFP_KERNEL | g.__GFP_RECLAIMABLE, 0) == 2048
    assert a.pageblock_flags[4] == a.pageblock_flags[5] == MIGRATE_RECLAIMABLE
    assert a.allocated[2048][3] == MIGRATE_RECLAIMABLE
    check_state(a)


def _unmovable_full_with_hole(nr_freed: int) -> PageAllocator:
    """A 2048-page zone filled with UNMOVABLE order-5 blocks, then ``nr_freed`` of them
    freed from the start of pageblock 1 (pfn 512)."""
    a = PageAllocator(MachineConfig.flat(2048, max_order=10, min_pages=16))
    got = alloc_until_fail(a, GFP_KERNEL | NOWARN, 5)
    assert len(got) == 63 and list(a.pageblock_flags[:4]) == [MIGRATE_UNMOVABLE] * 4
    for p in range(512, 512 + 32 * nr_freed, 32):
        a.free_pages_pfn(p, 5)
    return a


def test_movable_claims_pageblock_at_half_free() -> None:
    """try_to_steal_block(): free + alike pages >= pageblock_nr_pages / 2 claims the block:
    its free pages move to the MOVABLE lists and the pageblock is relabelled."""
    a = _unmovable_full_with_hole(8)  # 256 free pages: exactly half of pageblock 1
    z = a.zones[0]
    assert free_list(z, 8, MIGRATE_UNMOVABLE) == [512]
    assert a.alloc_pages(MOVABLE, 0) == 512
    assert list(a.pageblock_flags[:4]) == [MIGRATE_UNMOVABLE, MIGRATE_MOVABLE,
                                           MIGRATE_UNMOVABLE, MIGRATE_UNMOVABLE]
    assert free_list(z, 7, MIGRATE_MOVABLE) == [640]
    assert z.boost == 512  # boost_watermark() ran before the claim
    check_state(a)


def test_movable_steals_below_half_free() -> None:
    """Below half a pageblock free (and no movable pages to count as alike), the claim
    fails and __rmqueue_steal takes the smallest fallback block without relabelling."""
    a = _unmovable_full_with_hole(7)  # 224 free pages in pageblock 1
    z = a.zones[0]
    p = a.alloc_pages(MOVABLE, 0)
    assert p is not None
    assert list(a.pageblock_flags[:4]) == [MIGRATE_UNMOVABLE] * 4
    assert a.allocated[p][3] == MIGRATE_MOVABLE
    # the smallest fallback order with a block is 5; the rest of that block stays UNMOVABLE
    assert p in (2016, 704)
    assert free_list(z, 0, MIGRATE_UNMOVABLE) == [p + 1]
    assert all(mt == MIGRATE_UNMOVABLE for _, _, mt in z.free_blocks())
    check_state(a)


def test_small_fallback_steals_and_boosts() -> None:
    """With only a small MOVABLE fragment left, an UNMOVABLE request steals it without
    relabelling (fewer than half the pageblock's pages are free or alike) and boosts the
    watermark by one pageblock (boost_watermark)."""
    a = PageAllocator(MachineConfig.flat(4096, max_order=10, min_pages=64))
    z = a.zones[0]
    movable = alloc_until_fail(a, MOVABLE | NOWARN, 0)
    assert z.free_pages == 64 and len(movable) == 4032
    assert z.boost == 0
    a.free_pages_pfn(movable[100], 0)
    a.drain_effects()
    p = a.alloc_pages(GFP_KERNEL | NOWARN, 0)
    assert p == movable[100]
    assert a.pageblock_flags[p >> 9] == MIGRATE_MOVABLE  # stolen, not claimed
    assert a.allocated[p][3] == MIGRATE_UNMOVABLE
    assert z.boost == 512  # pageblock_nr_pages; max_boost = max(512, high * 1.5)
    check_state(a)


def test_boost_is_ignored_by_high_order0_at_min() -> None:
    """zone_watermark_fast(): an order-0 __GFP_HIGH request checked at the min watermark
    retries without the boost, so GFP_ATOMIC still gets its 62.5% of min."""
    a = PageAllocator(MachineConfig.flat(4096, max_order=10, min_pages=64))
    z = a.zones[0]
    movable = alloc_until_fail(a, MOVABLE | NOWARN, 0)
    a.free_pages_pfn(movable[7], 0)
    assert a.alloc_pages(GFP_KERNEL | NOWARN, 0) is not None
    assert z.boost == 512 and z.free_pages == 64
    # boosted min is 576: even its 3/8 (216) is above 64, but the unboosted 3/8 of 64 is 24
    a.enter(Context.HARDIRQ, 0)
    got = alloc_until_fail(a, GFP_ATOMIC | NOWARN, 0)
    assert len(got) == 64 - 24
    # order 1 gets no such exemption
    a.free_pages_pfn(got.pop(), 0)
    a.free_pages_pfn(got.pop(), 0)
    assert a.alloc_pages(GFP_ATOMIC | NOWARN, 1) is None
    a.exit(Context.HARDIRQ, 0)
    # kswapd clears the boost
    a.kswapd(0)
    assert z.boost == 0 and not z.boosted
    check_state(a)


# --- zonelists --------------------------------------------------------------------------------
def test_zonelist_order_by_distance() -> None:
    a = PageAllocator(three_nodes())

    def nids(nid: int, thisnode: bool = False) -> list[int]:
        return [z.nid for z in a.zonelist(nid, ZONE_NORMAL, thisnode)]

    assert nids(0) == [0, 2, 1]
    assert nids(1) == [1, 2, 0]
    assert nids(2) == [2, 0, 1]
    assert nids(0, True) == [0]
    assert nids(1, True) == [1]
    # zones above highest_zoneidx are skipped: a Normal-only machine has nothing for GFP_DMA
    assert a.zonelist(0, ZONE_DMA, False) == ()
    before = snapshot(a)
    assert a.alloc_pages(GFP_DMA, 0) is None
    # no usable zone: __alloc_pages_slowpath() goes straight to nopage and warn_alloc(),
    # without waking kswapd or reclaiming
    effects = a.drain_effects()
    assert [e.kind for e in effects] == ["warn"]
    assert effects[0].detail == "page allocation failure: order:0, mode:0x1(GFP_DMA)"
    assert a.alloc_pages(GFP_DMA | NOWARN, 0) is None
    assert snapshot(a) == before


def test_zonelist_round_robin_node_load() -> None:
    """find_next_best_node()'s node_load persists across the nodes' builds: from node 3,
    nodes 1 and 2 are equally far, and node 2 wins because node 1 was loaded earlier.

    Worked by hand from mm/page_alloc.c (MAX_NUMNODES multiplier, +1 for n < local, +1 for
    nodes with CPUs, node_load[n] += 1 for the first node of each new distance)."""
    base = MachineConfig.flat(64, nodes=4, max_order=3, min_pages=4)
    m = dataclasses.replace(base, distance=((10, 20, 20, 30), (20, 10, 30, 20),
                                            (20, 30, 10, 20), (30, 20, 20, 10)))
    a = PageAllocator(m)
    orders = {n: [z.nid for z in a.zonelist(n, ZONE_NORMAL, False)] for n in range(4)}
    assert orders == {0: [0, 1, 2, 3], 1: [1, 3, 0, 2], 2: [2, 3, 0, 1], 3: [3, 2, 1, 0]}


def test_allocation_follows_zonelist_and_thisnode() -> None:
    a = PageAllocator(three_nodes())
    mine = alloc_until_fail(a, GFP_KERNEL | THISNODE | NOWARN, 0)
    assert {a.zones[a.allocated[p][1]].nid for p in mine} == {0}
    assert a.zones[0].free_pages == 4  # down to min, never to another node
    # without __GFP_THISNODE the nearest node (2, distance 20) serves next, then node 1
    p = a.alloc_pages(GFP_KERNEL, 0)
    assert p is not None and a.zone_of_pfn(p) is a.zones[2]
    alloc_until_fail(a, GFP_KERNEL | NOWARN, 0)
    assert [z.free_pages for z in a.zones] == [4, 4, 4]
    check_state(a)


def test_default_machine_zonelists(default_machine: PageAllocator) -> None:
    a = default_machine

    def zl(nid: int, hz: int) -> list[tuple[int, str]]:
        return [(z.nid, z.name) for z in a.zonelist(nid, hz, False)]

    assert zl(0, ZONE_NORMAL) == [(0, "Normal"), (0, "DMA32"), (0, "DMA"), (1, "Normal")]
    assert zl(1, ZONE_NORMAL) == [(1, "Normal"), (0, "Normal"), (0, "DMA32"), (0, "DMA")]
    assert zl(0, ZONE_DMA32) == [(0, "DMA32"), (0, "DMA")]
    assert zl(1, ZONE_DMA32) == [(0, "DMA32"), (0, "DMA")]
    assert zl(1, ZONE_DMA) == [(0, "DMA")]


# --- zone modifiers ---------------------------------------------------------------------------
def test_gfp_dma_and_dma32_zones(default_machine: PageAllocator) -> None:
    a = default_machine
    dma, dma32 = a.zones[0], a.zones[1]
    assert (dma.name, dma32.name) == ("DMA", "DMA32")
    for _ in range(5):
        p = a.alloc_pages(GFP_DMA | GFP_KERNEL, 0)
        assert p is not None and 1 <= p < 4096 and a.zone_of_pfn(p) is dma
        q = a.alloc_pages(GFP_DMA32 | GFP_KERNEL, 0)
        assert q is not None and a.zone_of_pfn(q) is dma32 and q < (1 << 20)
        r = a.get_free_pages(GFP_DMA | GFP_ATOMIC, 1)
        assert r != 0 and (r - PAGE_OFFSET) >> PAGE_SHIFT < 4096
        # from node 1 too: node 1 has no DMA/DMA32, so node 0's serve it
        s = a.alloc_pages_node(1, GFP_DMA32 | GFP_KERNEL, 0)
        assert s is not None and a.zone_of_pfn(s) is dma32


def test_lowmem_reserve_protects_lower_zones(default_machine: PageAllocator) -> None:
    """setup_per_zone_lowmem_reserve(): DMA keeps (DMA32 + Normal) / 256 pages from
    GFP_KERNEL, which is more than the whole DMA zone; DMA32 keeps Normal / 256."""
    a = default_machine
    dma, dma32, n0, n1 = a.zones
    # exhaust everything GFP_KERNEL may use, in big blocks then pages
    assert len(alloc_until_fail(a, GFP_KERNEL | NOWARN, 10)) > 8000
    alloc_until_fail(a, GFP_KERNEL | NOWARN, 0)
    assert dma.free_pages == dma.managed == 3998  # untouched
    assert dma32.free_pages == 2134 + 3342336 // 256  # min + lowmem_reserve[NORMAL]
    assert n0.free_pages == n0.wmark[0] and n1.free_pages == n1.wmark[0]
    # GFP_DMA32 may go down to DMA32's min, then into DMA down to min + reserve[DMA32]
    got = alloc_until_fail(a, GFP_DMA32 | GFP_KERNEL | NOWARN, 0)
    assert all(a.zone_of_pfn(p) in (dma, dma32) for p in got)
    assert dma32.free_pages == 2134
    assert dma.free_pages == 10 + 782336 // 256
    # GFP_DMA may go below that, down to DMA's own min. The rest of DMA is MOVABLE
    # fragments of pageblock 0, which straddles the zone start (pfn 0 is not in DMA), so
    # every fallback steals without claiming and boosts the watermark by a pageblock
    # (DMA manages >= 4 pageblocks); the caller then sleeps in direct reclaim while the kswapd
    # it woke clears the boost, and the zone ends at min.
    got = alloc_until_fail(a, GFP_DMA | GFP_KERNEL | NOWARN, 0)
    assert got and all(a.zone_of_pfn(p) is dma for p in got)
    assert dma.free_pages == dma.wmark[0]
    assert dma.boost == 0
    kinds = {e.kind for e in a.drain_effects()}
    assert {"sleep", "kswapd_run"} <= kinds
    assert a.pageblock_flags[0] == MIGRATE_MOVABLE  # never claimed: straddles the zone


def test_default_watermarks_match_kernel_formulas(default_machine: PageAllocator) -> None:
    """calculate_min_free_kbytes() gives int_sqrt(lowmem_kb * 16) ~ 23 MB, but khugepaged's
    set_recommended_min_free_kbytes() raises it to 2 + 3*3 pageblocks per populated zone
    <= Normal: DMA, DMA32, Normal(0), Normal(1) -> 512 * 4 * 11 pages."""
    from impl.watermarks import min_free_kbytes_for

    a = default_machine
    managed = [3998, 1048576 - 4096 - 262144, 3342336, 4128768]
    assert [z.managed for z in a.zones] == managed
    lowmem = sum(managed)
    assert min_free_kbytes_for(a.machine) == 512 * 4 * 11 * 4 == 90112
    pages_min = 512 * 4 * 11
    for z, mg in zip(a.zones, managed, strict=True):
        mn = pages_min * mg // lowmem
        gap = max(mn >> 2, mg * 10 // 10000)
        assert z.wmark == [mn, mn + gap, mn + 2 * gap, mn + 3 * gap], z.name
    assert [z.wmark[0] for z in a.zones] == [10, 2134, 9118, 11264]
    dma, dma32, n0, n1 = a.zones
    assert dma.lowmem_reserve == [0, 782336 // 256, (782336 + 3342336) // 256,
                                  (782336 + 3342336) // 256]
    assert dma32.lowmem_reserve == [0, 0, 3342336 // 256, 3342336 // 256]
    assert n0.lowmem_reserve == [0, 0, 0, 0] and n1.lowmem_reserve == [0, 0, 0, 0]


# --- NUMA statistics --------------------------------------------------------------------------
def numa(z: Zone) -> tuple[int, int, int, int, int]:
    return z.numa_hit, z.numa_miss, z.numa_foreign, z.numa_local, z.numa_other


def test_numa_counters_local_and_remote(default_machine: PageAllocator) -> None:
    a = default_machine
    n0, n1 = a.zones[2], a.zones[3]
    assert a.cpu_node[0] == 0 and a.cpu_node[4] == 1
    a.alloc_pages(GFP_KERNEL, 0, cpu=0)  # local
    assert numa(n0) == (1, 0, 0, 1, 0)
    a.alloc_pages_node(1, GFP_KERNEL, 0, cpu=0)  # asked for node 1: a hit there, not local
    assert numa(n1) == (1, 0, 0, 0, 1)
    a.alloc_pages_node(0, GFP_KERNEL, 0, cpu=4)  # cpu on node 1 asks for node 0
    assert numa(n0) == (2, 0, 0, 1, 1)
    a.alloc_pages(GFP_KERNEL, 0, cpu=4)  # local to node 1
    assert numa(n1) == (2, 0, 0, 1, 1)


def test_numa_miss_and_foreign() -> None:
    a = PageAllocator(MachineConfig.flat(64, nodes=2, max_order=3, min_pages=4))
    z0, z1 = a.zones
    alloc_until_fail(a, GFP_KERNEL | THISNODE | NOWARN, 0, cpu=0)
    hits = z0.numa_hit
    assert hits == 60 and numa(z0) == (60, 0, 0, 60, 0)
    p = a.alloc_pages(GFP_KERNEL, 0, cpu=0)  # node 0 below low: served by node 1
    assert p is not None and a.zone_of_pfn(p) is z1
    assert numa(z1) == (0, 1, 0, 0, 1)
    assert numa(z0) == (60, 0, 1, 60, 0)
    q = a.alloc_pages_node(0, GFP_KERNEL, 0, cpu=1)  # cpu on node 1 prefers node 0
    assert q is not None and a.zone_of_pfn(q) is z1
    assert numa(z1) == (0, 2, 0, 1, 1)  # miss (preferred was node 0), but local to cpu 1
    assert numa(z0) == (60, 0, 2, 60, 0)


# --- watermarks and reserves ------------------------------------------------------------------
def _kernel_min(mark: int, gfp: int) -> int:
    """gfp_to_alloc_flags() + __zone_watermark_ok() reserve arithmetic, written out."""
    if gfp & g.__GFP_MEMALLOC and not gfp & g.__GFP_NOMEMALLOC:
        return -(1 << 30)  # ALLOC_NO_WATERMARKS
    mn = mark
    if gfp & HIGH:
        mn -= mn // 2
        if not gfp & g.__GFP_DIRECT_RECLAIM and not gfp & g.__GFP_NOMEMALLOC:
            mn -= mn // 4
    return mn


@pytest.mark.parametrize(("gfp", "ctx", "expected_min"), [
    (GFP_KERNEL, None, 50),
    (GFP_KERNEL | HIGH, None, 25),  # 50% of min
    (GFP_ATOMIC, Context.HARDIRQ, 19),  # 50 - 25 = 25; 25 - 25 // 4 = 19 (~3/8 of min)
    (GFP_ATOMIC, Context.SPINLOCK, 19),
    (GFP_ATOMIC | g.__GFP_NOMEMALLOC, Context.SOFTIRQ, 25),  # no ALLOC_NON_BLOCK
    (GFP_NOWAIT, Context.HARDIRQ, 50),  # non-blocking without __GFP_HIGH: nothing extra
    (GFP_KERNEL & ~g.__GFP_DIRECT_RECLAIM, Context.PREEMPT_DISABLED, 50),
    (GFP_KERNEL | g.__GFP_MEMALLOC, None, -(1 << 30)),
])
@pytest.mark.parametrize("order", [0, 1, 3])
def test_watermark_thresholds(gfp: int, ctx: Context | None, expected_min: int,
                              order: int) -> None:
    a = PageAllocator(MachineConfig.flat(1024, max_order=10, min_pages=50))
    z = a.zones[0]
    assert z.wmark[0] == 50 and z.lowmem_reserve == [0, 0, 0, 0]
    assert _kernel_min(50, gfp) == expected_min
    if ctx is not None:
        a.enter(ctx, 0)
    gfp |= NOWARN
    # the kernel's check: free - (2^order - 1) > adjusted min + lowmem_reserve
    free, n = 1024, 0
    while free - ((1 << order) - 1) > expected_min and free >= 1 << order:
        free -= 1 << order
        n += 1
    got = alloc_until_fail(a, gfp, order)
    assert len(got) == n
    assert z.free_pages == free
    assert a.alloc_pages(gfp, order) is None
    kinds = drain_kinds(a)
    assert "reclaim" not in kinds
    assert ("sleep" in kinds) == (ctx is None)  # only blocking masks enter direct reclaim
    check_state(a)


def test_gfp_kernel_fails_at_min_with_warning() -> None:
    a = PageAllocator(MachineConfig.flat(256, max_order=4, min_pages=20))
    got = alloc_until_fail(a, GFP_KERNEL, 0)
    assert len(got) == 256 - 20
    kinds = drain_kinds(a)
    # the woken kswapd runs while the caller sleeps (nothing to reclaim), then it warns
    assert kinds == ["kswapd_wake", "sleep", "kswapd_run", "warn"]
    assert a.alloc_pages(GFP_KERNEL, 0) is None
    assert drain_kinds(a) == ["kswapd_wake", "sleep", "kswapd_run", "warn"]
    # the warning names order and mode the way warn_alloc prints them
    a.alloc_pages(GFP_KERNEL, 2)
    warn = [e for e in a.drain_effects() if e.kind == "warn"]
    assert warn and warn[0].detail == "page allocation failure: order:2, mode:0xcc0(GFP_KERNEL)"


# --- reclaim ----------------------------------------------------------------------------------
def test_direct_reclaim_frees_page_cache() -> None:
    a = PageAllocator(MachineConfig.flat(1024, max_order=10, min_pages=50))
    z = a.zones[0]
    assert a.pagecache_add(0, 900) == 900
    lru_before = list(a.nodes[0].lru)
    assert z.free_pages == 124
    assert drain_kinds(a) == []
    got = [a.alloc_pages(GFP_KERNEL, 0) for _ in range(200)]
    assert None not in got
    kinds = drain_kinds(a)
    assert "sleep" in kinds and "reclaim" in kinds and "kswapd_wake" in kinds
    assert "warn" not in kinds
    lru_after = list(a.nodes[0].lru)
    reclaimed = len(lru_before) - len(lru_after)
    assert reclaimed > 0 and reclaimed % 32 == 0  # SWAP_CLUSTER_MAX batches
    assert lru_after == lru_before[reclaimed:]  # oldest first
    assert z.free_pages > 50 - 1
    check_state(a)


def test_atomic_does_not_reclaim_but_wakes_kswapd() -> None:
    a = PageAllocator(MachineConfig.flat(1024, max_order=10, min_pages=50))
    z = a.zones[0]
    a.pagecache_add(0, 900)
    lru_before = list(a.nodes[0].lru)
    a.drain_effects()
    a.enter(Context.SOFTIRQ, 0)
    got = alloc_until_fail(a, GFP_ATOMIC, 0)
    assert len(got) == 124 - 19
    effects = a.drain_effects()
    kinds = [e.kind for e in effects]
    assert "sleep" not in kinds and "reclaim" not in kinds
    assert kinds.count("kswapd_wake") == 1 and kinds[-1] == "warn"
    assert all(e.ctx == int(Context.SOFTIRQ) for e in effects if e.kind == "warn")
    assert list(a.nodes[0].lru) == lru_before
    assert a.nodes[0].kswapd_awake
    a.exit(Context.SOFTIRQ, 0)
    # kswapd reclaims back above the high watermark
    high = z.wmark[2]
    assert z.free_pages <= high
    done = a.kswapd(0)
    assert z.free_pages > high
    assert z.free_pages - 32 <= high  # no more batches than needed
    assert done == z.free_pages - 19
    assert not a.nodes[0].kswapd_awake
    assert drain_kinds(a) == ["kswapd_run"]
    check_state(a)


def test_memalloc_uses_no_watermarks_before_and_after_reclaim() -> None:
    """__GFP_MEMALLOC: the reserve attempt ignores watermarks, so the zone empties before any
    reclaim; once empty, direct reclaim frees one SWAP_CLUSTER_MAX batch and the retry still
    runs with ALLOC_NO_WATERMARKS (reserve_flags replace alloc_flags in the retry loop)."""
    a = PageAllocator(MachineConfig.flat(1024, max_order=10, min_pages=50))
    z = a.zones[0]
    a.pagecache_add(0, 900)
    lru = len(a.nodes[0].lru)
    a.drain_effects()
    gfp = GFP_KERNEL | g.__GFP_MEMALLOC
    got = [a.alloc_pages(gfp, 0) for _ in range(124)]
    assert None not in got and z.free_pages == 0
    assert "reclaim" not in drain_kinds(a)
    assert a.alloc_pages(gfp, 0) is not None
    # while it sleeps, the woken kswapd balances the node (above high), then direct reclaim
    # takes its own batch of 32
    assert drain_kinds(a) == ["sleep", "kswapd_run", "reclaim"]
    reclaimed = lru - len(a.nodes[0].lru)
    assert reclaimed > 32 and z.free_pages == reclaimed - 1
    assert z.free_pages - 32 > z.wmark[2]
    check_state(a)


def test_kswapd_reclaims_only_its_node() -> None:
    a = PageAllocator(MachineConfig.flat(256, nodes=2, max_order=4, min_pages=16))
    a.pagecache_add(0, 200)
    a.pagecache_add(1, 200)
    lru1 = list(a.nodes[1].lru)
    a.kswapd(0)
    assert list(a.nodes[1].lru) == lru1
    assert a.zones[0].free_pages > a.zones[0].wmark[2]
    check_state(a)


def test_pagecache_and_drop_caches() -> None:
    a = PageAllocator(MachineConfig.flat(256, nodes=2, max_order=4, min_pages=16))
    assert a.pagecache_add(1, 10, cpu=0) == 10
    assert all(a.zone_of_pfn(p) is a.zones[1] for p in a.nodes[1].lru)
    assert all(a.allocated[p][2] == OWNER_PAGECACHE for p in a.nodes[1].lru)
    assert a.drop_caches() == 10
    assert a.nr_free_pages() == 512
    check_state(a)


# --- sleeping rules ---------------------------------------------------------------------------
ATOMIC_CONTEXTS = [Context.SPINLOCK, Context.HARDIRQ, Context.SOFTIRQ, Context.PREEMPT_DISABLED]


@pytest.mark.parametrize("ctx", ATOMIC_CONTEXTS)
@pytest.mark.parametrize("gfp", [GFP_KERNEL, g.GFP_NOFS, g.GFP_NOIO, g.GFP_USER, MOVABLE,
                                 GFP_ATOMIC | g.__GFP_DIRECT_RECLAIM])
def test_blocking_mask_in_atomic_context(tiny: PageAllocator, ctx: Context, gfp: int) -> None:
    a = tiny
    a.enter(ctx, 0)
    with pytest.raises(SleepInAtomicError, match="sleeping function called from invalid"):
        a.alloc_pages(gfp, 0)
    with pytest.raises(SleepInAtomicError):
        a.get_free_pages(gfp, 0)
    a.exit(ctx, 0)
    # the same call with an explicit context, without entering it
    with pytest.raises(SleepInAtomicError, match=ctx.name.lower()):
        a.alloc_pages(gfp, 0, ctx=ctx)
    assert a.alloc_pages(gfp, 0) is not None  # fine in process context


@pytest.mark.parametrize("ctx", ATOMIC_CONTEXTS)
def test_non_blocking_masks_allowed_in_atomic_context(tiny: PageAllocator, ctx: Context) -> None:
    a = tiny
    a.enter(ctx, 0)
    assert a.context(0) is ctx
    for gfp in (GFP_ATOMIC, GFP_NOWAIT, GFP_KERNEL & ~g.__GFP_DIRECT_RECLAIM):
        assert a.alloc_pages(gfp, 0) is not None
    assert "sleep" not in drain_kinds(a)


def test_contexts_nest_per_cpu() -> None:
    a = PageAllocator(MachineConfig.flat(64, nodes=2, max_order=3, min_pages=4))
    a.enter(Context.SPINLOCK, 0)
    a.enter(Context.HARDIRQ, 0)
    assert a.alloc_pages(GFP_KERNEL, 0, cpu=1) is not None  # cpu 1 is in process context
    a.exit(Context.HARDIRQ, 0)
    assert a.context(0) is Context.SPINLOCK
    with pytest.raises(SleepInAtomicError):
        a.alloc_pages(GFP_KERNEL, 0, cpu=0)
    a.exit(Context.SPINLOCK, 0)
    assert a.context(0) is Context.PROCESS
    assert a.alloc_pages(GFP_KERNEL, 0, cpu=0) is not None


# --- order > MAX_PAGE_ORDER -------------------------------------------------------------------
def test_order_above_max_warns_and_fails(default_machine: PageAllocator) -> None:
    a = default_machine
    a.alloc_pages(GFP_KERNEL, 3)
    before = snapshot(a)
    assert a.alloc_pages(GFP_KERNEL, 11) is None
    effects = a.drain_effects()
    assert [e.kind for e in effects] == ["warn"]
    assert "11" in effects[0].detail
    assert snapshot(a) == before
    assert a.alloc_pages(GFP_KERNEL | NOWARN, 11) is None
    assert a.get_free_pages(GFP_KERNEL | NOWARN, 12) == 0
    assert a.effects == []
    assert snapshot(a) == before
    assert a.alloc_pages(GFP_KERNEL, 10) is not None  # MAX_PAGE_ORDER itself is fine


# --- addresses --------------------------------------------------------------------------------
def test_get_free_pages_returns_direct_map_addresses(default_machine: PageAllocator) -> None:
    a = default_machine
    addrs = []
    for order in (0, 1, 4, 10):
        addr = a.get_free_pages(GFP_KERNEL, order)
        assert addr >= PAGE_OFFSET
        pfn = (addr - PAGE_OFFSET) >> PAGE_SHIFT
        assert addr == PAGE_OFFSET + (pfn << 12) == a.pfn_to_virt(pfn)
        assert a.virt_to_pfn(addr) == pfn
        assert (addr - PAGE_OFFSET) % (4096 << order) == 0
        assert a.allocated[pfn][0] == order
        addrs.append((addr, order))
    free0 = a.nr_free_pages()
    for addr, order in addrs:
        a.free_pages(addr, order)
    assert a.nr_free_pages() == free0 + 1 + 2 + 16 + 1024
    a.free_pages(0, 3)  # free_pages(0) is a no-op
    assert a.allocated == {}
    check_state(a)


def test_get_free_pages_strips_highmem(tiny: PageAllocator) -> None:
    addr = tiny.get_free_pages(GFP_HIGHUSER_MOVABLE, 0)
    pfn = tiny.virt_to_pfn(addr)
    assert tiny.allocated[pfn][3] == MIGRATE_MOVABLE


def test_get_free_pages_returns_zero_on_failure(tiny: PageAllocator) -> None:
    assert tiny.get_free_pages(GFP_KERNEL | NOWARN, 3) != 0
    while tiny.get_free_pages(GFP_ATOMIC | NOWARN, 0):
        pass
    assert tiny.get_free_pages(GFP_ATOMIC | NOWARN, 0) == 0


# --- a big machine ----------------------------------------------------------------------------
def test_one_tib_machine() -> None:
    a = PageAllocator(MachineConfig.named("1tib"))
    total = 1 << (40 - PAGE_SHIFT)
    assert a.nr_free_pages() == total == sum(z.managed for z in a.zones)
    z0, z1 = a.zones
    assert z0.nr_free(10) == z1.nr_free(10) == total // 2 // 1024
    blocks = []
    for cpu in (0, 1):
        for order in (0, 3, 9, 10, 0):
            p = a.alloc_pages(GFP_KERNEL, order, cpu=cpu)
            assert p is not None and p % (1 << order) == 0
            assert a.zone_of_pfn(p) is a.zones[cpu]
            blocks.append((p, order))
    p = a.alloc_pages_node(1, MOVABLE, 10)
    assert p is not None and p >= total // 2
    blocks.append((p, 10))
    used = sum(1 << o for _, o in blocks)
    assert a.nr_free_pages() == total - used
    addr = a.get_free_pages(GFP_KERNEL, 2, cpu=1)
    assert a.virt_to_pfn(addr) >= total // 2
    a.free_pages(addr, 2)
    for p, o in blocks:
        a.free_pages_pfn(p, o)
    assert a.nr_free_pages() == total
    assert a.allocated == {}
    for z in a.zones:
        assert z.nr_free(10) == total // 2 // 1024
        assert all(z.nr_free(o) == 0 for o in range(10))


# --- random operation sequences ---------------------------------------------------------------
MACHINES = {
    "two-node": lambda: MachineConfig.flat(64, nodes=2, max_order=3, min_pages=4),
    "pageblocks": lambda: MachineConfig.flat(2048, max_order=10, min_pages=16),
    "tiny": MachineConfig.tiny,
}
GFPS = [GFP_KERNEL, MOVABLE, GFP_KERNEL | g.__GFP_RECLAIMABLE, GFP_KERNEL | HIGH | NOWARN,
        GFP_KERNEL | THISNODE | NOWARN, GFP_NOWAIT]

KINDS = ["alloc", "alloc", "alloc", "atomic", "free", "free", "free", "cache", "drop", "kswapd"]
Op = tuple[str, int, int, int, int]
ops_strategy = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 1 << 16),
                                  st.integers(0, 10), st.integers(0, 7),
                                  st.sampled_from([-1, 0, 1])), min_size=5, max_size=60)


def _run(a: PageAllocator, ops: list[Op]) -> Iterator[None]:
    """Apply ops (kind, n, order, cpu index, nid) one at a time, yielding after each; at the
    end free everything still held."""
    live: list[tuple[int, int]] = []
    nodes = len(a.nodes)
    cpus = sorted(a.cpu_node)
    for kind, n, order, cpu_i, nid in ops:
        order = min(order, a.max_order)
        cpu = cpus[cpu_i % len(cpus)]
        if kind == "alloc":
            p = a.alloc_pages_node(nid if nid < nodes else -1, GFPS[n % len(GFPS)], order,
                                   cpu=cpu)
            if p is not None:
                assert a.allocated[p][0] == order
                live.append((p, order))
        elif kind == "atomic":
            a.enter(Context.HARDIRQ, cpu)
            p = a.alloc_pages(GFP_ATOMIC, order, cpu=cpu)
            a.exit(Context.HARDIRQ, cpu)
            if p is not None:
                live.append((p, order))
        elif kind == "free" and live:
            p, order = live.pop(n % len(live))
            a.free_pages_pfn(p, order)
        elif kind == "cache":
            a.pagecache_add(n % nodes, 1 + n % 40, cpu=cpu)
        elif kind == "drop":
            a.drop_caches()
        elif kind == "kswapd":
            a.kswapd(n % nodes)
        yield
    for p, order in live:
        a.free_pages_pfn(p, order)
    a.drop_caches()
    yield


@settings(max_examples=50, deadline=None)
@given(machine=st.sampled_from(sorted(MACHINES)), ops=ops_strategy)
def test_random_operations_conserve_pages(machine: str, ops: list[Op]) -> None:
    a = PageAllocator(MACHINES[machine]())
    managed = sum(z.managed for z in a.zones)
    for _ in _run(a, ops):
        check_state(a)
    # everything returned: all memory free and merged back into maximal blocks
    assert a.nr_free_pages() == managed
    assert a.allocated == {}
    for z in a.zones:
        assert all(o == a.max_order for _, o, _ in z.free_blocks())


def test_order_above_max_in_atomic_context_is_a_failed_allocation_not_a_sleep_bug() -> None:
    """__alloc_pages() WARNs and returns NULL for order > MAX_PAGE_ORDER before might_alloc()
    can complain about the blocking mask."""
    a = PageAllocator(MachineConfig.tiny())
    a.enter(Context.HARDIRQ, 0)
    assert a.alloc_pages_node(-1, GFP_KERNEL, a.max_order + 1) is None
    assert [e.kind for e in a.drain_effects()] == ["warn"]
    with pytest.raises(SleepInAtomicError):
        a.alloc_pages_node(-1, GFP_KERNEL, 0)


def test_kswapd_stops_when_one_zone_is_balanced() -> None:
    """pgdat_balanced(): kswapd stops as soon as some zone is above its high watermark."""
    a = PageAllocator(MachineConfig.flat(1024, nodes=1, max_order=4, min_pages=64))
    z = a.zones[0]
    a.pagecache_add(0, 1024)
    assert z.free_pages <= z.wmark[2]
    a.drain_effects()
    reclaimed = a.kswapd(0)
    assert reclaimed > 0
    assert z.free_pages > z.wmark[2]
    assert z.free_pages - 32 <= z.wmark[2]  # not one round more than needed
    assert a.nodes[0].lru  # page cache left over
