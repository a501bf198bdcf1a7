"""SLUB caches and kmalloc (impl/slub.py, impl/slab_common.py): geometry against real Debian
6.12.117 /proc/slabinfo captures, the size classes and alignment of spec/slab.py, the SLUB
list structure, sleeping rules, and bad input with full state snapshots."""

from __future__ import annotations

import random
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from impl.slab_common import (
    SlabAllocator,
    abstract_slabs,
    kmalloc_index,
    kmalloc_type,
    parse_slabinfo,
)
from spec.context import Context
from spec.errors import (
    BadFreeError,
    CacheArgsError,
    CacheBusyError,
    KmemError,
    NotObjectError,
    ObjectDoubleFreeError,
    SleepInAtomicError,
    WrongCacheError,
)
from spec.gfp import (
    __GFP_ACCOUNT,
    __GFP_DMA32,
    __GFP_RECLAIMABLE,
    __GFP_THISNODE,
    GFP_ATOMIC,
    GFP_DMA,
    GFP_KERNEL,
    GFP_NOWAIT,
)
from spec.layout import PAGE_SIZE
from spec.slab import (
    KMALLOC_CGROUP,
    KMALLOC_CLASSES,
    KMALLOC_DMA,
    KMALLOC_MAX_CACHE_SIZE,
    KMALLOC_MAX_SIZE,
    KMALLOC_NORMAL,
    KMALLOC_RECLAIM,
    SLAB_CACHE_DMA32,
    SLAB_HWCACHE_ALIGN,
    SLAB_NO_MERGE,
    SLAB_PANIC,
    SLAB_TYPESAFE_BY_RCU,
    ZERO_SIZE_PTR,
    kmalloc_align_spec,
    kmalloc_class_spec,
    kmalloc_large_order_spec,
)
from spec.slab_state import NO_LIST, NODE_PARTIAL, slab_violations

FIXTURES = Path(__file__).parent / "fixtures" / "linux-6.12"
CAPTURES = sorted(p for p in FIXTURES.glob("*") if (p / "slabinfo").exists())


def small(nodes: int = 1) -> SlabAllocator:
    return SlabAllocator(PageAllocator(MachineConfig.flat(8192, nodes=nodes)))


def ok(sa: SlabAllocator) -> None:
    bad = slab_violations(abstract_slabs(sa))
    assert not bad, bad


# --- geometry against real kernels ---------------------------------------------------------------

def _rows(text: str) -> list[list[str]]:
    """The fields of every line, read by the strict parser real files also go through."""
    return [[r.name, *map(str, r[1:])] for r in parse_slabinfo(text)]


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_kmalloc_caches_match_real_slabinfo(capture: Path) -> None:
    """objsize, objperslab and pagesperslab of every kmalloc cache, for the captured kernel's
    CPU count, equal what Linux 6.12.117 (Debian) printed; and the order of the lines."""
    cpus = int((capture / "nr_cpus").read_text())
    real = {r[0]: r for r in _rows((capture / "slabinfo").read_text())}
    sa = SlabAllocator(PageAllocator(MachineConfig.default()), nr_cpus=cpus)
    mine = _rows(sa.slabinfo())
    kmalloc = [r for r in mine if "kmalloc" in r[0] or r[0].startswith("kmem_cache")]
    assert len(kmalloc) == 4 * 13 + 3
    for r in kmalloc:
        assert r[0] in real, r[0]
        assert r[3:6] == real[r[0]][3:6], (r[0], r[3:6], real[r[0]][3:6])
    real_order = [n for n in real if n in {r[0] for r in kmalloc}]
    assert [r[0] for r in kmalloc] == real_order


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_boot_with_the_dedicated_caches_of_a_real_slabinfo(capture: Path) -> None:
    cpus = int((capture / "nr_cpus").read_text())
    path = capture / "slabinfo"
    real = _rows(path.read_text())
    sa = SlabAllocator(PageAllocator(MachineConfig.default()), nr_cpus=cpus, slabinfo=path)
    mine = _rows(sa.slabinfo())
    assert [r[0] for r in mine] == [r[0] for r in real]
    assert [r[3:6] for r in mine] == [r[3:6] for r in real]
    ok(sa)


