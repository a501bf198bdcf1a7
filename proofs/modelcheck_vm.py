"""Explicit-state model checking of virtual memory together with pages, slabs and kmalloc.

Breadth-first search from boot over ONE system of the real classes: a PageAllocator, a
SlabAllocator (kmem_cache_init, mm/slab_common.c), init_mm's PageTable (impl/pgtable.py),
Vmalloc on it (mm/vmalloc.c) and Processes whose PGDs clone its kernel half (kernel/fork.c,
mm/memory.c). The kit is proofs/modelcheck.py's: :class:`~proofs.modelcheck.Result` (the same
``RESULT ...`` line proofs/checks_extra.py parses), :class:`~proofs.modelcheck.Violation`
with the shortest path from boot, :class:`~proofs.modelcheck.Clock` for the budget and the
progress line, :func:`~proofs.modelcheck.print_outcome`, and proofs/mcstate.py's complete key
of the page allocator.

Machine (:func:`vm_machine`): one node, one CPU, one Normal zone of 128 pages, MAX_PAGE_ORDER
3, min watermark 4 (so a vmalloc, a process's tables and a slab all fit, and the watermark
path is reachable only in long runs).

Operations, in every state (``L`` = :attr:`VmBounds.max_live` live things: vmalloc areas,
kmalloc objects, alloc_pages blocks and processes together; ``S`` = :attr:`VmBounds.max_procs`
processes created in a run, by spawn or fork):

* ``vmalloc(4096)`` with GFP_KERNEL in process context (mm/vmalloc.c __vmalloc_node_range:
  one page, one guard page, page tables on demand) and in hardirq context, where it must
  raise SleepInAtomicError and change nothing; ``vfree`` of every live area; the invalid
  vfrees: the area's guard page (not an area start), a freed area still on the lazy list
  (double vfree), a kmalloc address (a direct-map address); ``purge_vmap_area_lazy`` when
  areas wait on the lazy list.
* ``kmalloc(64, GFP_KERNEL)`` and ``kfree`` of every live object; ``alloc_pages_node(-1,
  GFP_KERNEL, 0)`` and ``free_pages`` of every live block.
* ``spawn`` (a process with one anonymous page-sized VMA: mm_alloc + pgd_alloc + do_mmap),
  ``fault`` of its page (do_anonymous_page: GFP_HIGHUSER_MOVABLE, PUD/PMD/PTE tables on
  demand with GFP_PGTABLE_USER), a fault outside the VMA (SegfaultError, nothing changed),
  ``munmap`` of the VMA, ``fork`` (dup_mmap, copy-on-write) and ``exit`` (exit_mmap:
  zap, free_pgtables, pgd_free); exit of a pid that does not exist (NoSuchProcessError).

State constraint: a state with more than one area on the lazy list is checked but not
expanded (without purges the lazy list grows with every vmalloc/vfree pair until
lazy_max_pages, 8,192 pages on one CPU).

Checked in every new state: the page invariants (spec/invariants.py, block-level
encodings), the slab invariants (spec/slab_state.py), the vmalloc invariants (spec/vm_state.py
on abstract_vm), the process invariants (spec/mm_state.py on abstract_mm, and its step
invariant mm.unmovable_stay on every transition), the tree invariants of every page-table
tree (spec/pgtable_state.py), that the trees' table pages are disjoint and are exactly the
pages the allocator records as owned by page tables, and that ``nr_page_table_pages`` is the
number of tables the kernel counts (spec/pgtable_state.py system_violations); and the model:
the live areas, objects, blocks and processes are exactly the model's. Checked on every
transition: the expected error type and, after an error, the whole state unchanged (the
complete key). Vacuity: :data:`WITNESSES`
must all occur.

State identity (:func:`state_key`): the page allocator's complete key (proofs/mcstate.py),
the slab part of SlabAllocator.snapshot(), Vmalloc.snapshot() and its lazy-node map, every
page-table tree's tables, every process's VMAs, PTE index, reverse map, anonymous pages and
counters, and the model. A state is restored by unpickling the whole system.

Seeded bugs (``--mutant NAME``, :data:`MUTANTS`): impl/pgtable.py changed in this process
only; the violation's path is replayed on the real classes (the line proofs/checks_extra.py
reads).

Usage: ``python -m proofs.modelcheck_vm [--max-live L] [--max-procs S] [--depth D]
[--budget S] [--mutant NAME] [--require-witnesses] [--require-exhaustive]``; exit status as
proofs/modelcheck.py: 0 clean, 1 violation, 2 a witness never occurred, 3 not exhausted with
``--require-exhaustive``.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import pickle
import sys
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import impl.fork as impl_fork
from impl.abstraction import abstract
from impl.fork import Processes, abstract_mm
from impl.machine import MachineConfig
from impl.mmap import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MM,
    MMAP_BASE,
    PROT_READ,
    PROT_WRITE,
    VM_WRITE,
    VMA,
    calc_vm_flags,
)
from impl.page_alloc import OWNER_PAGES, PageAllocator
from impl.pgtable import OWNER_PGTABLE, PageTable
from impl.slab_common import SlabAllocator, abstract_slabs
from impl.vmalloc import Vmalloc, abstract_vm
from proofs import mcstate
from proofs.modelcheck import Clock, Result, Violation, print_outcome
from spec.context import Context
from spec.errors import (
    KmemError,
    NoSuchProcessError,
    SegfaultError,
    SleepInAtomicError,
    VfreeError,
)
from spec.gfp import GFP_KERNEL
from spec.invariants import violated
from spec.layout import PAGE_SIZE
from spec.mm_state import MmState, mm_step_violations, mm_violations
from spec.pgtable_state import system_violations as pgtable_system_violations
from spec.pgtable_state import unused_table_violations
from spec.slab_state import slab_violations
from spec.vm_state import vm_violations
from spec.vma_rules import mmap_effect_violations, munmap_effect_violations

PAGES = 128
MAX_ORDER = 3
MIN_PAGES = 4
BUDGET_S = 60.0  # wall seconds for make verify's row (CPU about 10 s on an idle core)
REPLAY = "the real PageAllocator on the same path: "  # read by proofs/checks_extra.py


def vm_machine(pages: int = PAGES) -> MachineConfig:
    """One node, one CPU, one Normal zone of ``pages`` pages."""
    return MachineConfig.flat(pages, nodes=1, max_order=MAX_ORDER, min_pages=MIN_PAGES,
                              name=f"vm-flat{pages}")


@dataclass(frozen=True)
class VmBounds:
    """The bound of a run: live things, processes created, lazy areas expanded, depth."""

    max_live: int = 2  # kernel things and live processes together
    max_things: int = 1  # vmalloc areas, kmalloc objects and alloc_pages blocks
    max_procs: int = 2  # processes created in a run (spawn and fork)
    max_lazy: int = 1
    depth: int | None = None
    vma_pages: int = 0  # > 0: the VMA operations, with at most this many pages mapped

    def text(self) -> str:
        return (f"max_live={self.max_live},max_things={self.max_things},"
                f"max_procs={self.max_procs},"
                f"max_lazy={self.max_lazy},depth={self.depth if self.depth is not None else '-'}"
                + (f",vma_pages={self.vma_pages}" if self.vma_pages else ""))


BOUNDS: dict[str, VmBounds] = {
    "default": VmBounds(max_live=2, max_things=1, max_procs=1),
    "fork": VmBounds(max_live=2, max_things=0, max_procs=2),
    "long": VmBounds(max_live=2, max_things=1, max_procs=2),
    "vma": VmBounds(max_live=1, max_things=0, max_procs=1, vma_pages=3),
}
"""The named bounds (``--bounds``): ``default`` interleaves one kernel thing (area, object or
block) with one process's life; ``fork`` two processes (fork, copy-on-write, exit in either
order) and no kernel thing; ``long`` (``make verify-long``) one kernel thing with two
processes; ``vma`` one process whose 2-page VMA grows by read-only and read-write pages
mapped below it (MAP_FIXED), loses its first or last page to munmap, faults, within 3 mapped
pages (the spec/vma_rules.py effects of every mmap and munmap). Measured (loaded 2-core
sandbox): default 1,972 states, 11,477 transitions, depth 14 (10.5-11.8 s CPU); fork 71
states (0.4 s CPU); vma 271 states, 2,296 transitions, depth 11 (2.1-2.3 s CPU); long 32,472
states, 208,373 transitions, depth 22 (248 s CPU), each exhausted with every witness."""
DEFAULT_BOUNDS = BOUNDS["default"]


@dataclass(frozen=True)
class Model:
    """What the checker expects to be live. ``procs``: (pid, mapped, faulted)."""

    areas: tuple[int, ...] = ()
    objs: tuple[int, ...] = ()
    blocks: tuple[int, ...] = ()
    procs: tuple[tuple[int, bool, bool], ...] = ()
    created: int = 0  # processes created so far (spawn and fork)
    pages: int = 0  # pages mapped by the VMA operations' process (bounds.vma_pages)
    low: int = 0  # the lowest address the VMA operations mapped (a window: a finite space)

    @property
    def live(self) -> int:
        """Live kernel things (processes are bounded by ``created``)."""
        return len(self.areas) + len(self.objs) + len(self.blocks)


class System:
    """The real classes, wired as the kernel wires them: one page allocator under the slab
    allocator, vmalloc on init_mm's tree, processes cloning its kernel half."""

    def __init__(self, machine: MachineConfig) -> None:
        self.pa = PageAllocator(machine)
        self.sa = SlabAllocator(self.pa, nr_cpus=1)
        self.kernel = PageTable(self.pa, user=False)
        self.vm = Vmalloc(self.pa, pgtable=self.kernel)
        self.ps = Processes(self.pa, kernel=self.kernel)

    def trees(self) -> list[tuple[str, PageTable]]:
        return [("init_mm", self.kernel),
                *((f"pid {pid}", self.ps.pgd(mm)) for pid, mm in self.ps.mms.items())]


