"""Explicit-state model checking of the real page allocator on small machines.

Breadth-first search from the boot state of :class:`impl.page_alloc.PageAllocator` (not a
model of it: the very class the rest of the project runs). Every state reachable within the
bounds is visited once. A state is identified by :func:`proofs.mcstate.state_key`: every
mutable field of the allocator (free lists with their order, PageBuddy orders, counters,
allocated blocks, pageblock migratetypes, watermark boosts, LRU order, references), so equal
keys mean equal concrete, hence equal abstract, states. Statistics (NUMA counters, access
costs) and effects are left out: no later call reads them, and the step properties read how
a call changes them, not their values. Whether kswapd is awake is left out too when no mask of
the search can observe it (every mask that may sleep wakes kswapd first:
:func:`proofs.mcstate.awake_is_observable`); that halves flat16's states.

How it goes fast: ONE allocator object is moved from state to state. proofs/mcstate.py
captures a state as plain data (stored marshalled in the frontier), restores it into the same
object after each operation that changed it (a sixth of the cost of unpickling a copy), and
tells in C whether an operation changed anything (:func:`proofs.mcstate.same`), so the many
operations that must leave the state alone (invalid frees, a blocking mask in atomic context)
cost one call and one comparison; the key is built only when the state changed, as bytes in
one pass (:func:`proofs.mcstate.key_bytes`). Each kind of operation has its own checking
function (:func:`op_handler`, looked up once per operation). Step properties
(:func:`impl.abstraction.check_step`) and kswapd rules are pure functions of their records,
so their verdicts are memoized by record (97% hits). An order above MAX_PAGE_ORDER, which
fails before __alloc_pages() reads any state, runs on the real code in every state and is
checked directly (NULL, no change of state, statistics or effects but its WARN); its step
record is built by alloc_step in the boot state only. Every other operation of every state
runs through the real code and every check. alloc_step's constants (zonelist, gfp_zone, reserve
marks, per allocator), the zone facts of a failed allocation or a kswapd run and the liveness
rule's zone facts are memoized by everything they read (impl/abstraction.py;
tests/test_modelcheck.py checks each against a fresh computation). About 1,750 states per CPU
second on flat16, 1,900 on zones-unaligned, 1,000 on numa2 (1.17-1.21x the previous engine,
interleaved runs on the same loaded machine; README for the figures). The floor is the real
code itself: restoring the state and running the ~36 operations of a state on the real
allocator, without any check, already costs about 190 us per state (about 5,000 states per
second), so the 15,000 per second of issue 10 is out of reach while every operation runs on
the real implementation. A flat16 state costs ~570 us: ~190 us of real calls and restores, the
rest checking (the allocation path's record, frame and coverage checks ~100 us, keys ~60 us,
the invariants of each new state ~50 us, the comparisons after the ~22 operations that must
change nothing ~20 us, the other operations, the search itself).

Named machines (:data:`MACHINES`, ``--machine NAME``; ``flat16`` is the default):

* ``flat16``: one node, one Normal zone of 16 pages, MAX_PAGE_ORDER 3, min 3 (with min 2 the
  high watermark cannot be reached and kswapd never reclaims); every mask of :data:`MASKS` in
  every context of :data:`CONTEXTS`.
* ``zones-unaligned``: one node whose DMA and Normal zones meet at pfn 4, which is neither
  MAX_PAGE_ORDER nor pageblock aligned, so a __free_one_page() that merges with a buddy in
  the other zone breaks buddy.contiguity; Normal's min 8 (low 10, high 12) separates
  GFP_ATOMIC's 62.5% of min from __GFP_HIGH's half; DMA is kept from Normal requests by its
  lowmem_reserve.
* ``numa2``: two nodes meeting at pfn 20 (not MAX_PAGE_ORDER aligned), node 0 with DMA and
  Normal (lowmem_reserve), one CPU on each node, Normal zones with min 8, low 11, high 14
  (watermark_scale_factor 2000); allocations with nid NUMA_NO_NODE, 0 and 1 from both CPUs,
  __GFP_THISNODE masks, page cache and kswapd on each node.

Operations, in every state (each machine's :class:`OpSpace` says which masks, contexts, nodes
and CPUs):

* ``alloc_pages_node(nid, gfp, order, cpu=, ctx=)`` for every order 0..MAX_PAGE_ORDER (and
  MAX_PAGE_ORDER + 1), while the live bound allows. A blocking mask in atomic context must
  raise SleepInAtomicError; an order above MAX_PAGE_ORDER must fail (before the sleep check,
  as in __alloc_pages()); both must leave the state as it was. Each allocation runs through
  :func:`impl.abstraction.alloc_step` and its record is checked against every step property
  (spec/invariants.py, spec/rules.py: sleeping, reserves, zone and node, liveness, premature
  failure, reclaim scope, NUMA counters, the kswapd runs a sleeping caller waited for).
* ``free_pages_pfn`` of every live block, and invalid frees that must raise their typed error
  and change nothing: a double free of every free block, a wrong order and a non-head pfn of
  every live block, a page-cache page, a pfn outside every zone.
* ``pagecache_add(nid, 1)`` while the bounds allow, ``drop_caches()`` and ``kswapd(nid)``
  through :func:`impl.abstraction.kswapd_step`, whose broken kswapd rules are violations.

Checked in every new state: every registered invariant of spec/invariants.py, by default in
its block-level encoding (``fast``; tests/test_invariants.py shows it agrees with the per-pfn
definition); ``--per-pfn`` also evaluates the per-pfn definitions (about 15 times slower per
state; ``make verify`` runs them on a smaller bound, row ``modelcheck.per-pfn``). The output
says which encodings ran. Checked on every transition: the step properties, the expected
errors, the frame (an allocation adds exactly its block and never hands out live memory; a
free removes exactly its block), and the liveness rule of the subject protocol
(:func:`liveness_witness`). Vacuity: each machine's witnesses must all occur
(``--require-witnesses``), e.g. direct reclaim, kswapd reclaim, merges up to MAX_PAGE_ORDER,
each error type. At the end of a run the allocator's constant fields (watermarks, zonelists,
...) are compared with boot: the search assumes no operation writes them.

On a violation, BFS gives the shortest operation path from boot, which is printed. Seeded bugs
(proofs/seeded_bugs.py, ``--mutant NAME``) show the checker's teeth.

The last line of output is a machine-readable summary (:meth:`Result.result_line`):
``RESULT machine=... states=... transitions=... depth=... seconds=... states_per_s=...
exhausted=yes|no violation=...``. Exit status: 0 clean and exhausted; 1 violation; 2 a
witness never occurred (with ``--require-witnesses``); 3 the bound was not exhausted within
``--budget`` seconds or ``--max-states`` (with ``--require-exhaustive``): an exhaustive check
that did not finish is not a pass.

Usage: ``python -m proofs.modelcheck [--machine NAME] [--pages N] [--max-order M] [--min W]
[--max-live L] [--max-pagecache C] [--depth D] [--budget S] [--per-pfn] [--mutant NAME]
[--require-witnesses] [--require-exhaustive]``.
"""

from __future__ import annotations

