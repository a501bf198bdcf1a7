"""The subject as a child process: JSON Lines over pipes, per-answer timeouts, stderr tail, reaping.

The protocol (../shared/design/oracle-protocol.md, "Conventions", "Start and end") asks one
answer per request, in order, each one JSON object on one line with the request's ``seq``,
within 5 s, and an exit within 5 s of ``bye``. :class:`ProcessSubject` enforces that and turns
every way of breaking it into a :class:`ProtocolFailure` carrying the tail of the subject's
standard error: a crash or early exit (end of file on stdout), a hang (no answer in time),
garbage (a line that is not a JSON object, or anything after ``bye``'s answer), an answer to
another request (out of order) or a second answer to an earlier one (twice).

Speed: stdout is read with ``os.read`` on a non-blocking descriptor into our own line buffer;
``poll`` is called only when a read would block, and no thread is created per request (one
daemon thread per process drains stderr into a bounded tail, so a chatty stderr never blocks
the subject). :meth:`ProcessSubject.request_many` sends a batch of independent requests in one
write and then reads their answers (a pipelined burst; the protocol's in-order answers make
this equivalent to one at a time for a subject that reads a line and answers it).

Reaping: every process is terminated (SIGTERM, then SIGKILL after a grace period) on
:meth:`close`, on a failure, and at interpreter exit (an ``atexit`` hook over a registry of
live processes), which also covers KeyboardInterrupt unwinding out of the oracle.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

DEFAULT_TIMEOUT = 5.0
DEFAULT_BUDGET = 30.0  # seconds of a whole oracle run (oracle/run.py); here so the CLI stays light
BYE_TIMEOUT = 5.0
STDERR_TAIL_BYTES = 8192
MAX_LINE_BYTES = 64 << 20  # an answer line longer than this is garbage, not a vmalloc answer
PIPE_BATCH_BYTES = 32768  # below the 64 KiB Linux pipe buffer: a batch write never blocks

_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the subject's process group (it leads its own session: start_new_session), so
    that processes it started go too; a group with no process left is fine."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, sig)


def _reap(proc: subprocess.Popen[bytes], grace: float = 1.0) -> None:
    """Terminate, then kill, then wait: never leave a child (or a zombie) behind, nor a
    process the subject started (one holding its stdout would look like a live subject)."""
    try:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(5.0)
    except (OSError, subprocess.TimeoutExpired):
        pass
    _signal_group(proc, signal.SIGKILL)  # what is left of the group once the subject is gone
    with _LIVE_LOCK:
        _LIVE.discard(proc)


@atexit.register
def reap_all() -> None:
    """Reap every subject process still alive (interpreter exit, Ctrl-C unwinding)."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for p in procs:
        _reap(p, grace=0.2)


