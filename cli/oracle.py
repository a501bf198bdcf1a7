"""``kmemspec oracle``: judge an allocator that speaks the subject protocol.

    kmemspec oracle --subject "COMMAND" [--machine tiny|small|default|FILE] [--strict]
                    [--mode spec|exact] [--pages-only] [--seed N] [--sequences N] [--steps N]
                    [--budget S] [--timeout S] [--json] [--replay FILE] [--replay-out FILE]

Exit status: 0 accepted, 1 a rule was violated, 2 a ``protocol`` verdict (crash, hang,
garbage, ...) or bad usage (one ``kmemspec: error: ...`` line, never a traceback).
A progress display goes to standard error when it is a terminal; the report (or, with
``--json``, one JSON object) to standard output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from oracle.transport import DEFAULT_BUDGET, DEFAULT_TIMEOUT, split_command
from spec.errors import KmemError

if TYPE_CHECKING:  # the oracle itself (Hypothesis) is imported only when the command runs
    from oracle.machine import RunStats

DEFAULT_REPLAY_OUT = "oracle-failure.jsonl"


class OracleUsageError(KmemError, ValueError):
    """A bad ``kmemspec oracle`` option value."""


def _usage_error(message: str) -> NoReturn:
    print(f"kmemspec: error: {message}", file=sys.stderr)
    sys.exit(2)


def _positive(kind: type[int] | type[float], name: str) -> Any:
    def parse(text: str) -> int | float:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be positive, got {text!r}")
        if v == float("inf") or v != v:  # inf, nan: a run that never ends
            raise argparse.ArgumentTypeError(f"{name} must be finite, got {text!r}")
        return v
    return parse


def add_parser(sub: Any) -> None:
    """Register ``oracle`` on the kmemspec sub-command parser."""
    sp: argparse.ArgumentParser = sub.add_parser(
        "oracle", help="judge an allocator speaking the subject protocol against the spec",
        description="Start the subject COMMAND once per session, say hello with a machine, "
                    "send generated request sequences and judge every answer against the "
                    "protocol's rules (align, range, overlap, sleep, liveness, free, "
                    "kmalloc-limits, protocol). A violation is shrunk to a minimal sequence "
                    "and written to a replay file.")
    sp.error = _usage_error  # type: ignore[method-assign]
    sp.add_argument("--subject", required=True, metavar="COMMAND",
                    help="the subject's command line (split as a shell would, not run by one)")
    sp.add_argument("--machine", "-m", default="small",
                    help="tiny, small (default: 2 nodes, DMA/DMA32/Normal, 16 MiB), default "
                         "(2 x 16 GiB), or a machine file (machines/*.json)")
    sp.add_argument("--strict", action="store_true",
                    help="also send invalid requests (double frees, wrong orders, unknown "
                         "caches, ...) and demand an error answer that changes nothing")
    sp.add_argument("--mode", choices=("spec", "exact"), default="spec",
                    help="spec: anything the specification allows; exact: also the reference "
                         "implementation's own choices (same pfn, address, null)")
    sp.add_argument("--pages-only", action="store_true",
                    help="page requests only: sessions where the liveness rule is checked "
                         "(default: a third of the generation budget in such sessions, then "
                         "sessions with every feature the subject lists)")
    sp.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    sp.add_argument("--sequences", type=_positive(int, "--sequences"), default=None,
                    metavar="N", help="at most N sequences (sessions); default: the budget")
    sp.add_argument("--steps", type=_positive(int, "--steps"), default=None, metavar="N",
                    help="macro-steps per sequence, each a burst of requests (default 40)")
    sp.add_argument("--budget", type=_positive(float, "--budget"), default=DEFAULT_BUDGET,
                    metavar="S", help="wall-clock seconds for the whole run, shrinking "
                                      "included (default %(default)g)")
    sp.add_argument("--timeout", type=_positive(float, "--timeout"), default=DEFAULT_TIMEOUT,
                    metavar="S", help="seconds per answer and to exit after bye "
                                      "(default %(default)g)")
    sp.add_argument("--json", action="store_true", help="print one JSON object (for CI)")
    sp.add_argument("--replay", metavar="FILE", default=None,
                    help="run a replay file's requests once and judge them")
    sp.add_argument("--replay-out", metavar="FILE", default=None,
                    help=f"where to write the minimal failing sequence (default "
                         f"{DEFAULT_REPLAY_OUT}; with --replay, nowhere)")
    sp.set_defaults(func=cmd_oracle)


class _Progress:
    """A rich progress line on stderr, refreshed at most ten times a second."""

    def __init__(self, budget: float, enabled: bool) -> None:
        self.enabled = enabled
        self.budget = budget
        self.last = 0.0
        self.p = Progress(TextColumn("oracle"), BarColumn(), TextColumn("{task.description}"),
                          TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self.task = self.p.add_task("starting", total=budget)

    def __enter__(self) -> _Progress:
        if self.enabled:
            self.p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.p.stop()

    def __call__(self, stats: RunStats) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.1:
            return
        self.last = now
        secs = now - stats.started
        rate = stats.requests / secs if secs > 0 else 0.0
        self.p.update(self.task, completed=min(secs, self.budget),
                      description=f"{stats.sessions} sequences, {stats.requests:,} requests "
                                  f"({rate:,.0f}/s), {stats.violations} violations")


def _check_command(command: str) -> None:
    try:
        argv = split_command(command)
    except ValueError as e:
        raise OracleUsageError(f"--subject: {e}") from None
    exe = argv[0]
    if os.sep in exe:
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            raise OracleUsageError(f"--subject: {exe} is not an executable file")
    elif shutil.which(exe) is None:
        raise OracleUsageError(f"--subject: command {exe!r} not found")


def _check_replay_out(path: str) -> None:
    """Refuse a replay file that cannot be written before the run, not after it: the
    failure would otherwise be found, shrunk and then lost in a traceback."""
    if os.path.isdir(path):
        raise OracleUsageError(f"--replay-out: {path} is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise OracleUsageError(f"--replay-out: directory {parent} does not exist")
    if not os.access(path if os.path.exists(path) else parent, os.W_OK):
        raise OracleUsageError(f"--replay-out: {path} is not writable")


def cmd_oracle(args: argparse.Namespace) -> int:
    """Run the oracle (or a replay) and print the report; the exit status is the verdict's."""
    from oracle.report import render
    from oracle.run import check_subject, replay

    _check_command(args.subject)
    if args.replay_out is not None or not args.replay:
        _check_replay_out(args.replay_out or DEFAULT_REPLAY_OUT)
    interactive = not args.json and sys.stderr.isatty()
    with _Progress(args.budget, interactive) as progress:
        if args.replay:
            result = replay(args.replay, args.subject, timeout=args.timeout,
                            mode=args.mode if args.mode != "spec" else None,
                            replay_out=args.replay_out)
        else:
            result = check_subject(
                args.subject, machine=args.machine, strict=args.strict, mode=args.mode,
                pages_only=True if args.pages_only else None, seed=args.seed,
                sequences=args.sequences,
                steps=args.steps, budget=args.budget, timeout=args.timeout,
                replay_path=args.replay_out or DEFAULT_REPLAY_OUT, progress=progress)
    from cli.console import PipeSafeConsole, write_out  # `| head` keeps the exit status

    if args.json:
        write_out(json.dumps(result.as_dict()) + "\n", flush=True)
    else:
        render(result, PipeSafeConsole(highlight=False, markup=False, emoji=False,
                                       soft_wrap=True))
    return result.exit_status
