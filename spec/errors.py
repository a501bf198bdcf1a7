"""Typed errors of the model: each says what the kernel would report, and guarantees that the
operation that raised it left the state exactly as it was."""

from __future__ import annotations


class KmemError(Exception):
    """Base of every bad-input error; the CLI prints it as one line and exits non-zero."""


class GfpError(KmemError, ValueError):
    """An invalid GFP mask: unknown names or bits, or a GFP_ZONE_BAD zone combination."""


class BadNodeError(KmemError, ValueError):
    """A node id that is neither NUMA_NO_NODE nor an online node (VM_BUG_ON in
    __alloc_pages_node), or an unknown CPU."""


class BadFreeError(KmemError):
    """free_pages/__free_pages of something that is not a live page block."""


class DoubleFreeError(BadFreeError):
    """The block (or a page inside it) is already free: the kernel's "Bad page state"."""


class WrongOrderError(BadFreeError):
    """Freed with an order other than the one it was allocated with."""


class UnalignedFreeError(BadFreeError):
    """The address or pfn is not the first page of the block it lies in."""


class UnknownAddressError(BadFreeError):
    """The address is not a direct-map address of present memory (virt_to_page is garbage)."""


class PageReferencedError(BadFreeError):
    """The block still has references taken with get_page (refcount above one)."""


class SleepInAtomicError(KmemError):
    """"BUG: sleeping function called from invalid context": a blocking mask in atomic context."""


class ContextError(KmemError, ValueError):
    """An unknown calling context, or leaving a context that was not entered."""


class MachineError(KmemError, ValueError):
    """A machine description that cannot be built (overlapping zones, bad sizes, ...)."""


class ScenarioError(KmemError, ValueError):
    """A scenario line that cannot be parsed or names an unknown handle."""


# --- slab and kmalloc (mm/slub.c, mm/slab_common.c) ------------------------------------------

class SlabError(KmemError):
    """Bad input to a slab cache or kmalloc; the message is what SLUB would report."""


class CacheArgsError(SlabError, ValueError):
    """kmem_cache_create() arguments SLUB refuses: a size of 0 or above KMALLOC_MAX_SIZE, an
    alignment that is not a power of two, flags outside SLAB_FLAGS_PERMITTED, a duplicate
    name (sysfs_slab_add: "cannot create duplicate filename")."""


class CacheBusyError(SlabError):
    """kmem_cache_destroy() of a cache with live objects ("Objects remaining in <name> on
    __kmem_cache_shutdown()"): refused, nothing freed."""


class UnknownCacheError(SlabError):
    """A cache that does not exist (destroyed, or never created)."""


class ObjectDoubleFreeError(SlabError):
    """The object is already free: SLUB's "double free or corruption" (set_freepointer's
    naive detection, or SLUB debug's "Object already free")."""


class WrongCacheError(SlabError):
    """kmem_cache_free() to a cache the object does not belong to: cache_from_obj()'s
    "Wrong slab cache. <cache> but object is from <other>"."""


class NotObjectError(SlabError):
    """An address inside a slab that is not the start of an object ("Invalid object pointer"),
    or an address in no slab and no large kmalloc (kfree of a non-slab, non-kmalloc page)."""