def test_slabinfo_line_format_is_the_kernels() -> None:
    sa = small()
    line = next(x for x in sa.slabinfo().splitlines() if x.startswith("kmalloc-cg-8k "))
    assert line == ("kmalloc-cg-8k          0      0   8192    4    8 : tunables    0    0    0"
                    " : slabdata      0      0      0")


@pytest.mark.parametrize(("cpus", "expect"), [
    (1, {"kmalloc-512": (8, 1), "kmalloc-1k": (8, 2), "kmalloc-2k": (8, 4)}),
    (4, {"kmalloc-512": (16, 2), "kmalloc-1k": (16, 4), "kmalloc-2k": (16, 8)}),
    (8, {"kmalloc-256": (32, 2), "kmalloc-512": (32, 4), "kmalloc-1k": (32, 8)}),
    (16, {"kmalloc-192": (42, 2), "kmalloc-2k": (16, 8), "kmalloc-8k": (4, 8)}),
])
def test_slab_order_follows_the_cpu_count(cpus: int, expect: dict[str, tuple[int, int]]) -> None:
    """slub_min_objects = 4 * (fls(nr_cpus) + 1) changes the orders (mm/slub.c
    calculate_order; published table in the shared facts)."""
    sa = SlabAllocator(PageAllocator(MachineConfig.flat(4096)), nr_cpus=cpus)
    for name, (objs, pages) in expect.items():
        s = sa.find_cache(name)
        assert (s.oo_objects, 1 << s.oo_order) == (objs, pages), name


# --- size classes, types, alignment ------------------------------------------------------------

def test_every_size_gets_the_smallest_class_and_its_alignment() -> None:
    sa = small()
    for size in range(1, KMALLOC_MAX_CACHE_SIZE + 1):
        s = sa.kmalloc_slab(size, GFP_KERNEL)
        assert s.size == kmalloc_class_spec(size), size
        assert s.align % kmalloc_align_spec(size) == 0 or s.align >= kmalloc_align_spec(size)
        assert sa.kmalloc_size_roundup(size) == kmalloc_class_spec(size)
    assert [KMALLOC_CLASSES[i] for i in range(len(KMALLOC_CLASSES))] == sorted(
        {sa.kmalloc_slab(n, GFP_KERNEL).size for n in range(1, KMALLOC_MAX_CACHE_SIZE + 1)})
    assert kmalloc_index(65) == 1 and kmalloc_index(129) == 2 and kmalloc_index(8192) == 13


def test_objects_are_naturally_aligned_and_in_their_class() -> None:
    sa = small()
    rng = random.Random(1)
    live = []
    for _ in range(600):
        size = rng.choice([rng.randint(1, 8192), *KMALLOC_CLASSES])
        a = sa.kmalloc(size, GFP_KERNEL)
        assert a is not None
        assert a % kmalloc_align_spec(size) == 0, (size, hex(a))
        assert sa.ksize(a) == kmalloc_class_spec(size)
        live.append((a, sa.ksize(a)))
    spans = sorted(live)
    for (a, n), (b, _) in pairwise(spans):
        assert a + n <= b, "two live kmalloc objects overlap"
    ok(sa)


@pytest.mark.parametrize(("gfp", "ktype", "prefix"), [
    (GFP_KERNEL, KMALLOC_NORMAL, "kmalloc-"),
    (GFP_KERNEL | __GFP_RECLAIMABLE, KMALLOC_RECLAIM, "kmalloc-rcl-"),
    (GFP_KERNEL | __GFP_ACCOUNT, KMALLOC_CGROUP, "kmalloc-cg-"),
    (GFP_KERNEL | GFP_DMA, KMALLOC_DMA, "dma-kmalloc-"),
    (GFP_KERNEL | GFP_DMA | __GFP_RECLAIMABLE | __GFP_ACCOUNT, KMALLOC_DMA, "dma-kmalloc-"),
    (GFP_KERNEL | __GFP_RECLAIMABLE | __GFP_ACCOUNT, KMALLOC_RECLAIM, "kmalloc-rcl-"),
])
def test_kmalloc_type(gfp: int, ktype: int, prefix: str) -> None:
    sa = SlabAllocator(PageAllocator(MachineConfig.default()))
    assert kmalloc_type(gfp) == ktype
    a = sa.kmalloc(100, gfp)
    assert a is not None
    slab, _ = sa.lookup_object(a)
    assert slab.cache.name == prefix + "128"
    if ktype == KMALLOC_DMA:  # SLAB_CACHE_DMA: the slab's pages come from ZONE_DMA
        assert sa.pages.zones[sa.pages.allocated[slab.pfn][1]].name == "DMA"


