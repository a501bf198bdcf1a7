"""What mmap and munmap do to a process's address space, as step rules written once.

A process's address space is, to these rules, the map "user address -> vm_flags of the VMA
that covers it" (:func:`coverage`): how it is cut into VMAs is the implementation's business
(vma_merge_new_range may extend a neighbour, __split_vma cuts one in two, and neither is
visible to the process), which addresses are mapped and with which flags is not.

* ``mm.mmap_effect``: after ``mmap`` of ``[start, end)`` with ``vm_flags`` (do_mmap: a fresh
  range, or MAP_FIXED over an old one), that range is covered by VMAs of exactly
  ``vm_flags``, and every address outside it is covered as before, with the same flags.
  A merge with a neighbour of other flags breaks it (the new range, or the neighbour, would
  change flags), as does a MAP_FIXED that unmaps too much.
* ``mm.munmap_effect``: after ``munmap`` of ``[start, end)`` (do_vmi_munmap), no VMA covers
  any address of the range, and every address outside it is covered as before. A split that
  loses the part of a VMA above or below the range breaks it; unmapping a range where nothing
  is mapped changes nothing at all (Linux returns 0).

Sources: mm/mmap.c do_mmap, mmap_region; mm/vma.c vma_merge_new_range, __split_vma,
do_vmi_munmap, do_vmi_align_munmap (Linux 6.12.117).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

RULES: Final = ("mm.mmap_effect", "mm.munmap_effect")

Segment = tuple[int, int, int]
"""[start, end) with the vm_flags of the VMA covering it."""


def coverage(vmas: Iterable[Segment], lo: int, hi: int) -> list[Segment]:
    """The VMAs clipped to [lo, hi), in address order, adjacent pieces of equal flags joined:
    the address -> flags map of that window, whatever the VMA boundaries."""
    out: list[Segment] = []
    for s, e, f in sorted(vmas):
        s, e = max(s, lo), min(e, hi)
        if s >= e:
            continue
        if out and out[-1][1] == s and out[-1][2] == f:
            out[-1] = (out[-1][0], e, f)
        else:
            out.append((s, e, f))
    return out


def _outside(before: list[Segment], after: list[Segment], start: int, end: int,
             rule: str) -> list[str]:
    """Every address outside [start, end) keeps its coverage and flags."""
    out = []
    for lo, hi in ((0, start), (end, 1 << 64)):
        b, a = coverage(before, lo, hi), coverage(after, lo, hi)
        if b != a:
            out.append(f"{rule}: outside [{start:#x}, {end:#x}) the mappings changed from "
                       f"{_fmt(b)} to {_fmt(a)}")
    return out


def _fmt(segs: list[Segment]) -> str:
    return "[" + ", ".join(f"{s:#x}-{e:#x} flags {f:#x}" for s, e, f in segs) + "]"


def mmap_effect_violations(before: Iterable[Segment], after: Iterable[Segment], start: int,
                           end: int, vm_flags: int) -> list[str]:
    """``mm.mmap_effect`` for one successful mmap of [start, end) with ``vm_flags``."""
    b, a = list(before), list(after)
    out = _outside(b, a, start, end, "mm.mmap_effect")
    inside = coverage(a, start, end)
    if inside != [(start, end, vm_flags)]:
        out.append(f"mm.mmap_effect: [{start:#x}, {end:#x}) mapped with flags {vm_flags:#x} "
                   f"is covered by {_fmt(inside)}")
    return out


def munmap_effect_violations(before: Iterable[Segment], after: Iterable[Segment], start: int,
                             end: int) -> list[str]:
    """``mm.munmap_effect`` for one successful munmap of [start, end)."""
    b, a = list(before), list(after)
    out = _outside(b, a, start, end, "mm.munmap_effect")
    inside = coverage(a, start, end)
    if inside:
        out.append(f"mm.munmap_effect: [{start:#x}, {end:#x}) was unmapped but "
                   f"{_fmt(inside)} is still mapped")
    return out
