"""The scenario runner behind ``kmemspec run``: a script of allocator calls, one per line.

A scenario is parsed and checked whole before anything runs, so a typo on line 40 never leaves
half a run on the screen: unknown ops, unknown fields, unparsable values and ``$handles`` that
no earlier ``as=`` defines are :class:`spec.errors.ScenarioError` (exit 2). At run time every
op either completes or raises a KmemError; the runner prints that as the op's ``error:`` and
goes on, which is safe because the allocator leaves its state unchanged when it raises.

Line forms (blank lines and ``#`` comments are skipped)::

    {"op": "alloc_pages", "order": 3, "gfp": "GFP_KERNEL", "nid": -1, "cpu": 0, "ctx": "process"}
    alloc_pages order=3 gfp=GFP_KERNEL|__GFP_ZERO nid=-1 cpu=0 ctx=process as=a1
    free_pages pfn=$a1 order=3
    alloc_pages order=11 expect_null
    kmem_cache_create name=foo size=72 align=64 flags=SLAB_HWCACHE_ALIGN
    kmem_cache_alloc name=foo gfp=GFP_KERNEL as=o1
    kmalloc size=100 gfp=GFP_KERNEL as=k1
    kfree addr=$k1

The slab allocator (impl/slab_common.py) is booted at the first slab or kmalloc operation, so
page-only scenarios keep no slab pages.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cli.scenario_mm import execute_mm, mm_ops
from cli.text import plural
from cli.vmalloc_ops import VM_OPS, execute_vm
from impl.page_alloc import PageAllocator
from impl.slab_common import SlabAllocator
from impl.vmalloc import Vmalloc
from spec.context import Context, Effect
from spec.errors import KmemError, ScenarioError
from spec.gfp import __GFP_ZERO, GFP_KERNEL, format_gfp, parse_gfp
from spec.layout import NUMA_NO_NODE
from spec.slab import format_slab_flags, parse_slab_flags

_GFP_ZERO = __GFP_ZERO  # no name mangling inside the class


class Ref(NamedTuple):
    """``$NAME``: the result an earlier ``as=NAME`` bound."""

    name: str


ArgValue = int | str | Context | Ref | None

# Field kinds
INT, GFP, CTX, NAME, SFLAGS = "int", "gfp", "ctx", "name", "slab_flags"
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class OpSpec:
    """The fields an op takes: kind and default (``REQUIRED`` when it has none)."""

    fields: dict[str, tuple[str, ArgValue | str]]
    binds: bool = False  # accepts as=NAME
    allocates: bool = False  # counted in the allocation summary


REQUIRED = "<required>"
_CTX_CURRENT = None  # ctx omitted: the CPU's current context (enter/exit stack)

OPS: dict[str, OpSpec] = {
    # the subject protocol's page requests
    "alloc_pages": OpSpec({"order": (INT, 0), "gfp": (GFP, GFP_KERNEL),
                           "nid": (INT, NUMA_NO_NODE), "cpu": (INT, 0),
                           "ctx": (CTX, _CTX_CURRENT)}, binds=True, allocates=True),
    "free_pages": OpSpec({"pfn": (INT, REQUIRED), "order": (INT, 0)}),
    # the model's extras
    "get_free_pages": OpSpec({"order": (INT, 0), "gfp": (GFP, GFP_KERNEL), "cpu": (INT, 0),
                              "ctx": (CTX, _CTX_CURRENT)}, binds=True, allocates=True),
    "free_pages_addr": OpSpec({"addr": (INT, REQUIRED), "order": (INT, 0)}),
    "get_page": OpSpec({"pfn": (INT, REQUIRED)}),
    "put_page": OpSpec({"pfn": (INT, REQUIRED)}),
    "touch": OpSpec({"pfn": (INT, REQUIRED), "cpu": (INT, 0)}),
    "pagecache": OpSpec({"nid": (INT, 0), "pages": (INT, REQUIRED), "cpu": (INT, 0)}),
    "drop_caches": OpSpec({}),
    "kswapd": OpSpec({"nid": (INT, 0)}),
    "enter": OpSpec({"ctx": (CTX, REQUIRED), "cpu": (INT, 0)}),
    "exit": OpSpec({"ctx": (CTX, REQUIRED), "cpu": (INT, 0)}),
    # kmalloc and slab caches (the protocol's kmalloc and slab requests, and the model's extras)
    "kmalloc": OpSpec({"size": (INT, REQUIRED), "gfp": (GFP, GFP_KERNEL),
                       "nid": (INT, NUMA_NO_NODE), "cpu": (INT, 0), "ctx": (CTX, _CTX_CURRENT)},
                      binds=True, allocates=True),
    "kzalloc": OpSpec({"size": (INT, REQUIRED), "gfp": (GFP, GFP_KERNEL),
                       "nid": (INT, NUMA_NO_NODE), "cpu": (INT, 0), "ctx": (CTX, _CTX_CURRENT)},
                      binds=True, allocates=True),
    "kcalloc": OpSpec({"n": (INT, REQUIRED), "size": (INT, REQUIRED), "gfp": (GFP, GFP_KERNEL),
                       "cpu": (INT, 0), "ctx": (CTX, _CTX_CURRENT)}, binds=True, allocates=True),
    "krealloc": OpSpec({"addr": (INT, REQUIRED), "size": (INT, REQUIRED),
                        "gfp": (GFP, GFP_KERNEL), "cpu": (INT, 0), "ctx": (CTX, _CTX_CURRENT)},
                       binds=True, allocates=True),
    "kfree": OpSpec({"addr": (INT, REQUIRED), "cpu": (INT, 0)}),
    "ksize": OpSpec({"addr": (INT, REQUIRED)}),
    "kmem_cache_create": OpSpec({"name": (NAME, REQUIRED), "size": (INT, REQUIRED),
                                 "align": (INT, 0), "flags": (SFLAGS, 0)}),
    "kmem_cache_alloc": OpSpec({"name": (NAME, REQUIRED), "gfp": (GFP, GFP_KERNEL),
                                "nid": (INT, NUMA_NO_NODE), "cpu": (INT, 0),
                                "ctx": (CTX, _CTX_CURRENT)}, binds=True, allocates=True),
    "kmem_cache_zalloc": OpSpec({"name": (NAME, REQUIRED), "gfp": (GFP, GFP_KERNEL),
                                 "cpu": (INT, 0), "ctx": (CTX, _CTX_CURRENT)},
                                binds=True, allocates=True),
    "kmem_cache_free": OpSpec({"name": (NAME, REQUIRED), "addr": (INT, REQUIRED),
                               "cpu": (INT, 0)}),
    "kmem_cache_shrink": OpSpec({"name": (NAME, REQUIRED)}),
    "kmem_cache_destroy": OpSpec({"name": (NAME, REQUIRED)}),
    # vmalloc (the protocol's vmalloc and vfree requests, and the model's extras)
    "vmalloc": OpSpec({"size": (INT, REQUIRED), "gfp": (GFP, GFP_KERNEL),
                       "nid": (INT, NUMA_NO_NODE), "cpu": (INT, 0), "ctx": (CTX, _CTX_CURRENT)},
                      binds=True, allocates=True),
    "vzalloc": OpSpec({"size": (INT, REQUIRED), "gfp": (GFP, GFP_KERNEL),
                       "nid": (INT, NUMA_NO_NODE), "cpu": (INT, 0), "ctx": (CTX, _CTX_CURRENT)},
                      binds=True, allocates=True),
    "vfree": OpSpec({"addr": (INT, REQUIRED), "cpu": (INT, 0), "ctx": (CTX, _CTX_CURRENT)}),
    "vmalloc_to_pfn": OpSpec({"addr": (INT, REQUIRED)}, binds=True),
    "purge_vmap": OpSpec({}),
}
MM_OPS = mm_ops(OpSpec, INT, GFP, NAME, REQUIRED)  # processes: cli/scenario_mm.py
OPS.update(MM_OPS)
SLAB_OPS = ("kmalloc", "kzalloc", "kcalloc", "krealloc", "kfree", "ksize",
            "kmem_cache_create", "kmem_cache_alloc", "kmem_cache_zalloc", "kmem_cache_free",
            "kmem_cache_shrink", "kmem_cache_destroy")

EXPECTS = ("null", "error")
_KSWAPD_RE = re.compile(r"reclaimed (\d+) pages")
_RECLAIMED_RE = re.compile(r"\d+")


@dataclass
class Step:
    """One parsed scenario line."""

    lineno: int
    op: str
    args: dict[str, ArgValue]
    bind: str | None = None
    expect: str | None = None


# --- parsing -----------------------------------------------------------------------------------
def _parse_int(text: str, where: str) -> int | Ref:
    if text.startswith("$"):
        name = text[1:]
        if not _NAME_RE.match(name):
            raise ScenarioError(f"{where}: bad handle {text!r}")
        return Ref(name)
    try:
        return int(text, 0)
    except ValueError:
        raise ScenarioError(f"{where}: {text!r} is not an integer (decimal, 0x hex or $handle)"
                            ) from None


def _parse_value(kind: str, raw: Any, where: str) -> ArgValue:
    """A field's value from a text token or a JSON value."""
    if kind == INT:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ScenarioError(f"{where}: expected an integer, got {raw!r}")
        return raw if isinstance(raw, int) else _parse_int(raw.strip(), where)
    if not isinstance(raw, str):
        raise ScenarioError(f"{where}: expected a string, got {raw!r}")
    if kind == NAME:
        return raw
    if kind == SFLAGS:
        try:
            return parse_slab_flags(raw)
        except ValueError as e:
            raise ScenarioError(f"{where}: {e}") from None
    if kind == GFP:
        # Names are checked here; zone-bit combinations are the allocator's to reject at run
        # time (a GfpError on the op's line), as the kernel's gfp_zone() would.
        try:
            return parse_gfp(raw, validate=False)
        except KmemError as e:
            raise ScenarioError(f"{where}: {e}") from None
    try:
        return Context.parse(raw)
    except KmemError as e:
        raise ScenarioError(f"{where}: {e}") from None