def test_zero_size_null_and_limits() -> None:
    sa = small()
    before = sa.snapshot()
    assert sa.kmalloc(0, GFP_KERNEL) == ZERO_SIZE_PTR
    sa.kfree(0)
    sa.kfree(ZERO_SIZE_PTR)
    assert sa.ksize(ZERO_SIZE_PTR) == 0
    assert sa.snapshot() == before
    # kmalloc(0) returns before might_alloc(): no BUG in atomic context
    assert sa.kmalloc(0, GFP_KERNEL, ctx=Context.HARDIRQ) == ZERO_SIZE_PTR
    n = len(sa.pages.effects)
    assert sa.kmalloc(KMALLOC_MAX_SIZE + 1, GFP_KERNEL) is None
    assert [e.kind for e in sa.pages.effects[n:]] == ["warn"]


def test_large_kmalloc_takes_whole_pages_and_kfree_returns_them() -> None:
    sa = small()
    free0 = sa.pages.nr_free_pages()
    for size in (8193, 12288, 65536, 100_000, KMALLOC_MAX_SIZE):
        a = sa.kmalloc(size, GFP_KERNEL)
        assert a is not None and a % PAGE_SIZE == 0
        order = kmalloc_large_order_spec(size)
        assert sa.ksize(a) == PAGE_SIZE << order
        assert sa.pages.nr_free_pages() == free0 - (1 << order)
        with pytest.raises(BadFreeError):  # the pages belong to kmalloc, not to free_pages
            sa.pages.free_pages(a, order)
        sa.kfree(a)
        assert sa.pages.nr_free_pages() == free0


def test_kcalloc_krealloc() -> None:
    sa = small()
    assert sa.kcalloc(1 << 40, 1 << 40, GFP_KERNEL) is None  # multiplication overflows
    a = sa.kcalloc(10, 10, GFP_KERNEL)
    assert a is not None and sa.ksize(a) == 128
    assert sa.krealloc(a, 120, GFP_KERNEL) == a  # still fits: same object
    b = sa.krealloc(a, 300, GFP_KERNEL)
    assert b is not None and b != a and sa.ksize(b) == 512
    with pytest.raises(ObjectDoubleFreeError):
        sa.kfree(a)  # krealloc freed it
    assert sa.krealloc(b, 0, GFP_KERNEL) == ZERO_SIZE_PTR
    assert sa.krealloc(0, 64, GFP_KERNEL) is not None
    ok(sa)


# --- SLUB structure ------------------------------------------------------------------------------

def test_fresh_slab_hands_out_objects_in_address_order_and_frees_lifo() -> None:
    sa = small()
    s = sa.kmem_cache_create("foo", 100, 0, 0)
    got = [sa.kmem_cache_alloc(s, GFP_KERNEL) for _ in range(5)]
    objs = [o for o in got if o is not None]
    assert len(objs) == 5
    base = objs[0]
    assert base is not None
    slab, idx = sa.lookup_object(base)
    assert idx == 0 and base == slab.base
    assert objs == [base + i * s.size for i in range(5)]
    sa.kmem_cache_free(s, objs[2])
    sa.kmem_cache_free(s, objs[4])
    assert sa.kmem_cache_alloc(s, GFP_KERNEL) == objs[4]  # c->freelist is LIFO
    assert sa.kmem_cache_alloc(s, GFP_KERNEL) == objs[2]
    ok(sa)


