"""SLUB details the review found the model getting wrong, each against its kernel source:
where kmalloc_fix_flags() runs (mm/slub.c new_slab, ___kmalloc_large_node), the order in
which __put_partials() and __kmem_cache_do_shrink() give slabs back and reorder the partial
list (mm/slub.c), the KMALLOC_NO_OBJ_EXT row of kmalloc_caches[] (mm/slab_common.c
new_kmalloc_cache), and the boot's own slab allocations kept out of the effects log."""

from __future__ import annotations

import pytest

from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from impl.slab_common import SlabAllocator
from impl.slub import KmemCache, Slab
from spec.gfp import __GFP_DMA32, __GFP_HIGHMEM, GFP_KERNEL
from spec.slab import KMALLOC_NO_OBJ_EXT, KMALLOC_NORMAL, SLAB_NO_MERGE

UNEXPECTED = "Unexpected gfp"


def one_cpu() -> SlabAllocator:
    return SlabAllocator(PageAllocator(MachineConfig.flat(8192)))


def _warned(sa: SlabAllocator, n: int) -> int:
    return sum(UNEXPECTED in e.detail for e in sa.pages.effects[n:])


def test_kmalloc_fix_flags_runs_where_pages_are_taken() -> None:
    """kmalloc_fix_flags() is called by new_slab() and ___kmalloc_large_node() only: an
    object from the CPU slab gets no warning, a new slab one, and a large kmalloc's pages
    come from ZONE_NORMAL with the flag dropped (was: a warning per call, and ZONE_DMA32
    pages for a large kmalloc with __GFP_DMA32)."""
    sa = SlabAllocator(PageAllocator(MachineConfig.default()))
    n = len(sa.pages.effects)
    first = sa.kmalloc(64, GFP_KERNEL | __GFP_DMA32)
    assert first is not None and _warned(sa, n) == 1  # a new kmalloc-64 slab
    n = len(sa.pages.effects)
    second = sa.kmalloc(64, GFP_KERNEL | __GFP_DMA32)
    assert second is not None and _warned(sa, n) == 0  # from the CPU freelist
    o = sa.kmem_cache_alloc("kmalloc-64", GFP_KERNEL | __GFP_HIGHMEM)
    assert o is not None and _warned(sa, n) == 0
    n = len(sa.pages.effects)
    big = sa.kmalloc(16384, GFP_KERNEL | __GFP_DMA32)
    assert big is not None and _warned(sa, n) == 1
    pfn, _order = sa.large[big]
    assert sa.pages.zones[sa.pages.allocated[pfn][1]].name == "Normal"


def _fill_and_empty(sa: SlabAllocator, s: KmemCache, nslabs: int) -> list[int]:
    """Allocate ``nslabs`` slabs' worth of objects on CPU 0, then free every object, slab by
    slab: each full slab goes onto the CPU partial list, which drains into __put_partials()
    when full. Returns the slabs' pfns in the order they were filled."""
    per = s.oo_objects
    objs = [sa.kmem_cache_alloc(s, GFP_KERNEL) for _ in range(per * nslabs)]
    assert all(o is not None for o in objs)
    pfns = list(dict.fromkeys(sa.lookup_object(o)[0].pfn for o in objs if o is not None))
    assert len(pfns) == nslabs
    for o in objs:
        assert o is not None
        sa.kmem_cache_free(s, o)
    return pfns


def _freed_slabs(sa: SlabAllocator, n: int, name: str) -> list[int]:
    return [int(e.detail.split("slab pfn ")[1].split()[0], 16) for e in sa.pages.effects[n:]
            if e.kind == "slab_free" and e.detail.startswith(f"{name}:")]


