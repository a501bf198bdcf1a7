"""Broken subjects whose defect shows only under pressure: a node driven to its watermark
(__GFP_THISNODE ignored, sleeping in atomic context, a spurious failure while memory is free)
or many allocations and frees (a leak on free). The subjects are in tests/test_oracle_mutants.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.test_oracle_mutants import (
    IgnoresThisNode,
    LeaksOnFree,
    Mutant,
    SleepsInAtomic,
    SpuriousFailure,
    check_caught,
)

CASES: list[tuple[type[Mutant], dict[str, Any], str]] = [
    (IgnoresThisNode, {}, "range"),
    (SleepsInAtomic, {}, "sleep"),
    (SpuriousFailure, {"pages_only": True}, "liveness"),
    (LeaksOnFree, {"pages_only": True}, "liveness"),
]


@pytest.mark.parametrize(("cls", "kw", "rule"), CASES, ids=[c[0].__name__ for c in CASES])
def test_defect_under_pressure_is_caught(cls: type[Mutant], kw: dict[str, Any], rule: str,
                                         tmp_path: Path) -> None:
    check_caught(cls, kw, rule, tmp_path)


def test_spurious_failure_needs_pressure() -> None:
    """The spurious failure only shows once most memory is allocated: its minimal sequence
    allocates thousands of pages first."""
    r = check_subject_pages(SpuriousFailure)
    assert r.failure is not None and r.failure.rule == "liveness"
    pages = sum(1 << q["order"] for q in r.minimal if q["op"] == "alloc_pages")
    assert pages >= 4096 - 1024


def check_subject_pages(cls: type[Mutant]) -> Any:
    from oracle.run import check_subject

    return check_subject(cls, seed=0, budget=60.0, sequences=10, shrink_budget=2.5,
                         pages_only=True)
