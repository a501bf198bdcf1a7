"""Explicit-state model checking of the real slab allocator together with page allocations.

Breadth-first search from boot over :class:`impl.slab_common.SlabAllocator` (SLUB caches and
kmalloc, mm/slub.c and mm/slab_common.c) on top of :class:`impl.page_alloc.PageAllocator`:
the very classes the rest of the project runs, not a model of them. The kit is
proofs/modelcheck.py's: its :class:`~proofs.modelcheck.Op` (subclassed as :class:`SlabOp`),
:class:`~proofs.modelcheck.Bounds`, :class:`~proofs.modelcheck.Result` (so the last line is
the same ``RESULT ...`` line proofs/checks_extra.py parses), :class:`~proofs.modelcheck.Violation`
with the shortest path from boot, :class:`~proofs.modelcheck.CheckFailure`, and
:func:`~proofs.modelcheck.apply_op` for the page operations, which checks their step
properties (spec/rules.py), frames and expected errors exactly as the page model checker does.

Machine (:func:`slab_machine`): one node, one CPU (nr_cpus 1, so slub_min_objects is 8 as
calculate_order() computes it), one Normal zone of 128 pages, MAX_PAGE_ORDER 3, min watermark
4. Boot is kmem_cache_init (every kmalloc cache) plus one dedicated cache, :data:`CACHE_NAME`,
of :data:`CACHE_SIZE`-byte objects: two objects per order-3 slab, so a slab fills with two
live objects and a free into a full slab reaches the CPU partial list (mm/slub.c
__slab_free -> put_cpu_partial) within the live bound.

Bounds (:class:`SlabBounds`, default :data:`DEFAULT_BOUNDS`): at most ``max_live`` = 2 live
things (slab objects, large kmallocs and alloc_pages blocks together), and a state constraint:
a state whose caches in use hold more than ``max_slabs`` = 1 slab is checked but not expanded.
Empty slabs stay on the CPU slab and the partial lists until kmem_cache_shrink (mm/slub.c
keeps min_partial of them per node), so without that constraint every cache's retained slabs
and the page placements they cause multiply the states: with every size of 8/64/96/2k/8k/large
and page orders 0..1, even 2 live things and one slab had not finished 11,000 states in 60 s.

Operations, in every state:

* ``kmalloc(size, gfp, ctx)`` for every size of :data:`SIZES` (``--sizes``; by default
  kmalloc-8, kmalloc-rcl-96, kmalloc-2k and 8193, the first large kmalloc, of order 2), GFP_KERNEL
  and GFP_ATOMIC, process and hardirq context; ``kmem_cache_alloc`` of the dedicated cache
  the same way; the 96-byte calls carry __GFP_RECLAIMABLE (:data:`TYPE_BITS`), so they
  use kmalloc-rcl-96. Each object must come from the cache spec.slab.kmalloc_cache_name_spec
  names (kmalloc_type() and the size class). A blocking mask in hardirq context must raise
  SleepInAtomicError
  (mm/slub.c slab_pre_alloc_hook -> might_alloc; mm/page_alloc.c for the large path) and
  change nothing.
* ``kfree`` of every live kmalloc object and large kmalloc, ``kmem_cache_free`` of every live
  object of the dedicated cache.
* invalid calls, each of which must raise its typed error and change nothing: kfree of a
  free object of every slab of the caches in use (ObjectDoubleFreeError: a double free), of
  an interior address of every live object (NotObjectError), of an alloc_pages block
  (NotObjectError); kmem_cache_free of a live object to the wrong cache (WrongCacheError);
  free_pages of a slab's or a large kmalloc's pages (BadFreeError), and the page model
  checker's invalid page frees (double free of a free block, wrong order).
* ``kmem_cache_shrink`` of the dedicated cache and of every kmalloc cache in use
  (mm/slub.c __kmem_cache_shrink: flush the CPU slabs, free the empty slabs).
* ``kmalloc(0)`` in hardirq context with GFP_KERNEL (ZERO_SIZE_PTR, returned before
  might_alloc) and ``kfree(ZERO_SIZE_PTR)``: nothing may change.
* ``ksize`` of every live kmalloc object and large kmalloc (read-only; the answer must be
  spec.slab.kmalloc_ksize_spec of the requested size: the class, or the whole pages) and of
  every live object of the dedicated cache (at least its size); ``kmem_cache_destroy`` of
  the dedicated cache while it has live objects (CacheBusyError, nothing changed: the kernel
  reports "Objects remaining" and keeps the cache).
* ``alloc_pages_node(NUMA_NO_NODE, gfp, order)`` for the orders of :data:`PAGE_ORDERS`
  (``--page-orders``; 0 by default), same masks and contexts, and ``free_pages`` of every
  live block, through :func:`proofs.modelcheck.apply_op`.

Measured (one core, other work on the machine): the default run explores 5,043 states
(2,179 of them beyond max_slabs, checked and not expanded), 61,809 transitions (ksize and the
busy kmem_cache_destroy included), depth 25, in 31.6 s of CPU, frontier exhausted, every
witness seen. Each seeded bug is caught in under a second, with a 1- to 3-step path, or in
the boot state when it already breaks kmem_cache_init's own slabs.

Not covered: two nodes or CPUs (remote frees, get_any_partial, __GFP_THISNODE), the 64, 192,
256..1k, 4k and 8k classes and the DMA and cgroup kmalloc types, alloc_pages orders above 0
by default, kmem_cache_create after boot, merging, a successful kmem_cache_destroy, krealloc,
page cache and reclaim under slab pressure, and states with more than one slab in the caches
in use (a node partial list longer than one slab, discards at min_partial).

State identity (:func:`state_key`): the slab part of ``SlabAllocator.snapshot()`` (caches,
slabs with their freelists in order, large kmallocs, names, metadata objects), the page
allocator's complete key :func:`proofs.mcstate.state_key` (finer than the snapshot's page
part, which leaves out free-list order, the boot ranges and watermark boosts that decide
what later calls return), and the checker's own model of what is live. Equal keys therefore
mean equal snapshots (tests/test_modelcheck_slab.py checks it on every state reached) and
equal futures. A state is restored by unpickling the SlabAllocator (with its PageAllocator):
about 0.3 ms (0.35 ms to pickle a new state), against 0.15-0.4 ms for a snapshot; together
they are about half of the search's time, which is why it runs at ~175 states/s where the
page model checker, restoring plain data into one object, runs at ~1,000.

Checked in every new state: every slab invariant of spec/slab_state.py
(``slab_violations(abstract_slabs(sa))``), every page invariant of spec/invariants.py in its
block-level encoding, and the model: the allocator's live objects are exactly the boot
objects plus the model's, each in a slab of its own cache, large kmallocs are exactly the
model's with pages owned by kmalloc of the right order, and no two live things (objects,
large kmallocs, alloc_pages blocks) overlap. Because the model is part of the key, these
state checks are the frames: an allocation added exactly its object, a free removed exactly
it. Checked on every transition: the expected error type, the whole snapshot (and the
complete page key) unchanged after an error, slab operations not touching alloc_pages
blocks, and the page step properties of page operations. Vacuity: :data:`WITNESSES` must all
occur (``--require-witnesses``). At the end, the constant fields of the caches and the page
allocator are compared with boot.

Seeded bugs: proofs/seeded_slab_bugs.py (``--mutant NAME``); the violation's path is
replayed on the real allocators (``the real PageAllocator on the same path: ...``, read by
proofs/checks_extra.py) to show that it is the bug's.

Usage: ``python -m proofs.modelcheck_slab [--max-live L] [--max-slabs N] [--sizes 8,96,...]
[--page-orders 0,1] [--depth D] [--budget S] [--mutant NAME] [--require-witnesses]
[--require-exhaustive]``. Exit status as
proofs/modelcheck.py: 0 clean (and exhausted), 1 violation, 2 a witness never occurred, 3
not exhausted with ``--require-exhaustive``.
"""