def test_put_partials_frees_the_slabs_it_discards_last_first() -> None:
    """__put_partials() pushes the empty slabs it cannot keep on a stack (slab->next =
    slab_to_discard) and frees them from its top: the oldest of the chain last first."""
    sa = one_cpu()
    s = sa.kmem_cache_create("t256", 256, 0, SLAB_NO_MERGE)
    assert (s.cpu_partial_slabs, s.min_partial) == (7, 5)
    n = len(sa.pages.effects)
    pfns = _fill_and_empty(sa, s, s.cpu_partial_slabs + 2)
    # slabs 1..7 filled the CPU partial list (head: 7); putting slab 8 drained it: 7..3 to
    # the node list (min_partial 5), 2 and 1 discarded, 1 first
    freed = _freed_slabs(sa, n, "t256")
    assert freed[:2] == [pfns[0], pfns[1]]
    assert [sl.pfn for sl in s.node[0].partial] == pfns[6:1:-1]


def test_shrink_reverses_each_promote_bucket_and_the_discard_list() -> None:
    """__kmem_cache_do_shrink() list_move()s every slab to the head of its bucket or of the
    discard list: a bucket of equally full slabs comes back reversed, and empty slabs are
    freed in reverse partial-list order."""
    sa = one_cpu()
    s = sa.kmem_cache_create("t256", 256, 0, SLAB_NO_MERGE)
    per = s.oo_objects
    objs = [sa.kmem_cache_alloc(s, GFP_KERNEL) for _ in range(per * 4)]
    slabs: dict[int, list[int]] = {}
    for o in objs:
        assert o is not None
        slabs.setdefault(sa.lookup_object(o)[0].pfn, []).append(o)
    for group in slabs.values():  # one free object in each slab: all in promote bucket 0
        sa.kmem_cache_free(s, group[0])
    sa.flush_all(s)
    node = s.node[0]
    before = [sl.pfn for sl in node.partial]
    assert len(before) == 4 and all(sl.objects - sl.inuse == 1 for sl in node.partial)
    assert sa.kmem_cache_shrink(s) == 1
    assert [sl.pfn for sl in node.partial] == before[::-1]
    # now empty them all: the node list holds empty slabs, which shrink frees last first
    for group in slabs.values():
        for o in group[1:]:
            sa.kmem_cache_free(s, o)
    sa.flush_all(s)
    empty = [sl.pfn for sl in node.partial if not sl.inuse]
    assert len(empty) >= 2
    n = len(sa.pages.effects)
    assert sa.kmem_cache_shrink(s) == 0
    assert _freed_slabs(sa, n, "t256") == empty[::-1]


def test_no_objext_kmalloc_row_points_at_the_normal_caches() -> None:
    """Without allocation profiling need_kmalloc_no_objext() is false and
    new_kmalloc_cache() sets kmalloc_caches[KMALLOC_NO_OBJ_EXT][i] to the normal cache."""
    sa = one_cpu()
    assert sa.kmalloc_caches[KMALLOC_NO_OBJ_EXT] == sa.kmalloc_caches[KMALLOC_NORMAL]
    assert not any(s.name.startswith("kmalloc-no-objext") for s in sa.slab_caches)


def test_booting_the_slab_allocator_adds_no_caller_effects() -> None:
    """kmem_cache_init's slabs are nobody's operation: the page allocator's effects log is
    as long after booting the slab allocator as before, so a scenario's first slab call
    (even one that fails) reports only what it did."""
    pa = PageAllocator(MachineConfig.default())
    n = len(pa.effects)
    sa = SlabAllocator(pa)
    assert len(pa.effects) == n
    assert any(isinstance(sl, Slab) for sl in sa.slab_of_pfn.values())


def _memoryless() -> SlabAllocator:
    """Node 0 with memory and CPU 0; node 1 with CPU 1 and no memory."""
    m = MachineConfig.from_dict({
        "nodes": [{"cpus": [0], "zones": [{"zone": "Normal", "start_pfn": 0, "pages": 8192}]},
                  {"cpus": [1], "zones": []}],
        "distance": [[10, 20], [20, 10]]})
    return SlabAllocator(PageAllocator(m))


