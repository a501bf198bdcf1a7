"""Running the oracle: generate and judge (Hypothesis), shrink, write and replay minimal sequences.

:func:`check_subject` runs :class:`oracle.machine.SubjectStateMachine` with settings derived
from the command line: ``seed`` fixes the generator (the same seed, the same requests for a
deterministic subject), ``sequences`` is Hypothesis' ``max_examples``, ``steps`` its
``stateful_step_count`` (macro-steps, each many requests), ``budget`` the wall-clock seconds of
the whole run: generation stops at :data:`GEN_SHARE` of it, and once a failure is found
Hypothesis shrinks it (restarting the subject for each try) for
:data:`HYPOTHESIS_SHRINK_SHARE` of what is left (it deletes and simplifies macro-steps), then a
time-bounded delta-debugging pass (:func:`ddmin`) removes requests from the concrete sequence
one chunk at a time, replaying each candidate against a fresh subject. The result is the
minimal sequence, written as a replay file that :func:`replay` (``kmemspec oracle --replay``)
runs again.

Replay file: JSON Lines; the first line is a header
``{"kmemspec_oracle_replay": 1, "rule": ..., "message": ..., "machine": ..., "strict": ...,
"mode": ..., "pages_only": ...}``, then the requests exactly as sent, ``hello`` first. On
replay, ``seq`` is renumbered and, outside strict mode, a request the judge's view says is
invalid (the subject answered differently this time) is skipped and counted.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.stateful import run_state_machine_as_test

from oracle.inprocess import SubjectAPI
from oracle.machine import (
    _ALLOC_OPS,
    Failure,
    OracleFailure,
    RunContext,
    RunStats,
    Session,
    StopRun,
    SubjectStateMachine,
)
from oracle.machines import hello_of, machine_name
from oracle.transport import DEFAULT_BUDGET, DEFAULT_TIMEOUT, ProcessSubjectFactory
from spec.errors import KmemError

DEFAULT_STEPS = 40
DEFAULT_SEQUENCES = 100_000  # in practice the budget ends generation first
GEN_SHARE = 0.6
PAGES_ONLY_SHARE = 1 / 3  # of generation, without --pages-only: see check_subject
HYPOTHESIS_SHRINK_SHARE = 0.25
REPLAY_VERSION = 1

Verdict = Literal["accepted", "violation", "protocol"]


class ReplayError(KmemError, ValueError):
    """A replay file that cannot be read."""


@dataclass
class OracleResult:
    """The outcome of a run: the verdict, the failure (if any) with its minimal sequence."""

    verdict: Verdict
    violation: Any  # oracle.judge.Violation | None
    minimal: list[dict[str, Any]]
    replay_path: str | None
    stats: dict[str, Any]
    failure: Failure | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        return {"accepted": 0, "violation": 1, "protocol": 2}[self.verdict]

    def as_dict(self) -> dict[str, Any]:
        f = self.failure
        return {
            "verdict": self.verdict,
            "rule": f.rule if f else None,
            "message": f.message if f else None,
            "request": f.request if f else None,
            "answer": f.answer if f else None,
            "detail": f.detail if f else None,
            "protocol_kind": f.protocol_kind if f else None,
            "stderr_tail": f.stderr_tail if f else None,
            "minimal": self.minimal,
            "replay_path": self.replay_path,
            "stats": self.stats,
            "notes": self.notes,
        }


SubjectSpec = str | Sequence[str] | Callable[[], SubjectAPI]


def _factory(subject: SubjectSpec, timeout: float) -> tuple[Callable[[], SubjectAPI],
                                                            Callable[[], None]]:
    """A callable giving a fresh subject per session, and its cleanup."""
    if callable(subject):
        return subject, lambda: None
    f = ProcessSubjectFactory(subject, timeout=timeout)  # --timeout: per answer and after bye
    return f, f.close


def _session_requests(log: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The requests of a log without hello/bye and without seq."""
    return [{k: v for k, v in r.items() if k != "seq"} for r in log
            if r.get("op") not in ("hello", "bye")]