import argparse
import marshal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from impl.abstraction import (
    abstract,
    alloc_step,
    check_step,
    facts,
    kswapd_run,
    state_facts,
)
from impl.machine import MachineConfig, NodeConfig, ZoneConfig
from impl.page_alloc import OWNER_PAGECACHE, OWNER_PAGES, PageAllocator
from proofs import mcstate
from proofs.mcstate import state_key as state_key  # re-exported: tests, the state machine
from proofs.seeded_bugs import SEEDED_BUGS
from spec import rules
from spec.context import Context
from spec.errors import (
    BadFreeError,
    DoubleFreeError,
    KmemError,
    SleepInAtomicError,
    UnalignedFreeError,
    UnknownAddressError,
    WrongOrderError,
)
from spec.gfp import (
    __GFP_DMA,
    __GFP_HIGH,
    __GFP_THISNODE,
    GFP_ATOMIC,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOWAIT,
    ZONE_DMA,
    ZONE_NORMAL,
    format_gfp,
    gfp_zone,
    gfpflags_allow_blocking,
)
from spec.invariants import violated
from spec.rules import kswapd_violations
from spec.state import KswapdRecord, MemState, StepRecord, ZoneFacts

MASKS: tuple[int, ...] = (
    GFP_KERNEL, GFP_ATOMIC, GFP_NOWAIT, GFP_HIGHUSER_MOVABLE, GFP_KERNEL | __GFP_HIGH)
CONTEXTS: tuple[Context, ...] = (
    Context.PROCESS, Context.HARDIRQ, Context.SOFTIRQ, Context.SPINLOCK)


# --- the spec-side predicates shared with tests/test_state_machine.py ----------------------
# Defined once in spec/rules.py (the oracle uses them too); these names are re-exports.

zone_free_pages = rules.zone_free_pages
aligned_free_runs = rules.aligned_free_runs


def liveness_witness(a: PageAllocator, s: MemState, nid: int, gfp: int, order: int,
                     cpu: int = 0) -> str | None:
    """spec.rules.liveness_witness (the subject protocol's liveness rule for a failed
    alloc_pages) on the state ``s`` after the call, with NUMA_NO_NODE resolved to the node of
    ``cpu``. Also a step property (``liveness.blocking``), so check_step applies it."""
    return rules.liveness_witness(rules.state_zone_facts(s), a.cpu_node[cpu] if nid < 0 else nid,
                                  gfp, order)


def live_blocks(a: PageAllocator, owner: str = OWNER_PAGES) -> dict[int, int]:
    """pfn -> order of the live blocks of ``owner`` (alloc_pages callers by default)."""
    return {p: r[0] for p, r in a.allocated.items() if r[2] == owner}


# --- operations ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Op:
    """One call on the allocator. ``expect`` is the error type it must raise (exact type),
    or None if it must complete."""

    kind: str  # alloc | free | bad_free | pagecache_add | drop_caches | kswapd
    nid: int = 0
    gfp: int = 0
    order: int = 0
    ctx: Context = Context.PROCESS
    pfn: int = -1
    expect: type[KmemError] | None = None
    cpu: int = 0

    def label(self) -> str:
        if self.kind == "alloc":
            cpu = f", cpu={self.cpu}" if self.cpu else ""
            return (f"alloc_pages_node({self.nid}, {format_gfp(self.gfp)}, {self.order}{cpu}, "
                    f"ctx={self.ctx.name.lower()})")
        if self.kind in ("free", "bad_free"):
            return f"free_pages_pfn({self.pfn:#x}, {self.order})"
        if self.kind == "pagecache_add":
            return f"pagecache_add({self.nid}, 1)"
        if self.kind == "kswapd":
            return f"kswapd({self.nid})"
        return f"{self.kind}()"


Shape = tuple[int, int, int, Context]
"""An allocation call without its order: (nid, cpu, gfp, ctx)."""


def shapes(masks: Sequence[int], contexts: Sequence[Context],
           calls: Sequence[tuple[int, int]] = ((0, 0),)) -> tuple[Shape, ...]:
    """Every (nid, cpu) of ``calls`` with every mask and context."""
    return tuple((nid, cpu, gfp, ctx) for gfp in masks for ctx in contexts for nid, cpu in calls)


@dataclass(frozen=True)
class OpSpace:
    """Which operations a machine's search tries in every state: ``alloc`` shapes at every
    order 0..MAX_PAGE_ORDER, ``over_max`` shapes at MAX_PAGE_ORDER + 1, page cache added on
    ``pagecache_nids``, kswapd run on ``kswapd_nids`` (frees and invalid frees are derived
    from the state)."""

    alloc: tuple[Shape, ...] = shapes(MASKS, CONTEXTS)
    over_max: tuple[Shape, ...] = shapes(MASKS, CONTEXTS)
    pagecache_nids: tuple[int, ...] = (0,)
    kswapd_nids: tuple[int, ...] = (0,)

    def describe(self, max_order: int) -> str:
        masks = sorted({s[2] for s in self.alloc})
        ctxs = sorted({s[3] for s in self.alloc})
        calls = sorted({(s[0], s[1]) for s in self.alloc})
        return (f"{len(self.alloc)} call shapes ({len(masks)} masks, contexts "
                f"{'/'.join(c.name.lower() for c in ctxs)}, (nid, cpu) {calls}) x orders "
                f"0..{max_order}, {len(self.over_max)} at order {max_order + 1}; frees; invalid "
                f"frees; page cache on nodes {list(self.pagecache_nids)}, drop_caches, kswapd "
                f"on nodes {list(self.kswapd_nids)}")


@dataclass(frozen=True)
class Bounds:
    """The bounds of the explored space, and how much time it may take."""

    max_live: int = 3  # alloc_pages blocks plus page-cache pages
    max_pagecache: int = 2  # page-cache pages among them; 0: no page-cache operations
    depth: int | None = None
    max_states: int = 5_000_000
    per_pfn: bool = False  # also evaluate the per-pfn invariant definitions (15x slower)
    budget_s: float | None = None  # stop (not exhausted) after this many seconds


def _alloc_op(nid: int, cpu: int, gfp: int, ctx: Context, order: int, max_order: int) -> Op:
    # __alloc_pages(): order > MAX_PAGE_ORDER fails before might_alloc()
    bad = ctx.atomic and bool(gfpflags_allow_blocking(gfp)) and order <= max_order
    return Op("alloc", nid, gfp, order, ctx, expect=SleepInAtomicError if bad else None, cpu=cpu)


def alloc_ops(space: OpSpace, max_order: int) -> list[Op]:
    """The allocation operations of ``space`` (the same in every state with room)."""
    ops = [_alloc_op(nid, cpu, gfp, ctx, order, max_order)
           for order in range(max_order + 1) for nid, cpu, gfp, ctx in space.alloc]
    ops += [_alloc_op(nid, cpu, gfp, ctx, max_order + 1, max_order)
            for nid, cpu, gfp, ctx in space.over_max]
    return ops


