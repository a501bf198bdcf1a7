"""Make a faulty copy of a real kmem trace (ftrace text or ``trace-cmd report``): one allocator
bug, at a known line.

The trace checker (tracecheck/check.py) must report zero violations on a real kernel's trace
and catch every bug planted in a copy of it with the right rule at the right line. This module
plants them by editing or duplicating REAL lines of the trace, keeping everything else about
the line consistent (no fault moves a page block, so ``page=`` and ``pfn=`` stay in step; a
free is edited together with its allocation where the bug needs it), so the copy differs from a
real trace only by the bug.

The lines may be ftrace's (``task-pid [cpu] flags ts: event: fields``), ``trace-cmd report``'s
(``task-pid [cpu] ts: event: fields``; libtraceevent's kmem plugin puts ``(call_site+off)``
before the fields, ``%p`` prints ``0x...`` and a NULL one ``(nil)``) or ``trace-cmd report
-l``'s (``task-pid cpuflags ts: ...``, the CPU glued to the flags: tracecmd/trace-read.c).

Each fault is placed on an allocation (or free) whose whole life the trace shows: an
allocation line and the next free of the same pfn / ptr, replayed in file order. Events that
are not allocations or frees by a caller are skipped: ``mm_page_alloc_zone_locked`` and
``mm_page_pcpu_drain`` move pages between the buddy and per-CPU lists, and
``mm_page_free_batched`` repeats the ``mm_page_free`` that ``free_pages_prepare()`` already
emitted (mm/page_alloc.c ``free_unref_folios()``; 6.1 ``free_unref_page_list()``).

Faults (name -> the rule a checker must report, api-trace.md). Each is placed where a correct
kernel could not have produced it, even though a trace does not show everything the kernel did
(so a checker rightly excuses the look-alikes, see tracecheck/check.py):

- ``page.overlap``: an ``mm_page_alloc`` line repeated right after itself (a block handed out
  twice while live).
- ``page.align``: a live order-0 block at an odd pfn turned into an order-1 block, its free too.
- ``page.free_order``: the ``mm_page_free`` of an order-n block says order n + 1 (on a block
  aligned to 2^(n+1)). Not n - 1: split_page() (mm/page_alloc.c) legitimately lets a block be
  freed in smaller pieces.
- ``page.double_free``: the ``mm_page_free`` of an order >= 1 block repeated right after
  itself. Not order 0: alloc_pages_bulk() hands order-0 pages out without an event, so a
  second free of an order-0 page may be a free of an unseen reallocation.
- ``kmalloc.size_class``: a ``kmalloc`` whose ``bytes_alloc`` is not its size class (8 less
  than the real class, still >= ``bytes_req``).
- ``object.overlap``: a copy of a live ``kmem_cache_alloc`` line whose ``ptr`` is moved by half
  the object: a second object sharing bytes with a live one.
- ``object.handed_out_twice`` (rule ``object.overlap``, ``strict``): a ``kmem_cache_alloc``
  line repeated right after itself. Only a strict checker can call this a bug:
  kmem_cache_free_bulk()/kfree_bulk() free without an event (mm/slub.c), so the same object at
  the same address may have been freed and handed out again unseen.
- ``object.double_free``: the ``kfree`` of a ``kmalloc`` object repeated right after itself
  (not a kmem_cache object: kmem_cache_alloc_bulk() allocates without an event).
- ``vmalloc.overlap``: an ``alloc_vmap_area`` line (6.2+) repeated right after itself.
- ``vmalloc.guard``: a copy of a live ``alloc_vmap_area`` line whose area begins in the
  other's guard page (its last page: the traced size includes the guard, mm/vmalloc.c).

Every fault is planted on a block or object whose free comes more than REORDER seconds after
the planted line, so per-CPU clock skew cannot explain it.

Usage: ``python -m tools.inject_trace_faults TRACE[.xz] KIND > faulty`` (prints the faulty line
number on stderr).
"""

from __future__ import annotations

import lzma
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# "task-pid [cpu] flags ts: event: fields" (trace / trace_pipe); trace-cmd report omits flags;
# trace-cmd report -l prints "task-pid cpuflags ts: ..." ("%8.8s-%-5d %3d" + the latency flags)
LINE = re.compile(r"^\s*.+?-\d+\s+(?:\(\s*[-\d]+\)\s+)?(?:\[\d+\]\s+(?:\S+\s+)?|\d+\S*\s+)"
                  r"(\d+\.\d+):\s+(\w+):\s+(.*)$")
