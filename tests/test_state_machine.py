"""Hypothesis state machines driving the page allocator with every operation, valid and
invalid, in every context, against a spec-side model.

The test keeps its own model of what the specification says the state is: the live
alloc_pages blocks (pfn -> order), the page-cache pages, extra references and each CPU's
context stack. Every operation's outcome is predicted from that model and the machine
description alone (which error, exactly, an invalid call must raise; which zones and nodes a
block may come from; when an allocation is allowed to fail), and compared with what the
implementation did. Every allocation call is checked against every step property
(spec/invariants.py, spec/rules.py: sleeping, reserves, zone and node, liveness of blocking
calls, no premature failure of non-blocking ones, reclaim scope, NUMA statistics, the kswapd
runs it waited for), every kswapd run against the kswapd rules. After every step an
``@invariant`` checks every registered state invariant (NR_FREE_PAGES and nr_free against the
free blocks included), that the implementation's abstract state agrees with the model, and the
NUMA counters against what zone_statistics() says the calls so far must have counted.

Machines: flat and zoned ones as before, plus machines whose zones and nodes meet at pfns that
are not MAX_PAGE_ORDER aligned (a cross-zone merge is possible only there) with min 8 and
watermark_scale_factor 1000, so min, low and high are several pages apart.

``KMEMSPEC_SEEDED_BUG=<name>`` runs the machine on a seeded bug of proofs/seeded_bugs.py. A
failure prints ``kmemspec-rule: <rule>`` at the start of a line, one line of evidence and the
example, as far as Hypothesis shrank it within the profile's bound (tests/hypothesis_profiles.py
bounded_shrinking); ``make verify``'s seeded rows read that line.

Profiles (tests/hypothesis_profiles.py): ``quick`` for ``make test``, ``verify`` for
``make verify``, ``fuzz`` for ``make fuzz``; ``HYPOTHESIS_PROFILE`` selects one.

The same machine also runs under the hypothesis-crosshair backend (``TestCrossHair*``), on a
reduced machine: see the note there for what that backend can and cannot do here.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any, NoReturn

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

from impl.abstraction import abstract, alloc_step, check_step, kswapd_run
from impl.machine import MachineConfig, NodeConfig, ZoneConfig
from impl.page_alloc import OWNER_PAGECACHE, OWNER_PAGES, PageAllocator
from proofs.modelcheck import state_key
from proofs.seeded_bugs import SEEDED_BUGS
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
from spec.rules import expected_numa, explain_kswapd, explain_step, kswapd_violations
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


WIDE_MIN = 8  # min watermark of the machines with well separated watermarks
WIDE_SCALE = 1000  # vm.watermark_scale_factor there: low/high gaps of 4..9 pages


def unaligned_zones_machine(dma: int) -> MachineConfig:
    """Zones and nodes that meet at pfns that are not MAX_PAGE_ORDER aligned, as on real
    machines and in a protocol ``hello`` (MachineConfig.unaligned): node 0 has DMA [0, dma)
    and DMA32 [dma, dma + 64), node 1 a Normal zone of 96 pages right after it. min 8
    everywhere, watermark_scale_factor 1000, so min, low and high are several pages apart
    (DMA 8/12/16 for dma = 40)."""
    return MachineConfig.unaligned((dma, 64, 96), max_order=MAX_ORDER, min_pages=WIDE_MIN,
                                   watermark_scale_factor=WIDE_SCALE,
                                   name=f"unaligned-zones{dma}")


def unaligned_nodes_machine(pages: int) -> MachineConfig:
    """Two flat nodes of ``pages`` pages (not a multiple of 2^MAX_PAGE_ORDER, so node 1 starts
    at an unaligned pfn), min 8, watermark_scale_factor 1000."""
    return MachineConfig.flat(pages, nodes=2, max_order=MAX_ORDER, min_pages=WIDE_MIN,
                              watermark_scale_factor=WIDE_SCALE,
                              name=f"unaligned-nodes2x{pages}")


MACHINES = st.one_of(
    st.builds(flat_machine, st.sampled_from([64, 128, 256]), st.sampled_from([1, 2])),
    st.builds(zoned_machine, st.sampled_from([64, 128])),
    st.builds(unaligned_zones_machine, st.sampled_from([40, 56])),
    st.builds(unaligned_nodes_machine, st.sampled_from([40, 72])),
)

# --- failures name the rule they broke -------------------------------------------------------

SEEDED_BUG_ENV = "KMEMSPEC_SEEDED_BUG"
RULE_PREFIX = "kmemspec-rule:"


def allocator_class() -> type[PageAllocator]:
    """The allocator under test: PageAllocator, or the seeded bug named by
    ``KMEMSPEC_SEEDED_BUG`` (proofs/seeded_bugs.py), which this state machine must catch."""
    name = os.environ.get(SEEDED_BUG_ENV, "")
    if not name:
        return PageAllocator
    if name not in SEEDED_BUGS:
        raise ValueError(f"{SEEDED_BUG_ENV}={name!r}: not one of {', '.join(SEEDED_BUGS)}")
    return SEEDED_BUGS[name].cls


class RuleBroken(AssertionError):  # noqa: N818 - a finding, not an error
    """A check of the state machine failed; ``rule`` names what broke (a spec invariant or
    step property, or a rule of the machine's own model such as ``model.live_blocks``)."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{RULE_PREFIX} {rule}: {detail}")
        self.rule = rule


def broken(rule: str, detail: str = "") -> NoReturn:
    raise RuleBroken(rule, detail)


def require(cond: object, rule: str, detail: str = "") -> None:
    """Fail with RuleBroken(rule) unless ``cond``."""
    if not cond:
        broken(rule, detail)


def require_none_broken(names: list[str], detail: str = "") -> None:
    """Fail naming the first of the broken spec rules ``names``, listing all of them."""
    if names:
        broken(names[0], f"{', '.join(names)} broken. {detail}")

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
GFP_NOWAIT = GFP_NAMES["GFP_NOWAIT"]
ATOMIC_MASKS = [GFP_NAMES["GFP_ATOMIC"], GFP_NOWAIT, GFP_NAMES["GFP_ATOMIC"] | __GFP_NOMEMALLOC,
                GFP_NAMES["GFP_ATOMIC"] | __GFP_THISNODE, GFP_NAMES["GFP_ATOMIC"] | __GFP_DMA32]
BLOCKING_MASKS = [*(GFP_NAMES[n] for n in ("GFP_KERNEL", "GFP_USER", "GFP_HIGHUSER_MOVABLE",
                                           "GFP_NOIO")),
                  GFP_NAMES["GFP_KERNEL"] | __GFP_DMA32, GFP_NAMES["GFP_KERNEL"] | __GFP_DMA]
# Python mangles __names inside class bodies: aliases for use in the machine
_GFP_THISNODE = __GFP_THISNODE
_GFP_DIRECT_RECLAIM = __GFP_DIRECT_RECLAIM
CONTEXTS = st.sampled_from([None, *Context])  # None: the CPU's current context
ATOMIC = [c for c in Context if c.atomic]


_BOOT_VIOLATIONS: dict[tuple[type[PageAllocator], MachineConfig], list[str]] = {}


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
        # what the spec says every zone's (numa_hit, miss, foreign, local, other) must be
        self.numa: dict[int, tuple[int, int, int, int, int]] = {}

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
        want = "/".join(sorted(e.__name__ for e in errors))
        try:
            call()
        except KmemError as e:
            require(type(e) in errors, f"error.{want}", f"raised {type(e).__name__} ({e})")
        else:
            broken(f"error.{want}", "the call did not raise")
        require(state_key(self.alloc) == key, "error.state_unchanged",
                "a rejected call changed the state")
        require(snapshot(self.alloc) == before, "error.state_unchanged",
                "a rejected call changed a counter")

    def sync_cache(self, added: int = 0, nid: int | None = None,
                   reclaimed: bool = False, state: MemState | None = None) -> None:
        """Page-cache pages only disappear (reclaim), except the ``added`` pages a
        pagecache_add on ``nid`` brought in; those may have been reclaimed again by the same
        call (its later allocations may reclaim), but only if it reclaimed at all."""
        s = state if state is not None else self.state()
        now = {p for p, b in s.allocated.items() if b.owner == OWNER_PAGECACHE}
        new = now - self.cache
        require(len(new) <= added, "model.page_cache",
                f"{len(new)} new page-cache pages, at most {added} expected")
        if not reclaimed:
            require(len(new) == added, "model.page_cache",
                    f"{len(new)} new page-cache pages, expected {added}")
        for p in new:
            b = s.allocated[p]
            require(b.order == 0 and p not in self.model, "model.page_cache",
                    f"new page-cache block {p:#x} of order {b.order}")
            if nid is not None:
                require(s.zones[b.zid].nid == nid, "range.zone_and_node",
                        "page cache not on the requested node")
        gone = self.cache - now
        for p in gone:
            require(p not in self.refs, "reclaim.referenced",
                    f"reclaim freed page {p:#x}, which holds references")
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
        cls = allocator_class()
        self.a = cls(machine)
        self.ctx = {c: [] for c in self.alloc.cpu_node}
        self.numa = {z.zid: (0, 0, 0, 0, 0) for z in self.alloc.zones}
        # boot is deterministic: the per-pfn definitions run once per (allocator, machine)
        key = (cls, machine)
        if key not in _BOOT_VIOLATIONS:
            _BOOT_VIOLATIONS[key] = violated(self.state())
        require_none_broken(_BOOT_VIOLATIONS[key], "right after boot")

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

    @rule(target=blocks, data=st.data(), order=st.integers(0, 2), n=st.integers(2, 24),
          gfp=st.sampled_from(ATOMIC_MASKS), ctx=st.sampled_from(ATOMIC))
    def alloc_pages_atomic_burst(self, data: st.DataObject, order: int, n: int, gfp: int,
                                 ctx: Context) -> Any:
        """Interrupt-time pressure: ``n`` non-blocking allocations in a row, down into the
        reserves each mask may use (and not one page further, nor one page less)."""
        nid = data.draw(self.nids(False))
        cpu = data.draw(self.cpus(False))
        got = []
        for _ in range(n):
            r = self.do_alloc(order, gfp, nid, cpu, ctx)
            if isinstance(r, tuple):
                got.append(r)
        return multiple(*got)

    @rule(target=blocks, data=st.data(), order=st.integers(0, 2), n=st.integers(4, 32),
          gfp=st.sampled_from(BLOCKING_MASKS))
    def alloc_pages_thisnode_burst(self, data: st.DataObject, order: int, n: int,
                                   gfp: int) -> Any:
        """Node pressure: ``n`` blocking __GFP_THISNODE allocations on one node, so direct
        reclaim runs while other nodes may hold page cache it must not touch."""
        nid = data.draw(st.sampled_from(range(len(self.alloc.nodes))))
        cpu = data.draw(self.cpus(False))
        got = []
        for _ in range(n):
            r = self.do_alloc(order, gfp | _GFP_THISNODE, nid, cpu, Context.PROCESS)
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
        before = {p: r[2] for p, r in a.allocated.items()}  # pfn -> owner
        pfn, rec = alloc_step(a, nid, gfp, order, cpu=cpu, ctx=ctx)
        self.last_step = rec
        # every step property: sleeping, reserves, zone and node, liveness (blocking) and no
        # premature failure (non-blocking), reclaim scope, NUMA statistics, kswapd balance
        bad = check_step(rec)
        require_none_broken(bad, explain_step(rec, bad[0]) if bad else "")
        self.count_numa(rec)
        if rec.slept:
            require(not eff.atomic and blocking, "context.atomic_never_sleeps")
            event("alloc_pages slept (direct reclaim)")
        if rec.reclaimed:
            event("direct reclaim freed page cache")
        s = self.state()
        if pfn is None:
            self.sync_cache(state=s)
            require({p: b.order for p, b in s.allocated.items() if b.owner == OWNER_PAGES}
                    == self.model, "frame.failed_alloc", "a failed allocation changed blocks")
            if order > a.max_order:
                return multiple()
            if not eff.atomic and blocking:
                event("blocking alloc_pages failed (liveness checked)")
            else:
                event("non-blocking alloc_pages failed (no premature failure checked)")
            return multiple()
        require(order <= a.max_order, "protocol.order_above_max",
                "an order above MAX_PAGE_ORDER must fail")
        # never memory that was live before the call (page cache reclaimed by it excepted)
        end = pfn + (1 << order)
        for p, o in self.model.items():
            require(end <= p or p + (1 << o) <= pfn, "overlap.live",
                    f"{pfn:#x} overlaps live block {p:#x}")
        for p in self.cache:
            require(not pfn <= p < end or p not in s.allocated
                    or s.allocated[p].owner != OWNER_PAGECACHE, "overlap.live",
                    f"{pfn:#x} overlaps page-cache page {p:#x}")
        require(pfn % (1 << order) == 0, "buddy.alignment", f"unaligned block {pfn:#x}")
        b = s.allocated[pfn]
        require(b.order == order and b.owner == OWNER_PAGES, "frame.alloc",
                f"block {pfn:#x} recorded as {b}")
        zone = s.zones[b.zid]
        require(any(lo <= pfn and end <= hi for lo, hi in zone.usable), "buddy.contiguity",
                f"block {pfn:#x} of order {order} leaves its zone")
        require(zone.zone <= gfp_zone(gfp), "range.zone_and_node", "zone not allowed by the mask")
        if gfp & _GFP_THISNODE:
            want = a.cpu_node[cpu] if nid == -1 else nid
            require(zone.nid == want, "range.zone_and_node",
                    f"__GFP_THISNODE block on node {zone.nid}, not {want}")
        require(before.get(pfn, OWNER_PAGECACHE) == OWNER_PAGECACHE,
                "overlap.live", f"{pfn:#x} was live before the call")
        self.model[pfn] = order
        self.sync_cache(state=s)
        event("alloc_pages succeeded")
        if zone.nid != (a.cpu_node[cpu] if nid == -1 else nid):
            event("alloc_pages fell back to a remote node")
        return (pfn, order)

    def count_numa(self, rec: StepRecord) -> None:
        """Add what zone_statistics() must have counted for ``rec`` to the model's counters."""
        for zid, (dh, dm, df, dl, do) in expected_numa(rec).items():
            h, m, f, lo, o = self.numa[zid]
            self.numa[zid] = (h + dh, m + dm, f + df, lo + dl, o + do)

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
            require(snapshot(self.alloc) == before, "error.state_unchanged",
                    "free_pages(0, order) changed the state")
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
        self.do_pagecache_add(nid, n, cpu)

    def do_pagecache_add(self, nid: int, n: int, cpu: int) -> None:
        """pagecache_add(nid, n) from ``cpu`` (valid, process context), checked."""
        a = self.alloc
        n_effects = len(a.effects)
        numa = {z.zid: (z.numa_hit, z.numa_miss, z.numa_foreign, z.numa_local, z.numa_other)
                for z in a.zones}
        added = a.pagecache_add(nid, n, cpu=cpu)
        require(0 <= added <= n, "model.page_cache", f"pagecache_add added {added} of {n}")
        # direct reclaim, or the kswapd that runs while the reader sleeps, may take back pages
        # this very call added
        reclaimed = any(e.kind in ("reclaim", "kswapd_run") for e in a.effects[n_effects:])
        self.sync_cache(added, nid, reclaimed)
        # __GFP_THISNODE reads: every page is a hit on node nid, local iff cpu is on nid
        delta = [sum(getattr(z, f"numa_{k}") - numa[z.zid][i] for z in a.zones)
                 for i, k in enumerate(("hit", "miss", "foreign", "local", "other"))]
        local = a.cpu_node[cpu] == nid
        require(delta == [added, 0, 0, added if local else 0, 0 if local else added]
                and all(z.numa_hit == numa[z.zid][0] for z in a.zones if z.nid != nid),
                "numa.zone_statistics", f"pagecache_add of {added} pages on node {nid} from "
                f"cpu {cpu} changed the NUMA counters by {delta}")
        self.numa = {z.zid: (z.numa_hit, z.numa_miss, z.numa_foreign, z.numa_local,
                             z.numa_other) for z in a.zones}

    @rule()
    def drop_caches(self) -> None:
        referenced = {p for p in self.cache if self.refs.get(p)}
        n = self.alloc.drop_caches()
        require(n == len(self.cache) - len(referenced), "model.page_cache",
                f"drop_caches freed {n} pages")
        self.sync_cache()
        require(self.cache == referenced, "model.page_cache",
                "drop_caches left unreferenced page cache behind")

    @rule(data=st.data())
    def kswapd(self, data: st.DataObject) -> None:
        nid = data.draw(self.nids())
        if not 0 <= nid < len(self.alloc.nodes):
            self.expect_error({BadNodeError}, lambda: self.alloc.kswapd(nid))
            return
        self.run_kswapd(nid)

    @rule(target=blocks, data=st.data(), n=st.integers(1, 24))
    def kswapd_in_the_gap(self, data: st.DataObject, n: int) -> Any:
        """Page cache on a node (``n`` pages read if it has none), non-blocking allocations
        bring its highest zone between its low and high watermarks, then its kswapd runs: the
        window in which balancing to the wrong watermark shows (from below low, one
        SWAP_CLUSTER_MAX round overshoots both)."""
        a = self.alloc
        nid = data.draw(st.sampled_from(range(len(a.nodes))))
        cpu = data.draw(self.cpus(False))
        if self.current_ctx(cpu).atomic:
            return multiple()
        if not any(a.zones[a.allocated[p][1]].nid == nid for p in self.cache):
            self.do_pagecache_add(nid, n, cpu)
        z = max((z for z in a.nodes[nid].zones if z.managed), key=lambda z: z.idx)
        target = (z.wmark[1] + z.wmark[2]) // 2
        got = []
        for _ in range(z.managed):
            if z.free_pages <= target:
                break
            r = self.do_alloc(0, GFP_NOWAIT | _GFP_THISNODE, nid, cpu, Context.PROCESS)
            if not isinstance(r, tuple):
                break
            got.append(r)
        if z.wmark[1] < z.free_pages <= z.wmark[2] and any(
                a.zones[a.allocated[p][1]].nid == nid for p in self.cache):
            event("kswapd ran with its node in the low-high gap and page cache on it")
        self.run_kswapd(nid)
        return multiple(*got)

    def run_kswapd(self, nid: int) -> None:
        """kswapd(nid), checked: the kswapd rules of spec/rules.py, the page cache it freed,
        the boosts it cleared."""
        a = self.alloc
        before = len(self.cache)
        n, krec = kswapd_run(a, nid)
        require_none_broken(kswapd_violations(krec), explain_kswapd(krec))
        self.sync_cache()
        require(n == before - len(self.cache), "model.page_cache",
                f"kswapd reports {n} pages reclaimed, {before - len(self.cache)} were")
        for z in a.nodes[nid].zones:
            require(z.boost == 0, "kswapd.boost_cleared", "kswapd leaves watermark boost behind")

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
        require(a.touch(pfn, cpu) == a.distance[a.cpu_node[cpu]][node], "numa.distance",
                "touch() charged the wrong distance")

    # --- after every step ------------------------------------------------------------------------
    @invariant()
    def spec_holds(self) -> None:
        if self.a is None:
            return
        s = self.state()
        # every invariant, NR_FREE_PAGES and nr_free against the free blocks included
        require_none_broken(violated(s, fast=True), "after the last step")
        live = {p: b.order for p, b in s.allocated.items() if b.owner == OWNER_PAGES}
        require(live == self.model, "model.live_blocks",
                "implementation and model disagree on live blocks")
        cache = {p for p, b in s.allocated.items() if b.owner == OWNER_PAGECACHE}
        require(cache == self.cache, "model.page_cache", "page cache differs from the model")
        require(self.alloc.refs == self.refs, "model.refs", "references differ from the model")
        require({c: list(x) for c, x in self.alloc.ctx.items()} == self.ctx, "model.contexts",
                "context stacks differ from the model")
        for pfn in self.model:
            require(self.alloc.page_count(pfn) == 1 + self.refs.get(pfn, 0), "model.refs",
                    f"page_count({pfn:#x})")
        numa = {z.zid: (z.numa_hit, z.numa_miss, z.numa_foreign, z.numa_local, z.numa_other)
                for z in self.alloc.zones}
        require(numa == self.numa, "numa.zone_statistics",
                f"NUMA counters {numa}, the model says {self.numa}")
        if self.last_step is not None:
            require_none_broken(check_step(self.last_step))

    def teardown(self) -> None:
        if self.a is not None:  # the per-pfn definitions too, once per program
            require_none_broken(violated(self.state()), "at the end of the program")


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


def run_reporting_rule(machine: type[RuleBasedStateMachine], config: settings) -> None:
    """Run ``machine`` with ``config`` (shrinking bounded by the profile); on a failure print
    a line ``kmemspec-rule: <rule>`` and the example as far as Hypothesis shrank it, and
    raise RuleBroken, so a ``make verify`` row can say which rule broke."""
    from hypothesis.stateful import run_state_machine_as_test

    try:
        with hypothesis_profiles.bounded_shrinking():
            run_state_machine_as_test(hypothesis_profiles.seeded(machine), settings=config)
    except Exception as e:
        rule = e.rule if isinstance(e, RuleBroken) else f"statemachine.{type(e).__name__}"
        detail = str(e).removeprefix(f"{RULE_PREFIX} {rule}: ").splitlines()[0:1]
        print(f"{RULE_PREFIX} {rule}")
        print(f"  {detail[0] if detail else type(e).__name__}"[:2000])
        print(f"  (the example below is shrunk for at most {hypothesis_profiles.shrink_seconds():g}"
              " s; a Hypothesis warning about five minutes of shrinking means that bound)")
        for note in getattr(e, "__notes__", []):
            print(note)
        if isinstance(e, RuleBroken):
            raise
        raise RuleBroken(rule, str(e)) from e


def test_a_failure_names_its_rule_and_shows_the_example(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """With a seeded bug the run fails with RuleBroken, prints ``kmemspec-rule: <rule>`` at
    the start of a line and the example, within the shrinking bound (3 s here), and leaves
    Hypothesis's own shrinking limit as it was."""
    from hypothesis.internal.conjecture import engine

    monkeypatch.setenv(SEEDED_BUG_ENV, "cross-zone-merge")
    monkeypatch.setenv("KMEMSPEC_SHRINK_SECONDS", "3")
    limit = engine.MAX_SHRINKING_SECONDS
    config = settings(hypothesis_profiles.active(), max_examples=100)
    with pytest.raises(RuleBroken) as info:
        run_reporting_rule(PageAllocatorMachine, config)
    assert info.value.rule == "buddy.contiguity"
    out = capsys.readouterr().out
    assert f"\n{RULE_PREFIX} buddy.contiguity\n" in f"\n{out}"
    assert "state.boot(machine=" in out
    assert limit == engine.MAX_SHRINKING_SECONDS


def test_page_allocator_state_machine() -> None:
    """The state machine on every machine of MACHINES, with the selected profile; the
    allocator is PageAllocator or the seeded bug of KMEMSPEC_SEEDED_BUG."""
    run_reporting_rule(PageAllocatorMachine, hypothesis_profiles.active())


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
