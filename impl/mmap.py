"""Process address spaces: mm_struct and its VMAs (mm/mmap.c, mm/vma.c of Linux 6.12.117).

A process's ``mm_struct`` holds its VMAs (``vm_area_struct``: vm_start, vm_end, vm_flags,
vm_page_prot) sorted by address, its own page tables (impl/pgtable.py, ``mm->pgd``) and the
layout values ``arch_pick_mmap_layout`` chose: x86-64 with 4-level paging, a 64-bit task, no
address-space randomisation (a process started with ``setarch -R`` or a kernel booted with
``norandmaps``), the default 8 MiB stack rlimit: the top-down layout from ``mmap_base``.

This module is the VMA bookkeeping only: finding a free range (arch_get_unmapped_area_topdown,
unmapped_area_topdown), inserting a VMA with merging (vma_merge_new_range), splitting on a
partial munmap (__split_vma) and removing. Pages and PTEs are impl/memory.py's; the kernel's
maple tree is a sorted list here (bisect), so lookups are O(log n) in the number of VMAs.

Sources: include/linux/mm.h (VM_* flags, VM_SPECIAL), include/uapi/asm-generic/mman-common.h
(PROT_*, MAP_*), arch/x86/include/asm/page_64_types.h (TASK_SIZE, DEFAULT_MAP_WINDOW),
arch/x86/mm/mmap.c (mmap_base), arch/x86/mm/pgprot.c (protection_map),
arch/x86/include/asm/pgtable_types.h (PAGE_SHARED, PAGE_COPY, PAGE_READONLY), mm/mmap.c
(do_mmap, get_unmapped_area, unmapped_area_topdown, mmap_min_addr), mm/vma.c (vma merging,
__split_vma, do_vmi_munmap).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Final

from impl.pgtable import (
    PAGE_COPY,
    PAGE_NONE,
    PAGE_READONLY,
    PAGE_READONLY_EXEC,
    PAGE_SHARED,
    PAGE_SHARED_EXEC,
)
from impl.procfs import ProcFormatError
from spec.errors import BadUserAddressError
from spec.layout import PAGE_SHIFT, PAGE_SIZE

# --- layout (arch/x86/include/asm/page_64_types.h, arch/x86/mm/mmap.c) ---------------------------
TASK_SIZE: Final = (1 << 47) - PAGE_SIZE  # DEFAULT_MAP_WINDOW = task_size_64bit(0), 4-level
STACK_RLIMIT: Final = 8 << 20  # RLIMIT_STACK default (_STK_LIM), 8 MiB
STACK_GUARD_GAP: Final = 256 << PAGE_SHIFT  # mm/mmap.c stack_guard_gap, 256 pages
MIN_GAP: Final = 128 << 20  # arch/x86/mm/mmap.c SIZE_128M (stack_maxrandom_size() is 0)
MMAP_MIN_ADDR: Final = 65536  # CONFIG_DEFAULT_MMAP_MIN_ADDR of Debian's config
MAX_MAP_COUNT: Final = 65530  # DEFAULT_MAX_MAP_COUNT, vm.max_map_count


def mmap_base(task_size: int = TASK_SIZE, rlim_stack: int = STACK_RLIMIT) -> int:
    """arch/x86/mm/mmap.c mmap_base(): below the stack's rlimit plus its guard gap, at least
    128 MiB and at most 5/6 of the address space below the top; no random offset (rnd 0)."""
    gap = rlim_stack + STACK_GUARD_GAP  # pad = stack_guard_gap + stack_maxrandom_size() (0)
    gap = max(MIN_GAP, min(gap, task_size // 6 * 5))
    return (task_size - gap + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)  # PAGE_ALIGN


MMAP_BASE: Final = mmap_base()  # 0x7ffff7fff000, where gdb's processes put their libraries

# --- protection and mapping flags (include/uapi/asm-generic/mman-common.h, mman.h) ---------------
PROT_NONE: Final = 0x0
PROT_READ: Final = 0x1
PROT_WRITE: Final = 0x2
PROT_EXEC: Final = 0x4
MAP_SHARED: Final = 0x01
MAP_PRIVATE: Final = 0x02
MAP_FIXED: Final = 0x10
MAP_ANONYMOUS: Final = 0x20

# --- vm_flags (include/linux/mm.h) ---------------------------------------------------------------
VM_NONE: Final = 0x00000000
VM_READ: Final = 0x00000001
VM_WRITE: Final = 0x00000002
VM_EXEC: Final = 0x00000004
VM_SHARED: Final = 0x00000008
VM_MAYREAD: Final = 0x00000010
VM_MAYWRITE: Final = 0x00000020
VM_MAYEXEC: Final = 0x00000040
VM_MAYSHARE: Final = 0x00000080
VM_GROWSDOWN: Final = 0x00000100
VM_PFNMAP: Final = 0x00000400
VM_IO: Final = 0x00004000
VM_DONTCOPY: Final = 0x00020000
VM_DONTEXPAND: Final = 0x00040000
VM_ACCOUNT: Final = 0x00100000
VM_DONTDUMP: Final = 0x04000000
VM_MIXEDMAP: Final = 0x10000000
VM_SPECIAL: Final = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP

# --- x86 PTE protection bits: impl/pgtable.py's (arch/x86/include/asm/pgtable_types.h) -----------
_PAGE_SPECIAL: Final = 1 << 9  # _PAGE_SOFTW1: pte_mkspecial() of pfn mappings

# arch/x86/mm/pgprot.c protection_map[], indexed by vm_flags & (VM_READ|VM_WRITE|VM_EXEC|VM_SHARED).
# A private writable mapping gets PAGE_COPY (no _PAGE_RW): its first write faults, which is
# what copy-on-write needs. PAGE_COPY_EXEC has the value of PAGE_READONLY_EXEC.
PAGE_COPY_EXEC: Final = PAGE_READONLY_EXEC
PROTECTION_MAP: Final = (
    PAGE_NONE, PAGE_READONLY, PAGE_COPY, PAGE_COPY,
    PAGE_READONLY_EXEC, PAGE_READONLY_EXEC, PAGE_COPY_EXEC, PAGE_COPY_EXEC,
    PAGE_NONE, PAGE_READONLY, PAGE_SHARED, PAGE_SHARED,
    PAGE_READONLY_EXEC, PAGE_READONLY_EXEC, PAGE_SHARED_EXEC, PAGE_SHARED_EXEC,
)


def vm_get_page_prot(vm_flags: int) -> int:
    """vm_get_page_prot(): the PTE protection of a VMA (arch/x86/mm/pgprot.c)."""
    return PROTECTION_MAP[vm_flags & (VM_READ | VM_WRITE | VM_EXEC | VM_SHARED)]


def calc_vm_flags(prot: int, flags: int) -> int:
    """do_mmap(): calc_vm_prot_bits() | calc_vm_flag_bits() | VM_MAYREAD|VM_MAYWRITE|VM_MAYEXEC,
    VM_SHARED|VM_MAYSHARE for MAP_SHARED, and mmap_region()'s VM_ACCOUNT for a private
    writable mapping (accountable_mapping)."""
    vm = (prot & (PROT_READ | PROT_WRITE | PROT_EXEC)) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    if flags & MAP_SHARED:
        vm |= VM_SHARED | VM_MAYSHARE
    elif vm & VM_WRITE:
        vm |= VM_ACCOUNT
    return vm


def is_cow_mapping(vm_flags: int) -> bool:
    """include/linux/mm.h is_cow_mapping(): private and possibly writable."""
    return vm_flags & (VM_SHARED | VM_MAYWRITE) == VM_MAYWRITE


# --- /proc/PID/maps (fs/proc/task_mmu.c show_map_vma, show_vma_header_prefix) -------------------
MAPS_PAD: Final = 25 + 8 * 6 - 1  # seq_setwidth(m, 25 + sizeof(void *) * 6 - 1): 72 columns
_MAPS_RE: Final = re.compile(r"([0-9a-f]{8,})-([0-9a-f]{8,}) ([r-][w-][x-][sp]) ([0-9a-f]{8,}) "
                             r"([0-9a-f]{2,}):([0-9a-f]{2,}) (\d+) ")


@dataclass(frozen=True)
class MapsLine:
    """One line of /proc/PID/maps: the VMA's range, the rwxp/s column, the file offset, the
    device (major, minor), the inode, and the name (a path, ``[heap]``...; None for an
    anonymous mapping)."""

    start: int
    end: int
    perms: str
    pgoff: int = 0
    major: int = 0
    minor: int = 0
    inode: int = 0
    name: str | None = None


def render_maps_line(v: MapsLine) -> str:
    """show_map_vma(): seq_put_hex_ll with a minimum width (8 digits for the range and the
    offset, 2 for the device numbers), the inode in decimal and a space; a name is preceded by
    seq_pad(m, ' '): spaces up to column 72 of the line, then one more space."""
    head = (f"{v.start:08x}-{v.end:08x} {v.perms} {v.pgoff:08x} {v.major:02x}:{v.minor:02x} "
            f"{v.inode} ")
    if v.name is None:
        return head + "\n"
    return head.ljust(MAPS_PAD) + " " + v.name + "\n"


def render_maps(lines: list[MapsLine]) -> str:
    """The text of /proc/PID/maps."""
    return "".join(render_maps_line(v) for v in lines)


def parse_maps(text: str) -> list[MapsLine]:
    """Parse /proc/PID/maps strictly (ProcFormatError, as every view parser raises, on
    anything show_map_vma cannot print)."""
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        m = _MAPS_RE.match(line)
        if m is None:
            raise ProcFormatError(f"maps line {no}: {line!r}")
        rest = line[m.end():]
        name = None
        if rest:
            pad = max(MAPS_PAD - m.end(), 0) + 1
            if len(rest) <= pad or rest[:pad].strip(" ") or rest[pad] == " ":
                raise ProcFormatError(f"maps line {no}: the name is not padded to column "
                                 f"{MAPS_PAD + 1}: {line!r}")
            name = rest[pad:]
        out.append(MapsLine(int(m.group(1), 16), int(m.group(2), 16), m.group(3),
                            int(m.group(4), 16), int(m.group(5), 16), int(m.group(6), 16),
                            int(m.group(7)), name))
    return out


def format_vm_flags(vm_flags: int) -> str:
    """The rwxp/s column of /proc/PID/maps (fs/proc/task_mmu.c show_map_vma)."""
    return ("r" if vm_flags & VM_READ else "-") + ("w" if vm_flags & VM_WRITE else "-") + (
        "x" if vm_flags & VM_EXEC else "-") + ("s" if vm_flags & VM_MAYSHARE else "p")


@dataclass(eq=False)
class VMA:
    """struct vm_area_struct: [vm_start, vm_end) with its flags and PTE protection. ``anon`` is
    whether it has an anon_vma (a page was faulted in); ``buffer`` the shared buffer a driver
    mapped here (-1 for none)."""

    vm_start: int
    vm_end: int
    vm_flags: int
    vm_page_prot: int
    anon: bool = False
    buffer: int = -1

    def pages(self) -> int:
        return (self.vm_end - self.vm_start) >> PAGE_SHIFT

    def __repr__(self) -> str:
        return f"{self.vm_start:012x}-{self.vm_end:012x} {format_vm_flags(self.vm_flags)}"


@dataclass(eq=False)
class MM:
    """struct mm_struct of one process: VMAs sorted by vm_start (the maple tree), mmap_base,
    the page tables (``pgd``, an impl.pgtable.PageTable) and ``ptes``: the present user PTEs
    as va -> pfn, which zap and fork walk instead of scanning empty page tables (the kernel
    skips empty PMDs the same way)."""

    pid: int
    pgd: object  # impl.pgtable.PageTable (typed there, to keep this module walker-free)
    mmap_base: int = MMAP_BASE
    task_size: int = TASK_SIZE
    vmas: list[VMA] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # vm_start of each VMA, for bisect
    ptes: dict[int, int] = field(default_factory=dict)

    # --- lookups (mm/mmap.c find_vma, find_vma_intersection) -------------------------------------
    def find_vma(self, addr: int) -> VMA | None:
        """The VMA containing ``addr`` (the kernel's find_vma also returns the next one above;
        vma_lookup() is this)."""
        i = bisect_right(self.starts, addr) - 1
        if i >= 0 and addr < self.vmas[i].vm_end:
            return self.vmas[i]
        return None

    def overlapping(self, start: int, end: int) -> list[VMA]:
        """Every VMA intersecting [start, end), in address order."""
        i = max(bisect_right(self.starts, start) - 1, 0)
        out = []
        while i < len(self.vmas) and self.vmas[i].vm_start < end:
            if self.vmas[i].vm_end > start:
                out.append(self.vmas[i])
            i += 1
        return out

    # --- get_unmapped_area (mm/mmap.c) -----------------------------------------------------------
    def get_unmapped_area(self, addr: int, length: int) -> int:
        """arch_get_unmapped_area_topdown(): the hint if that range is free and above
        mmap_min_addr, else the highest gap below mmap_base that fits (unmapped_area_topdown,
        low limit max(PAGE_SIZE, mmap_min_addr)). -ENOMEM as BadUserAddressError."""
        if length > self.task_size - MMAP_MIN_ADDR:
            raise BadUserAddressError(f"mmap: length {length:#x} does not fit below "
                                      f"TASK_SIZE {self.task_size:#x} (-ENOMEM)")
        if addr:
            addr = (addr + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
            if (self.task_size - length >= addr >= MMAP_MIN_ADDR
                    and not self.overlapping(addr, addr + length)):
                return addr
        high = self.mmap_base
        low = max(PAGE_SIZE, MMAP_MIN_ADDR)
        i = bisect_right(self.starts, high - 1) - 1  # the highest VMA starting below high
        while True:
            # the gap between VMA i (or low) and the next VMA (or high)
            gap_start = self.vmas[i].vm_end if i >= 0 else low
            gap_end = min(high, self.vmas[i + 1].vm_start if i + 1 < len(self.vmas) else high)
            gap_start = max(gap_start, low)
            if gap_end - gap_start >= length:
                return gap_end - length
            if i < 0:
                raise BadUserAddressError(f"mmap: no free range of {length:#x} bytes below "
                                          f"mmap_base {self.mmap_base:#x} (-ENOMEM)")
            i -= 1

    # --- insertion, merging, splitting (mm/vma.c) ------------------------------------------------
    def insert(self, vma: VMA) -> VMA:
        """vma_merge_new_range() then vma_link(): extend a neighbour with the same flags when
        the new range touches it (never for VM_SPECIAL mappings), else link a new VMA. The
        range must be free. Returns the VMA that now covers the range."""
        i = bisect_right(self.starts, vma.vm_start)
        prev = self.vmas[i - 1] if i > 0 else None
        nxt = self.vmas[i] if i < len(self.vmas) else None
        special = vma.vm_flags & VM_SPECIAL or vma.buffer >= 0

        def mergeable(other: VMA | None) -> bool:
            return (other is not None and other.vm_flags == vma.vm_flags and not special
                    and other.buffer < 0)

        if mergeable(prev) and prev is not None and prev.vm_end == vma.vm_start:
            prev.vm_end = vma.vm_end
            prev.anon |= vma.anon
            if mergeable(nxt) and nxt is not None and nxt.vm_start == vma.vm_end:
                prev.vm_end = nxt.vm_end
                prev.anon |= nxt.anon
                del self.vmas[i], self.starts[i]
            return prev
        if mergeable(nxt) and nxt is not None and nxt.vm_start == vma.vm_end:
            nxt.vm_start = vma.vm_start
            nxt.anon |= vma.anon
            self.starts[i] = vma.vm_start
            return nxt
        self.vmas.insert(i, vma)
        self.starts.insert(i, vma.vm_start)
        return vma

    def splits_needed(self, start: int, end: int) -> int:
        """How many VMAs unmapping [start, end) adds (a hole punched in the middle of one VMA
        splits it in two: +1); do_vmi_munmap() refuses with -ENOMEM beyond max_map_count."""
        vs = self.overlapping(start, end)
        return 1 if len(vs) == 1 and vs[0].vm_start < start and vs[0].vm_end > end else 0

    def check_munmap(self, start: int, length: int) -> list[VMA]:
        """do_vmi_munmap()'s checks, before anything changes: page aligned, inside the user
        range (-EINVAL), room for a split (-ENOMEM). Returns the overlapping VMAs: none is not
        an error (vma_find() finds nothing: munmap returns 0 and changes nothing)."""
        check_user_range("munmap", start, length, self.task_size)
        end = start + page_align(length)
        vs = self.overlapping(start, end)
        if vs and len(self.vmas) + self.splits_needed(start, end) > MAX_MAP_COUNT:
            raise BadUserAddressError(f"munmap: splitting would exceed vm.max_map_count "
                                      f"{MAX_MAP_COUNT} (-ENOMEM)")
        return vs

    def remove_range(self, start: int, end: int) -> None:
        """do_vmi_align_munmap(): split the VMAs at the range's ends (__split_vma) and unlink
        every VMA inside. Callers zap the PTEs first."""
        vs = self.overlapping(start, end)
        for v in vs:
            i = bisect_right(self.starts, v.vm_start) - 1  # starts are distinct: v's index
            del self.vmas[i], self.starts[i]
            if v.vm_start < start:
                self.insert_raw(VMA(v.vm_start, start, v.vm_flags, v.vm_page_prot, v.anon,
                                    v.buffer))
            if v.vm_end > end:
                self.insert_raw(VMA(end, v.vm_end, v.vm_flags, v.vm_page_prot, v.anon,
                                    v.buffer))

    def insert_raw(self, vma: VMA) -> None:
        """vma_link() without merging (the halves of a split, the VMAs a fork copies)."""
        i = bisect_right(self.starts, vma.vm_start)
        self.vmas.insert(i, vma)
        self.starts.insert(i, vma.vm_start)


def page_align(n: int) -> int:
    """PAGE_ALIGN()."""
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def check_user_range(what: str, start: int, length: int, task_size: int = TASK_SIZE) -> None:
    """The argument checks of mmap(MAP_FIXED)/munmap() (mm/mmap.c do_vmi_munmap,
    get_unmapped_area): integers, a page-aligned start, a non-zero length, and the whole
    range below TASK_SIZE; -EINVAL otherwise, as BadUserAddressError."""
    if type(start) is not int or type(length) is not int:
        raise BadUserAddressError(f"{what}: address and length must be integers, got "
                                  f"{start!r}, {length!r}")
    if start & (PAGE_SIZE - 1):
        raise BadUserAddressError(f"{what}({start:#x}, {length:#x}): address is not page "
                                  "aligned (-EINVAL)")
    if length <= 0:
        raise BadUserAddressError(f"{what}({start:#x}, {length:#x}): length must be positive "
                                  "(-EINVAL)")
    if start < 0 or start >= task_size or page_align(length) > task_size - start:
        raise BadUserAddressError(f"{what}({start:#x}, {length:#x}): the range is not below "
                                  f"TASK_SIZE {task_size:#x} (-EINVAL)")


def check_user_addr(what: str, va: int, task_size: int = TASK_SIZE) -> None:
    """A single user address: an integer below TASK_SIZE (access_ok())."""
    if type(va) is not int:
        raise BadUserAddressError(f"{what}: address must be an integer, got {va!r}")
    if not 0 <= va < task_size:
        raise BadUserAddressError(f"{what}: address {va:#x} is not a user address (TASK_SIZE "
                                  f"{task_size:#x}, access_ok() fails: -EFAULT)")
