"""``kmemspec``: show the /proc views of a booted machine, run scenarios, or be a protocol subject.

    kmemspec show buddyinfo [--machine tiny] [--cpus 8]
    kmemspec run scenarios/basic.scn [--machine machines/small-numa.json] [--views zoneinfo]
    kmemspec subject [--name NAME] < requests.jsonl

Errors of the model (:class:`spec.errors.KmemError`: a bad machine file, an unknown view, an
unparsable scenario line) end the command with one ``kmemspec: error: ...`` line on stderr and
exit status 2, never a traceback. ``run`` exits 1 when an ``expect_*`` line did not hold.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from cli.check_trace import add_parser as add_check_trace_parser
from spec.errors import KmemError, ScenarioError

if TYPE_CHECKING:  # imported where used: `kmemspec check-trace` starts without the model
    from cli.scenario import Outcome
    from impl.machine import MachineConfig
    from impl.page_alloc import PageAllocator
    from impl.slab_common import SlabAllocator

DEFAULT_RUN_VIEWS = ("buddyinfo", "numastat")
# CONFIG_NR_CPUS of Debian's amd64 kernel: "setup_percpu: NR_CPUS:8192" in every captured
# dmesg (tests/fixtures/linux-6.12/*/dmesg; arch/x86/Kconfig NR_CPUS_RANGE_END with MAXSMP).
NR_CPUS = 8192
SLAB_VIEWS = {"slabinfo": "/proc/slabinfo", "slabtop": "slabtop --once"}
VM_VIEWS = {"vmallocinfo": "/proc/vmallocinfo",
            "meminfo-vmalloc": "/proc/meminfo (the page-table and vmalloc lines)"}


class CliError(KmemError, ValueError):
    """A bad command-line value (unknown view, --cpus below 1)."""


def with_cpus(m: MachineConfig, cpus_per_node: int) -> MachineConfig:
    """The same machine with ``cpus_per_node`` CPUs on every node, numbered node by node
    (node 0: 0..N-1, node 1: N..2N-1, ...). For the default machine this is exactly
    MachineConfig.numa(cpus_per_node=N); it works the same way for any machine."""
    if cpus_per_node < 1:
        raise CliError(f"--cpus must be at least 1, got {cpus_per_node}")
    if cpus_per_node * len(m.nodes) > NR_CPUS:  # also keeps range() below a C ssize_t
        raise CliError(f"--cpus {cpus_per_node} on {len(m.nodes)} node(s) is more than NR_CPUS "
                       f"{NR_CPUS} CPUs (at most {NR_CPUS // len(m.nodes)} per node)")
    nodes = tuple(replace(n, cpus=tuple(range(i * cpus_per_node, (i + 1) * cpus_per_node)))
                  for i, n in enumerate(m.nodes))
    return replace(m, nodes=nodes).validate()


def boot(machine: str, cpus: int | None) -> PageAllocator:
    """MachineConfig.named(machine), optionally re-CPU'd, booted."""
    from impl.machine import MachineConfig
    from impl.page_alloc import PageAllocator

    if re.fullmatch(r"0+[gt]ib", machine.lower()):  # was "node 0 zone Normal: empty ... span"
        raise CliError(f"--machine {machine}: a machine needs memory (1gib and up)")
    m = MachineConfig.named(machine)  # validated: no zone beyond MAX_PHYSMEM_BITS
    if cpus is not None:
        m = with_cpus(m, cpus)
    return PageAllocator(m)


def scenario_machine(text: str, path: Path) -> str | None:
    """A scenario's own machine: a ``# machine: NAME`` comment line (a machine name, or a
    machine file relative to the working directory or else to the scenario's directory)."""
    for line in text.splitlines():
        m = re.match(r"\s*#\s*machine:\s*(\S+)", line)
        if m:
            name = m.group(1)
            if not Path(name).exists() and (path.parent / name).exists():
                return str(path.parent / name)
            return name
    return None


def check_view(name: str) -> str:
    from impl.views import VIEWS

    if name not in VIEWS and name not in SLAB_VIEWS and name not in VM_VIEWS:
        raise CliError(f"unknown view {name!r} (views: "
                       f"{', '.join([*VIEWS, *SLAB_VIEWS, *VM_VIEWS])})")
    return name


def check_slabinfo_arg(path: str | None) -> None:
    """--slabinfo must name a file: checked before booting (``run`` reads it only when a
    scenario boots the slab allocator), and said plainly (was "[Errno 2] No such file or
    directory: 'x'" after the path, from impl/slab_common.py)."""
    if path and not os.path.isfile(path):
        why = "not a file" if os.path.exists(path) else "No such file or directory"
        raise CliError(f"cannot read slabinfo {path}: {why}")


