"""SLUB (mm/slub.c of Linux 6.12.117): slab caches, their geometry, and the allocation and
free paths with per-CPU slabs, per-CPU partial lists and per-node partial lists.

The structures are the kernel's:

* :class:`KmemCache` (struct kmem_cache): geometry from ``calculate_sizes`` and
  ``calculate_order``, ``min_partial``, ``cpu_partial_slabs``, ``allocflags``;
* :class:`KmemCacheCpu` (struct kmem_cache_cpu): the CPU slab, its lockless freelist, and the
  CPU partial list (a stack: the newest slab is taken first);
* :class:`KmemCacheNode` (struct kmem_cache_node): the node partial list (head and tail
  insertion, as ``add_partial`` does), ``nr_partial``, ``nr_slabs`` and ``total_objects``;
* :class:`Slab` (struct slab): 2^order pages from the page allocator, ``objects`` objects at a
  stride of ``size`` bytes from the first page's direct-map address, a freelist, ``inuse``
  and ``frozen`` with the kernel's meaning (a frozen slab is a CPU slab; its free objects are
  split between ``c->freelist`` and ``slab->freelist``, which gets remote frees).

A free list is a Python list of object indices whose LAST element is the list head, so push
and pop are O(1); a new slab's list holds objects in address order, object 0 at the head, as
``allocate_slab`` chains them without CONFIG_SLAB_FREELIST_RANDOM.

Simplifications (README fidelity table): no freelist randomisation (the Debian config has
CONFIG_SLAB_FREELIST_RANDOM=y: the kernel shuffles a new slab's objects; the model keeps address
order so results are reproducible), no freelist pointer hardening (the model keeps indices,
not encoded pointers), no pfmemalloc slabs, no KFENCE, SLAB_TYPESAFE_BY_RCU slabs are freed at
once (the kernel waits for an RCU grace period), and ``get_any_partial`` always searches remote
nodes (the kernel skips it when ``get_cycles() % 1024 > remote_node_defrag_ratio``, about 2% of
the time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from typing import TYPE_CHECKING

from impl.buddy import get_order
from impl.page_alloc import OWNER_PAGES
from spec.context import Context, Effect
from spec.errors import NotObjectError, ObjectDoubleFreeError, SleepInAtomicError
from spec.gfp import (
    __GFP_ACCOUNT,
    __GFP_COMP,
    __GFP_DIRECT_RECLAIM,
    __GFP_DMA32,
    __GFP_HIGHMEM,
    __GFP_NOFAIL,
    __GFP_NOMEMALLOC,
    __GFP_NORETRY,
    __GFP_NOWARN,
    __GFP_RECLAIM,
    __GFP_RECLAIMABLE,
    __GFP_THISNODE,
    __GFP_ZERO,
    GFP_DMA,
    GFP_DMA32,
    GFP_NOWAIT,
    format_gfp,
    gfpflags_allow_blocking,
)
from spec.layout import NUMA_NO_NODE, PAGE_SHIFT, PAGE_SIZE
from spec.logic import Bits, If
from spec.slab import (
    MAX_OBJS_PER_PAGE,
    MAX_PAGE_ORDER,
    PAGE_ALLOC_COSTLY_ORDER,
    SLAB_CACHE_DMA,
    SLAB_CACHE_DMA32,
    SLAB_POISON,
    SLAB_RECLAIM_ACCOUNT,
    SLAB_TYPESAFE_BY_RCU,
)

if TYPE_CHECKING:
    from impl.page_alloc import PageAllocator

# Python mangles ``__name`` inside class bodies: single-underscore aliases of __GFP_* bits.
_GFP_ACCOUNT = __GFP_ACCOUNT
_GFP_COMP = __GFP_COMP
_GFP_DIRECT_RECLAIM = __GFP_DIRECT_RECLAIM
_GFP_NOFAIL = __GFP_NOFAIL
_GFP_NOMEMALLOC = __GFP_NOMEMALLOC
_GFP_NORETRY = __GFP_NORETRY
_GFP_NOWARN = __GFP_NOWARN
_GFP_RECLAIM = __GFP_RECLAIM
_GFP_RECLAIMABLE = __GFP_RECLAIMABLE
_GFP_THISNODE = __GFP_THISNODE
_GFP_ZERO = __GFP_ZERO

OWNER_SLAB = "slab"  # the owner of slab pages in PageAllocator.allocated
MIN_PARTIAL = 5
MAX_PARTIAL = 10
SHRINK_PROMOTE_MAX = 32
MAX_PARTIAL_TO_SCAN = 10000  # count_partial_free_approx()
SLUB_MAX_ORDER = PAGE_ALLOC_COSTLY_ORDER  # slub_max_order default
SLUB_MIN_ORDER = 0

# mm/internal.h
GFP_RECLAIM_MASK = (__GFP_RECLAIM | 0x20 | 0x40 | 0x80 | __GFP_NOWARN | 0x4000 | __GFP_NOFAIL
                    | __GFP_NORETRY | 0x20000 | __GFP_NOMEMALLOC)
"""__GFP_RECLAIM|HIGH|IO|FS|NOWARN|RETRY_MAYFAIL|NOFAIL|NORETRY|MEMALLOC|NOMEMALLOC (no
NOLOCKDEP in this config)."""
GFP_CONSTRAINT_MASK = 0x100000 | __GFP_THISNODE  # __GFP_HARDWALL | __GFP_THISNODE
GFP_SLAB_BUG_MASK = __GFP_DMA32 | __GFP_HIGHMEM  # | ~__GFP_BITS_MASK: check_gfp rejects those

Ctor = Callable[[int], None]


# --- geometry (calculate_sizes, calculate_order) --------------------------------------------------

def fls(x: int) -> int:
    """fls(): position of the most significant set bit, 1-based; 0 for 0."""
    return x.bit_length()


def slub_min_objects(nr_cpus: int, nr_cpu_ids: int | None = None) -> int:
    """calculate_order()'s automatic slub_min_objects: 4 * (fls(nr_cpus) + 1), with
    nr_cpus = num_present_cpus(), replaced by nr_cpu_ids when it is 1 or less."""
    n = nr_cpus if nr_cpus > 1 else (nr_cpu_ids if nr_cpu_ids is not None else nr_cpus)
    return 4 * (fls(n) + 1)


def udiv(x: Bits, y: Bits) -> Bits:
    """Unsigned division on ints or Z3 bit-vectors (the divisor may be symbolic)."""
    if type(x) is int and type(y) is int:
        return x // y
    import z3

    return z3.UDiv(x, y)


def align_up(x: Bits, a: Bits) -> Bits:
    """ALIGN(x, a) for a power-of-two ``a`` (include/linux/align.h)."""
    return (x + a - 1) & ~(a - 1)


def slab_stride(object_size: Bits, align: Bits, freeptr_outside: Bits) -> Bits:
    """calculate_sizes()'s s->size: the object rounded to a word, plus a word for a free
    pointer kept after the object, rounded up to the cache's alignment. Written with the logic
    kit: calculate_sizes() runs it on ints, proofs/slab.py on Z3 bit-vectors."""
    size = align_up(object_size, 8)
    size = If(freeptr_outside, size + 8, size)
    return align_up(size, align)


def order_objects(order: Bits, size: Bits) -> Bits:
    """oo_objects(): objects of ``size`` bytes in a slab of 2^order pages (kit-written)."""
    return udiv(PAGE_SIZE << order, size)


def calc_slab_order(size: int, min_order: int, max_order: int, fract_leftover: int) -> int:
    """calc_slab_order(): the smallest order from ``min_order`` whose leftover is at most
    1/fract_leftover of the slab; max_order + 1 if none is."""
    order = min_order
    while order <= max_order:
        slab_size = PAGE_SIZE << order
        if slab_size % size <= slab_size // fract_leftover:
            break
        order += 1
    return order


def calculate_order(size: int, min_objects: int, max_order: int = SLUB_MAX_ORDER,
                    min_order_param: int = SLUB_MIN_ORDER) -> int:
    """calculate_order() of 6.12 (the 6.7 rewrite without the min_objects loop): -1 for
    -ENOSYS."""
    max_objects = max(order_objects(max_order, size), 1)
    min_objects = min(min_objects, max_objects)
    min_order = max(min_order_param, get_order(min_objects * size))
    if order_objects(min_order, size) > MAX_OBJS_PER_PAGE:
        return int(get_order(size * MAX_OBJS_PER_PAGE)) - 1
    fraction = 16
    while fraction > 1:
        order = calc_slab_order(size, min_order, max_order, fraction)
        if order <= max_order:
            return order
        fraction //= 2
    order = get_order(size)
    return order if order <= MAX_PAGE_ORDER else -1


def cpu_partial_objects(size: int) -> int:
    """set_cpu_partial(): the object budget of a CPU partial list."""
    if size >= PAGE_SIZE:
        return 6
    if size >= 1024:
        return 24
    if size >= 256:
        return 52
    return 120


def ilog2(x: int) -> int:
    return x.bit_length() - 1


class KmemCache:
    """struct kmem_cache: name, geometry and per-CPU/per-node state of one cache."""

    __slots__ = (
        "align",
        "alive",
        "allocflags",
        "cpu",
        "cpu_partial",
        "cpu_partial_slabs",
        "ctor",
        "flags",
        "inuse",
        "min_objects",
        "min_order",
        "min_partial",
        "name",
        "node",
        "object_size",
        "offset",
        "oo_objects",
        "oo_order",
        "refcount",
        "size",
        "slabs",
        "usersize",
    )

    def __init__(self, name: str, object_size: int, align: int, flags: int, ctor: Ctor | None,
                 min_objects: int, cpus: Iterator[int] | list[int], nr_nodes: int,
                 usersize: int = 0) -> None:
        self.name = name
        self.object_size = object_size
        self.align = align
        self.flags = flags
        self.ctor = ctor
        self.usersize = usersize
        self.refcount = 1
        self.alive = True  # False once kmem_cache_destroy() has removed it
        self.calculate_sizes(min_objects)
        # do_kmem_cache_create(): min_partial = clamp(ilog2(size) / 2, MIN_PARTIAL, MAX_PARTIAL)
        self.min_partial = max(MIN_PARTIAL, min(MAX_PARTIAL, ilog2(self.size) // 2))
        # set_cpu_partial() / slub_set_cpu_partial(): slabs assumed half full
        self.cpu_partial = cpu_partial_objects(self.size)
        self.cpu_partial_slabs = -(-(self.cpu_partial * 2) // self.oo_objects)
        self.cpu = {c: KmemCacheCpu() for c in cpus}
        self.node = [KmemCacheNode() for _ in range(nr_nodes)]
        self.slabs: dict[int, Slab] = {}  # head pfn -> slab: every slab of the cache

    def calculate_sizes(self, min_objects: int) -> None:
        """calculate_sizes() without debug flags: word-align the object, place the free
        pointer (after the object for ctor, SLAB_TYPESAFE_BY_RCU or SLAB_POISON caches,
        otherwise inside it, in the middle), align the stride, choose the order."""
        self.inuse: int = int(align_up(self.object_size, 8))
        outside = bool(self.flags & (SLAB_TYPESAFE_BY_RCU | SLAB_POISON)) or self.ctor is not None
        self.offset = self.inuse if outside else (self.object_size // 2) & ~7
        self.size: int = int(slab_stride(self.object_size, self.align, outside))
        size = self.size
        order = calculate_order(size, min_objects)
        if order < 0:
            raise ValueError(f"no slab order fits objects of {size} bytes")
        self.allocflags = _GFP_COMP
        if self.flags & SLAB_CACHE_DMA:
            self.allocflags |= GFP_DMA
        if self.flags & SLAB_CACHE_DMA32:
            self.allocflags |= GFP_DMA32
        if self.flags & SLAB_RECLAIM_ACCOUNT:
            self.allocflags |= _GFP_RECLAIMABLE
        self.oo_order = order
        self.oo_objects: int = int(order_objects(order, size))
        self.min_order = int(get_order(size))
        self.min_objects: int = int(order_objects(self.min_order, size))

    @property
    def freeptr_outside_object(self) -> bool:
        return self.offset >= self.inuse

    def __repr__(self) -> str:
        return f"<kmem_cache {self.name} size {self.size}>"


class Slab:
    """struct slab: one block of 2^order pages divided into objects."""

    __slots__ = ("base", "cache", "free", "freelist", "frozen", "inuse", "nid", "node_partial",
                 "objects", "order", "pfn")

    def __init__(self, cache: KmemCache, pfn: int, order: int, nid: int, objects: int,
                 base: int) -> None:
        self.cache = cache
        self.pfn = pfn
        self.order = order
        self.nid = nid
        self.objects = objects
        self.base = base
        self.freelist: list[int] = list(range(objects - 1, -1, -1))  # head: object 0
        self.free = bytearray(b"\x01") * objects  # 1: free (on some freelist), 0: allocated
        self.inuse = 0
        self.frozen = False
        self.node_partial = False

    def __repr__(self) -> str:
        return (f"<slab {self.cache.name} pfn {self.pfn:#x} order {self.order} node {self.nid} "
                f"inuse {self.inuse}/{self.objects}{' frozen' if self.frozen else ''}>")


class KmemCacheCpu:
    """struct kmem_cache_cpu: the CPU slab with its lockless freelist, and the CPU partial
    list (``partial[-1]`` is c->partial, the head)."""

    __slots__ = ("freelist", "partial", "slab")

    def __init__(self) -> None:
        self.slab: Slab | None = None
        self.freelist: list[int] = []
        self.partial: list[Slab] = []


class KmemCacheNode:
    """struct kmem_cache_node: the partial list (dict order = list order, head first) and the
    SLUB_DEBUG counters nr_slabs and total_objects."""

    __slots__ = ("nr_slabs", "partial", "total_objects")

    def __init__(self) -> None:
        self.partial: dict[Slab, None] = {}
        self.nr_slabs = 0
        self.total_objects = 0

    @property
    def nr_partial(self) -> int:
        return len(self.partial)

    def add_partial(self, slab: Slab, tail: bool) -> None:
        """add_partial(): DEACTIVATE_TO_TAIL or DEACTIVATE_TO_HEAD."""
        if tail:
            self.partial[slab] = None
        else:
            self.partial = {slab: None, **self.partial} if self.partial else {slab: None}
        slab.node_partial = True

    def remove_partial(self, slab: Slab) -> None:
        del self.partial[slab]
        slab.node_partial = False


class Slub:
    """mm/slub.c: the allocation and free paths, as methods of the slab allocator
    (impl/slab_common.py's SlabAllocator inherits them)."""

    pages: PageAllocator
    slab_of_pfn: dict[int, Slab]
    slab_nodes: frozenset[int]  # nodes with memory (N_NORMAL_MEMORY)
    mem_node: dict[int, int]  # numa_mem_id() of each node

    # --- pages (alloc_slab_page, __free_slab) -----------------------------------
    def _alloc_slab_page(self, s: KmemCache, gfp: int, node: int, order: int, cpu: int,
                         ctx: Context) -> Slab | None:
        """alloc_slab_page(): 2^order pages on ``node`` (or the local node), owned by slab."""
        pa = self.pages
        pfn = pa.alloc_pages_node(node, gfp, order, cpu=cpu, ctx=ctx)
        if pfn is None:
            return None
        o, zid, _, mt = pa.allocated[pfn]
        pa.allocated[pfn] = (o, zid, OWNER_SLAB, mt)
        nid = pa.zones[zid].nid
        objects = order_objects(order, s.size)
        slab = Slab(s, pfn, order, nid, objects, pa.page_offset + (pfn << PAGE_SHIFT))
        for i in range(1 << order):
            self.slab_of_pfn[pfn + i] = slab
        s.slabs[pfn] = slab
        pa.effects.append(Effect("slab_alloc", nid, f"{s.name}: new slab pfn {pfn:#x} order "
                                 f"{order}, {objects} objects", int(ctx), gfp))
        if s.ctor is not None:  # setup_object(): the constructor runs when the slab is set up
            for i in range(objects):
                s.ctor(slab.base + i * s.size)
        return slab

    def _allocate_slab(self, s: KmemCache, flags: int, node: int, cpu: int,
                       ctx: Context) -> Slab | None:
        """allocate_slab(): first s->oo without reclaim for costly fallbacks, then s->min."""
        flags |= s.allocflags
        alloc_gfp = (flags | _GFP_NOWARN | _GFP_NORETRY) & ~_GFP_NOFAIL
        if alloc_gfp & _GFP_DIRECT_RECLAIM and s.oo_order > s.min_order:
            alloc_gfp = (alloc_gfp | _GFP_NOMEMALLOC) & ~_GFP_RECLAIM
        slab = self._alloc_slab_page(s, alloc_gfp, node, s.oo_order, cpu, ctx)
        if slab is None:
            slab = self._alloc_slab_page(s, flags, node, s.min_order, cpu, ctx)
        return slab

    def _fix_flags(self, gfp: int) -> int:
        """kmalloc_fix_flags() (mm/slab_common.c): _GFP_DMA32 and _GFP_HIGHMEM are bugs for
        slab; warn (pr_warn and dump_stack, every time) and drop them. The kernel calls it
        where pages are taken: new_slab() and ___kmalloc_large_node() (mm/slub.c), so an
        object served from a CPU or partial slab gets no warning."""
        fixed = gfp & ~GFP_SLAB_BUG_MASK
        self.pages.effects.append(Effect(
            "warn", -1, f"Unexpected gfp: {gfp & GFP_SLAB_BUG_MASK:#x} "
            f"({format_gfp(gfp & GFP_SLAB_BUG_MASK)}). Fixing up to gfp: {fixed:#x} "
            f"({format_gfp(fixed)}). Fix your code!", 0, gfp))
        return fixed

    def _new_slab(self, s: KmemCache, flags: int, node: int, cpu: int,
                  ctx: Context) -> Slab | None:
        """new_slab(): kmalloc_fix_flags() for the slab bug mask, then only the caller's
        reclaim and constraint bits reach the page allocator (_GFP_ZERO and _GFP_ACCOUNT do
        not)."""
        if flags & GFP_SLAB_BUG_MASK:
            flags = self._fix_flags(flags)
        return self._allocate_slab(s, flags & (GFP_RECLAIM_MASK | GFP_CONSTRAINT_MASK), node,
                                   cpu, ctx)

    def _discard_slab(self, s: KmemCache, slab: Slab) -> None:
        """discard_slab(): dec_slabs_node() and give the pages back (__free_slab)."""
        n = s.node[slab.nid]
        n.nr_slabs -= 1
        n.total_objects -= slab.objects
        pa = self.pages
        o, zid, _, mt = pa.allocated[slab.pfn]
        pa.allocated[slab.pfn] = (o, zid, OWNER_PAGES, mt)
        pa.free_pages_pfn(slab.pfn, slab.order)
        for i in range(1 << slab.order):
            del self.slab_of_pfn[slab.pfn + i]
        del s.slabs[slab.pfn]
        pa.effects.append(Effect("slab_free", slab.nid, f"{s.name}: slab pfn {slab.pfn:#x} "
                                 f"order {slab.order} freed"))

    # --- CPU partial lists -----------------------------------
    def _put_partials(self, s: KmemCache, chain: list[Slab]) -> None:
        """__put_partials(): each slab of the chain (head first) to its node's partial tail,
        or discarded when empty and the node already holds min_partial partial slabs. The
        kernel pushes the slabs to discard on a stack (slab->next = slab_to_discard), so it
        frees them last first: the order the page allocator's free lists see."""
        discard = []
        for slab in chain:
            n = s.node[slab.nid]
            if not slab.inuse and n.nr_partial >= s.min_partial:
                discard.append(slab)
            else:
                n.add_partial(slab, True)
        for slab in reversed(discard):
            self._discard_slab(s, slab)

    def _put_cpu_partial(self, s: KmemCache, slab: Slab, drain: bool, cpu: int) -> None:
        """put_cpu_partial(): push on this CPU's partial list; with ``drain``, a full list
        (cpu_partial_slabs slabs) first goes to the node lists."""
        c = s.cpu[cpu]
        to_put: list[Slab] = []
        if c.partial and drain and len(c.partial) >= s.cpu_partial_slabs:
            to_put = c.partial[::-1]
            c.partial = []
        c.partial.append(slab)
        if to_put:
            self._put_partials(s, to_put)

    # --- deactivation -----------------------------------
    def _deactivate_slab(self, s: KmemCache, slab: Slab, freelist: list[int]) -> None:
        """deactivate_slab(): splice the CPU freelist before the slab's own, unfreeze, then
        discard (empty, node has min_partial), add to the node partial list (head, or tail if
        remote frees arrived), or leave it full on no list."""
        n = s.node[slab.nid]
        tail = bool(slab.freelist)
        if freelist:
            slab.freelist = slab.freelist + freelist  # c->freelist objects come first
            slab.inuse -= len(freelist)
        slab.frozen = False
        if not slab.inuse and n.nr_partial >= s.min_partial:
            self._discard_slab(s, slab)
        elif slab.freelist:
            n.add_partial(slab, tail)

    def _flush_cpu(self, s: KmemCache, cpu: int) -> None:
        """__flush_cpu_slab(): deactivate the CPU slab and put the CPU partial slabs."""
        c = s.cpu[cpu]
        if c.slab is not None:
            slab, fl = c.slab, c.freelist
            c.slab, c.freelist = None, []
            self._deactivate_slab(s, slab, fl)
        if c.partial:
            chain = c.partial[::-1]
            c.partial = []
            self._put_partials(s, chain)

    def flush_all(self, s: KmemCache) -> None:
        """flush_all(): every CPU's slab and partial list back to the node lists."""
        for cpu in s.cpu:
            self._flush_cpu(s, cpu)

    # --- allocation -----------------------------------
    def _get_partial_node(self, s: KmemCache, n: KmemCacheNode, cpu: int) -> Slab | None:
        """get_partial_node(): the first partial slab, plus up to cpu_partial_slabs / 2 more
        moved to this CPU's partial list."""
        if not n.partial:
            return None
        partial: Slab | None = None
        moved = 0
        limit = s.cpu_partial_slabs // 2 + 2
        for slab in list(islice(n.partial, limit)):
            n.remove_partial(slab)
            if partial is None:
                partial = slab
                if s.cpu_partial_slabs == 0:
                    break
            else:
                self._put_cpu_partial(s, slab, False, cpu)
                moved += 1
                if moved > s.cpu_partial_slabs // 2:
                    break
        return partial

    def _get_partial(self, s: KmemCache, node: int, flags: int, cpu: int) -> Slab | None:
        """get_partial(): the requested node (or numa_mem_id(), the CPU's nearest node with
        memory), then other nodes by distance from numa_mem_id() unless _GFP_THISNODE pins
        the node (get_any_partial takes nodes above min_partial only)."""
        pa = self.pages
        searchnode = self.mem_node[pa.cpu_node[cpu]] if node == NUMA_NO_NODE else node
        slab = self._get_partial_node(s, s.node[searchnode], cpu)
        if slab is not None or (node != NUMA_NO_NODE and flags & _GFP_THISNODE):
            return slab
        for nid in pa._node_order[self.mem_node[pa.cpu_node[cpu]]]:  # mempolicy_slab_node()
            n = s.node[nid]
            if nid != searchnode and n.nr_partial > s.min_partial:
                slab = self._get_partial_node(s, n, cpu)
                if slab is not None:
                    return slab
        return None

    @staticmethod
    def _get_freelist(slab: Slab) -> list[int]:
        """get_freelist(): take the slab's freelist for the CPU; frozen iff it was not empty."""
        fl = slab.freelist
        slab.freelist = []
        slab.inuse = slab.objects
        slab.frozen = bool(fl)
        return fl

    def _slab_alloc(self, s: KmemCache, gfp: int, node: int, cpu: int,
                    ctx: Context) -> int | None:
        """slab_alloc_node(): the lockless fast path (c->freelist of a CPU slab on a matching
        node), else ___slab_alloc(). Returns the object's address or None."""
        c = s.cpu[cpu]
        slab = c.slab
        if slab is not None and c.freelist and (node == NUMA_NO_NODE or slab.nid == node):
            idx = c.freelist.pop()
            slab.free[idx] = 0
            return slab.base + idx * s.size
        return self._slab_alloc_slow(s, gfp, node, cpu, ctx)

    def _slab_alloc_slow(self, s: KmemCache, gfp: int, node: int, cpu: int,
                         ctx: Context) -> int | None:
        """___slab_alloc(): CPU slab, CPU partial list, node partial list (local, then
        remote), then a new slab; a node-bound request first tries its node without reclaim
        (GFP_NOWAIT | _GFP_THISNODE), as the kernel does. A node without memory (not in
        slab_nodes) is served as NUMA_NO_NODE."""
        if node != NUMA_NO_NODE and node not in self.slab_nodes:
            node = NUMA_NO_NODE
        c = s.cpu[cpu]
        slab = c.slab
        if slab is not None:
            if node != NUMA_NO_NODE and slab.nid != node:
                c.slab, fl = None, c.freelist
                c.freelist = []
                self._deactivate_slab(s, slab, fl)
            else:
                if not c.freelist:
                    c.freelist = self._get_freelist(slab)
                    if not c.freelist:
                        c.slab = None  # full: now on no list
                if c.freelist:
                    return self._load_freelist(s, c)
        # new_slab: the CPU partial list
        while c.partial:
            slab = c.partial.pop()
            if node == NUMA_NO_NODE or slab.nid == node:
                c.slab = slab
                c.freelist = self._get_freelist(slab)
                return self._load_freelist(s, c)
            self._put_partials(s, [slab])
        try_thisnode = True
        while True:  # new_objects
            pc_flags = gfp
            if node != NUMA_NO_NODE and not gfp & _GFP_THISNODE and try_thisnode:
                pc_flags = GFP_NOWAIT | _GFP_THISNODE
            slab = self._get_partial(s, node, pc_flags, cpu)
            if slab is not None:  # freeze_slab()
                c.slab = slab
                c.freelist = self._get_freelist(slab)
                return self._load_freelist(s, c)
            slab = self._new_slab(s, pc_flags, node, cpu, ctx)
            if slab is not None:
                break
            if node != NUMA_NO_NODE and not gfp & _GFP_THISNODE and try_thisnode:
                try_thisnode = False
                continue
            if not gfp & _GFP_NOWARN:  # slab_out_of_memory()
                self.pages.effects.append(Effect(
                    "warn", node, f"SLUB: Unable to allocate memory on node {node}, "
                    f"gfp={gfp:#x}({format_gfp(gfp)}), cache: {s.name}, object size: "
                    f"{s.object_size}, buffer size: {s.size}, default order: {s.oo_order}, "
                    f"min order: {s.min_order}", int(ctx), gfp))
            return None
        n = s.node[slab.nid]
        n.nr_slabs += 1  # inc_slabs_node()
        n.total_objects += slab.objects
        c.slab = slab
        c.freelist = self._get_freelist(slab)
        return self._load_freelist(s, c)

    @staticmethod
    def _load_freelist(s: KmemCache, c: KmemCacheCpu) -> int:
        slab = c.slab
        assert slab is not None
        idx = c.freelist.pop()
        slab.free[idx] = 0
        return slab.base + idx * s.size

    def slab_alloc(self, s: KmemCache, gfp: int, node: int, cpu: int,
                   ctx: Context | None) -> int | None:
        """slab_pre_alloc_hook()'s might_alloc(), then slab_alloc_node(). The caller checked
        gfp, node and cpu."""
        pa = self.pages
        if ctx is None:
            ctx = pa.context(cpu)
        if ctx is not Context.PROCESS and gfpflags_allow_blocking(gfp):
            raise SleepInAtomicError(
                f"BUG: sleeping function called from invalid context: {s.name} allocation "
                f"with {format_gfp(gfp)} in {ctx.name.lower()} context on cpu {cpu}")
        return self._slab_alloc(s, gfp, node, cpu, ctx)

    # --- free -----------------------------------
    def lookup_object(self, addr: int) -> tuple[Slab, int]:
        """virt_to_slab() and the object index of ``addr``; NotObjectError for addresses in no
        slab or not at an object's start."""
        pa = self.pages
        try:
            off = addr - pa.page_offset
            slab = self.slab_of_pfn.get(off >> PAGE_SHIFT) if off >= 0 else None
        except TypeError:  # not an int (a float, a string, None)
            raise NotObjectError(f"{addr!r} is not an address") from None
        if slab is None:
            if type(addr) is not int:
                raise NotObjectError(f"{addr!r} is not an address")
            raise NotObjectError(f"address {addr:#x} is in no slab")
        d = addr - slab.base
        s = slab.cache
        idx = d // s.size
        if d % s.size or idx >= slab.objects:
            raise NotObjectError(
                f"Invalid object pointer {addr:#x}: not the start of an object of {s.name} "
                f"(slab at {slab.base:#x}, objects of {s.size} bytes)")
        return slab, idx

    def slab_free(self, s: KmemCache, slab: Slab, idx: int, cpu: int) -> None:
        """do_slab_free(): the CPU slab's own freelist (LIFO), else __slab_free()."""
        if slab.free[idx]:
            raise ObjectDoubleFreeError(
                f"double free or corruption: object {slab.base + idx * s.size:#x} of {s.name} "
                "is already free")
        slab.free[idx] = 1
        c = s.cpu[cpu]
        if c.slab is slab:
            c.freelist.append(idx)
            return
        self._slab_free_slow(s, slab, idx, cpu)

    def _slab_free_slow(self, s: KmemCache, slab: Slab, idx: int, cpu: int) -> None:
        """__slab_free(): onto the slab's freelist; a slab that was full goes to this CPU's
        partial list; an empty slab on the node partial list is discarded when the node
        already holds min_partial partial slabs."""
        prior = bool(slab.freelist)
        slab.freelist.append(idx)
        slab.inuse -= 1
        if slab.frozen:
            return
        if not prior:
            self._put_cpu_partial(s, slab, True, cpu)
            return
        if not slab.node_partial:
            return  # on a CPU partial list
        n = s.node[slab.nid]
        if not slab.inuse and n.nr_partial >= s.min_partial:
            n.remove_partial(slab)
            self._discard_slab(s, slab)

    # --- shrink and shutdown -----------------------------------
    def _do_shrink(self, s: KmemCache) -> int:
        """__kmem_cache_do_shrink(): free every empty partial slab, move the fullest (at most
        SHRINK_PROMOTE_MAX free objects, fewest first) to the head; 1 if slabs remain.
        list_move() puts each slab at the head of its discard or promote list, so both come
        out in reverse list order: the promoted slabs within each bucket, and the discarded
        ones as free_slab() gives their pages back."""
        ret = 0
        for n in s.node:
            discard: list[Slab] = []
            promote: list[list[Slab]] = [[] for _ in range(SHRINK_PROMOTE_MAX)]
            rest: list[Slab] = []
            for slab in n.partial:
                free = slab.objects - slab.inuse
                if free == slab.objects:
                    discard.append(slab)
                elif free <= SHRINK_PROMOTE_MAX:
                    promote[free - 1].append(slab)
                else:
                    rest.append(slab)
            order = [sl for bucket in promote for sl in reversed(bucket)] + rest
            n.partial = dict.fromkeys(order)
            for slab in reversed(discard):
                slab.node_partial = False
                self._discard_slab(s, slab)
            if n.nr_slabs:
                ret = 1
        return ret

    @staticmethod
    def count_partial_free_approx(n: KmemCacheNode) -> int:
        """count_partial_free_approx(): the free objects of a node's partial slabs, for
        /proc/slabinfo; above MAX_PARTIAL_TO_SCAN slabs, the first and last
        MAX_PARTIAL_TO_SCAN / 2 scaled to the list's length (mult_frac), at most the node's
        objects."""
        if n.nr_partial <= MAX_PARTIAL_TO_SCAN:
            return sum(sl.objects - sl.inuse for sl in n.partial)
        half = MAX_PARTIAL_TO_SCAN // 2
        x = sum(sl.objects - sl.inuse for sl in islice(n.partial, half))
        x += sum(sl.objects - sl.inuse for sl in islice(reversed(n.partial), half))
        return min(x * n.nr_partial // MAX_PARTIAL_TO_SCAN, n.total_objects)

    @staticmethod
    def live_objects(s: KmemCache) -> int:
        """Objects of ``s`` allocated and not freed (from the slabs' own free maps)."""
        return sum(sl.objects - sum(sl.free) for sl in s.slabs.values())
