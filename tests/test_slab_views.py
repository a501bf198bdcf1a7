"""/proc/slabinfo as Linux prints it (mm/slab_common.c print_slabinfo_header, cache_show;
mm/slub.c get_slabinfo, count_partial_free_approx), read with ONE strict parser
(impl.slab_common.parse_slabinfo) for the real files and for the model's view: every line must
be exactly what cache_show()'s format strings print for its fields, column widths included.

Real files: Debian's 6.12.117 and 6.1 under qemu (tests/fixtures/linux-6.*/*/slabinfo) and this
sandbox's own 6.18.44 kernel (tests/fixtures/host-6.18.44-fc-v1045/slabinfo: a different
kernel, used for the format and for the kmalloc caches' geometry, which 6.18 computes the same
way: calculate_order() has not changed since 6.7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from impl.slab_common import (
    SLABINFO_HEADER,
    SlabAllocator,
    SlabinfoRow,
    format_slabinfo_row,
    parse_slabinfo,
)
from impl.slub import MAX_PARTIAL_TO_SCAN, KmemCacheNode, Slab
from spec.errors import SlabError
from spec.gfp import GFP_KERNEL
from spec.slab import KMALLOC_NO_OBJ_EXT, KMALLOC_TYPE_PREFIX, SLAB_NO_MERGE

FIXTURES = Path(__file__).parent / "fixtures"
CAPTURES_612 = sorted(p for p in (FIXTURES / "linux-6.12").glob("*") if (p / "slabinfo").exists())
HOST = FIXTURES / "host-6.18.44-fc-v1045"
REAL_FILES = [*sorted(FIXTURES.glob("*/*/slabinfo")), HOST / "slabinfo"]
HOST_PRESENT_CPUS = 2  # /sys/devices/system/cpu/present of the host was 0-1


def _parse(path: Path) -> list[SlabinfoRow]:
    return parse_slabinfo(path.read_text(), str(path))


def _is_kmalloc(name: str) -> bool:
    return any(name.startswith(p) for k, p in KMALLOC_TYPE_PREFIX.items()
               if k != KMALLOC_NO_OBJ_EXT)


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: f"{p.parent.parent.name}/"
                         f"{p.parent.name}")
def test_every_real_slabinfo_is_in_cache_shows_format(path: Path) -> None:
    """Each line of a real file is byte for byte what format_slabinfo_row prints for it."""
    rows = _parse(path)
    assert len(rows) > 100
    lines = path.read_text().splitlines()
    assert lines[:2] == list(SLABINFO_HEADER)
    assert [format_slabinfo_row(r) for r in rows] == lines[2:]
    assert all(r.limit == r.batchcount == r.sharedfactor == r.sharedavail == 0 for r in rows)
    assert all(r.active_slabs == r.num_slabs for r in rows)  # SLUB: get_slabinfo()


def test_the_models_view_goes_through_the_same_parser() -> None:
    """A busy model (a long name past the 17-column field, thousands of objects, partial
    slabs) prints lines the strict parser accepts, with the counters it holds."""
    sa = SlabAllocator(PageAllocator(MachineConfig.default()))
    s = sa.kmem_cache_create("a_cache_name_longer_than_17", 40, 0, SLAB_NO_MERGE)
    objs = [sa.kmem_cache_alloc(s, GFP_KERNEL) for _ in range(5000)]
    for o in objs[::3]:
        assert o is not None
        sa.kmem_cache_free(s, o, cpu=4)  # a CPU of node 1: remote frees
    assert any(n.partial for n in s.node)  # free objects the view must subtract
    text = sa.slabinfo()
    rows = {r.name: r for r in parse_slabinfo(text, "model")}
    r = rows["a_cache_name_longer_than_17"]
    slabs = sum(n.nr_slabs for n in s.node)
    assert (r.num_objs, r.num_slabs, r.objsize) == (slabs * s.oo_objects, slabs, s.size)
    assert r.num_objs - r.active_objs == sum(sl.objects - sl.inuse for n in s.node
                                             for sl in n.partial)
    assert text.splitlines()[2].startswith("a_cache_name_longer_than_17 ")  # newest first


def test_a_line_with_other_widths_is_refused() -> None:
    good = (FIXTURES / "linux-6.12" / "1node-2cpu-1g" / "slabinfo").read_text()
    lines = good.splitlines()
    assert parse_slabinfo(good)
    bad = "\n".join([*lines[:5], lines[5].replace(" : tunables", "  : tunables"), *lines[6:]])
    with pytest.raises(SlabError, match=r"slabinfo:6: not in cache_show\(\)'s format"):
        parse_slabinfo(bad)
    with pytest.raises(SlabError, match=r"version 2\.1"):
        parse_slabinfo("slabinfo - version: 2.0\n")
    with pytest.raises(SlabError, match="not a slabinfo line"):
        parse_slabinfo("\n".join([*lines[:2], "kmalloc-8 12 x"]))


@pytest.mark.parametrize("capture", CAPTURES_612, ids=lambda p: p.name)
def test_the_kmalloc_caches_are_exactly_the_real_ones(capture: Path) -> None:
    """The config (no CONFIG_RANDOM_KMALLOC_CACHES, CONFIG_SLAB_BUCKETS, ZONE_DMA, MEMCG
    with kmem accounting on): kmalloc-, kmalloc-rcl-, dma-kmalloc- and kmalloc-cg- of 8..8k
    with 96 and 192, no kmalloc-rnd-*, and kmalloc_buckets; with the geometry the captured
    kernel printed for its CPU count (nr_cpus)."""
    cpus = int((capture / "nr_cpus").read_text())
    real = {r.name: r for r in _parse(capture / "slabinfo")}
    sa = SlabAllocator(PageAllocator(MachineConfig.default()), nr_cpus=cpus)
    mine = {r.name: r for r in parse_slabinfo(sa.slabinfo(), "model")}
    real_k = {n for n in real if "kmalloc" in n}
    assert real_k == {n for n in mine if "kmalloc" in n}
    assert len(real_k) == 4 * 13 + 1 and not any("rnd" in n for n in real_k)
    for n in real_k | {"kmem_cache", "kmem_cache_node"}:
        assert real[n][3:6] == mine[n][3:6], (n, real[n][3:6], mine[n][3:6])


def test_the_kmalloc_caches_match_the_hosts_618_kernel() -> None:
    """Another kernel, another machine: this sandbox's 6.18 kernel (2 present CPUs) has the
    same 53 kmalloc caches with the same geometry (calculate_order, calculate_sizes)."""
    real = {r.name: r for r in _parse(HOST / "slabinfo") if _is_kmalloc(r.name)}
    sa = SlabAllocator(PageAllocator(MachineConfig.default()), nr_cpus=HOST_PRESENT_CPUS)
    mine = {r.name: r for r in parse_slabinfo(sa.slabinfo(), "model") if _is_kmalloc(r.name)}
    assert set(real) == set(mine) and len(real) == 52
    assert {n: r[3:6] for n, r in real.items()} == {n: r[3:6] for n, r in mine.items()}


def _node_with_partial(free_per_slab: list[int]) -> KmemCacheNode:
    """A kmem_cache_node whose partial list holds slabs of 4 objects with these free counts."""
    from impl.slub import KmemCache

    s = KmemCache("t", 1024, 8, 0, None, 8, [0], 1)
    n = KmemCacheNode()
    for i, free in enumerate(free_per_slab):
        sl = Slab(s, i << 2, 2, 0, 4, 0)
        sl.inuse = 4 - free
        n.add_partial(sl, True)
        n.nr_slabs += 1
        n.total_objects += 4
    return n


def test_count_partial_free_approx_scans_at_most_max_partial_to_scan() -> None:
    """Up to MAX_PARTIAL_TO_SCAN partial slabs every free object counts; above, the first and
    last 5,000 are scaled to the list's length (mm/slub.c count_partial_free_approx)."""
    exact = [1, 2, 3] * 10
    assert SlabAllocator.count_partial_free_approx(_node_with_partial(exact)) == sum(exact)
    n_slabs = MAX_PARTIAL_TO_SCAN + 2000
    frees = [1] * (MAX_PARTIAL_TO_SCAN // 2) + [3] * 2000 + [2] * (MAX_PARTIAL_TO_SCAN // 2)
    assert len(frees) == n_slabs
    n = _node_with_partial(frees)
    sampled = 1 * 5000 + 2 * 5000  # the 2,000 slabs with 3 free objects are never scanned
    assert SlabAllocator.count_partial_free_approx(n) == sampled * n_slabs // 10000
    assert sum(frees) != sampled * n_slabs // 10000


def test_zoneinfo_counts_slab_pages_per_node() -> None:
    """/proc/zoneinfo's per-node nr_slab_reclaimable and nr_slab_unreclaimable (printed under
    each node's first populated zone) are the pages of its slabs, split by
    SLAB_RECLAIM_ACCOUNT, with large kmallocs unreclaimable (mm/slab.h account_slab, mm/slub.c
    ___kmalloc_large_node); they printed 0 whatever the slabs held."""
    from impl.procfs import parse_zoneinfo
    from impl.views import zoneinfo
    from spec.slab import SLAB_RECLAIM_ACCOUNT

    sa = SlabAllocator(PageAllocator(MachineConfig.default()))
    rcl = sa.kmem_cache_create("rcl_cache", 512, 0, SLAB_RECLAIM_ACCOUNT | SLAB_NO_MERGE)
    for _ in range(100):
        assert sa.kmem_cache_alloc(rcl, GFP_KERNEL, cpu=4) is not None  # node 1
    big = sa.kmalloc(5 * 4096, GFP_KERNEL, cpu=4)  # order 3 on node 1
    assert big is not None

    def pages(nid: int, reclaimable: bool) -> int:
        n = sum(1 << sl.order for s in sa.slab_caches for sl in s.slabs.values()
                if sl.nid == nid and bool(s.flags & SLAB_RECLAIM_ACCOUNT) == reclaimable)
        return n + (8 if nid == 1 and not reclaimable else 0)

    stats = {z.nid: dict(z.per_node) for z in parse_zoneinfo(zoneinfo(sa.pages))
             if z.per_node}
    for nid in (0, 1):
        assert stats[nid]["nr_slab_reclaimable"] == pages(nid, True)
        assert stats[nid]["nr_slab_unreclaimable"] == pages(nid, False)
    assert stats[1]["nr_slab_reclaimable"] >= 100 * 512 // 4096
    assert stats[0]["nr_slab_unreclaimable"] > 0  # kmem_cache_init's own slabs


def test_slabtop_is_procps_slabtop_byte_for_byte() -> None:
    """procps-ng 4.0.2's ``slabtop --once`` on this sandbox (tests/fixtures/host-*/slabtop):
    rebuilt from its own rows (objects, slabs) and the caches' objsize and pagesperslab from
    /proc/slabinfo (fixed per cache; the counters moved between the two reads), in
    /proc/slabinfo's order, impl.slab_common.format_slabtop prints every one of its 242 lines
    (summary with the Minimum / Average / Maximum line, sizes from objects x objsize, NAME
    padded to 23 columns, every cache, ties in /proc/slabinfo order)."""
    from impl.slab_common import format_slabtop, slabtop

    real = (HOST / "slabtop").read_text().splitlines()
    seen = {ln.split()[-1]: ln.split() for ln in real[7:]}
    rows = [SlabinfoRow(r.name, int(seen[r.name][1]), int(seen[r.name][0]), r.objsize,
                        int(seen[r.name][5]), r.pagesperslab, active_slabs=int(seen[r.name][4]),
                        num_slabs=int(seen[r.name][4]))
            for r in _parse(HOST / "slabinfo")]
    assert len(rows) == len(seen) == len(real) - 7
    assert format_slabtop(rows).splitlines() == real
    model = slabtop(SlabAllocator(PageAllocator(MachineConfig.flat(4096)))).splitlines()
    assert model[4].startswith(" Minimum / Average / Maximum Object : 0.01K / ")
    assert len(model) == 7 + len(SlabAllocator(PageAllocator(
        MachineConfig.flat(4096))).slab_caches)
