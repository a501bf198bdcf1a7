"""Replay a Linux kmem/vmalloc trace and judge it against the specification.

Input: the text of ``/sys/kernel/tracing/trace`` (with its ``#`` header), ``trace_pipe``,
``per_cpu/cpuN/trace`` buffers (several files are one trace: they are merged by timestamp) or
``trace-cmd report`` output, of Linux 6.1 and newer (the layouts are in tracecheck/formats.py).

Rules (``TraceViolation.rule``), each citing the kernel code that makes it a rule and the
shared definition it uses (spec/alloc_rules.py, spec/gfp.py, spec/slab.py):

=====================  ====================================================================
page.align             an allocated (or freed) block of 2^order pages starts on a multiple of
                       2^order (block_aligned; mm/page_alloc.c expand)
page.overlap           no two live page blocks share a page (BitmapLiveMap: the LiveMap
                       contract in O(1) per operation)
page.free_order        a block is freed with at most the order it was allocated with (a
                       smaller order is a split_page()/folio split, allowed), inside one block
page.double_free       a block is freed only while live (mm/page_alloc.c free_pages_prepare);
                       order 0 is excused (see below)
page.migratetype       mm_page_alloc's migratetype is gfp_migratetype(gfp_flags)
                       (mm/page_alloc.c prepare_alloc_pages, include/linux/gfp.h)
object.overlap         no two live slab/kmalloc objects share a byte (BitmapLiveMap, 8-byte
                       granules; its one-chunk add/remove are inlined in the replay loop)
object.double_free     an object is freed only while live
object.invalid_free    kfree/kmem_cache_free of a pointer inside a live object, not its start
object.in_free_page    no object is allocated in a page the trace shows free (needs the
                       direct-map base)
kmalloc.size_class     kmalloc's bytes_alloc is kmalloc_class_spec(bytes_req), or
                       PAGE_SIZE << get_order(bytes_req) above KMALLOC_MAX_CACHE_SIZE
                       (include/linux/slab.h, mm/slub.c __kmalloc_large_node)
kmalloc.align          kmalloc objects are aligned as kmalloc_object_aligned says (natural
                       alignment for powers of two; page-aligned for the large path)
sleep.atomic           an allocation made with irqs off, BH off, or in hardirq/softirq/NMI
                       context (the flags column) uses a mask that cannot sleep
                       (gfp_may_sleep; kernel/sched/core.c __might_sleep)
vmalloc.overlap        live vmap areas (alloc_vmap_area, guard page included) do not overlap
vmalloc.guard          no area begins in the guard page (the last page) of a live area
=====================  ====================================================================

What is deliberately not a violation, and why:

* a free of something never seen allocated: allocated before tracing began, or by a path
  without an event (``kmem_cache_alloc_bulk``, the page bulk allocator
  ``alloc_pages_bulk`` for order-0 pcp pages, compaction's isolated free pages): counted as
  ``unknown_frees``;
* a free of an order-0 page the trace already showed free: ``alloc_pages_bulk`` takes order-0
  pages off the per-CPU lists without ``mm_page_alloc`` (mm/page_alloc.c), so the page may have
  been reallocated unseen: counted (``order0_refree``);
  (known limit: compaction's isolate_freepages and alloc_contig_range also take free blocks
  without an event; a block of order >= 1 freed, taken by them and freed again is reported
  as page.double_free);
* a kmem_cache object freed again after a traced free: ``kmem_cache_alloc_bulk`` (the maple
  tree's mas_alloc_nodes, skbuff heads) allocates without an event, so it may have been
  handed out again unseen: counted (``cache_object_refree``); kmalloc objects (no bulk path)
  are judged, and ``strict=True`` judges every object;
* an object handed out again at the same address with the same size while live:
  ``kmem_cache_free_bulk``/``kfree_bulk`` (and so ``kvfree_rcu``) free without an event
  (mm/slub.c, mm/slab_common.c): counted (``untraced_free_reuse``), a violation only with
  ``strict=True``;
* ``mm_page_free_batched`` after ``mm_page_free`` of the same page is one free
  (free_unref_folios / free_unref_page_list emit both); alone it frees an order-0 page;
* ``mm_page_alloc_zone_locked``, ``mm_page_pcpu_drain``, ``mm_page_alloc_extfrag`` move pages
  between the per-CPU lists and the buddy lists: counted only;
* the second ``kmalloc`` event of a large kmalloc (6.10+: ``__do_kmalloc_node`` and
  ``__kmalloc_large_node_noprof`` both trace the same pointer): counted;
* ``LOST N EVENTS`` and ``##### CPU N buffer started ####``: every live and free set is
  forgotten at that line (said in ``not_checked``), then checking goes on;
* clock skew between CPUs: an overlap or double free that a free (or allocation) on another
  CPU within ``reorder_window`` seconds explains is resolved as reordering, not reported.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import lzma
import operator
import os
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from spec.alloc_rules import (
    BitmapLiveMap,
    LiveMap,
    block_aligned,
    gfp_may_sleep,
    kmalloc_min_align,
    kmalloc_object_aligned,
)
from spec.errors import GfpError, KmemError
from spec.gfp import (
    __GFP_ACCOUNT,
    __GFP_DMA,
    __GFP_RECLAIMABLE,
    GFP_NAMES,
    gfp_migratetype,
    parse_gfp,
)
from spec.layout import PAGE_SHIFT, PAGE_SIZE
from spec.slab import KMALLOC_MAX_CACHE_SIZE, kmalloc_class_spec, kmalloc_large_order_spec
from tracecheck.formats import HEX_KEYS, FormatSet, Template, builtin_templates, load_formats
from tracecheck.source import TraceSourceError, iter_lines, open_trace

RULES: dict[str, str] = {
    "page.align": "a page block starts on a multiple of its size (mm/page_alloc.c expand)",
    "page.overlap": "two live page blocks share a page",
    "page.free_order": "a block freed with a larger order than it was allocated with",
    "page.double_free": "a page block freed while not live",
    "page.migratetype": "migratetype is not gfp_migratetype(gfp_flags)",
    "object.overlap": "two live objects share a byte",
    "object.double_free": "an object freed while not live",
    "object.invalid_free": "a free of a pointer inside a live object",
    "object.in_free_page": "an object allocated in a page the trace shows free",
    "kmalloc.size_class": "bytes_alloc is not the size class of bytes_req",
    "kmalloc.align": "a kmalloc object is not aligned as kmalloc() guarantees",
    "sleep.atomic": "a sleeping gfp mask in atomic context",
    "vmalloc.overlap": "two live vmap areas overlap",
    "vmalloc.guard": "a vmap area begins in the guard page of another",
}

MAX_MALFORMED_KEPT = 200
ONE_GIB = 1 << 30
KERNEL_HALF = 0xFFFF800000000000
DEFAULT_REORDER_WINDOW = 0.001  # seconds
KMALLOC_KEYS = ("kmalloc-", "dma-kmalloc-")
ALLOC_EVENTS = frozenset({"kmalloc", "kmem_cache_alloc"})
FREE_EVENTS = frozenset({"kfree", "kmem_cache_free"})
MEMO_MAX = 200_000  # allocation-line memo records (distinct call site/size/flags texts)
BITS = tuple(1 << i for i in range(512))  # a bit of a 512-bit chunk, without shifting it
OBJECT_CHUNK_BITS = 11  # live objects: 8-byte granules, 2048 per int (16 KiB)

# event codes
_OBJ_ALLOC, _KFREE, _KCFREE, _PG_ALLOC, _PG_FREE, _PG_BATCH, _PG_MOVE = range(7)
_VM_ALLOC, _VM_FREE, _VM_PURGE = range(7, 10)
EVENT_CODES: dict[str, int] = {
    "kmem_cache_alloc": _OBJ_ALLOC, "kmalloc": _OBJ_ALLOC, "kmalloc_node": _OBJ_ALLOC,
    "kmem_cache_alloc_node": _OBJ_ALLOC, "kfree": _KFREE, "kmem_cache_free": _KCFREE,
    "mm_page_alloc": _PG_ALLOC, "mm_page_free": _PG_FREE, "mm_page_free_batched": _PG_BATCH,
    "mm_page_alloc_zone_locked": _PG_MOVE, "mm_page_pcpu_drain": _PG_MOVE,
    "mm_page_alloc_extfrag": _PG_MOVE, "alloc_vmap_area": _VM_ALLOC,
    "free_vmap_area_noflush": _VM_FREE, "purge_vmap_area_lazy": _VM_PURGE,
}
# the fields each kind of event needs, in the order the replay reads them
NEEDED: dict[int, tuple[str, ...]] = {
    _OBJ_ALLOC: ("ptr", "bytes_req", "bytes_alloc", "gfp_flags", "call_site", "node", "name"),
    _KFREE: ("ptr", "call_site"),
    _KCFREE: ("ptr", "call_site", "name"),
    _PG_ALLOC: ("pfn", "order", "migratetype", "gfp_flags", "page"),
    _PG_FREE: ("pfn", "order"),
    _PG_BATCH: ("pfn",),
    _PG_MOVE: ("pfn",),
    _VM_ALLOC: ("va_start", "size", "failed"),
    _VM_FREE: ("va_start",),
    _VM_PURGE: ("start", "end"),
}
STR_FIELDS = frozenset({"gfp_flags", "call_site", "name"})
# the bases of the NEEDED fields of the page events the loop parses without the general code
PAGE_FAST_BASES: dict[int, tuple[int, ...]] = {
    _PG_FREE: (16, 10), _PG_ALLOC: (16, 10, 10, 0, 16), _PG_BATCH: (16,)}
# page events the loop reads by a shortcut, in the layout of every kernel since 4.x
# (include/trace/events/kmem.h): kind, tokens, (token index, prefix length, base) per NEEDED field
PAGE_SHORTCUTS: dict[str, tuple[int, int, tuple[tuple[int, int, int], ...]]] = {
    "mm_page_free": (5, 3, ((1, 4, 16), (2, 6, 10))),
    "mm_page_alloc": (6, 5, ((1, 4, 16), (2, 6, 10), (3, 12, 10), (4, 10, 0), (0, 5, 16))),
    "mm_page_free_batched": (7, 3, ((1, 4, 16),)),  # "page=%p pfn=0x%lx order=0"
}
PAGE_MASKS = tuple((1 << (1 << o)) - 1 for o in range(10))  # the pfn bits of a block of order o
# the 8-byte granule bits of a block of order 0-2 (the orders that fit one object chunk)
PAGE_GRANULE_MASKS = tuple((1 << ((PAGE_SIZE >> 3) << o)) - 1 for o in range(3))
ATOMIC_IRQ = frozenset("dDb")  # irqs off, irqs and BH off, BH off (kernel/trace/trace_output.c)
ATOMIC_CTX = frozenset("hHszZ")  # hardirq, hardirq in softirq, softirq, NMI


@dataclass(frozen=True)
class TraceViolation:
    """One broken rule, at the line that broke it."""

    rule: str
    lineno: int
    source: str
    line: str
    message: str


@dataclass
class CacheStats:
    allocs: int = 0
    frees: int = 0
    bytes_req: int = 0
    bytes_alloc: int = 0


@dataclass
class TraceReport:
    """Everything the replay found; ``ok`` when there is no violation."""

    violations: list[TraceViolation] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    malformed: list[tuple[str, int, str]] = field(default_factory=list)
    malformed_total: int = 0
    unknown_frees: int = 0
    not_checked: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    layouts: dict[str, str] = field(default_factory=dict)
    lines: int = 0
    counters: Counter[str] = field(default_factory=Counter)
    live_objects: int = 0
    live_object_bytes: int = 0
    live_pages: int = 0
    live_page_blocks: int = 0
    live_vmalloc: int = 0
    live_vmalloc_bytes: int = 0
    caches: dict[str, CacheStats] = field(default_factory=dict)
    call_sites: dict[str, CacheStats] = field(default_factory=dict)
    page_orders: Counter[int] = field(default_factory=Counter)
    nodes_requested: Counter[int] = field(default_factory=Counter)
    cross_node: Counter[str] = field(default_factory=Counter)  # "requested->got"
    first_ts: float | None = None
    last_ts: float | None = None
    page_offset: int | None = None
    page_offset_how: str = ""
    hashed_pointers: bool = False
    rules_checked: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def duration(self) -> float:
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        return max(self.last_ts - self.first_ts, 0.0)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``kmemspec check-trace --json``)."""
        return {
            "ok": self.ok,
            "sources": self.sources,
            "lines": self.lines,
            "events": dict(self.events),
            "violations": [v.__dict__ for v in self.violations],
            "malformed_total": self.malformed_total,
            "malformed": [{"source": s, "lineno": n, "message": m} for s, n, m in self.malformed],
            "unknown_frees": self.unknown_frees,
            "not_checked": self.not_checked,
            "notes": self.notes,
            "layouts": self.layouts,
            "counters": dict(self.counters),
            "rules_checked": dict(self.rules_checked),
            "live": {"objects": self.live_objects, "object_bytes": self.live_object_bytes,
                     "pages": self.live_pages, "page_blocks": self.live_page_blocks,
                     "vmalloc_areas": self.live_vmalloc,
                     "vmalloc_bytes": self.live_vmalloc_bytes},
            "caches": {k: v.__dict__ for k, v in self.caches.items()},
            "call_sites": {k: v.__dict__ for k, v in self.call_sites.items()},
            "page_orders": {str(k): v for k, v in sorted(self.page_orders.items())},
            "nodes_requested": {str(k): v for k, v in sorted(self.nodes_requested.items())},
            "node_requests_by_page_node": dict(self.cross_node),
            "first_ts": self.first_ts, "last_ts": self.last_ts, "duration_s": self.duration,
            "page_offset": None if self.page_offset is None else hex(self.page_offset),
            "page_offset_how": self.page_offset_how,
            "hashed_pointers": self.hashed_pointers,
        }


