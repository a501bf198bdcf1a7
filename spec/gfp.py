"""GFP flags of Linux 6.12.117 (x86-64, Debian-like config), the interface every allocator uses.

Sources: ``include/linux/gfp_types.h`` (bit enum), ``include/linux/gfp.h`` (``gfp_zone``,
``gfp_migratetype``, ``gfpflags_allow_blocking``), ``include/trace/events/mmflags.h`` (the
name table the trace events print with, table A of 6.12) and ``kernel/trace/trace_output.c``
(``trace_print_flags_seq``, the printing algorithm).

Pinned configuration: no ``CONFIG_KASAN_HW_TAGS`` (so ``__GFP_SKIP_ZERO``/``__GFP_SKIP_KASAN``
are 0), no ``CONFIG_LOCKDEP`` (``__GFP_NOLOCKDEP`` is 0), ``CONFIG_SLAB_OBJ_EXT=y`` (selected by
``CONFIG_MEMCG``), so ``__GFP_NO_OBJ_EXT`` is bit 24 and ``__GFP_BITS_SHIFT`` is 25.

The pure functions here are written with operators only (``&``, ``|``, ``^``, comparisons and
the helpers of :mod:`spec.logic`), so the proofs call them with Z3 bit-vectors.
"""

from __future__ import annotations

from typing import Final

from spec.errors import GfpError
from spec.logic import And, Bits, If, lshr

# --- single bits (include/linux/gfp_types.h, enum ___GFP_*_BIT) -----------------------------
___GFP_DMA: Final = 0x1
___GFP_HIGHMEM: Final = 0x2
___GFP_DMA32: Final = 0x4
___GFP_MOVABLE: Final = 0x8
___GFP_RECLAIMABLE: Final = 0x10
___GFP_HIGH: Final = 0x20
___GFP_IO: Final = 0x40
___GFP_FS: Final = 0x80
___GFP_ZERO: Final = 0x100
___GFP_UNUSED: Final = 0x200  # ___GFP_UNUSED_BIT: was __GFP_ATOMIC until 6.2
___GFP_DIRECT_RECLAIM: Final = 0x400
___GFP_KSWAPD_RECLAIM: Final = 0x800
___GFP_WRITE: Final = 0x1000
___GFP_NOWARN: Final = 0x2000
___GFP_RETRY_MAYFAIL: Final = 0x4000
___GFP_NOFAIL: Final = 0x8000
___GFP_NORETRY: Final = 0x10000
___GFP_MEMALLOC: Final = 0x20000
___GFP_COMP: Final = 0x40000
___GFP_NOMEMALLOC: Final = 0x80000
___GFP_HARDWALL: Final = 0x100000
___GFP_THISNODE: Final = 0x200000
___GFP_ACCOUNT: Final = 0x400000
___GFP_ZEROTAGS: Final = 0x800000
___GFP_SKIP_ZERO: Final = 0  # CONFIG_KASAN_HW_TAGS=n
___GFP_SKIP_KASAN: Final = 0  # CONFIG_KASAN_HW_TAGS=n
___GFP_NOLOCKDEP: Final = 0  # CONFIG_LOCKDEP=n
___GFP_NO_OBJ_EXT: Final = 0x1000000  # CONFIG_SLAB_OBJ_EXT=y: first enumerator after ZEROTAGS

__GFP_BITS_SHIFT: Final = 25
__GFP_BITS_MASK: Final = (1 << __GFP_BITS_SHIFT) - 1