from __future__ import annotations

import argparse
import marshal
import pickle
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

from impl.abstraction import abstract
from impl.buddy import get_order
from impl.machine import MachineConfig
from impl.slab_common import OWNER_KMALLOC_LARGE, SlabAllocator, abstract_slabs
from impl.slub import KmemCache
from proofs import mcstate
from proofs.modelcheck import (
    Before,
    Bounds,
    CheckFailure,
    Clock,
    Op,
    Result,
    Violation,
    apply_op,
    live_blocks,
    print_outcome,
)
from proofs.seeded_slab_bugs import SEEDED_SLAB_BUGS
from spec.context import Context
from spec.errors import (
    BadFreeError,
    CacheBusyError,
    DoubleFreeError,
    KmemError,
    NotObjectError,
    ObjectDoubleFreeError,
    SleepInAtomicError,
    WrongCacheError,
    WrongOrderError,
)
from spec.gfp import (
    __GFP_RECLAIMABLE,
    GFP_ATOMIC,
    GFP_KERNEL,
    format_gfp,
    gfpflags_allow_blocking,
)
from spec.invariants import violated
from spec.layout import NUMA_NO_NODE, PAGE_SHIFT, PAGE_SIZE
from spec.slab import (
    KMALLOC_MAX_CACHE_SIZE,
    SLAB_NO_MERGE,
    ZERO_SIZE_PTR,
    kmalloc_cache_name_spec,
    kmalloc_ksize_spec,
    zero_or_null_ptr,
)
from spec.slab_state import slab_violations

SIZES: tuple[int, ...] = (8, 96, 2048, 8193)
"""kmalloc sizes of the default run: kmalloc-8 (the smallest class, 512 objects on one page),
kmalloc-rcl-96 (a size_index[] class that is not a power of two), kmalloc-2k (order-2 slabs) and
8193, the first large kmalloc (order 2). ``--sizes`` takes others (64, 8192 ...): every
cache added multiplies the states (see :class:`SlabBounds`)."""
MASKS: tuple[int, ...] = (GFP_KERNEL, GFP_ATOMIC)
TYPE_BITS: dict[int, int] = {96: __GFP_RECLAIMABLE}
"""Extra mask bits of the kmalloc calls of a size: the 96-byte calls are reclaimable, so they
go to kmalloc-rcl-96 (kmalloc_type()) through the same size_index[] class. Replacing the
plain calls rather than adding calls keeps the state space the same size (a kmalloc type
added beside them doubled it: 9,482 states, 55 s CPU)."""
CONTEXTS: tuple[Context, ...] = (Context.PROCESS, Context.HARDIRQ)
PAGE_ORDERS: tuple[int, ...] = (0,)  # ``--page-orders 0,1`` for order-1 blocks too
CACHE_NAME = "mc_cache"
CACHE_SIZE = 12288  # order-3 slabs of 2 objects (calculate_order with slub_min_objects 8)
PAGES, MAX_ORDER, MIN_PAGES = 128, 3, 4

