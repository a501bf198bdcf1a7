"""Seeded bugs of the slab allocator: wrong variants of impl.slab_common.SlabAllocator, each
changing one SLUB function the way a plausible bug would. ``make verify`` runs the slab state
machine (tests/test_slab_state_machine.py) with ``KMEMSPEC_SEEDED_SLAB_BUG=<name>`` and passes
the row only if the bug is caught with a ``kmemspec-rule:`` line naming what broke. The
page-allocator bugs are in proofs/seeded_bugs.py; the Z3-level ones in proofs/slab.py."""

from __future__ import annotations

from dataclasses import dataclass

from impl.slab_common import SlabAllocator
from impl.slub import KmemCache, Slab
from spec.context import Context
from spec.gfp import __GFP_RECLAIMABLE
from spec.layout import PAGE_SIZE

_GFP_RECLAIMABLE = __GFP_RECLAIMABLE  # no name mangling inside class bodies


class FreeForgetsInuse(SlabAllocator):
    """__slab_free() forgets to decrement slab->inuse for a remote free."""

    def _slab_free_slow(self, s: KmemCache, slab: Slab, idx: int, cpu: int) -> None:
        super()._slab_free_slow(s, slab, idx, cpu)
        slab.inuse += 1


class DeactivateDropsCpuFreelist(SlabAllocator):
    """deactivate_slab() drops the CPU freelist instead of splicing it onto the slab's."""

    def _deactivate_slab(self, s: KmemCache, slab: Slab, freelist: list[int]) -> None:
        super()._deactivate_slab(s, slab, [])


class NoDoubleFreeCheck(SlabAllocator):
    """slab_free() without the free-map check: a double free goes onto the freelist twice."""

    def slab_free(self, s: KmemCache, slab: Slab, idx: int, cpu: int) -> None:
        slab.free[idx] = 0
        super().slab_free(s, slab, idx, cpu)


class EmptySlabsNeverFreed(SlabAllocator):
    """discard_slab() that returns the pages but leaves the slab counted on its node."""

    def _discard_slab(self, s: KmemCache, slab: Slab) -> None:
        n = s.node[slab.nid]
        super()._discard_slab(s, slab)
        n.nr_slabs += 1


class SlabObjectsOneShort(SlabAllocator):
    """allocate_slab() that keeps one object fewer than fit (slab->objects off by one, as if
    the last stride were reserved): no overlap, no lost object, only wasted memory and the
    wrong objperslab."""

    def _alloc_slab_page(self, s: KmemCache, gfp: int, node: int, order: int, cpu: int,
                         ctx: Context) -> Slab | None:
        slab = super()._alloc_slab_page(s, gfp, node, order, cpu, ctx)
        if slab is not None and slab.objects > 1:
            slab.objects -= 1
            slab.freelist = list(range(slab.objects - 1, -1, -1))
            del slab.free[-1]
        return slab


class GetFreelistKeepsSlabFreelist(SlabAllocator):
    """get_freelist() hands the slab's freelist to the CPU but leaves slab->freelist pointing
    at its head: that object sits on two lists, to be handed out twice. (Keeping the whole
    list instead doubles it at every deactivation: memory grows exponentially.)"""

    @staticmethod
    def _get_freelist(slab: Slab) -> list[int]:
        fl = SlabAllocator._get_freelist(slab)
        slab.freelist = fl[-1:]
        return fl


class FreeIntoCallersCache(SlabAllocator):
    """kmem_cache_free() without cache_from_obj()'s check: an object of another cache is
    freed onto the caller's cache's lists."""

    def kmem_cache_free(self, cache: str | KmemCache, addr: int, *, cpu: int = 0) -> None:
        s = self.find_cache(cache)
        slab, idx = self.lookup_object(addr)
        self.slab_free(s, slab, idx, cpu)


class KsizeLargeTimesOrder(SlabAllocator):
    """ksize() of a large kmalloc computed as PAGE_SIZE * order instead of PAGE_SIZE << order
    (less than the caller asked for from order 2 on)."""

    def ksize(self, addr: int) -> int:
        big = self.large.get(addr)
        if big is not None:
            return PAGE_SIZE * big[1]
        return super().ksize(addr)


class DestroyIgnoresLiveObjects(SlabAllocator):
    """kmem_cache_destroy() that does not look for live objects (__kmem_cache_shutdown's
    "Objects remaining" check): the cache goes, its objects leak with their slabs."""

    @staticmethod
    def live_objects(s: KmemCache) -> int:
        return 0


class KmallocTypeIgnoresReclaimable(SlabAllocator):
    """kmalloc_type() without __GFP_RECLAIMABLE in KMALLOC_NOT_NORMAL_BITS: reclaimable
    requests are served from kmalloc-* instead of kmalloc-rcl-* (and their slabs counted
    unreclaimable)."""

    def kmalloc_slab(self, size: int, gfp: int) -> KmemCache:
        return super().kmalloc_slab(size, gfp & ~_GFP_RECLAIMABLE)


class KmallocZeroIsNull(SlabAllocator):
    """kmalloc(0) returns NULL instead of ZERO_SIZE_PTR: callers take it for a failed
    allocation (-ENOMEM) where the kernel gives them a pointer kfree() accepts."""

    def kmalloc_node(self, size: int, gfp: int, node: int, *, cpu: int = 0,
                     ctx: Context | None = None) -> int | None:
        if size == 0:
            return None
        return super().kmalloc_node(size, gfp, node, cpu=cpu, ctx=ctx)


@dataclass(frozen=True)
class SeededSlabBug:
    """A wrong slab allocator and what it breaks. ``statemachine``: the slab state machine's
    quick profile catches it every time (a make test case, and a verify-long row); the others
    need a particular pair of steps it draws only by chance, and are left to the model checker
    (its make verify row and tests/test_modelcheck_slab.py)."""

    name: str
    cls: type[SlabAllocator]
    statemachine: bool = True

    @property
    def what(self) -> str:
        return " ".join((self.cls.__doc__ or self.cls.__name__).split())


SEEDED_SLAB_BUGS: dict[str, SeededSlabBug] = {b.name: b for b in (
    SeededSlabBug("slab-free-forgets-inuse", FreeForgetsInuse),
    SeededSlabBug("deactivate-drops-cpu-freelist", DeactivateDropsCpuFreelist),
    SeededSlabBug("slab-no-double-free-check", NoDoubleFreeCheck),
    SeededSlabBug("discard-keeps-node-count", EmptySlabsNeverFreed),
    SeededSlabBug("slab-objects-one-short", SlabObjectsOneShort),
    SeededSlabBug("get-freelist-keeps-slab-freelist", GetFreelistKeepsSlabFreelist),
    SeededSlabBug("cache-free-into-callers-cache", FreeIntoCallersCache),
    SeededSlabBug("ksize-large-times-order", KsizeLargeTimesOrder),
    SeededSlabBug("destroy-ignores-live-objects", DestroyIgnoresLiveObjects),
    SeededSlabBug("kmalloc-type-ignores-reclaimable", KmallocTypeIgnoresReclaimable),
    SeededSlabBug("kmalloc-zero-is-null", KmallocZeroIsNull),
)}
"""Every slab seeded bug, by name."""
