"""The reference subject: the model speaking the subject protocol (version 1, features
``pages``, ``kmalloc``, ``slab`` and ``vmalloc``).

JSON Lines on stdin/stdout, as ../shared/design/oracle-protocol.md and docs/protocol.md
describe. Only answers go to stdout: while serving, ``sys.stdout`` points at stderr so that a
stray print anywhere in the model cannot break the protocol.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any, TextIO

from impl.machine import MachineConfig
from impl.page_alloc import OWNER_PAGES, PageAllocator
from impl.slab_common import SlabAllocator
from impl.vmalloc import Vmalloc
from spec.context import Context
from spec.errors import KmemError, SlabError, SleepInAtomicError
from spec.gfp import __GFP_DIRECT_RECLAIM, format_gfp, parse_gfp
from spec.layout import NUMA_NO_NODE, PAGE_SIZE
from spec.slab import SLAB_NO_MERGE, ZERO_SIZE_PTR

PROTOCOL_VERSION = 1
FEATURES = ["pages", "kmalloc", "slab", "vmalloc"]
SLAB_OPS = ("kmalloc", "kfree", "kmem_cache_create", "kmem_cache_alloc", "kmem_cache_free",
            "kmem_cache_destroy")
VMALLOC_OPS = ("vmalloc", "vfree")
OTHER_FEATURE_OPS: tuple[str, ...] = ()
_DIRECT_RECLAIM = __GFP_DIRECT_RECLAIM  # no name mangling inside the class
_WHERE_CACHE_MAX = 4096  # distinct (gfp, nid, cpu, ctx) kept per session: bounded memory


class BadRequestError(Exception):
    """A request this subject answers with ``error``: malformed, or invalid per the protocol."""


def _int(msg: dict[str, Any], key: str, default: int | None = None, *,
         nonneg: bool = False) -> int:
    v = msg.get(key, default)
    if v is None:
        raise BadRequestError(f"missing field {key!r}")
    if isinstance(v, bool) or not isinstance(v, int):
        raise BadRequestError(f"field {key!r} must be an integer, got {v!r}")
    if nonneg and v < 0:
        raise BadRequestError(f"field {key!r} must be non-negative, got {v}")
    return v


def _str(msg: dict[str, Any], key: str, default: str | None = None) -> str:
    v = msg.get(key, default)
    if v is None:
        raise BadRequestError(f"missing field {key!r}")
    if not isinstance(v, str):
        raise BadRequestError(f"field {key!r} must be a string, got {v!r}")
    return v


def _addr(msg: dict[str, Any], key: str) -> int:
    """A virtual address: lower-case hex with 0x (an integer is accepted too)."""
    v = msg.get(key)
    if isinstance(v, str) and v.startswith("0x"):
        try:
            return int(v, 16)
        except ValueError:
            pass
    elif isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    raise BadRequestError(f"field {key!r} must be an address like \"0xffff888000010000\", "
                          f"got {v!r}")


class Subject:
    """One protocol session: ``None`` allocator until ``hello``."""

    def __init__(self, name: str = "kmemspec", *, verbose: bool = False,
                 log: TextIO | None = None) -> None:
        self.name = name
        self.verbose = verbose
        self.log = log if log is not None else sys.stderr
        self.a: PageAllocator | None = None
        self.sa: SlabAllocator | None = None  # booted at the first kmalloc/slab request
        self._boot_failed_free: int | None = None  # nr_free_pages when a slab boot failed
        self.vm: Vmalloc | None = None  # booted at the first vmalloc/vfree request
        # (gfp text, nid, cpu, ctx text) -> the parsed, checked (gfp, nid, cpu, ctx) of _where:
        # a session repeats a few masks and places, and parsing them was most of the cost
        # of answering an allocation. Only well-typed fields that passed every check are
        # kept, so an error is still raised (with the same message) every time.
        self._where_cache: dict[tuple[Any, ...], tuple[int, int, int, Context]] = {}

    def _diag(self, text: str) -> None:
        print(f"kmemspec subject: {text}", file=self.log, flush=True)

    def handle(self, msg: Any) -> tuple[dict[str, Any], bool]:
        """Answer one decoded request; (answer, session over)."""
        seq = msg.get("seq") if isinstance(msg, dict) else None
        if isinstance(seq, bool) or not isinstance(seq, int):
            return {"seq": seq, "error": "request must be a JSON object with an integer seq"}, False
        assert isinstance(msg, dict)
        op = msg.get("op")
        a = self.a
        try:
            # the two requests of most sessions first; the chain below answers every op
            if op == "alloc_pages" and a is not None:
                return self._alloc_pages(seq, msg, a), False
            if op == "free_pages" and a is not None:
                return self._free_pages(seq, msg, a), False
            if op == "bye":
                return {"seq": seq, "ok": True}, True
            if op == "hello":
                return self._hello(seq, msg), False
            if op in ("alloc_pages", "free_pages"):
                if self.a is None:
                    raise BadRequestError(f"{op} before hello")
                if op == "alloc_pages":
                    return self._alloc_pages(seq, msg, self.a), False
                return self._free_pages(seq, msg, self.a), False
            if op in SLAB_OPS:
                if self.a is None:
                    raise BadRequestError(f"{op} before hello")
                sa = self._slab(self.a)
                if sa is None:
                    return self._no_slab(seq, op, msg), False
                return self._slab_op(seq, op, msg, sa), False
            if op in VMALLOC_OPS:
                if self.a is None:
                    raise BadRequestError(f"{op} before hello")
                if self.vm is None:  # pages-only sessions keep no page tables (liveness)
                    self.vm = Vmalloc(self.a)
                return self._vmalloc_op(seq, op, msg, self.vm), False
            if op in OTHER_FEATURE_OPS:
                raise BadRequestError(f"op {op!r} is not implemented "
                                      f"(features: {', '.join(FEATURES)})")
            raise BadRequestError(f"unknown op {op!r}")
        except (BadRequestError, KmemError) as e:
            if self.a is not None:
                self.a.drain_effects()
            return {"seq": seq, "error": str(e).replace("\n", " ")}, False

    def _slab(self, a: PageAllocator) -> SlabAllocator | None:
        """The slab allocator, booted at the first slab request (pages-only sessions keep no
        slab pages: the liveness rule). Booting needs pages for the kmalloc caches'
        ``kmem_cache``/``kmem_cache_node`` objects; when memory is exhausted it fails, the
        pages it took go back, and it is retried once more pages are free (docs/protocol.md)."""
        if self.sa is not None:
            return self.sa
        if self._boot_failed_free is not None and a.nr_free_pages() <= self._boot_failed_free:
            return None
        before = set(a.allocated)
        try:
            self.sa = SlabAllocator(a)
        except SlabError:
            # the pages the boot took are slab pages by now (its first caches got slabs):
            # they go back as discard_slab() gives them, owned by the page allocator again
            for pfn in [p for p in a.allocated if p not in before]:
                order, zid, _, mt = a.allocated[pfn]
                a.allocated[pfn] = (order, zid, OWNER_PAGES, mt)
                a.free_pages_pfn(pfn, order)
            a.drain_effects()
            self._boot_failed_free = a.nr_free_pages()
            return None
        return self.sa

    def _no_slab(self, seq: int, op: str, msg: dict[str, Any]) -> dict[str, Any]:
        """A slab request while the slab allocator cannot boot for want of memory: allocations
        fail (null), but kmalloc(0) is ZERO_SIZE_PTR as ever (__do_kmalloc_node returns it
        first); kmem_cache_create is the kernel's -ENOMEM; there is nothing to free."""
        if op == "kmalloc" and _int(msg, "size", nonneg=True) == 0:
            return {"seq": seq, "addr": f"{ZERO_SIZE_PTR:#x}"}  # before anything else
        if op in ("kmalloc", "kmem_cache_alloc"):
            return {"seq": seq, "addr": None}
        if op == "kmem_cache_create":
            return {"seq": seq, "error": "ENOMEM: kmem_cache_create: out of memory "
                                         "(the slab allocator could not boot)"}
        if op == "kfree":
            if _addr(msg, "addr") in (0, ZERO_SIZE_PTR):
                return {"seq": seq, "ok": True}
            return {"seq": seq, "error": "kfree: not a live object (no slab allocator yet)"}
        return {"seq": seq, "error": f"{op}: unknown cache (no slab allocator yet)"}

    def _hello(self, seq: int, msg: dict[str, Any]) -> dict[str, Any]:
        if self.a is not None:
            raise BadRequestError("hello already received")
        version = msg.get("protocol", PROTOCOL_VERSION)
        if version != PROTOCOL_VERSION:
            raise BadRequestError(f"protocol {version!r} not supported (this subject speaks "
                             f"{PROTOCOL_VERSION})")
        self.a = PageAllocator(MachineConfig.from_hello(msg))
        if self.verbose:
            for z in self.a.zones:
                self._diag(f"node {z.nid} {z.name}: pfn {z.start:#x}-{z.end:#x}, watermarks "
                           f"min {z.wmark[0]} low {z.wmark[1]} high {z.wmark[2]}, "
                           f"lowmem_reserve {z.lowmem_reserve}")
        return {"seq": seq, "ok": True, "name": self.name, "features": FEATURES}

    def _alloc_pages(self, seq: int, msg: dict[str, Any], a: PageAllocator) -> dict[str, Any]:
        order = msg.get("order")
        if type(order) is not int or order < 0:  # the common case is checked inline
            order = _int(msg, "order", nonneg=True)
        gfp, nid, cpu, ctx = self._where(msg, a)
        return self._alloc_answer(seq, "pfn", a.alloc_pages_node(nid, gfp, order, cpu=cpu,
                                                                 ctx=ctx), a)

    def _free_pages(self, seq: int, msg: dict[str, Any], a: PageAllocator) -> dict[str, Any]:
        pfn = msg.get("pfn")
        if type(pfn) is not int or pfn < 0:
            pfn = _int(msg, "pfn", nonneg=True)
        order = msg.get("order")
        if type(order) is not int or order < 0:
            order = _int(msg, "order", nonneg=True)
        a.free_pages_pfn(pfn, order)
        if a.effects:
            a.drain_effects()
        return {"seq": seq, "ok": True}

    def _where(self, msg: dict[str, Any], a: PageAllocator) -> tuple[int, int, int, Context]:
        """gfp, nid, cpu and ctx of an allocation request. Allocations have no invalid
        requests: a blocking mask in atomic context is served as the same mask without
        __GFP_DIRECT_RECLAIM, so it never sleeps (the model itself would raise
        SleepInAtomicError). See docs/protocol.md."""
        key = (msg.get("gfp"), msg.get("nid", NUMA_NO_NODE), msg.get("cpu", 0),
               msg.get("ctx", "process"))
        # exact types first: True == 1 and 1.0 == 1 hash alike, and must not hit an int entry
        if type(key[0]) is str and type(key[1]) is int and type(key[2]) is int \
                and type(key[3]) is str:
            w = self._where_cache.get(key)
            if w is None:
                w = self._where_parse(msg, a)
                if len(self._where_cache) < _WHERE_CACHE_MAX:
                    self._where_cache[key] = w
            return w
        return self._where_parse(msg, a)

    def _where_parse(self, msg: dict[str, Any], a: PageAllocator
                     ) -> tuple[int, int, int, Context]:
        """_where without the cache: every check, in the order of the error messages."""
        gfp = parse_gfp(_str(msg, "gfp"), ignore_hex=True)
        nid = _int(msg, "nid", NUMA_NO_NODE)
        cpu = _int(msg, "cpu", 0)
        ctx = Context.parse(_str(msg, "ctx", "process"))
        if ctx.atomic:
            gfp &= ~_DIRECT_RECLAIM
        if cpu not in a.cpu_node:
            raise BadRequestError(f"cpu {cpu} does not exist")
        if nid != NUMA_NO_NODE and not 0 <= nid < len(a.nodes):
            raise BadRequestError(f"node {nid} is not online")
        return gfp, nid, cpu, ctx

    def _alloc_answer(self, seq: int, key: str, result: int | None,
                      a: PageAllocator) -> dict[str, Any]:
        """An allocation's answer: ``pfn`` as an integer, ``addr`` as hex, null on failure,
        ``slept`` when it entered direct reclaim; effects go to stderr with --verbose."""
        value: int | str | None = result
        if result is not None and key == "addr":
            value = hex(result)
        ans: dict[str, Any] = {"seq": seq, key: value}
        if not a.effects:  # most allocations leave no effect: nothing to drain or print
            return ans
        effects = a.drain_effects()
        if any(e.kind == "sleep" for e in effects):
            ans["slept"] = True
        if self.verbose:
            for e in effects:
                self._diag(f"seq {seq}: {e.kind} node {e.nid}: {e.detail}")
        return ans

    def _slab_op(self, seq: int, op: str, msg: dict[str, Any],
                 sa: SlabAllocator) -> dict[str, Any]:
        """kmalloc, kfree and the kmem_cache_* requests (docs/protocol.md)."""
        a = sa.pages
        if op == "kmalloc":
            size = msg.get("size")
            if type(size) is not int or size < 0:  # the common case is checked inline
                size = _int(msg, "size", nonneg=True)
            gfp, nid, cpu, ctx = self._where(msg, a)
            addr = sa.kmalloc_node(size, gfp, nid, cpu=cpu, ctx=ctx)
            return self._alloc_answer(seq, "addr", addr, a)
        if op == "kfree":
            sa.kfree(_addr(msg, "addr"))
            a.drain_effects()
            return {"seq": seq, "ok": True}
        if op == "kmem_cache_create":
            name = _str(msg, "name")
            size = _int(msg, "size", nonneg=True)
            align = _int(msg, "align", 0, nonneg=True)
            if not 1 <= size <= PAGE_SIZE * 8:
                raise BadRequestError(f"kmem_cache_create({name!r}): size {size} is not in "
                                      f"1..{PAGE_SIZE * 8}")
            if align & (align - 1) or align > PAGE_SIZE:
                raise BadRequestError(f"kmem_cache_create({name!r}): align {align} is not 0 "
                                      f"or a power of two <= {PAGE_SIZE}")
            if name in sa.by_name:
                raise BadRequestError(f"kmem_cache_create({name!r}): name already used")
            # SLAB_NO_MERGE: a protocol cache name always identifies its own objects
            sa.kmem_cache_create(name, size, align, SLAB_NO_MERGE)
            a.drain_effects()
            return {"seq": seq, "ok": True}
        name = _str(msg, "name")
        if name not in sa.by_name or sa.by_name[name].name != name:
            raise BadRequestError(f"{op}: unknown cache {name!r}")
        if op == "kmem_cache_alloc":
            gfp, nid, cpu, ctx = self._where(msg, a)
            return self._alloc_answer(
                seq, "addr", sa.kmem_cache_alloc_node(name, gfp, nid, cpu=cpu, ctx=ctx), a)
        if op == "kmem_cache_free":
            sa.kmem_cache_free(name, _addr(msg, "addr"))
        else:
            sa.kmem_cache_destroy(name)
        a.drain_effects()
        return {"seq": seq, "ok": True}

    def _vmalloc_op(self, seq: int, op: str, msg: dict[str, Any], v: Vmalloc) -> dict[str, Any]:
        """vmalloc {size, gfp, cpu, ctx} -> {addr, pfns} or {addr: null}; vfree {addr} -> ok
        (docs/protocol.md, section vmalloc). Atomic context is an error (vmalloc sleeps in
        its page-table allocations); size 0 is null in any context (WARN_ON_ONCE(!size)
        comes first in __vmalloc_node_range)."""
        a = v.pages
        if op == "vfree":
            v.vfree(_addr(msg, "addr"))
            a.drain_effects()
            return {"seq": seq, "ok": True}
        size = _int(msg, "size", nonneg=True)
        gfp = parse_gfp(_str(msg, "gfp"), ignore_hex=True)
        cpu = _int(msg, "cpu", 0)
        ctx = Context.parse(_str(msg, "ctx", "process"))
        if cpu not in a.cpu_node:
            raise BadRequestError(f"cpu {cpu} does not exist")
        if size and ctx.atomic:
            raise SleepInAtomicError(
                f"BUG: sleeping function called from invalid context: vmalloc({size}, "
                f"{format_gfp(gfp)}) in atomic context on cpu {cpu}")
        addr = v.vmalloc(size, gfp=gfp, cpu=cpu, ctx=ctx)
        ans = self._alloc_answer(seq, "addr", addr, a)
        if addr is not None:
            ans["pfns"] = list(v.busy[addr].pages)
        return ans

    def serve(self, inp: TextIO, out: TextIO) -> int:
        """Answer requests until ``bye`` (exit 0) or end of input (exit 0, noted on stderr)."""
        while True:
            line = inp.readline()
            if not line:
                self._diag("end of input without bye")
                return 0
            if not line.strip():
                continue
            try:
                msg: Any = json.loads(line)
            except json.JSONDecodeError as e:
                ans: dict[str, Any] = {"seq": None, "error": f"not JSON: {e.msg}"}
                done = False
            else:
                try:
                    ans, done = self.handle(msg)
                except Exception as e:  # a model bug: report it, keep the session alive
                    traceback.print_exc(file=self.log)
                    seq = msg.get("seq") if isinstance(msg, dict) else None
                    ans, done = {"seq": seq, "error": f"internal error: {e!r}"}, False
            out.write(json.dumps(ans) + "\n")
            out.flush()
            if done:
                return 0


def run_subject(name: str, verbose: bool = False) -> int:
    """Serve stdin/stdout; everything else printed meanwhile goes to stderr."""
    real_out = sys.stdout
    sys.stdout = sys.stderr
    try:
        return Subject(name, verbose=verbose).serve(sys.stdin, real_out)
    finally:
        sys.stdout = real_out
