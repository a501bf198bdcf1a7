"""The reference subject (``kmemspec subject``) passes the oracle in every mode the CLI offers
(spec and exact, strict or not, pages-only or every feature) on every machine preset and a
machine file. On the 32-page ``tiny`` machine, vmalloc used to leave the slab allocator's lazy
boot half done, and the pages it had taken were refused on their way back, so a valid kmalloc
was answered with an error (a `protocol` violation of the reference itself)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from oracle.inprocess import ReferenceSubject
from oracle.run import check_subject

ROOT = Path(__file__).resolve().parent.parent
MODES: list[dict[str, Any]] = [
    {}, {"strict": True}, {"pages_only": True}, {"mode": "exact"},
    {"strict": True, "mode": "exact"}, {"strict": True, "pages_only": True, "mode": "exact"},
]


def mode_id(kw: dict[str, Any]) -> str:
    return "-".join(f"{k}" if v is True else str(v) for k, v in kw.items()) or "spec"


@pytest.mark.parametrize("machine", ["tiny", "small", "machines/small-numa.json"])
@pytest.mark.parametrize("kw", MODES, ids=mode_id)
def test_reference_passes_every_mode(machine: str, kw: dict[str, Any]) -> None:
    r = check_subject(ReferenceSubject, machine=str(ROOT / machine) if "/" in machine
                      else machine, seed=0, sequences=3, steps=12, budget=6.0, **kw)
    assert r.verdict == "accepted", (r.failure.rule, r.failure.message, r.failure.detail) \
        if r.failure else r.as_dict()
    assert r.stats["requests"] > 50


def test_reference_tiny_vmalloc_then_kmalloc() -> None:
    """The tiny-machine failure the CLI's default run found (seed 0), as an in-process run."""
    r = check_subject(ReferenceSubject, machine="tiny", seed=0, sequences=20, steps=40,
                      budget=8.0)
    assert r.verdict == "accepted", r.as_dict()
    assert r.stats["per_kind"].get("vmalloc", {}).get("valid", 0) > 0
    assert r.stats["per_kind"].get("kmalloc", {}).get("valid", 0) > 0


def test_cli_subject_options_under_the_oracle(tmp_path: Path) -> None:
    """``kmemspec subject --verbose --name NAME`` as a process (its log on stderr, every
    effect of every allocation), strict and exact on the default machine: accepted."""
    sub = shlex.join([sys.executable, "-m", "cli.main", "subject", "--verbose", "--name", "v"])
    p = subprocess.run([sys.executable, "-m", "cli.main", "oracle", "--subject", sub,
                        "--machine", "default", "--strict", "--mode", "exact", "--budget", "5",
                        "--sequences", "2", "--steps", "8", "--replay-out",
                        str(tmp_path / "r.jsonl")], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "verdict: accepted" in p.stdout
