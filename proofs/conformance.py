"""Conformance: the symbolic transitions of proofs/symbolic.py against the real allocator.

The induction and BMC proofs reason about transitions that *mirror* the implementation's code
paths (:func:`proofs.symbolic.free_paths` mirrors ``free_pages_pfn`` -> ``_free_pages_zone``
-> ``_free_one_page``, i.e. __free_pages -> __free_one_page of mm/page_alloc.c;
:func:`proofs.symbolic.alloc_paths` mirrors ``__rmqueue_smallest`` + ``expand``) instead of
running them. This check ties the mirror to the code, so that changing one without the other
fails ``make verify``:

* The symbolic transitions are evaluated on concrete states: the very ``free_paths`` /
  ``alloc_paths`` code runs on a :class:`proofs.symbolic.SymState` holding plain Python values
  (``SymState.concrete(ms, plain=True)``; the logic kit of spec/logic.py computes the path
  conditions as bools), the one path whose conditions hold is taken and its post-state read
  back as a MemState. (``tests/test_conformance.py`` shows that this plain evaluation and the
  evaluation on Z3 constants give the same successor.)
* The real :class:`impl.page_alloc.PageAllocator` runs the same operation from the same state
  (on a copy of the model checker's allocator), and the two post-states are compared on
  every field the symbolic model tracks: free blocks (head pfn, order, the list they are on:
  zone, order, migratetype; how often listed), allocated blocks (order and owner), pageblock
  migratetypes, nr_free per (order, migratetype) and NR_FREE_PAGES. The comparison lists
  every field that differs.
* States: every state the explicit-state model checker (proofs/modelcheck.py) reaches on the
  symbolic machine's shape (one Normal zone of 16 pages, MAX_PAGE_ORDER 3 = pageblock_order,
  min watermark 0), within :data:`DEFAULT_BOUNDS`; and corrupted states made from those
  (:data:`CORRUPTIONS`: unmerged buddies, a block on another migratetype's list, wrong
  counters, overlapping blocks, a relabelled pageblock; one per distinct abstract state, the
  kinds in turn), which break invariants and are not reachable, for the frees. And the boot
  state: ``SymState.initial`` (where induction.init and the BMC start) against a freshly
  booted allocator.
* Operations in every reachable state: ``free_pages_pfn`` of every live alloc_pages block;
  reclaim (``_release_lru_page``, what direct reclaim, kswapd and drop_caches call) of every
  page-cache page, compared with the same symbolic free (the other owner);
  ``alloc_pages_node`` of every order 0..MAX_PAGE_ORDER with an UNMOVABLE and a MOVABLE mask
  (:data:`ALLOC_MASKS`); ``pagecache_add`` (an order-0 page-cache allocation, owner 1). In
  every corrupted state: every free and reclaim.

The symbolic allocation is permissive (ANY free block of order >= k): the real allocator's
choice must be one of its enabled paths (a block headed at the returned pfn, split as
``expand_halves`` says), and that path's post-state must equal the real one. When the
requested migratetype's lists hold no block of order >= k the kernel falls back
(mm/page_alloc.c __rmqueue_claim / __rmqueue_steal: pageblock relabelling, blocks moved
between lists), which
the symbolic model does not describe: those allocations are compared without migratetypes
(free blocks with their list order, allocated blocks, nr_free per order summed over the
types, NR_FREE_PAGES). A failed allocation must coincide with the symbolic model having no
enabled path, and must leave the compared fields unchanged.

Not compared, and why: free-list order (head/tail placement; the symbolic state has no list
order), watermarks (the symbolic transitions ignore them: the copies the real operations run
on have every watermark, boost and lowmem_reserve set to 0), the migratetype stored with an
allocated block, effects and NUMA statistics, the pageblock after the zone's end (the real
pageblock bitmap has one entry more). Corrupted states whose corruption the implementation
cannot represent (a block listed twice, a block on the list of another order: the list index
is the stored order) are not built; a real call that crashes on a corrupted state is counted
as undefined there, not compared.

Symbolic results depend only on the compared fields of the pre-state, so they are memoised
per :func:`state_key` (model-checker states often differ only in list order); the real
operations run on every state. Measured: the ``make verify`` row compares about 25,000
transitions on about 2,000 reachable and 1,250 corrupted states in 7 s of CPU (about 14 s
wall on the shared 2-core sandbox).

Usage: ``python -m proofs.conformance [--max-live L] [--max-pagecache C] [--depth D]
[--diverge NAME] [--json PATH]``. ``--diverge`` runs with a seeded divergence
(:data:`DIVERGENCES`) and must fail.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import z3

from impl.buddy import combined_pfn, expand_halves, find_buddy_pfn
from impl.machine import MachineConfig
from impl.page_alloc import OWNER_PAGES, PageAllocator, Zone
from proofs import symbolic as sy
from proofs.modelcheck import Bounds, ModelChecker
from proofs.modelcheck import Result as MCResult
from proofs.seeded_bugs import NoMergeOrder1
from spec.gfp import (
    __GFP_MOVABLE,
    GFP_NOWAIT,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_UNMOVABLE,
)
from spec.invariants import violated
from spec.state import MemState

MACHINE = sy.Machine(16, 3)
"""The symbolic machine of the induction proofs (proofs/registry.py's default)."""

DEFAULT_BOUNDS: tuple[Bounds, ...] = (
    Bounds(max_live=2, max_pagecache=2, per_pfn=False),
    Bounds(max_live=3, max_pagecache=1, depth=4, per_pfn=False),
)
"""The model-checker runs of the ``make verify`` row: every state reachable with at most 2
live blocks (page-cache pages included, up to 2), at any depth (the frontier is exhausted);
and every state within 4 operations of boot with at most 3 live blocks (1 page-cache page).
The model checker evaluates only the block-level invariant encodings (``per_pfn=False``):
invariants are the model-checker row's business, this row compares transitions."""

ALLOC_MASKS: tuple[tuple[str, int, int], ...] = (
    ("GFP_NOWAIT", GFP_NOWAIT, MIGRATE_UNMOVABLE),
    ("GFP_NOWAIT|__GFP_MOVABLE", GFP_NOWAIT | __GFP_MOVABLE, MIGRATE_MOVABLE),
)
"""One mask per migratetype the model checker's masks use (UNMOVABLE: GFP_KERNEL, GFP_ATOMIC,
GFP_NOWAIT; MOVABLE: GFP_HIGHUSER_MOVABLE; include/linux/gfp.h gfp_migratetype), so every
compared allocation is one the reachable states lead to; MIGRATE_RECLAIMABLE lists stay empty
in them. Neither may enter direct reclaim, so a failed call is one transition, not reclaim
plus a retry."""

Fn = Callable[..., Any]


def real_machine(m: sy.Machine = MACHINE) -> MachineConfig:
    """The implementation's machine of the symbolic machine's shape: one node, one Normal
    zone of ``m.pages`` pages at pfn 0, MAX_PAGE_ORDER ``m.max_order``, min watermark 0."""
    return MachineConfig.flat(m.pages, max_order=m.max_order, min_pages=0,
                              name=f"conformance{m.pages}")


@dataclass(frozen=True)
class Helpers:
    """The helpers the symbolic transitions call (a seeded divergence swaps one)."""

    find_buddy: Fn = find_buddy_pfn
    combine: Fn = combined_pfn
    split: Fn = expand_halves


# --- what is compared ---------------------------------------------------------------------

def fields(ms: MemState, m: sy.Machine = MACHINE, *, weak: bool = False) -> dict[str, str]:
    """The compared fields of ``ms``, by readable name. ``weak`` leaves out migratetypes
    (list migratetypes, pageblock migratetypes, nr_free per type: summed per order), for
    allocations that take the kernel's migratetype fallback."""
    out: dict[str, str] = {}
    for b in sorted(ms.free.values()):
        where = (f"zone {b.list_zid}, order {b.list_order}" if weak else
                 f"zone {b.list_zid}, order {b.list_order}, mt {b.list_mt}")
        out[f"free block {b.pfn:#x}"] = (f"order {b.order} on list ({where})"
                                         + ("" if b.times_listed == 1
                                            else f" listed {b.times_listed} times"))
    for a in sorted(ms.allocated.values()):
        out[f"allocated block {a.pfn:#x}"] = f"order {a.order} ({a.owner})"
    if not weak:
        for i in range(m.pageblocks):
            out[f"pageblock {i} migratetype"] = str(ms.pageblock_mt[i])
    per_order: Counter[tuple[int, int]] = Counter()
    for (zid, o, mt), n in ms.nr_free.items():
        if weak:
            per_order[(zid, o)] += n
        elif n:
            out[f"nr_free[zone {zid}][order {o}][mt {mt}]"] = str(n)
    for (zid, o), n in per_order.items():
        if n:
            out[f"nr_free[zone {zid}][order {o}] (all types)"] = str(n)
    for zid, n in sorted(ms.free_pages.items()):
        out[f"NR_FREE_PAGES[zone {zid}]"] = str(n)
    return out


def projection(ms: MemState, m: sy.Machine = MACHINE, *, weak: bool = False) -> Any:
    """The information of :func:`fields` as plain data, cheap to compare (equal projections
    iff equal fields)."""
    alloc = {a.pfn: (a.order, a.owner) for a in ms.allocated.values()}
    fp = dict(ms.free_pages)
    if not weak:
        return (ms.free, alloc, ms.pageblock_mt[:m.pageblocks],
                {k: n for k, n in ms.nr_free.items() if n}, fp)
    per_order: Counter[tuple[int, int]] = Counter()
    for (zid, o, _), n in ms.nr_free.items():
        per_order[(zid, o)] += n
    return ({b.pfn: (b.order, b.list_zid, b.list_order, b.times_listed)
             for b in ms.free.values()}, alloc, {k: n for k, n in per_order.items() if n}, fp)


def diff(symbolic: MemState, real: MemState, m: sy.Machine = MACHINE, *,
         weak: bool = False) -> list[str]:
    """Every compared field on which the two states differ, one readable line each."""
    if projection(symbolic, m, weak=weak) == projection(real, m, weak=weak):
        return []
    a, b = fields(symbolic, m, weak=weak), fields(real, m, weak=weak)
    absent = "absent"
    out = []
    for k in sorted(a.keys() | b.keys()):
        dflt = "0" if k.startswith(("nr_free", "NR_FREE")) else absent
        x, y = a.get(k, dflt), b.get(k, dflt)
        if x != y:
            out.append(f"{k}: symbolic {x}, implementation {y}")
    return out


# --- the symbolic side, evaluated on concrete values ----------------------------------------

def _holds(path: sy.Path) -> bool:
    for c in path.conds:
        if not isinstance(c, bool):
            raise TypeError(f"a path condition is not a plain bool: {c!r}")
    return all(path.conds)


def sym_free(pre: sy.SymState, pfn: int, order: int, h: Helpers
             ) -> tuple[MemState, str, int]:
    """The symbolic free (or reclaim) of the block (pfn, order) on the plain state ``pre``:
    the post-state of the one enabled path, what the path did, and the order it linked."""
    paths = [p for p in sy.free_paths(pre, pfn, order, find_buddy=h.find_buddy,
                                      combine=h.combine) if _holds(p)]
    if len(paths) != 1:
        raise ValueError(f"{len(paths)} enabled symbolic free paths (exactly one expected)")
    p = paths[0]
    merges = p.final[1] - order
    return p.post.decode(), (f"symbolic path: {merges} merge{'s' * (merges != 1)}, block "
                             f"linked at {p.final[0]:#x} order {p.final[1]}"), p.final[1]


def sym_alloc(pre: sy.SymState, k: int, c: int, owner: int, h: Helpers
              ) -> tuple[MemState, str, int] | None:
    """The symbolic allocation of 2^k pages from the free block headed at ``c``: the post-state
    of the enabled path, what it did and the order of the block it split; None if no path
    allocates from ``c``."""
    paths = [p for p in sy.alloc_paths(pre, k, c, owner, split=h.split) if _holds(p)]
    if len(paths) > 1:
        raise ValueError(f"{len(paths)} enabled symbolic alloc paths from {c:#x}")
    if not paths:
        return None
    p = paths[0]
    return (p.post.decode(), f"symbolic path: split the free block {c:#x} of order {p.final[1]}",
            p.final[1])


# --- the real side ---------------------------------------------------------------------------

def _no_watermarks(a: PageAllocator) -> PageAllocator:
    """The symbolic transitions ignore watermarks: so does the copy the real call runs on."""
    for z in a.zones:
        z.wmark = [0] * len(z.wmark)
        z.lowmem_reserve = [0] * len(z.lowmem_reserve)
        z.boost = 0
        z.boosted = False
    return a


def _lists(a: PageAllocator) -> str:
    """The real free lists head to tail (list order is not compared, but decides choices)."""
    out = []
    for z in a.zones:
        for idx, h in enumerate(z.heads):
            w: list[str] = []
            while h != -1 and len(w) <= len(z._nxt):  # a corrupted list may have a cycle
                w.append(f"{h:#x}")
                h = z._nxt.get(h, -1)
            if z._lazy and idx == (z.max_order << 3 | MIGRATE_MOVABLE):
                w += [f"{p:#x}(boot)" for s, e in z._lazy for p in range(s, e, 1 << z.max_order)]
            if w:
                out.append(f"o{idx >> 3}mt{idx & 7}: {' '.join(w)}")
    return "; ".join(out) or "-"


def _in_place(a: PageAllocator) -> PageAllocator:
    """Turn the untouched boot ranges into list entries (same list order, same abstract
    state) so that a corruption can edit them."""
    for z in a.zones:
        if z._lazy:
            z._materialize_lazy(all_=True)
    return a


# --- corrupted states ------------------------------------------------------------------------

def _free_heads(a: PageAllocator) -> list[tuple[Zone, int, int, int]]:
    return [(z, p, idx >> 3, idx & 7) for z in a.zones for p, idx in sorted(z._buddy.items())]


def _c_unmerged(a: PageAllocator, salt: int) -> bool:
    """A free block of order j >= 1 replaced by its two free buddies of order j - 1 (the
    freelist.fully_merged invariant breaks)."""
    cands = [x for x in _free_heads(a) if x[2] >= 1]
    if not cands:
        return False
    z, p, o, mt = cands[salt % len(cands)]
    z.delete(p)
    z._link(p, (o - 1) << 3 | mt, False)
    z._link(p + (1 << (o - 1)), (o - 1) << 3 | mt, False)
    return True


def _c_other_list(a: PageAllocator, salt: int) -> bool:
    """A free block moved to the list of another migratetype than its pageblock's."""
    cands = _free_heads(a)
    if not cands:
        return False
    z, p, o, mt = cands[salt % len(cands)]
    z.delete(p)
    z._link(p, o << 3 | (mt + 1 + salt % 2) % MIGRATE_PCPTYPES, False)
    return True


def _c_nr_free(a: PageAllocator, salt: int) -> bool:
    """One list's nr_free counter off by one."""
    z = a.zones[0]
    o, mt = salt % (a.max_order + 1), salt % MIGRATE_PCPTYPES
    z.counts[o << 3 | mt] += 1
    return True


def _c_free_pages(a: PageAllocator, salt: int) -> bool:
    """NR_FREE_PAGES off (by +1 or -1)."""
    z = a.zones[0]
    z.free_pages += 1 if salt % 2 or z.free_pages == 0 else -1
    return True


def _c_free_inside_allocated(a: PageAllocator, salt: int) -> bool:
    """A free order-0 block on a list, inside an allocated block (freelist/buddy overlap)."""
    cands = sorted((p, r[0]) for p, r in a.allocated.items() if r[0] >= 1)
    if not cands:
        return False
    p, o = cands[salt % len(cands)]
    q = p + 1 + salt % ((1 << o) - 1)
    z = a.zones[0]
    z._link(q, a.pageblock_flags[q >> a.pageblock_order], False)
    return True


def _c_free_inside_free(a: PageAllocator, salt: int) -> bool:
    """A free order-0 block on a list, inside a bigger free block (two free blocks overlap)."""
    cands = [x for x in _free_heads(a) if x[2] >= 1]
    if not cands:
        return False
    z, p, o, mt = cands[salt % len(cands)]
    z._link(p + (1 << o) - 1, mt, False)
    return True


def _c_relabel(a: PageAllocator, salt: int) -> bool:
    """A pageblock holding free blocks relabelled to another migratetype (its free blocks are
    now on the wrong lists)."""
    pbo = a.pageblock_order
    cands = sorted({p >> pbo for _, p, _, _ in _free_heads(a)})
    if not cands:
        return False
    i = cands[salt % len(cands)]
    a.pageblock_flags[i] = (a.pageblock_flags[i] + 1 + salt % 2) % MIGRATE_PCPTYPES
    return True


CORRUPTIONS: dict[str, Callable[[PageAllocator, int], bool]] = {
    "unmerged buddies": _c_unmerged,
    "block on another migratetype's list": _c_other_list,
    "nr_free off by one": _c_nr_free,
    "NR_FREE_PAGES off by one": _c_free_pages,
    "free page inside an allocated block": _c_free_inside_allocated,
    "free page inside a free block": _c_free_inside_free,
    "pageblock relabelled": _c_relabel,
}
"""Corruptions of a real allocator state: each edits the zone's lists, counters or pageblock
bitmap in a way the implementation can represent (``salt`` picks the victim), and gives a state
that breaks at least one invariant. Return False when the state has no candidate."""


# --- the report ------------------------------------------------------------------------------

@dataclass
class Divergence:
    """Where the symbolic transition and the implementation disagree."""

    where: str  # "reachable state" or "corrupted state (<kind>)"
    op: str
    pre: MemState
    lists: str
    what: list[str]
    path: str = ""

    def render(self) -> str:
        lines = [f"DIVERGENCE on {'the' if self.where == 'boot state' else 'a'} {self.where}: "
                 f"{self.op}",
                 f"  pre-state:\n    {sy._describe(self.pre).replace(chr(10), chr(10) + '  ')}",
                 f"  real free lists (head to tail): {self.lists}"]
        if self.path:
            lines.append(f"  {self.path}")
        lines += [f"  differs: {w}" for w in self.what]
        return "\n".join(lines)


@dataclass
class Report:
    """What was compared, what was left out, and every divergence found."""

    states: int = 0
    corrupted: Counter[str] = field(default_factory=Counter)  # corrupted states, by kind
    compared: Counter[str] = field(default_factory=Counter)  # transitions, by kind
    coverage: Counter[str] = field(default_factory=Counter)  # what compared ones exercised
    skipped: Counter[str] = field(default_factory=Counter)
    broken: Counter[str] = field(default_factory=Counter)  # invariants broken by corruptions
    divergences: list[Divergence] = field(default_factory=list)
    runs: list[tuple[Bounds, MCResult]] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def corrupted_states(self) -> int:
        return sum(self.corrupted.values())

    @property
    def transitions(self) -> int:
        return sum(self.compared.values())

    def missing(self) -> list[str]:
        """Behaviours no comparison exercised (a clean result would be vacuous for them)."""
        want = [*REQUIRED, *(f"free on a corrupted state ({k})" for k in CORRUPTIONS)]
        return [w for w in want if not self.compared[w] + self.coverage[w]]

    @property
    def ok(self) -> bool:
        return (not self.divergences and bool(self.runs)
                and all(r.violation is None for _, r in self.runs)
                and not self.missing() and not self.notes)

    def summary(self) -> str:
        lines = [f"conformance of proofs/symbolic.py to PageAllocator: "
                 f"{'passed' if self.ok else 'FAILED'}: {self.states} reachable states and "
                 f"{self.corrupted_states} corrupted states, {self.transitions} transitions "
                 f"compared, {len(self.divergences)} divergences, {self.seconds:.1f} s",
                 *(f"  model checker, {_bounds(b)}: {r.summary()}" for b, r in self.runs)]
        lines += [f"  {n:8d}  {k}" for k, n in sorted(self.compared.items())]
        lines.append("  of which:")
        lines += [f"  {n:8d}  {k}" for k, n in sorted(self.coverage.items())]
        lines.append("  corrupted states: " + (", ".join(
            f"{k} ({n})" for k, n in sorted(self.corrupted.items())) or "-"))
        if self.skipped:
            lines.append("  not compared:")
            lines += [f"  {n:8d}  {k}" for k, n in sorted(self.skipped.items())]
        if self.broken:
            lines.append("  invariants broken by the corrupted pre-states: " + ", ".join(
                f"{k} ({n})" for k, n in sorted(self.broken.items())))
        for n in self.notes:
            lines.append(f"  note: {n}")
        missing = self.missing()
        if missing and not self.divergences:  # a run stopped early misses things anyway
            lines.append(f"  VACUOUS: never compared: {', '.join(missing)}")
        lines += [d.render() for d in self.divergences]
        return "\n".join(lines)

    def to_data(self) -> dict[str, Any]:
        return {"ok": self.ok, "states": self.states, "corrupted": dict(self.corrupted),
                "transitions": self.transitions, "compared": dict(self.compared),
                "coverage": dict(self.coverage),
                "skipped": dict(self.skipped), "broken": dict(self.broken),
                "divergences": [{"where": d.where, "op": d.op, "what": d.what, "path": d.path,
                                 "pre": sy.memstate_to_data(d.pre), "lists": d.lists}
                                for d in self.divergences],
                "seconds": self.seconds, "notes": self.notes,
                "model_checker": [f"{_bounds(b)}: {r.summary()}" for b, r in self.runs]}


REQUIRED: tuple[str, ...] = (
    "free", "free that merged", "free that merged up to MAX_PAGE_ORDER", "reclaim",
    "alloc (__rmqueue_smallest)", "alloc that split a block", "alloc (fallback, no migratetypes)",
    "alloc failed in both", "pagecache alloc (__rmqueue_smallest)", "boot state",
)
"""What a clean run must have compared at least once (besides a free on every corruption)."""


def state_key(ms: MemState, m: sy.Machine = MACHINE) -> tuple[Any, ...]:
    """Everything :meth:`proofs.symbolic.SymState.concrete` reads from ``ms`` (and a little
    more), hashable: two states with equal keys have equal symbolic successors."""
    return (tuple(sorted(ms.free.values())),
            tuple(sorted((a.pfn, a.order, a.owner) for a in ms.allocated.values())),
            bytes(ms.pageblock_mt[:m.pageblocks]),
            tuple(sorted((k, n) for k, n in ms.nr_free.items() if n)),
            tuple(sorted(ms.free_pages.items())))


class Sym:
    """The symbolic side of one pre-state. Results are memoised across states with the same
    :func:`state_key` (model-checker states that differ only in list order, LRU order...)."""

    MEMO_LIMIT = 100_000  # about 1.5 KB each

    def __init__(self, conf: Conformance, key: tuple[Any, ...], pre: sy.SymState) -> None:
        self.conf, self.key, self.pre = conf, key, pre

    def _memo(self, what: tuple[Any, ...], fn: Callable[[], Any]) -> Any:
        memo = self.conf.memo
        k = (self.key, *what)
        if k not in memo:
            if len(memo) >= self.MEMO_LIMIT:
                memo.clear()
            memo[k] = fn()
        return memo[k]

    def free(self, pfn: int, order: int) -> tuple[MemState, str, int]:
        r: tuple[MemState, str, int] = self._memo(
            ("free", pfn, order), lambda: sym_free(self.pre, pfn, order, self.conf.h))
        return r

    def alloc(self, k: int, c: int, owner: int) -> tuple[MemState, str, int] | None:
        r: tuple[MemState, str, int] | None = self._memo(
            ("alloc", k, c, owner), lambda: sym_alloc(self.pre, k, c, owner, self.conf.h))
        return r

    def options(self, k: int, owner: int) -> list[int]:
        """Every block the permissive symbolic allocation of order k may take."""
        r: list[int] = self._memo(("options", k, owner), lambda: [
            c for c in range(self.pre.m.pages) if self.alloc(k, c, owner) is not None])
        return r


class _Stop(Exception):  # noqa: N818 - control flow: enough divergences collected
    pass


# --- the check -------------------------------------------------------------------------------

class Conformance:
    """Compares the symbolic transitions with one allocator class, state by state."""

    def __init__(self, m: sy.Machine = MACHINE, helpers: Helpers = Helpers(),
                 max_divergences: int = 3) -> None:
        self.m = m
        self.h = helpers
        self.max_divergences = max_divergences
        self.report = Report()
        self.memo: dict[tuple[Any, ...], Any] = {}
        self._corrupted_keys: set[tuple[Any, ...]] = set()

    def _diverge(self, d: Divergence) -> None:
        self.report.divergences.append(d)
        if len(self.report.divergences) >= self.max_divergences:
            raise _Stop

    def _pre(self, a: PageAllocator, ms: MemState, where: str) -> Sym | None:
        """The symbolic side of ``ms`` (plain values); a divergence if the symbolic state
        cannot hold ``ms`` exactly."""
        key = state_key(ms, self.m)
        if ("pre", key) not in self.memo:
            try:
                pre = sy.SymState.concrete(ms, self.m, plain=True)
                bad = diff(pre.decode(), ms, self.m)
            except ValueError as e:
                bad = [f"the symbolic state cannot represent it: {e}"]
            self.memo[("pre", key)] = None if bad else pre
            if bad:
                self._diverge(Divergence(where, "(representing the state)", ms, _lists(a),
                                         [f"symbolic encoding of the pre-state: {b}"
                                          for b in bad]))
        pre = self.memo[("pre", key)]
        return None if pre is None else Sym(self, key, pre)

    def frees(self, a: PageAllocator, blob: bytes, ms: MemState, pre: Sym,
              where: str, tag: str = "") -> None:
        """Every free of a live block and every reclaim of a page-cache page. On a corrupted
        state (``tag``) a real call that raises is undefined there and not compared; on a
        reachable state it is a divergence."""
        rep = self.report
        for pfn, (order, _, owner, _) in sorted(a.allocated.items()):
            real = pickle.loads(blob)
            kind = "free" if owner == OWNER_PAGES else "reclaim"
            op = (f"free_pages_pfn({pfn:#x}, {order})" if kind == "free"
                  else f"reclaim of the page-cache page {pfn:#x} (_release_lru_page)")
            try:
                if kind == "free":
                    real.free_pages_pfn(pfn, order)
                else:
                    real._release_lru_page(0, pfn)
                after = _abstract(real)
            except Exception as e:
                if tag:
                    rep.skipped[f"{kind} undefined in the implementation on a corrupted "
                                f"state ({type(e).__name__})"] += 1
                    continue
                rep.compared[kind] += 1
                self._diverge(Divergence(where, op, ms, _lists(a), [
                    f"the implementation raised {type(e).__name__}: {e}"]))
                continue
            rep.compared[f"{kind} on a corrupted state ({tag})" if tag else kind] += 1
            try:
                post, path, final = pre.free(pfn, order)
            except (ValueError, TypeError) as e:
                self._diverge(Divergence(where, op, ms, _lists(a), [f"symbolic free: {e}"]))
                continue
            if not tag and final > order:
                rep.coverage[f"{kind} that merged"] += 1
                if final == self.m.max_order:
                    rep.coverage[f"{kind} that merged up to MAX_PAGE_ORDER"] += 1
            bad = diff(post, after, self.m)
            if bad:
                self._diverge(Divergence(where, op, ms, _lists(a), bad, path))

    def allocs(self, a: PageAllocator, blob: bytes, ms: MemState, pre: Sym,
               where: str) -> None:
        """Every order with each migratetype's mask, and one page-cache page."""
        for k in range(self.m.max_order + 1):
            for name, gfp, mt in ALLOC_MASKS:
                self._alloc(a, blob, ms, pre, k, mt, 0, f"alloc_pages_node(0, {name}, {k})",
                            where, partial(_alloc_pages_node, gfp=gfp, order=k))
        if any(b.list_zid == 0 for b in ms.free.values()):
            self._alloc(a, blob, ms, pre, 0, MIGRATE_MOVABLE, 1, "pagecache_add(0, 1)", where,
                        _pagecache_add)
        else:
            self.report.skipped["pagecache alloc with no free block (the real call reclaims "
                                "page cache first: two transitions)"] += 1

    def _alloc(self, a: PageAllocator, blob: bytes, ms: MemState, pre: Sym, k: int, mt: int,
               owner: int, op: str, where: str,
               call: Callable[[PageAllocator], int | None]) -> None:
        """Run ``call`` on a copy of ``a`` without watermarks and compare it with the
        symbolic allocation of 2^k pages for ``owner`` (0 alloc_pages, 1 page cache)."""
        rep = self.report
        label = "pagecache alloc" if owner else "alloc"
        real = _no_watermarks(pickle.loads(blob))
        # __rmqueue_smallest serves the request iff the requested type's lists hold a block of
        # order >= k; otherwise the kernel falls back (claim/steal), compared without types
        exact = any(b.list_zid == 0 and b.list_mt == mt and k <= b.list_order <= self.m.max_order
                    for b in ms.free.values())
        try:
            pfn = call(real)
            after = _abstract(real)
        except Exception as e:
            rep.compared[f"{label} (__rmqueue_smallest)"] += 1
            self._diverge(Divergence(where, op, ms, _lists(a), [
                f"the implementation raised {type(e).__name__}: {e}"]))
            return
        try:
            if pfn is None:
                rep.compared[f"{label} failed in both"] += 1
                options = pre.options(k, owner)
                bad = diff(ms, after, self.m)
                if options:
                    bad.insert(0, "the implementation failed, the symbolic allocation can take "
                                  + ", ".join(f"{c:#x}" for c in options))
                if bad:
                    self._diverge(Divergence(where, op + " -> NULL", ms, _lists(a), bad))
                return
            rep.compared[f"{label} (__rmqueue_smallest)" if exact
                         else f"{label} (fallback, no migratetypes)"] += 1
            got = pre.alloc(k, pfn, owner)
            if got is None:
                options = pre.options(k, owner)
                self._diverge(Divergence(where, f"{op} -> {pfn:#x}", ms, _lists(a), [
                    f"the implementation handed out {pfn:#x}, which no enabled symbolic path "
                    f"of an order-{k} allocation hands out (the symbolic paths take "
                    + (", ".join(f"{c:#x}" for c in options) or "nothing") + ")"]))
                return
        except (ValueError, TypeError) as e:
            self._diverge(Divergence(where, op, ms, _lists(a), [f"symbolic alloc: {e}"]))
            return
        post, path, cur = got
        if cur > k:
            rep.coverage[f"{label} that split a block"] += 1
        bad = diff(post, after, self.m, weak=not exact)
        if bad:
            self._diverge(Divergence(where, f"{op} -> {pfn:#x}", ms, _lists(a), bad, path))

    def corrupted(self, a: PageAllocator, blob: bytes, key: tuple[Any, ...]) -> None:
        """One corruption per distinct abstract state (:func:`state_key`): the kinds in turn,
        the next kind when this state offers no candidate; then every free and reclaim."""
        if key in self._corrupted_keys:
            return
        self._corrupted_keys.add(key)
        n = len(self._corrupted_keys)
        kinds = list(CORRUPTIONS.items())
        for i in range(len(kinds)):
            tag, corrupt = kinds[(n + i) % len(kinds)]
            c = _in_place(pickle.loads(blob))
            if not corrupt(c, n // len(kinds)):
                continue
            cms = _abstract(c)
            broken = violated(cms, fast=True)
            if not broken:
                self.report.notes.append(f"corruption {tag!r} left a valid state")
                continue
            self.report.broken.update(broken)
            self.report.corrupted[tag] += 1
            where = f"corrupted state ({tag})"
            pre = self._pre(c, cms, where)
            if pre is not None:
                self.frees(c, pickle.dumps(c), cms, pre, where, tag)
            return

    def boot(self, a: PageAllocator) -> None:
        """The symbolic boot state (SymState.initial: induction.init and the BMC start there)
        is the implementation's boot state."""
        solver = z3.Solver()
        solver.check()
        ms = _abstract(a)
        self.report.compared["boot state"] += 1
        bad = diff(sy.SymState.initial(self.m).decode(solver.model()), ms, self.m)
        if bad:
            self._diverge(Divergence("boot state", "boot (memblock_free_all)", ms, _lists(a),
                                     bad, "symbolic state: SymState.initial"))

    def on_state(self, a: PageAllocator, ms: MemState) -> None:
        """The model checker's callback: compare every transition of this state (on copies)."""
        rep = self.report
        rep.states += 1
        where = "reachable state"
        pre = self._pre(a, ms, where)
        if pre is None:
            return
        blob = pickle.dumps(a)
        self.frees(a, blob, ms, pre, where)
        self.allocs(a, blob, ms, pre, where)
        self.corrupted(a, blob, pre.key)


def _alloc_pages_node(a: PageAllocator, gfp: int, order: int) -> int | None:
    return a.alloc_pages_node(0, gfp, order)


def _pagecache_add(a: PageAllocator) -> int | None:
    """pagecache_add(0, 1) (an order-0 page-cache allocation): the new page's pfn or None."""
    before = set(a.nodes[0].lru)
    if not a.pagecache_add(0, 1):
        return None
    return next(p for p in a.nodes[0].lru if p not in before)


def _abstract(a: PageAllocator) -> MemState:
    from impl.abstraction import abstract

    return abstract(a)


def _bounds(b: Bounds) -> str:
    return (f"<= {b.max_live} live blocks (<= {b.max_pagecache} page cache), depth "
            f"{'unbounded' if b.depth is None else f'<= {b.depth}'}")


def check(m: sy.Machine = MACHINE, bounds: Sequence[Bounds] = DEFAULT_BOUNDS, *,
          helpers: Helpers = Helpers(),
          factory: Callable[[MachineConfig], PageAllocator] = PageAllocator,
          max_divergences: int = 3) -> Report:
    """Run the model checker on ``m``'s shape once per ``bounds`` and compare every transition
    of every state it reaches (and of corrupted states made from them); see the module
    docstring."""
    t0 = time.perf_counter()
    conf = Conformance(m, helpers, max_divergences)
    rep = conf.report
    try:
        conf.boot(factory(real_machine(m)))
        for b in bounds:
            r = ModelChecker(real_machine(m), b, factory).run(on_state=conf.on_state)
            rep.runs.append((b, r))
            if r.violation is not None:
                rep.notes.append("the model checker found a violation before the comparison "
                                 "finished:\n" + r.violation.render())
                break
    except _Stop:
        rep.notes.append(f"stopped after {max_divergences} divergences")
    rep.seconds = time.perf_counter() - t0
    return rep


LONG_BOUNDS: tuple[Bounds, ...] = (
    Bounds(max_live=2, max_pagecache=2, per_pfn=False),
    Bounds(max_live=3, max_pagecache=2, depth=6, per_pfn=False),
)
"""The runs of ``make verify-long``: 3 live blocks to depth 6."""

WHAT = ("the symbolic transitions of proofs/symbolic.py (free, reclaim, alloc) evaluated on "
        "every state the model checker reaches on the 16-page machine, and on corrupted "
        "states, equal the real PageAllocator's")


def verify_row(long: bool = False) -> Any:
    """The ``make verify`` row (a proofs.registry.CheckResult): passed iff no divergence."""
    from proofs.registry import CheckResult

    rep = check(MACHINE, LONG_BOUNDS if long else DEFAULT_BOUNDS)
    head = (f"{rep.states} reachable + {rep.corrupted_states} corrupted states, "
            f"{rep.transitions} transitions compared, {len(rep.divergences)} divergences")
    if rep.ok:
        detail = head
    else:
        lines = rep.summary().splitlines()
        detail = "\n".join([lines[0], *(x for x in lines if "VACUOUS" in x or "note:" in x),
                            *(rep.divergences[0].render().splitlines()[:12]
                              if rep.divergences else [])])
    return CheckResult("symbolic.conforms_to_impl", "conformance",
                       "passed" if rep.ok else "failed", rep.seconds, detail, rep.to_data())


# --- seeded divergences (the check's teeth) ---------------------------------------------------

class HandsOutTopHalf(PageAllocator):
    """__rmqueue_smallest + expand() hand out the HIGHEST 2^k pages of the block and put the
    lower halves back. Every invariant still holds (the model checker alone passes); only the
    comparison with the symbolic transition (which hands out the lowest pages) notices."""

    def _rmqueue_smallest(self, z: Zone, order: int, mt: int) -> int:
        for cur in range(order, self.max_order + 1):
            pfn = z.first(cur, mt)
            if pfn != -1:
                z.delete(pfn)
                z.free_pages -= 1 << order
                for j in range(cur - 1, order - 1, -1):
                    z.add(pfn + (1 << cur) - (1 << (j + 1)), j, mt, False)
                return pfn + (1 << cur) - (1 << order)
        return -1


@dataclass(frozen=True)
class SeededDivergence:
    """A change to one side only: a symbolic helper or the allocator class."""

    name: str
    what: str
    helpers: Helpers = Helpers()
    factory: Callable[[MachineConfig], PageAllocator] = PageAllocator


DIVERGENCES: dict[str, SeededDivergence] = {d.name: d for d in (
    SeededDivergence("symbolic-buddy-next-order",
                     "the symbolic free looks for the buddy one order too high "
                     "(pfn ^ (1 << (order + 1)))",
                     helpers=Helpers(find_buddy=lambda p, o: p ^ (1 << (o + 1)))),
    SeededDivergence("symbolic-merge-keeps-pfn",
                     "the symbolic merge keeps the freed pfn as the merged block's head "
                     "instead of buddy & pfn",
                     helpers=Helpers(combine=lambda p, b: p)),
    SeededDivergence("symbolic-split-forgets-half",
                     "the symbolic expand() forgets the smallest upper half",
                     helpers=Helpers(split=lambda p, lo, hi: expand_halves(p, lo, hi)[:-1])),
    SeededDivergence("impl-hands-out-top-half", " ".join((HandsOutTopHalf.__doc__ or "").split()),
                     factory=HandsOutTopHalf),
    SeededDivergence("impl-no-merge-order1",
                     " ".join((NoMergeOrder1.__doc__ or "").split())
                     + " (proofs/seeded_bugs.py)", factory=NoMergeOrder1),
)}
"""Seeded divergences: each must make :func:`check` fail with a readable report."""


# --- command line ----------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m proofs.conformance",
                                description="Compare the symbolic transitions of "
                                            "proofs/symbolic.py with the real allocator.")
    p.add_argument("--max-live", type=int, default=None,
                   help="one model-checker run with these bounds instead of DEFAULT_BOUNDS")
    p.add_argument("--max-pagecache", type=int, default=1)
    p.add_argument("--depth", type=int, default=None)
    p.add_argument("--diverge", choices=sorted(DIVERGENCES), default=None,
                   help="seed a divergence (the run must then fail)")
    p.add_argument("--json", metavar="PATH", default=None, help="write the report as JSON")
    args = p.parse_args(argv)
    bounds = DEFAULT_BOUNDS if args.max_live is None else (Bounds(
        max_live=args.max_live, max_pagecache=args.max_pagecache, depth=args.depth,
        per_pfn=False),)
    d = DIVERGENCES.get(args.diverge) if args.diverge else None
    if d is not None:
        print(f"seeded divergence {d.name}: {d.what}")
    rep = check(MACHINE, bounds, helpers=d.helpers if d else Helpers(),
                factory=d.factory if d else PageAllocator)
    print(rep.summary())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rep.to_data(), f, indent=1)
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
