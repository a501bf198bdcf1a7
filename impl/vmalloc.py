"""vmalloc of Linux 6.12.117 (mm/vmalloc.c): the kernel virtual address allocator, over the page
allocator (impl/page_alloc.py) and init_mm's page tables (impl/pgtable.py).

:class:`Vmalloc` attaches to a :class:`impl.page_alloc.PageAllocator` the way
:class:`impl.slab_common.SlabAllocator` does, so pages, slabs and vmalloc share one machine:

* **The range allocator** (``alloc_vmap_area``): free kernel virtual space is a set of free
  blocks ``[start, end)`` kept by :class:`FreeVmapTree`, a treap ordered by address whose
  nodes carry ``subtree_max_size`` (the largest free block below them), the same augmentation
  the kernel puts on its red-black tree ``free_vmap_area_root``. A treap is balanced by random
  (here: hashed) priorities instead of colours, so its expected depth is O(log n) in the
  number of *free blocks*; the lowest-fit search, the clip of a block (``va_clip``: full, left
  edge, right edge or no-edge fit) and the merge of a freed block with its neighbours
  (``merge_or_add_vmap_area``) each touch one root-to-leaf path. Busy areas are a dict keyed
  by start (plus a per-PMD index for addresses inside an area), so nothing walks the live
  areas: 10 or 100,000 live areas cost the same (benchmarks/vmalloc.py). A sorted list with
  bisect would find neighbours in O(log n) but "the lowest block of at least ``size`` bytes"
  only by a scan; the augmented tree answers it on one path, as the kernel's does.
* **The lowest fit** (``find_vmap_lowest_match``): for vmalloc's page alignment the result is
  exactly the kernel's: the lowest-address free block at or above ``vstart`` that holds the
  request (``is_within_this_va``), then ``va_alloc``'s ``vend`` check. For an alignment above
  PAGE_SIZE the search length is ``size + align - 1`` as in the kernel; the kernel's walk may
  also return a lower block of a length between ``size`` and that if its tree path happens
  to pass it (the model never does: it depends on the red-black tree's shape).
* **The guard page**: ``__get_vm_area_node`` adds PAGE_SIZE to every area without
  VM_NO_GUARD, so ``vm->size`` (what /proc/vmallocinfo prints) counts it and the next area
  starts after it; ``get_vm_area_size`` (the mapped part) leaves it out.
* **Lazy purge**: vfree unmaps and frees the pages at once, but the vmap_area goes to the
  lazy list (``free_vmap_area_noflush``, ``vmap_lazy_nr``) and its address range is reusable
  only after ``__purge_vmap_area_lazy`` returns it to the free tree: when ``vmap_lazy_nr``
  exceeds ``lazy_max_pages()`` (fls(num_online_cpus) * 32 MiB of pages; the kernel's drain
  work is run synchronously here) or when an allocation finds no room
  (``reclaim_and_purge_vmap_areas`` and retry). /proc/vmallocinfo lists them as
  ``unpurged vm_area``.
* **Pages**: ``vm_area_alloc_pages`` order 0, from the bulk page allocator
  (``PageAllocator.alloc_pages_bulk``, at most 100 pages a call; a short batch hands the rest
  to the single page allocator) with the caller's mask plus __GFP_NOWARN (and __GFP_HIGHMEM
  unless DMA/DMA32), on the requested node (NUMA_NO_NODE: the local node of the CPU, the
  default mempolicy), so they are scattered. The page-pointer array is a nested vmalloc
  when it exceeds PAGE_SIZE (more than 512 pages: vmallocinfo's ``vpages``), else a kmalloc,
  which the model does not allocate from the slab allocator (nor the vm_struct and vmap_area
  objects).
* **Mapping**: ``vmap_pages_range`` with PAGE_KERNEL into init_mm's page tables; missing
  tables come from the page allocator with GFP_PGTABLE_KERNEL (NOFS/NOIO scoped like the
  caller's mask) and stay when vfree empties them.

Left out (README fidelity table): huge mappings (VM_ALLOW_HUGE_VMAP, vmalloc_huge), the
per-CPU vmap-node pools of 6.9+ (the model behaves as with one vmap node, which only moves
where a recycled area lands; the vmallocinfo order of several vmap nodes is reproduced),
vmap/vm_map_ram/ioremap areas, KASAN, memcg accounting, ``preallocate_vmalloc_pages`` (PUD
tables are allocated on demand), and the page-array/vm_struct kmallocs. Model choices where
the kernel only WARNs: vfree of an address that is not an area's start, a double vfree and
vfree of a direct-map address raise typed errors and change nothing. A failed vmalloc leaves
the state as it was (pages and the vmap_area go straight back; the kernel's vfree on its
failure path would park the area on the lazy list), except that a full range first purges
the lazy areas, as the kernel does before giving up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from impl.page_alloc import OWNER_PAGES, PageAllocator
from impl.pgtable import (
    GFP_PGTABLE_KERNEL,
    OWNER_PGTABLE,
    PAGE_KERNEL,
    PGD_LEVEL,
    PMD_LEVEL,
    PUD_LEVEL,
    PageTable,
    entry_present,
    entry_table_pfn,
    level_index,
    pte_index,
    pte_pfn,
    pte_present,
)
from impl.procfs import (
    VmallocinfoLine,
    render_meminfo,
    render_vmallocinfo,
)
from impl.slub import GFP_RECLAIM_MASK, fls
from spec.context import Context, Effect, context_is_atomic
from spec.errors import (
    BadNodeError,
    KmemError,
    SleepInAtomicError,
    VfreeDirectMapError,
    VfreeDoubleError,
    VfreeError,
    VfreeNotAreaStartError,
    VmallocError,
)
from spec.gfp import (
    __GFP_DMA,
    __GFP_DMA32,
    __GFP_FS,
    __GFP_HIGHMEM,
    __GFP_IO,
    __GFP_NOWARN,
    __GFP_ZERO,
    GFP_KERNEL,
    check_gfp,
    format_gfp,
)
from spec.layout import (
    DIRECT_MAP_SIZE,
    NUMA_NO_NODE,
    PAGE_SHIFT,
    PAGE_SIZE,
    PMD_SHIFT,
    is_vmalloc_addr,
)
from spec.logic import And, Bits, If, Not, _sym
from spec.vm_state import VmArea, VmState

OWNER_VMALLOC = "vmalloc"  # the owner of vmalloc'd pages in PageAllocator.allocated
U64 = (1 << 64) - 1

# include/linux/vmalloc.h
VM_IOREMAP = 0x1
VM_ALLOC = 0x2
VM_MAP = 0x4
VM_USERMAP = 0x8
VM_DMA_COHERENT = 0x10
VM_UNINITIALIZED = 0x20
VM_NO_GUARD = 0x40
VM_SPARSE = 0x1000

DEFAULT_CALLER = "kmemspec_vmalloc+0x0/0x0"
# vm_area_alloc_pages(): "A maximum allowed request is hard-coded and is 100 pages per call"
VMALLOC_BULK_MAX = 100
"""The ``%pS`` caller of an area when the model's caller names none (the kernel prints
``__builtin_return_address(0)`` of the vmalloc call)."""

# Python mangles ``__name`` inside class bodies: single-underscore aliases of __GFP_* bits.
_GFP_NOWARN = __GFP_NOWARN
_GFP_ZERO = __GFP_ZERO
_PROCESS = Context.PROCESS
_PREEMPT_DISABLED = Context.PREEMPT_DISABLED
_SPINLOCK = Context.SPINLOCK


# --- the kit: one definition for the code and the Z3 proofs (proofs/vmalloc.py) -----------------
def _ule(a: Bits, b: Bits) -> Bits:
    """Unsigned ``a <= b`` (z3.ULE on bit-vectors: Z3's ``<=`` is signed)."""
    if type(a) is int and type(b) is int:  # the concrete hot path (every vmalloc)
        return a <= b
    if _sym(a, b):
        import z3

        return z3.ULE(a, b)
    return a <= b


def _ult(a: Bits, b: Bits) -> Bits:
    """Unsigned ``a < b``."""
    if type(a) is int and type(b) is int:  # the concrete hot path (every vmalloc)
        return a < b
    if _sym(a, b):
        import z3

        return z3.ULT(a, b)
    return a < b


def align_up(x: Bits, align: Bits) -> Bits:
    """ALIGN(x, align) for a power-of-two ``align``, modulo 2^64 as unsigned long wraps."""
    return (x + (align - 1)) & (U64 ^ (align - 1))


def fit_start(va_start: Bits, vstart: Bits, align: Bits) -> Bits:
    """The address a request gets in a free block (is_within_this_va, va_alloc): the block's
    start, or ``vstart`` if the block begins below it, aligned up."""
    return align_up(If(_ult(vstart, va_start), va_start, vstart), align)


def is_within_this_va(va_start: Bits, va_end: Bits, size: Bits, align: Bits,
                      vstart: Bits, fit: Callable[[Bits, Bits, Bits], Bits] = fit_start
                      ) -> Bits:
    """is_within_this_va(): the aligned request [nva, nva + size) lies in the free block,
    with no wrap-around of ``nva + size`` and not below ``vstart``. (``fit`` is fit_start;
    proofs/vmalloc.py passes a wrong one to show the proof refutes it.)"""
    nva = fit(va_start, vstart, align)
    end = (nva + size) & U64
    return And(Not(_ult(end, nva)), Not(_ult(nva, vstart)), _ule(end, va_end))


def clip_remainders(va_start: Bits, va_end: Bits, nva: Bits,
                    size: Bits) -> tuple[Bits, Bits, Bits, Bits]:
    """va_clip(): what is left of the free block [va_start, va_end) after [nva, nva + size)
    is carved out: the left remainder [va_start, nva) and the right one [nva + size, va_end),
    either possibly empty (the FL, LE, RE and NE fit types of classify_va_fit_type)."""
    return va_start, nva, nva + size, va_end


def vmalloc_context_ok(ctx: Bits) -> Bits:
    """The context check of vmalloc: __get_vm_area_node's BUG_ON(in_interrupt()) and
    alloc_vmap_area's might_sleep() together admit process context only (vmalloc sleeps in
    its page-table allocations, GFP_KERNEL, whatever the caller's mask says)."""
    return Not(context_is_atomic(ctx))


def vmalloc_page_gfp(gfp: Bits) -> Bits:
    """The mask of vmalloc's page allocations (__vmalloc_area_node): the caller's, plus
    __GFP_HIGHMEM unless a DMA zone was asked for, plus __GFP_NOWARN (vm_area_alloc_pages)."""
    return gfp | If((gfp & (__GFP_DMA | __GFP_DMA32)) == 0, 0 * gfp + __GFP_HIGHMEM, 0 * gfp) \
        | __GFP_NOWARN


def vmalloc_pgtable_gfp(gfp: Bits) -> Bits:
    """The mask of the page-table allocations of vmap_pages_range(): GFP_PGTABLE_KERNEL under
    the memalloc_nofs/noio scope the caller's mask implies (__vmalloc_area_node)."""
    fsio = gfp & (__GFP_FS | __GFP_IO)
    return If(fsio == __GFP_IO, 0 * gfp + (GFP_PGTABLE_KERNEL & ~__GFP_FS),
              If(fsio == 0, 0 * gfp + (GFP_PGTABLE_KERNEL & ~(__GFP_FS | __GFP_IO)),
                 0 * gfp + GFP_PGTABLE_KERNEL))


def lazy_max_pages(nr_online_cpus: int) -> int:
    """lazy_max_pages(): fls(num_online_cpus()) * (32 MiB / PAGE_SIZE)."""
    return fls(nr_online_cpus) * (32 * 1024 * 1024 // PAGE_SIZE)


# --- the free-space structure ---------------------------------------------------------------------
class _Node:
    """One free block [start, end) with its subtree's largest free block (subtree_max_size)."""

    __slots__ = ("end", "left", "max", "prio", "right", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end
        self.max = end - start
        # a fixed hash of the block's first page: deterministic and well spread (Fibonacci
        # hashing), so runs repeat exactly and no random state needs saving
        self.prio = ((start >> PAGE_SHIFT) * 0x9E3779B97F4A7C15) & U64
        self.left: _Node | None = None
        self.right: _Node | None = None


def _upd(n: _Node) -> None:
    """compute_subtree_max_size()."""
    m = n.end - n.start
    if n.left is not None and n.left.max > m:
        m = n.left.max
    if n.right is not None and n.right.max > m:
        m = n.right.max
    n.max = m


def _split(t: _Node | None, key: int) -> tuple[_Node | None, _Node | None]:
    """The blocks of ``t`` starting below ``key``, and the others."""
    if t is None:
        return None, None
    if t.start < key:
        a, b = _split(t.right, key)
        t.right = a
        _upd(t)
        return t, b
    a, b = _split(t.left, key)
    t.left = b
    _upd(t)
    return a, t


def _merge(a: _Node | None, b: _Node | None) -> _Node | None:
    """Join two treaps, every block of ``a`` below every block of ``b``."""
    if a is None:
        return b
    if b is None:
        return a
    if a.prio > b.prio:
        a.right = _merge(a.right, b)
        _upd(a)
        return a
    b.left = _merge(a, b.left)
    _upd(b)
    return b


class FreeVmapTree:
    """free_vmap_area_root: the free blocks of kernel virtual space by address, augmented with
    subtree_max_size (see the module docstring for why a treap)."""

    def __init__(self, start: int, end: int) -> None:
        self.root: _Node | None = _Node(start, end) if end > start else None
        self.count = 1 if end > start else 0

    def _path(self, start: int) -> list[_Node]:
        """The nodes from the root down to the block that starts at ``start`` (last)."""
        path = []
        cur = self.root
        while cur is not None:
            path.append(cur)
            if start == cur.start:
                return path
            cur = cur.left if start < cur.start else cur.right
        raise KeyError(start)

    @staticmethod
    def _fix(path: list[_Node]) -> None:
        """Redo subtree_max_size from the bottom of ``path`` up, stopping at the first node
        whose value does not change (its ancestors' inputs are then unchanged too), as
        augment_tree_propagate_from() stops (mm/vmalloc.c)."""
        for n in reversed(path):
            old = n.max
            _upd(n)
            if n.max == old:
                return

    def insert(self, start: int, end: int) -> None:
        """Link a new free block (no neighbour touches it)."""
        new = _Node(start, end)
        parent: _Node | None = None
        path = []
        cur = self.root
        while cur is not None and cur.prio >= new.prio:
            path.append(cur)
            parent = cur
            cur = cur.left if start < cur.start else cur.right
        new.left, new.right = _split(cur, start)
        _upd(new)
        if parent is None:
            self.root = new
        elif start < parent.start:
            parent.left = new
        else:
            parent.right = new
        self._fix(path)
        self.count += 1

    def remove(self, start: int) -> None:
        """Unlink the block that starts at ``start``."""
        path = self._path(start)
        node = path.pop()
        repl = _merge(node.left, node.right)
        if not path:
            self.root = repl
        else:
            parent = path[-1]
            if parent.left is node:
                parent.left = repl
            else:
                parent.right = repl
        self._fix(path)
        self.count -= 1

    def reshape(self, start: int, new_start: int, new_end: int) -> None:
        """Move the bounds of the block at ``start`` without passing a neighbour (va_clip's
        edge fits, a merge with a neighbour): the order is kept, the path's maxima redone."""
        path = self._path(start)
        node = path[-1]
        node.start = new_start
        node.end = new_end
        self._fix(path)

    def floor(self, addr: int) -> _Node | None:
        """The block with the greatest start <= ``addr``."""
        cur = self.root
        best = None
        while cur is not None:
            if cur.start <= addr:
                best = cur
                cur = cur.right
            else:
                cur = cur.left
        return best

    def at(self, start: int) -> _Node | None:
        cur = self.root
        while cur is not None:
            if start == cur.start:
                return cur
            cur = cur.left if start < cur.start else cur.right
        return None

    def lowest_match(self, size: int, align: int, vstart: int, length: int) -> _Node | None:
        """find_vmap_lowest_match(): the lowest block that holds the request: the block that
        contains ``vstart`` if the request fits in it (is_within_this_va), else the first
        block starting above ``vstart`` whose size is at least ``length``."""
        n = self.floor(vstart)
        if n is not None and n.end > vstart and is_within_this_va(n.start, n.end, size, align,
                                                                  vstart):
            return n
        return self._first_from(self.root, vstart, length)

    def _first_from(self, n: _Node | None, vstart: int, length: int) -> _Node | None:
        """In-order first block with start > vstart and size >= length: O(depth), since a
        subtree entirely above vstart with max >= length always yields one. (The recursion
        "left subtree, the node, then its right subtree" with an explicit stack of the nodes
        whose left subtree is being searched.)"""
        above: list[_Node] = []
        while True:
            while n is not None and n.max >= length:
                if n.start > vstart:
                    above.append(n)
                    n = n.left
                else:
                    n = n.right
            if not above:
                return None
            p = above.pop()  # nothing in its left subtree: the node itself, then its right
            if p.end - p.start >= length:
                return p
            n = p.right

    def blocks(self) -> Iterator[tuple[int, int]]:
        """Every free block, by address (an in-order walk: for views and invariants)."""
        stack: list[_Node] = []
        cur = self.root
        while stack or cur is not None:
            while cur is not None:
                stack.append(cur)
                cur = cur.left
            cur = stack.pop()
            yield cur.start, cur.end
            cur = cur.right

    def check(self) -> list[str]:
        """The structure's own invariants: BST order, subtree maxima, heap order, no two
        blocks touching (merge_or_add_vmap_area always coalesces)."""
        out: list[str] = []

        def walk(n: _Node | None) -> int:
            if n is None:
                return 0
            m = max(n.end - n.start, walk(n.left), walk(n.right))
            if m != n.max:
                out.append(f"free block {n.start:#x}: subtree_max_size {n.max:#x} != {m:#x}")
            for c in (n.left, n.right):
                if c is not None and c.prio > n.prio:
                    out.append(f"free block {c.start:#x}: heap order broken")
            return m

        walk(self.root)
        prev = None
        count = 0
        for s, e in self.blocks():
            count += 1
            if e <= s:
                out.append(f"free block {s:#x}-{e:#x} is empty")
            if prev is not None and s <= prev:
                out.append(f"free block {s:#x} starts at or below the previous block's end")
            prev = e
        if count != self.count:
            out.append(f"free tree holds {count} blocks, counted {self.count}")
        return out


# --- vm_struct -----------------------------------------------------------------------------------
@dataclass(eq=False, slots=True)
class VmStruct:
    """struct vm_struct with its vmap_area: ``size`` includes the guard page; ``pages`` holds
    the pfn behind each page of the mapped part, in order; ``pages_area`` is the nested
    vmalloc area of the page-pointer array when it exceeds PAGE_SIZE (``vpages``)."""

    addr: int
    size: int
    flags: int
    caller: str
    requested_size: int
    pages: list[int]
    pages_area: VmStruct | None = None
    pages_of: int = 0  # for a page-array area: the start of the area whose array it holds
    vn_id: int = -1  # the vmap node whose lazy list gets it (encode_vn_id of the CPU), or -1

    @property
    def nr_pages(self) -> int:
        return len(self.pages)

    @property
    def mapped_size(self) -> int:
        """get_vm_area_size(): the size without the guard page."""
        return self.size - (0 if self.flags & VM_NO_GUARD else PAGE_SIZE)


def _context_of(pa: PageAllocator, cpu: int, ctx: Context | None) -> Context:
    """The context a vmalloc or vfree runs in: ``ctx``, or ``cpu``'s current one
    (PageAllocator.context without its call); BadNodeError for a CPU that does not exist."""
    if ctx is None:
        st = pa.ctx.get(cpu)
        if st is None:
            pa._check_cpu(cpu)  # raises BadNodeError
        return st[-1] if st else _PROCESS
    pa._check_cpu(cpu)
    return ctx


class Vmalloc:
    """vmalloc over one machine's page allocator and init_mm's page tables.

    Every public entry point completes or raises a :class:`spec.errors.KmemError` subclass
    without changing any state; a failed allocation returns None (NULL) with a ``warn``
    effect, as the kernel's warn_alloc("vmalloc error: ...").
    """

    def __init__(self, pages: PageAllocator | None = None, *,
                 pgtable: PageTable | None = None) -> None:
        self.pages = pa = pages if pages is not None else PageAllocator()
        self.pgtable = pgtable if pgtable is not None else PageTable(pa, user=False)
        m = pa.machine
        self.vmalloc_start = m.vmalloc_start
        self.vmalloc_end = m.vmalloc_end  # exclusive
        self.kernel_vmalloc_end = m.vmalloc_end - 1  # the kernel's VMALLOC_END (inclusive)
        self.free = FreeVmapTree(m.vmalloc_start, m.vmalloc_end)
        self.busy: dict[int, VmStruct] = {}  # va_start -> area (the busy tree)
        self._pmd_index: dict[int, dict[int, None]] = {}  # PMD number -> starts overlapping it
        self.lazy: dict[int, int] = {}  # lazily freed vmap areas: start -> end
        self._lazy_vn: dict[int, int] = {}  # start -> the vmap node whose lazy list holds it
        self.vmap_lazy_nr = 0
        self.nr_vmalloc_pages = 0
        self.nr_cpus = len(pa.cpu_node)
        self.lazy_max = lazy_max_pages(self.nr_cpus)
        self.nr_vmap_nodes = min(max(self.nr_cpus, 1), 128)  # vmap_init_nodes()
        self.totalram = sum(z.managed for z in pa.zones)
        # gfp -> (vmalloc_page_gfp(gfp), vmalloc_pgtable_gfp(gfp)), computed once per mask
        self._gfp_cache: dict[int, tuple[int, int]] = {}
        self._pte_cache: dict[int, tuple[int, list[int]]] = {}  # 2 MiB -> its PTE table

    # --- the range allocator ------------------------------------------------------------------
    def _alloc_vmap_area(self, size: int, align: int, vstart: int, vend: int) -> int:
        """__alloc_vmap_area(): the start of the new area, or ``vend`` (failure)."""
        adjust = not (align <= PAGE_SIZE or vend - vstart == size)
        length = size + align - 1 if adjust else size
        va = self.free.lowest_match(size, align, vstart, length)
        if va is None:
            return vend
        nva = int(fit_start(va.start, vstart, align))
        if nva + size > vend:  # va_alloc()'s vend restriction
            return vend
        left_s, left_e, right_s, right_e = clip_remainders(va.start, va.end, nva, size)
        if left_s == left_e and right_s == right_e:  # FL_FIT_TYPE
            self.free.remove(va.start)
        elif left_s == left_e:  # LE_FIT_TYPE
            self.free.reshape(va.start, right_s, right_e)
        elif right_s == right_e:  # RE_FIT_TYPE
            self.free.reshape(va.start, left_s, left_e)
        else:  # NE_FIT_TYPE: the block keeps the right part, a new one takes the left
            self.free.reshape(va.start, right_s, right_e)
            self.free.insert(left_s, left_e)
        return nva

    def _free_vmap_area(self, start: int, end: int) -> None:
        """merge_or_add_vmap_area(): give [start, end) back, coalescing with free neighbours."""
        f = self.free
        nxt = f.at(end)
        prv = f.floor(start - 1)
        if prv is not None and prv.end != start:
            prv = None
        if prv is not None and nxt is not None:
            new_end = nxt.end
            f.remove(nxt.start)
            f.reshape(prv.start, prv.start, new_end)
        elif nxt is not None:
            f.reshape(nxt.start, start, nxt.end)
        elif prv is not None:
            f.reshape(prv.start, prv.start, end)
        else:
            f.insert(start, end)

    def purge_vmap_area_lazy(self) -> int:
        """__purge_vmap_area_lazy(): every lazily freed area back to the free tree (after the
        TLB flush); returns how many were purged."""
        n = len(self.lazy)
        for s, e in sorted(self.lazy.items()):
            self._free_vmap_area(s, e)
        self.lazy.clear()
        self._lazy_vn.clear()
        self.vmap_lazy_nr = 0
        return n

    def _link(self, vm: VmStruct) -> None:
        self.busy[vm.addr] = vm
        idx = self._pmd_index
        first = vm.addr >> PMD_SHIFT
        if (vm.addr + vm.size - 1) >> PMD_SHIFT == first:  # within one PMD (the usual area)
            d = idx.get(first)
            if d is None:
                idx[first] = {vm.addr: None}
            else:
                d[vm.addr] = None
            return
        for p in range(first, ((vm.addr + vm.size - 1) >> PMD_SHIFT) + 1):
            d = idx.get(p)
            if d is None:
                idx[p] = {vm.addr: None}
            else:
                d[vm.addr] = None

    def _unlink(self, vm: VmStruct) -> None:
        del self.busy[vm.addr]
        idx = self._pmd_index
        first = vm.addr >> PMD_SHIFT
        if (vm.addr + vm.size - 1) >> PMD_SHIFT == first:  # within one PMD (the usual area)
            d = idx[first]
            del d[vm.addr]
            if not d:
                del idx[first]
            return
        for p in range(first, ((vm.addr + vm.size - 1) >> PMD_SHIFT) + 1):
            d = idx[p]
            del d[vm.addr]
            if not d:
                del idx[p]

    # --- allocation ---------------------------------------------------------------------------
    def _warn(self, gfp: int, nid: int, ctx: Context, text: str) -> None:
        """warn_alloc(gfp, NULL, text): a warn effect unless __GFP_NOWARN."""
        if not gfp & _GFP_NOWARN:
            self.pages.effects.append(Effect("warn", nid, f"{text}, mode:{gfp:#x}"
                                             f"({format_gfp(gfp)})", int(ctx), gfp))

    def _vmalloc_node_range(self, size: int, align: int, start: int, end: int, gfp: int,
                             vm_flags: int, node: int, caller: str, cpu: int,
                             ctx: Context | None) -> int | None:
        """__vmalloc_node_range_noprof() (``end`` is the kernel's inclusive VMALLOC_END-style
        value): size 0 and sizes above the RAM are NULL with a warning, otherwise the area,
        its pages and its mapping, or NULL with everything undone."""
        pa = self.pages
        if type(size) is not int or size < 0:
            raise VmallocError(f"vmalloc: size must be a non-negative integer, got {size!r}")
        if type(align) is not int or align < 1 or align & (align - 1):
            raise VmallocError(f"vmalloc: align must be a power of two, got {align!r}")
        if gfp not in self._gfp_cache:
            check_gfp(gfp)  # GfpError for a bad mask; valid ones are cached with their masks
            self._gfp_cache[gfp] = (int(vmalloc_page_gfp(gfp)), int(vmalloc_pgtable_gfp(gfp)))
        if node != NUMA_NO_NODE and (type(node) is not int or not 0 <= node < len(pa.nodes)):
            raise BadNodeError(f"vmalloc_node: node {node} is not online "
                               f"(nodes 0..{len(pa.nodes) - 1})")
        ctx = _context_of(pa, cpu, ctx)
        nid = pa.cpu_node[cpu] if node == NUMA_NO_NODE else node
        if size == 0:  # WARN_ON_ONCE(!size), before anything else
            pa.effects.append(Effect("warn", nid, "WARN_ON_ONCE(!size): vmalloc of size 0",
                                     int(ctx), gfp))
            return None
        if not vmalloc_context_ok(int(ctx)):
            raise SleepInAtomicError(
                f"BUG: sleeping function called from invalid context: vmalloc({size}, "
                f"{format_gfp(gfp)}) in {ctx.name.lower()} context on cpu {cpu}")
        if size >> PAGE_SHIFT > self.totalram:
            self._warn(gfp, nid, ctx, f"vmalloc error: size {size}, exceeds total pages")
            return None
        vm = self._get_vm_area_node(size, align, VM_ALLOC | vm_flags, start, end, gfp, nid,
                                    caller, cpu, ctx)
        if vm is None:
            self._warn(gfp, nid, ctx, f"vmalloc error: size {size}, vm_struct allocation "
                                      "failed")
            return None
        if not self._vmalloc_area_node(vm, gfp, node, cpu, ctx):
            return None
        return vm.addr

    def _get_vm_area_node(self, size: int, align: int, flags: int, start: int, end: int,
                          gfp: int, nid: int, caller: str, cpu: int,
                          ctx: Context) -> VmStruct | None:
        """__get_vm_area_node() + alloc_vmap_area(): PAGE_ALIGN, the guard page, the range
        search with one purge-and-retry, or None with alloc_vmap_area's warning."""
        requested = size
        size = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if not flags & VM_NO_GUARD:
            size += PAGE_SIZE
        addr = self._alloc_vmap_area(size, align, start, end)
        if addr == end and self.lazy:
            self.purge_vmap_area_lazy()  # reclaim_and_purge_vmap_areas(), then retry
            addr = self._alloc_vmap_area(size, align, start, end)
        if addr == end:
            self._warn(gfp & GFP_RECLAIM_MASK, nid, ctx,
                       f"vmalloc_node_range for size {size} failed: Address range restricted "
                       f"to {start:#x} - {end:#x}")
            return None
        vm = VmStruct(addr, size, flags | VM_UNINITIALIZED, caller, requested, [])
        if self.nr_vmap_nodes > 1 and start == self.vmalloc_start and \
                end == self.kernel_vmalloc_end:  # node_alloc(): vn_id of this CPU
            vm.vn_id = cpu % self.nr_vmap_nodes
        self._link(vm)
        return vm

    def _vmalloc_area_node(self, vm: VmStruct, gfp: int, node: int, cpu: int,
                           ctx: Context) -> bool:
        """__vmalloc_area_node(): the page array, the pages, the mapping; on failure undo
        all of it (and the area) and warn."""
        pa = self.pages
        nr = vm.mapped_size >> PAGE_SHIFT
        array_size = nr * 8
        nid = pa.cpu_node[cpu] if node == NUMA_NO_NODE else node
        if array_size > PAGE_SIZE:  # the page array is itself vmalloc'd (nested_gfp)
            nested = (gfp & GFP_RECLAIM_MASK) | _GFP_ZERO
            paddr = self._vmalloc_node_range(array_size, 1, self.vmalloc_start,
                                              self.kernel_vmalloc_end, nested, 0, node,
                                              vm.caller, cpu, ctx)
            if paddr is None:
                self._warn(gfp, nid, ctx, f"vmalloc error: size {nr * PAGE_SIZE}, failed to "
                                          f"allocated page array size {array_size}")
                self._undo_area(vm)
                return False
            vm.pages_area = self.busy[paddr]
            vm.pages_area.pages_of = vm.addr
        page_gfp, pgtable_gfp = self._gfp_cache[gfp]  # vmalloc_page_gfp, vmalloc_pgtable_gfp
        pages = vm.pages
        allocated = pa.allocated
        # vm_area_alloc_pages(), order 0: the bulk allocator in requests of at most
        # VMALLOC_BULK_MAX pages (alloc_pages_bulk_array_mempolicy for NUMA_NO_NODE, whose
        # default policy is the local node, else alloc_pages_bulk_array_node) until one
        # comes back short; then the single page allocator for the rest
        bulk = pa.alloc_pages_bulk
        while len(pages) < nr:
            want = min(VMALLOC_BULK_MAX, nr - len(pages))
            got_pages: list[int | None] = [None] * want
            got = bulk(page_gfp, node, want, got_pages, cpu=cpu, ctx=ctx, owner=OWNER_VMALLOC)
            if got == want and not pages:  # the whole first batch: the array itself
                vm.pages = pages = got_pages  # type: ignore[assignment]  # every entry a pfn
            else:
                pages.extend(got_pages[:got])  # type: ignore[arg-type]  # the first got: pfns
            if got != want:
                break
        alloc = pa.alloc_pages_node
        while len(pages) < nr:  # the fallback loop (alloc_pages / alloc_pages_node)
            pfn = alloc(node, page_gfp, 0, cpu=cpu, ctx=ctx)
            if pfn is None:
                break
            o, zid, _o, mt = allocated[pfn]
            allocated[pfn] = (o, zid, OWNER_VMALLOC, mt)
            pages.append(pfn)
        if len(pages) != nr:
            self._warn(gfp, nid, ctx, f"vmalloc error: size {len(pages) * PAGE_SIZE}, failed "
                                      "to allocate pages")
            self._undo_area(vm)
            return False
        try:  # vmap_pages_range(): one PAGE_KERNEL PTE per page (PageTable.map_pages; on
            # -ENOMEM it clears the PTEs it installed and raises; the tables it allocated
            # stay, as the kernel's do)
            self.pgtable.map_pages(vm.addr, pages, PAGE_KERNEL, gfp=pgtable_gfp, cpu=cpu,
                                   ctx=ctx)
        except KmemError:
            self._warn(gfp, nid, ctx, f"vmalloc error: size {nr * PAGE_SIZE}, failed to map "
                                      "pages")
            self._undo_area(vm)
            return False
        self.nr_vmalloc_pages += nr
        vm.flags &= ~VM_UNINITIALIZED  # clear_vm_uninitialized_flag()
        return True

    def _undo_area(self, vm: VmStruct) -> None:
        """A failed vmalloc: the pages back to the buddy allocator, the nested page array
        freed, the vmap_area straight back to the free tree."""
        pa = self.pages
        allocated = pa.allocated
        for pfn in vm.pages:
            o, zid, _o, mt = allocated[pfn]
            allocated[pfn] = (o, zid, OWNER_PAGES, mt)
            pa.free_pages_pfn(pfn, 0)
        vm.pages.clear()
        if vm.pages_area is not None:
            self._vfree_area(vm.pages_area, lazy=False)
            vm.pages_area = None
        self._unlink(vm)
        self._free_vmap_area(vm.addr, vm.addr + vm.size)

    # --- the API ---------------------------------------------------------------------------------
    def vmalloc_node_range(self, size: int, align: int, start: int, end: int, gfp: int, *,
                           vm_flags: int = 0, node: int = NUMA_NO_NODE,
                           caller: str = DEFAULT_CALLER, cpu: int = 0,
                           ctx: Context | None = None) -> int | None:
        """__vmalloc_node_range(size, align, start, end, gfp, PAGE_KERNEL, vm_flags, node,
        caller); ``end`` as the kernel's (inclusive-style) VMALLOC_END."""
        return self._vmalloc_node_range(size, align, start, end, gfp, vm_flags, node, caller,
                                         cpu, ctx)

    def vmalloc_node_gfp(self, size: int, gfp: int, node: int, *, caller: str = DEFAULT_CALLER,
                         cpu: int = 0, ctx: Context | None = None) -> int | None:
        """__vmalloc_node(size, 1, gfp, node, caller) over the whole vmalloc range."""
        return self._vmalloc_node_range(size, 1, self.vmalloc_start, self.kernel_vmalloc_end,
                                         gfp, 0, node, caller, cpu, ctx)

    def vmalloc(self, size: int, *, gfp: int = GFP_KERNEL, caller: str = DEFAULT_CALLER,
                cpu: int = 0, ctx: Context | None = None) -> int | None:
        """vmalloc(size) (GFP_KERNEL; ``gfp`` other than that is __vmalloc(size, gfp)):
        __vmalloc_node(size, 1, gfp, NUMA_NO_NODE, caller), as vmalloc_node_gfp."""
        return self._vmalloc_node_range(size, 1, self.vmalloc_start, self.kernel_vmalloc_end,
                                         gfp, 0, NUMA_NO_NODE, caller, cpu, ctx)

    def vzalloc(self, size: int, *, caller: str = DEFAULT_CALLER, cpu: int = 0,
                ctx: Context | None = None) -> int | None:
        """vzalloc(size): GFP_KERNEL | __GFP_ZERO."""
        return self.vmalloc_node_gfp(size, GFP_KERNEL | _GFP_ZERO, NUMA_NO_NODE, caller=caller,
                                     cpu=cpu, ctx=ctx)

    def vmalloc_node(self, size: int, node: int, *, caller: str = DEFAULT_CALLER, cpu: int = 0,
                     ctx: Context | None = None) -> int | None:
        """vmalloc_node(size, node): GFP_KERNEL pages preferably from ``node``."""
        return self.vmalloc_node_gfp(size, GFP_KERNEL, node, caller=caller, cpu=cpu, ctx=ctx)

    def vzalloc_node(self, size: int, node: int, *, caller: str = DEFAULT_CALLER,
                     cpu: int = 0, ctx: Context | None = None) -> int | None:
        """vzalloc_node(size, node)."""
        return self.vmalloc_node_gfp(size, GFP_KERNEL | _GFP_ZERO, node, caller=caller,
                                     cpu=cpu, ctx=ctx)

    def vfree(self, addr: int, *, cpu: int = 0, ctx: Context | None = None) -> None:
        """vfree(addr): NULL does nothing; in interrupt context the kernel defers the work to
        vfree_atomic()'s worker (run here at once); with preemption disabled or a spinlock
        held might_sleep() fires. Otherwise the area's PTEs are cleared, its pages freed one
        by one, and the vmap_area parked on the lazy purge list."""
        pa = self.pages
        ctx = _context_of(pa, cpu, ctx)
        if type(addr) is not int:
            raise VfreeError(f"vfree({addr!r}): not an address")
        if ctx is _PREEMPT_DISABLED or ctx is _SPINLOCK:
            raise SleepInAtomicError(
                f"BUG: sleeping function called from invalid context: vfree({addr:#x}) in "
                f"{ctx.name.lower()} context on cpu {cpu}")
        if addr == 0:
            return
        vm = self.busy.get(addr)
        if vm is None:
            self._diagnose_vfree(addr)
            raise AssertionError  # unreachable: _diagnose_vfree raises
        if vm.pages_of:
            raise VfreeError(f"vfree({addr:#x}): the page array of the vmalloc area "
                             f"{vm.pages_of:#x} (kvfree'd only with it)")
        refs = self.pages.refs
        if refs:
            held = [p for p in vm.pages if p in refs]
            if held:
                raise VfreeError(
                    f"vfree({addr:#x}): page {held[0]:#x} still has {refs[held[0]]} extra "
                    "references (get_page): the model refuses (the kernel's __free_page would "
                    "only drop vmalloc's reference)")
        self._vfree_area(vm, lazy=True)

    def _vfree_area(self, vm: VmStruct, *, lazy: bool) -> None:
        """remove_vm_area() + the page frees of vfree(); ``lazy`` parks the vmap_area on the
        purge list (free_vmap_area_noflush), else it goes straight back (failure undo)."""
        pa = self.pages
        self._unlink(vm)
        self.pgtable.unmap_range(vm.addr, len(vm.pages))  # vunmap_range_noflush()
        pop = pa.allocated.pop
        zones = pa.zones
        free_one = pa._free_one_page
        flags = pa.pageblock_flags
        pbo = pa.pageblock_order
        for pfn in vm.pages:  # __free_page() of each page (no extra references: vfree checked)
            # free_one_page() of an order-0 page: __free_one_page() with its pageblock's type
            free_one(zones[pop(pfn)[1]], pfn, 0, flags[pfn >> pbo], False)
        self.nr_vmalloc_pages -= len(vm.pages)
        if vm.pages_area is not None:  # kvfree(vm->pages)
            self._vfree_area(vm.pages_area, lazy=lazy)
        end = vm.addr + vm.size
        if lazy:
            self.lazy[vm.addr] = end
            self._lazy_vn[vm.addr] = vm.vn_id if vm.vn_id >= 0 else self.addr_to_node_id(
                vm.addr)
            self.vmap_lazy_nr += vm.size >> PAGE_SHIFT
            if self.vmap_lazy_nr > self.lazy_max:  # schedule_work(&drain_vmap_work)
                self.purge_vmap_area_lazy()
        else:
            self._free_vmap_area(vm.addr, end)

    def _diagnose_vfree(self, addr: int) -> None:
        """Raise the error for a vfree of something that is not a live area's start."""
        pa = self.pages
        if 0 <= addr - pa.page_offset < DIRECT_MAP_SIZE:
            raise VfreeDirectMapError(
                f"vfree({addr:#x}): a direct-map address (kmalloc or page allocator memory, "
                "free it with kfree/free_pages): Trying to vfree() nonexistent vm area")
        if addr & (PAGE_SIZE - 1):
            raise VfreeError(f"Trying to vfree() bad address ({addr:#x}): not page aligned")
        if addr in self.lazy:
            raise VfreeDoubleError(f"vfree({addr:#x}): double vfree, the area "
                                   f"{addr:#x}-{self.lazy[addr]:#x} is already freed "
                                   "(waiting for the lazy purge)")
        vm = self.find_vm_area(addr)
        if vm is not None:
            raise VfreeNotAreaStartError(
                f"vfree({addr:#x}): inside the vmalloc area {vm.addr:#x}-"
                f"{vm.addr + vm.size:#x} ({vm.size} bytes), not its start")
        if not self.is_vmalloc_addr(addr):
            raise VfreeError(f"Trying to vfree() nonexistent vm area ({addr:#x}): not a "
                             f"vmalloc address ({self.vmalloc_start:#x}-"
                             f"{self.kernel_vmalloc_end:#x})")
        raise VfreeError(f"Trying to vfree() nonexistent vm area ({addr:#x}): no live area "
                         "starts there (never allocated, or freed and purged)")

    # --- lookups ------------------------------------------------------------------------------
    def is_vmalloc_addr(self, addr: int) -> bool:
        """is_vmalloc_addr(): VMALLOC_START <= addr < VMALLOC_END (the kernel's, inclusive-style
        end: the range's last byte is excluded), spec.layout's kit function on this machine's
        range."""
        return bool(is_vmalloc_addr(addr, self.vmalloc_start,
                                    self.vmalloc_end - self.vmalloc_start))

    def find_vm_area(self, addr: int) -> VmStruct | None:
        """find_vm_area(): the live area containing ``addr`` (guard page included), or None;
        at most the areas overlapping one 2 MiB PMD are looked at."""
        vm = self.busy.get(addr)
        if vm is not None:
            return vm
        for start in self._pmd_index.get(addr >> PMD_SHIFT, ()):
            vm = self.busy[start]
            if vm.addr <= addr < vm.addr + vm.size:
                return vm
        return None

    def vmalloc_to_pfn(self, addr: int) -> int | None:
        """vmalloc_to_pfn(): walk init_mm's page tables (vmalloc_to_page); None where no PTE
        is present (the kernel's vmalloc_to_page returns NULL). A non-vmalloc address is the
        kernel's VM_BUG_ON(!is_vmalloc_or_module_addr()).

        The PGD/PUD/PMD part of the walk is cached per 2 MiB (a paging-structure cache):
        init_mm's PTE tables are never freed, and a cached table is used only while it is
        still the tree's table of that pfn (so a restored snapshot is never read stale)."""
        # is_vmalloc_addr() inline (tests/test_vm_views.py compares it with the proved
        # spec.layout function at the range's edges): the range's last byte is not one
        if type(addr) is not int or not self.vmalloc_start <= addr < self.kernel_vmalloc_end:
            what = f"{addr:#x}" if type(addr) is int else repr(addr)
            raise VmallocError(f"vmalloc_to_page({what}): not a vmalloc address "
                               "(VM_BUG_ON(!is_vmalloc_or_module_addr))")
        hit = self._pte_cache.get(addr >> PMD_SHIFT)
        if hit is None or self.pgtable.tables.get(hit[0]) is not hit[1]:
            hit = self._walk_pmd(addr)
            if hit is None:
                return None
        pte = hit[1][pte_index(addr)]  # the proved index (proofs/pgtable.py index_split)
        if not pte_present(pte):
            return None
        return int(pte_pfn(pte))

    def _walk_pmd(self, addr: int) -> tuple[int, list[int]] | None:
        """pgd_offset_k -> p4d (folded) -> pud_offset -> pmd_offset: (PTE table pfn, its
        entries), or None where a level is missing; remembered for the 2 MiB of ``addr``."""
        tables = self.pgtable.tables
        t = tables[self.pgtable.root]
        pfn = -1
        for level in (PGD_LEVEL, PUD_LEVEL, PMD_LEVEL):
            e = t[level_index(addr, level)]
            if not entry_present(e):
                return None
            pfn = int(entry_table_pfn(e))
            t = tables[pfn]
        self._pte_cache[addr >> PMD_SHIFT] = (pfn, t)
        return pfn, t

    def vmalloc_to_page(self, addr: int) -> int | None:
        """vmalloc_to_page(): the page (a pfn in the model) behind a vmalloc address."""
        return self.vmalloc_to_pfn(addr)

    def addr_to_node_id(self, addr: int) -> int:
        """addr_to_node_id(): the vmap node of an address, (addr / vmap_zone_size) %
        nr_vmap_nodes, with 16-page zones when there is more than one node."""
        if self.nr_vmap_nodes == 1:
            return 0
        return (addr // (16 * PAGE_SIZE)) % self.nr_vmap_nodes

    # --- views ----------------------------------------------------------------------------
    def vmallocinfo_lines(self) -> list[VmallocinfoLine]:
        """vmalloc_info_show(): each vmap node's busy list by address, then the unpurged
        areas of each node's lazy list (show_purge_info)."""
        out = []
        nodes = sorted(self.busy, key=lambda a: (self.addr_to_node_id(a), a))
        for a in nodes:
            vm = self.busy[a]
            if vm.flags & VM_UNINITIALIZED:
                continue
            counts: dict[int, int] = {}
            for pfn in vm.pages:
                nid = self.nid_of(pfn)
                counts[nid] = counts.get(nid, 0) + 1
            flags = [w for bit, w in ((VM_IOREMAP, "ioremap"), (VM_SPARSE, "sparse"),
                                      (VM_ALLOC, "vmalloc"), (VM_MAP, "vmap"),
                                      (VM_USERMAP, "user"),
                                      (VM_DMA_COHERENT, "dma-coherent")) if vm.flags & bit]
            if vm.pages_area is not None:  # is_vmalloc_addr(v->pages)
                flags.append("vpages")
            out.append(VmallocinfoLine(vm.addr, vm.addr + vm.size, vm.size, "area", vm.caller,
                                       vm.nr_pages or None, None, flags,
                                       sorted(counts.items())))
        for s in sorted(self.lazy, key=lambda a: (self._lazy_vn[a], a)):
            e = self.lazy[s]
            out.append(VmallocinfoLine(s, e, e - s, "unpurged"))
        return out

    def vmallocinfo(self) -> str:
        """/proc/vmallocinfo."""
        return render_vmallocinfo(self.vmallocinfo_lines())

    def meminfo_items(self) -> list[tuple[str, int, bool]]:
        """The page-table and vmalloc lines of /proc/meminfo, in its order (fs/proc/meminfo.c
        meminfo_proc_show): PageTables is NR_PAGETABLE summed over the nodes (the counted
        tables of every tree: spec.pgtable_state.counted_in_nr_pagetable), SecPageTables 0
        (no KVM secondary tables); VmallocTotal is (VMALLOC_END - VMALLOC_START) >> 10 with
        the kernel's inclusive end, VmallocUsed vmalloc_nr_pages() in kB, VmallocChunk always
        0 (since 5.3)."""
        total = (self.kernel_vmalloc_end - self.vmalloc_start) >> 10
        kb = PAGE_SHIFT - 10
        return [("PageTables", sum(self.pages.nr_page_table_pages) << kb, True),
                ("SecPageTables", 0, True),
                ("VmallocTotal", total, True),
                ("VmallocUsed", self.nr_vmalloc_pages << kb, True),
                ("VmallocChunk", 0, True)]

    def meminfo(self) -> str:
        """The page-table and vmalloc subset of /proc/meminfo, in the kernel's format."""
        return render_meminfo(self.meminfo_items())

    # --- bookkeeping --------------------------------------------------------------------------
    def vmalloc_nr_pages(self) -> int:
        """vmalloc_nr_pages(): pages of live vmalloc areas (/proc/meminfo VmallocUsed)."""
        return self.nr_vmalloc_pages

    def areas(self) -> list[VmStruct]:
        """Every live vm_struct, by address (linear: views and invariants)."""
        return [self.busy[a] for a in sorted(self.busy)]

    def nid_of(self, pfn: int) -> int:
        z = self.pages.zone_of_pfn(pfn)
        assert z is not None
        return z.nid

    def snapshot(self) -> tuple[object, ...]:
        """Everything observable, for "state unchanged" checks: areas, lazy list, free
        blocks, counters, every present kernel PTE, the page tables' pages and the page
        allocator's allocated blocks and free counts."""
        pa = self.pages
        areas = tuple((vm.addr, vm.size, vm.flags, vm.caller, tuple(vm.pages),
                       vm.pages_area.addr if vm.pages_area else 0) for vm in self.areas())
        return (areas, tuple(sorted(self.lazy.items())), tuple(self.free.blocks()),
                self.vmap_lazy_nr, self.nr_vmalloc_pages,
                tuple(sorted(self.pgtable.mappings())), tuple(sorted(self.pgtable.table_pfns())),
                tuple(sorted(pa.allocated.items())), tuple(z.free_pages for z in pa.zones),
                tuple(sorted((k, tuple(v)) for k, v in self._pmd_index.items())))


def abstract_vm(v: Vmalloc) -> VmState:
    """The abstraction function: the live areas with their pages, the lazy list, the free
    blocks (an in-order walk, so a broken tree shows), every present init_mm PTE outside the
    direct map, the page-table pages and the page allocator's allocated blocks. Linear in the
    state: for tests, state machines and the model checker."""
    pa = v.pages
    dm_start, dm_end = pa.page_offset, pa.page_offset + DIRECT_MAP_SIZE
    areas = tuple(VmArea(vm.addr, vm.size, not vm.flags & VM_NO_GUARD, tuple(vm.pages),
                         vm.requested_size) for vm in v.areas())
    maps = tuple((va, int(pte_pfn(pte))) for va, pte in v.pgtable.mappings()
                 if not dm_start <= va < dm_end)
    return VmState(v.vmalloc_start, v.vmalloc_end, areas, tuple(sorted(v.lazy.items())),
                   tuple(v.free.blocks()), maps, frozenset(v.pgtable.table_pfns()),
                   tuple(sorted((p, r[0], r[2]) for p, r in pa.allocated.items())),
                   v.nr_vmalloc_pages, v.vmap_lazy_nr, OWNER_VMALLOC, OWNER_PGTABLE)