__GFP_DMA: Final = ___GFP_DMA
__GFP_HIGHMEM: Final = ___GFP_HIGHMEM
__GFP_DMA32: Final = ___GFP_DMA32
__GFP_MOVABLE: Final = ___GFP_MOVABLE
__GFP_RECLAIMABLE: Final = ___GFP_RECLAIMABLE
__GFP_HIGH: Final = ___GFP_HIGH
__GFP_IO: Final = ___GFP_IO
__GFP_FS: Final = ___GFP_FS
__GFP_ZERO: Final = ___GFP_ZERO
__GFP_DIRECT_RECLAIM: Final = ___GFP_DIRECT_RECLAIM
__GFP_KSWAPD_RECLAIM: Final = ___GFP_KSWAPD_RECLAIM
__GFP_RECLAIM: Final = ___GFP_DIRECT_RECLAIM | ___GFP_KSWAPD_RECLAIM
__GFP_WRITE: Final = ___GFP_WRITE
__GFP_NOWARN: Final = ___GFP_NOWARN
__GFP_RETRY_MAYFAIL: Final = ___GFP_RETRY_MAYFAIL
__GFP_NOFAIL: Final = ___GFP_NOFAIL
__GFP_NORETRY: Final = ___GFP_NORETRY
__GFP_MEMALLOC: Final = ___GFP_MEMALLOC
__GFP_COMP: Final = ___GFP_COMP
__GFP_NOMEMALLOC: Final = ___GFP_NOMEMALLOC
__GFP_HARDWALL: Final = ___GFP_HARDWALL
__GFP_THISNODE: Final = ___GFP_THISNODE
__GFP_ACCOUNT: Final = ___GFP_ACCOUNT
__GFP_ZEROTAGS: Final = ___GFP_ZEROTAGS
__GFP_SKIP_ZERO: Final = ___GFP_SKIP_ZERO
__GFP_SKIP_KASAN: Final = ___GFP_SKIP_KASAN
__GFP_NOLOCKDEP: Final = ___GFP_NOLOCKDEP
__GFP_NO_OBJ_EXT: Final = ___GFP_NO_OBJ_EXT

GFP_ZONEMASK: Final = __GFP_DMA | __GFP_HIGHMEM | __GFP_DMA32 | __GFP_MOVABLE
GFP_MOVABLE_MASK: Final = __GFP_RECLAIMABLE | __GFP_MOVABLE
GFP_MOVABLE_SHIFT: Final = 3

# --- composite masks (include/linux/gfp_types.h) --------------------------------------------
GFP_ATOMIC: Final = __GFP_HIGH | __GFP_KSWAPD_RECLAIM
GFP_KERNEL: Final = __GFP_RECLAIM | __GFP_IO | __GFP_FS
GFP_KERNEL_ACCOUNT: Final = GFP_KERNEL | __GFP_ACCOUNT
# 6.12.117 carries the backport of 16f5dfbc851b "gfp: include __GFP_NOWARN in GFP_NOWAIT".
GFP_NOWAIT: Final = __GFP_KSWAPD_RECLAIM | __GFP_NOWARN
GFP_NOIO: Final = __GFP_RECLAIM
GFP_NOFS: Final = __GFP_RECLAIM | __GFP_IO
GFP_USER: Final = __GFP_RECLAIM | __GFP_IO | __GFP_FS | __GFP_HARDWALL
GFP_DMA: Final = __GFP_DMA
GFP_DMA32: Final = __GFP_DMA32
GFP_HIGHUSER: Final = GFP_USER | __GFP_HIGHMEM
GFP_HIGHUSER_MOVABLE: Final = GFP_HIGHUSER | __GFP_MOVABLE | __GFP_SKIP_KASAN
GFP_TRANSHUGE_LIGHT: Final = (
    (GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOMEMALLOC | __GFP_NOWARN) & ~__GFP_RECLAIM
)
GFP_TRANSHUGE: Final = GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM

# Every name the 6.12 kernel knows, for parsing (a name with value 0 is accepted and adds nothing).
GFP_NAMES: Final[dict[str, int]] = {
    "GFP_ATOMIC": GFP_ATOMIC, "GFP_KERNEL": GFP_KERNEL, "GFP_KERNEL_ACCOUNT": GFP_KERNEL_ACCOUNT,
    "GFP_NOWAIT": GFP_NOWAIT, "GFP_NOIO": GFP_NOIO, "GFP_NOFS": GFP_NOFS, "GFP_USER": GFP_USER,
    "GFP_DMA": GFP_DMA, "GFP_DMA32": GFP_DMA32, "GFP_HIGHUSER": GFP_HIGHUSER,
    "GFP_HIGHUSER_MOVABLE": GFP_HIGHUSER_MOVABLE, "GFP_TRANSHUGE_LIGHT": GFP_TRANSHUGE_LIGHT,
    "GFP_TRANSHUGE": GFP_TRANSHUGE,
    "__GFP_DMA": __GFP_DMA, "__GFP_HIGHMEM": __GFP_HIGHMEM, "__GFP_DMA32": __GFP_DMA32,
    "__GFP_MOVABLE": __GFP_MOVABLE, "__GFP_RECLAIMABLE": __GFP_RECLAIMABLE,
    "__GFP_HIGH": __GFP_HIGH, "__GFP_IO": __GFP_IO, "__GFP_FS": __GFP_FS,
    "__GFP_ZERO": __GFP_ZERO, "__GFP_DIRECT_RECLAIM": __GFP_DIRECT_RECLAIM,
    "__GFP_KSWAPD_RECLAIM": __GFP_KSWAPD_RECLAIM, "__GFP_RECLAIM": __GFP_RECLAIM,
    "__GFP_WRITE": __GFP_WRITE, "__GFP_NOWARN": __GFP_NOWARN,
    "__GFP_RETRY_MAYFAIL": __GFP_RETRY_MAYFAIL, "__GFP_NOFAIL": __GFP_NOFAIL,
    "__GFP_NORETRY": __GFP_NORETRY, "__GFP_MEMALLOC": __GFP_MEMALLOC, "__GFP_COMP": __GFP_COMP,
    "__GFP_NOMEMALLOC": __GFP_NOMEMALLOC, "__GFP_HARDWALL": __GFP_HARDWALL,
    "__GFP_THISNODE": __GFP_THISNODE, "__GFP_ACCOUNT": __GFP_ACCOUNT,
    "__GFP_ZEROTAGS": __GFP_ZEROTAGS, "__GFP_SKIP_ZERO": __GFP_SKIP_ZERO,
    "__GFP_SKIP_KASAN": __GFP_SKIP_KASAN, "__GFP_NOLOCKDEP": __GFP_NOLOCKDEP,
    "__GFP_NO_OBJ_EXT": __GFP_NO_OBJ_EXT,
}

# Table A (include/trace/events/mmflags.h, __def_gfpflag_names, 6.12): the print order.
TRACE_NAME_TABLE: Final[tuple[tuple[str, int], ...]] = tuple(
    (n, GFP_NAMES[n]) for n in (
        "GFP_TRANSHUGE", "GFP_TRANSHUGE_LIGHT", "GFP_HIGHUSER_MOVABLE", "GFP_HIGHUSER",
        "GFP_USER", "GFP_KERNEL_ACCOUNT", "GFP_KERNEL", "GFP_NOFS", "GFP_ATOMIC", "GFP_NOIO",
        "GFP_NOWAIT", "GFP_DMA", "__GFP_HIGHMEM", "GFP_DMA32", "__GFP_HIGH", "__GFP_IO",
        "__GFP_FS", "__GFP_NOWARN", "__GFP_RETRY_MAYFAIL", "__GFP_NOFAIL", "__GFP_NORETRY",
        "__GFP_COMP", "__GFP_ZERO", "__GFP_NOMEMALLOC", "__GFP_MEMALLOC", "__GFP_HARDWALL",
        "__GFP_THISNODE", "__GFP_RECLAIMABLE", "__GFP_MOVABLE", "__GFP_ACCOUNT", "__GFP_WRITE",
        "__GFP_RECLAIM", "__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM", "__GFP_ZEROTAGS",
    )
)