def trace_gfp(text: str, unknown: set[str]) -> int:
    """A printed gfp_flags value as a mask: spec.gfp.parse_gfp, tolerant of names of other
    kernels (``__GFP_ATOMIC`` until 6.2, which neither sleeps nor picks a migratetype: it
    counts as 0; other unknown names are remembered in ``unknown`` and count as 0)."""
    try:
        return parse_gfp(text, validate=False)
    except GfpError:
        pass
    g = 0
    for tok in text.split("|"):
        if tok in GFP_NAMES:
            g |= GFP_NAMES[tok]
        elif tok.startswith("0x"):
            try:
                g |= int(tok, 16)
            except ValueError:
                unknown.add(tok)
        elif tok != "__GFP_ATOMIC":
            unknown.add(tok)
    return g


def expected_kmalloc_bytes(req: int) -> int:
    """bytes_alloc of kmalloc(req): the size class (include/linux/slab.h) or, above
    KMALLOC_MAX_CACHE_SIZE, PAGE_SIZE << get_order(req) (mm/slub.c __kmalloc_large_node)."""
    if req <= KMALLOC_MAX_CACHE_SIZE:
        return kmalloc_class_spec(req)
    return PAGE_SIZE << kmalloc_large_order_spec(req)


def kmalloc_cache_name(alloc: int, gfp: int) -> str:
    """The kmalloc cache a request went to: type by kmalloc_type() (include/linux/slab.h:
    __GFP_DMA, then __GFP_RECLAIMABLE, then __GFP_ACCOUNT), size by its short name."""
    if alloc > KMALLOC_MAX_CACHE_SIZE:
        return "kmalloc-large (pages)"
    sz = f"{alloc // 1024}k" if alloc >= 1024 else str(alloc)
    if gfp & __GFP_DMA:
        return f"dma-kmalloc-{sz}"
    if gfp & __GFP_RECLAIMABLE:
        return f"kmalloc-rcl-{sz}"
    if gfp & __GFP_ACCOUNT:
        return f"kmalloc-cg-{sz}"
    return f"kmalloc-{sz}"


def _buddy_pieces(start: int, border: int, pfn: int, order: int) -> list[tuple[int, int]]:
    """The aligned blocks that remain of block (start, border) when the aligned sub-block
    (pfn, order) leaves it: the buddies on the path from the sub-block up (split_page)."""
    out = []
    for j in range(order, border):
        base = (pfn >> j) << j
        out.append((base ^ (1 << j), j))
    assert all(start <= p < start + (1 << border) for p, _ in out)
    return out


class PfnSet:
    """The pfns the trace shows free (freed and not allocated since): one 512-bit int per
    chunk of 512 pfns, so adding, clearing and testing a block are a few int operations
    whatever its size; ``lines`` keeps the line of each free by its first pfn (messages)."""

    __slots__ = ("bm", "lines")

    def __init__(self) -> None:
        self.bm: dict[int, int] = {}
        self.lines: dict[int, int] = {}

    @staticmethod
    def _masks(lo: int, hi: int) -> Iterator[tuple[int, int]]:
        while lo < hi:
            c = lo >> 9
            top = min(hi, (c + 1) << 9)
            yield c, ((1 << (top - lo)) - 1) << (lo & 511)
            lo = top

    def add(self, lo: int, hi: int, lineno: int) -> None:
        bm = self.bm
        c = lo >> 9
        if (hi - 1) >> 9 == c:  # one chunk: every aligned block up to order 9
            bm[c] = bm.get(c, 0) | ((1 << (hi - lo)) - 1) << (lo & 511)
        else:
            for c, m in self._masks(lo, hi):
                bm[c] = bm.get(c, 0) | m
        self.lines[lo] = lineno

    def discard(self, lo: int, hi: int) -> None:
        bm = self.bm
        c = lo >> 9
        if (hi - 1) >> 9 == c:
            v = bm.get(c)
            if v is not None:
                nv = v & ~(((1 << (hi - lo)) - 1) << (lo & 511))
                if nv:
                    bm[c] = nv
                else:
                    del bm[c]
            self.lines.pop(lo, None)
            return
        for c, m in self._masks(lo, hi):
            v = bm.get(c)
            if v is not None:
                nv = v & ~m
                if nv:
                    bm[c] = nv
                else:
                    del bm[c]
        self.lines.pop(lo, None)

    def first(self, lo: int, hi: int) -> int | None:
        """The first free pfn in [lo, hi), or None."""
        bm = self.bm
        c = lo >> 9
        if (hi - 1) >> 9 == c:
            hit = bm.get(c, 0) & ((1 << (hi - lo)) - 1) << (lo & 511)
            return (c << 9) + (hit & -hit).bit_length() - 1 if hit else None
        for c, m in self._masks(lo, hi):
            hit = bm.get(c, 0) & m
            if hit:
                return (c << 9) + (hit & -hit).bit_length() - 1
        return None

    def __contains__(self, pfn: int) -> bool:
        return bool(self.bm.get(pfn >> 9, 0) & BITS[pfn & 511])

    def __bool__(self) -> bool:
        return bool(self.bm)

    def line_of(self, pfn: int) -> str:
        """The line that freed ``pfn``'s block, when it started there."""
        n = self.lines.get(pfn)
        return f"line {n}" if n is not None else "an earlier line"


class _Layout:
    """How to read the needed fields of one event with one token count: ``fields`` has
    (token index or -1, prefix length, base) per NEEDED field; ``get`` picks the hot path's
    tokens in one call, which ``fast`` (objects) and ``fast_page`` allow: every field it
    reads is there, with its plain ``key=`` prefix, in the base it assumes."""

    __slots__ = ("code", "fast", "fast_page", "ffree", "fields", "get", "has_name",
                 "has_node", "ntok", "version")

    def __init__(self, code: int, ntok: int, fields: tuple[tuple[int, int, int], ...],
                 version: str) -> None:
        self.code = code
        self.ntok = ntok
        self.fields = fields
        self.version = version
        names = NEEDED[code]
        # the hot path slices constant prefixes ("ptr=" is 4 characters, ...)
        plain = all(i < 0 or p == len(n) + 1 for (i, p, _b), n in zip(fields, names,
                                                                         strict=False))
        self.has_node = len(fields) > 5 and fields[5][0] >= 0
        self.has_name = bool(fields) and fields[-1][0] >= 0 and names[-1] == "name"
        pi = fields[0][0]
        if code == _OBJ_ALLOC:
            self.fast = (plain and all(fields[j][0] >= 0 for j in range(5))
                         and fields[0][2] == 16 and fields[1][2] == 10 and fields[2][2] == 10)
            idx = [fields[j][0] for j in range(5)] + [
                fields[5][0] if self.has_node else pi, fields[6][0] if self.has_name else pi]
        elif code in (_KFREE, _KCFREE):
            self.fast = plain and pi >= 0 and fields[0][2] == 16
            idx = [pi, fields[-1][0] if self.has_name else pi]
        else:
            self.fast = False
            idx = [0, 0]
        self.get = operator.itemgetter(*idx)
        # object frees the loop reads without splitting: one token, then ptr last (1) or
        # ptr then the name last (2)
        self.ffree = 0
        if self.fast and code in (_KFREE, _KCFREE) and pi == 1:
            if ntok == 2 and not self.has_name:
                self.ffree = 1
            elif ntok == 3 and self.has_name and fields[-1][0] == 2:
                self.ffree = 2
        # page events with every field there, plain and in the base the loop assumes:
        # 1 = mm_page_free (pfn, order), 2 = mm_page_alloc (pfn, order, migratetype,
        # gfp_flags, page), 3 = mm_page_free_batched (pfn)
        self.fast_page = 0
        want = PAGE_FAST_BASES.get(code)
        if want is not None and plain and all(i >= 0 for i, _p, _b in fields) and \
                tuple(b for _i, _p, b in fields) == want:
            self.fast_page = {_PG_FREE: 1, _PG_ALLOC: 2, _PG_BATCH: 3}[code]
            self.get = operator.itemgetter(*(i for i, _p, _b in fields))


