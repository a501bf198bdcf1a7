"""The buddy page allocator of Linux 6.12.117 (mm/page_alloc.c), as a Python reference model.

Data layout, chosen so the cost of an operation does not grow with memory size:

* Free memory is never one object per page: each zone's ``free_area`` lists are intrusive
  lists in dicts keyed by head pfn, and untouched boot blocks are pfn ranges (struct zone,
  impl/mmzone.py); a 1 TiB machine boots with a handful of ranges.
* Allocated blocks live in one dict ``allocated``: head pfn -> (order, zone id, owner, mt).
* Pageblock migratetypes are one byte per pageblock (``pageblock_flags``).

Simplifications (also in the README's fidelity table): no per-CPU page lists (every order goes
straight to the buddy lists, as if each pcp list were drained after every call), no CMA,
HIGHATOMIC reserves, memory isolation, compaction, OOM killer, cpusets or mempolicies; direct
reclaim frees page-cache pages from a per-node LRU. Reclaim and kswapd live in impl/vmscan.py,
as the kernel keeps them in mm/vmscan.c.
"""

from __future__ import annotations

from bisect import bisect_right

from impl.buddy import combined_pfn, expand_halves, find_buddy_pfn, higher_buddy_pfn
from impl.direct_map import pfn_to_virt, virt_to_pfn
from impl.machine import MachineConfig
from impl.mmzone import NR_MT as NR_MT  # re-exported
from impl.mmzone import NodeState as NodeState  # re-exported
from impl.mmzone import Zone as Zone  # re-exported
from impl.vmscan import OWNER_PAGECACHE as OWNER_PAGECACHE  # re-exported
from impl.vmscan import Vmscan
from impl.watermarks import (
    SWAP_CLUSTER_MAX,
    WMARK_HIGH,
    WMARK_MIN,
    compute_zone_watermarks,
)
from spec.context import Context, Effect
from spec.errors import (
    BadFreeError,
    BadNodeError,
    ContextError,
    DoubleFreeError,
    GfpError,
    PageReferencedError,
    SleepInAtomicError,
    UnalignedFreeError,
    UnknownAddressError,
    WrongOrderError,
)
from spec.gfp import (
    __GFP_DIRECT_RECLAIM,
    __GFP_HIGH,
    __GFP_HIGHMEM,
    __GFP_KSWAPD_RECLAIM,
    __GFP_NORETRY,
    __GFP_NOWARN,
    __GFP_RETRY_MAYFAIL,
    __GFP_THISNODE,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    ZONE_DMA32,
    ZONE_NORMAL,
    check_gfp,
    format_gfp,
    gfp_migratetype,
    gfp_zone,
    gfpflags_allow_blocking,
)
from spec.layout import NUMA_NO_NODE
from spec.logic import And, Bits, Not
from spec.reserves import (
    ALLOC_KSWAPD,
    ALLOC_MIN_RESERVE,
    ALLOC_NO_WATERMARKS,
    ALLOC_NOFRAGMENT,
    ALLOC_RESERVES,
    ALLOC_WMARK_LOW,
    ALLOC_WMARK_MASK,
    gfp_to_alloc_flags,
    may_sleep,
    no_watermarks,
    watermark_min_adjusted,
)

PAGE_ALLOC_COSTLY_ORDER = 3
MAX_RECLAIM_RETRIES = 16
# fallbacks[] of mm/page_alloc.c (MIGRATE_PCPTYPES - 1 entries per type)
FALLBACKS = {
    MIGRATE_UNMOVABLE: (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE),
    MIGRATE_MOVABLE: (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),
    MIGRATE_RECLAIMABLE: (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE),
}

OWNER_PAGES = "pages"  # alloc_pages and friends
# 1 << order for every order a block can have (max_order <= 20): the hot path indexes this
# tuple instead of shifting (CPython 3.11 specializes a tuple index, not a shift)
_NR_PAGES = tuple(1 << o for o in range(64))
_PROCESS = Context.PROCESS  # a module global: Context.PROCESS is a slow enum class lookup

Route = tuple[tuple[Zone, ...], int, int, int, bool]
"""How an allocation with one gfp mask on one node goes (PageAllocator._gfp_info): the
zonelist, the fast path's alloc_flags, the highest zone index (gfp_zone), the migratetype
(gfp_migratetype) and whether the mask may block (gfpflags_allow_blocking)."""


# Python mangles ``__name`` identifiers inside class bodies, so the allocator uses these
# single-underscore aliases of the kernel's __GFP_* bits.
_GFP_DIRECT_RECLAIM = __GFP_DIRECT_RECLAIM
_GFP_HIGH = __GFP_HIGH
_GFP_HIGHMEM = __GFP_HIGHMEM
_GFP_KSWAPD_RECLAIM = __GFP_KSWAPD_RECLAIM
_GFP_NORETRY = __GFP_NORETRY
_GFP_NOWARN = __GFP_NOWARN
_GFP_RETRY_MAYFAIL = __GFP_RETRY_MAYFAIL
_GFP_THISNODE = __GFP_THISNODE


def may_direct_reclaim(gfp: Bits, ctx: Bits) -> Bits:
    """Whether the slow path may enter direct reclaim, i.e. sleep: the allocator consults the
    specification's sleeping rule (spec.reserves.may_sleep) rather than restating it. (In
    atomic context the allocator raises SleepInAtomicError before getting here; the subject
    adapter clears __GFP_DIRECT_RECLAIM instead.)"""
    return may_sleep(gfp, ctx)


def alloc_enters_reclaim(gfp: Bits, ctx: Bits, fast_ok: Bits, min_ok: Bits) -> Bits:
    """__alloc_pages()'s decision to sleep: only after the fast path (low watermark) and the
    slow path's first attempt (min watermark with reserves) both failed, and only if
    may_direct_reclaim(). The Z3 proof calls this very function for every mask, context and
    memory situation."""
    return And(Not(fast_ok), Not(min_ok), may_direct_reclaim(gfp, ctx))


_GFP_NAMES: dict[int, str] = {}


def _gfp_name(gfp: int) -> str:
    """format_gfp(gfp) of a mask already checked by check_gfp(), memoized: error messages are
    built on every refused call (the model checker tries thousands)."""
    name = _GFP_NAMES.get(gfp)
    if name is None:
        if len(_GFP_NAMES) > 4096:
            _GFP_NAMES.clear()
        name = _GFP_NAMES[gfp] = format_gfp(gfp)
    return name


