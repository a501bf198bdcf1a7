"""The bulk page allocator (alloc_pages_bulk_noprof, mm/page_alloc.c of Linux 6.12.117) and its
use by vmalloc (vm_area_alloc_pages, mm/vmalloc.c).

Expected values come from the kernel source: one zone serves the batch, chosen by
zone_watermark_fast(zone, 0, wmark_pages(zone, LOW) + nr_pages, ...) on the preferred node
only when more than one node is online; pages come from __rmqueue, so a bulk call returns the
pages the same number of single calls would (no pcp lists in the model); zone_statistics()
counts them at once; no zone, one missing page or no first page falls back to __alloc_pages()
for one page.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import spec.gfp as g
from impl.abstraction import abstract
from impl.debug import CheckedPageAllocator, InvariantViolation
from impl.machine import MachineConfig, NodeConfig, ZoneConfig
from impl.page_alloc import OWNER_PAGES, PageAllocator, Zone
from impl.vmalloc import OWNER_VMALLOC, VMALLOC_BULK_MAX, Vmalloc
from impl.watermarks import WMARK_LOW
from spec.context import Context
from spec.errors import BadNodeError, GfpError, SleepInAtomicError
from spec.gfp import GFP_ATOMIC, GFP_KERNEL, GFP_NOWAIT, ZONE_DMA32, ZONE_NORMAL
from spec.invariants import violated
from tests.conftest import snapshot

NOWARN = g.__GFP_NOWARN
MIN = 8


def two_zone_nodes(nodes: int = 2) -> MachineConfig:
    """Node 0: DMA32 [0, 256) and Normal [256, 512); node 1 (if any): Normal [512, 768).
    One CPU per node, max_order 3, min watermark MIN pages everywhere."""
    ncfg = [NodeConfig(0, (0,), (
        ZoneConfig(ZONE_DMA32, 0, 256, ((0, 256),), min=MIN),
        ZoneConfig(ZONE_NORMAL, 256, 256, ((256, 512),), min=MIN)))]
    if nodes == 2:
        ncfg.append(NodeConfig(1, (1,), (ZoneConfig(ZONE_NORMAL, 512, 256, ((512, 768),),
                                                     min=MIN),)))
    dist = ((10, 20), (20, 10)) if nodes == 2 else ((10,),)
    return MachineConfig(nodes=tuple(ncfg), distance=dist, max_order=3, name="bulk")


def zone(a: PageAllocator, nid: int, idx: int) -> Zone:
    return next(z for z in a.nodes[nid].zones if z.idx == idx)


def numa(z: Zone) -> tuple[int, int, int, int, int]:
    return z.numa_hit, z.numa_miss, z.numa_foreign, z.numa_local, z.numa_other


def assert_invariants(a: PageAllocator) -> None:
    assert violated(abstract(a), fast=True) == []


def drain_to(a: PageAllocator, z: Zone, free: int) -> list[int]:
    """Allocate single pages from ``z`` (its node, __GFP_THISNODE, a mask whose highest zone
    is ``z``'s) until it has ``free``."""
    out = []
    mask = GFP_NOWAIT | NOWARN | g.__GFP_THISNODE | (g.__GFP_DMA32 if z.idx == ZONE_DMA32 else 0)
    while z.free_pages > free:
        p = a.alloc_pages_node(z.nid, mask, 0)
        assert p is not None and a.allocated[p][1] == z.zid
        out.append(p)
    assert z.free_pages == free
    return out


def low_plus_reserve(a: PageAllocator, z: Zone, gfp: int) -> int:
    """wmark_pages(z, WMARK_LOW) + lowmem_reserve[gfp_zone(gfp)]: the order-0 pass line."""
    return z.wmark[WMARK_LOW] + z.boost + z.lowmem_reserve[int(g.gfp_zone(gfp))]


# --- what a bulk call returns ------------------------------------------------------------------
def test_bulk_pages_are_the_single_allocators_pages() -> None:
    a, b = PageAllocator(two_zone_nodes()), PageAllocator(two_zone_nodes())
    arr: list[int | None] = [None] * 12
    normal = zone(a, 0, ZONE_NORMAL)
    before_free, before_numa = normal.free_pages, numa(normal)
    assert a.alloc_pages_bulk(GFP_KERNEL, 0, 12, arr) == 12
    # __rmqueue in the same order as 12 alloc_pages_node calls on an identical machine
    assert arr == [b.alloc_pages_node(0, GFP_KERNEL, 0) for _ in range(12)]
    for p in arr:
        assert p is not None
        order, zid, owner, _mt = a.allocated[p]
        assert (order, zid, owner) == (0, normal.zid, OWNER_PAGES)
    assert normal.free_pages == before_free - 12
    # zone_statistics(preferred, zone, 12): 12 hits, 12 local (cpu 0 is on node 0)
    h, m, f, lo, o = before_numa
    assert numa(normal) == (h + 12, m, f, lo + 12, o)
    assert [numa(z) for z in a.zones] == [numa(z) for z in b.zones]
    assert_invariants(a)
    assert a.drain_effects() == []


def free_lists(a: PageAllocator) -> list[tuple[object, ...]]:
    """Every zone's free lists exactly: heads, tails, counts, links, PageBuddy orders."""
    return [(z.free_pages, list(z.heads), list(z.tails), list(z.counts), dict(z._buddy),
             dict(z._nxt), dict(z._prv)) for z in a.zones]


@given(st.lists(st.tuples(st.sampled_from(("alloc", "free", "bulk")), st.integers(0, 3),
                          st.integers(1, 40)), max_size=30))
@example([("alloc", 0, 1)] * 16 + [("free", 0, k) for k in range(8)]  # 8 order-0 holes
         + [("bulk", 0, 3), ("bulk", 0, 12)])  # part of that list, then past its end
@settings(max_examples=60, deadline=None)
def test_bulk_leaves_the_free_lists_the_single_allocator_leaves(
        ops: list[tuple[str, int, int]]) -> None:
    """On a fragmented machine (blocks of orders 0..3 freed in any order), a bulk call takes
    the pages, and leaves every free list (order of entries included), that as many single
    allocations would: the bulk loop's inline list-head take and its splits are
    __rmqueue_smallest's. One zone (no NOFRAGMENT, no other zone to pick): the zone choice,
    where bulk and single allocations differ, is the other tests' business."""
    one = MachineConfig(nodes=(NodeConfig(0, (0,), (
        ZoneConfig(ZONE_NORMAL, 0, 512, ((0, 512),), min=MIN),)),), distance=((10,),),
        max_order=3, name="bulk1")
    a, b = PageAllocator(one), PageAllocator(one)
    live: list[tuple[int, int]] = []
    for op, order, n in ops:
        if op == "alloc":
            p = a.alloc_pages_node(0, GFP_KERNEL | NOWARN, order)
            assert p == b.alloc_pages_node(0, GFP_KERNEL | NOWARN, order)
            if p is not None:
                live.append((p, order))
        elif op == "free" and live:
            p, o = live.pop(n % len(live))
            a.free_pages_pfn(p, o)
            b.free_pages_pfn(p, o)
        elif op == "bulk":
            arr: list[int | None] = [None] * n
            got = a.alloc_pages_bulk(GFP_KERNEL | NOWARN, 0, n, arr)
            singles = [b.alloc_pages_node(0, GFP_KERNEL | NOWARN, 0) for _ in range(got)]
            assert arr[:got] == singles
            live += [(p, 0) for p in singles if p is not None]
        assert free_lists(a) == free_lists(b)
    assert_invariants(a)


def test_populated_entries_are_kept_and_counted() -> None:
    a = PageAllocator(two_zone_nodes())
    mine = a.alloc_pages_node(0, GFP_KERNEL, 0)
    assert mine is not None
    arr: list[int | None] = [mine, None, mine, None, None]
    assert a.alloc_pages_bulk(GFP_KERNEL, 0, 5, arr) == 5
    assert arr[0] == arr[2] == mine
    assert len({arr[1], arr[3], arr[4], mine}) == 4
    assert all(a.allocated[p][0] == 0 for p in arr if p is not None)
    # a full array, a zero or negative count: nothing to do, nothing changes
    snap = snapshot(a)
    assert a.alloc_pages_bulk(GFP_KERNEL, 0, 5, arr) == 5
    assert a.alloc_pages_bulk(GFP_KERNEL, 0, 0, []) == 0
    assert a.alloc_pages_bulk(GFP_KERNEL, 0, -3, []) == 0
    # entries beyond nr_pages are not the call's business
    assert a.alloc_pages_bulk(GFP_KERNEL, 0, 2, [mine, mine, None]) == 2
    assert snapshot(a) == snap
    assert_invariants(a)


def test_entries_after_a_hole_still_count() -> None:
    a = PageAllocator(two_zone_nodes())
    mine = a.alloc_pages_node(0, GFP_KERNEL, 0)
    arr: list[int | None] = [None, None, mine]
    assert a.alloc_pages_bulk(GFP_KERNEL, 0, 3, arr) == 3
    assert arr[2] == mine and None not in arr


# --- the zone: watermark + nr_pages, preferred node only ---------------------------------------
@pytest.mark.parametrize("nr", [4, 5, 6])
def test_watermark_includes_nr_pages(nr: int) -> None:
    a = PageAllocator(two_zone_nodes())
    normal, dma32 = zone(a, 0, ZONE_NORMAL), zone(a, 0, ZONE_DMA32)
    line = low_plus_reserve(a, normal, GFP_KERNEL)
    drain_to(a, normal, line + 5)
    arr: list[int | None] = [None] * nr
    assert a.alloc_pages_bulk(GFP_KERNEL, 0, nr, arr) == nr
    # zone_watermark_fast passes iff free > low + nr_pages + lowmem_reserve: 5 > nr
    want = normal if nr < 5 else dma32
    assert {a.allocated[p][1] for p in arr if p is not None} == {want.zid}
    assert_invariants(a)


def test_bulk_may_go_below_the_low_mark_the_check_was_for() -> None:
    """The check is made once for the batch: all pages come from the zone that passed it."""
    a = PageAllocator(two_zone_nodes())
    normal = zone(a, 0, ZONE_NORMAL)
    line = low_plus_reserve(a, normal, GFP_KERNEL)
    drain_to(a, normal, line + 21)
    arr: list[int | None] = [None] * 20
    assert a.alloc_pages_bulk(GFP_KERNEL, 0, 20, arr) == 20
    assert {a.allocated[p][1] for p in arr if p is not None} == {normal.zid}
    assert normal.free_pages == line + 1


def test_preferred_node_only_then_one_page_from_anywhere() -> None:
    a = PageAllocator(two_zone_nodes())
    normal, dma32 = zone(a, 0, ZONE_NORMAL), zone(a, 0, ZONE_DMA32)
    remote = zone(a, 1, ZONE_NORMAL)
    for z in (normal, dma32):  # node 0: both zones at their low line (fail even for 1 page)
        drain_to(a, z, low_plus_reserve(a, z, GFP_KERNEL))
    a.drain_effects()
    before = numa(remote), numa(normal)
    arr: list[int | None] = [None] * 8
    # node 1 has room, but the bulk path may not use another node: __alloc_pages gives one
    # page, from node 1 (ALLOC_NOFRAGMENT's retry), counted as a miss there, foreign on node 0
    assert a.alloc_pages_bulk(GFP_KERNEL, 0, 8, arr) == 1
    p = arr[0]
    assert p is not None and arr[1:] == [None] * 7
    assert a.allocated[p][1] == remote.zid
    (h, m, f, lo, o), (h0, m0, f0, lo0, o0) = before
    assert numa(remote) == (h, m + 1, f, lo, o + 1)
    assert numa(normal) == (h0, m0, f0 + 1, lo0, o0)
    assert_invariants(a)


def test_one_node_machine_uses_the_next_local_zone() -> None:
    a = PageAllocator(two_zone_nodes(nodes=1))
    normal, dma32 = zone(a, 0, ZONE_NORMAL), zone(a, 0, ZONE_DMA32)
    drain_to(a, normal, low_plus_reserve(a, normal, GFP_KERNEL))
    arr: list[int | None] = [None] * 8
    assert a.alloc_pages_bulk(GFP_KERNEL, 0, 8, arr) == 8
    assert {a.allocated[p][1] for p in arr if p is not None} == {dma32.zid}


def test_numa_no_node_is_the_cpus_node() -> None:
    a = PageAllocator(two_zone_nodes())
    arr: list[int | None] = [None] * 3
    assert a.alloc_pages_bulk(GFP_KERNEL, -1, 3, arr, cpu=1) == 3
    remote = zone(a, 1, ZONE_NORMAL)
    assert {a.allocated[p][1] for p in arr if p is not None} == {remote.zid}
    assert numa(remote)[0] == 3 and numa(remote)[3] == 3  # hit and local on node 1


# --- the fallback -----------------------------------------------------------------------------
def test_one_missing_page_is_the_single_allocator() -> None:
    a, b = PageAllocator(two_zone_nodes()), PageAllocator(two_zone_nodes())
    # both zones of node 0 below the batch's line but above the single page's: a 1-page
    # "batch" never checks the batch line, it is __alloc_pages at once
    for x in (a, b):
        for z in (zone(x, 0, ZONE_NORMAL), zone(x, 0, ZONE_DMA32)):
            drain_to(x, z, low_plus_reserve(x, z, GFP_KERNEL) + 1)
    arr: list[int | None] = [None]
    assert a.alloc_pages_bulk(GFP_KERNEL, 0, 1, arr) == 1
    assert arr[0] == b.alloc_pages_node(0, GFP_KERNEL, 0)
    assert [numa(z) for z in a.zones] == [numa(z) for z in b.zones]


def test_no_page_anywhere_fails_like_the_single_allocator() -> None:
    a = PageAllocator(two_zone_nodes(nodes=1))
    # exhaust what GFP_ATOMIC may take (its reserves below min included)
    while a.alloc_pages_node(0, GFP_ATOMIC | NOWARN, 0) is not None:
        pass
    a.drain_effects()
    snap = snapshot(a)
    arr: list[int | None] = [None] * 4
    assert a.alloc_pages_bulk(GFP_ATOMIC | NOWARN, 0, 4, arr) == 0
    assert arr == [None] * 4
    after = snapshot(a)
    # only kswapd's wakeup state may differ (the single allocator's slow path wakes it)
    for k in snap:
        if k not in ("nodes", "effects"):
            assert after[k] == snap[k], k
    # without __GFP_NOWARN the fallback warns once, as __alloc_pages does
    a.drain_effects()
    assert a.alloc_pages_bulk(GFP_ATOMIC, 0, 4, arr) == 0
    assert [e.kind for e in a.drain_effects()].count("warn") == 1


# --- context and bad input --------------------------------------------------------------------
def test_blocking_mask_in_atomic_context_raises_and_changes_nothing() -> None:
    a = PageAllocator(two_zone_nodes())
    snap = snapshot(a)
    arr: list[int | None] = [None] * 4
    with pytest.raises(SleepInAtomicError):
        a.alloc_pages_bulk(GFP_KERNEL, 0, 4, arr, ctx=Context.HARDIRQ)
    a.enter(Context.SPINLOCK)
    with pytest.raises(SleepInAtomicError):
        a.alloc_pages_bulk(GFP_KERNEL, 0, 4, arr)
    a.exit(Context.SPINLOCK)
    assert arr == [None] * 4 and snapshot(a) == snap
    assert a.alloc_pages_bulk(GFP_ATOMIC, 0, 4, arr, ctx=Context.HARDIRQ) == 4


@pytest.mark.parametrize("call", [
    lambda a: a.alloc_pages_bulk(GFP_KERNEL, 2, 4, [None] * 4),       # no node 2
    lambda a: a.alloc_pages_bulk(GFP_KERNEL, 0, 4, [None] * 4, cpu=9),  # no cpu 9
    lambda a: a.alloc_pages_bulk(GFP_KERNEL, 0, 5, [None] * 4),       # array too short
    lambda a: a.alloc_pages_bulk(GFP_KERNEL, 0, 2.0, [None] * 4),     # not a count
    lambda a: a.alloc_pages_bulk(GFP_KERNEL, 0, 2, (None, None)),     # not a list
    lambda a: a.alloc_pages_bulk(GFP_KERNEL, 0, 2, [None, "x"]),      # not a pfn
    lambda a: a.alloc_pages_bulk(g.__GFP_DMA | g.__GFP_DMA32, 0, 2, [None] * 2),  # bad mask
    lambda a: a.alloc_pages_bulk(GFP_KERNEL, 0, 2, [None] * 2, owner=None),  # not a name
])
def test_bad_input_raises_typed_errors_and_changes_nothing(call: object) -> None:
    a = PageAllocator(two_zone_nodes())
    snap = snapshot(a)
    with pytest.raises((GfpError, BadNodeError)):
        call(a)  # type: ignore[operator]
    assert snapshot(a) == snap


# --- invariants after any mix of bulk and single calls ------------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["bulk", "free", "single"]),
                          st.integers(0, 1), st.integers(1, 40)), max_size=25))