class _OpCache:
    """Op objects built once and reused: a frozen dataclass costs a microsecond to make."""

    def __init__(self, a: PageAllocator, space: OpSpace) -> None:
        self.max_order = a.max_order
        self.max_pfn = a.max_pfn
        self.space = space
        self.allocs = alloc_ops(space, a.max_order)
        self.free: dict[tuple[int, int], list[Op]] = {}
        self.double: dict[tuple[int, int], Op] = {}
        self.cache: dict[int, Op] = {}
        self.unknown = Op("bad_free", pfn=a.max_pfn, order=0, expect=UnknownAddressError)
        self.pagecache = [Op("pagecache_add", nid=n) for n in space.pagecache_nids]
        self.kswapd = [Op("kswapd", nid=n) for n in space.kswapd_nids]
        self.drop = Op("drop_caches")

    def free_ops(self, pfn: int, order: int) -> list[Op]:
        """The free of a live block, then its wrong-order and non-head frees."""
        ops = self.free.get((pfn, order))
        if ops is None:
            wrong = order + 1 if order < self.max_order else order - 1
            ops = [Op("free", pfn=pfn, order=order),
                   Op("bad_free", pfn=pfn, order=wrong, expect=WrongOrderError)]
            if order:
                ops.append(Op("bad_free", pfn=pfn + 1, order=order - 1,
                              expect=UnalignedFreeError))
            self.free[(pfn, order)] = ops
        return ops

    def double_free(self, pfn: int, order: int) -> Op:
        op = self.double.get((pfn, order))
        if op is None:
            op = self.double[(pfn, order)] = Op("bad_free", pfn=pfn, order=order,
                                                expect=DoubleFreeError)
        return op

    def cache_free(self, pfn: int) -> Op:
        op = self.cache.get(pfn)
        if op is None:
            op = self.cache[pfn] = Op("bad_free", pfn=pfn, order=0, expect=BadFreeError)
        return op

    def ops(self, a: PageAllocator, live: dict[int, int], cache: dict[int, int],
            b: Bounds) -> list[Op]:
        room = len(live) + len(cache) < b.max_live
        ops: list[Op] = list(self.allocs) if room else []
        items = sorted(live.items())
        ops += [o for pfn, order in items for o in self.free_ops(pfn, order)[:1]]
        ops += [o for pfn, order in items for o in self.free_ops(pfn, order)[1:]]
        ops += [self.double_free(pfn, order) for z in a.zones
                for pfn, order, _ in z.free_blocks()]
        ops += [self.cache_free(pfn) for pfn in sorted(cache)]
        ops.append(self.unknown)
        if b.max_pagecache > 0:
            if room and len(cache) < b.max_pagecache:
                ops += self.pagecache
            if cache:
                ops.append(self.drop)
            ops += self.kswapd
        return ops


def enabled_ops(a: PageAllocator, b: Bounds, space: OpSpace | None = None) -> list[Op]:
    """Every operation tried in state ``a``. The live bound counts alloc_pages blocks and
    page-cache pages together."""
    return _OpCache(a, space or OpSpace()).ops(a, live_blocks(a), live_blocks(a, OWNER_PAGECACHE),
                                               b)


# --- the checker ---------------------------------------------------------------------------

@dataclass
class Violation:
    """A broken property and the shortest path from boot that breaks it."""

    what: list[str]
    path: list[str]
    detail: str = ""
    ops: list[Op] = field(default_factory=list)  # the path's operations, for replays

    def render(self) -> str:
        lines = [f"VIOLATION: {', '.join(self.what)}"]
        if self.detail:
            lines.append(f"  {self.detail}")
        lines.append(f"shortest path from boot ({len(self.path)} steps):")
        lines += [f"  {i + 1:2d}. {p}" for i, p in enumerate(self.path)]
        return "\n".join(lines)


@dataclass
class Result:
    """What a run explored and found."""

    states: int = 0
    transitions: int = 0
    depth: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    exhausted: bool = False
    violation: Violation | None = None
    notes: list[str] = field(default_factory=list)
    coverage: Counter[str] = field(default_factory=Counter)
    machine: str = ""
    bounds: str = ""  # e.g. "max_live=3,max_pagecache=2,depth=-"

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (f"states {self.states}, transitions {self.transitions}, depth {self.depth}, "
                f"{self.seconds:.1f} s ({self.cpu_seconds:.1f} s CPU), "
                f"{self.states_per_second:.0f} states/s, frontier "
                f"{'exhausted' if self.exhausted else 'NOT exhausted'}")

    def result_line(self) -> str:
        """The machine-readable last line (parsed by proofs/checks_extra.py)."""
        v = "none" if self.violation is None else ",".join(self.violation.what).replace(" ", "_")
        return (f"RESULT machine={self.machine or '-'} bounds={self.bounds or '-'} "
                f"states={self.states} "
                f"transitions={self.transitions} depth={self.depth} seconds={self.seconds:.2f} "
                f"cpu_seconds={self.cpu_seconds:.2f} "
                f"states_per_s={self.states_per_second:.0f} "
                f"exhausted={'yes' if self.exhausted else 'no'} violation={v}")


class CheckFailure(Exception):  # noqa: N818 - a finding, not an error of the checker
    def __init__(self, what: list[str], detail: str = "") -> None:
        super().__init__(what, detail)
        self.what = what
        self.detail = detail


def _describe(op: Op, ret: object) -> str:
    if op.kind == "alloc":
        return f"{op.label()} -> {'None' if ret is None else hex(ret)}"  # type: ignore[arg-type]
    if op.expect is not None:
        return f"{op.label()} -> {op.expect.__name__}"
    if op.kind in ("pagecache_add", "drop_caches", "kswapd"):
        return f"{op.label()} -> {ret}"
    return op.label()


def _free_block_count(a: PageAllocator) -> int:
    n = 0
    for z in a.zones:
        n += sum(z.counts)
    return n


@dataclass
class Before:
    """What apply_op compares a transition against: the state before it (its capture, live
    blocks, page cache, free-block count, pageblock types and boosts). The same for every
    operation tried from one state, so the search computes it once per state.

    Derived from those, for the checks of each allocation: ``pagecache`` (pfn -> zid of the
    page-cache pages: alloc_step's starting point), ``occupied`` (every live block and
    page-cache page as (pfn, end, page cache?), for the overlap check) and the zone facts of
    the state itself, computed the first time a failed allocation leaves the state as it
    was (:meth:`zone_facts_after`) and reused by every later one (facts are a function of
    the fields :func:`proofs.mcstate.same` compares)."""

    capture: mcstate.Capture
    live: dict[int, int]
    cache: dict[int, int]
    nblocks: int
    mt: bytes
    boost: list[int]
    alloc: PageAllocator | None = None
    pagecache: dict[int, int] = field(default_factory=dict)
    occupied: tuple[tuple[int, int, bool], ...] = ()
    facts: tuple[ZoneFacts, ...] | None = None
    same_after: bool | None = None  # set by zone_facts_after: the call left the state alone

    @staticmethod
    def of(a: PageAllocator, cap: mcstate.Capture | None = None) -> Before:
        live: dict[int, int] = {}
        cache: dict[int, int] = {}
        pagecache: dict[int, int] = {}
        occupied: list[tuple[int, int, bool]] = []
        for p, r in a.allocated.items():  # live_blocks(a) and live_blocks(a, OWNER_PAGECACHE)
            if r[2] == OWNER_PAGES:
                live[p] = r[0]
                occupied.append((p, p + (1 << r[0]), False))
            elif r[2] == OWNER_PAGECACHE:
                cache[p] = r[0]
                pagecache[p] = r[1]
                occupied.append((p, p + (1 << r[0]), True))
        return Before(mcstate.capture(a) if cap is None else cap, live, cache,
                      _free_block_count(a), bytes(a.pageblock_flags), [z.boost for z in a.zones],
                      a, pagecache, tuple(occupied))

    def zone_facts_after(self) -> tuple[ZoneFacts, ...]:
        """impl.abstraction.facts() of the allocator now (after a failed allocation): the
        memoized facts of the state before when the call changed nothing, else computed.
        Records in ``same_after`` which it was."""
        a = self.alloc
        assert a is not None
        self.same_after = mcstate.same(a, self.capture)
        if not self.same_after:
            return facts(a)
        if self.facts is None:
            self.facts = facts(a)
        return self.facts


