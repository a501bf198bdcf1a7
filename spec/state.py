"""The abstract state of the page allocator: what is free, what is allocated, by whom, where.

This is the specification's view, independent of how the implementation stores it (free-list
dicts, lazy boot ranges): ``impl.abstraction.abstract()`` maps an implementation state here.
Invariants (spec/invariants.py) are stated over :class:`PageView`, a per-pfn view that a
concrete :class:`MemState` and the proofs' symbolic Z3 states both provide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from spec.logic import Bits


class ZoneSpec(NamedTuple):
    """A zone: global id, node, zone index (ZONE_DMA..), span, and the managed pfn ranges
    (the pages the buddy allocator owns: present minus reserved); then what the watermark
    rules need (include/linux/mmzone.h struct zone): managed pages, _watermark[WMARK_MIN,
    WMARK_LOW, WMARK_HIGH], watermark_boost and lowmem_reserve[MAX_NR_ZONES]. The defaults
    (all zero) describe a zone whose watermarks nobody recorded."""

    zid: int
    nid: int
    zone: int
    start: int
    end: int
    usable: tuple[tuple[int, int], ...]
    managed: int = 0
    wmark_min: int = 0
    wmark_low: int = 0
    wmark_high: int = 0
    boost: int = 0
    lowmem_reserve: tuple[int, ...] = ()


class ZoneFacts(NamedTuple):
    """One zone at one moment, as the watermark, liveness and kswapd rules see it: its
    watermarks (see ZoneSpec), ``free``, the pages inside its free blocks (counted from the
    blocks, not from NR_FREE_PAGES), and ``max_run``, the largest order k such that the zone
    holds an aligned run of 2^k free pages (-1 if it holds no free page). Built by
    spec.rules.zone_facts, the one definition."""

    zid: int
    nid: int
    zone: int
    managed: int
    wmark_min: int
    wmark_low: int
    wmark_high: int
    boost: int
    lowmem_reserve: tuple[int, ...]
    free: int
    max_run: int


class NumaDelta(NamedTuple):
    """How much one allocation call changed a zone's NUMA event counters (mm/vmstat.c
    numa_hit, numa_miss, numa_foreign, numa_local, numa_other)."""

    zid: int
    nid: int
    hit: int
    miss: int
    foreign: int
    local: int
    other: int


class KswapdRecord(NamedTuple):
    """One kswapd run on node ``nid`` (balance_pgdat): the node's zones after the run, each
    zone's watermark_boost when the run started (the boost kswapd balances against; it clears
    it on the way out), and how many page-cache pages of the node reclaim could still take
    (those without extra references)."""

    nid: int
    zones: tuple[ZoneFacts, ...]
    boost_before: tuple[int, ...]
    reclaimable: int


class FreeBlock(NamedTuple):
    """A free block as the free lists hold it: the order stored in the page (page_private),
    which list it sits on (zone, order, migratetype), and how many times it was found while
    walking every list (exactly once, if the lists are sound)."""

    pfn: int
    order: int
    list_zid: int
    list_order: int
    list_mt: int
    times_listed: int


class AllocBlock(NamedTuple):
    """An allocated block: order, zone, owner (``pages``, ``pagecache``, ...), migratetype."""

    pfn: int
    order: int
    zid: int
    owner: str
    mt: int


class StepRecord(NamedTuple):
    """What one allocation call did, for the step properties (sleep and watermark rules).

    ``free_after`` is the zone's free pages after the call; ``mark`` the min watermark the call
    had to respect after the reserve adjustment for its flags (see spec/reserves.py) plus
    lowmem_reserve[highest_zoneidx]; ``no_watermarks`` is true for __GFP_MEMALLOC callers.

    The fields after ``pref_nid`` have defaults, so a record that does not carry them leaves
    the rules that read them vacuous (impl.abstraction.alloc_step always fills them):
    ``zones`` the facts of every zone after a failed call (empty after a success: only the
    failure rules read them); ``reclaimed`` the distinct (nid, zone index) of the pages direct
    reclaim freed during the call (kswapd runs excluded); ``pref_zid`` the preferred zone
    (the first zone of the request's zonelist, -1 if the zonelist is empty); ``cpu_nid``
    numa_node_id() of the calling CPU; ``numa`` the change of every zone's NUMA counters over
    the call; ``kswapd_runs`` the kswapd runs that happened while the caller slept."""

    op: str
    gfp: int
    ctx: int
    order: int
    pfn: int  # -1 when the allocation failed
    zid: int  # -1 when the allocation failed
    slept: bool
    free_after: int
    mark: int
    no_watermarks: bool
    zone_idx: int = -1  # ZONE_DMA.. of the block's zone
    nid: int = -1  # node of the block
    pref_nid: int = -1  # the node asked for (the CPU's node for NUMA_NO_NODE)
    zones: tuple[ZoneFacts, ...] = ()
    reclaimed: tuple[tuple[int, int], ...] = ()
    pref_zid: int = -1
    cpu_nid: int = -1
    numa: tuple[NumaDelta, ...] = ()
    kswapd_runs: tuple[KswapdRecord, ...] = ()


@dataclass(frozen=True)
class MemState:
    """A whole concrete abstract state."""

    max_order: int
    pageblock_order: int
    zones: tuple[ZoneSpec, ...]
    free: dict[int, FreeBlock]
    allocated: dict[int, AllocBlock]
    pageblock_mt: bytes
    nr_free: dict[tuple[int, int, int], int]  # (zid, order, mt) -> the implementation's count
    free_pages: dict[int, int]  # zid -> the implementation's NR_FREE_PAGES
    pfn_limit: int = 0  # pfns checked by per-pfn definitions: [0, pfn_limit)
    _zone_at: dict[int, int] = field(default_factory=dict, compare=False, repr=False)

    def zone_at(self, pfn: int) -> int:
        """zid of the zone whose managed ranges hold ``pfn``, -1 for holes and reserved."""
        if not self._zone_at:
            for z in self.zones:
                for s, e in z.usable:
                    for p in range(s, e):
                        self._zone_at[p] = z.zid
        return self._zone_at.get(pfn, -1)

    def view(self) -> ConcreteView:
        return ConcreteView(self)


class PageView(Protocol):
    """Per-pfn accessors the invariants are written against. Results are Python values for a
    concrete state and Z3 terms for a symbolic one; ``pfns`` and ``zids`` are concrete."""

    max_order: int
    pageblock_order: int
    pfns: range
    zids: tuple[int, ...]

    def free_head(self, p: int) -> Bits: ...
    def alloc_head(self, p: int) -> Bits: ...
    def order(self, p: int) -> Bits: ...
    def zone(self, p: int) -> Bits: ...
    def list_zid(self, p: int) -> Bits: ...
    def list_order(self, p: int) -> Bits: ...
    def list_mt(self, p: int) -> Bits: ...
    def times_listed(self, p: int) -> Bits: ...
    def pageblock_mt(self, p: int) -> Bits: ...
    def nr_free(self, zid: int, order: int, mt: int) -> Bits: ...
    def free_pages(self, zid: int) -> Bits: ...


class ConcreteView:
    """PageView over a MemState (dict lookups)."""

    def __init__(self, s: MemState) -> None:
        self.s = s
        self.max_order = s.max_order
        self.pageblock_order = s.pageblock_order
        self.pfns = range(s.pfn_limit or max(z.end for z in s.zones))
        self.zids = tuple(z.zid for z in s.zones)

    def free_head(self, p: int) -> bool:
        return p in self.s.free

    def alloc_head(self, p: int) -> bool:
        return p in self.s.allocated

    def order(self, p: int) -> int:
        b = self.s.free.get(p)
        if b is not None:
            return b.order
        a = self.s.allocated.get(p)
        return a.order if a is not None else 0

    def zone(self, p: int) -> int:
        return self.s.zone_at(p)

    def list_zid(self, p: int) -> int:
        b = self.s.free.get(p)
        return b.list_zid if b is not None else -1

    def list_order(self, p: int) -> int:
        b = self.s.free.get(p)
        return b.list_order if b is not None else -1

    def list_mt(self, p: int) -> int:
        b = self.s.free.get(p)
        return b.list_mt if b is not None else -1

    def times_listed(self, p: int) -> int:
        b = self.s.free.get(p)
        return b.times_listed if b is not None else 0

    def pageblock_mt(self, p: int) -> int:
        return self.s.pageblock_mt[p >> self.s.pageblock_order]

    def nr_free(self, zid: int, order: int, mt: int) -> int:
        return self.s.nr_free.get((zid, order, mt), 0)

    def free_pages(self, zid: int) -> int:
        return self.s.free_pages.get(zid, 0)
