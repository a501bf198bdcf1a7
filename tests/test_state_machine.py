"""Hypothesis state machines driving the page allocator with every operation, valid and
invalid, in every context, against a spec-side model.

The test keeps its own model of what the specification says the state is: the live
alloc_pages blocks (pfn -> order), the page-cache pages, extra references and each CPU's
context stack. Every operation's outcome is predicted from that model and the machine
description alone (which error, exactly, an invalid call must raise; which zones and nodes a
block may come from; when an allocation is allowed to fail), and compared with what the
implementation did. After every step an ``@invariant`` checks every registered state invariant
(spec/invariants.py), the step properties of the last allocation, and that the
implementation's abstract state agrees with the model.

Profiles (tests/hypothesis_profiles.py): ``quick`` for ``make test``, ``verify`` for
``make verify``, ``fuzz`` for ``make fuzz``; ``HYPOTHESIS_PROFILE`` selects one.

The same machine also runs under the hypothesis-crosshair backend (``TestCrossHair*``), on a
reduced machine: see the note there for what that backend can and cannot do here.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from impl.abstraction import abstract, alloc_step, check_step
from impl.machine import MachineConfig, NodeConfig, ZoneConfig
from impl.page_alloc import OWNER_PAGECACHE, OWNER_PAGES, PageAllocator
from impl.watermarks import WMARK_HIGH
from proofs.modelcheck import liveness_witness, state_key
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
from spec.gfp import (
    __GFP_DIRECT_RECLAIM,
    __GFP_DMA,
    __GFP_DMA32,
    __GFP_HIGH,
    __GFP_HIGHMEM,
    __GFP_MEMALLOC,
    __GFP_MOVABLE,
    __GFP_NOMEMALLOC,
    __GFP_NORETRY,
    __GFP_NOWARN,
    __GFP_RECLAIMABLE,
    __GFP_RETRY_MAYFAIL,
    __GFP_THISNODE,
    __GFP_ZERO,
    GFP_MOVABLE_MASK,
    GFP_NAMES,
    GFP_VALID_MASK,
    GFP_ZONEMASK,
    ZONE_DMA,
    ZONE_DMA32,
    ZONE_NORMAL,
    gfp_is_valid,
    gfp_zone,
    gfpflags_allow_blocking,
)
from spec.invariants import violated
from spec.state import MemState, StepRecord
from tests import hypothesis_profiles
from tests.conftest import snapshot

MAX_ORDER = 4
MIN_PAGES = 4

# --- machines ------------------------------------------------------------------------------


def flat_machine(pages: int, nodes: int) -> MachineConfig:
    """``nodes`` nodes of ``pages`` pages, one Normal zone each, min 4, MAX_PAGE_ORDER 4."""
    return MachineConfig.flat(pages, nodes=nodes, max_order=MAX_ORDER, min_pages=MIN_PAGES,
                              name=f"flat{nodes}x{pages}")


def zoned_machine(pages: int) -> MachineConfig:
    """Two nodes: node 0 has DMA and DMA32 (with lowmem_reserve), node 1 a Normal zone with
    a hole and a reserved range; two CPUs on node 0, one on node 1."""
    half = pages // 2
    n0 = NodeConfig(0, (0, 1), (
        ZoneConfig(ZONE_DMA, 0, half, ((0, half),), min=MIN_PAGES,
                   lowmem_reserve=(0, 4, 8, 8)),
        ZoneConfig(ZONE_DMA32, half, half, ((half, pages),), min=MIN_PAGES,
                   lowmem_reserve=(0, 0, 4, 4)),
    ))
    s, e = pages, 2 * pages
    n1 = NodeConfig(1, (2,), (
        ZoneConfig(ZONE_NORMAL, s, pages, ((s, e - 8), (e - 6, e)), reserved=((e - 3, e - 1),),
                   min=MIN_PAGES, lowmem_reserve=(0, 0, 0, 0)),
    ))
    return MachineConfig((n0, n1), ((10, 20), (20, 10)), max_order=MAX_ORDER,
                         name=f"zoned{pages}").validate()


MACHINES = st.one_of(
    st.builds(flat_machine, st.sampled_from([64, 128, 256]), st.sampled_from([1, 2])),
    st.builds(zoned_machine, st.sampled_from([64, 128])),
)

# --- masks ---------------------------------------------------------------------------------

COMPOSITES = sorted(n for n in GFP_NAMES if n.startswith("GFP_"))
MODIFIERS = (__GFP_THISNODE, __GFP_HIGH, __GFP_NOWARN, __GFP_NORETRY, __GFP_RETRY_MAYFAIL,
             __GFP_ZERO, __GFP_MEMALLOC, __GFP_NOMEMALLOC)
# the zone/migratetype modifier combinations gfp_zone() accepts (GFP_ZONE_TABLE)
ZONE_BITS = (0, __GFP_DMA, __GFP_HIGHMEM, __GFP_DMA32, __GFP_MOVABLE, __GFP_DMA | __GFP_MOVABLE,
             __GFP_HIGHMEM | __GFP_MOVABLE, __GFP_DMA32 | __GFP_MOVABLE)


@st.composite
def composite_masks(draw: st.DrawFn) -> int:
    """A composite mask, possibly with modifiers, kept valid."""
    gfp = GFP_NAMES[draw(st.sampled_from(COMPOSITES))]
    for m in draw(st.lists(st.sampled_from(MODIFIERS), max_size=3)):
        gfp |= m
    if draw(st.booleans()):
        gfp = (gfp & ~GFP_ZONEMASK) | draw(st.sampled_from(ZONE_BITS))
    if gfp & __GFP_MOVABLE:
        gfp &= ~__GFP_RECLAIMABLE
    return gfp


@st.composite
def random_valid_masks(draw: st.DrawFn) -> int:
    """Any valid combination of the bits of this build."""
    bits = draw(st.integers(0, GFP_VALID_MASK)) & GFP_VALID_MASK & ~(GFP_ZONEMASK
                                                                       | __GFP_RECLAIMABLE)
    zone = draw(st.sampled_from(ZONE_BITS))
    if not zone & __GFP_MOVABLE and draw(st.booleans()):
        bits |= __GFP_RECLAIMABLE
    return bits | zone


INVALID_MASKS = st.one_of(
    st.sampled_from([__GFP_DMA | __GFP_DMA32, __GFP_DMA | __GFP_HIGHMEM, GFP_MOVABLE_MASK,
                     0x200, 1 << 25, GFP_NAMES["GFP_KERNEL"] | __GFP_DMA | __GFP_DMA32]),
    st.integers(0, (1 << 26) - 1).filter(lambda g: not gfp_is_valid(g)),
)
MASKS = st.one_of(composite_masks(), random_valid_masks())
# Python mangles __names inside class bodies: aliases for use in the machine
_GFP_THISNODE = __GFP_THISNODE
_GFP_DIRECT_RECLAIM = __GFP_DIRECT_RECLAIM
CONTEXTS = st.sampled_from([None, *Context])  # None: the CPU's current context
ATOMIC = [c for c in Context if c.atomic]


class PageAllocatorMachine(RuleBasedStateMachine):
    """Drives :class:`PageAllocator`; the model is what the specification predicts."""

    blocks = Bundle("blocks")  # (pfn, order) of alloc_pages blocks, possibly stale

    def __init__(self) -> None:
        super().__init__()
        self.a: PageAllocator | None = None
        self.model: dict[int, int] = {}  # live alloc_pages blocks: pfn -> order
        self.cache: set[int] = set()  # live page-cache pages
        self.refs: dict[int, int] = {}  # get_page references beyond the first
        self.ctx: dict[int, list[Context]] = {}
        self.freed: list[tuple[int, int]] = []
        self.last_step: StepRecord | None = None

    # --- helpers -----------------------------------------------------------------------------
    @property
    def alloc(self) -> PageAllocator:
        assert self.a is not None
        return self.a

    def state(self) -> MemState:
        return abstract(self.alloc)

    def current_ctx(self, cpu: int) -> Context:
        st_ = self.ctx.get(cpu, [])
        return st_[-1] if st_ else Context.PROCESS

    def expect_error(self, errors: set[type[KmemError]], call: Callable[[], object]) -> None:
        """``call`` must raise exactly one of ``errors`` and change nothing at all."""
        before = snapshot(self.alloc)
        key = state_key(self.alloc)
        try:
            call()
        except KmemError as e:
            assert type(e) in errors, f"raised {type(e).__name__} ({e}), expected {errors}"
        else:
            raise AssertionError(f"did not raise; expected one of {errors}")
        assert state_key(self.alloc) == key, "a rejected call changed the state"
        assert snapshot(self.alloc) == before, "a rejected call changed a counter"

    def sync_cache(self, added: int = 0, nid: int | None = None,
                   reclaimed: bool = False) -> None:
        """Page-cache pages only disappear (reclaim), except the ``added`` pages a
        pagecache_add on ``nid`` brought in; those may have been reclaimed again by the same
        call (its later allocations may reclaim), but only if it reclaimed at all."""
        s = self.state()
        now = {p for p, b in s.allocated.items() if b.owner == OWNER_PAGECACHE}
        new = now - self.cache
        assert len(new) <= added, f"{len(new)} new page-cache pages, at most {added} expected"
        if not reclaimed:
            assert len(new) == added, f"{len(new)} new page-cache pages, expected {added}"
        for p in new:
            b = s.allocated[p]
            assert b.order == 0
            assert p not in self.model
            if nid is not None:
                assert s.zones[b.zid].nid == nid, "page cache not on the requested node"
        gone = self.cache - now
        for p in gone:
            assert p not in self.refs, "reclaim freed a page that holds references"
        self.cache = now

    def free_error(self, pfn: int, order: int) -> type[KmemError] | None:
        """The error the spec requires for free_pages_pfn(pfn, order); None if it is valid."""
        if pfn < 0 or order < 0:
            return UnknownAddressError
        if pfn in self.model:
            if self.model[pfn] != order:
                return WrongOrderError
            if self.refs.get(pfn):
                return PageReferencedError
            return None
        if pfn in self.cache:
            return BadFreeError
        s = self.state()
        zones = [z for z in s.zones if z.start <= pfn < z.end]
        if not zones:
            return UnknownAddressError
        if not any(a <= pfn < b for a, b in zones[0].usable):
            return BadFreeError  # a hole or reserved page
        for head, o in (*self.model.items(), *((c, 0) for c in self.cache)):
            if head <= pfn < head + (1 << o):
                return UnalignedFreeError
        return DoubleFreeError

    def do_free(self, pfn: int, order: int) -> bool:
        """free_pages_pfn, checked against the spec; True if it freed the block."""
        err = self.free_error(pfn, order)
        if err is not None:
            self.expect_error({err}, lambda: self.alloc.free_pages_pfn(pfn, order))
            return False
        self.alloc.free_pages_pfn(pfn, order)
        del self.model[pfn]
        self.freed.append((pfn, order))
        self.sync_cache()
        return True

    # --- boot ----------------------------------------------------------------------------------
    @initialize(machine=MACHINES)
    def boot(self, machine: MachineConfig) -> None:
        self.a = PageAllocator(machine)
        self.ctx = {c: [] for c in self.alloc.cpu_node}
        assert violated(self.state()) == []

    # --- allocation ----------------------------------------------------------------------------
    def cpus(self, invalid: bool = True) -> st.SearchStrategy[int]:
        """CPUs of the machine; with ``invalid``, sometimes one that does not exist."""
        valid = sorted(self.alloc.cpu_node)
        return st.sampled_from(valid * 3 + ([max(valid) + 1] if invalid else []))

    def nids(self, invalid: bool = True) -> st.SearchStrategy[int]:
        """-1 (the CPU's node) or an online node; with ``invalid``, sometimes an offline one."""
        n = len(self.alloc.nodes)
        return st.sampled_from([-1, *range(n)] * 2 + ([n, -2] if invalid else []))

    @rule(target=blocks, data=st.data(), order=st.integers(-1, MAX_ORDER + 1), gfp=MASKS,
          ctx=CONTEXTS)
    def alloc_pages(self, data: st.DataObject, order: int, gfp: int,
                    ctx: Context | None) -> Any:
        """Anything: any context, sometimes a bad CPU, node or order."""
        return self.do_alloc(order, gfp, data.draw(self.nids()), data.draw(self.cpus()), ctx)

    @rule(target=blocks, data=st.data(), order=st.integers(0, MAX_ORDER), gfp=MASKS)
    def alloc_pages_process(self, data: st.DataObject, order: int, gfp: int) -> Any:
        """A valid call in process context (may sleep if the mask allows)."""
        return self.do_alloc(order, gfp, data.draw(self.nids(False)),
                             data.draw(self.cpus(False)), Context.PROCESS)

    @rule(target=blocks, data=st.data(), order=st.integers(0, MAX_ORDER), gfp=MASKS,
          ctx=st.sampled_from(ATOMIC))
    def alloc_pages_atomic(self, data: st.DataObject, order: int, gfp: int,
                           ctx: Context) -> Any:
        """A valid call in atomic context: the mask made non-blocking, as callers there do."""
        return self.do_alloc(order, gfp & ~_GFP_DIRECT_RECLAIM, data.draw(self.nids(False)),
                             data.draw(self.cpus(False)), ctx)

    @rule(target=blocks, data=st.data(), order=st.integers(0, 2), n=st.integers(2, 24),
          gfp=MASKS)
    def alloc_pages_burst(self, data: st.DataObject, order: int, n: int, gfp: int) -> Any:
        """Memory pressure: ``n`` allocations in a row in process context."""
        nid = data.draw(self.nids(False))
        cpu = data.draw(self.cpus(False))
        got = []
        for _ in range(n):
            r = self.do_alloc(order, gfp, nid, cpu, Context.PROCESS)
            if isinstance(r, tuple):
                got.append(r)
        return multiple(*got)

    def do_alloc(self, order: int, gfp: int, nid: int, cpu: int,
                 ctx: Context | None) -> Any:
        a = self.alloc
        errors: set[type[KmemError]] = set()
        if cpu not in a.cpu_node:
            errors.add(BadNodeError)
        if nid != -1 and not 0 <= nid < len(a.nodes):
            errors.add(BadNodeError)
        if order < 0:
            errors.add(GfpError)
        if errors:
            self.expect_error(errors, lambda: a.alloc_pages_node(nid, gfp, order, cpu=cpu,
                                                                 ctx=ctx))
            return multiple()
        eff = ctx if ctx is not None else self.current_ctx(cpu)
        blocking = bool(gfpflags_allow_blocking(gfp))
        if order <= a.max_order and eff.atomic and blocking:
            self.expect_error({SleepInAtomicError},
                              lambda: a.alloc_pages_node(nid, gfp, order, cpu=cpu, ctx=ctx))
            return multiple()
        before = self.state()
        pfn, rec = alloc_step(a, nid, gfp, order, cpu=cpu, ctx=ctx)
        self.last_step = rec
        assert check_step(rec) == [], f"step properties broken: {check_step(rec)}"
        if rec.slept:
            assert not eff.atomic and blocking
            event("alloc_pages slept (direct reclaim)")
        s = self.state()
        if pfn is None:
            self.sync_cache()
            assert {p: b.order for p, b in s.allocated.items() if b.owner == OWNER_PAGES} \
                == self.model
            if order > a.max_order:
                return multiple()
            if not eff.atomic and blocking:
                w = liveness_witness(a, s, nid, gfp, order, cpu)
                assert w is None, f"liveness: allocation failed although {w}"
                event("blocking alloc_pages failed (liveness checked)")
            else:
                event("non-blocking alloc_pages failed")
            return multiple()
        assert order <= a.max_order, "an order above MAX_PAGE_ORDER must fail"
        # never memory that was live before the call (page cache reclaimed by it excepted)
        end = pfn + (1 << order)
        for p, o in self.model.items():
            assert end <= p or p + (1 << o) <= pfn, f"{pfn:#x} overlaps live block {p:#x}"
        for p in self.cache:
            assert not pfn <= p < end or p not in s.allocated or s.allocated[p].owner \
                != OWNER_PAGECACHE, f"{pfn:#x} overlaps page-cache page {p:#x}"
        assert pfn % (1 << order) == 0, "unaligned block"
        b = s.allocated[pfn]
        assert b.order == order and b.owner == OWNER_PAGES
        zone = s.zones[b.zid]
        assert any(lo <= pfn and end <= hi for lo, hi in zone.usable), "block leaves its zone"
        assert zone.zone <= gfp_zone(gfp), "zone not allowed by the mask"
        if gfp & _GFP_THISNODE:
            want = a.cpu_node[cpu] if nid == -1 else nid
            assert zone.nid == want, "__GFP_THISNODE block on another node"
        assert pfn not in before.allocated or before.allocated[pfn].owner == OWNER_PAGECACHE
        self.model[pfn] = order
        self.sync_cache()
        event("alloc_pages succeeded")
        if zone.nid != (a.cpu_node[cpu] if nid == -1 else nid):
            event("alloc_pages fell back to a remote node")
        return (pfn, order)

    @rule(gfp=INVALID_MASKS, order=st.integers(0, MAX_ORDER), ctx=CONTEXTS)
    def alloc_invalid_mask(self, gfp: int, order: int, ctx: Context | None) -> None:
        self.expect_error({GfpError},
                          lambda: self.alloc.alloc_pages_node(-1, gfp, order, ctx=ctx))

    # --- freeing -------------------------------------------------------------------------------
    @rule(target=blocks, block=consumes(blocks))
    def free(self, block: tuple[int, int]) -> Any:
        pfn, order = block
        if self.do_free(pfn, order):
            return multiple()
        # still live (referenced) or stale: keep it around for more (invalid) frees
        return block

    @rule(block=blocks, delta=st.sampled_from([-1, 1, 2]))
    def free_wrong_order(self, block: tuple[int, int], delta: int) -> None:
        pfn, order = block
        if order + delta >= 0:
            self.do_free(pfn, order + delta)

    @rule(block=blocks, offset=st.integers(1, (1 << MAX_ORDER) - 1))
    def free_inside_block(self, block: tuple[int, int], offset: int) -> None:
        pfn, order = block
        self.do_free(pfn + offset, max(order - 1, 0))

    @precondition(lambda self: bool(self.freed))
    @rule(data=st.data())
    def free_again(self, data: st.DataObject) -> None:
        """A stale handle: a block freed earlier (double free, unless it was reused)."""
        pfn, order = data.draw(st.sampled_from(self.freed))
        self.do_free(pfn, order)

    @rule(pfn=st.integers(-2, 600), order=st.integers(-1, MAX_ORDER + 1))
    def free_any_pfn(self, pfn: int, order: int) -> None:
        self.do_free(pfn, order)

    @rule(block=blocks, offset=st.sampled_from([0, 1, 8, 2048, 4095]))
    def free_pages_address(self, block: tuple[int, int], offset: int) -> None:
        pfn, order = block
        addr = self.alloc.pfn_to_virt(pfn) + offset
        if offset:
            self.expect_error({UnalignedFreeError},
                              lambda: self.alloc.free_pages(addr, order))
            return
        err = self.free_error(pfn, order)
        if err is not None:
            self.expect_error({err}, lambda: self.alloc.free_pages(addr, order))
            return
        self.alloc.free_pages(addr, order)
        del self.model[pfn]
        self.freed.append((pfn, order))

    @rule(addr=st.sampled_from([0, 1, 4096, 0xFFFF000000000000, 0xFFFFC90000000000]),
          order=st.integers(0, MAX_ORDER))
    def free_pages_bad_address(self, addr: int, order: int) -> None:
        if addr == 0:  # free_pages(0, order) does nothing
            before = snapshot(self.alloc)
            self.alloc.free_pages(0, order)
            assert snapshot(self.alloc) == before
            return
        self.expect_error({UnknownAddressError}, lambda: self.alloc.free_pages(addr, order))

    # --- references ----------------------------------------------------------------------------
    @rule(block=blocks)
    def get_page(self, block: tuple[int, int]) -> None:
        pfn = block[0]
        if pfn in self.model or pfn in self.cache:
            self.alloc.get_page(pfn)
            self.refs[pfn] = self.refs.get(pfn, 0) + 1
        else:
            self.expect_error({BadFreeError}, lambda: self.alloc.get_page(pfn))

    @precondition(lambda self: bool(self.cache))
    @rule(data=st.data())
    def get_page_cache(self, data: st.DataObject) -> None:
        pfn = data.draw(st.sampled_from(sorted(self.cache)))
        self.alloc.get_page(pfn)
        self.refs[pfn] = self.refs.get(pfn, 0) + 1

    @rule(data=st.data())
    def put_page(self, data: st.DataObject) -> None:
        pfn = data.draw(st.sampled_from(sorted(self.refs)) if self.refs else
                        st.integers(0, 600))
        if self.refs.get(pfn):
            self.alloc.put_page(pfn)
            self.refs[pfn] -= 1
            if not self.refs[pfn]:
                del self.refs[pfn]
        else:
            self.expect_error({BadFreeError}, lambda: self.alloc.put_page(pfn))

    # --- contexts ------------------------------------------------------------------------------
    @rule(ctx=st.sampled_from(list(Context)), data=st.data())
    def enter(self, ctx: Context, data: st.DataObject) -> None:
        cpu = data.draw(self.cpus())
        if cpu not in self.ctx:
            self.expect_error({BadNodeError}, lambda: self.alloc.enter(ctx, cpu))
        elif ctx is Context.PROCESS:
            self.expect_error({ContextError}, lambda: self.alloc.enter(ctx, cpu))
        else:
            self.alloc.enter(ctx, cpu)
            self.ctx[cpu].append(ctx)

    @rule(ctx=st.sampled_from(list(Context)), data=st.data())
    def exit(self, ctx: Context, data: st.DataObject) -> None:
        cpu = data.draw(self.cpus())
        if cpu not in self.ctx:
            self.expect_error({BadNodeError}, lambda: self.alloc.exit(ctx, cpu))
        elif not self.ctx[cpu] or self.ctx[cpu][-1] is not ctx:
            self.expect_error({ContextError}, lambda: self.alloc.exit(ctx, cpu))
        else:
            self.alloc.exit(ctx, cpu)
            self.ctx[cpu].pop()

    @precondition(lambda self: any(self.ctx.values()))
    @rule()
    def exit_innermost(self) -> None:
        cpu = next(c for c, s in self.ctx.items() if s)
        self.alloc.exit(self.ctx[cpu][-1], cpu)
        self.ctx[cpu].pop()

    # --- page cache and reclaim ------------------------------------------------------------------
    @rule(n=st.integers(1, 40), data=st.data())
    def pagecache_add(self, n: int, data: st.DataObject) -> None:
        a = self.alloc
        nid = data.draw(self.nids())
        cpu = data.draw(self.cpus())
        if not 0 <= nid < len(a.nodes) or cpu not in a.cpu_node:
            self.expect_error({BadNodeError}, lambda: a.pagecache_add(nid, n, cpu=cpu))
            return
        if self.current_ctx(cpu).atomic:
            self.expect_error({SleepInAtomicError}, lambda: a.pagecache_add(nid, n, cpu=cpu))
            return
        n_effects = len(a.effects)
        added = a.pagecache_add(nid, n, cpu=cpu)
        assert 0 <= added <= n
        # direct reclaim, or the kswapd that runs while the reader sleeps, may take back pages
        # this very call added
        reclaimed = any(e.kind in ("reclaim", "kswapd_run") for e in a.effects[n_effects:])
        self.sync_cache(added, nid, reclaimed)

    @rule()
    def drop_caches(self) -> None:
        referenced = {p for p in self.cache if self.refs.get(p)}
        n = self.alloc.drop_caches()
        assert n == len(self.cache) - len(referenced)
        self.sync_cache()
        assert self.cache == referenced, "drop_caches left unreferenced page cache behind"

    @rule(data=st.data())
    def kswapd(self, data: st.DataObject) -> None:
        a = self.alloc
        nid = data.draw(self.nids())
        if not 0 <= nid < len(a.nodes):
            self.expect_error({BadNodeError}, lambda: a.kswapd(nid))
            return
        before = len(self.cache)
        n = a.kswapd(nid)
        self.sync_cache()
        assert n == before - len(self.cache)
        for z in a.nodes[nid].zones:
            assert z.boost == 0, "kswapd leaves watermark boost behind"
        s = self.state()
        left = [p for p in self.cache if p not in self.refs
                and s.zones[s.allocated[p].zid].nid == nid]
        if left:  # it stopped early: the node must be balanced (pgdat_balanced)
            top = max(z.idx for z in a.nodes[nid].zones if z.managed)
            assert any(z.free_pages > z.wmark[WMARK_HIGH] + z.lowmem_reserve[top]
                       for z in a.nodes[nid].zones if z.managed)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def touch(self, data: st.DataObject) -> None:
        a = self.alloc
        cpu = data.draw(self.cpus())
        pfn = data.draw(st.sampled_from(sorted(self.model)))
        if cpu not in a.cpu_node:
            self.expect_error({BadNodeError}, lambda: a.touch(pfn, cpu))
            return
        node = self.state().zones[self.state().allocated[pfn].zid].nid
        assert a.touch(pfn, cpu) == a.distance[a.cpu_node[cpu]][node]

    # --- after every step ------------------------------------------------------------------------
    @invariant()
    def spec_holds(self) -> None:
        if self.a is None:
            return
        s = self.state()
        assert violated(s, fast=True) == [], violated(s, fast=True)
        live = {p: b.order for p, b in s.allocated.items() if b.owner == OWNER_PAGES}
        assert live == self.model, "implementation and model disagree on live blocks"
        cache = {p for p, b in s.allocated.items() if b.owner == OWNER_PAGECACHE}
        assert cache == self.cache
        assert self.alloc.refs == self.refs
        assert {c: list(x) for c, x in self.alloc.ctx.items()} == self.ctx
        for pfn in self.model:
            assert self.alloc.page_count(pfn) == 1 + self.refs.get(pfn, 0)
        if self.last_step is not None:
            assert check_step(self.last_step) == []

    def teardown(self) -> None:
        if self.a is not None:  # the per-pfn definitions too, once per program
            assert violated(self.state()) == []


def test_boosted_watermark_keeps_liveness() -> None:
    """Regression (found by this state machine): after a pageblock claim boosts the
    watermark, a blocking allocation must still succeed while min + lowmem_reserve can be
    kept, because the kswapd it woke clears the boost while it sleeps in direct reclaim."""
    a = PageAllocator(flat_machine(64, 1))
    for _ in range(7):
        assert a.alloc_pages_node(0, GFP_NAMES["GFP_HIGHUSER_MOVABLE"], 3) is not None
    assert a.alloc_pages_node(0, GFP_NAMES["GFP_KERNEL"], 0) is not None
    assert a.zones[0].boost > 0
    pfn = a.alloc_pages_node(0, GFP_NAMES["GFP_KERNEL"], 0)
    assert pfn is not None
    kinds = [e.kind for e in a.drain_effects()]
    assert "sleep" in kinds and "kswapd_run" in kinds
    assert a.zones[0].boost == 0


def _with_profile(machine: type[RuleBasedStateMachine]) -> Any:
    machine = hypothesis_profiles.seeded(machine)
    case = machine.TestCase
    case.settings = hypothesis_profiles.active()
    return case


TestPageAllocator = _with_profile(PageAllocatorMachine)


# --- hypothesis-crosshair ------------------------------------------------------------------
#
# The crosshair backend (hypothesis-crosshair) replaces Hypothesis's random choices with
# symbolic values that CrossHair/Z3 solve for, path by path. Driving the real allocator with
# it works; what we found by trying:
#
# * rule arguments arrive as symbolic ints (SymbolicBoundedInt) and stay symbolic through the
#   spec-side predictions, but the allocator concretizes them as soon as it uses one as a
#   dict key, list index or shift count (free lists, pageblock flags), so the search is over
#   which rules run with which argument classes, not over symbolic memory states;
# * after about five symbolic programs the provider hands over to Hypothesis's own concrete
#   generation, so budgets beyond ~8 examples add little (3 in quick, 8 in verify);
# * CrossHair prints "Not Deterministic" debug reports that come from Hypothesis's stateful
#   machinery itself (featureflags.py, the swarm-testing rule switches), not from our code;
#   they are noise, the run still checks every step;
# * the per-pfn invariant definitions are too slow to run symbolically at teardown, and a
#   big machine multiplies path length: the reduced machine below (one node, 32 pages,
#   MAX_PAGE_ORDER 3) with 8 steps per program, and block-level invariants at teardown.


class ReducedMachine(PageAllocatorMachine):
    """The same rules on one small flat machine, for the crosshair backend."""

    @initialize(machine=st.just(MachineConfig.flat(32, nodes=1, max_order=3, min_pages=2)))
    def boot(self, machine: MachineConfig) -> None:
        super().boot(machine)

    def teardown(self) -> None:
        if self.a is not None:
            assert violated(self.state(), fast=True) == []


def _crosshair_available() -> bool:
    return importlib.util.find_spec("hypothesis_crosshair_provider") is not None


@pytest.mark.skipif(not _crosshair_available(), reason="hypothesis-crosshair not installed")
def test_state_machine_under_crosshair() -> None:
    """The reduced machine driven by the crosshair backend: 3 programs in the quick profile,
    8 in verify (KMEMSPEC_CROSSHAIR_EXAMPLES overrides)."""
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(ReducedMachine, settings=settings(
        backend="crosshair", max_examples=hypothesis_profiles.crosshair_examples(),
        stateful_step_count=8, deadline=None, database=None,
        suppress_health_check=list(HealthCheck)))
