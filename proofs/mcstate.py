"""The model checker's view of one allocator state: capture, restore, compare, key.

The explicit-state model checker (proofs/modelcheck.py) explores the real
:class:`impl.page_alloc.PageAllocator`. It keeps ONE allocator object and moves it from state
to state: :func:`capture` copies every mutable field into plain data (dicts, lists, tuples,
ints, bytes: what ``marshal`` stores, about 15 times faster than pickling the object graph),
:func:`restore` writes such a capture back into the same object, :func:`same` tells whether an
operation changed anything (comparing containers in C, without building a key), and
:func:`state_key` gives the canonical hashable key the search deduplicates on.

Which fields are state is written down here, field by field (:data:`ALLOCATOR_FIELDS`,
:data:`ZONE_FIELDS`, :data:`NODE_FIELDS`): ``state`` (captured, restored and in the key),
``stats`` (captured and restored, left out of the key: statistics and effects that no later
call reads), ``const`` (set at boot, never written by an operation), ``cache`` (derived from
constants only). :func:`check_layout` refuses an allocator with a field this table does not
classify, so a field added to impl/ later cannot be silently left out of the search;
:func:`constants_fingerprint` lets a run verify at its end that no ``const`` field changed.
tests/test_modelcheck.py checks a capture/restore round trip against pickle.
"""

from __future__ import annotations

import dataclasses
import marshal
from collections.abc import Iterable
from operator import attrgetter
from typing import Any, Literal

from impl.mmzone import NodeState, Zone
from impl.page_alloc import PageAllocator
from spec.context import Context
from spec.gfp import __GFP_DIRECT_RECLAIM, __GFP_KSWAPD_RECLAIM

Role = Literal["state", "stats", "const", "cache"]

ALLOCATOR_FIELDS: dict[str, Role] = {
    "allocated": "state", "refs": "state", "pageblock_flags": "state", "ctx": "state",
    "nr_page_table_pages": "state",  # NR_PAGETABLE per node (impl/pgtable.py)
    "zones": "state",  # the Zone objects are constant; their fields: ZONE_FIELDS
    "nodes": "state",  # likewise: NODE_FIELDS
    "_hit_zid": "stats",  # scratch: written before it is read, within one allocation
    "effects": "stats", "access_cost": "stats", "accesses": "stats",
    "machine": "const", "max_order": "const", "pageblock_order": "const", "page_offset": "const",
    "cpu_node": "const", "distance": "const", "_zone_starts": "const", "max_pfn": "const",
    "_node_order": "const", "_nofrag": "const",
    "_zonelists": "cache", "_gfp_cache": "cache", "_slow_cache": "cache", "_wm_cache": "cache",
}
"""Every instance attribute of PageAllocator, classified."""

ZONE_FIELDS: dict[str, Role] = {
    "_buddy": "state", "_nxt": "state", "_prv": "state", "heads": "state", "tails": "state",
    "counts": "state", "_lazy": "state", "_lazy_pages": "state", "free_pages": "state",
    "boost": "state", "boosted": "state",
    "numa_hit": "stats", "numa_miss": "stats", "numa_foreign": "stats", "numa_local": "stats",
    "numa_other": "stats", "interleave_hit": "stats",
    "cfg": "const", "end": "const", "idx": "const", "lowmem_reserve": "const",
    "managed": "const", "max_order": "const", "name": "const", "nid": "const",
    "present": "const", "spanned": "const", "start": "const", "wmark": "const", "zid": "const",
}
"""Every slot of impl.mmzone.Zone (struct zone), classified."""

NODE_FIELDS: dict[str, Role] = {
    "lru": "state", "kswapd_awake": "state",
    "nid": "const", "cpus": "const", "zones": "const",
}
"""Every field of impl.mmzone.NodeState (struct pglist_data), classified."""


class LayoutError(Exception):
    """The allocator has a field the model checker does not know how to capture."""