def _build_step(lineno: int, op: Any, fields: dict[str, Any], flags: list[str],
                where: str) -> Step:
    if op in ("hello", "bye"):  # a pasted protocol transcript
        raise ScenarioError(f"{where}: {op} belongs to the subject protocol, not to a scenario "
                            "(the machine is --machine or a '# machine: NAME' line; a machine "
                            "file is a hello as JSON)")
    if not isinstance(op, str) or op not in OPS:
        close = (difflib.get_close_matches(op, OPS, n=1, cutoff=0.75) if isinstance(op, str)
                 else [])
        hint = f"did you mean {close[0]}? " if close else ""
        raise ScenarioError(f"{where}: unknown op {op!r} ({hint}ops: {', '.join(OPS)})")
    spec = OPS[op]
    step = Step(lineno, op, {})
    for flag in flags:
        if flag.startswith("expect_") and flag[7:] in EXPECTS:
            step.expect = flag[7:]
        else:
            raise ScenarioError(f"{where}: unknown word {flag!r} (expected key=value, "
                                "expect_null or expect_error)")
    for key, raw in fields.items():
        if key == "as":
            if not spec.binds:
                raise ScenarioError(f"{where}: {op} has no result to name with as=")
            if not isinstance(raw, str) or not _NAME_RE.match(raw):
                raise ScenarioError(f"{where}: bad handle name {raw!r}")
            step.bind = raw
        elif key == "expect":
            if raw not in EXPECTS:
                raise ScenarioError(f"{where}: expect must be one of {', '.join(EXPECTS)}")
            step.expect = str(raw)
        elif key in spec.fields:
            step.args[key] = _parse_value(spec.fields[key][0], raw, f"{where}: {key}")
        else:
            known = ", ".join([*spec.fields, *(["as"] if spec.binds else [])]) or "none"
            raise ScenarioError(f"{where}: {op} has no field {key!r} (fields: {known})")
    args: dict[str, ArgValue] = {}
    for key, (_, default) in spec.fields.items():  # in the op's own argument order
        if key in step.args:
            args[key] = step.args[key]
        elif default == REQUIRED:
            raise ScenarioError(f"{where}: {op} needs {key}=")
        else:
            args[key] = default if not isinstance(default, str) else None
    step.args = args
    return step


