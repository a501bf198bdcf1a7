"""A numbered conversation with the reference subject (cli/subject.py), shared by the protocol
feature tests (tests/test_subject_slab.py, tests/test_subject_vmalloc.py): it says hello,
checks every feature is offered, and numbers each later request."""

from __future__ import annotations

from typing import Any

from cli.subject import Subject


class SubjectSession:
    """``t(op, **fields)`` sends one request with the next ``seq`` and returns the answer."""

    def __init__(self, hello: dict[str, Any]) -> None:
        self.s = Subject()
        self.seq = 1
        ans, _ = self.s.handle(dict(hello))
        assert ans["features"] == ["pages", "kmalloc", "slab", "vmalloc"]

    def __call__(self, op: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        ans, done = self.s.handle({"op": op, "seq": self.seq, **fields})
        assert not done and ans["seq"] == self.seq
        return ans