@dataclass(frozen=True)
class VmOp:
    """One transition: ``kind`` and its arguments; ``expect`` the typed error it must raise
    (then nothing may change)."""

    kind: str
    arg: int = 0
    expect: type[KmemError] | None = None

    def label(self) -> str:
        a = f"({self.arg:#x})" if self.arg > 0xFFFF else f"({self.arg})"
        return self.kind + a + (f" -> {self.expect.__name__}" if self.expect else "")


USER_LEN = PAGE_SIZE


def enabled(lazy: Sequence[int], m: Model, b: VmBounds) -> list[VmOp]:
    """Every operation of the state (module docstring)."""
    ops: list[VmOp] = [VmOp("vmalloc_hardirq", 4096, SleepInAtomicError),
                       VmOp("exit", 99, NoSuchProcessError)]
    room = m.live + len(m.procs) < b.max_live
    if room and m.live < b.max_things:
        ops += [VmOp("vmalloc", 4096), VmOp("kmalloc", 64), VmOp("alloc_pages", 0)]
    more = room and m.created < b.max_procs
    if more:
        ops.append(VmOp("spawn", 2 if b.vma_pages else 1))
    for a in m.areas:
        ops += [VmOp("vfree", a), VmOp("vfree", a + PAGE_SIZE, VfreeError)]
    for a in lazy:
        ops.append(VmOp("vfree", a, VfreeError))
    if lazy:
        ops.append(VmOp("purge"))
    for o in m.objs:
        ops += [VmOp("kfree", o), VmOp("vfree", o, VfreeError)]
    for p in m.blocks:
        ops.append(VmOp("free_pages", p))
    for pid, mapped, faulted in m.procs:
        if mapped and not faulted:
            ops.append(VmOp("fault", pid))
        if mapped:
            ops += [VmOp("munmap", pid), VmOp("fault_outside", pid, SegfaultError)]
        if b.vma_pages and mapped:
            ops += [VmOp("munmap_first", pid), VmOp("munmap_last", pid)]
            if m.pages < b.vma_pages and m.low > MMAP_BASE - (b.vma_pages + 1) * PAGE_SIZE:
                ops += [VmOp("mmap_below_ro", pid), VmOp("mmap_below_rw", pid)]
        if b.vma_pages:
            ops.append(VmOp("munmap_nothing", pid))
        if more:
            ops.append(VmOp("fork", pid))
        ops.append(VmOp("exit", pid))
    return ops


