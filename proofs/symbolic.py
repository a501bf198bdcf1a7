"""Symbolic allocator states and the state obligations: induction (f) and bounded model
checking (g).

A :class:`SymState` is a whole abstract state of a small machine (one ZONE_NORMAL zone of
``pages`` pages at pfn 0, MAX_PAGE_ORDER ``max_order``, pageblock_order = min(9, max_order),
every page managed) whose per-pfn fields are Z3 terms. It implements
:class:`spec.state.PageView`, so the invariants of spec/invariants.py, the very
``definition(view)`` functions the tests evaluate on concrete states, yield Z3 formulas over it.

Transitions mirror the implementation's code paths (they do not run them) and call its helpers
with Z3 bit-vector values (impl.buddy.find_buddy_pfn / combined_pfn / expand_halves):

* :func:`free_paths` is ``free_pages_pfn`` -> ``_free_pages_zone`` -> ``_free_one_page``
  (__free_one_page): the block stops being allocated; the merge loop, unrolled up to
  MAX_PAGE_ORDER times, merges while the buddy is a free head of the same order in the same
  zone (unlinking it from the list it is on); the merged block is linked on the list of its
  order and of the freed pfn's pageblock migratetype; NR_FREE_PAGES grows by 2^order.
  Reclaim (releasing a page-cache block) is the same transition with the other owner.
* :func:`alloc_paths` is ``__rmqueue_smallest`` + ``expand`` made permissive: ANY free block of
  order >= k (not the first one on the smallest list) is unlinked, its lowest 2^k pages are
  handed out, and the halves of expand_halves() are linked on the list the block came from.

A transition is executed path by path: a path fixes the concrete pfns (the block, each buddy,
the merged block) and carries the Z3 conditions under which the code takes it (the buddy is,
or is not, a free head of that order). Untouched pfns keep the very terms of the pre-state,
which keeps the counting invariants (nr_free, NR_FREE_PAGES: sums over all pfns) easy for
the solver; with a symbolic pfn the same sums time out. The induction proof therefore splits
by cases: every (block, path), plus one obligation showing the cases are exhaustive. The BMC
merges all paths into one symbolic transition (:func:`merge`).

How the mirror is tied to the code. The transitions are written with the logic kit
(spec/logic.py), so they also run on a state of plain Python values
(``SymState.concrete(ms, plain=True)``): then the path conditions are bools and exactly one path
is enabled (tests/test_conformance.py shows it gives the successor that the same code gives
on Z3 constants). proofs/conformance.py (``make verify`` row ``symbolic.conforms_to_impl``,
``python -m proofs.conformance``) runs every free, reclaim and allocation this way on every
state the explicit-state model checker reaches within its bounds on this machine's shape (16
pages, MAX_PAGE_ORDER 3, watermarks 0) and on corrupted states made from them, runs the same
operation on the real PageAllocator, and fails on any difference in the fields modelled here
(free blocks and their lists, allocated blocks and owners, pageblock migratetypes, nr_free,
NR_FREE_PAGES); for an allocation, the real choice must be one of the permissive paths. So a
change to the implementation's free or allocation path that is not made here too (or the
reverse) fails ``make verify``, with a report of the state, the operation and the fields
that differ.

Not modelled by these transitions (left to the tests and the explicit-state model checker):
free-list order (head/tail placement), migratetype fallback (claim/steal, pageblock
relabelling), watermarks, per-CPU lists, several zones or nodes, holes. With
MAX_PAGE_ORDER = pageblock_order the merge loop never crosses a pageblock.

Bit widths: pfns, orders and list fields are 8-bit vectors, counters are integers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import z3

from impl.buddy import combined_pfn, expand_halves, find_buddy_pfn
from impl.machine import HUGETLB_PAGE_ORDER
from impl.page_alloc import OWNER_PAGECACHE, OWNER_PAGES
from proofs.core import DEFAULT_TIMEOUT_MS, ProofResult, combine, prove
from spec.gfp import MIGRATE_MOVABLE, MIGRATE_PCPTYPES, ZONE_NORMAL
from spec.invariants import INVARIANTS, violated
from spec.logic import And, If, Not
from spec.state import AllocBlock, FreeBlock, MemState, PageView, ZoneSpec

W = 8
"""Bit width of pfns, orders and list fields in the symbolic machine."""
OWNERS = (OWNER_PAGES, OWNER_PAGECACHE)
"""Owner codes: 0 = alloc_pages caller, 1 = page cache (reclaimable)."""
TYPE_OK = "type.ok"
"""Name of the typing conjunct: pageblock migratetypes < MIGRATE_PCPTYPES (the model creates
no CMA, HIGHATOMIC or ISOLATE blocks) and allocated blocks have a known owner."""

Fn = Callable[..., Any]


@dataclass(frozen=True)
class Machine:
    """The symbolic machine: node 0, one ZONE_NORMAL zone (zid 0) of ``pages`` pages at pfn 0."""

    pages: int = 16
    max_order: int = 3

    @property
    def pageblock_order(self) -> int:
        return min(HUGETLB_PAGE_ORDER, self.max_order)

    @property
    def pageblocks(self) -> int:
        return -(-self.pages >> self.pageblock_order)

    def zone_spec(self) -> ZoneSpec:
        return ZoneSpec(0, 0, ZONE_NORMAL, 0, self.pages, ((0, self.pages),))

    def counters(self) -> list[tuple[int, int]]:
        """(order, migratetype) of every free_area list the invariants count."""
        return [(o, mt) for o in range(self.max_order + 1) for mt in range(MIGRATE_PCPTYPES)]


def bv(x: int) -> Any:
    return z3.BitVecVal(x, W)


def sel(xs: list[Any], idx: Any, default: Any) -> Any:
    """xs[idx] for a symbolic index, ``default`` outside the list (like dict.get)."""
    r = default
    for p in reversed(range(len(xs))):
        r = z3.If(idx == p, xs[p], r)
    return r


@dataclass(frozen=True)
class SymState:
    """A symbolic abstract state; a :class:`spec.state.PageView` whose values are Z3 terms.

    Per pfn: ``fh`` PageBuddy head, ``ah`` allocated head, ``order`` (page_private / the
    allocation order), the list the free block is on (``lzid``, ``lorder``, ``lmt``) and how
    often it is listed (``tl``), and ``owner`` (an index into OWNERS) of allocated blocks. Per
    pageblock: ``pb`` migratetype. Zone 0: ``nr`` nr_free per (order, mt), ``fp``
    NR_FREE_PAGES."""

    m: Machine
    fh: tuple[Any, ...]
    ah: tuple[Any, ...]
    order_: tuple[Any, ...]
    lzid: tuple[Any, ...]
    lorder: tuple[Any, ...]
    lmt: tuple[Any, ...]
    tl: tuple[Any, ...]
    owner: tuple[Any, ...]
    pb: tuple[Any, ...]
    nr: dict[tuple[int, int], Any]
    fp: Any
    plain: bool = False
    """Fields are plain Python values (bools and ints) instead of Z3 terms: the transitions
    then compute a concrete successor directly (proofs/conformance.py)."""

    PER_PFN = ("fh", "ah", "order_", "lzid", "lorder", "lmt", "tl", "owner")

    # --- PageView -------------------------------------------------------------------------
    @property
    def max_order(self) -> int:
        return self.m.max_order

    @property
    def pageblock_order(self) -> int:
        return self.m.pageblock_order

    @property
    def pfns(self) -> range:
        return range(self.m.pages)

    @property
    def zids(self) -> tuple[int, ...]:
        return (0,)

    def free_head(self, p: int) -> Any:
        return self.fh[p]

    def alloc_head(self, p: int) -> Any:
        return self.ah[p]

    def order(self, p: int) -> Any:
        return self.order_[p]

    def zone(self, p: int) -> int:
        return 0 if 0 <= p < self.m.pages else -1

    def list_zid(self, p: int) -> Any:
        return self.lzid[p]

    def list_order(self, p: int) -> Any:
        return self.lorder[p]

    def list_mt(self, p: int) -> Any:
        return self.lmt[p]

    def times_listed(self, p: int) -> Any:
        return self.tl[p]

    def pageblock_mt(self, p: int) -> Any:
        return self.pb[p >> self.m.pageblock_order]

    def nr_free(self, zid: int, order: int, mt: int) -> Any:
        zero = 0 if self.plain else z3.IntVal(0)
        return self.nr.get((order, mt), zero) if zid == 0 else zero

    def free_pages(self, zid: int) -> Any:
        return self.fp if zid == 0 else (0 if self.plain else z3.IntVal(0))

    # --- construction -----------------------------------------------------------------------
    @staticmethod
    def fresh(m: Machine, prefix: str) -> SymState:
        """Every field a fresh variable named ``prefix.field[pfn]``."""
        def per_pfn(f: str, mk: Callable[[str], Any]) -> tuple[Any, ...]:
            return tuple(mk(f"{prefix}.{f}[{p}]") for p in range(m.pages))

        def vec(n: str) -> Any:
            return z3.BitVec(n, W)

        return SymState(
            m, per_pfn("free_head", z3.Bool), per_pfn("alloc_head", z3.Bool),
            per_pfn("order", vec), per_pfn("list_zid", vec), per_pfn("list_order", vec),
            per_pfn("list_mt", vec), per_pfn("times_listed", vec), per_pfn("owner", vec),
            tuple(vec(f"{prefix}.pageblock_mt[{i}]") for i in range(m.pageblocks)),
            {(o, mt): z3.Int(f"{prefix}.nr_free[{o}][{mt}]") for o, mt in m.counters()},
            z3.Int(f"{prefix}.free_pages"))

    @staticmethod
    def initial(m: Machine) -> SymState:
        """The state after boot: every page free in MAX_PAGE_ORDER blocks on the MOVABLE list
        (memblock_free_all with FPI_TO_TAIL), every pageblock MOVABLE."""
        step = 1 << m.max_order
        heads = [p % step == 0 and p + step <= m.pages for p in range(m.pages)]
        nblocks = sum(heads)
        assert nblocks * step == m.pages, "the symbolic machine needs whole MAX_PAGE_ORDER blocks"
        z = bv(0)
        return SymState(
            m, tuple(z3.BoolVal(h) for h in heads), tuple(z3.BoolVal(False) for _ in heads),
            tuple(bv(m.max_order if h else 0) for h in heads), (z,) * m.pages,
            tuple(bv(m.max_order if h else 0) for h in heads),
            tuple(bv(MIGRATE_MOVABLE if h else 0) for h in heads),
            tuple(bv(1 if h else 0) for h in heads), (z,) * m.pages,
            (bv(MIGRATE_MOVABLE),) * m.pageblocks,
            {(o, mt): z3.IntVal(nblocks if (o, mt) == (m.max_order, MIGRATE_MOVABLE) else 0)
             for o, mt in m.counters()},
            z3.IntVal(m.pages))

    def terms(self) -> list[Any]:
        """Every field term, in a fixed order."""
        out: list[Any] = []
        for f in self.PER_PFN:
            out += list(getattr(self, f))
        return out + list(self.pb) + [self.nr[k] for k in sorted(self.nr)] + [self.fp]

    def equals(self, other: SymState) -> list[Any]:
        """Field-wise equalities (to bind fresh variables to a transition's result)."""
        return [a == b for a, b in zip(self.terms(), other.terms(), strict=True)]

    def type_ok(self) -> Any:
        """Typing invariant: see :data:`TYPE_OK`."""
        return z3.And(*(z3.ULT(t, MIGRATE_PCPTYPES) for t in self.pb),
                      *(z3.Implies(a, z3.ULT(o, len(OWNERS)))
                        for a, o in zip(self.ah, self.owner, strict=True)))

    def invariants(self) -> dict[str, Any]:
        """Every registered invariant's definition on this state, plus the typing conjunct."""
        view = cast(PageView, self)
        out = {name: _as_bool(inv.definition(view)) for name, inv in INVARIANTS.items()}
        out[TYPE_OK] = self.type_ok()
        return out

    # --- decoding ---------------------------------------------------------------------------
    @staticmethod
    def concrete(ms: MemState, m: Machine | None = None, *, plain: bool = False) -> SymState:
        """The concrete state ``ms`` (one zone at pfn 0) as Z3 values, or with ``plain`` as
        plain Python bools and ints (wrapped to W bits, as the Z3 values are): the transitions
        then run as ordinary Python code on the same fields and :meth:`decode` without a model
        reads the result back. Used to run the symbolic transitions on real states and
        compare them with the implementation (proofs/conformance.py, tests/test_proofs.py)."""
        m = m or Machine(ms.pfn_limit, ms.max_order)
        f, a = ms.free, ms.allocated
        mk_b: Callable[[bool], Any] = (lambda x: x) if plain else z3.BoolVal
        mk_v: Callable[[int], Any] = _wrap if plain else bv
        mk_i: Callable[[int], Any] = int if plain else z3.IntVal

        def per(get: Callable[[int], int]) -> tuple[Any, ...]:
            return tuple(mk_v(get(p)) for p in range(m.pages))

        return SymState(
            m, tuple(mk_b(p in f) for p in range(m.pages)),
            tuple(mk_b(p in a) for p in range(m.pages)),
            per(lambda p: f[p].order if p in f else a[p].order if p in a else 0),
            per(lambda p: f[p].list_zid if p in f else 0),
            per(lambda p: f[p].list_order if p in f else 0),
            per(lambda p: f[p].list_mt if p in f else 0),
            per(lambda p: f[p].times_listed if p in f else 0),
            per(lambda p: OWNERS.index(a[p].owner) if p in a else 0),
            tuple(mk_v(ms.pageblock_mt[i]) for i in range(m.pageblocks)),
            {(o, mt): mk_i(ms.nr_free.get((0, o, mt), 0)) for o, mt in m.counters()},
            mk_i(ms.free_pages.get(0, 0)), plain)

    def decode(self, model: Any = None) -> MemState:
        """The concrete MemState this state has in ``model`` (a plain state: its values)."""
        def ev(t: Any) -> Any:
            return model.eval(t, model_completion=True)

        def u(t: Any) -> int:
            return int(t) & _MASK if self.plain else int(ev(t).as_long())

        def s(t: Any) -> int:
            return _wrap(t) if self.plain else int(ev(t).as_signed_long())

        def n(t: Any) -> int:
            return int(t) if self.plain else u(t)

        def true(t: Any) -> bool:
            return bool(t) if self.plain else z3.is_true(ev(t))

        free: dict[int, FreeBlock] = {}
        allocated: dict[int, AllocBlock] = {}
        for p in range(self.m.pages):
            if true(self.fh[p]):
                free[p] = FreeBlock(p, s(self.order_[p]), u(self.lzid[p]), s(self.lorder[p]),
                                    u(self.lmt[p]), u(self.tl[p]))
            if true(self.ah[p]):
                own = u(self.owner[p])
                allocated[p] = AllocBlock(p, s(self.order_[p]), 0,
                                          OWNERS[own] if own < len(OWNERS) else f"owner{own}",
                                          0)
        pb = bytes(u(t) & 0xFF for t in self.pb)
        nr = {(0, o, mt): n(v) for (o, mt), v in self.nr.items() if n(v)}
        return MemState(self.m.max_order, self.m.pageblock_order, (self.m.zone_spec(),), free,
                        allocated, pb, nr, {0: n(self.fp)}, pfn_limit=self.m.pages)


def _as_bool(x: Any) -> Any:
    return z3.BoolVal(x) if isinstance(x, bool) else x


_MASK = (1 << W) - 1


def _wrap(x: int) -> int:
    """x as a signed W-bit value (what a Z3 bit-vector of width W holds)."""
    x &= _MASK
    return x - (1 << W) if x >> (W - 1) else x


# --- transitions -------------------------------------------------------------------------------
#
# Transitions are executed path by path: a path fixes the concrete pfns and orders (the block,
# each buddy, the merged block) and carries the Z3 conditions under which the implementation
# takes it (a buddy is or is not a free head of the right order). The helpers are called with
# Z3 bit-vector values (:func:`_cval` folds the result back to a pfn), so a seeded-bug helper
# changes the paths. On a path, a pfn that is not touched keeps the very terms of the
# pre-state, which is what makes the counting invariants (nr_free, NR_FREE_PAGES) cheap for
# the solver. The symbolic transition over a symbolic block (BMC) is the merge of all paths
# (:func:`merge`).


@dataclass(frozen=True)
class Path:
    """One path of a transition: its conditions (besides the operation's guard), the post-state,
    and what it did."""

    conds: tuple[Any, ...]
    post: SymState
    pfn: int  # the block operated on (freed or allocated)
    order: int
    final: tuple[int, int]  # free: the block finally listed; alloc: the block split


def _cval(x: Any, plain: bool = False) -> int:
    """A helper's result (a Python int or a Z3 term over values) as a Python int; in a plain
    state wrapped to W bits like the Z3 value."""
    if isinstance(x, int):
        return _wrap(x) if plain else x
    return int(z3.simplify(x).as_signed_long())


def _val(s: SymState, x: int) -> Any:
    """The W-bit value x in the state's representation (a Z3 bit-vector or a plain int)."""
    return _wrap(x) if s.plain else bv(x)


def _bool(s: SymState, x: bool) -> Any:
    return x if s.plain else z3.BoolVal(x)


def _is_true(c: Any) -> bool:
    return c is True or (not isinstance(c, bool) and z3.is_true(c))


def _is_false(c: Any) -> bool:
    return c is False or (not isinstance(c, bool) and z3.is_false(c))


def _put(xs: tuple[Any, ...], updates: dict[int, Any]) -> tuple[Any, ...]:
    if not updates:
        return xs
    out = list(xs)
    for p, v in updates.items():
        out[p] = v
    return tuple(out)


def _list_match(s: SymState, p: int, key: tuple[int, int]) -> Any:
    """The block headed at p sits on zone 0's list (order, mt) = key."""
    return And(s.lzid[p] == 0, s.lorder[p] == key[0], s.lmt[p] == key[1])


def free_paths(s: SymState, h: int, o: int, *, find_buddy: Fn = find_buddy_pfn,
               combine: Fn = combined_pfn) -> list[Path]:
    """__free_pages(h, o) -> __free_one_page, one Path per number of merges.

    The block is no longer allocated; while order < MAX_PAGE_ORDER and the buddy
    (find_buddy_pfn) is a free head of the same order in the same zone, the buddy is unlinked
    from the list it is on and the block becomes combined_pfn at order + 1; the result is
    linked on the list of its order and of the pageblock migratetype of h, and NR_FREE_PAGES
    grows by 2^o."""
    m = s.m
    mt = s.pb[h >> m.pageblock_order]
    paths: list[Path] = []
    conds: list[Any] = []
    fh: dict[int, Any] = {}
    nr = dict(s.nr)
    pfn, order = h, o
    while True:
        b = -1
        if order < m.max_order:
            b = _cval(find_buddy(_val(s, pfn), _val(s, order)), s.plain)
        can: Any = _bool(s, False)
        if 0 <= b < m.pages and 0 <= pfn < m.pages and b not in fh:
            can = And(s.fh[b], s.order_[b] == order)  # same zone: one zone
        # stop here: link (pfn, order) (a seeded helper may have left the machine: then the
        # block is linked nowhere and its pages are lost, which the invariants notice)
        here = {pfn: True} if 0 <= pfn < m.pages else {}
        post = SymState(
            m, _put(s.fh, {**fh, **{q: _bool(s, True) for q in here}}),
            _put(s.ah, {h: _bool(s, False)}),
            _put(s.order_, {q: _val(s, order) for q in here}),
            _put(s.lzid, {q: _val(s, 0) for q in here}),
            _put(s.lorder, {q: _val(s, order) for q in here}), _put(s.lmt, {q: mt for q in here}),
            _put(s.tl, {q: _val(s, 1) for q in here}), s.owner, s.pb,
            {k: v + If(mt == k[1], 1, 0) if k[0] == order else v for k, v in nr.items()},
            s.fp + (1 << o), s.plain)
        stop = [*conds, Not(can)] if order < m.max_order else list(conds)
        paths.append(Path(tuple(c for c in stop if not _is_true(c)), post, h, o,
                          (pfn, order)))
        if _is_false(can):
            return paths
        # merge with the buddy: __del_page_from_free_list(buddy), pfn = buddy & pfn
        conds.append(can)
        fh[b] = _bool(s, False)
        nr = {k: v - If(_list_match(s, b, k), 1, 0) for k, v in nr.items()}
        pfn = _cval(combine(_val(s, pfn), _val(s, b)), s.plain)
        order += 1


def free_cases(m: Machine) -> list[tuple[int, int]]:
    """Every (pfn, order) a block can have: order 0..MAX_PAGE_ORDER, aligned, inside."""
    return [(h, o) for o in range(m.max_order + 1) for h in range(0, m.pages, 1 << o)
            if h + (1 << o) <= m.pages]


def alloc_paths(s: SymState, k: int, c: int, owner: Any = 0, *,
                split: Fn = expand_halves) -> list[Path]:
    """Allocate 2^k pages from the free block headed at c, one Path per order of that block
    (k..MAX_PAGE_ORDER): unlink it, hand out [c, c + 2^k) (order k, owner), and link the
    halves of expand_halves(c, k, order) at the head of the block's own list."""
    m = s.m
    out: list[Path] = []
    lz, lo, lm = s.lzid[c], s.lorder[c], s.lmt[c]
    for cur in range(k, m.max_order + 1):
        if c % (1 << cur) or c + (1 << cur) > m.pages:
            continue  # no such block (alignment invariant)
        fh: dict[int, Any] = {c: _bool(s, False)}
        order: dict[int, Any] = {c: _val(s, k)}
        lzid: dict[int, Any] = {}
        lorder: dict[int, Any] = {}
        lmt: dict[int, Any] = {}
        tl: dict[int, Any] = {}
        nr = {key: v - If(And(lz == 0, lo == key[0], lm == key[1]), 1, 0)
              for key, v in s.nr.items()}
        for hp, ho in split(_val(s, c), k, cur):
            p = _cval(hp, s.plain)
            if not 0 <= p < m.pages:
                continue  # a seeded split left the machine: those pages are lost
            fh[p] = _bool(s, True)
            order[p] = _val(s, ho)
            lzid[p], lorder[p], lmt[p], tl[p] = lz, _val(s, ho), lm, _val(s, 1)
            nr = {key: v + If(And(lz == 0, ho == key[0], lm == key[1]), 1, 0)
                  for key, v in nr.items()}
        order[c] = _val(s, k)
        post = SymState(m, _put(s.fh, fh), _put(s.ah, {c: _bool(s, True)}),
                        _put(s.order_, order), _put(s.lzid, lzid), _put(s.lorder, lorder),
                        _put(s.lmt, lmt), _put(s.tl, tl),
                        _put(s.owner, {c: _val(s, owner) if isinstance(owner, int) else owner}),
                        s.pb, nr,
                        s.fp - (1 << k), s.plain)
        out.append(Path((s.fh[c], s.order_[c] == cur), post, c, k, (c, cur)))
    return out


def merge(s: SymState, cases: list[tuple[Any, SymState]]) -> SymState:
    """The state that is ``post`` under the first ``cond`` that holds, else ``s``: per field
    and pfn an If-chain over only the cases that changed that entry."""
    def field(get: Callable[[SymState], tuple[Any, ...]]) -> tuple[Any, ...]:
        base = get(s)
        out = list(base)
        for i in range(len(base)):
            for cond, post in reversed(cases):
                v = get(post)[i]
                if v is not base[i]:
                    out[i] = z3.If(cond, v, out[i])
        return tuple(out)

    def scalar(a: Any, b: Callable[[SymState], Any]) -> Any:
        r = a
        for cond, post in reversed(cases):
            v = b(post)
            if v is not a:
                r = z3.If(cond, v, r)
        return r

    def per_pfn(name: str) -> tuple[Any, ...]:
        return field(lambda x: cast(tuple[Any, ...], getattr(x, name)))

    def counter(key: tuple[int, int]) -> Any:
        return scalar(s.nr[key], lambda x: x.nr[key])

    return SymState(s.m, per_pfn("fh"), per_pfn("ah"), per_pfn("order_"), per_pfn("lzid"),
                    per_pfn("lorder"), per_pfn("lmt"), per_pfn("tl"), per_pfn("owner"),
                    field(lambda x: x.pb), {k: counter(k) for k in s.nr},
                    scalar(s.fp, lambda x: x.fp))


# --- (f) induction ------------------------------------------------------------------------------

def _describe(ms: MemState) -> str:
    """A buddyinfo-like dump of a small concrete state."""
    fr = " ".join(f"{b.pfn:#x}/o{b.order}(list o{b.list_order} mt{b.list_mt}"
                  f"{'' if b.times_listed == 1 else f' x{b.times_listed}'})"
                  for b in sorted(ms.free.values()))
    al = " ".join(f"{b.pfn:#x}/o{b.order}({b.owner})" for b in sorted(ms.allocated.values()))
    nr = " ".join(f"o{o}mt{mt}={n}" for (_, o, mt), n in sorted(ms.nr_free.items()))
    return (f"free: {fr or '-'}\n  allocated: {al or '-'}\n  nr_free: {nr or '-'}; "
            f"NR_FREE_PAGES={ms.free_pages.get(0, 0)}; pageblock mt: {list(ms.pageblock_mt)}")


def memstate_to_data(ms: MemState) -> dict[str, Any]:
    """A JSON-able form of a one-zone MemState (for reports and replays)."""
    return {"pages": ms.pfn_limit, "max_order": ms.max_order,
            "free": [list(b) for b in sorted(ms.free.values())],
            "allocated": [[b.pfn, b.order, b.owner] for b in sorted(ms.allocated.values())],
            "pageblock_mt": list(ms.pageblock_mt),
            "nr_free": [[z, o, mt, n] for (z, o, mt), n in sorted(ms.nr_free.items())],
            "free_pages": ms.free_pages.get(0, 0)}


def memstate_from_data(d: dict[str, Any]) -> MemState:
    """Inverse of :func:`memstate_to_data`."""
    m = Machine(d["pages"], d["max_order"])
    return MemState(m.max_order, m.pageblock_order, (m.zone_spec(),),
                    {b[0]: FreeBlock(*b) for b in d["free"]},
                    {b[0]: AllocBlock(b[0], b[1], 0, b[2], 0) for b in d["allocated"]},
                    bytes(d["pageblock_mt"]), {(z, o, mt): n for z, o, mt, n in d["nr_free"]},
                    {0: d["free_pages"]}, pfn_limit=m.pages)


@dataclass(frozen=True)
class Case:
    """One case of an induction obligation: the operation's parameters, its guard in the
    pre-state, and one path of the transition."""

    op: str  # "free", "reclaim", "alloc"
    params: dict[str, int]
    guard: Any
    path: Path


def _decoder(pre: SymState, case: Case, goal: dict[str, Any]) -> Callable[[Any], dict[str, Any]]:
    def decode(model: Any) -> dict[str, Any]:
        before, after = pre.decode(model), case.path.post.decode(model)
        opdesc = case.op + "".join(f" {k}={v:#x}" if k in ("pfn", "block") else f" {k}={v}"
                                   for k, v in case.params.items())
        pre_bad, post_bad = violated(before), violated(after)
        failed = [n for n in INVARIANTS
                  if z3.is_false(model.eval(goal[n], model_completion=True))]
        enc_ok = not pre_bad and post_bad == failed
        detail = (f"pre-state (satisfies every invariant):\n  {_describe(before)}\n"
                  f"operation: {opdesc}\npost-state:\n  {_describe(after)}\n"
                  f"concrete re-evaluation: pre violates {pre_bad or 'nothing'}, post violates "
                  f"{post_bad or 'nothing'}"
                  + ("" if enc_ok else "  ** ENCODING MISMATCH with the Z3 verdict **"))
        return {"trace": [opdesc], "detail": detail,
                "data": {"pre": memstate_to_data(before), "post": memstate_to_data(after),
                         "op": {"op": case.op, **case.params}, "post_violations": post_bad,
                         "encoding_ok": enc_ok}}
    return decode


def _induction(name: str, pre: SymState, cases: list[Case], guard: Any, covered: Any,
               witnesses: dict[str, Any], timeout_ms: int) -> ProofResult:
    """Inv(pre) and guard => Inv(post), by cases.

    1. ``covered``: under Inv(pre) and the symbolic guard, the operation's parameters are one
       of the enumerated cases (so the cases are exhaustive); this call also checks that the
       hypotheses are satisfiable and the witnesses reachable (non-vacuity).
    2. Each case (parameters, merge/split path) separately: Inv(pre), the case's guard and
       path conditions => every invariant on that path's post-state. The paths of one set of
       parameters are exhaustive by construction (each branch and its negation). A case whose
       conditions contradict the invariants cannot happen and counts as proved."""
    inv = list(pre.invariants().values())
    t0 = time.perf_counter()
    parts = [prove(f"{name}/cases-exhaustive", [*inv, guard], covered, timeout_ms,
                   witnesses=witnesses)]
    if parts[0].ok:
        for case in cases:
            goal = case.path.post.invariants()
            label = f"{name}/{case.op}" + "".join(f" {k}={v}" for k, v in case.params.items())
            r = prove(label, [*inv, case.guard, *case.path.conds], goal, timeout_ms,
                      decode=_decoder(pre, case, goal), check_vacuity=False)
            parts.append(r)
            if not r.ok:
                break
    res = combine(name, parts)
    res.time = time.perf_counter() - t0
    res.data.setdefault("cases", len(parts) - 1)
    return res


def induction_free(m: Machine = Machine(), *, owner: int | None = None,
                   find_buddy: Fn = find_buddy_pfn, combine: Fn = combined_pfn,
                   timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """Induction step for freeing, unbounded in the state for this machine size: from ANY state
    (reachable or not) satisfying every registered invariant, freeing ANY allocated block
    (h, o) through the __free_one_page merge loop gives a state satisfying every invariant.
    ``owner`` None covers both owners: __free_pages of an alloc_pages block and reclaim of a
    page-cache block; 0 or 1 restricts to one (``induction.free`` / ``induction.reclaim``)."""
    pre = SymState.fresh(m, "pre")
    h, o = z3.BitVecs("h o", W)

    def own(x: Any) -> Any:
        return True if owner is None else x == owner

    guard = z3.And(sel(list(pre.ah), h, z3.BoolVal(False)), sel(list(pre.order_), h, bv(0)) == o,
                   own(sel(list(pre.owner), h, bv(0))))
    cases: list[Case] = []
    for hv, ov in free_cases(m):
        g = z3.And(pre.ah[hv], pre.order_[hv] == ov, own(pre.owner[hv]))
        op = "reclaim" if owner == 1 else "free"
        cases += [Case(op, {"pfn": hv, "order": ov}, g, p)
                  for p in free_paths(pre, hv, ov, find_buddy=find_buddy, combine=combine)]
    covered = z3.Or(*(z3.And(h == hv, o == ov) for hv, ov in free_cases(m)))
    wit = {"a free of order 0 that merges up to MAX_PAGE_ORDER": z3.And(
        o == 0, z3.Or(*(z3.And(h == hv, *(z3.And(pre.fh[(hv & ~((1 << j) - 1)) ^ (1 << j)],
                                                 pre.order_[(hv & ~((1 << j) - 1)) ^ (1 << j)]
                                                 == j)
                                          for j in range(m.max_order)))
                        for hv in range(m.pages))))}
    name = {None: "induction.free", 0: "induction.free_pages", 1: "induction.reclaim"}[owner]
    return _induction(name, pre, cases, guard, covered, wit, timeout_ms)


def induction_alloc(k: int, m: Machine = Machine(), *, split: Fn = expand_halves,
                    timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """Induction step for allocating 2^k pages, unbounded in the state for this machine size:
    from ANY state satisfying every registered invariant, allocating (for either owner) from
    ANY free block of order >= k, split with expand_halves, gives a state satisfying every
    invariant."""
    pre = SymState.fresh(m, "pre")
    c = z3.BitVec("c", W)
    owner = z3.BitVec("owner", W)
    cur = sel(list(pre.order_), c, bv(0))
    guard = z3.And(sel(list(pre.fh), c, z3.BoolVal(False)), z3.UGE(cur, k),
                   z3.ULT(owner, len(OWNERS)))
    cases: list[Case] = []
    blocks = []
    for cv in range(m.pages):
        for p in alloc_paths(pre, k, cv, owner, split=split):
            cases.append(Case("alloc", {"order": k, "block": cv, "block_order": p.final[1]},
                              z3.And(pre.fh[cv], z3.ULT(owner, len(OWNERS))), p))
            blocks.append((cv, p.final[1]))
    covered = z3.Or(*(z3.And(c == cv, cur == o) for cv, o in blocks))
    wit = {"a split": z3.UGT(cur, k)} if k < m.max_order else {}
    return _induction(f"induction.alloc.o{k}", pre, cases, guard, covered, wit, timeout_ms)


def induction_init(m: Machine = Machine(), timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """The boot state (every page free in MAX_PAGE_ORDER blocks) satisfies every invariant."""
    return prove("induction.init", [], SymState.initial(m).invariants(), timeout_ms)


# --- (g) bounded model checking -------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """The symbolic variables and terms of one BMC step."""

    op: Any  # 0..max_order: alloc of that order; max_order + 1: free
    c: Any  # alloc: the chosen free block
    h: Any  # free: the block freed
    o: Any
    ok: Any  # alloc: succeeded


def bmc(steps: int = 6, m: Machine = Machine(), *, find_buddy: Fn = find_buddy_pfn,
        combine: Fn = combined_pfn, split: Fn = expand_halves, shortest: bool = True,
        timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """Bounded model checking from the boot state: every sequence of ``steps`` operations, each
    an allocation of any order 0..MAX_PAGE_ORDER from any free block of sufficient order
    (failing only when there is none) or a free of any allocated block, keeps every invariant
    after every step. On a refutation the shortest failing depth is searched, and the trace is
    printed as operations (``alloc order=1 -> 0x0; free pfn=0x0 order=1``) that
    proofs.replay.replay_ops replays on the real allocator."""
    r = _bmc(steps, m, find_buddy, combine, split, timeout_ms)
    if r.status == "refuted" and shortest:
        for d in range(1, steps):
            rd = _bmc(d, m, find_buddy, combine, split, timeout_ms, witnesses=False)
            if rd.status == "refuted":
                rd.name = r.name
                rd.time += r.time
                return rd
    return r


def _bmc(steps: int, m: Machine, find_buddy: Fn, combine: Fn, split: Fn, timeout_ms: int,
         witnesses: bool = True) -> ProofResult:
    free_op = m.max_order + 1
    s = SymState.initial(m)
    states = [s]
    info: list[Step] = []
    hyps: list[Any] = []
    goal: dict[str, Any] = {}
    merged_to_max: list[Any] = []
    for i in range(1, steps + 1):
        op, c, h, o = (z3.BitVec(f"{n}{i}", W) for n in ("op", "c", "h", "o"))
        hyps.append(z3.ULE(op, free_op))
        cases: list[tuple[Any, SymState]] = []
        # free of an allocated block
        targets = []
        for hv, ov in free_cases(m):
            target = z3.And(h == hv, o == ov, s.ah[hv], s.order_[hv] == ov)
            targets.append(target)
            for p in free_paths(s, hv, ov, find_buddy=find_buddy, combine=combine):
                cond = z3.And(op == free_op, target, *p.conds)
                cases.append((cond, p.post))
                if p.final[1] == m.max_order and ov < m.max_order:
                    merged_to_max.append(cond)
        hyps.append(z3.Implies(op == free_op, z3.Or(*targets)))
        # allocation of order k from any suitable block
        oks = []
        for k in range(m.max_order + 1):
            chosen = []
            for cv in range(m.pages):
                for p in alloc_paths(s, k, cv, 0, split=split):
                    cond = z3.And(op == k, c == cv, *p.conds)
                    chosen.append(cond)
                    cases.append((cond, p.post))
            ok = z3.Or(*chosen)
            hyps.append(z3.Implies(z3.And(op == k, alloc_possible(s, k)), ok))
            oks.append(ok)
        fresh = SymState.fresh(m, f"s{i}")
        hyps += fresh.equals(merge(s, cases))
        info.append(Step(op, c, h, o, z3.Or(*oks)))
        s = fresh
        states.append(s)
        for n, f in s.invariants().items():
            goal[f"step {i}: {n}"] = f
    wit = {"all memory allocated at some step": z3.Or(*(x.fp == 0 for x in states[1:])),
           "a free merges up to MAX_PAGE_ORDER": z3.Or(*merged_to_max)} if witnesses else {}

    def decode(model: Any) -> dict[str, Any]:
        def val(t: Any) -> int:
            return int(model.eval(t, model_completion=True).as_long())

        first = next(i for i in range(1, steps + 1)
                     if any(z3.is_false(model.eval(f, model_completion=True))
                            for n, f in goal.items() if n.startswith(f"step {i}:")))
        trace: list[str] = []
        ops: list[dict[str, Any]] = []
        for x in info[:first]:
            if val(x.op) == free_op:
                trace.append(f"free pfn={val(x.h):#x} order={val(x.o)}")
                ops.append({"op": "free", "pfn": val(x.h), "order": val(x.o)})
            elif z3.is_true(model.eval(x.ok, model_completion=True)):
                trace.append(f"alloc order={val(x.op)} -> {val(x.c):#x}")
                ops.append({"op": "alloc", "order": val(x.op), "pfn": val(x.c)})
            else:
                trace.append(f"alloc order={val(x.op)} -> fails")
                ops.append({"op": "alloc", "order": val(x.op), "pfn": -1})
        bad = states[first].decode(model)
        detail = (f"first violation after step {first}: "
                  f"{violated(bad) or 'nothing (ENCODING MISMATCH)'}\n"
                  f"state after step {first}:\n  {_describe(bad)}")
        return {"trace": trace, "detail": detail,
                "data": {"ops": ops, "depth": first, "violations": violated(bad),
                         "state": memstate_to_data(bad)}}

    return prove(f"bmc.k{steps}", hyps, goal, timeout_ms, witnesses=wit, decode=decode)


def alloc_possible(s: SymState, k: int) -> Any:
    """Some free block of order k..MAX_PAGE_ORDER exists (the allocation cannot fail)."""
    return z3.Or(*(z3.And(s.fh[p], z3.UGE(s.order_[p], k), z3.ULE(s.order_[p], s.m.max_order))
                   for p in range(s.m.pages)))
