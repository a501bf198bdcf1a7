"""What ``kmemspec oracle`` prints: the summary table and the verdict with its minimal sequence."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from oracle.run import OracleResult

SHOW_HEAD = 12
SHOW_TAIL = 24


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(", ", ": "))


def summary_table(stats: dict[str, Any]) -> Table:
    """Requests sent per kind (valid, invalid), then answers, rules checked, violations."""
    t = Table(title="oracle summary", title_justify="left", show_edge=False)
    t.add_column("requests sent")
    t.add_column("valid", justify="right")
    t.add_column("invalid", justify="right")
    for kind, c in stats.get("per_kind", {}).items():
        t.add_row(kind, str(c["valid"]), str(c["invalid"]))
    return t


def summary_lines(stats: dict[str, Any]) -> list[str]:
    answers = stats.get("answers", {})
    rules = stats.get("rules_checked", {})
    secs = stats.get("seconds", 0.0)
    rate = stats.get("requests", 0) / secs if secs else 0.0
    lines = [
        "answers:       " + (", ".join(f"{k} {v}" for k, v in answers.items()) or "-"),
        "rules checked: " + (", ".join(f"{k} {v}" for k, v in rules.items()) or "-"),
        f"sequences:     {stats.get('sessions', 0)}, {stats.get('requests', 0)} requests in "
        f"{secs:.1f} s ({rate:,.0f} requests/s)",
        f"violations:    {stats.get('violations', 0)} (counting shrinking replays)",
    ]
    if stats.get("skipped_invalid"):
        lines.append(f"skipped:       {stats['skipped_invalid']} requests invalid on the view")
    return lines


def request_line(r: dict[str, Any]) -> str:
    """One request; hello (the whole machine) is abbreviated: it is in the replay file."""
    if r.get("op") != "hello":
        return compact(r)
    return f'{{"op": "hello", "seq": {r.get("seq")}, ...: the machine, as in the replay file}}'


def sequence_lines(minimal: list[dict[str, Any]]) -> list[str]:
    """The minimal sequence, one request a line; long ones are elided in the middle."""
    lines = [request_line(r) for r in minimal]
    if len(lines) <= SHOW_HEAD + SHOW_TAIL + 1:
        return lines
    return [*lines[:SHOW_HEAD], f"... {len(lines) - SHOW_HEAD - SHOW_TAIL} more requests "
            "(all of them are in the replay file) ...", *lines[-SHOW_TAIL:]]


def render(result: OracleResult, console: Console) -> None:
    """The human report: summary table, then the verdict."""
    console.print(summary_table(result.stats))
    for line in summary_lines(result.stats):
        console.print(line)
    console.print()
    f = result.failure
    if result.verdict == "accepted" or f is None:
        console.print("verdict: accepted (no rule violated)", style="bold green")
    else:
        style = "bold red"
        if result.verdict == "protocol":
            console.print(f"verdict: protocol ({f.protocol_kind}): {f.message}", style=style)
        else:
            console.print(f"verdict: violation of rule '{f.rule}': {f.message}", style=style)
        if f.request is not None:
            console.print(f"  request: {request_line(f.request)}")
        if f.answer is not None:
            console.print(f"  answer:  {compact(f.answer)}")
        if f.detail:
            console.print(f"  why:     {f.detail}")
        if f.stderr_tail:
            console.print("  subject's stderr (tail):")
            for line in f.stderr_tail.rstrip().splitlines()[-15:]:
                console.print(f"    {line}")
        n_min = len(result.minimal)
        console.print(f"  minimal sequence ({n_min} request{'' if n_min == 1 else 's'}):")
        for line in sequence_lines(result.minimal):
            console.print(f"    {line}")
        if result.replay_path:
            console.print(f"  replay file: {result.replay_path}")
    for n in result.notes:
        console.print(f"note: {n}", style="dim")