def _proc(m: Model, pid: int) -> tuple[int, bool, bool]:
    return next(p for p in m.procs if p[0] == pid)


def _set_proc(m: Model, pid: int, mapped: bool, faulted: bool) -> Model:
    return replace(m, procs=tuple((p, mapped, faulted) if p == pid else (p, mp, f)
                                  for p, mp, f in m.procs))


EFFECT_VIOLATIONS: list[str] = []
"""The spec/vma_rules.py step rules broken by the last operation (apply clears it)."""
OP_FACTS: set[str] = set()
"""What the last operation did beyond its result, for the witnesses (apply clears it)."""


def _segments(ps: Processes, pid: int) -> list[tuple[int, int, int]]:
    return [(v.vm_start, v.vm_end, v.vm_flags) for v in ps.mm_of(pid).vmas]


def mmap_checked(ps: Processes, pid: int, length: int, addr: int, prot: int) -> int:
    """mmap (MAP_FIXED at ``addr`` if non-zero), its effect checked (mm.mmap_effect)."""
    before = _segments(ps, pid)
    flags = MAP_PRIVATE | MAP_ANONYMOUS | (MAP_FIXED if addr else 0)
    start = ps.mmap(pid, length, addr=addr, prot=prot, flags=flags)
    EFFECT_VIOLATIONS.extend(mmap_effect_violations(
        before, _segments(ps, pid), start, start + length, calc_vm_flags(prot, flags)))
    return start


def munmap_checked(ps: Processes, pid: int, addr: int, length: int) -> int:
    """munmap, its effect checked (mm.munmap_effect)."""
    before = _segments(ps, pid)
    n = ps.munmap(pid, addr, length)
    EFFECT_VIOLATIONS.extend(munmap_effect_violations(before, _segments(ps, pid), addr,
                                                      addr + length))
    return n


def _sync_proc(ps: Processes, m: Model, pid: int) -> Model:
    """After a VMA operation: the process is mapped/faulted as it now is (what was mapped is
    the spec/vma_rules.py rules' business)."""
    mm = ps.mm_of(pid)
    return _set_proc(m, pid, bool(mm.vmas), bool(mm.ptes))


