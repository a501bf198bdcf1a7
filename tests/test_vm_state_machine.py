"""A Hypothesis state machine over virtual memory together with pages, slabs and kmalloc: one
system of the real classes (proofs/modelcheck_vm.py's System: PageAllocator, SlabAllocator,
init_mm's PageTable, Vmalloc, Processes), every operation valid and invalid, in process and
atomic contexts. After every step: the page, slab, vmalloc, process and page-table invariants
(proofs.modelcheck_vm.state_violations: spec/invariants.py, spec/slab_state.py,
spec/vm_state.py, spec/mm_state.py, spec/pgtable_state.py and the cross-tree page-table
rules), the step invariant mm.unmovable_stay, the effect of every mmap and munmap
(spec/vma_rules.py: whole regions, one page of a region, MAP_FIXED below a region with the
same or other flags, nothing at all), the test's own model (live areas, objects,
blocks and processes; every page of every area is what vmalloc_to_pfn and the kernel page
tables say), and after a refused call the whole state (the model checker's complete key)
unchanged. Profiles: tests/hypothesis_profiles.py (quick in ``make test``, ``fuzz`` runs
open-ended). ``KMEMSPEC_SEEDED_VM_BUG=<name>`` runs it with a seeded bug of
proofs/modelcheck_vm.py's MUTANTS."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from impl.machine import MachineConfig
from impl.mmap import PROT_READ, PROT_WRITE
from impl.pgtable import pte_pfn
from proofs.modelcheck_vm import (
    EFFECT_VIOLATIONS,
    MUTANTS,
    Model,
    System,
    mmap_checked,
    munmap_checked,
    mutant,
    pgtable_violations,
    state_key,
)
from proofs.modelcheck_vm import state_violations as system_violations
from spec.context import Context
from spec.errors import (
    MmError,
    NoSuchProcessError,
    SegfaultError,
    SleepInAtomicError,
    VfreeError,
)
from spec.gfp import GFP_ATOMIC, GFP_KERNEL
from spec.layout import PAGE_SIZE
from spec.mm_state import MmState, mm_step_violations
from tests import hypothesis_profiles

SEEDED_ENV = "KMEMSPEC_SEEDED_VM_BUG"
RULE_PREFIX = "kmemspec-rule:"
CTXS = st.sampled_from([Context.PROCESS, Context.PROCESS, Context.PROCESS, Context.HARDIRQ,
                        Context.SPINLOCK])
VSIZES = st.sampled_from([0, 1, 4096, 4097, 8192, 12288, 65536])


def machine() -> MachineConfig:
    """One node, one CPU, 256 pages: memory runs out within a program, so the failure paths
    (vmalloc NULL, ENOMEM faults) are taken too."""
    return MachineConfig.flat(256, nodes=1, max_order=4, min_pages=4, name="vm-flat256")


class VmMachine(RuleBasedStateMachine):
    sysm: System
    areas: dict[int, int]  # vmalloc address -> size requested
    objs: list[int]
    blocks: list[tuple[int, int]]  # (pfn, order)
    procs: dict[int, list[tuple[int, int]]]  # pid -> its mmap regions (start, pages)
    last: MmState | None

    @initialize()
    def boot(self) -> None:
        self.sysm = System(machine())
        self.areas, self.objs, self.blocks, self.procs = {}, [], [], {}
        self.last = None

    def _refused(self, fn: Any, exc: type[Exception]) -> None:
        """``fn`` must raise ``exc`` and change nothing."""
        before = state_key(self.sysm, Model())
        with pytest.raises(exc):
            fn()
        assert state_key(self.sysm, Model()) == before, f"{exc.__name__}: state changed"

    # --- vmalloc ---------------------------------------------------------------------------
    @rule(size=VSIZES, ctx=CTXS)
    def vmalloc(self, size: int, ctx: Context) -> None:
        vm = self.sysm.vm
        if size == 0:  # WARN_ON_ONCE(!size) -> NULL before anything else, in any context
            before = state_key(self.sysm, Model())
            assert vm.vmalloc(0, ctx=ctx) is None
            assert state_key(self.sysm, Model()) == before
            return
        if ctx is not Context.PROCESS:
            self._refused(lambda: vm.vmalloc(size, ctx=ctx), SleepInAtomicError)
            return
        a = vm.vmalloc(size)
        if size == 0:
            assert a is None
        if a is not None:
            assert a not in self.areas
            self.areas[a] = size

    @precondition(lambda self: self.areas)
    @rule(i=st.integers(0, 7))
    def vfree(self, i: int) -> None:
        a = sorted(self.areas)[i % len(self.areas)]
        self.sysm.vm.vfree(a)
        del self.areas[a]

    @rule(kind=st.sampled_from(["guard", "lazy", "direct", "user"]), i=st.integers(0, 7))
    def vfree_bad(self, kind: str, i: int) -> None:
        vm = self.sysm.vm
        if kind == "guard" and self.areas:
            a = sorted(self.areas)[i % len(self.areas)]
            addr = a + vm.find_vm_area(a).size - PAGE_SIZE  # type: ignore[union-attr]
        elif kind == "lazy" and vm.lazy:
            addr = sorted(vm.lazy)[i % len(vm.lazy)]
        elif kind == "direct":
            addr = self.sysm.pa.pfn_to_virt(i)
        else:
            addr = 0x400000
        self._refused(lambda: vm.vfree(addr), VfreeError)

    @rule()
    def purge(self) -> None:
        self.sysm.vm.purge_vmap_area_lazy()

    # --- kmalloc and pages -------------------------------------------------------------------
    @rule(size=st.sampled_from([8, 64, 100, 2048, 8192, 20000]), atomic=st.booleans())
    def kmalloc(self, size: int, atomic: bool) -> None:
        o = self.sysm.sa.kmalloc(size, GFP_ATOMIC if atomic else GFP_KERNEL)
        if o is not None:
            self.objs.append(o)

    @precondition(lambda self: self.objs)
    @rule(i=st.integers(0, 15))
    def kfree(self, i: int) -> None:
        self.sysm.sa.kfree(self.objs.pop(i % len(self.objs)))

    @rule(order=st.integers(0, 2))
    def alloc_pages(self, order: int) -> None:
        p = self.sysm.pa.alloc_pages_node(-1, GFP_KERNEL, order)
        if p is not None:
            self.blocks.append((p, order))

    @precondition(lambda self: self.blocks)
    @rule(i=st.integers(0, 15))
    def free_pages(self, i: int) -> None:
        p, order = self.blocks.pop(i % len(self.blocks))
        self.sysm.pa.free_pages_pfn(p, order)

    # --- processes -------------------------------------------------------------------------------
    def _pid(self, i: int) -> int:
        pids = sorted(self.procs)
        return pids[i % len(pids)]

    @rule(n=st.integers(1, 4))
    def spawn(self, n: int) -> None:
        try:
            pid = self.sysm.ps.spawn()
        except MmError:
            return  # no page for the PGD: -ENOMEM, nothing created
        EFFECT_VIOLATIONS.clear()
        start = mmap_checked(self.sysm.ps, pid, n * PAGE_SIZE, 0, PROT_READ | PROT_WRITE)
        self.procs[pid] = [(start, n)]

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 7), j=st.integers(0, 7), write=st.booleans())
    def fault(self, i: int, j: int, write: bool) -> None:
        pid = self._pid(i)
        regions = self.procs[pid]
        if not regions:
            return
        start, n = regions[j % len(regions)]
        va = start + (j % n) * PAGE_SIZE
        try:
            pfn = self.sysm.ps.fault(pid, va, write=write)
        except MmError:
            return  # -ENOMEM (VM_FAULT_OOM): the state is checked by the invariants
        assert self.sysm.ps.resolve(pid, va) == pfn

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 7))
    def fault_outside(self, i: int) -> None:
        pid = self._pid(i)
        self._refused(lambda: self.sysm.ps.fault(pid, 0x10000), SegfaultError)

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 7), j=st.integers(0, 7))
    def munmap(self, i: int, j: int) -> None:
        pid = self._pid(i)
        regions = self.procs[pid]
        if not regions:
            return
        start, n = regions.pop(j % len(regions))
        EFFECT_VIOLATIONS.clear()
        munmap_checked(self.sysm.ps, pid, start, n * PAGE_SIZE)

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 7), j=st.integers(0, 7), last=st.booleans())
    def munmap_one_page(self, i: int, j: int, last: bool) -> None:
        """munmap of a region's first or last page: __split_vma keeps the rest."""
        pid = self._pid(i)
        regions = self.procs[pid]
        if not regions:
            return
        k = j % len(regions)
        start, n = regions[k]
        addr = start + (n - 1) * PAGE_SIZE if last else start
        EFFECT_VIOLATIONS.clear()
        munmap_checked(self.sysm.ps, pid, addr, PAGE_SIZE)
        if n == 1:
            del regions[k]
        else:
            regions[k] = (start, n - 1) if last else (start + PAGE_SIZE, n - 1)

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 7), j=st.integers(0, 7), writable=st.booleans())
    def mmap_fixed_below(self, i: int, j: int, writable: bool) -> None:
        """MAP_FIXED of one page right below a region, read-only or read-write: a neighbour
        of other flags must not be merged with (spec/vma_rules.py mm.mmap_effect)."""
        pid = self._pid(i)
        regions = self.procs[pid]
        if not regions:
            return
        start, _ = regions[j % len(regions)]
        below = start - PAGE_SIZE
        if self.sysm.ps.mm_of(pid).find_vma(below) is not None:
            return  # MAP_FIXED would replace another region: not modelled here
        EFFECT_VIOLATIONS.clear()
        mmap_checked(self.sysm.ps, pid, PAGE_SIZE, below,
                     PROT_READ | (PROT_WRITE if writable else 0))
        regions.append((below, 1))

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 7))
    def munmap_nothing(self, i: int) -> None:
        """munmap where nothing is mapped: 0, and nothing changes (Linux returns 0)."""
        pid = self._pid(i)
        before = state_key(self.sysm, Model())
        assert self.sysm.ps.munmap(pid, 0x10000, PAGE_SIZE) == 0
        assert state_key(self.sysm, Model()) == before

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 7))
    def fork(self, i: int) -> None:
        pid = self._pid(i)
        try:
            child = self.sysm.ps.fork(pid)
        except MmError:
            return  # the child could not be set up; the parent is untouched
        self.procs[child] = list(self.procs[pid])

    @precondition(lambda self: self.procs)
    @rule(i=st.integers(0, 7))
    def exit(self, i: int) -> None:
        pid = self._pid(i)
        self.sysm.ps.exit(pid)
        del self.procs[pid]

    @rule()
    def exit_missing(self) -> None:
        self._refused(lambda: self.sysm.ps.exit(10_000), NoSuchProcessError)

    # --- after every step ------------------------------------------------------------------
    @invariant()
    def invariants_hold(self) -> None:
        s = self.sysm
        model = Model(areas=tuple(self.areas), objs=tuple(self.objs),
                      blocks=tuple(p for p, _ in self.blocks))
        bad, mm = system_violations(s, model)
        bad = list(EFFECT_VIOLATIONS) + bad  # the last mmap/munmap's effect (vma_rules)
        EFFECT_VIOLATIONS.clear()
        bad = [b for b in bad if not b.startswith("model.procs")]  # the checker's 1-VMA model
        if self.last is not None:
            bad += mm_step_violations(self.last, mm)
        self.last = mm
        assert sorted(s.ps.mms) == sorted(self.procs), "processes differ from the model"
        for a in self.areas:
            vm = s.vm.find_vm_area(a)
            assert vm is not None and vm.addr == a
            for k, pfn in enumerate(vm.pages):
                va = a + k * PAGE_SIZE
                pte = s.kernel.lookup(va)
                if pte is None or pte_pfn(pte) != pfn or s.vm.vmalloc_to_pfn(va) != pfn:
                    bad.append(f"vm.walk: page {k} of {a:#x} is not mapped to pfn {pfn}")
        if bad:
            print(RULE_PREFIX, bad[0].split(":")[0])
            print(bad[0])
        assert bad == [], bad
        assert pgtable_violations(s) == []


def test_vm_state_machine() -> None:
    name = os.environ.get(SEEDED_ENV)
    with mutant(name):
        hypothesis_profiles.run_machine(VmMachine)


@pytest.mark.parametrize("bug", sorted(MUTANTS))
def test_seeded_bug_is_caught(bug: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each seeded page-table bug fails the state machine with a rule line."""
    # more examples than the quick profile: the run stops at the first failure, and what a
    # derandomized run draws depends on the modules loaded beside it (Hypothesis mines
    # constants from loaded source), so a test process full of other tests draws differently
    with mutant(bug), pytest.raises(AssertionError):
        hypothesis_profiles.run_machine(VmMachine, max_examples=300, shrink=0.5)
    out = capsys.readouterr().out
    assert RULE_PREFIX in out
