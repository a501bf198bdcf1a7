"""Debug mode: the allocator with every invariant checked after every operation.

The hot path of :class:`impl.page_alloc.PageAllocator` never checks invariants (that would cost
time linear in memory). ``CheckedPageAllocator`` re-checks the whole abstract state and the
step properties after each public operation, like the kernel's CONFIG_DEBUG_VM checks, and
raises :class:`InvariantViolation` naming the broken invariants. For small machines only.
"""

from __future__ import annotations

from typing import Any

from impl.abstraction import abstract, alloc_step
from impl.page_alloc import OWNER_PAGES, PageAllocator
from spec.context import Context
from spec.invariants import step_violations, violated


class InvariantViolation(AssertionError):  # noqa: N818 - a violation, not an error of input
    """The implementation broke a named invariant: a bug in the model, never bad input."""


class CheckedPageAllocator(PageAllocator):
    """PageAllocator that checks every invariant after every state-changing call."""

    def _verify(self, what: str) -> None:
        bad = violated(abstract(self), fast=True)
        if bad:
            raise InvariantViolation(f"after {what}: invariants broken: {', '.join(bad)}")

    def alloc_pages_node(self, nid: int, gfp: int, order: int, *, cpu: int = 0,
                         ctx: Context | None = None) -> int | None:
        if getattr(self, "_in_step", False):
            return super().alloc_pages_node(nid, gfp, order, cpu=cpu, ctx=ctx)
        self._in_step = True
        try:
            pfn, rec = alloc_step(self, nid, gfp, order, cpu=cpu, ctx=ctx)
        finally:
            self._in_step = False
        bad = step_violations(rec)
        if bad:
            raise InvariantViolation(f"alloc_pages_node step broke: {', '.join(bad)}")
        self._verify(f"alloc_pages_node({nid}, {gfp:#x}, {order})")
        return pfn

    def alloc_pages_bulk(self, gfp: int, preferred_nid: int, nr_pages: int,
                         page_array: list[int | None], *, cpu: int = 0,
                         ctx: Context | None = None, owner: str = OWNER_PAGES) -> int:
        n = super().alloc_pages_bulk(gfp, preferred_nid, nr_pages, page_array, cpu=cpu,
                                     ctx=ctx, owner=owner)
        self._verify(f"alloc_pages_bulk({gfp:#x}, {preferred_nid}, {nr_pages})")
        return n

    def free_pages_pfn(self, pfn: int, order: int) -> None:
        super().free_pages_pfn(pfn, order)
        self._verify(f"free_pages(pfn {pfn:#x}, {order})")

    def pagecache_add(self, nid: int, nr_pages: int, *, cpu: int = 0) -> int:
        n = super().pagecache_add(nid, nr_pages, cpu=cpu)
        self._verify("pagecache_add")
        return n

    def kswapd(self, nid: int) -> int:
        n = super().kswapd(nid)
        self._verify(f"kswapd({nid})")
        return n

    def drop_caches(self) -> int:
        n = super().drop_caches()
        self._verify("drop_caches")
        return n


def make_allocator(*args: Any, debug: bool = False, **kw: Any) -> PageAllocator:
    """A PageAllocator, or a CheckedPageAllocator in debug mode."""
    return CheckedPageAllocator(*args, **kw) if debug else PageAllocator(*args, **kw)