VA_START = re.compile(r"\bva_start: (\d+)")
STRUCT_PAGE = 64  # sizeof(struct page) on x86-64: page= is vmemmap_base + pfn * 64
FAULTS: dict[str, str] = {  # fault -> the rule that catches it
    "page.overlap": "page.overlap", "page.align": "page.align",
    "page.free_order": "page.free_order", "page.double_free": "page.double_free",
    "kmalloc.size_class": "kmalloc.size_class", "object.overlap": "object.overlap",
    "object.handed_out_twice": "object.overlap", "object.double_free": "object.double_free",
    "vmalloc.overlap": "vmalloc.overlap", "vmalloc.guard": "vmalloc.guard"}
KINDS = tuple(FAULTS)
STRICT = frozenset({"object.handed_out_twice"})  # caught only by a strict checker
REORDER = 0.005  # seconds: more than a checker's clock-skew window (tracecheck: 1 ms)


class NoCandidateError(ValueError):
    """The trace has no allocation or free that this fault can be planted on."""


@dataclass(frozen=True)
class Fault:
    """A faulty copy of a trace and where its bug is."""

    kind: str    # the fault (a key of FAULTS)
    lineno: int  # 1-based line number of the faulty line in ``text``
    text: str    # the whole trace, with the fault
    note: str    # what was changed, for messages

    @property
    def rule(self) -> str:
        """The rule a checker must report at ``lineno``."""
        return FAULTS[self.kind]

    @property
    def strict(self) -> bool:
        """Whether only a strict checker can tell this fault from an untraced free."""
        return self.kind in STRICT


@dataclass(frozen=True)
class Event:
    index: int   # 0-based line index in the original text
    name: str
    fields: dict[str, str]
    ts: float    # the timestamp column, seconds


def parse(lines: list[str]) -> list[Event]:
    """The events of a trace's lines (headers, markers and other lines are skipped)."""
    out = []
    for i, line in enumerate(lines):
        m = LINE.match(line)
        if m:
            fields = {k: "0" if v == "(nil)" else v  # trace-cmd prints a NULL %p "(nil)"
                      for k, v in (kv.split("=", 1) for kv in m.group(3).split() if "=" in kv)}
            if v := VA_START.search(m.group(3)):  # alloc_vmap_area prints "va_start: <decimal>"
                fields["va_start"] = f"{int(v.group(1)):#x}"
            elif "va_start" in fields:
                fields["va_start"] = f"{int(fields['va_start'], 16):#x}"
            out.append(Event(i, m.group(2), fields, float(m.group(1))))
    return out


def set_field(line: str, key: str, value: str) -> str:
    """The line with one ``key=value`` field replaced (the field must be present once)."""
    new, n = re.subn(rf"(?<=[\s:]){re.escape(key)}=\S+", f"{key}={value}", line)
    if n != 1:
        raise ValueError(f"{key}= is not in the line once: {line!r}")
    return new


def lives(events: list[Event], alloc: set[str], free: set[str],
          key: str) -> list[tuple[Event, Event | None]]:
    """(allocation, its free or None) for every allocation event, pairing each allocation with
    the next free of the same ``key`` value in file order."""
    open_: dict[str, Event] = {}
    out: list[tuple[Event, Event | None]] = []
    pos: dict[int, int] = {}
    for ev in events:
        k = ev.fields.get(key)
        if k is None:
            continue
        if ev.name in alloc:
            if k in open_:  # not freed in the trace before its reuse: leave it unpaired
                out[pos[open_[k].index]] = (open_[k], None)
            open_[k] = ev
            pos[ev.index] = len(out)
            out.append((ev, None))
        elif ev.name in free and k in open_:
            a = open_.pop(k)
            out[pos[a.index]] = (a, ev)
    return out