WITNESSES: tuple[str, ...] = (
    "kmalloc succeeded", "kmem_cache_alloc succeeded", "large kmalloc succeeded",
    "large kfree", "alloc_pages succeeded", "kfree", "kmem_cache_free",
    "new slab allocated", "slab discarded to the page allocator",
    "slab put on a CPU partial list", "allocation took a CPU partial slab",
    "slab put on a node partial list", "allocation took a node partial slab",
    "kmem_cache_shrink freed a slab",
    "raised SleepInAtomicError (slab)", "raised SleepInAtomicError (large kmalloc)",
    "raised SleepInAtomicError (pages)", "raised ObjectDoubleFreeError",
    "raised NotObjectError", "raised WrongCacheError", "raised BadFreeError",
    "raised DoubleFreeError", "raised WrongOrderError",
    "ksize answered", "raised CacheBusyError", "kmalloc(0) or kfree(ZERO_SIZE_PTR) answered",
)
"""What a clean run must exercise, or its "no violation" would be vacuous."""


# --- operations --------------------------------------------------------------------------------

@dataclass(frozen=True)
class SlabOp(Op):
    """A slab call (the page calls are plain :class:`proofs.modelcheck.Op`). ``kind``:
    kmalloc | cache_alloc | kfree | cache_free | shrink | ksize | destroy; ``expect`` as for
    Op. For ksize, ``size`` is the size the object was requested with."""

    size: int = 0
    addr: int = 0
    cache: str = ""

    def label(self) -> str:
        ctx = f", ctx={self.ctx.name.lower()}"
        if self.kind == "kmalloc":
            return f"kmalloc({self.size}, {format_gfp(self.gfp)}{ctx})"
        if self.kind == "cache_alloc":
            return f"kmem_cache_alloc({self.cache}, {format_gfp(self.gfp)}{ctx})"
        if self.kind == "kfree":
            return f"kfree({self.addr:#x})"
        if self.kind == "cache_free":
            return f"kmem_cache_free({self.cache}, {self.addr:#x})"
        if self.kind == "ksize":
            return f"ksize({self.addr:#x})"
        if self.kind == "destroy":
            return f"kmem_cache_destroy({self.cache})"
        return f"kmem_cache_shrink({self.cache})"


@dataclass(frozen=True)
class SlabBounds(Bounds):
    """proofs.modelcheck.Bounds (``max_live`` counts slab objects, large kmallocs and
    alloc_pages blocks; no page cache here) and ``max_slabs``: a state with more slabs in the
    caches the search uses is checked but not expanded (a state constraint: empty slabs stay
    on the CPU and partial lists until kmem_cache_shrink, so without it the retained slabs of
    every cache multiply the states)."""

    max_live: int = 2
    max_pagecache: int = 0
    max_slabs: int | None = 1


Model = dict[int, tuple[str, int]]
"""The checker's own model of the slab side: address -> (cache name, or ``large`` for a large
kmalloc; requested size). alloc_pages blocks are the page allocator's OWNER_PAGES blocks."""

LARGE = "large"


def _sleeps(gfp: int, ctx: Context) -> type[KmemError] | None:
    return SleepInAtomicError if ctx.atomic and gfpflags_allow_blocking(gfp) else None


