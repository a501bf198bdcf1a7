"""Subjects without a subprocess: the reference model and any Python allocator object, behind
the one interface the oracle drives (:class:`SubjectAPI`: one request dict in, one answer dict
out, exactly the JSON objects of the subject protocol, ../shared/design/oracle-protocol.md).

Checking your own Python allocator
==================================
Write a factory that builds your allocator from the ``hello`` request (the machine: nodes,
zones with ``start_pfn``/``pages``/``min``, ``max_order``, ``page_offset``, ...) and give it
to :class:`PythonAllocatorAdapter`. The adapter calls these methods when they exist; a
feature whose methods are missing is not listed in the ``hello`` answer, so the oracle never
sends its requests:

==========  ==============================================================================
feature     methods (``gfp`` is an int mask: spec.gfp has GFP_KERNEL, __GFP_DMA, ...;
            ``ctx`` is ``"process"`` or ``"atomic"``; ``nid`` -1 is the local/any node)
==========  ==============================================================================
pages       ``alloc_pages(order, gfp, nid, cpu, ctx) -> pfn | None``,
            ``free_pages(pfn, order)``
kmalloc     ``kmalloc(size, gfp, nid, cpu, ctx) -> address | None`` (an int in the direct
            map, page_offset + physical address; 16 is ZERO_SIZE_PTR), ``kfree(address)``
slab        ``kmem_cache_create(name, size, align)``,
            ``kmem_cache_alloc(name, gfp, nid, cpu, ctx) -> address | None``,
            ``kmem_cache_free(name, address)``, ``kmem_cache_destroy(name)``
vmalloc     ``vmalloc(size, gfp, cpu, ctx) -> (address, [pfn, ...]) | None``,
            ``vfree(address)``
==========  ==============================================================================

- Invalid requests (double free, unknown cache, ...): raise any exception; the adapter
  answers ``{"error": "<ExceptionType>: <message>"}``. The state must be unchanged.
- Sleeping: set ``self.slept = True`` inside a call that slept (direct reclaim); the adapter
  resets the attribute to False before each call and reports ``"slept": true``.
- ``close()`` is called, if present, at ``bye``.

Example::

    from oracle.inprocess import PythonAllocatorAdapter
    from oracle.judge import Judge
    subject = PythonAllocatorAdapter(lambda hello: MyBuddy(hello), name="my-buddy")
    # oracle.run.check_subject(lambda: PythonAllocatorAdapter(...)) drives and judges it.
"""

from __future__ import annotations

import io
import traceback
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from spec.gfp import parse_gfp

FEATURE_METHODS: dict[str, tuple[str, ...]] = {
    "pages": ("alloc_pages", "free_pages"),
    "kmalloc": ("kmalloc", "kfree"),
    "slab": ("kmem_cache_create", "kmem_cache_alloc", "kmem_cache_free", "kmem_cache_destroy"),
    "vmalloc": ("vmalloc", "vfree"),
}


@runtime_checkable
class SubjectAPI(Protocol):
    """A subject the oracle can drive: one request in, its one answer out."""

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Answer one protocol request (a decoded JSON object)."""
        ...

    def close(self) -> None:
        """End the session and release everything (idempotent)."""
        ...


class ReferenceSubject:
    """The reference subject (cli.subject.Subject, the model of Linux 6.12.117) in-process:
    the same answers as ``kmemspec subject``, without a pipe or JSON encoding."""

    def __init__(self, name: str = "kmemspec") -> None:
        from cli.subject import Subject  # imported here: the model is big to import

        self.log = io.StringIO()  # what the subject would print on stderr
        self._s: Any = Subject(name, log=self.log)
        self.closed = False

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Subject.handle, with a model bug answered as serve() does (an internal error)."""
        ans: dict[str, Any]
        try:
            ans, done = self._s.handle(msg)
        except Exception as e:  # a model bug: the oracle reports a protocol violation
            traceback.print_exc(file=self.log)
            return {"seq": msg.get("seq"), "error": f"internal error: {e!r}"}
        if done:
            self.closed = True
        return ans  # a fresh dict per answer: handle() keeps no reference to it

    def close(self) -> None:
        self.closed = True


