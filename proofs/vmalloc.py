"""Z3 obligations for vmalloc (impl/vmalloc.py, mm/vmalloc.c), on the implementation's own
kit functions called with Z3 values, each with vacuity witnesses and seeded bugs it refutes.

* ``vmalloc.atomic_refused``: vmalloc never sleeps in atomic context because it is refused
  there. For every calling context and every 32-bit caller mask: the page-table allocations
  of vmap_pages_range (vmalloc_pgtable_gfp) may always block, whatever the caller asked for;
  the context check vmalloc runs first (vmalloc_context_ok: BUG_ON(in_interrupt()) plus
  might_sleep()) lets only process context through; so every sleep of its page and
  page-table allocations (the page allocator's own alloc_enters_reclaim) happens in process
  context. Seeded bugs: a check of in_interrupt() alone (spinlock and preempt-disabled
  contexts slip through), and page tables allocated with the caller's mask.
* ``vmalloc.range_fit``: the range allocator's arithmetic (fit_start, is_within_this_va,
  clip_remainders) for every 64-bit free block, size, power-of-two alignment and vstart: a
  request that is_within_this_va accepts gets an aligned start at or above both the block
  and vstart, and the area with its guard page ends inside the block without wrapping; the
  two remainders va_clip leaves and the area tile the block exactly; a block shorter than
  the request never fits (so pruning subtrees by subtree_max_size loses nothing); and a block
  at or above vstart of at least ``size + align - 1`` bytes always fits (the kernel's
  adjusted search length: ``vmalloc.adjusted_length``, verify-long only, ~3 s of CPU).
  Seeded bug: ALIGN rounding down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import z3

from impl.page_alloc import alloc_enters_reclaim
from impl.vmalloc import (
    clip_remainders,
    fit_start,
    is_within_this_va,
    vmalloc_context_ok,
    vmalloc_page_gfp,
    vmalloc_pgtable_gfp,
)
from proofs.core import DEFAULT_TIMEOUT_MS, ProofResult, prove
from spec.context import Context, context_is_atomic
from spec.gfp import GFP_ATOMIC, GFP_KERNEL, gfpflags_allow_blocking
from spec.layout import PAGE_SIZE, PUD_SHIFT
from spec.logic import Bits, If

Fn = Callable[..., Any]
GFP_BITS = 32
W = 64
TOP = (1 << 64) - (1 << 41)


def atomic_refused(context_ok: Fn = vmalloc_context_ok, pgtable_gfp: Fn = vmalloc_pgtable_gfp,
                   page_gfp: Fn = vmalloc_page_gfp,
                   timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """For every context and 32-bit caller mask: vmalloc's page-table allocations may block,
    vmalloc proceeds only in process context, and none of its allocations sleeps (enters
    direct reclaim, as the page allocator decides) outside process context."""
    gfp = z3.BitVec("gfp", GFP_BITS)
    ctx = z3.BitVec("ctx", GFP_BITS)
    f1, m1, f2, m2 = z3.Bools("page_fast_ok page_min_ok pgtable_fast_ok pgtable_min_ok")
    hyps = [z3.ULE(ctx, int(max(Context)))]
    proceeds = context_ok(ctx)
    pt = pgtable_gfp(gfp)
    sleeps = z3.Or(alloc_enters_reclaim(page_gfp(gfp), ctx, f1, m1),
                   alloc_enters_reclaim(pt, ctx, f2, m2))
    atomic = context_is_atomic(ctx)
    goal = {
        "page-table allocations may always block (GFP_PGTABLE_KERNEL, whatever the caller's "
        "mask)": gfpflags_allow_blocking(pt),
        "vmalloc proceeds => process context": z3.Implies(proceeds, z3.Not(atomic)),
        "atomic context => refused": z3.Implies(atomic, z3.Not(proceeds)),
        "vmalloc sleeps => it proceeded in process context":
            z3.Implies(z3.And(proceeds, sleeps), ctx == int(Context.PROCESS)),
    }
    return prove("vmalloc.atomic_refused", hyps, goal, timeout_ms, witnesses={
        "vmalloc sleeps in process context": z3.And(proceeds, sleeps),
        "an atomic caller with a non-blocking mask (GFP_ATOMIC)":
            z3.And(atomic, gfp == GFP_ATOMIC),
        "an atomic caller with GFP_KERNEL": z3.And(atomic, gfp == GFP_KERNEL),
    })


def _unsigned_le(a: Bits, b: Bits) -> Any:
    return z3.ULE(a, b)


def _range_setup(fit: Fn, within: Fn) -> tuple[list[Any], dict[str, Any]]:
    """The free block, request and alignment of the range obligations, and their terms."""
    va_start, va_end, mapped, align, vstart = z3.BitVecs("va_start va_end mapped align vstart",
                                                         W)
    size = mapped + PAGE_SIZE  # __get_vm_area_node: the guard page is part of the request
    hyps = [
        z3.ULT(va_start, va_end), (va_start & (PAGE_SIZE - 1)) == 0,
        (va_end & (PAGE_SIZE - 1)) == 0,
        z3.ULT(0, mapped), (mapped & (PAGE_SIZE - 1)) == 0, z3.ULT(mapped, 1 << 46),
        align != 0, (align & (align - 1)) == 0, z3.ULE(align, 1 << PUD_SHIFT),
        # kernel virtual space ends below the top 2 TiB (the vmalloc range ends at
        # 0xffffe90000000000), so ALIGN() of a block start or of vstart never wraps past 0,
        # which is_within_this_va's "nva < vstart" test would miss for vstart = 0
        z3.ULE(va_end, TOP), z3.ULT(vstart, TOP),
    ]
    w = within(va_start, va_end, size, align, vstart, fit)
    t = {"va_start": va_start, "va_end": va_end, "align": align, "vstart": vstart,
         "size": size, "fits": w if z3.is_bool(w) else w != 0,
         "nva": fit(va_start, vstart, align)}
    return hyps, t


def range_fit(fit: Fn = fit_start, within: Fn = is_within_this_va,
              clip: Fn = clip_remainders, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """For every free block [va_start, va_end) of page-aligned 64-bit addresses below the top
    2 TiB, every page-multiple size (the guard page included) below 64 TiB, every
    power-of-two alignment up to PUD_SIZE and every vstart: what is_within_this_va accepts
    fits, aligned, in the block and at or above vstart, without wrapping; va_clip's two
    remainders and the area tile the block; a block shorter than the request never fits (so
    pruning subtrees by subtree_max_size loses nothing)."""
    hyps, t = _range_setup(fit, within)
    va_start, va_end, vstart = t["va_start"], t["va_end"], t["vstart"]
    size, fits, nva, align = t["size"], t["fits"], t["nva"], t["align"]
    ls, le, rs, re_ = clip(va_start, va_end, nva, size)
    goal = {
        "aligned": z3.Implies(fits, (nva & (align - 1)) == 0),
        "at or above the block and vstart":
            z3.Implies(fits, z3.And(z3.ULE(va_start, nva), z3.ULE(vstart, nva))),
        "the area and its guard page end inside the block, no wrap":
            z3.Implies(fits, z3.And(z3.ULT(nva, nva + size), z3.ULE(nva + size, va_end))),
        "the remainders and the area tile the block":
            z3.Implies(fits, z3.And(ls == va_start, le == nva, rs == nva + size, re_ == va_end,
                                    z3.ULE(ls, le), z3.ULE(rs, re_))),
        "a block shorter than the request never fits":
            z3.Implies(z3.ULT(va_end - va_start, size), z3.Not(fits)),
    }
    return prove("vmalloc.range_fit", hyps, goal, timeout_ms, witnesses={
        "a no-edge fit (two remainders)":
            z3.And(fits, z3.ULT(va_start, nva), z3.ULT(nva + size, va_end)),
        "a full fit": z3.And(fits, nva == va_start, nva + size == va_end),
        "an alignment above PAGE_SIZE": z3.And(fits, z3.UGT(align, PAGE_SIZE)),
        "a block straddling vstart": z3.And(fits, z3.ULT(va_start, vstart)),
    })


def adjusted_length(fit: Fn = fit_start, within: Fn = is_within_this_va,
                    timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ProofResult:
    """The kernel's adjusted search length is enough: for the same blocks, sizes and
    alignments as vmalloc.range_fit, a free block at or above vstart of at least
    size + align - 1 bytes always holds the aligned request (find_vmap_lowest_match can
    prune by subtree_max_size >= length and take the first such block)."""
    hyps, t = _range_setup(fit, within)
    va_start, va_end, vstart = t["va_start"], t["va_end"], t["vstart"]
    length = t["size"] + t["align"] - 1
    long_enough = z3.And(z3.ULE(vstart, va_start), z3.ULE(length, va_end - va_start))
    return prove("vmalloc.adjusted_length", hyps,
                 {"a block of the adjusted length fits": z3.Implies(long_enough, t["fits"])},
                 timeout_ms, witnesses={
                     "an unaligned block less than a page longer than the length":
                         z3.And(long_enough, z3.ULT(va_end - va_start, length + PAGE_SIZE),
                                (va_start & (t["align"] - 1)) != 0)})


# --- seeded bugs ------------------------------------------------------------------------------
def context_ok_in_interrupt_only(ctx: Bits) -> Bits:
    """Refuse only in interrupt context (BUG_ON(in_interrupt()) without might_sleep()): a
    spinlock holder or a preempt-disabled region gets through."""
    return z3.Not(z3.Or(ctx == int(Context.SOFTIRQ), ctx == int(Context.HARDIRQ)))


def pgtable_gfp_of_caller(gfp: Bits) -> Bits:
    """Page tables allocated with the caller's mask (vmalloc(GFP_ATOMIC) would then map
    without blocking, which the kernel's vmap_pages_range never does)."""
    return gfp


