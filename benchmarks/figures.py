"""How a subsystem benchmark reports: its figures printed one per line and written to
build/bench-<name>.json (``make bench`` merges the per-subsystem files into build/bench.json),
shared by benchmarks/slab.py and benchmarks/vmalloc.py so their output stays the same shape."""

from __future__ import annotations

import json
from pathlib import Path


def report(name: str, figures: dict[str, float]) -> int:
    """Print ``figures`` and write them to build/bench-``name``.json; the exit status (0)."""
    for k, v in figures.items():
        print(f"{k:32} {v:14,.3f}")
    Path("build").mkdir(exist_ok=True)
    Path(f"build/bench-{name}.json").write_text(json.dumps(figures, indent=1) + "\n")
    return 0