class PythonAllocatorAdapter:
    """Adapts a Python allocator object (see the module docstring) to :class:`SubjectAPI`."""

    def __init__(self, factory: Callable[[dict[str, Any]], Any], *,
                 name: str = "python-allocator") -> None:
        self.factory = factory
        self.name = name
        self.alloc: Any = None
        self.features: tuple[str, ...] = ()
        self._ops: frozenset[str] = frozenset()  # the ops of the listed features
        self._gfp: dict[str, int] = {}

    def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        seq = msg.get("seq")
        op = msg.get("op")
        try:
            if op == "hello":
                if self.alloc is not None:
                    raise ValueError("hello already received")
                self.alloc = self.factory(msg)
                self.features = tuple(f for f, ms in FEATURE_METHODS.items()
                                      if all(callable(getattr(self.alloc, m, None)) for m in ms))
                self._ops = frozenset(m for f in self.features for m in FEATURE_METHODS[f])
                return {"seq": seq, "ok": True, "name": self.name,
                        "features": list(self.features)}
            if op == "bye":
                self.close()
                return {"seq": seq, "ok": True}
            if self.alloc is None:
                raise ValueError(f"{op} before hello")
            return self._call(seq, str(op), msg)
        except Exception as e:
            return {"seq": seq, "error": f"{type(e).__name__}: {e}".replace("\n", " ")}

    def _gfp_of(self, text: str) -> int:
        g = self._gfp.get(text)
        if g is None:
            g = self._gfp[text] = parse_gfp(text, ignore_hex=True, validate=False)
        return g

    def _call(self, seq: Any, op: str, m: dict[str, Any]) -> dict[str, Any]:
        a = self.alloc
        if op not in self._ops:
            raise ValueError(f"op {op!r} is not implemented")
        if hasattr(a, "slept"):
            a.slept = False
        key = "ok"
        value: Any = True
        if op == "alloc_pages":
            key, value = "pfn", a.alloc_pages(m["order"], self._gfp_of(m["gfp"]),
                                              m.get("nid", -1), m.get("cpu", 0),
                                              m.get("ctx", "process"))
        elif op == "free_pages":
            a.free_pages(m["pfn"], m["order"])
        elif op in ("kmalloc", "kmem_cache_alloc"):
            args = (m["size"],) if op == "kmalloc" else (m["name"],)
            r = getattr(a, op)(*args, self._gfp_of(m["gfp"]), m.get("nid", -1),
                               m.get("cpu", 0), m.get("ctx", "process"))
            key, value = "addr", (hex(r) if isinstance(r, int) else r)
        elif op == "kfree":
            a.kfree(int(m["addr"], 16))
        elif op == "kmem_cache_create":
            a.kmem_cache_create(m["name"], m["size"], m.get("align", 0))
        elif op == "kmem_cache_free":
            a.kmem_cache_free(m["name"], int(m["addr"], 16))
        elif op == "kmem_cache_destroy":
            a.kmem_cache_destroy(m["name"])
        elif op == "vmalloc":
            r = a.vmalloc(m["size"], self._gfp_of(m["gfp"]), m.get("cpu", 0),
                          m.get("ctx", "process"))
            ans: dict[str, Any] = {"seq": seq, "addr": None}
            if r is not None:
                addr, pfns = r
                ans = {"seq": seq, "addr": hex(addr) if isinstance(addr, int) else addr,
                       "pfns": list(pfns)}
            if getattr(a, "slept", False) is True:
                ans["slept"] = True
            return ans
        elif op == "vfree":
            a.vfree(int(m["addr"], 16))
        ans = {"seq": seq, key: value}
        if key != "ok" and getattr(a, "slept", False) is True:
            ans["slept"] = True
        return ans

    def close(self) -> None:
        a, self.alloc = self.alloc, None
        close = getattr(a, "close", None)
        if callable(close):
            close()