def _zone_slots(z: Zone) -> set[str]:
    out: set[str] = set()
    for cls in type(z).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        out.update((slots,) if isinstance(slots, str) else slots)
    out.update(getattr(z, "__dict__", {}))
    return out


def layout_problems(a: PageAllocator) -> list[str]:
    """Fields of ``a`` (and of its zones and nodes) missing from, or extra in, the tables."""
    out = []
    for what, have, table in (
            ("PageAllocator", set(vars(a)), ALLOCATOR_FIELDS),
            *(("Zone", _zone_slots(z), ZONE_FIELDS) for z in a.zones[:1]),
            *(("NodeState", {f.name for f in dataclasses.fields(n)} | set(vars(n)), NODE_FIELDS)
              for n in a.nodes[:1])):
        out += [f"{what}.{n} is not classified in proofs/mcstate.py"
                for n in sorted(have - set(table))]
        out += [f"{what}.{n} is classified in proofs/mcstate.py but does not exist"
                for n in sorted(set(table) - have)]
    if type(a.zones[0]) is not Zone or type(a.nodes[0]) is not NodeState:
        out.append("zones and nodes must be impl.mmzone.Zone and NodeState")
    return out


def check_layout(a: PageAllocator) -> None:
    """Raise LayoutError unless every field of ``a`` is classified."""
    bad = layout_problems(a)
    if bad:
        raise LayoutError("; ".join(bad))


# --- capture and restore ------------------------------------------------------------------------

Capture = tuple[Any, ...]
"""Plain data: (zones, allocated, refs, pageblock_flags, nodes, ctx, stats,
nr_page_table_pages)."""


def capture(a: PageAllocator) -> Capture:
    """Every ``state`` and ``stats`` field of ``a`` as plain data (copies)."""
    return (
        tuple((dict(z._buddy), dict(z._nxt), dict(z._prv), z.heads[:], z.tails[:],
               z.counts[:], [r[:] for r in z._lazy], z._lazy_pages, z.free_pages, z.boost,
               z.boosted) for z in a.zones),
        dict(a.allocated), dict(a.refs), bytes(a.pageblock_flags),
        tuple((dict(n.lru), n.kswapd_awake) for n in a.nodes),
        tuple((c, [int(x) for x in st]) for c, st in a.ctx.items()),
        (a._hit_zid, dict(a.access_cost), dict(a.accesses),
         tuple((z.numa_hit, z.numa_miss, z.numa_foreign, z.numa_local, z.numa_other,
                z.interleave_hit) for z in a.zones)),
        a.nr_page_table_pages[:],
    )


_CONTEXTS: dict[int, Context] = {int(c): c for c in Context}


def restore(a: PageAllocator, c: Capture) -> None:
    """Write capture ``c`` back into ``a`` (fresh copies: ``c`` stays usable). Effects are
    cleared. (The model checker restores after every transition that changed the state:
    plain loops, no zip(strict=True), the Context of each stacked context by table.)"""
    zones, allocated, refs, flags, nodes, ctx, stats, nr_pt = c
    azones = a.zones
    if len(zones) != len(azones) or len(nodes) != len(a.nodes):
        raise LayoutError("capture of another machine")
    for i, (buddy, nxt, prv, heads, tails, counts, lazy, lazy_pages, free, boost,
            boosted) in enumerate(zones):
        z = azones[i]
        z._buddy = buddy.copy()
        z._nxt = nxt.copy()
        z._prv = prv.copy()
        z.heads = heads[:]
        z.tails = tails[:]
        z.counts = counts[:]
        z._lazy = [r[:] for r in lazy] if lazy else []
        z._lazy_pages = lazy_pages
        z.free_pages = free
        z.boost = boost
        z.boosted = boosted
    a.allocated = allocated.copy()
    # the fields most operations leave alone are copied only when they differ (equal
    # content in an object of its own is as good as a fresh copy)
    if a.refs != refs:
        a.refs = refs.copy()
    if a.pageblock_flags != flags:
        a.pageblock_flags = bytearray(flags)
    if a.nr_page_table_pages != nr_pt:
        a.nr_page_table_pages = nr_pt[:]
    anodes = a.nodes
    for i, (lru, awake) in enumerate(nodes):
        n = anodes[i]
        if n.lru != lru or list(n.lru) != list(lru):
            n.lru = lru.copy()
        n.kswapd_awake = awake
    actx = a.ctx
    differ = len(actx) != len(ctx)
    for cpu, st in ctx:
        if differ or actx.get(cpu) != st:
            differ = True
            break
    if differ:
        a.ctx = {cpu: [_CONTEXTS[x] for x in st] if st else [] for cpu, st in ctx}
    hit, cost, accesses, numa = stats
    a._hit_zid = hit
    if a.access_cost != cost:
        a.access_cost = cost.copy()
    if a.accesses != accesses:
        a.accesses = accesses.copy()
    for i, (h, m, f, lo, o, il) in enumerate(numa):
        z = azones[i]
        z.numa_hit, z.numa_miss, z.numa_foreign, z.numa_local, z.numa_other = h, m, f, lo, o
        z.interleave_hit = il
    a.effects = []


