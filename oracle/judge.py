"""The judging side of the subject protocol, version 1 (../shared/design/oracle-protocol.md):
a view of the subject's state kept from the requests and answers alone, and every rule of the
protocol checked on every answer. docs/oracle.md describes the rules and every choice made
where the protocol text leaves room.

The rules themselves are spec's: spec/alloc_rules.py (alignment, zone, sleeping, LiveMap,
FreeRunCounter), spec/rules.py (allowed_zone, liveness_witness), spec/reserves.py (may_sleep),
spec/gfp.py (parse_gfp, gfp_zone). The judge only keeps the view and says which rule an answer
breaks and which part of the view makes it wrong.

Cost: every request is O(1) dict work plus O(log n) LiveMap searches (n live things) and, for
page blocks, O(max_order) FreeRunCounter updates; a failed alloc_pages in a pages-only session
costs O(zones x max_order). Nothing walks the live allocations or memory.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple, TypeVar

from impl.machine import MachineConfig
from spec.alloc_rules import (
    FreeRunCounter,
    LiveMap,
    block_aligned,
    cache_object_aligned,
    kmalloc_min_align,
    kmalloc_object_aligned,
    zone_allowed,
)
from spec.context import Context
from spec.errors import KmemError
from spec.gfp import (
    __GFP_DMA,
    __GFP_THISNODE,
    GFP_ZONEMASK,
    ZONE_NAMES,
    format_gfp,
    gfp_is_valid,
    gfp_zone,
    parse_gfp,
)
from spec.layout import NUMA_NO_NODE
from spec.reserves import may_sleep
from spec.rules import allowed_zone, liveness_witness
from spec.slab import ZERO_SIZE_PTR
from spec.state import ZoneFacts

PROTOCOL_VERSION: Final = 1  # ../shared/design/oracle-protocol.md, "Subject protocol, version 1"
RULES: Final = ("align", "range", "overlap", "sleep", "liveness", "free", "kmalloc-limits",
                "protocol", "exact")
FEATURE_OPS: Final[dict[str, tuple[str, ...]]] = {
    "pages": ("alloc_pages", "free_pages"),
    "kmalloc": ("kmalloc", "kfree"),
    "slab": ("kmem_cache_create", "kmem_cache_alloc", "kmem_cache_free", "kmem_cache_destroy"),
    "vmalloc": ("vmalloc", "vfree"),
}
OP_FEATURE: Final = {op: f for f, ops in FEATURE_OPS.items() for op in ops}
RESULT_KEY: Final = {"alloc_pages": "pfn", "kmalloc": "addr", "kmem_cache_alloc": "addr",
                     "vmalloc": "addr"}
NON_PAGE_OPS: Final = frozenset(op for op, f in OP_FEATURE.items() if f != "pages")
FREE_OPS: Final = frozenset({"free_pages", "kfree", "kmem_cache_free", "kmem_cache_destroy",
                             "vfree"})
# Names of the caches a Linux kernel (and the reference subject) creates at boot: a
# kmem_cache_create of one of them may be refused as "name already used" or accepted.
KERNEL_CACHE_PREFIXES: Final = ("kmalloc", "dma-kmalloc", "kmem_cache")

_HEX_ADDR: Final = re.compile(r"0x[0-9a-f]+").fullmatch
_GFP_DMA: Final = __GFP_DMA  # no name mangling inside the class
_GFP_THISNODE: Final = __GFP_THISNODE

VALID: Final = "valid"
INVALID: Final = "invalid"      # in the protocol's table: an error is due
AMBIGUOUS: Final = "ambiguous"  # either answer is right; the answer decides the view


class RequestError(KmemError, ValueError):
    """A request outside protocol version 1 (missing or ill-typed fields, an unknown op, cpu,
    node, context or gfp name, a GFP_ZONE_BAD mask, an op of a feature the subject did not
    list). The oracle never sends one; the judge refuses it and its view is unchanged."""


@dataclass(frozen=True)
class Violation:
    """One broken rule: ``message`` says what is wrong, ``detail`` which part of the view
    makes it wrong (the live allocation overlapped with its seq, the free aligned run liveness
    required and its zone, the zone left, ...)."""

    rule: str
    message: str
    seq: int | None
    request: dict[str, Any] | None
    answer: dict[str, Any] | None
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] seq {self.seq}: {self.message}\n    {self.detail}"


T = TypeVar("T")


class LiveSet(Sequence[T]):
    """A set with O(1) add, remove and indexing (swap-remove), so the generator can pick a
    random live thing without copying the view. Read-only for callers."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._pos: dict[T, int] = {}

    def add(self, x: T) -> None:
        self._pos[x] = len(self._items)
        self._items.append(x)

    def discard(self, x: T) -> None:
        i = self._pos.pop(x, None)
        if i is None:
            return
        last = self._items.pop()
        if i < len(self._items):
            self._items[i] = last
            self._pos[last] = i

    def __contains__(self, x: object) -> bool:
        return x in self._pos

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: Any) -> Any:
        return self._items[i]

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)


@dataclass
class CacheView:
    """A cache created through the protocol: its size and alignment as requested, the seq of
    its creation and its live objects (addresses)."""

    name: str
    size: int
    align: int
    seq: int
    live: LiveSet[int] = field(default_factory=LiveSet)
    tainted: int = 0  # objects the subject handed out that the view could not record


@dataclass(frozen=True)
class ZoneView:
    """A zone of the hello machine, as the judge sees it."""

    zi: int          # index in pfn order
    nid: int
    zone: int        # 0 DMA, 1 DMA32, 2 Normal
    start: int
    end: int
    min: int
    lowmem_reserve: tuple[int, ...]  # DMA, DMA32, Normal, Movable (= Normal): see _reserves

    @property
    def name(self) -> str:
        return ZONE_NAMES[self.zone]

    def facts(self, free: int, max_run: int) -> ZoneFacts:
        """spec.state.ZoneFacts for spec.rules (boost 0: the protocol's rule has none)."""
        return ZoneFacts(self.zi, self.nid, self.zone, self.end - self.start, self.min, 0, 0, 0,
                         self.lowmem_reserve, free, max_run)

    def describe(self) -> str:
        return f"zone {self.name} of node {self.nid} (pfns {self.start:#x}-{self.end - 1:#x})"


class _Where(NamedTuple):
    """The parsed placement fields of an allocation request."""

    gfp: int
    nid: int
    cpu: int
    ctx: Context
    pref_nid: int  # nid, or the CPU's node for -1
    may_sleep: bool  # spec.reserves.may_sleep(gfp, ctx)


