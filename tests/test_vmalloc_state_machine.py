"""A Hypothesis state machine for vmalloc together with page allocations and kmalloc, on a
small machine and a small vmalloc range (so the range fills, the lazy purge runs and page
allocations fail): vmalloc/vzalloc/vmalloc_node of random sizes in every context, vfree of
live areas, bad vfree addresses, purges, alloc_pages/free_pages. After every step: every
vmalloc invariant (spec/vm_state.py), the page allocator's (spec/invariants.py), the test's
own model (every live area answers vmalloc_to_pfn with its pages, no pfn in two live things),
and a call that raised left the whole state unchanged. Profiles: tests/hypothesis_profiles.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from impl.abstraction import abstract
from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from impl.vmalloc import Vmalloc, abstract_vm
from spec.context import Context
from spec.errors import KmemError, SleepInAtomicError
from spec.gfp import GFP_KERNEL, GFP_NOFS
from spec.invariants import violated
from spec.layout import PAGE_SIZE, VMALLOC_START
from spec.vm_state import vm_violations
from tests import hypothesis_profiles

P = PAGE_SIZE


def state_of(v: Vmalloc) -> tuple[Any, ...]:
    pa = v.pages
    return (v.snapshot(), sorted(v.pgtable.entries()), dict(pa.allocated),
            [z.free_pages for z in pa.zones], list(pa.nr_page_table_pages), dict(v._lazy_vn))


class VmallocMachine(RuleBasedStateMachine):
    """vmalloc over 2 nodes of 256 pages each and a vmalloc range of 96 pages."""

    @initialize(two_nodes=st.booleans())
    def boot(self, two_nodes: bool) -> None:
        m = dataclasses.replace(MachineConfig.flat(256, nodes=2 if two_nodes else 1),
                                vmalloc_end=VMALLOC_START + 96 * P)
        self.v = Vmalloc(PageAllocator(m))
        self.live: dict[int, list[int]] = {}
        self.blocks: dict[int, int] = {}  # alloc_pages blocks: pfn -> order

    @rule(pages=st.integers(0, 20), extra=st.integers(0, P - 1),
          ctx=st.sampled_from([Context.PROCESS] * 4 + [Context.SPINLOCK, Context.HARDIRQ]),
          kind=st.sampled_from(["vmalloc", "vzalloc", "node0", "nofs"]),
          cpu=st.integers(0, 1))
    def vmalloc(self, pages: int, extra: int, ctx: Context, kind: str, cpu: int) -> None:
        v = self.v
        cpu = min(cpu, len(v.pages.cpu_node) - 1)
        size = pages * P + (extra if pages else 0)
        before = state_of(v)
        try:
            if kind == "vmalloc":
                a = v.vmalloc(size, cpu=cpu, ctx=ctx)
            elif kind == "vzalloc":
                a = v.vzalloc(size, cpu=cpu, ctx=ctx)
            elif kind == "node0":
                a = v.vmalloc_node(size, 0, cpu=cpu, ctx=ctx)
            else:
                a = v.vmalloc(size, gfp=GFP_NOFS, cpu=cpu, ctx=ctx)
        except SleepInAtomicError:
            assert ctx is not Context.PROCESS and size, "a process-context vmalloc raised"
            assert state_of(v) == before, "an atomic vmalloc changed the state"
            return
        v.pages.drain_effects()
        assert ctx is Context.PROCESS or size == 0, "vmalloc ran in atomic context"
        if a is None:
            if size:  # a failure gives back everything but the lazy areas it purged
                after = state_of(v)
                assert after[0][0] == before[0][0], "a failed vmalloc changed the live areas"
            return
        vm = v.busy[a]
        assert vm.nr_pages == -(-size // P) and a % P == 0
        self.live[a] = list(vm.pages)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def vfree(self, data: st.DataObject) -> None:
        a = data.draw(st.sampled_from(sorted(self.live)))
        self.v.vfree(a)
        del self.live[a]

    @rule(off=st.integers(-2, 100), kind=st.sampled_from(["vm", "dm"]))
    def bad_vfree(self, off: int, kind: str) -> None:
        v = self.v
        addr = (v.vmalloc_start if kind == "vm" else v.pages.page_offset) + off * P
        if addr in self.live:
            return
        before = state_of(v)
        try:
            v.vfree(addr)
        except KmemError:
            assert state_of(v) == before, "a refused vfree changed the state"
            return
        raise AssertionError(f"vfree({addr:#x}) of no live area was accepted")

    @rule()
    def purge(self) -> None:
        self.v.purge_vmap_area_lazy()

    @rule(order=st.integers(0, 3))
    def alloc_pages(self, order: int) -> None:
        pfn = self.v.pages.alloc_pages_node(-1, GFP_KERNEL, order)
        self.v.pages.drain_effects()
        if pfn is not None:
            self.blocks[pfn] = order

    @precondition(lambda self: self.blocks)
    @rule(data=st.data())
    def free_pages(self, data: st.DataObject) -> None:
        pfn = data.draw(st.sampled_from(sorted(self.blocks)))
        self.v.pages.free_pages_pfn(pfn, self.blocks.pop(pfn))

    @invariant()
    def invariants_hold(self) -> None:
        if not hasattr(self, "v"):
            return
        v = self.v
        assert vm_violations(abstract_vm(v)) == []
        assert v.free.check() == []
        assert violated(abstract(v.pages), fast=True) == []
        owner: dict[int, int] = {}
        for a, pfns in self.live.items():
            for i, p in enumerate(pfns):
                assert v.vmalloc_to_pfn(a + i * P) == p
                assert p not in owner
                owner[p] = a
        for pfn, order in self.blocks.items():
            for p in range(pfn, pfn + (1 << order)):
                assert p not in owner, "a page block overlaps a vmalloc page"


def test_vmalloc_state_machine() -> None:
    hypothesis_profiles.run_machine(VmallocMachine)