_STEP_VERDICTS: dict[StepRecord, tuple[str, ...]] = {}
"""check_step() verdicts by record: a step property is a function of the record alone."""


def step_verdict(rec: StepRecord) -> tuple[str, ...]:
    """check_step(rec), memoized (records repeat across states: same call, same outcome)."""
    try:
        v = _STEP_VERDICTS.get(rec)
    except TypeError:  # an unhashable field: no memo
        return tuple(check_step(rec))
    if v is None:
        if len(_STEP_VERDICTS) > 2_000_000:
            _STEP_VERDICTS.clear()
        v = _STEP_VERDICTS[rec] = tuple(check_step(rec))
    return v


_KSWAPD_VERDICTS: dict[KswapdRecord, tuple[str, ...]] = {}
"""kswapd_violations() verdicts by record: the kswapd rules read the record alone."""


def kswapd_verdict(rec: KswapdRecord) -> tuple[str, ...]:
    """spec.rules.kswapd_violations(rec), memoized like :func:`step_verdict`."""
    v = _KSWAPD_VERDICTS.get(rec)
    if v is None:
        if len(_KSWAPD_VERDICTS) > 200_000:
            _KSWAPD_VERDICTS.clear()
        v = _KSWAPD_VERDICTS[rec] = tuple(kswapd_violations(rec))
    return v


def apply_op(a: PageAllocator, op: Op, cov: Counter[str] | None = None,
             before: Before | None = None, record_over_max: bool = True
             ) -> tuple[object, bool]:
    """Run ``op`` on ``a`` and check the transition. Returns (result, whether the state
    changed); raises CheckFailure on a broken property. ``before`` describes ``a`` before the
    call (computed here if not given); ``cov`` counts what the transition exercised (the
    vacuity witnesses).

    An allocation above MAX_PAGE_ORDER fails before __alloc_pages() reads any state
    (WARN_ON_ONCE_GFP(order > MAX_PAGE_ORDER)). With ``record_over_max`` False it is still
    run on the real code, but checked directly instead of through alloc_step (whose failure
    record costs ten allocations): it must return None and change no state, no statistic and
    no effect but its WARN. The search builds its step record in the boot state only.

    One function per kind of operation (:func:`op_handler` picks it; the search looks it up
    once per operation): the checks of each kind are written once, here."""
    return op_handler(op, a.max_order, record_over_max)(
        a, op, Counter() if cov is None else cov, Before.of(a) if before is None else before)


Handler = Callable[[PageAllocator, Op, "Counter[str]", Before], tuple[object, bool]]


def op_handler(op: Op, max_order: int, record_over_max: bool = True) -> Handler:
    """The function of :func:`apply_op` that runs and checks ``op``."""
    if op.kind == "alloc" and op.order > max_order and not record_over_max:
        return _apply_over_max
    if op.expect is not None:
        return _apply_alloc_error if op.kind == "alloc" else _apply_bad_free
    if op.kind == "alloc":
        return _apply_alloc
    if op.kind == "free":
        return _apply_free
    return _apply_other


def _apply_over_max(a: PageAllocator, op: Op, cov: Counter[str], b: Before
                    ) -> tuple[object, bool]:
    n_effects = len(a.effects)
    if a.alloc_pages_node(op.nid, op.gfp, op.order, cpu=op.cpu, ctx=op.ctx) is not None:
        raise CheckFailure(["protocol.order_above_max"], "returned a block")
    if len(a.effects) > n_effects:
        extra = {e.kind for e in a.effects[n_effects:]} - {"warn"}
    else:
        extra = set()
    if not mcstate.same(a, b.capture) or not mcstate.same_stats(a, b.capture) or extra:
        raise CheckFailure(["frame.order_above_max"],
                           f"order > MAX_PAGE_ORDER changed state, statistics or effects "
                           f"{sorted(extra)}")
    cov["order > MAX_PAGE_ORDER failed"] += 1
    return None, False


def _expected_error(a: PageAllocator, op: Op, cov: Counter[str], b: Before,
                    e: KmemError | None) -> tuple[object, bool]:
    """The checks of an operation that must raise ``op.expect`` (``e``: what it raised)."""
    expect = op.expect
    assert expect is not None
    if e is None:
        raise CheckFailure([f"error.{expect.__name__}"], "the call did not raise")
    if type(e) is not expect:
        raise CheckFailure([f"error.{expect.__name__}"], f"raised {type(e).__name__}: {e}")
    if not mcstate.same(a, b.capture):
        raise CheckFailure(["error.state_unchanged"], f"{expect.__name__} changed the state")
    name = expect.__name__
    cov[_RAISED.get(name) or _RAISED.setdefault(name, f"raised {name}")] += 1
    return name, False


def _apply_alloc_error(a: PageAllocator, op: Op, cov: Counter[str], b: Before
                       ) -> tuple[object, bool]:
    try:
        a.alloc_pages_node(op.nid, op.gfp, op.order, cpu=op.cpu, ctx=op.ctx)
    except KmemError as e:
        return _raised(a, op, cov, b, e)
    return _expected_error(a, op, cov, b, None)


def _apply_bad_free(a: PageAllocator, op: Op, cov: Counter[str], b: Before
                    ) -> tuple[object, bool]:
    try:
        a.free_pages_pfn(op.pfn, op.order)
    except KmemError as e:
        return _raised(a, op, cov, b, e)
    return _expected_error(a, op, cov, b, None)


def _raised(a: PageAllocator, op: Op, cov: Counter[str], b: Before, e: KmemError
            ) -> tuple[object, bool]:
    """The usual end of an expected-error operation: the expected type and the state
    unchanged, as _expected_error() passes them; anything else goes to it for the verdict."""
    if type(e) is op.expect and mcstate.same(a, b.capture):
        label = _RAISED.get(type(e).__name__)
        if label is not None:
            cov[label] += 1
            return type(e).__name__, False
    return _expected_error(a, op, cov, b, e)


def _effect_coverage(a: PageAllocator, cov: Counter[str], n_effects: int) -> None:
    kinds = {e.kind for e in a.effects[n_effects:]}
    if "sleep" in kinds:
        cov["direct reclaim entered (slept)"] += 1
    if "reclaim" in kinds:
        cov["direct reclaim freed page cache"] += 1


