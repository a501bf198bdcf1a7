"""Scenario ops for processes, shared buffers, migration and compaction (``kmemspec run``).

cli/scenario.py adds :data:`MM_OPS` to its op table and hands these ops to :func:`execute_mm`;
the :class:`impl.fork.Processes` of a run is created at its first process op. Lines::

    spawn as=init                                  # a process with an empty mm -> its pid
    fork pid=$init as=child                        # dup_mmap with copy-on-write -> child pid
    exit_process pid=$child                        # exit_mmap
    mmap pid=$init length=0x10000 as=a             # anonymous private, top-down -> address
    mmap pid=$init length=4096 addr=0x10000 fixed=1 prot=1
    fault pid=$init addr=$a pages=16 write=1       # handle_mm_fault on each page -> pfn(s)
    write pid=$child addr=$a value=7               # a word (fault + COW) -> pfn
    read pid=$init addr=$a                         # -> the word
    resolve pid=$init addr=$a                      # the pfn mapped now (or none)
    munmap pid=$init addr=$a length=4096 count=8 stride=8192   # count ranges, stride apart
    buffer_alloc pages=4 gfp=GFP_USER as=buf       # a driver's buffer -> buffer id
    buffer_mmap pid=$init buf=$buf as=ua           # driver mmap: vm_insert_page of each page
    buffer_free buf=$buf                           # the kernel drops its reference
    migrate pfn=0x123                              # migrate_pages of one page -> new pfn
    compact nid=-1 order=-1                        # compact_memory (every node), or one zone
    show what=buddyinfo                            # /proc/buddyinfo or /proc/pagetypeinfo now
    maps pid=$init                                 # /proc/PID/maps
    check_mm                                       # spec/mm_state.py invariants, now
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from cli.text import plural
from impl.compaction import CompactResult, compact_node, compact_nodes, compact_zone
from impl.fork import Processes, abstract_mm
from impl.migrate import migrate_page
from impl.mmap import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE
from impl.views import buddyinfo, pagetypeinfo
from spec.errors import BadNodeError, ScenarioError
from spec.gfp import GFP_USER
from spec.layout import NUMA_NO_NODE, PAGE_SIZE
from spec.mm_state import MmState, mm_step_violations, mm_violations

if TYPE_CHECKING:
    from cli.scenario import ArgValue, OpSpec, Runner, Step


def mm_ops(op_spec: type[OpSpec], int_kind: str, gfp_kind: str, name_kind: str,
           required: str) -> dict[str, OpSpec]:
    """The op table entries (built with cli/scenario.py's own OpSpec and field kinds)."""
    INT, GFP, NAME, REQ = int_kind, gfp_kind, name_kind, required

    def spec(fields: dict[str, tuple[str, ArgValue | str]], binds: bool = False,
             allocates: bool = False) -> OpSpec:
        return op_spec(fields, binds=binds, allocates=allocates)

    return {
        "spawn": spec({"cpu": (INT, 0)}, binds=True),
        "fork": spec({"pid": (INT, REQ), "cpu": (INT, 0)}, binds=True),
        "exit_process": spec({"pid": (INT, REQ)}),
        "mmap": spec({"pid": (INT, REQ), "length": (INT, REQ), "addr": (INT, 0),
                      "prot": (INT, PROT_READ | PROT_WRITE), "fixed": (INT, 0)}, binds=True),
        "munmap": spec({"pid": (INT, REQ), "addr": (INT, REQ), "length": (INT, REQ),
                        "count": (INT, 1), "stride": (INT, 0)}),
        "fault": spec({"pid": (INT, REQ), "addr": (INT, REQ), "write": (INT, 1),
                       "pages": (INT, 1), "cpu": (INT, 0)}, binds=True),
        "write": spec({"pid": (INT, REQ), "addr": (INT, REQ), "value": (INT, REQ),
                       "cpu": (INT, 0)}, binds=True),
        "read": spec({"pid": (INT, REQ), "addr": (INT, REQ)}, binds=True),
        "resolve": spec({"pid": (INT, REQ), "addr": (INT, REQ)}, binds=True),
        "buffer_alloc": spec({"pages": (INT, REQ), "gfp": (GFP, GFP_USER),
                              "nid": (INT, NUMA_NO_NODE), "cpu": (INT, 0)},
                             binds=True, allocates=True),
        "buffer_mmap": spec({"pid": (INT, REQ), "buf": (INT, REQ)}, binds=True),
        "buffer_free": spec({"buf": (INT, REQ)}),
        "migrate": spec({"pfn": (INT, REQ)}, binds=True),
        "compact": spec({"nid": (INT, NUMA_NO_NODE), "order": (INT, -1)}),
        "show": spec({"what": (NAME, REQ)}),
        "maps": spec({"pid": (INT, REQ)}),
        "check_mm": spec({}),
    }


VIEWS = ("buddyinfo", "pagetypeinfo")


@dataclass
class MmRun:
    """A run's processes (over its page allocator) and the last state check_mm saw."""

    ps: Processes
    last: MmState | None = None


_RUNS: WeakKeyDictionary[Runner, MmRun] = WeakKeyDictionary()


def mm_run(r: Runner) -> MmRun:
    """The run's processes, created at its first process op."""
    run = _RUNS.get(r)
    if run is None:
        run = _RUNS[r] = MmRun(Processes(r.a, kernel=r.vmalloc().pgtable))
    return run


def _compact_text(rs: list[CompactResult]) -> tuple[str, dict[str, Any]]:
    text = "; ".join(x.line() for x in rs)
    rec = [{"nid": x.nid, "zone": x.zone, "status": x.status, "migrated": x.migrated,
            "failed": x.failed, "migrate_scanned": x.migrate_scanned,
            "free_scanned": x.free_scanned} for x in rs]
    return text, {"compact": rec}


def execute_mm(r: Runner, step: Step, args: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
    """Run one process op; (result text, result record, is a NULL allocation)."""
    run = mm_run(r)
    ps = run.ps
    op = step.op
    result: int | None = None
    text: str
    rec: dict[str, Any]
    if op == "spawn":
        result = ps.spawn(cpu=args["cpu"])
        text, rec = f"pid {result}", {"pid": result}
    elif op == "fork":
        before = len(ps.mm_of(args["pid"]).ptes)
        result = ps.fork(args["pid"], cpu=args["cpu"])
        text = (f"pid {result} ({plural(before, 'page')} shared, private ones "
                "write-protected for COW)")
        rec = {"pid": result}
    elif op == "exit_process":
        free = r.a.nr_free_pages()
        ps.exit(args["pid"])
        n = r.a.nr_free_pages() - free
        text, rec = f"ok, {plural(n, 'page')} back to the buddy allocator", {"freed": n}
    elif op == "mmap":
        flags = MAP_PRIVATE | MAP_ANONYMOUS | (MAP_FIXED if args["fixed"] else 0)
        result = ps.mmap(args["pid"], args["length"], addr=args["addr"], prot=args["prot"],
                         flags=flags)
        text, rec = f"addr {result:#x}", {"addr": hex(result)}
    elif op == "munmap":
        n = 0
        for i in range(max(args["count"], 1)):
            n += ps.munmap(args["pid"], args["addr"] + i * args["stride"], args["length"])
        text, rec = f"{plural(n, 'page')} unmapped", {"unmapped": n}
    elif op == "fault":
        pfns = [ps.fault(args["pid"], args["addr"] + i * PAGE_SIZE, write=bool(args["write"]),
                         cpu=args["cpu"]) for i in range(max(args["pages"], 1))]
        result = pfns[0]
        text = (f"pfn {result:#x}" if len(pfns) == 1
                else f"{len(pfns)} pages, pfns {pfns[0]:#x}..{max(pfns):#x}")
        rec = {"pfns": pfns}
    elif op == "write":
        old = ps.resolve(args["pid"], args["addr"])
        result = ps.write(args["pid"], args["addr"], args["value"], cpu=args["cpu"])
        how = ("" if old == result else " (new page)" if old is None
               else f" (copy-on-write: copied from {old:#x})")
        text, rec = f"pfn {result:#x}{how}", {"pfn": result}
    elif op == "read":
        result = ps.read(args["pid"], args["addr"])
        pfn = ps.resolve(args["pid"], args["addr"])
        text, rec = f"{result} (pfn {pfn:#x})" if pfn is not None else str(result), {
            "value": result}
    elif op == "resolve":
        result = ps.resolve(args["pid"], args["addr"])
        text = "not mapped" if result is None else (
            f"pfn {result:#x}, page_count {r.a.page_count(result)}, mapcount "
            f"{ps.mapcount(result)}")
        rec = {"pfn": result}
    elif op == "buffer_alloc":
        result = ps.alloc_shared_buffer(args["pages"], gfp=args["gfp"], nid=args["nid"],
                                        cpu=args["cpu"])
        if step.bind:
            r.handles[step.bind] = result
        if result is None:
            return "NULL", {"buf": None}, True
        pfns = ps.buffers[result].pfns
        text = f"buffer {result}: pfns {', '.join(f'{p:#x}' for p in pfns)}"
        rec = {"buf": result, "pfns": pfns}
    elif op == "buffer_mmap":
        result = ps.mmap_buffer(args["pid"], args["buf"])
        counts = [r.a.page_count(p) for p in ps.buffers[args["buf"]].pfns]
        text = f"addr {result:#x}, page_count {counts}"
        rec = {"addr": hex(result), "page_count": counts}
    elif op == "buffer_free":
        n = ps.free_shared_buffer(args["buf"])
        counts = [r.a.page_count(p) for p in ps.buffers[args["buf"]].pfns if p >= 0]
        text = (f"kernel reference dropped: {plural(n, 'page')} freed, page_count of the rest "
                f"{counts}")
        rec = {"freed": n}
    elif op == "migrate":
        result = migrate_page(ps, args["pfn"])
        text, rec = f"pfn {args['pfn']:#x} -> {result:#x}", {"pfn": result}
    elif op == "compact":
        nid, order = args["nid"], args["order"]
        if order >= 0:
            if nid == NUMA_NO_NODE:
                nid = 0
            if not 0 <= nid < len(r.a.nodes):
                raise BadNodeError(f"node {nid} is not online")
            rs = [compact_zone(ps, z, order) for z in r.a.nodes[nid].zones if z.managed]
        else:
            rs = compact_nodes(ps) if nid == NUMA_NO_NODE else compact_node(ps, nid)
        text, rec = _compact_text(rs)
    elif op == "show":
        what = args["what"]
        if what not in VIEWS:
            raise ScenarioError(f"show: unknown view {what!r} (views: {', '.join(VIEWS)})")
        body = buddyinfo(r.a) if what == "buddyinfo" else pagetypeinfo(r.a)
        text, rec = "\n" + body.rstrip("\n"), {what: body}
    elif op == "maps":
        body = ps.maps(args["pid"])
        text, rec = "\n" + body.rstrip("\n"), {"maps": body}
    else:  # check_mm
        st = abstract_mm(ps)
        bad = mm_violations(st)
        if run.last is not None:
            bad += mm_step_violations(run.last, st)
        run.last = st
        text = "ok: every mm invariant holds" if not bad else "VIOLATED: " + "; ".join(bad)
        rec = {"violations": bad}
    if step.bind and op != "buffer_alloc":
        r.handles[step.bind] = result
    return text, rec, False
