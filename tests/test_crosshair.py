"""CrossHair over the PEP316 contracts of proofs/contracts.py: the contracts are well formed
(every name resolves: CrossHair treats a precondition that raises as unsatisfiable, which would
make a check silently vacuous), every contract has teeth (CrossHair finds a counterexample for
the wrong variant of each helper in tests/crosshair_mutants.py), and the real helpers meet
them (no counterexample within the budget; the arithmetic ones are confirmed over all paths).
"""

from __future__ import annotations

import ast
import builtins
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import proofs.contracts as contracts
import tests.crosshair_mutants as mutants
from tests import hypothesis_profiles

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = [n for n, f in inspect.getmembers(contracts, inspect.isfunction)
             if f.__module__ == contracts.__name__ and "post:" in (f.__doc__ or "")]
# contracts CrossHair confirms over all paths in seconds (pure arithmetic, no loops on ints)
EXHAUSTIVE = ("order_for_size", "va_pa_round_trip", "pfn_virt_round_trip", "adjusted_min")


def conditions(fn: object) -> list[str]:
    """The ``pre:``/``post:`` lines of a PEP316 docstring."""
    return [ln.strip() for ln in (inspect.getdoc(fn) or "").splitlines()
            if ln.strip().startswith(("pre:", "post:"))]


def crosshair(*targets: str, timeout: float, report_all: bool = False
              ) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "crosshair", "check", "--analysis_kind=PEP316",
           f"--per_condition_timeout={timeout}", *(["--report_all"] if report_all else []),
           *targets]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_every_contract_has_a_mutant_with_the_same_conditions() -> None:
    assert sorted(CONTRACTS) == sorted(mutants.MUTANTS)
    for name in CONTRACTS:
        real = conditions(getattr(contracts, name))
        assert real, name
        assert conditions(getattr(mutants, name)) == real, f"{name}: contracts differ"
        assert inspect.signature(getattr(mutants, name)) == \
            inspect.signature(getattr(contracts, name))


@pytest.mark.parametrize("module", [contracts, mutants], ids=["contracts", "mutants"])
def test_every_name_in_a_condition_resolves(module: ModuleType) -> None:
    """A NameError in a precondition makes CrossHair skip the function silently."""
    for name in CONTRACTS:
        fn = getattr(module, name)
        params = set(inspect.signature(fn).parameters)
        for cond in conditions(fn):
            expr = ast.parse(cond.split(":", 1)[1].strip(), mode="eval")
            bound = {n.id for c in ast.walk(expr) if isinstance(c, ast.comprehension)
                     for n in ast.walk(c.target) if isinstance(n, ast.Name)}
            for node in ast.walk(expr):
                if isinstance(node, ast.Name) and node.id not in params | bound | {
                        "__return__", "__old__"}:
                    assert node.id in vars(module) or hasattr(builtins, node.id), \
                        f"{module.__name__}.{name}: {node.id!r} in {cond!r} does not resolve"


def test_the_real_helpers_meet_the_contracts_on_samples() -> None:
    """Plain evaluation of every condition on a few inputs (what CrossHair does
    symbolically): guards against contracts that are simply false."""
    for pfn, order in ((0, 0), (8, 3), (1 << 20, 0), (96, 5)):
        b = contracts.buddy_of(pfn, order)
        assert b == pfn ^ (1 << order) and contracts.merged_block(pfn, order) == min(pfn, b)
    assert contracts.expand_split(16, 1, 4) == [(24, 3), (20, 2), (18, 1)]
    assert [contracts.order_for_size(s) for s in (1, 4096, 4097, 8192)] == [0, 0, 1, 1]
    assert contracts.gfp_round_trip(tuple(bool(0x1000CC0 >> i & 1) for i in range(25))) \
        == 0x1000CC0
    assert contracts.adjusted_min(16, True, True, False, False) == 6  # GFP_ATOMIC: 37.5%


def _found(out: str) -> set[str]:
    return set(re.findall(r"error: false when calling (\w+)\(", out))


MUTANT_GROUPS = [mutants.MUTANTS[i::3] for i in range(3)]


@pytest.mark.parametrize("group", MUTANT_GROUPS, ids=lambda g: "+".join(g))
def test_crosshair_finds_a_counterexample_for_every_mutant(group: tuple[str, ...]) -> None:
    res = crosshair(*(f"tests.crosshair_mutants.{n}" for n in group), timeout=2)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Error while evaluating" not in res.stdout, res.stdout
    assert _found(res.stdout) == set(group), res.stdout


def test_crosshair_confirms_the_arithmetic_contracts_over_all_paths() -> None:
    res = crosshair(*(f"proofs.contracts.{n}" for n in EXHAUSTIVE), timeout=10, report_all=True)
    assert res.returncode == 0, res.stdout + res.stderr
    n_posts = sum(c.startswith("post:") for n in EXHAUSTIVE
                  for c in conditions(getattr(contracts, n)))
    assert res.stdout.count("Confirmed over all paths.") == n_posts, res.stdout


@pytest.mark.slow
@hypothesis_profiles.slow
def test_crosshair_finds_no_counterexample_in_the_real_contracts() -> None:
    """The whole module, 2 s per condition (make verify; the verify runner also runs it)."""
    res = crosshair("proofs/contracts.py", timeout=2)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "", res.stdout
