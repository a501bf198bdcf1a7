"""The checks ``make verify`` runs besides the Z3 proofs: bounded and randomized checking of the
real implementation, CrossHair over the helper contracts, and the seeded bugs each check must
catch.

Each check is a subprocess (so a crash, a hang or a memory blow-up stays contained and the
runner can put them on separate cores), described by :class:`ExtraCheck`; :func:`run_check`
runs one and returns a picklable :class:`ExtraResult` whose ``detail`` is the check's final
figures, never a progress line. None of these is a proof: a model-checker run is exhaustive
only within its bounds, Hypothesis and CrossHair are searches. Results say ``passed``,
``failed``, ``vacuous`` (a witness never occurred), ``unknown`` (an exhaustive check did not
finish its bound within its budget: a failure, never a pass) or ``timeout``.

Rows (generated, not hard-coded, from proofs/modelcheck.py MACHINES and the seeded-bug
catalogue proofs/seeded_bugs.py):

* ``modelcheck[<machine>]``: the model checker on each named machine, its ``make verify``
  bounds, ``--require-witnesses --require-exhaustive`` and the machine's wall-clock budget;
  ``modelcheck[<machine>,per-pfn]``: the per-pfn invariant definitions in every state of a
  smaller bound of the same machine.
* ``seeded.<bug>[<machine>]`` for each ``modelcheck:<machine>`` entry of a bug's ``caught_by``:
  the model checker on that machine with the bug; passes only if it finds a violation (the
  detail names the rule and the shortest path). ``seeded.<bug>[statemachine]`` for each
  ``statemachine`` entry: the Hypothesis state machine with ``KMEMSPEC_SEEDED_BUG=<bug>``;
  passes only if the test fails with a ``kmemspec-rule:`` line (shown in the detail).
* ``hypothesis-statemachine``, ``hypothesis-crosshair``, CrossHair rows, the model checker's
  unit tests.

Measured (2-core sandbox shared with other work, one core per run, CPU seconds):
modelcheck[flat16] 22,865 states in ~13 s (~1,750 states/s), modelcheck[zones-unaligned]
13,846 states in ~7.2 s, modelcheck[numa2] 1,914 states in ~2.0 s; each seeded model-checker
row ~1 s; each seeded state-machine row 5-20 s CPU.

Wiring: proofs/registry.py turns every :func:`extra_checks` entry into a row of the table.
``python -m proofs.checks_extra [--long] [--jobs N] [--only SUBSTRING]`` runs them alone.
"""

from __future__ import annotations

import argparse
import os
import re
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

Status = Literal["passed", "failed", "timeout", "unknown", "vacuous"]
Parse = Literal["plain", "pytest", "statemachine", "modelcheck", "seeded-modelcheck",
                "seeded-statemachine"]

RULE_PREFIX = "kmemspec-rule:"  # tests/test_state_machine.py prints it on a failure
SEEDED_ENV = "KMEMSPEC_SEEDED_BUG"


@dataclass(frozen=True)
class ExtraCheck:
    """One check: a command run from the repository root, and how to read its output."""

    name: str
    what: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 170.0
    budget_s: float = 60.0  # expected time on one core; the runner may warn beyond it
    ok_returncodes: tuple[int, ...] = (0,)
    parse: Parse = "plain"
    kind: str = "test"  # the report's kind column


@dataclass
class ExtraResult:
    """The outcome of one :class:`ExtraCheck` (plain data, picklable)."""

    name: str
    status: Status
    time: float
    returncode: int | None
    output: str  # the last lines of stdout and stderr
    what: str = ""
    detail: str = ""  # the final figures (first line) and, on a failure, why

    @property
    def ok(self) -> bool:
        return self.status == "passed"

    def summary(self) -> str:
        head = f"{self.name}: {self.status} in {self.time:.1f}s ({self.what})"
        return head + "\n  " + (self.detail or self.output).replace("\n", "\n  ")


# --- reading outputs ---------------------------------------------------------------------------