def _apply_alloc(a: PageAllocator, op: Op, cov: Counter[str], b: Before
                 ) -> tuple[object, bool]:
    n_effects = len(a.effects)
    b.same_after = None
    pfn, rec = alloc_step(a, op.nid, op.gfp, op.order, cpu=op.cpu, ctx=op.ctx,
                          pagecache_before=b.pagecache, zone_facts_after=b.zone_facts_after)
    bad = _STEP_VERDICTS.get(rec)
    if bad is None:
        bad = step_verdict(rec)
    if bad:
        raise CheckFailure(list(bad), f"step record {rec}")
    before_live = b.live
    if pfn is None:
        if live_blocks(a) != before_live:
            raise CheckFailure(["frame.failed_alloc"], "a failed allocation changed live blocks")
        if op.order > a.max_order:
            if not mcstate.same(a, b.capture):
                raise CheckFailure(["frame.order_above_max"],
                                   "order > MAX_PAGE_ORDER changed state")
            cov["order > MAX_PAGE_ORDER failed"] += 1
            return None, False
        if not op.ctx.atomic and gfpflags_allow_blocking(op.gfp):
            # liveness_witness(a, abstract(a), ...), with the state's zone facts memoized
            w = rules.liveness_witness(state_facts(a),
                                       a.cpu_node[op.cpu] if op.nid < 0 else op.nid,
                                       op.gfp, op.order)
            if w is not None:
                raise CheckFailure(["liveness"], w)
            cov["blocking allocation failed (liveness checked)"] += 1
        else:
            cov["non-blocking allocation failed"] += 1
        if len(a.effects) > n_effects:
            _effect_coverage(a, cov, n_effects)
        same = b.same_after
        return None, not (mcstate.same(a, b.capture) if same is None else same)
    if op.order > a.max_order:
        raise CheckFailure(["protocol.order_above_max"], f"returned {pfn:#x}")
    after = {p: r[0] for p, r in a.allocated.items() if r[2] == OWNER_PAGES}  # live_blocks(a)
    end = pfn + (1 << op.order)
    cache_after: dict[int, int] | None = None
    for p, pend, is_cache in b.occupied:
        if p < end and pfn < pend:
            if cache_after is None:
                cache_after = live_blocks(a, OWNER_PAGECACHE)
            if not is_cache or p in cache_after:
                raise CheckFailure(["overlap.live"], f"{pfn:#x} overlaps live block {p:#x}")
    if pfn % (1 << op.order) or len(after) != len(before_live) + 1 or after != {
            **before_live, pfn: op.order}:
        raise CheckFailure(["frame.alloc"], f"live blocks {before_live} -> {after}")
    cov["allocation succeeded"] += 1
    zones = a.zones
    zr = zones[rec.zid]
    hz = _HZ.get(op.gfp)
    if hz is None:
        hz = _highest_zoneidx(op.gfp)
    if rec.free_after < zr.wmark[0] + zr.lowmem_reserve[hz]:
        cov["allocation dipped below min (reserves)"] += 1
    nblocks = 0
    for z in zones:
        nblocks += sum(z.counts)
    if nblocks > b.nblocks:
        cov["expand() split a block"] += 1
    if a.pageblock_flags != b.mt:
        cov["fallback claimed a pageblock"] += 1
    boosts = b.boost
    for i, z in enumerate(zones):
        if z.boost > boosts[i]:
            cov["watermark boosted"] += 1
            break
    pref = a.cpu_node[op.cpu] if op.nid < 0 else op.nid
    if zr.nid != pref:
        cov["remote node used"] += 1
    elif rec.zid != rec.pref_zid:
        cov["lower zone used"] += 1
    if op.nid < 0 and op.gfp & __GFP_THISNODE:
        cov["__GFP_THISNODE with NUMA_NO_NODE succeeded"] += 1
    if len(a.effects) > n_effects:
        _effect_coverage(a, cov, n_effects)
    return pfn, True  # a block more is allocated


def _apply_free(a: PageAllocator, op: Op, cov: Counter[str], b: Before) -> tuple[object, bool]:
    n_effects = len(a.effects)
    a.free_pages_pfn(op.pfn, op.order)
    before_live = b.live
    after = live_blocks(a)
    expected = dict(before_live)
    del expected[op.pfn]
    if after != expected or live_blocks(a, OWNER_PAGECACHE) != b.cache:
        raise CheckFailure(["frame.free"], f"live blocks {before_live} -> {after}")
    cov["free"] += 1
    if _free_block_count(a) <= b.nblocks:
        cov["free merged with its buddy"] += 1
    head = op.pfn & ~((1 << a.max_order) - 1)
    z = a.zone_of_pfn(op.pfn)
    if op.order < a.max_order and z is not None and z.free_order_at(head) == a.max_order:
        cov["free merged up to MAX_PAGE_ORDER"] += 1
    if len(a.effects) > n_effects:
        _effect_coverage(a, cov, n_effects)
    return None, True  # a block fewer is allocated


def _apply_other(a: PageAllocator, op: Op, cov: Counter[str], b: Before) -> tuple[object, bool]:
    """pagecache_add, drop_caches, kswapd."""
    n_effects = len(a.effects)
    same: bool | None = None
    if op.kind == "pagecache_add":
        ret = a.pagecache_add(op.nid, 1)
    elif op.kind == "drop_caches":
        ret = a.drop_caches()
    else:
        b.same_after = None
        ret, rec = kswapd_run(a, op.nid, zone_facts_after=b.zone_facts_after)
        same = b.same_after
        broken = kswapd_verdict(rec)
        if broken:
            raise CheckFailure(list(broken), f"kswapd({op.nid}) reclaimed {ret} pages")
    if live_blocks(a) != b.live:
        raise CheckFailure(["frame.pagecache"], f"{op.kind} changed alloc_pages blocks")
    if ret:
        cov[f"{op.kind} did something"] += 1
    if len(a.effects) > n_effects:
        _effect_coverage(a, cov, n_effects)
    return ret, not (mcstate.same(a, b.capture) if same is None else same)


_HZ: dict[int, int] = {}
_RAISED: dict[str, str] = {}  # error name -> its coverage label (built once)


def _highest_zoneidx(gfp: int) -> int:
    """gfp_zone(gfp) (a logic-kit evaluation, memoized: it is a function of the mask)."""
    hz = _HZ.get(gfp)
    if hz is None:
        hz = _HZ[gfp] = int(gfp_zone(gfp))
    return hz


WITNESSES: tuple[str, ...] = (
    "allocation succeeded", "allocation dipped below min (reserves)", "expand() split a block",
    "free merged with its buddy",
    "free merged up to MAX_PAGE_ORDER", "blocking allocation failed (liveness checked)",
    "non-blocking allocation failed", "order > MAX_PAGE_ORDER failed",
    "raised SleepInAtomicError", "raised DoubleFreeError", "raised WrongOrderError",
    "raised UnalignedFreeError", "raised BadFreeError", "raised UnknownAddressError",
)
"""What every default run must exercise, or its "no violation" would be vacuous."""

PAGECACHE_WITNESSES: tuple[str, ...] = (
    "pagecache_add did something", "direct reclaim entered (slept)",
    "direct reclaim freed page cache", "kswapd did something", "drop_caches did something",
)


@dataclass
class Clock:
    """The time budget and the periodic progress report of a BFS (shared by the page and the
    slab model checkers): a search stopped by its budget says so in ``res.notes``, so it is
    never reported as exhausted."""

    res: Result
    budget_s: float | None
    progress: Callable[[Result], None] | None
    t0: float
    c0: float

    def __post_init__(self) -> None:
        self.next_report = self.t0 + 5
        self.deadline = None if self.budget_s is None else self.t0 + self.budget_s

    def out_of_time(self, frontier: int) -> bool:
        """Call after each expanded state: True (with a note) once the budget is spent while
        ``frontier`` states remain; reports progress every 5 s."""
        now = time.perf_counter()
        if self.deadline is not None and now > self.deadline and frontier:
            self.res.notes.append(f"stopped at the time budget of {self.budget_s:g} s with "
                                  f"{frontier} states in the frontier")
            return True
        if self.progress is not None and now > self.next_report:
            self.res.seconds = now - self.t0
            self.res.cpu_seconds = time.process_time() - self.c0
            self.progress(self.res)
            self.next_report += 5
        return False