def slabinfo_of(args: argparse.Namespace, a: PageAllocator) -> str | None:
    """--slabinfo FILE, else the machine file's ``slabinfo``, else none."""
    if args.slabinfo:
        return str(args.slabinfo)
    v = a.machine.extra.get("slabinfo")
    return str(v) if v else None


def slab_view(name: str, sa: SlabAllocator) -> str:
    from impl.slab_common import slabtop

    return sa.slabinfo() if name == "slabinfo" else slabtop(sa)


def cmd_show(args: argparse.Namespace) -> int:
    """Print one view of a freshly booted machine, byte for byte as the kernel would."""
    from impl.slab_common import SlabAllocator
    from impl.views import VIEWS
    from impl.vmalloc import Vmalloc

    view = check_view(args.view)
    check_slabinfo_arg(args.slabinfo)
    a = boot(args.machine, args.cpus)
    if view in SLAB_VIEWS:
        sys.stdout.write(slab_view(view, SlabAllocator(a, slabinfo=slabinfo_of(args, a))))
    elif view in VM_VIEWS:
        v = Vmalloc(a)
        sys.stdout.write(v.vmallocinfo() if view == "vmallocinfo" else v.meminfo())
    else:
        sys.stdout.write(VIEWS[view](a))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Parse the whole scenario, run it, then print the views and the summary."""
    from cli.console import PipeSafeConsole, write_out
    from cli.scenario import Runner, parse_scenario, run_steps
    from impl.views import VIEW_PATHS, VIEWS

    views = [check_view(v.strip()) for v in args.views.split(",") if v.strip()]
    path = Path(args.scenario)
    try:
        text = path.read_text()
    except OSError as e:
        raise ScenarioError(f"cannot read scenario {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"scenario {path} is not UTF-8 text") from None
    steps = parse_scenario(text, str(path))
    check_slabinfo_arg(args.slabinfo)
    a = boot(args.machine or scenario_machine(text, path) or "default", args.cpus)
    console = PipeSafeConsole(highlight=False, markup=False, emoji=False, soft_wrap=True)

    def emit(o: Outcome) -> None:
        if args.json:
            write_out(json.dumps(o.record) + "\n")
        else:
            style = ("red" if "error" in o.record or o.failed_expectation else
                     "yellow" if o.record.get("effects") else None)
            console.print(o.text, style=style)

    runner = Runner(a, slabinfo=slabinfo_of(args, a))
    summary = run_steps(a, steps, emit, runner=runner)
    if runner.sa is not None and "slabinfo" not in views:
        views.append("slabinfo")  # a run that used the slab allocator shows its caches
    if runner.vm is not None and "vmallocinfo" not in views:
        views.append("vmallocinfo")  # and one that used vmalloc its areas
    if any(v in SLAB_VIEWS for v in views):
        sa = runner.slab()

    def text_of(v: str) -> str:
        if v in VM_VIEWS:
            vm = runner.vmalloc()
            return vm.vmallocinfo() if v == "vmallocinfo" else vm.meminfo()
        return slab_view(v, sa) if v in SLAB_VIEWS else VIEWS[v](a)

    if args.json:
        for v in views:
            write_out(json.dumps({"view": v, "text": text_of(v)}) + "\n")
        write_out(json.dumps({"summary": summary.as_dict()}) + "\n", flush=True)
    else:
        for v in views:
            write_out("\n")
            if v != "numastat":  # that view heads each node's file itself
                write_out(f"==> {VIEW_PATHS.get(v) or SLAB_VIEWS.get(v) or VM_VIEWS[v]} <==\n")
            write_out(text_of(v))
        write_out("\n", flush=True)
        for line in summary.lines():
            console.print(line, style="bold red" if "FAILED" in line else None)
    return 1 if summary.expect_failed else 0


def cmd_subject(args: argparse.Namespace) -> int:
    """Speak the subject protocol on stdin/stdout (see docs/protocol.md)."""
    from cli.subject import run_subject

    return run_subject(args.name, verbose=args.verbose)


def build_parser() -> argparse.ArgumentParser:
    from cli.oracle import add_parser as add_oracle_parser
    from cli.scenario import OPS
    from impl.views import VIEWS

    p = argparse.ArgumentParser(
        prog="kmemspec",
        description="An executable, formally specified model of the Linux 6.12.117 memory "
                    "allocators (pages, slab and kmalloc, vmalloc, processes), a reference "
                    "oracle for other allocators, and a checker of real kernel traces.")
    p.add_argument("--version", action="version", version=version_text())
    sub = p.add_subparsers(dest="command", required=True)

    def machine_opts(sp: argparse.ArgumentParser, from_scenario: bool = False) -> None:
        extra = (" (default: the scenario's '# machine: NAME' line, else default)"
                 if from_scenario else " (default: %(default)s)")
        sp.add_argument("--machine", "-m", default=None if from_scenario else "default",
                        help="default, tiny, <N>gib, <N>tib, or a machine file "
                             "(hello-shaped JSON, see machines/)" + extra)
        sp.add_argument("--cpus", type=int, default=None, metavar="N",
                        help="give every node N CPUs, numbered node by node "
                             "(on the default machine: MachineConfig.numa(cpus_per_node=N)); "
                             "slab orders follow the total, as num_present_cpus(); at most "
                             f"NR_CPUS {NR_CPUS} in all")
        sp.add_argument("--slabinfo", default=None, metavar="FILE",
                        help="also create every cache listed in a real /proc/slabinfo, by "
                             "name and size, so the model starts out like that machine")

    sp = sub.add_parser("show", help="print a /proc or sysfs view of a freshly booted machine")
    sp.add_argument("view", metavar="VIEW",
                    help=f"one of: {', '.join([*VIEWS, *SLAB_VIEWS, *VM_VIEWS])}")
    machine_opts(sp)
    sp.set_defaults(func=cmd_show)

    ops = "\n".join(" ".join(["  " + name, *(f"{k}=" for k in spec.fields),
                              *(["as=NAME"] if spec.binds else [])]) for name, spec in OPS.items())
    sp = sub.add_parser(
        "run", help="run a scenario file (one operation per line)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Run a scenario: one operation per line, as a JSON object with the fields of a "
            "subject-protocol request, or as 'op key=value ...'. $NAME refers to a result "
            "named with as=NAME; expect_null / expect_error check an outcome (exit 1 if one "
            "does not hold). '# machine: NAME' picks the scenario's machine.", 79),
        epilog="operations:\n" + ops)
    sp.add_argument("scenario", metavar="SCENARIO")
    machine_opts(sp, from_scenario=True)
    sp.add_argument("--views", default=",".join(DEFAULT_RUN_VIEWS),
                    help="comma-separated views to print at the end ('' for none; default "
                         "%(default)s)")
    sp.add_argument("--json", action="store_true",
                    help="JSON Lines output: one object per op, per view, then the summary")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("subject", help="serve the subject protocol on stdin/stdout")
    sp.add_argument("--name", default="kmemspec", help="name given in the hello answer")
    sp.add_argument("--verbose", "-v", action="store_true",
                    help="log watermarks and every effect to stderr")
    sp.set_defaults(func=cmd_subject)
    add_oracle_parser(sub)  # kmemspec oracle --subject COMMAND (cli/oracle.py)
    add_check_trace_parser(sub)  # kmemspec check-trace FILE... (cli/check_trace.py)
    for parser in (p, *sub.choices.values()):
        if "error" not in vars(parser):  # cli/oracle.py sets its own
            parser.error = _one_line_error(parser.prog)  # type: ignore[method-assign,assignment]
    return p


def version_text() -> str:
    """``kmemspec --version``: the installed version and the kernel the model pins."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("kmemspec")
    except PackageNotFoundError:  # run from a checkout that was never pip-installed
        v = "(not installed)"
    return f"kmemspec {v}, a model of Linux 6.12.117's memory allocators"


