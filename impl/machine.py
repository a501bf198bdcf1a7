"""Machine descriptions: NUMA nodes with CPUs, a distance table, zones with spanned, present and
reserved pages, and the layout constants (PAGE_OFFSET, the vmalloc range, MAX_PAGE_ORDER).

A machine is immutable configuration; :class:`impl.page_alloc.PageAllocator` boots it. The
default machine is a two-node x86-64 server with 16 GiB per node laid out the way real firmware
lays it out (the BIOS hole below 1 MiB, the PCI hole below 4 GiB). Sources:
``arch/x86/include/asm/dma.h`` (MAX_DMA_PFN, MAX_DMA32_PFN), ``mm/mm_init.c``
(zone spans), ``arch/x86/mm/numa.c`` (distances), ``include/linux/topology.h``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from spec.errors import MachineError
from spec.gfp import MAX_NR_ZONES, ZONE_DMA, ZONE_DMA32, ZONE_NAMES, ZONE_NORMAL
from spec.layout import (
    MAX_PHYSMEM_BITS,
    PAGE_OFFSET,
    PAGE_SHIFT,
    PAGE_SIZE,
    VMALLOC_END,
    VMALLOC_START,
)

MAX_DMA_PFN = (16 << 20) >> PAGE_SHIFT  # arch/x86/include/asm/dma.h
MAX_DMA32_PFN = 1 << (32 - PAGE_SHIFT)
LOCAL_DISTANCE = 10
REMOTE_DISTANCE = 20
MAX_PAGE_ORDER_DEFAULT = 10  # include/linux/mmzone.h, x86-64
HUGETLB_PAGE_ORDER = 9  # 2 MiB huge pages: pageblock_order = min(9, MAX_PAGE_ORDER)
_MAX_PFN = 1 << (MAX_PHYSMEM_BITS - PAGE_SHIFT)  # arch/x86/include/asm/sparsemem.h


def _int(v: Any, what: str) -> int:
    """A JSON integer: ``1.5``, ``"16"`` or ``true`` where a count or pfn belongs is a
    mistake to report, not a number to truncate or coerce."""
    if type(v) is not int:
        raise MachineError(f"{what} must be an integer, got {v!r}")
    return v


def _bool(v: Any, what: str) -> bool:
    """A JSON boolean: ``"no"`` is not false."""
    if type(v) is not bool:
        raise MachineError(f"{what} must be true or false, got {v!r}")
    return v


def _with_movable(lr: Any) -> tuple[int, ...]:
    """A hello's or machine file's lowmem_reserve (DMA, DMA32, Normal) with the ZONE_MOVABLE
    column that movable masks use: the Normal one. That is the protocol's "Normal otherwise",
    and setup_per_zone_lowmem_reserve()'s value for an empty ZONE_MOVABLE, whose running sum
    adds no pages (mm/page_alloc.c)."""
    t = tuple(_int(x, "lowmem_reserve") for x in lr)
    return (*t, t[-1] if t else 0)


@dataclass(frozen=True)
class ZoneConfig:
    """One zone of one node. ``ranges`` are the present (usable RAM) pfn ranges [start, end);
    ``reserved`` pages (firmware, kernel image, mem_map) are present but never reach the buddy
    allocator, so managed = present - reserved. ``min`` and ``lowmem_reserve`` override the
    kernel's computation when given (the subject protocol's ``hello`` gives them)."""

    zone: int
    start_pfn: int
    spanned: int
    ranges: tuple[tuple[int, int], ...]
    reserved: tuple[tuple[int, int], ...] = ()
    min: int | None = None
    lowmem_reserve: tuple[int, ...] | None = None

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.spanned

    @property
    def present(self) -> int:
        return sum(e - s for s, e in self.ranges)

    @property
    def managed(self) -> int:
        return self.present - sum(e - s for s, e in self.reserved)

    @property
    def name(self) -> str:
        return ZONE_NAMES[self.zone]


@dataclass(frozen=True)
class NodeConfig:
    """A NUMA node: its CPUs and its zones in zone-index order."""

    nid: int
    cpus: tuple[int, ...]
    zones: tuple[ZoneConfig, ...]


@dataclass(frozen=True)
class MachineConfig:
    """The whole machine. ``min_free_kbytes`` None means computed as the kernel does at boot."""

    nodes: tuple[NodeConfig, ...]
    distance: tuple[tuple[int, ...], ...]
    max_order: int = MAX_PAGE_ORDER_DEFAULT
    page_offset: int = PAGE_OFFSET
    vmalloc_start: int = VMALLOC_START
    vmalloc_end: int = VMALLOC_END
    min_free_kbytes: int | None = None
    thp: bool = True
    name: str = "custom"
    watermark_scale_factor: int = 10  # vm.watermark_scale_factor: kswapd gaps, 1/10000ths
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def pageblock_order(self) -> int:
        """include/linux/pageblock-flags.h: min(HUGETLB_PAGE_ORDER, MAX_PAGE_ORDER)."""
        return min(HUGETLB_PAGE_ORDER, self.max_order)

    @property
    def max_pfn(self) -> int:
        return max(z.end_pfn for n in self.nodes for z in n.zones)

    @property
    def total_pages(self) -> int:
        return sum(z.present for n in self.nodes for z in n.zones)

    def cpu_node(self) -> dict[int, int]:
        return {c: n.nid for n in self.nodes for c in n.cpus}

    def validate(self) -> MachineConfig:
        """Reject machines the kernel could not boot; return self for chaining."""
        if not 0 <= self.max_order <= 20:
            raise MachineError(f"max_order {self.max_order} out of range 0..20")
        if not self.nodes:
            raise MachineError("a machine needs at least one node")
        if self.min_free_kbytes is not None and self.min_free_kbytes < 0:
            # vm.min_free_kbytes: proc_dointvec_minmax with extra1 = SYSCTL_ZERO
            raise MachineError(f"min_free_kbytes {self.min_free_kbytes} is negative")
        if type(self.watermark_scale_factor) is not int or not (
                1 <= self.watermark_scale_factor <= 3000):  # page_alloc_sysctl_table: 1..3000
            raise MachineError(f"watermark_scale_factor {self.watermark_scale_factor!r} out of "
                               "range 1..3000")
        n = len(self.nodes)
        for i, node in enumerate(self.nodes):
            if node.nid != i:
                raise MachineError(f"nodes must have nids 0..{n - 1} in order, got {node.nid}")
        if len(self.distance) != n or any(len(r) != n for r in self.distance):
            raise MachineError(f"distance table must be {n}x{n}")
        for a in range(n):
            if self.distance[a][a] != LOCAL_DISTANCE:
                raise MachineError(f"distance[{a}][{a}] must be {LOCAL_DISTANCE}")
            for b in range(n):
                if a != b and not LOCAL_DISTANCE < self.distance[a][b] < 255:
                    raise MachineError(f"distance[{a}][{b}] must be in 11..254")
        cpus = [c for node in self.nodes for c in node.cpus]
        if len(set(cpus)) != len(cpus) or not cpus:
            raise MachineError("every CPU must belong to exactly one node, and one CPU must exist")
        if min(cpus) < 0:  # cpu ids index cpu_possible_mask: 0..nr_cpu_ids-1
            raise MachineError(f"cpu {min(cpus)} is negative")
        spans: list[tuple[int, int, str]] = []
        for node in self.nodes:
            seen: set[int] = set()
            for z in node.zones:
                where = f"node {node.nid} zone {z.name}"
                if z.zone in seen:
                    raise MachineError(f"{where} appears twice")
                seen.add(z.zone)
                if z.spanned <= 0 or z.start_pfn < 0:
                    raise MachineError(f"{where}: empty or negative span")
                if z.end_pfn > _MAX_PFN:  # sparsemem: MAX_PHYSMEM_BITS, 4-level paging
                    raise MachineError(f"{where}: ends at pfn {z.end_pfn:#x}, beyond x86-64's "
                                       f"{MAX_PHYSMEM_BITS}-bit physical address space (64 TiB, "
                                       f"pfn {_MAX_PFN:#x})")
                for s, e in (*z.ranges, *z.reserved):
                    if not z.start_pfn <= s < e <= z.end_pfn:
                        raise MachineError(f"{where}: range [{s:#x}, {e:#x}) outside the zone")
                for rs, re_ in z.reserved:
                    if not any(s <= rs and re_ <= e for s, e in z.ranges):
                        raise MachineError(f"{where}: reserved range not inside present memory")
                if z.min is not None and z.min < 0:
                    raise MachineError(f"{where}: negative min watermark")
                if z.lowmem_reserve is not None and len(z.lowmem_reserve) > MAX_NR_ZONES:
                    raise MachineError(f"{where}: too many lowmem_reserve entries")
                spans.append((z.start_pfn, z.end_pfn, where))
        if not spans:  # memoryless nodes exist, a machine without memory does not
            raise MachineError("no node has a zone: the machine has no memory")
        spans.sort()
        for (_s1, e1, w1), (s2, _e2, w2) in pairwise(spans):
            if s2 < e1:
                raise MachineError(f"{w1} and {w2} overlap")
        return self

    # --- constructors ------------------------------------------------------------------------
    @staticmethod
    def default() -> MachineConfig:
        """Two nodes with 16 GiB each and one CPU... per node: 4 CPUs each, as a small server."""
        return MachineConfig.numa(nodes=2, gib_per_node=16, cpus_per_node=4, name="default")

    @staticmethod
    def numa(nodes: int = 2, gib_per_node: int = 16, cpus_per_node: int = 4,
             name: str = "numa", max_order: int = MAX_PAGE_ORDER_DEFAULT) -> MachineConfig:
        """A PC-like layout: node 0 holds DMA (pfn 1..4095 minus the 640 KiB-1 MiB hole), DMA32
        up to the PCI hole at 3 GiB, and Normal from 4 GiB; other nodes hold only Normal. Each
        node's highest zone gives up 1/64 of the node's pages to its mem_map (reserved)."""
        if nodes < 1 or gib_per_node < 4:
            raise MachineError("numa(): need at least one node of at least 4 GiB")
        per_node = gib_per_node << (30 - PAGE_SHIFT)
        node_cfgs: list[NodeConfig] = []
        pci_hole = (3 << 30) >> PAGE_SHIFT
        next_pfn = 0
        for nid in range(nodes):
            zones: list[ZoneConfig] = []
            if nid == 0:
                bios_hole = (0x9F, 0x100)
                zones.append(ZoneConfig(ZONE_DMA, 1, MAX_DMA_PFN - 1,
                                        ((1, bios_hole[0]), (bios_hole[1], MAX_DMA_PFN))))
                zones.append(ZoneConfig(ZONE_DMA32, MAX_DMA_PFN, MAX_DMA32_PFN - MAX_DMA_PFN,
                                        ((MAX_DMA_PFN, pci_hole),)))
                low = pci_hole
                end = MAX_DMA32_PFN + (per_node - low)
                start = MAX_DMA32_PFN
            else:
                start = next_pfn
                end = start + per_node
            memmap = per_node // 64
            zones.append(ZoneConfig(ZONE_NORMAL, start, end - start, ((start, end),),
                                    reserved=((end - memmap, end),)))
            next_pfn = end
            node_cfgs.append(NodeConfig(nid, tuple(range(nid * cpus_per_node,
                                                         (nid + 1) * cpus_per_node)),
                                        tuple(zones)))
        dist = tuple(tuple(LOCAL_DISTANCE if a == b else REMOTE_DISTANCE for b in range(nodes))
                     for a in range(nodes))
        return MachineConfig(tuple(node_cfgs), dist, max_order=max_order, name=name).validate()

    @staticmethod
    def flat(pages: int, nodes: int = 1, max_order: int = MAX_PAGE_ORDER_DEFAULT,
             zone: int = ZONE_NORMAL, min_pages: int | None = None,
             name: str = "flat", watermark_scale_factor: int = 10) -> MachineConfig:
        """``nodes`` nodes of ``pages`` pages each, one zone per node, no holes, one CPU per
        node; explicit ``min`` watermark if given. Used for scale benchmarks and tests. A
        ``pages`` that is not a multiple of 2^max_order makes nodes meet at unaligned pfns."""
        node_cfgs = []
        for nid in range(nodes):
            s = nid * pages
            node_cfgs.append(NodeConfig(nid, (nid,), (ZoneConfig(
                zone, s, pages, ((s, s + pages),), min=min_pages,
                lowmem_reserve=(0,) * MAX_NR_ZONES if min_pages is not None else None),)))
        dist = tuple(tuple(LOCAL_DISTANCE if a == b else REMOTE_DISTANCE for b in range(nodes))
                     for a in range(nodes))
        return MachineConfig(tuple(node_cfgs), dist, max_order=max_order, name=name,
                             watermark_scale_factor=watermark_scale_factor).validate()

    @staticmethod
    def unaligned(pages: tuple[int, int, int] = (40, 64, 96), max_order: int = 4,
                  min_pages: int = 8, watermark_scale_factor: int = 1000, reserve: int = 4,
                  name: str = "unaligned") -> MachineConfig:
        """Zones and nodes that meet at pfns that are not 2^max_order aligned, as on real
        machines and in a protocol ``hello``: node 0 has DMA [0, a) and DMA32 [a, a + b),
        node 1 a Normal zone of c pages right after, for ``pages`` = (a, b, c); CPUs 0 and 1
        on node 0, CPU 2 on node 1. Every zone has min ``min_pages``; lowmem_reserve is
        (0, r, 2r, 2r) for DMA and (0, 0, r, r) for DMA32 (r = ``reserve``). With the default
        watermark_scale_factor of 1000, min, low and high are several pages apart."""
        a, b, c = pages
        n0 = NodeConfig(0, (0, 1), (
            ZoneConfig(ZONE_DMA, 0, a, ((0, a),), min=min_pages,
                       lowmem_reserve=(0, reserve, 2 * reserve, 2 * reserve)),
            ZoneConfig(ZONE_DMA32, a, b, ((a, a + b),), min=min_pages,
                       lowmem_reserve=(0, 0, reserve, reserve)),
        ))
        n1 = NodeConfig(1, (2,), (
            ZoneConfig(ZONE_NORMAL, a + b, c, ((a + b, a + b + c),), min=min_pages,
                       lowmem_reserve=(0,) * MAX_NR_ZONES),
        ))
        dist = ((LOCAL_DISTANCE, REMOTE_DISTANCE), (REMOTE_DISTANCE, LOCAL_DISTANCE))
        return MachineConfig((n0, n1), dist, max_order=max_order, name=name,
                             watermark_scale_factor=watermark_scale_factor).validate()

    @staticmethod
    def tiny() -> MachineConfig:
        """The model-checking machine: one node, one Normal zone of 32 pages, MAX_PAGE_ORDER 3,
        min watermark 2 pages."""
        return MachineConfig.flat(32, nodes=1, max_order=3, min_pages=2, name="tiny")

    @staticmethod
    def from_hello(msg: dict[str, Any]) -> MachineConfig:
        """Build the machine a subject-protocol ``hello`` describes (see docs/protocol.md)."""
        try:
            if msg.get("page_size", PAGE_SIZE) != PAGE_SIZE:
                raise MachineError(f"page_size must be {PAGE_SIZE}")
            nodes = []
            for i, nd in enumerate(msg["nodes"]):
                zones = []
                for zd in nd["zones"]:
                    zname = zd["zone"]
                    if zname not in ZONE_NAMES[:3]:
                        raise MachineError(f"unknown zone name {zname!r}")
                    where = f"node {i} zone {zname}"
                    s = _int(zd["start_pfn"], f"{where}: start_pfn")
                    p = _int(zd["pages"], f"{where}: pages")
                    lr = zd.get("lowmem_reserve")
                    lrt = (tuple(_int(x, "lowmem_reserve") for x in lr) if lr is not None
                           else (0, 0, 0))
                    zones.append(ZoneConfig(ZONE_NAMES.index(zname), s, p, ((s, s + p),),
                                            min=_int(zd["min"], f"{where}: min"),
                                            lowmem_reserve=_with_movable(lrt)))
                zones.sort(key=lambda z: z.zone)
                nodes.append(NodeConfig(_int(nd.get("nid", i), f"node {i}: nid"),
                                        tuple(_int(c, f"node {i}: cpu") for c in nd["cpus"]),
                                        tuple(zones)))
            dist = tuple(tuple(_int(x, "distance") for x in row) for row in msg["distance"])
            return MachineConfig(
                tuple(nodes), dist, max_order=_int(msg.get("max_order", 10), "max_order"),
                page_offset=int(msg.get("page_offset", hex(PAGE_OFFSET)), 16),
                vmalloc_start=int(msg.get("vmalloc_start", hex(VMALLOC_START)), 16),
                vmalloc_end=int(msg.get("vmalloc_end", hex(VMALLOC_END)), 16),
                name=str(msg.get("name", "hello")),
            ).validate()
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, MachineError):
                raise
            raise MachineError(f"bad machine description: {type(e).__name__}: {e}") from None

    def to_hello(self) -> dict[str, Any]:
        """The machine as a protocol ``hello`` body (the machine file format). Holes and
        reserved pages are not expressible there, so each present range becomes... the zone's
        span (subjects see zones as all-usable, as the protocol says)."""
        from impl.watermarks import compute_zone_watermarks

        wm = compute_zone_watermarks(self)
        nodes = []
        for node in self.nodes:
            zones = []
            for z in node.zones:
                w = wm[(node.nid, z.zone)]
                zones.append({"zone": z.name, "start_pfn": z.start_pfn, "pages": z.spanned,
                              "min": w.min, "lowmem_reserve": list(w.lowmem_reserve[:3])})
            nodes.append({"nid": node.nid, "cpus": list(node.cpus), "zones": zones})
        return {"op": "hello", "protocol": 1, "page_size": PAGE_SIZE, "max_order": self.max_order,
                "page_offset": hex(self.page_offset), "vmalloc_start": hex(self.vmalloc_start),
                "vmalloc_end": hex(self.vmalloc_end), "nodes": nodes,
                "distance": [list(r) for r in self.distance]}

    @staticmethod
    def from_file(path: str | Path) -> MachineConfig:
        """Load a machine file: JSON in the ``hello`` shape, plus optional ``ranges`` and
        ``reserved`` per zone ([[start, end], ...]), ``min_free_kbytes``, ``thp``,
        ``watermark_scale_factor``, and ``slabinfo``: a real /proc/slabinfo (a path relative
        to the machine file) whose caches the slab allocator creates at boot."""
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except OSError as e:
            raise MachineError(f"cannot read machine file {p}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise MachineError(f"machine file {p} is not valid JSON: {e}") from None
        except UnicodeDecodeError:
            raise MachineError(f"machine file {p} is not UTF-8 text") from None
        if not isinstance(data, dict):
            raise MachineError(f"machine file {p} is not a JSON object (see machines/*.json)")
        if isinstance(data.get("slabinfo"), str):
            data = {**data, "slabinfo": str(p.parent / data["slabinfo"])}
        return MachineConfig.from_dict(data, name=p.stem)

    @staticmethod
    def from_dict(data: dict[str, Any], name: str = "file") -> MachineConfig:
        """A machine file's contents; zones without ``min`` get kernel-computed watermarks."""
        try:
            nodes = []
            for i, nd in enumerate(data["nodes"]):
                zones = []
                for zd in nd["zones"]:
                    zname = zd["zone"]
                    if zname not in ZONE_NAMES[:3]:
                        raise MachineError(f"unknown zone name {zname!r}")
                    where = f"node {i} zone {zname}"
                    s = _int(zd["start_pfn"], f"{where}: start_pfn")
                    p = _int(zd["pages"], f"{where}: pages")
                    ranges = tuple((_int(a, f"{where}: ranges"), _int(b, f"{where}: ranges"))
                                   for a, b in zd.get("ranges", [[s, s + p]]))
                    reserved = tuple((_int(a, f"{where}: reserved"), _int(b, f"{where}: reserved"))
                                     for a, b in zd.get("reserved", []))
                    lr = zd.get("lowmem_reserve")
                    zones.append(ZoneConfig(
                        ZONE_NAMES.index(zname), s, p, ranges, reserved,
                        min=_int(zd["min"], f"{where}: min") if "min" in zd else None,
                        lowmem_reserve=_with_movable(lr) if lr is not None else None))
                zones.sort(key=lambda z: z.zone)
                nodes.append(NodeConfig(_int(nd.get("nid", i), f"node {i}: nid"),
                                        tuple(_int(c, f"node {i}: cpu") for c in nd["cpus"]),
                                        tuple(zones)))
            dist = tuple(tuple(_int(x, "distance") for x in row) for row in data["distance"])
            mfk = data.get("min_free_kbytes")
            return MachineConfig(
                tuple(nodes), dist, max_order=_int(data.get("max_order", 10), "max_order"),
                min_free_kbytes=_int(mfk, "min_free_kbytes") if mfk is not None else None,
                thp=_bool(data.get("thp", True), "thp"), name=str(data.get("name", name)),
                watermark_scale_factor=_int(data.get("watermark_scale_factor", 10),
                                            "watermark_scale_factor"),
                extra={k: data[k] for k in ("slabinfo",) if k in data},
            ).validate()
        except KeyError as e:
            raise MachineError(f"bad machine description: missing field {e}") from None
        except (TypeError, ValueError) as e:
            if isinstance(e, MachineError):
                raise
            raise MachineError(f"bad machine description: {type(e).__name__}: {e}") from None

    @staticmethod
    def named(name: str) -> MachineConfig:
        """``default``, ``tiny``, ``1tib``/``1gib`` style sizes, or a path to a machine file."""
        if name == "default":
            return MachineConfig.default()
        if name == "tiny":
            return MachineConfig.tiny()
        low = name.lower()
        for suffix, shift in (("tib", 40), ("gib", 30)):
            if low.endswith(suffix) and low[: -len(suffix)].isdigit():
                total = int(low[: -len(suffix)]) << shift
                return MachineConfig.flat(total // PAGE_SIZE // 2, nodes=2, name=low)
        if Path(name).exists():
            return MachineConfig.from_file(name)
        raise MachineError(
            f"unknown machine {name!r}: use default, tiny, <N>gib, <N>tib or a machine file")
