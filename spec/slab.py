"""What the slab allocator and kmalloc promise (include/linux/slab.h, mm/slab.h,
mm/slab_common.c of Linux 6.12.117, with the README's Debian config).

Constants and SLAB_* flag values of that config, and the rules a caller may rely on, each
defined once: which kmalloc size class serves a request (the smallest that fits), the alignment
kmalloc guarantees, and the large-kmalloc order. The implementation (impl/slab_common.py,
impl/slub.py) computes the same things the kernel's way (size_index[], fls, calculate_sizes);
tests and proofs show the two agree.
"""

from __future__ import annotations

from typing import Final

from spec.gfp import __GFP_ACCOUNT, __GFP_DMA, __GFP_RECLAIMABLE
from spec.layout import PAGE_SHIFT, PAGE_SIZE

# --- include/linux/slab.h (x86-64, SLUB) ------------------------------------------------------
ARCH_KMALLOC_MINALIGN: Final = 8  # __alignof__(unsigned long long)
ARCH_SLAB_MINALIGN: Final = 8
CACHE_LINE_SIZE: Final = 64  # cache_line_size() on x86-64 (L1_CACHE_BYTES)
KMALLOC_SHIFT_LOW: Final = 3
KMALLOC_MIN_SIZE: Final = 1 << KMALLOC_SHIFT_LOW
KMALLOC_SHIFT_HIGH: Final = PAGE_SHIFT + 1
KMALLOC_MAX_CACHE_SIZE: Final = 1 << KMALLOC_SHIFT_HIGH  # 8192: above it, kmalloc_large
MAX_PAGE_ORDER: Final = 10
KMALLOC_SHIFT_MAX: Final = MAX_PAGE_ORDER + PAGE_SHIFT
KMALLOC_MAX_SIZE: Final = 1 << KMALLOC_SHIFT_MAX  # 4 MiB
ZERO_SIZE_PTR: Final = 16  # ((void *)16): kmalloc(0)
PAGE_ALLOC_COSTLY_ORDER: Final = 3
MAX_OBJS_PER_PAGE: Final = 32767
OO_SHIFT: Final = 16

# The kmalloc size classes (kmalloc_info[] entries SLUB creates: 96, 192 and 8 .. 8k).
KMALLOC_CLASSES: Final = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)

# enum kmalloc_cache_type with ZONE_DMA, MEMCG and SLAB_OBJ_EXT, no RANDOM_KMALLOC_CACHES
KMALLOC_NORMAL: Final = 0
KMALLOC_RECLAIM: Final = 1
KMALLOC_DMA: Final = 2
KMALLOC_CGROUP: Final = 3
KMALLOC_NO_OBJ_EXT: Final = 4
NR_KMALLOC_TYPES: Final = 5
KMALLOC_TYPE_PREFIX: Final = {KMALLOC_NORMAL: "kmalloc-", KMALLOC_RECLAIM: "kmalloc-rcl-",
                              KMALLOC_DMA: "dma-kmalloc-", KMALLOC_CGROUP: "kmalloc-cg-",
                              KMALLOC_NO_OBJ_EXT: "kmalloc-no-objext-"}

# --- SLAB_* flags: enum _slab_flag_bits for the config (no DEBUG_OBJECTS, no FAILSLAB, MEMCG,
# no KASAN_GENERIC, KFENCE, not SLUB_TINY, SLAB_OBJ_EXT) --------------------------------------
SLAB_CONSISTENCY_CHECKS: Final = 1 << 0
SLAB_RED_ZONE: Final = 1 << 1
SLAB_POISON: Final = 1 << 2
SLAB_KMALLOC: Final = 1 << 3
SLAB_HWCACHE_ALIGN: Final = 1 << 4
SLAB_CACHE_DMA: Final = 1 << 5
SLAB_CACHE_DMA32: Final = 1 << 6
SLAB_STORE_USER: Final = 1 << 7
SLAB_PANIC: Final = 1 << 8
SLAB_TYPESAFE_BY_RCU: Final = 1 << 9
SLAB_TRACE: Final = 1 << 10
SLAB_NOLEAKTRACE: Final = 1 << 11
SLAB_NO_MERGE: Final = 1 << 12
SLAB_ACCOUNT: Final = 1 << 13
SLAB_NO_USER_FLAGS: Final = 1 << 14
SLAB_SKIP_KFENCE: Final = 1 << 15
SLAB_RECLAIM_ACCOUNT: Final = 1 << 16
SLAB_OBJECT_POISON: Final = 1 << 17  # __OBJECT_POISON, internal
SLAB_CMPXCHG_DOUBLE: Final = 1 << 18  # __CMPXCHG_DOUBLE, internal
SLAB_NO_OBJ_EXT: Final = 1 << 19
SLAB_TEMPORARY: Final = SLAB_RECLAIM_ACCOUNT