def batched_frees(events: list[Event]) -> set[int]:
    """Line indexes of the mm_page_free events an mm_page_free_batched repeats (the batched
    line follows its free within a few events of the same pfn)."""
    out: set[int] = set()
    for k, e in enumerate(events):
        if e.name != "mm_page_free_batched":
            continue
        for prev in reversed(events[max(0, k - 64):k]):
            if prev.name == "mm_page_free" and prev.fields.get("pfn") == e.fields.get("pfn"):
                out.add(prev.index)
                break
    return out


def _insert_after(lines: list[str], index: int, line: str) -> tuple[str, int]:
    new = [*lines[:index + 1], line, *lines[index + 1:]]
    return "\n".join(new) + "\n", index + 2


def _replace(lines: list[str], edits: dict[int, str]) -> str:
    return "\n".join(edits.get(i, x) for i, x in enumerate(lines)) + "\n"


def inject(trace: str, kind: str) -> Fault:
    """A copy of ``trace`` with one fault of ``kind`` (see the module docstring), placed on the
    first suitable event after the middle of the trace (or, failing that, the first one)."""
    if kind not in FAULTS:
        raise ValueError(f"unknown fault {kind!r}; one of {', '.join(KINDS)}")
    lines = trace.splitlines()
    events = parse(lines)
    mid = len(lines) // 2

    def pick(cands: Sequence[tuple[Event, Event | None]]) -> tuple[Event, Event | None]:
        if not cands:
            raise NoCandidateError(f"no event in the trace to plant {kind} on")
        late = [c for c in cands if c[0].index >= mid]
        return (late or cands)[0]

    def lasting(pairs: list[tuple[Event, Event | None]]) -> list[tuple[Event, Event]]:
        """Pairs whose free comes more than REORDER seconds after the allocation."""
        return [(a, f) for a, f in pairs if f is not None and f.ts - a.ts > REORDER]

    if kind.startswith("page."):
        # blocks freed with their own order, by a free no mm_page_free_batched repeats
        batched = batched_frees(events)
        every = [(a, f) for a, f in lives(events, {"mm_page_alloc"}, {"mm_page_free"}, "pfn")
                 if f is not None and a.fields.get("order") == f.fields.get("order")
                 and f.index not in batched]
        pages = lasting(list(every))
        if kind == "page.overlap":
            a, _ = pick(pages)
            text, lineno = _insert_after(lines, a.index, lines[a.index])
            return Fault(kind, lineno, text, f"line {a.index + 1} repeated")
        if kind == "page.double_free":
            a, f = pick([(a, f) for a, f in pages if int(a.fields["order"]) >= 1])
            assert f is not None
            text, lineno = _insert_after(lines, f.index, lines[f.index])
            return Fault(kind, lineno, text, f"order-{a.fields['order']} free at line "
                         f"{f.index + 1} repeated")
        if kind == "page.free_order":
            a, f = pick([(a, f) for a, f in pages
                         if int(a.fields["pfn"], 16) % (2 << int(a.fields["order"])) == 0])
            assert f is not None
            order = int(f.fields["order"]) + 1
            text = _replace(lines, {f.index: set_field(lines[f.index], "order", str(order))})
            return Fault(kind, f.index + 1, text,
                         f"order {order - 1} block of line {a.index + 1} freed with order {order}")
        # page.align: an odd pfn whose buddy (pfn + 1) is in no block live at the same time
        blocks: dict[int, list[tuple[int, int, int]]] = {}  # first pfn -> (order, alloc, free)
        for first, order, lo, hi in _blocks(events):
            blocks.setdefault(first, []).append((order, lo, hi))
        cands: list[tuple[Event, Event | None]] = []
        for a, f in every:  # no clock skew explains a misaligned block: any life will do
            assert f is not None
            pfn = int(a.fields["pfn"], 16)
            if a.fields["order"] != "0" or pfn % 2 == 0:
                continue
            buddy = pfn + 1
            if not any(order >= o and lo < f.index and hi > a.index
                       for o in range(11) for order, lo, hi in blocks.get(buddy >> o << o, ())):
                cands.append((a, f))
        a, f = pick(cands)
        assert f is not None
        edits = {a.index: set_field(lines[a.index], "order", "1"),
                 f.index: set_field(lines[f.index], "order", "1")}
        return Fault(kind, a.index + 1, _replace(lines, edits),
                     f"odd pfn {a.fields['pfn']} made an order-1 block (and its free)")
    if kind.startswith("vmalloc."):
        areas = [(a, f) for a, f in lasting(lives(events, {"alloc_vmap_area"},
                                                  {"free_vmap_area_noflush"}, "va_start"))
                 if a.fields.get("failed") == "0" and int(a.fields.get("size", "0")) > 2 * 4096]
        a, _ = pick(areas)
        start, size = int(a.fields["va_start"], 16), int(a.fields["size"])
        if kind == "vmalloc.overlap":
            text, lineno = _insert_after(lines, a.index, lines[a.index])
            return Fault(kind, lineno, text, f"vmap area of line {a.index + 1} handed out twice")
        new = start + size - 4096  # the guard page: the last page of the area's size
        line = VA_START.sub(f"va_start: {new}", lines[a.index])
        text, lineno = _insert_after(lines, a.index, line)
        return Fault(kind, lineno, text, f"a vmap area at {new:#x}, in the guard page of the "
                     f"live area of line {a.index + 1}")
    if kind == "kmalloc.size_class":
        sized: list[tuple[Event, Event | None]] = [
            (e, None) for e in events if e.name == "kmalloc"
            and int(e.fields.get("bytes_alloc", "0")) - 8
            >= max(int(e.fields.get("bytes_req", "0")), 8)
            and int(e.fields["bytes_alloc"]) <= 8192]
        e, _ = pick(sized)
        wrong = int(e.fields["bytes_alloc"]) - 8
        text = _replace(lines, {e.index: set_field(lines[e.index], "bytes_alloc", str(wrong))})
        return Fault(kind, e.index + 1, text,
                     f"bytes_req={e.fields['bytes_req']} given bytes_alloc={wrong}")
    objs = [(a, f) for a, f in lasting(lives(events, {"kmem_cache_alloc", "kmalloc"},
                                             {"kmem_cache_free", "kfree"}, "ptr"))
            if a.fields["ptr"].strip("0")]
    if kind == "object.double_free":
        a, f = pick([(a, f) for a, f in objs if (a.name, f.name) == ("kmalloc", "kfree")])
        assert f is not None
        text, lineno = _insert_after(lines, f.index, lines[f.index])
        return Fault(kind, lineno, text, f"kfree at line {f.index + 1} repeated")
    cache = [(a, f) for a, f in objs if a.name == "kmem_cache_alloc"
             and int(a.fields.get("bytes_alloc", "0")) >= 16]
    a, _ = pick(cache)
    if kind == "object.handed_out_twice":
        text, lineno = _insert_after(lines, a.index, lines[a.index])
        return Fault(kind, lineno, text, f"object of line {a.index + 1} handed out twice")
    shift = int(a.fields["bytes_alloc"]) // 2 // 8 * 8
    old = a.fields["ptr"]  # ftrace: 16 hex digits; trace-cmd: 0x-prefixed (glibc's %p)
    new_ptr = int(old, 16) + shift
    ptr = f"{new_ptr:#x}" if old.startswith("0x") else f"{new_ptr:0{len(old)}x}"
    text, lineno = _insert_after(lines, a.index, set_field(lines[a.index], "ptr", ptr))
    return Fault(kind, lineno, text,
                 f"an object at {ptr}, {shift} bytes into the live object of line {a.index + 1}")


def _blocks(events: list[Event]) -> list[tuple[int, int, int, int]]:
    """(first pfn, order, alloc line index, free line index or infinity) of every block."""
    out = []
    for a, f in lives(events, {"mm_page_alloc"}, {"mm_page_free"}, "pfn"):
        out.append((int(a.fields["pfn"], 16), int(a.fields["order"]), a.index,
                    f.index if f is not None else 1 << 62))
    return out


def read_trace(path: Path) -> str:
    """A trace file's text, xz-compressed or plain."""
    data = path.read_bytes()
    if path.suffix == ".xz":
        data = lzma.decompress(data)
    return data.decode()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[1] not in KINDS:
        print(f"usage: inject_trace_faults TRACE[.xz] {{{','.join(KINDS)}}}", file=sys.stderr)
        return 2
    fault = inject(read_trace(Path(args[0])), args[1])
    sys.stdout.write(fault.text)
    print(f"{fault.kind} at line {fault.lineno}: {fault.note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
