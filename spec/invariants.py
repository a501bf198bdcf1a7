"""The invariants of the page allocator, each defined once.

Every invariant has a name, a one-sentence meaning (its official statement), the kernel source
it comes from, and one ``definition`` over a :class:`spec.state.PageView` written with the
logic kit (spec/logic.py): evaluated on a concrete state it gives a bool (tests, state
machines, model checker, oracle); evaluated on a symbolic state it gives a Z3 formula (proofs).

Some invariants also have ``fast``, a block-level evaluation over a MemState whose cost grows
with the number of blocks instead of pages, for big machines. That is a second encoding, so
tests/test_invariants.py evaluates both on many states and shows they agree.

Step properties (``STEP_PROPERTIES``) constrain one allocation call (a StepRecord): whether it
was allowed to sleep, and how far into the reserves it went; spec/rules.py registers more (when
a call may fail, where its reclaim may take pages from, how the NUMA counters move, when the
kswapd runs it waited for may stop).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

from spec.gfp import __GFP_THISNODE, MIGRATE_PCPTYPES, gfp_zone
from spec.logic import And, Bits, If, Implies, Not, Or, Sum
from spec.reserves import may_sleep
from spec.state import MemState, PageView, StepRecord


@dataclass(frozen=True)
class Invariant:
    """A named state invariant."""

    name: str
    meaning: str
    kernel_ref: str
    definition: Callable[[PageView], Bits]
    fast: Callable[[MemState], bool] | None = None


@dataclass(frozen=True)
class StepProperty:
    """A named property of one allocation step."""

    name: str
    meaning: str
    kernel_ref: str
    definition: Callable[[StepRecord], Bits]


INVARIANTS: dict[str, Invariant] = {}
STEP_PROPERTIES: dict[str, StepProperty] = {}


def invariant(name: str, meaning: str, kernel_ref: str,
              fast: Callable[[MemState], bool] | None = None
              ) -> Callable[[Callable[[PageView], Bits]], Callable[[PageView], Bits]]:
    """Register ``definition`` under ``name``."""

    def deco(fn: Callable[[PageView], Bits]) -> Callable[[PageView], Bits]:
        INVARIANTS[name] = Invariant(name, meaning, kernel_ref, fn, fast)
        return fn

    return deco


def step_property(name: str, meaning: str, kernel_ref: str
                  ) -> Callable[[Callable[[StepRecord], Bits]], Callable[[StepRecord], Bits]]:
    """Register a step property under ``name``."""

    def deco(fn: Callable[[StepRecord], Bits]) -> Callable[[StepRecord], Bits]:
        STEP_PROPERTIES[name] = StepProperty(name, meaning, kernel_ref, fn)
        return fn

    return deco


def ForAll(xs: range | tuple[int, ...], body: Callable[[int], Bits]) -> Bits:
    """Bounded quantifier over concrete values, unrolled (quantifier-free for Z3)."""
    return And(*(body(x) for x in xs)) if len(xs) else True


def _head(v: PageView, p: int) -> Bits:
    return Or(v.free_head(p), v.alloc_head(p))


def _covers(v: PageView, h: int, k: int) -> Bits:
    """The block headed at ``h`` has order exactly ``k``."""
    return And(_head(v, h), v.order(h) == k)


def _covering(v: PageView, q: int) -> Bits:
    """How many blocks contain pfn ``q`` (blocks are aligned, so only q's ancestors can)."""
    return Sum(*(If(_covers(v, q & ~((1 << k) - 1), k), 1, 0) for k in range(v.max_order + 1)))


# --- fast (block-level) evaluations --------------------------------------------------------
# Each mirrors its per-pfn definition exactly (same order precedence: a free head's order wins,
# as in PageView.order), at a cost linear in the number of blocks and ranges.

def _heads(s: MemState) -> dict[int, int]:
    out = {p: b.order for p, b in s.allocated.items()}
    out.update({p: b.order for p, b in s.free.items()})
    return out


def _segments(s: MemState) -> list[tuple[int, int, int, bool]]:
    """Maximal pfn segments (start, end, blocks covering, usable) of [0, pfn limit)."""
    limit = s.pfn_limit or max(z.end for z in s.zones)
    delta: dict[int, int] = {}
    for pfn, o in _heads(s).items():
        if 0 <= o <= s.max_order and pfn % (1 << o) == 0:  # as _covering: aligned blocks
            delta[pfn] = delta.get(pfn, 0) + 1
            delta[pfn + (1 << o)] = delta.get(pfn + (1 << o), 0) - 1
    usable = sorted(r for z in s.zones for r in z.usable)
    udelta: dict[int, int] = {}
    for st, e in usable:
        udelta[st] = udelta.get(st, 0) + 1
        udelta[e] = udelta.get(e, 0) - 1
    points = sorted({0, limit, *delta, *udelta})
    out = []
    cov = use = 0
    for x, y in pairwise(points):
        cov += delta.get(x, 0)
        use += udelta.get(x, 0)
        if x >= limit:
            break
        out.append((x, min(y, limit), cov, use > 0))
    return out


def _fast_partition(s: MemState) -> bool:
    return all(c == 1 for _x, _y, c, u in _segments(s) if u)


def _fast_no_stray(s: MemState) -> bool:
    return all(c == 0 for _x, _y, c, u in _segments(s) if not u)


def _fast_no_overlap(s: MemState) -> bool:
    return not (set(s.free) & set(s.allocated)) and all(c <= 1 for *_r, c, _u in _segments(s))


def _fast_alignment(s: MemState) -> bool:
    return all(0 <= o <= s.max_order and pfn % (1 << o) == 0 for pfn, o in _heads(s).items())


def _fast_one_zone(s: MemState) -> bool:
    ranges = sorted((st, e, z.zid) for z in s.zones for st, e in z.usable)
    starts = [r[0] for r in ranges]
    limit = s.pfn_limit or max(z.end for z in s.zones)
    for pfn, o in _heads(s).items():
        if not 1 <= o <= s.max_order or pfn >= limit or pfn % (1 << o):
            continue
        end = min(pfn + (1 << o), limit)
        i = bisect_right(starts, pfn) - 1
        if i >= 0 and ranges[i][0] <= pfn < ranges[i][1]:
            if end > ranges[i][1] and s.zone_at(ranges[i][1]) != ranges[i][2]:
                return False
            if end > ranges[i][1] and any(s.zone_at(q) != ranges[i][2]
                                          for q in range(ranges[i][1], end)):
                return False
        elif i + 1 < len(ranges) and ranges[i + 1][0] < end:
            return False
    return True


def _fast_listed_once(s: MemState) -> bool:
    return all(b.times_listed == 1 and b.order >= 0 for b in s.free.values())


def _fast_right_list(s: MemState) -> bool:
    return all(b.list_order == b.order and b.list_zid == s.zone_at(b.pfn)
               and b.list_mt == s.pageblock_mt[b.pfn >> s.pageblock_order]
               for b in s.free.values())


def _fast_fully_merged(s: MemState) -> bool:
    for b in s.free.values():
        if 0 <= b.order < s.max_order:
            o = s.free.get(b.pfn ^ (1 << b.order))
            if o is not None and o.order == b.order and s.zone_at(o.pfn) == s.zone_at(b.pfn):
                return False
    return True


def _fast_nr_free(s: MemState) -> bool:
    counted: dict[tuple[int, int, int], int] = {}
    for b in s.free.values():
        key = (b.list_zid, b.list_order, b.list_mt)
        counted[key] = counted.get(key, 0) + 1
    return all(counted.get(k, 0) == s.nr_free.get(k, 0)
               for k in ((z.zid, o, mt) for z in s.zones for o in range(s.max_order + 1)
                         for mt in range(MIGRATE_PCPTYPES)))


def _fast_free_pages(s: MemState) -> bool:
    sums: dict[int, int] = {}
    for b in s.free.values():
        z = s.zone_at(b.pfn)
        sums[z] = sums.get(z, 0) + ((1 << b.order) if 0 <= b.order <= s.max_order else 0)
    return all(sums.get(z.zid, 0) == s.free_pages.get(z.zid, 0) for z in s.zones)


# --- the invariants --------------------------------------------------------------------------

@invariant("buddy.partition",
           "Every managed page lies in exactly one block, free or allocated.",
           "mm/page_alloc.c (__free_one_page, expand): the buddy system partitions a zone",
           fast=_fast_partition)
def inv_partition(v: PageView) -> Bits:
    return ForAll(v.pfns, lambda q: Implies(v.zone(q) >= 0, _covering(v, q) == 1))


@invariant("buddy.no_stray_pages",
           "No block contains a hole or a reserved page.",
           "mm/mm_init.c, mm/memblock.c: reserved pages never reach the buddy allocator",
           fast=_fast_no_stray)
def inv_no_stray(v: PageView) -> Bits:
    return ForAll(v.pfns, lambda q: Implies(v.zone(q) < 0, _covering(v, q) == 0))


@invariant("buddy.no_overlap",
           "No page is in two blocks, and no head page is both free and allocated.",
           "mm/page_alloc.c: a page is PageBuddy or owned, never both",
           fast=_fast_no_overlap)
def inv_no_overlap(v: PageView) -> Bits:
    return ForAll(v.pfns, lambda q: And(_covering(v, q) <= 1,
                                        Not(And(v.free_head(q), v.alloc_head(q)))))


@invariant("buddy.alignment",
           "A block of order k starts on a multiple of 2^k and k <= MAX_PAGE_ORDER.",
           "mm/page_alloc.c __free_one_page: VM_BUG_ON_PAGE(pfn & ((1 << order) - 1))",
           fast=_fast_alignment)
def inv_alignment(v: PageView) -> Bits:
    def one(h: int) -> Bits:
        o = v.order(h)
        return Implies(_head(v, h), And(o >= 0, o <= v.max_order,
                                        Or(*(And(o == k, h % (1 << k) == 0)
                                             for k in range(v.max_order + 1)))))
    return ForAll(v.pfns, one)


@invariant("buddy.contiguity",
           "A block is 2^k consecutive pfns of one zone, hence consecutive logical addresses.",
           "mm/page_alloc.c bad_range(), page_is_buddy(): buddies share a zone",
           fast=_fast_one_zone)
def inv_one_zone(v: PageView) -> Bits:
    def one(q: int) -> Bits:
        return And(*(Implies(_covers(v, q & ~((1 << k) - 1), k),
                             v.zone(q) == v.zone(q & ~((1 << k) - 1)))
                     for k in range(1, v.max_order + 1)))
    return ForAll(v.pfns, one)


@invariant("freelist.listed_once",
           "Every free block is on exactly one free list, and only PageBuddy pages are listed.",
           "mm/page_alloc.c __add_to_free_list / __del_page_from_free_list",
           fast=_fast_listed_once)
def inv_listed_once(v: PageView) -> Bits:
    return ForAll(v.pfns, lambda p: Implies(v.free_head(p),
                                            And(v.times_listed(p) == 1, v.order(p) >= 0)))


@invariant("freelist.right_list",
           "A free block is on the list of its own order, zone and pageblock migratetype.",
           "mm/page_alloc.c __add_to_free_list: VM_WARN_ONCE(get_pageblock_migratetype != mt)",
           fast=_fast_right_list)
def inv_right_list(v: PageView) -> Bits:
    return ForAll(v.pfns, lambda p: Implies(v.free_head(p), And(
        v.list_order(p) == v.order(p), v.list_zid(p) == v.zone(p),
        v.list_mt(p) == v.pageblock_mt(p))))


@invariant("freelist.fully_merged",
           "No two free buddies of the same order (below MAX_PAGE_ORDER) in one zone are left "
           "unmerged.",
           "mm/page_alloc.c __free_one_page: merge while the buddy is free",
           fast=_fast_fully_merged)
def inv_fully_merged(v: PageView) -> Bits:
    def pair(h: int, k: int) -> Bits:
        b = h + (1 << k)
        if b not in v.pfns:
            return True
        return Not(And(v.free_head(h), v.free_head(b), v.order(h) == k, v.order(b) == k,
                       v.zone(h) == v.zone(b)))
    return And(*(pair(h, k) for k in range(v.max_order)
                 for h in range(v.pfns.start, v.pfns.stop, 1 << (k + 1))))


@invariant("freelist.nr_free",
           "free_area[order].nr_free of each list equals the number of blocks on it.",
           "include/linux/mmzone.h struct free_area",
           fast=_fast_nr_free)
def inv_nr_free(v: PageView) -> Bits:
    return And(*(v.nr_free(z, o, mt) == Sum(*(
        If(And(v.free_head(p), v.list_zid(p) == z, v.list_order(p) == o, v.list_mt(p) == mt),
           1, 0) for p in v.pfns))
        for z in v.zids for o in range(v.max_order + 1) for mt in range(MIGRATE_PCPTYPES)))


@invariant("freelist.free_pages",
           "NR_FREE_PAGES of a zone equals the pages in its free blocks.",
           "mm/page_alloc.c account_freepages()",
           fast=_fast_free_pages)
def inv_free_pages(v: PageView) -> Bits:
    return And(*(v.free_pages(z) == Sum(*(
        If(And(v.free_head(p), v.zone(p) == z), _pow2(v.order(p), v.max_order), 0)
        for p in v.pfns)) for z in v.zids))


def _pow2(o: Bits, max_order: int) -> Bits:
    """2^o for 0 <= o <= max_order, as a chain of Ifs (no shifts, so both backends agree)."""
    r: Bits = 0
    for k in range(max_order + 1):
        r = If(o == k, 1 << k, r)
    return r


# --- step properties -------------------------------------------------------------------------

@step_property("context.atomic_never_sleeps",
               "A call sleeps only in process context and only with __GFP_DIRECT_RECLAIM.",
               "kernel/sched/core.c __might_resched; include/linux/gfp.h gfpflags_allow_blocking")
def step_atomic_never_sleeps(r: StepRecord) -> Bits:
    return Implies(r.slept, may_sleep(r.gfp, r.ctx))


@step_property("watermark.reserves",
               "A successful allocation leaves its zone at least at min (minus the share of "
               "min its flags may use) plus lowmem_reserve, unless it may ignore watermarks.",
               "mm/page_alloc.c __zone_watermark_ok, gfp_to_alloc_flags")
def step_reserves(r: StepRecord) -> Bits:
    return Implies(And(r.pfn >= 0, Not(r.no_watermarks)), r.free_after >= r.mark)


@step_property("range.zone_and_node",
               "A block comes from a zone the mask allows and, with __GFP_THISNODE, from the "
               "requested node.",
               "include/linux/gfp.h gfp_zone, gfp_zonelist; mm/page_alloc.c")
def step_zone_and_node(r: StepRecord) -> Bits:
    ok_zone = r.zone_idx <= gfp_zone(r.gfp)
    ok_node = Implies((r.gfp & __GFP_THISNODE) != 0, r.nid == r.pref_nid)
    return Implies(r.pfn >= 0, And(ok_zone, ok_node))


# --- evaluation ------------------------------------------------------------------------------

def violated(s: MemState, *, fast: bool = False, names: tuple[str, ...] | None = None
             ) -> list[str]:
    """Names of the state invariants ``s`` breaks (per-pfn definitions unless ``fast``)."""
    v = s.view()
    out = []
    for inv in INVARIANTS.values():
        if names is not None and inv.name not in names:
            continue
        ok = inv.fast(s) if fast and inv.fast is not None else inv.definition(v)
        if not ok:
            out.append(inv.name)
    return out


def step_violations(r: StepRecord) -> list[str]:
    """Names of the step properties the allocation step ``r`` breaks."""
    return [p.name for p in STEP_PROPERTIES.values() if not p.definition(r)]


# spec/rules.py registers the failure, reclaim, NUMA and kswapd step properties; importing it
# here means every reader of STEP_PROPERTIES (check_step, the model checker, the state machine)
# sees them. It imports step_property from this module, hence the import at the end.
from spec import rules as _rules  # noqa: E402, F401