def fit_start_round_down(va_start: Bits, vstart: Bits, align: Bits) -> Bits:
    """ALIGN() rounding down instead of up: the area starts before its free block."""
    return If(z3.ULT(vstart, va_start), va_start, vstart) & ~(align - 1)


VM_MUTANTS: dict[str, tuple[str, Fn, Callable[[], ProofResult]]] = {
    "mutant.vmalloc_in_interrupt_only": (
        "vmalloc.atomic_refused", context_ok_in_interrupt_only,
        lambda: atomic_refused(context_ok=context_ok_in_interrupt_only)),
    "mutant.vmalloc_pgtable_caller_gfp": (
        "vmalloc.atomic_refused", pgtable_gfp_of_caller,
        lambda: atomic_refused(pgtable_gfp=pgtable_gfp_of_caller)),
    "mutant.vmalloc_align_rounds_down": (
        "vmalloc.range_fit", fit_start_round_down,
        lambda: range_fit(fit=fit_start_round_down)),
}
LONG_OBLIGATIONS: dict[str, Callable[[], ProofResult]] = {
    "vmalloc.adjusted_length": adjusted_length,
}
"""Slower obligations (about 3 s of CPU): ``make verify-long`` only."""
"""Seeded bugs of the vmalloc obligations: each must be refuted."""

OBLIGATIONS: dict[str, Callable[[], ProofResult]] = {
    "vmalloc.atomic_refused": atomic_refused,
    "vmalloc.range_fit": range_fit,
}


def all_results() -> list[ProofResult]:
    """Every obligation, then every seeded bug (for a quick look from the shell)."""
    return ([fn() for fn in (*OBLIGATIONS.values(), *LONG_OBLIGATIONS.values())]
            + [run() for _, _, run in VM_MUTANTS.values()])


__all__ = ["LONG_OBLIGATIONS", "OBLIGATIONS", "VM_MUTANTS", "adjusted_length", "all_results",
           "atomic_refused", "range_fit"]
