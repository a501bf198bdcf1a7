"""The project's catalogue of seeded allocator bugs: wrong variants of the real allocator.

Each :class:`SeededBug` is a subclass of :class:`impl.page_alloc.PageAllocator` that changes one
method the way a plausible kernel bug would, plus the checks of ``make verify`` that must catch
it (``caught_by``: ``modelcheck:<machine>`` for the explicit-state model checker on a named
machine of proofs/modelcheck.py, ``statemachine`` for the Hypothesis state machine run with
``KMEMSPEC_SEEDED_BUG=<name>``). A bug that no check catches is a hole in the verification, so
every bug here has a ``make verify`` row that passes only when the bug is caught.

The Z3-level seeded bugs (wrong variants of pure helpers handed to a proof) are in
proofs/mutants.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from impl.buddy import expand_halves
from impl.page_alloc import PageAllocator, Zone
from impl.watermarks import WMARK_HIGH, WMARK_LOW
from spec.context import Context
from spec.layout import NUMA_NO_NODE
from spec.reserves import ALLOC_MIN_RESERVE, ALLOC_NON_BLOCK


class NoMergeOrder1(PageAllocator):
    """__free_one_page forgets to merge a freed order-1 block with its free buddy."""

    def _free_one_page(self, z: Zone, pfn: int, order: int, mt: int, to_tail: bool) -> None:
        if order == 1:
            z.free_pages += 1 << order
            z.add(pfn, order, mt, to_tail)
            return
        super()._free_one_page(z, pfn, order, mt, to_tail)


class ExpandDropsHalf(PageAllocator):
    """expand() loses the smallest upper half when it splits a block by two or more orders."""

    def _expand(self, z: Zone, pfn: int, low: int, high: int, mt: int) -> None:
        halves = expand_halves(pfn, low, high)
        for half, o in halves[:-1] if len(halves) > 1 else halves:
            z.add(half, o, mt, False)


class IgnoresMin(PageAllocator):
    """The watermark check forgets the min watermark for __GFP_HIGH callers."""

    def _watermark_ok(self, z: Zone, order: int, mark: int, hz: int, alloc_flags: int) -> bool:
        if alloc_flags & 0x20:  # ALLOC_MIN_RESERVE
            mark = 0
        return super()._watermark_ok(z, order, mark, hz, alloc_flags)


class SleepsInAtomic(PageAllocator):
    """alloc_pages_node() forgets might_alloc(): blocking masks are accepted in atomic context."""

    def alloc_pages_node(self, nid: int, gfp: int, order: int, *, cpu: int = 0,
                         ctx: Context | None = None) -> int | None:
        return super().alloc_pages_node(nid, gfp & ~0x400 if ctx and ctx.atomic else gfp,
                                        order, cpu=cpu, ctx=ctx)


class CrossZoneMerge(PageAllocator):
    """__free_one_page() without page_is_buddy()'s page_zone_id() check: the buddy is looked
    up in whichever zone holds it, so a block freed beside a zone or node boundary that is not
    MAX_PAGE_ORDER aligned merges with a free buddy of the neighbouring zone."""

    def _free_one_page(self, z: Zone, pfn: int, order: int, mt: int, to_tail: bool) -> None:
        while order < self.max_order:
            buddy = pfn ^ (1 << order)
            bz = self.zone_of_pfn(buddy)
            if bz is None or bz is z or bz._buddy.get(buddy, -1) >> 3 != order:
                break
            bz.delete(buddy)  # the other zone's buddy joins this zone's block
            bz.free_pages -= 1 << order
            pfn &= buddy
            order += 1
        super()._free_one_page(z, pfn, order, mt, to_tail)


class ReclaimAllNodes(PageAllocator):
    """try_to_free_pages() shrinks the nodes of the fallback zonelist even for a
    __GFP_THISNODE request, reclaiming page cache on nodes the request may not use."""

    def _try_to_free_pages(self, zl: tuple[Zone, ...], hz: int, nr: int) -> int:
        return super()._try_to_free_pages(self.zonelist(zl[0].nid, hz, False), hz, nr)


class NoNumaForeign(PageAllocator):
    """zone_statistics() forgets numa_foreign on the preferred zone when it counts a miss."""

    def _get_page_from_freelist(self, zl: tuple[Zone, ...], order: int, alloc_flags: int,
                                hz: int, mt: int, cpu_node: int) -> int:
        foreign = zl[0].numa_foreign
        pfn = super()._get_page_from_freelist(zl, order, alloc_flags, hz, mt, cpu_node)
        zl[0].numa_foreign = foreign
        return pfn


class AtomicHalfMin(PageAllocator):
    """__zone_watermark_ok() forgets the ALLOC_NON_BLOCK quarter: GFP_ATOMIC may use half of
    min, like __GFP_HIGH, instead of 62.5%."""

    def _watermark_ok(self, z: Zone, order: int, mark: int, hz: int, alloc_flags: int) -> bool:
        if alloc_flags & ALLOC_MIN_RESERVE:
            alloc_flags &= ~ALLOC_NON_BLOCK
        return super()._watermark_ok(z, order, mark, hz, alloc_flags)


class KswapdToLow(PageAllocator):
    """balance_pgdat() checks pgdat_balanced() against the low watermark instead of the high
    one, so kswapd goes back to sleep early."""

    def kswapd(self, nid: int) -> int:
        zones = self.nodes[nid].zones if type(nid) is int and 0 <= nid < len(self.nodes) else []
        high = [z.wmark[WMARK_HIGH] for z in zones]
        for z in zones:
            z.wmark[WMARK_HIGH] = z.wmark[WMARK_LOW]
        try:
            return super().kswapd(nid)
        finally:
            for z, h in zip(zones, high, strict=True):
                z.wmark[WMARK_HIGH] = h


class IgnoresThisnode(PageAllocator):
    """node_zonelist() ignores __GFP_THISNODE: the fallback zonelist is used for every request."""

    def zonelist(self, nid: int, highest_zoneidx: int, thisnode: bool) -> tuple[Zone, ...]:
        return super().zonelist(nid, highest_zoneidx, False)


class NoNodeIsNode0(PageAllocator):
    """alloc_pages_node() resolves NUMA_NO_NODE to node 0 instead of numa_mem_id()."""

    def alloc_pages_node(self, nid: int, gfp: int, order: int, *, cpu: int = 0,
                         ctx: Context | None = None) -> int | None:
        return super().alloc_pages_node(0 if nid == NUMA_NO_NODE else nid, gfp, order, cpu=cpu,
                                        ctx=ctx)


class StealNoAccount(PageAllocator):
    """__rmqueue_steal() takes the block off the free list without account_freepages(), so
    NR_FREE_PAGES keeps counting pages that were handed out."""

    def _rmqueue_steal(self, z: Zone, order: int, mt: int) -> int:
        pfn = super()._rmqueue_steal(z, order, mt)
        if pfn >= 0:
            z.free_pages += 1 << order
        return pfn


@dataclass(frozen=True)
class SeededBug:
    """A wrong allocator, what is wrong with it, and which checks must catch it."""

    name: str
    cls: type[PageAllocator]
    caught_by: tuple[str, ...] = ("modelcheck:flat16",)

    @property
    def what(self) -> str:
        return " ".join((self.cls.__doc__ or self.cls.__name__).split())


SEEDED_BUGS: dict[str, SeededBug] = {b.name: b for b in (
    SeededBug("no-merge-order1", NoMergeOrder1),
    SeededBug("expand-drops-half", ExpandDropsHalf),
    SeededBug("ignores-min", IgnoresMin),
    SeededBug("sleeps-in-atomic", SleepsInAtomic),
    SeededBug("cross-zone-merge", CrossZoneMerge,
              ("statemachine", "modelcheck:zones-unaligned", "modelcheck:numa2")),
    SeededBug("reclaim-all-nodes", ReclaimAllNodes, ("statemachine", "modelcheck:numa2")),
    SeededBug("no-numa-foreign", NoNumaForeign, ("statemachine", "modelcheck:numa2")),
    SeededBug("atomic-half-min", AtomicHalfMin,
              ("statemachine", "modelcheck:zones-unaligned")),
    SeededBug("kswapd-to-low", KswapdToLow, ("statemachine", "modelcheck:zones-unaligned")),
    SeededBug("ignores-thisnode", IgnoresThisnode, ("statemachine", "modelcheck:numa2")),
    SeededBug("numa-no-node-is-0", NoNodeIsNode0, ("statemachine", "modelcheck:numa2")),
    SeededBug("steal-no-account", StealNoAccount, ("statemachine", "modelcheck:flat16")),
)}
"""Every allocator-level seeded bug, by name."""
