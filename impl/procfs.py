"""Parsers and printers for the page allocator's /proc and sysfs files, in Linux 6.12's formats.

One structure per file, a strict parser that turns the text into it, and a renderer that turns
it back into text with the kernel's own format strings (mm/vmstat.c zoneinfo_show_print,
pagetypeinfo_showfree_print, pagetypeinfo_showblockcount_print, frag_show_print;
drivers/base/node.c node_read_numastat). The model's views (:mod:`impl.views`) build these
structures from the allocator and render them, and the tests parse real files captured from
Debian's 6.12.117 kernel (tests/fixtures/linux-6.12/) with the same parsers: parse -> render
reproducing the real file byte for byte is what makes "the model prints what the kernel
prints" a checked claim.

:func:`machine_from_zoneinfo` builds a :class:`impl.machine.MachineConfig` shaped like a
captured machine (nodes, zone spans, present and managed pages), so the model's computed
watermarks and protection can be compared with the kernel's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from impl.machine import LOCAL_DISTANCE, REMOTE_DISTANCE, MachineConfig, NodeConfig, ZoneConfig
from spec.errors import MachineError
from spec.gfp import KERNEL_ZONE_NAMES, MAX_NR_ZONES
from spec.layout import PAGE_SHIFT


def sprintf(fmt: str, *args: object) -> str:
    """The kernel's seq_printf() format strings, verbatim: Python's % ignores the 'l' length
    modifier and prints %i and %u like %d, so each format is copied unchanged from the C."""
    return fmt % args


class ProcFormatError(ValueError):
    """A line that is not in the kernel's format for this file."""


# --- /proc/zoneinfo -------------------------------------------------------------------------
@dataclass
class Pageset:
    """One CPU's entry under 'pagesets': struct per_cpu_pages fields in print order (6.12:
    count, high, batch; 6.18 adds high_min, high_max) and the vm stats threshold."""

    cpu: int
    fields: list[tuple[str, int]]
    threshold: int | None

    def get(self, name: str) -> int:
        return dict(self.fields)[name]


@dataclass
class ZoneStanza:
    """One zoneinfo_show_print() stanza. ``stats`` is None for an unpopulated zone (the
    kernel stops after 'protection'); ``per_node`` is set only on a node's first populated
    zone."""

    nid: int
    zone: str
    per_node: list[tuple[str, int]] | None
    free: int
    boost: int
    min: int
    low: int
    high: int
    promo: int
    spanned: int
    present: int
    managed: int
    cma: int
    protection: tuple[int, ...]
    stats: list[tuple[str, int]] | None = None
    pagesets: list[Pageset] = field(default_factory=list)
    node_unreclaimable: int = 0
    start_pfn: int = 0

    @property
    def populated(self) -> bool:
        return self.stats is not None

    @property
    def watermarks(self) -> tuple[int, int, int, int]:
        return (self.min, self.low, self.high, self.promo)

    def stat(self, name: str) -> int:
        return dict(self.stats or [])[name]


# (label as printed, attribute); mm/vmstat.c zoneinfo_show_print()
_ZONE_FIELDS = (("  pages free     ", "free"), ("        boost    ", "boost"),
                ("        min      ", "min"), ("        low      ", "low"),
                ("        high     ", "high"), ("        promo    ", "promo"),
                ("        spanned  ", "spanned"), ("        present  ", "present"),
                ("        managed  ", "managed"), ("        cma      ", "cma"))
_ZI_HEAD = re.compile(r"Node (\d+), zone ([ A-Za-z0-9]{8})")
_ZI_STAT = re.compile(r"      ([a-z_0-9]+) +(\d+)")
_ZI_PROT = re.compile(r"        protection: \((-?\d+(?:, -?\d+)*)\)")
_ZI_CPU = re.compile(r"    cpu: (\d+)")
_ZI_PCP = re.compile(r"              ([a-z_]+): +(-?\d+)")
_ZI_THRESH = re.compile(r"  vm stats threshold: (-?\d+)")
_ZI_UNRECL = re.compile(r"  node_unreclaimable:  (\d+)")
_ZI_START = re.compile(r"  start_pfn:           (\d+)")


def _stat_line(name: str, v: int) -> str:
    return sprintf("\n      %-12s %lu", name, v)


