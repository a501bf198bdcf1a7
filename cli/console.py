"""Standard output of ``kmemspec`` commands whose exit status is a verdict (``run``,
``check-trace``, ``oracle``): when the reader goes away (``| head``), the rest of the output is
dropped and the command still ends with its own status. Without this, rich's default
(``Console.on_broken_pipe``) exits with status 1, which for ``check-trace`` and ``oracle``
means "a violation" and for ``run`` "an expectation failed", and a BrokenPipeError from a
plain write ended the command with status 0 whatever its verdict."""

from __future__ import annotations

import contextlib
import os
import sys

from rich.console import Console


def stdout_to_devnull() -> None:
    """The reader of standard output has gone: send the rest, buffered text included, to
    /dev/null so that the command can finish and report its status."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    with contextlib.suppress(OSError):  # the descriptor is /dev/null now
        sys.stdout.flush()  # what the failed write left in the buffer goes there


def write_out(text: str, *, flush: bool = False) -> None:
    """``sys.stdout.write`` (and flush) that survives a reader that has gone."""
    try:
        sys.stdout.write(text)
        if flush:
            sys.stdout.flush()
    except BrokenPipeError:
        stdout_to_devnull()


class PipeSafeConsole(Console):
    """A Console that, on a broken pipe, sends the rest of standard output to /dev/null and
    carries on instead of raising SystemExit(1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        stdout_to_devnull()