def test_full_slab_goes_to_cpu_partial_then_node_partial_and_empty_slabs_are_freed() -> None:
    sa = small()
    s = sa.kmem_cache_create("bar", 512, 0, 0)
    per = s.oo_objects
    nslabs = s.cpu_partial_slabs * 2 + 3
    objs = [sa.kmem_cache_alloc(s, GFP_KERNEL) for _ in range(per * nslabs)]
    assert len(s.slabs) == nslabs
    ok(sa)
    # free one object of each full slab (not the CPU slab): each goes to the CPU partial list
    # until cpu_partial_slabs, then the list drains to the node partial list
    for k in range(nslabs - 1):
        o = objs[k * per]
        assert o is not None
        sa.kmem_cache_free(s, o)
        ok(sa)
    st = abstract_slabs(sa)
    where = [r.where for r in st.slabs if r.cache == "bar"]
    assert where.count(NODE_PARTIAL) > 0 and where.count(NO_LIST) == 0
    assert len(s.cpu[0].partial) <= s.cpu_partial_slabs
    # free everything: empty slabs beyond min_partial go back to the page allocator
    for o in objs:
        if o is not None and not sa.lookup_object(o)[0].free[sa.lookup_object(o)[1]]:
            sa.kmem_cache_free(s, o)
        ok(sa)
    assert len(s.slabs) <= s.min_partial + s.cpu_partial_slabs + 1
    assert sa.kmem_cache_shrink(s) == 0 and not s.slabs
    assert any(e.kind == "slab_free" for e in sa.pages.effects)
    ok(sa)


def test_remote_cpu_free_goes_to_the_slab_freelist() -> None:
    sa = SlabAllocator(PageAllocator(MachineConfig.default()))
    s = sa.kmem_cache_create("baz", 64, 0, 0)
    a = sa.kmem_cache_alloc(s, GFP_KERNEL, cpu=0)
    assert a is not None
    slab, idx = sa.lookup_object(a)
    sa.kmem_cache_free(s, a, cpu=1)  # not cpu 1's slab: __slab_free onto slab->freelist
    assert slab.freelist[-1] == idx and slab.frozen
    ok(sa)


def test_kmalloc_node_places_the_slab_on_the_node() -> None:
    sa = SlabAllocator(PageAllocator(MachineConfig.default()))
    for nid in (0, 1):
        a = sa.kmalloc_node(200, GFP_KERNEL, nid)
        assert a is not None
        assert sa.lookup_object(a)[0].nid == nid
        big = sa.kmalloc_node(50_000, GFP_KERNEL | __GFP_THISNODE, nid)
        assert big is not None
        pfn = sa.large[big][0]
        assert sa.pages.zones[sa.pages.allocated[pfn][1]].nid == nid
    ok(sa)


def test_ctor_runs_for_every_object_when_the_slab_is_set_up() -> None:
    sa = small()
    seen: list[int] = []
    s = sa.kmem_cache_create("withctor", 40, 0, 0, seen.append)
    assert s.offset == 40 and s.size == 48  # free pointer after the object
    a = sa.kmem_cache_alloc(s, GFP_KERNEL)
    assert a is not None and len(seen) == s.oo_objects and seen[0] == a
    rcu = sa.kmem_cache_create("rcu", 40, 0, SLAB_TYPESAFE_BY_RCU)
    assert rcu.offset == 40
    plain = sa.kmem_cache_create("plain", 40, 0, SLAB_HWCACHE_ALIGN)
    assert plain.offset == 16 and plain.size == 64


def test_caches_merge_like_the_kernels() -> None:
    sa = small()
    a = sa.kmem_cache_create("a", 100, 0, 0)
    b = sa.kmem_cache_create("b", 98, 0, 0)
    assert b is a and a.refcount == 2
    assert "b" not in _rows(sa.slabinfo())[0]
    sa.kmem_cache_destroy("b")
    assert a.refcount == 1 and sa.find_cache("a") is a


def test_atomic_context_rules() -> None:
    sa = small()
    s = sa.kmem_cache_create("ctx", 64, 0, 0)
    before = sa.snapshot()
    with pytest.raises(SleepInAtomicError):
        sa.kmem_cache_alloc(s, GFP_KERNEL, ctx=Context.HARDIRQ)
    with pytest.raises(SleepInAtomicError):
        sa.kmalloc(64, GFP_KERNEL, ctx=Context.SOFTIRQ)
    assert sa.snapshot() == before
    for gfp in (GFP_ATOMIC, GFP_NOWAIT):
        a = sa.kmalloc(64, gfp, ctx=Context.HARDIRQ)
        assert a is not None
        sa.kfree(a)  # kfree may be called from any context


def test_new_slabs_and_sleeps_show_in_the_effects_log() -> None:
    sa = small()
    n = len(sa.pages.effects)
    sa.kmalloc(3000, GFP_KERNEL)
    kinds = [e.kind for e in sa.pages.effects[n:]]
    assert kinds == ["slab_alloc"]