def test_a_memoryless_node_has_no_kmem_cache_node_and_is_served_as_numa_no_node() -> None:
    """slab_nodes holds the nodes with memory: only they get a struct kmem_cache_node
    (init_kmem_cache_nodes), ___slab_alloc serves a request for another node as
    NUMA_NO_NODE (was: a new slab, elsewhere, for almost every such request), and a CPU of
    the memoryless node looks for partial slabs on numa_mem_id(), its nearest node with
    memory (was: its own empty node)."""
    sa = _memoryless()
    assert sa.slab_nodes == {0} and sa.mem_node == {0: 0, 1: 0}
    meta = sa.find_cache("kmem_cache_node")
    assert sum(sl.objects - sum(sl.free) for sl in meta.slabs.values()) == len(sa.slab_caches)
    s = sa.find_cache("kmalloc-64")
    objs = [sa.kmalloc_node(64, GFP_KERNEL, 1) for _ in range(50)]
    assert all(o is not None for o in objs) and len(s.slabs) == 1
    # a node-0 partial slab, then an allocation from CPU 1 (node 1): it takes that slab
    for o in objs[:10]:
        assert o is not None
        sa.kfree(o)
    sa.kmem_cache_shrink(s)
    assert len(s.node[0].partial) == 1
    assert sa.kmalloc(64, GFP_KERNEL, cpu=1) is not None
    assert len(s.slabs) == 1 and not s.node[0].partial


def test_destroy_frees_the_node_objects_in_node_order_then_the_kmem_cache(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """slab_kmem_cache_release(): free_kmem_cache_nodes() frees node 0's struct
    kmem_cache_node, then node 1's, and the struct kmem_cache goes back last (was: node 1's
    first)."""
    sa = SlabAllocator(PageAllocator(MachineConfig.flat(8192, nodes=2)))
    sa.kmem_cache_create("gone", 64, 0, SLAB_NO_MERGE)
    cache_obj, node0, node1 = sa.meta["gone"]
    freed: list[tuple[str, int]] = []
    real = SlabAllocator.slab_free

    def spy(self: SlabAllocator, s: KmemCache, slab: Slab, idx: int, cpu: int) -> None:
        freed.append((s.name, slab.base + idx * s.size))
        real(self, s, slab, idx, cpu)

    monkeypatch.setattr(SlabAllocator, "slab_free", spy)
    sa.kmem_cache_destroy("gone")
    assert freed == [("kmem_cache_node", node0), ("kmem_cache_node", node1),
                     ("kmem_cache", cache_obj)]


def test_free_bulk_frees_detached_freelists_from_the_end() -> None:
    """kmem_cache_free_bulk() builds a detached freelist from the array's last object back:
    objects of one slab freed in one chain whose head is the first of them in the array, so
    the next allocation returns p[0] (was: the last, as if freed one by one in order);
    objects of another slab found after three misses wait for the next round."""
    sa = one_cpu()
    s = sa.kmem_cache_create("b64", 64, 0, SLAB_NO_MERGE)
    p = sa.kmem_cache_alloc_bulk(s, GFP_KERNEL, 3)
    assert len(p) == 3
    sa.kmem_cache_free_bulk(s, p)
    assert sa.kmem_cache_alloc(s, GFP_KERNEL) == p[0]
    # two slabs: x1 | y1 y2 y3 y4 | x2 -> round 1: x2 (3 misses), round 2: y4..y1, round 3: x1
    sa2 = one_cpu()
    s2 = sa2.kmem_cache_create("b2k", 2048, 0, SLAB_NO_MERGE)
    per = s2.oo_objects
    objs = sa2.kmem_cache_alloc_bulk(s2, GFP_KERNEL, 2 * per)
    xs, ys = objs[:per], objs[per:]
    order: list[int] = []
    real = SlabAllocator.slab_free

    def spy(self: SlabAllocator, c: KmemCache, slab: Slab, idx: int, cpu: int) -> None:
        order.append(slab.base + idx * c.size)
        real(self, c, slab, idx, cpu)

    mp = pytest.MonkeyPatch()
    mp.setattr(SlabAllocator, "slab_free", spy)
    try:
        sa2.kmem_cache_free_bulk(s2, [xs[0], ys[0], ys[1], ys[2], ys[3], xs[1]])
    finally:
        mp.undo()
    assert order == [xs[1], ys[3], ys[2], ys[1], ys[0], xs[0]]