def render_zoneinfo(zones: Sequence[ZoneStanza]) -> str:
    """The stanzas as zoneinfo_show_print() prints them (6.12 pageset layout)."""
    out: list[str] = []
    for z in zones:
        out.append(sprintf("Node %d, zone %8s", z.nid, z.zone))
        if z.per_node is not None:
            out.append("\n  per-node stats")
            out.extend(_stat_line(n, v) for n, v in z.per_node)
        for label, attr in _ZONE_FIELDS:
            out.append(f"\n{label}{getattr(z, attr)}")
        out.append("\n        protection: (" + ", ".join(str(r) for r in z.protection) + ")")
        if z.stats is None:
            out.append("\n")
            continue
        out.extend(_stat_line(n, v) for n, v in z.stats)
        out.append("\n  pagesets")
        for p in z.pagesets:
            out.append(sprintf("\n    cpu: %i", p.cpu))
            # "\n              count: %i" "\n              high:  %i" "\n              batch: %i"
            out.extend(sprintf("\n              %-6s %i", f"{k}:", v) for k, v in p.fields)
            if p.threshold is not None:
                out.append(sprintf("\n  vm stats threshold: %d", p.threshold))
        out.append(sprintf("\n  node_unreclaimable:  %u", z.node_unreclaimable))
        out.append(sprintf("\n  start_pfn:           %lu\n", z.start_pfn))
    return "".join(out)


