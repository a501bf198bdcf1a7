"""``make verify``: run every registered check in parallel and print one table.

Usage: ``python -m proofs.verify [--long] [--json PATH] [--only PATTERN] [--jobs N] [--list]``

* ``--long``: ``make verify-long`` (bigger machines and bounds; see proofs/registry.py).
* ``--only PATTERN``: run the checks whose name contains PATTERN (or matches it as a glob when
  it contains ``*?[``); e.g. ``--only induction`` or ``--only 'mutant.bmc*'``.
* ``--json PATH``: where the machine-readable report goes (default build/verify-report.json).

The checks (proofs/registry.py) run on ``--jobs`` worker processes (default 2), the most
expensive first, under a live progress display. The exit status is 0 only if every row is
``proved`` or ``passed``: ``refuted``, ``unknown`` (a solver gave up, or an exhaustive check
did not finish its stated bound within its budget), ``vacuous``, ``failed`` and ``timeout``
all fail the run. Each row's detail is the check's final figures (for the model checker:
states, transitions, depth, states per second, exhausted or not), or why it failed; on a
terminal narrower than 150 columns or not on a terminal (a pipe, a CI log) the details are
printed below the table at full length.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from proofs.core import SEED
from proofs.registry import Check, CheckResult, all_checks, run_named

DEFAULT_JSON = Path("build/verify-report.json")
STYLE = {"proved": "bold green", "passed": "green", "refuted": "bold red", "failed": "bold red",
         "vacuous": "bold red", "unknown": "yellow", "timeout": "yellow"}


def _versions() -> dict[str, str]:
    import z3

    out = {"python": platform.python_version(), "z3": z3.get_version_string()}
    for pkg in ("rich", "hypothesis", "crosshair-tool", "pytest"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def select(checks: list[Check], pattern: str | None) -> list[Check]:
    """The check named ``pattern``, else the checks whose name contains ``pattern`` (a glob
    if it has ``*?[``)."""
    if not pattern:
        return checks
    exact = [c for c in checks if c.name == pattern]
    if exact:
        return exact
    if any(ch in pattern for ch in "*?["):
        return [c for c in checks if fnmatch.fnmatch(c.name, pattern)]
    return [c for c in checks if pattern in c.name]


def run_all(checks: list[Check], long: bool, jobs: int, console: Console) -> list[CheckResult]:
    """Run ``checks`` on ``jobs`` processes with a live progress display; rows in check order."""
    order = sorted(range(len(checks)), key=lambda i: -checks[i].cost)
    rows: dict[int, list[CheckResult]] = {}
    ctx = multiprocessing.get_context("spawn")
    with Progress(TextColumn("[bold]verify"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.description}"), console=console,
                  transient=True) as progress, \
            ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        task = progress.add_task("", total=len(checks))
        running: dict[Future[list[CheckResult]], int] = {
            pool.submit(run_named, checks[i].name, long): i for i in order}

        def describe() -> str:
            names = [escape(checks[i].name) for f, i in running.items() if f.running()]
            return "running: " + ", ".join(names[:jobs]) if names else ""

        progress.update(task, description=describe())
        while running:
            done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
            for f in done:
                i = running.pop(f)
                c = checks[i]
                try:
                    rows[i] = f.result()
                except Exception as e:  # the worker died
                    rows[i] = [CheckResult(c.name, c.kind, "failed", 0.0,
                                           f"worker error: {type(e).__name__}: {e}")]
                bad = [r for r in rows[i] if not r.ok]
                mark = "[red]✗[/]" if bad else "[green]✓[/]"
                progress.console.print(f"{mark} {escape(c.name)} ("
                                       f"{', '.join(r.status for r in rows[i])}, "
                                       f"{max(r.time for r in rows[i]):.1f}s)")
                progress.advance(task)
            progress.update(task, description=describe())
    return [r for i in range(len(checks)) for r in rows[i]]


DETAIL_COLUMN_MIN_WIDTH = 150
"""Narrower than this (or not a terminal: a pipe, a CI log) the details go below the table."""


def _detail(r: CheckResult) -> str:
    """What a row shows: everything for failures and seeded bugs, the first line otherwise
    (the final figures of a bounded check)."""
    return r.detail if not r.ok or r.kind in ("mutant", "seeded") else r.detail.split("\n")[0]


def table(rows: list[CheckResult], wall: float, with_detail: bool = True) -> Table:
    """The summary table; ``with_detail`` False leaves the detail column out (see render)."""
    t = Table(title="make verify", show_lines=False, expand=False)
    t.add_column("check", no_wrap=True)
    t.add_column("kind", no_wrap=True)
    t.add_column("result", no_wrap=True)
    t.add_column("time", justify="right", no_wrap=True)
    if with_detail:
        t.add_column("detail", overflow="fold", min_width=40, max_width=100)
    for r in rows:
        st = STYLE.get(r.status, "")
        cells: list[Text] = [Text(r.name), Text(r.kind), Text(r.status, style=st),
                             Text(f"{r.time:.2f}s")]
        t.add_row(*cells, *([Text(_detail(r))] if with_detail else []))
    ok = sum(r.ok for r in rows)
    t.caption = (f"{ok} of {len(rows)} rows ok, {len(rows) - ok} failed; "
                 f"wall {wall:.1f}s, check time {sum(r.time for r in rows):.1f}s")
    return t


def render(rows: list[CheckResult], wall: float, console: Console) -> None:
    """Print the table. On a wide terminal the details are a column; otherwise (a pipe, a CI
    log, a narrow window) the table has no detail column and each row's detail follows it as
    plain lines at full length, never folded one character per line."""
    wide = console.is_terminal and console.width >= DETAIL_COLUMN_MIN_WIDTH
    console.print(table(rows, wall, with_detail=wide))
    if wide:
        return
    console.print("details:", highlight=False)
    for r in rows:
        d = _detail(r).strip()
        if not d:
            continue
        first, *rest = d.splitlines()
        console.print(Text(f"  {r.name} [{r.status}]: {first}"), soft_wrap=True, highlight=False)
        for ln in rest:
            console.print(Text(f"      {ln}"), soft_wrap=True, highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m proofs.verify",
                                 description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--long", action="store_true", help="bigger machines and bounds")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                    help=f"machine-readable report (default {DEFAULT_JSON})")
    ap.add_argument("--only", metavar="PATTERN", help="run only the checks matching PATTERN")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--list", action="store_true", help="list the checks and exit")
    args = ap.parse_args(argv)
    console = Console()
    checks = select(all_checks(args.long), args.only)
    if args.list:
        for c in checks:
            console.print(f"{c.name:36} {c.kind:11} ~{c.cost:>4g}s  {c.what}", no_wrap=True,
                          overflow="ellipsis", markup=False, highlight=False)
        return 0
    if not checks:
        console.print(f"[red]no check matches {args.only!r}[/]")
        return 2
    versions = _versions()
    console.print("kmemspec verify: " + ", ".join(f"{k} {v}" for k, v in versions.items())
                  + f"; z3 seed {SEED}; {len(checks)} checks on {args.jobs} workers"
                  + (" (--long)" if args.long else "") + f"; {os.cpu_count()} CPUs")
    t0 = time.perf_counter()
    rows = run_all(checks, args.long, max(1, args.jobs), console)
    wall = time.perf_counter() - t0
    render(rows, wall, console)
    failed = [r for r in rows if not r.ok]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    console.print(("[bold red]FAILED[/]" if failed else "[bold green]OK[/]") + ": "
                  + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                  + f" in {wall:.1f}s")
    report: dict[str, Any] = {
        "ok": not failed, "wall_time": wall, "long": args.long, "only": args.only,
        "versions": versions, "seed": SEED, "counts": counts,
        "rows": [asdict(r) for r in rows]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    console.print(f"report: {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
