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


# --- process address spaces (mm/mmap.c, mm/memory.c, kernel/fork.c, mm/migrate.c) ----------

class MmError(KmemError):
    """Bad input to a process address space; the message names what the kernel returns."""


class NoSuchProcessError(MmError, LookupError):
    """A pid with no live process (never created, or exited): the kernel's -ESRCH."""


class BadUserAddressError(MmError, ValueError):
    """A user address or length that is not page aligned, zero, or not below TASK_SIZE:
    mmap/munmap's -EINVAL (or -ENOMEM for no room), vm_insert_page's -EFAULT."""


class SegfaultError(MmError):
    """A fault outside every VMA (SIGSEGV, SEGV_MAPERR) or against its protection
    (SEGV_ACCERR); nothing is mapped."""


class UserUnmapError(MmError):
    """Formerly munmap() of a range where nothing is mapped; no longer raised: that munmap
    returns 0 and changes nothing, as Linux's do_vmi_munmap does."""


class BadPageMapError(MmError):
    """Mapping a page that cannot be mapped: freed (page_count 0: vm_insert_page's -EINVAL),
    anonymous or slab (validate_page_before_insert), or already mapped at that address
    (-EBUSY)."""


class MigrationError(MmError):
    """A page that cannot migrate: unmovable (not an LRU or movable_ops page: -EBUSY from
    isolation), or pinned by extra references (-EAGAIN from folio_migrate_mapping)."""


class MmOomError(MmError):
    """VM_FAULT_OOM or -ENOMEM: a fault, fork or driver mmap could not allocate a page or a
    page table; everything it had done is undone."""


# --- page tables (arch/x86/mm/pgtable.c, mm/memory.c, impl/pgtable.py) ----------------------

class PageTableError(KmemError):
    """Bad input to a page-table tree: the message says what the kernel would do."""


class BadVirtualAddressError(PageTableError, ValueError):
    """A virtual address a tree cannot map: not page aligned, outside the user range of a
    process's tree (TASK_SIZE_MAX) or the kernel half of init_mm's, or not an integer."""


class NonCanonicalError(BadVirtualAddressError):
    """A non-canonical address: bits 63..47 not all equal (a #GP on x86-64)."""


class AlreadyMappedError(PageTableError):
    """Mapping over a present PTE (vmap_pte_range's WARN_ON(!pte_none(ptep_get(pte))),
    -EBUSY)."""


class NotMappedError(PageTableError):
    """Unmapping an address whose PTE is not present."""


class BadPteError(PageTableError, ValueError):
    """A pfn or protection that cannot form a present PTE (pfn beyond PTE_PFN_MASK, prot with
    pfn bits, or neither _PAGE_PRESENT nor _PAGE_PROTNONE)."""


class PageTableNoMemError(PageTableError):
    """A page-table page could not be allocated (__pte_alloc & co. return -ENOMEM): the PTE is
    not installed; upper tables already populated stay, as in the kernel."""


class PageTableBusyError(PageTableError):
    """free_tables() of a tree that still maps pages (exit_mmap zaps every PTE with
    unmap_vmas before free_pgtables; freeing first would leak the mapped pages), or any use
    of a tree after free_tables()."""


# --- vmalloc (mm/vmalloc.c, impl/vmalloc.py) ------------------------------------------------

class VmallocError(KmemError):
    """Bad input to vmalloc, vfree or a vmalloc lookup; the message is what the kernel WARNs."""


class VfreeError(VmallocError):
    """vfree() of an address that is not the start of a live vmalloc area: remove_vm_area()
    finds nothing ("Trying to vfree() nonexistent vm area") or the address is not page aligned
    ("Trying to vfree() bad address")."""


class VfreeNotAreaStartError(VfreeError):
    """vfree() of an address inside a live area but not its start (the kernel's
    find_unlink_vmap_area would free the whole containing area; the model refuses)."""


class VfreeDoubleError(VfreeError):
    """vfree() of an area already freed (its vmap_area still waits on the lazy purge list, or
    was purged: "Trying to vfree() nonexistent vm area")."""


class VfreeDirectMapError(VfreeError):
    """vfree() of a direct-map (kmalloc or page allocator) address: kfree/free_pages memory
    passed to vfree."""
