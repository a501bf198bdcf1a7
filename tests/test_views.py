"""The /proc and sysfs views: byte-exact kernel formats, and numbers that follow the allocator."""

from __future__ import annotations

import re

from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from impl.views import VIEWS, buddyinfo, numastat, numastat_all, pagetypeinfo, zoneinfo
from spec.gfp import __GFP_THISNODE, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, MIGRATETYPE_NAMES

# The kernel's own format strings (mm/vmstat.c), verbatim: Python's % ignores the 'l' length
# modifier, so printf() below formats them as seq_printf() does.
FRAG_HEAD = "Node %d, zone %8s "
FRAG_COL = "%6lu "
PTI_FREE_HEAD = "%-43s "
PTI_ORDER = "%6d "
PTI_FREE_ROW = "Node %4d, zone %8s, type %12s "
PTI_FREE_COL = "%s%6lu "
PTI_BLOCK_HEAD = "\n%-23s"
PTI_BLOCK_NAME = "%12s "
ZI_STAT = "      %-12s %lu"
ZI_RESERVE = "%ld"


def printf(fmt: str, *args: object) -> str:
    return fmt % args
BUDDY_RE = re.compile(r"Node (\d+), zone ([ A-Za-z0-9]{8}) ((?:[ \d]{5}\d ){%d})\n")


def parse_buddyinfo(text: str, nr_orders: int) -> dict[tuple[int, str], list[int]]:
    """{(nid, zone name): [nr_free per order]}; every line must match the kernel's layout."""
    rx = re.compile(BUDDY_RE.pattern % nr_orders)
    out: dict[tuple[int, str], list[int]] = {}
    lines = text.splitlines(keepends=True)
    for line in lines:
        m = rx.fullmatch(line)
        assert m, f"not a buddyinfo line: {line!r}"
        out[(int(m.group(1)), m.group(2).strip())] = [int(x) for x in m.group(3).split()]
    return out


def tiny() -> PageAllocator:
    return PageAllocator(MachineConfig.tiny())


def two_small_nodes() -> PageAllocator:
    """Two nodes of 64 pages, one Normal zone each, CPU 0 on node 0 and CPU 1 on node 1."""
    return PageAllocator(MachineConfig.flat(64, nodes=2, max_order=3, min_pages=2))


# --- buddyinfo -----------------------------------------------------------------------------------
def test_buddyinfo_lines_are_the_kernels_printf_output() -> None:
    a = PageAllocator()
    text = buddyinfo(a)
    expected = "".join(
        printf(FRAG_HEAD, z.nid, z.name)
        + "".join(printf(FRAG_COL, z.nr_free(o)) for o in range(11)) + "\n"
        for z in a.zones)
    assert text == expected
    first = text.splitlines(keepends=True)[0]
    # "Node 0, zone " + 8-wide name + space + 11 columns of 6 digits and a space, then newline
    assert len(first) == len("Node 0, zone ") + 8 + 1 + 11 * 7 + 1
    assert first.startswith("Node 0, zone      DMA ")
    assert first.endswith(" \n")  # the trailing space before the newline
    assert len(parse_buddyinfo(text, 11)) == 4


def test_buddyinfo_prints_max_order_plus_one_columns() -> None:
    a = tiny()
    assert buddyinfo(a) == "Node 0, zone   Normal      0      0      0      4 \n"


def test_buddyinfo_follows_a_split_and_the_merge_back() -> None:
    a = tiny()
    before = parse_buddyinfo(buddyinfo(a), 4)[(0, "Normal")]
    assert before == [0, 0, 0, 4]
    pfn = a.alloc_pages(GFP_KERNEL, 0)
    assert pfn is not None
    # expand() put one block of each order 2, 1, 0 back: the split order-3 block is gone.
    assert parse_buddyinfo(buddyinfo(a), 4)[(0, "Normal")] == [1, 1, 1, 3]
    pfn2 = a.alloc_pages(GFP_KERNEL, 1)
    assert pfn2 is not None
    assert parse_buddyinfo(buddyinfo(a), 4)[(0, "Normal")] == [1, 0, 1, 3]
    a.free_pages_pfn(pfn2, 1)
    a.free_pages_pfn(pfn, 0)
    assert parse_buddyinfo(buddyinfo(a), 4)[(0, "Normal")] == before


