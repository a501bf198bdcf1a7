"""spec/vm_state.py: every vmalloc invariant holds on reachable states and catches a state
corrupted in the way it forbids (both on the abstract state and through the implementation)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from impl.machine import MachineConfig
from impl.page_alloc import OWNER_PAGES, PageAllocator
from impl.pgtable import OWNER_PGTABLE, PAGE_KERNEL
from impl.vmalloc import Vmalloc, VmStruct, abstract_vm
from spec.layout import PAGE_SIZE
from spec.vm_state import VM_INVARIANTS, VmArea, VmState, mapped_size, vm_violations

P = PAGE_SIZE


def busy_machine() -> Vmalloc:
    v = Vmalloc(PageAllocator(MachineConfig.flat(1 << 14, nodes=2)))
    rnd = random.Random(3)
    live: list[int] = []
    for i in range(60):
        if i == 40:
            v.purge_vmap_area_lazy()  # holes in the free tree; later frees stay lazy
        if live and rnd.random() < 0.35:
            v.vfree(live.pop(rnd.randrange(len(live))))
        else:
            a = v.vmalloc(rnd.choice([1, 2, 5, 16, 600]) * P, cpu=rnd.choice([0, 1]))
            assert a is not None
            live.append(a)
        assert vm_violations(abstract_vm(v)) == []
    return v


@pytest.fixture(scope="module")
def state() -> VmState:
    return abstract_vm(busy_machine())


def names(st: VmState) -> set[str]:
    return {msg.split(":")[0] for msg in vm_violations(st)}


def test_reachable_states_satisfy_every_invariant(state: VmState) -> None:
    assert state.areas and state.lazy and len(state.free) > 1 and state.table_pfns
    assert vm_violations(state) == []


def _area(st: VmState, i: int = 0) -> VmArea:
    return st.areas[i]


def test_area_shape_catches_misaligned_and_guardless_areas(state: VmState) -> None:
    a = _area(state)
    bad = dataclasses.replace(state, areas=(a._replace(start=a.start + 8), *state.areas[1:]))
    assert "vm.area_shape" in names(bad)
    bad = dataclasses.replace(state, areas=(a._replace(size=a.size - P), *state.areas[1:]))
    assert "vm.area_shape" in names(bad)  # the guard page is missing
    # the guard page taken out of the request: size and pages agree, the request does not
    assert a.requested > 0 and mapped_size(a) == len(a.pfns) * P
    short = a._replace(size=a.size - P, pfns=a.pfns[:-1])
    bad = dataclasses.replace(state, areas=(short, *state.areas[1:]))
    assert any("for a request of" in m for m in vm_violations(bad))
    last = max(state.areas, key=lambda x: x.start)
    out = last._replace(start=state.vmalloc_end - last.size)
    bad = dataclasses.replace(state, areas=(*[x for x in state.areas if x != last], out))
    assert "vm.area_shape" in names(bad)


def test_tiling_catches_overlap_leaks_and_uncoalesced_blocks(state: VmState) -> None:
    s, e = state.free[0]
    bad = dataclasses.replace(state, free=((s, e + P), *state.free[1:]))
    assert "vm.tiling" in names(bad)  # overlaps what follows
    bad = dataclasses.replace(state, free=state.free[1:])
    assert "vm.tiling" in names(bad)  # address space leaked
    bad = dataclasses.replace(state, free=((s, s + P), (s + P, e), *state.free[1:]))
    assert names(bad) == {"vm.tiling"}  # two touching free blocks
    bad = dataclasses.replace(state, lazy=state.lazy[1:])
    assert "vm.tiling" in names(bad)


def test_contiguous_catches_a_hole_a_swap_and_a_mapped_guard(state: VmState) -> None:
    a = next(x for x in state.areas if len(x.pfns) >= 2)
    maps = dict(state.mappings)
    del maps[a.start + P]
    assert "vm.contiguous" in names(dataclasses.replace(state, mappings=tuple(maps.items())))
    maps = dict(state.mappings)
    maps[a.start], maps[a.start + P] = maps[a.start + P], maps[a.start]
    assert "vm.contiguous" in names(dataclasses.replace(state, mappings=tuple(maps.items())))
    extra = sorted({**dict(state.mappings), a.start + a.size - P: 12345}.items())
    assert "vm.contiguous" in names(dataclasses.replace(state, mappings=tuple(extra)))


def test_pages_owned_catches_foreign_shared_leaked_pages_and_bad_counters(
        state: VmState) -> None:
    a = _area(state)
    alloc = {p: (o, w) for p, o, w in state.allocated}
    alloc[a.pfns[0]] = (0, OWNER_PAGES)
    bad = dataclasses.replace(state, allocated=tuple(sorted((p, o, w) for p, (o, w)
                                                            in alloc.items())))
    assert "vm.pages_owned" in names(bad)
    b = state.areas[1]
    shared = b._replace(pfns=(a.pfns[0], *b.pfns[1:]))
    bad = dataclasses.replace(state, areas=(a, shared, *state.areas[2:]))
    assert "vm.pages_owned" in names(bad)
    alloc = {p: (o, w) for p, o, w in state.allocated}
    alloc[max(alloc) + 1] = (0, "vmalloc")
    bad = dataclasses.replace(state, allocated=tuple(sorted((p, o, w) for p, (o, w)
                                                            in alloc.items())))
    assert "vm.pages_owned" in names(bad)  # a vmalloc page in no area: leaked
    assert "vm.pages_owned" in names(dataclasses.replace(
        state, nr_vmalloc_pages=state.nr_vmalloc_pages + 1))
    assert "vm.pages_owned" in names(dataclasses.replace(state, vmap_lazy_nr=0))


def test_no_alias_catches_a_page_mapped_twice_and_a_stale_pte(state: VmState) -> None:
    va, pfn = state.mappings[0]
    lazy_start = state.lazy[0][0]
    twice = tuple(sorted((*state.mappings, (lazy_start, pfn))))
    assert "vm.no_alias" in names(dataclasses.replace(state, mappings=twice))
    stale = tuple(sorted((*state.mappings, (lazy_start, 999_999))))
    assert "vm.no_alias" in names(dataclasses.replace(state, mappings=stale))
    assert va


def test_pgtable_pages_catches_a_table_that_is_free_or_an_area_page(state: VmState) -> None:
    t = min(state.table_pfns)
    alloc = tuple(x for x in state.allocated if x[0] != t)
    assert "vm.pgtable_pages" in names(dataclasses.replace(state, allocated=alloc))
    a = _area(state)
    bad = dataclasses.replace(state, table_pfns=state.table_pfns | {a.pfns[0]})
    assert "vm.pgtable_pages" in names(bad)


def test_every_invariant_is_exercised() -> None:
    assert set(VM_INVARIANTS) == {"vm.area_shape", "vm.tiling", "vm.contiguous",
                                  "vm.pages_owned", "vm.no_alias", "vm.pgtable_pages"}
    for inv in VM_INVARIANTS.values():
        assert inv.meaning and "mm/" in inv.kernel_ref


# --- corruption through the implementation --------------------------------------------------------
def test_implementation_corruptions_are_caught() -> None:
    v = busy_machine()
    vm: VmStruct = next(x for x in v.areas() if x.nr_pages >= 2)
    # a PTE cleared behind vmalloc's back
    pfn = v.pgtable.unmap_page(vm.addr)
    assert "vm.contiguous" in names(abstract_vm(v))
    v.pgtable.map_page(vm.addr, pfn, PAGE_KERNEL, gfp=0)
    assert vm_violations(abstract_vm(v)) == []
    # a page-table page handed to someone else
    t = min(v.pgtable.table_pfns())
    rec = v.pages.allocated[t]
    v.pages.allocated[t] = (rec[0], rec[1], OWNER_PAGES, rec[3])
    assert "vm.pgtable_pages" in names(abstract_vm(v))
    v.pages.allocated[t] = (rec[0], rec[1], OWNER_PGTABLE, rec[3])
    # a free block lost from the tree
    s, _e = next(iter(v.free.blocks()))
    v.free.remove(s)
    assert "vm.tiling" in names(abstract_vm(v))
