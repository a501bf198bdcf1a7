"""Seeded bugs of the slab allocator: wrong variants of impl.slab_common.SlabAllocator, each
changing one SLUB function the way a plausible bug would. ``make verify`` runs the slab state
machine (tests/test_slab_state_machine.py) with ``KMEMSPEC_SEEDED_SLAB_BUG=<name>`` and passes
the row only if the bug is caught with a ``kmemspec-rule:`` line naming what broke. The
page-allocator bugs are in proofs/seeded_bugs.py; the Z3-level ones in proofs/slab.py."""

from __future__ import annotations

from dataclasses import dataclass

from impl.slab_common import SlabAllocator
from impl.slub import KmemCache, Slab


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


@dataclass(frozen=True)
class SeededSlabBug:
    """A wrong slab allocator and what it breaks."""

    name: str
    cls: type[SlabAllocator]

    @property
    def what(self) -> str:
        return " ".join((self.cls.__doc__ or self.cls.__name__).split())


SEEDED_SLAB_BUGS: dict[str, SeededSlabBug] = {b.name: b for b in (
    SeededSlabBug("slab-free-forgets-inuse", FreeForgetsInuse),
    SeededSlabBug("deactivate-drops-cpu-freelist", DeactivateDropsCpuFreelist),
    SeededSlabBug("slab-no-double-free-check", NoDoubleFreeCheck),
    SeededSlabBug("discard-keeps-node-count", EmptySlabsNeverFreed),
)}
"""Every slab seeded bug, by name."""
