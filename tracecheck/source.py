"""Opening trace files: plain or compressed (xz, gzip, bzip2 via the standard library, zstd via
the ``zstandard`` package), detected by their magic bytes, from a path or standard input ("-").

Lines are streamed (never held): a file of any length costs the memory of one read buffer.
Undecodable bytes become U+FFFD, so binary garbage reaches the parser as a malformed line
instead of a UnicodeDecodeError.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

from spec.errors import KmemError

MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
)
READ_BUFFER = 1 << 20


class TraceSourceError(KmemError, OSError):
    """A trace file that cannot be opened or read (missing, a directory, no permission)."""


def detect(head: bytes) -> str:
    """The compression of a stream from its first bytes: xz, gzip, zstd, bzip2 or plain."""
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    return "plain"


def _binary(path: str) -> Any:
    if path == "-":
        return sys.stdin.buffer
    if os.path.isdir(path):  # outside the try: TraceSourceError is an OSError too
        raise TraceSourceError(f"{path}: is a directory")
    try:
        return open(path, "rb", buffering=READ_BUFFER)  # the caller closes it
    except OSError as e:
        raise TraceSourceError(f"{path}: {e.strerror or e}") from None


def open_trace(path: str) -> tuple[IO[str], str]:
    """A text stream of the trace at ``path`` ("-" = stdin) and the compression found."""
    raw = _binary(path)
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)
    head = buffered.peek(8)[:8]
    kind = detect(head)
    stream: Any
    if kind == "xz":
        stream = lzma.LZMAFile(buffered)  # noqa: SIM115 - closed with the text stream
    elif kind == "gzip":
        stream = gzip.GzipFile(fileobj=buffered)
    elif kind == "bzip2":
        stream = bz2.BZ2File(buffered)
    elif kind == "zstd":
        try:
            import zstandard
        except ImportError:  # pragma: no cover - a pinned runtime dependency
            raise TraceSourceError(f"{path}: zstd input needs the 'zstandard' package") from None
        stream = zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)
    else:
        stream = buffered
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="\n")
    text._CHUNK_SIZE = READ_BUFFER  # type: ignore[attr-defined]
    return text, kind


def iter_lines(f: IO[str], errors: list[str]) -> Iterator[str]:
    """The lines of ``f``; a truncated or corrupt compressed stream ends the iteration and
    appends one message to ``errors`` (the lines before it are still yielded)."""
    try:
        yield from f
    except (EOFError, lzma.LZMAError, OSError, ValueError) as e:
        errors.append(f"the compressed stream ends early or is corrupt ({type(e).__name__}: {e})")
    except Exception as e:  # zstandard.ZstdError and friends: one message, no traceback
        errors.append(f"the stream cannot be decoded ({type(e).__name__}: {e})")
