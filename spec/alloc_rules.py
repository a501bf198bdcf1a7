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



class BitmapLiveMap:
    """The LiveMap contract (disjoint live intervals, ``add`` refuses an overlap and returns
    the tag it hit) in O(1) per operation, for streams of intervals whose ends are multiples
    of a granule (2^granule_shift): slab objects (8 bytes: s->size and every object address
    are multiples of 8) and page blocks (one pfn). Each chunk of 512 granules keeps one int
    whose bits are the granules covered by live intervals, so ``add`` and ``remove`` are a few
    int operations and dict probes whatever is live; ends that are not granule multiples are
    rounded outwards (two such intervals sharing a granule count as overlapping). Finding
    *which* interval covers a granule walks back over the covered granules to the nearest
    start: rare paths only (a conflict, a pointer inside an object)."""

    __slots__ = ("_bm", "_cb", "_cm", "_gs", "_iv")

    def __init__(self, granule_shift: int = 3, chunk_bits: int = 9) -> None:
        self._iv: dict[int, tuple[int, object]] = {}
        self._bm: dict[int, int] = {}
        self._gs = granule_shift
        self._cb = chunk_bits  # 2^chunk_bits granules per int
        self._cm = (1 << chunk_bits) - 1

    def __len__(self) -> int:
        return len(self._iv)

    def _masks(self, lo: int, hi: int) -> list[tuple[int, int]]:
        gs = self._gs
        g0 = lo >> gs
        g1 = ((hi - 1) >> gs) + 1
        out = []
        while g0 < g1:
            c = g0 >> self._cb
            top = min(g1, (c + 1) << self._cb)
            out.append((c, ((1 << (top - g0)) - 1) << (g0 & self._cm)))
            g0 = top
        return out

    def _covered(self, g: int) -> bool:
        return bool(self._bm.get(g >> self._cb, 0) >> (g & self._cm) & 1)

    def _owner(self, g: int) -> Interval:
        """The live interval covering granule ``g`` (whose bit is set)."""
        gs = self._gs
        iv = self._iv
        while True:
            lo = g << gs
            # a start inside granule g (ends rounded outwards: any address of it)
            for a in range(lo + (1 << gs) - 1, lo - 1, -1) if gs else (lo,):
                v = iv.get(a)
                if v is not None:
                    return (a, v[0], v[1])
            g -= 1
            if not self._covered(g):  # pragma: no cover - the bits and starts disagree
                raise AssertionError("BitmapLiveMap: covered granule without a start")

    def overlapping(self, lo: int, hi: int) -> Interval | None:
        """A live interval that shares a granule with [lo, hi), or None."""
        bm = self._bm
        for c, m in self._masks(lo, hi):
            hit = bm.get(c, 0) & m
            if hit:
                return self._owner((c << self._cb) + (hit & -hit).bit_length() - 1)
        return None

    def add(self, lo: int, hi: int, tag: object) -> object | None:
        """Insert [lo, hi) with ``tag``; if it overlaps a live interval, insert nothing and
        return that interval's tag."""
        if hi <= lo or tag is None:
            raise ValueError(f"empty interval [{lo:#x}, {hi:#x}) or None tag")
        gs = self._gs
        g0 = lo >> gs
        g1 = ((hi - 1) >> gs) + 1
        cb = self._cb
        c = g0 >> cb
        bm = self._bm
        if (g1 - 1) >> cb == c:  # the common case: one chunk
            m = ((1 << (g1 - g0)) - 1) << (g0 & self._cm)
            old = bm.get(c, 0)
            if old & m:
                hit = old & m
                return self._owner((c << cb) + (hit & -hit).bit_length() - 1)[2]
            bm[c] = old | m
        else:
            masks = self._masks(lo, hi)
            for cc, mm in masks:
                hit = bm.get(cc, 0) & mm
                if hit:
                    return self._owner((cc << cb) + (hit & -hit).bit_length() - 1)[2]
            for cc, mm in masks:
                bm[cc] = bm.get(cc, 0) | mm
        self._iv[lo] = (hi, tag)
        return None

    def remove(self, lo: int) -> Interval | None:
        """Remove the live interval that starts at ``lo``; None (nothing changed) if none."""
        v = self._iv.pop(lo, None)
        if v is None:
            return None
        hi = v[0]
        gs = self._gs
        g0 = lo >> gs
        g1 = ((hi - 1) >> gs) + 1
        c = g0 >> self._cb
        bm = self._bm
        if (g1 - 1) >> self._cb == c:
            nv = bm[c] & ~(((1 << (g1 - g0)) - 1) << (g0 & self._cm))
            if nv:
                bm[c] = nv
            else:
                del bm[c]
        else:
            for cc, mm in self._masks(lo, hi):
                nv = bm[cc] & ~mm
                if nv:
                    bm[cc] = nv
                else:
                    del bm[cc]
        return (lo, hi, v[1])

    @property
    def granule_shift(self) -> int:
        return self._gs

    @property
    def chunk_bits(self) -> int:
        return self._cb

    def raw(self) -> tuple[dict[int, tuple[int, object]], dict[int, int]]:
        """The starts (start -> (end, tag)) and the chunk bitmaps, for a hot loop that inlines
        the one-chunk cases of add and remove (tracecheck/check.py) and keeps both in step;
        anything else goes through the methods."""
        return self._iv, self._bm

    def unmark(self, lo: int, hi: int) -> None:
        """Clear the granules of [lo, hi), whose start the caller already took out of the
        starts (the multi-chunk half of an inlined remove)."""
        bm = self._bm
        for cc, mm in self._masks(lo, hi):
            nv = bm[cc] & ~mm
            if nv:
                bm[cc] = nv
            else:
                del bm[cc]

    def find(self, addr: int) -> Interval | None:
        """The live interval containing ``addr``, or None."""
        g = addr >> self._gs
        if not self._bm.get(g >> self._cb, 0) >> (g & self._cm) & 1:
            return None
        s, e, t = self._owner(g)
        return (s, e, t) if s <= addr < e else None

    def get(self, lo: int) -> Interval | None:
        """The live interval that starts exactly at ``lo``, or None."""
        v = self._iv.get(lo)
        return None if v is None else (lo, v[0], v[1])

    def irange(self, lo: int, hi: int) -> Iterator[Interval]:
        """The live intervals meeting [lo, hi), in address order."""
        out: list[Interval] = []
        while lo < hi:
            hit = self.overlapping(lo, hi)
            if hit is None:
                break
            out.append(hit)
            lo = hit[1]
        return iter(out)

    def items(self) -> Iterator[Interval]:
        """Every live interval in address order."""
        for s in sorted(self._iv):
            e, t = self._iv[s]
            yield (s, e, t)