def run_requests(reqs: Sequence[dict[str, Any]], factory: Callable[[], SubjectAPI],
                 ctx: RunContext) -> tuple[Failure | None, list[dict[str, Any]]]:
    """One session: hello, the requests (consecutive allocations pipelined, every other
    request alone so that its validity is judged on the view it meets), bye. Returns the
    failure (None: accepted) and the log of what was sent."""
    session = Session(factory(), ctx)
    try:
        session.start()
        i, n = 0, len(reqs)
        while i < n:
            j = i + 1
            if reqs[i]["op"] in _ALLOC_OPS:
                while j < n and reqs[j]["op"] in _ALLOC_OPS:
                    j += 1
            session.run(reqs[i:j], force=ctx.strict)
            i = j
        session.finish()
    except OracleFailure as e:
        return e.failure, e.failure.log
    except StopRun as e:
        if e.failure is not None:
            return e.failure, e.failure.log
        raise
    finally:
        session.close()
    return None, session.log


def ddmin(failure: Failure, factory: Callable[[], SubjectAPI], ctx: RunContext,
          deadline: float) -> tuple[Failure, int]:
    """Delta debugging over the concrete requests (Zeller's ddmin, complement removal),
    keeping a candidate when a fresh subject shows the same failure; every kept run also
    truncates the sequence after the failing request. Stops at ``deadline``. Returns the
    smallest failure found and the number of replays."""
    best = failure
    items = _session_requests(best.log)
    tries = 0
    n = 2
    while len(items) >= 2 and time.monotonic() < deadline:
        chunk = math.ceil(len(items) / n)
        reduced = False
        for start in range(0, len(items), chunk):
            if time.monotonic() >= deadline:
                break
            cand = items[:start] + items[start + chunk:]
            tries += 1
            f, _log = run_requests(cand, factory, ctx)
            if f is not None and f.same_as(failure):
                best = f
                items = _session_requests(f.log)
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            if n >= len(items):
                break
            n = min(len(items), 2 * n)
    if len(items) == 1 and time.monotonic() < deadline:
        tries += 1
        f, _log = run_requests([], factory, ctx)
        if f is not None and f.same_as(failure):
            best = f
    return best, tries


def write_replay(path: str | Path, failure: Failure, ctx: RunContext, machine: str) -> None:
    header = {"kmemspec_oracle_replay": REPLAY_VERSION, "rule": failure.rule,
              "message": failure.message, "detail": failure.detail, "machine": machine,
              "strict": ctx.strict, "mode": ctx.mode, "pages_only": ctx.pages_only}
    with Path(path).open("w") as fh:
        fh.write(json.dumps(header) + "\n")
        for r in failure.log:
            fh.write(json.dumps(r) + "\n")


def _result(failure: Failure | None, ctx: RunContext, replay_path: str | None,
            machine: str, notes: list[str]) -> OracleResult:
    if failure is None:
        return OracleResult("accepted", None, [], None, ctx.stats.as_dict(), None, notes)
    if replay_path is not None and failure.log:
        write_replay(replay_path, failure, ctx, machine)
    else:
        replay_path = None  # nothing was sent (the subject did not start)
    verdict: Verdict = "protocol" if failure.kind == "protocol" else "violation"
    return OracleResult(verdict, failure.violation, list(failure.log), replay_path,
                        ctx.stats.as_dict(), failure, notes)


def _progress(progress: bool | Callable[[RunStats], None]) -> Callable[[RunStats], None] | None:
    """A callable is used as is; True prints a status line on stderr at most twice a
    second (the CLI draws a rich progress bar instead)."""
    if callable(progress):
        return progress
    if not progress:
        return None
    last = [0.0]

    def show(stats: RunStats) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5:
            last[0] = now
            sys.stderr.write(f"\roracle: {stats.sessions} sequences, {stats.requests} "
                             f"requests, {stats.violations} violations")
            sys.stderr.flush()
    return show