def test_invariants_hold_after_bulk_calls(ops: list[tuple[str, int, int]]) -> None:
    a = CheckedPageAllocator(two_zone_nodes())  # checks every single alloc and free itself
    live: list[int] = []
    for op, nid, n in ops:
        if op == "bulk":
            arr: list[int | None] = [None] * n
            got = a.alloc_pages_bulk(GFP_KERNEL | NOWARN, nid, n, arr)
            assert got == sum(p is not None for p in arr) and None not in arr[:got]
            pages = [p for p in arr if p is not None]
            assert all(a.allocated[p][:3:2] == (0, OWNER_PAGES) for p in pages)
            assert all(a.zones[a.allocated[p][1]].nid == nid for p in pages[1:]) or got <= 1
            live += pages
        elif op == "single":
            p = a.alloc_pages_node(nid, GFP_KERNEL | NOWARN, 0)
            if p is not None:
                live.append(p)
        elif live:
            for p in live[: n % 7 + 1]:
                a.free_pages_pfn(p, 0)
            del live[: n % 7 + 1]
        assert_invariants(a)
    assert len(set(live)) == len(live)


def test_debug_mode_checks_after_a_bulk_call() -> None:
    class LosesCount(CheckedPageAllocator):
        """A seeded bug: __rmqueue's fallback forgets to lower NR_FREE_PAGES for order 0 (a
        fresh machine has no UNMOVABLE blocks: the batch's first page is claimed from a
        MOVABLE one; the pages after it are list heads the bulk loop takes itself)."""

        def _rmqueue_fallback(self, z: Zone, order: int, mt: int, alloc_flags: int) -> int:
            pfn = super()._rmqueue_fallback(z, order, mt, alloc_flags)
            if pfn >= 0 and order == 0:
                z.free_pages += 1
            return pfn

    with pytest.raises(InvariantViolation, match="alloc_pages_bulk"):
        LosesCount(two_zone_nodes()).alloc_pages_bulk(GFP_KERNEL, 0, 4, [None] * 4)
    a = CheckedPageAllocator(two_zone_nodes())
    assert a.alloc_pages_bulk(GFP_KERNEL, 0, 4, [None] * 4) == 4


