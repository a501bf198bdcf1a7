"""The registry of everything ``make verify`` (``python -m proofs.verify``) runs.

A check is a :class:`Check`: a unique ``name``, a ``kind`` (``proof``, ``bmc``, ``mutant``,
``model-check``, ``crosshair``, ``hypothesis``, ``test``, ...), a ``run(long)`` callable and
an expected ``cost`` in seconds (the runner starts the most expensive checks first). ``run``
returns a result object; the runner understands

* :class:`proofs.core.ProofResult` (shown as two rows: the vacuity check and the proof),
* :class:`proofs.mutants.MutantResult`,
* :class:`CheckResult`, or any object with ``status`` (``proved``/``passed`` mean success;
  anything else is a failure), ``time`` (seconds) and ``detail`` or ``output`` (text).

Checks run in worker processes that import this module and look the check up by name, so a
check must be registered at import time of this module: append it to :data:`CHECKS`, or add a
*provider* (a function ``long -> list[Check]``) to :data:`PROVIDERS`.

Adding a check that runs a command (CrossHair, pytest, a model checker): use
:func:`subprocess_check`, which runs the command from the repository root with the project on
``PYTHONPATH``, a timeout, and maps the exit code to ``passed`` (in ``ok_returncodes``) or
``failed`` (anything else, or ``timeout``), keeping the last lines of output as the detail::

    CHECKS.append(subprocess_check(
        "pytest.fast", "test", [sys.executable, "-m", "pytest", "-q", "-m", "not slow", "tests"],
        timeout_s=120, cost=40))
    CHECKS.append(subprocess_check(
        "crosshair.buddy", "crosshair",
        [sys.executable, "-m", "crosshair", "check", "--per_condition_timeout=2",
         "proofs.contracts"], cost=30, long_only=False))

``long_only=True`` registers a check only for ``make verify-long``; ``normal_only=True`` only
for ``make verify``.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from proofs import conformance as cf
from proofs import obligations as ob
from proofs import pgtable as pgtable_ob
from proofs import slab as slab_ob
from proofs import symbolic as sy
from proofs import vmalloc as vm_ob
from proofs.core import ProofResult
from proofs.mutants import MUTANTS, Mutant, MutantResult, run_mutant

ROOT = Path(__file__).resolve().parent.parent
OK_STATUSES = ("proved", "passed")


@dataclass
class CheckResult:
    """One row of the report (plain data: it crosses process boundaries and goes to JSON)."""

    name: str
    kind: str
    status: str
    time: float
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES


@dataclass(frozen=True)
class Check:
    """A registered check; see the module docstring."""

    name: str
    kind: str
    run: Callable[[bool], Any]
    cost: float = 1.0
    long_only: bool = False
    normal_only: bool = False
    what: str = ""


def subprocess_check(name: str, kind: str, argv: Sequence[str], *, timeout_s: float = 170.0,
                     ok_returncodes: tuple[int, ...] = (0,), env: dict[str, str] | None = None,
                     cost: float = 30.0, long_only: bool = False, normal_only: bool = False,
                     what: str = "") -> Check:
    """A check that runs ``argv`` from the repository root: exit code in ``ok_returncodes``
    is ``passed``, anything else ``failed``, no exit within ``timeout_s`` is ``timeout``."""
    cmd = tuple(argv)

    def run(long: bool) -> CheckResult:
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True,
                               timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return CheckResult(name, kind, "timeout", time.perf_counter() - t0,
                               f"no exit after {timeout_s:g} s: {' '.join(cmd)}")
        status = "passed" if p.returncode in ok_returncodes else "failed"
        tail = (p.stdout + ("\n" + p.stderr if status == "failed" else "")).strip()
        return CheckResult(name, kind, status, time.perf_counter() - t0,
                           "\n".join(tail.splitlines()[-15:]), {"returncode": p.returncode})

    return Check(name, kind, run, cost, long_only, normal_only, what or " ".join(cmd))


# --- result adapters ------------------------------------------------------------------------------

def _short(text: str, n: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[:n])


def _proof_data(r: ProofResult) -> dict[str, Any]:
    return {"vacuity": r.vacuity, "failed": r.failed, "trace": r.trace,
            "counterexample": r.counterexample, **r.data}


def to_rows(check: Check, result: Any) -> list[CheckResult]:
    """The report rows of one check's result."""
    if isinstance(result, ProofResult):
        vac_status = {"passed": "passed", "failed": "failed", "unknown": "unknown"}[
            result.vacuity]
        vac = CheckResult(check.name, "vacuity", vac_status, result.vacuity_time,
                          "hypotheses satisfiable, witnesses reachable" if vac_status == "passed"
                          else _short(result.detail))
        detail = "" if result.ok else _short("\n".join(
            x for x in (("breaks: " + ", ".join(result.failed[:4])) if result.failed else "",
                        ("trace: " + "; ".join(result.trace)) if result.trace else "",
                        result.detail) if x))
        if result.ok and "cases" in result.data:
            detail = f"{result.data['cases']} cases"
        return [vac, CheckResult(check.name, check.kind, result.status, result.time, detail,
                                 _proof_data(result))]
    if isinstance(result, MutantResult):
        return [CheckResult(check.name, check.kind, result.status, result.time,
                            _short(result.detail, 3),
                            {"replay": result.replay, **_proof_data(result.proof)})]
    if isinstance(result, CheckResult):
        return [result]
    status = str(getattr(result, "status", "failed"))
    detail = str(getattr(result, "detail", "") or getattr(result, "output", ""))
    return [CheckResult(check.name, check.kind, status, float(getattr(result, "time", 0.0)),
                        _short(detail, 8) if status not in OK_STATUSES else _short(detail, 1))]