def _reserves(given: Sequence[int] | None) -> tuple[int, ...]:
    """lowmem_reserve[DMA, DMA32, Normal, Movable] of a hello zone. The protocol indexes it by
    the request's highest zone, "DMA with __GFP_DMA, DMA32 with __GFP_DMA32, Normal otherwise":
    a movable mask (gfp_zone() = ZONE_MOVABLE) counts as Normal. That is also Linux 6.12.117's
    value: setup_per_zone_lowmem_reserve() (mm/page_alloc.c) sets lowmem_reserve[j] from the
    running sum of managed pages of the zones above, which an empty ZONE_MOVABLE does not
    grow, so the Movable entry equals the Normal one. spec.rules.liveness_witness indexes by
    gfp_zone(), so the judge's ZoneFacts carry that fourth entry."""
    r = (*(given or ()), 0, 0, 0)[:3]
    return (*r, r[2])


Why = str | Callable[[], str]  # a reason, built only when a report needs it


def _why(w: Why) -> str:
    return w if isinstance(w, str) else w()


def _hex(x: int) -> str:
    return f"{x:#x}"


class Judge:
    """Judges one session: construct it with the ``hello`` request, pass the hello answer to
    :meth:`check_hello`, then every other (request, answer) pair to :meth:`observe`."""

    def __init__(self, hello: dict[str, Any], *, strict: bool = False,
                 mode: Literal["spec", "exact"] = "spec", pages_only: bool | None = None) -> None:
        if mode not in ("spec", "exact"):
            raise ValueError(f"mode must be 'spec' or 'exact', got {mode!r}")
        self.hello = hello
        self.strict = strict
        self.mode = mode
        self.pages_only = pages_only
        cfg = MachineConfig.from_hello(hello)  # the one parser of the machine description
        self.page_size = int(hello.get("page_size", 4096))
        self.page_shift = self.page_size.bit_length() - 1
        self.max_order = cfg.max_order
        self.page_offset = cfg.page_offset
        self.vmalloc_start = cfg.vmalloc_start
        self.vmalloc_end = cfg.vmalloc_end
        self.kmalloc_max = self.page_size << self.max_order  # KMALLOC_MAX_SIZE
        self.cpu_node = cfg.cpu_node()
        self.nr_nodes = len(cfg.nodes)
        zs = sorted((z.start_pfn, n.nid, z) for n in cfg.nodes for z in n.zones)
        self.zones: tuple[ZoneView, ...] = tuple(
            ZoneView(i, nid, z.zone, z.start_pfn, z.end_pfn, int(z.min or 0),
                     _reserves(z.lowmem_reserve))
            for i, (_, nid, z) in enumerate(zs))
        self._zone_starts = [z.start for z in self.zones]
        self._static_facts = [z.facts(0, -1) for z in self.zones]
        self.max_pfn = max(z.end for z in self.zones)
        self.features: tuple[str, ...] = ()
        self._ops: frozenset[str] = frozenset()
        self.rules_checked: Counter[str] = Counter()
        self.violations: list[Violation] = []
        self.requests = 0
        # --- the view ---
        self._blocks: dict[int, tuple[int, int, int]] = {}  # pfn -> (order, seq, zone or -1)
        self._block_set: LiveSet[tuple[int, int]] = LiveSet()
        self._kmalloc: dict[int, tuple[int, int]] = {}  # addr -> (requested size, seq)
        self._kmalloc_set: LiveSet[int] = LiveSet()
        self._cache_obj: dict[int, tuple[str, int]] = {}  # addr -> (cache name, seq)
        self._caches: dict[str, CacheView] = {}
        self._vmalloc: dict[int, tuple[int, tuple[int, ...], int]] = {}  # addr -> (size, pfns, seq)
        self._vmalloc_set: LiveSet[int] = LiveSet()
        self._phys = LiveMap()   # physical bytes behind every live thing
        self._varea = LiveMap()  # vmalloc areas with their guard page
        self._runs = FreeRunCounter([(z.start, z.end) for z in self.zones], self.max_order)
        self._tainted: set[tuple[str, int]] = set()  # handed out, not recordable
        self._runs_exact = True  # False once a block could not enter the run counter
        self._track_runs = pages_only is not False  # decided at check_hello
        self._zone_used = [0] * len(self.zones)  # pages of live blocks per zone
        self._non_page_seen = False
        self._gfp_cache: dict[str, int] = {}
        self._where_cache: dict[tuple[Any, ...], _Where] = {}
        self._allowed_cache: dict[tuple[int, int, int], bool] = {}
        self._ref: Any = None
        self._ref_ops: frozenset[str] = frozenset()
        self.reference_errors = 0
        self.exact_disabled: str | None = None  # why exact mode stopped comparing, if it did
        if mode == "exact":
            from cli.subject import Subject  # the reference, in-process

            self._ref = Subject("reference")
            ans, _ = self._ref.handle({**hello, "op": "hello", "seq": hello.get("seq", 1)})
            if "error" in ans:
                raise ValueError(f"exact mode: the reference cannot run this machine: "
                                 f"{ans['error']}")
            self._ref_ops = frozenset(op for f in ans.get("features", ())
                                      for op in FEATURE_OPS.get(f, ()))

    # --- public views -----------------------------------------------------------------------

    @property
    def liveness_active(self) -> bool:
        """The liveness rule applies now: a pages-only session (``pages_only`` True, or None
        and the subject lists only ``pages``), no other request seen, the view exact."""
        if (self.pages_only is False or self._non_page_seen or not self._runs_exact
                or not self._track_runs):
            return False
        return self.pages_only is True or self.features == ("pages",)

    def live_blocks(self) -> Sequence[tuple[int, int]]:
        """(pfn, order) of the live alloc_pages blocks."""
        return self._block_set

    def live_kmalloc(self) -> Sequence[int]:
        """Addresses of the live kmalloc objects (not cache objects)."""
        return self._kmalloc_set

    def caches(self) -> Mapping[str, CacheView]:
        """Caches created through the protocol and not destroyed."""
        return self._caches

    def live_vmalloc(self) -> Sequence[int]:
        """Start addresses of the live vmalloc areas."""
        return self._vmalloc_set

    def zone_free(self) -> Sequence[tuple[str, int, int, int]]:
        """(zone name, nid, pages outside live alloc_pages blocks, min) per zone."""
        return [(z.name, z.nid, z.end - z.start - self._zone_used[z.zi], z.min)
                for z in self.zones]

    def zone_of_pfn(self, pfn: int) -> ZoneView | None:
        """The zone holding ``pfn``, or None (a hole or beyond memory)."""
        i = bisect_right(self._zone_starts, pfn) - 1
        if i < 0:
            return None
        z = self.zones[i]
        return z if pfn < z.end else None

    # --- hello ------------------------------------------------------------------------------

    def check_hello(self, answer: dict[str, Any]) -> list[Violation]:
        """Judge the answer to ``hello`` and take the features it lists."""
        req = {**self.hello, "op": "hello", "seq": self.hello.get("seq", 1)}
        out: list[Violation] = []
        self.rules_checked["protocol"] += 1
        feats = answer.get("features") if isinstance(answer, dict) else None
        if not isinstance(answer, dict) or answer.get("seq") != req["seq"]:
            out.append(self._v("protocol", "the hello answer does not repeat its seq", req,
                               answer, f"expected seq {req['seq']}"))
        elif "error" in answer:
            out.append(self._v("protocol", f"hello answered with an error: "
                               f"{str(answer['error'])[:200]}", req, answer,
                               "the machine is valid (the oracle checked it with "
                               "MachineConfig.from_hello), and it says protocol 1"))
        elif "protocol" in answer and (type(answer["protocol"]) is not int
                                       or answer["protocol"] != PROTOCOL_VERSION):
            # the answer need not name a version; one that names another is not judged by
            # rules it does not follow
            out.append(self._v("protocol", f"the subject answers hello with protocol "
                               f"{answer['protocol']!r}; the oracle speaks version "
                               f"{PROTOCOL_VERSION} only", req, answer,
                               "protocol: Start and end (hello says \"protocol\": 1)"))
        elif answer.get("ok") is not True or not isinstance(feats, list) or not all(
                isinstance(f, str) for f in feats):
            out.append(self._v("protocol", "the hello answer needs \"ok\": true and a list of "
                               "feature names", req, answer, "protocol: Start and end"))
        elif not any(f in FEATURE_OPS for f in feats):
            out.append(self._v("protocol", f"the hello answer lists no feature of protocol "
                               f"version {PROTOCOL_VERSION}: nothing can be judged", req, answer,
                               f"features are {', '.join(FEATURE_OPS)}; unknown names are "
                               f"ignored (got {feats!r})"))
        else:
            self.features = tuple(f for f in FEATURE_OPS if f in feats)
            self._ops = frozenset(op for f in self.features for op in FEATURE_OPS[f])
            if self._ref is not None and not self._ops <= self._ref_ops:
                # the reference cannot follow the whole session: its choices would drift
                self.exact_disabled = (f"the reference lacks "
                                       f"{sorted(self._ops - self._ref_ops)}")
                self._ref = None
            if not self._blocks:  # the run counter serves the liveness rule only
                self._track_runs = self.pages_only is True or (
                    self.pages_only is None and self.features == ("pages",))
        self.violations.extend(out)
        return out

    # --- validity ---------------------------------------------------------------------------

    def is_valid(self, request: dict[str, Any]) -> bool:
        """The request is valid per the protocol's table on the current view (an error
        answer would break a rule). False for invalid and ambiguous requests and for
        requests outside the protocol."""
        try:  # _classify: the kind alone, without formatting the reason
            return self._classify(request)[0] == VALID
        except RequestError:
            return False

    def within_protocol(self, request: dict[str, Any]) -> bool:
        """The request is one of protocol version 1 for this subject (valid, invalid or
        ambiguous); False where observe() would raise RequestError (an op of a feature the
        subject does not list, as a replay file made against another subject may hold)."""
        try:
            self._classify(request)
        except RequestError:
            return False
        return True

    def classify(self, request: dict[str, Any]) -> tuple[str, str]:
        """(VALID | INVALID | AMBIGUOUS, why) on the current view; RequestError for a request
        outside the protocol."""
        kind, why, _ = self._classify(request)
        return kind, _why(why)

    def _classify(self, req: dict[str, Any]) -> tuple[str, Why, Any]:
        op = req.get("op")
        seq = req.get("seq")
        if type(seq) is not int:
            raise RequestError(f"request without an integer seq: {req!r}")
        if op == "bye":
            return VALID, "bye", None
        if op not in OP_FEATURE:
            raise RequestError(f"unknown op {op!r}")
        if self._ops and op not in self._ops:
            raise RequestError(f"{op} belongs to feature {OP_FEATURE[op]!r}, which the "
                               f"subject does not list ({', '.join(self.features)})")
        if op == "alloc_pages":
            order = req.get("order")
            if type(order) is not int or order < 0:  # the common case is checked inline
                order = self._nonneg(req, "order")
            return VALID, "alloc_pages has no invalid requests", (order, self._where(req))
        if op == "kmalloc":
            size = self._nonneg(req, "size")
            return VALID, "kmalloc has no invalid requests", (size, self._where(req))
        if op == "free_pages":
            return self._classify_free_pages(req)
        if op == "kfree":
            return self._classify_kfree(req)
        if op == "vmalloc":
            size = self._nonneg(req, "size")
            w = self._where(req, with_nid=False)
            if w.ctx.atomic:
                if size == 0:  # "null, always for size 0" meets "atomic: error"
                    return AMBIGUOUS, "vmalloc(0) in atomic context: null for size 0, or " \
                                      "the error for atomic context", (size, w)
                return INVALID, "vmalloc in atomic context (vmalloc may always sleep)", (size, w)
            return VALID, "vmalloc in process context", (size, w)
        if op == "vfree":
            addr = self._addr(req, "addr")
            if addr in self._vmalloc:
                return VALID, lambda: f"{_hex(addr)} is the live vmalloc area of seq " \
                                      f"{self._vmalloc[addr][2]}", addr
            if addr == 0:
                return AMBIGUOUS, "vfree(NULL): the kernel does nothing, the table says error", 0
            if ("vmalloc", addr) in self._tainted:
                return AMBIGUOUS, f"{_hex(addr)} was handed out but not recorded", addr
            return INVALID, f"{_hex(addr)} is not the start of a live vmalloc area" + \
                self._where_is_addr(addr), addr
        return self._classify_slab(op, req)

    def _classify_free_pages(self, req: dict[str, Any]) -> tuple[str, Why, Any]:
        pfn = self._nonneg(req, "pfn")
        order = self._nonneg(req, "order")
        b = self._blocks.get(pfn)
        if b is not None:
            if b[0] == order:
                return VALID, lambda: f"pfn {_hex(pfn)} order {order} is the live block of " \
                                      f"seq {b[1]}", (pfn, order)
            return INVALID, f"wrong order: the live block at pfn {_hex(pfn)} was allocated " \
                            f"with order {b[0]} (seq {b[1]})", (pfn, order)
        if ("block", pfn) in self._tainted:
            return AMBIGUOUS, f"pfn {_hex(pfn)} was handed out but not recorded", (pfn, order)
        hit = self._phys.find(pfn << self.page_shift)
        what = f": it is inside {self._describe(hit[2])}" if hit else \
            ": no live allocation holds it"
        return INVALID, f"pfn {_hex(pfn)} is not the start of a live alloc_pages block" + what, \
            (pfn, order)

    def _classify_kfree(self, req: dict[str, Any]) -> tuple[str, Why, Any]:
        addr = self._addr(req, "addr")
        if addr in (0, ZERO_SIZE_PTR):
            return VALID, "kfree of NULL or ZERO_SIZE_PTR does nothing", addr
        if addr in self._kmalloc:
            s = self._kmalloc[addr][1]
            return VALID, lambda: f"{_hex(addr)} is the live kmalloc object of seq {s}", addr
        if addr in self._cache_obj:
            name, s = self._cache_obj[addr]
            return VALID, lambda: f"{_hex(addr)} is a live object of cache {name!r} (seq " \
                                  f"{s}); a cache object may be freed with kfree", addr
        if ("addr", addr) in self._tainted:
            return AMBIGUOUS, f"{_hex(addr)} was handed out but not recorded", addr
        return INVALID, f"{_hex(addr)} is not the start of a live kmalloc or cache object" + \
            self._where_is_addr(addr), addr

    def _classify_slab(self, op: str, req: dict[str, Any]) -> tuple[str, Why, Any]:
        name = req.get("name")
        if not isinstance(name, str):
            raise RequestError(f"{op} needs a string name, got {name!r}")
        c = self._caches.get(name)
        if op == "kmem_cache_create":
            size = self._nonneg(req, "size")
            align = self._nonneg(req, "align", 0)
            args = (name, size, align)
            if c is not None:
                return INVALID, f"cache name {name!r} is already used (seq {c.seq})", args
            if not 1 <= size <= self.page_size * 8:
                return INVALID, f"size {size} is not in 1..{self.page_size * 8}", args
            if align & (align - 1) or align > self.page_size:
                return INVALID, f"align {align} is not 0 or a power of two <= " \
                                f"{self.page_size}", args
            if name.startswith(KERNEL_CACHE_PREFIXES):
                return AMBIGUOUS, f"{name!r} is the name of a kernel cache, which the " \
                                  "subject may already have", args
            return VALID, lambda: f"a new cache {name!r} of size {size}, align {align}", args
        if c is None:
            return INVALID, f"unknown cache {name!r}", name
        if op == "kmem_cache_alloc":
            return VALID, lambda: f"cache {name!r} exists (seq {c.seq})", (c, self._where(req))
        if op == "kmem_cache_free":
            addr = self._addr(req, "addr")
            if addr in c.live:
                s = self._cache_obj[addr][1]
                return VALID, lambda: f"{_hex(addr)} is a live object of {name!r} (seq {s})", \
                    (c, addr)
            if ("addr", addr) in self._tainted:
                return AMBIGUOUS, f"{_hex(addr)} was handed out but not recorded", (c, addr)
            return INVALID, f"{_hex(addr)} is not a live object of cache {name!r}" + \
                self._where_is_addr(addr), (c, addr)
        # kmem_cache_destroy
        if len(c.live):
            a = c.live[0]
            return INVALID, f"objects remain in {name!r}: {len(c.live)} live, e.g. " \
                            f"{_hex(a)} (seq {self._cache_obj[a][1]})", c
        if c.tainted:
            return AMBIGUOUS, f"{name!r} handed out objects the view could not record", c
        return VALID, lambda: f"cache {name!r} has no live objects", c

    # --- field parsing (RequestError on anything outside the protocol) -------------------

    @staticmethod
    def _nonneg(req: dict[str, Any], key: str, default: int | None = None) -> int:
        v = req.get(key, default)
        if type(v) is not int or v < 0:
            raise RequestError(f"{req.get('op')}: field {key!r} must be a non-negative "
                               f"integer, got {v!r}")
        return v

    @staticmethod
    def _addr(req: dict[str, Any], key: str) -> int:
        v = req.get(key)
        if isinstance(v, str) and v.startswith("0x"):
            try:
                return int(v, 16)
            except ValueError:
                pass
        raise RequestError(f"{req.get('op')}: field {key!r} must be a hex address, got {v!r}")

    def _gfp(self, text: Any) -> int:
        g = self._gfp_cache.get(text) if isinstance(text, str) else None
        if g is not None:
            return g
        if not isinstance(text, str):
            raise RequestError(f"gfp must be a string, got {text!r}")
        try:
            g = parse_gfp(text, ignore_hex=True, validate=False)
        except KmemError as e:
            raise RequestError(str(e)) from None
        if not gfp_is_valid(g):
            raise RequestError(f"gfp {text!r} is not a mask the protocol sends (a GFP_ZONE_BAD "
                               "zone combination or __GFP_MOVABLE|__GFP_RECLAIMABLE)")
        self._gfp_cache[text] = g
        return g

    def _where(self, req: dict[str, Any], *, with_nid: bool = True) -> _Where:
        key = (req.get("gfp"), req.get("nid", NUMA_NO_NODE) if with_nid else NUMA_NO_NODE,
               req.get("cpu", 0), req.get("ctx", "process"))
        try:
            w = self._where_cache.get(key)
        except TypeError:  # an unhashable field
            w = None
        if w is None or type(key[1]) is not int or type(key[2]) is not int:
            w = self._where_parse(*key)
            if len(self._where_cache) < 4096:
                self._where_cache[key] = w
        return w

    def _where_parse(self, gfp_text: Any, nid: Any, cpu: Any, ctx_text: Any) -> _Where:
        gfp = self._gfp(gfp_text)
        if type(cpu) is not int or cpu not in self.cpu_node:
            raise RequestError(f"cpu {cpu!r} does not exist")
        if type(nid) is not int or not (nid == NUMA_NO_NODE or 0 <= nid < self.nr_nodes):
            raise RequestError(f"nid {nid!r} is neither -1 nor a node")
        if ctx_text == "process":
            ctx = Context.PROCESS
        elif ctx_text == "atomic":
            ctx = Context.SPINLOCK
        else:
            raise RequestError(f"ctx must be \"process\" or \"atomic\", got {ctx_text!r}")
        return _Where(gfp, nid, cpu, ctx, self.cpu_node[cpu] if nid == NUMA_NO_NODE else nid,
                      bool(may_sleep(gfp, int(ctx))))

    # --- observing --------------------------------------------------------------------------

    def observe(self, request: dict[str, Any], answer: dict[str, Any]) -> list[Violation]:
        """Judge one answer against every rule that applies and update the view. The view is
        unchanged after an error answer, a null allocation, or an answer it cannot absorb
        (an allocation overlapping a live one; an ok to an invalid request). Raises
        RequestError, with the view unchanged, for a request outside the protocol."""
        if request.get("op") == "hello":
            return self.check_hello(answer)
        kind, why, args = self._classify(request)
        self.requests += 1
        out: list[Violation] = []
        op: str = request["op"]
        seq: int = request["seq"]
        if op in NON_PAGE_OPS:
            self._non_page_seen = True
        ref_ans = None if self._ref is None else self._reference(request)
        if ref_ans is not None and kind == VALID and "error" in ref_ans:
            self.reference_errors += 1  # not the subject's fault: counted, never judged
        rc = self.rules_checked
        rc["protocol"] += 1
        aseq = answer.get("seq") if isinstance(answer, dict) else None
        if aseq != seq or type(aseq) is not int:
            got = answer.get("seq") if isinstance(answer, dict) else answer
            out.append(self._v("protocol", "the answer does not repeat the request's seq",
                               request, answer, f"expected seq {seq}, got {got!r}"))
            return self._done(out)
        key = RESULT_KEY.get(op, "ok")
        slept = answer.get("slept", False)
        if type(slept) is not bool:
            out.append(self._v("protocol", f"\"slept\" must be true or false, got {slept!r}",
                               request, answer, "protocol: Conventions"))
            slept = False
        if "error" in answer:
            if not isinstance(answer["error"], str) or key in answer:
                out.append(self._v("protocol", "an error answer carries one \"error\" string "
                                   f"and no {key!r}", request, answer, "protocol: Conventions"))
            if slept:
                out.append(self._v("protocol", "an error answer carries \"slept\"", request,
                                   answer, "only allocation results may carry slept"))
            if kind == VALID and (op != "kmem_cache_create"
                                  or "ENOMEM" not in str(answer["error"])):
                # kmem_cache_create may fail for want of memory (the kernel's NULL return,
                # the reference's -ENOMEM before its slab allocator can boot): it has no null
                # answer, so an error that says ENOMEM is its failure, and the cache does not
                # exist. Any other error (a subject refusing every cache) is not a failure.
                rule = "free" if op in FREE_OPS else "protocol"
                self.rules_checked[rule] += 1
                out.append(self._v(rule, f"a valid {op} was answered with an error", request,
                                   answer, _why(why)))
            elif kind == INVALID:
                self.rules_checked["sleep" if op == "vmalloc" else "free"] += 1
            return self._done(out)
        if key not in answer:
            out.append(self._v("protocol", f"the answer has neither {key!r} nor \"error\"",
                               request, answer, f"{op} answers {key!r}"))
            return self._done(out)
        if kind == INVALID:
            rule = "sleep" if op == "vmalloc" else "free"
            self.rules_checked[rule] += 1
            out.append(self._v(rule, f"an invalid {op} was not answered with an error",
                               request, answer, _why(why)))
            return self._done(out)
        if key == "ok":
            if answer["ok"] is not True or slept:
                out.append(self._v("protocol", "a successful answer is \"ok\": true, without "
                                   "slept", request, answer, f"{op} answers ok"))
                return self._done(out)
            if kind == VALID and op in FREE_OPS:
                rc["free"] += 1
            self._apply_ok(op, seq, kind, args)
            return out
        if op == "alloc_pages":
            self._check_alloc_pages(request, answer, seq, args, slept, out)
        elif op == "kmalloc":
            self._check_kmalloc(request, answer, seq, args, slept, out)
        elif op == "kmem_cache_alloc":
            self._check_cache_alloc(request, answer, seq, args, slept, out)
        else:
            self._check_vmalloc(request, answer, seq, args, slept, out)
        if ref_ans is not None and not out:
            self._check_exact(request, answer, ref_ans, key, out)
        if out:  # _done, inline on the path of every allocation
            self.violations.extend(out)
        return out

    def _done(self, out: list[Violation]) -> list[Violation]:
        if out:
            self.violations.extend(out)
        return out

    def _v(self, rule: str, message: str, request: dict[str, Any] | None,
           answer: Any, detail: str) -> Violation:
        seq = request.get("seq") if request else None
        return Violation(rule, message, seq if type(seq) is int else None, request,
                         answer if isinstance(answer, dict) else {"raw": answer}, detail)

    # --- exact mode -------------------------------------------------------------------------

    def _reference(self, request: dict[str, Any]) -> dict[str, Any] | None:
        if self._ref is None:
            return None
        try:
            ans, _ = self._ref.handle(request)
        except Exception as e:  # a bug of the model: never the subject's fault
            ans = {"seq": request.get("seq"), "error": f"internal error of the reference: {e!r}"}
        return ans if request.get("op") in self._ref_ops or request.get("op") == "bye" \
            else None

    def _check_exact(self, request: dict[str, Any], answer: dict[str, Any],
                     ref: dict[str, Any], key: str, out: list[Violation]) -> None:
        if key == "ok" or "error" in ref:
            return
        self.rules_checked["exact"] += 1
        mine: Any = answer.get(key)
        theirs: Any = ref.get(key)
        mine = int(mine, 16) if isinstance(mine, str) else mine
        theirs = int(theirs, 16) if isinstance(theirs, str) else theirs
        if request["op"] == "vmalloc" and theirs is not None and mine is not None:
            mine, theirs = (mine, answer.get("pfns")), (theirs, ref.get("pfns"))
        if mine != theirs:
            out.append(self._v("exact", f"{request['op']} answered {answer.get(key)} where "
                               f"the kernel's policy gives {ref.get(key)}", request, answer,
                               f"the reference (cli.subject, in-process, same requests) "
                               f"answers {ref!r}"))

    # --- allocation answers -----------------------------------------------------------------

    def _sleep_check(self, request: dict[str, Any], answer: dict[str, Any], w: _Where,
                     slept: bool, out: list[Violation]) -> None:
        self.rules_checked["sleep"] += 1
        if slept and not w.may_sleep:
            self._sleep_violation(request, answer, w, out)

    def _sleep_violation(self, request: dict[str, Any], answer: dict[str, Any], w: _Where,
                         out: list[Violation]) -> None:
        """The sleep rule broken: slept where spec.reserves.may_sleep says it must not."""
        why = (f"ctx {request.get('ctx')} is atomic" if w.ctx.atomic else
               f"the mask {format_gfp(w.gfp)} has no __GFP_DIRECT_RECLAIM")
        out.append(self._v("sleep", "the call slept where it must not", request, answer,
                           why + " (spec.reserves.may_sleep)"))

    def _check_alloc_pages(self, request: dict[str, Any], answer: dict[str, Any], seq: int,
                           args: tuple[int, _Where], slept: bool,
                           out: list[Violation]) -> None:
        order, w = args
        pfn = answer["pfn"]
        if pfn is not None and (type(pfn) is not int or pfn < 0):
            out.append(self._v("protocol", f"pfn must be a non-negative integer or null, got "
                               f"{pfn!r}", request, answer, "protocol: Conventions"))
            return
        rc = self.rules_checked
        rc["sleep"] += 1  # _sleep_check, inline on the hottest path
        if slept and not w.may_sleep:
            self._sleep_violation(request, answer, w, out)
        if order > self.max_order:
            if pfn is not None:
                out.append(self._v("protocol", f"order {order} above max_order "
                                   f"{self.max_order} was answered with a pfn", request, answer,
                                   "the kernel fails it (__alloc_pages: WARN_ON_ONCE, NULL)"))
                self._taint(("block", pfn))
            return
        if pfn is None:
            if self.liveness_active and w.may_sleep:
                self._check_liveness(request, answer, order, w, out)
            return
        n = 1 << order
        rc["align"] += 1
        aligned = block_aligned(pfn, order)
        if not aligned:
            out.append(self._v("align", f"pfn {_hex(pfn)} of an order-{order} block is not a "
                               f"multiple of {n}", request, answer,
                               f"the aligned block holding it starts at pfn {_hex(pfn & -n)}"))
        rc["range"] += 1
        z = self.zone_of_pfn(pfn)
        in_zone = z is not None and pfn + n <= z.end
        if z is None:
            out.append(self._v("range", f"pfn {_hex(pfn)} is in no zone", request, answer,
                               self._zones_text()))
        elif not in_zone:
            nz = self.zone_of_pfn(z.end)
            out.append(self._v("range", f"block pfn {_hex(pfn)}-{_hex(pfn + n - 1)} leaves "
                               f"{z.describe()}", request, answer,
                               f"it runs into {nz.describe() if nz else 'no zone'}"))
        elif not self._allowed_cache.get((z.zi, w.gfp, w.pref_nid)):
            # a cached True is the whole zone rule; anything else computes it (and reports)
            self._zone_rule(request, answer, z, w, out, zone_rule=True)
        rc["overlap"] += 1  # _record, inline: the overlap rule
        tag = ("block", seq, pfn, order)
        other = self._phys.add(pfn << self.page_shift, (pfn + n) << self.page_shift, tag)
        if other is not None:
            self._overlap(request, answer, tag, other, ("block", pfn), out)
        else:
            zi = z.zi if (aligned and in_zone and z is not None) else -1
            if zi < 0:
                self._runs_exact = False
            else:
                self._zone_used[zi] += n
                if self._track_runs:
                    self._runs.take(zi, pfn, order)
            self._blocks[pfn] = (order, seq, zi)
            self._block_set.add((pfn, order))

    def _zone_rule(self, request: dict[str, Any], answer: dict[str, Any], z: ZoneView,
                   w: _Where, out: list[Violation], *, zone_rule: bool) -> None:
        """The mask's zone (when ``zone_rule``) and __GFP_THISNODE's node: spec.rules
        allowed_zone, with the zone part dropped when ``zone_rule`` is false."""
        gfp = w.gfp if zone_rule else w.gfp & ~GFP_ZONEMASK  # no zone limit
        key = (z.zi, gfp, w.pref_nid)
        ok = self._allowed_cache.get(key)
        if ok is None:
            ok = self._allowed_cache[key] = allowed_zone(self._static_facts[z.zi], gfp,
                                                         w.pref_nid)
        if ok:
            return
        if zone_rule and not zone_allowed(z.zone, w.gfp):
            hz = int(gfp_zone(w.gfp))
            out.append(self._v("range", f"the memory is in {z.describe()}, a zone "
                               f"{format_gfp(w.gfp)} does not allow", request, answer,
                               f"the mask's highest zone is {ZONE_NAMES[hz]}; {z.name} is "
                               "above it"))
        else:
            how = "nid -1: the node of cpu " + str(w.cpu) if w.nid == NUMA_NO_NODE else \
                "the requested nid"
            out.append(self._v("range", f"__GFP_THISNODE pins node {w.pref_nid} ({how}), "
                               f"but the memory is on node {z.nid}", request, answer,
                               f"it lies in {z.describe()}"))

    def _taint(self, key: tuple[str, int]) -> None:
        """Something the subject handed out that the view cannot hold: its free becomes
        ambiguous, and the view no longer knows every used page (liveness stops)."""
        self._tainted.add(key)
        self._runs_exact = False

    def _record(self, request: dict[str, Any], answer: dict[str, Any], tag: tuple[Any, ...],
                lo: int, hi: int, taint: tuple[str, int], out: list[Violation]) -> bool:
        """The overlap rule for physical bytes [lo, hi): insert them, or report the live
        thing they overlap (and remember the key as handed out but unrecorded)."""
        self.rules_checked["overlap"] += 1
        other = self._phys.add(lo, hi, tag)
        if other is None:
            return True
        self._overlap(request, answer, tag, other, taint, out)
        return False

    def _overlap(self, request: dict[str, Any], answer: dict[str, Any], tag: tuple[Any, ...],
                 other: object, taint: tuple[str, int], out: list[Violation]) -> None:
        """The overlap rule broken: report the live thing overlapped, taint the key."""
        out.append(self._v("overlap", f"{self._describe(tag)} overlaps a live allocation",
                           request, answer, f"it shares memory with {self._describe(other)}"))
        self._taint(taint)

    def _check_liveness(self, request: dict[str, Any], answer: dict[str, Any], order: int,
                        w: _Where, out: list[Violation]) -> None:
        self.rules_checked["liveness"] += 1
        facts = [z.facts(self._runs.free_pages(z.zi), self._runs.max_run(z.zi))
                 for z in self.zones]
        if liveness_witness(facts, w.pref_nid, w.gfp, order) is None:
            return
        hz = int(gfp_zone(w.gfp))
        for z, f in zip(self.zones, facts, strict=True):
            why = liveness_witness([f], w.pref_nid, w.gfp, order)
            if why is None:
                continue
            need = z.min + z.lowmem_reserve[hz]
            hz_name = ZONE_NAMES[min(hz, 2)]  # the protocol's name: Normal for Movable
            run = self._free_run(z, order)
            run_text = (f"pfns {_hex(run)}-{_hex(run + (1 << order) - 1)} (order {order}) are "
                        "free" if run is not None else "")
            out.append(self._v(
                "liveness", f"alloc_pages order {order} {format_gfp(w.gfp)} in process "
                f"context failed while memory was free", request, answer,
                f"{z.describe()} has {f.free} free pages and must keep min {z.min} + "
                f"lowmem_reserve[{hz_name}] {z.lowmem_reserve[hz]} = {need}; "
                f"{run_text}, and taking them leaves {f.free - (1 << order)} >= {need}"))
            return

    def _free_run(self, z: ZoneView, order: int) -> int | None:
        """The first aligned free window of 2^order pages of zone ``z`` (for the report:
        walks the live blocks of the zone once)."""
        n = 1 << order
        s = self.page_shift
        cur = z.start
        for lo, hi, _ in self._phys.irange(z.start << s, z.end << s):
            base = -(-cur // n) * n
            if base + n <= min(lo >> s, z.end):
                return base
            cur = max(cur, -(-hi >> s))
        base = -(-cur // n) * n
        return base if base + n <= z.end else None

    def _object_checks(self, request: dict[str, Any], answer: dict[str, Any], addr: int,
                       size: int, w: _Where, zone_rule: bool, out: list[Violation]
                       ) -> ZoneView | None:
        """range for an object of ``size`` bytes at ``addr``: a direct-map address whose
        bytes lie in one zone; the mask's zone when ``zone_rule``; __GFP_THISNODE with an
        explicit node."""
        self.rules_checked["range"] += 1
        phys = addr - self.page_offset
        if phys < 0 or (phys + size - 1) >> self.page_shift >= self.max_pfn:
            out.append(self._v("range", f"{_hex(addr)} (+{size} bytes) is not a direct-map "
                               "address of this machine's memory", request, answer,
                               f"the direct map runs from page_offset {_hex(self.page_offset)} "
                               f"to {_hex(self.page_offset + (self.max_pfn << self.page_shift))}"))
            return None
        z = self.zone_of_pfn(phys >> self.page_shift)
        last = (phys + size - 1) >> self.page_shift
        if z is None:
            out.append(self._v("range", f"{_hex(addr)} maps pfn {_hex(phys >> self.page_shift)}"
                               ", which is in no zone", request, answer, self._zones_text()))
            return None
        if last >= z.end:
            out.append(self._v("range", f"the {size} bytes at {_hex(addr)} leave "
                               f"{z.describe()}", request, answer,
                               f"the last byte is in pfn {_hex(last)}"))
            return None
        if w.nid == NUMA_NO_NODE:
            w_node = w._replace(gfp=w.gfp & ~_GFP_THISNODE)
        else:
            w_node = w
        self._zone_rule(request, answer, z, w_node, out, zone_rule=zone_rule)
        return z

    def _parse_addr_answer(self, request: dict[str, Any], answer: dict[str, Any],
                           out: list[Violation]) -> int | bool | None:
        """The answer's addr: an int, None for null, False if malformed (reported)."""
        a = answer["addr"]
        if a is None:
            return None
        if isinstance(a, str) and _HEX_ADDR(a):  # lower-case hex, 0x prefix: Conventions
            v = int(a, 16)
            if v == 0:
                out.append(self._v("protocol", "a failed allocation answers null, not "
                                   "\"0x0\"", request, answer, "protocol: Conventions"))
                return False
            return v
        out.append(self._v("protocol", f"addr must be a \"0x...\" string of lower-case hex "
                           f"digits or null, got {a!r}", request, answer,
                           "protocol: Conventions (\"0xffff888000010000\")"))
        return False

    def _check_kmalloc(self, request: dict[str, Any], answer: dict[str, Any], seq: int,
                       args: tuple[int, _Where], slept: bool, out: list[Violation]) -> None:
        size, w = args
        if size == 0 and answer["addr"] == "0x0":
            addr: int | bool | None = 0
        else:
            addr = self._parse_addr_answer(request, answer, out)
            if addr is False:
                return
        self._sleep_check(request, answer, w, slept, out)
        if size == 0 or size > self.kmalloc_max:
            self.rules_checked["kmalloc-limits"] += 1
            if size == 0 and addr != ZERO_SIZE_PTR:
                out.append(self._v("kmalloc-limits", "kmalloc(0) must answer ZERO_SIZE_PTR "
                                   "\"0x10\"", request, answer,
                                   "include/linux/slab.h: ZERO_SIZE_PTR, returned for size 0"))
            elif size > self.kmalloc_max and addr is not None:
                out.append(self._v("kmalloc-limits", f"kmalloc({size}) above KMALLOC_MAX_SIZE "
                                   f"{self.kmalloc_max} must answer null", request, answer,
                                   f"KMALLOC_MAX_SIZE = page_size << max_order = "
                                   f"{self.page_size} << {self.max_order}"))
                self._taint(("addr", int(addr)))
            return
        if addr is None:
            return
        assert isinstance(addr, int)
        self.rules_checked["align"] += 1
        if not kmalloc_object_aligned(addr, size):
            out.append(self._v("align", f"kmalloc({size}) answered {_hex(addr)}, not aligned to "
                               f"{kmalloc_min_align(size)}", request, answer,
                               "8 bytes, and the size itself for a power of two (kmalloc() "
                               "kerneldoc, include/linux/slab.h)"))
        self._object_checks(request, answer, addr, size, w, bool(w.gfp & _GFP_DMA), out)
        phys = addr - self.page_offset
        if self._record(request, answer, ("kmalloc", seq, addr, size), phys, phys + size,
                        ("addr", addr), out):
            self._kmalloc[addr] = (size, seq)
            self._kmalloc_set.add(addr)

    def _check_cache_alloc(self, request: dict[str, Any], answer: dict[str, Any], seq: int,
                           args: tuple[CacheView, _Where], slept: bool,
                           out: list[Violation]) -> None:
        c, w = args
        addr = self._parse_addr_answer(request, answer, out)
        if addr is False:
            return
        self._sleep_check(request, answer, w, slept, out)
        if addr is None:
            return
        assert isinstance(addr, int)
        self.rules_checked["align"] += 1
        if not cache_object_aligned(addr, c.align):
            out.append(self._v("align", f"object {_hex(addr)} of cache {c.name!r} is not "
                               f"aligned to {max(c.align, 8)}", request, answer,
                               f"the cache was created with align {c.align} (seq {c.seq}); "
                               "objects are aligned to max(align, 8)"))
        self._object_checks(request, answer, addr, c.size, w, False, out)
        phys = addr - self.page_offset
        if self._record(request, answer, ("cache", seq, addr, c.name, c.size), phys,
                        phys + c.size, ("addr", addr), out):
            self._cache_obj[addr] = (c.name, seq)
            c.live.add(addr)
        else:
            c.tainted += 1

    def _check_vmalloc(self, request: dict[str, Any], answer: dict[str, Any], seq: int,
                       args: tuple[int, _Where], slept: bool, out: list[Violation]) -> None:
        size, w = args
        addr = self._parse_addr_answer(request, answer, out)
        if addr is False:
            return
        self._sleep_check(request, answer, w, slept, out)
        if size == 0:
            self.rules_checked["protocol"] += 1
            if addr is not None:
                out.append(self._v("protocol", "vmalloc(0) must answer addr null", request,
                                   answer, "protocol: vmalloc answers null for size 0"))
                self._taint(("vmalloc", int(addr)))
            return
        if addr is None:
            return
        assert isinstance(addr, int)
        ps, s = self.page_size, self.page_shift
        npages = -(-size // ps)
        pfns = answer.get("pfns")
        if not isinstance(pfns, list) or len(pfns) != npages or not all(
                type(p) is int and p >= 0 for p in pfns):
            out.append(self._v("protocol", f"vmalloc({size}) must answer pfns: a list of "
                               f"{npages} page frame numbers", request, answer,
                               f"ceil({size} / {ps}) = {npages}"))
            self._taint(("vmalloc", addr))
            return
        self.rules_checked["align"] += 1
        if addr % ps:
            out.append(self._v("align", f"vmalloc area {_hex(addr)} is not page aligned",
                               request, answer, f"page_size {ps}"))
        self.rules_checked["range"] += 1
        if not (self.vmalloc_start <= addr and addr + npages * ps <= self.vmalloc_end):
            out.append(self._v("range", f"vmalloc area {_hex(addr)}-{_hex(addr + npages * ps)} "
                               "leaves the vmalloc range", request, answer,
                               f"vmalloc_start {_hex(self.vmalloc_start)}, vmalloc_end "
                               f"{_hex(self.vmalloc_end)}"))
        for i, p in enumerate(pfns):
            if self.zone_of_pfn(p) is None:
                out.append(self._v("range", f"page {i} of the vmalloc area is pfn {_hex(p)}, "
                                   "which is in no zone", request, answer, self._zones_text()))
                break
        self.rules_checked["overlap"] += 1
        tag = ("vmalloc", seq, addr, npages)
        other = self._varea.add(addr, addr + (npages + 1) * ps, tag)
        if other is not None:
            out.append(self._v("overlap", f"vmalloc area {_hex(addr)}-{_hex(addr + npages * ps)}"
                               " has no guard page from a live area", request, answer,
                               f"it shares or touches {self._describe(other)}: at least one "
                               "unmapped page must lie between two areas"))
            self._taint(("vmalloc", addr))
            return
        done: list[int] = []
        for i, p in enumerate(pfns):
            ptag = ("vpage", seq, addr, i, p)
            hit = self._phys.add(p << s, (p + 1) << s, ptag)
            if hit is not None:
                out.append(self._v("overlap", f"page {i} of vmalloc area {_hex(addr)} (pfn "
                                   f"{_hex(p)}) is already in use", request, answer,
                                   f"it is {self._describe(hit)}"))
                for q in done:
                    self._phys.remove(q << s)
                self._varea.remove(addr)
                self._taint(("vmalloc", addr))
                return
            done.append(p)
        self._vmalloc[addr] = (size, tuple(pfns), seq)
        self._vmalloc_set.add(addr)

    # --- ok answers: the view follows valid (and accepted ambiguous) requests ------------

    def _apply_ok(self, op: str, seq: int, kind: str, args: Any) -> None:
        s = self.page_shift
        if op == "free_pages":
            pfn = args[0]
            b = self._blocks.pop(pfn, None)
            if b is None:
                self._tainted.discard(("block", pfn))
                return
            self._phys.remove(pfn << s)
            self._block_set.discard((pfn, b[0]))
            if b[2] >= 0:
                self._zone_used[b[2]] -= 1 << b[0]
                if self._track_runs:
                    self._runs.give(b[2], pfn, b[0])
        elif op in ("kfree", "kmem_cache_free"):
            addr = args if op == "kfree" else args[1]
            if addr in self._kmalloc:
                del self._kmalloc[addr]
                self._kmalloc_set.discard(addr)
                self._phys.remove(addr - self.page_offset)
            elif addr in self._cache_obj:
                name, _ = self._cache_obj.pop(addr)
                self._caches[name].live.discard(addr)
                self._phys.remove(addr - self.page_offset)
            elif ("addr", addr) in self._tainted:
                self._tainted.discard(("addr", addr))
                if op == "kmem_cache_free":
                    args[0].tainted = max(0, args[0].tainted - 1)
        elif op == "kmem_cache_create":
            name, size, align = args
            self._caches[name] = CacheView(name, size, align, seq)
        elif op == "kmem_cache_destroy":
            self._caches.pop(args.name, None)
        elif op == "vfree":
            v = self._vmalloc.pop(args, None)
            if v is None:
                self._tainted.discard(("vmalloc", args))
                return
            self._vmalloc_set.discard(args)
            self._varea.remove(args)
            for p in v[1]:
                self._phys.remove(p << s)
        # bye: nothing

    # --- reports ----------------------------------------------------------------------------

    def _describe(self, tag: Any) -> str:
        """A live thing of the view, named for a report."""
        kind = tag[0]
        if kind == "block":
            _, seq, pfn, order = tag
            return (f"the alloc_pages block pfn {_hex(pfn)}-{_hex(pfn + (1 << order) - 1)} "
                    f"(order {order}, seq {seq})")
        if kind == "kmalloc":
            _, seq, addr, size = tag
            return f"the kmalloc({size}) object {_hex(addr)} (seq {seq})"
        if kind == "cache":
            _, seq, addr, name, size = tag
            return f"the {size}-byte object {_hex(addr)} of cache {name!r} (seq {seq})"
        if kind == "vpage":
            _, seq, addr, i, pfn = tag
            return f"page {i} (pfn {_hex(pfn)}) of the vmalloc area {_hex(addr)} (seq {seq})"
        _, seq, addr, npages = tag
        return (f"the vmalloc area {_hex(addr)}-{_hex(addr + npages * self.page_size)} and "
                f"its guard page (seq {seq})")

    def _where_is_addr(self, addr: int) -> str:
        phys = addr - self.page_offset
        hit = self._phys.find(phys) if phys >= 0 else None
        if hit is None:
            v = self._varea.find(addr)
            return f": it lies in {self._describe(v[2])}" if v else ""
        return f": it lies in {self._describe(hit[2])}"

    def _zones_text(self) -> str:
        return "zones: " + ", ".join(z.describe() for z in self.zones)
