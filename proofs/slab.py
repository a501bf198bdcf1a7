"""Z3 obligations for kmalloc and SLUB, on the implementation's own code where it can run on
bit-vectors (impl/slab_common.py kmalloc_index_of and kmalloc_class_size, impl/slub.py
slab_stride and order_objects, impl/buddy.py get_order), each with its vacuity witnesses and
a seeded bug (proofs/mutants.py style: the wrong helper passed as a parameter) it refutes.

* ``kmalloc.size_class``: for every size 1..KMALLOC_MAX_CACHE_SIZE the chosen class holds
  the request and is the smallest class that does (spec.slab.KMALLOC_CLASSES), and the hot
  path's table equals the proved function on every size.
* ``kmalloc.alignment``: for every kmalloc cache geometry the implementation computes (every
  CPU count's slub_min_objects) and every slab the buddy allocator can hand out (pfn aligned
  to the slab order), every object lies inside its slab and is aligned as
  spec.slab.kmalloc_align_spec promises: to its size for powers of two.
* ``kmalloc.large_order``: above KMALLOC_MAX_CACHE_SIZE, get_order(size) is the smallest
  order whose pages hold the request.
* ``slab.geometry``: for every object size 1..32 KiB, every power-of-two alignment up to
  PAGE_SIZE, free pointer inside or outside, and every slab order 0..slub_max_order:
  the stride is aligned and holds the object (so objects are disjoint), the objects fit in
  the slab, and objects per slab is the most that fit.
* ``slab.freelist_induction``: a slab's freelist (a stack of object indices) and its free
  map satisfy the freelist invariant of spec/slab_state.py (distinct, inside, equal to the
  free map, inuse = objects - free) before any alloc or free, and after it; unbounded in the
  number of steps (induction), for a symbolic slab of 8 objects. This one is stated over a
  symbolic model of Slab.freelist/Slab.free, not run on the Python list operations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import z3

from impl.buddy import get_order
from impl.slab_common import (
    KMALLOC_INFO,
    KMALLOC_SIZE_INDEX,
    kmalloc_cache_align,
    kmalloc_class_size,
    kmalloc_index,
    kmalloc_index_of,
)
from impl.slub import KmemCache, order_objects, slab_stride, slub_min_objects
from proofs.core import DEFAULT_TIMEOUT_MS, ProofResult, combine, prove
from spec.layout import PAGE_SIZE
from spec.slab import (
    KMALLOC_CLASSES,
    KMALLOC_MAX_CACHE_SIZE,
    KMALLOC_MAX_SIZE,
    MAX_PAGE_ORDER,
    PAGE_ALLOC_COSTLY_ORDER,
    SLAB_KMALLOC,
    kmalloc_align_spec,
)

Fn = Callable[..., Any]
W = 32  # bit width of sizes and addresses offsets in these obligations


def kmalloc_size_class(index_of: Fn = kmalloc_index_of, class_size: Fn = kmalloc_class_size,
                       timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """For every 1 <= size <= KMALLOC_MAX_CACHE_SIZE, kmalloc's class holds ``size`` and no
    smaller kmalloc class does."""
    size = z3.BitVec("size", W)
    hyps = [z3.UGE(size, 1), z3.ULE(size, KMALLOC_MAX_CACHE_SIZE)]
    c = class_size(index_of(size))
    goal = {
        "the class holds the request": z3.UGE(c, size),
        "the class is a kmalloc class": z3.Or(*(c == k for k in KMALLOC_CLASSES)),
        "no smaller class holds it": z3.And(*(z3.Implies(z3.UGE(k, size), z3.ULE(c, k))
                                              for k in KMALLOC_CLASSES)),
    }
    r = prove("kmalloc.size_class", hyps, goal, timeout_ms, witnesses={
        "a 96-byte request (kmalloc-96)": size == 65, "the largest class": size == 8192,
        "a 192-byte class request": size == 129})
    if r.ok and index_of is kmalloc_index_of:  # the hot path's table is this function
        bad = [n for n in range(1, KMALLOC_MAX_CACHE_SIZE + 1)
               if kmalloc_index(n) != kmalloc_index_of(n)]
        if bad:
            r.status = "refuted"
            r.failed = [f"the table differs from the proved function at size {bad[0]}"]
    return r


def kmalloc_alignment(align_of: Fn = kmalloc_cache_align, stride: Fn = slab_stride,
                      timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """Every object of every kmalloc cache, in every slab the buddy allocator can hand out,
    lies inside the slab and is aligned as kmalloc promises; for each slub_min_objects value
    (CPU counts 1..8192), with the implementation's own geometry."""
    parts = []
    cpu_counts = sorted({slub_min_objects(n): n for n in range(1, 8193)}.values())
    for ncpu in cpu_counts:
        mo = slub_min_objects(ncpu)
        pfn, i = z3.BitVecs(f"pfn_{ncpu} i_{ncpu}", 64)
        goals: dict[str, Any] = {}
        hyps: list[Any] = [z3.ULT(pfn, 1 << 40)]
        for size, _short in KMALLOC_INFO.values():
            flags = SLAB_KMALLOC
            a = align_of(size, flags)
            s = KmemCache(f"kmalloc-{size}", size, a, flags, None, mo, [0], 1, size)
            st = stride(size, a, False)
            base = pfn << 12  # a slab of order o starts on a 2^o-page boundary (buddy.alignment)
            obj = base + i * z3.BitVecVal(int(st), 64)
            inside = z3.ULT(i, s.oo_objects)
            aligned_pfn = z3.Extract(s.oo_order - 1, 0, pfn) == 0 if s.oo_order else True
            want = kmalloc_align_spec(size)
            goals[f"kmalloc-{size} objects aligned to {want}"] = z3.Implies(
                z3.And(inside, aligned_pfn), z3.URem(obj, want) == 0)
            goals[f"kmalloc-{size} objects inside the slab"] = z3.Implies(
                z3.And(inside, aligned_pfn),
                z3.ULE(obj + st, base + (PAGE_SIZE << s.oo_order)))
        parts.append(prove(f"cpus={ncpu}", hyps, goals, timeout_ms,
                           witnesses={"an 8k object at a slab's end": i == 3}))
    return combine("kmalloc.alignment", parts)