def apply(sysm: System, m: Model, op: VmOp) -> tuple[Model, str]:
    """Run ``op`` on the real classes; the new model and a description of the result."""
    vm, sa, pa, ps = sysm.vm, sysm.sa, sysm.pa, sysm.ps
    k, x = op.kind, op.arg
    EFFECT_VIOLATIONS.clear()
    OP_FACTS.clear()
    if k == "vmalloc":
        a = vm.vmalloc(x)
        return (m if a is None else replace(m, areas=(*m.areas, a))), f"{a and hex(a)}"
    if k == "vmalloc_hardirq":
        vm.vmalloc(x, ctx=Context.HARDIRQ)
        return m, "returned"
    if k == "vfree":
        vm.vfree(x)
        return replace(m, areas=tuple(a for a in m.areas if a != x)), ""
    if k == "purge":
        return m, str(vm.purge_vmap_area_lazy())
    if k == "kmalloc":
        o = sa.kmalloc(x, GFP_KERNEL)
        return (m if o is None else replace(m, objs=(*m.objs, o))), f"{o and hex(o)}"
    if k == "kfree":
        sa.kfree(x)
        return replace(m, objs=tuple(o for o in m.objs if o != x)), ""
    if k == "alloc_pages":
        p = pa.alloc_pages_node(-1, GFP_KERNEL, x)
        return (m if p is None else replace(m, blocks=(*m.blocks, p))), f"{p}"
    if k == "free_pages":
        pa.free_pages_pfn(x, 0)
        return replace(m, blocks=tuple(p for p in m.blocks if p != x)), ""
    if k == "spawn":
        pid = ps.spawn()
        mmap_checked(ps, pid, max(x, 1) * USER_LEN, 0, PROT_READ | PROT_WRITE)
        start = ps.mm_of(pid).vmas[0].vm_start
        return replace(m, procs=(*m.procs, (pid, True, False)), created=m.created + 1,
                       pages=m.pages + (x if x > 1 else 0), low=start if x > 1 else 0), str(pid)
    if k == "fault":
        v = ps.mm_of(x).vmas[0]
        pfn = ps.fault(x, v.vm_start, write=bool(v.vm_flags & VM_WRITE))
        return _set_proc(m, x, True, True), str(pfn)
    if k in ("mmap_below_ro", "mmap_below_rw"):
        low = ps.mm_of(x).vmas[0].vm_start
        mmap_checked(ps, x, PAGE_SIZE, low - PAGE_SIZE,
              PROT_READ | (PROT_WRITE if k == "mmap_below_rw" else 0))
        return _sync_proc(ps, replace(m, pages=m.pages + 1, low=min(m.low, low - PAGE_SIZE)),
                          x), hex(low - PAGE_SIZE)
    if k in ("munmap_first", "munmap_last", "munmap_nothing"):
        mm = ps.mm_of(x)
        a = (mm.vmas[0].vm_start if k == "munmap_first" else
             mm.vmas[-1].vm_end - PAGE_SIZE if k == "munmap_last" else 0x10000)
        hit = mm.find_vma(a)
        if hit is not None and hit.vm_end - hit.vm_start > PAGE_SIZE:
            OP_FACTS.add("split")  # __split_vma: part of the VMA stays
        n = munmap_checked(ps, x, a, PAGE_SIZE)
        return _sync_proc(ps, replace(m, pages=m.pages - (k != "munmap_nothing")), x), str(n)
    if k == "fault_outside":
        ps.fault(x, ps.mm_of(x).vmas[0].vm_start - 16 * PAGE_SIZE)
        return m, "returned"
    if k == "munmap":
        v = ps.mm_of(x).vmas[0]
        munmap_checked(ps, x, v.vm_start, v.vm_end - v.vm_start)
        gone = (v.vm_end - v.vm_start) // PAGE_SIZE if m.pages else 0
        return _sync_proc(ps, replace(m, pages=m.pages - gone), x), ""
    if k == "fork":
        child = ps.fork(x)
        _, mapped, faulted = _proc(m, x)
        return replace(m, procs=(*m.procs, (child, mapped, faulted)),
                       created=m.created + 1), str(child)
    if k == "exit":
        ps.exit(x)
        return replace(m, procs=tuple(p for p in m.procs if p[0] != x)), ""
    raise ValueError(f"unknown operation {k}")


# --- state key and checks -------------------------------------------------------------------

StateKey = tuple[Any, ...]


def _tree_key(t: PageTable) -> tuple[Any, ...]:
    return (t.root, t.nr_present, t.freed,
            tuple(sorted((p, t.levels[p], tuple(e)) for p, e in t.tables.items())))


def state_key(sysm: System, m: Model) -> StateKey:
    """Every field a later operation reads (module docstring), and the model."""
    ps = sysm.ps
    mms = tuple((pid, tuple((v.vm_start, v.vm_end, v.vm_flags, v.vm_page_prot, v.anon, v.buffer)
                            for v in mm.vmas), tuple(mm.starts), tuple(sorted(mm.ptes.items())),
                 mm.mmap_base, _tree_key(ps.pgd(mm)))
                for pid, mm in sorted(ps.mms.items()))
    procs = (mms, tuple(sorted((p, tuple(sorted(r))) for p, r in ps.rmap.items())),
             tuple(sorted(ps.anon)),
             tuple(sorted((p, tuple(sorted(c.items()))) for p, c in ps.contents.items())),
             tuple(sorted(ps.exited)), ps.next_pid, ps.next_bid, len(ps.buffers))
    snap = sysm.sa.snapshot()
    return (mcstate.state_key(sysm.pa), snap[:5] + snap[6:], vm_key(sysm.vm),
            _tree_key(sysm.kernel), procs, m)


def digest(key: StateKey) -> bytes:
    """What the search stores of a key: its 128-bit BLAKE2b digest (hash compaction: a run
    of 10^6 states confuses two with probability below 10^-26), so that memory stays at a
    few hundred bytes per state. The bytes hashed are the key's repr, a function of its value
    alone (keys are tuples of ints, strings, bools and None): pickle's bytes also depend on
    which equal strings are the same object (its memo), so an unpickled state, whose owner
    strings are copies, hashed apart from the same state built in place."""
    return hashlib.blake2b(repr(key).encode(), digest_size=16).digest()


