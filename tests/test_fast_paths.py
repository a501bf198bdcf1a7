"""The page path's shortcuts agree with the full code they skip (issue 10, the page ratio).

impl/page_alloc.py serves the usual allocation without calling _where() (NUMA_NO_NODE, a
mask already routed, a known CPU), and _get_page_from_freelist() takes the head of the
preferred zone's list when the zone is above the watermark without zone_watermark_fast(),
__zone_watermark_ok() or __rmqueue_smallest(); __free_one_page() links the freed block at the
list head inline and probes buddy_merge_likely() inside the merge loop. :class:`FullPath` is
the same allocator with each shortcut replaced by the code it stands for (mm/page_alloc.c's
shape: every mask through _where(), every zone through zone_watermark_fast() and rmqueue(),
Zone.add()/Zone.delete() for the lists). A random walk over masks, orders, nodes, CPUs,
contexts, good and bad frees, references, page cache and kswapd runs on both; after every
step both must have returned the same value (or raised the same error) and be in the same
state: free lists in list order, counters, NUMA statistics, boosts, effects.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

import impl.page_alloc as page_alloc
from impl.buddy import combined_pfn, find_buddy_pfn, higher_buddy_pfn
from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator, Route, Zone
from spec.context import Context
from spec.gfp import (
    __GFP_HIGH,
    __GFP_MEMALLOC,
    __GFP_NOWARN,
    __GFP_RECLAIMABLE,
    __GFP_THISNODE,
    GFP_ATOMIC,
    GFP_DMA32,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_MOVABLE_MASK,
    GFP_NOWAIT,
)
from spec.layout import NUMA_NO_NODE
from spec.reserves import (
    ALLOC_HIGHATOMIC,
    ALLOC_KSWAPD,
    ALLOC_MIN_RESERVE,
    ALLOC_NO_WATERMARKS,
    ALLOC_NOFRAGMENT,
    ALLOC_NON_BLOCK,
    ALLOC_OOM,
    ALLOC_WMARK_MASK,
    watermark_min_adjusted,
)
from tests.conftest import snapshot


class _Uncached(dict[int, tuple[Route, ...]]):
    """A route cache whose ``[]`` always misses: alloc_pages_node() then takes every call
    through _where() (which fills and reads it with ``.get``, through _gfp_info())."""

    def __getitem__(self, gfp: int) -> tuple[Route, ...]:
        raise KeyError(gfp)


class FullPath(PageAllocator):
    """The allocator without its shortcuts: the reference the real one is compared with."""

    def __init__(self, machine: MachineConfig) -> None:
        super().__init__(machine)
        self._gfp_cache = _Uncached()

    def _get_page_from_freelist(self, zl: tuple[Zone, ...], order: int, alloc_flags: int,
                                hz: int, mt: int, cpu_node: int) -> int:
        """get_page_from_freelist() as mm/page_alloc.c writes it: every zone through
        zone_watermark_fast() and rmqueue(), then zone_statistics()."""
        pref = zl[0]
        while True:
            for z in zl:
                if z.nid != pref.nid and alloc_flags & ALLOC_NOFRAGMENT:
                    break
                if not alloc_flags & ALLOC_NO_WATERMARKS and not self._watermark_fast(
                        z, order, alloc_flags & ALLOC_WMARK_MASK, hz, alloc_flags):
                    continue
                pfn = self._rmqueue(z, order, mt, alloc_flags)
                if pfn < 0:
                    continue
                self._hit_zid = z.zid
                if z.nid == pref.nid:
                    z.numa_hit += 1
                else:
                    z.numa_miss += 1
                    pref.numa_foreign += 1
                if z.nid == cpu_node:
                    z.numa_local += 1
                else:
                    z.numa_other += 1
                if z.boosted and alloc_flags & ALLOC_KSWAPD:
                    z.boosted = False
                    self._wakeup_kswapd(z.nid, "boosted watermark")
                return pfn
            if alloc_flags & ALLOC_NOFRAGMENT:
                alloc_flags &= ~ALLOC_NOFRAGMENT
                continue
            return -1

    def _free_one_page(self, z: Zone, pfn: int, order: int, mt: int, to_tail: bool) -> None:
        """__free_one_page(): the merge loop, then buddy_merge_likely() after it, then
        __add_to_free_list() through Zone.add()."""
        z.free_pages += 1 << order
        buddy_pfn = 0
        while order < self.max_order:
            buddy_pfn = find_buddy_pfn(pfn, order)
            bi = z._buddy.get(buddy_pfn, -1)  # page_is_buddy()
            if bi >> 3 != order:
                break
            z.delete(buddy_pfn)
            pbo = self.pageblock_order
            if order >= pbo and bi & 7 != mt:
                for i in range(1 << (order - pbo)):
                    self.pageblock_flags[(buddy_pfn >> pbo) + i] = mt
            pfn = combined_pfn(pfn, buddy_pfn)
            order += 1
        if not to_tail and order < self.max_order - 1:
            to_tail = z._buddy.get(higher_buddy_pfn(pfn, buddy_pfn, order), -1) >> 3 == order + 1
        z.add(pfn, order, mt, to_tail)


class MarkPlusOne(FullPath):
    """FullPath whose zone_watermark_fast() wants one page more (its boost raised by one
    during the check). The walk must notice it: it reaches the watermark's boundary, where a
    fast check that accepted one page too few would diverge the same way."""

    def _watermark_fast(self, z: Zone, order: int, wm_idx: int, hz: int,
                        alloc_flags: int) -> bool:
        z.boost += 1
        try:
            return super()._watermark_fast(z, order, wm_idx, hz, alloc_flags)
        finally:
            z.boost -= 1


MACHINES: dict[str, Callable[[], MachineConfig]] = {
    "tiny": MachineConfig.tiny,  # one zone, min 2: the watermark is reached at once
    # DMA, DMA32 and Normal meeting at unaligned pfns, min 8, lowmem_reserve, two nodes
    "unaligned": MachineConfig.unaligned,
    # one Normal zone: ALLOC_NOFRAGMENT, fallbacks that steal and boost the watermark
    "flat128": lambda: MachineConfig.flat(128, nodes=1, max_order=4, min_pages=4,
                                          name="flat128"),
    "flat2x64": lambda: MachineConfig.flat(128, nodes=2, max_order=4, min_pages=4,
                                           name="flat2x64"),
}

MASKS = (GFP_KERNEL, GFP_KERNEL, GFP_ATOMIC, GFP_NOWAIT, GFP_HIGHUSER_MOVABLE,
         GFP_HIGHUSER_MOVABLE, GFP_KERNEL | __GFP_RECLAIMABLE, GFP_KERNEL | __GFP_THISNODE,
         GFP_DMA32, GFP_ATOMIC | __GFP_NOWARN, GFP_NOWAIT | __GFP_HIGH,
         GFP_NOWAIT | __GFP_MEMALLOC)


def _outcome(op: Any) -> Any:
    try:
        return ("ok", op())
    except Exception as e:  # the same error, with the same message, on both
        return ("raised", type(e).__name__, str(e))


class Walk:
    """One random walk driving the allocators ``a`` (real) and ``b`` (reference) alike."""

    def __init__(self, a: PageAllocator, b: PageAllocator, seed: int) -> None:
        self.a, self.b = a, b
        self.rng = random.Random(seed)
        self.live: list[tuple[int, int]] = []
        self.cpus = sorted(a.cpu_node)
        self.fast = self.general = 0
        self.calls = 0
        real = a._rmqueue_smallest

        def counting(z: Zone, order: int, mt: int) -> int:
            self.calls += 1
            return real(z, order, mt)

        a._rmqueue_smallest = counting  # type: ignore[method-assign]

    def step(self) -> tuple[str, Any, Any]:
        rng, a, b = self.rng, self.a, self.b
        r = rng.random()
        cpu = rng.choice(self.cpus)
        if r < 0.45 or not self.live:
            gfp: Any = rng.choice(MASKS)
            order = rng.choice((0, 0, 0, 1, 1, 2, 3, a.max_order, a.max_order + 1))
            nid: Any = NUMA_NO_NODE if rng.random() < 0.8 else rng.choice(
                [*range(len(a.nodes) + 1), -2, 0.0, True])  # the last four are bad
            ctx = None if rng.random() < 0.9 else rng.choice(list(Context))
            if rng.random() < 0.02:  # bad input the fast path must refuse like _where()
                gfp = rng.choice((float(GFP_KERNEL), GFP_KERNEL | GFP_MOVABLE_MASK, -1))
            if rng.random() < 0.02:
                cpu = rng.choice((max(self.cpus) + 1, -1))
            before = self.calls
            what = f"alloc_pages_node({nid}, {gfp!r}, {order}, cpu={cpu}, ctx={ctx})"
            ra = _outcome(lambda: a.alloc_pages_node(nid, gfp, order, cpu=cpu, ctx=ctx))
            rb = _outcome(lambda: b.alloc_pages_node(nid, gfp, order, cpu=cpu, ctx=ctx))
            if ra[0] == "ok" and ra[1] is not None:
                self.live.append((ra[1], order))
                if self.calls == before:
                    self.fast += 1
                else:
                    self.general += 1
            return what, ra, rb
        if r < 0.85:
            i = rng.randrange(len(self.live))
            pfn, order = self.live[i]
            if rng.random() < 0.05:  # a bad free: wrong order, a float, a double free
                bad = rng.choice(((pfn, order + 1), (float(pfn), order), (pfn + 1, 0)))
                what = f"free_pages_pfn{bad!r}"
                return (what, _outcome(lambda: a.free_pages_pfn(*bad)),
                        _outcome(lambda: b.free_pages_pfn(*bad)))
            self.live.pop(i)
            if rng.random() < 0.05:
                a.get_page(pfn)
                b.get_page(pfn)
                what = f"free_pages_pfn({pfn}, {order}) with a reference"
                ra = _outcome(lambda: a.free_pages_pfn(pfn, order))
                rb = _outcome(lambda: b.free_pages_pfn(pfn, order))
                a.put_page(pfn)
                b.put_page(pfn)
                self.live.append((pfn, order))
                return what, ra, rb
            what = f"free_pages_pfn({pfn}, {order})"
            return (what, _outcome(lambda: a.free_pages_pfn(pfn, order)),
                    _outcome(lambda: b.free_pages_pfn(pfn, order)))
        nid = rng.randrange(len(a.nodes))
        if r < 0.92:
            n = rng.randint(1, 8)
            return (f"pagecache_add({nid}, {n})", _outcome(lambda: a.pagecache_add(nid, n)),
                    _outcome(lambda: b.pagecache_add(nid, n)))
        if r < 0.95:
            return (f"kswapd({nid})", _outcome(lambda: a.kswapd(nid)),
                    _outcome(lambda: b.kswapd(nid)))
        st = a.ctx[cpu]
        if st and rng.random() < 0.6:
            ctx = st[-1]
            return (f"exit({ctx}, {cpu})", _outcome(lambda: a.exit(ctx, cpu)),
                    _outcome(lambda: b.exit(ctx, cpu)))
        ctx = rng.choice((Context.SOFTIRQ, Context.HARDIRQ, Context.SPINLOCK))
        return (f"enter({ctx}, {cpu})", _outcome(lambda: a.enter(ctx, cpu)),
                _outcome(lambda: b.enter(ctx, cpu)))


def walk(machine: MachineConfig, ref: type[FullPath], seed: int, steps: int) -> tuple[
        Walk, str | None]:
    """Run ``steps`` steps on PageAllocator and ``ref``; the first divergence, or None."""
    w = Walk(PageAllocator(machine), ref(machine), seed)
    assert snapshot(w.a) == snapshot(w.b)
    for i in range(steps):
        what, ra, rb = w.step()
        if ra != rb:
            return w, f"step {i}: {what}: {ra} != {rb}"
        sa, sb = snapshot(w.a), snapshot(w.b)
        if sa != sb:
            diff = sorted(k for k in sa if sa[k] != sb[k])
            return w, f"step {i}: {what}: states differ in {diff}"
    return w, None


@pytest.mark.parametrize("name", sorted(MACHINES))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shortcuts_agree_with_the_full_path(name: str, seed: int) -> None:
    w, divergence = walk(MACHINES[name](), FullPath, seed, 1500)
    assert divergence is None, divergence
    # both sides of the fast path were taken, many times
    assert w.fast >= 50 and w.general >= 20, (w.fast, w.general)


@pytest.mark.parametrize("name", ["tiny", "unaligned"])
def test_the_walk_sees_a_fast_check_one_page_off(name: str) -> None:
    """The walk reaches the watermark boundary: a reference that wants one page more than
    the fast check (> where the kernel has >=) diverges from the real allocator."""
    _, divergence = walk(MACHINES[name](), MarkPlusOne, 1, 1500)
    assert divergence is not None


def test_reserves_only_lower_the_mark() -> None:
    """The fast path answers __zone_watermark_ok() for order > 0 without its reserve
    arithmetic: sound because watermark_min_adjusted() never raises a mark, for any
    combination of the reserve flags."""
    bits = (ALLOC_NON_BLOCK, ALLOC_MIN_RESERVE, ALLOC_HIGHATOMIC, ALLOC_OOM)
    for k in range(1 << len(bits)):
        flags = sum(b for i, b in enumerate(bits) if k >> i & 1)
        for mark in range(0, 3000):
            assert 0 <= int(watermark_min_adjusted(mark, flags)) <= mark, (mark, flags)


def test_page_counts_table() -> None:
    """The table the hot path reads instead of shifting covers every order a machine allows
    (MachineConfig.validate: max_order <= 20) and is 1 << order."""
    assert all(page_alloc._NR_PAGES[o] == 1 << o for o in range(len(page_alloc._NR_PAGES)))
    assert len(page_alloc._NR_PAGES) > 20 + 1