def kmalloc_large_order(order_of: Fn = get_order,
                        timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """For KMALLOC_MAX_CACHE_SIZE < size <= KMALLOC_MAX_SIZE, the large path's order is the
    smallest whose pages hold the request."""
    size = z3.BitVec("size", 64)
    hyps = [z3.UGT(size, KMALLOC_MAX_CACHE_SIZE), z3.ULE(size, KMALLOC_MAX_SIZE)]
    o = order_of(size)
    one = z3.BitVecVal(PAGE_SIZE, 64)
    goal = {
        "the pages hold the request": z3.UGE(one << o, size),
        "half as many pages would not": z3.ULT(one << (o - 1), size),
        "the order is at most MAX_PAGE_ORDER": z3.ULE(o, MAX_PAGE_ORDER),
    }
    return prove("kmalloc.large_order", hyps, goal, timeout_ms, witnesses={
        "the largest request": size == KMALLOC_MAX_SIZE, "just above 8k": size == 8193})


GEOMETRY_MAX_SIZE = PAGE_SIZE << PAGE_ALLOC_COSTLY_ORDER
"""The object sizes slab.geometry covers: up to 32 KiB, every slab order SLUB chooses from
(0..slub_max_order) and the protocol's kmem_cache_create limit. Bigger objects get one object
per slab of get_order(size) pages (calculate_order's fallback); not proved here."""
GW = 20  # bits: sizes up to 32 KiB + 8 and slabs up to 32 KiB fit, products in 2 * GW


def slab_geometry(stride: Fn = slab_stride, objects: Fn = order_objects,
                  timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """For every object size up to 32 KiB, power-of-two alignment up to PAGE_SIZE, free
    pointer placement and slab order 0..slub_max_order: the stride is aligned and holds the
    object (and the free pointer when it lives outside), objects fit, and no further object
    would (objects per slab is the most that fit)."""
    parts = []
    for order in range(PAGE_ALLOC_COSTLY_ORDER + 1):
        osize, align = z3.BitVecs(f"object_size_{order} align_{order}", GW)
        outside = z3.Bool(f"freeptr_outside_{order}")
        hyps = [z3.UGE(osize, 1), z3.ULE(osize, GEOMETRY_MAX_SIZE),
                z3.Or(*(align == (1 << k) for k in range(3, 13)))]
        st = stride(osize, align, outside)
        n = objects(order, st)
        slab = PAGE_SIZE << order
        goal = {
            "stride aligned": z3.URem(st, align) == 0,
            "stride holds the object": z3.UGE(st, osize),
            "stride holds an outside free pointer": z3.Implies(outside, z3.UGE(st, osize + 8)),
            "objects fit in the slab": z3.ULE(z3.ZeroExt(GW, n) * z3.ZeroExt(GW, st), slab),
            "no further object fits": z3.UGT(z3.ZeroExt(GW, n + 1) * z3.ZeroExt(GW, st), slab),
        }
        parts.append(prove(f"order={order}", hyps, goal, timeout_ms, witnesses={
            "several objects per slab": z3.UGE(n, 2), "free pointer outside": outside,
            "a page-aligned 4k object": z3.And(osize == 4096, align == 4096)}))
    return combine("slab.geometry", parts)


# --- the freelist induction ----------------------------------------------------------------------

N_OBJECTS = 8
IW = 4  # bits of an object index (N_OBJECTS <= 15 leaves room for out-of-range values)


class SymSlab:
    """A symbolic slab: freelist stack F[0..L-1] (F[L-1] the head), free map M, inuse."""

    def __init__(self, tag: str) -> None:
        self.L = z3.BitVec(f"L_{tag}", IW)
        self.F = [z3.BitVec(f"F{j}_{tag}", IW) for j in range(N_OBJECTS)]
        self.M = [z3.Bool(f"M{x}_{tag}") for x in range(N_OBJECTS)]
        self.inuse = z3.BitVec(f"inuse_{tag}", IW)


def freelist_invariant(s: SymSlab) -> dict[str, Any]:
    """spec/slab_state.py slab.freelist_sound and slab.inuse for one slab, over the symbolic
    stack: entries below L are distinct, inside the slab, exactly the free map; inuse counts
    the rest."""
    live = [z3.ULT(j, s.L) for j in range(N_OBJECTS)]
    return {
        "length within the slab": z3.ULE(s.L, N_OBJECTS),
        "free objects inside the slab": z3.And(*(z3.Implies(live[j], z3.ULT(s.F[j], N_OBJECTS))
                                                 for j in range(N_OBJECTS))),
        "free objects distinct": z3.And(*(z3.Implies(z3.And(live[j], live[k]), s.F[j] != s.F[k])
                                          for j in range(N_OBJECTS) for k in range(j))),
        "freelist equals the free map": z3.And(*(
            s.M[x] == z3.Or(*(z3.And(live[j], s.F[j] == x) for j in range(N_OBJECTS)))
            for x in range(N_OBJECTS))),
        "inuse = objects - free": s.inuse == N_OBJECTS - s.L,
    }


def _alloc(pre: SymSlab, post: SymSlab) -> tuple[Any, Any]:
    """slab alloc (load_freelist): pop the head; (guard, transition relation)."""
    head = z3.BitVecVal(0, IW)
    for j in range(N_OBJECTS):
        head = z3.If(j + 1 == pre.L, pre.F[j], head)
    rel = z3.And(post.L == pre.L - 1, post.inuse == pre.inuse + 1,
                 *(post.F[j] == pre.F[j] for j in range(N_OBJECTS)),
                 *(post.M[x] == z3.And(pre.M[x], head != x) for x in range(N_OBJECTS)))
    return z3.UGT(pre.L, 0), rel


def _free(pre: SymSlab, post: SymSlab, x: Any, checks_double_free: bool) -> tuple[Any, Any]:
    """slab_free of object ``x``: refused if already free (ObjectDoubleFreeError), else push;
    the seeded bug frees without that check."""
    free_now = z3.Or(*(z3.And(x == k, pre.M[k]) for k in range(N_OBJECTS)))
    guard = z3.And(z3.ULT(x, N_OBJECTS), z3.Not(free_now) if checks_double_free else True)
    rel = z3.And(post.L == pre.L + 1, post.inuse == pre.inuse - 1,
                 *(post.F[j] == z3.If(j == pre.L, x, pre.F[j]) for j in range(N_OBJECTS)),
                 *(post.M[k] == z3.Or(pre.M[k], x == k) for k in range(N_OBJECTS)))
    return guard, rel


def slab_freelist_induction(checks_double_free: bool = True,
                            timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """Any slab state satisfying the freelist invariant still satisfies it after any alloc
    and any free (init: a fresh slab's list 0..N-1 satisfies it)."""
    pre, post = SymSlab("pre"), SymSlab("post")
    x = z3.BitVec("x", IW)
    inv_pre = list(freelist_invariant(pre).values())
    inv_post = freelist_invariant(post)
    g_a, r_a = _alloc(pre, post)
    g_f, r_f = _free(pre, post, x, checks_double_free)
    parts = [
        prove("alloc", [*inv_pre, g_a, r_a], inv_post, timeout_ms,
              witnesses={"the last free object goes": pre.L == 1}),
        prove("free", [*inv_pre, g_f, r_f], inv_post, timeout_ms,
              witnesses={"the slab becomes empty": pre.L == N_OBJECTS - 1}),
    ]
    fresh = SymSlab("fresh")
    init = [fresh.L == N_OBJECTS, fresh.inuse == 0,
            *(fresh.F[j] == N_OBJECTS - 1 - j for j in range(N_OBJECTS)),
            *(fresh.M[k] for k in range(N_OBJECTS))]
    parts.append(prove("init", init, freelist_invariant(fresh), timeout_ms))
    return combine("slab.freelist_induction", parts)


# --- seeded bugs ------------------------------------------------------------------------------

WRONG_SIZE_INDEX = tuple(7 if i == 8 else v for i, v in enumerate(KMALLOC_SIZE_INDEX))
"""size_index[] sending 65..72-byte requests to kmalloc-128 instead of kmalloc-96."""


def index_wrong_table(size: Any) -> Any:
    """kmalloc_index_of with a size_index[] entry pointing at a bigger class."""
    return kmalloc_index_of(size, WRONG_SIZE_INDEX)


def stride_freeptr_outside(object_size: Any, align: Any, outside: Any) -> Any:
    """kmalloc caches laid out with the free pointer after the object (as for a cache with a
    constructor): a stride of size + 8 breaks natural alignment."""
    return slab_stride(object_size, align, True)


def stride_unaligned(object_size: Any, align: Any, outside: Any) -> Any:
    """calculate_sizes() that forgets ALIGN(size, s->align)."""
    return slab_stride(object_size, 8, outside)


def get_order_off_by_one(size: Any) -> Any:
    """get_order computed as fls64(size >> PAGE_SHIFT): one too many for exact page sizes."""
    return get_order(size + 1)


SLAB_MUTANTS: dict[str, tuple[str, Fn, Callable[[], ProofResult]]] = {
    "mutant.kmalloc_wrong_size_index": (
        "kmalloc.size_class", index_wrong_table,
        lambda: kmalloc_size_class(index_of=index_wrong_table)),
    "mutant.kmalloc_freeptr_outside": (
        "kmalloc.alignment", stride_freeptr_outside,
        lambda: kmalloc_alignment(stride=stride_freeptr_outside)),
    "mutant.kmalloc_large_off_by_one": (
        "kmalloc.large_order", get_order_off_by_one,
        lambda: kmalloc_large_order(order_of=get_order_off_by_one)),
    "mutant.slab_stride_unaligned": (
        "slab.geometry", stride_unaligned, lambda: slab_geometry(stride=stride_unaligned)),
    "mutant.slab_free_no_double_free_check": (
        "slab.freelist_induction", _free,
        lambda: slab_freelist_induction(checks_double_free=False)),
}
"""Seeded bugs of the slab obligations: each must be refuted."""

OBLIGATIONS: dict[str, Callable[[], ProofResult]] = {
    "kmalloc.size_class": kmalloc_size_class,
    "kmalloc.alignment": kmalloc_alignment,
    "kmalloc.large_order": kmalloc_large_order,
    "slab.geometry": slab_geometry,
    "slab.freelist_induction": slab_freelist_induction,
}