def same(a: PageAllocator, c: Capture) -> bool:
    """Whether every ``state`` field of ``a`` equals capture ``c`` (stats not compared; the
    kswapd_awake flags are compared: a kswapd run that only puts kswapd to sleep changes the
    object, even when the search's key leaves the flag out). Runs after every operation
    that must not change anything: the cheapest comparisons first, in C."""
    zones, allocated, refs, flags, nodes, ctx, _stats, nr_pt = c
    azones = a.zones
    if len(azones) != len(zones) or len(a.nodes) != len(nodes):
        return False
    for i, (buddy, nxt, prv, heads, tails, counts, lazy, lazy_pages, free, boost,
            boosted) in enumerate(zones):
        z = azones[i]
        if (z.free_pages != free or z.heads != heads or z._buddy != buddy or z._nxt != nxt
                or z._prv != prv or z.tails != tails or z.counts != counts or z.boost != boost
                or z.boosted != boosted or z._lazy != lazy or z._lazy_pages != lazy_pages):
            return False
    if (a.allocated != allocated or a.refs != refs or a.pageblock_flags != flags
            or a.nr_page_table_pages != nr_pt):
        return False
    anodes = a.nodes
    for i, (lru, awake) in enumerate(nodes):
        n = anodes[i]
        # LRU order matters (reclaim takes the oldest first): equal as dicts, then in order
        if n.kswapd_awake != awake or n.lru != lru or (len(lru) > 1
                                                       and list(n.lru) != list(lru)):
            return False
    actx = a.ctx
    for cpu, st in ctx:  # noqa: SIM110 - a loop: no generator on every comparison
        if actx.get(cpu) != st:  # Context is an IntEnum
            return False
    return True


def same_stats(a: PageAllocator, c: Capture) -> bool:
    """Whether the NUMA counters and access costs of ``a`` equal those of capture ``c``."""
    _hit, cost, accesses, numa = c[6]
    same_numa: bool = tuple(map(_NUMA_STATS, a.zones)) == numa
    return same_numa and a.access_cost == cost and a.accesses == accesses


_NUMA_STATS = attrgetter("numa_hit", "numa_miss", "numa_foreign", "numa_local", "numa_other",
                         "interleave_hit")
"""A zone's NUMA counters in the order capture() stores them."""


# --- the key ------------------------------------------------------------------------------------

StateKey = tuple[Any, ...]


