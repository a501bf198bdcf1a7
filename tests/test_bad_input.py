"""Bad input: every kind raises its typed error (spec.errors), says what is wrong in one line,
and leaves the whole allocator state exactly as it was."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import spec.gfp as g
from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from spec.context import Context
from spec.errors import (
    BadFreeError,
    BadNodeError,
    ContextError,
    DoubleFreeError,
    GfpError,
    KmemError,
    PageReferencedError,
    SleepInAtomicError,
    UnalignedFreeError,
    UnknownAddressError,
    WrongOrderError,
)
from spec.gfp import GFP_ATOMIC, GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from spec.layout import PAGE_OFFSET, PAGE_SHIFT, VMALLOC_START
from tests.conftest import snapshot

BIOS_HOLE_PFN = 0xA0  # 640 KiB - 1 MiB: inside ZONE_DMA's span, not present
PCI_HOLE_PFN = (3 << 30) >> PAGE_SHIFT  # 3 GiB - 4 GiB: inside ZONE_DMA32's span
ATOMIC_CPU = 2  # a cpu of node 0 left holding a spinlock


@dataclass
class Busy:
    """A default machine after a mix of valid activity, with handles to its blocks."""

    a: PageAllocator
    live: dict[int, int]  # head pfn -> order, allocated with alloc_pages
    freed: tuple[int, int]  # a block that was allocated and freed again
    referenced: int  # an order-0 block with an extra get_page reference
    cached: int  # a page-cache page

    def addr(self, pfn: int) -> int:
        return PAGE_OFFSET + (pfn << PAGE_SHIFT)


@pytest.fixture
def busy() -> Busy:
    a = PageAllocator(MachineConfig.default())
    live: dict[int, int] = {}
    for cpu, gfp, order in [(0, GFP_KERNEL, 0), (0, GFP_KERNEL, 3), (4, GFP_KERNEL, 2),
                            (0, GFP_HIGHUSER_MOVABLE, 5), (5, GFP_ATOMIC, 1),
                            (0, GFP_KERNEL | g.__GFP_DMA, 2), (1, GFP_KERNEL, 10)]:
        p = a.alloc_pages(gfp, order, cpu=cpu)
        assert p is not None
        live[p] = order
    freed = a.alloc_pages(GFP_KERNEL, 4)
    assert freed is not None
    a.free_pages_pfn(freed, 4)
    referenced = a.alloc_pages(GFP_KERNEL, 0)
    assert referenced is not None
    a.get_page(referenced)
    assert a.pagecache_add(1, 16, cpu=4) == 16
    cached = next(iter(a.nodes[1].lru))
    assert a.alloc_pages(GFP_KERNEL, 11) is None  # leaves a pending warn effect
    for p in live:
        a.touch(p, cpu=4)
    a.enter(Context.SPINLOCK, ATOMIC_CPU)
    a.enter(Context.HARDIRQ, 6)
    a.exit(Context.HARDIRQ, 6)
    assert a.effects and a.allocated and a.refs and any(a.access_cost.values())
    return Busy(a, live, (freed, 4), referenced, cached)


def rejected(a: PageAllocator, exc: type[KmemError], fn: Callable[..., Any], *args: Any,
             mentions: tuple[str, ...] = (), **kw: Any) -> str:
    """Call fn, expect exactly ``exc``, the state unchanged and a one-line message naming
    every string in ``mentions``; return the message."""
    before = snapshot(a)
    with pytest.raises(KmemError) as ei:
        fn(*args, **kw)
    assert type(ei.value) is exc, f"{type(ei.value).__name__}: {ei.value}"
    assert snapshot(a) == before, "a rejected call changed the allocator state"
    msg = str(ei.value)
    assert msg.strip() and "\n" not in msg
    for m in mentions:
        assert m in msg, f"{m!r} not in {msg!r}"
    return msg


def test_snapshot_sees_changes(busy: Busy) -> None:
    """The snapshot is sensitive enough for the tests below to mean something."""
    a = busy.a
    s0 = snapshot(a)
    p = a.alloc_pages(GFP_KERNEL, 0)
    assert snapshot(a) != s0
    assert p is not None
    a.free_pages_pfn(p, 0)
    s1 = snapshot(a)
    a.drain_effects()
    assert snapshot(a) != s1
    s2 = snapshot(a)
    a.touch(p, cpu=0)
    assert snapshot(a) != s2
    s3 = snapshot(a)
    a.pageblock_flags[5] ^= 1
    assert snapshot(a) != s3


# --- frees ------------------------------------------------------------------------------------
def test_double_free(busy: Busy) -> None:
    a = busy.a
    pfn, order = busy.freed
    rejected(a, DoubleFreeError, a.free_pages_pfn, pfn, order,
             mentions=(f"{pfn:#x}", f"order {order}", "double free"))
    rejected(a, DoubleFreeError, a.free_pages, busy.addr(pfn), order, mentions=(f"{pfn:#x}",))
    # free the same live block twice: the second time is the error
    head = next(p for p, o in busy.live.items() if o == 3)
    a.free_pages_pfn(head, 3)
    rejected(a, DoubleFreeError, a.free_pages_pfn, head, 3, mentions=(f"{head:#x}",))
    # a page no one ever allocated (an untouched boot block on node 1)
    far = a.zones[3].start + 4096
    rejected(a, DoubleFreeError, a.free_pages_pfn, far, 0, mentions=(f"{far:#x}",))
    rejected(a, DoubleFreeError, a.free_pages_pfn, far + 1, 0)


@pytest.mark.parametrize("delta", [-1, 1, 5])
def test_free_with_wrong_order(busy: Busy, delta: int) -> None:
    a = busy.a
    for pfn, order in busy.live.items():
        if order + delta < 0:
            continue
        bad = order + delta
        rejected(a, WrongOrderError, a.free_pages_pfn, pfn, bad,
                 mentions=(f"{pfn:#x}", f"order {bad}", f"order {order}"))
        rejected(a, WrongOrderError, a.free_pages, busy.addr(pfn), bad)


def test_free_of_a_tail_page(busy: Busy) -> None:
    a = busy.a
    for head, order in busy.live.items():
        if order == 0:
            continue
        for tail in (head + 1, head + (1 << order) - 1, head + (1 << (order - 1))):
            for o in (0, order):
                rejected(a, UnalignedFreeError, a.free_pages_pfn, tail, o,
                         mentions=(f"{tail:#x}", f"order {o}", f"{head:#x}"))
            rejected(a, UnalignedFreeError, a.free_pages, busy.addr(tail), order)


@pytest.mark.parametrize("offset", [1, 8, 0x800, 0xFFF])
def test_free_of_an_unaligned_address(busy: Busy, offset: int) -> None:
    a = busy.a
    for head, order in busy.live.items():
        addr = busy.addr(head) + offset
        rejected(a, UnalignedFreeError, a.free_pages, addr, order,
                 mentions=(f"{addr:#x}", "page aligned"))


@pytest.mark.parametrize("addr", [
    PAGE_OFFSET - 0x1000,  # just below the direct map
    0x1000,  # a user address
    0x7FFF_FFFF_F000,
    VMALLOC_START,  # vmalloc space is not the direct map
    0xFFFF_FFFF_8100_0000,  # kernel text mapping
])
def test_free_of_an_address_outside_the_direct_map(busy: Busy, addr: int) -> None:
    a = busy.a
    rejected(a, UnknownAddressError, a.free_pages, addr, 0, mentions=(f"{addr:#x}",))


def test_free_beyond_max_pfn(busy: Busy) -> None:
    a = busy.a
    top = a.max_pfn
    for pfn in (top, top + 1, top + 1024, 1 << 40):
        addr = busy.addr(pfn)
        rejected(a, UnknownAddressError, a.free_pages, addr, 0, mentions=(f"{addr:#x}",))
        rejected(a, UnknownAddressError, a.free_pages_pfn, pfn, 0, mentions=(f"{pfn:#x}",))
    rejected(a, UnknownAddressError, a.free_pages_pfn, 0, 0, mentions=("0x0",))  # below DMA
    rejected(a, UnknownAddressError, a.free_pages_pfn, -4, 0)


@pytest.mark.parametrize("where", ["bios_hole", "pci_hole", "memmap"])
def test_free_of_a_reserved_or_hole_pfn(busy: Busy, where: str) -> None:
    a = busy.a
    memmap = a.zones[2].end - 5  # node 0's mem_map: present but reserved
    pfn = {"bios_hole": BIOS_HOLE_PFN, "pci_hole": PCI_HOLE_PFN + 17, "memmap": memmap}[where]
    assert a.zone_of_pfn(pfn) is not None
    msg = rejected(a, BadFreeError, a.free_pages_pfn, pfn, 0,
                   mentions=(f"{pfn:#x}", "order 0"))
    assert "reserved" in msg
    rejected(a, BadFreeError, a.free_pages, busy.addr(pfn), 0)


def test_free_of_a_referenced_page(busy: Busy) -> None:
    a = busy.a
    pfn = busy.referenced
    assert a.page_count(pfn) == 2
    rejected(a, PageReferencedError, a.free_pages_pfn, pfn, 0,
             mentions=(f"{pfn:#x}", "2 references"))
    rejected(a, PageReferencedError, a.free_pages, busy.addr(pfn), 0)
    a.get_page(pfn)
    rejected(a, PageReferencedError, a.free_pages_pfn, pfn, 0, mentions=("3 references",))
    a.put_page(pfn)
    a.put_page(pfn)
    assert a.page_count(pfn) == 1
    a.free_pages_pfn(pfn, 0)  # now fine
    assert a.page_count(pfn) == 0


def test_free_of_a_page_cache_page(busy: Busy) -> None:
    a = busy.a
    pfn = busy.cached
    rejected(a, BadFreeError, a.free_pages_pfn, pfn, 0, mentions=(f"{pfn:#x}", "pagecache"))


def test_free_with_a_negative_order(busy: Busy) -> None:
    a = busy.a
    pfn = next(iter(busy.live))
    before = snapshot(a)
    with pytest.raises(BadFreeError, match=re.escape(f"{pfn:#x}")):
        a.free_pages_pfn(pfn, -1)
    assert snapshot(a) == before


@pytest.mark.parametrize("addr", ["0xffff888000001000", None, 1.5])
def test_free_of_a_non_integer_address(busy: Busy, addr: object) -> None:
    rejected(busy.a, UnknownAddressError, busy.a.free_pages, addr, 0)


# --- references -------------------------------------------------------------------------------
def test_put_page_without_get_page(busy: Busy) -> None:
    a = busy.a
    for pfn in (*busy.live, busy.freed[0], busy.cached):
        rejected(a, BadFreeError, a.put_page, pfn, mentions=(f"{pfn:#x}",))
    # the one extra reference can be dropped once, not twice
    a.put_page(busy.referenced)
    rejected(a, BadFreeError, a.put_page, busy.referenced, mentions=(f"{busy.referenced:#x}",))


def test_get_page_of_a_free_page(busy: Busy) -> None:
    a = busy.a
    pfn = busy.freed[0]
    rejected(a, BadFreeError, a.get_page, pfn, mentions=(f"{pfn:#x}",))
    head = next(p for p, o in busy.live.items() if o > 0)
    rejected(a, BadFreeError, a.get_page, head + 1, mentions=(f"{head + 1:#x}",))


# --- nodes and cpus ---------------------------------------------------------------------------
@pytest.mark.parametrize("nid", [5, 2, -2, 1 << 20])
def test_unknown_node(busy: Busy, nid: int) -> None:
    a = busy.a
    rejected(a, BadNodeError, a.alloc_pages_node, nid, GFP_KERNEL, 0, mentions=(f"node {nid}",))
    rejected(a, BadNodeError, a.alloc_pages_node, nid, GFP_ATOMIC, 0, cpu=ATOMIC_CPU)
    rejected(a, BadNodeError, a.pagecache_add, nid, 1, mentions=(f"node {nid}",))
    rejected(a, BadNodeError, a.kswapd, nid, mentions=(f"node {nid}",))


@pytest.mark.parametrize("nid", ["0", 0.0, True])
def test_node_of_the_wrong_type(busy: Busy, nid: object) -> None:
    a = busy.a
    rejected(a, BadNodeError, a.alloc_pages_node, nid, GFP_KERNEL, 0)
    rejected(a, BadNodeError, a.pagecache_add, nid, 1)
    rejected(a, BadNodeError, a.kswapd, nid)


@pytest.mark.parametrize("cpu", [8, 99, -1])
def test_unknown_cpu(busy: Busy, cpu: int) -> None:
    a = busy.a
    pfn = next(iter(busy.live))
    rejected(a, BadNodeError, a.alloc_pages, GFP_KERNEL, 0, cpu=cpu, mentions=(f"cpu {cpu}",))
    rejected(a, BadNodeError, a.alloc_pages_node, 0, GFP_KERNEL, 0, cpu=cpu)
    rejected(a, BadNodeError, a.get_free_pages, GFP_KERNEL, 0, cpu=cpu)
    rejected(a, BadNodeError, a.enter, Context.SPINLOCK, cpu, mentions=(f"cpu {cpu}",))
    rejected(a, BadNodeError, a.exit, Context.SPINLOCK, cpu)
    rejected(a, BadNodeError, a.context, cpu)
    rejected(a, BadNodeError, a.touch, pfn, cpu)
    rejected(a, BadNodeError, a.pagecache_add, 0, 1, cpu=cpu)


def test_touch_of_an_unknown_pfn(busy: Busy) -> None:
    a = busy.a
    rejected(a, UnknownAddressError, a.touch, a.max_pfn + 3, 0, mentions=(f"{a.max_pfn + 3:#x}",))


# --- masks and orders -------------------------------------------------------------------------
@pytest.mark.parametrize(("gfp", "mention"), [
    (0x200, "0x200"),
    (1 << 25, "0x2000000"),
    (GFP_KERNEL | 0x200, "0x200"),
    (GFP_KERNEL | (1 << 31), "0x80000000"),
    (g.__GFP_DMA | g.__GFP_DMA32, "GFP_DMA|GFP_DMA32"),
    (GFP_KERNEL | g.__GFP_DMA | g.__GFP_DMA32, "GFP_DMA|GFP_DMA32"),
    (GFP_ATOMIC | g.__GFP_HIGHMEM | g.__GFP_DMA32, "__GFP_HIGHMEM|GFP_DMA32"),
    (GFP_KERNEL | g.__GFP_MOVABLE | g.__GFP_RECLAIMABLE, "__GFP_MOVABLE and __GFP_RECLAIMABLE"),
    (-1, "-1"),
])
def test_invalid_mask(busy: Busy, gfp: int, mention: str) -> None:
    a = busy.a
    rejected(a, GfpError, a.alloc_pages, gfp, 0, mentions=(mention,))
    rejected(a, GfpError, a.alloc_pages_node, 1, gfp, 3)
    rejected(a, GfpError, a.get_free_pages, gfp, 0, mentions=(mention,))
    # an invalid mask is reported even where a valid one would be a sleep bug
    rejected(a, GfpError, a.alloc_pages, gfp, 0, cpu=ATOMIC_CPU)


@pytest.mark.parametrize("order", [-1, -20])
def test_negative_order(busy: Busy, order: int) -> None:
    a = busy.a
    rejected(a, GfpError, a.alloc_pages, GFP_KERNEL, order, mentions=(str(order),))
    rejected(a, GfpError, a.get_free_pages, GFP_ATOMIC, order)


# --- sleeping in atomic context ---------------------------------------------------------------
@pytest.mark.parametrize("gfp", [GFP_KERNEL, g.GFP_NOFS, GFP_HIGHUSER_MOVABLE,
                                 GFP_ATOMIC | g.__GFP_DIRECT_RECLAIM])
def test_blocking_mask_in_atomic_context(busy: Busy, gfp: int) -> None:
    a = busy.a
    assert a.context(ATOMIC_CPU) is Context.SPINLOCK
    name = g.format_gfp(gfp)
    rejected(a, SleepInAtomicError, a.alloc_pages, gfp, 0, cpu=ATOMIC_CPU,
             mentions=(name, "spinlock", "sleeping function called from invalid context"))
    rejected(a, SleepInAtomicError, a.alloc_pages_node, 1, gfp, 2, cpu=ATOMIC_CPU,
             mentions=(name,))
    rejected(a, SleepInAtomicError, a.get_free_pages, gfp, 0, cpu=ATOMIC_CPU)
    for ctx in (Context.HARDIRQ, Context.SOFTIRQ, Context.PREEMPT_DISABLED):
        rejected(a, SleepInAtomicError, a.alloc_pages, gfp, 0, cpu=0, ctx=ctx,
                 mentions=(ctx.name.lower(),))


def test_pagecache_readahead_in_atomic_context(busy: Busy) -> None:
    a = busy.a
    rejected(a, SleepInAtomicError, a.pagecache_add, 0, 4, cpu=ATOMIC_CPU)


# --- contexts ---------------------------------------------------------------------------------
def test_exit_of_a_context_not_entered(busy: Busy) -> None:
    a = busy.a
    rejected(a, ContextError, a.exit, Context.HARDIRQ, 0, mentions=("cpu 0", "hardirq"))
    # cpu 2 holds a spinlock, not a hardirq
    rejected(a, ContextError, a.exit, Context.HARDIRQ, ATOMIC_CPU,
             mentions=("hardirq", "spinlock"))
    rejected(a, ContextError, a.exit, Context.PROCESS, 0)
    rejected(a, ContextError, a.exit, Context.SPINLOCK, 6)  # entered and left already
    a.exit(Context.SPINLOCK, ATOMIC_CPU)
    rejected(a, ContextError, a.exit, Context.SPINLOCK, ATOMIC_CPU)


@pytest.mark.parametrize("ctx", ["hardirq", 2, None])
def test_context_of_the_wrong_type(busy: Busy, ctx: object) -> None:
    a = busy.a
    rejected(a, ContextError, a.enter, ctx, 0)
    rejected(a, ContextError, a.exit, ctx, ATOMIC_CPU)


def test_enter_process_context(busy: Busy) -> None:
    a = busy.a
    rejected(a, ContextError, a.enter, Context.PROCESS, 0, mentions=("process",))


def test_context_parse() -> None:
    assert Context.parse("atomic") is Context.SPINLOCK
    assert Context.parse(" HardIRQ ") is Context.HARDIRQ
    with pytest.raises(ContextError, match="'nmi'"):
        Context.parse("nmi")


# --- after all that, the machine still works --------------------------------------------------
def test_valid_calls_still_work_after_rejections(busy: Busy) -> None:
    a = busy.a
    bads: list[Callable[[], object]] = [
        lambda: a.free_pages_pfn(busy.freed[0], 4),
        lambda: a.alloc_pages(0x200, 0),
        lambda: a.alloc_pages(GFP_KERNEL, 0, cpu=ATOMIC_CPU),
        lambda: a.exit(Context.HARDIRQ, 0),
    ]
    for bad in bads:
        with pytest.raises(KmemError):
            bad()
    for pfn, order in busy.live.items():
        a.free_pages_pfn(pfn, order)
    a.put_page(busy.referenced)
    a.free_pages_pfn(busy.referenced, 0)
    a.drop_caches()
    assert a.allocated == {} and a.refs == {}
    assert a.nr_free_pages() == sum(z.managed for z in a.zones)