class ModelChecker:
    """BFS over the states of one allocator class on one machine."""

    def __init__(self, machine: MachineConfig, bounds: Bounds | None = None,
                 factory: Callable[[MachineConfig], PageAllocator] = PageAllocator,
                 space: OpSpace | None = None, name: str = "",
                 key_kswapd_awake: bool | None = None) -> None:
        self.machine = machine
        # None: in the key exactly when a mask of the search could observe it
        self.key_kswapd_awake = key_kswapd_awake
        self.bounds = bounds or Bounds()
        self.factory = factory
        self.space = space or OpSpace()
        self.name = name or machine.name

    def _check_state(self, s: MemState) -> list[str]:
        bad = violated(s, fast=True)
        if self.bounds.per_pfn:
            bad += [f"{n} (per-pfn)" for n in violated(s)]
        return bad

    def run(self, progress: Callable[[Result], None] | None = None,
            on_state: Callable[[PageAllocator, MemState], None] | None = None) -> Result:
        """BFS from boot. ``on_state(allocator, abstract_state)`` is called once for every
        distinct state reached (boot included), before its successors are explored; the
        allocator must not be modified by the callback (copy it first)."""
        bounds = self.bounds
        res = Result(machine=self.name, bounds=(
            f"max_live={bounds.max_live},max_pagecache={bounds.max_pagecache},"
            f"depth={'-' if bounds.depth is None else bounds.depth},"
            f"invariants={'per-pfn+block' if bounds.per_pfn else 'block'}"))
        t0 = time.perf_counter()
        c0 = time.process_time()
        awake = self.key_kswapd_awake
        if awake is None:
            awake = mcstate.awake_is_observable({s[2] for s in (*self.space.alloc,
                                                                 *self.space.over_max)})
        a = self.factory(self.machine)
        mcstate.check_layout(a)
        consts = mcstate.constants_fingerprint(a)
        opc = _OpCache(a, self.space)
        a.effects.clear()
        s0 = abstract(a)
        visited: dict[bytes, int] = {mcstate.key_bytes(a, awake): 0}
        parents: list[tuple[int, Op | None, object]] = [(-1, None, None)]
        res.states = 1

        def path(i: int, last: str | None = None) -> list[str]:
            labels: list[str] = []
            while parents[i][0] >= 0:
                pi, op, ret = parents[i]
                assert op is not None
                labels.append(_describe(op, ret))
                i = pi
            return labels[::-1] + ([] if last is None else [last])

        def path_ops(i: int, last: Op | None = None) -> list[Op]:
            ops: list[Op] = [] if last is None else [last]
            while parents[i][0] >= 0:
                pi, op, _ret = parents[i]
                assert op is not None
                ops.append(op)
                i = pi
            return ops[::-1]

        if on_state is not None:
            on_state(a, s0)
        bad = self._check_state(s0)
        if bad:
            res.violation = Violation(bad, [], "in the boot state")
            res.seconds = time.perf_counter() - t0
            return res
        frontier: deque[tuple[int, bytes, int]] = deque(
            [(0, marshal.dumps(mcstate.capture(a)), 0)])
        clock = Clock(res, bounds.budget_s, progress, t0, c0)
        cut = False
        restore = mcstate.restore
        key_bytes = mcstate.key_bytes
        cov = res.coverage
        max_order = a.max_order
        handlers: dict[int, Handler] = {}  # id(op) -> its apply_op function (ops are cached)
        check_state = self._check_state
        transitions = 0
        while frontier:
            idx, blob, depth = frontier.popleft()
            if bounds.depth is not None and depth >= bounds.depth:
                cut = True
                continue
            cap = marshal.loads(blob)
            restore(a, cap)
            before = Before.of(a, cap)
            dirty = False
            for op in opc.ops(a, before.live, before.cache, bounds):
                if dirty:
                    restore(a, cap)
                    dirty = False
                transitions += 1
                handler = handlers.get(id(op))
                if handler is None or idx == 0:
                    handler = op_handler(op, max_order, idx == 0)
                    if idx != 0:
                        handlers[id(op)] = handler
                try:
                    ret, changed = handler(a, op, cov, before)
                except CheckFailure as f:
                    res.violation = Violation(f.what, path(idx, f"{op.label()}  <-- here"),
                                              f.detail, path_ops(idx, op))
                    break
                except Exception as e:  # an unexpected crash is a finding
                    res.violation = Violation([f"crash.{type(e).__name__}"],
                                              path(idx, f"{op.label()}  <-- here"), str(e),
                                              path_ops(idx, op))
                    break
                if a.effects:
                    a.effects.clear()
                if not changed:
                    continue  # a self-loop: the object is still the state being expanded
                dirty = True
                kb = key_bytes(a, awake)
                if kb in visited:
                    continue
                sidx = len(parents)
                visited[kb] = sidx
                parents.append((idx, op, ret))
                res.states += 1
                if depth + 1 > res.depth:
                    res.depth = depth + 1
                s2 = abstract(a)
                if on_state is not None:
                    on_state(a, s2)
                bad = check_state(s2)
                if bad:
                    res.violation = Violation(bad, path(sidx, None), "", path_ops(sidx))
                    res.violation.path[-1] += "  <-- reaches a bad state"
                    break
                frontier.append((sidx, marshal.dumps(mcstate.capture(a)), depth + 1))
                if res.states >= bounds.max_states:
                    res.notes.append(f"stopped at max_states {bounds.max_states}")
                    frontier.clear()
                    break
            res.transitions = transitions
            if res.violation is not None:
                break
            if clock.out_of_time(len(frontier)):
                break
        res.seconds = time.perf_counter() - t0
        res.cpu_seconds = time.process_time() - c0
        if res.violation is None and mcstate.constants_fingerprint(a) != consts:
            res.violation = Violation(["modelcheck.constant_changed"], [],
                                      "an operation wrote a field proofs/mcstate.py classifies "
                                      "as constant: the search is unsound, classify it as state")
        res.exhausted = res.violation is None and not res.notes and not cut
        if cut and res.violation is None:
            res.notes.append(f"depth bound {bounds.depth} cut the search: every state "
                             "within that depth was explored")
        return res


def replay(machine: MachineConfig, ops: Sequence[Op],
           factory: Callable[[MachineConfig], PageAllocator] = PageAllocator) -> str:
    """Run ``ops`` from boot on a fresh ``factory`` allocator with every check of the search.
    Returns ``clean``, ``diverges at step N: ...`` (an operation of the path is not valid
    here, e.g. it frees a block this allocator placed elsewhere), or ``violates R at step
    N``. A seeded bug's violation is the bug's only if the real allocator's replay is not a
    violation (proofs/checks_extra.py requires that)."""
    a = factory(machine)
    bad = violated(abstract(a), fast=True)
    if bad:
        return f"violates {', '.join(bad)} at step 0 (boot)"
    for i, op in enumerate(ops, 1):
        if op.kind == "free" and live_blocks(a).get(op.pfn) != op.order:
            return f"diverges at step {i}: {op.label()} frees no live block here"
        try:
            apply_op(a, op)
        except CheckFailure as f:
            return f"violates {', '.join(f.what)} at step {i}"
        except KmemError as e:
            return f"diverges at step {i}: {op.label()} raised {type(e).__name__}"
        a.effects.clear()
        bad = violated(abstract(a), fast=True)
        if bad:
            return f"violates {', '.join(bad)} at step {i}"
    return "clean"