def vm_key(v: Vmalloc) -> tuple[Any, ...]:
    """Every field of Vmalloc an operation reads (its constants and the per-mask cache aside);
    the kernel PTEs are in init_mm's tree key."""
    return (tuple((vm.addr, vm.size, vm.flags, vm.caller, vm.requested_size, tuple(vm.pages),
                   vm.pages_area.addr if vm.pages_area else 0, vm.pages_of, vm.vn_id)
                  for vm in v.areas()),
            tuple(sorted(v.lazy.items())), tuple(sorted(v._lazy_vn.items())),
            tuple(v.free.blocks()), v.vmap_lazy_nr, v.nr_vmalloc_pages,
            tuple(sorted((k, tuple(x)) for k, x in v._pmd_index.items())))


def pgtable_violations(sysm: System) -> list[str]:
    """The page-table rules: each tree's invariants, then the cross-tree ones of
    spec/pgtable_state.py (disjoint trees, table pages exactly the pages owned by page
    tables, NR_PAGETABLE = the tables the kernel counts, no process table over unmapped
    space only)."""
    out: list[str] = []
    trees = []
    for name, t in sysm.trees():
        out += [f"{name}: {v}" for v in t.violations()]
        trees.append((name, t.user, {p: t.levels[p] for p in t.table_pfns()}))
    pa = sysm.pa
    owned = [p for p, rec in pa.allocated.items() if rec[2] == OWNER_PGTABLE]

    def nid_of(pfn: int) -> int:
        z = pa.zone_of_pfn(pfn)
        return z.nid if z is not None else 0

    out += pgtable_system_violations(trees, owned, pa.nr_page_table_pages, nid_of)
    for pid, mm in sysm.ps.mms.items():
        out += [f"pid {pid}: {v}" for v in unused_table_violations(
            sysm.ps.pgd(mm).table_spans(), [(v.vm_start, v.vm_end) for v in mm.vmas])]
    return out


def model_violations(sysm: System, m: Model) -> list[str]:
    """The system holds exactly what the model says is live."""
    out = []
    if sorted(sysm.vm.busy) != sorted(m.areas):
        out.append(f"model.areas: live {sorted(sysm.vm.busy)}, expected {sorted(m.areas)}")
    for p in m.blocks:
        rec = sysm.pa.allocated.get(p)
        if rec is None or rec[2] != OWNER_PAGES:
            out.append(f"model.blocks: block {p} is not an alloc_pages block ({rec})")
    if sorted(sysm.ps.mms) != sorted(p for p, _, _ in m.procs):
        out.append(f"model.procs: live {sorted(sysm.ps.mms)}, expected {m.procs}")
    for pid, mapped, faulted in m.procs:
        mm = sysm.ps.mms.get(pid)
        if mm is not None and (bool(mm.vmas) != mapped or bool(mm.ptes) != faulted):
            out.append(f"model.procs: pid {pid} has {len(mm.vmas)} VMAs and {len(mm.ptes)} "
                       f"pages, expected mapped={mapped} faulted={faulted}")
    return out


def state_violations(sysm: System, m: Model) -> tuple[list[str], MmState]:
    """Every state invariant; the abstract mm state (for the step invariant)."""
    mm = abstract_mm(sysm.ps)
    bad = [f"page: {v}" for v in violated(abstract(sysm.pa), fast=True)]
    bad += slab_violations(abstract_slabs(sysm.sa))
    bad += vm_violations(abstract_vm(sysm.vm))
    bad += mm_violations(mm)
    bad += pgtable_violations(sysm)
    bad += model_violations(sysm, m)
    return bad, mm


KERNEL_WITNESSES = ("vmalloc", "vfree", "vfree refused", "vmalloc in hardirq refused",
                    "purge", "kmalloc", "kfree", "alloc_pages", "free_pages",
                    "vmalloc allocating page tables", "vmalloc reusing kernel page tables")
PROCESS_WITNESSES = ("spawn", "fault", "munmap", "exit", "exit refused",
                     "fault outside refused", "fault allocating page tables",
                     "page tables freed at exit")
FORK_WITNESSES = ("fork", "a forked child sharing a page (COW)")
VMA_WITNESSES = ("mmap_below_ro", "mmap_below_rw", "munmap_first", "munmap_last",
                 "munmap_nothing", "mmap merging with a neighbour of the same flags",
                 "munmap splitting a VMA")
WITNESSES = KERNEL_WITNESSES + PROCESS_WITNESSES + FORK_WITNESSES + VMA_WITNESSES


def witnesses(b: VmBounds) -> tuple[str, ...]:
    """The behaviours a clean run within ``b`` must have exercised (else it is vacuous)."""
    return ((KERNEL_WITNESSES if b.max_things else ())
            + (PROCESS_WITNESSES if b.max_procs else ())
            + (FORK_WITNESSES if b.max_procs > 1 else ())
            + (VMA_WITNESSES if b.vma_pages else ()))


# --- the search ---------------------------------------------------------------------------------

@dataclass
class Run:
    """A finished search: the result, and the failing path's operations (if any)."""

    res: Result
    ops: list[VmOp] = field(default_factory=list)


