"""Seeded bugs: for every obligation, a wrong variant of the helper it is about.

Each :class:`Mutant` runs its obligation with the wrong helper passed as a parameter and
expects ``refuted`` with a concrete counterexample (a proof that survives a seeded bug would
be vacuous or too weak). For the state obligations the counterexample is also checked
against the real implementation (proofs/replay.py): the concrete re-evaluation of the
invariants must agree with Z3, and replaying the operations on PageAllocator must keep every
invariant, i.e. the bug is in the mutant, not in the allocator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from impl.buddy import expand_halves
from impl.direct_map import __pa
from impl.page_alloc import may_direct_reclaim
from proofs import obligations as ob
from proofs import symbolic as sy
from proofs.core import ProofResult
from proofs.replay import replay_ops, replay_step
from spec.gfp import (
    __GFP_KSWAPD_RECLAIM,
    GFP_ZONE_TABLE,
    GFP_ZONEMASK,
)
from spec.layout import PAGE_OFFSET, PAGE_SIZE
from spec.logic import And, Bits, If, Not, lshr, udiv
from spec.reserves import ALLOC_MIN_RESERVE, ALLOC_NON_BLOCK, watermark_min_adjusted

# --- the wrong helpers -------------------------------------------------------------------------

def buddy_next_order(pfn: Bits, order: Bits) -> Bits:
    """Buddy one order too high: pfn ^ (1 << (order + 1))."""
    return pfn ^ (1 << (order + 1))


def buddy_plus(pfn: Bits, order: Bits) -> Bits:
    """__find_buddy_pfn with + for ^: pfn + (1 << order), right only for a lower half (issue
    10's example: the allocator would run this very function, see
    tests/test_proved_helpers.py)."""
    return pfn + (1 << order)


def higher_buddy_same_order(pfn: Bits, buddy_pfn: Bits, order: Bits) -> Bits:
    """buddy_merge_likely() probing the parent's buddy at ``order`` instead of order + 1."""
    return (buddy_pfn & pfn) ^ (1 << order)


def buddy_self(pfn: Bits, order: Bits) -> Bits:
    """A free that never finds its buddy (forgets to merge)."""
    return pfn


def expand_lower_half(pfn: Bits, low: int, high: int) -> list[tuple[Bits, int]]:
    """expand() putting the lower half back (and so handing out a page it also frees)."""
    return [(pfn, o) for _, o in expand_halves(pfn, low, high)]


def expand_off_by_one(pfn: Bits, low: int, high: int) -> list[tuple[Bits, int]]:
    """expand() halving the size after computing the half: halves at pfn + 2^(order+1)."""
    out: list[tuple[Bits, int]] = []
    size = 1 << high
    while high > low:
        high -= 1
        out.append((pfn + size, high))
        size >>= 1
    return out


def expand_forgets_last_half(pfn: Bits, low: int, high: int) -> list[tuple[Bits, int]]:
    """expand() that does not put the last (smallest) split half back on a free list."""
    return expand_halves(pfn, low, high)[:-1]


def va_without_offset(phys: Bits, page_offset: Bits = PAGE_OFFSET) -> Bits:
    """__va forgetting PAGE_OFFSET."""
    return phys


def pa_off_by_one_page(virt: Bits, page_offset: Bits = PAGE_OFFSET) -> Bits:
    """__pa one page short."""
    return __pa(virt, page_offset) - PAGE_SIZE


def allow_blocking_kswapd(gfp: Bits) -> Bits:
    """gfpflags_allow_blocking testing __GFP_KSWAPD_RECLAIM instead of __GFP_DIRECT_RECLAIM."""
    return (gfp & __GFP_KSWAPD_RECLAIM) != 0


def gfp_zone_shift_1(gfp: Bits) -> Bits:
    """gfp_zone reading GFP_ZONE_TABLE with a shift of 1 per entry instead of GFP_ZONES_SHIFT."""
    return lshr(GFP_ZONE_TABLE, gfp & GFP_ZONEMASK) & 3


def enters_reclaim_any_context(gfp: Bits, ctx: Bits, fast_ok: Bits, min_ok: Bits) -> Bits:
    """alloc_enters_reclaim ignoring the calling context."""
    return And(Not(fast_ok), Not(min_ok), may_direct_reclaim(gfp, 0 * ctx))


def min_adjusted_extra_quarter(mark: Bits, alloc_flags: Bits) -> Bits:
    """watermark_min_adjusted giving non-blocking __GFP_HIGH a further quarter of what it
    already gets (about 72% of min instead of 62.5%)."""
    real = watermark_min_adjusted(mark, alloc_flags)
    nb_high = And((alloc_flags & ALLOC_MIN_RESERVE) != 0, (alloc_flags & ALLOC_NON_BLOCK) != 0)
    return If(nb_high, real - udiv(real, 4), real)


# --- the registry ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mutant:
    """A seeded bug: the obligation it targets, what is wrong, and how to run it."""

    name: str
    obligation: str
    bug: str
    run: Callable[[], ProofResult]
    replay: str = ""  # "", "bmc" or "induction": how to check the counterexample concretely