class OpSpace:
    """The operations tried in a state, built once where they do not depend on it."""

    def __init__(self, sa: SlabAllocator, sizes: tuple[int, ...] = SIZES,
                 page_orders: tuple[int, ...] = PAGE_ORDERS) -> None:
        self.allocs: list[Op] = []
        for gfp in MASKS:
            for ctx in CONTEXTS:
                self.allocs += [SlabOp("kmalloc", gfp=gfp | TYPE_BITS.get(n, 0), ctx=ctx,
                                       size=n, expect=_sleeps(gfp, ctx)) for n in sizes]
                self.allocs.append(SlabOp("cache_alloc", gfp=gfp, ctx=ctx, cache=CACHE_NAME,
                                          expect=_sleeps(gfp, ctx)))
                self.allocs += [Op("alloc", nid=NUMA_NO_NODE, gfp=gfp, order=o, ctx=ctx,
                                   expect=_sleeps(gfp, ctx)) for o in page_orders]
        self.caches = [CACHE_NAME, *dict.fromkeys(
            kmalloc_cache_name_spec(n, GFP_KERNEL | TYPE_BITS.get(n, 0))
            for n in sizes if n <= KMALLOC_MAX_CACHE_SIZE)]
        self.shrinks = [SlabOp("shrink", cache=c) for c in self.caches]
        # kmalloc(0) (in hardirq context with GFP_KERNEL: ZERO_SIZE_PTR comes before
        # might_alloc) and kfree(ZERO_SIZE_PTR): answered without touching anything
        self.noops = [SlabOp("kmalloc", gfp=GFP_KERNEL, ctx=Context.HARDIRQ, size=0),
                      SlabOp("kfree", addr=ZERO_SIZE_PTR)]

    def nr_slabs(self, sa: SlabAllocator) -> int:
        """Slabs of the caches the search uses (the boot caches' are left out)."""
        return sum(len(sa.by_name[c].slabs) for c in self.caches)

    def ops(self, sa: SlabAllocator, model: Model, b: Bounds) -> list[Op]:
        """Every operation tried in state ``sa`` with live model ``model``."""
        pa = sa.pages
        blocks = live_blocks(pa)
        ops: list[Op] = list(self.allocs) if len(model) + len(blocks) < b.max_live else []
        wrong = {CACHE_NAME: sa.kmalloc_slab(8, GFP_KERNEL).name}
        busy = False
        for addr, (cache, size) in sorted(model.items()):
            ops.append(SlabOp("ksize", addr=addr, size=size))
            busy = busy or cache == CACHE_NAME
            if cache == CACHE_NAME:
                ops.append(SlabOp("cache_free", addr=addr, cache=cache))
                ops.append(SlabOp("cache_free", addr=addr, cache=wrong[CACHE_NAME],
                                  expect=WrongCacheError))
            else:
                ops.append(SlabOp("kfree", addr=addr))
                if cache != LARGE:
                    ops.append(SlabOp("cache_free", addr=addr, cache=CACHE_NAME,
                                      expect=WrongCacheError))
            inner = addr + (PAGE_SIZE if cache == LARGE else sa.by_name[cache].size // 2)
            ops.append(SlabOp("kfree", addr=inner, expect=NotObjectError))
            if cache == LARGE:
                pfn = (addr - pa.page_offset) >> PAGE_SHIFT
                ops.append(Op("bad_free", pfn=pfn, order=pa.allocated[pfn][0],
                              expect=BadFreeError))
        for name in self.caches:  # a double free: a free object of every slab in use
            s = sa.by_name[name]
            for pfn in sorted(s.slabs):
                slab = s.slabs[pfn]
                idx = slab.free.find(1)
                if idx >= 0:
                    ops.append(SlabOp("kfree", addr=slab.base + idx * s.size,
                                      expect=ObjectDoubleFreeError))
        slab_pfn = min(sa.by_name[CACHE_NAME].slabs, default=None)
        if slab_pfn is not None:  # free_pages of a slab's pages
            ops.append(Op("bad_free", pfn=slab_pfn, order=sa.slab_of_pfn[slab_pfn].order,
                          expect=BadFreeError))
        for pfn, order in sorted(blocks.items()):
            ops.append(Op("free", pfn=pfn, order=order))
            ops.append(Op("bad_free", pfn=pfn, order=order + 1 if order < pa.max_order
                          else order - 1, expect=WrongOrderError))
            ops.append(SlabOp("kfree", addr=pa.pfn_to_virt(pfn), expect=NotObjectError))
        free = next((p for z in pa.zones for p, _o, _m in z.free_blocks()), None)
        if free is not None:
            ops.append(Op("bad_free", pfn=free, order=0, expect=DoubleFreeError))
        if busy:  # kmem_cache_destroy with live objects: refused, nothing changed
            ops.append(SlabOp("destroy", cache=CACHE_NAME, expect=CacheBusyError))
        ops += self.noops
        ops += self.shrinks
        return ops


# --- state, key and checks -----------------------------------------------------------------------

def slab_machine(pages: int = PAGES, max_order: int = MAX_ORDER,
                 min_pages: int = MIN_PAGES) -> MachineConfig:
    """One node, one CPU, one Normal zone of ``pages`` pages."""
    return MachineConfig.flat(pages, nodes=1, max_order=max_order, min_pages=min_pages,
                              name=f"slab-flat{pages}")


def boot(machine: MachineConfig, cls: type[SlabAllocator] = SlabAllocator) -> SlabAllocator:
    """kmem_cache_init on ``machine`` (nr_cpus 1), then the dedicated cache."""
    from impl.page_alloc import PageAllocator

    sa = cls(PageAllocator(machine), nr_cpus=1)
    sa.kmem_cache_create(CACHE_NAME, CACHE_SIZE, 0, SLAB_NO_MERGE)
    sa.pages.effects.clear()
    return sa


def live_objects(sa: SlabAllocator) -> dict[int, str]:
    """Every allocated slab object of every cache (address -> cache), from the slabs' own free
    maps (mm/slub.c: an object is allocated iff it is on no freelist)."""
    out: dict[int, str] = {}
    for s in sa.slab_caches:
        for slab in s.slabs.values():
            for i, f in enumerate(slab.free):
                if not f:
                    out[slab.base + i * s.size] = s.name
    return out


def snapshot_slab_part(snap: tuple[object, ...]) -> tuple[object, ...]:
    """SlabAllocator.snapshot() without its page part (index 5), which the complete page key
    replaces."""
    return snap[:5] + snap[6:]


StateKey = tuple[Any, ...]


def state_key(sa: SlabAllocator, model: Model, snap: tuple[object, ...] | None = None
              ) -> StateKey:
    """The search's key: the snapshot's slab part, the page allocator's complete key
    (proofs/mcstate.py; kswapd's awake flag included) and the model."""
    if snap is None:
        snap = sa.snapshot()
    return (snapshot_slab_part(snap), mcstate.state_key(sa.pages),
            tuple(sorted(model.items())))


def _span(sa: SlabAllocator, addr: int, cache: str, size: int) -> tuple[int, int]:
    if cache == LARGE:
        return addr, addr + (PAGE_SIZE << int(get_order(size)))
    return addr, addr + sa.by_name[cache].size


def model_violations(sa: SlabAllocator, model: Model, boot_live: dict[int, str]) -> list[str]:
    """The checker's own model: what is live is exactly boot's objects plus the model's, each
    of its own cache; large kmallocs are the model's; nothing live overlaps."""
    pa = sa.pages
    out: list[str] = []
    want = dict(boot_live)
    want.update({a: c for a, (c, _) in model.items() if c != LARGE})
    have = live_objects(sa)
    if have != want:
        extra = sorted(set(have.items()) - set(want.items()))[:3]
        lost = sorted(set(want.items()) - set(have.items()))[:3]
        out.append(f"model.live_objects: allocated but not live in the model {extra}; live "
                   f"in the model but not allocated {lost}")
    for addr, (cache, size) in model.items():
        if cache == LARGE:
            continue
        s = sa.by_name[cache]
        if s.size < size:
            out.append(f"model.class: {addr:#x} of {size} bytes in {s.size}-byte objects")
    large = {a for a, (c, _) in model.items() if c == LARGE}
    if set(sa.large) != large:
        out.append(f"model.large: large kmallocs {sorted(sa.large)}, model {sorted(large)}")
    for a in large & set(sa.large):
        pfn, order = sa.large[a]
        rec = pa.allocated.get(pfn)
        if (rec is None or rec[0] != order or rec[2] != OWNER_KMALLOC_LARGE
                or order != get_order(model[a][1]) or pa.pfn_to_virt(pfn) != a):
            out.append(f"model.large: {a:#x} pages {rec} order {order}")
    spans = sorted([_span(sa, a, c, n) for a, (c, n) in model.items()]
                   + [(pa.pfn_to_virt(p), pa.pfn_to_virt(p + (1 << o)))
                      for p, o in live_blocks(pa).items()])
    for (s0, e0), (s1, e1) in pairwise(spans):
        if e0 > s1:
            out.append(f"model.overlap: [{s0:#x}, {e0:#x}) and [{s1:#x}, {e1:#x})")
    return out


def state_violations(sa: SlabAllocator, model: Model, boot_live: dict[int, str]) -> list[str]:
    """Every check of a state: slab invariants, page invariants, the model."""
    bad = slab_violations(abstract_slabs(sa))
    bad += [f"page.{n}" for n in violated(abstract(sa.pages), fast=True)]
    return bad + model_violations(sa, model, boot_live)


def _names(bad: list[str]) -> list[str]:
    """The rule names of violation descriptions (``rule: message``)."""
    return list(dict.fromkeys(b.split(":", 1)[0] for b in bad))


def constants(sa: SlabAllocator) -> tuple[Any, ...]:
    """The fields the key leaves out because no operation of the search writes them."""
    return (tuple((s.name, s.alive, s.allocflags, s.min_order, s.min_objects, s.cpu_partial,
                   s.usersize, s.ctor) for s in sa.slab_caches),
            tuple(tuple(None if s is None else s.name for s in row)
                  for row in sa.kmalloc_caches),
            sa.nr_cpus, tuple(sa.cpus),
            mcstate.constants_fingerprint(sa.pages)[:3])  # [3:] are object ids: unpickled anew


# --- one transition ----------------------------------------------------------------------------

@dataclass
class Summary:
    """Where the slabs of the caches in use are: for the witnesses."""

    slabs: dict[str, frozenset[int]]
    cpu_slab: dict[str, int]
    cpu_partial: dict[str, frozenset[int]]
    node_partial: dict[str, frozenset[int]]

    @staticmethod
    def of(sa: SlabAllocator, caches: Sequence[str]) -> Summary:
        out = Summary({}, {}, {}, {})
        for name in caches:
            s: KmemCache = sa.by_name[name]
            c = s.cpu[sa.cpus[0]]
            out.slabs[name] = frozenset(s.slabs)
            out.cpu_slab[name] = -1 if c.slab is None else c.slab.pfn
            out.cpu_partial[name] = frozenset(p.pfn for cc in s.cpu.values() for p in cc.partial)
            out.node_partial[name] = frozenset(p.pfn for n in s.node for p in n.partial)
        return out


def _witness(before: Summary, after: Summary, op: Op, cov: Counter[str]) -> None:
    for name, slabs in after.slabs.items():
        old = before.slabs[name]
        if slabs - old:
            cov["new slab allocated"] += 1
        if old - slabs:
            cov["slab discarded to the page allocator"] += 1
            if op.kind == "shrink":
                cov["kmem_cache_shrink freed a slab"] += 1
        if after.cpu_partial[name] - before.cpu_partial[name]:
            cov["slab put on a CPU partial list"] += 1
        if after.node_partial[name] - before.node_partial[name]:
            cov["slab put on a node partial list"] += 1
        if op.kind in ("kmalloc", "cache_alloc"):
            cs = after.cpu_slab[name]
            if cs != before.cpu_slab[name] and cs in before.cpu_partial[name]:
                cov["allocation took a CPU partial slab"] += 1
            if cs != before.cpu_slab[name] and cs in before.node_partial[name]:
                cov["allocation took a node partial slab"] += 1


def apply_slab_op(sa: SlabAllocator, op: Op, model: Model, cov: Counter[str],
                  before: Before, snap: tuple[object, ...]) -> tuple[object, bool]:
    """Run ``op`` on ``sa`` and check the transition; update ``model``. Returns (result,
    whether the state may have changed). Page operations go to proofs.modelcheck.apply_op;
    ``before`` and ``snap`` describe the state before the call."""
    pa = sa.pages
    if not isinstance(op, SlabOp):
        if op.expect is SleepInAtomicError:
            cov["raised SleepInAtomicError (pages)"] += 1
        ret, changed = apply_op(pa, op, cov, before)
        if op.expect is not None:  # apply_op compared the page state (mcstate.same)
            return ret, False
        if op.kind == "alloc" and ret is not None:
            cov["alloc_pages succeeded"] += 1
        return ret, changed
    if op.expect is not None:
        try:
            _call(sa, op)
        except KmemError as e:
            if type(e) is not op.expect:
                raise CheckFailure([f"error.{op.expect.__name__}"],
                                   f"raised {type(e).__name__}: {e}") from None
        else:
            raise CheckFailure([f"error.{op.expect.__name__}"], "the call did not raise")
        if sa.snapshot() != snap or not mcstate.same(pa, before.capture):
            raise CheckFailure(["error.state_unchanged"], f"{op.expect.__name__} changed the state")
        what = op.expect.__name__
        if op.expect is SleepInAtomicError:
            what += " (large kmalloc)" if op.size > KMALLOC_MAX_CACHE_SIZE else " (slab)"
        cov[f"raised {what}"] += 1
        return what, False
    try:
        ret = _call(sa, op)
    except KmemError as e:
        raise CheckFailure([f"error.unexpected_{type(e).__name__}"],
                           f"a valid call raised: {e}") from None
    if (op.kind == "kmalloc" and op.size == 0) or (op.kind == "kfree"
                                                   and zero_or_null_ptr(op.addr)):
        if op.kind == "kmalloc" and ret != ZERO_SIZE_PTR:
            raise CheckFailure(["slab.kmalloc_zero"], f"{op.label()} = {ret!r}, not "
                               "ZERO_SIZE_PTR")
        if sa.snapshot() != snap or not mcstate.same(pa, before.capture):
            raise CheckFailure(["frame.noop"], f"{op.label()} changed the state")
        cov["kmalloc(0) or kfree(ZERO_SIZE_PTR) answered"] += 1
        return ret, False
    if op.kind == "ksize":  # read-only: checked against the promise, the state not compared
        cache = model[op.addr][0]
        want = op.size if cache == CACHE_NAME else kmalloc_ksize_spec(op.size)
        if not isinstance(ret, int) or ret < op.size or (cache != CACHE_NAME and ret != want):
            raise CheckFailure(["slab.ksize"], f"{op.label()} = {ret} for an object of "
                               f"{op.size} bytes from {cache}: want "
                               f"{'at least ' if cache == CACHE_NAME else ''}{want}")
        cov["ksize answered"] += 1
        return ret, False
    if live_blocks(pa) != before.live:
        raise CheckFailure(["frame.pages"], f"{op.label()} changed alloc_pages blocks")
    if op.kind in ("kmalloc", "cache_alloc"):
        if ret is None:
            cov["slab allocation failed"] += 1
            return None, True
        assert isinstance(ret, int)
        if ret in model:
            raise CheckFailure(["frame.alloc"], f"{ret:#x} is live already")
        if op.kind == "cache_alloc":
            model[ret] = (CACHE_NAME, CACHE_SIZE)
            cov["kmem_cache_alloc succeeded"] += 1
        elif op.size > KMALLOC_MAX_CACHE_SIZE:
            model[ret] = (LARGE, op.size)
            cov["large kmalloc succeeded"] += 1
        else:
            # the cache the spec names (kmalloc_type, size class): model_violations then
            # finds the object in it or reports model.live_objects
            model[ret] = (kmalloc_cache_name_spec(op.size, op.gfp), op.size)
            cov["kmalloc succeeded"] += 1
    elif op.kind in ("kfree", "cache_free"):
        cache, _ = model.pop(op.addr)
        cov["large kfree" if cache == LARGE else
            "kfree" if op.kind == "kfree" else "kmem_cache_free"] += 1
    return ret, True


def _call(sa: SlabAllocator, op: SlabOp) -> object:
    if op.kind == "kmalloc":
        return sa.kmalloc(op.size, op.gfp, cpu=op.cpu, ctx=op.ctx)
    if op.kind == "cache_alloc":
        return sa.kmem_cache_alloc(op.cache, op.gfp, cpu=op.cpu, ctx=op.ctx)
    if op.kind == "kfree":
        sa.kfree(op.addr, cpu=op.cpu)
        return None
    if op.kind == "cache_free":
        sa.kmem_cache_free(op.cache, op.addr, cpu=op.cpu)
        return None
    if op.kind == "ksize":
        return sa.ksize(op.addr)
    if op.kind == "destroy":
        sa.kmem_cache_destroy(op.cache, cpu=op.cpu)
        return None
    return sa.kmem_cache_shrink(op.cache, cpu=op.cpu)


def _describe(op: Op, ret: object) -> str:
    if op.expect is not None:
        return f"{op.label()} -> {op.expect.__name__}"
    if op.kind in ("kmalloc", "cache_alloc", "alloc"):
        return f"{op.label()} -> {'None' if ret is None else hex(ret)}"  # type: ignore[arg-type]
    if op.kind in ("shrink", "ksize"):
        return f"{op.label()} -> {ret}"
    return op.label()


# --- the search --------------------------------------------------------------------------------

class SlabModelChecker:
    """BFS over the states of one slab allocator class on one machine."""

    def __init__(self, machine: MachineConfig | None = None, bounds: SlabBounds | None = None,
                 cls: type[SlabAllocator] = SlabAllocator, name: str = "",
                 sizes: tuple[int, ...] = SIZES, page_orders: tuple[int, ...] = PAGE_ORDERS
                 ) -> None:
        self.machine = machine or slab_machine()
        self.bounds = bounds or SlabBounds()
        self.sizes = sizes
        self.page_orders = page_orders
        self.cls = cls
        self.name = name or self.machine.name

    def run(self, progress: Callable[[Result], None] | None = None,
            on_state: Callable[[SlabAllocator, Model, StateKey], None] | None = None
            ) -> Result:
        """BFS from boot; ``on_state(sa, model, key)`` sees every distinct state (read only)."""
        b = self.bounds
        res = Result(machine=self.name, bounds=(
            f"max_live={b.max_live},max_slabs={'-' if b.max_slabs is None else b.max_slabs},"
            f"depth={'-' if b.depth is None else b.depth},"
            f"sizes={'/'.join(map(str, self.sizes))},cache={CACHE_SIZE}"))
        t0 = time.perf_counter()
        c0 = time.process_time()
        sa = boot(self.machine, self.cls)
        mcstate.check_layout(sa.pages)
        consts = constants(sa)
        space = OpSpace(sa, self.sizes, self.page_orders)
        boot_live = live_objects(sa)
        model: Model = {}
        snap = sa.snapshot()
        key = state_key(sa, model, snap)
        visited: dict[bytes, int] = {marshal.dumps(key, 2): 0}
        parents: list[tuple[int, Op | None, object]] = [(-1, None, None)]
        res.states = 1

        def path(i: int) -> tuple[list[str], list[Op]]:
            labels: list[str] = []
            ops: list[Op] = []
            while parents[i][0] >= 0:
                pi, op, ret = parents[i]
                assert op is not None
                labels.append(_describe(op, ret))
                ops.append(op)
                i = pi
            return labels[::-1], ops[::-1]

        if on_state is not None:
            on_state(sa, model, key)
        bad = state_violations(sa, model, boot_live)
        if bad:
            res.violation = Violation(_names(bad), [], "in the boot state: " + "; ".join(bad))
            return self._finish(res, t0, c0)
        frontier: deque[tuple[int, bytes, Model, int]] = deque([(0, pickle.dumps(sa), {}, 0)])
        clock = Clock(res, b.budget_s, progress, t0, c0)
        cut = False
        while frontier and res.violation is None:
            idx, blob, m0, depth = frontier.popleft()
            if b.depth is not None and depth >= b.depth:
                cut = True
                continue
            sa = pickle.loads(blob)
            snap = sa.snapshot()
            key0 = state_key(sa, m0, snap)
            before = Before.of(sa.pages)
            summ = Summary.of(sa, space.caches)
            dirty = False
            for op in space.ops(sa, m0, b):
                if dirty:
                    sa = pickle.loads(blob)
                    before = Before.of(sa.pages, before.capture)
                    dirty = False
                res.transitions += 1
                model = dict(m0)
                try:
                    ret, changed = apply_slab_op(sa, op, model, res.coverage, before, snap)
                    sa.pages.effects.clear()
                    if not changed:
                        continue
                    dirty = True
                    snap2 = sa.snapshot()
                    key = state_key(sa, model, snap2)
                    if key == key0 and op.kind != "shrink":
                        raise CheckFailure(["frame.no_change"],
                                           f"{op.label()} completed without changing anything")
                    _witness(summ, Summary.of(sa, space.caches), op, res.coverage)
                except CheckFailure as f:
                    labels, ops = path(idx)
                    res.violation = Violation(f.what, [*labels, f"{op.label()}  <-- here"],
                                              f.detail, [*ops, op])
                    break
                except Exception as e:  # an unexpected crash is a finding
                    labels, ops = path(idx)
                    res.violation = Violation([f"crash.{type(e).__name__}"],
                                              [*labels, f"{op.label()}  <-- here"], str(e),
                                              [*ops, op])
                    break
                kb = marshal.dumps(key, 2)
                if kb in visited:
                    continue
                sidx = len(parents)
                visited[kb] = sidx
                parents.append((idx, op, ret))
                res.states += 1
                res.depth = max(res.depth, depth + 1)
                if on_state is not None:
                    on_state(sa, model, key)
                bad = state_violations(sa, model, boot_live)
                if bad:
                    labels, ops = path(sidx)
                    labels[-1] += "  <-- reaches a bad state"
                    res.violation = Violation(_names(bad), labels, "; ".join(bad[:4]), ops)
                    break
                if b.max_slabs is not None and space.nr_slabs(sa) > b.max_slabs:
                    res.coverage["state beyond max_slabs (checked, not expanded)"] += 1
                    continue
                frontier.append((sidx, pickle.dumps(sa), model, depth + 1))
                if res.states >= b.max_states:
                    res.notes.append(f"stopped at max_states {b.max_states}")
                    frontier.clear()
                    break
            if clock.out_of_time(len(frontier)):
                break
        if res.violation is None and constants(sa) != consts:
            res.violation = Violation(["modelcheck.constant_changed"], [],
                                      "a field the key leaves out changed: the search is unsound")
        res.exhausted = res.violation is None and not res.notes and not cut
        if cut and res.violation is None:
            res.notes.append(f"depth bound {b.depth} cut the search")
        return self._finish(res, t0, c0)

    @staticmethod
    def _finish(res: Result, t0: float, c0: float) -> Result:
        res.seconds = time.perf_counter() - t0
        res.cpu_seconds = time.process_time() - c0
        return res


def replay(machine: MachineConfig, ops: Sequence[Op],
           cls: type[SlabAllocator] = SlabAllocator, sizes: tuple[int, ...] = SIZES,
           page_orders: tuple[int, ...] = PAGE_ORDERS) -> str:
    """Run ``ops`` from boot on a fresh ``cls`` with every check of the search: ``clean``,
    ``diverges at step N: ...`` (an operation of the path is not valid here) or ``violates R
    at step N``. A seeded bug's violation is the bug's when the real allocators replay the
    same path cleanly."""
    sa = boot(machine, cls)
    boot_live = live_objects(sa)
    model: Model = {}
    space = OpSpace(sa, sizes, page_orders)
    bad = state_violations(sa, model, boot_live)
    if bad:
        return f"violates {', '.join(_names(bad))} at step 0 (boot)"
    for i, op in enumerate(ops, 1):
        if op not in space.ops(sa, model, SlabBounds(max_live=1 << 30)):
            return f"diverges at step {i}: {op.label()} is not an operation of this state"
        try:
            apply_slab_op(sa, op, model, Counter(), Before.of(sa.pages), sa.snapshot())
        except CheckFailure as f:
            return f"violates {', '.join(f.what)} at step {i}"
        except KmemError as e:
            return f"diverges at step {i}: {op.label()} raised {type(e).__name__}"
        sa.pages.effects.clear()
        bad = state_violations(sa, model, boot_live)
        if bad:
            return f"violates {', '.join(_names(bad))} at step {i}"
    return "clean"


MUTANTS: dict[str, type[SlabAllocator]] = {b.name: b.cls for b in SEEDED_SLAB_BUGS.values()}
"""The seeded slab bugs of proofs/seeded_slab_bugs.py, by name (``--mutant NAME``)."""

DEFAULT_BOUNDS = SlabBounds(max_live=2, max_slabs=1)
MUTANT_BOUNDS = SlabBounds(max_live=3, max_slabs=2)
BUDGET_S = 120.0  # the make verify row's wall-clock budget (~30 s alone; a loaded 2-core machine)
REPLAY = "the real PageAllocator on the same path: "  # proofs/checks_extra.py reads this


def missing_witnesses(res: Result) -> list[str]:
    return [w for w in WITNESSES if not res.coverage[w]]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m proofs.modelcheck_slab",
                                description="Explicit-state model checking of the slab "
                                            "allocator with page allocations.")
    p.add_argument("--max-live", type=int, default=None,
                   help=f"live objects, large kmallocs and page blocks (default "
                        f"{DEFAULT_BOUNDS.max_live})")
    p.add_argument("--max-slabs", type=int, default=None,
                   help=f"slabs of the caches in use; a state with more is checked, not "
                        f"expanded (default {DEFAULT_BOUNDS.max_slabs})")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)),
                   help="kmalloc sizes, comma-separated (default %(default)s)")
    p.add_argument("--page-orders", default=",".join(map(str, PAGE_ORDERS)),
                   help="alloc_pages orders, comma-separated (default %(default)s)")
    p.add_argument("--depth", type=int, default=None, help="stop at this BFS depth")
    p.add_argument("--max-states", type=int, default=None)
    p.add_argument("--budget", type=float, default=None,
                   help="stop after this many seconds (the bound is then NOT exhausted)")
    p.add_argument("--require-witnesses", action="store_true",
                   help="fail if a vacuity witness (new slab, discard, partial lists, each "
                        "error...) never occurred")
    p.add_argument("--require-exhaustive", action="store_true",
                   help="exit 3 unless the whole bounded space was explored")
    p.add_argument("--mutant", choices=sorted(MUTANTS), default=None,
                   help="check a seeded-bug variant of the slab allocator instead")
    args = p.parse_args(argv)
    machine = slab_machine()
    base = MUTANT_BOUNDS if args.mutant else DEFAULT_BOUNDS
    over = {k: v for k, v in (("max_live", args.max_live), ("max_slabs", args.max_slabs),
                              ("depth", args.depth),
                              ("max_states", args.max_states), ("budget_s", args.budget))
            if v is not None}
    bounds = replace(base, **over)
    cls = MUTANTS[args.mutant] if args.mutant else SlabAllocator
    sizes = tuple(int(x) for x in args.sizes.split(","))
    orders = tuple(int(x) for x in args.page_orders.split(","))
    print(f"model checking {'mutant ' + args.mutant if args.mutant else 'SlabAllocator'} on "
          f"{machine.name}: {machine.total_pages} pages, 1 node, 1 CPU, MAX_PAGE_ORDER "
          f"{machine.max_order}, min {MIN_PAGES}; kmalloc caches and {CACHE_NAME} "
          f"({CACHE_SIZE}-byte objects); at most {bounds.max_live} live objects, large "
          f"kmallocs and page blocks, {bounds.max_slabs} slab(s) expanded; depth "
          f"{bounds.depth if bounds.depth is not None else 'unbounded'}; budget "
          f"{'none' if bounds.budget_s is None else f'{bounds.budget_s:g} s'}")
    print(f"  ops: kmalloc {list(sizes)}, kmem_cache_alloc, alloc_pages orders "
          f"{list(orders)} x {{GFP_KERNEL, GFP_ATOMIC}} x {{process, hardirq}}; kfree, "
          "kmem_cache_free, free_pages and ksize of every live thing; double, interior, "
          "wrong-cache, wrong-owner and wrong-order frees; kmem_cache_shrink; "
          "kmem_cache_destroy with live objects", flush=True)
    print("  checked in every new state: spec/slab_state.py, spec/invariants.py (block "
          "encodings), the model (live set, classes, large kmallocs, no overlap); per step: "
          "errors leave the snapshot unchanged, page step properties", flush=True)
    res = SlabModelChecker(machine, bounds, cls, sizes=sizes, page_orders=orders).run(
        progress=lambda r: print(f"  ... {r.summary()}", file=sys.stderr, flush=True))
    def replay_line(ops: list[Op]) -> str:
        verdict = replay(machine, ops, sizes=sizes, page_orders=orders)
        return f"{REPLAY}{verdict} (the real SlabAllocator over it)"

    return print_outcome(res, replay_line if args.mutant else None, missing_witnesses(res),
                         require_witnesses=args.require_witnesses,
                         require_exhaustive=args.require_exhaustive)


if __name__ == "__main__":
    sys.exit(main())
