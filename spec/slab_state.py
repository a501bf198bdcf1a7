"""The specification's view of slab caches, and their invariants, each defined once.

Every slab of every cache is, at every moment, in exactly one place: the CPU slab of one CPU,
on one CPU's partial list, on its own node's partial list, or on no list (then it is full).
By its object count it is full, partial or empty. The implementation's structures
(impl/slub.py) map onto :class:`SlabState` by ``impl.slab_common.abstract_slabs``; the
invariants below are evaluated on it by the tests, the state machine and debug checks.

Sources: mm/slub.c (struct slab counters, the freelists, get_partial_node, __slab_free,
deactivate_slab), mm/slab.h.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from spec.checks import CheckedInvariant, CheckRegistry
from spec.layout import PAGE_SIZE

CPU_SLAB, CPU_PARTIAL, NODE_PARTIAL, NO_LIST = "cpu", "cpu_partial", "node_partial", "none"


class SlabRecord(NamedTuple):
    """One slab as the specification sees it. ``where`` is one of CPU_SLAB, CPU_PARTIAL,
    NODE_PARTIAL or NO_LIST (``owner`` is the CPU for the first two); ``free`` the object
    indices on its freelists, in list order (the CPU freelist first for a CPU slab);
    ``marked_free`` the indices the slab's own map says are free; ``inuse`` the kernel's
    counter and ``cpu_free`` how many of ``free`` sit on the CPU's lockless freelist."""

    cache: str
    pfn: int
    order: int
    nid: int
    objects: int
    size: int
    where: str
    owner: int
    places: int  # how many places (lists, CPU slots) the implementation holds it in
    free: tuple[int, ...]
    marked_free: frozenset[int]
    inuse: int
    cpu_free: int
    page_owner: str  # owner of its pages in the page allocator
    page_order: int


class NodeCounters(NamedTuple):
    """kmem_cache_node counters of one cache on one node."""

    cache: str
    nid: int
    nr_slabs: int
    total_objects: int
    nr_partial: int


@dataclass(frozen=True)
class SlabState:
    """Every slab and the per-node counters of every live cache."""

    slabs: tuple[SlabRecord, ...]
    nodes: tuple[NodeCounters, ...]


SlabInvariant = CheckedInvariant[SlabState]
SLAB_INVARIANTS: CheckRegistry[SlabState] = CheckRegistry()
slab_invariant = SLAB_INVARIANTS.register


@slab_invariant("slab.freelist_sound",
                "A slab's free objects are distinct, inside the slab, and together with its "
                "live objects exactly its objects (the freelists and the free map agree).",
                "mm/slub.c on_freelist(), set_freepointer(): no object twice on a freelist")
def inv_freelist(st: SlabState) -> list[str]:
    out = []
    for s in st.slabs:
        if len(set(s.free)) != len(s.free):
            out.append(f"{s.cache} slab {s.pfn:#x}: an object is twice on its freelists")
        if any(not 0 <= i < s.objects for i in s.free):
            out.append(f"{s.cache} slab {s.pfn:#x}: a free index outside 0..{s.objects - 1}")
        if frozenset(s.free) != s.marked_free:
            out.append(f"{s.cache} slab {s.pfn:#x}: freelists and free map disagree")
    return out


def slab_objects_spec(order: int, size: int) -> int:
    """How many objects a slab of 2^order pages holds at a stride of ``size`` bytes: as many
    as fit (mm/slub.c order_objects(): slab->objects = (PAGE_SIZE << order) / size)."""
    return (PAGE_SIZE << order) // size


@slab_invariant("slab.geometry",
                "A slab is one block of 2^order pages owned by the slab allocator, holding "
                "`objects` objects at the cache's stride: as many as fit in the block, at "
                "least one.",
                "mm/slub.c allocate_slab(), order_objects(), oo_make(); mm/slab.h struct slab")
def inv_geometry(st: SlabState) -> list[str]:
    return [f"{s.cache} slab {s.pfn:#x}: {s.objects} objects of {s.size} bytes in 2^{s.order} "
            f"pages (as many as fit: {slab_objects_spec(s.order, s.size)}), or pages not the "
            f"slab's ({s.page_owner}, order {s.page_order})"
            for s in st.slabs
            if s.objects != slab_objects_spec(s.order, s.size) or s.objects < 1
            or s.page_owner != "slab" or s.page_order != s.order or s.pfn % (1 << s.order)]


@slab_invariant("slab.one_place",
                "Every slab is in exactly one place: one CPU's slab, one CPU partial list, its "
                "node's partial list, or no list; a slab on no list is full, one on the node "
                "partial list has a free object.",
                "mm/slub.c get_partial_node(), put_cpu_partial(), deactivate_slab()")
def inv_one_place(st: SlabState) -> list[str]:
    out = []
    for s in st.slabs:
        if (s.places != 1 and s.where != NO_LIST) or (s.places != 0 and s.where == NO_LIST):
            out.append(f"{s.cache} slab {s.pfn:#x} is in {s.places} places")
        if s.where == NO_LIST and s.free:
            out.append(f"{s.cache} slab {s.pfn:#x} has free objects but is on no list")
        if s.where == NODE_PARTIAL and not s.free:
            out.append(f"{s.cache} slab {s.pfn:#x} is full but on a node partial list")
    return out


@slab_invariant("slab.inuse",
                "slab->inuse counts the objects not on the slab's own freelist: all but the "
                "slab freelist for a CPU slab (its CPU freelist counts as in use), objects "
                "minus free objects for any other slab.",
                "mm/slub.c get_freelist(), __slab_free(), deactivate_slab()")
def inv_inuse(st: SlabState) -> list[str]:
    return [f"{s.cache} slab {s.pfn:#x}: inuse {s.inuse}, expected "
            f"{s.objects - len(s.free) + s.cpu_free}"
            for s in st.slabs if s.inuse != s.objects - len(s.free) + s.cpu_free]


@slab_invariant("slab.node_counters",
                "Each kmem_cache_node's nr_slabs and total_objects count exactly the cache's "
                "slabs on that node and their objects; nr_partial its node partial slabs.",
                "mm/slub.c inc_slabs_node(), dec_slabs_node()")
def inv_counters(st: SlabState) -> list[str]:
    out = []
    for n in st.nodes:
        mine = [s for s in st.slabs if s.cache == n.cache and s.nid == n.nid]
        part = [s for s in mine if s.where == NODE_PARTIAL]
        if (n.nr_slabs, n.total_objects, n.nr_partial) != (
                len(mine), sum(s.objects for s in mine), len(part)):
            out.append(f"{n.cache} node {n.nid}: nr_slabs {n.nr_slabs}, total_objects "
                       f"{n.total_objects}, nr_partial {n.nr_partial} disagree with its slabs")
    return out


@slab_invariant("slab.disjoint",
                "No two slabs share a page, so no two live objects overlap.",
                "mm/slub.c allocate_slab(): each slab owns its pages")
def inv_disjoint(st: SlabState) -> list[str]:
    seen: dict[int, int] = {}
    out = []
    for s in st.slabs:
        for p in range(s.pfn, s.pfn + (1 << s.order)):
            if p in seen:
                out.append(f"slabs at {seen[p]:#x} and {s.pfn:#x} share pfn {p:#x}")
            seen[p] = s.pfn
    return out


def slab_violations(st: SlabState) -> list[str]:
    """Every violation of every slab invariant, prefixed with the invariant's name."""
    return SLAB_INVARIANTS.violations(st)