def trace_parser() -> argparse.ArgumentParser:
    """The parser of ``kmemspec check-trace`` alone: its start-up imports no model."""
    p = argparse.ArgumentParser(prog="kmemspec")
    sub = p.add_subparsers(dest="command", required=True)
    add_check_trace_parser(sub)
    for parser in (p, *sub.choices.values()):
        parser.error = _one_line_error(parser.prog)  # type: ignore[method-assign,assignment]
    return p


def _one_line_error(prog: str) -> Callable[[str], NoReturn]:
    """argparse's error, as one line like every other error of the command (argparse would
    print the whole usage first): the message and where the usage is."""
    def error(message: str) -> NoReturn:
        print(f"kmemspec: error: {message} (see '{prog} --help')", file=sys.stderr)
        sys.exit(2)
    return error


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kmemspec`` console script; returns the exit status."""
    words = sys.argv[1:] if argv is None else argv
    args = (trace_parser() if words[:1] == ["check-trace"] else build_parser()).parse_args(argv)
    try:
        rc: int = args.func(args)
        return rc
    except KmemError as e:
        from cli.console import write_out

        write_out("", flush=True)  # what the command printed before its error comes first
        msg = str(e).replace("\n", " ")
        print(f"kmemspec: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `kmemspec show zoneinfo | head` (no verdict): quiet, as cat is
        from cli.console import stdout_to_devnull

        stdout_to_devnull()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