def check_subject(subject: SubjectSpec, *, machine: str | dict[str, Any] = "small",
                  strict: bool = False, mode: str = "spec", pages_only: bool | None = None,
                  seed: int = 0, sequences: int | None = None, steps: int | None = None,
                  budget: float = DEFAULT_BUDGET, timeout: float = DEFAULT_TIMEOUT,
                  replay_path: str | None = None,
                  progress: bool | Callable[[RunStats], None] = False,
                  shrink_budget: float | None = None) -> OracleResult:
    """Judge a subject: a command (string or argv) started once per session, or a callable
    returning an in-process SubjectAPI. See the module docstring for the settings;
    ``shrink_budget`` caps the seconds spent shrinking after the first failure (default:
    whatever is left of ``budget``)."""
    from hypothesis.internal.conjecture import engine

    if mode not in ("spec", "exact"):
        raise KmemError(f"mode must be spec or exact, got {mode!r}")
    if budget <= 0:
        raise KmemError(f"budget must be positive, got {budget!r}")
    t0 = time.monotonic()
    hello = hello_of(machine)
    factory, cleanup = _factory(subject, timeout)
    end = t0 + budget

    def shrink_seconds() -> float:  # Hypothesis' share; ddmin, which gains more, gets the rest
        nonlocal end
        now = time.monotonic()
        if shrink_budget is not None:
            end = min(end, now + shrink_budget)
        return max(0.5, (end - now) * HYPOTHESIS_SHRINK_SHARE)

    ctx = RunContext(hello, strict=strict, mode=mode, pages_only=bool(pages_only),
                     gen_deadline=t0 + budget * GEN_SHARE, shrink_seconds=shrink_seconds,
                     progress=_progress(progress))
    # pages_only None (the default, and the CLI without --pages-only): two phases, first
    # pages-only sessions (where the liveness rule is judged: a subject that leaks or fails
    # spuriously shows there), then sessions with every feature the subject lists. True: only
    # the first kind; False: only the second. A failure ends the run in its phase, and the
    # replay file records which kind of session it was.
    phases = [True, False] if pages_only is None else [pages_only]

    def phase_settings(po: bool) -> settings:
        n = sequences or DEFAULT_SEQUENCES
        if len(phases) == 2:
            first = max(1, round(n * PAGES_ONLY_SHARE))
            n = first if po else max(1, n - first)
        return settings(max_examples=n,
                        stateful_step_count=steps or DEFAULT_STEPS, deadline=None, database=None,
                        derandomize=False, phases=(Phase.generate, Phase.shrink),
                        suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                        verbosity=Verbosity.quiet, print_blob=False)

    notes: list[str] = []
    old = engine.MAX_SHRINKING_SECONDS
    try:
        for po in phases:
            ctx.pages_only = po
            share = PAGES_ONLY_SHARE if po and len(phases) == 2 else 1.0
            ctx.gen_deadline = t0 + budget * GEN_SHARE * share
            ctx.stop = None
            cls = type("OracleRun", (SubjectStateMachine,), {
                "make_subject": lambda self: factory(), "context": ctx, "machine": hello,
                "strict": strict, "mode": mode, "pages_only": po})

            def make(cls: type = cls) -> SubjectStateMachine:
                return cls()  # type: ignore[no-any-return]

            make._hypothesis_internal_use_seed = seed  # type: ignore[attr-defined]
            try:
                run_state_machine_as_test(cast(Any, make), settings=phase_settings(po))
            except KeyboardInterrupt:
                raise
            except BaseException:
                if ctx.stop is None and ctx.last_failure is None:
                    raise
            if ctx.stop is not None and ctx.stop.reason == "no-pages" \
                    and ctx.last_failure is None:
                if len(phases) == 1:  # --pages-only, and the subject has no page requests
                    raise KmemError(f"{ctx.stop}: nothing to judge")
                notes.append("the subject does not list pages: no pages-only sessions, "
                             "liveness not judged")
                continue
            if ctx.last_failure is not None or (ctx.stop is not None
                                                and ctx.stop.reason != "budget"):
                break
        if ctx.stop is not None and ctx.stop.reason == "budget":
            notes.append(f"generation stopped at {budget * GEN_SHARE:g} s of the budget")
        if len(phases) == 2 and not any(n.startswith("the subject does not list pages")
                                        for n in notes):
            notes.append("pages-only sessions (liveness judged) first, then every feature")
        failure = ctx.last_failure
        shrink: dict[str, Any] = {}
        if failure is not None and ctx.first_failure is not None:
            t_hyp = time.monotonic()
            shrink = {"found_after_requests": ctx.first_failure_after,
                      "found_after_seconds": round(ctx.first_failure_at - t0, 3),
                      "first_length": len(ctx.first_failure.log),
                      "hypothesis_length": len(failure.log),
                      "hypothesis_seconds": round(t_hyp - ctx.first_failure_at, 3)}
            if failure.protocol_kind != "hang":
                ctx.stop = None
                failure, tries = ddmin(failure, factory, ctx,
                                       max(end - 0.5, time.monotonic() + 1))
                shrink.update(ddmin_replays=tries, ddmin_length=len(failure.log),
                              ddmin_seconds=round(time.monotonic() - t_hyp, 3))
                n = len(failure.log)
                notes.append(f"shrunk to {n} request{'' if n == 1 else 's'} (first seen in a "
                             f"sequence of {shrink['first_length']}; Hypothesis: "
                             f"{shrink['hypothesis_length']}; ddmin: {tries} "
                             f"replay{'' if tries == 1 else 's'})")
        result = _result(failure, ctx, replay_path, machine_name(machine), notes)
        if shrink:
            result.stats["shrink"] = shrink
        return result
    finally:
        engine.MAX_SHRINKING_SECONDS = old
        cleanup()