# --- vmalloc's use: vm_area_alloc_pages ---------------------------------------------------------
def counting_bulk(pa: PageAllocator, calls: list[int]) -> None:
    real = pa.alloc_pages_bulk

    def wrapped(gfp: int, nid: int, nr: int, arr: list[int | None], *, cpu: int = 0,
                ctx: Context | None = None, owner: str = OWNER_PAGES) -> int:
        calls.append(nr)
        return real(gfp, nid, nr, arr, cpu=cpu, ctx=ctx, owner=owner)
    pa.alloc_pages_bulk = wrapped  # type: ignore[method-assign,assignment]


def test_vmalloc_asks_for_batches_of_100() -> None:
    pa = PageAllocator(MachineConfig.default())
    calls: list[int] = []
    counting_bulk(pa, calls)
    v = Vmalloc(pa)
    addr = v.vmalloc(250 * 4096)
    assert addr is not None
    assert calls == [VMALLOC_BULK_MAX, VMALLOC_BULK_MAX, 50]
    vm = v.find_vm_area(addr)
    assert vm is not None and len(vm.pages) == 250 == len(set(vm.pages))
    assert all(pa.allocated[p][2] == OWNER_VMALLOC for p in vm.pages)
    assert [v.vmalloc_to_pfn(addr + i * 4096) for i in range(250)] == vm.pages


