"""The checks ``make verify`` runs besides the Z3 proofs: bounded and randomized checking of the
real implementation, and CrossHair over the helper contracts.

Each check is a subprocess (so a crash, a hang or a memory blow-up stays contained and the
runner can put them on separate cores), described by :class:`ExtraCheck`; :func:`run_check`
runs one and returns a picklable :class:`ExtraResult`. None of these is a proof: a model-checker
run is exhaustive only within its bounds, Hypothesis and CrossHair are searches. Results say
``passed``/``failed``/``timeout``, never ``proved``.

Wiring (proofs/verify.py): ``for c in extra_checks(long=args.long)`` submit ``run_check(c)`` to
the same worker pool as the obligations; print ``result.summary()``; the run fails unless every
``result.ok``. ``python -m proofs.checks_extra [--long] [--jobs N] [--only SUBSTRING]`` runs them
alone.

Measured (alone on one core / two at a time on two cores): modelcheck 29 / 44 s,
modelcheck-mutants 3 / 4 s, crosshair-contracts 2 x 32 / 38 s, crosshair-mutants 29 / 46 s,
hypothesis-statemachine 15 / 27 s, hypothesis-crosshair 12 / 13 s: 140 s of CPU, 105 s on
two cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

# proofs/contracts.py split in two halves of similar CrossHair cost
CONTRACT_GROUPS = {
    "buddy+direct-map": ("buddy_of", "merged_block", "expand_split", "order_for_size",
                         "va_pa_round_trip", "pfn_virt_round_trip"),
    "gfp+reserves": ("migratetype_of", "zone_of", "check_gfp_agrees", "gfp_round_trip",
                     "adjusted_min", "alloc_flags_of"),
}

Status = Literal["passed", "failed", "timeout"]


@dataclass(frozen=True)
class ExtraCheck:
    """One check: a command run from the repository root."""

    name: str
    what: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 170.0
    budget_s: float = 60.0  # expected time on one core; the runner may warn beyond it
    ok_returncodes: tuple[int, ...] = (0,)


@dataclass
class ExtraResult:
    """The outcome of one :class:`ExtraCheck` (plain data, picklable)."""

    name: str
    status: Status
    time: float
    returncode: int | None
    output: str  # the last lines of stdout and stderr
    what: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "passed"

    def summary(self) -> str:
        head = f"{self.name}: {self.status} in {self.time:.1f}s ({self.what})"
        if self.ok:
            last = [ln for ln in self.output.splitlines() if ln.strip()][-1:]
            return head + (f"\n  {last[0].strip()}" if last else "")
        return head + "\n  " + self.output.replace("\n", "\n  ")


def _pytest(*args: str) -> tuple[str, ...]:
    return (PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args)


def _crosshair(timeout: float, *targets: str) -> tuple[str, ...]:
    return (PY, "-m", "crosshair", "check", "--analysis_kind=PEP316",
            f"--per_condition_timeout={timeout}", *targets)


def extra_checks(long: bool = False) -> list[ExtraCheck]:
    """The checks of ``make verify`` (``long``: ``make verify-long``, bigger bounds)."""
    slow = {"KMEMSPEC_SLOW": "1"}
    verify = {**slow, "HYPOTHESIS_PROFILE": "verify"}
    ch_timeout = 10.0 if long else 1.5
    checks = [
        ExtraCheck(
            "modelcheck", "explicit-state BFS of PageAllocator: flat 16 pages, MAX_PAGE_ORDER 3, "
            "min 3, <= 3 live blocks (<= 2 page cache); every state and step checked",
            (PY, "-m", "proofs.modelcheck", "--require-witnesses"), budget_s=50),
        ExtraCheck(
            "modelcheck-mutants", "each seeded allocator bug is caught with a shortest path",
            _pytest("tests/test_modelcheck.py", "-k", "not default_run"), budget_s=5),
        *(ExtraCheck(
            f"crosshair-contracts[{g}]", f"CrossHair PEP316 over proofs/contracts.py ({g}), "
            f"{ch_timeout:g} s per condition",
            _crosshair(ch_timeout, *(f"proofs.contracts.{f}" for f in fns)),
            budget_s=(200 if long else 40)) for g, fns in CONTRACT_GROUPS.items()),
        ExtraCheck(
            "crosshair-mutants", "CrossHair finds a counterexample for a wrong variant of every "
            "contract; arithmetic contracts confirmed over all paths",
            _pytest("tests/test_crosshair.py", "-k", "not real_contracts"), budget_s=50),
        ExtraCheck(
            "hypothesis-statemachine", "Hypothesis state machine vs the spec-side model, "
            "profile verify (300 programs x 60 steps, derandomized)",
            _pytest("tests/test_state_machine.py", "-k", "not crosshair"), env=verify,
            budget_s=35),
        ExtraCheck(
            "hypothesis-crosshair", "the reduced state machine under the hypothesis-crosshair "
            "backend (8 programs x 8 steps)",
            _pytest("tests/test_state_machine.py", "-k", "crosshair"), env=verify, budget_s=20),
    ]
    if long:
        checks.append(ExtraCheck(
            "modelcheck-tiny", "BFS on MachineConfig.tiny() (32 pages, min 2), <= 3 live "
            "blocks (<= 1 page cache), block-level invariants",
            (PY, "-m", "proofs.modelcheck", "--pages", "32", "--min", "2", "--max-live", "3",
             "--max-pagecache", "1", "--fast-only"), timeout_s=900, budget_s=300))
    return checks


def _tail(text: str, n: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


def run_check(check: ExtraCheck) -> ExtraResult:
    """Run ``check`` from the repository root; never raises for a failing check."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **check.env}
    t0 = time.perf_counter()
    try:
        p = subprocess.run(check.argv, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=check.timeout_s)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return ExtraResult(check.name, "timeout", time.perf_counter() - t0, None,
                           _tail(out) + f"\n(timed out after {check.timeout_s:g} s)", check.what)
    status: Status = "passed" if p.returncode in check.ok_returncodes else "failed"
    output = _tail(p.stdout + ("\n" + p.stderr if status == "failed" and p.stderr else ""))
    return ExtraResult(check.name, status, time.perf_counter() - t0, p.returncode, output,
                       check.what)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m proofs.checks_extra",
                                 description="Run the extra verify checks.")
    ap.add_argument("--long", action="store_true", help="the verify-long bounds")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", default="", help="run checks whose name contains this")
    args = ap.parse_args(argv)
    checks = [c for c in extra_checks(args.long) if args.only in c.name]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(run_check, checks))
    for r, c in zip(results, checks, strict=True):
        print(r.summary())
        if r.ok and r.time > c.budget_s:
            print(f"  note: over its budget of {c.budget_s:g} s")
    failed = [r.name for r in results if not r.ok]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed "
          f"in {time.perf_counter() - t0:.1f}s" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