SLAB_FLAG_NAMES: Final = {
    "SLAB_CONSISTENCY_CHECKS": SLAB_CONSISTENCY_CHECKS, "SLAB_RED_ZONE": SLAB_RED_ZONE,
    "SLAB_POISON": SLAB_POISON, "SLAB_KMALLOC": SLAB_KMALLOC,
    "SLAB_HWCACHE_ALIGN": SLAB_HWCACHE_ALIGN, "SLAB_CACHE_DMA": SLAB_CACHE_DMA,
    "SLAB_CACHE_DMA32": SLAB_CACHE_DMA32, "SLAB_STORE_USER": SLAB_STORE_USER,
    "SLAB_PANIC": SLAB_PANIC, "SLAB_TYPESAFE_BY_RCU": SLAB_TYPESAFE_BY_RCU,
    "SLAB_TRACE": SLAB_TRACE, "SLAB_NOLEAKTRACE": SLAB_NOLEAKTRACE,
    "SLAB_NO_MERGE": SLAB_NO_MERGE, "SLAB_ACCOUNT": SLAB_ACCOUNT,
    "SLAB_NO_USER_FLAGS": SLAB_NO_USER_FLAGS, "SLAB_SKIP_KFENCE": SLAB_SKIP_KFENCE,
    "SLAB_RECLAIM_ACCOUNT": SLAB_RECLAIM_ACCOUNT, "SLAB_NO_OBJ_EXT": SLAB_NO_OBJ_EXT,
}

# mm/slab.h
SLAB_CORE_FLAGS: Final = (SLAB_HWCACHE_ALIGN | SLAB_CACHE_DMA | SLAB_CACHE_DMA32 | SLAB_PANIC
                          | SLAB_TYPESAFE_BY_RCU)
SLAB_DEBUG_FLAGS: Final = (SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_TRACE
                           | SLAB_CONSISTENCY_CHECKS)
SLAB_FLAGS_PERMITTED: Final = (SLAB_CORE_FLAGS | SLAB_DEBUG_FLAGS | SLAB_NOLEAKTRACE
                               | SLAB_RECLAIM_ACCOUNT | SLAB_TEMPORARY | SLAB_ACCOUNT
                               | SLAB_KMALLOC | SLAB_NO_MERGE | SLAB_NO_USER_FLAGS)
# mm/slab_common.c
SLAB_NEVER_MERGE: Final = (SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_TRACE
                           | SLAB_TYPESAFE_BY_RCU | SLAB_NOLEAKTRACE | SLAB_NO_MERGE)
SLAB_MERGE_SAME: Final = SLAB_RECLAIM_ACCOUNT | SLAB_CACHE_DMA | SLAB_CACHE_DMA32 | SLAB_ACCOUNT


def format_slab_flags(flags: int) -> str:
    """SLAB_* names joined with ``|`` (``0`` for none), for messages and views."""
    names = [n for n, v in SLAB_FLAG_NAMES.items() if flags & v]
    rest = flags & ~sum(SLAB_FLAG_NAMES.values())
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