# Bits that exist in this kernel build: everything below __GFP_BITS_SHIFT except the unused bit.
GFP_VALID_MASK: Final = __GFP_BITS_MASK & ~___GFP_UNUSED

# --- zones and migratetypes (include/linux/mmzone.h) ----------------------------------------
ZONE_DMA: Final = 0
ZONE_DMA32: Final = 1
ZONE_NORMAL: Final = 2
ZONE_MOVABLE: Final = 3
MAX_NR_ZONES: Final = 4  # the zones the buddy allocator can use: DMA, DMA32, Normal, Movable
ZONE_NAMES: Final = ("DMA", "DMA32", "Normal", "Movable")
# CONFIG_ZONE_DEVICE=y in the pinned (Debian) config: one more zone, which the buddy allocator
# never hands out and no gfp_zone() selects, but which every node_zones[] has, so the kernel's
# MAX_NR_ZONES is 5 and /proc/zoneinfo prints five zones and five protection entries per node.
ZONE_DEVICE: Final = 4
KERNEL_MAX_NR_ZONES: Final = 5
KERNEL_ZONE_NAMES: Final = (*ZONE_NAMES, "Device")
ZONE_BAD: Final = -1  # what gfp_zone's encoding yields for GFP_ZONE_BAD combinations

MIGRATE_UNMOVABLE: Final = 0
MIGRATE_MOVABLE: Final = 1
MIGRATE_RECLAIMABLE: Final = 2
MIGRATE_PCPTYPES: Final = 3
MIGRATE_HIGHATOMIC: Final = MIGRATE_PCPTYPES
# No CONFIG_CMA (so no MIGRATE_CMA enumerator), CONFIG_MEMORY_ISOLATION=y: ISOLATE follows
# HIGHATOMIC, as the Debian 6.12.117 kernel's /proc/pagetypeinfo shows.
MIGRATE_ISOLATE: Final = 4
MIGRATE_TYPES: Final = 5
MIGRATETYPE_NAMES: Final = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")

# GFP_ZONE_TABLE / GFP_ZONE_BAD (include/linux/gfp.h), with GFP_ZONES_SHIFT = 2 (4 zones).
GFP_ZONES_SHIFT: Final = 2
_ZT = {0x0: ZONE_NORMAL, 0x1: ZONE_DMA, 0x2: ZONE_NORMAL, 0x4: ZONE_DMA32, 0x8: ZONE_NORMAL,
       0x9: ZONE_DMA, 0xA: ZONE_MOVABLE, 0xC: ZONE_DMA32}
GFP_ZONE_TABLE: Final = sum(z << (bits * GFP_ZONES_SHIFT) for bits, z in _ZT.items())
GFP_ZONE_BAD: Final = sum(1 << b for b in range(16) if b not in _ZT)


def gfp_zone_is_bad(gfp: Bits) -> Bits:
    """True if the zone modifiers are a GFP_ZONE_BAD combination (works on ints and Z3)."""
    return (lshr(GFP_ZONE_BAD, gfp & GFP_ZONEMASK) & 1) == 1


def gfp_zone(gfp: Bits) -> Bits:
    """gfp_zone(): the highest zone index the mask may use; ZONE_BAD (-1) if the bits are bad.

    The kernel only VM_BUG_ONs bad combinations under CONFIG_DEBUG_VM; the model rejects them.
    """
    bit = gfp & GFP_ZONEMASK
    z = lshr(GFP_ZONE_TABLE, bit * GFP_ZONES_SHIFT) & ((1 << GFP_ZONES_SHIFT) - 1)
    return If(gfp_zone_is_bad(gfp), ZONE_BAD + 0 * z, z)


def gfp_migratetype(gfp: Bits) -> Bits:
    """gfp_migratetype(): UNMOVABLE, MOVABLE or RECLAIMABLE from __GFP_MOVABLE/__GFP_RECLAIMABLE."""
    return lshr(gfp & GFP_MOVABLE_MASK, GFP_MOVABLE_SHIFT)