def test_buddyinfo_skips_unpopulated_zones() -> None:
    a = two_small_nodes()
    assert [k for k in parse_buddyinfo(buddyinfo(a), 4)] == [(0, "Normal"), (1, "Normal")]


# --- pagetypeinfo --------------------------------------------------------------------------------
def test_pagetypeinfo_header_and_free_counts() -> None:
    a = tiny()
    lines = pagetypeinfo(a).splitlines()
    assert lines[0] == "Page block order: 3"
    assert lines[1] == "Pages per block:  8"
    assert lines[2] == ""
    assert lines[3] == printf(PTI_FREE_HEAD, "Free pages count per migrate type at order") + (
        "".join(printf(PTI_ORDER, o) for o in range(4)))
    movable = printf(PTI_FREE_ROW, 0, "Normal", "Movable") + "".join(
        printf(PTI_FREE_COL, "", n) for n in (0, 0, 0, 4))
    assert movable in lines
    assert sum(1 for ln in lines if ln.startswith("Node    0, zone   Normal, type")) == 6


def test_pagetypeinfo_caps_long_free_lists_at_100000() -> None:
    a = PageAllocator(MachineConfig.named("1tib"))  # 131072 free order-10 blocks per node
    lines = pagetypeinfo(a).splitlines()
    movable = [ln for ln in lines if ln.startswith("Node    0, zone   Normal, type      Movable")]
    assert len(movable) == 1
    assert movable[0].endswith(" >100000 ")
    assert a.zones[0].nr_free(10) == 131072


def test_pagetypeinfo_block_table_follows_pageblock_claims() -> None:
    a = tiny()

    def blocks() -> list[int]:
        text = pagetypeinfo(a)
        head = printf(PTI_BLOCK_HEAD, "Number of blocks type ") + "".join(
            printf(PTI_BLOCK_NAME, n) for n in MIGRATETYPE_NAMES) + "\n"
        assert head in text
        row = text.split(head)[1].splitlines()[0]
        assert row.startswith("Node 0, zone   Normal ")
        return [int(x) for x in row[len("Node 0, zone   Normal "):].split()]

    assert blocks() == [0, 4, 0, 0, 0, 0]
    pfn = a.alloc_pages(GFP_KERNEL, 0)  # UNMOVABLE: claims a whole MOVABLE pageblock
    assert pfn is not None
    assert blocks() == [1, 3, 0, 0, 0, 0]
    moved = a.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
    assert moved is not None
    assert blocks() == [1, 3, 0, 0, 0, 0]


def test_pagetypeinfo_skips_offline_sections_of_the_pci_hole() -> None:
    a = PageAllocator()
    text = pagetypeinfo(a)
    dma32 = next(ln for ln in text.splitlines() if ln.startswith("Node 0, zone    DMA32 "))
    # DMA32 spans 16 MiB..4 GiB but memory stops at 3 GiB: (3 GiB - 16 MiB) / 2 MiB blocks
    assert [int(x) for x in dma32.split()[4:]] == [0, 1528, 0, 0, 0, 0]


# --- zoneinfo ------------------------------------------------------------------------------------
def zoneinfo_blocks(text: str) -> dict[tuple[int, str], list[str]]:
    out: dict[tuple[int, str], list[str]] = {}
    cur: list[str] = []
    for line in text.splitlines():
        m = re.fullmatch(r"Node (\d+), zone ([ A-Za-z0-9]{8})", line)
        if m:
            cur = []
            out[(int(m.group(1)), m.group(2).strip())] = cur
        else:
            cur.append(line)
    return out


def test_zoneinfo_watermarks_match_the_zones() -> None:
    a = PageAllocator()
    blocks = zoneinfo_blocks(zoneinfo(a))
    assert len(blocks) == 2 * 4  # every node prints all MAX_NR_ZONES zone slots
    for z in a.zones:
        body = blocks[(z.nid, z.name)]
        for label, v in (("pages free", z.free_pages), ("boost", z.boost),
                         ("min", z.wmark[0]), ("low", z.wmark[1]), ("high", z.wmark[2]),
                         ("promo", z.wmark[3]), ("spanned", z.spanned),
                         ("present", z.present), ("managed", z.managed), ("cma", 0)):
            indent = "  " if label == "pages free" else "        "
            assert f"{indent}{label:<{17 - len(indent)}}{v}" in body, (z.name, label)
        prot = f"        protection: ({', '.join(printf(ZI_RESERVE, r) for r in z.lowmem_reserve)})"
        assert prot in body
        assert f"  start_pfn:           {z.start}" == body[-1]
        assert printf(ZI_STAT, "nr_free_pages", z.free_pages) in body
    # node 0's DMA zone is its first populated one and carries the per-node stats
    assert blocks[(0, "DMA")][0] == "  per-node stats"
    assert blocks[(1, "Normal")][0] == "  per-node stats"
    assert "  per-node stats" not in blocks[(0, "Normal")]


