"""Processes: creation, fork with copy-on-write, and exit (kernel/fork.c, kernel/exit.c,
mm/mmap.c exit_mmap, mm/memory.c copy_page_range, Linux 6.12.117).

:class:`Processes` is the model's task list over :class:`impl.memory.UserMemory`. ``spawn``
gives a new process an empty address space as execve() leaves it before the ELF loader maps
anything (mm_alloc: a PGD from pgd_alloc, arch_pick_mmap_layout's mmap_base). ``fork`` is
copy_mm -> dup_mmap: every VMA is copied (vm_area_dup, skipping VM_DONTCOPY) and
copy_page_range -> copy_present_pte copies every present PTE: the page gains a reference and
a mapping (folio_get, folio_try_dup_anon_rmap_pte), and in a COW mapping (private, may write)
a writable PTE is write-protected in parent and child (ptep_set_wrprotect), so the first
write of either side faults into do_wp_page (impl/memory.py). Special PTEs (remap_pfn_range's
raw pfns, pte_special) are copied as they are, without a reference. ``exit`` is exit_mm ->
mmput -> exit_mmap: unmap_vmas zaps every PTE (each page loses its reference; the last frees
it), free_pgtables and pgd_free return the page-table pages, the VMAs go.

Cost: fork is O(1) per VMA and per present PTE (the mm's ``ptes``), never a scan of memory;
the child's page tables are allocated as its PTEs are copied.
"""

from __future__ import annotations

from impl.memory import UserMemory
from impl.mmap import _PAGE_SPECIAL, MM, VM_DONTCOPY, VMA, is_cow_mapping
from impl.page_alloc import PageAllocator
from impl.pgtable import _PAGE_RW, PTE_PFN_MASK, PageTable
from spec.errors import KmemError, MmError, MmOomError
from spec.layout import NUMA_NO_NODE
from spec.mm_state import BufferPage, MmState, PageInfo, UserMapping, VmaRecord


class Processes(UserMemory):
    """The task list: pid -> mm_struct, plus everything :class:`UserMemory` keeps. ``kernel``
    is init_mm's tree, whose kernel half each new PGD clones (pgd_ctor), if given."""

    def __init__(self, pa: PageAllocator, kernel: PageTable | None = None) -> None:
        super().__init__(pa)
        self.kernel = kernel

    def _new_mm(self, cpu: int) -> MM:
        """mm_alloc() -> mm_init() -> mm_alloc_pgd(): -ENOMEM if the PGD cannot be had."""
        try:
            pgd = PageTable(self.pa, user=True, nid=NUMA_NO_NODE, cpu=cpu, kernel=self.kernel)
        except KmemError as e:
            if isinstance(e, MmError):
                raise
            raise MmOomError(f"mm_alloc: no page for the PGD: {e} (-ENOMEM)") from None
        return MM(self.next_pid, pgd)

    def _register(self, mm: MM) -> int:
        """alloc_pid() + attach: the pid is used only once the process exists."""
        self.mms[mm.pid] = mm
        self.next_pid += 1
        return mm.pid

    def spawn(self, *, cpu: int = 0) -> int:
        """A new process with an empty address space (what execve leaves before the loader
        maps the binary): the first is pid 1, init. Returns its pid."""
        return self._register(self._new_mm(cpu))

    def fork(self, pid: int, *, cpu: int = 0) -> int:
        """kernel/fork.c copy_process -> copy_mm -> dup_mmap: the child's pid. If a page table
        cannot be allocated the child is torn down again and the parent is untouched (the
        parent's PTEs are write-protected only after every child PTE is in place)."""
        parent = self.mm_of(pid)
        child = self._new_mm(cpu)
        child.mmap_base = parent.mmap_base
        ppgd = self.pgd(parent)
        wrprotect: list[tuple[int, int, int]] = []
        try:
            for v in parent.vmas:
                if v.vm_flags & VM_DONTCOPY:
                    continue
                child.insert_raw(VMA(v.vm_start, v.vm_end, v.vm_flags, v.vm_page_prot,
                                     v.anon, v.buffer))  # vm_area_dup
            for va, pfn in parent.ptes.items():  # copy_page_range, present PTEs only
                vma = parent.find_vma(va)
                assert vma is not None
                pte = ppgd.pte_of(va)
                prot = pte & ~PTE_PFN_MASK
                cow = is_cow_mapping(vma.vm_flags) and bool(prot & _PAGE_RW)
                if cow:
                    prot &= ~_PAGE_RW  # pte_wrprotect
                self._map(child, va, pfn, prot, cpu)
                if cow:
                    wrprotect.append((va, pfn, prot))
        except MmError:
            self._teardown(child)
            raise
        self._register(child)
        # every child PTE is in place: take the references, then write-protect the parent
        for va, pfn in child.ptes.items():
            if self.is_special(child, va):  # a raw pfn: no page to reference
                continue
            self.pa.get_page(pfn)  # folio_get
            self._rmap_add(pfn, child.pid, va)  # folio_try_dup_anon_rmap_pte / file rmap
        for va, pfn, prot in wrprotect:
            self._set_prot(parent, va, pfn, prot)  # ptep_set_wrprotect(src_mm, ...)
        for b in self.buffers.values():
            b.maps += [(child.pid, v) for p, v in b.maps if p == pid]
        return child.pid

    def _teardown(self, mm: MM) -> None:
        """Undo a half-built child: clear its PTEs (it holds no references yet) and free its
        tables; no pid was used."""
        pgd = self.pgd(mm)
        for va in list(mm.ptes):
            pgd.unmap_page(va)
        mm.ptes.clear()
        pgd.free_tables()

    def exit(self, pid: int) -> None:
        """exit_mm() -> mmput() -> exit_mmap(): zap every VMA (unmap_vmas), free the page
        tables (free_pgtables, pgd_free), drop the VMAs. The pid is dead afterwards."""
        mm = self.mm_of(pid)
        self.zap_range(mm, 0, mm.task_size)  # every present PTE, once
        mm.vmas.clear()
        mm.starts.clear()
        self.pgd(mm).free_tables()
        del self.mms[pid]
        self.exited.add(pid)
        for b in self.buffers.values():
            b.maps = [(p, v) for p, v in b.maps if p != pid]

    def pids(self) -> list[int]:
        """Live pids, in creation order."""
        return list(self.mms)