# --- the checks -------------------------------------------------------------------------------

def _proof(name: str, fn: Callable[[], ProofResult], cost: float, kind: str = "proof",
           long_only: bool = False, normal_only: bool = False) -> Check:
    doc = (getattr(fn, "func", fn).__doc__ or "").strip()

    def run(long: bool) -> ProofResult:
        return fn()

    return Check(name, kind, run, cost, long_only, normal_only, " ".join(doc.split()))


def _mutant(m: Mutant, cost: float) -> Check:
    def run(long: bool) -> MutantResult:
        return run_mutant(m)

    return Check(m.name, "mutant", run, cost, what=f"{m.obligation}: {m.bug}")


LONG_MACHINE = sy.Machine(32, 3)

CHECKS: list[Check] = [
    _proof("buddy.arithmetic", ob.buddy_arithmetic, 4),
    _proof("buddy.expand_split", ob.expand_split, 6),
    _proof("direct_map", ob.direct_map, 0.5),
    _proof("gfp.blocking", ob.gfp_blocking, 0.2),
    _proof("gfp.zones", ob.gfp_zones, 0.2),
    _proof("context.atomic_never_sleeps", ob.atomic_never_sleeps, 0.2),
    _proof("watermark.reserve_rule", ob.reserve_rule, 1),
    _proof("induction.init", sy.induction_init, 0.3, "induction"),
    _proof("induction.free", sy.induction_free, 6, "induction"),
    *(_proof(f"induction.alloc.o{k}", partial(sy.induction_alloc, k), 2, "induction")
      for k in range(4)),
    _proof("bmc.k3", partial(sy.bmc, 3), 4, "bmc", normal_only=True),
    _proof("bmc.k4", partial(sy.bmc, 4), 90, "bmc", long_only=True),
    _proof("induction.free[N=32]", partial(sy.induction_free, LONG_MACHINE), 30, "induction",
           long_only=True),
    *(_proof(f"induction.alloc.o{k}[N=32]", partial(sy.induction_alloc, k, LONG_MACHINE), 8,
             "induction", long_only=True) for k in range(4)),
    *(_mutant(m, 2) for m in MUTANTS),
    Check("symbolic.conforms_to_impl", "conformance", cf.verify_row, 15, what=cf.WHAT),
    # kmalloc and SLUB (proofs/slab.py)
    *(_proof(name, fn, 10 if name == "kmalloc.alignment" else 3)
      for name, fn in slab_ob.OBLIGATIONS.items()),
    *(_mutant(Mutant(name, ob_name, " ".join((bug.__doc__ or bug.__name__).split()), run), 3)
      for name, (ob_name, bug, run) in slab_ob.SLAB_MUTANTS.items()),
    # vmalloc (proofs/vmalloc.py)
    *(_proof(name, fn, 1) for name, fn in vm_ob.OBLIGATIONS.items()),
    *(_proof(name, fn, 4, long_only=True) for name, fn in vm_ob.LONG_OBLIGATIONS.items()),
    *(_mutant(Mutant(name, ob_name, " ".join((bug.__doc__ or bug.__name__).split()), run), 1)
      for name, (ob_name, bug, run) in vm_ob.VM_MUTANTS.items()),
    # page tables and the x86-64 layout (proofs/pgtable.py)
    *(_proof(name, fn, 4 if name == "pgtable.map_induction" else 0.5)
      for name, fn in pgtable_ob.OBLIGATIONS.items()),
    *(_proof(name, fn, 12, long_only=True) for name, fn in pgtable_ob.LONG_OBLIGATIONS.items()),
    *(dataclasses.replace(_mutant(Mutant(name, ob_name, " ".join(
        (bug.__doc__ or bug.__name__).split()), run), 1),
        long_only=ob_name in pgtable_ob.LONG_OBLIGATIONS)
      for name, (ob_name, bug, run) in pgtable_ob.PGTABLE_MUTANTS.items()),
]
"""Checks registered statically (the Z3 obligations and their seeded bugs)."""


