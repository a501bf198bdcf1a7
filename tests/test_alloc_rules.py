"""spec/alloc_rules.py: the protocol's allocation rules, LiveMap against a brute-force model,
and FreeRunCounter against spec.rules.zone_facts (the one definition of free and max_run)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spec.alloc_rules import (
    FreeRunCounter,
    LiveMap,
    block_aligned,
    cache_object_aligned,
    gfp_may_sleep,
    kmalloc_min_align,
    kmalloc_object_aligned,
    zone_allowed,
)
from spec.gfp import (
    __GFP_DIRECT_RECLAIM,
    __GFP_DMA,
    __GFP_DMA32,
    __GFP_THISNODE,
    GFP_ATOMIC,
    GFP_DMA,
    GFP_DMA32,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOWAIT,
    gfpflags_allow_blocking,
)
from spec.rules import allowed_zone, zone_facts
from spec.state import ZoneFacts, ZoneSpec


def test_block_aligned() -> None:
    assert block_aligned(0, 10) and block_aligned(1024, 10) and block_aligned(7, 0)
    assert not block_aligned(512, 10) and not block_aligned(2, 2) and not block_aligned(4, -1)


@pytest.mark.parametrize(("size", "align"), [
    (1, 8), (7, 8), (8, 8), (16, 16), (24, 8), (96, 8), (192, 8), (256, 256), (4096, 4096),
    (8192, 8192), (12288, 8), (1 << 22, 1 << 22)])
def test_kmalloc_min_align(size: int, align: int) -> None:
    assert kmalloc_min_align(size) == align
    assert kmalloc_object_aligned(0xFFFF888000000000 + align, size)
    assert not kmalloc_object_aligned(0xFFFF888000000000 + align + 4, size)


def test_kmalloc_power_of_two_needs_its_size() -> None:
    base = 0xFFFF888000000000
    assert not kmalloc_object_aligned(base + 64, 128)  # 8-aligned, not 128-aligned
    assert kmalloc_object_aligned(base + 64, 120)     # not a power of two: 8 is enough


def test_cache_object_aligned() -> None:
    assert cache_object_aligned(0x1008, 0) and cache_object_aligned(0x1008, 8)
    assert not cache_object_aligned(0x1004, 0)
    assert cache_object_aligned(0x1040, 64) and not cache_object_aligned(0x1020, 64)


@given(st.integers(0, (1 << 25) - 1))
def test_gfp_may_sleep_is_gfpflags_allow_blocking(gfp: int) -> None:
    assert gfp_may_sleep(gfp) == bool(gfpflags_allow_blocking(gfp))
    assert gfp_may_sleep(gfp) == bool(gfp & __GFP_DIRECT_RECLAIM)


def test_gfp_may_sleep_examples() -> None:
    assert gfp_may_sleep(GFP_KERNEL) and gfp_may_sleep(GFP_HIGHUSER_MOVABLE)
    assert not gfp_may_sleep(GFP_ATOMIC) and not gfp_may_sleep(GFP_NOWAIT)


def test_zone_allowed() -> None:
    assert [zone_allowed(z, GFP_DMA) for z in range(3)] == [True, False, False]
    assert [zone_allowed(z, GFP_DMA32) for z in range(3)] == [True, True, False]
    assert [zone_allowed(z, GFP_KERNEL) for z in range(3)] == [True, True, True]
    assert [zone_allowed(z, GFP_HIGHUSER_MOVABLE) for z in range(3)] == [True, True, True]
    bad = __GFP_DMA | __GFP_DMA32  # GFP_ZONE_BAD
    assert not any(zone_allowed(z, bad) for z in range(3))


@given(st.integers(0, 2), st.integers(0, (1 << 25) - 1), st.integers(0, 1), st.integers(0, 1))
def test_allowed_zone_uses_zone_allowed(zone: int, gfp: int, nid: int, pref: int) -> None:
    z = ZoneFacts(0, nid, zone, 100, 0, 0, 0, 0, (0, 0, 0, 0), 0, -1)
    want = zone_allowed(zone, gfp) and (not gfp & __GFP_THISNODE or nid == pref)
    assert allowed_zone(z, gfp, pref) == want


# --- LiveMap ---------------------------------------------------------------------------------

def _brute_overlap(live: dict[int, tuple[int, str]], lo: int, hi: int) -> set[str]:
    return {t for s, (e, t) in live.items() if s < hi and lo < e}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("arfi"), st.integers(0, 200), st.integers(1, 12)),
                max_size=120))
def test_livemap_matches_brute_force(ops: list[tuple[str, int, int]]) -> None:
    m = LiveMap()
    live: dict[int, tuple[int, str]] = {}
    for n, (op, lo, ln) in enumerate(ops):
        hi = lo + ln
        if op == "a":
            tag = f"t{n}"
            got = m.add(lo, hi, tag)
            ov = _brute_overlap(live, lo, hi)
            if ov:
                assert got in ov
            else:
                assert got is None
                live[lo] = (hi, tag)
        elif op == "r":
            r = m.remove(lo)
            if lo in live:
                assert r == (lo, *live.pop(lo))
            else:
                assert r is None
        elif op == "f":
            f = m.find(lo)
            want = [(s, e, t) for s, (e, t) in live.items() if s <= lo < e]
            assert (f is None and not want) or [f] == want
        else:
            got_iv = list(m.irange(lo, hi))
            assert got_iv == sorted((s, e, t) for s, (e, t) in live.items() if s < hi and lo < e)
        assert len(m) == len(live)
    assert list(m.items()) == sorted((s, e, t) for s, (e, t) in live.items())


def test_livemap_many_chunks() -> None:
    """Thousands of intervals (several chunk splits), inserted and removed in random order."""
    rng = random.Random(7)
    starts = list(range(0, 40000, 4))
    rng.shuffle(starts)
    m = LiveMap()
    for s in starts:
        assert m.add(s, s + 3, ("blk", s)) is None
    assert len(m._chunks) > 4
    assert m.add(101, 102, "x") == ("blk", 100)
    assert m.add(103, 104, "x") is None and m.remove(103) == (103, 104, "x")
    assert m.find(39998) == (39996, 39999, ("blk", 39996)) and m.find(39999) is None
    assert [iv[0] for iv in m.irange(10, 30)] == [8, 12, 16, 20, 24, 28]
    rng.shuffle(starts)
    for s in starts[:9000]:
        assert m.remove(s) == (s, s + 3, ("blk", s))
    assert sorted(iv[0] for iv in m.items()) == sorted(starts[9000:])
    assert m.remove(starts[0]) is None


def test_livemap_rejects_empty_and_none() -> None:
    m = LiveMap()
    with pytest.raises(ValueError):
        m.add(5, 5, "x")
    with pytest.raises(ValueError):
        m.add(5, 6, None)
    assert len(m) == 0


# --- FreeRunCounter ------------------------------------------------------------------------

ZONES = ((3, 40), (40, 64), (64, 100))  # unaligned edges on purpose


def _facts(zi: int, live: dict[int, int], max_order: int) -> ZoneFacts:
    s, e = ZONES[zi]
    used = {p for b, o in live.items() for p in range(b, b + (1 << o))}
    free_blocks = [(p, 0) for p in range(s, e) if p not in used]
    return zone_facts(ZoneSpec(zi, 0, zi, s, e, ((s, e),), e - s), free_blocks, max_order)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 99), st.integers(0, 4)), max_size=60),
       st.randoms(use_true_random=False))
def test_free_run_counter_matches_zone_facts(tries: list[tuple[int, int]],
                                             rnd: random.Random) -> None:
    max_order = 4
    c = FreeRunCounter(ZONES, max_order)
    live: dict[int, int] = {}
    zone_of: dict[int, int] = {}
    for pfn, order in tries:
        if live and rnd.random() < 0.35:
            b = rnd.choice(sorted(live))
            c.give(zone_of[b], b, live.pop(b))
        base = pfn & ~((1 << order) - 1)
        zi = next((i for i, (s, e) in enumerate(ZONES) if s <= base and base + (1 << order) <= e),
                  None)
        clash = any(b < base + (1 << order) and base < b + (1 << o) for b, o in live.items())
        if zi is None or clash:
            continue
        c.take(zi, base, order)
        live[base], zone_of[base] = order, zi
        for z in range(len(ZONES)):
            f = _facts(z, {b: o for b, o in live.items() if zone_of[b] == z}, max_order)
            assert (c.free_pages(z), c.max_run(z)) == (f.free, f.max_run)
    for b in list(live):
        c.give(zone_of[b], b, live.pop(b))
    assert all(not u for u in c.used)
    for z in range(len(ZONES)):
        f = _facts(z, {}, max_order)
        assert (c.free_pages(z), c.max_run(z)) == (f.free, f.max_run)