def gfpflags_allow_blocking(gfp: Bits) -> Bits:
    """gfpflags_allow_blocking(): the one "may sleep" bit is __GFP_DIRECT_RECLAIM."""
    return (gfp & __GFP_DIRECT_RECLAIM) != 0


def gfp_is_valid(gfp: Bits) -> Bits:
    """A mask the model accepts: only bits of this build, a good zone combination, and not
    __GFP_MOVABLE|__GFP_RECLAIMABLE together (migratetype 3, VM_WARN in gfp_migratetype)."""
    return And(
        (gfp & ~GFP_VALID_MASK) == 0,
        gfp_zone_is_bad(gfp) == False,  # noqa: E712 - must also build a Z3 term
        (gfp & GFP_MOVABLE_MASK) != GFP_MOVABLE_MASK,
    )


def check_gfp(gfp: int) -> int:
    """Return ``gfp`` if valid, else raise GfpError saying exactly what is wrong."""
    if not isinstance(gfp, int) or isinstance(gfp, bool) or gfp < 0:
        raise GfpError(f"gfp mask must be a non-negative integer, got {gfp!r}")
    if gfp_is_valid(gfp):  # the one validity rule (proved in gfp.zones); below: why not
        return gfp
    unknown = gfp & ~GFP_VALID_MASK
    if unknown:
        raise GfpError(f"gfp mask {gfp:#x} has bits unknown to Linux 6.12.117: {unknown:#x}")
    if gfp_zone_is_bad(gfp):
        raise GfpError(
            f"gfp mask {format_gfp(gfp)} combines zone modifiers "
            f"{format_gfp(gfp & GFP_ZONEMASK)} (GFP_ZONE_BAD in include/linux/gfp.h)"
        )
    if (gfp & GFP_MOVABLE_MASK) == GFP_MOVABLE_MASK:
        raise GfpError(
            f"gfp mask {format_gfp(gfp)} sets both __GFP_MOVABLE and __GFP_RECLAIMABLE "
            "(migratetype 3 is MIGRATE_HIGHATOMIC, a bug per gfp_migratetype)"
        )
    raise GfpError(f"gfp mask {gfp:#x} is not valid")  # unreachable: one reason above applies


def format_gfp(gfp: int) -> str:
    """The trace-event notation (trace_print_flags_seq with table A); 0 prints as ``none``."""
    if gfp == 0:
        return "none"
    parts: list[str] = []
    rest = gfp
    for name, mask in TRACE_NAME_TABLE:
        if rest == 0:
            break
        if mask and (rest & mask) == mask:
            parts.append(name)
            rest &= ~mask
    if rest:
        parts.append(f"{rest:#x}")
    return "|".join(parts)


def parse_gfp(text: str, *, ignore_hex: bool = False, validate: bool = True) -> int:
    """Parse ``GFP_KERNEL|__GFP_ZERO`` (names, ``0x`` leftovers, ``none``) into a mask.

    ``ignore_hex`` drops ``0x`` tokens, as the subject protocol asks; otherwise they are ORed
    in, so ``parse_gfp(format_gfp(m)) == m`` for every valid mask.
    """
    text = text.strip()
    if not text:
        raise GfpError("empty gfp mask (write 'none' for 0)")
    if text == "none":
        return 0
    gfp = 0
    for tok in text.split("|"):
        tok = tok.strip()
        if tok in GFP_NAMES:
            gfp |= GFP_NAMES[tok]
        elif tok.lower().startswith("0x"):
            try:
                bits = int(tok, 16)
            except ValueError:
                raise GfpError(f"bad hex token {tok!r} in gfp mask {text!r}") from None
            if not ignore_hex:
                gfp |= bits
        else:
            raise GfpError(f"unknown gfp flag {tok!r} in {text!r} (not a Linux 6.12.117 name)")
    return check_gfp(gfp) if validate else gfp