def test_gfp_slab_bug_mask_is_fixed_with_a_warning() -> None:
    sa = small()
    n = len(sa.pages.effects)
    a = sa.kmalloc(64, GFP_KERNEL | __GFP_DMA32)
    assert a is not None
    assert any("Unexpected gfp" in e.detail for e in sa.pages.effects[n:])


# --- bad input: typed error, state exactly as it was -------------------------------------------

def _bad_cases() -> list[tuple[str, Callable[[SlabAllocator], object], type[KmemError]]]:
    return [
        ("wrong cache", lambda sa: sa.kmem_cache_free("two", sa.live["one"]), WrongCacheError),
        ("double free", lambda sa: sa.kmem_cache_free("one", sa.freed), ObjectDoubleFreeError),
        ("double kfree", lambda sa: sa.kfree(sa.freed), ObjectDoubleFreeError),
        ("not an object start", lambda sa: sa.kfree(sa.live["one"] + 8), NotObjectError),
        ("address in no slab", lambda sa: sa.kfree(sa.pages.page_offset + (1 << 30)),
         NotObjectError),
        ("inside a large kmalloc", lambda sa: sa.kfree(sa.live["large"] + PAGE_SIZE),
         NotObjectError),
        ("destroy with live objects", lambda sa: sa.kmem_cache_destroy("one"), CacheBusyError),
        ("duplicate name", lambda sa: sa.kmem_cache_create("one", 64), CacheArgsError),
        ("size 0", lambda sa: sa.kmem_cache_create("z", 0), CacheArgsError),
        ("size above KMALLOC_MAX_SIZE",
         lambda sa: sa.kmem_cache_create("z", KMALLOC_MAX_SIZE + 1), CacheArgsError),
        ("align not a power of two", lambda sa: sa.kmem_cache_create("z", 64, 24),
         CacheArgsError),
        ("flags not permitted", lambda sa: sa.kmem_cache_create("z", 64, 0, 1 << 17),
         CacheArgsError),
        ("create in atomic context", lambda sa: _in_irq(sa, lambda: sa.kmem_cache_create(
            "z", 64)), SleepInAtomicError),
    ]


def _in_irq(sa: SlabAllocator, fn: Callable[[], object]) -> object:
    sa.pages.enter(Context.HARDIRQ)
    try:
        return fn()
    finally:
        sa.pages.exit(Context.HARDIRQ)


class _Setup(SlabAllocator):
    live: dict[str, int]
    freed: int


@pytest.mark.parametrize(("what", "call", "err"), _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_input_is_a_typed_error_and_changes_nothing(
        what: str, call: Callable[[SlabAllocator], object], err: type[KmemError]) -> None:
    sa = _Setup(PageAllocator(MachineConfig.flat(8192)))
    sa.kmem_cache_create("one", 64, 0, SLAB_NO_MERGE)
    sa.kmem_cache_create("two", 64, 0, SLAB_NO_MERGE)
    one = sa.kmem_cache_alloc("one", GFP_KERNEL)
    gone = sa.kmem_cache_alloc("one", GFP_KERNEL)
    large = sa.kmalloc(3 * PAGE_SIZE, GFP_KERNEL)
    assert one is not None and gone is not None and large is not None
    sa.kmem_cache_free("one", gone)
    sa.live = {"one": one, "large": large}
    sa.freed = gone
    before = sa.snapshot()
    with pytest.raises(err) as info:
        call(sa)
    assert type(info.value) is err
    assert str(info.value)
    assert sa.snapshot() == before


def test_slab_panic_failures_say_the_kernel_would_panic() -> None:
    sa = small()
    before = sa.snapshot()
    with pytest.raises(CacheArgsError, match=r"Kernel panic .*Failed to create slab 'p'"):
        sa.kmem_cache_create("p", 0, 0, SLAB_PANIC)
    assert sa.snapshot() == before
    sa = SlabAllocator(PageAllocator(MachineConfig.default()))
    s = sa.kmem_cache_create("p", 64, 0, SLAB_PANIC | SLAB_CACHE_DMA32)
    assert s.allocflags & __GFP_DMA32
    o = sa.kmem_cache_alloc(s, GFP_KERNEL)
    assert o is not None  # SLAB_CACHE_DMA32: the slab's pages come from ZONE_DMA32 or below
    slab, _ = sa.lookup_object(o)
    assert sa.pages.zones[sa.pages.allocated[slab.pfn][1]].name in ("DMA", "DMA32")