def parse_line(lineno: int, line: str, where: str) -> Step | None:
    """One line: a JSON object, a compact ``op key=value ... [expect_x]`` line, or nothing."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith(("{", "[", '"')):  # JSON: an object, or a mistake
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ScenarioError(f"{where}: not valid JSON: {e.msg} at column {e.colno}") from None
        if not isinstance(obj, dict):
            raise ScenarioError(f"{where}: a JSON line must be an object")
        obj.pop("seq", None)  # transcripts of protocol sessions paste as they are
        op = obj.pop("op", None)
        return _build_step(lineno, op, obj, [], where)
    text = re.split(r"\s#", text, maxsplit=1)[0]
    words = text.split()
    fields: dict[str, Any] = {}
    flags: list[str] = []
    for w in words[1:]:
        if "=" in w:
            k, v = w.split("=", 1)
            if k in fields:
                raise ScenarioError(f"{where}: {k}= given twice")
            fields[k] = v
        else:
            flags.append(w)
    return _build_step(lineno, words[0], fields, flags, where)


def parse_scenario(text: str, path: str = "<scenario>") -> list[Step]:
    """Parse and check a whole scenario; ScenarioError names the first bad line."""
    steps: list[Step] = []
    bound: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{lineno}"
        step = parse_line(lineno, line, where)
        if step is None:
            continue
        for key, v in step.args.items():
            if isinstance(v, Ref) and v.name not in bound:
                raise ScenarioError(f"{where}: {key}=${v.name} refers to a handle no earlier "
                                    "line defines with as=")
        if step.bind:
            bound.add(step.bind)
        steps.append(step)
    return steps


# --- running -----------------------------------------------------------------------------------
def _check_pagecache_pages(a: PageAllocator, nid: Any, pages: Any) -> None:
    """``pagecache pages=N`` reads N pages one by one, each reclaiming an older one once the
    node is full: more than the node's managed pages only evicts what the same op added, and
    a mistyped 99999999999999 ran for ever. A bad nid is left to pagecache_add."""
    if type(nid) is int and 0 <= nid < len(a.machine.nodes) and type(pages) is int:
        managed = sum(z.managed for z in a.machine.nodes[nid].zones)
        if not 0 <= pages <= managed:
            raise ScenarioError(f"pagecache: pages={pages} must be 0..{managed}, the managed "
                                f"pages of node {nid}")


@dataclass
class Summary:
    """What a run did, for the closing report."""

    ops: int = 0
    errors: int = 0
    allocs_ok: int = 0
    allocs_failed: int = 0
    sleeps: int = 0
    direct_reclaimed: int = 0
    kswapd_reclaimed: int = 0
    kswapd_wakeups: int = 0
    dropped: int = 0
    warnings: int = 0
    expect_failed: int = 0
    cpu_cost: dict[int, tuple[int, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ops": self.ops, "errors": self.errors, "allocations_ok": self.allocs_ok,
            "allocations_failed": self.allocs_failed, "sleeps": self.sleeps,
            "reclaimed_direct": self.direct_reclaimed, "reclaimed_kswapd": self.kswapd_reclaimed,
            "kswapd_wakeups": self.kswapd_wakeups, "dropped_caches": self.dropped,
            "warnings": self.warnings, "expectations_failed": self.expect_failed,
            "access_cost": {str(c): {"accesses": n, "cost": cost}
                            for c, (n, cost) in self.cpu_cost.items()},
        }

    def lines(self) -> list[str]:
        out = [
            f"summary: {plural(self.ops, 'op')}, {plural(self.errors, 'error')}",
            f"  allocations: {self.allocs_ok} ok, {self.allocs_failed} failed",
            f"  sleeps (direct reclaim entered): {self.sleeps}",
            f"  reclaimed pages: {self.direct_reclaimed + self.kswapd_reclaimed} "
            f"({self.direct_reclaimed} direct, {self.kswapd_reclaimed} by kswapd)",
            f"  kswapd wake-ups: {self.kswapd_wakeups}",
            f"  allocation-failure warnings: {self.warnings}",
        ]
        if self.dropped:
            out.append(f"  page cache dropped: {self.dropped} pages")
        if self.expect_failed:
            out.append(f"  EXPECTATIONS FAILED: {self.expect_failed}")
        out.append("  remote-access cost per CPU (sum of node distances / accesses):")
        for cpu, (n, cost) in self.cpu_cost.items():
            if n:
                out.append(f"    cpu {cpu}: {plural(n, 'access', 'accesses')}, cost {cost} "
                           f"({cost / n:.2f} per access)")
        if not any(n for n, _ in self.cpu_cost.values()):
            out.append("    (no accesses)")
        return out


@dataclass
class Outcome:
    """One executed step: its text line and its JSON record."""

    text: str
    record: dict[str, Any]
    failed_expectation: bool = False


def _fmt_effects(effects: list[Effect]) -> str:
    """Effects in order of first appearance; repeats of one kind on one node are folded into
    a count (reclaims into their page total), so a long direct-reclaim loop stays one line."""
    groups: dict[tuple[str, int], list[Effect]] = {}
    for e in effects:
        groups.setdefault((e.kind, e.nid), []).append(e)
    parts = []
    for (kind, nid), es in groups.items():
        if kind == "reclaim":
            pages = sum(int(m.group()) for e in es if (m := _RECLAIMED_RE.match(e.detail)))
            detail = f"{pages} page-cache pages"
        else:
            detail = es[0].detail
        times = f" x{len(es)}" if len(es) > 1 else ""
        parts.append(f"{kind}(node {nid}: {detail}){times}")
    return ", ".join(parts)


def _fmt_args(step: Step, args: dict[str, Any]) -> str:
    parts = []
    for k, v in args.items():
        if k == "gfp":
            parts.append(f"gfp={format_gfp(v)}")
        elif k == "flags":
            parts.append(f"flags={format_slab_flags(v)}")
        elif k == "ctx":
            if v is not None:
                parts.append(f"ctx={v.name.lower()}")
        elif isinstance(v, Ref):
            parts.append(f"{k}=${v.name}")
        elif k in ("pfn", "addr") and isinstance(v, int) and v >= 0:
            parts.append(f"{k}={v:#x}")
        else:
            parts.append(f"{k}={v}")
    if step.bind:
        parts.append(f"as={step.bind}")
    return " ".join(parts)


def _json_arg(key: str, v: Any) -> Any:
    if isinstance(v, Ref):
        return f"${v.name}"
    if isinstance(v, Context):
        return v.name.lower()
    if key == "gfp":
        return format_gfp(v)
    if key == "flags":
        return format_slab_flags(v)
    if key == "addr" and isinstance(v, int):
        return hex(v)
    return v


class Runner:
    """Executes steps against one PageAllocator, keeping handles and the summary."""

    def __init__(self, a: PageAllocator, *, slabinfo: str | None = None) -> None:
        self.a = a
        self.handles: dict[str, int | None] = {}
        self.summary = Summary()
        self.slabinfo = slabinfo
        self.sa: SlabAllocator | None = None  # booted by the first slab operation
        self.vm: Vmalloc | None = None  # booted by the first vmalloc operation

    def slab(self) -> SlabAllocator:
        """The slab allocator over this run's page allocator (booted on first use)."""
        if self.sa is None:
            self.sa = SlabAllocator(self.a, slabinfo=self.slabinfo)
        return self.sa

    def vmalloc(self) -> Vmalloc:
        """vmalloc over this run's page allocator (booted on first use)."""
        if self.vm is None:
            self.vm = Vmalloc(self.a)
        return self.vm

    def _resolve(self, step: Step) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in step.args.items():
            if isinstance(v, Ref):
                val = self.handles[v.name]
                if val is None:
                    raise ScenarioError(f"${v.name} is NULL: its allocation failed")
                out[k] = val
            else:
                out[k] = v
        return out

    def _alloc_result(self, pfn: int, cpu: int, what: str) -> tuple[str, dict[str, Any]]:
        """Describe a successful allocation; the allocating CPU makes the first touch."""
        z = self.a.zone_of_pfn(pfn)
        assert z is not None
        dist = self.a.touch(pfn, cpu)
        text = (f"{what}pfn {pfn:#x} ({pfn}) node {z.nid} {z.name}, "
                f"distance {dist} from cpu {cpu}")
        return text, {"pfn": pfn, "node": z.nid, "zone": z.name, "distance": dist}

    def _execute(self, step: Step, args: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
        """Run one op; (result text, result record, result is a NULL allocation)."""
        a = self.a
        op = step.op
        if op == "alloc_pages":
            pfn = a.alloc_pages_node(args["nid"], args["gfp"], args["order"], cpu=args["cpu"],
                                     ctx=args["ctx"])
            if step.bind:
                self.handles[step.bind] = pfn
            if pfn is None:
                return "NULL", {"pfn": None}, True
            text, rec = self._alloc_result(pfn, args["cpu"], "")
            return text, rec, False
        if op == "get_free_pages":
            addr = a.get_free_pages(args["gfp"], args["order"], cpu=args["cpu"], ctx=args["ctx"])
            if step.bind:
                self.handles[step.bind] = addr
            if addr == 0:
                return "0 (NULL)", {"addr": "0x0"}, True
            text, rec = self._alloc_result(a.virt_to_pfn(addr), args["cpu"], f"addr {addr:#x}, ")
            return text, {"addr": hex(addr), **rec}, False
        if op == "free_pages":
            a.free_pages_pfn(args["pfn"], args["order"])
            return "ok", {"ok": True}, False
        if op == "free_pages_addr":
            a.free_pages(args["addr"], args["order"])
            return "ok", {"ok": True}, False
        if op == "get_page":
            a.get_page(args["pfn"])
            return f"ok, page_count {a.page_count(args['pfn'])}", {"ok": True}, False
        if op == "put_page":
            a.put_page(args["pfn"])
            return f"ok, page_count {a.page_count(args['pfn'])}", {"ok": True}, False
        if op == "touch":
            d = a.touch(args["pfn"], args["cpu"])
            return f"distance {d}", {"distance": d}, False
        if op == "pagecache":
            _check_pagecache_pages(a, args["nid"], args["pages"])
            n = a.pagecache_add(args["nid"], args["pages"], cpu=args["cpu"])
            return f"{plural(n, 'page')} added", {"added": n}, False
        if op == "drop_caches":
            n = a.drop_caches()
            self.summary.dropped += n
            return f"{plural(n, 'page')} freed", {"freed": n}, False
        if op == "kswapd":
            n = a.kswapd(args["nid"])  # counted from its kswapd_run effect
            return f"{plural(n, 'page')} reclaimed", {"reclaimed": n}, False
        if op in SLAB_OPS:
            return self._execute_slab(step, args, self.slab())
        if op in VM_OPS:
            text, rec, null, handle = execute_vm(self.vmalloc(), op, args)
            if step.bind:
                self.handles[step.bind] = handle
            return text, rec, null
        if op in MM_OPS:
            return execute_mm(self, step, args)
        if op in ("enter", "exit"):
            getattr(a, op)(args["ctx"], args["cpu"])
            now = a.context(args["cpu"]).name.lower()
            return f"cpu {args['cpu']} now in {now} context", {"context": now}, False
        raise AssertionError(op)  # parse_scenario admits only OPS

    def _execute_slab(self, step: Step, args: dict[str, Any],
                      sa: SlabAllocator) -> tuple[str, dict[str, Any], bool]:
        op = step.op
        if op in ("kmalloc", "kzalloc", "kcalloc", "krealloc", "kmem_cache_alloc",
                  "kmem_cache_zalloc"):
            cpu, ctx = args["cpu"], args["ctx"]
            if op in ("kmalloc", "kzalloc"):
                gfp = args["gfp"] | (_GFP_ZERO if op == "kzalloc" else 0)
                addr = sa.kmalloc_node(args["size"], gfp, args["nid"], cpu=cpu, ctx=ctx)
            elif op == "kcalloc":
                addr = sa.kcalloc(args["n"], args["size"], args["gfp"], cpu=cpu, ctx=ctx)
            elif op == "krealloc":
                addr = sa.krealloc(args["addr"], args["size"], args["gfp"], cpu=cpu, ctx=ctx)
            elif op == "kmem_cache_zalloc":
                addr = sa.kmem_cache_zalloc(args["name"], args["gfp"], cpu=cpu, ctx=ctx)
            else:
                addr = sa.kmem_cache_alloc_node(args["name"], args["gfp"], args["nid"],
                                                cpu=cpu, ctx=ctx)
            if step.bind:
                self.handles[step.bind] = addr
            if addr is None:
                return "NULL", {"addr": None}, True
            if addr <= 16:
                return f"{addr:#x} (ZERO_SIZE_PTR)", {"addr": hex(addr)}, False
            pfn = (addr - self.a.page_offset) >> 12
            text, rec = self._alloc_result(pfn, args["cpu"], f"addr {addr:#x}, ")
            big = sa.large.get(addr)
            where = (f"large kmalloc, order {big[1]}" if big is not None
                     else f"{sa.lookup_object(addr)[0].cache.name}")
            return f"{text} ({where})", {"addr": hex(addr), **rec, "from": where}, False
        if op == "kfree":
            sa.kfree(args["addr"], cpu=args["cpu"])
            return "ok", {"ok": True}, False
        if op == "ksize":
            n = sa.ksize(args["addr"])
            return f"{n} bytes", {"ksize": n}, False
        if op == "kmem_cache_create":
            c = sa.kmem_cache_create(args["name"], args["size"], args["align"], args["flags"])
            merged = f", merged into {c.name}" if c.name != args["name"] else ""
            return (f"ok: object size {c.object_size}, stride {c.size}, align {c.align}, "
                    f"{c.oo_objects} objects per slab of order {c.oo_order}{merged}",
                    {"ok": True, "size": c.size, "objperslab": c.oo_objects,
                     "order": c.oo_order, "cache": c.name}, False)
        if op == "kmem_cache_free":
            sa.kmem_cache_free(args["name"], args["addr"], cpu=args["cpu"])
            return "ok", {"ok": True}, False
        if op == "kmem_cache_shrink":
            r = sa.kmem_cache_shrink(args["name"])
            return f"{r} ({'slabs remain' if r else 'no slab left'})", {"result": r}, False
        sa.kmem_cache_destroy(args["name"])
        return "ok", {"ok": True}, False

    def step(self, step: Step) -> Outcome:
        """Run one step; a KmemError becomes the step's error (state unchanged)."""
        s = self.summary
        s.ops += 1
        args: dict[str, Any] = {k: v for k, v in step.args.items()}
        error: str | None = None
        is_null = False
        rec: dict[str, Any] = {}
        try:
            args = self._resolve(step)
            result, rec, is_null = self._execute(step, args)
        except KmemError as exc:
            error = str(exc).replace("\n", " ")
            result = f"error: {error}"
            if step.bind:
                self.handles[step.bind] = None
            s.errors += 1
        effects = self.a.drain_effects()
        for eff in effects:
            if eff.kind == "sleep":
                s.sleeps += 1
            elif eff.kind == "reclaim":
                m = _RECLAIMED_RE.match(eff.detail)
                s.direct_reclaimed += int(m.group()) if m else 0
            elif eff.kind == "kswapd_wake":
                s.kswapd_wakeups += 1
            elif eff.kind == "kswapd_run":
                m = _KSWAPD_RE.search(eff.detail)
                s.kswapd_reclaimed += int(m.group(1)) if m else 0
            elif eff.kind == "warn":
                s.warnings += 1
        if OPS[step.op].allocates and error is None:
            if is_null:
                s.allocs_failed += 1
            else:
                s.allocs_ok += 1
        expect_ok = True
        if step.expect == "null":
            expect_ok = error is None and is_null
        elif step.expect == "error":
            expect_ok = error is not None
        argtext = _fmt_args(step, args)
        text = f"{step.lineno:4d}: {step.op}{' ' if argtext else ''}{argtext} -> {result}"
        if effects:
            text += f"; effects: {_fmt_effects(effects)}"
        if step.expect:
            text += f" [expect_{step.expect}: {'ok' if expect_ok else 'FAILED'}]"
        if not expect_ok:
            s.expect_failed += 1
        record: dict[str, Any] = {
            "line": step.lineno, "op": step.op,
            "args": {k: _json_arg(k, v) for k, v in args.items()},
            **rec,
            "effects": [{"kind": e.kind, "nid": e.nid, "detail": e.detail} for e in effects],
        }
        if error is not None:
            record["error"] = error
        if step.bind:
            record["as"] = step.bind
        if step.expect:
            record["expect"] = step.expect
            record["expect_ok"] = expect_ok
        return Outcome(text, record, not expect_ok)

    def finish(self) -> Summary:
        """Fill in the per-CPU access costs (a.access_cost / a.accesses)."""
        self.summary.cpu_cost = {c: (self.a.accesses[c], self.a.access_cost[c])
                                 for c in sorted(self.a.accesses)}
        return self.summary


def run_steps(a: PageAllocator, steps: list[Step], emit: Callable[[Outcome], None], *,
              runner: Runner | None = None) -> Summary:
    """Run every step in order, handing each outcome to ``emit`` as it completes."""
    r = runner if runner is not None else Runner(a)
    for st in steps:
        emit(r.step(st))
    return r.finish()
