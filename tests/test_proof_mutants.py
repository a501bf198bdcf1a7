"""Every Z3 obligation proves with the real helpers, refutes a seeded bug with a concrete
counterexample, and fails (never passes) when its hypotheses are unsatisfiable."""

from __future__ import annotations

from typing import Any

import z3

from impl.buddy import combined_pfn, expand_halves, find_buddy_pfn
from impl.direct_map import __va
from proofs import obligations as ob
from proofs import symbolic as sym
from proofs.core import ProofResult, prove
from spec.gfp import (
    __GFP_DIRECT_RECLAIM,
    __GFP_KSWAPD_RECLAIM,
    ZONE_DMA32,
    ZONE_NORMAL,
    gfp_zone,
)
from spec.logic import And, Bits, If, udiv
from spec.reserves import may_sleep, watermark_min_adjusted


def _refuted(r: ProofResult) -> None:
    assert r.status == "refuted", r.summary()
    assert not r.ok
    assert r.counterexample or r.trace, "a refutation must carry concrete values"


def test_every_obligation_proves_with_the_real_helpers() -> None:
    for fn in (ob.buddy_arithmetic, ob.direct_map, ob.gfp_blocking, ob.gfp_zones,
               ob.atomic_never_sleeps, ob.reserve_rule):
        r = fn()
        assert r.ok, r.summary()


def test_vacuous_hypotheses_are_a_failure_not_a_proof() -> None:
    x = z3.BitVec("x", 8)
    r = prove("vacuous", [x == 1, x == 2], x == 3, 5_000)
    assert r.status != "proved" or r.vacuity != "passed"
    assert not r.ok


def test_buddy_arithmetic_refutes_a_wrong_buddy() -> None:
    _refuted(ob.buddy_arithmetic(find_buddy=lambda p, o: p ^ (1 << (o + 1))))


def test_buddy_arithmetic_refutes_a_wrong_parent() -> None:
    _refuted(ob.buddy_arithmetic(combine=lambda p, b: p | b))


def test_split_refutes_an_off_by_one_half() -> None:
    def bad(pfn: Bits, low: int, high: int) -> list[tuple[Bits, int]]:
        return [(h + 1, o) for h, o in expand_halves(pfn, low, high)]
    _refuted(ob.expand_split(split=bad, max_order=3))


def test_direct_map_refutes_a_pa_off_by_one_page() -> None:
    _refuted(ob.direct_map(pa=lambda v, po=0xFFFF888000000000: v - po - 4096))


def test_direct_map_refutes_a_va_without_page_offset() -> None:
    _refuted(ob.direct_map(va=lambda p, po=0xFFFF888000000000: p))
    assert __va(0) == 0xFFFF888000000000


def test_gfp_blocking_refutes_the_kswapd_bit() -> None:
    _refuted(ob.gfp_blocking(allow_blocking=lambda g: (g & __GFP_KSWAPD_RECLAIM) != 0))


def test_gfp_zones_refutes_a_wrong_zone_table() -> None:
    # GFP_DMA32 served from ZONE_NORMAL: the kind of table slip gfp_zone's proof must catch
    _refuted(ob.gfp_zones(zone=lambda g: If(gfp_zone(g) == ZONE_DMA32, ZONE_NORMAL + 0 * g,
                                            gfp_zone(g))))


def test_atomic_never_sleeps_refutes_a_decision_that_ignores_the_context() -> None:
    def bad(gfp: Bits, ctx: Bits, fast_ok: Bits, min_ok: Bits) -> Bits:
        return And(z3.Not(fast_ok), z3.Not(min_ok), (gfp & __GFP_DIRECT_RECLAIM) != 0)
    r = ob.atomic_never_sleeps(enters_reclaim=bad)
    _refuted(r)
    # the counterexample is a real atomic context with a blocking mask
    assert any(k.startswith("ctx") for k in r.counterexample), r.counterexample
    assert may_sleep(0xCC0, 0)


def test_reserve_rule_refutes_full_reserve_access() -> None:
    # every caller with a big enough mark may use half of min, __GFP_HIGH or not
    _refuted(ob.reserve_rule(adjust=lambda mark, flags: If(
        z3.UGT(mark, 1000), udiv(mark, 2), watermark_min_adjusted(mark, flags))))


def test_induction_free_refutes_a_merge_with_a_non_buddy() -> None:
    r = sym.induction_free(find_buddy=lambda p, o: p ^ (1 << o) ^ 1 if not isinstance(p, int)
                           else (p ^ (1 << o)) ^ (1 if o == 0 else 0))
    assert not r.ok, r.summary()


def test_induction_alloc_refutes_a_split_that_drops_a_half() -> None:
    def bad(pfn: Any, low: int, high: int) -> list[tuple[Any, int]]:
        return expand_halves(pfn, low, high)[1:]
    r = sym.induction_alloc(1, split=bad)
    _refuted(r)
    assert r.trace  # printed as an operation on a concrete pre-state


def test_induction_proves_with_the_real_helpers() -> None:
    assert sym.induction_init().ok
    assert sym.induction_free().ok
    for k in range(4):
        assert sym.induction_alloc(k).ok
    assert find_buddy_pfn(4, 2) == 0 and combined_pfn(4, 0) == 0
