"""What an answer of any allocator must satisfy, one rule per function: the alignment, zone and
sleeping rules of the subject protocol (../shared/design/oracle-protocol.md), shared by the
oracle (oracle/judge.py) and the trace checker (tracecheck/), plus the two structures both use
to judge overlap and liveness in time independent of how much is live.

Defined once: the rules below reuse spec.gfp (gfp_zone, gfpflags_allow_blocking) and spec.slab
(ARCH_KMALLOC_MINALIGN, ARCH_SLAB_MINALIGN); spec.rules.allowed_zone calls :func:`zone_allowed`;
the liveness rule itself stays spec.rules.liveness_witness, fed by :class:`FreeRunCounter`.

Sources: mm/page_alloc.c (blocks of 2^order pages aligned on their pfn, __rmqueue_smallest /
expand), include/linux/gfp.h (gfp_zone, gfpflags_allow_blocking), include/linux/slab.h (the
kmalloc() kerneldoc: "The allocated object address is aligned to at least
ARCH_KMALLOC_MINALIGN bytes. For @size of power of two bytes, the alignment is also guaranteed
to be at least to the size"), mm/slab_common.c (calculate_alignment: max(align,
ARCH_SLAB_MINALIGN)), mm/vmalloc.c (a guard page after every area, VM_NO_GUARD aside).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator, Sequence

from spec.gfp import gfp_zone, gfpflags_allow_blocking
from spec.slab import ARCH_KMALLOC_MINALIGN, ARCH_SLAB_MINALIGN

# --- the pure rules ------------------------------------------------------------------------


def block_aligned(pfn: int, order: int) -> bool:
    """A block of 2^order pages starts on a pfn that is a multiple of 2^order (the buddy
    allocator only ever hands out naturally aligned blocks: mm/page_alloc.c expand())."""
    return order >= 0 and pfn & ((1 << order) - 1) == 0


def kmalloc_min_align(size: int) -> int:
    """The alignment every kmalloc(size) object must have: ARCH_KMALLOC_MINALIGN (8), or the
    size itself when it is a power of two (the kmalloc() kerneldoc, include/linux/slab.h).
    Weaker than spec.slab.kmalloc_align_spec, which is what SLUB's size classes give: an
    allocator with other classes is judged by the documented guarantee only."""
    if size > 0 and size & (size - 1) == 0:
        return max(size, ARCH_KMALLOC_MINALIGN)
    return ARCH_KMALLOC_MINALIGN


def kmalloc_object_aligned(addr: int, size: int) -> bool:
    """``addr`` is a correctly aligned answer to kmalloc(size)."""
    return addr % kmalloc_min_align(size) == 0


def cache_object_aligned(addr: int, align: int) -> bool:
    """An object of a cache created with ``align`` is aligned to max(align, 8)
    (mm/slab_common.c calculate_alignment, ARCH_SLAB_MINALIGN)."""
    return addr % max(align, ARCH_SLAB_MINALIGN) == 0


def gfp_may_sleep(gfp: int) -> bool:
    """The mask lets the call sleep: spec.gfp.gfpflags_allow_blocking (__GFP_DIRECT_RECLAIM).
    Whether the *call* may sleep also needs process context: spec.reserves.may_sleep."""
    return bool(gfpflags_allow_blocking(gfp))


def zone_allowed(zone_idx: int, gfp: int) -> bool:
    """Zone index ``zone_idx`` (0 DMA, 1 DMA32, 2 Normal) may serve ``gfp``: it is at most
    gfp_zone(gfp), the highest zone of the mask (GFP_DMA: DMA only; GFP_DMA32: DMA or DMA32;
    otherwise any). A GFP_ZONE_BAD mask (gfp_zone -1) allows no zone. include/linux/gfp.h."""
    return bool(0 <= zone_idx <= gfp_zone(gfp))


# --- live intervals --------------------------------------------------------------------------

Interval = tuple[int, int, object]


class LiveMap:
    """Live, pairwise disjoint intervals [lo, hi), each with a tag (never None).

    ``add`` refuses an interval that overlaps a live one and returns that one's tag, so the
    map stays disjoint and one predecessor search answers every question: the only live
    interval that can contain a point or meet [lo, hi) is the one with the largest start
    below it. Starts are kept sorted in chunks of at most 2 * _CHUNK (the layout of
    sortedcontainers' SortedList): a search is two bisections, an insertion or removal moves
    at most one chunk plus the chunk index, so the cost does not grow with the number of live
    intervals in practice (O(log n) comparisons, O(n / _CHUNK) index moves)."""

    _CHUNK = 256

    def __init__(self) -> None:
        self._iv: dict[int, tuple[int, object]] = {}
        self._chunks: list[list[int]] = []
        self._firsts: list[int] = []

    def __len__(self) -> int:
        return len(self._iv)

    def _pred(self, x: int) -> int | None:
        """The largest live start < x."""
        ci = bisect_left(self._firsts, x) - 1
        if ci < 0:
            return None
        ch = self._chunks[ci]
        return ch[bisect_left(ch, x) - 1]

    def overlapping(self, lo: int, hi: int) -> Interval | None:
        """A live interval that shares a point with [lo, hi), or None."""
        s = self._pred(hi)
        if s is None:
            return None
        e, tag = self._iv[s]
        return (s, e, tag) if e > lo else None

    def add(self, lo: int, hi: int, tag: object) -> object | None:
        """Insert [lo, hi) with ``tag``; if it overlaps a live interval, insert nothing and
        return that interval's tag. An empty interval is a caller bug (ValueError)."""
        if hi <= lo:
            raise ValueError(f"empty interval [{lo:#x}, {hi:#x})")
        if tag is None:
            raise ValueError("LiveMap tags must not be None")
        s = self._pred(hi)
        if s is not None:
            e, t = self._iv[s]
            if e > lo:
                return t
        self._iv[lo] = (hi, tag)
        f = self._firsts
        if not f:
            self._chunks.append([lo])
            f.append(lo)
            return None
        ci = max(bisect_right(f, lo) - 1, 0)
        ch = self._chunks[ci]
        insort(ch, lo)
        f[ci] = ch[0]
        if len(ch) > 2 * self._CHUNK:
            self._chunks[ci:ci + 1] = [ch[:self._CHUNK], ch[self._CHUNK:]]
            f[ci:ci + 1] = [ch[0], ch[self._CHUNK]]
        return None

    def remove(self, lo: int) -> Interval | None:
        """Remove the live interval that starts at ``lo``; None (nothing changed) if none."""
        v = self._iv.pop(lo, None)
        if v is None:
            return None
        f = self._firsts
        ci = bisect_right(f, lo) - 1
        ch = self._chunks[ci]
        del ch[bisect_left(ch, lo)]
        if ch:
            f[ci] = ch[0]
        else:
            del self._chunks[ci]
            del f[ci]
        return (lo, v[0], v[1])

    def find(self, addr: int) -> Interval | None:
        """The live interval containing ``addr``, or None."""
        return self.overlapping(addr, addr + 1)

    def get(self, lo: int) -> Interval | None:
        """The live interval that starts exactly at ``lo``, or None."""
        v = self._iv.get(lo)
        return None if v is None else (lo, v[0], v[1])

    def irange(self, lo: int, hi: int) -> Iterator[Interval]:
        """The live intervals meeting [lo, hi), in address order (for reports: O(k) in the
        number of intervals yielded, plus one search)."""
        first = self._pred(lo + 1)
        if first is None or self._iv[first][0] <= lo:
            ci = bisect_right(self._firsts, lo) - 1
            if ci < 0:
                ci, i = 0, 0
            else:
                i = bisect_left(self._chunks[ci], lo)
        else:
            ci = bisect_right(self._firsts, first) - 1
            i = bisect_left(self._chunks[ci], first)
        while ci < len(self._chunks):
            ch = self._chunks[ci]
            while i < len(ch):
                s = ch[i]
                if s >= hi:
                    return
                e, t = self._iv[s]
                if e > lo:
                    yield (s, e, t)
                i += 1
            ci, i = ci + 1, 0

    def items(self) -> Iterator[Interval]:
        """Every live interval in address order."""
        for ch in self._chunks:
            for s in ch:
                e, t = self._iv[s]
                yield (s, e, t)


# --- free aligned runs per zone, for the liveness rule ------------------------------------


class FreeRunCounter:
    """For each zone and order k <= max_order: how many aligned windows of 2^k pages lying
    wholly inside the zone hold no page of a live block. ``free_pages`` and ``max_run`` are
    then the ``free`` and ``max_run`` of spec.state.ZoneFacts (the same notion as
    spec.rules.max_aligned_run: an aligned base b with [b, b + 2^k) free and in the zone),
    kept up to date in O(max_order) per block instead of recounted from all memory.

    Callers add only aligned blocks (block_aligned), inside one zone, disjoint from every live
    block: then a window of order k >= order that gets its first live page was free before,
    and the 2^(order - k) windows of smaller orders inside the block were all free."""

    def __init__(self, zones: Sequence[tuple[int, int]], max_order: int) -> None:
        """``zones``: (start_pfn, end_pfn) per zone index used by take/give."""
        self.zones = tuple(zones)
        self.max_order = max_order
        # per zone and order: the windows [w_lo, w_hi) that lie wholly inside the zone
        self.inside: list[list[tuple[int, int]]] = [
            [(-(-s >> k), e >> k) for k in range(max_order + 1)] for s, e in self.zones]
        self.free: list[list[int]] = [[max(0, hi - lo) for lo, hi in ins] for ins in self.inside]
        # used[k][w]: pages of live blocks of order <= k inside window w of order k
        self.used: list[dict[int, int]] = [{} for _ in range(max_order + 1)]

    def take(self, zi: int, pfn: int, order: int) -> None:
        """The block (pfn, order) of zone ``zi`` became live."""
        free = self.free[zi]
        inside = self.inside[zi]
        for k in range(order):
            free[k] -= 1 << (order - k)
        n = 1 << order
        used = self.used
        for k in range(order, self.max_order + 1):
            w = pfn >> k
            u = used[k]
            before = u.get(w, 0)
            u[w] = before + n
            if before == 0:
                lo, hi = inside[k]
                if lo <= w < hi:
                    free[k] -= 1

    def give(self, zi: int, pfn: int, order: int) -> None:
        """The live block (pfn, order) of zone ``zi`` was freed."""
        free = self.free[zi]
        inside = self.inside[zi]
        for k in range(order):
            free[k] += 1 << (order - k)
        n = 1 << order
        used = self.used
        for k in range(order, self.max_order + 1):
            w = pfn >> k
            u = used[k]
            after = u[w] - n
            if after:
                u[w] = after
            else:
                del u[w]
                lo, hi = inside[k]
                if lo <= w < hi:
                    free[k] += 1

    def free_pages(self, zi: int) -> int:
        """Pages of zone ``zi`` outside live blocks."""
        return self.free[zi][0]

    def max_run(self, zi: int) -> int:
        """The largest k such that zone ``zi`` holds a free aligned window of 2^k pages;
        -1 if it has no free page."""
        free = self.free[zi]
        for k in range(self.max_order, -1, -1):
            if free[k] > 0:
                return k
        return -1


class PagedLiveMap:
    """The LiveMap contract (disjoint live intervals, ``add`` refuses an overlap and returns
    the tag it hit) indexed by fixed chunks of the address space, for streams of small
    intervals such as slab objects or page blocks (the trace checker's hot path): the
    predecessor search looks in the chunk of ``hi - 1`` and then back only as far as the
    longest live interval reaches, and an insertion moves at most one chunk's starts. Every
    operation costs O(log c) for c starts in one chunk, independent of how much is live.
    Intervals longer than two chunks go to a second index of 2^big_shift chunks. Same
    predecessor argument as LiveMap: with disjoint intervals the live interval with the
    largest start below ``hi`` has the largest end, so it alone decides an overlap."""

    __slots__ = ("_big", "_big_len", "_big_long", "_big_shift", "_iv", "_long", "_shift",
                 "_small")

    def __init__(self, shift: int = 12, big_shift: int = 22) -> None:
        self._iv: dict[int, tuple[int, object]] = {}
        self._small: dict[int, list[int]] = {}
        self._big: dict[int, list[int]] = {}
        self._shift = shift
        self._big_shift = big_shift if big_shift > shift else shift + 10
        self._big_len = 2 << shift
        self._long = 0
        self._big_long = 0

    def __len__(self) -> int:
        return len(self._iv)

    @staticmethod
    def _pred(chunks: dict[int, list[int]], sh: int, lo: int, hi: int, longest: int
              ) -> int | None:
        c = (hi - 1) >> sh
        lst = chunks.get(c)
        if lst:
            i = bisect_left(lst, hi)
            if i:
                return lst[i - 1]
        stop = (lo - longest) >> sh
        c -= 1
        while c >= stop:
            lst = chunks.get(c)
            if lst:
                return lst[-1]
            c -= 1
        return None

    def overlapping(self, lo: int, hi: int) -> Interval | None:
        """A live interval that shares a point with [lo, hi), or None."""
        iv = self._iv
        s = self._pred(self._small, self._shift, lo, hi, self._long)
        if s is not None:
            e, tag = iv[s]
            if e > lo:
                return (s, e, tag)
        if self._big:
            s = self._pred(self._big, self._big_shift, lo, hi, self._big_long)
            if s is not None:
                e, tag = iv[s]
                if e > lo:
                    return (s, e, tag)
        return None

    def add(self, lo: int, hi: int, tag: object) -> object | None:
        """Insert [lo, hi) with ``tag``; if it overlaps a live interval, insert nothing and
        return that interval's tag."""
        n = hi - lo
        if n <= 0 or tag is None:
            raise ValueError(f"empty interval [{lo:#x}, {hi:#x}) or None tag")
        iv = self._iv
        if n <= self._big_len:
            # the common case, inlined: predecessor in the chunk of hi - 1, else look back
            sh = self._shift
            chunks = self._small
            c = (hi - 1) >> sh
            lst = chunks.get(c)
            p = None
            if lst:
                i = bisect_left(lst, hi)
                if i:
                    p = lst[i - 1]
            if p is None and self._long:
                p = self._pred(chunks, sh, lo, c << sh, self._long)
            if p is not None:
                e, t = iv[p]
                if e > lo:
                    return t
            if self._big:
                q = self._pred(self._big, self._big_shift, lo, hi, self._big_long)
                if q is not None:
                    e, t = iv[q]
                    if e > lo:
                        return t
            iv[lo] = (hi, tag)
            if n > self._long:
                self._long = n
            cl = lo >> sh
            if cl != c:
                lst = chunks.get(cl)
            if not lst:
                chunks[cl] = [lo]
            elif lst[-1] < lo:
                lst.append(lo)
            else:
                insort(lst, lo)
            return None
        hit = self.overlapping(lo, hi)
        if hit is not None:
            return hit[2]
        iv[lo] = (hi, tag)
        c = lo >> self._big_shift
        if n > self._big_long:
            self._big_long = n
        lst = self._big.get(c)
        if lst is None:
            self._big[c] = [lo]
        else:
            insort(lst, lo)
        return None

    def remove(self, lo: int) -> Interval | None:
        """Remove the live interval that starts at ``lo``; None (nothing changed) if none."""
        v = self._iv.pop(lo, None)
        if v is None:
            return None
        if v[0] - lo <= self._big_len:
            chunks, c = self._small, lo >> self._shift
        else:
            chunks, c = self._big, lo >> self._big_shift
        lst = chunks[c]
        if lst[-1] == lo:
            lst.pop()
        else:
            del lst[bisect_left(lst, lo)]
        if not lst:
            del chunks[c]
        return (lo, v[0], v[1])

    def find(self, addr: int) -> Interval | None:
        """The live interval containing ``addr``, or None."""
        return self.overlapping(addr, addr + 1)

    def get(self, lo: int) -> Interval | None:
        """The live interval that starts exactly at ``lo``, or None."""
        v = self._iv.get(lo)
        return None if v is None else (lo, v[0], v[1])

    def irange(self, lo: int, hi: int) -> Iterator[Interval]:
        """The live intervals meeting [lo, hi), in address order."""
        out: list[Interval] = []
        iv = self._iv
        for chunks, sh, longest in ((self._small, self._shift, self._long),
                                    (self._big, self._big_shift, self._big_long)):
            if not chunks:
                continue
            for c in range((lo - longest) >> sh, ((hi - 1) >> sh) + 1):
                lst = chunks.get(c)
                if not lst:
                    continue
                for s in lst[bisect_left(lst, lo - longest):bisect_left(lst, hi)]:
                    e, t = iv[s]
                    if e > lo:
                        out.append((s, e, t))
        out.sort(key=lambda x: x[0])
        return iter(out)

    def items(self) -> Iterator[Interval]:
        """Every live interval in address order."""
        for s in sorted(self._iv):
            e, t = self._iv[s]
            yield (s, e, t)