# --- seeded bugs: proofs/seeded_bugs.py (the project's catalogue) ------------------------

MUTANTS: dict[str, type[PageAllocator]] = {b.name: b.cls for b in SEEDED_BUGS.values()}
"""The allocator-level seeded bugs of the catalogue, by name (``--mutant NAME``)."""


# --- machines ------------------------------------------------------------------------------

DEFAULT_PAGES = 16
DEFAULT_MAX_LIVE = 3
DEFAULT_MIN = 3  # with min 2 the high watermark is out of reach and kswapd never reclaims


def default_machine(pages: int = DEFAULT_PAGES, max_order: int = 3,
                    min_pages: int = DEFAULT_MIN) -> MachineConfig:
    """A flat one-node machine: one Normal zone of ``pages`` pages, min watermark
    ``min_pages``; 32 pages, MAX_PAGE_ORDER 3, min 2 is exactly MachineConfig.tiny()."""
    if (pages, max_order, min_pages) == (32, 3, 2):
        return MachineConfig.tiny()
    return MachineConfig.flat(pages, nodes=1, max_order=max_order, min_pages=min_pages,
                              name=f"flat{pages}")


def zones_unaligned_machine() -> MachineConfig:
    """One node, one CPU: DMA [0, 4) and Normal [4, 20), meeting at pfn 4 (not a multiple of
    8 = 2^MAX_PAGE_ORDER = pageblock), so [0, 4) and [4, 8) are buddies in different zones
    (mm/page_alloc.c page_is_buddy: page_zone_id(page) != page_zone_id(buddy)). Normal: min 8,
    low 10, high 12 (the kernel's gap min/4); GFP_ATOMIC's mark is 3 there, __GFP_HIGH's 4.
    DMA: min 1, lowmem_reserve[Normal] 4 = all of it, so Normal requests never use DMA (on a
    real machine it is 1/256 of the higher zones: DMA is out of reach for them too)."""
    node = NodeConfig(0, (0,), (
        ZoneConfig(ZONE_DMA, 0, 4, ((0, 4),), min=1, lowmem_reserve=(0, 0, 4, 4)),
        ZoneConfig(ZONE_NORMAL, 4, 16, ((4, 20),), min=8, lowmem_reserve=(0, 0, 0, 0)),
    ))
    return MachineConfig((node,), ((10,),), max_order=3, name="zones-unaligned").validate()


def numa2_machine() -> MachineConfig:
    """Two nodes meeting at pfn 20 (not a multiple of 8), one CPU each. Node 0: DMA [0, 4)
    (min 1, lowmem_reserve[Normal] 2) and Normal [4, 20); node 1: Normal [20, 36). Normal
    zones: min 8 and watermark_scale_factor 2000 (16 * 20% = 3 pages of gap): low 11, high
    14."""
    n0 = NodeConfig(0, (0,), (
        ZoneConfig(ZONE_DMA, 0, 4, ((0, 4),), min=1, lowmem_reserve=(0, 0, 2, 2)),
        ZoneConfig(ZONE_NORMAL, 4, 16, ((4, 20),), min=8, lowmem_reserve=(0, 0, 0, 0)),
    ))
    n1 = NodeConfig(1, (1,), (
        ZoneConfig(ZONE_NORMAL, 20, 16, ((20, 36),), min=8, lowmem_reserve=(0, 0, 0, 0)),
    ))
    return MachineConfig((n0, n1), ((10, 20), (20, 10)), max_order=3,
                         watermark_scale_factor=2000, name="numa2").validate()


GFP_KERNEL_THISNODE = GFP_KERNEL | __GFP_THISNODE
GFP_ATOMIC_THISNODE = GFP_ATOMIC | __GFP_THISNODE
NUMA2_CALLS = ((-1, 0), (0, 0), (1, 0), (-1, 1), (0, 1), (1, 1))


@dataclass(frozen=True)
class MachineSpec:
    """A named machine of the model checker: how to build it, which operations to try, the
    bounds of ``make verify``, of ``verify-long`` (the per-pfn definitions too, or one more
    live block) and of ``--mutant`` runs (BFS stops at a seeded bug's first violation, so a
    bound too big to exhaust costs little there; the violation is the bug's only if the real
    allocator replays the same path cleanly, which the run checks), the witnesses its clean
    run must show, and the wall-clock budget its ``make verify`` row allows (room for a
    loaded 2-core machine: an exhaustive run that does not finish in it is ``unknown``, a
    failure)."""

    name: str
    what: str
    build: Callable[[], MachineConfig]
    space: OpSpace
    bounds: Bounds
    long_bounds: Bounds
    mutant_bounds: Bounds
    witnesses: tuple[str, ...]
    budget_s: float


MACHINES: dict[str, MachineSpec] = {m.name: m for m in (
    MachineSpec(
        "flat16", "one Normal zone of 16 pages, MAX_PAGE_ORDER 3, min 3; 5 masks x 4 contexts",
        default_machine, OpSpace(),
        Bounds(max_live=3, max_pagecache=2), Bounds(max_live=3, max_pagecache=2, per_pfn=True),
        Bounds(max_live=4, max_pagecache=2), WITNESSES + PAGECACHE_WITNESSES, budget_s=150),
    MachineSpec(
        "zones-unaligned", "DMA [0,4) + Normal [4,20) meeting at an unaligned pfn; Normal "
        "min 8/low 10/high 12; DMA lowmem_reserve",
        zones_unaligned_machine,
        OpSpace(alloc=shapes((GFP_KERNEL, GFP_ATOMIC, GFP_KERNEL | __GFP_DMA,
                              GFP_HIGHUSER_MOVABLE, GFP_KERNEL | __GFP_HIGH),
                             (Context.PROCESS, Context.HARDIRQ)),
                over_max=shapes((GFP_KERNEL, GFP_ATOMIC), (Context.PROCESS, Context.HARDIRQ))),
        Bounds(max_live=3, max_pagecache=2), Bounds(max_live=3, max_pagecache=2, per_pfn=True),
        Bounds(max_live=3, max_pagecache=2), (*WITNESSES, *PAGECACHE_WITNESSES), budget_s=150),
    MachineSpec(
        "numa2", "two nodes meeting at an unaligned pfn, one CPU each; nid -1/0/1 from both "
        "CPUs, __GFP_THISNODE; min 8/low 12/high 16; page cache and kswapd on each node",
        numa2_machine,
        OpSpace(alloc=shapes((GFP_KERNEL, GFP_ATOMIC, GFP_KERNEL_THISNODE, GFP_ATOMIC_THISNODE),
                             (Context.PROCESS,), NUMA2_CALLS)
                + shapes((GFP_ATOMIC, GFP_KERNEL), (Context.HARDIRQ,), ((-1, 0), (-1, 1))),
                over_max=shapes((GFP_KERNEL,), (Context.PROCESS,), ((-1, 0),)),
                pagecache_nids=(0, 1), kswapd_nids=(0, 1)),
        Bounds(max_live=2, max_pagecache=2), Bounds(max_live=3, max_pagecache=2),
        Bounds(max_live=3, max_pagecache=2),
        (*WITNESSES, *PAGECACHE_WITNESSES, "remote node used"), budget_s=150),
)}
"""The named machines, ``--machine NAME``; ``flat16`` is the default."""


