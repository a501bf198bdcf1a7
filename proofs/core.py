"""The proof runner: one deterministic, boring function, :func:`prove`.

``prove(name, hypotheses, goal)`` establishes ``And(hypotheses) => goal`` for every value of
the free variables, or finds a concrete counterexample. It never reports a vacuous proof:

1. **Vacuity.** A fresh solver checks ``sat(And(hypotheses))`` first (and, for every named
   *witness*, ``sat(And(hypotheses) and witness)``: a situation the obligation claims to cover,
   e.g. "a free merges at least once"). If the hypotheses are unsatisfiable, anything follows
   from them: the result is ``vacuous``, a failure, never ``proved``. An unreachable witness
   also makes a proof ``vacuous`` (the case it claims to cover cannot occur); a
   counterexample found anyway is still reported as ``refuted``.
2. **Proof.** Another fresh solver checks ``sat(And(hypotheses) and not goal)``: ``unsat`` is
   ``proved``; ``sat`` is ``refuted`` with the model decoded into a counterexample (bit-vectors
   printed as hex) and, when the goal is a dict of named conjuncts, the names of the conjuncts
   the counterexample breaks; ``unknown`` (timeout, incompleteness) is ``unknown``, a failure.

Every solver gets the fixed seed :data:`SEED` and a per-obligation timeout. Results are plain
picklable data (they travel between the worker processes of ``proofs.verify``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import z3

SEED = 0
DEFAULT_TIMEOUT_MS = 60_000

Status = Literal["proved", "refuted", "unknown", "vacuous"]

z3.set_param("smt.random_seed", SEED)
z3.set_param("sat.random_seed", SEED)


@dataclass
class ProofResult:
    """The outcome of one obligation. ``ok`` only for ``proved`` with satisfiable hypotheses.

    ``counterexample`` maps each model variable to its value (``0x..`` for bit-vectors,
    ``true``/``false``, decimal for integers); ``failed`` names the goal conjuncts the
    counterexample breaks; ``trace`` is an operation sequence for state proofs; ``data``
    holds obligation-specific decoded data (JSON-able) such as replayable operations."""

    name: str
    status: Status
    time: float
    vacuity: Literal["passed", "failed", "unknown"] = "passed"
    vacuity_time: float = 0.0
    counterexample: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "proved" and self.vacuity == "passed"

    def summary(self) -> str:
        """One or a few lines for a terminal."""
        parts = [f"{self.name}: {self.status} in {self.time:.2f}s"]
        if self.failed:
            parts.append("  breaks: " + ", ".join(self.failed))
        if self.trace:
            parts.append("  trace: " + "; ".join(self.trace))
        if self.counterexample and not self.trace:
            items = list(self.counterexample.items())[:12]
            parts.append("  counterexample: " + ", ".join(f"{k}={v}" for k, v in items)
                         + (" ..." if len(self.counterexample) > 12 else ""))
        if self.detail:
            parts.append("  " + self.detail.replace("\n", "\n  "))
        return "\n".join(parts)


Decoder = Callable[[Any], dict[str, Any]]
"""Called with the z3 model of a refutation; returns extra fields: ``trace`` (list[str]),
``detail`` (str), ``data`` (dict), ``counterexample`` (dict[str, str], replaces the default)."""


def new_solver(timeout_ms: int) -> Any:
    """A fresh solver with the fixed seed and a timeout."""
    s = z3.Solver()
    s.set("random_seed", SEED)
    s.set("timeout", int(timeout_ms))
    return s


def format_value(v: Any) -> str:
    """A model value as text: hex for bit-vectors, true/false, decimal integers."""
    if z3.is_bv_value(v):
        return hex(v.as_long())
    if z3.is_true(v):
        return "true"
    if z3.is_false(v):
        return "false"
    if z3.is_int_value(v):
        return str(v.as_long())
    return str(v)


def model_dict(m: Any) -> dict[str, str]:
    """Every constant of the model, sorted by name, formatted with :func:`format_value`."""
    out = {d.name(): format_value(m[d]) for d in m.decls() if d.arity() == 0}
    return dict(sorted(out.items()))


def _conj(goal: Any | Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    if isinstance(goal, Mapping):
        named = {k: z3.BoolVal(v) if isinstance(v, bool) else v for k, v in goal.items()}
        return z3.And(*named.values()) if named else z3.BoolVal(True), named
    return (z3.BoolVal(goal) if isinstance(goal, bool) else goal), {}


def prove(name: str, hypotheses: Sequence[Any], goal: Any | Mapping[str, Any],
          timeout_ms: int = DEFAULT_TIMEOUT_MS, *,
          witnesses: Mapping[str, Any] | None = None,
          decode: Decoder | None = None, check_vacuity: bool = True) -> ProofResult:
    """Prove ``And(hypotheses) => goal``; see the module docstring for the verdicts.

    ``goal`` is a z3 Boolean or a dict ``{conjunct name: Boolean}``. ``witnesses`` are named
    conditions that must each be satisfiable together with the hypotheses (non-vacuity of the
    interesting case). ``decode`` turns a refuting model into a readable counterexample.
    ``check_vacuity=False`` is for the cases of a case split, whose obligation checked
    non-vacuity once for all cases: an impossible case is simply proved."""
    t0 = time.perf_counter()
    hyps = [z3.BoolVal(h) if isinstance(h, bool) else h for h in hypotheses]
    g, named = _conj(goal)

    # 1. vacuity: the hypotheses (and each witness) must be satisfiable
    problems: list[str] = []
    vac: Literal["passed", "failed", "unknown"] = "passed"
    vs = new_solver(timeout_ms)
    vs.add(*hyps)
    r = vs.check() if check_vacuity else z3.sat
    if r == z3.unsat:
        vac = "failed"
        problems.append("hypotheses are unsatisfiable")
    elif r == z3.unknown:
        vac = "unknown"
        problems.append(f"vacuity check unknown ({vs.reason_unknown()})")
    else:
        for wname, w in (witnesses or {}).items():
            vs.push()
            vs.add(w)
            wr = vs.check()
            vs.pop()
            if wr == z3.unsat:
                vac = "failed"
                problems.append(f"witness {wname!r} is unreachable under the hypotheses")
            elif wr == z3.unknown and vac == "passed":
                vac = "unknown"
                problems.append(f"witness {wname!r} unknown ({vs.reason_unknown()})")
    t_vac = time.perf_counter() - t0
    if r == z3.unsat:
        return ProofResult(name, "vacuous", time.perf_counter() - t0, vac, t_vac,
                           detail="; ".join(problems))

    # 2. the proof proper: hypotheses and not goal must be unsatisfiable
    s = new_solver(timeout_ms)
    s.add(*hyps)
    s.add(z3.Not(g))
    r = s.check()
    elapsed = time.perf_counter() - t0
    if r == z3.unsat:
        status: Status = ("proved" if vac == "passed" else
                          "vacuous" if vac == "failed" else "unknown")
        return ProofResult(name, status, elapsed, vac, t_vac, detail="; ".join(problems))
    if r == z3.unknown:
        problems.insert(0, f"solver returned unknown ({s.reason_unknown()})")
        return ProofResult(name, "unknown", elapsed, vac, t_vac, detail="; ".join(problems))
    m = s.model()
    res = ProofResult(name, "refuted", elapsed, vac, t_vac, counterexample=model_dict(m),
                      detail="; ".join(problems))
    res.failed = [k for k, c in named.items()
                  if z3.is_false(m.eval(c, model_completion=True))]
    if decode is not None:
        extra = decode(m)
        res.trace = list(extra.get("trace", []))
        res.detail = "\n".join(x for x in (str(extra.get("detail", "")), res.detail) if x)
        res.data = dict(extra.get("data", {}))
        if "counterexample" in extra:
            res.counterexample = dict(extra["counterexample"])
    res.time = time.perf_counter() - t0
    return res


def combine(name: str, parts: Sequence[ProofResult]) -> ProofResult:
    """One result for an obligation proved as several solver calls: the first failure wins,
    times add up."""
    total = sum(p.time for p in parts)
    vt = sum(p.vacuity_time for p in parts)
    for p in parts:
        if not p.ok:
            out = ProofResult(name, p.status, total, p.vacuity, vt, p.counterexample, p.failed,
                              p.trace, f"[{p.name}] {p.detail}".rstrip(), p.data)
            return out
    return ProofResult(name, "proved", total, "passed", vt)
