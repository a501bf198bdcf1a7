"""Hypothesis profiles of the state-machine tests, selected with ``HYPOTHESIS_PROFILE``.

* ``quick`` (default, ``make test``): a few dozen short programs, derandomized, so every run
  explores the same programs and a failure reproduces exactly.
* ``verify`` (``make verify``): longer programs and many more of them, still derandomized.
* ``fuzz`` (``make fuzz``): open-ended random search, 100 steps per program; failures are
  saved in ``.hypothesis/examples`` and replayed first on the next run. ``HYPOTHESIS_SEED``
  fixes the random seed (applied by :func:`seeded`).

A failing run must end within its budget with the broken rule and the example, never as a
timeout: :func:`bounded_shrinking` caps the time Hypothesis spends shrinking a failure
(:data:`SHRINK_SECONDS` per profile, ``KMEMSPEC_SHRINK_SECONDS`` overrides), after which it
reports the example as far as it got; ``report_multiple_bugs=False`` makes it shrink and report
one failure, not one per distinct exception site.

The profiles are registered on import but not loaded globally: loading one would change the
settings of every other ``@given`` test in the session. Tests apply :func:`active` explicitly.

:data:`slow` marks checks that take tens of seconds (the default model-checker run, the full
CrossHair run over proofs/contracts.py): ``make test`` runs ``pytest tests`` without a marker
filter, so they are skipped unless ``KMEMSPEC_SLOW=1`` (which the ``make verify`` checks of
proofs/checks_extra.py set) or the profile is ``verify`` or ``fuzz``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import pytest
from hypothesis import HealthCheck, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

QUICK = "quick"
VERIFY = "verify"
FUZZ = "fuzz"
PROFILES = (QUICK, VERIFY, FUZZ)

_base = settings(deadline=None, print_blob=True, report_multiple_bugs=False)

settings.register_profile(QUICK, _base, max_examples=30, stateful_step_count=30,
                          derandomize=True, database=None)
settings.register_profile(VERIFY, _base, max_examples=300, stateful_step_count=60,
                          derandomize=True, database=None)
settings.register_profile(
    FUZZ, _base, max_examples=10**9, stateful_step_count=100, derandomize=False,
    database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
    suppress_health_check=[HealthCheck.too_slow])


def name() -> str:
    """The selected profile: ``HYPOTHESIS_PROFILE``, default ``quick``."""
    n = os.environ.get("HYPOTHESIS_PROFILE", QUICK)
    if n not in PROFILES:
        raise ValueError(f"HYPOTHESIS_PROFILE={n!r}: use one of {', '.join(PROFILES)}")
    return n


def active() -> settings:
    """The settings of the selected profile."""
    return settings.get_profile(name())


SHRINK_SECONDS = {QUICK: 15.0, VERIFY: 15.0, FUZZ: 300.0}


def shrink_seconds() -> float:
    """The shrinking budget: ``KMEMSPEC_SHRINK_SECONDS`` or the profile's."""
    env = os.environ.get("KMEMSPEC_SHRINK_SECONDS")
    return float(env) if env else SHRINK_SECONDS[name()]


@contextmanager
def bounded_shrinking(seconds: float | None = None) -> Iterator[None]:
    """Within the block, Hypothesis stops shrinking a failure after ``seconds`` (default
    :func:`shrink_seconds`) and reports the smallest example found so far. Hypothesis has no
    public setting for this; its engine reads ``MAX_SHRINKING_SECONDS`` (300 s) when the
    shrink phase starts, so the block sets it and restores it."""
    from hypothesis.internal.conjecture import engine

    old = engine.MAX_SHRINKING_SECONDS
    engine.MAX_SHRINKING_SECONDS = seconds if seconds is not None else shrink_seconds()  # type: ignore[assignment]
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = old


def run_machine(machine: type[RuleBasedStateMachine], *, max_examples: int | None = None,
                shrink: float | None = None) -> None:
    """Run a state machine test with the selected profile (``max_examples`` overriding its
    count) and its shrinking bounded by :func:`bounded_shrinking` (``shrink`` seconds), the one
    way every state-machine test of the suite runs, so none forgets the bound."""
    config = active() if max_examples is None else settings(active(), max_examples=max_examples)
    with bounded_shrinking(shrink):
        run_state_machine_as_test(machine, settings=config)


T = TypeVar("T")


def seeded(thing: T) -> T:
    """Apply ``HYPOTHESIS_SEED`` (an integer) to a test or a state machine class, if set."""
    s = os.environ.get("HYPOTHESIS_SEED")
    if s is None or s == "":
        return thing
    return cast(T, seed(int(s))(cast(Any, thing)))


def slow_enabled() -> bool:
    """Whether the slow checks run: ``KMEMSPEC_SLOW=1`` or a verify/fuzz profile."""
    return os.environ.get("KMEMSPEC_SLOW", "") not in ("", "0") or name() != QUICK


slow = pytest.mark.skipif(not slow_enabled(), reason="slow check: set KMEMSPEC_SLOW=1 "
                          "(make verify does)")
"""Decorator for slow checks (use together with ``@pytest.mark.slow``)."""

CROSSHAIR_EXAMPLES = {QUICK: 3, VERIFY: 8, FUZZ: 50}


def crosshair_examples() -> int:
    """Examples for the hypothesis-crosshair runs: ``KMEMSPEC_CROSSHAIR_EXAMPLES`` or a
    per-profile default (after about five symbolic programs the provider falls back to
    concrete generation, so larger budgets add little)."""
    env = os.environ.get("KMEMSPEC_CROSSHAIR_EXAMPLES")
    return int(env) if env else CROSSHAIR_EXAMPLES[name()]