def abstract_mm(ps: UserMemory) -> MmState:
    """The abstraction function of spec/mm_state.py: what the page tables, VMAs, reverse map,
    page references and buffers say now. Linear in the live mappings and tables: for checks,
    never on an operation's path."""
    pa = ps.pa
    vmas = []
    mappings = []
    pt_pfns: dict[int, int] = {}
    for pid, mm in ps.mms.items():
        pgd = ps.pgd(mm)
        for v in mm.vmas:
            vmas.append(VmaRecord(pid, v.vm_start, v.vm_end, v.vm_flags, v.buffer))
        for va, pte in pgd.mappings():
            pfn = (pte & PTE_PFN_MASK) >> 12
            pfnmap = bool(pte & _PAGE_SPECIAL)
            mappings.append(UserMapping(pid, va, pfn, bool(pte & _PAGE_RW), pfnmap,
                                        mm.ptes.get(va, -1)))
        for t in pgd.table_pfns():
            pt_pfns[t] = pid
    referenced = {m.pfn for m in mappings} | set(ps.rmap) | {
        p for b in ps.buffers.values() for p in b.pfns if p >= 0}
    pages = {p: PageInfo(pa.page_count(p), pa.allocated[p][0] if p in pa.allocated else -1,
                         pa.allocated[p][3] if p in pa.allocated else -1, p in ps.anon)
             for p in referenced}
    bufpages = tuple(BufferPage(b.bid, i, p, b.kernel_ref)
                     for b in ps.buffers.values() for i, p in enumerate(b.pfns))
    rmap = frozenset((pfn, pid, va) for pfn, m in ps.rmap.items() for pid, va in m)
    return MmState(
        task_size={pid: mm.task_size for pid, mm in ps.mms.items()},
        vmas=tuple(vmas), mappings=tuple(mappings), pages=pages,
        pagetable_pfns=pt_pfns, rmap=rmap, buffer_pages=bufpages,
        ptes_index=frozenset((pid, va, pfn) for pid, mm in ps.mms.items()
                             for va, pfn in mm.ptes.items()))