def missing_witnesses(res: Result, bounds: Bounds, want: Sequence[str] | None = None
                      ) -> list[str]:
    """The witnesses a run did not exercise (its clean result would be vacuous for them)."""
    if want is None:
        want = WITNESSES + (PAGECACHE_WITNESSES if bounds.max_pagecache > 0 else ())
    elif bounds.max_pagecache <= 0:
        want = [w for w in want if w not in PAGECACHE_WITNESSES]
    return [w for w in want if not res.coverage[w]]


# --- command line --------------------------------------------------------------------------

def print_outcome(res: Result, replay_line: Callable[[list[Op]], str] | None,
                  missing: list[str], *, require_witnesses: bool,
                  require_exhaustive: bool) -> int:
    """Print a run's figures, notes and violation (with ``replay_line`` of its path, for a
    seeded bug) or its clean verdict, then the RESULT line; the exit code (1 on a violation,
    else as report_clean_run). Shared by the page and the slab model checkers."""
    print(res.summary())
    for note in res.notes:
        print(f"note: {note}")
    if res.violation is not None:
        print(res.violation.render())
        if replay_line is not None:
            print(replay_line(res.violation.ops))
        rc = 1
    else:
        rc = report_clean_run(res, missing, require_witnesses=require_witnesses,
                              require_exhaustive=require_exhaustive)
    print(res.result_line())
    return rc


def report_clean_run(res: Result, missing: list[str], *, require_witnesses: bool,
                     require_exhaustive: bool) -> int:
    """Print the coverage and the verdict of a run that found no violation; its exit code:
    2 when a required vacuity witness never occurred, 3 when a required exhaustive search
    stopped early (shared by the slab model checker)."""
    rc = 0
    print("coverage (transitions that exercised each behaviour):")
    for what, count in sorted(res.coverage.items()):
        print(f"  {count:9d}  {what}")
    if missing:
        print(f"{'FAIL' if require_witnesses else 'warning'}: never exercised: "
              f"{', '.join(missing)}")
        if require_witnesses:
            rc = 2
    if not res.exhausted and require_exhaustive and rc == 0:
        print("FAIL: the bounded space was not exhausted: this run proves nothing about it")
        rc = 3
    if rc == 0:
        print("no violation" + ("" if res.exhausted else " (bound NOT exhausted)"))
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m proofs.modelcheck",
                                description="Explicit-state model checking of the page allocator.")
    p.add_argument("--machine", choices=sorted(MACHINES), default="flat16",
                   help="a named machine (default flat16)")
    p.add_argument("--pages", type=int, default=None,
                   help="a flat machine of this many pages instead (one Normal zone; 32 with "
                        "--min 2 is MachineConfig.tiny), with flat16's operations")
    p.add_argument("--max-order", type=int, default=None,
                   help="MAX_PAGE_ORDER of the --pages machine (default 3)")
    p.add_argument("--min", type=int, default=None, dest="min_pages",
                   help=f"min watermark of the --pages machine (default {DEFAULT_MIN})")
    p.add_argument("--max-live", type=int, default=None,
                   help="live alloc_pages blocks plus page-cache pages (default: the machine's)")
    p.add_argument("--max-pagecache", type=int, default=None,
                   help="page-cache pages among them (0 disables page-cache ops)")
    p.add_argument("--depth", type=int, default=None, help="stop at this BFS depth")
    p.add_argument("--max-states", type=int, default=None)
    p.add_argument("--budget", type=float, default=None,
                   help="stop after this many seconds (the bound is then NOT exhausted)")
    p.add_argument("--long", action="store_true", help="the machine's verify-long bounds")
    p.add_argument("--per-pfn", action="store_true",
                   help="also evaluate the per-pfn invariant definitions in every state "
                        "(the block-level encodings always run)")
    p.add_argument("--fast-only", action="store_true",
                   help="block-level invariant encodings only (the default; kept for scripts)")
    p.add_argument("--require-witnesses", action="store_true",
                   help="fail if a vacuity witness (reclaim, merge, each error...) never occurred")
    p.add_argument("--require-exhaustive", action="store_true",
                   help="exit 3 unless the whole bounded space was explored")
    p.add_argument("--mutant", choices=sorted(MUTANTS), default=None,
                   help="check a seeded-bug variant of the allocator instead")
    args = p.parse_args(argv)
    spec = MACHINES[args.machine]
    if args.pages is not None or args.max_order is not None or args.min_pages is not None:
        machine = default_machine(args.pages or DEFAULT_PAGES,
                                  3 if args.max_order is None else args.max_order,
                                  DEFAULT_MIN if args.min_pages is None else args.min_pages)
        spec = replace(MACHINES["flat16"], name=machine.name, build=lambda: machine,
                       bounds=Bounds(max_live=DEFAULT_MAX_LIVE, max_pagecache=2))
    machine = spec.build()
    b = spec.mutant_bounds if args.mutant else spec.long_bounds if args.long else spec.bounds
    overrides = {k: v for k, v in (("max_live", args.max_live),
                                   ("max_pagecache", args.max_pagecache),
                                   ("depth", args.depth), ("max_states", args.max_states),
                                   ("budget_s", args.budget)) if v is not None}
    bounds = replace(b, per_pfn=args.per_pfn or b.per_pfn, **overrides)
    factory: Callable[[MachineConfig], Any] = (
        MUTANTS[args.mutant] if args.mutant else PageAllocator)
    zones = [f"{z.name} [{z.start_pfn}, {z.end_pfn}) min "
             f"{'-' if z.min is None else z.min}" for n in machine.nodes for z in n.zones]
    print(f"model checking {'mutant ' + args.mutant if args.mutant else 'PageAllocator'} on "
          f"{spec.name}: {machine.total_pages} pages, {len(machine.nodes)} node(s), zones "
          f"{'; '.join(zones)}; MAX_PAGE_ORDER {machine.max_order}; at most {bounds.max_live} "
          f"live blocks of which {bounds.max_pagecache} page cache; depth "
          f"{bounds.depth if bounds.depth is not None else 'unbounded'}; budget "
          f"{'none' if bounds.budget_s is None else f'{bounds.budget_s:g} s'}")
    print(f"  ops: {spec.space.describe(machine.max_order)}")
    print(f"  invariants in every new state: block-level encodings"
          f"{' and per-pfn definitions' if bounds.per_pfn else ' (per-pfn definitions: --per-pfn)'}"
          "; per step: step properties (memoized by record), errors, frame, liveness; "
          "kswapd rules per kswapd run", flush=True)
    res = ModelChecker(machine, bounds, factory, spec.space, spec.name).run(
        progress=lambda r: print(f"  ... {r.summary()}", file=sys.stderr, flush=True))
    return print_outcome(
        res, (lambda ops: f"the real PageAllocator on the same path: {replay(machine, ops)}")
        if args.mutant else None, missing_witnesses(res, bounds, spec.witnesses),
        require_witnesses=args.require_witnesses, require_exhaustive=args.require_exhaustive)


if __name__ == "__main__":
    sys.exit(main())