def read_replay(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and the requests of a replay file (hello first)."""
    p = Path(path)
    try:
        lines = [ln for ln in p.read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise ReplayError(f"cannot read replay file {p}: {e.strerror}") from None
    except UnicodeDecodeError:  # a binary given by mistake: one error line, no traceback
        raise ReplayError(f"replay file {p} is not UTF-8 text") from None
    try:
        objs = [json.loads(ln) for ln in lines]
    except json.JSONDecodeError as e:
        raise ReplayError(f"replay file {p} is not JSON Lines: {e}") from None
    if not objs or not isinstance(objs[0], dict) or "kmemspec_oracle_replay" not in objs[0]:
        raise ReplayError(f"{p} is not a kmemspec oracle replay file (no header line)")
    header, reqs = objs[0], objs[1:]
    if not reqs or not isinstance(reqs[0], dict) or reqs[0].get("op") != "hello":
        raise ReplayError(f"replay file {p}: the first request must be hello")
    if not all(isinstance(r, dict) and isinstance(r.get("op"), str) for r in reqs):
        raise ReplayError(f"replay file {p}: every line must be a request object")
    return header, reqs


def replay(path: str | Path, subject: SubjectSpec, *, timeout: float = DEFAULT_TIMEOUT,
           mode: str | None = None, replay_out: str | None = None) -> OracleResult:
    """Run a replay file's requests against the subject once and judge them."""
    header, reqs = read_replay(path)
    hello = {k: v for k, v in reqs[0].items() if k != "seq"}
    hello_of(hello)
    factory, cleanup = _factory(subject, timeout)
    ctx = RunContext(hello, strict=bool(header.get("strict")),
                     mode=mode or str(header.get("mode", "spec")),
                     pages_only=bool(header.get("pages_only")))
    try:
        failure, _log = run_requests(_session_requests(reqs), factory, ctx)
    finally:
        cleanup()
    notes = [f"replayed {path}: recorded rule {header.get('rule')!r}"]
    if ctx.stats.skipped:
        notes.append(f"{ctx.stats.skipped} requests skipped: invalid on this run's view, or "
                     "of a feature the subject does not list")
    return _result(failure, ctx, replay_out, str(header.get("machine", "replay")), notes)
