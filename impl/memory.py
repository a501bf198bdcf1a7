"""Page faults, zapping and driver mappings of user memory (mm/memory.c, Linux 6.12.117).

:class:`UserMemory` holds the processes' mm_structs (impl/mmap.py) over one page allocator and
does what mm/memory.c does to their page tables (impl/pgtable.py):

* ``handle_mm_fault``: ``do_anonymous_page`` allocates a zeroed GFP_HIGHUSER_MOVABLE page
  (``alloc_anon_folio`` -> ``vma_alloc_zeroed_movable_folio``, arch/x86/include/asm/page.h) and
  maps it with the VMA's protection, writable and dirty if the VMA is writable; ``do_wp_page``
  on a write to a write-protected PTE of a private mapping either reuses the page when this
  mapping holds its only reference (``wp_can_reuse_anon_folio``) or copies it to a new
  GFP_HIGHUSER_MOVABLE page (``wp_page_copy``) and drops a reference on the old one.
* ``zap_pte_range`` (munmap, exit): clears each present PTE and drops the mapping's reference;
  the page goes back to the buddy allocator only with its last reference (``put_page``).
  munmap (and MAP_FIXED over a mapping) then frees the page tables no remaining VMA shares
  (``free_pgtables`` -> ``free_pgd_range``); munmap of a range where nothing is mapped is a
  no-op returning 0, as in Linux.
* ``vm_insert_page`` (a driver's mmap of kernel pages: takes a reference, no COW, VM_MIXEDMAP)
  and ``remap_pfn_range`` (raw pfns, VM_IO|VM_PFNMAP, special PTEs, no reference).

Reference counting uses impl/page_alloc.py's: the allocation's own reference plus get_page()
extras; for anonymous pages the first mapping owns the allocation's reference, so page_count ==
mapcount. The reverse map (``rmap``: pfn -> {(pid, va)}, what ``folio_add_new_anon_rmap`` /
``folio_add_file_rmap_pte`` / ``folio_remove_rmap_pte`` and the anon_vma chains give the
kernel) lets migration (impl/migrate.py) find every PTE of a page; mapcount is its size.

Simplifications: no zero page (every fault allocates, as when ``mm_forbids_zeropage()``), no
THP or mTHP (order-0 anonymous folios), no swap, no file mappings, no soft-dirty bit, no TLB
model, one mm per process (no CLONE_VM threads). Page contents are a few words per page
(``contents``), enough to show sharing, COW and migration copying.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

from impl.mmap import (
    _PAGE_SPECIAL,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    MAX_MAP_COUNT,
    MM,
    MMAP_MIN_ADDR,
    PROT_READ,
    PROT_WRITE,
    VM_DONTDUMP,
    VM_DONTEXPAND,
    VM_EXEC,
    VM_IO,
    VM_MIXEDMAP,
    VM_PFNMAP,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    VMA,
    MapsLine,
    calc_vm_flags,
    check_user_addr,
    check_user_range,
    format_vm_flags,
    is_cow_mapping,
    page_align,
    render_maps,
    vm_get_page_prot,
)
from impl.page_alloc import OWNER_PAGES, PageAllocator
from impl.pgtable import (
    _PAGE_DIRTY,
    _PAGE_RW,
    GFP_PGTABLE_USER,
    PAGE_SHARED,
    PTE_PFN_MASK,
    PageTable,
)
from spec.errors import (
    BadPageMapError,
    BadUserAddressError,
    DoubleFreeError,
    KmemError,
    MmError,
    MmOomError,
    NoSuchProcessError,
    SegfaultError,
)
from spec.gfp import __GFP_ZERO, GFP_HIGHUSER_MOVABLE, GFP_USER
from spec.layout import NUMA_NO_NODE, PAGE_SHIFT, PAGE_SIZE

# arch/x86/include/asm/page.h vma_alloc_zeroed_movable_folio(): the page of a first fault
GFP_ANON_FAULT = GFP_HIGHUSER_MOVABLE | __GFP_ZERO
WORD = 8  # page contents are modelled as 8-byte words


@dataclass(eq=False)
class SharedBuffer:
    """A driver's kernel buffer: order-0 pages allocated with ``gfp`` (GFP_USER: unmovable),
    the kernel's own reference on each while ``kernel_ref``, mapped into processes with
    vm_insert_page. ``pfns[i]`` is -1 once page i went back to the buddy allocator."""

    bid: int
    pfns: list[int]
    gfp: int
    kernel_ref: bool = True
    maps: list[tuple[int, int]] = field(default_factory=list)  # (pid, va) of each mmap

    @property
    def length(self) -> int:
        return len(self.pfns) << PAGE_SHIFT


class UserMemory:
    """Processes' address spaces over one PageAllocator: mm_structs by pid, the reverse map,
    anonymous pages, shared buffers and page contents. Entry points raise a
    :class:`spec.errors.KmemError` subclass and leave the state unchanged on bad input."""

    def __init__(self, pa: PageAllocator) -> None:
        self.pa = pa
        self.mms: dict[int, MM] = {}
        self.exited: set[int] = set()
        self.next_pid = 1
        self.rmap: dict[int, dict[tuple[int, int], None]] = {}  # pfn -> {(pid, va)}
        self.anon: set[int] = set()  # PageAnon: movable, on the LRU
        self.contents: dict[int, dict[int, int]] = {}  # pfn -> {offset: word}
        self.buffers: dict[int, SharedBuffer] = {}
        self.buffer_page: dict[int, tuple[int, int]] = {}  # pfn -> (buffer id, index)
        self.next_bid = 1
        self.stats = {"faults": 0, "anon_pages": 0, "cow_copies": 0, "cow_reuses": 0,
                      "zapped": 0, "freed": 0, "migrated": 0}

    # --- lookups ---------------------------------------------------------------------------------
    def mm_of(self, pid: int) -> MM:
        """find_task_by_vpid(pid)->mm, or NoSuchProcessError (-ESRCH)."""
        mm = self.mms.get(pid) if type(pid) is int else None
        if mm is None:
            state = "has exited" if pid in self.exited else "does not exist"
            raise NoSuchProcessError(f"pid {pid!r} {state} (-ESRCH)")
        return mm

    def pgd(self, mm: MM) -> PageTable:
        pgd = mm.pgd
        assert isinstance(pgd, PageTable)
        return pgd

    def resolve(self, pid: int, va: int) -> int | None:
        """follow_page(): the pfn ``va`` maps in process ``pid`` now, or None."""
        mm = self.mm_of(pid)
        check_user_addr("resolve", va, mm.task_size)
        return mm.ptes.get(va & ~(PAGE_SIZE - 1))

    def mapcount(self, pfn: int) -> int:
        """folio_mapcount(): how many user PTEs map the page."""
        return len(self.rmap.get(pfn, ()))

    def pte_writable(self, mm: MM, va: int) -> bool:
        return bool(self.pgd(mm).pte_of(va) & _PAGE_RW)

    def is_special(self, mm: MM, va: int) -> bool:
        """pte_special(): a raw pfn of remap_pfn_range, which vm_normal_page() does not turn
        into a page (no reference, no rmap)."""
        return bool(self.pgd(mm).pte_of(va) & _PAGE_SPECIAL)

    # --- PTE helpers (set_pte_at, ptep_clear) ----------------------------------------------------
    def _map(self, mm: MM, va: int, pfn: int, prot: int, cpu: int = 0) -> None:
        """set_pte_at() after __pte_alloc(): a page-table allocation failure is VM_FAULT_OOM."""
        try:
            self.pgd(mm).map_page(va, pfn, prot, gfp=GFP_PGTABLE_USER, cpu=cpu)
        except KmemError as e:
            if isinstance(e, MmError):
                raise
            raise MmOomError(f"pid {mm.pid}: no page table for {va:#x}: {e} "
                             "(VM_FAULT_OOM)") from None
        mm.ptes[va] = pfn

    def _set_prot(self, mm: MM, va: int, pfn: int, prot: int) -> None:
        """Rewrite a present PTE (ptep_set_wrprotect, wp_page_reuse's pte_mkwrite,
        wp_page_copy's set_pte_at of the new page): the tables exist, so nothing allocates."""
        pgd = self.pgd(mm)
        pgd.unmap_page(va)
        pgd.map_page(va, pfn, prot, gfp=GFP_PGTABLE_USER)
        mm.ptes[va] = pfn

    def _rmap_add(self, pfn: int, pid: int, va: int) -> None:
        self.rmap.setdefault(pfn, {})[(pid, va)] = None

    def _rmap_del(self, pfn: int, pid: int, va: int) -> None:
        m = self.rmap[pfn]
        del m[(pid, va)]
        if not m:
            del self.rmap[pfn]

    def drop_ref(self, pfn: int) -> bool:
        """put_page()/folio_put(): drop one reference; the last one frees the page to the buddy
        allocator (free_unref_folios). True if the page was freed."""
        if self.pa.refs.get(pfn):
            self.pa.put_page(pfn)
            return False
        self.pa.free_pages_pfn(pfn, 0)
        self.anon.discard(pfn)
        self.contents.pop(pfn, None)
        where = self.buffer_page.pop(pfn, None)
        if where is not None:
            self.buffers[where[0]].pfns[where[1]] = -1
        self.stats["freed"] += 1
        return True

    # --- faults (mm/memory.c) --------------------------------------------------------------------
    def fault(self, pid: int, va: int, *, write: bool = True, cpu: int = 0) -> int:
        """handle_mm_fault() for a user access to ``va``: the pfn it maps afterwards.

        Outside every VMA, or against its protection, is SIGSEGV (SegfaultError, nothing
        mapped): lock_mm_and_find_vma() fails / access_error(). A present PTE that allows the
        access is no fault at all."""
        mm = self.mm_of(pid)
        check_user_addr("fault", va, mm.task_size)
        addr = va & ~(PAGE_SIZE - 1)
        vma = mm.find_vma(addr)
        kind = "write" if write else "read"
        if vma is None:
            raise SegfaultError(f"pid {pid}: {kind} fault at {va:#x} outside every VMA: SIGSEGV "
                                "(SEGV_MAPERR)")
        # arch/x86/mm/fault.c access_error(): a write needs VM_WRITE; a read of a page not
        # present needs any access at all (vma_is_accessible: x86 cannot map write-only or
        # execute-only, so such a mapping reads), PROT_NONE none
        if not vma.vm_flags & (VM_WRITE if write else VM_READ | VM_WRITE | VM_EXEC):
            raise SegfaultError(f"pid {pid}: {kind} fault at {va:#x} in {vma!r}: SIGSEGV "
                                "(SEGV_ACCERR, access_error())")
        pfn = mm.ptes.get(addr)
        if pfn is None:
            if vma.vm_flags & VM_PFNMAP or vma.buffer >= 0:
                raise SegfaultError(f"pid {pid}: {kind} fault at {va:#x} in a driver mapping "
                                    "with no page there: SIGBUS (VM_FAULT_SIGBUS)")
            return self.do_anonymous_page(mm, vma, addr, cpu)
        if write and not self.pte_writable(mm, addr):
            return self.do_wp_page(mm, vma, addr, pfn, cpu)
        return pfn

    def do_anonymous_page(self, mm: MM, vma: VMA, addr: int, cpu: int) -> int:
        """mm/memory.c do_anonymous_page(): a zeroed movable page, mapped with the VMA's
        protection made writable and dirty if the VMA is writable; PageAnon, on the LRU."""
        pfn = self.pa.alloc_pages_node(NUMA_NO_NODE, GFP_ANON_FAULT, 0, cpu=cpu)
        if pfn is None:
            raise MmOomError(f"pid {mm.pid}: no page for the fault at {addr:#x} (VM_FAULT_OOM)")
        prot = vma.vm_page_prot
        if vma.vm_flags & VM_WRITE:
            prot |= _PAGE_RW | _PAGE_DIRTY  # pte_mkwrite(pte_mkdirty(entry))
        try:
            self._map(mm, addr, pfn, prot, cpu)
        except MmError:
            self.pa.free_pages_pfn(pfn, 0)
            raise
        self._rmap_add(pfn, mm.pid, addr)  # folio_add_new_anon_rmap
        self.anon.add(pfn)  # folio_add_lru_vma
        vma.anon = True  # anon_vma_prepare
        self.stats["faults"] += 1
        self.stats["anon_pages"] += 1
        return pfn

    def do_wp_page(self, mm: MM, vma: VMA, addr: int, pfn: int, cpu: int) -> int:
        """mm/memory.c do_wp_page(): a write to a write-protected PTE of a private mapping.
        wp_can_reuse_anon_folio(): the only reference is this mapping's -> wp_page_reuse
        (make the PTE writable); else wp_page_copy: a new GFP_HIGHUSER_MOVABLE page with the
        old contents, this PTE moved to it, one reference dropped on the old page."""
        self.stats["faults"] += 1
        prot = vma.vm_page_prot | _PAGE_RW | _PAGE_DIRTY
        special = self.is_special(mm, addr)  # vm_normal_page() is NULL: a raw pfn, no page
        if not special and pfn in self.anon and self.pa.page_count(pfn) == 1:
            self._set_prot(mm, addr, pfn, prot)
            self.stats["cow_reuses"] += 1
            return pfn
        new = self.pa.alloc_pages_node(NUMA_NO_NODE, GFP_HIGHUSER_MOVABLE, 0, cpu=cpu)
        if new is None:
            raise MmOomError(f"pid {mm.pid}: no page to copy {pfn:#x} on write at {addr:#x} "
                             "(VM_FAULT_OOM)")
        if pfn in self.contents:
            self.contents[new] = dict(self.contents[pfn])  # __wp_page_copy_user
        self._set_prot(mm, addr, new, prot)
        self._rmap_add(new, mm.pid, addr)
        self.anon.add(new)
        if not special:
            self._rmap_del(pfn, mm.pid, addr)  # folio_remove_rmap_pte(old)
            self.drop_ref(pfn)
        self.stats["cow_copies"] += 1
        self.stats["anon_pages"] += 1
        return new

    # --- page contents (copy_to_user / copy_from_user on a word) ---------------------------------
    def write(self, pid: int, va: int, value: int, *, cpu: int = 0) -> int:
        """A user store of one word at ``va`` (faulting, with COW); returns the pfn written."""
        if type(value) is not int:
            raise BadUserAddressError(f"write: value must be an integer, got {value!r}")
        pfn = self.fault(pid, va, write=True, cpu=cpu)
        self.contents.setdefault(pfn, {})[(va & (PAGE_SIZE - 1)) & ~(WORD - 1)] = value
        return pfn

    def read(self, pid: int, va: int, *, cpu: int = 0) -> int:
        """A user load of one word at ``va`` (faulting); a never-written word reads 0."""
        pfn = self.fault(pid, va, write=False, cpu=cpu)
        return self.contents.get(pfn, {}).get((va & (PAGE_SIZE - 1)) & ~(WORD - 1), 0)

    # --- mmap / munmap (mm/mmap.c, mm/vma.c) -----------------------------------------------------
    def mmap(self, pid: int, length: int, *, addr: int = 0,
             prot: int = PROT_READ | PROT_WRITE,
             flags: int = MAP_PRIVATE | MAP_ANONYMOUS) -> int:
        """do_mmap() of anonymous private memory: no page is allocated until a fault. MAP_FIXED
        replaces whatever was mapped in the range. Returns the start address."""
        mm = self.mm_of(pid)
        if type(length) is not int or length <= 0 or type(addr) is not int:
            raise BadUserAddressError(f"mmap(addr {addr!r}, length {length!r}): length must be "
                                      "a positive integer (-EINVAL)")
        if type(prot) is not int or prot & ~(PROT_READ | PROT_WRITE | 0x4):
            raise BadUserAddressError(f"mmap: bad prot {prot!r} (-EINVAL)")
        if type(flags) is not int or not flags & (MAP_SHARED | MAP_PRIVATE):
            raise BadUserAddressError(f"mmap: flags {flags!r}: neither MAP_SHARED nor "
                                      "MAP_PRIVATE (do_mmap: -EINVAL)")
        if not flags & MAP_ANONYMOUS or (flags & (MAP_SHARED | MAP_PRIVATE)) != MAP_PRIVATE:
            raise MmError(f"mmap: flags {flags:#x}: only MAP_PRIVATE|MAP_ANONYMOUS memory is "
                          "modelled (no files, no shmem)")
        length = page_align(length)
        if flags & MAP_FIXED:
            check_user_range("mmap(MAP_FIXED)", addr, length, mm.task_size)
            if addr < MMAP_MIN_ADDR:  # __get_unmapped_area -> security_mmap_addr
                raise BadUserAddressError(
                    f"mmap(MAP_FIXED)({addr:#x}, {length:#x}): below vm.mmap_min_addr "
                    f"{MMAP_MIN_ADDR:#x} (cap_mmap_addr: -EPERM without CAP_SYS_RAWIO)")
            extra = 1 + mm.splits_needed(addr, addr + length) if mm.overlapping(
                addr, addr + length) else 1
            if len(mm.vmas) + extra > MAX_MAP_COUNT:
                raise BadUserAddressError(f"mmap: vm.max_map_count {MAX_MAP_COUNT} (-ENOMEM)")
            if mm.overlapping(addr, addr + length):
                self._unmap(mm, addr, addr + length)  # vms_clean_up_area()
            start = addr
        else:
            if len(mm.vmas) >= MAX_MAP_COUNT:
                raise BadUserAddressError(f"mmap: vm.max_map_count {MAX_MAP_COUNT} (-ENOMEM)")
            start = mm.get_unmapped_area(addr, length)
        vm_flags = calc_vm_flags(prot, flags)
        mm.insert(VMA(start, start + length, vm_flags, vm_get_page_prot(vm_flags)))
        return start

    def munmap(self, pid: int, addr: int, length: int) -> int:
        """do_vmi_munmap(): split the VMAs at the range ends, zap the PTEs (dropping each
        page's reference), unlink the VMAs. Returns the number of pages unmapped; a valid
        range where nothing is mapped unmaps nothing (munmap returns 0, as Linux does)."""
        mm = self.mm_of(pid)
        if not mm.check_munmap(addr, length):
            return 0
        return self._unmap(mm, addr, addr + page_align(length))

    def _unmap(self, mm: MM, start: int, end: int) -> int:
        """vms_complete_munmap_vmas() of [start, end): zap the PTEs (unmap_vmas), split and
        unlink the VMAs, then free_pgtables(): the page tables of the unmapped pieces that no
        remaining VMA shares (floor: the end of the VMA below, ceiling: the start of the VMA
        above, 0 for none, as vms->unmap_start/unmap_end). Returns the pages unmapped."""
        vs = mm.overlapping(start, end)
        lo, hi = max(vs[0].vm_start, start), min(vs[-1].vm_end, end)
        n = self.zap_range(mm, start, end)
        mm.remove_range(start, end)
        self._forget_buffer_maps(mm.pid, start, end)
        i = bisect_right(mm.starts, start)
        floor = mm.vmas[i - 1].vm_end if i > 0 else 0  # FIRST_USER_ADDRESS
        ceiling = mm.vmas[i].vm_start if i < len(mm.vmas) else 0  # USER_PGTABLES_CEILING
        self.pgd(mm).free_pgd_range(lo, hi, floor, ceiling)
        return n

    def _forget_buffer_maps(self, pid: int, start: int, end: int) -> None:
        """Drop the buffers' records of mmaps of ``pid`` that started in [start, end)."""
        for b in self.buffers.values():
            b.maps = [(p, v) for p, v in b.maps if p != pid or not start <= v < end]

    def zap_range(self, mm: MM, start: int, end: int) -> int:
        """unmap_vmas() -> zap_pte_range(): clear every present PTE in [start, end) and drop
        its page's reference (none for the special PTEs of remap_pfn_range). Visits the range's
        pages or the mm's present PTEs, whichever is fewer: never a scan of memory."""
        if (end - start) >> PAGE_SHIFT <= len(mm.ptes):
            vas = [v for v in range(start, end, PAGE_SIZE) if v in mm.ptes]
        else:
            vas = sorted(v for v in mm.ptes if start <= v < end)
        pgd = self.pgd(mm)
        for v in vas:
            special = self.is_special(mm, v)
            pfn = mm.ptes.pop(v)
            pgd.unmap_page(v)
            if special:  # vm_normal_page() NULL: no page to put
                continue
            self._rmap_del(pfn, mm.pid, v)
            self.drop_ref(pfn)
        self.stats["zapped"] += len(vas)
        return len(vas)

    # --- driver mappings (mm/memory.c vm_insert_page, remap_pfn_range) ---------------------------
    def vm_insert_page(self, pid: int, va: int, pfn: int, *, cpu: int = 0) -> None:
        """vm_insert_page(vma, addr, page): map a kernel page into a shared VMA with a
        reference of its own (folio_get, folio_add_file_rmap_pte); sets VM_MIXEDMAP.
        -EFAULT outside the VMA, -EINVAL for a page with no reference (freed, or a tail page)
        or an anonymous/slab page (validate_page_before_insert), -EBUSY over a present PTE."""
        mm = self.mm_of(pid)
        check_user_addr("vm_insert_page", va, mm.task_size)
        if va & (PAGE_SIZE - 1):
            raise BadUserAddressError(f"vm_insert_page: address {va:#x} is not page aligned")
        vma = mm.find_vma(va)
        if vma is None:
            raise BadUserAddressError(f"vm_insert_page: {va:#x} is in no VMA of pid {pid} "
                                      "(-EFAULT)")
        self._check_insertable(pfn, f"vm_insert_page(pid {pid}, {va:#x})")
        if vma.vm_flags & VM_PFNMAP:
            raise BadPageMapError(f"vm_insert_page: {vma!r} is VM_PFNMAP (BUG_ON)")
        if va in mm.ptes:
            raise BadPageMapError(f"vm_insert_page: {va:#x} of pid {pid} already maps pfn "
                                  f"{mm.ptes[va]:#x} (-EBUSY)")
        self._map(mm, va, pfn, vma.vm_page_prot, cpu)
        self.pa.get_page(pfn)
        self._rmap_add(pfn, pid, va)
        vma.vm_flags |= VM_MIXEDMAP

    def _check_insertable(self, pfn: int, what: str) -> None:
        """validate_page_before_insert() and the page_count() check of insert_page()."""
        if type(pfn) is not int:
            raise BadPageMapError(f"{what}: pfn must be an integer, got {pfn!r}")
        rec = self.pa.allocated.get(pfn)
        if rec is None:
            raise BadPageMapError(f"{what}: pfn {pfn:#x} has no reference (free, reserved or "
                                  "a tail page: page_count 0, -EINVAL)")
        if pfn in self.anon or rec[2] != OWNER_PAGES or rec[0] != 0:
            why = "anonymous" if pfn in self.anon else (
                f"owned by the {rec[2]}" if rec[2] != OWNER_PAGES else f"of order {rec[0]}")
            raise BadPageMapError(f"{what}: pfn {pfn:#x} is {why}: only order-0 kernel pages "
                                  "may be inserted (-EINVAL)")

    def remap_pfn_range(self, pid: int, va: int, pfn: int, npages: int, *,
                        cpu: int = 0) -> None:
        """remap_pfn_range(vma, addr, pfn, size, prot): raw pfns into a VMA, which becomes
        VM_IO|VM_PFNMAP|VM_DONTEXPAND|VM_DONTDUMP; special PTEs (pte_mkspecial), no page
        references, no rmap: the driver keeps the pages alive. A private (COW) VMA must be
        covered exactly (-EINVAL)."""
        mm = self.mm_of(pid)
        if type(npages) is not int or npages <= 0 or type(pfn) is not int or pfn < 0:
            raise BadUserAddressError(f"remap_pfn_range: bad pfn {pfn!r} or size {npages!r}")
        check_user_range("remap_pfn_range", va, npages << PAGE_SHIFT, mm.task_size)
        end = va + (npages << PAGE_SHIFT)
        vma = mm.find_vma(va)
        if vma is None or vma.vm_end < end:
            raise BadUserAddressError(f"remap_pfn_range: [{va:#x}, {end:#x}) is not inside one "
                                      f"VMA of pid {pid} (-EINVAL)")
        if is_cow_mapping(vma.vm_flags) and (va, end) != (vma.vm_start, vma.vm_end):
            raise BadUserAddressError("remap_pfn_range: a COW mapping must be remapped whole "
                                      "(-EINVAL)")
        busy = [v for v in range(va, end, PAGE_SIZE) if v in mm.ptes]
        if busy:
            raise BadPageMapError(f"remap_pfn_range: {busy[0]:#x} is already mapped (-EBUSY)")
        done = []
        try:
            for i in range(npages):
                self._map(mm, va + (i << PAGE_SHIFT), pfn + i, vma.vm_page_prot | _PAGE_SPECIAL,
                          cpu)
                done.append(va + (i << PAGE_SHIFT))
        except MmError:
            for v in done:
                self.pgd(mm).unmap_page(v)
                del mm.ptes[v]
            raise
        vma.vm_flags |= VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP

    # --- the shared buffer of a driver -----------------------------------------------------------
    def alloc_shared_buffer(self, npages: int, *, gfp: int = GFP_USER, nid: int = NUMA_NO_NODE,
                            cpu: int = 0) -> int | None:
        """A driver's buffer: ``npages`` order-0 pages from alloc_pages_node(nid, gfp, 0), each
        with the kernel's reference. None (NULL) if a page cannot be had (the ones already
        allocated are freed again). Returns the buffer id."""
        if type(npages) is not int or npages <= 0:
            raise BadUserAddressError(f"shared buffer of {npages!r} pages: must be positive")
        pfns: list[int] = []
        for _ in range(npages):
            pfn = self.pa.alloc_pages_node(nid, gfp, 0, cpu=cpu)
            if pfn is None:
                for p in pfns:
                    self.pa.free_pages_pfn(p, 0)
                return None
            pfns.append(pfn)
        bid = self.next_bid
        self.next_bid += 1
        self.buffers[bid] = SharedBuffer(bid, pfns, gfp)
        for i, p in enumerate(pfns):
            self.buffer_page[p] = (bid, i)
        return bid

    def buffer(self, bid: int) -> SharedBuffer:
        b = self.buffers.get(bid) if type(bid) is int else None
        if b is None:
            raise BadPageMapError(f"shared buffer {bid!r} does not exist")
        return b

    def mmap_buffer(self, pid: int, bid: int, *, cpu: int = 0) -> int:
        """The driver's f_op->mmap: a MAP_SHARED read-write VMA, then vm_insert_page() of every
        page of the buffer. Refused once the kernel dropped its reference (the driver has no
        pointer left). Undone whole if a page table cannot be allocated."""
        mm = self.mm_of(pid)
        b = self.buffer(bid)
        if not b.kernel_ref:
            raise BadPageMapError(f"shared buffer {bid}: the kernel already dropped its "
                                  "reference; nothing left to map (-EINVAL)")
        if len(mm.vmas) >= MAX_MAP_COUNT:
            raise BadUserAddressError(f"mmap: vm.max_map_count {MAX_MAP_COUNT} (-ENOMEM)")
        start = mm.get_unmapped_area(0, b.length)
        vm_flags = calc_vm_flags(PROT_READ | PROT_WRITE, MAP_SHARED)
        vma = VMA(start, start + b.length, vm_flags, PAGE_SHARED, buffer=bid)
        mm.insert(vma)
        try:
            for i, pfn in enumerate(b.pfns):
                self.vm_insert_page(pid, start + (i << PAGE_SHIFT), pfn, cpu=cpu)
        except MmError:
            self._unmap(mm, start, start + b.length)  # the failed mmap's do_munmap
            raise
        b.maps.append((pid, start))
        return start

    def free_shared_buffer(self, bid: int) -> int:
        """The driver's release: put_page() of the kernel's reference on every page; pages
        still mapped stay until their last mapping goes. Returns how many pages were freed."""
        b = self.buffer(bid)
        if not b.kernel_ref:
            raise DoubleFreeError(f"shared buffer {bid}: the kernel's reference was already "
                                  "dropped (double put_page)")
        b.kernel_ref = False
        return sum(self.drop_ref(p) for p in list(b.pfns) if p >= 0)

    # --- views -----------------------------------------------------------------------------------
    def maps(self, pid: int) -> str:
        """/proc/PID/maps (fs/proc/task_mmu.c show_map_vma): anonymous VMAs print offset 0,
        device 00:00, inode 0 and a trailing space; a driver mapping is padded to column 73
        and named after a model device file."""
        mm = self.mm_of(pid)
        return render_maps([MapsLine(v.vm_start, v.vm_end, format_vm_flags(v.vm_flags),
                                     name=f"/dev/shared_buffer{v.buffer}" if v.buffer >= 0
                                     else None) for v in mm.vmas])

    def rss(self, pid: int) -> tuple[int, int]:
        """(MM_ANONPAGES, MM_FILEPAGES) of a process: its present anonymous and driver PTEs."""
        mm = self.mm_of(pid)
        anon = sum(1 for p in mm.ptes.values() if p in self.anon)
        return anon, len(mm.ptes) - anon


def user_page_prot(pte: int) -> int:
    """The protection bits of a PTE (everything outside PTE_PFN_MASK)."""
    return pte & ~PTE_PFN_MASK


__all__ = ["GFP_ANON_FAULT", "GFP_PGTABLE_USER", "VM_SHARED", "SharedBuffer", "UserMemory"]