class Replay:
    """The replay state: live pages, objects and vmap areas, the sets the trace shows free,
    and the statistics. Feed it lines with :meth:`run`; read :attr:`report`."""

    def __init__(self, *, formats: FormatSet | None = None, page_offset: int | None = None,
                 reorder_window: float = DEFAULT_REORDER_WINDOW, strict: bool = False,
                 recorder: Any = None,
                 node_ranges: Sequence[tuple[int, int, int]] = ()) -> None:
        self.report = TraceReport()
        self.node_ranges = sorted(node_ranges)
        self.node_starts = [s for s, _e, _n in self.node_ranges]
        self.formats = formats
        self.builtin = builtin_templates()
        self.reorder_window = reorder_window
        self.strict = strict
        self.recorder = recorder
        self.pages = BitmapLiveMap(0)  # live page blocks: pfn ranges
        self.free_pages = PfnSet()     # pfns shown freed, not reallocated since
        self.objects = BitmapLiveMap(3, OBJECT_CHUNK_BITS)  # live objects: 8-byte granules
        # freed objects: the line of the free, negated for an object of a kmem_cache (not a
        # kmalloc cache: see obj_free_rare), an int rather than a tuple (one per free). An
        # allocation leaves its address's entry in place (a dict delete per allocation costs
        # more than the rest of its checks): the entry of a live object is that of its
        # previous life, read only once the object is gone, and every path that makes an
        # object go without a free event drops it (forget_object)
        self.free_objects: dict[int, int] = {}
        self.vmap = LiveMap()         # live vmap areas
        self.vmap_lazy = LiveMap()    # freed lazily, not yet purged
        self.hashed: bool | None = None
        self.page_offset = page_offset
        self.page_offset_given = page_offset is not None
        self.voting = True  # objects that follow their page still tell the base (or check it)
        self.base_votes: Counter[int] = Counter()
        self.base_disagree = 0
        self.gfp_memo: dict[str, tuple[int, bool, int]] = {}
        self.unknown_gfp: set[str] = set()
        self.atomic_memo: dict[str, bool] = {}
        self.class_memo: dict[int, int] = {}
        self.name_memo: dict[tuple[int, str], str] = {}
        self.cache_names: dict[str, set[str]] = {}
        self.last_page_alloc: dict[str, tuple[int, int, int, Any]] = {}
        self.last_large: dict[str, tuple[int, int]] = {}
        self.pending: list[tuple[float, int, str, object, TraceViolation]] = []
        self.pending_keys: dict[tuple[str, int], tuple[float, str, TraceViolation]] = {}
        self.unknown_events: dict[str, tuple[str, int]] = {}
        self.layout_cache: dict[tuple[str, int], _Layout | None] = {}
        # (cache name or None, bytes_req, bytes_alloc, call site) -> [allocs, frees,
        # bytes_req, bytes_alloc, cache key, call site]
        self.stats: dict[tuple[str | None, int, int, str], list[Any]] = {}
        # kmalloc.size_class, sleep.atomic, object.overlap, object.in_free_page,
        # object.double_free: counted in a list on the hot path
        self.fast_rules = [0, 0, 0, 0, 0, 0]
        # page.align and page.overlap, page.migratetype, sleep.atomic, page.double_free
        self.page_rules = [0, 0, 0, 0]
        self.page_order_counts: dict[int, int] = {}
        # allocation line text without its ptr (columns 25-36, the event, the text before
        # " ptr=", the text after the ptr value) -> [bytes_req, bytes_alloc, gfp_flags,
        # sleep.atomic broken (may sleep, when the CPU is None), statistics row, is kmalloc,
        # alignment mask, events since the last fold, event, CPU (None: not in ftrace's
        # fixed columns), granule mask of an 8-byte aligned object (0: none: the general
        # code), its granules]
        self.alloc_memo: dict[tuple[str, str, str, str], list[Any]] = {}
        self.hot = [0, 0]  # allocations and kmallocs judged on the hot path
        self.event_counts: dict[str, int] = {}
        self.evmap: dict[str, _Layout] = {}
        self.evmap_changes = 0  # layouts learnt: the shortcuts depend on them
        self.shortcuts_for: tuple[object, ...] = ()  # what the last _shortcuts result holds for
        self.shortcuts_last: dict[str, int] = {}
        self.align_memo: dict[int, int] = {}
        self.last_line = ""
        self.lineno = 0
        self.cur_source = ""
        self.lost_at: list[str] = []
        self.base_needed_objects = 0

    # --- reporting helpers -------------------------------------------------------------------

    def malformed(self, lineno: int, message: str) -> None:
        r = self.report
        r.malformed_total += 1
        if len(r.malformed) < MAX_MALFORMED_KEPT:
            r.malformed.append((self.cur_source, lineno, message))

    def violation(self, rule: str, lineno: int, line: str, message: str) -> TraceViolation:
        v = TraceViolation(rule, lineno, self.cur_source, line.rstrip("\n"), message)
        self.report.violations.append(v)
        return v

    def defer(self, key: tuple[str, int], ts: float, cpu: str, v: TraceViolation) -> None:
        """Hold a violation that a reordered event from another CPU could still explain."""
        self.report.violations.remove(v)
        self.pending_keys[key] = (ts, cpu, v)
        heapq.heappush(self.pending, (ts + self.reorder_window, id(v), key[0], key[1], v))

    def resolve(self, key: tuple[str, int], ts: float, cpu: str) -> bool:
        """True if a pending violation at ``key`` is explained by this event of another CPU
        within the window: the violation is dropped."""
        p = self.pending_keys.get(key)
        if p is None:
            return False
        pts, pcpu, _v = p
        if pcpu != cpu and ts - pts <= self.reorder_window:
            del self.pending_keys[key]
            self.report.counters["reordered_across_cpus"] += 1
            return True
        return False

    def flush_pending(self, now: float | None) -> None:
        """Report the held violations whose window has passed (all, when ``now`` is None)."""
        pend = self.pending
        while pend and (now is None or pend[0][0] < now):
            _dl, _id, kind, k, v = heapq.heappop(pend)
            key = (kind, int(k))  # type: ignore[call-overload]
            p = self.pending_keys.get(key)
            if p is not None and p[2] is v:
                del self.pending_keys[key]
                self.report.violations.append(v)

    def forget(self, lineno: int, why: str) -> None:
        """Lost events: what was live or free before can no longer be known."""
        self.flush_pending(None)
        self.pages = BitmapLiveMap(0)
        self.free_pages = PfnSet()
        self.objects = BitmapLiveMap(0 if self.hashed else 3, OBJECT_CHUNK_BITS)
        self.free_objects = {}
        self.vmap = LiveMap()
        self.vmap_lazy = LiveMap()
        self.last_page_alloc.clear()
        self.last_large.clear()
        self.report.counters["state_resets"] += 1
        self.lost_at.append(f"{self.cur_source}:{lineno} ({why})")

    # --- layouts -------------------------------------------------------------------------------

    def layout(self, code: int, event: str, toks: list[str]) -> _Layout | None:
        """Learn how to read ``event`` lines with this many tokens: by the format file's keys
        when its token count matches, else by the keys the line shows."""
        key = (event, len(toks))
        if key in self.layout_cache:
            return self.layout_cache[key]
        keys: list[str] = []
        prefix: list[int] = []
        carry = ""
        for t in toks:
            if carry:
                keys.append(carry)
                prefix.append(0)
                carry = ""
            elif "=" in t:
                k = t[:t.index("=")]
                keys.append(k)
                prefix.append(len(k) + 1)
            elif t.endswith(":"):
                keys.append("")
                prefix.append(0)
                carry = t[:-1]
            else:  # a call site's " [module]" or another continuation
                keys.append("")
                prefix.append(0)
        tmpl: Template | None = None
        version = ""
        fm = self.formats.templates.get(event) if self.formats else None
        if fm is not None:
            tmpl = fm
            version = "format file"
            if fm.ntokens == len(toks):
                keys = [k for k in fm.keys]
                prefix = [len(k) + 1 if k and "=" in toks[i] else 0 for i, k in enumerate(keys)]
        builtin = self.builtin.get(event, [])
        if not version:
            shown = tuple(k for k in keys if k)
            for bt in builtin:
                if tuple(k for k in bt.keys if k) == shown:
                    tmpl, version = bt, f"Linux {bt.version}+ (built-in)"
                    break
            else:
                version = "keys as printed: " + " ".join(shown)
        out = []
        for name in NEEDED[code]:
            if name in keys:
                i = keys.index(name)
                base = 0 if name in STR_FIELDS else self._base(event, name, tmpl)
                out.append((i, prefix[i], base))
            else:
                out.append((-1, 0, 0))
        lay = _Layout(code, len(toks), tuple(out), version)
        if code == _OBJ_ALLOC and out[0][0] < 0:
            lay = None  # type: ignore[assignment]
        self.layout_cache[key] = lay
        prev = self.report.layouts.get(event)
        if lay is not None and (prev is None or version not in prev):
            self.report.layouts[event] = version if prev is None else f"{prev}; {version}"
        return lay

    def _base(self, event: str, name: str, tmpl: Template | None) -> int:
        for t in ([tmpl] if tmpl else []) + self.builtin.get(event, []):
            if name in t.keys:
                b = t.bases[t.keys.index(name)]
                if b:
                    return b
        return 16 if name in HEX_KEYS else 10

    # --- the replay ------------------------------------------------------------------------------

    def run(self, lines: Iterable[str], source: str, first_lineno: int = 1) -> None:
        """Replay the lines of one source (or of merged sources: see :func:`check_trace`).

        The hot path (kmalloc, kmem_cache_alloc, kfree, kmem_cache_free, mm_page_alloc,
        mm_page_free, mm_page_free_batched in a known layout) is inlined in :meth:`_loop` with
        local variables: about 3 us per event is the whole budget. The shortcuts, chosen per
        event name by :meth:`_shortcuts`: an allocation whose text (all but its ptr) was seen
        before takes its memo record (rule verdicts, statistics row, granule mask; its counts
        are added up once, in fold_memo); an object free whose ptr (and name) end the line is
        read without splitting it, and a live object's bits, row and free record are updated
        in place; a page allocation that breaks no rule and the free of a live block of its
        own order (at most 512 pages) update the page maps in place; a batched free of a page
        already free is counted. Anything unusual (a conflict, a pending reorder, a layout
        without some field, a line that does not match, a rule broken) goes to the general
        code and the methods below, which hold the complete rules. An exception from the
        stream (a truncated compressed file) ends the loop; what was read is accounted
        first."""
        self.cur_source = source
        self.lineno = first_lineno - 1
        try:
            self._loop(lines)
        finally:
            r = self.report
            r.lines += self.lineno - first_lineno + 1
            ec = self.event_counts
            for ev, n in ec.items():
                if n:
                    r.events[ev] += n
                    ec[ev] = 0  # the key stays: the memo path counts with ec[ev] += 1
            h = self.hot
            fr = self.fast_rules
            fr[0] += h[1]  # kmalloc.size_class
            fr[5] += h[1]  # kmalloc.align
            fr[1] += h[0]  # sleep.atomic (the hot path needs the flags column)
            fr[2] += h[0]  # object.overlap
            h[0] = h[1] = 0
            if self.last_line:
                ln = self.last_line
                ts = self.ts(ln, ln.find(": "))
                r.last_ts = ts if r.last_ts is None else max(r.last_ts, ts)

    def _hot_state(self, started: bool) -> tuple[
            BitmapLiveMap, dict[int, int], dict[int, tuple[int, object]],
            dict[int, int], bool, dict[int, int], int | None, bool, dict[str, int],
            dict[int, tuple[int, object]], dict[int, int], dict[int, int]]:
        """What the hot loop keeps in locals, read again after a method that may replace it
        (a lost-events reset, the first pointer telling hashed from raw, the base inferred,
        a new layout), and the events it reads by a shortcut now (:meth:`_shortcuts`)."""
        objs = self.objects
        oiv, obm = objs.raw()
        piv, pbm = self.pages.raw()
        return (objs, self.free_objects, oiv, obm, objs.granule_shift == 3,
                self.free_pages.bm, self.page_offset, self.voting, self._shortcuts(started),
                piv, pbm, self.free_pages.lines)

    def _shortcuts(self, started: bool) -> dict[str, int]:
        """Event name -> the loop's shortcut for it: 1 = an allocation whose text may have a
        memo record (not for hashed pointers, plots, or node= statistics: the methods handle
        those); 2 / 3 = an object free in a layout whose ptr (2), or ptr then name (3), end
        the line (8-byte granules, no plots, after the first event); 5 / 6 / 7 =
        mm_page_free / mm_page_alloc / mm_page_free_batched in the layouts of PAGE_SHORTCUTS
        (no plots, after the first event)."""
        key = (started, self.hashed, self.objects.granule_shift, self.evmap_changes)
        if key == self.shortcuts_for:  # (the general path asks after every method it calls)
            return self.shortcuts_last
        out: dict[str, int] = {}
        if self.recorder is None and self.hashed is False and not self.node_ranges:
            out.update(dict.fromkeys(ALLOC_EVENTS, 1))
        if started and self.recorder is None and self.objects.granule_shift == 3:
            for ev in FREE_EVENTS:
                lay = self.evmap.get(ev)
                if lay is not None and lay.ffree:
                    out[ev] = 1 + lay.ffree
        if started and self.recorder is None:
            for ev, (kind, ntok, fields) in PAGE_SHORTCUTS.items():
                lay = self.evmap.get(ev)
                if lay is not None and lay.ntok == ntok and lay.fields == fields:
                    out[ev] = kind
        self.shortcuts_for, self.shortcuts_last = key, out
        return out

    def _loop(self, lines: Iterable[str]) -> None:
        events = self.event_counts
        evmap = self.evmap
        gfp_memo = self.gfp_memo
        atomic_memo = self.atomic_memo
        class_memo = self.class_memo
        align_memo = self.align_memo
        name_memo = self.name_memo
        stats = self.stats
        lpa = self.last_page_alloc
        pending = self.pending
        pending_keys = self.pending_keys
        violation = self.violation
        hot_state = self._hot_state
        obj_free_live = self.obj_free_live
        lineno = self.lineno
        kmax = KMALLOC_MAX_CACHE_SIZE
        bits = BITS
        amemo = self.alloc_memo
        cb = OBJECT_CHUNK_BITS
        cm = (1 << cb) - 1
        csize = 1 << cb  # granules per chunk
        csh = 3 + cb  # address -> chunk
        fast_ok = self.recorder is None  # plots need every object event: the methods
        # the memo path judges only what it recorded: off when node= names a node (cross-node
        # statistics), and for hashed pointers and plots (the methods handle those)
        started = bool(self.last_line)
        objs, fo, oiv, obm, g3, fpbm, base, voting, fast, piv, pbm, fpl = \
            hot_state(started)
        obj_alloc_code, kcfree_code, page_shift = _OBJ_ALLOC, _KCFREE, PAGE_SHIFT
        # rule counts of the hot path, kept in locals and added up at the end
        n_alloc = n_kmalloc = n_in_page = n_base_needed = 0
        n_palloc = n_pfree = n_batched = 0  # page shortcuts: allocations, frees, batched
        po = self.page_order_counts
        psz, psz1, psz2 = PAGE_SIZE, PAGE_SIZE - 1, 2 * PAGE_SIZE
        pmasks = PAGE_MASKS
        pgmasks = PAGE_GRANULE_MASKS
        line = ""
        try:
            for line in lines:
                lineno += 1
                # "<prefix ending in the timestamp>: <event>: <body>": one split at the
                # first two ": " is the cheapest cut; k (the first ": ") is len(head),
                # computed where a method needs it
                try:
                    head, ev, body = line.split(": ", 2)
                except ValueError:  # fewer than two ": "
                    if ": " in line and line[0] != "#":
                        self.malformed(lineno, f"no event name after the timestamp: "
                                               f"{line[:80]!r}")
                    else:  # a header, a marker, a blank or binary line
                        self.special(line, lineno)
                        objs, fo, oiv, obm, g3, fpbm, base, voting, fast, piv, pbm, fpl = \
                            hot_state(started)
                    continue
                if line[0] == "#":  # a comment line with two ": "
                    self.special(line, lineno)
                    objs, fo, oiv, obm, g3, fpbm, base, voting, fast, piv, pbm, fpl = \
                        hot_state(started)
                    continue
                fk = fast.get(ev)
                if fk == 1:
                    # an allocation line is its ptr plus text that repeats (CPU and irq
                    # flags columns, call site, sizes, gfp flags): what follows from that text
                    # is computed once (a memo record: see the general path below)
                    before, sep, after = body.partition(" ptr=")
                    ptr_s, sep2, rest = after.partition(" ")
                    if sep2:
                        mkey = (line[25:37], ev, before, rest)
                        rec = amemo.get(mkey)
                        if rec is not None and not pending:
                            try:
                                ptr = int(ptr_s, 16)
                            except ValueError:
                                ptr = 0  # the general code says why
                            if ptr:  # (0: a failed allocation, counted by the methods)
                                rec[9] += 1  # the event, its row, its rule counts: fold_memo
                                (req, alloc, size, st, amask, gmask, lim, cpu, special, _n, _e,
                                 _k, _s, _g) = rec
                                if special:  # sleep.atomic, kmalloc.size_class, trace-cmd
                                    cpu = self.memo_verdicts(rec, line, len(head), lineno)
                                if amask and ptr & amask:  # kmalloc.align (0: kmem_cache)
                                    violation("kmalloc.align", lineno, line,
                                              f"kmalloc({req}) object {ptr:#x} of {alloc} "
                                              f"bytes is not aligned as kmalloc() guarantees")
                                if voting and lpa:
                                    lp = lpa.pop(cpu, None)
                                    if lp is not None:
                                        self.vote_base(ptr, lp, False)
                                        base, voting = self.page_offset, self.voting
                                end = ptr + size
                                # BitmapLiveMap.add, inlined: an 8-byte aligned object inside
                                # one chunk (lim: the last granule offset where it fits, -1:
                                # never) sets the record's granule mask shifted to its offset;
                                # the tag keeps that mask for the free
                                gr = ptr >> 3
                                off = gr & cm
                                if off <= lim and not ptr & 7:
                                    m = gmask << off
                                    tag = (lineno, req, alloc, st, cpu, m)
                                    c = gr >> cb
                                    old = obm.get(c, 0)
                                    if old & m:
                                        self.obj_conflict(ptr, end, alloc, tag, line, len(head),
                                                          lineno, cpu)
                                    else:
                                        obm[c] = old | m
                                        oiv[ptr] = (end, tag)
                                else:
                                    tag = (lineno, req, alloc, st, cpu, 0)
                                    if objs.add(ptr, end, tag) is not None:
                                        self.obj_conflict(ptr, end, alloc, tag, line, len(head),
                                                          lineno, cpu)
                                if pending_keys and ("of", ptr) in pending_keys and \
                                        fo.pop(ptr, None) is not None:
                                    self.obj_alloc_after_refree(ptr, end, tag, line, len(head),
                                                                cpu)
                                if base is not None:
                                    n_in_page += 1
                                    if fpbm:  # is its page (or one of its pages) free?
                                        d = ptr - base
                                        q = d >> page_shift
                                        o = (d & psz1) + size  # > PAGE_SIZE: a second page
                                        if fpbm.get(q >> 9, 0) & bits[q & 511] or (
                                                o > psz and (o > psz2 or fpbm.get(
                                                    (q + 1) >> 9, 0) & bits[(q + 1) & 511])):
                                            self.in_free_page(ptr, end, line, lineno)
                                else:
                                    n_base_needed += 1
                                continue
                elif fk is None or pending:
                    pass  # the general path
                elif fk < 4:
                    # kfree / kmem_cache_free: "call_site=X ptr=P" (2) or "... ptr=P name=N"
                    # (3) in the layout last seen (other tokens: the general path)
                    if fk == 2:
                        before, sep, ptr_s = body.partition(" ptr=")
                        m_t = ""
                        ok = " " not in ptr_s
                    else:
                        before, sep, after = body.partition(" ptr=")
                        ptr_s, sep2, m_t = after.partition(" ")
                        ok = bool(sep2) and " " not in m_t
                    if ok and sep and " " not in before:
                        try:
                            ptr = int(ptr_s, 16)
                        except ValueError:
                            pass  # the general path says why
                        else:
                            events[ev] += 1
                            v = oiv.pop(ptr, None)
                            if v is None:
                                self.obj_free_rare(ev, ptr, line, len(head), lineno)
                                continue
                            ftag: Any = v[1]
                            m = ftag[5]
                            st = ftag[3]
                            if m and st[6] == m_t:
                                # obj_free_live's common case, inlined: one chunk's bits, the
                                # row's frees, the free record (and the name seen before)
                                c = ptr >> csh
                                nv = obm[c] ^ m
                                if nv:
                                    obm[c] = nv
                                else:
                                    del obm[c]
                                st[1] += 1
                                fo[ptr] = lineno * st[8]
                            else:
                                obj_free_live(ptr, v, lineno, m_t)
                            continue
                elif fk == 5:
                    # mm_page_free "page=P pfn=N order=O" of the live, aligned block allocated
                    # at pfn with that order (at most 512 pages: one chunk): page_free and
                    # add_free, inlined; anything else: the methods
                    toks = body.split()
                    if len(toks) == 3:
                        try:
                            pfn = int(toks[1][4:], 16)
                            order = int(toks[2][6:])
                        except ValueError:
                            order = -1
                        if 0 <= order <= 9:
                            n = 1 << order
                            end = pfn + n
                            lv = piv.get(pfn)
                            if lv is not None and lv[0] == end and block_aligned(pfn, order):
                                events[ev] += 1
                                n_pfree += 1
                                del piv[pfn]  # BitmapLiveMap.remove
                                c = pfn >> 9
                                pm = pmasks[order] << (pfn & 511)
                                nv = pbm[c] & ~pm
                                if nv:
                                    pbm[c] = nv
                                else:
                                    del pbm[c]
                                fpbm[c] = fpbm.get(c, 0) | pm  # PfnSet.add
                                fpl[pfn] = lineno
                                if base is not None and g3 and oiv:  # objects left in it?
                                    g0 = (base + (pfn << page_shift)) >> 3
                                    if (g0 & cm) + (n << 9) <= csize:
                                        if obm.get(g0 >> cb, 0) & pgmasks[order] << (g0 & cm):
                                            self.objects_freed_with(pfn, end)
                                    else:
                                        self.objects_freed_with(pfn, end)
                                continue
                elif fk == 6:
                    # mm_page_alloc "page=P pfn=N order=O migratetype=M gfp_flags=G" in
                    # ftrace's fixed columns, of an aligned block of at most 512 pages that
                    # breaks no rule: page_alloc, inlined; anything else: page_alloc
                    toks = body.split()
                    if len(toks) == 5 and len(head) > 36 and line[29] == "]" and \
                            line[25] == "[" and line[36] == " " and line[31] != " ":
                        try:
                            pfn = int(toks[1][4:], 16)
                            order = int(toks[2][6:])
                            mt = int(toks[3][12:])
                            int(toks[0][5:], 16)  # page= (the general path reads it too)
                        except ValueError:
                            pfn = 0
                        if pfn and 0 <= order <= 9 and block_aligned(pfn, order):
                            gfp_s = toks[4][10:]
                            g = gfp_memo.get(gfp_s)
                            if g is None:
                                g = self.gfp_entry(gfp_s)
                            flags = line[31:36]
                            a = atomic_memo.get(flags)
                            if a is None:
                                a = self.atomic(flags)
                            if mt == g[2] and not (a and g[1]):
                                events[ev] += 1
                                n_palloc += 1
                                po[order] = po.get(order, 0) + 1
                                cpu = line[26:29]
                                c = pfn >> 9
                                pm = pmasks[order] << (pfn & 511)
                                if fpbm:  # PfnSet.discard: no longer free
                                    fv = fpbm.get(c)
                                    if fv is not None:
                                        nv = fv & ~pm
                                        if nv:
                                            fpbm[c] = nv
                                        else:
                                            del fpbm[c]
                                    fpl.pop(pfn, None)
                                ptag = (lineno, order, cpu)
                                old = pbm.get(c, 0)  # BitmapLiveMap.add
                                if old & pm:
                                    self.page_overlap(pfn, order, ptag, line, len(head), lineno)
                                else:
                                    pbm[c] = old | pm
                                    piv[pfn] = (pfn + (1 << order), ptag)
                                lpa[cpu] = (pfn, order, lineno, g[0])
                                continue
                else:
                    # mm_page_free_batched "page=P pfn=N order=0" of a page the trace shows
                    # free: the same free again (page_batched); anything else: page_batched
                    toks = body.split()
                    if len(toks) == 3:
                        try:
                            pfn = int(toks[1][4:], 16)
                        except ValueError:
                            pfn = -1
                        if pfn >= 0:
                            events[ev] += 1
                            if fpbm.get(pfn >> 9, 0) & bits[pfn & 511]:
                                n_batched += 1
                            else:
                                self.page_batched(pfn, line, len(head), lineno)
                            continue
                k = len(head)
                toks = body.split()
                lay = evmap.get(ev)
                if lay is None or lay.ntok != len(toks):
                    lay = self.layout_for(ev, toks, line, lineno, k)
                    fast = self._shortcuts(started)  # the layout of a free may be new
                    if lay is None:
                        continue
                events[ev] += 1  # the key was made by layout_for
                if not started:
                    started = True
                    self.first_event(line, k)
                    fast = self._shortcuts(started)
                if pending:
                    self.flush_pending(self.ts(line, k))
                code = lay.code
                if lay.fast and fast_ok:
                    # the hot path: objects in a 6.1+ layout
                    try:
                        if code == obj_alloc_code:
                            p_t, r_t, a_t, g_t, s_t, n_t, m_t = lay.get(toks)
                            ptr = int(p_t[4:], 16)
                            req = int(r_t[10:])
                            alloc = int(a_t[12:])
                            gfp_s = g_t[10:]
                            site = s_t[10:]
                            node_s = n_t[5:] if lay.has_node else "-1"
                            name = m_t[5:] if lay.has_name else None
                        else:
                            p_t, m_t = lay.get(toks)
                            ptr = int(p_t[4:], 16)
                    except ValueError:
                        if self.nil_retry(ev, line, lineno):  # trace-cmd's "(nil)"
                            objs, fo, oiv, obm, g3, fpbm, base, voting, fast, piv, pbm, fpl = \
                                hot_state(started)
                        else:
                            self.malformed(lineno, f"{ev}: a field is not a number: "
                                                   f"{body[:80]!r}")
                        continue
                    if code != obj_alloc_code:
                        if not g3 or (pending_keys and ("o", ptr) in pending_keys):
                            self.obj_free(ev, [ptr, None, m_t[5:] if lay.has_name else None],
                                          line, k, lineno)
                            continue
                        v = oiv.pop(ptr, None)
                        if v is not None:
                            obj_free_live(ptr, v, lineno,
                                          m_t if code == kcfree_code and lay.has_name else "")
                        else:
                            self.obj_free_rare(ev, ptr, line, k, lineno)
                        continue
                    if not ptr or self.hashed is not False or node_s != "-1":
                        self.obj_alloc(ev, [ptr, req, alloc, gfp_s, site, int(node_s), name],
                                       line, k, lineno)
                        objs, fo, oiv, obm, g3, fpbm, base, voting, fast, piv, pbm, fpl = \
                            hot_state(started)
                        continue
                    # cpu and flags: fixed columns of ftrace's "%16s-%-7d [%03d] %s " prefix
                    fixed = k > 36 and line[29] == "]" and line[25] == "[" and \
                        line[36] == " " and line[31] != " "
                    if fixed:
                        cpu = line[26:29]
                        flags = line[31:36]
                    else:
                        cpu, flags = self.cpu_flags(line, k)
                        if not flags:
                            self.obj_alloc(ev, [ptr, req, alloc, gfp_s, site, -1, name],
                                           line, k, lineno)
                            objs, fo, oiv, obm, g3, fpbm, base, voting, fast, piv, pbm, fpl = \
                                hot_state(started)
                            continue
                    g = gfp_memo.get(gfp_s)
                    if g is None:
                        g = self.gfp_entry(gfp_s)
                    if ev[1] == "m" and ev[2] == "a":  # kmalloc
                        if req > kmax:
                            self.obj_alloc(ev, [ptr, req, alloc, gfp_s, site, -1, name],
                                           line, k, lineno)
                            objs, fo, oiv, obm, g3, fpbm, base, voting, fast, piv, pbm, fpl = \
                                hot_state(started)
                            continue
                        exp = class_memo.get(req)
                        if exp is None:
                            exp = class_memo[req] = expected_kmalloc_bytes(req) if req > 0 else 0
                        n_kmalloc += 1
                        if alloc != exp:
                            violation("kmalloc.size_class", lineno, line,
                                      f"kmalloc({req}) reports bytes_alloc={alloc}, but the size "
                                      f"class of {req} bytes is {exp}")
                        amask = align_memo.get(alloc)
                        if amask is None:
                            amask = align_memo[alloc] = kmalloc_min_align(alloc) - 1
                        if ptr & amask:
                            violation("kmalloc.align", lineno, line,
                                      f"kmalloc({req}) object {ptr:#x} of {alloc} bytes is not "
                                      f"aligned as kmalloc() guarantees")
                        key = name_memo.get((alloc, gfp_s))
                        if key is None:
                            key = name_memo[(alloc, gfp_s)] = kmalloc_cache_name(alloc, g[0])
                    else:
                        key = name
                    n_alloc += 1
                    a = atomic_memo.get(flags)
                    if a is None:
                        a = self.atomic(flags)
                    if a and g[1]:
                        violation("sleep.atomic", lineno, line,
                                  f"{ev} with {gfp_s} (may sleep: __GFP_DIRECT_RECLAIM) in "
                                  f"atomic context (flags {flags})")
                    if lpa and voting:
                        lp = lpa.pop(cpu, None)
                        if lp is not None:
                            self.vote_base(ptr, lp, False)
                            base, voting = self.page_offset, self.voting
                    sk = (key, req, alloc, site)
                    st = stats.get(sk)
                    if st is None:
                        st = stats[sk] = self.new_stats(key, req, alloc, site)
                    if fk == 1 and sep2 and len(amemo) < MEMO_MAX and mkey not in amemo:
                        is_k = ev[1] == "m" and ev[2] == "a"
                        if is_k and alloc != exp and not st[7]:
                            st[7] = (f"kmalloc({req}) reports bytes_alloc={alloc}, but the "
                                     f"size class of {req} bytes is {exp}")
                        # fixed columns: the key holds the CPU and the flags, so the record
                        # holds the sleep.atomic verdict; else the memo path reads the flags
                        sleeps = bool(a and g[1]) if fixed else g[1]
                        ng = ((alloc or 1) + 7) >> 3  # granules of an 8-byte aligned object
                        gm = (1 << ng) - 1 if alloc <= kmax else 0
                        # [bytes_req, bytes_alloc, size, statistics row, alignment mask
                        # (kmalloc), granule mask, last offset it fits at in a chunk, CPU
                        # (None: not ftrace's fixed columns), anything for memo_verdicts, events
                        # since the last fold, event, is kmalloc, sleeps (may sleep when the
                        # CPU is None), gfp_flags]
                        amemo[mkey] = [req, alloc, alloc or 1, st, amask if is_k else 0, gm,
                                       csize - ng if gm else -1, cpu if fixed else None,
                                       not fixed or sleeps or bool(is_k and st[7]), 0, ev, is_k,
                                       sleeps, gfp_s]
                    st[0] += 1
                    st[2] += req
                    st[3] += alloc
                    end = ptr + (alloc or 1)
                    tag = (lineno, req, alloc, st, cpu, 0)
                    # BitmapLiveMap.add, inlined for one chunk
                    g0 = ptr >> 3
                    g1 = ((end - 1) >> 3) + 1
                    c = g0 >> cb
                    if (g1 - 1) >> cb == c:
                        m = ((1 << (g1 - g0)) - 1) << (g0 & cm)
                        old = obm.get(c, 0)
                        if old & m:
                            self.obj_conflict(ptr, end, alloc, tag, line, k, lineno, cpu)
                        else:
                            obm[c] = old | m
                            oiv[ptr] = (end, tag)
                    elif objs.add(ptr, end, tag) is not None:
                        self.obj_conflict(ptr, end, alloc, tag, line, k, lineno, cpu)
                    if pending_keys and ("of", ptr) in pending_keys and \
                            fo.pop(ptr, None) is not None:
                        self.obj_alloc_after_refree(ptr, end, tag, line, k, cpu)
                    if base is not None:
                        n_in_page += 1
                        if fpbm:
                            pfn = (ptr - base) >> page_shift
                            pfn2 = (end - 1 - base) >> page_shift
                            if fpbm.get(pfn >> 9, 0) & bits[pfn & 511] or (
                                    pfn2 != pfn and (pfn2 - pfn > 1 or fpbm.get(
                                        pfn2 >> 9, 0) & bits[pfn2 & 511])):
                                self.in_free_page(ptr, end, line, lineno)
                    else:
                        n_base_needed += 1
                    continue
                fp_kind = lay.fast_page
                if fp_kind:
                    # page events: the page methods replace no state the loop keeps in locals
                    pv: list[Any]
                    try:
                        if fp_kind == 2:
                            pfn_t, order_t, mt_t, gfp_t, page_t = lay.get(toks)
                            pv = [int(pfn_t[4:], 16), int(order_t[6:]), int(mt_t[12:]),
                                    gfp_t[10:], int(page_t[5:], 16)]
                        elif fp_kind == 1:
                            pfn_t, order_t = lay.get(toks)
                            pv = [int(pfn_t[4:], 16), int(order_t[6:])]
                        else:
                            pv = [int(lay.get(toks)[4:], 16)]
                    except ValueError:
                        if self.nil_retry(ev, line, lineno):  # trace-cmd's "(nil)"
                            objs, fo, oiv, obm, g3, fpbm, base, voting, fast, piv, pbm, fpl = \
                                hot_state(started)
                        else:
                            self.malformed(lineno, f"{ev}: a field is not a number: "
                                                   f"{body[:80]!r}")
                        continue
                    if fp_kind == 2:
                        self.page_alloc(pv, line, k, lineno)
                    elif fp_kind == 1:
                        self.page_free(pv[0], pv[1], line, k, lineno)
                    else:
                        self.page_batched(pv[0], line, k, lineno)
                    continue
                try:
                    vals = [None if i < 0 else (toks[i][p:] if not b else int(toks[i][p:], b))
                            for i, p, b in lay.fields]
                except (ValueError, IndexError):
                    if self.nil_retry(ev, line, lineno):  # trace-cmd's "(nil)"
                        objs, fo, oiv, obm, g3, fpbm, base, voting, fast, piv, pbm, fpl = \
                            hot_state(started)
                    else:
                        self.malformed(lineno, f"{ev}: a field is not a number: "
                                               f"{body[:80]!r}")
                    continue
                if code == _OBJ_ALLOC:
                    self.obj_alloc(ev, vals, line, k, lineno)
                elif code in (_KCFREE, _KFREE):
                    self.obj_free(ev, vals, line, k, lineno)
                elif code == _PG_ALLOC:
                    self.page_alloc(vals, line, k, lineno)
                elif code == _PG_FREE:
                    self.page_free(vals[0], vals[1], line, k, lineno)  # type: ignore[arg-type]
                elif code == _PG_BATCH:
                    self.page_batched(vals[0], line, k, lineno)  # type: ignore[arg-type]
                elif code == _PG_MOVE:
                    pass
                elif code == _VM_ALLOC:
                    self.vm_alloc(vals, line, k, lineno)
                elif code == _VM_FREE:
                    self.vm_free(vals[0], lineno)  # type: ignore[arg-type]
                else:
                    self.vm_purge(vals[0], vals[1])  # type: ignore[arg-type]
                objs, fo, oiv, obm, g3, fpbm, base, voting, fast, piv, pbm, fpl = \
                    hot_state(started)
        finally:
            pr = self.page_rules
            pr[0] += n_palloc  # page.align and page.overlap
            pr[1] += n_palloc  # page.migratetype
            pr[2] += n_palloc  # sleep.atomic
            pr[3] += n_pfree   # page.double_free
            if n_batched:
                self.report.counters["batched_after_free"] += n_batched
            self.hot[0] += n_alloc
            self.hot[1] += n_kmalloc
            self.fast_rules[3] += n_in_page
            self.base_needed_objects += n_base_needed
            self.lineno = lineno
            if started:
                self.last_line = line if line.find(": ") > 0 else self.last_line

    def nil_retry(self, ev: str, line: str, lineno: int) -> bool:
        """trace-cmd report (libtraceevent) prints a NULL ``%p`` as glibc's ``(nil)`` where the
        kernel prints 0000000000000000 (kfree(NULL), a failed allocation, a failed
        mm_page_alloc's page=): replay the line with 0 in its place. False (the caller says
        malformed) when the line has no ``=(nil)``."""
        if "=(nil)" not in line:
            return False
        self.event_counts[ev] -= 1  # counted again by the replay of the line
        self.lineno = lineno - 1
        self._loop((line.replace("=(nil)", "=0"),))
        return True

    def memo_verdicts(self, rec: list[Any], line: str, k: int, lineno: int) -> str:
        """The verdicts of a memo record (Replay._loop) beyond its alignment: sleep.atomic
        (held in the record with ftrace's fixed columns, read from the line's flags
        otherwise) and kmalloc.size_class; the CPU of the line."""
        ev, is_k, sleeps, gfp_s = rec[10:14]
        cpu: str | None = rec[7]
        if cpu is None:  # not ftrace's fixed columns (trace-cmd report)
            cpu, flags = self.cpu_flags(line, k)
            if sleeps and self.atomic(flags):
                self.violation("sleep.atomic", lineno, line,
                               f"{ev} with {gfp_s} (may sleep: __GFP_DIRECT_RECLAIM) in atomic "
                               f"context (flags {flags})")
        elif sleeps:  # a sleeping mask in the atomic context the key shows
            self.violation("sleep.atomic", lineno, line,
                           f"{ev} with {gfp_s} (may sleep: __GFP_DIRECT_RECLAIM) in atomic "
                           f"context (flags {line[31:36]})")
        if is_k and rec[3][7]:
            self.violation("kmalloc.size_class", lineno, line, rec[3][7])
        return cpu

    def layout_for(self, ev: str, toks: list[str], line: str, lineno: int, k: int
                   ) -> _Layout | None:
        """The layout of an event line whose event or token count was not seen last time;
        None (after saying why) for events that are not checked or fields not recognised."""
        code = EVENT_CODES.get(ev)
        if code is None:
            self.unknown_event(ev, line, lineno, k)
            return None
        lay = self.layout(code, ev, toks)
        if lay is None:
            self.event_counts[ev] = self.event_counts.get(ev, 0) + 1
            self.malformed(lineno, f"{ev}: fields not recognised: {' '.join(toks)[:80]!r}")
            return None
        self.evmap[ev] = lay
        self.evmap_changes += 1
        self.event_counts.setdefault(ev, 0)
        return lay

    @staticmethod
    def ts(line: str, k: int) -> float:
        try:
            return float(line[line.rfind(" ", 0, k) + 1:k])
        except ValueError:
            return 0.0

    @staticmethod
    def cpu_flags(line: str, k: int) -> tuple[str, str]:
        """The CPU column and the irq/preempt flags column ('' if the trace has none)."""
        if k > 36 and line[29] == "]" and line[25] == "[" and line[36] == " " and line[31] != " ":
            return line[26:29], line[31:36]  # ftrace's fixed "%16s-%-7d [%03d] %s " columns
        b = line.rfind("[", 0, k)
        c = line.find("]", b)
        if b < 0 or c < 0:
            # trace-cmd report -l glues the CPU to the flags: "comm-pid   1d..1.   ts"
            # (tracecmd/trace-read.c trace_show_data: "%8.8s-%-5d %3d" then the latency)
            w = line[:k].split()
            cf = w[-2] if len(w) > 2 else ""
            n = len(cf) - len(cf.lstrip("0123456789"))
            return (cf[:n], cf[n:]) if 0 < n < len(cf) else ("", "")
        rest = line[c + 1:k].split()
        return line[b + 1:c], (rest[0] if len(rest) > 1 else "")

    def first_event(self, line: str, k: int) -> None:
        ts = self.ts(line, k)
        r = self.report
        if r.first_ts is None or ts < r.first_ts:
            r.first_ts = ts

    def special(self, line: str, lineno: int) -> None:
        """Header lines, LOST EVENTS markers, trace-cmd's preamble, blank lines, garbage."""
        s = line.strip()
        if not s:
            return
        if s.startswith("#"):
            if s.startswith("#####") and "buffer started" in s:
                self.report.counters["cpu_buffer_started"] += 1
                self.forget(lineno, s.strip("# "))
            return
        # ftrace "LOST N EVENTS"; trace-cmd report "CPU:1 [N EVENTS DROPPED]" (trace-read.c)
        if ("LOST" in s or "DROPPED" in s) and "EVENTS" in s:
            n = 0
            for tok in s.replace("[", " ").split():
                if tok.isdigit():
                    n = int(tok)
            self.report.counters["lost_events"] += n
            self.report.counters["lost_markers"] += 1
            self.forget(lineno, s)
            return
        if s.startswith(("cpus=", "version =", "CPU ")) or s.endswith(" is empty"):
            return  # trace-cmd report preamble ("cpus=2", "version = 6") and "CPU 1 is empty"
        if "\x00" in s or "\ufffd" in s or not s.isprintable():
            self.malformed(lineno, "binary data, not trace text")
        else:
            self.malformed(lineno, f"not a trace event line: {s[:80]!r}")

    def unknown_event(self, ev: str, line: str, lineno: int, k: int) -> None:
        if not ev or " " in ev or not ev.replace("_", "").replace(":", "").isalnum():
            if "\ufffd" in line or "\x00" in line:
                self.malformed(lineno, "binary data, not trace text")
            else:
                self.malformed(lineno, f"not a trace event line: {line.strip()[:80]!r}")
            return
        self.report.events[ev] += 1
        if ev not in self.unknown_events:
            self.unknown_events[ev] = (self.cur_source, lineno)

    def atomic(self, flags: str) -> bool:
        a = self.atomic_memo.get(flags)
        if a is None:
            a = len(flags) >= 3 and (flags[0] in ATOMIC_IRQ or flags[2] in ATOMIC_CTX)
            self.atomic_memo[flags] = a
        return a

    def gfp_entry(self, text: str) -> tuple[int, bool, int]:
        """(mask, may it sleep, gfp_migratetype) of a printed gfp_flags value, memoised."""
        g = self.gfp_memo.get(text)
        if g is None:
            m = trace_gfp(text, self.unknown_gfp)
            g = self.gfp_memo[text] = (m, gfp_may_sleep(m), int(gfp_migratetype(m)))
        return g

    def gfp(self, text: str) -> int:
        return self.gfp_entry(text)[0]

    def learn_name(self, key: str, name: str) -> None:
        """kmem_cache_free names the cache (6.12 kmem_cache_alloc does not): remember the
        names seen for objects of each (object_size/size) key."""
        if key[0] == "[":
            self.cache_names.setdefault(key, set()).add(name)

    # --- objects ----------------------------------------------------------------------------------

    def in_free_page(self, ptr: int, end: int, line: str, lineno: int) -> None:
        """object.in_free_page: no page of the object is in ``free_pages``."""
        base = self.page_offset
        assert base is not None
        pfn = (ptr - base) >> PAGE_SHIFT
        hit = self.free_pages.first(pfn, ((end - 1 - base) >> PAGE_SHIFT) + 1)
        if hit is not None:
            self.violation("object.in_free_page", lineno, line,
                           f"object {ptr:#x} lies in pfn {hit:#x}, which the trace shows "
                           f"free (freed at {self.free_pages.line_of(hit)}) and not "
                           f"allocated since")

    def obj_conflict(self, ptr: int, end: int, alloc: int, tag: Any, line: str, k: int,
                     lineno: int, cpu: str) -> None:
        """The new object overlaps a live one: reordering across CPUs, an untraced bulk free
        (same address and size), or a violation."""
        objs = self.objects
        hit = objs.overlapping(ptr, end)
        assert hit is not None
        os_, oe, otag = hit
        ts = self.ts(line, k)
        if self.resolve(("o", ptr), ts, cpu):
            self.forget_object(os_)
            objs.add(ptr, end, tag)
        elif os_ == ptr and oe == end and not self.strict:
            # same address and size: the earlier one was freed by a bulk path (no event)
            self.report.counters["untraced_free_reuse"] += 1
            self.forget_object(os_)
            objs.add(ptr, end, tag)
            self.stat_free(otag)
        else:
            v = self.violation(
                "object.overlap", lineno, line,
                f"object {ptr:#x}..{end:#x} ({alloc} bytes) overlaps the live object "
                f"{os_:#x}..{oe:#x} allocated at line {otag[0]}")  # type: ignore[index]
            for s2, _e2, t2 in list(objs.irange(ptr, end)):
                self.forget_object(s2)
                self.stat_free(t2)
            objs.add(ptr, end, tag)
            self.defer(("o", ptr), ts, cpu, v)

    def forget_object(self, ptr: int) -> None:
        """The live object at ``ptr`` goes without a free event (a conflict, its page freed):
        out of the live map, and no free record (see free_objects)."""
        self.objects.remove(ptr)
        self.free_objects.pop(ptr, None)

    def obj_alloc_after_refree(self, ptr: int, end: int, tag: Any, line: str, k: int,
                               cpu: str) -> None:
        if self.resolve(("of", ptr), self.ts(line, k), cpu):
            self.objects.remove(ptr)  # the free that printed first came after this allocation
            self.free_objects[ptr] = tag[0] * tag[3][8]

    def obj_alloc(self, ev: str, vals: list[Any], line: str, k: int, lineno: int) -> None:
        """The complete allocation rules, for whatever the hot path does not handle."""
        ptr, req, alloc, gfp_s, site, node, name = vals
        r = self.report
        cnt = r.counters
        if not ptr:
            cnt["failed_object_allocs"] += 1
            return
        if self.hashed is None:
            self.hashed = ptr < (1 << 32)
            r.hashed_pointers = self.hashed
            if self.hashed and not len(self.objects):
                self.objects = BitmapLiveMap(0)  # hashes: exact values, no 8-byte granules
        cpu, flags = self.cpu_flags(line, k)
        g = self.gfp_entry(gfp_s) if gfp_s is not None else (0, False, 0)
        gfp = g[0]
        is_kmalloc = ev.startswith("kmalloc")
        if req is None or alloc is None:
            req = alloc = 0
        if site is None:
            site = "?"
        if is_kmalloc:
            if req > KMALLOC_MAX_CACHE_SIZE:
                last = self.last_large.get(cpu)
                if last is not None and last == (ptr, req):
                    cnt["duplicate_large_kmalloc_events"] += 1
                    self.last_large.pop(cpu, None)
                    return
                self.last_large[cpu] = (ptr, req)
            exp = self.class_memo.get(req)
            if exp is None:
                exp = expected_kmalloc_bytes(req) if req > 0 else 0
                self.class_memo[req] = exp
            self.fast_rules[0] += 1
            if alloc != exp:
                self.violation("kmalloc.size_class", lineno, line,
                               f"kmalloc({req}) reports bytes_alloc={alloc}, but the size "
                               f"class of {req} bytes is {exp}")
            if not self.hashed:
                self.fast_rules[5] += 1
                ok = (ptr & (PAGE_SIZE - 1) == 0 if req > KMALLOC_MAX_CACHE_SIZE
                      else kmalloc_object_aligned(ptr, alloc))
                if not ok:
                    self.violation("kmalloc.align", lineno, line,
                                   f"kmalloc({req}) object {ptr:#x} of {alloc} bytes is not "
                                   f"aligned as kmalloc() guarantees")
            key = self.name_memo.get((alloc, gfp_s or ""))
            if key is None:
                key = self.name_memo[(alloc, gfp_s or "")] = kmalloc_cache_name(alloc, gfp)
        else:
            key = name
        if flags:
            self.fast_rules[1] += 1
            if self.atomic(flags) and g[1]:
                self.violation("sleep.atomic", lineno, line,
                               f"{ev} with {gfp_s} (may sleep: __GFP_DIRECT_RECLAIM) in atomic "
                               f"context (flags {flags})")
        if node is not None and node >= 0:
            r.nodes_requested[node] += 1
            if self.node_ranges and self.page_offset is not None and not self.hashed:
                got = self.node_of((ptr - self.page_offset) >> PAGE_SHIFT)
                if got is not None:
                    r.cross_node[f"{node}->{got}"] += 1
        lp = self.last_page_alloc.pop(cpu, None)
        if lp is not None and not self.hashed:
            self.vote_base(ptr, lp, is_kmalloc and req > KMALLOC_MAX_CACHE_SIZE and
                           alloc == PAGE_SIZE << lp[1])
            if self.recorder is not None:
                self.recorder.mark_slab(lp)
        sk = (key, req, alloc, site)
        st = self.stats.get(sk)
        if st is None:
            st = self.stats[sk] = self.new_stats(key, req, alloc, site)
        st[0] += 1
        st[2] += req
        st[3] += alloc
        end = ptr + 1 if self.hashed else ptr + (alloc or 1)
        tag = (lineno, req, alloc, st, cpu, 0)
        self.fast_rules[2] += 1
        if self.objects.add(ptr, end, tag) is not None:
            self.obj_conflict(ptr, end, alloc, tag, line, k, lineno, cpu)
        if self.recorder is not None:
            self.recorder.obj(req, alloc)
        fo = self.free_objects
        if ptr in fo:
            del fo[ptr]
            if self.pending_keys and ("of", ptr) in self.pending_keys:
                self.obj_alloc_after_refree(ptr, end, tag, line, k, cpu)
                return
        base = self.page_offset
        if base is not None and not self.hashed:
            self.fast_rules[3] += 1
            if self.free_pages:
                self.in_free_page(ptr, end, line, lineno)
        elif not self.hashed:
            self.base_needed_objects += 1

    @staticmethod
    def new_stats(name: str | None, req: int, alloc: int, site: str) -> list[Any]:
        """A statistics row; its cache key is the name, or "[object_size/size]" for 6.1-6.17
        kmem_cache_alloc (no name= field: named later from kmem_cache_free). The fields:
        allocations, frees, bytes_req, bytes_alloc, cache key, call site, the name= token
        last seen, the kmalloc.size_class message (memo records), and 1 for a kmalloc cache,
        -1 for another (the sign of its free records: free_objects)."""
        key = name if name else f"[{req}/{alloc}]"
        return [0, 0, 0, 0, key, site, "", "", 1 if key.startswith(KMALLOC_KEYS) else -1]

    def node_of(self, pfn: int) -> int | None:
        """The node whose zones span ``pfn`` (from --zoneinfo), or None."""
        i = bisect_right(self.node_starts, pfn) - 1
        if i >= 0:
            s, e, nid = self.node_ranges[i]
            if s <= pfn < e:
                return nid
        return None

    def stat_free(self, tag: Any) -> None:
        tag[3][1] += 1

    def obj_free(self, ev: str, vals: list[Any], line: str, k: int, lineno: int) -> None:
        ptr = vals[0]
        if ptr is None:
            ptr = 0
        if self.pending_keys and ("o", ptr) in self.pending_keys:
            cpu = self.cpu_flags(line, k)[0]
            if self.resolve(("o", ptr), self.ts(line, k), cpu):
                return  # frees the older object; the newer allocation stays live
        rec = self.objects.remove(ptr) if ptr > 16 else None
        if rec is None:
            self.obj_free_rare(ev, ptr, line, k, lineno)
            return
        st = rec[2][3]  # type: ignore[index]
        st[1] += 1
        if self.recorder is not None:
            self.recorder.obj(-rec[2][1], -rec[2][2])  # type: ignore[index]
        self.free_objects[ptr] = lineno * st[8]
        if rec[1] - ptr > KMALLOC_MAX_CACHE_SIZE:
            self.last_large.clear()
        if ev == "kmem_cache_free" and len(vals) > 2 and vals[2]:
            self.learn_name(st[4], vals[2])

    def obj_free_live(self, ptr: int, v: tuple[int, Any], lineno: int, name_tok: str) -> None:
        """The free of a live object that the hot loop took out of the starts: its bits out of
        the bitmap (the rest of BitmapLiveMap.remove), its statistics row, the free record,
        and the cache name a kmem_cache_free line carries (``name_tok`` "name=...", or "")."""
        end, tag = v
        m = tag[5]
        objs = self.objects
        if m:  # the object's bits in its chunk (all set: it is live)
            obm = objs.raw()[1]
            c = ptr >> (3 + OBJECT_CHUNK_BITS)
            nv = obm[c] ^ m
            if nv:
                obm[c] = nv
            else:
                del obm[c]
        else:
            objs.unmark(ptr, end)
            if end - ptr > KMALLOC_MAX_CACHE_SIZE:
                self.last_large.clear()  # a large kmalloc here is new
        st = tag[3]
        st[1] += 1
        self.free_objects[ptr] = lineno * st[8]
        if name_tok and st[6] != name_tok:
            st[6] = name_tok  # the "name=..." token last seen for this row
            self.learn_name(st[4], name_tok[5:].strip())

    def obj_free_rare(self, ev: str, ptr: int, line: str, k: int, lineno: int) -> None:
        """A free of something not live: NULL, reordering, an inner pointer, a double free,
        or something allocated before the trace."""
        cnt = self.report.counters
        if ptr <= 16:  # NULL or ZERO_SIZE_PTR: kfree returns at once
            cnt["null_frees"] += 1
            return
        cpu = ""
        if self.pending_keys:
            cpu = self.cpu_flags(line, k)[0]
            if self.resolve(("o", ptr), self.ts(line, k), cpu):
                return  # frees the older object; the newer allocation stays live
        self.fast_rules[4] += 1
        hit = None if self.hashed else self.objects.find(ptr)
        if hit is not None:
            self.violation("object.invalid_free", lineno, line,
                           f"{ev} of {ptr:#x}, inside the live object {hit[0]:#x}..{hit[1]:#x} "
                           f"allocated at line {hit[2][0]}, not at its start")  # type: ignore[index]
            return
        fo = self.free_objects
        fr = fo.get(ptr)
        if fr is not None and not self.strict and fr < 0:  # not a kmalloc cache
            # kmem_cache_alloc_bulk (maple tree nodes, skbuff heads, ...) allocates without
            # an event (mm/slub.c): the object may have been handed out again unseen.
            cnt["cache_object_refree"] += 1
            del fo[ptr]
            return
        if fr is not None:
            if not cpu:
                cpu = self.cpu_flags(line, k)[0]
            v = self.violation("object.double_free", lineno, line,
                               f"{ev} of {ptr:#x}, already freed at line {abs(fr)} and not "
                               f"allocated since")
            self.defer(("of", ptr), self.ts(line, k), cpu, v)
            return
        self.report.unknown_frees += 1
        cnt["unknown_object_frees"] += 1

    # --- pages ------------------------------------------------------------------------------------

    def vote_base(self, ptr: int, lp: tuple[int, int, int, Any], exact: bool) -> None:
        """Infer the direct-map base (page_offset_base, randomised in 1 GiB steps by KASLR:
        arch/x86/mm/kaslr.c) from an object that follows its own new page on one CPU."""
        pfn, order, _ln, _g = lp
        delta = ptr - (pfn << PAGE_SHIFT)
        cand = delta & ~(ONE_GIB - 1)
        if cand < KERNEL_HALF or delta - cand >= PAGE_SIZE << order:
            return
        if exact and delta != cand:
            return
        if self.page_offset is not None:
            if cand != self.page_offset:
                self.base_disagree += 1
            return
        self.base_votes[cand] += 2 if exact else 1
        best, n = self.base_votes.most_common(1)[0]
        others = sum(self.base_votes.values()) - n
        if n >= 4 and others * 4 <= n:
            self.page_offset = best
            self.voting = self.recorder is not None  # plots still mark slab pages
            self.report.page_offset_how = (
                f"inferred at line {_ln}: objects that follow their own new page "
                f"(large kmallocs count twice), {n} votes")

    def page_alloc(self, vals: list[Any], line: str, k: int, lineno: int) -> None:
        pfn, order, mt, gfp_s, page = vals
        if page == 0 and not pfn:
            self.report.counters["failed_page_allocs"] += 1
            return
        if order is None or pfn is None:
            self.malformed(lineno, "mm_page_alloc without pfn= or order=")
            return
        if k > 36 and line[29] == "]" and line[25] == "[" and line[36] == " " and line[31] != " ":
            cpu = line[26:29]  # ftrace's fixed "%16s-%-7d [%03d] %s " columns
            flags = line[31:36]
        else:
            cpu, flags = self.cpu_flags(line, k)
        if gfp_s is not None:
            g = self.gfp_memo.get(gfp_s)
            if g is None:
                g = self.gfp_entry(gfp_s)
        else:
            g = (0, False, 0)
        po = self.page_order_counts
        po[order] = po.get(order, 0) + 1
        n = 1 << order
        pr = self.page_rules
        pr[0] += 1  # page.align, page.overlap
        if not block_aligned(pfn, order):
            self.violation("page.align", lineno, line,
                           f"block pfn {pfn:#x} order {order} is not aligned to {n} pages")
        if mt is not None and gfp_s is not None:
            pr[1] += 1
            if mt != g[2]:
                self.violation("page.migratetype", lineno, line,
                               f"migratetype={mt}, but gfp_migratetype({gfp_s}) = {g[2]}")
        if flags and gfp_s is not None:
            pr[2] += 1
            a = self.atomic_memo.get(flags)
            if a is None:
                a = self.atomic(flags)
            if a and g[1]:
                self.violation("sleep.atomic", lineno, line,
                               f"mm_page_alloc with {gfp_s} (may sleep: __GFP_DIRECT_RECLAIM) "
                               f"in atomic context (flags {flags})")
        end = pfn + n
        tag = (lineno, order, cpu)
        fp = self.free_pages
        if fp.bm:
            if self.pending_keys and self.resolve(("pf", pfn), self.ts(line, k), cpu):
                return  # the double free printed first: this allocation preceded it
            fp.discard(pfn, end)  # no longer free
        if self.pages.add(pfn, end, tag) is not None:
            self.page_overlap(pfn, order, tag, line, k, lineno)
        self.last_page_alloc[cpu] = (pfn, order, lineno, g[0])
        if self.recorder is not None:
            self.recorder.page(self.ts(line, k), pfn, order, True)

    def page_overlap(self, pfn: int, order: int, tag: tuple[int, int, str], line: str, k: int,
                     lineno: int) -> None:
        """page.overlap: the new block (not yet added) shares a page with a live one: report
        it (held for reordering), and the new block replaces what it overlaps."""
        pages = self.pages
        end = pfn + (1 << order)
        hit = pages.overlapping(pfn, end)
        assert hit is not None
        v = self.violation("page.overlap", lineno, line,
                           f"block pfn {pfn:#x} order {order} overlaps the live block pfn "
                           f"{hit[0]:#x} order {(hit[1] - hit[0]).bit_length() - 1} "
                           f"allocated at line {hit[2][0]}")  # type: ignore[index]
        for s2, _e2, _t2 in list(pages.irange(pfn, end)):
            pages.remove(s2)
        pages.add(pfn, end, tag)
        self.defer(("p", pfn), self.ts(line, k), tag[2], v)

    def page_free(self, pfn: int, order: int, line: str, k: int, lineno: int) -> None:
        end = pfn + (1 << order)
        pages = self.pages
        cpu = ""
        if self.pending_keys:
            cpu = self.cpu_flags(line, k)[0]
            if self.resolve(("p", pfn), self.ts(line, k), cpu):
                self.add_free(pfn, end, lineno)
                return
        self.page_rules[3] += 1
        rec = pages.remove(pfn)  # the common case: the block allocated at pfn, same order
        if rec is not None and rec[1] != end:
            pages.add(pfn, rec[1], rec[2])  # another order: judged below
            rec = None
        if rec is None:
            self._page_free_other(pfn, order, end, line, k, lineno, cpu)
        self.add_free(pfn, end, lineno)
        if self.recorder is not None:
            self.recorder.page(self.ts(line, k), pfn, order, False)

    def _page_free_other(self, pfn: int, order: int, end: int, line: str, k: int,
                         lineno: int, cpu: str) -> None:
        """A page free that is not of a live block with its own pfn and order: a split
        block's piece, a wrong order, a double free, or a block allocated before the trace."""
        r = self.report
        pages = self.pages
        hit = pages.find(pfn)
        if hit is not None:
            s, e, tag = hit
            border = (e - s).bit_length() - 1
            if s == pfn and e == end:
                pages.remove(s)
            elif s <= pfn and end <= e:
                if not block_aligned(pfn, order):
                    self.violation("page.align", lineno, line,
                                   f"freed block pfn {pfn:#x} order {order} is not aligned")
                pages.remove(s)
                r.counters["split_frees"] += 1
                if block_aligned(pfn, order):
                    for q, j in _buddy_pieces(s, border, pfn, order):
                        pages.add(q, q + (1 << j), tag)
            else:
                self.violation("page.free_order", lineno, line,
                               f"pfn {pfn:#x} freed with order {order}, but the live block "
                               f"pfn {s:#x} was allocated with order {border} at line "
                               f"{tag[0]}")  # type: ignore[index]
                for s2, _e2, _t2 in list(pages.irange(pfn, end)):
                    pages.remove(s2)
        else:
            freed = self.free_pages.first(pfn, end)
            if freed is not None:
                if order == 0 and not self.strict:
                    r.counters["order0_refree"] += 1
                else:
                    if not cpu:
                        cpu = self.cpu_flags(line, k)[0]
                    v = self.violation("page.double_free", lineno, line,
                                       f"pfn {pfn:#x} order {order} freed, but pfn {freed:#x} "
                                       f"was freed at {self.free_pages.line_of(freed)} and "
                                       f"not allocated since")
                    self.defer(("pf", pfn), self.ts(line, k), cpu, v)
            else:
                r.unknown_frees += 1
                r.counters["unknown_page_frees"] += 1

    def add_free(self, pfn: int, end: int, lineno: int) -> None:
        """The trace shows [pfn, end) free. Objects still live in those pages were freed
        without an event (kfree_bulk, kvfree_rcu): forget them, so that the slab page's next
        life does not look like an overlap."""
        self.free_pages.add(pfn, end, lineno)
        self.objects_freed_with(pfn, end)

    def objects_freed_with(self, pfn: int, end: int) -> None:
        """add_free's second half: forget the objects still live in pages [pfn, end)."""
        base = self.page_offset
        objs = self.objects
        if base is not None and not self.hashed and len(objs):
            lo = base + (pfn << PAGE_SHIFT)
            hi = base + (end << PAGE_SHIFT)
            gs = objs.granule_shift
            g0 = lo >> gs
            g1 = ((hi - 1) >> gs) + 1
            cb = objs.chunk_bits
            c = g0 >> cb
            if (g1 - 1) >> cb == c:  # one bitmap chunk: is any granule of the pages live?
                if not objs.raw()[1].get(c, 0) & ((1 << (g1 - g0)) - 1) << (g0 & ((1 << cb) - 1)):
                    return
            elif objs.overlapping(lo, hi) is None:
                return
            gone = list(objs.irange(lo, hi))
            for s2, _e2, t2 in gone:
                self.forget_object(s2)
                self.stat_free(t2)
            if gone:
                self.report.counters["objects_in_freed_pages"] += len(gone)

    def page_batched(self, pfn: int, line: str, k: int, lineno: int) -> None:
        """free_unref_folios (6.12) / free_unref_page_list (6.1) trace mm_page_free for every
        folio of a batch first, then mm_page_free_batched for each as it goes to the pcp
        list: a page the trace already shows free is that same free. Otherwise (a kernel
        that traces only the batched event) it frees an order-0 page."""
        if self.free_pages.bm.get(pfn >> 9, 0) & BITS[pfn & 511]:  # pfn in self.free_pages
            self.report.counters["batched_after_free"] += 1
            return
        if self.pages.find(pfn) is None:
            self.report.counters["batched_unknown"] += 1
            return
        self.page_free(pfn, 0, line, k, lineno)

    # --- vmalloc ---------------------------------------------------------------------------------

    def vm_alloc(self, vals: list[Any], line: str, k: int, lineno: int) -> None:
        start, size, failed = vals
        r = self.report
        if failed or not size or start is None:
            r.counters["failed_vmap_allocs"] += 1
            return
        end = start + size
        lazy = self.vmap_lazy
        if len(lazy):
            gone = list(lazy.irange(start, end))
            for s2, _e2, _t2 in gone:
                lazy.remove(s2)
            if gone:
                r.counters["vmap_reused_before_traced_purge"] += 1
        r.rules_checked["vmalloc.overlap"] += 1
        r.rules_checked["vmalloc.guard"] += 1
        old = self.vmap.add(start, end, (lineno, size))
        if old is not None:
            hit = self.vmap.overlapping(start, end)
            assert hit is not None
            s, e, tag = hit
            guard_only = (s < start and start >= e - PAGE_SIZE) or (
                start < s and s >= end - PAGE_SIZE)
            rule = "vmalloc.guard" if guard_only else "vmalloc.overlap"
            self.violation(rule, lineno, line,
                           f"vmap area {start:#x}..{end:#x} "
                           f"{'reaches into the guard page of' if guard_only else 'overlaps'} "
                           f"the live area {s:#x}..{e:#x} allocated at line {tag[0]}")  # type: ignore[index]
            for s2, _e2, _t2 in list(self.vmap.irange(start, end)):
                self.vmap.remove(s2)
            self.vmap.add(start, end, (lineno, size))

    def vm_free(self, start: int, lineno: int) -> None:
        rec = self.vmap.remove(start)
        if rec is None:
            self.report.unknown_frees += 1
            self.report.counters["unknown_vmap_frees"] += 1
            return
        self.vmap_lazy.add(start, rec[1], (lineno,))

    def vm_purge(self, start: int, end: int) -> None:
        lazy = self.vmap_lazy
        if len(lazy) and end > start:
            for s2, _e2, _t2 in list(lazy.irange(start, end)):
                lazy.remove(s2)

    # --- the end ------------------------------------------------------------------------------

    def fold_memo(self) -> None:
        """Add the allocations the memo path only counted in their memo record to the event
        counts, their statistics rows and the rule counts (once per record, not per event)."""
        r = self.report
        fr = self.fast_rules
        for rec in self.alloc_memo.values():
            n = rec[9]
            if n:
                rec[9] = 0
                st = rec[3]
                st[0] += n
                st[2] += n * rec[0]
                st[3] += n * rec[1]
                r.events[rec[10]] += n
                fr[1] += n  # sleep.atomic
                fr[2] += n  # object.overlap
                if rec[11]:
                    fr[0] += n  # kmalloc.size_class
                    fr[5] += n  # kmalloc.align

    def finish(self) -> TraceReport:
        self.flush_pending(None)
        self.fold_memo()
        r = self.report
        for rule, n in zip(("kmalloc.size_class", "sleep.atomic", "object.overlap",
                            "object.in_free_page", "object.double_free", "kmalloc.align"),
                           self.fast_rules,
                           strict=True):
            r.rules_checked[rule] += n
        pr = self.page_rules
        for rule, n in (("page.align", pr[0]), ("page.overlap", pr[0]),
                        ("page.migratetype", pr[1]), ("sleep.atomic", pr[2]),
                        ("page.double_free", pr[3])):
            r.rules_checked[rule] += n
        for o, n in self.page_order_counts.items():
            r.page_orders[o] += n
        for st in self.stats.values():
            for table, k in ((r.caches, st[4]), (r.call_sites, st[5].partition("/")[0])):
                cs = table.get(k)
                if cs is None:
                    cs = table[k] = CacheStats()
                cs.allocs += st[0]
                cs.frees += st[1]
                cs.bytes_req += st[2]
                cs.bytes_alloc += st[3]
        r.violations.sort(key=lambda v: (r.sources.index(v.source) if v.source in r.sources
                                         else 0, v.lineno))
        r.live_objects = len(self.objects)
        r.live_object_bytes = sum(e - s for s, e, _t in self.objects.items())
        r.live_page_blocks = len(self.pages)
        r.live_pages = sum(e - s for s, e, _t in self.pages.items())
        r.live_vmalloc = len(self.vmap)
        r.live_vmalloc_bytes = sum(e - s for s, e, _t in self.vmap.items())
        r.page_offset = self.page_offset
        if self.page_offset_given:
            r.page_offset_how = "given (--page-offset)"
            if self.base_disagree:
                r.notes.append(f"--page-offset disagrees with {self.base_disagree} "
                               f"object/page pairs of the trace")
        for key, names in self.cache_names.items():
            named = r.caches.pop(key, None)
            if named is not None:
                r.caches["|".join(sorted(names)) + f" {key}"] = named
        nc = r.not_checked
        if self.hashed:
            nc.append("pointers are hashed (the trace was taken without no_hash_pointers): "
                      "objects are matched by their hashed value only; object overlap, "
                      "kmalloc.align and object.in_free_page are not checked and the "
                      "direct-map base cannot be inferred")
        elif r.events and self.page_offset is None:
            nc.append(f"object.in_free_page: the direct-map base (page_offset_base) could not "
                      f"be inferred from the trace (no object followed its own new page "
                      f"often enough); give --page-offset to check "
                      f"{self.base_needed_objects} objects")
        elif self.base_needed_objects:
            nc.append(f"object.in_free_page: {self.base_needed_objects} objects allocated "
                      f"before the direct-map base was known were not checked")
        if not r.rules_checked["sleep.atomic"] and any(
                r.events[e] for e in ("kmalloc", "kmem_cache_alloc", "mm_page_alloc")):
            nc.append("sleep.atomic: the trace has no irq/softirq flags column (trace-cmd "
                      "report prints it with -l)")
        if self.lost_at:
            nc.append("events were lost (ring buffer overrun): live and free state was "
                      "forgotten at " + ", ".join(self.lost_at[:10]) +
                      (" ..." if len(self.lost_at) > 10 else "") +
                      "; frees of earlier allocations count as unknown")
        for ev, (src, ln) in sorted(self.unknown_events.items()):
            r.notes.append(f"event {ev!r} (first at {src}:{ln}) is not an allocator event: "
                           f"counted, not checked")
        if self.unknown_gfp:
            r.notes.append("gfp flag names unknown to Linux 6.12.117, read as 0: "
                           + ", ".join(sorted(self.unknown_gfp)))
        c = r.counters
        if c["order0_refree"]:
            r.notes.append(f"{c['order0_refree']} order-0 pages were freed again without a "
                           f"traced allocation (alloc_pages_bulk takes pcp pages without "
                           f"mm_page_alloc): not violations")
        if c["cache_object_refree"]:
            r.notes.append(f"{c['cache_object_refree']} kmem_cache objects were freed again "
                           f"without a traced allocation (kmem_cache_alloc_bulk allocates "
                           f"without an event): not violations (strict mode reports them; "
                           f"kmalloc objects always are)")
        if c["untraced_free_reuse"]:
            r.notes.append(f"{c['untraced_free_reuse']} objects were handed out again at the "
                           f"same address and size without a traced free "
                           f"(kmem_cache_free_bulk/kfree_bulk, kvfree_rcu free without "
                           f"an event): not violations (strict mode reports them)")
        if c["duplicate_large_kmalloc_events"]:
            r.notes.append(f"{c['duplicate_large_kmalloc_events']} large kmallocs were traced "
                           f"twice (__do_kmalloc_node and __kmalloc_large_node_noprof both "
                           f"trace: 6.10+): counted once")
        if c["reordered_across_cpus"]:
            r.notes.append(f"{c['reordered_across_cpus']} conflicts were explained by events "
                           f"of another CPU within {self.reorder_window * 1e3:g} ms "
                           f"(clock skew between per-CPU buffers): not violations")
        if r.malformed_total > len(r.malformed):
            r.notes.append(f"{r.malformed_total} malformed lines, the first "
                           f"{len(r.malformed)} listed")
        return r