def _extra_checks(long: bool) -> list[Check]:
    """The checks of proofs/checks_extra.py (model checker, CrossHair, Hypothesis)."""
    try:
        from proofs import checks_extra
    except ImportError:
        return []
    out = []
    for c in checks_extra.extra_checks(long=long):
        kind = getattr(c, "kind", "") or (
            "model-check" if "modelcheck" in c.name else "crosshair" if "crosshair" in c.name
            else "hypothesis" if "hypothesis" in c.name else "test")

        def run(lg: bool, c: Any = c) -> Any:
            return checks_extra.run_check(c)

        out.append(Check(c.name, kind, run, c.budget_s, what=c.what))
    return out


def _vm_modelcheck_checks(long: bool) -> list[Check]:
    """The rows of proofs/modelcheck_vm.py (VM model checker and its seeded bugs)."""
    from proofs import checks_extra, modelcheck_vm

    def run(lg: bool, c: Any) -> Any:
        return checks_extra.run_check(c)

    return [Check(c.name, c.kind, partial(run, c=c), c.budget_s, what=c.what)
            for c in modelcheck_vm.extra_checks(long)]


PROVIDERS: list[Callable[[bool], list[Check]]] = [_extra_checks, _vm_modelcheck_checks]
"""Functions ``long -> list[Check]`` contributing checks that depend on the run mode."""


def all_checks(long: bool = False) -> list[Check]:
    """Every check of a ``make verify`` (``long``: ``make verify-long``) run, by name."""
    out = [c for c in CHECKS if not (c.long_only and not long) and not (c.normal_only and long)]
    for provider in PROVIDERS:
        try:
            out += provider(long)
        except Exception as e:  # a broken provider is one failed row, not a crashed run
            msg = f"check provider {provider.__name__} raised {type(e).__name__}: {e}"

            def broken(lg: bool, msg: str = msg, name: str = provider.__name__) -> CheckResult:
                return CheckResult(f"provider:{name}", "error", "failed", 0.0, msg)

            out.append(Check(f"provider:{provider.__name__}", "error", broken, 0.0, what=msg))
    names = [c.name for c in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate check names: {sorted(dup)}")
    return out


def run_named(name: str, long: bool) -> list[CheckResult]:
    """Worker entry point: run the check called ``name`` and return its rows."""
    check = next(c for c in all_checks(long) if c.name == name)
    t0 = time.perf_counter()
    try:
        result = check.run(long)
    except Exception as e:  # a crashing check is a failed check, not a crashed run
        return [CheckResult(name, check.kind, "failed", time.perf_counter() - t0,
                            f"{type(e).__name__}: {e}")]
    return to_rows(check, result)


__all__ = ["CHECKS", "PROVIDERS", "Check", "CheckResult", "all_checks", "run_named",
           "subprocess_check"]
