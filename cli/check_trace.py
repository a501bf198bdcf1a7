"""``kmemspec check-trace FILE... [--formats DIR] [--page-offset HEX] [--json] [--plot DIR]``:
replay a Linux kmem/vmalloc trace and judge it against the specification (tracecheck/).

Exit status: 0 no violation, 1 at least one violation, 2 a usage error, an unreadable file or
input without a single kmem/vmalloc event (one ``kmemspec: error:`` line, never a traceback).
Malformed lines are reported with their line numbers and do not change the exit status: the
rest of the file is still checked. A truncated or corrupt compressed file is reported and the
lines before the damage are checked; without a violation in them the exit status is 2, not 0,
since the rest was never seen.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from spec.errors import KmemError


class CheckTraceUsageError(KmemError, ValueError):
    """A bad option value (--page-offset that is not a number, --top below 1, ...)."""


# The lowest kernel address of x86-64 with 5-level paging (with 4 levels: 0xffff800000000000);
# every direct-map base, KASLR or not, is above it (arch/x86/include/asm/page_64_types.h
# __PAGE_OFFSET_BASE_L5 0xff11000000000000, __PAGE_OFFSET_BASE_L4 0xffff888000000000).
KERNEL_HALF_L5 = 0xFF00000000000000
PAGE_SIZE = 4096  # spec.layout.PAGE_SIZE; not imported, so check-trace starts without spec

# what tracecheck.check/source put into ``not_checked`` when a stream could not be read to
# its end (a truncated or corrupt xz, gz, bz2 or zst file)
_UNREADABLE = ("ends early or is corrupt", "cannot be decoded")


def _hex(text: str) -> int:
    try:
        v = int(text, 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a hex number: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return v


def _page_offset(text: str) -> int:
    """--page-offset: a page-aligned x86-64 kernel address (a base like 0x1, or one above
    2^64, was accepted and the objects then checked against memory no kernel has)."""
    v = _hex(text)
    if not KERNEL_HALF_L5 <= v < 1 << 64:
        raise argparse.ArgumentTypeError(
            f"{text} is not a kernel address (the direct-map base is 0xffff888000000000 "
            f"without KASLR; with it, another address between {KERNEL_HALF_L5:#x} and 2^64)")
    if v % PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"{text} is not page aligned")
    return v


def _seconds(text: str) -> float:
    """--reorder-window: a finite number of seconds (nan compared false everywhere)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return v


def add_parser(sub: Any) -> None:
    """Register the ``check-trace`` subcommand on ``kmemspec``'s subparsers."""
    sp = sub.add_parser(
        "check-trace",
        help="check a kernel kmem/vmalloc trace against the specification",
        description="Replay /sys/kernel/tracing/trace, trace_pipe, per_cpu/cpuN/trace or "
                    "`trace-cmd report` output of Linux 6.1+ (plain, xz, gz, bz2, zst; '-' "
                    "= stdin; several files are merged by timestamp) and check every "
                    "allocation rule. Exit 0: no violation, 1: violation, 2: usage error or "
                    "unreadable file.")
    sp.add_argument("files", nargs="+", metavar="FILE")
    sp.add_argument("--formats", metavar="DIR",
                    help="tracepoint format files (events/kmem/*/format, or one file of them "
                         "concatenated): read fields by name from their print fmt")
    sp.add_argument("--page-offset", type=_page_offset, metavar="HEX",
                    help="the direct-map base (page_offset_base, 0xffff888000000000 without "
                         "KASLR); inferred from the trace when not given")
    sp.add_argument("--zoneinfo", metavar="FILE",
                    help="the machine's /proc/zoneinfo: pfn ranges per node, to report which "
                         "node served allocations that asked for one (node=)")
    sp.add_argument("--json", action="store_true", help="print the report as JSON")
    sp.add_argument("--plot", metavar="DIR",
                    help="write PNG pictures (physical memory over time, fragmentation) here")
    sp.add_argument("--strict", action="store_true",
                    help="also report what untraced kernel paths could explain (bulk "
                         "allocations and frees)")
    sp.add_argument("--reorder-window", type=_seconds, default=0.001, metavar="SECONDS",
                    help="clock skew tolerated between CPUs (default %(default)s)")
    sp.add_argument("--top", type=int, default=15, metavar="N",
                    help="rows of the cache and call-site tables (default %(default)s)")
    sp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the trace and print the report; the exit status."""
    from tracecheck.check import check_trace

    if args.top < 1:
        raise CheckTraceUsageError(f"--top must be at least 1, got {args.top}")
    if args.reorder_window < 0:
        raise CheckTraceUsageError("--reorder-window must not be negative")
    if args.files.count("-") > 1:
        raise CheckTraceUsageError("standard input ('-') can be read only once")
    recorder = None
    if args.plot:
        from tracecheck.plot import Recorder
        recorder = Recorder()
    report = check_trace(args.files, formats_dir=args.formats, page_offset=args.page_offset,
                         reorder_window=args.reorder_window, strict=args.strict,
                         recorder=recorder, zoneinfo=args.zoneinfo)
    cut = [n for n in report.not_checked if any(m in n for m in _UNREADABLE)]
    # /etc/passwd, a binary, an empty file, a trace of other events only (``layouts`` names
    # the allocator events the replay understood)
    if not sum(n for ev, n in report.events.items() if ev in report.layouts):
        raise CheckTraceUsageError(cut[0] if cut else (
            f"{', '.join(args.files)}: no kmem or vmalloc trace event in {report.lines:,} "
            f"lines (not a trace, or events/kmem was not enabled)"))
    written: list[str] = []
    if recorder is not None:
        from tracecheck.plot import write_plots
        try:
            written = write_plots(recorder, report, args.plot)
        except OSError as e:
            raise CheckTraceUsageError(f"--plot {args.plot}: {e.strerror or e}") from None
    if args.json:
        from cli.console import write_out

        out = report.as_json()
        out["plots"] = written
        write_out(json.dumps(out, indent=1) + "\n", flush=True)
    else:
        from cli.console import PipeSafeConsole
        from tracecheck.report import render

        # soft_wrap: a note or title longer than the width stays one line (in a pipe, a CI
        # log, grep), as docs/traces.md shows; tables still fit the width
        console = PipeSafeConsole(soft_wrap=True)
        console.width = max(console.width, 120)
        render(report, console, top=args.top)
        for p in written:
            console.print(f"wrote {p}", highlight=False)
    if not report.ok:
        return 1
    if cut:  # no violation in what was read, but the rest of the input was never checked
        from cli.console import write_out

        write_out("", flush=True)
        print(f"kmemspec: error: {cut[0]}", file=sys.stderr)
        return 2
    return 0