def test_zoneinfo_prints_empty_zones_up_to_protection() -> None:
    a = two_small_nodes()
    blocks = zoneinfo_blocks(zoneinfo(a))
    assert list(blocks) == [(n, name) for n in (0, 1)
                            for name in ("DMA", "DMA32", "Normal", "Movable")]
    empty = blocks[(1, "DMA32")]
    assert empty == ["  pages free     0", "        boost    0", "        min      0",
                     "        low      0", "        high     0", "        promo    0",
                     "        spanned  0", "        present  0", "        managed  0",
                     "        cma      0", "        protection: (0, 0, 0, 0)"]


def test_zoneinfo_numa_counters_and_format() -> None:
    a = two_small_nodes()
    assert a.alloc_pages_node(1, GFP_KERNEL, 0, cpu=0) is not None
    body = zoneinfo_blocks(zoneinfo(a))[(1, "Normal")]
    for name, v in (("numa_hit", 1), ("numa_miss", 0), ("numa_foreign", 0),
                    ("numa_interleave", 0), ("numa_local", 0), ("numa_other", 1)):
        assert printf(ZI_STAT, name, v) in body
    assert "      numa_hit     1" in body  # name padded to 12


# --- numastat ------------------------------------------------------------------------------------
def parse_numastat(text: str) -> dict[str, int]:
    lines = text.splitlines()
    assert [ln.split()[0] for ln in lines] == ["numa_hit", "numa_miss", "numa_foreign",
                                               "interleave_hit", "local_node", "other_node"]
    assert all(re.fullmatch(r"[a-z_]+ \d+", ln) for ln in lines)
    return {k: int(v) for k, v in (ln.split() for ln in lines)}


def test_numastat_remote_allocation_by_fallback() -> None:
    a = two_small_nodes()
    # Exhaust node 0 with __GFP_THISNODE, so the next plain request from cpu 0 falls back.
    taken = []
    while (p := a.alloc_pages_node(0, GFP_KERNEL | __GFP_THISNODE, 0, cpu=0)) is not None:
        taken.append(p)
    n0 = parse_numastat(numastat(a, 0))
    assert n0 == {"numa_hit": len(taken), "numa_miss": 0, "numa_foreign": 0,
                  "interleave_hit": 0, "local_node": len(taken), "other_node": 0}
    pfn = a.alloc_pages(GFP_KERNEL, 0, cpu=0)
    assert pfn is not None
    zone = a.zone_of_pfn(pfn)
    assert zone is not None and zone.nid == 1
    n0 = parse_numastat(numastat(a, 0))
    n1 = parse_numastat(numastat(a, 1))
    assert n0["numa_foreign"] == 1  # the preferred node lost one
    assert n0["numa_miss"] == 0 and n0["numa_hit"] == len(taken)
    assert n1 == {"numa_hit": 0, "numa_miss": 1, "numa_foreign": 0, "interleave_hit": 0,
                  "local_node": 0, "other_node": 1}


def test_numastat_explicit_remote_node_is_a_hit_but_other_node() -> None:
    a = two_small_nodes()
    assert a.alloc_pages_node(1, GFP_KERNEL, 0, cpu=0) is not None
    assert a.alloc_pages_node(1, GFP_KERNEL, 0, cpu=1) is not None
    n1 = parse_numastat(numastat(a, 1))
    assert (n1["numa_hit"], n1["numa_miss"], n1["local_node"], n1["other_node"]) == (2, 0, 1, 1)


def test_views_table_and_numastat_headers() -> None:
    a = two_small_nodes()
    assert set(VIEWS) == {"buddyinfo", "pagetypeinfo", "zoneinfo", "numastat"}
    text = VIEWS["numastat"](a)
    assert text == numastat_all(a)
    assert text.startswith("==> /sys/devices/system/node/node0/numastat <==\nnuma_hit 0\n")
    assert "\n\n==> /sys/devices/system/node/node1/numastat <==\n" in text