def test_vmalloc_short_batch_falls_back_to_single_pages() -> None:
    """A batch whose zone check fails everywhere on the node gives one page; the rest come
    from the single page allocator (alloc_pages), which may use another node."""
    pa = PageAllocator(two_zone_nodes())
    for z in (zone(pa, 0, ZONE_NORMAL), zone(pa, 0, ZONE_DMA32)):
        drain_to(pa, z, low_plus_reserve(pa, z, GFP_KERNEL | g.__GFP_HIGHMEM) + 2)
    calls: list[int] = []
    counting_bulk(pa, calls)
    v = Vmalloc(pa)
    addr = v.vmalloc(10 * 4096)
    assert addr is not None
    assert calls == [10]  # one short bulk call, then no more
    vm = v.find_vm_area(addr)
    assert vm is not None and len(vm.pages) == 10
    nodes = [pa.zones[pa.allocated[p][1]].nid for p in vm.pages]
    assert 1 in nodes  # the single allocator went remote once node 0 hit its low mark
    # the bulk call's one page (its __alloc_pages fallback) is tagged like the rest
    assert all(pa.allocated[p][2] == OWNER_VMALLOC for p in vm.pages)
    assert_invariants(pa)


def test_failed_vmalloc_after_bulk_leaves_the_state_unchanged() -> None:
    pa = PageAllocator(two_zone_nodes(nodes=1))
    v = Vmalloc(pa)
    for _ in range(150):
        assert pa.alloc_pages_node(0, GFP_KERNEL, 0) is not None
    before = (pa.nr_free_pages(), dict(pa.allocated), v.vmallocinfo())
    # 400 pages: below totalram, above what is left: 100-page batches, then single pages
    # until __alloc_pages fails, then everything goes back
    assert v.vmalloc(400 * 4096, gfp=GFP_KERNEL | NOWARN) is None
    assert (pa.nr_free_pages(), dict(pa.allocated), v.vmallocinfo()) == before
    assert_invariants(pa)
