"""Explicit-state model checking of the real page allocator on a tiny machine.

Breadth-first search from the boot state of :class:`impl.page_alloc.PageAllocator` (not a
model of it: the very class the rest of the project runs). Every state reachable within the
bounds is visited once; a state is identified by a canonical key equivalent to its abstract
state (:func:`impl.abstraction.abstract`: free blocks in free-list order, allocated blocks,
pageblock migratetypes, nr_free and NR_FREE_PAGES) plus the concrete fields that decide future
behaviour and are not in the abstract state (watermark boost, LRU order, get_page references).
Effects and statistics (numa_hit, access costs, whether kswapd is awake) are left out: they
never change what a later call does or what the checks look at. Successors are made by
unpickling the parent state (an allocator is ~2 KB pickled); a call that leaves the key
unchanged keeps working on the same object.

Default bounds (about 30 s on one core, the whole reachable space): a flat machine of 16 pages,
MAX_PAGE_ORDER 3, min watermark 3 (with min 2 the high watermark cannot be reached and kswapd
never reclaims), at most 3 live blocks counting page-cache pages, at most 2 of them page cache.

Operations, in every state:

* ``alloc_pages_node(0, gfp, order, ctx=...)`` for every order 0..MAX_PAGE_ORDER + 1, every
  mask of :data:`MASKS` and every context of :data:`CONTEXTS`, while the live bound allows. A
  blocking mask in atomic context must raise SleepInAtomicError; an order above
  MAX_PAGE_ORDER must fail (before the sleep check, as in __alloc_pages()); both must leave the
  state as it was. Each allocation runs through :func:`impl.abstraction.alloc_step` and its
  record is checked against every step property.
* ``free_pages_pfn`` of every live block, and invalid frees that must raise their typed error
  and change nothing: a double free of every free block, a wrong order and a non-head pfn of
  every live block, a page-cache page, a pfn outside every zone.
* ``pagecache_add(0, 1)`` while the bounds allow, ``drop_caches()`` and ``kswapd(0)``: with
  page cache present and memory low, blocking allocations go through direct reclaim.

Checked in every state: every registered invariant (the per-pfn definitions of
spec/invariants.py and their block-level encodings). Checked on every transition: the step
properties, the expected errors, the frame (an allocation adds exactly its block and never
hands out live memory; a free removes exactly its block), and the liveness rule of the subject
protocol (a failed blocking allocation in process context means no allowed zone holds an
aligned free run of 2^order pages above min + lowmem_reserve; see :func:`liveness_witness`
for the known watermark-boost gap). Vacuity: :data:`WITNESSES` must all occur
(``--require-witnesses``), e.g. direct reclaim, kswapd reclaim, merges up to MAX_PAGE_ORDER,
each error type.

On a violation, BFS gives the shortest operation path from boot, which is printed. Seeded bugs
(:data:`MUTANTS`, ``--mutant NAME``) show the checker's teeth.

Usage: ``python -m proofs.modelcheck [--pages N] [--max-order M] [--min W] [--max-live L]
[--max-pagecache C] [--depth D] [--mutant NAME] [--require-witnesses]``.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from impl.abstraction import abstract, alloc_step, check_step
from impl.machine import MachineConfig
from impl.page_alloc import OWNER_PAGECACHE, OWNER_PAGES, PageAllocator
from proofs.seeded_bugs import SEEDED_BUGS
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
    __GFP_HIGH,
    __GFP_THISNODE,
    GFP_ATOMIC,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOWAIT,
    format_gfp,
    gfp_zone,
    gfpflags_allow_blocking,
)
from spec.invariants import violated
from spec.state import MemState

MASKS: tuple[int, ...] = (
    GFP_KERNEL, GFP_ATOMIC, GFP_NOWAIT, GFP_HIGHUSER_MOVABLE, GFP_KERNEL | __GFP_HIGH)
CONTEXTS: tuple[Context, ...] = (
    Context.PROCESS, Context.HARDIRQ, Context.SOFTIRQ, Context.SPINLOCK)

StateKey = Hashable


# --- the spec-side predicates shared with tests/test_state_machine.py ----------------------

def zone_free_pages(s: MemState, zid: int) -> set[int]:
    """The pfns of zone ``zid`` inside free blocks (from the blocks, not from counters)."""
    out: set[int] = set()
    for b in s.free.values():
        if s.zone_at(b.pfn) == zid and b.order >= 0:
            out.update(range(b.pfn, b.pfn + (1 << b.order)))
    return out


def aligned_free_runs(s: MemState, zid: int, order: int) -> Iterator[int]:
    """First pfns of the aligned runs of 2^order free pages inside zone ``zid`` (by pages,
    not by blocks: the spec does not assume the free lists are merged)."""
    free = zone_free_pages(s, zid)
    n = 1 << order
    zone = s.zones[zid]
    start = -(-zone.start // n) * n
    for base in range(start, zone.end - n + 1, n):
        if all(p in free for p in range(base, base + n)):
            yield base


def liveness_witness(a: PageAllocator, s: MemState, nid: int, gfp: int, order: int,
                     cpu: int = 0) -> str | None:
    """The subject protocol's liveness rule for a failed alloc_pages: None if failing was
    allowed, else a description of a zone that could have served the request.

    Allowed zones: zones of index <= gfp_zone(gfp), on the requested (or the CPU's) node with
    __GFP_THISNODE, on any node otherwise. A zone could have served the request if it holds an
    aligned free run of 2^order pages and taking it leaves at least min + lowmem_reserve
    (for the request's highest zone) free. ``s`` is the abstract state after the call (after
    any direct reclaim it did); min and lowmem_reserve are the machine's boot values."""
    hz = int(gfp_zone(gfp))
    node = a.cpu_node[cpu] if nid < 0 else nid
    for z in a.zones:
        if z.idx > hz or z.managed == 0:
            continue
        if gfp & __GFP_THISNODE and z.nid != node:
            continue
        need = z.wmark[0] + z.lowmem_reserve[hz]
        free = len(zone_free_pages(s, z.zid))
        if free - (1 << order) < need:
            continue
        run = next(aligned_free_runs(s, z.zid, order), None)
        if run is not None:
            return (f"zone {z.zid} (node {z.nid} {z.name}) has {free} free pages "
                    f"(min {z.wmark[0]} + lowmem_reserve {z.lowmem_reserve[hz]}) and a free "
                    f"aligned run at pfn {run:#x} of order {order}")
    return None


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

    def label(self) -> str:
        if self.kind == "alloc":
            return (f"alloc_pages_node({self.nid}, {format_gfp(self.gfp)}, {self.order}, "
                    f"ctx={self.ctx.name.lower()})")
        if self.kind in ("free", "bad_free"):
            return f"free_pages_pfn({self.pfn:#x}, {self.order})"
        if self.kind == "pagecache_add":
            return f"pagecache_add({self.nid}, 1)"
        if self.kind == "kswapd":
            return f"kswapd({self.nid})"
        return f"{self.kind}()"


@dataclass
class Bounds:
    """The bounds of the explored space."""

    max_live: int = 3  # alloc_pages blocks plus page-cache pages
    max_pagecache: int = 2  # page-cache pages among them; 0: no page-cache operations
    depth: int | None = None
    max_states: int = 2_000_000
    per_pfn: bool = True  # also evaluate the per-pfn invariant definitions (slower)


def enabled_ops(a: PageAllocator, b: Bounds) -> list[Op]:
    """Every operation tried in state ``a``. The live bound counts alloc_pages blocks and
    page-cache pages together."""
    ops: list[Op] = []
    live = live_blocks(a)
    cache = live_blocks(a, OWNER_PAGECACHE)
    room = len(live) + len(cache) < b.max_live
    if room:
        for order in range(a.max_order + 2):
            for gfp in MASKS:
                for ctx in CONTEXTS:
                    # __alloc_pages(): order > MAX_PAGE_ORDER fails before might_alloc()
                    bad = (ctx.atomic and bool(gfpflags_allow_blocking(gfp))
                           and order <= a.max_order)
                    ops.append(Op("alloc", 0, gfp, order, ctx,
                                  expect=SleepInAtomicError if bad else None))
    for pfn, order in sorted(live.items()):
        ops.append(Op("free", pfn=pfn, order=order))
    for pfn, order in sorted(live.items()):
        wrong = order + 1 if order < a.max_order else order - 1
        ops.append(Op("bad_free", pfn=pfn, order=wrong, expect=WrongOrderError))
        if order:
            ops.append(Op("bad_free", pfn=pfn + 1, order=order - 1, expect=UnalignedFreeError))
    for z in a.zones:
        for pfn, order, _ in z.free_blocks():
            ops.append(Op("bad_free", pfn=pfn, order=order, expect=DoubleFreeError))
    for pfn in sorted(cache):
        ops.append(Op("bad_free", pfn=pfn, order=0, expect=BadFreeError))
    ops.append(Op("bad_free", pfn=a.max_pfn, order=0, expect=UnknownAddressError))
    if b.max_pagecache > 0:
        if room and len(cache) < b.max_pagecache:
            ops.append(Op("pagecache_add", nid=0))
        if cache:
            ops.append(Op("drop_caches"))
        ops.append(Op("kswapd", nid=0))
    return ops


def state_key(a: PageAllocator) -> StateKey:
    """Canonical key of a state: what :func:`impl.abstraction.abstract` gives, read straight
    from the concrete structures (abstract() costs four times as much; it is computed once per
    new state, for the invariants). Equal keys mean equal abstract states:

    * each free list as its logical contents walked head to tail (list ORDER is in the key),
      the untouched boot blocks (lazy ranges) included at the tail where they logically are;
    * the order each PageBuddy page stores, nr_free of each list, NR_FREE_PAGES;
    * allocated blocks (order, zone, owner, migratetype) and pageblock migratetypes;

    plus what decides future behaviour and is not in the abstract state: watermark boost, LRU
    order, get_page references, context stacks. Effects and statistics are left out."""
    zones = []
    for z in a.zones:
        walks = []
        nxt = z._nxt
        limit = len(nxt)
        buddy = sorted(z._buddy.items())
        for idx, h in enumerate(z.heads):
            if h == -1 and not (z._lazy and idx == (z.max_order << 3 | 1)):
                continue
            w = []
            steps = 0
            while h != -1 and steps <= limit:
                w.append(h)
                h = nxt.get(h, -1)
                steps += 1
            if z._lazy and idx == (z.max_order << 3 | 1):  # MIGRATE_MOVABLE
                step = 1 << z.max_order
                lazy = [p for s, e in z._lazy for p in range(s, e, step)]
                w += lazy
                buddy = sorted(buddy + [(p, idx) for p in lazy])
            walks.append((idx, *w))
        zones.append((tuple(walks), tuple(z.counts), tuple(buddy), z.free_pages, z.boost))
    return (
        tuple(zones),
        tuple(sorted(a.allocated.items())),
        bytes(a.pageblock_flags),
        tuple(tuple(n.lru) for n in a.nodes),
        tuple(sorted(a.refs.items())),
        tuple(tuple(st) for st in a.ctx.values()),
    )


# --- the checker ---------------------------------------------------------------------------

@dataclass
class Violation:
    """A broken property and the shortest path from boot that breaks it."""

    what: list[str]
    path: list[str]
    detail: str = ""

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
    exhausted: bool = False
    violation: Violation | None = None
    notes: list[str] = field(default_factory=list)
    coverage: Counter[str] = field(default_factory=Counter)

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (f"states {self.states}, transitions {self.transitions}, depth {self.depth}, "
                f"{self.seconds:.1f} s, {self.states_per_second:.0f} states/s, frontier "
                f"{'exhausted' if self.exhausted else 'NOT exhausted'}")


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
    return sum(sum(z.counts) for z in a.zones)


def apply_op(a: PageAllocator, key: StateKey, op: Op, cov: Counter[str] | None = None
             ) -> tuple[object, StateKey]:
    """Run ``op`` on ``a`` (whose key before the call is ``key``) and check the transition.
    Returns (result, key after); raises CheckFailure on a broken property. ``cov`` counts what the
    transition exercised (the vacuity witnesses)."""
    cov = Counter() if cov is None else cov
    if op.expect is not None:
        try:
            if op.kind == "alloc":
                a.alloc_pages_node(op.nid, op.gfp, op.order, ctx=op.ctx)
            else:
                a.free_pages_pfn(op.pfn, op.order)
        except KmemError as e:
            if type(e) is not op.expect:
                raise CheckFailure([f"error.{op.expect.__name__}"],
                            f"raised {type(e).__name__} ({e}) instead") from None
        else:
            raise CheckFailure([f"error.{op.expect.__name__}"], "the call did not raise")
        k2 = state_key(a)
        if k2 != key:
            raise CheckFailure(["error.state_unchanged"], f"{op.expect.__name__} changed the state")
        cov[f"raised {op.expect.__name__}"] += 1
        return op.expect.__name__, k2

    before_live = live_blocks(a)
    before_cache = live_blocks(a, OWNER_PAGECACHE)
    before_blocks = _free_block_count(a)
    before_mt = bytes(a.pageblock_flags)
    before_boost = [z.boost for z in a.zones]
    n_effects = len(a.effects)
    ret: object = None
    if op.kind == "alloc":
        pfn, rec = alloc_step(a, op.nid, op.gfp, op.order, ctx=op.ctx)
        ret = pfn
        bad = check_step(rec)
        if bad:
            raise CheckFailure(bad, f"step record {rec}")
        after = live_blocks(a)
        if pfn is None:
            if after != before_live:
                raise CheckFailure(["frame.failed_alloc"],
                                   "a failed allocation changed live blocks")
            if op.order > a.max_order:
                k2 = state_key(a)
                if k2 != key:
                    raise CheckFailure(["frame.order_above_max"],
                                       "order > MAX_PAGE_ORDER changed state")
                cov["order > MAX_PAGE_ORDER failed"] += 1
                return ret, k2
            if not op.ctx.atomic and gfpflags_allow_blocking(op.gfp):
                s2 = abstract(a)
                w = liveness_witness(a, s2, op.nid, op.gfp, op.order)
                if w is not None:
                    raise CheckFailure(["liveness"], w)
                cov["blocking allocation failed (liveness checked)"] += 1
            else:
                cov["non-blocking allocation failed"] += 1
        else:
            if op.order > a.max_order:
                raise CheckFailure(["protocol.order_above_max"], f"returned {pfn:#x}")
            end = pfn + (1 << op.order)
            for p, o in (*before_live.items(), *before_cache.items()):
                if p < end and pfn < p + (1 << o) and (p not in before_cache
                                                       or p in live_blocks(a, OWNER_PAGECACHE)):
                    raise CheckFailure(["overlap.live"], f"{pfn:#x} overlaps live block {p:#x}")
            if pfn % (1 << op.order) or after != {**before_live, pfn: op.order}:
                raise CheckFailure(["frame.alloc"], f"live blocks {before_live} -> {after}")
            cov["allocation succeeded"] += 1
            zr = a.zones[rec.zid]
            if rec.free_after < zr.wmark[0] + zr.lowmem_reserve[int(gfp_zone(op.gfp))]:
                cov["allocation dipped below min (reserves)"] += 1
            if _free_block_count(a) > before_blocks:
                cov["expand() split a block"] += 1
            if bytes(a.pageblock_flags) != before_mt:
                cov["fallback claimed a pageblock"] += 1
            if any(z.boost > b for z, b in zip(a.zones, before_boost, strict=True)):
                cov["watermark boosted"] += 1
            zi = a.allocated[pfn][1]
            if a.zones[zi].nid != op.nid:
                cov["remote node used"] += 1
    elif op.kind == "free":
        a.free_pages_pfn(op.pfn, op.order)
        after = live_blocks(a)
        expected = dict(before_live)
        del expected[op.pfn]
        if after != expected or live_blocks(a, OWNER_PAGECACHE) != before_cache:
            raise CheckFailure(["frame.free"], f"live blocks {before_live} -> {after}")
        cov["free"] += 1
        if _free_block_count(a) <= before_blocks:
            cov["free merged with its buddy"] += 1
        head = op.pfn & ~((1 << a.max_order) - 1)
        z = a.zone_of_pfn(op.pfn)
        if op.order < a.max_order and z is not None and z.free_order_at(head) == a.max_order:
            cov["free merged up to MAX_PAGE_ORDER"] += 1
    else:
        if op.kind == "pagecache_add":
            ret = a.pagecache_add(op.nid, 1)
        elif op.kind == "drop_caches":
            ret = a.drop_caches()
        else:
            ret = a.kswapd(op.nid)
        if live_blocks(a) != before_live:
            raise CheckFailure(["frame.pagecache"], f"{op.kind} changed alloc_pages blocks")
        if ret:
            cov[f"{op.kind} did something"] += 1
    kinds = {e.kind for e in a.effects[n_effects:]}
    if "sleep" in kinds:
        cov["direct reclaim entered (slept)"] += 1
    if "reclaim" in kinds:
        cov["direct reclaim freed page cache"] += 1
    return ret, state_key(a)


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


class ModelChecker:
    """BFS over the states of one allocator class on one machine."""

    def __init__(self, machine: MachineConfig, bounds: Bounds | None = None,
                 factory: Callable[[MachineConfig], PageAllocator] = PageAllocator) -> None:
        self.machine = machine
        self.bounds = bounds or Bounds()
        self.factory = factory

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
        res = Result()
        t0 = time.perf_counter()
        boot = self.factory(self.machine)
        s0 = abstract(boot)
        k0 = state_key(boot)
        parent: dict[StateKey, tuple[StateKey, str] | None] = {k0: None}
        res.states = 1

        def path_to(k: StateKey, last: str | None = None) -> list[str]:
            out: list[str] = [] if last is None else [last]
            step = parent[k]
            while step is not None:
                k, lab = step
                out.append(lab)
                step = parent[k]
            return out[::-1]

        if on_state is not None:
            on_state(boot, s0)
        bad = self._check_state(s0)
        if bad:
            res.violation = Violation(bad, [], "in the boot state")
            res.seconds = time.perf_counter() - t0
            return res
        boot.effects.clear()
        frontier: deque[tuple[StateKey, bytes, int]] = deque([(k0, pickle.dumps(boot), 0)])
        next_report = t0 + 5
        cut = False
        while frontier:
            key, blob, depth = frontier.popleft()
            if self.bounds.depth is not None and depth >= self.bounds.depth:
                cut = True
                continue
            work: PageAllocator | None = pickle.loads(blob)
            assert work is not None
            for op in enabled_ops(work, self.bounds):
                if work is None:
                    work = pickle.loads(blob)
                    assert work is not None
                res.transitions += 1
                try:
                    ret, k2 = apply_op(work, key, op, res.coverage)
                except CheckFailure as f:
                    res.violation = Violation(f.what, path_to(key, f"{op.label()}  <-- here"),
                                              f.detail)
                    break
                except Exception as e:  # an unexpected crash is a finding
                    res.violation = Violation([f"crash.{type(e).__name__}"],
                                              path_to(key, f"{op.label()}  <-- here"), str(e))
                    break
                work.effects.clear()
                if k2 == key:
                    continue  # a self-loop: keep using the same object
                if k2 not in parent:
                    parent[k2] = (key, _describe(op, ret))
                    res.states += 1
                    res.depth = max(res.depth, depth + 1)
                    s2 = abstract(work)
                    if on_state is not None:
                        on_state(work, s2)
                    bad = self._check_state(s2)
                    if bad:
                        res.violation = Violation(bad, path_to(key, f"{_describe(op, ret)}  "
                                                                    "<-- reaches a bad state"))
                        break
                    frontier.append((k2, pickle.dumps(work), depth + 1))
                    if res.states >= self.bounds.max_states:
                        res.notes.append(f"stopped at max_states {self.bounds.max_states}")
                        frontier.clear()
                        break
                work = None
            if res.violation is not None:
                break
            if progress is not None and time.perf_counter() > next_report:
                res.seconds = time.perf_counter() - t0
                progress(res)
                next_report += 5
        res.seconds = time.perf_counter() - t0
        res.exhausted = res.violation is None and not res.notes and not cut
        if cut and res.violation is None:
            res.notes.append(f"depth bound {self.bounds.depth} cut the search: every state "
                             "within that depth was explored")
        return res


# --- seeded bugs: proofs/seeded_bugs.py (the project's catalogue) ------------------------

MUTANTS: dict[str, type[PageAllocator]] = {b.name: b.cls for b in SEEDED_BUGS.values()}
"""The allocator-level seeded bugs of the catalogue, by name (``--mutant NAME``)."""


# --- command line --------------------------------------------------------------------------

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


def missing_witnesses(res: Result, bounds: Bounds) -> list[str]:
    """The witnesses a run did not exercise (its clean result would be vacuous for them)."""
    want = WITNESSES + (PAGECACHE_WITNESSES if bounds.max_pagecache > 0 else ())
    return [w for w in want if not res.coverage[w]]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m proofs.modelcheck",
                                description="Explicit-state model checking of the page allocator.")
    p.add_argument("--pages", type=int, default=DEFAULT_PAGES,
                   help=f"pages of the one zone (default {DEFAULT_PAGES}; "
                        "32 with --min 2 is MachineConfig.tiny)")
    p.add_argument("--max-order", type=int, default=3, help="MAX_PAGE_ORDER (default 3)")
    p.add_argument("--min", type=int, default=DEFAULT_MIN, dest="min_pages",
                   help=f"min watermark in pages (default {DEFAULT_MIN})")
    p.add_argument("--max-live", type=int, default=DEFAULT_MAX_LIVE,
                   help="live alloc_pages blocks plus page-cache pages "
                        f"(default {DEFAULT_MAX_LIVE})")
    p.add_argument("--max-pagecache", type=int, default=2,
                   help="page-cache pages among them (default 2; 0 disables page-cache ops)")
    p.add_argument("--depth", type=int, default=None, help="stop at this BFS depth")
    p.add_argument("--max-states", type=int, default=2_000_000)
    p.add_argument("--fast-only", action="store_true",
                   help="check only the block-level invariant encodings (faster)")
    p.add_argument("--require-witnesses", action="store_true",
                   help="fail if a vacuity witness (reclaim, merge, each error...) never occurred")
    p.add_argument("--mutant", choices=sorted(MUTANTS), default=None,
                   help="check a seeded-bug variant of the allocator instead")
    args = p.parse_args(argv)
    machine = default_machine(args.pages, args.max_order, args.min_pages)
    bounds = Bounds(max_live=args.max_live, max_pagecache=args.max_pagecache, depth=args.depth,
                    max_states=args.max_states, per_pfn=not args.fast_only)
    factory: Callable[[MachineConfig], Any] = (
        MUTANTS[args.mutant] if args.mutant else PageAllocator)
    print(f"model checking {'mutant ' + args.mutant if args.mutant else 'PageAllocator'} on "
          f"{machine.name}: {machine.total_pages} pages, MAX_PAGE_ORDER {machine.max_order}, "
          f"min {args.min_pages}; at most {bounds.max_live} live blocks of which "
          f"{bounds.max_pagecache} page cache; depth "
          f"{bounds.depth if bounds.depth is not None else 'unbounded'}")
    print(f"  alloc: {len(MASKS)} masks x {len(CONTEXTS)} contexts x orders "
          f"0..{machine.max_order + 1}; frees; invalid frees; page cache, drop_caches, kswapd")
    print(f"  invariants: {'block-level' if args.fast_only else 'per-pfn and block-level'}"
          " encodings in every state; step properties, errors, frame and liveness per step")
    res = ModelChecker(machine, bounds, factory).run(
        progress=lambda r: print(f"  ... {r.summary()}", flush=True))
    print(res.summary())
    for note in res.notes:
        print(f"note: {note}")
    if res.violation is not None:
        print(res.violation.render())
        return 1
    print("coverage (transitions that exercised each behaviour):")
    for what, count in sorted(res.coverage.items()):
        print(f"  {count:9d}  {what}")
    missing = missing_witnesses(res, bounds)
    if missing:
        print(f"{'FAIL' if args.require_witnesses else 'warning'}: never exercised: "
              f"{', '.join(missing)}")
        if args.require_witnesses:
            return 2
    print("no violation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
