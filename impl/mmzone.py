"""struct zone and struct pglist_data (include/linux/mmzone.h): the free_area lists of a zone.

Free memory is never one object per page. Each zone keeps ``free_area[order].free_list[mt]``
as intrusive doubly linked lists in three dicts keyed by the head pfn of each free block
(``_buddy``: PageBuddy + page_private order, ``_nxt``/``_prv``: the list_head). Blocks that
boot freed at MAX_PAGE_ORDER and nobody has touched since are kept as pfn ranges at the tail of
the MOVABLE MAX_PAGE_ORDER list (``_lazy``), where __free_pages_core(FPI_TO_TAIL) put them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from impl.machine import ZoneConfig
from spec.gfp import MIGRATE_MOVABLE, ZONE_NAMES

NR_MT = 8  # list index = order << 3 | migratetype


class Zone:
    """struct zone: free_area lists, counters, watermarks and NUMA statistics of one zone."""

    __slots__ = (
        "_buddy", "_lazy", "_lazy_pages", "_nxt", "_prv", "boost", "boosted", "cfg", "counts",
        "end", "free_pages", "heads", "idx", "interleave_hit", "lowmem_reserve", "managed",
        "max_order", "name", "nid", "numa_foreign", "numa_hit", "numa_local", "numa_miss",
        "numa_other", "present", "spanned", "start", "tails", "wmark", "zid",
    )

    def __init__(self, zid: int, nid: int, cfg: ZoneConfig, max_order: int) -> None:
        self.zid = zid
        self.nid = nid
        self.cfg = cfg
        self.idx = cfg.zone
        self.name = ZONE_NAMES[cfg.zone]
        self.start = cfg.start_pfn
        self.end = cfg.end_pfn
        self.spanned = cfg.spanned
        self.present = cfg.present
        self.managed = cfg.managed
        self.max_order = max_order
        n = (max_order + 1) * NR_MT
        self.heads = [-1] * n
        self.tails = [-1] * n
        self.counts = [0] * n
        self._buddy: dict[int, int] = {}
        self._nxt: dict[int, int] = {}
        self._prv: dict[int, int] = {}
        self._lazy: list[list[int]] = []
        self._lazy_pages = 0
        self.free_pages = 0
        self.wmark = [0, 0, 0, 0]
        self.boost = 0
        self.boosted = False
        self.lowmem_reserve = [0, 0, 0, 0]
        self.numa_hit = self.numa_miss = self.numa_foreign = 0
        self.numa_local = self.numa_other = self.interleave_hit = 0

    # --- free lists (list_add / list_add_tail / list_del on free_area[order].free_list[mt]) --
    def add(self, pfn: int, order: int, mt: int, tail: bool) -> None:
        """__add_to_free_list(): PageBuddy, set_buddy_order, head or tail of the list."""
        idx = order << 3 | mt
        if tail and self._lazy and idx == (self.max_order << 3 | MIGRATE_MOVABLE):
            self._materialize_lazy(all_=True)
        self._link(pfn, idx, tail)

    def _link(self, pfn: int, idx: int, tail: bool) -> None:
        """Link ``pfn`` at the head or tail of list ``idx`` (add() without the lazy check)."""
        self._buddy[pfn] = idx
        if tail:
            t = self.tails[idx]
            self._prv[pfn] = t
            self._nxt[pfn] = -1
            if t == -1:
                self.heads[idx] = pfn
            else:
                self._nxt[t] = pfn
            self.tails[idx] = pfn
        else:
            h = self.heads[idx]
            self._nxt[pfn] = h
            self._prv[pfn] = -1
            if h == -1:
                self.tails[idx] = pfn
            else:
                self._prv[h] = pfn
            self.heads[idx] = pfn
        self.counts[idx] += 1

    def delete(self, pfn: int) -> int:
        """__del_page_from_free_list(): unlink, ClearPageBuddy; returns the list index."""
        idx = self._buddy.pop(pfn)
        p = self._prv.pop(pfn)
        n = self._nxt.pop(pfn)
        if p == -1:
            self.heads[idx] = n
        else:
            self._nxt[p] = n
        if n == -1:
            self.tails[idx] = p
        else:
            self._prv[n] = p
        self.counts[idx] -= 1
        return idx

    def first(self, order: int, mt: int) -> int:
        """list_first_entry_or_null(&free_list[mt]) of free_area[order]; -1 if empty."""
        idx = order << 3 | mt
        h = self.heads[idx]
        if h == -1 and self._lazy and idx == (self.max_order << 3 | MIGRATE_MOVABLE):
            self._materialize_lazy(all_=False)
            h = self.heads[idx]
        return h

    def _materialize_lazy(self, all_: bool) -> None:
        """Turn the first (or every) untouched boot block into an explicit list entry, keeping
        list order: lazy blocks always sit after the explicit ones."""
        step = 1 << self.max_order
        idx = self.max_order << 3 | MIGRATE_MOVABLE
        while self._lazy:
            rng = self._lazy[0]
            pfn = rng[0]
            rng[0] += step
            if rng[0] >= rng[1]:
                self._lazy.pop(0)
            self._lazy_pages -= step
            self.counts[idx] -= 1  # _link() counts it again
            self._link(pfn, idx, True)
            if not all_:
                return

    def lazy_block_at(self, pfn: int) -> int:
        """Head pfn of the untouched boot block containing ``pfn``, or -1."""
        for s, e in self._lazy:
            if s <= pfn < e:
                return pfn & ~((1 << self.max_order) - 1)
        return -1

    def free_order_at(self, pfn: int) -> int:
        """If ``pfn`` heads a free block (PageBuddy), its order; else -1."""
        idx = self._buddy.get(pfn)
        if idx is not None:
            return idx >> 3
        if self.lazy_block_at(pfn) == pfn:
            return self.max_order
        return -1

    def free_blocks(self) -> Iterator[tuple[int, int, int]]:
        """Every free block as (pfn, order, migratetype of its list), lazy ones included, in
        free-list order per list. Linear in the number of free blocks: for checks and views."""
        for idx in range(len(self.heads)):
            p = self.heads[idx]
            while p != -1:
                yield p, idx >> 3, idx & 7
                p = self._nxt[p]
            if self._lazy and idx == (self.max_order << 3 | MIGRATE_MOVABLE):
                step = 1 << self.max_order
                for s, e in self._lazy:
                    yield from ((q, self.max_order, MIGRATE_MOVABLE) for q in range(s, e, step))

    def nr_free(self, order: int, mt: int | None = None) -> int:
        """free_area[order].nr_free (all types) or the length of one free list."""
        if mt is not None:
            return self.counts[order << 3 | mt]
        return sum(self.counts[order * NR_MT:(order + 1) * NR_MT])

    def spans(self, pfn: int) -> bool:
        return self.start <= pfn < self.end


@dataclass
class NodeState:
    """struct pglist_data, the parts the model keeps: CPUs, zones, LRU, kswapd."""

    nid: int
    cpus: tuple[int, ...]
    zones: list[Zone]
    lru: dict[int, None]  # page-cache pages, oldest first (the inactive file LRU)
    kswapd_awake: bool = False