class PageAllocator(Vmscan):
    """The machine after boot: zones, free lists, allocated blocks, contexts and counters.

    Public entry points use kernel names and kernel argument orders; a ``struct page *`` is
    represented by its pfn, a logical address by an int. Every entry point either completes or
    raises a :class:`spec.errors.KmemError` subclass without changing any state.
    """

    def __init__(self, machine: MachineConfig | None = None) -> None:
        self.machine = m = (machine or MachineConfig.default()).validate()
        self.max_order = m.max_order
        self.pageblock_order = m.pageblock_order
        self.page_offset = m.page_offset
        self.cpu_node = m.cpu_node()
        self.distance = m.distance
        self.zones: list[Zone] = []
        self.nodes: list[NodeState] = []
        wm = compute_zone_watermarks(m)
        for ncfg in m.nodes:
            zs = []
            for zcfg in ncfg.zones:
                z = Zone(len(self.zones), ncfg.nid, zcfg, m.max_order)
                w = wm[(ncfg.nid, zcfg.zone)]
                z.wmark = [w.min, w.low, w.high, w.promo]
                z.lowmem_reserve = list(w.lowmem_reserve)
                self.zones.append(z)
                zs.append(z)
            self.nodes.append(NodeState(ncfg.nid, ncfg.cpus, zs, {}))
        self._zone_starts = sorted((z.start, z.zid) for z in self.zones)
        self.max_pfn = m.max_pfn
        nr_pageblocks = (self.max_pfn >> self.pageblock_order) + 1
        self.pageblock_flags = bytearray([MIGRATE_MOVABLE]) * nr_pageblocks
        self.allocated: dict[int, tuple[int, int, str, int]] = {}
        self.refs: dict[int, int] = {}  # extra references (get_page) beyond the first
        # NR_PAGETABLE per node: PUD/PMD/PTE tables of impl/pgtable.py (pagetable_*_ctor)
        self.nr_page_table_pages: list[int] = [0] * len(m.nodes)
        self.ctx: dict[int, list[Context]] = {c: [] for c in self.cpu_node}
        self.effects: list[Effect] = []
        self.access_cost: dict[int, int] = dict.fromkeys(self.cpu_node, 0)
        self.accesses: dict[int, int] = dict.fromkeys(self.cpu_node, 0)
        self._zonelists: dict[tuple[int, int, bool], tuple[Zone, ...]] = {}
        self._gfp_cache: dict[int, tuple[Route, ...]] = {}
        # the slow path's pure functions of (mask, order, context), computed once each
        # with the proved helpers (per allocator, so a replaced helper is seen by a new one)
        self._slow_cache: dict[tuple[int, int, int], tuple[int, bool, bool, str]] = {}
        self._wm_cache: dict[tuple[int, int], int] = {}
        node_load = [0] * len(m.nodes)  # build_zonelists' static node_load[], shared by nodes
        self._node_order = {n.nid: self._build_node_order(n.nid, node_load) for n in m.nodes}
        self._hit_zid = -1
        # alloc_flags_nofragment(): a Normal zone whose node also has a populated DMA32 (any
        # Normal zone on a one-node machine) avoids fragmenting fallbacks on the fast path.
        self._nofrag = [z.idx == ZONE_NORMAL and (len(self.nodes) == 1 or any(
            y.idx == ZONE_DMA32 and y.managed for y in self.nodes[z.nid].zones))
            for z in self.zones]
        for z in self.zones:
            self._boot_free_zone(z)

    # --- boot ----------------------------------------------------------------------------------
    def _boot_free_zone(self, z: Zone) -> None:
        """memblock_free_all(): free every non-reserved present range in maximal aligned chunks
        (__free_pages_memory), with FPI_TO_TAIL; MAX_PAGE_ORDER chunks stay lazy ranges."""
        free_ranges: list[tuple[int, int]] = []
        for s, e in sorted(z.cfg.ranges):
            cuts = sorted(r for r in z.cfg.reserved if s <= r[0] < e)
            cur = s
            for rs, re_ in cuts:
                if rs > cur:
                    free_ranges.append((cur, rs))
                cur = max(cur, re_)
            if cur < e:
                free_ranges.append((cur, e))
        mo = self.max_order
        step = 1 << mo
        for s, e in free_ranges:
            pfn = s
            while pfn < e:
                order = min(mo, (pfn & -pfn).bit_length() - 1 if pfn else mo)
                while pfn + (1 << order) > e:
                    order -= 1
                if order == mo:
                    # a run of maximal blocks: one lazy range
                    run_end = pfn + ((e - pfn) // step) * step
                    if z._lazy and z._lazy[-1][1] == pfn:
                        z._lazy[-1][1] = run_end
                    else:
                        z._lazy.append([pfn, run_end])
                    n = (run_end - pfn) // step
                    z._lazy_pages += run_end - pfn
                    z.counts[mo << 3 | MIGRATE_MOVABLE] += n
                    z.free_pages += run_end - pfn
                    pfn = run_end
                    continue
                self._free_one_page(z, pfn, order, MIGRATE_MOVABLE, to_tail=True)
                pfn += 1 << order

    def _build_node_order(self, local: int, node_load: list[int]) -> tuple[int, ...]:
        """build_zonelists()/find_next_best_node(): local node first, then by distance with
        the kernel's penalties and round-robin tie-breaking (node_load, which persists from
        one node's build to the next, as the kernel's static array does)."""
        n = len(self.machine.nodes)
        order = [local]
        used = {local}
        prev_val = None
        has_cpus = [bool(nd.cpus) for nd in self.machine.nodes]
        while len(order) < n:
            best, best_val = -1, None
            for cand in range(n):
                if cand in used:
                    continue
                val = self.distance[local][cand]
                val += 1 if cand < local else 0
                val += 1 if has_cpus[cand] else 0
                val *= 1 << 10  # MAX_NUMNODES on x86-64 with NODES_SHIFT 10
                val += node_load[cand]
                if best_val is None or val < best_val:
                    best, best_val = cand, val
            used.add(best)
            if prev_val is None or self.distance[local][best] != prev_val:
                node_load[best] += 1
            prev_val = self.distance[local][best]
            order.append(best)
        return tuple(order)

    def zonelist(self, nid: int, highest_zoneidx: int, thisnode: bool) -> tuple[Zone, ...]:
        """The zones an allocation on ``nid`` may use, in fallback order: ZONELIST_FALLBACK
        (nodes by distance, each node's zones highest first) or ZONELIST_NOFALLBACK."""
        key = (nid, highest_zoneidx, thisnode)
        zl = self._zonelists.get(key)
        if zl is None:
            nodes = (nid,) if thisnode else self._node_order[nid]
            zl = tuple(z for n in nodes
                       for z in sorted(self.nodes[n].zones, key=lambda z: -z.idx)
                       if z.idx <= highest_zoneidx and z.managed > 0)
            self._zonelists[key] = zl
        return zl

    # --- contexts ------------------------------------------------------------------------------
    def _check_cpu(self, cpu: int) -> None:
        if cpu not in self.cpu_node:
            raise BadNodeError(f"cpu {cpu} does not exist (cpus: {sorted(self.cpu_node)})")

    def context(self, cpu: int = 0) -> Context:
        """The calling context of code running on ``cpu`` now."""
        self._check_cpu(cpu)
        st = self.ctx[cpu]
        return st[-1] if st else Context.PROCESS

    def enter(self, ctx: Context, cpu: int = 0) -> None:
        """Enter an atomic context on ``cpu`` (irq entry, local_bh_disable, preempt_disable,
        spin_lock); contexts nest."""
        self._check_cpu(cpu)
        if not isinstance(ctx, Context) or ctx is Context.PROCESS:
            raise ContextError(f"cannot enter {ctx!r}: process context is the bottom of the stack")
        self.ctx[cpu].append(ctx)

    def exit(self, ctx: Context, cpu: int = 0) -> None:
        """Leave the innermost context, which must be ``ctx``."""
        self._check_cpu(cpu)
        st = self.ctx[cpu]
        if not isinstance(ctx, Context):
            raise ContextError(f"cannot exit {ctx!r}: not a calling context")
        if not st or st[-1] is not ctx:
            raise ContextError(f"cpu {cpu} is not in {ctx.name.lower()} context "
                               f"(current: {self.context(cpu).name.lower()})")
        st.pop()

    # --- allocation ----------------------------------------------------------------------------
    def _gfp_info(self, gfp: int) -> tuple[Route, ...]:
        """The Route of ``gfp`` for every node id, computed once per mask with the proved
        helpers of spec/gfp.py (check_gfp, gfp_zone, gfp_migratetype,
        gfpflags_allow_blocking) and cached. Raises GfpError for a bad mask."""
        routes = self._gfp_cache.get(gfp)
        if routes is None:
            check_gfp(gfp)
            hz = int(gfp_zone(gfp))
            mt = int(gfp_migratetype(gfp))
            may_block = bool(gfpflags_allow_blocking(gfp))
            thisnode = bool(gfp & _GFP_THISNODE)
            out = []
            for node in self.nodes:
                zl = self.zonelist(node.nid, hz, thisnode)
                # __alloc_pages(): ALLOC_WMARK_LOW, plus alloc_flags_nofragment()'s
                # ALLOC_NOFRAGMENT when the preferred zone is Normal with a DMA32 sibling
                flags = ALLOC_WMARK_LOW | (gfp & _GFP_KSWAPD_RECLAIM)
                if zl and self._nofrag[zl[0].zid]:
                    flags |= ALLOC_NOFRAGMENT
                out.append((zl, flags, hz, mt, may_block))
            routes = self._gfp_cache[gfp] = tuple(out)
        return routes

    def _where(self, gfp: int, nid: int, cpu: int) -> tuple[tuple[Route, ...], int, int]:
        """The mask's routes (cached), the node (NUMA_NO_NODE: the node of ``cpu``) and the
        CPU's node of an allocation; GfpError or BadNodeError for bad ones, before any
        change. Shared by alloc_pages_node() and alloc_pages_bulk()."""
        if type(gfp) is not int:  # 3264.0 == GFP_KERNEL would hit the cache
            check_gfp(gfp)  # raises GfpError
        try:
            routes = self._gfp_cache[gfp]
        except KeyError:
            routes = self._gfp_info(gfp)
        try:
            cpu_node = self.cpu_node[cpu]
        except (KeyError, TypeError):
            raise BadNodeError(f"cpu {cpu!r} does not exist (cpus: {sorted(self.cpu_node)})"
                               ) from None
        if nid == NUMA_NO_NODE:
            return routes, cpu_node, cpu_node
        if type(nid) is not int or not 0 <= nid < len(self.nodes):
            raise BadNodeError(f"node {nid} is not online (nodes 0..{len(self.nodes) - 1})")
        return routes, nid, cpu_node

    def alloc_pages_node(self, nid: int, gfp: int, order: int, *, cpu: int = 0,
                         ctx: Context | None = None) -> int | None:
        """alloc_pages_node(nid, gfp, order) and __alloc_pages(): the pfn of a 2^order block,
        or None. Fast path at the low watermark, then the slow path.

        ``nid`` NUMA_NO_NODE (-1) means the node of ``cpu``. An order above MAX_PAGE_ORDER is a
        failed allocation with a WARN effect (unless _GFP_NOWARN), as in __alloc_pages().
        """
        # The usual call (NUMA_NO_NODE, an int mask already routed, a known CPU) finds its
        # route without calling _where(); any other call, and every bad argument, goes through
        # _where(), which raises. (type(gfp) is int: 3264.0 == GFP_KERNEL would hit the cache.)
        try:
            routes = self._gfp_cache[gfp] if nid == NUMA_NO_NODE and type(gfp) is int else None
            cpu_node = self.cpu_node[cpu]
        except (KeyError, TypeError):
            routes = None
        if routes is None:
            routes, nid, cpu_node = self._where(gfp, nid, cpu)
        else:
            nid = cpu_node
        if type(order) is not int or order < 0:
            raise GfpError(f"order must be a non-negative integer, got {order!r}")
        zl, alloc_flags, hz, mt, may_block = routes[nid]
        if ctx is None:
            st = self.ctx[cpu]
            ctx = st[-1] if st else _PROCESS
        # __alloc_pages(): the order check (and its WARN) comes before might_alloc()
        if order > self.max_order:
            if not gfp & _GFP_NOWARN:
                self.effects.append(Effect("warn", nid, f"WARN_ON_ONCE(order {order} > "
                                           f"MAX_PAGE_ORDER {self.max_order})", int(ctx), gfp))
            return None
        if may_block and ctx is not _PROCESS:
            raise SleepInAtomicError(
                f"BUG: sleeping function called from invalid context: alloc_pages_node("
                f"{nid}, {_gfp_name(gfp)}, {order}) in {ctx.name.lower()} context on cpu {cpu}")
        if not zl:  # no preferred zone: the slow path goes straight to nopage/warn_alloc
            if not gfp & _GFP_NOWARN:
                self.effects.append(Effect("warn", nid, f"page allocation failure: order:"
                                           f"{order}, mode:{gfp:#x}({format_gfp(gfp)})",
                                           int(ctx), gfp))
            return None
        pfn = self._get_page_from_freelist(zl, order, alloc_flags, hz, mt, cpu_node)
        if pfn < 0:
            pfn = self._slowpath(zl, gfp, order, hz, mt, cpu_node, ctx is not _PROCESS, ctx)
            if pfn < 0:
                return None
        self.allocated[pfn] = (order, self._hit_zid, OWNER_PAGES, mt)
        return pfn

    def _get_page_from_freelist(self, zl: tuple[Zone, ...], order: int, alloc_flags: int,
                                hz: int, mt: int, cpu_node: int) -> int:
        """get_page_from_freelist(): first zone whose watermark allows it; -1 if none. With
        ALLOC_NOFRAGMENT a zone of another node (or no zone at all) retries without it.

        Fast path first (this runs on every allocation): the preferred zone has a block at
        the head of the requested order's ``mt`` list and NR_FREE_PAGES - 2^order >= mark +
        lowmem_reserve. Then the loop below would take exactly that block from that zone:
        zone_watermark_fast() passes (order 0: its fast check; order > 0: the same test in
        __zone_watermark_ok(), whose reserves can only lower the mark, and a free block of
        the order on a MIGRATE_PCPTYPES list exists), and __rmqueue_smallest()'s first
        iteration takes the list head without a split. Anything else runs the loop: the
        kernel's code with every check (tests/test_fast_paths.py compares the two)."""
        idx = order * 8 + mt  # the list index order << 3 | mt, with specialized operations
        wm_idx = alloc_flags & ALLOC_WMARK_MASK
        pref = zl[0]
        pfn = pref.heads[idx]
        if pfn != -1 and pref.free_pages >= pref.wmark[wm_idx] + (
                pref.boost + pref.lowmem_reserve[hz] + _NR_PAGES[order]):
            # __del_page_from_free_list() of a list head (Zone.delete, inline): no previous
            # entry, and its PageBuddy record is this list's index
            del pref._buddy[pfn]
            del pref._prv[pfn]
            n = pref._nxt.pop(pfn)
            pref.heads[idx] = n
            if n == -1:
                pref.tails[idx] = -1
            else:
                pref._prv[n] = -1
            pref.counts[idx] -= 1
            pref.free_pages -= _NR_PAGES[order]
            self._hit_zid = pref.zid
            pref.numa_hit += 1  # zone_statistics() of the preferred zone
            if pref.nid == cpu_node:
                pref.numa_local += 1
            else:
                pref.numa_other += 1
            if pref.boosted and alloc_flags & ALLOC_KSWAPD:
                pref.boosted = False
                self._wakeup_kswapd(pref.nid, "boosted watermark")
            return pfn
        pref_nid = pref.nid
        while True:
            for z in zl:
                nid = z.nid
                if nid != pref_nid and alloc_flags & ALLOC_NOFRAGMENT:
                    break  # another node's zone: retry without ALLOC_NOFRAGMENT
                if not alloc_flags & ALLOC_NO_WATERMARKS:
                    # zone_watermark_fast(): order > 0 goes to __zone_watermark_ok() at once
                    if order:
                        if not self._watermark_ok(z, order, z.wmark[wm_idx] + z.boost, hz,
                                                  alloc_flags):
                            continue
                    elif not self._watermark_fast(z, 0, wm_idx, hz, alloc_flags):
                        continue
                # rmqueue_buddy()/__rmqueue() (_rmqueue(), without its extra call)
                pfn = self._rmqueue_smallest(z, order, mt)
                if pfn < 0:
                    pfn = self._rmqueue_fallback(z, order, mt, alloc_flags)
                    if pfn < 0:
                        continue
                self._hit_zid = z.zid
                # zone_statistics()
                if nid == pref_nid:
                    z.numa_hit += 1
                else:
                    z.numa_miss += 1
                    pref.numa_foreign += 1
                if nid == cpu_node:
                    z.numa_local += 1
                else:
                    z.numa_other += 1
                if z.boosted and alloc_flags & ALLOC_KSWAPD:
                    z.boosted = False
                    self._wakeup_kswapd(nid, "boosted watermark")
                return pfn
            if alloc_flags & ALLOC_NOFRAGMENT:
                alloc_flags &= ~ALLOC_NOFRAGMENT
                continue
            return -1

    def _watermark_fast(self, z: Zone, order: int, wm_idx: int, hz: int,
                        alloc_flags: int) -> bool:
        """zone_watermark_fast(): the boosted mark (wmark_pages()); order 0 passes at once when
        NR_FREE_PAGES is above mark + lowmem_reserve (the kernel's fast check, no reserves to
        subtract in the model); otherwise __zone_watermark_ok(), except that order-0
        __GFP_HIGH requests checked at the min watermark ignore the boost (so kswapd, not
        failure, follows)."""
        mark = z.wmark[wm_idx] + z.boost
        if not order and z.free_pages > mark + z.lowmem_reserve[hz]:
            return True
        if self._watermark_ok(z, order, mark, hz, alloc_flags):
            return True
        return bool(not order and alloc_flags & ALLOC_MIN_RESERVE and z.boost
                    and wm_idx == WMARK_MIN
                    and self._watermark_ok(z, order, z.wmark[WMARK_MIN], hz, alloc_flags))

    def _watermark_ok(self, z: Zone, order: int, mark: int, hz: int, alloc_flags: int) -> bool:
        """__zone_watermark_ok() with free_pages = NR_FREE_PAGES (no CMA, no highatomic)."""
        if alloc_flags & ALLOC_RESERVES:
            # the reserve rule (spec/reserves.py, obligation watermark.reserve_rule), a pure
            # function of (mark, flags) computed once per pair for this allocator
            key = (mark, alloc_flags)
            adjusted = self._wm_cache.get(key)
            if adjusted is None:
                if len(self._wm_cache) > 4096:
                    self._wm_cache.clear()
                adjusted = self._wm_cache[key] = int(watermark_min_adjusted(mark, alloc_flags))
            mark = adjusted
        if z.free_pages - ((1 << order) - 1) <= mark + z.lowmem_reserve[hz]:
            return False
        if not order:
            return True
        # a free block of at least ``order`` on a MIGRATE_PCPTYPES list (the requested order
        # first: the usual hit, without building a range)
        counts = z.counts
        base = order << 3
        if counts[base] or counts[base | 1] or counts[base | 2]:
            return True
        for o in range(order + 1, self.max_order + 1):
            base = o << 3
            if counts[base] or counts[base | 1] or counts[base | 2]:
                return True
        return False

    def _rmqueue(self, z: Zone, order: int, mt: int, alloc_flags: int) -> int:
        """rmqueue_buddy()/__rmqueue(): requested type, then claim, then steal."""
        pfn = self._rmqueue_smallest(z, order, mt)
        if pfn >= 0:
            return pfn
        return self._rmqueue_fallback(z, order, mt, alloc_flags)

    def _rmqueue_fallback(self, z: Zone, order: int, mt: int, alloc_flags: int) -> int:
        """__rmqueue() once __rmqueue_smallest() found nothing: claim, then steal."""
        pfn = self._rmqueue_claim(z, order, mt, alloc_flags)
        if pfn >= 0:
            return pfn
        if not alloc_flags & ALLOC_NOFRAGMENT:
            return self._rmqueue_steal(z, order, mt)
        return -1

    def _rmqueue_smallest(self, z: Zone, order: int, mt: int) -> int:
        """__rmqueue_smallest(): first block of the smallest order >= ``order`` on the ``mt``
        lists, split by expand()."""
        cur = order
        pfn = z.heads[order << 3 | mt]  # Zone.first() without the call: the usual hit
        while pfn == -1:
            pfn = z.first(cur, mt)  # an empty list, or a lazy boot block to materialize
            if pfn != -1:
                break
            cur += 1
            if cur > self.max_order:
                return -1
            pfn = z.heads[cur << 3 | mt]
        z.delete(pfn)
        z.free_pages -= 1 << order
        if cur != order:
            self._expand(z, pfn, order, cur, mt)
        return pfn

    def _expand(self, z: Zone, pfn: int, low: int, high: int, mt: int) -> None:
        """expand(): the upper halves go to the head of their lists; the lowest page stays."""
        for half, o in expand_halves(pfn, low, high):
            z.add(half, o, mt, False)

    def _find_suitable_fallback(self, z: Zone, order: int, mt: int) -> tuple[int, bool]:
        """find_suitable_fallback(only_stealable=false): (fallback type or -1, can_steal)."""
        if not z.nr_free(order):
            return -1, False
        for fmt in FALLBACKS[mt]:
            if z.first(order, fmt) == -1:
                continue
            return fmt, self._can_steal_fallback(order, mt)
        return -1, False

    def _can_steal_fallback(self, order: int, mt: int) -> bool:
        pbo = self.pageblock_order
        return order >= pbo or order >= pbo // 2 or mt in (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE)

    def _rmqueue_claim(self, z: Zone, order: int, mt: int, alloc_flags: int) -> int:
        """__rmqueue_claim(): largest block of a fallback type, claiming its pageblock(s)."""
        min_order = order
        if order < self.pageblock_order and alloc_flags & ALLOC_NOFRAGMENT:
            min_order = self.pageblock_order
        for cur in range(self.max_order, min_order - 1, -1):
            fmt, can_steal = self._find_suitable_fallback(z, cur, mt)
            if fmt == -1:
                continue
            if not can_steal:
                break
            page = z.first(cur, fmt)
            pfn = self._try_to_steal_block(z, page, cur, order, mt, alloc_flags)
            if pfn >= 0:
                return pfn
        return -1

    def _try_to_steal_block(self, z: Zone, pfn: int, cur: int, order: int, start_mt: int,
                            alloc_flags: int) -> int:
        """try_to_steal_block(): whole pageblocks for big blocks; otherwise claim the pageblock
        if at least half of it is free or compatible."""
        pbo = self.pageblock_order
        block_type = self.pageblock_flags[pfn >> pbo]
        if cur >= pbo:
            z.delete(pfn)
            z.free_pages -= 1 << cur
            for i in range(1 << (cur - pbo)):
                self.pageblock_flags[(pfn >> pbo) + i] = start_mt
            self._expand(z, pfn, order, cur, start_mt)
            z.free_pages += (1 << cur) - (1 << order)
            return pfn
        # boost_watermark()
        if (1 << pbo) * 4 <= z.managed:
            max_boost = max(1 << pbo, z.wmark[WMARK_HIGH] * 15000 // 10000)
            if z.wmark[WMARK_HIGH] * 15000 // 10000:
                z.boost = min(z.boost + (1 << pbo), max_boost)
                if alloc_flags & ALLOC_KSWAPD:
                    z.boosted = True
        start = pfn >> pbo << pbo
        end = start + (1 << pbo)
        if not (z.spans(start) and z.spans(end - 1)):
            return -1
        free_pages, movable = self._scan_pageblock(z, start, end)
        if start_mt == MIGRATE_MOVABLE:
            alike = movable
        elif block_type == MIGRATE_MOVABLE:
            alike = (1 << pbo) - (free_pages + movable)
        else:
            alike = 0
        if free_pages + alike >= (1 << (pbo - 1)):
            self._move_freepages_block(z, start, end, start_mt)
            return self._rmqueue_smallest(z, order, start_mt)
        return -1

    def _scan_pageblock(self, z: Zone, start: int, end: int) -> tuple[int, int]:
        """prep_move_freepages_block()'s count: free pages, and pages of movable allocations
        (PageLRU/__PageMovable: the model counts every page of a MOVABLE-type allocation)."""
        free = movable = 0
        pfn = start
        while pfn < end:
            o = z.free_order_at(pfn)
            if o >= 0:
                free += 1 << o
                pfn += 1 << o
                continue
            rec = self.allocated.get(pfn)
            if rec is not None:
                n = min(1 << rec[0], end - pfn)
                if rec[3] == MIGRATE_MOVABLE:
                    movable += n
                pfn += n
                continue
            pfn += 1
        return free, movable

    def _move_freepages_block(self, z: Zone, start: int, end: int, new_mt: int) -> None:
        """__move_freepages_block(): every free block of the pageblock to the tail of the
        ``new_mt`` list, then relabel the pageblock."""
        pfn = start
        while pfn < end:
            o = z.free_order_at(pfn)
            if o < 0:
                pfn += 1
                continue
            z.delete(pfn)  # never a lazy boot block: those cover whole pageblocks
            z.add(pfn, o, new_mt, True)
            pfn += 1 << o
        self.pageblock_flags[start >> self.pageblock_order] = new_mt

    def _rmqueue_steal(self, z: Zone, order: int, mt: int) -> int:
        """__rmqueue_steal(): smallest fallback block, split on its own type's lists."""
        for cur in range(order, self.max_order + 1):
            fmt, _ = self._find_suitable_fallback(z, cur, mt)
            if fmt == -1:
                continue
            pfn = z.first(cur, fmt)
            z.delete(pfn)
            z.free_pages -= 1 << order
            if cur != order:
                self._expand(z, pfn, order, cur, fmt)
            return pfn
        return -1

    # --- slow path (reclaim and kswapd: impl/vmscan.py) -----------------------------------
    def _slowpath(self, zl: tuple[Zone, ...], gfp: int, order: int, hz: int, mt: int,
                  cpu_node: int, atomic: bool, ctx: Context) -> int:
        """__alloc_pages_slowpath(): wake kswapd, retry at min with reserves, then (only if
        the caller may sleep) direct reclaim and retries; else fail with a warn_alloc effect."""
        key = (gfp, order, int(ctx))
        pure = self._slow_cache.get(key)
        if pure is None:
            if len(self._slow_cache) > 4096:
                self._slow_cache.clear()
            # gfp_to_alloc_flags(), __gfp_pfmemalloc_flags() (spec/reserves.py) and the
            # decision to sleep (alloc_enters_reclaim() once both attempts failed)
            pure = self._slow_cache[key] = (
                int(gfp_to_alloc_flags(gfp, order)), bool(no_watermarks(gfp)),
                bool(alloc_enters_reclaim(gfp, int(ctx), False, False)), format_gfp(gfp))
        alloc_flags, nowmarks, enters_reclaim, gfp_name = pure
        if alloc_flags & ALLOC_KSWAPD:
            for n in dict.fromkeys(z.nid for z in zl):
                self._wakeup_kswapd(n, f"order {order} {gfp_name}")
        pfn = self._get_page_from_freelist(zl, order, alloc_flags, hz, mt, cpu_node)
        if pfn >= 0:
            return pfn
        if nowmarks:  # __gfp_pfmemalloc_flags(), the rule of spec/reserves.py
            # reserve_flags: kept for the reclaim retries too, as the kernel's retry loop does
            alloc_flags |= ALLOC_NO_WATERMARKS
            pfn = self._get_page_from_freelist(zl, order, alloc_flags, hz, mt, cpu_node)
            if pfn >= 0:
                return pfn
        if enters_reclaim:
            no_progress = 0
            while True:
                self.effects.append(Effect("sleep", zl[0].nid,
                                           f"direct reclaim, order {order}", int(ctx), gfp))
                # While the caller sleeps, the kswapd threads it woke (or that a watermark
                # boost woke) run balance_pgdat(): the model runs them to completion here,
                # which also drops the boosts that raised the min watermark.
                for nid in dict.fromkeys(z.nid for z in zl):
                    node = self.nodes[nid]
                    if node.kswapd_awake or any(z.boost for z in node.zones):
                        self.kswapd(nid)
                reclaimed = self._try_to_free_pages(zl, hz, SWAP_CLUSTER_MAX)
                if reclaimed:
                    self.effects.append(Effect("reclaim", zl[0].nid,
                                               f"{reclaimed} page-cache pages", int(ctx), gfp))
                pfn = self._get_page_from_freelist(zl, order, alloc_flags, hz, mt, cpu_node)
                if pfn >= 0:
                    return pfn
                if gfp & _GFP_NORETRY:
                    break
                if order > PAGE_ALLOC_COSTLY_ORDER and not gfp & _GFP_RETRY_MAYFAIL:
                    break
                no_progress = 0 if reclaimed else no_progress + 1
                if no_progress >= 1 and not self._reclaimable(zl, hz):
                    break  # should_reclaim_retry(): nothing left to reclaim, OOM not modeled
                if no_progress > MAX_RECLAIM_RETRIES:
                    break
        if not gfp & _GFP_NOWARN:
            self.effects.append(Effect("warn", zl[0].nid,
                                       f"page allocation failure: order:{order}, "
                                       f"mode:{gfp:#x}({gfp_name})", int(ctx), gfp))
        return -1

    # --- freeing -------------------------------------------------------------------------------
    def free_pages_pfn(self, pfn: int, order: int) -> None:
        """__free_pages(pfn_to_page(pfn), order), with the model's bad-input checks.

        (Python mangles ``__free_pages`` inside a class, hence this name.)"""
        allocated = self.allocated
        rec = allocated.get(pfn)
        if rec is None or rec[0] != order or rec[2] != OWNER_PAGES or (
                self.refs and pfn in self.refs) or type(pfn) is not int or type(order) is not int:
            self._diagnose_free(pfn, order, rec)
            raise AssertionError  # unreachable: _diagnose_free always raises
        del allocated[pfn]
        pbo = self.pageblock_order
        if order <= pbo:  # _free_pages_zone()'s usual case, without the extra call
            self._free_one_page(self.zones[rec[1]], pfn, order, self.pageblock_flags[pfn >> pbo],
                                False)
        else:
            self._free_pages_zone(self.zones[rec[1]], pfn, order)

    def _free_pages_zone(self, z: Zone, pfn: int, order: int) -> None:
        """free_one_page()/split_large_buddy(): blocks above pageblock_order are freed one
        pageblock at a time, each with its own pageblock migratetype."""
        pbo = self.pageblock_order
        if order <= pbo:
            self._free_one_page(z, pfn, order, self.pageblock_flags[pfn >> pbo], False)
            return
        end = pfn + (1 << order)
        while pfn < end:
            self._free_one_page(z, pfn, pbo, self.pageblock_flags[pfn >> pbo], False)
            pfn += 1 << pbo

    def _free_one_page(self, z: Zone, pfn: int, order: int, mt: int, to_tail: bool) -> None:
        """__free_one_page(): merge with free buddies up to MAX_PAGE_ORDER, then place the
        block at the head, or at the tail when buddy_merge_likely() (or FPI_TO_TAIL).

        The buddy, the merged block and buddy_merge_likely()'s probe come from the proved
        helpers find_buddy_pfn(), combined_pfn() and higher_buddy_pfn() (impl/buddy.py,
        obligation buddy.arithmetic): this loop calls them, it does not restate them
        (tests/test_proved_helpers.py fails if it does)."""
        z.free_pages += _NR_PAGES[order]
        buddy = z._buddy
        mo = self.max_order
        while order < mo:
            buddy_pfn = find_buddy_pfn(pfn, order)
            # page_is_buddy(): PageBuddy with buddy_order == order (_buddy holds order << 3 | mt)
            bi = buddy.get(buddy_pfn, -1)
            if bi == -1 or bi >> 3 != order:  # -1 (not free) first: the usual answer
                if not to_tail and order < mo - 1:
                    # buddy_merge_likely(): is the buddy of the next-larger block free?
                    # (false at once from MAX_PAGE_ORDER - 1 up, as in the kernel)
                    bi = buddy.get(higher_buddy_pfn(pfn, buddy_pfn, order), -1)
                    to_tail = bi != -1 and bi >> 3 == order + 1
                break
            z.delete(buddy_pfn)
            pbo = self.pageblock_order
            if order >= pbo and bi & 7 != mt:
                # the buddy's pageblocks take the freed block's migratetype
                for i in range(1 << (order - pbo)):
                    self.pageblock_flags[(buddy_pfn >> pbo) + i] = mt
            pfn = combined_pfn(pfn, buddy_pfn)
            order += 1
        if to_tail:
            z.add(pfn, order, mt, True)
            return
        # __add_to_free_list() at the head (Zone.add, inline: this runs on every free)
        idx = order * 8 + mt  # order << 3 | mt
        buddy[pfn] = idx
        h = z.heads[idx]
        z._nxt[pfn] = h
        z._prv[pfn] = -1
        if h == -1:
            z.tails[idx] = pfn
        else:
            z._prv[h] = pfn
        z.heads[idx] = pfn
        z.counts[idx] += 1

    def _diagnose_free(self, pfn: int, order: int, rec: tuple[int, int, str, int] | None) -> None:
        """Raise the error a kernel engineer would want for a bad free of (pfn, order)."""
        what = f"free_pages(pfn {pfn:#x}, order {order})" if type(pfn) is int else (
            f"free_pages(pfn {pfn!r}, order {order!r})")
        if type(pfn) is not int or type(order) is not int or pfn < 0 or order < 0:
            raise UnknownAddressError(f"{what}: pfn and order must be non-negative integers")
        if rec is not None:
            if rec[2] != OWNER_PAGES:
                raise BadFreeError(f"{what}: the page belongs to the {rec[2]}, not to an "
                                   "alloc_pages caller")
            if rec[0] != order:
                raise WrongOrderError(f"{what}: the block was allocated with order {rec[0]}")
            raise PageReferencedError(f"{what}: page still has {self.refs[pfn] + 1} references "
                                      "(get_page without put_page)")
        z = self.zone_of_pfn(pfn)
        if z is None:
            raise UnknownAddressError(f"{what}: pfn is not in any zone (max_pfn {self.max_pfn:#x})")
        head, horder, free = self.block_containing(pfn)
        if head < 0:
            raise BadFreeError(f"{what}: page is reserved or a hole, never given out by the "
                               "buddy allocator (Bad page state: PageReserved)")
        if free:
            raise DoubleFreeError(f"{what}: page is already free, inside free block "
                                  f"{head:#x} of order {horder} (double free; Bad page state)")
        raise UnalignedFreeError(f"{what}: not the first page of its block: the block at "
                                 f"{head:#x} has order {horder}")

    # --- lookups -------------------------------------------------------------------------------
    def zone_of_pfn(self, pfn: int) -> Zone | None:
        """page_zone(pfn_to_page(pfn)), or None outside every zone span."""
        i = bisect_right(self._zone_starts, (pfn, 1 << 62)) - 1
        if i < 0:
            return None
        z = self.zones[self._zone_starts[i][1]]
        return z if z.spans(pfn) else None

    def block_containing(self, pfn: int) -> tuple[int, int, bool]:
        """(head pfn, order, is_free) of the block containing ``pfn``; head -1 for holes and
        reserved pages. At most MAX_PAGE_ORDER + 1 lookups."""
        z = self.zone_of_pfn(pfn)
        if z is None:
            return -1, -1, False
        for o in range(self.max_order + 1):
            head = pfn & ~((1 << o) - 1)
            rec = self.allocated.get(head)
            if rec is not None and rec[0] >= o and head + (1 << rec[0]) > pfn:
                return head, rec[0], False
            fo = z.free_order_at(head)
            if fo >= 0 and head + (1 << fo) > pfn:
                return head, fo, True
        return -1, -1, False

    # --- references ----------------------------------------------------------------------------
    def get_page(self, pfn: int) -> None:
        """get_page(): take an extra reference on an allocated block's head page."""
        if pfn not in self.allocated:
            raise BadFreeError(f"get_page(pfn {pfn:#x}): not the head of an allocated block")
        self.refs[pfn] = self.refs.get(pfn, 0) + 1

    def put_page(self, pfn: int) -> None:
        """put_page(): drop a reference taken with get_page (the allocation's own reference
        is dropped by free_pages)."""
        n = self.refs.get(pfn)
        if n is None:
            raise BadFreeError(f"put_page(pfn {pfn:#x}): no extra reference to drop")
        if n == 1:
            del self.refs[pfn]
        else:
            self.refs[pfn] = n - 1

    def page_count(self, pfn: int) -> int:
        """page_count(): 0 for free pages, 1 + extra references for allocated heads."""
        if pfn in self.allocated:
            return 1 + self.refs.get(pfn, 0)
        return 0

    # --- compaction's free pages (impl/compaction.py) ------------------------------------------
    def isolate_free_page(self, z: Zone, pfn: int) -> int:
        """__isolate_free_page(): take the free block headed by ``pfn`` off its free list if
        the zone stays above min + its size (order-0 __zone_watermark_ok); its order, or -1
        (not a free block head, or the watermark refuses)."""
        order = z.free_order_at(pfn)
        if order < 0 or order >= self.pageblock_order:  # big blocks are never targets
            return -1
        if not self._watermark_ok(z, 0, z.wmark[WMARK_MIN] + (1 << order), 0, 0):
            return -1
        z.delete(pfn)
        z.free_pages -= 1 << order
        return order

    def release_isolated_page(self, z: Zone, pfn: int, order: int) -> None:
        """release_free_list()'s __free_pages of an isolated block that compaction did not
        use: back to the buddy lists, merging."""
        self._free_pages_zone(z, pfn, order)

    # --- addresses -----------------------------------------------------------------------------
    def alloc_pages(self, gfp: int, order: int, *, cpu: int = 0,
                    ctx: Context | None = None) -> int | None:
        """alloc_pages(gfp, order): default mempolicy, i.e. the local node of ``cpu``."""
        return self.alloc_pages_node(NUMA_NO_NODE, gfp, order, cpu=cpu, ctx=ctx)

    def get_free_pages(self, gfp: int, order: int, *, cpu: int = 0,
                       ctx: Context | None = None) -> int:
        """__get_free_pages(gfp, order): the direct-map address of the block, 0 on failure."""
        self._gfp_info(gfp)
        pfn = self.alloc_pages(gfp & ~_GFP_HIGHMEM, order, cpu=cpu, ctx=ctx)
        return 0 if pfn is None else self.pfn_to_virt(pfn)

    def alloc_pages_bulk(self, gfp: int, preferred_nid: int, nr_pages: int,
                         page_array: list[int | None], *, cpu: int = 0,
                         ctx: Context | None = None, owner: str = OWNER_PAGES) -> int:
        """alloc_pages_bulk_array_node(gfp, nid, nr_pages, page_array), i.e.
        alloc_pages_bulk_noprof() (mm/page_alloc.c) with an array and no nodemask: fill the
        None entries of ``page_array[:nr_pages]`` with order-0 pfns; the number of populated
        entries (a leading run of filled ones counts; the kernel returns nr_populated).

        One zone serves the whole batch: the first zone of the zonelist that passes
        zone_watermark_fast() at the low mark *plus nr_pages*, on the preferred node only when
        more than one node is online; pages come from __rmqueue (the model has no pcp lists:
        the order is the buddy order the single-page path would give), counted by
        zone_statistics(preferred, zone, nr) at once, with no mm_page_alloc event and no
        ALLOC_NOFRAGMENT/ALLOC_KSWAPD (prepare_alloc_pages sets neither). No zone, or no
        first page, falls back to __alloc_pages() for one page (slow path, reclaim, warnings
        included); so does a request for one missing page. memcg is not modelled, so
        __GFP_ACCOUNT does not force the fallback. ``preferred_nid`` NUMA_NO_NODE is
        numa_mem_id(): the node of ``cpu``. ``owner`` is the model's tag of the new pages in
        ``allocated`` (vmalloc passes its own, so it need not retag them). Bad arguments raise
        before any change."""
        routes, preferred_nid, cpu_node = self._where(gfp, preferred_nid, cpu)
        if type(nr_pages) is not int or type(page_array) is not list or \
                len(page_array) < nr_pages or type(owner) is not str:
            raise GfpError(f"alloc_pages_bulk: nr_pages {nr_pages!r} needs a list of at least "
                           f"that many entries (and owner {owner!r} a name)")
        nr_populated = 0
        while nr_populated < nr_pages and page_array[nr_populated] is not None:
            nr_populated += 1
        if nr_pages <= 0 or nr_pages - nr_populated == 0:
            return nr_populated
        holes = page_array[nr_populated:nr_pages].count(None)
        if holes != nr_pages - nr_populated:  # some entries are filled: they must be pfns
            for p in page_array[nr_populated:nr_pages]:
                if p is not None and type(p) is not int:
                    raise GfpError(f"alloc_pages_bulk: page_array entry {p!r} is neither None "
                                   "nor a pfn")
        zone: Zone | None = None
        if nr_pages - nr_populated > 1:  # one page: the single page allocator at once
            zl, _fast_flags, _hz, mt, may_block = routes[preferred_nid]
            if ctx is None:
                st = self.ctx[cpu]
                ctx = st[-1] if st else _PROCESS
            if may_block and ctx is not _PROCESS:  # prepare_alloc_pages(): might_alloc()
                raise SleepInAtomicError(
                    f"BUG: sleeping function called from invalid context: alloc_pages_bulk("
                    f"{_gfp_name(gfp)}, {preferred_nid}, {nr_pages}) in {ctx.name.lower()} "
                    f"context on cpu {cpu}")
            alloc_flags = ALLOC_WMARK_LOW
            pref = zl[0] if zl else None
            if pref is not None:
                multi = len(self.nodes) > 1  # nr_online_nodes > 1
                wm_idx = alloc_flags & ALLOC_WMARK_MASK
                for z in zl:
                    if multi and z is not pref and z.nid != pref.nid:
                        break  # only the preferred node's zones: else goto failed
                    # zone_watermark_fast(zone, 0, wmark_pages(zone, LOW) + nr_pages,
                    # zonelist_zone_idx(preferred zoneref), ...): for order 0 without
                    # reserve flags exactly __zone_watermark_ok()'s order-0 test
                    if self._watermark_ok(z, 0, z.wmark[wm_idx] + z.boost + nr_pages,
                                          pref.idx, alloc_flags):
                        zone = z
                        break
            if zone is not None and pref is not None:
                allocated = self.allocated
                rec = (0, zone.zid, owner, mt)  # one immutable record for the whole batch
                rmqueue_smallest = self._rmqueue_smallest
                # the order-0 list of ``mt`` and the free-list links, bound once: the usual
                # page is that list's head (__rmqueue_smallest at order 0 with no split), taken
                # here without a call; anything else is _rmqueue_smallest's (split, lazy boot
                # blocks) or the fallback's
                heads, tails, counts = zone.heads, zone.tails, zone.counts
                zbuddy, znxt, zprv = zone._buddy, zone._nxt, zone._prv
                top = self.max_order << 3  # the lazy boot blocks sit on MAX_PAGE_ORDER lists
                expand = self._expand
                taken = 0  # pages taken below since zone.free_pages was last brought down
                nr_account = 0
                while nr_populated < nr_pages:
                    if page_array[nr_populated] is None:  # existing pages are skipped
                        # __rmqueue(), as _get_page_from_freelist() calls it: the first block
                        # of the smallest order with one on the ``mt`` lists below
                        # MAX_PAGE_ORDER (__rmqueue_smallest), split by expand()
                        pfn = heads[mt]
                        if pfn != -1:
                            # the usual case: order-0 list heads, one after the other, for
                            # as many holes in a row as the list has pages; each is
                            # __del_page_from_free_list() of the head, the list's head,
                            # its back link and its count are written once for the run
                            run = 0
                            while True:
                                del zbuddy[pfn]
                                del zprv[pfn]
                                n = znxt.pop(pfn)
                                allocated[pfn] = rec
                                page_array[nr_populated] = pfn
                                nr_populated += 1
                                run += 1
                                if n == -1 or nr_populated == nr_pages or \
                                        page_array[nr_populated] is not None:
                                    break
                                pfn = n
                            heads[mt] = n
                            if n == -1:
                                tails[mt] = -1
                            else:
                                zprv[n] = -1
                            counts[mt] -= run
                            taken += run
                            nr_account += run
                            continue
                        idx = mt
                        while pfn == -1 and idx < top:
                            idx += 8
                            pfn = heads[idx]
                        if pfn != -1 and idx < top:
                            # __del_page_from_free_list() of the list head (Zone.delete with
                            # no predecessor), the zone's free count, expand()
                            del zbuddy[pfn]
                            del zprv[pfn]
                            n = znxt.pop(pfn)
                            heads[idx] = n
                            if n == -1:
                                tails[idx] = -1
                            else:
                                zprv[n] = -1
                            counts[idx] -= 1
                            taken += 1
                            expand(zone, pfn, 0, idx >> 3, mt)  # a higher order: split it
                        else:  # MAX_PAGE_ORDER (lazy boot blocks), or nothing of type mt
                            zone.free_pages -= taken  # the count is exact for the slow calls
                            taken = 0
                            pfn = rmqueue_smallest(zone, 0, mt)
                            if pfn < 0:
                                pfn = self._rmqueue_fallback(zone, 0, mt, alloc_flags)
                                if pfn < 0:
                                    break
                        nr_account += 1
                        allocated[pfn] = rec
                        page_array[nr_populated] = pfn
                    nr_populated += 1
                zone.free_pages -= taken
                if nr_account:
                    # zone_statistics(preferred zone, zone, nr_account); PGALLOC is not
                    # modelled (no per-zone event counters)
                    if zone.nid == pref.nid:
                        zone.numa_hit += nr_account
                    else:
                        zone.numa_miss += nr_account
                        pref.numa_foreign += nr_account
                    if zone.nid == cpu_node:
                        zone.numa_local += nr_account
                    else:
                        zone.numa_other += nr_account
                    return nr_populated
                # no first page: failed_irq
        # failed: __alloc_pages() for one page
        pfn1 = self.alloc_pages_node(preferred_nid, gfp, 0, cpu=cpu, ctx=ctx)
        if pfn1 is not None:
            if owner != OWNER_PAGES:
                o, zid1, _o, mt1 = self.allocated[pfn1]
                self.allocated[pfn1] = (o, zid1, owner, mt1)
            page_array[nr_populated] = pfn1
            nr_populated += 1
        return nr_populated

    def free_pages(self, addr: int, order: int) -> None:
        """free_pages(addr, order): addr 0 is ignored; otherwise a direct-map address."""
        if addr == 0:
            return
        pfn = self.virt_to_pfn(addr)
        self.free_pages_pfn(pfn, order)

    def virt_to_pfn(self, addr: int) -> int:
        """virt_addr_valid() + virt_to_pfn(): reject anything but a page-aligned direct-map
        address of a pfn below max_pfn. The arithmetic is impl/direct_map.py's (obligation
        direct_map): the address is aligned iff pfn_to_virt(virt_to_pfn(addr)) gives it back."""
        if type(addr) is not int:
            raise UnknownAddressError(f"address {addr!r} is not an integer")
        pfn = virt_to_pfn(addr, self.page_offset)
        if addr < self.page_offset or pfn >= self.max_pfn:
            raise UnknownAddressError(f"address {addr:#x} is not a direct-map address "
                                      f"(PAGE_OFFSET {self.page_offset:#x}, "
                                      f"max_pfn {self.max_pfn:#x})")
        if pfn_to_virt(pfn, self.page_offset) != addr:
            raise UnalignedFreeError(f"address {addr:#x} is not page aligned")
        return int(pfn)

    def pfn_to_virt(self, pfn: int) -> int:
        """page_address(): the direct-map address of ``pfn`` (impl/direct_map.py)."""
        return int(pfn_to_virt(pfn, self.page_offset))

    # --- NUMA cost -----------------------------------------------------------------------------
    def touch(self, pfn: int, cpu: int = 0) -> int:
        """A CPU touches a page: it pays node_distance(cpu's node, page's node)."""
        self._check_cpu(cpu)
        z = self.zone_of_pfn(pfn)
        if z is None:
            raise UnknownAddressError(f"touch(pfn {pfn:#x}): pfn is not in any zone")
        d = self.distance[self.cpu_node[cpu]][z.nid]
        self.access_cost[cpu] += d
        self.accesses[cpu] += 1
        return d

    # --- bookkeeping ---------------------------------------------------------------------------
    def drain_effects(self) -> list[Effect]:
        """Effects since the last drain, oldest first."""
        out, self.effects = self.effects, []
        return out

    def nr_free_pages(self) -> int:
        return sum(z.free_pages for z in self.zones)