def _coverage(cov: Counter[str], op: VmOp, tables_before: int, sysm: System, m0: Model,
              m1: Model) -> None:
    k = op.kind
    if op.expect is not None:
        cov[{"vmalloc_hardirq": "vmalloc in hardirq refused", "fault_outside":
             "fault outside refused", "vfree": "vfree refused"}.get(k, f"{k} refused")] += 1
        return
    cov[k] += 1
    grew = sum(sysm.pa.nr_page_table_pages) - tables_before
    if k == "vmalloc" and m1 != m0:
        cov["vmalloc allocating page tables" if grew > 0 else
            "vmalloc reusing kernel page tables"] += 1
    if k == "fault" and grew > 0:
        cov["fault allocating page tables"] += 1
    if k == "exit" and grew < 0:
        cov["page tables freed at exit"] += 1
    if k == "fork" and any(len(r) > 1 for r in sysm.ps.rmap.values()):
        cov["a forked child sharing a page (COW)"] += 1
    if k == "mmap_below_rw" and (lambda v: v.vm_end - v.vm_start)(
            sysm.ps.mm_of(op.arg).vmas[0]) > PAGE_SIZE:
        cov["mmap merging with a neighbour of the same flags"] += 1
    if "split" in OP_FACTS:
        cov["munmap splitting a VMA"] += 1


def search(machine: MachineConfig | None = None, bounds: VmBounds = DEFAULT_BOUNDS,
           budget_s: float | None = None,
           progress: Callable[[Result], None] | None = None) -> Run:
    """BFS from boot within ``bounds``; stops at the first violation (shortest path)."""
    machine = machine or vm_machine()
    res = Result(machine=machine.name or "vm", bounds=bounds.text())
    clock = Clock(res, budget_s, progress, time.perf_counter(), time.process_time())
    sysm = System(machine)
    m0 = Model()
    bad, mm0 = state_violations(sysm, m0)
    if bad:
        res.violation = Violation(bad, [])
        return Run(res)
    key0 = digest(state_key(sysm, m0))
    seen: dict[bytes, tuple[bytes | None, VmOp | None]] = {key0: (None, None)}
    frontier: deque[tuple[bytes, bytes, Model, MmState, int]] = deque(
        [(key0, zlib.compress(pickle.dumps(sysm), 1), m0, mm0, 0)])
    res.states = 1

    def path(key: bytes) -> list[VmOp]:
        ops: list[VmOp] = []
        while True:
            parent, op = seen[key]
            if parent is None or op is None:
                return ops[::-1]
            ops.append(op)
            key = parent

    while frontier:
        key, zblob, m, mm_before, depth = frontier.popleft()
        blob = zlib.decompress(zblob)  # states wait compressed: ~5 KB instead of ~35 KB
        res.depth = max(res.depth, depth)
        if bounds.depth is not None and depth >= bounds.depth:
            continue
        cur: System | None = pickle.loads(blob)
        assert cur is not None
        if len(cur.vm.lazy) > bounds.max_lazy:
            continue  # the state constraint: checked, not expanded
        lazy = sorted(cur.vm.lazy)
        tables_before = sum(cur.pa.nr_page_table_pages)
        for op in enabled(lazy, m, bounds):
            sysm = cur if cur is not None else pickle.loads(blob)
            cur = None  # the state's own object serves the first operation
            res.transitions += 1
            try:
                m1, ret = apply(sysm, m, op)
                err: KmemError | None = None
            except KmemError as e:
                err, m1, ret = e, m, ""
            what: list[str] = []
            if op.expect is not None:
                if err is None or not isinstance(err, op.expect):
                    what.append(f"{op.label()}: expected {op.expect.__name__}, got "
                                f"{type(err).__name__ if err else 'success ' + ret}")
                elif pickle.dumps(sysm) != blob and digest(state_key(sysm, m)) != key:
                    what.append(f"{op.label()}: the refused call changed the state")
                else:
                    cur = sysm  # unchanged: it serves the next operation
            elif err is not None:
                what.append(f"{op.label()}: unexpected {type(err).__name__}: {err}")
            what += EFFECT_VIOLATIONS
            if what:
                ops = [*path(key), op]
                res.violation = Violation(what, [o.label() for o in ops], "")
                return _finish(Run(res, ops), clock)
            _coverage(res.coverage, op, tables_before, sysm, m, m1)
            if op.expect is not None:
                continue
            k1 = digest(state_key(sysm, m1))
            if k1 in seen:
                continue
            seen[k1] = (key, op)
            res.states += 1
            bad, mm1 = state_violations(sysm, m1)
            bad += mm_step_violations(mm_before, mm1)
            if bad:
                ops = path(k1)
                res.violation = Violation(bad[:6], [o.label() for o in ops])
                return _finish(Run(res, ops), clock)
            frontier.append((k1, zlib.compress(pickle.dumps(sysm), 1), m1, mm1, depth + 1))
        if clock.out_of_time(len(frontier)):
            break
    else:
        res.exhausted = True
    return _finish(Run(res), clock)


def _finish(run: Run, clock: Clock) -> Run:
    run.res.seconds = time.perf_counter() - clock.t0
    run.res.cpu_seconds = time.process_time() - clock.c0
    return run


def replay(ops: Sequence[VmOp], machine: MachineConfig | None = None) -> list[str]:
    """Run ``ops`` on fresh real classes: the violations met on the way ([] if clean)."""
    sysm = System(machine or vm_machine())
    m = Model()
    for op in ops:
        try:
            m, _ = apply(sysm, m, op)
        except KmemError as e:
            if op.expect is None or not isinstance(e, op.expect):
                return [f"{op.label()}: {type(e).__name__}: {e}"]
        if EFFECT_VIOLATIONS:
            return list(EFFECT_VIOLATIONS)
        bad, _ = state_violations(sysm, m)
        if bad:
            return bad
    return []