def _source_name(src: str | os.PathLike[str]) -> str:
    s = os.fspath(src)
    return "<stdin>" if s == "-" else s


def _ts_key(line: str) -> float:
    k = line.find(": ")
    if k < 0 or line[0] == "#":
        return -1.0
    try:
        return float(line[line.rfind(" ", 0, k) + 1:k])
    except ValueError:
        return -1.0


def _merged(streams: Sequence[Iterator[str]]) -> Iterator[tuple[float, int, int, str]]:
    """Lines of several per-CPU buffers in timestamp order: (ts, source, lineno, line).
    Header lines (no timestamp) keep the timestamp of the line before them."""
    def keyed(i: int, it: Iterator[str]) -> Iterator[tuple[float, int, int, str]]:
        last = -1.0
        for n, line in enumerate(it, 1):
            t = _ts_key(line)
            if t < 0:
                t = last
            last = t
            yield (t, i, n, line)
    return heapq.merge(*(keyed(i, it) for i, it in enumerate(streams)))


def node_ranges_from_zoneinfo(path: str) -> list[tuple[int, int, int]]:
    """(start_pfn, end_pfn, nid) of every zone with pages in a /proc/zoneinfo file: only the
    "Node N, zone NAME", "spanned" and "start_pfn:" lines are read (mm/vmstat.c
    zoneinfo_show_print), so every kernel's layout parses."""
    try:
        with open(path, errors="replace") as f:  # a binary file: no stanza, one error line
            text = f.read()
    except OSError as e:
        raise TraceSourceError(f"--zoneinfo {path}: {e.strerror or e}") from None
    out: list[tuple[int, int, int]] = []
    nid, spanned = -1, 0
    for ln in text.splitlines():
        w = ln.split()
        if len(w) >= 4 and w[0] == "Node" and w[2] == "zone" and w[1].rstrip(",").isdigit():
            nid, spanned = int(w[1].rstrip(",")), 0
        elif len(w) == 2 and w[0] == "spanned" and w[1].isdigit():
            spanned = int(w[1])
        elif len(w) == 2 and w[0] == "start_pfn:" and w[1].isdigit() and nid >= 0 and spanned:
            out.append((int(w[1]), int(w[1]) + spanned, nid))
    if not out:
        raise TraceSourceError(f"--zoneinfo {path}: no 'Node N, zone' stanza with "
                               f"start_pfn and spanned pages")
    return out