def parse_result_line(output: str) -> dict[str, str] | None:
    """The fields of the model checker's last ``RESULT key=value ...`` line, or None."""
    lines = [ln for ln in output.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        return None
    return dict(kv.split("=", 1) for kv in lines[-1].split()[1:] if "=" in kv)


def figures(r: dict[str, str]) -> str:
    """One line of final figures from a RESULT line."""
    return (f"{int(r.get('states', 0)):,} states, {int(r.get('transitions', 0)):,} transitions, "
            f"depth {r.get('depth', '?')}, {float(r.get('seconds', 0)):.1f} s "
            f"({float(r.get('cpu_seconds', 0)):.1f} s CPU), "
            f"{int(r.get('states_per_s', 0)):,} states/s, "
            f"{'exhausted' if r.get('exhausted') == 'yes' else 'NOT exhausted'}")


def _violation(output: str) -> tuple[str, list[str]]:
    """The VIOLATION line's rules and the shortest path's steps (["in the boot state"] for a
    violation before any operation)."""
    what = ""
    steps: list[str] = []
    in_path = False
    for ln in output.splitlines():
        if ln.startswith("VIOLATION: "):
            what = ln.removeprefix("VIOLATION: ").strip()
        elif what and not steps and ln.strip() == "in the boot state":
            steps.append("in the boot state")
        elif ln.startswith("shortest path from boot"):
            in_path = True
        elif in_path and re.match(r"\s+\d+\. ", ln):
            steps.append(re.sub(r"^\s+\d+\. ", "", ln).strip())
        elif in_path:
            in_path = False
    return what, steps


def _path_text(steps: list[str]) -> str:
    if steps == ["in the boot state"]:
        return "in the boot state (0 steps)"
    return f"shortest path ({len(steps)} steps): " + "; ".join(steps)


def read_modelcheck(output: str, rc: int | None) -> tuple[Status, str]:
    """Status and detail of a model-checker row (see proofs/modelcheck.py's exit codes)."""
    r = parse_result_line(output)
    if r is None:
        return "failed", "no RESULT line (the model checker crashed?)\n" + _tail(output, 8)
    fig = figures(r)
    if rc == 1:
        what, steps = _violation(output)
        return "failed", f"VIOLATION {what}; {fig}\n{_path_text(steps)}"
    if rc == 2:
        missing = next((ln for ln in output.splitlines() if "never exercised" in ln), "")
        return "vacuous", f"{fig}\n{missing.strip()}"
    if rc == 3 or r.get("exhausted") != "yes":
        return "unknown", f"{fig} within its budget: the bound was not checked"
    if rc == 0:
        return "passed", fig
    return "failed", f"exit {rc}; {fig}\n" + _tail(output, 6)


REPLAY = "the real PageAllocator on the same path: "


def read_seeded_modelcheck(output: str, rc: int | None) -> tuple[Status, str]:
    """A seeded bug on the model checker passes only if a violation is found and the real
    allocator does not break a rule on the same path (then the violation is the bug's)."""
    r = parse_result_line(output)
    replay = next((ln.removeprefix(REPLAY).strip() for ln in output.splitlines()
                   if ln.startswith(REPLAY)), "not replayed")
    if rc == 1 and r is not None:
        what, steps = _violation(output)
        if replay.startswith("violates") or replay == "not replayed":
            return "failed", (f"violation {what}, but the real allocator on the same path: "
                              f"{replay}\n{_path_text(steps)}")
        return "passed", (f"caught: {what}; {_path_text(steps)}; real allocator: {replay}; "
                          f"{int(r.get('states', 0)):,} states")
    if r is None:
        return "failed", f"exit {rc}, no RESULT line\n" + _tail(output, 8)
    return "failed", f"SURVIVED: no violation; {figures(r)}"


def rule_lines(output: str) -> list[str]:
    """The rules named by ``kmemspec-rule:`` lines, in order."""
    return [ln.strip().removeprefix(RULE_PREFIX).strip() for ln in output.splitlines()
            if ln.strip().startswith(RULE_PREFIX)]


def _rule_detail(output: str) -> str:
    """Each ``kmemspec-rule:`` line with the line that follows it (the message)."""
    lines = output.splitlines()
    out = []
    for i, ln in enumerate(lines):
        if ln.strip().startswith(RULE_PREFIX):
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            out.append(ln.strip() + (f" -- {nxt[:300]}" if nxt else ""))
    return "\n".join(dict.fromkeys(out))


def read_seeded_statemachine(output: str, rc: int | None) -> tuple[Status, str]:
    """A seeded bug on the state machine passes only if the test fails naming a rule."""
    rules = rule_lines(output)
    if rc not in (0, None) and rules:
        return "passed", "caught: " + _rule_detail(output).removeprefix(RULE_PREFIX).strip()
    if rc == 0:
        return "failed", "SURVIVED: the state machine passed with the bug\n" + _pytest_line(output)
    return "failed", (f"exit {rc} without a {RULE_PREFIX} line\n" + _tail(output, 8))


def read_statemachine(output: str, rc: int | None) -> tuple[Status, str]:
    """The state machine with the real allocator: a failure shows the broken rule."""
    if rc == 0:
        return "passed", _pytest_line(output)
    rules = _rule_detail(output)
    return "failed", (rules + "\n" if rules else "") + _tail(output, 6)


def _pytest_line(output: str) -> str:
    """pytest's final ``N passed in X s`` line; with ``-qq`` (no summary line), the tally of
    its progress characters."""
    for ln in reversed(output.splitlines()):
        if re.search(r"\d+ (passed|failed|error)", ln):
            return ln.strip("= ").strip()
    marks = "".join(m.group(1) for ln in output.splitlines()
                    if (m := re.match(r"^([.sFExX]+)\s*(\[\s*\d+%\])?$", ln.strip())))
    if marks:
        names = {".": "passed", "s": "skipped", "F": "failed", "E": "error", "x": "xfailed",
                 "X": "xpassed"}
        return ", ".join(f"{marks.count(c)} {n}" for c, n in names.items() if c in marks)
    return _tail(output, 1)


def _tail(text: str, n: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


READERS = {"modelcheck": read_modelcheck, "seeded-modelcheck": read_seeded_modelcheck,
           "seeded-statemachine": read_seeded_statemachine, "statemachine": read_statemachine}


# --- the checks --------------------------------------------------------------------------------

def _pytest(*args: str) -> tuple[str, ...]:
    return (PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args)


def _crosshair(timeout: float, *targets: str) -> tuple[str, ...]:
    return (PY, "-m", "crosshair", "check", "--analysis_kind=PEP316",
            f"--per_condition_timeout={timeout}", *targets)


def _modelcheck(*args: str) -> tuple[str, ...]:
    return (PY, "-m", "proofs.modelcheck", *args)


PER_PFN_BOUNDS = ("--max-live", "2", "--max-pagecache", "1")
SEEDED_MODELCHECK_BUDGET = 60.0  # wall seconds per mutant run (it stops at the first violation)
SEEDED_STATEMACHINE_TIMEOUT = 240.0  # a bug found late, shrunk 3 s, on a loaded machine
STATEMACHINE_SHRINK_SECONDS = "3"  # a caught bug's example is shrunk this long at most


def modelcheck_checks(long: bool = False) -> list[ExtraCheck]:
    """Two rows per named machine of the model checker: its bounds with the block-level
    invariant encodings, and a smaller bound with the per-pfn definitions too."""
    from proofs.modelcheck import MACHINES

    out = []
    for m in MACHINES.values():
        b = m.long_bounds if long else m.bounds
        budget = m.budget_s * (4 if long else 1)
        out.append(ExtraCheck(
            f"modelcheck[{m.name}]",
            f"explicit-state BFS of PageAllocator on {m.name} ({m.what}); <= {b.max_live} "
            f"live blocks (<= {b.max_pagecache} page cache); every state and step checked; "
            f"budget {budget:g} s",
            _modelcheck("--machine", m.name, "--require-witnesses", "--require-exhaustive",
                        "--budget", f"{budget:g}", *(("--long",) if long else ())),
            timeout_s=budget + 120, budget_s=budget / 3, parse="modelcheck",
            kind="model-check"))
        out.append(ExtraCheck(
            f"modelcheck[{m.name},per-pfn]", f"{m.name} with the per-pfn invariant definitions "
            "(besides the block-level encodings) in every state, <= 2 live blocks "
            "(<= 1 page cache)",
            _modelcheck("--machine", m.name, *PER_PFN_BOUNDS, "--per-pfn",
                        "--require-exhaustive", "--budget", "120"),
            timeout_s=240, budget_s=10, parse="modelcheck", kind="model-check"))
    return out


def seeded_checks(long: bool = False) -> list[ExtraCheck]:
    """One row per (seeded bug, check that must catch it) of proofs/seeded_bugs.py. The
    state-machine rows (5-20 s each) run in ``make verify-long`` only: every bug also has a
    model-checker row, and ``make verify`` must stay under 3 minutes on 2 cores."""
    from proofs.modelcheck import MACHINES
    from proofs.seeded_bugs import SEEDED_BUGS

    out = []
    for bug in SEEDED_BUGS.values():
        for where in bug.caught_by:
            if where.startswith("modelcheck:"):
                machine = where.removeprefix("modelcheck:")
                argv = (_modelcheck("--machine", machine, "--mutant", bug.name, "--budget",
                                    f"{SEEDED_MODELCHECK_BUDGET:g}")
                        if machine in MACHINES else
                        (PY, "-c", f"raise SystemExit('no model-checker machine {machine!r}')"))
                out.append(ExtraCheck(
                    f"seeded.{bug.name}[{machine}]", f"the model checker on {machine} must "
                    f"catch: {bug.what}", argv, timeout_s=SEEDED_MODELCHECK_BUDGET + 60,
                    budget_s=5, parse="seeded-modelcheck", kind="seeded"))
            elif where == "statemachine":
                if not long:
                    continue
                out.append(ExtraCheck(
                    f"seeded.{bug.name}[statemachine]", "the Hypothesis state machine (profile "
                    f"verify) must catch: {bug.what}",
                    _pytest("-x", "tests/test_state_machine.py", "-k",
                            "test_page_allocator_state_machine"),
                    env={SEEDED_ENV: bug.name, "HYPOTHESIS_PROFILE": "verify",
                         "KMEMSPEC_SLOW": "1",
                         "KMEMSPEC_SHRINK_SECONDS": STATEMACHINE_SHRINK_SECONDS},
                    timeout_s=SEEDED_STATEMACHINE_TIMEOUT, budget_s=10,
                    parse="seeded-statemachine", kind="seeded"))
            else:
                out.append(ExtraCheck(
                    f"seeded.{bug.name}[{where}]", f"unknown checker {where!r} in caught_by",
                    (PY, "-c", f"raise SystemExit('unknown checker {where!r}')"),
                    parse="seeded-modelcheck", kind="seeded"))
    return out


def slab_modelcheck_checks(long: bool = False) -> list[ExtraCheck]:
    """proofs/modelcheck_slab.py: the clean run (its bound exhausted, every witness seen) and
    one row per seeded slab bug of proofs/seeded_slab_bugs.py (caught, the real allocators
    clean on the same path)."""
    from proofs.modelcheck_slab import BUDGET_S, MUTANTS

    budget = BUDGET_S * (4 if long else 1)
    mc = (PY, "-m", "proofs.modelcheck_slab")
    out = [ExtraCheck(
        "modelcheck-slab[flat128]", "explicit-state BFS of SlabAllocator over PageAllocator "
        "(kmalloc 8/96/2k/large, a dedicated cache, alloc_pages; valid and invalid calls in "
        "process and hardirq context; slab, page and model invariants in every state)",
        (*mc, "--require-witnesses", "--require-exhaustive", "--budget", f"{budget:g}"),
        timeout_s=budget + 120, budget_s=budget / 4, parse="modelcheck", kind="model-check")]
    out += [ExtraCheck(
        f"seeded.{name}[modelcheck-slab]", "the slab model checker must catch seeded bug "
        f"{name}", (*mc, "--mutant", name, "--budget", f"{SEEDED_MODELCHECK_BUDGET:g}"),
        timeout_s=SEEDED_MODELCHECK_BUDGET + 60, budget_s=5, parse="seeded-modelcheck",
        kind="seeded") for name in MUTANTS]
    return out


def extra_checks(long: bool = False) -> list[ExtraCheck]:
    """The checks of ``make verify`` (``long``: ``make verify-long``, bigger bounds)."""
    from proofs.seeded_slab_bugs import SEEDED_SLAB_BUGS

    slow = {"KMEMSPEC_SLOW": "1"}
    verify = {**slow, "HYPOTHESIS_PROFILE": "verify"}
    ch_timeout = 10.0 if long else 1.5
    return [
        *modelcheck_checks(long),
        *([ExtraCheck(
            "modelcheck-unit", "the model checker's unit tests: snapshot round trip, key, "
            "small spaces, each seeded bug of flat16 with its shortest path",
            _pytest("tests/test_modelcheck.py", "-k", "not default_run"), budget_s=15,
            parse="pytest", kind="test")] if long else []),
        *seeded_checks(long),
        *slab_modelcheck_checks(long),
        *(ExtraCheck(
            f"crosshair-contracts[{g}]", f"CrossHair PEP316 over proofs/contracts.py ({g}), "
            f"{ch_timeout:g} s per condition",
            _crosshair(ch_timeout, *(f"proofs.contracts.{f}" for f in fns)),
            budget_s=(200 if long else 40), kind="crosshair")
          for g, fns in CONTRACT_GROUPS.items()),
        ExtraCheck(
            "crosshair-mutants", "CrossHair finds a counterexample for a wrong variant of every "
            "contract; arithmetic contracts confirmed over all paths",
            _pytest("tests/test_crosshair.py", "-k", "not real_contracts"), budget_s=50,
            parse="pytest", kind="crosshair"),
        ExtraCheck(
            "hypothesis-statemachine", "Hypothesis state machine vs the spec-side model, "
            "profile verify (300 programs x 60 steps, derandomized)",
            _pytest("tests/test_state_machine.py", "-k", "not crosshair"), env=verify,
            budget_s=35, parse="statemachine", kind="hypothesis"),
        ExtraCheck(
            "hypothesis-slab-statemachine", "Hypothesis state machine of slab caches and kmalloc "
            "with page allocations (tests/test_slab_state_machine.py), profile "
            f"{'verify' if long else 'quick'}",
            _pytest("tests/test_slab_state_machine.py", "-k", "not seeded"),
            env={**slow, "HYPOTHESIS_PROFILE": "verify" if long else "quick"},
            budget_s=20, parse="statemachine", kind="hypothesis"),
        *(ExtraCheck(
            f"seeded.{b}[slab-statemachine]", "the slab state machine must catch: "
            f"{SEEDED_SLAB_BUGS[b].what}",
            _pytest("-x", "tests/test_slab_state_machine.py", "-k", "not seeded"),
            env={**slow, "KMEMSPEC_SEEDED_SLAB_BUG": b, "HYPOTHESIS_PROFILE": "quick",
                 "KMEMSPEC_SHRINK_SECONDS": STATEMACHINE_SHRINK_SECONDS},
            timeout_s=SEEDED_STATEMACHINE_TIMEOUT, budget_s=20, parse="seeded-statemachine",
            kind="seeded") for b in (SEEDED_SLAB_BUGS if long else ())
            if SEEDED_SLAB_BUGS[b].statemachine),
        # verify-long only: ~30 s of the make verify budget, and the same state machine
        # already runs under Hypothesis' own backend above
        *([ExtraCheck(
            "hypothesis-crosshair", "the reduced state machine under the hypothesis-crosshair "
            "backend (8 programs x 8 steps)",
            _pytest("tests/test_state_machine.py", "-k", "crosshair"), env=verify, budget_s=20,
            parse="statemachine", kind="hypothesis")] if long else []),
    ]


def run_check(check: ExtraCheck) -> ExtraResult:
    """Run ``check`` from the repository root; never raises for a failing check."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **check.env}
    for var in ("KMEMSPEC_SEEDED_BUG", "KMEMSPEC_SEEDED_SLAB_BUG"):
        if var not in check.env:
            env.pop(var, None)  # a seeded bug never leaks into a normal row
    t0 = time.perf_counter()
    try:
        p = subprocess.run(check.argv, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=check.timeout_s)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        status: Status = "unknown" if check.parse == "modelcheck" else "timeout"
        return ExtraResult(check.name, status, time.perf_counter() - t0, None,
                           _tail(out), check.what,
                           f"no exit after {check.timeout_s:g} s (killed)")
    elapsed = time.perf_counter() - t0
    full = p.stdout + ("\n" + p.stderr if p.stderr else "")
    reader = READERS.get(check.parse)
    if reader is not None:
        status, detail = reader(p.stdout if check.parse != "seeded-statemachine" else full,
                                p.returncode)
    else:
        status = "passed" if p.returncode in check.ok_returncodes else "failed"
        detail = (_pytest_line(p.stdout) if check.parse == "pytest" else _tail(p.stdout, 1))
        if status != "passed":
            detail = f"exit {p.returncode}\n" + _tail(full, 8)
    output = _tail(p.stdout + ("\n" + p.stderr if status != "passed" and p.stderr else ""))
    return ExtraResult(check.name, status, elapsed, p.returncode, output, check.what, detail)


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