# --- seeded bugs ----------------------------------------------------------------------------------

def _unmap_range_keeps_ptes(self: PageTable, va: int, nr: int) -> list[int]:
    """vunmap_range that reports the pages but leaves their PTEs in place."""
    out = []
    for i in range(nr):
        pte = self.lookup(va + i * PAGE_SIZE)
        if pte is not None:
            out.append((pte >> 12) & ((1 << 40) - 1))
    return out


def _free_tables_leaks(self: PageTable) -> None:
    """free_pgtables that frees only the PGD: the PUD/PMD/PTE tables leak."""
    self._release(self.root, count=False)
    self.tables, self.levels, self.freed = {}, {}, True


def _free_pgd_range_keeps(self: PageTable, addr: int, end: int, floor: int,
                          ceiling: int) -> int:
    """munmap without free_pgtables: the emptied tables stay until exit."""
    return 0


def _own_uncounted(self: PageTable, pfn: int, *, count: bool) -> None:
    """A table constructor that forgets NR_PAGETABLE (pagetable_*_ctor without
    lruvec_stat_add_folio)."""
    rec = self.pa.allocated[pfn]
    self.pa.allocated[pfn] = (rec[0], rec[1], OWNER_PGTABLE, rec[3])


def _get_vm_area_node_no_guard(self: Vmalloc, size: int, align: int, flags: int, start: int,
                               end: int, gfp: int, nid: int, caller: str, cpu: int,
                               ctx: Context) -> Any:
    """__get_vm_area_node without ``size += PAGE_SIZE``: the area ends where its pages end,
    so get_vm_area_size() (which still takes the guard page off) maps one page too few."""
    vm = _REAL_GET_VM_AREA(self, size, align, flags, start, end, gfp, nid, caller, cpu, ctx)
    if vm is not None and vm.size > PAGE_SIZE:
        self._unlink(vm)
        self._free_vmap_area(vm.addr + vm.size - PAGE_SIZE, vm.addr + vm.size)
        vm.size -= PAGE_SIZE
        self._link(vm)
    return vm


def _fork_no_wrprotect(vm_flags: int) -> bool:
    """copy_present_pte that never sees a COW mapping: anonymous pages are shared writable."""
    return False


def _remove_range_drops_tail(self: MM, start: int, end: int) -> None:
    """do_vmi_align_munmap that splits only at the start: the part of the last VMA above the
    unmapped range goes with it."""
    for v in self.overlapping(start, end):
        i = self.vmas.index(v)
        del self.vmas[i], self.starts[i]
        if v.vm_start < start:
            self.insert_raw(VMA(v.vm_start, start, v.vm_flags, v.vm_page_prot, v.anon,
                                v.buffer))


def _insert_merges_any_flags(self: MM, vma: VMA) -> VMA:
    """vma_merge_new_range that does not compare vm_flags: a new read-only mapping next to a
    writable one joins it (and becomes writable)."""
    i = bisect.bisect_right(self.starts, vma.vm_start)
    prev = self.vmas[i - 1] if i > 0 else None
    if prev is not None and prev.vm_end == vma.vm_start and prev.buffer < 0 and vma.buffer < 0:
        prev.vm_end = vma.vm_end
        return prev
    nxt = self.vmas[i] if i < len(self.vmas) else None
    if nxt is not None and nxt.vm_start == vma.vm_end and nxt.buffer < 0 and vma.buffer < 0:
        nxt.vm_start = vma.vm_start
        self.starts[i] = vma.vm_start
        return nxt
    return _REAL_MM_INSERT(self, vma)


_REAL_GET_VM_AREA = Vmalloc._get_vm_area_node
_REAL_MM_INSERT = MM.insert


@dataclass(frozen=True)
class VmMutant:
    """A seeded bug: ``owner.attr`` replaced by ``fn`` (a class method or a module global the
    implementation looks up), what is wrong, and the bound whose run must catch it."""

    owner: Any
    attr: str
    what: str
    fn: Any
    bounds: str = "default"


MUTANTS: dict[str, VmMutant] = {
    "pgtable_unmap_range_keeps_ptes": VmMutant(
        PageTable, "unmap_range", "vfree leaves its PTEs mapping the freed pages",
        _unmap_range_keeps_ptes),
    "pgtable_free_tables_leaks": VmMutant(
        PageTable, "free_tables", "process exit frees only the PGD, leaking its page tables",
        _free_tables_leaks),
    "pgtable_munmap_keeps_tables": VmMutant(
        PageTable, "free_pgd_range", "munmap leaves the page tables of the unmapped range "
        "(no free_pgtables)", _free_pgd_range_keeps),
    "pgtable_nr_pagetable_not_counted": VmMutant(
        PageTable, "_own", "page-table pages are not counted in NR_PAGETABLE (PageTables)",
        _own_uncounted),
    "vmalloc_no_guard_page": VmMutant(
        Vmalloc, "_get_vm_area_node", "__get_vm_area_node forgets the guard page",
        _get_vm_area_node_no_guard),
    "fork_no_cow_wrprotect": VmMutant(
        impl_fork, "is_cow_mapping", "fork shares anonymous pages without write-protecting "
        "them (no copy-on-write)", _fork_no_wrprotect, "fork"),
    "munmap_drops_tail": VmMutant(
        MM, "remove_range", "munmap of the start of a VMA unmaps its tail too",
        _remove_range_drops_tail, "vma"),
    "vma_merge_ignores_flags": VmMutant(
        MM, "insert", "mmap merges a new VMA with a neighbour of other vm_flags",
        _insert_merges_any_flags, "vma"),
}
"""Seeded bugs (the catalogue of this checker): name -> what is replaced and where."""