def parse_slab_flags(text: str) -> int:
    """Inverse of :func:`format_slab_flags`; also accepts numbers. Unknown names raise
    ValueError."""
    t = text.strip()
    if t in ("", "0"):
        return 0
    out = 0
    for part in t.split("|"):
        p = part.strip()
        if p in SLAB_FLAG_NAMES:
            out |= SLAB_FLAG_NAMES[p]
        else:
            try:
                out |= int(p, 0)
            except ValueError:
                raise ValueError(f"unknown slab flag {p!r}") from None
    return out


# --- the rules callers rely on -----------------------------------------------------------------

def zero_or_null_ptr(addr: int) -> bool:
    """ZERO_OR_NULL_PTR(): NULL or ZERO_SIZE_PTR, what kmalloc(0) returns (before any check
    of the mask or the context: __do_kmalloc_node returns it first). kfree(), ksize() and
    krealloc() take such a pointer as no object at all (include/linux/slab.h)."""
    return addr <= ZERO_SIZE_PTR


def kmalloc_class_spec(size: int) -> int:
    """The object size kmalloc(size) must come from: the smallest class that holds ``size``
    bytes, for 1 <= size <= KMALLOC_MAX_CACHE_SIZE (include/linux/slab.h kmalloc())."""
    for c in KMALLOC_CLASSES:
        if size <= c:
            return c
    raise ValueError(f"size {size} is above KMALLOC_MAX_CACHE_SIZE")


def kmalloc_cache_name_spec(size: int, gfp: int) -> str:
    """The kmalloc cache kmalloc(size, gfp) must take its object from, for 1 <= size <=
    KMALLOC_MAX_CACHE_SIZE: the type by kmalloc_type()'s priorities (__GFP_DMA: dma-kmalloc-,
    then __GFP_RECLAIMABLE: kmalloc-rcl-, then __GFP_ACCOUNT: kmalloc-cg-, else kmalloc-;
    include/linux/slab.h, ZONE_DMA and MEMCG set, no RANDOM_KMALLOC_CACHES) and the size
    class, named as kmalloc_info[] names it (kmalloc-96, kmalloc-rcl-1k, dma-kmalloc-8k)."""
    c = kmalloc_class_spec(size)
    if gfp & __GFP_DMA:
        kind = KMALLOC_DMA
    elif gfp & __GFP_RECLAIMABLE:
        kind = KMALLOC_RECLAIM
    elif gfp & __GFP_ACCOUNT:
        kind = KMALLOC_CGROUP
    else:
        kind = KMALLOC_NORMAL
    return KMALLOC_TYPE_PREFIX[kind] + (f"{c >> 10}k" if c >= 1024 else str(c))


def kmalloc_align_spec(size: int) -> int:
    """The alignment kmalloc guarantees for a request of ``size`` bytes: at least
    ARCH_KMALLOC_MINALIGN, the size itself for powers of two, and for other class sizes the
    largest power-of-two divisor of the class (6.12 kmalloc() kerneldoc)."""
    if size > KMALLOC_MAX_CACHE_SIZE:
        return PAGE_SIZE
    c = kmalloc_class_spec(size)
    return max(ARCH_KMALLOC_MINALIGN, c & -c)


def kmalloc_ksize_spec(size: int) -> int:
    """What ksize() must answer for a live kmalloc(size) object, 1 <= size <= KMALLOC_MAX_SIZE:
    its size class up to KMALLOC_MAX_CACHE_SIZE (slab_ksize(): s->size, which is the class
    for kmalloc caches), the whole 2^order pages above (__ksize(): folio_size()). At least
    ``size``: the caller may use all of it (mm/slab_common.c __ksize, mm/slub.c slab_ksize)."""
    if size <= KMALLOC_MAX_CACHE_SIZE:
        return kmalloc_class_spec(size)
    return PAGE_SIZE << kmalloc_large_order_spec(size)


def kmalloc_large_order_spec(size: int) -> int:
    """Pages of a large kmalloc: the smallest order whose 2^order pages hold ``size`` bytes."""
    order = 0
    while (PAGE_SIZE << order) < size:
        order += 1
    return order