class ProtocolFailure(Exception):  # noqa: N818 - the name the oracle's API agreed on
    """The subject broke the transport rules; ``kind`` is one of crash, exit, hang, garbage,
    out-of-order, twice, bye; ``stderr_tail`` is the end of what it printed on stderr."""

    def __init__(self, kind: str, message: str, *, seq: int | None = None,
                 request: dict[str, Any] | None = None, line: str | None = None,
                 stderr_tail: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.seq = seq
        self.request = request
        self.line = line
        self.stderr_tail = stderr_tail
        self.returncode = returncode

    def __str__(self) -> str:
        return self.message


def split_command(command: str | Sequence[str]) -> list[str]:
    """A command string is split as a POSIX shell would (no shell is run); a list is used as is."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv:
        raise ValueError("empty subject command")
    return argv


class _StderrTail:
    """A daemon thread that drains a pipe into a bounded buffer (the last N bytes)."""

    def __init__(self, fd: int, limit: int = STDERR_TAIL_BYTES) -> None:
        self._fd = fd
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._limit = limit
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="subject-stderr", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._chunks.append(chunk)
                self._size += len(chunk)
                while self._size - len(self._chunks[0]) >= self._limit:
                    self._size -= len(self._chunks.popleft())

    def text(self, wait: float = 0.0) -> str:
        """The tail so far; ``wait`` lets the thread finish after the process died."""
        if wait:
            self._thread.join(wait)
        with self._lock:
            data = b"".join(self._chunks)[-self._limit:]
        return data.decode("utf-8", "replace")


class ProcessSubject:
    """One subject process, one protocol session (a SubjectAPI: ``request``, ``close``)."""

    def __init__(self, command: str | Sequence[str], *, timeout: float = DEFAULT_TIMEOUT,
                 bye_timeout: float = BYE_TIMEOUT, env: dict[str, str] | None = None,
                 cwd: str | None = None) -> None:
        self.argv = split_command(command)
        self.timeout = timeout
        self.bye_timeout = bye_timeout
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, bufsize=0, env=env, cwd=cwd, close_fds=True,
                start_new_session=True)  # Ctrl-C in a terminal reaches the oracle only
        except OSError as e:
            raise ProtocolFailure("crash", f"cannot start subject {self.argv[0]!r}: "
                                  f"{e.strerror or e}") from None
        with _LIVE_LOCK:
            _LIVE.add(self.proc)
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        os.set_blocking(self._out, False)
        self._poll = select.poll()
        self._poll.register(self._out, select.POLLIN | select.POLLHUP | select.POLLERR)
        self._stderr = _StderrTail(self.proc.stderr.fileno())
        self._buf = bytearray()
        self._answered: int = 0  # the highest seq answered so far
        self.closed = False
        self.requests = 0

    # --- the SubjectAPI --------------------------------------------------------------------
    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Send one request, return its answer (a dict with the same ``seq``)."""
        self._send(json.dumps(msg, separators=(",", ":")).encode() + b"\n", msg)
        ans = self._answer(msg)
        if msg.get("op") == "bye":
            self._finish_bye(msg)
        return ans

    def request_many(self, msgs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Pipelined: write the requests in batches below the pipe size, then read the
        answers of each batch in order. The requests must not depend on each other's
        answers; ``bye`` must not be among them."""
        out: list[dict[str, Any]] = []
        i = 0
        n = len(msgs)
        while i < n:
            lines: list[bytes] = []
            size = 0
            j = i
            while j < n and size < PIPE_BATCH_BYTES:
                line = json.dumps(msgs[j], separators=(",", ":")).encode() + b"\n"
                lines.append(line)
                size += len(line)
                j += 1
            self._send(b"".join(lines), msgs[i])
            for k in range(i, j):
                out.append(self._answer(msgs[k]))
            i = j
        return out

    def close(self) -> None:
        """Reap the process (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        _reap(self.proc)
        try:
            if self.proc.stderr:
                self.proc.stderr.close()
        except OSError:
            pass

    def __enter__(self) -> ProcessSubject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stderr_tail(self, wait: float = 0.0) -> str:
        return self._stderr.text(wait)

    # --- internals -------------------------------------------------------------------------
    def _fail(self, kind: str, message: str, msg: dict[str, Any] | None,
              line: bytes | None = None) -> ProtocolFailure:
        """Build the failure after reaping the process, with its stderr tail and status."""
        self.close()
        # the line buffer may hold up to MAX_LINE_BYTES; a failure is kept (by Hypothesis,
        # while it shrinks) with its traceback, whose frames reference this object
        self._buf.clear()
        rc = self.proc.returncode
        return ProtocolFailure(
            kind, message, seq=msg.get("seq") if msg else None, request=msg,
            line=line.decode("utf-8", "replace")[:500] if line is not None else None,
            stderr_tail=self._stderr.text(wait=0.5), returncode=rc)

    def _died(self, msg: dict[str, Any] | None, what: str) -> ProtocolFailure:
        rc = self.proc.poll()
        if rc is None:
            try:
                rc = self.proc.wait(0.5)
            except subprocess.TimeoutExpired:
                rc = None
        if rc is None:
            return self._fail("exit", f"the subject closed its standard output {what}", msg)
        kind = "crash" if rc != 0 else "exit"
        how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
        return self._fail(kind, f"the subject exited ({how}) {what}", msg)

    def _send(self, data: bytes, msg: dict[str, Any]) -> None:
        if self.closed:
            raise ProtocolFailure("exit", "the subject process is closed", request=msg)
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._in, view)
            except BrokenPipeError:
                raise self._died(msg, f"before request seq {msg.get('seq')} "
                                      f"({msg.get('op')})") from None
            view = view[n:]
        self.requests += 1

    def _readline(self, msg: dict[str, Any], timeout: float) -> bytes:
        """One line of stdout (without the newline); reads only when the buffer has none."""
        buf = self._buf
        nl = buf.find(b"\n")
        deadline = 0.0
        dead = False
        while nl < 0:
            try:
                chunk = os.read(self._out, 65536)
            except BlockingIOError:
                if not deadline:
                    deadline = time.monotonic() + timeout
                left = deadline - time.monotonic()
                if left <= 0 or not self._poll.poll(left * 1000.0):
                    if self.proc.poll() is not None:
                        if dead:  # a child of the subject holds its stdout open
                            raise self._died(msg, f"without answering seq {msg.get('seq')} "
                                                  f"({msg.get('op')})") from None
                        dead = True
                        continue  # died meanwhile: the next read sees end of file
                    part = (f" (only {len(buf)} bytes of a line without its newline)"
                            if buf else "")
                    raise self._fail(
                        "hang", f"no answer to seq {msg.get('seq')} ({msg.get('op')}) within "
                                f"{timeout:g} s{part}", msg, bytes(buf[:500]) if buf else None
                    ) from None
                continue
            if not chunk:
                if buf:
                    raise self._fail("garbage", f"the subject's last output line (at seq "
                                     f"{msg.get('seq')}) has no newline", msg, bytes(buf[:500]))
                raise self._died(msg, f"without answering seq {msg.get('seq')} "
                                      f"({msg.get('op')})")
            nl = len(buf) + chunk.find(b"\n") if b"\n" in chunk else -1
            buf += chunk
            if nl < 0 and len(buf) > MAX_LINE_BYTES:
                raise self._fail("garbage", f"answer to seq {msg.get('seq')} "
                                 f"({msg.get('op')}): more than {MAX_LINE_BYTES} bytes on "
                                 "standard output without a newline", msg, bytes(buf[:500]))
        line = bytes(buf[:nl])
        del buf[:nl + 1]
        return line

    def _answer(self, msg: dict[str, Any]) -> dict[str, Any]:
        line = self._readline(msg, self.timeout)
        try:
            ans = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise self._fail("garbage", f"answer to seq {msg.get('seq')} is not JSON",
                             msg, line) from None
        if not isinstance(ans, dict):
            raise self._fail("garbage", f"answer to seq {msg.get('seq')} is not a JSON object",
                             msg, line)
        seq = msg.get("seq")
        got = ans.get("seq")
        if got != seq or type(got) is not int:  # 5.0 and true are not the integer seq
            if type(got) is not int:
                raise self._fail("out-of-order", f"answer with seq {json.dumps(got)} where "
                                 f"the answer to seq {seq} was due (seq is a JSON integer)",
                                 msg, line)
            if got <= self._answered:
                raise self._fail("twice", f"a second answer to seq {got} arrived where the "
                                 f"answer to seq {seq} was due", msg, line)
            raise self._fail("out-of-order", f"answer with seq {got!r} where the answer to "
                             f"seq {seq} was due", msg, line)
        self._answered = seq if isinstance(seq, int) else self._answered
        return ans

    def _finish_bye(self, msg: dict[str, Any]) -> None:
        """After bye's answer: nothing more on stdout, exit status 0 within the time limit."""
        deadline = time.monotonic() + self.bye_timeout
        extra = bytes(self._buf)
        # read until end of file, the deadline, or the first output that is not whitespace
        # (then fail at once: a subject that prints on and on is neither waited for nor kept)
        while not extra.strip() and len(extra) <= 4096:
            try:
                chunk = os.read(self._out, 65536)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._poll.poll(left * 1000.0)
                continue
            if not chunk:
                break
            extra += chunk
        if extra.strip() or len(extra) > 4096:
            kind = "twice" if extra.lstrip().startswith(b"{") else "garbage"
            raise self._fail(kind, "output after the answer to bye", msg, extra)
        try:
            rc = self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise self._fail("hang", f"the subject did not exit within {self.bye_timeout:g} s "
                             "of bye", msg) from None
        if rc != 0:
            raise self._fail("crash" if rc < 0 else "exit",
                             f"the subject exited with status {rc} after bye", msg)
        self.close()


class ProcessSubjectFactory:
    """Starts subjects for successive sessions, keeping one spare process warm so that a
    subject with a slow start (an interpreter) starts while the previous session runs."""

    def __init__(self, command: str | Sequence[str], *, timeout: float = DEFAULT_TIMEOUT,
                 spare: bool = True) -> None:
        self.argv = split_command(command)
        self.timeout = timeout
        self.spare = spare
        self._spare: ProcessSubject | None = None
        self.started = 0

    def __call__(self) -> ProcessSubject:
        s = self._spare if self._spare is not None else self._start()
        self._spare = self._start() if self.spare else None
        return s

    def _start(self) -> ProcessSubject:
        self.started += 1
        return ProcessSubject(self.argv, timeout=self.timeout, bye_timeout=self.timeout)

    def close(self) -> None:
        if self._spare is not None:
            self._spare.close()
            self._spare = None
