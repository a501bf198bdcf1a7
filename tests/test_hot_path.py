"""The fast alloc/free path (alloc_pages_node, free_pages_pfn) keeps every behaviour it had
before it was streamlined: the per-mask route cache gives the zonelists and flags the kernel's
rules give, the order-0 watermark shortcut (zone_watermark_fast()'s fast check) never
disagrees with __zone_watermark_ok(), and bad input that equals a valid value (3264.0 for
GFP_KERNEL, a float pfn or order) is refused with a typed error and no change of state.
"""

from __future__ import annotations

import itertools

import pytest

from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from spec.errors import BadNodeError, GfpError, UnknownAddressError
from spec.gfp import (
    __GFP_KSWAPD_RECLAIM,
    __GFP_THISNODE,
    GFP_ATOMIC,
    GFP_DMA,
    GFP_DMA32,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOWAIT,
    gfp_migratetype,
    gfp_zone,
    gfpflags_allow_blocking,
)
from spec.reserves import ALLOC_MIN_RESERVE, ALLOC_NOFRAGMENT, ALLOC_WMARK_LOW, ALLOC_WMARK_MIN
from tests.conftest import snapshot

MASKS = (GFP_KERNEL, GFP_ATOMIC, GFP_NOWAIT, GFP_DMA, GFP_DMA32, GFP_HIGHUSER_MOVABLE,
         GFP_KERNEL | __GFP_THISNODE)


@pytest.mark.parametrize("gfp", MASKS, ids=hex)
def test_routes_are_the_zonelists_and_flags_of_the_rules(default_machine: PageAllocator,
                                                          gfp: int) -> None:
    a = default_machine
    hz = int(gfp_zone(gfp))
    for nid, (zl, flags, rz, mt, may_block) in enumerate(a._gfp_info(gfp)):
        assert zl == a.zonelist(nid, hz, bool(gfp & __GFP_THISNODE))
        assert (rz, mt, may_block) == (hz, gfp_migratetype(gfp), gfpflags_allow_blocking(gfp))
        assert flags & ~ALLOC_NOFRAGMENT == ALLOC_WMARK_LOW | (gfp & __GFP_KSWAPD_RECLAIM)
        # alloc_flags_nofragment(): only a Normal preferred zone with a DMA32 sibling
        assert bool(flags & ALLOC_NOFRAGMENT) == (nid == 0 and zl[0].name == "Normal")


def test_order0_fast_check_agrees_with_zone_watermark_ok(tiny: PageAllocator) -> None:
    """Every free-page count of the zone, every mark around it, with and without reserves:
    the fast check answers True only where __zone_watermark_ok() does."""
    a = tiny
    z = a.zones[0]
    live = []
    while True:
        for mark, boost, flags in itertools.product(range(0, 8), (0, 2),
                                                    (ALLOC_WMARK_MIN, ALLOC_WMARK_LOW,
                                                     ALLOC_WMARK_MIN | ALLOC_MIN_RESERVE)):
            z.wmark = [mark, mark + 1, mark + 2, mark + 2]
            z.boost = boost
            wm_idx = flags & 3
            slow = a._watermark_ok(z, 0, z.wmark[wm_idx] + boost, 2, flags) or bool(
                flags & ALLOC_MIN_RESERVE and boost and wm_idx == 0
                and a._watermark_ok(z, 0, mark, 2, flags))
            assert a._watermark_fast(z, 0, wm_idx, 2, flags) == slow, (z.free_pages, mark,
                                                                        boost, flags)
        z.wmark, z.boost = [0, 0, 0, 0], 0
        pfn = a.alloc_pages_node(-1, GFP_ATOMIC, 0)
        if pfn is None:
            break
        live.append(pfn)
    assert z.free_pages <= 1 and live


def test_a_float_mask_equal_to_a_cached_one_is_refused(tiny: PageAllocator) -> None:
    a = tiny
    assert a.alloc_pages_node(-1, GFP_KERNEL, 0) is not None  # GFP_KERNEL is now cached
    before = snapshot(a)
    with pytest.raises(GfpError, match="non-negative integer"):
        a.alloc_pages_node(-1, float(GFP_KERNEL), 0)  # type: ignore[arg-type]
    with pytest.raises(GfpError):
        a.alloc_pages_node(-1, [GFP_KERNEL], 0)  # type: ignore[arg-type]
    assert snapshot(a) == before


@pytest.mark.parametrize("bad", ["pfn", "order"])
def test_a_float_pfn_or_order_equal_to_a_block_is_refused(tiny: PageAllocator,
                                                          bad: str) -> None:
    a = tiny
    pfn = a.alloc_pages_node(-1, GFP_KERNEL, 1)
    assert pfn is not None
    before = snapshot(a)
    with pytest.raises(UnknownAddressError, match="non-negative integers"):
        if bad == "pfn":
            a.free_pages_pfn(float(pfn), 1)  # type: ignore[arg-type]
        else:
            a.free_pages_pfn(pfn, 1.0)  # type: ignore[arg-type]
    assert snapshot(a) == before
    a.free_pages_pfn(pfn, 1)


def test_an_unhashable_cpu_is_a_bad_node_error(tiny: PageAllocator) -> None:
    before = snapshot(tiny)
    with pytest.raises(BadNodeError, match="does not exist"):
        tiny.alloc_pages_node(-1, GFP_KERNEL, 0, cpu=[0])  # type: ignore[arg-type]
    assert snapshot(tiny) == before


def test_direct_map_round_trip_on_a_machine_with_another_page_offset() -> None:
    """The allocator passes its machine's PAGE_OFFSET to the proved direct-map helpers."""
    m = MachineConfig.tiny()
    other = type(m)(m.nodes, m.distance, max_order=m.max_order, page_offset=1 << 40,
                    name="tiny-offset")
    a = PageAllocator(other)
    addr = a.get_free_pages(GFP_KERNEL, 0)
    assert addr >= 1 << 40 and (addr - (1 << 40)) % 4096 == 0
    assert a.pfn_to_virt(a.virt_to_pfn(addr)) == addr
    with pytest.raises(UnknownAddressError):
        a.virt_to_pfn((1 << 40) - 4096)
    a.free_pages(addr, 0)
    assert not a.allocated
