"""The project's catalogue of seeded allocator bugs: wrong variants of the real allocator.

Each :class:`SeededBug` is a subclass of :class:`impl.page_alloc.PageAllocator` that changes one
method the way a plausible kernel bug would, plus the checks of ``make verify`` that must catch
it (``caught_by``: ``modelcheck:<machine>`` for the explicit-state model checker on a named
machine of proofs/modelcheck.py, ``statemachine`` for the Hypothesis state machine run with
``KMEMSPEC_SEEDED_BUG=<name>``). A bug that no check catches is a hole in the verification, so
every bug here has a ``make verify`` row that passes only when the bug is caught.

The Z3-level seeded bugs (wrong variants of pure helpers handed to a proof) are in
proofs/mutants.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from impl.buddy import expand_halves
from impl.page_alloc import PageAllocator, Zone
from spec.context import Context


class NoMergeOrder1(PageAllocator):
    """__free_one_page forgets to merge a freed order-1 block with its free buddy."""

    def _free_one_page(self, z: Zone, pfn: int, order: int, mt: int, to_tail: bool) -> None:
        if order == 1:
            z.free_pages += 1 << order
            z.add(pfn, order, mt, to_tail)
            return
        super()._free_one_page(z, pfn, order, mt, to_tail)


class ExpandDropsHalf(PageAllocator):
    """expand() loses the smallest upper half when it splits a block by two or more orders."""

    def _expand(self, z: Zone, pfn: int, low: int, high: int, mt: int) -> None:
        halves = expand_halves(pfn, low, high)
        for half, o in halves[:-1] if len(halves) > 1 else halves:
            z.add(half, o, mt, False)


class IgnoresMin(PageAllocator):
    """The watermark check forgets the min watermark for __GFP_HIGH callers."""

    def _watermark_ok(self, z: Zone, order: int, mark: int, hz: int, alloc_flags: int) -> bool:
        if alloc_flags & 0x20:  # ALLOC_MIN_RESERVE
            mark = 0
        return super()._watermark_ok(z, order, mark, hz, alloc_flags)


class SleepsInAtomic(PageAllocator):
    """alloc_pages_node() forgets might_alloc(): blocking masks are accepted in atomic context."""

    def alloc_pages_node(self, nid: int, gfp: int, order: int, *, cpu: int = 0,
                         ctx: Context | None = None) -> int | None:
        return super().alloc_pages_node(nid, gfp & ~0x400 if ctx and ctx.atomic else gfp,
                                        order, cpu=cpu, ctx=ctx)


@dataclass(frozen=True)
class SeededBug:
    """A wrong allocator, what is wrong with it, and which checks must catch it."""

    name: str
    cls: type[PageAllocator]
    caught_by: tuple[str, ...] = ("modelcheck:flat16",)

    @property
    def what(self) -> str:
        return " ".join((self.cls.__doc__ or self.cls.__name__).split())


SEEDED_BUGS: dict[str, SeededBug] = {b.name: b for b in (
    SeededBug("no-merge-order1", NoMergeOrder1),
    SeededBug("expand-drops-half", ExpandDropsHalf),
    SeededBug("ignores-min", IgnoresMin),
    SeededBug("sleeps-in-atomic", SleepsInAtomic),
)}
"""Every allocator-level seeded bug, by name."""