@dataclass
class MutantResult:
    """Whether a seeded bug was caught (picklable)."""

    name: str
    status: str  # "passed" (refuted, counterexample confirmed) or "failed"
    time: float
    detail: str
    proof: ProofResult
    replay: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "passed"


def run_mutant(mt: Mutant) -> MutantResult:
    """Run the obligation with the seeded bug; ``passed`` iff refuted with a counterexample
    (and, for state obligations, the counterexample checks out on the real allocator)."""
    t0 = time.perf_counter()
    r = mt.run()
    problems: list[str] = []
    lines: list[str] = []
    if r.status != "refuted":
        problems.append(f"expected refuted, got {r.status} ({r.detail})")
    elif not (r.counterexample or r.trace):
        problems.append("refuted without a counterexample")
    elif mt.replay == "bmc":
        rp = replay_ops(r.data["ops"])
        lines = rp.summary().splitlines()
        if not r.data.get("violations"):
            problems.append("ENCODING MISMATCH: the trace's state breaks no invariant concretely")
        if not rp.ok:
            problems.append("the real allocator breaks an invariant on the trace")
    elif mt.replay == "induction":
        if not r.data.get("encoding_ok"):
            problems.append("ENCODING MISMATCH between Z3 and the concrete invariants")
        rp = replay_step(r.data["pre"], r.data["op"])
        lines = rp.summary().splitlines()
        if not rp.ok:
            problems.append("the real allocator breaks an invariant from that pre-state")
    status = "failed" if problems else "passed"
    detail = "; ".join(problems) if problems else (
        f"refuted: {', '.join(r.failed[:3]) or 'counterexample found'}"
        + (f"; trace: {'; '.join(r.trace)}" if r.trace else ""))
    return MutantResult(mt.name, status, time.perf_counter() - t0, detail, r, lines)


def _m(name: str, obligation: str, bug: Callable[..., Any], run: Callable[[], ProofResult],
       replay: str = "") -> Mutant:
    return Mutant(name, obligation, (bug.__doc__ or bug.__name__).strip(), run, replay)


MUTANTS: list[Mutant] = [
    _m("mutant.buddy_next_order", "buddy.arithmetic", buddy_next_order,
       lambda: ob.buddy_arithmetic(find_buddy=buddy_next_order)),
    _m("mutant.buddy_plus", "buddy.arithmetic", buddy_plus,
       lambda: ob.buddy_arithmetic(find_buddy=buddy_plus)),
    _m("mutant.higher_buddy_same_order", "buddy.arithmetic", higher_buddy_same_order,
       lambda: ob.buddy_arithmetic(higher=higher_buddy_same_order)),
    _m("mutant.expand_lower_half", "buddy.expand_split", expand_lower_half,
       lambda: ob.expand_split(split=expand_lower_half)),
    _m("mutant.expand_off_by_one", "buddy.expand_split", expand_off_by_one,
       lambda: ob.expand_split(split=expand_off_by_one)),
    _m("mutant.va_without_offset", "direct_map", va_without_offset,
       lambda: ob.direct_map(va=va_without_offset)),
    _m("mutant.pa_off_by_one_page", "direct_map", pa_off_by_one_page,
       lambda: ob.direct_map(pa=pa_off_by_one_page)),
    _m("mutant.allow_blocking_kswapd", "gfp.blocking", allow_blocking_kswapd,
       lambda: ob.gfp_blocking(allow_blocking=allow_blocking_kswapd)),
    _m("mutant.gfp_zone_shift_1", "gfp.zones", gfp_zone_shift_1,
       lambda: ob.gfp_zones(zone=gfp_zone_shift_1)),
    _m("mutant.enters_reclaim_any_context", "context.atomic_never_sleeps",
       enters_reclaim_any_context,
       lambda: ob.atomic_never_sleeps(enters_reclaim=enters_reclaim_any_context)),
    _m("mutant.min_adjusted_extra_quarter", "watermark.reserve_rule", min_adjusted_extra_quarter,
       lambda: ob.reserve_rule(adjust=min_adjusted_extra_quarter)),
    _m("mutant.free_merges_non_buddy", "induction.free", buddy_next_order,
       lambda: sy.induction_free(find_buddy=buddy_next_order), "induction"),
    _m("mutant.free_merges_plus", "induction.free", buddy_plus,
       lambda: sy.induction_free(find_buddy=buddy_plus), "induction"),
    _m("mutant.free_never_merges", "induction.free", buddy_self,
       lambda: sy.induction_free(find_buddy=buddy_self), "induction"),
    _m("mutant.alloc_forgets_half", "induction.alloc.o0", expand_forgets_last_half,
       lambda: sy.induction_alloc(0, split=expand_forgets_last_half), "induction"),
    _m("mutant.bmc_alloc_forgets_half", "bmc", expand_forgets_last_half,
       lambda: sy.bmc(3, split=expand_forgets_last_half), "bmc"),
    _m("mutant.bmc_free_merges_non_buddy", "bmc", buddy_next_order,
       lambda: sy.bmc(3, find_buddy=buddy_next_order), "bmc"),
]
"""Every seeded bug. Obligations and their mutants: see docs/proofs.md."""

__all__ = ["MUTANTS", "Mutant", "MutantResult", "run_mutant"]