def state_key(a: PageAllocator, kswapd_awake: bool = True) -> StateKey:
    """Canonical key of the ``state`` fields of ``a``: equal keys mean equal concrete states
    (each dict as its sorted items, each list as a tuple, LRU in LRU order), hence equal
    abstract states (impl.abstraction.abstract reads nothing else). Statistics and effects
    (NUMA counters, access costs, the scratch _hit_zid) are left out: no later call reads
    them, and the step properties read their changes, not their values.

    ``kswapd_awake=False`` leaves out whether each node's kswapd is awake. That is exact only
    for searches whose every blocking mask has __GFP_KSWAPD_RECLAIM (see
    :func:`awake_is_observable`): the flag is read only by __alloc_pages_slowpath's reclaim
    loop, which such a mask reaches after waking kswapd on every node of its zonelist
    itself, and by wakeup_kswapd, for its ``kswapd_wake`` effect (impl/page_alloc.py,
    impl/vmscan.py; mm/page_alloc.c wake_all_kswapds). It halves flat16's states."""
    zs = []
    for z in a.zones:
        zs.append((tuple(z.heads), tuple(sorted(z._nxt.items())),
                   tuple(sorted(z._prv.items())), tuple(sorted(z._buddy.items())),
                   tuple(z.tails), tuple(z.counts), tuple(map(tuple, z._lazy)), z._lazy_pages,
                   z.free_pages, z.boost, z.boosted))
    return (
        tuple(zs), tuple(sorted(a.allocated.items())), bytes(a.pageblock_flags),
        tuple((tuple(n.lru), n.kswapd_awake and kswapd_awake) for n in a.nodes),
        tuple(sorted(a.refs.items())),
        tuple(tuple(st) for st in a.ctx.values()),
        tuple(a.nr_page_table_pages),
    )


def key_bytes(a: PageAllocator, kswapd_awake: bool = True) -> bytes:
    """:func:`state_key` as bytes, built without intermediate tuples: every field of
    :func:`state_key` in a fixed position of one flat list (the number of zones, nodes and
    CPUs is fixed for an allocator), each dict as its sorted items, the LRUs in LRU order,
    an empty LRU, reference table or context stack as None; marshal encodes each value with
    its type, so equal states give equal bytes and different states different bytes
    (tests/test_modelcheck.py checks both against state_key). The model checker calls it on
    every transition that changed the state."""
    out: list[Any] = []
    for z in a.zones:
        out += (z.heads, sorted(z._nxt.items()), sorted(z._prv.items()),
                sorted(z._buddy.items()), z.tails, z.counts, z._lazy, z._lazy_pages,
                z.free_pages, z.boost, z.boosted)
    out += (sorted(a.allocated.items()), a.pageblock_flags,
            sorted(a.refs.items()) if a.refs else None, a.nr_page_table_pages)
    for n in a.nodes:
        out += (list(n.lru) if n.lru else None, n.kswapd_awake and kswapd_awake)
    for st in a.ctx.values():
        out.append(list(map(int, st)) if st else None)
    return marshal.dumps(out, 2)


def awake_is_observable(masks: Iterable[int]) -> bool:
    """Whether a search calling the allocator with ``masks`` (and page-cache readahead,
    which has __GFP_KSWAPD_RECLAIM) can observe kswapd_awake: some mask may enter direct
    reclaim without waking kswapd first."""
    return any(gfp & __GFP_DIRECT_RECLAIM and not gfp & __GFP_KSWAPD_RECLAIM for gfp in masks)


def constants_fingerprint(a: PageAllocator) -> tuple[Any, ...]:
    """The ``const`` fields of ``a`` (and of its zones and nodes), for an equality check at
    the end of a run: the search assumes nobody writes them."""
    return (
        tuple(repr(getattr(a, n)) for n, r in sorted(ALLOCATOR_FIELDS.items())
              if r == "const" and n != "machine"),
        tuple(tuple(repr(getattr(z, n)) for n, r in sorted(ZONE_FIELDS.items()) if r == "const"
                    and n != "cfg") for z in a.zones),
        tuple(tuple(repr(getattr(nd, n)) for n, r in sorted(NODE_FIELDS.items())
                    if r == "const" and n != "zones") for nd in a.nodes),
        tuple(id(z) for z in a.zones), tuple(id(nd) for nd in a.nodes),
        tuple(tuple(id(z) for z in nd.zones) for nd in a.nodes),
    )
