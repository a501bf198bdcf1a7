"""Slab caches and kmalloc: the common code of mm/slab_common.c (cache creation, merging,
destruction, the kmalloc caches and size classes) and kmalloc/kfree of mm/slub.c, over the SLUB
mechanics of impl/slub.py and the page allocator of impl/page_alloc.py.

:class:`SlabAllocator` boots as ``kmem_cache_init`` does: the ``kmem_cache_node`` and
``kmem_cache`` caches, then ``create_kmalloc_caches`` (kmalloc-*, kmalloc-rcl-*,
dma-kmalloc-*, kmalloc-cg-*; kmalloc-no-objext-* is aliased to the normal caches because
memory-allocation profiling is off), then ``kmalloc_buckets`` (CONFIG_SLAB_BUCKETS). Every cache
owns a ``struct kmem_cache`` object from the ``kmem_cache`` cache and one ``struct
kmem_cache_node`` per node with memory (slab_nodes) from ``kmem_cache_node``, as in the kernel,
so /proc/slabinfo counts them the same way.

Model choices where the kernel leaves a caller's bug undefined or only warns (README fidelity
table): kmem_cache_free() to the wrong cache, a double free, a pointer that is not an object's
start, kmem_cache_destroy() with live objects, and kmem_cache_create() with a size of 0, an
alignment that is not a power of two or a duplicate name raise a typed error and change nothing
(the kernel WARNs and frees to the right cache, BUGs on the freelist, or leaks the cache).
kmem_cache_create() with SLUB debug flags (SLAB_RED_ZONE, SLAB_POISON, SLAB_STORE_USER,
SLAB_TRACE, SLAB_CONSISTENCY_CHECKS) is refused too: the kernel makes a debug cache, whose
geometry and paths the model does not have. Arguments of the wrong type (a float address, a
size beyond size_t) are typed errors as well, never a Python TypeError.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from impl.buddy import get_order
from impl.page_alloc import OWNER_PAGES, PageAllocator
from impl.slub import (
    GFP_SLAB_BUG_MASK,
    OWNER_SLAB,
    Ctor,
    KmemCache,
    Slab,
    Slub,
    slub_min_objects,
)
from spec.context import Context
from spec.errors import (
    BadNodeError,
    CacheArgsError,
    CacheBusyError,
    NotObjectError,
    ObjectDoubleFreeError,
    SlabError,
    SleepInAtomicError,
    UnknownCacheError,
    WrongCacheError,
)
from spec.gfp import (
    __GFP_ACCOUNT,
    __GFP_COMP,
    __GFP_DMA,
    __GFP_HIGHMEM,
    __GFP_RECLAIMABLE,
    __GFP_ZERO,
    GFP_KERNEL,
    MIGRATE_RECLAIMABLE,
)
from spec.layout import NUMA_NO_NODE, PAGE_SHIFT, PAGE_SIZE
from spec.logic import Bits, If, lshr
from spec.logic import udiv as udiv_const
from spec.slab import (
    ARCH_KMALLOC_MINALIGN,
    ARCH_SLAB_MINALIGN,
    CACHE_LINE_SIZE,
    KMALLOC_CGROUP,
    KMALLOC_DMA,
    KMALLOC_MAX_CACHE_SIZE,
    KMALLOC_MAX_SIZE,
    KMALLOC_NO_OBJ_EXT,
    KMALLOC_NORMAL,
    KMALLOC_RECLAIM,
    KMALLOC_SHIFT_HIGH,
    KMALLOC_SHIFT_LOW,
    KMALLOC_TYPE_PREFIX,
    NR_KMALLOC_TYPES,
    SLAB_ACCOUNT,
    SLAB_CACHE_DMA,
    SLAB_DEBUG_FLAGS,
    SLAB_FLAGS_PERMITTED,
    SLAB_HWCACHE_ALIGN,
    SLAB_KMALLOC,
    SLAB_MERGE_SAME,
    SLAB_NEVER_MERGE,
    SLAB_NO_MERGE,
    SLAB_NO_OBJ_EXT,
    SLAB_PANIC,
    SLAB_RECLAIM_ACCOUNT,
    SLAB_TYPESAFE_BY_RCU,
    ZERO_SIZE_PTR,
    format_slab_flags,
)
from spec.slab_state import SlabState

# Python mangles ``__name`` inside class bodies: single-underscore aliases of __GFP_* bits.
_GFP_COMP = __GFP_COMP
_GFP_DMA = __GFP_DMA
_GFP_HIGHMEM = __GFP_HIGHMEM
_GFP_ZERO = __GFP_ZERO

OWNER_KMALLOC_LARGE = "kmalloc_large"  # pages of a large kmalloc in PageAllocator.allocated
SIZE_MAX = (1 << 64) - 1

# mm/slab_common.c kmalloc_size_index[]: (size - 1) / 8 -> kmalloc index, sizes 1..192
KMALLOC_SIZE_INDEX = (3, 4, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1, 7, 7, 7, 7, 2, 2, 2, 2, 2, 2, 2, 2)
# kmalloc_info[]: index -> (size, short name) for the indices SLUB creates
KMALLOC_INFO = {1: (96, "96"), 2: (192, "192"), 3: (8, "8"), 4: (16, "16"), 5: (32, "32"),
                6: (64, "64"), 7: (128, "128"), 8: (256, "256"), 9: (512, "512"),
                10: (1024, "1k"), 11: (2048, "2k"), 12: (4096, "4k"), 13: (8192, "8k")}
KMALLOC_NOT_NORMAL_BITS = __GFP_RECLAIMABLE | __GFP_DMA | __GFP_ACCOUNT
# sizeof(struct kmem_cache_node) with SLUB_DEBUG, and offsetof(struct kmem_cache, node): both
# give the objsize Debian's 6.12 prints (64 and 256) with SLAB_HWCACHE_ALIGN.
SIZEOF_KMEM_CACHE_NODE = 64
OFFSETOF_KMEM_CACHE_NODE = 224
SIZEOF_KMEM_BUCKETS = 8 * (KMALLOC_SHIFT_HIGH + 1)


def kmalloc_index_of(size: Bits, size_index: tuple[int, ...] = KMALLOC_SIZE_INDEX) -> Bits:
    """kmalloc_slab()'s index for 1 <= size <= KMALLOC_MAX_CACHE_SIZE: size_index[(size - 1)
    / 8] up to 192 bytes, fls(size - 1) above. Written with the logic kit: proofs/slab.py runs
    this very function on Z3 bit-vectors, and :func:`kmalloc_index` is its table."""
    zero = 0 * size
    small: Bits = zero + size_index[0]
    for i, idx in enumerate(size_index):
        small = If(udiv_const(size - 1, 8) == i, zero + idx, small)
    big: Bits = zero
    for b in range(KMALLOC_SHIFT_HIGH + 1):
        big = If(lshr(size - 1, b) != 0, zero + b + 1, big)
    return If(size <= 192, small, big)


def kmalloc_class_size(idx: Bits) -> Bits:
    """kmalloc_info[idx].size: the object size of the kmalloc caches of index ``idx``."""
    r: Bits = 0 * idx
    for i, (size, _) in KMALLOC_INFO.items():
        r = If(idx == i, 0 * idx + size, r)
    return r


_KMALLOC_INDEX = [0] + [KMALLOC_SIZE_INDEX[(n - 1) // 8] if n <= 192 else (n - 1).bit_length()
                        for n in range(1, KMALLOC_MAX_CACHE_SIZE + 1)]
"""The hot path's lookup table (the kernel's formula evaluated once per size). The proof
kmalloc.size_class checks that it equals the proved kmalloc_index_of() on every size."""


def kmalloc_index(size: int) -> int:
    """kmalloc_slab()'s index of a size 1..KMALLOC_MAX_CACHE_SIZE (kmalloc_index_of's table)."""
    return _KMALLOC_INDEX[size]


def kmalloc_type(gfp: int) -> int:
    """kmalloc_type(): NORMAL unless __GFP_DMA (DMA), __GFP_RECLAIMABLE (RECLAIM) or
    __GFP_ACCOUNT (CGROUP), in that priority (include/linux/slab.h)."""
    if not gfp & KMALLOC_NOT_NORMAL_BITS:
        return KMALLOC_NORMAL
    if gfp & __GFP_DMA:
        return KMALLOC_DMA
    if gfp & __GFP_RECLAIMABLE:
        return KMALLOC_RECLAIM
    return KMALLOC_CGROUP


def calculate_alignment(flags: int, align: int, size: int) -> int:
    """calculate_alignment(): SLAB_HWCACHE_ALIGN halves the 64-byte line while the object
    fits in half of it; at least the requested and ARCH_SLAB_MINALIGN; a multiple of 8."""
    if flags & SLAB_HWCACHE_ALIGN:
        ralign = CACHE_LINE_SIZE
        while size <= ralign // 2:
            ralign //= 2
        align = max(align, ralign)
    align = max(align, ARCH_SLAB_MINALIGN)
    return (align + 7) & ~7


def kmalloc_cache_align(size: int, flags: int) -> int:
    """create_boot_cache(): kmalloc caches are aligned to the largest power-of-two divisor
    of their size (at least ARCH_KMALLOC_MINALIGN)."""
    align = ARCH_KMALLOC_MINALIGN
    if flags & SLAB_KMALLOC:
        align = max(align, size & -size)
    return calculate_alignment(flags, align, size)


# --- /proc/slabinfo: one format for the model's view and for reading real files ---------------

SLABINFO_HEADER = (
    "slabinfo - version: 2.1",
    "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
    " : tunables <limit> <batchcount> <sharedfactor>"
    " : slabdata <active_slabs> <num_slabs> <sharedavail>")
"""print_slabinfo_header() (mm/slab_common.c): the version line, then the seq_puts() pieces."""


class SlabinfoRow(NamedTuple):
    """One /proc/slabinfo line: cache_show()'s fields (SLUB has no tunables: 0 0 0, and
    active_slabs = num_slabs, sharedavail 0)."""

    name: str
    active_objs: int
    num_objs: int
    objsize: int
    objperslab: int
    pagesperslab: int
    limit: int = 0
    batchcount: int = 0
    sharedfactor: int = 0
    active_slabs: int = 0
    num_slabs: int = 0
    sharedavail: int = 0


def format_slabinfo_row(r: SlabinfoRow) -> str:
    """cache_show() (mm/slab_common.c): ``"%-17s %6lu %6lu %6u %4u %4d"``, then
    ``" : tunables %4u %4u %4u"`` and ``" : slabdata %6lu %6lu %6lu"``."""
    return (f"{r.name:<17} {r.active_objs:6} {r.num_objs:6} {r.objsize:6} {r.objperslab:4} "
            f"{r.pagesperslab:4} : tunables {r.limit:4} {r.batchcount:4} {r.sharedfactor:4}"
            f" : slabdata {r.active_slabs:6} {r.num_slabs:6} {r.sharedavail:6}")


def parse_slabinfo(text: str, source: str = "slabinfo") -> list[SlabinfoRow]:
    """Read /proc/slabinfo version 2.1 strictly: the header must be the kernel's, and every
    line must be exactly what :func:`format_slabinfo_row` prints for its fields, column widths
    included, so a real file and the model's view go through the same format. SlabError
    names the first line that differs."""
    lines = text.splitlines()
    if not lines or lines[0] != SLABINFO_HEADER[0]:
        raise SlabError(f"{source}: not a /proc/slabinfo of version 2.1")
    if len(lines) < 2 or lines[1] != SLABINFO_HEADER[1]:
        raise SlabError(f"{source}:2: not the header print_slabinfo_header() prints")
    rows = []
    for no, line in enumerate(lines[2:], 3):
        parts = line.split()
        try:
            if len(parts) != 16 or parts[6:8] != [":", "tunables"] or parts[11:13] != [
                    ":", "slabdata"]:
                raise ValueError
            nums = [int(x) for x in parts[1:6] + parts[8:11] + parts[13:16]]
        except ValueError:
            raise SlabError(f"{source}:{no}: not a slabinfo line: {line!r}") from None
        row = SlabinfoRow(parts[0], *nums)
        if format_slabinfo_row(row) != line:
            raise SlabError(f"{source}:{no}: not in cache_show()'s format (column widths): "
                            f"{line!r}")
        rows.append(row)
    return rows


class SlabAllocator(Slub):
    """The slab allocator of one machine: every cache, kmalloc, and the page allocator under
    it. ``nr_cpus`` (num_present_cpus) decides slub_min_objects and so the slab orders; it
    defaults to the machine's CPU count."""

    def __init__(self, pages: PageAllocator | None = None, *, nr_cpus: int | None = None,
                 slabinfo: str | Path | None = None) -> None:
        self.pages = pa = pages if pages is not None else PageAllocator()
        self.cpus = sorted(pa.cpu_node)
        self.nr_cpus = nr_cpus if nr_cpus is not None else len(self.cpus)
        if self.nr_cpus < 1:
            raise SlabError(f"nr_cpus must be at least 1, got {self.nr_cpus}")
        self.min_objects = slub_min_objects(self.nr_cpus)
        self.nr_nodes = len(pa.nodes)
        # slab_nodes (mm/slub.c): the nodes with normal memory (N_NORMAL_MEMORY); only they
        # get a kmem_cache_node object, and a request for another node is served as if for
        # NUMA_NO_NODE (___slab_alloc)
        self.slab_nodes = frozenset(n.nid for n in pa.nodes
                                    if any(z.present > 0 for z in n.zones))
        if not self.slab_nodes:
            raise SlabError("no node has memory: kmem_cache_init cannot run")
        # numa_mem_id() of each node: itself, or for a memoryless node the nearest node with
        # memory (local_memory_node(): the first node of its fallback zonelist)
        self.mem_node = {n.nid: next(m for m in (n.nid, *pa._node_order[n.nid])
                                     if m in self.slab_nodes) for n in pa.nodes}
        self.slab_of_pfn: dict[int, Slab] = {}
        self.slab_caches: list[KmemCache] = []  # creation order; list_add puts new ones first
        self.by_name: dict[str, KmemCache] = {}  # names and merge aliases
        self.meta: dict[str, list[int]] = {}  # cache -> its kmem_cache + kmem_cache_node objects
        self.large: dict[int, tuple[int, int]] = {}  # large kmalloc address -> (pfn, order)
        self.kmalloc_caches: list[list[KmemCache | None]] = [
            [None] * (KMALLOC_SHIFT_HIGH + 1) for _ in range(NR_KMALLOC_TYPES)]
        n_effects = len(pa.effects)
        self._kmem_cache_init()
        if slabinfo is not None:
            self.create_caches_from_slabinfo(slabinfo)
        # the boot's own slabs are no caller's doing: a scenario's first slab operation must
        # not report them as its effects (an error would seem to have changed the state)
        del pa.effects[n_effects:]

    # --- boot (kmem_cache_init, create_kmalloc_caches) ------------------------------------------
    def _boot_cache(self, name: str, size: int, flags: int, usersize: int = 0) -> KmemCache:
        """create_boot_cache() + list_add(&s->list, &slab_caches)."""
        s = KmemCache(name, size, kmalloc_cache_align(size, flags), flags, None,
                      self.min_objects, self.cpus, self.nr_nodes, usersize)
        # create_boot_cache(): refcount -1 exempts from merging; create_kmalloc_cache() sets 1
        s.refcount = 1 if flags & SLAB_KMALLOC else -1
        self.slab_caches.append(s)
        self.by_name[name] = s
        return s

    def _alloc_meta(self, s: KmemCache) -> None:
        """The cache's struct kmem_cache (from kmem_cache) and one struct kmem_cache_node per
        node (kmem_cache_alloc_node(kmem_cache_node, GFP_KERNEL, node))."""
        objs: list[int] = []
        try:
            obj = self.slab_alloc(self.by_name["kmem_cache"], GFP_KERNEL | _GFP_ZERO,
                                  NUMA_NO_NODE, self.cpus[0], Context.PROCESS)
            if obj is None:
                raise SlabError(f"kmem_cache_create({s.name}): out of memory (-ENOMEM)")
            objs.append(obj)
            for nid in sorted(self.slab_nodes):  # init_kmem_cache_nodes()
                obj = self.slab_alloc(self.by_name["kmem_cache_node"], GFP_KERNEL, nid,
                                      self.cpus[0], Context.PROCESS)
                if obj is None:
                    raise SlabError(f"kmem_cache_create({s.name}): out of memory (-ENOMEM)")
                objs.append(obj)
        except SlabError:
            self._free_meta(objs)
            raise
        self.meta[s.name] = objs

    def _free_meta(self, objs: list[int]) -> None:
        """slab_kmem_cache_release(): __kmem_cache_release() frees the kmem_cache_node objects
        node by node (free_kmem_cache_nodes), then the struct kmem_cache goes back last."""
        for obj in [*objs[1:], *objs[:1]]:
            slab, idx = self.lookup_object(obj)
            self.slab_free(slab.cache, slab, idx, self.cpus[0])

    def _kmem_cache_init(self) -> None:
        """kmem_cache_init(): the two boot caches, then every kmalloc cache in the kernel's
        order (types NORMAL, RECLAIM, DMA, CGROUP; sizes 96, 192, then 8 .. 8k)."""
        hw = SLAB_HWCACHE_ALIGN | SLAB_NO_OBJ_EXT
        node_cache = self._boot_cache("kmem_cache_node", SIZEOF_KMEM_CACHE_NODE, hw)
        cache_cache = self._boot_cache(
            "kmem_cache", OFFSETOF_KMEM_CACHE_NODE + 8 * self.nr_nodes, hw)
        # bootstrap() moves kmem_cache onto slab_caches first, then kmem_cache_node
        self.slab_caches[:2] = [cache_cache, node_cache]
        for s in (node_cache, cache_cache):
            self._alloc_meta(s)
        for ktype in (KMALLOC_NORMAL, KMALLOC_RECLAIM, KMALLOC_DMA, KMALLOC_CGROUP):
            for idx in (1, 2, *range(KMALLOC_SHIFT_LOW, KMALLOC_SHIFT_HIGH + 1)):
                self._new_kmalloc_cache(idx, ktype)
        # new_kmalloc_cache(KMALLOC_NO_OBJ_EXT): without memory-allocation profiling
        # (!need_kmalloc_no_objext()) the row points at the normal caches
        self.kmalloc_caches[KMALLOC_NO_OBJ_EXT] = list(self.kmalloc_caches[KMALLOC_NORMAL])
        self.kmem_cache_create("kmalloc_buckets", SIZEOF_KMEM_BUCKETS, 0, SLAB_NO_MERGE)

    def _new_kmalloc_cache(self, idx: int, ktype: int) -> None:
        """new_kmalloc_cache(): flags by type (MEMCG makes the normal caches SLAB_NO_MERGE)."""
        size, short = KMALLOC_INFO[idx]
        flags = {KMALLOC_RECLAIM: SLAB_RECLAIM_ACCOUNT, KMALLOC_CGROUP: SLAB_ACCOUNT,
                 KMALLOC_DMA: SLAB_CACHE_DMA, KMALLOC_NORMAL: SLAB_NO_MERGE}[ktype]
        s = self._boot_cache(KMALLOC_TYPE_PREFIX[ktype] + short, size, flags | SLAB_KMALLOC,
                             usersize=size)
        self._alloc_meta(s)
        self.kmalloc_caches[ktype][idx] = s

    # --- kmem_cache_create / destroy / shrink ----------------------------------------------------
    def _might_sleep(self, what: str, cpu: int) -> None:
        ctx = self.pages.context(cpu)
        if ctx.atomic:
            raise SleepInAtomicError(f"BUG: sleeping function called from invalid context: "
                                     f"{what} in {ctx.name.lower()} context on cpu {cpu}")

    def _find_mergeable(self, size: int, align: int, flags: int) -> KmemCache | None:
        """find_mergeable(): the oldest compatible cache (list_for_each_entry_reverse)."""
        if flags & SLAB_NEVER_MERGE:
            return None
        size = (size + 7) & ~7
        align = calculate_alignment(flags, align, size)
        size = -(-size // align) * align
        for s in self.slab_caches:  # oldest first
            if s.flags & SLAB_NEVER_MERGE or s.ctor is not None or s.usersize or s.refcount < 0:
                continue
            if size > s.size or (flags & SLAB_MERGE_SAME) != (s.flags & SLAB_MERGE_SAME):
                continue
            if s.size & ~(align - 1) != s.size or s.size - size >= 8:
                continue
            return s
        return None

    def kmem_cache_create(self, name: str, size: int, align: int = 0, flags: int = 0,
                          ctor: Ctor | None = None, *, cpu: int = 0) -> KmemCache:
        """kmem_cache_create(name, size, align, flags, ctor): a new cache, or an existing
        compatible one with its refcount raised (cache merging). May sleep."""
        what = f"kmem_cache_create({name!r}, {size}, {align}, {format_slab_flags(flags)})"
        if type(flags) is int and flags & SLAB_PANIC:
            # __kmem_cache_create_args(): with SLAB_PANIC a failure is panic("%s: Failed to
            # create slab '%s'. Error %d"); the model reports it as the same typed error
            what = f"Kernel panic - {what}: Failed to create slab '{name}'"
        self.pages._check_cpu(cpu)
        if type(name) is not str or not name or " " in name:
            raise CacheArgsError(f"{what}: a cache needs a name without spaces")
        if type(size) is not int or not 0 < size <= KMALLOC_MAX_SIZE:
            raise CacheArgsError(f"{what}: size must be 1..{KMALLOC_MAX_SIZE} "
                                 "(kmem_cache_sanity_check)")
        if type(align) is not int or align < 0 or align & (align - 1):
            raise CacheArgsError(f"{what}: alignment {align} is not a power of two")
        if type(flags) is not int or flags & ~SLAB_FLAGS_PERMITTED:
            raise CacheArgsError(f"{what}: flags outside SLAB_FLAGS_PERMITTED (-EINVAL)")
        if flags & SLAB_DEBUG_FLAGS:
            # the kernel accepts them and turns the cache into a debug cache (red zones,
            # poison, alloc/free tracks change calculate_sizes(); kmem_cache_debug() sends
            # every call through the slow path without CPU partial slabs): not modelled, so
            # refused rather than answered with the geometry and paths of a normal cache
            raise CacheArgsError(
                f"{what}: SLUB debug flags ({format_slab_flags(flags & SLAB_DEBUG_FLAGS)}) "
                "are not modelled (no red zones, poisoning, tracking or consistency checks)")
        if ctor is not None and not callable(ctor):
            raise CacheArgsError(f"{what}: the constructor is not callable")
        if name in self.by_name:
            raise CacheArgsError(f"{what}: sysfs: cannot create duplicate filename "
                                 f"'/kernel/slab/{name}'")
        self._might_sleep(what, cpu)
        if ctor is None:
            s = self._find_mergeable(size, align, flags)
            if s is not None:  # __kmem_cache_alias()
                s.refcount += 1
                s.object_size = max(s.object_size, size)
                s.inuse = max(s.inuse, (size + 7) & ~7)
                self.by_name[name] = s
                return s
        try:
            s = KmemCache(name, size, calculate_alignment(flags, align, size), flags, ctor,
                          self.min_objects, self.cpus, self.nr_nodes)
        except ValueError as e:  # kmem_cache_open(): calculate_sizes() fails
            raise CacheArgsError(f"{what}: {e} (-EINVAL)") from None
        self.slab_caches.append(s)
        self.by_name[name] = s
        try:
            self._alloc_meta(s)
        except SlabError:
            self.slab_caches.pop()
            del self.by_name[name]
            raise
        return s

    def find_cache(self, name: str | KmemCache) -> KmemCache:
        """The live cache called ``name`` (or ``name`` itself if it is a live cache)."""
        if isinstance(name, KmemCache):
            if not name.alive:
                raise UnknownCacheError(f"cache {name.name} was destroyed")
            return name
        s = self.by_name.get(name)
        if s is None:
            raise UnknownCacheError(f"no slab cache named {name!r}")
        return s

    def kmem_cache_destroy(self, cache: str | KmemCache, *, cpu: int = 0) -> None:
        """kmem_cache_destroy(): drop a reference; the last one flushes the CPU slabs, frees
        every slab and removes the cache. Live objects: CacheBusyError, nothing changed."""
        s = self.find_cache(cache)
        self.pages._check_cpu(cpu)
        self._might_sleep(f"kmem_cache_destroy({s.name})", cpu)
        if s.name in ("kmem_cache", "kmem_cache_node") or s.flags & SLAB_KMALLOC:
            raise SlabError(f"kmem_cache_destroy({s.name}): boot caches are never destroyed")
        if s.refcount == 1:
            live = self.live_objects(s)
            if live:
                raise CacheBusyError(
                    f"Objects remaining in {s.name} on __kmem_cache_shutdown(): {live} live "
                    f"objects (kmem_cache_destroy {s.name}: Slab cache still has objects)")
        names = [n for n, c in self.by_name.items() if c is s]
        if s.refcount > 1:
            s.refcount -= 1
            alias = cache if isinstance(cache, str) else names[-1]
            if alias != s.name:
                del self.by_name[alias]
            return
        self.flush_all(s)
        self._do_shrink(s)
        self.slab_caches.remove(s)
        s.alive = False
        for n in names:
            del self.by_name[n]
        self._free_meta(self.meta.pop(s.name))

    def kmem_cache_shrink(self, cache: str | KmemCache, *, cpu: int = 0) -> int:
        """kmem_cache_shrink(): flush every CPU slab, free every empty slab, sort the partial
        lists fullest first; 0 if no slab remains."""
        s = self.find_cache(cache)
        self.pages._check_cpu(cpu)
        self._might_sleep(f"kmem_cache_shrink({s.name})", cpu)
        self.flush_all(s)
        return self._do_shrink(s)

    def create_caches_from_slabinfo(self, path: str | Path) -> list[str]:
        """Create every cache of a real /proc/slabinfo that the model lacks, by name and
        objsize, oldest (last line) first, so the model's slabinfo lists them in the real
        order. Returns the names created."""
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise SlabError(f"cannot read slabinfo {path}: {e}") from None
        made = []
        for row in reversed(parse_slabinfo(text, str(path))):
            if row.name in self.by_name:
                continue
            self.kmem_cache_create(row.name, row.objsize, 0, SLAB_NO_MERGE)
            made.append(row.name)
        return made

    # --- cache allocation API --------------------------------------------------------------------
    def _check(self, gfp: int, node: int, cpu: int) -> None:
        pa = self.pages
        if gfp not in pa._gfp_cache:
            pa._gfp_info(gfp)
        if cpu not in pa.cpu_node:
            pa._check_cpu(cpu)
        if node != NUMA_NO_NODE and (type(node) is not int or not 0 <= node < self.nr_nodes):
            raise BadNodeError(f"node {node} is not online (nodes 0..{self.nr_nodes - 1})")

    def kmem_cache_alloc_node(self, cache: str | KmemCache, gfp: int, node: int, *,
                              cpu: int = 0, ctx: Context | None = None) -> int | None:
        """kmem_cache_alloc_node(): an object's direct-map address, or None."""
        s = self.find_cache(cache)
        self._check(gfp, node, cpu)
        return self.slab_alloc(s, gfp, node, cpu, ctx)

    def kmem_cache_alloc(self, cache: str | KmemCache, gfp: int, *, cpu: int = 0,
                         ctx: Context | None = None) -> int | None:
        """kmem_cache_alloc(): kmem_cache_alloc_node() on NUMA_NO_NODE."""
        return self.kmem_cache_alloc_node(cache, gfp, NUMA_NO_NODE, cpu=cpu, ctx=ctx)

    def kmem_cache_zalloc(self, cache: str | KmemCache, gfp: int, *, cpu: int = 0,
                          ctx: Context | None = None) -> int | None:
        """kmem_cache_zalloc(): with _GFP_ZERO (the model has no object contents)."""
        return self.kmem_cache_alloc(cache, gfp | _GFP_ZERO, cpu=cpu, ctx=ctx)

    def kmem_cache_free(self, cache: str | KmemCache, addr: int, *, cpu: int = 0) -> None:
        """kmem_cache_free(): the object must belong to ``cache`` (cache_from_obj).

        Simplified: a wrong cache raises WrongCacheError and changes nothing; 6.12 with
        CONFIG_SLAB_FREELIST_HARDENED WARNs and frees the object to the cache it is from
        (mm/slub.c cache_from_obj()), which the spec treats as the caller's bug."""
        s = self.find_cache(cache)
        self.pages._check_cpu(cpu)
        slab, idx = self.lookup_object(addr)
        if slab.cache is not s:
            raise WrongCacheError(f"kmem_cache_free: Wrong slab cache. {s.name} but object "
                                  f"{addr:#x} is from {slab.cache.name}")
        self.slab_free(s, slab, idx, cpu)

    def kmem_cache_alloc_bulk(self, cache: str | KmemCache, gfp: int, nr: int, *,
                              cpu: int = 0, ctx: Context | None = None) -> list[int]:
        """kmem_cache_alloc_bulk(): all ``nr`` objects or none (the kernel frees a partial
        batch and returns 0)."""
        s = self.find_cache(cache)
        self._check(gfp, NUMA_NO_NODE, cpu)
        if type(nr) is not int or not 0 <= nr <= SIZE_MAX:
            raise SlabError(f"kmem_cache_alloc_bulk: the count must be a size_t, got {nr!r}")
        out: list[int] = []
        for _ in range(nr):
            obj = self.slab_alloc(s, gfp, NUMA_NO_NODE, cpu, ctx)
            if obj is None:  # __kmem_cache_free_bulk() of what it got
                self.kmem_cache_free_bulk(s, out, cpu=cpu)
                return []
            out.append(obj)
        return out

    def kmem_cache_free_bulk(self, cache: str | KmemCache, addrs: list[int], *,
                             cpu: int = 0) -> None:
        """kmem_cache_free_bulk(): every object is checked before any is freed (a model
        choice: the kernel frees until it trips). Then build_detached_freelist(), from the end
        of the array: the last object and the others of its slab found before three misses
        form one chain, freed at once by do_slab_free() with the first found as its tail and
        the last found as its head; the rest of the array goes round again. Freeing a chain's
        objects one by one from its tail gives the same freelist and the same list decisions
        (__slab_free looks at the state before the first and after the last), so that is how
        the model frees them."""
        s = self.find_cache(cache)
        self.pages._check_cpu(cpu)
        if not isinstance(addrs, (list, tuple)):
            raise NotObjectError(f"kmem_cache_free_bulk: {addrs!r} is not a list of objects")
        seen: set[int] = set()
        for a in addrs:  # check every object first: all or nothing
            slab, idx = self.lookup_object(a)
            if slab.cache is not s:
                raise WrongCacheError(f"kmem_cache_free_bulk: Wrong slab cache. {s.name} but "
                                      f"object {a:#x} is from {slab.cache.name}")
            if slab.free[idx] or a in seen:
                raise ObjectDoubleFreeError(f"double free or corruption: object {a:#x} of "
                                            f"{s.name} is already free")
            seen.add(a)
        p = list(addrs)
        size = len(p)
        while size:  # mm/slub.c kmem_cache_free_bulk(), build_detached_freelist()
            size -= 1
            head_slab = self.lookup_object(p[size])[0]
            chain = [p[size]]  # tail first
            same = size
            lookahead = 3
            while size:
                size -= 1
                if self.lookup_object(p[size])[0] is head_slab:
                    chain.append(p[size])
                    same -= 1
                    if size != same:
                        p[size], p[same] = p[same], p[size]
                    continue
                lookahead -= 1
                if not lookahead:
                    break
            size = same
            for a in chain:
                slab, idx = self.lookup_object(a)
                self.slab_free(s, slab, idx, cpu)

    # --- kmalloc ---------------------------------------------------------------------------------
    def kmalloc_slab(self, size: int, gfp: int) -> KmemCache:
        """kmalloc_slab(): the cache of the size class and kmalloc_type() of the mask."""
        s = self.kmalloc_caches[kmalloc_type(gfp)][kmalloc_index(size)]
        assert s is not None
        return s

    def kmalloc_node(self, size: int, gfp: int, node: int, *, cpu: int = 0,
                     ctx: Context | None = None) -> int | None:
        """__do_kmalloc_node(): ZERO_SIZE_PTR for 0 (before might_alloc), a size-class object
        up to KMALLOC_MAX_CACHE_SIZE, whole pages above (kmalloc_large), None on failure."""
        if type(size) is not int or size < 0:
            raise SlabError(f"kmalloc: size must be a non-negative integer, got {size!r}")
        self._check(gfp, node, cpu)
        if size > KMALLOC_MAX_CACHE_SIZE:
            return self._kmalloc_large_node(size, gfp, node, cpu, ctx)
        if size == 0:
            return ZERO_SIZE_PTR
        return self.slab_alloc(self.kmalloc_slab(size, gfp), gfp, node, cpu, ctx)

    def kmalloc(self, size: int, gfp: int, *, cpu: int = 0,
                ctx: Context | None = None) -> int | None:
        """kmalloc(size, gfp)."""
        return self.kmalloc_node(size, gfp, NUMA_NO_NODE, cpu=cpu, ctx=ctx)

    def kzalloc(self, size: int, gfp: int, *, cpu: int = 0,
                ctx: Context | None = None) -> int | None:
        """kzalloc(): kmalloc with _GFP_ZERO."""
        return self.kmalloc(size, gfp | _GFP_ZERO, cpu=cpu, ctx=ctx)

    def kcalloc(self, n: int, size: int, gfp: int, *, cpu: int = 0,
                ctx: Context | None = None) -> int | None:
        """kcalloc() = kmalloc_array(n, size, gfp | _GFP_ZERO): NULL on overflow."""
        if type(n) is not int or type(size) is not int or n < 0 or size < 0:
            raise SlabError(f"kcalloc: n and size must be non-negative integers ({n}, {size})")
        if n * size > SIZE_MAX:
            return None
        return self.kmalloc(n * size, gfp | _GFP_ZERO, cpu=cpu, ctx=ctx)

    def _kmalloc_large_node(self, size: int, gfp: int, node: int, cpu: int,
                            ctx: Context | None) -> int | None:
        """___kmalloc_large_node(): kmalloc_fix_flags() for the slab bug mask, then
        2^get_order(size) pages with _GFP_COMP; above KMALLOC_MAX_SIZE the page allocator
        WARNs (order > MAX_PAGE_ORDER) and fails. A size no size_t holds is bad input."""
        if size > SIZE_MAX:
            raise SlabError(f"kmalloc({size}): the size does not fit in a size_t")
        if gfp & GFP_SLAB_BUG_MASK:
            gfp = self._fix_flags(gfp)
        order = int(get_order(size))
        pfn = self.pages.alloc_pages_node(node, gfp | _GFP_COMP, order, cpu=cpu, ctx=ctx)
        if pfn is None:
            return None
        o, zid, _, mt = self.pages.allocated[pfn]
        self.pages.allocated[pfn] = (o, zid, OWNER_KMALLOC_LARGE, mt)
        addr = self.pages.pfn_to_virt(pfn)
        self.large[addr] = (pfn, order)
        return addr

    def kfree(self, addr: int, *, cpu: int = 0) -> None:
        """kfree(): NULL and ZERO_SIZE_PTR do nothing; a slab object goes back to its cache;
        a large kmalloc's pages go back to the page allocator."""
        if type(addr) is not int:
            raise NotObjectError(f"kfree({addr!r}): not an address")
        if addr <= ZERO_SIZE_PTR:  # ZERO_OR_NULL_PTR
            return
        self.pages._check_cpu(cpu)
        big = self.large.get(addr)
        if big is not None:  # free_large_kmalloc()
            pfn, order = big
            o, zid, _, mt = self.pages.allocated[pfn]
            self.pages.allocated[pfn] = (o, zid, OWNER_PAGES, mt)
            self.pages.free_pages_pfn(pfn, order)
            del self.large[addr]
            return
        off = addr - self.pages.page_offset
        if off >= 0 and (off >> PAGE_SHIFT) not in self.slab_of_pfn:
            self._diagnose_kfree(addr)
        slab, idx = self.lookup_object(addr)
        self.slab_free(slab.cache, slab, idx, cpu)

    def _diagnose_kfree(self, addr: int) -> None:
        pfn = (addr - self.pages.page_offset) >> PAGE_SHIFT
        for a, (p, order) in self.large.items():
            if p <= pfn < p + (1 << order):
                raise NotObjectError(f"kfree({addr:#x}): inside the large kmalloc at {a:#x}, "
                                     "not its start")
        raise NotObjectError(f"kfree({addr:#x}): not a slab object nor a large kmalloc "
                             "(never allocated, or already freed)")

    def ksize(self, addr: int) -> int:
        """ksize(): the usable size, s->size for kmalloc-style caches (slab_ksize), the pages'
        size for a large kmalloc, 0 for NULL and ZERO_SIZE_PTR."""
        if type(addr) is not int:
            raise NotObjectError(f"ksize({addr!r}): not an address")
        if addr <= ZERO_SIZE_PTR:
            return 0
        big = self.large.get(addr)
        if big is not None:
            return PAGE_SIZE << big[1]
        slab, idx = self.lookup_object(addr)
        if slab.free[idx]:
            raise NotObjectError(f"ksize({addr:#x}): the object is free")
        s = slab.cache
        if s.flags & SLAB_TYPESAFE_BY_RCU:  # slab_ksize(): up to inuse
            return s.inuse
        return s.size

    def krealloc(self, addr: int, new_size: int, gfp: int, *, cpu: int = 0,
                 ctx: Context | None = None) -> int | None:
        """krealloc(): kmalloc for NULL; kfree and ZERO_SIZE_PTR for 0; the same object if
        it is big enough (ksize); else a new object, the old one freed only on success."""
        if type(new_size) is not int or not 0 <= new_size <= SIZE_MAX:
            raise SlabError(f"krealloc: the new size must be a size_t, got {new_size!r}")
        if type(addr) is not int:
            raise NotObjectError(f"krealloc({addr!r}): not an address")
        if addr <= ZERO_SIZE_PTR:
            return self.kmalloc(new_size, gfp, cpu=cpu, ctx=ctx)
        ks = self.ksize(addr)
        if new_size == 0:
            self.kfree(addr, cpu=cpu)
            return ZERO_SIZE_PTR
        if ks >= new_size:
            return addr
        ret = self.kmalloc(new_size, gfp, cpu=cpu, ctx=ctx)
        if ret is not None:
            self.kfree(addr, cpu=cpu)
        return ret

    @staticmethod
    def kmalloc_size_roundup(size: int) -> int:
        """kmalloc_size_roundup(): the class size, whole pages above 8192, ``size`` itself for
        0 and for sizes kmalloc cannot serve."""
        if type(size) is not int or not 0 <= size <= SIZE_MAX:
            raise SlabError(f"kmalloc_size_roundup: the size must be a size_t, got {size!r}")
        if 0 < size <= KMALLOC_MAX_CACHE_SIZE:
            return KMALLOC_INFO[kmalloc_index(size)][0]
        if 0 < size <= KMALLOC_MAX_SIZE:
            return PAGE_SIZE << int(get_order(size))
        return size

    # --- /proc/slabinfo ---------------------------------------------------------------------------
    def slabinfo_rows(self) -> list[tuple[str, int, int, int, int, int, int]]:
        """(name, active_objs, num_objs, objsize, objperslab, pagesperslab, num_slabs) per cache,
        newest first, as get_slabinfo() computes them (free objects of node partial slabs
        only are subtracted, by count_partial_free_approx(): CPU slabs count as active)."""
        out = []
        for s in reversed(self.slab_caches):
            nr_slabs = sum(n.nr_slabs for n in s.node)
            nr_objs = sum(n.total_objects for n in s.node)
            nr_free = sum(self.count_partial_free_approx(n) for n in s.node)
            out.append((s.name, nr_objs - nr_free, nr_objs, s.size, s.oo_objects,
                        1 << s.oo_order, nr_slabs))
        return out

    def slabinfo(self) -> str:
        """/proc/slabinfo, version 2.1, exactly as SLUB prints it (mm/slab_common.c
        slab_show(), cache_show(); get_slabinfo() in mm/slub.c)."""
        lines = list(SLABINFO_HEADER)
        for name, active, num, objsize, per, pages, slabs in self.slabinfo_rows():
            lines.append(format_slabinfo_row(SlabinfoRow(
                name, active, num, objsize, per, pages, active_slabs=slabs, num_slabs=slabs)))
        return "\n".join(lines) + "\n"

    # --- whole-state snapshot (tests: bad input must leave the state exactly as it was) -------
    def snapshot(self) -> tuple[object, ...]:
        """Every field of the slab allocator and the page allocator under it, as plain data:
        caches (geometry, refcount, per-CPU slab, freelist and partial list, per-node partial
        list and counters), every slab (freelist, free map, inuse, frozen, list membership),
        large kmallocs, names, and the page allocator's blocks and counters."""
        from impl.abstraction import abstract

        def slab_t(sl: Slab) -> tuple[object, ...]:
            return (sl.cache.name, sl.pfn, sl.order, sl.nid, sl.objects, tuple(sl.freelist),
                    bytes(sl.free), sl.inuse, sl.frozen, sl.node_partial)

        caches = tuple(
            (s.name, s.object_size, s.size, s.align, s.flags, s.inuse, s.offset, s.oo_order,
             s.oo_objects, s.refcount, s.min_partial, s.cpu_partial_slabs,
             tuple((c, None if cc.slab is None else cc.slab.pfn, tuple(cc.freelist),
                    tuple(p.pfn for p in cc.partial)) for c, cc in sorted(s.cpu.items())),
             tuple((tuple(p.pfn for p in n.partial), n.nr_slabs, n.total_objects)
                   for n in s.node),
             tuple(sorted(s.slabs)))
            for s in self.slab_caches)
        slabs = tuple(slab_t(sl) for _, sl in sorted(
            {sl.pfn: sl for sl in self.slab_of_pfn.values()}.items()))
        ms = abstract(self.pages)
        pages = (tuple(sorted(ms.free.items())), tuple(sorted(ms.allocated.items())),
                 tuple(sorted(ms.nr_free.items())), tuple(sorted(ms.free_pages.items())),
                 ms.pageblock_mt, tuple(tuple(n.lru) for n in self.pages.nodes))
        return (caches, slabs, tuple(sorted(self.large.items())),
                tuple(sorted((n, c.name) for n, c in self.by_name.items())),
                tuple(sorted((k, tuple(v)) for k, v in self.meta.items())), pages,
                tuple(sorted(self.slab_of_pfn)))


def slab_pages_by_node(pa: PageAllocator) -> dict[int, tuple[int, int]]:
    """Pages of slabs and large kmallocs per node, (reclaimable, unreclaimable): the node
    counters NR_SLAB_RECLAIMABLE_B and NR_SLAB_UNRECLAIMABLE_B that /proc/zoneinfo and
    /proc/vmstat print in pages as nr_slab_reclaimable and nr_slab_unreclaimable. A slab
    counts as reclaimable iff its cache has SLAB_RECLAIM_ACCOUNT (mm/slab.h account_slab(),
    cache_vmstat_idx()), which is iff its pages were taken with __GFP_RECLAIMABLE (the
    cache's allocflags): their migratetype; a large kmalloc is unreclaimable (mm/slub.c
    ___kmalloc_large_node). Walks the live page blocks: for views, not for hot paths."""
    out: dict[int, tuple[int, int]] = {}
    for order, zid, owner, mt in pa.allocated.values():
        if owner in (OWNER_SLAB, OWNER_KMALLOC_LARGE):
            nid = pa.zones[zid].nid
            rec, unrec = out.get(nid, (0, 0))
            if owner == OWNER_SLAB and mt == MIGRATE_RECLAIMABLE:
                rec += 1 << order
            else:
                unrec += 1 << order
            out[nid] = (rec, unrec)
    return out


def abstract_slabs(sa: SlabAllocator) -> SlabState:
    """The abstraction function for slabs: where each slab is held (counting every holder,
    so a slab held twice shows), its freelists in order, its counters, and its pages."""
    from spec.slab_state import (
        CPU_PARTIAL,
        CPU_SLAB,
        NO_LIST,
        NODE_PARTIAL,
        NodeCounters,
        SlabRecord,
    )

    holders: dict[int, list[tuple[str, int]]] = {}
    cpu_free: dict[int, list[int]] = {}
    nodes = []
    for s in sa.slab_caches:
        for cpu, c in s.cpu.items():
            if c.slab is not None:
                holders.setdefault(id(c.slab), []).append((CPU_SLAB, cpu))
                cpu_free[id(c.slab)] = c.freelist
            for p in c.partial:
                holders.setdefault(id(p), []).append((CPU_PARTIAL, cpu))
        for nid, n in enumerate(s.node):
            for p in n.partial:
                holders.setdefault(id(p), []).append((NODE_PARTIAL, nid))
            nodes.append(NodeCounters(s.name, nid, n.nr_slabs, n.total_objects, n.nr_partial))
    recs = []
    for s in sa.slab_caches:
        for sl in s.slabs.values():
            h = holders.get(id(sl), [])
            where, owner = h[0] if h else (NO_LIST, -1)
            cf = cpu_free.get(id(sl), []) if where == CPU_SLAB else []
            rec = sa.pages.allocated.get(sl.pfn)
            recs.append(SlabRecord(
                s.name, sl.pfn, sl.order, sl.nid, sl.objects, s.size, where, owner, len(h),
                tuple(reversed(cf)) + tuple(reversed(sl.freelist)),
                frozenset(i for i, f in enumerate(sl.free) if f), sl.inuse, len(cf),
                rec[2] if rec else "free", rec[0] if rec else -1))
    return SlabState(tuple(recs), tuple(nodes))


SLABTOP_HEADER = "  OBJS ACTIVE  USE OBJ SIZE  SLABS OBJ/SLAB CACHE SIZE NAME" + " " * 19
"""procps-ng slabtop's column header (its NAME column is %-23s)."""


def format_slabtop(rows: list[SlabinfoRow], limit: int | None = None) -> str:
    """``slabtop --once`` of procps-ng 4.0 for /proc/slabinfo ``rows`` (in the file's order):
    the five summary lines, then every cache (``limit``: the first ones) by object count,
    largest first, ties in /proc/slabinfo order (a stable sort). Sizes as procps computes
    them: active and total size from objects x objsize, cache size from slabs x pages,
    average object size total size / objects."""
    objs = sum(r.num_objs for r in rows)
    active = sum(r.active_objs for r in rows)
    slabs = sum(r.num_slabs for r in rows)
    active_slabs = sum(r.active_slabs for r in rows)
    size_kb = sum(r.num_objs * r.objsize for r in rows) / 1024
    active_kb = sum(r.active_objs * r.objsize for r in rows) / 1024
    used = sum(1 for r in rows if r.num_objs)
    sizes = [r.objsize / 1024 for r in rows] or [0.0]
    lines = [
        f" Active / Total Objects (% used)    : {active} / {objs} "
        f"({100 * active / objs if objs else 0:.1f}%)",
        f" Active / Total Slabs (% used)      : {active_slabs} / {slabs} "
        f"({100 * active_slabs / slabs if slabs else 0:.1f}%)",
        f" Active / Total Caches (% used)     : {used} / {len(rows)} "
        f"({100 * used / len(rows) if rows else 0:.1f}%)",
        f" Active / Total Size (% used)       : {active_kb:.2f}K / {size_kb:.2f}K "
        f"({100 * active_kb / size_kb if size_kb else 0:.1f}%)",
        f" Minimum / Average / Maximum Object : {min(sizes):.2f}K / "
        f"{size_kb / objs if objs else 0:.2f}K / {max(sizes):.2f}K",
        "",
        SLABTOP_HEADER,
    ]
    for r in sorted(rows, key=lambda r: -r.num_objs)[:limit]:
        use = 100 * r.active_objs // r.num_objs if r.num_objs else 0
        lines.append(f"{r.num_objs:6} {r.active_objs:6} {use:3}% {r.objsize / 1024:7.2f}K "
                     f"{r.num_slabs:6} {r.objperslab:8} {r.num_slabs * r.pagesperslab * 4:9}K "
                     f"{r.name:<23}")
    return "\n".join(lines) + "\n"


def slabtop(sa: SlabAllocator, limit: int | None = None) -> str:
    """``slabtop --once`` of the model (procps-ng reads /proc/slabinfo: the same counters);
    every cache, as slabtop prints them when its output is not a terminal."""
    return format_slabtop(parse_slabinfo(sa.slabinfo(), "model"), limit)