def parse_zoneinfo(text: str) -> list[ZoneStanza]:
    """Every stanza of a /proc/zoneinfo, in file order; ProcFormatError on any line that is
    not one of the kernel's. Accepts 6.12 and 6.18 (whose pagesets carry two more fields)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out: list[ZoneStanza] = []
    i = 0

    def err(msg: str) -> ProcFormatError:
        return ProcFormatError(f"zoneinfo line {i + 1}: {msg}: {lines[i]!r}"
                               if i < len(lines) else f"zoneinfo: {msg} at end of file")

    def take(rx: re.Pattern[str]) -> re.Match[str]:
        nonlocal i
        m = rx.fullmatch(lines[i]) if i < len(lines) else None
        if m is None:
            raise err(f"expected {rx.pattern!r}")
        i += 1
        return m

    def stats() -> list[tuple[str, int]]:
        nonlocal i
        got: list[tuple[str, int]] = []
        while i < len(lines) and (m := _ZI_STAT.fullmatch(lines[i])):
            name = m.group(1)
            if lines[i] != _stat_line(name, int(m.group(2)))[1:]:
                raise err("stat item not printed as '      %-12s %lu'")
            got.append((name, int(m.group(2))))
            i += 1
        return got

    while i < len(lines):
        head = take(_ZI_HEAD)
        nid, zname = int(head.group(1)), head.group(2).strip()
        per_node = None
        if i < len(lines) and lines[i] == "  per-node stats":
            i += 1
            per_node = stats()
        vals: dict[str, int] = {}
        for label, attr in _ZONE_FIELDS:
            line = lines[i] if i < len(lines) else ""
            if not line.startswith(label) or not line[len(label):].isdigit():
                raise err(f"expected {label.strip()!r}")
            vals[attr] = int(line[len(label):])
            i += 1
        prot = tuple(int(x) for x in take(_ZI_PROT).group(1).split(", "))
        z = ZoneStanza(nid, zname, per_node, free=vals["free"], boost=vals["boost"],
                       min=vals["min"], low=vals["low"], high=vals["high"],
                       promo=vals["promo"], spanned=vals["spanned"],
                       present=vals["present"], managed=vals["managed"], cma=vals["cma"],
                       protection=prot)
        out.append(z)
        if i >= len(lines) or _ZI_HEAD.fullmatch(lines[i]):
            continue  # unpopulated: nothing after protection
        z.stats = stats()
        if lines[i] != "  pagesets":
            raise err("expected '  pagesets'")
        i += 1
        while i < len(lines) and (m := _ZI_CPU.fullmatch(lines[i])):
            i += 1
            fields: list[tuple[str, int]] = []
            while i < len(lines) and (pm := _ZI_PCP.fullmatch(lines[i])):
                fields.append((pm.group(1), int(pm.group(2))))
                i += 1
            thr = None
            if i < len(lines) and (tm := _ZI_THRESH.fullmatch(lines[i])):
                thr = int(tm.group(1))
                i += 1
            z.pagesets.append(Pageset(int(m.group(1)), fields, thr))
        z.node_unreclaimable = int(take(_ZI_UNRECL).group(1))
        z.start_pfn = int(take(_ZI_START).group(1))
    return out


# --- /proc/buddyinfo ------------------------------------------------------------------------
@dataclass(frozen=True)
class BuddyRow:
    """frag_show_print(): free blocks per order of one populated zone."""

    nid: int
    zone: str
    nr_free: tuple[int, ...]


_BUDDY = re.compile(r"Node (\d+), zone ([ A-Za-z0-9]{8}) ((?:[ \d]{5}\d )+)")


def render_buddyinfo(rows: Sequence[BuddyRow]) -> str:
    return "".join(sprintf("Node %d, zone %8s ", r.nid, r.zone)
                   + "".join(sprintf("%6lu ", n) for n in r.nr_free) + "\n" for r in rows)


def parse_buddyinfo(text: str) -> list[BuddyRow]:
    out: list[BuddyRow] = []
    for n, line in enumerate(text.splitlines(), 1):
        m = _BUDDY.fullmatch(line)
        if m is None:
            raise ProcFormatError(f"buddyinfo line {n}: {line!r}")
        cols = m.group(3)
        out.append(BuddyRow(int(m.group(1)), m.group(2).strip(),
                            tuple(int(cols[k:k + 6]) for k in range(0, len(cols), 7))))
    if len({len(r.nr_free) for r in out}) > 1:
        raise ProcFormatError("buddyinfo rows have different numbers of orders")
    return out


# --- /proc/pagetypeinfo ---------------------------------------------------------------------
@dataclass(frozen=True)
class FreeCount:
    """One column of a free-list row: the count, and whether the walk hit its cap ('>')."""

    count: int
    capped: bool = False


@dataclass
class PagetypeNode:
    """pagetypeinfo_show() for one node with memory."""

    nid: int
    pageblock_order: int
    pages_per_block: int
    orders: int
    free: list[tuple[str, str, tuple[FreeCount, ...]]]  # (zone, migratetype, per order)
    types: tuple[str, ...]  # the block table's column names, MIGRATE_TYPES of them
    blocks: list[tuple[str, tuple[int, ...]]]  # (zone, pageblocks per migratetype)

    def free_types(self) -> list[str]:
        """The migratetype rows of the first zone, in print order."""
        first = self.free[0][0] if self.free else ""
        return [mt for z, mt, _ in self.free if z == first]


_PTI_FREE_HEAD = sprintf("%-43s ", "Free pages count per migrate type at order")
_PTI_FREE = re.compile(
    r"Node +(\d+), zone ([ A-Za-z0-9]{8}), type ([ A-Za-z]{12}) ((?:>?[ \d]{5}\d )+)")
_PTI_COL = re.compile(r"(>?)([ \d]{5}\d) ")
_PTI_BLOCK_HEAD = sprintf("%-23s", "Number of blocks type ")
_PTI_BLOCK = re.compile(r"Node (\d+), zone ([ A-Za-z0-9]{8}) ((?: {0,11}\d+ )+)")


def render_pagetypeinfo(nodes: Sequence[PagetypeNode]) -> str:
    out: list[str] = []
    for n in nodes:
        out.append(sprintf("Page block order: %d\n", n.pageblock_order))
        out.append(sprintf("Pages per block:  %lu\n\n", n.pages_per_block))
        out.append(_PTI_FREE_HEAD + "".join(sprintf("%6d ", o) for o in range(n.orders)) + "\n")
        for zone, mt, counts in n.free:
            out.append(sprintf("Node %4d, zone %8s, type %12s ", n.nid, zone, mt))
            out.extend(sprintf("%s%6lu ", ">" if c.capped else "", c.count) for c in counts)
            out.append("\n")
        out.append("\n" + _PTI_BLOCK_HEAD + "".join(sprintf("%12s ", t) for t in n.types) + "\n")
        for zone, counts2 in n.blocks:
            out.append(sprintf("Node %d, zone %8s ", n.nid, zone)
                       + "".join(sprintf("%12lu ", c) for c in counts2) + "\n")
    return "".join(out)


def parse_pagetypeinfo(text: str) -> list[PagetypeNode]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out: list[PagetypeNode] = []
    i = 0

    def err(msg: str) -> ProcFormatError:
        where = repr(lines[i]) if i < len(lines) else "end of file"
        return ProcFormatError(f"pagetypeinfo line {i + 1}: {msg}: {where}")

    while i < len(lines):
        m1 = re.fullmatch(r"Page block order: (\d+)", lines[i])
        m2 = re.fullmatch(r"Pages per block:  (\d+)", lines[i + 1]) if i + 1 < len(lines) else None
        if not (m1 and m2) or i + 3 >= len(lines) or lines[i + 2] != "":
            raise err("expected the 'Page block order' header")
        head = lines[i + 3]
        if not head.startswith(_PTI_FREE_HEAD):
            raise err("expected the free-count header")
        orders = len(head[len(_PTI_FREE_HEAD):]) // 7
        if head != _PTI_FREE_HEAD + "".join(sprintf("%6d ", o) for o in range(orders)):
            raise err("bad order columns")
        i += 4
        free: list[tuple[str, str, tuple[FreeCount, ...]]] = []
        nid = -1
        while i < len(lines) and (m := _PTI_FREE.fullmatch(lines[i])):
            nid = int(m.group(1))
            cols = m.group(4)
            counts = tuple(FreeCount(int(num), cap == ">")
                           for cap, num in _PTI_COL.findall(cols))
            if len(counts) != orders:
                raise err("wrong number of orders")
            free.append((m.group(2).strip(), m.group(3).strip(), counts))
            i += 1
        if i + 1 >= len(lines) or lines[i] != "" or not lines[i + 1].startswith(_PTI_BLOCK_HEAD):
            raise err("expected a blank line and the block-count header")
        names = lines[i + 1][len(_PTI_BLOCK_HEAD):]
        types = tuple(names[k:k + 12].strip() for k in range(0, len(names), 13))
        i += 2
        blocks: list[tuple[str, tuple[int, ...]]] = []
        while i < len(lines) and (m := _PTI_BLOCK.fullmatch(lines[i])):
            cols = m.group(3)
            row = tuple(int(cols[k:k + 12]) for k in range(0, len(cols), 13))
            if len(row) != len(types):
                raise err("block row and header differ in length")
            blocks.append((m.group(2).strip(), row))
            i += 1
        out.append(PagetypeNode(nid, int(m1.group(1)), int(m2.group(1)), orders, free, types,
                                blocks))
    return out


# --- /sys/devices/system/node/nodeN/numastat ------------------------------------------------
NUMASTAT_ITEMS = ("numa_hit", "numa_miss", "numa_foreign", "interleave_hit", "local_node",
                  "other_node")
_NUMASTAT_PATH = re.compile(r"==> /sys/devices/system/node/node(\d+)/numastat <==")


def render_numastat(values: Sequence[int]) -> str:
    """node_read_numastat(): one 'name value' line per item."""
    return "".join(f"{k} {v}\n" for k, v in zip(NUMASTAT_ITEMS, values, strict=True))


def parse_numastat(text: str) -> tuple[int, ...]:
    lines = text.splitlines()
    got = [ln.split(" ") for ln in lines]
    if [g[0] for g in got] != list(NUMASTAT_ITEMS) or any(
            len(g) != 2 or not g[1].isdigit() for g in got):
        raise ProcFormatError(f"not a numastat file: {text!r}")
    return tuple(int(g[1]) for g in got)


def parse_numastat_all(text: str) -> dict[int, tuple[int, ...]]:
    """The head(1)-style concatenation of every node's numastat (``kmemspec show numastat``
    and the capture tool print it so): {nid: values}."""
    out: dict[int, tuple[int, ...]] = {}
    for part in text.split("\n\n") if text else []:
        head, _, body = part.partition("\n")
        m = _NUMASTAT_PATH.fullmatch(head)
        if m is None:
            raise ProcFormatError(f"expected '==> .../nodeN/numastat <==', got {head!r}")
        out[int(m.group(1))] = parse_numastat(body)
    return out


# --- small sysfs/proc helpers for building a machine -----------------------------------------
def parse_node_lists(text: str) -> dict[int, list[int]]:
    """Lines 'path/nodeN/<file>: v v v' (cpulist ranges '0-3,5' or distance rows): {N: ints}."""
    out: dict[int, list[int]] = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\S*/node(\d+)/(\w+): (.*)", line)
        if m is None:
            raise ProcFormatError(f"not a 'path: values' line: {line!r}")
        vals: list[int] = []
        for part in m.group(3).replace(",", " ").split():
            lo, _, hi = part.partition("-")
            vals.extend(range(int(lo), int(hi or lo) + 1) if m.group(2) == "cpulist"
                        else [int(part)])
        out[int(m.group(1))] = vals
    return out


def parse_iomem_ram(text: str) -> list[tuple[int, int]]:
    """Top-level 'System RAM' ranges of /proc/iomem as whole-page pfn ranges [start, end)."""
    out: list[tuple[int, int]] = []
    for line in text.splitlines():
        m = re.fullmatch(r"([0-9a-f]+)-([0-9a-f]+) : System RAM", line)
        if m:
            s, e = int(m.group(1), 16), int(m.group(2), 16) + 1
            ps, pe = -(-s >> PAGE_SHIFT), e >> PAGE_SHIFT
            if ps < pe:
                out.append((ps, pe))
    return out


def machine_from_zoneinfo(zones: Sequence[ZoneStanza], *,
                          cpus: Mapping[int, Sequence[int]] | None = None,
                          distance: Mapping[int, Sequence[int]] | None = None,
                          ram: Sequence[tuple[int, int]] | None = None,
                          min_free_kbytes: int | None = None, max_order: int = 10,
                          name: str = "zoneinfo") -> MachineConfig:
    """A machine with the captured nodes and populated zones: same start_pfn, spanned,
    present and managed pages. Present ranges are the zone span cut by ``ram`` (the
    'System RAM' pfn ranges of /proc/iomem) when given, else the first ``present`` pages;
    the present - managed reserved pages sit at the top of the zone (where the model's
    ``numa()`` machine puts mem_map). Unpopulated zones are slots, not ZoneConfigs.
    ``cpus`` (default: CPU n on node n) and ``distance`` come from the node's cpulist and
    distance files."""
    nids = sorted({z.nid for z in zones})
    if nids != list(range(len(nids))):
        raise MachineError(f"zoneinfo nodes must be 0..N-1, got {nids}")
    nodes: list[NodeConfig] = []
    for nid in nids:
        zcfgs: list[ZoneConfig] = []
        for z in zones:
            if z.nid != nid or z.present == 0:
                continue
            idx = KERNEL_ZONE_NAMES.index(z.zone)
            if idx >= MAX_NR_ZONES:
                raise MachineError(f"node {nid} zone {z.zone}: the model has no such zone")
            s, e = z.start_pfn, z.start_pfn + z.spanned
            if ram is None:
                ranges = [(s, s + z.present)]
            else:
                ranges = [(max(s, a), min(e, b)) for a, b in ram if max(s, a) < min(e, b)]
            if sum(b - a for a, b in ranges) != z.present:
                raise MachineError(f"node {nid} zone {z.zone}: RAM ranges give "
                                   f"{sum(b - a for a, b in ranges)} pages, zoneinfo "
                                   f"says present {z.present}")
            reserved: list[tuple[int, int]] = []
            left = z.present - z.managed
            for a, b in reversed(ranges):
                take = min(left, b - a)
                if take:
                    reserved.insert(0, (b - take, b))
                left -= take
            zcfgs.append(ZoneConfig(idx, s, z.spanned, tuple(ranges), tuple(reserved)))
        node_cpus = tuple(cpus[nid]) if cpus is not None else (nid,)
        nodes.append(NodeConfig(nid, node_cpus, tuple(zcfgs)))
    n = len(nids)
    dist = tuple(tuple(distance[a]) if distance is not None else
                 tuple(LOCAL_DISTANCE if a == b else REMOTE_DISTANCE for b in range(n))
                 for a in range(n))
    return MachineConfig(tuple(nodes), dist, max_order=max_order,
                         min_free_kbytes=min_free_kbytes, name=name).validate()


# --- /proc/vmallocinfo (mm/vmalloc.c vmalloc_info_show, show_numa_info, show_purge_info) -----
VMALLOCINFO_FLAGS = ("ioremap", "sparse", "vmalloc", "vmap", "user", "dma-coherent", "vpages")
"""The flag words vmalloc_info_show() prints, in its order (VM_IOREMAP, VM_SPARSE, VM_ALLOC,
VM_MAP, VM_USERMAP, VM_DMA_COHERENT, then " vpages" for a vmalloc'd page array)."""
_VMI_RE = re.compile(r"0x([0-9a-f]{16})-0x([0-9a-f]{16}) (?=.{7})( *\d+)(.*)\Z")


@dataclass
class VmallocinfoLine:
    """One line: ``kind`` is ``area`` (a vm_struct), ``unpurged`` (a lazily freed vmap_area,
    "unpurged vm_area") or ``vm_map_ram``; for areas the %pS caller (None if the kernel had
    none), ``pages=``, ``phys=``, the flag words in print order and the N<nid>= counts."""

    start: int
    end: int
    size: int
    kind: str = "area"
    caller: str | None = None
    pages: int | None = None
    phys: int | None = None
    flags: list[str] = field(default_factory=list)
    numa: list[tuple[int, int]] = field(default_factory=list)


def render_vmallocinfo(lines: Sequence[VmallocinfoLine]) -> str:
    """The text of /proc/vmallocinfo: seq_printf(m, "0x%pK-0x%pK %7ld", ...) and the rest of
    vmalloc_info_show() / show_purge_info()."""
    out = []
    for v in lines:
        s = sprintf("0x%016x-0x%016x %7ld", v.start, v.end, v.size)
        if v.kind == "unpurged":
            out.append(s + " unpurged vm_area\n")
            continue
        if v.kind == "vm_map_ram":
            out.append(s + " vm_map_ram\n")
            continue
        if v.caller is not None:
            s += " " + v.caller
        if v.pages is not None:
            s += sprintf(" pages=%d", v.pages)
        if v.phys is not None:
            s += sprintf(" phys=0x%016x", v.phys)
        s += "".join(" " + f for f in v.flags)
        s += "".join(sprintf(" N%u=%u", nid, n) for nid, n in v.numa)
        out.append(s + "\n")
    return "".join(out)


def parse_vmallocinfo(text: str) -> list[VmallocinfoLine]:
    """Parse /proc/vmallocinfo strictly (ProcFormatError on anything else)."""
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        m = _VMI_RE.match(line)
        if m is None:
            raise ProcFormatError(f"vmallocinfo line {no}: {line!r}")
        v = VmallocinfoLine(int(m.group(1), 16), int(m.group(2), 16), int(m.group(3)))
        toks = m.group(4).split(" ")
        if toks[0] != "":
            raise ProcFormatError(f"vmallocinfo line {no}: no space after the size")
        toks = toks[1:]
        if toks == ["unpurged", "vm_area"] or toks == ["vm_map_ram"]:
            v.kind = "unpurged" if len(toks) == 2 else "vm_map_ram"
            out.append(v)
            continue
        i = 0
        if toks and not (toks[0].startswith(("pages=", "phys="))
                         or toks[0] in VMALLOCINFO_FLAGS or re.fullmatch(r"N\d+=\d+", toks[0])):
            v.caller = toks[0]
            i = 1
        if i < len(toks) and toks[i].startswith("pages="):
            v.pages = int(toks[i][6:])
            i += 1
        if i < len(toks) and toks[i].startswith("phys=0x"):
            v.phys = int(toks[i][7:], 16)
            i += 1
        while i < len(toks) and toks[i] in VMALLOCINFO_FLAGS:
            v.flags.append(toks[i])
            i += 1
        while i < len(toks) and (nm := re.fullmatch(r"N(\d+)=(\d+)", toks[i])):
            v.numa.append((int(nm.group(1)), int(nm.group(2))))
            i += 1
        if i != len(toks) or [f for f in VMALLOCINFO_FLAGS if f in v.flags] != v.flags:
            raise ProcFormatError(f"vmallocinfo line {no}: unexpected {toks[i:]!r}")
        out.append(v)
    return out


# --- /proc/meminfo (fs/proc/meminfo.c show_val_kb, arch/x86/mm/pageattr.c) ------------------
def render_meminfo(items: Sequence[tuple[str, int, bool]]) -> str:
    """Lines of /proc/meminfo: ``(name, value, in_kb)``. The kernel's literal labels pad the
    name to 16 columns and print %8lu (show_val_kb: "%s%8lu kB"; the HugePages_* counts
    without " kB"); the one longer label, "HardwareCorrupted: %5lu kB", ends its number in the
    same column 24."""
    out = []
    for name, value, kb in items:
        label = name + ":"
        num = (f"{label:<16}{value:8d}" if len(label) <= 16
               else f"{label} {value:{max(23 - len(label), 1)}d}")
        out.append(num + (" kB\n" if kb else "\n"))
    return "".join(out)


def parse_meminfo(text: str) -> list[tuple[str, int, bool]]:
    """Parse /proc/meminfo into ``(name, value, in_kb)`` in file order."""
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        m = re.fullmatch(r"([A-Za-z0-9_()]+): +(\d+)( kB)?", line)
        if m is None:
            raise ProcFormatError(f"meminfo line {no}: {line!r}")
        out.append((m.group(1), int(m.group(2)), m.group(3) is not None))
    return out