def _lines_of_group(grp: Iterator[tuple[float, int, int, str]]) -> tuple[int, Iterator[str]]:
    """The first line number and the lines of a run of merged lines from one buffer."""
    first = next(grp)
    return first[2], itertools.chain((first[3],), (t[3] for t in grp))


def check_trace(sources: Sequence[str | os.PathLike[str]] = (), *, text: str | None = None,
                formats_dir: str | None = None, page_offset: int | None = None,
                reorder_window: float = DEFAULT_REORDER_WINDOW, strict: bool = False,
                recorder: Any = None, zoneinfo: str | None = None) -> TraceReport:
    """Replay and judge a trace: files (plain, .xz, .gz, .bz2, .zst; "-" = stdin) or ``text``.
    Several files are one trace (per-CPU buffers): merged by timestamp. Raises
    :class:`TraceSourceError` (a KmemError) when a file cannot be opened or ``--formats``
    cannot be read."""
    fmts = None
    if formats_dir is not None:
        try:
            fmts = load_formats(formats_dir)
        except OSError as e:
            raise TraceSourceError(f"--formats {formats_dir}: {e.strerror}" if e.strerror
                                   else f"--formats: {e}") from None
    ranges = node_ranges_from_zoneinfo(zoneinfo) if zoneinfo is not None else []
    rp = Replay(formats=fmts, page_offset=page_offset, reorder_window=reorder_window,
                strict=strict, recorder=recorder, node_ranges=ranges)
    r = rp.report
    if fmts is not None:
        r.notes.append(f"fields read by name from {fmts.files} tracepoint formats "
                       f"({formats_dir})")
        for p in fmts.problems:
            r.notes.append(p)
    if text is not None:
        r.sources.append("<text>")
        rp.run(text.splitlines(keepends=True), "<text>")
        return rp.finish()
    opened: list[tuple[str, IO[str]]] = []
    try:
        for s in sources:
            f, _kind = open_trace(os.fspath(s))
            opened.append((_source_name(s), f))
        r.sources.extend(n for n, _f in opened)
        errors: list[list[str]] = [[] for _ in opened]
        if len(opened) == 1:
            name, f = opened[0]
            try:
                rp.run(f, name)
            except (EOFError, OSError, ValueError, lzma.LZMAError) as e:
                errors[0].append(f"the compressed stream ends early or is corrupt "
                                 f"({type(e).__name__}: {e})")
            except Exception as e:  # zstandard.ZstdError: one message, no traceback
                errors[0].append(f"the stream cannot be decoded ({type(e).__name__}: {e})")
        elif opened:
            streams = [iter_lines(f, errors[i]) for i, (_n, f) in enumerate(opened)]
            names = [n for n, _f in opened]
            # consecutive lines of one buffer are consecutive in its file: one run each
            for i, grp in itertools.groupby(_merged(streams), key=operator.itemgetter(1)):
                first_lineno, group_lines = _lines_of_group(grp)
                rp.run(group_lines, names[i], first_lineno=first_lineno)
        for (name, _f), errs in zip(opened, errors, strict=True):
            for msg in errs:
                rp.cur_source = name
                rp.malformed(r.lines, msg)
                r.not_checked.append(f"{name}: {msg}: the lines after it are missing")
    except KmemError:
        raise
    finally:
        for _n, f in opened:
            with contextlib.suppress(Exception):  # a broken stream must not hide the report
                f.close()
    return rp.finish()