@contextmanager
def mutant(name: str | None) -> Iterator[None]:
    """The implementation with the seeded bug ``name`` (None: unchanged) inside the block."""
    if name is None:
        yield
        return
    mu = MUTANTS[name]
    real = getattr(mu.owner, mu.attr)
    setattr(mu.owner, mu.attr, mu.fn)
    try:
        yield
    finally:
        setattr(mu.owner, mu.attr, real)


# --- make verify rows ---------------------------------------------------------------------------

def extra_checks(long: bool = False) -> list[Any]:
    """The ``make verify`` rows (proofs/checks_extra.py ExtraCheck, registered by
    proofs/registry.py): the clean runs, each exhausting its bound with every witness seen,
    and one row per seeded bug (caught, the real classes clean on the same path)."""
    from proofs.checks_extra import SEEDED_MODELCHECK_BUDGET, ExtraCheck

    mc = (sys.executable, "-m", "proofs.modelcheck_vm")
    runs = [("default", 120.0, 12.0), ("fork", 60.0, 1.0), ("vma", 60.0, 3.0)] + (
        [("long", 900.0, 300.0)] if long else [])
    out = [ExtraCheck(
        f"modelcheck-vm[{name}]", "explicit-state BFS of vmalloc, page tables and processes "
        f"with kmalloc and alloc_pages ({BOUNDS[name].text()}); page, slab, vm, mm and "
        "page-table invariants in every state",
        (*mc, "--bounds", name, "--require-witnesses", "--require-exhaustive", "--budget",
         f"{budget:g}"), timeout_s=budget + 60, budget_s=cost, parse="modelcheck",
        kind="model-check") for name, budget, cost in runs]
    out += [ExtraCheck(
        f"seeded.{name}[modelcheck-vm]", f"the VM model checker must catch: {mu.what}",
        (*mc, "--mutant", name, "--budget", f"{SEEDED_MODELCHECK_BUDGET:g}"),
        timeout_s=SEEDED_MODELCHECK_BUDGET + 60, budget_s=1, parse="seeded-modelcheck",
        kind="seeded") for name, mu in MUTANTS.items()]
    if long:
        out.append(ExtraCheck(
            "hypothesis-vm-statemachine", "Hypothesis state machine of vmalloc, page tables and "
            "processes with pages, slabs and kmalloc (tests/test_vm_state_machine.py), profile "
            "verify", (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                       "tests/test_vm_state_machine.py", "-k", "test_vm_state_machine"),
            env={"KMEMSPEC_SLOW": "1", "HYPOTHESIS_PROFILE": "verify"}, timeout_s=600,
            budget_s=60, parse="statemachine", kind="hypothesis"))
    return out


# --- command line -----------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m proofs.modelcheck_vm", description=__doc__)
    p.add_argument("--max-live", type=int, default=None)
    p.add_argument("--max-things", type=int, default=None)
    p.add_argument("--max-procs", type=int, default=None)
    p.add_argument("--depth", type=int, default=None)
    p.add_argument("--budget", type=float, default=None)
    p.add_argument("--bounds", choices=sorted(BOUNDS), default="default",
                   help="named bounds (default: %(default)s)")
    p.add_argument("--mutant", choices=sorted(MUTANTS))
    p.add_argument("--require-witnesses", action="store_true")
    p.add_argument("--require-exhaustive", action="store_true")
    a = p.parse_args(argv)
    b = BOUNDS[a.bounds]
    b = replace(b, max_live=a.max_live if a.max_live is not None else b.max_live,
                max_procs=a.max_procs if a.max_procs is not None else b.max_procs,
                max_things=a.max_things if a.max_things is not None else b.max_things,
                depth=a.depth)

    def prog(r: Result) -> None:
        print(f"... {r.states} states, {r.transitions} transitions, depth {r.depth}",
              file=sys.stderr, flush=True)

    if a.mutant and a.bounds == "default" and MUTANTS[a.mutant].bounds != "default":
        b = replace(BOUNDS[MUTANTS[a.mutant].bounds], depth=a.depth)  # the bug's own bound
    with mutant(a.mutant):
        run = search(bounds=b, budget_s=a.budget, progress=prog)

    def replay_line(_: list[Any]) -> str:
        bad = replay(run.ops)
        return REPLAY + (f"violates {bad[0]}" if bad else f"clean ({len(run.ops)} steps)")

    missing = [w for w in witnesses(b) if not run.res.coverage[w]]
    return print_outcome(run.res, replay_line if a.mutant else None, missing,
                         require_witnesses=a.require_witnesses,
                         require_exhaustive=a.require_exhaustive)


if __name__ == "__main__":
    sys.exit(main())
