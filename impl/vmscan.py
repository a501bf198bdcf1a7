"""Page reclaim and kswapd (mm/vmscan.c), the half of the page allocator that frees memory.

The kernel keeps reclaim apart from the buddy allocator: ``__alloc_pages_direct_reclaim`` in
mm/page_alloc.c calls ``try_to_free_pages`` in mm/vmscan.c, and each node's kswapd thread runs
``balance_pgdat`` there. The model does the same: :class:`Vmscan` holds those functions and
:class:`impl.page_alloc.PageAllocator` inherits them, so reclaim works on the allocator's own
zones, LRUs and counters (and a seeded bug can override one of them in a subclass).

Simplifications (README fidelity table): the only reclaimable memory is clean page cache on a
per-node LRU (oldest first); no anon pages, swap, dirty pages, writeback or slab shrinkers; the
kswapd threads a sleeping caller woke run to completion while it sleeps.
"""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING

from impl.watermarks import SWAP_CLUSTER_MAX, WMARK_HIGH
from spec.context import Context, Effect
from spec.errors import BadNodeError, SleepInAtomicError
from spec.gfp import __GFP_NORETRY, __GFP_NOWARN, __GFP_THISNODE, GFP_HIGHUSER_MOVABLE

if TYPE_CHECKING:
    from impl.mmzone import NodeState, Zone

OWNER_PAGECACHE = "pagecache"  # on a node LRU, reclaimable

_GFP_NORETRY = __GFP_NORETRY
_GFP_NOWARN = __GFP_NOWARN
_GFP_THISNODE = __GFP_THISNODE


class Vmscan:
    """mm/vmscan.c: direct reclaim, kswapd and the page cache, as methods of the allocator."""

    nodes: list[NodeState]
    zones: list[Zone]
    refs: dict[int, int]
    allocated: dict[int, tuple[int, int, str, int]]
    effects: list[Effect]

    # provided by PageAllocator (mm/page_alloc.c)
    def _free_pages_zone(self, z: Zone, pfn: int, order: int) -> None:
        raise NotImplementedError

    def _check_cpu(self, cpu: int) -> None:
        raise NotImplementedError

    def context(self, cpu: int = 0) -> Context:
        raise NotImplementedError

    def alloc_pages_node(self, nid: int, gfp: int, order: int, *, cpu: int = 0,
                         ctx: Context | None = None) -> int | None:
        raise NotImplementedError

    def _reclaimable(self, zl: tuple[Zone, ...], hz: int) -> bool:
        nids = {z.nid for z in zl}
        return any(self._lru_page_ok(p, hz) for n in nids for p in self.nodes[n].lru)

    def _lru_page_ok(self, pfn: int, hz: int) -> bool:
        # a page someone holds a reference to (get_page) is not reclaimable
        return pfn not in self.refs and self.zones[self.allocated[pfn][1]].idx <= hz

    def _try_to_free_pages(self, zl: tuple[Zone, ...], hz: int, nr: int) -> int:
        """try_to_free_pages(): shrink the LRUs of the zonelist's nodes, oldest pages first,
        only pages in zones the request may use, until ``nr`` pages are reclaimed."""
        done = 0
        for nid in dict.fromkeys(z.nid for z in zl):
            lru = self.nodes[nid].lru
            for pfn in list(islice((p for p in lru if self._lru_page_ok(p, hz)), nr - done)):
                self._release_lru_page(nid, pfn)
                done += 1
            if done >= nr:
                break
        return done

    def _release_lru_page(self, nid: int, pfn: int) -> None:
        del self.nodes[nid].lru[pfn]
        order, zid, _, _ = self.allocated.pop(pfn)
        z = self.zones[zid]
        self._free_pages_zone(z, pfn, order)

    def _wakeup_kswapd(self, nid: int, why: str) -> None:
        node = self.nodes[nid]
        if not node.kswapd_awake:
            node.kswapd_awake = True
            self.effects.append(Effect("kswapd_wake", nid, why))

    def kswapd(self, nid: int) -> int:
        """Run kswapd on ``nid`` once (balance_pgdat): reclaim page cache, SWAP_CLUSTER_MAX
        pages a round, until the node is balanced (pgdat_balanced: some managed zone is above
        its high watermark plus boost plus lowmem_reserve of the node's highest zone), then
        clear watermark boosts and sleep. Returns pages reclaimed."""
        if type(nid) is not int or not 0 <= nid < len(self.nodes):
            raise BadNodeError(f"node {nid} is not online")
        node = self.nodes[nid]
        managed = [z for z in node.zones if z.managed]
        top = max((z.idx for z in managed), default=0)

        def balanced() -> bool:
            return any(z.free_pages > z.wmark[WMARK_HIGH] + z.boost + z.lowmem_reserve[top]
                       for z in managed)

        done = 0
        while not balanced():
            cands = list(islice((p for p in node.lru if p not in self.refs), SWAP_CLUSTER_MAX))
            if not cands:
                break
            for p in cands:
                self._release_lru_page(nid, p)
            done += len(cands)
        for z in node.zones:
            z.boost = 0
            z.boosted = False
        node.kswapd_awake = False
        self.effects.append(Effect("kswapd_run", nid, f"reclaimed {done} pages"))
        return done

    # --- page cache (the reclaimable pool) -----------------------------------------------------
    def pagecache_add(self, nid: int, nr_pages: int, *, cpu: int = 0) -> int:
        """Read ``nr_pages`` file pages into the page cache of ``nid`` (GFP_HIGHUSER_MOVABLE,
        _GFP_THISNODE, order 0), as filemap readahead does; returns how many were added."""
        if type(nid) is not int or not 0 <= nid < len(self.nodes):
            raise BadNodeError(f"node {nid} is not online")
        self._check_cpu(cpu)
        if self.context(cpu).atomic:
            raise SleepInAtomicError("BUG: sleeping function called from invalid context: "
                                     "page-cache readahead in atomic context")
        gfp = GFP_HIGHUSER_MOVABLE | _GFP_THISNODE | _GFP_NORETRY | _GFP_NOWARN
        added = 0
        for _ in range(nr_pages):
            pfn = self.alloc_pages_node(nid, gfp, 0, cpu=cpu)
            if pfn is None:
                break
            order, zid, _, mt = self.allocated[pfn]
            self.allocated[pfn] = (order, zid, OWNER_PAGECACHE, mt)
            self.nodes[nid].lru[pfn] = None
            added += 1
        return added

    def drop_caches(self) -> int:
        """echo 1 > /proc/sys/vm/drop_caches: free every clean page-cache page."""
        n = 0
        for node in self.nodes:
            for pfn in list(node.lru):
                if pfn in self.refs:  # invalidate_mapping_pages skips referenced folios
                    continue
                self._release_lru_page(node.nid, pfn)
                n += 1
        return n
