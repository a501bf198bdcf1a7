"""The shared buffer of issue 7: a GFP_USER kernel buffer mapped into two processes with
vm_insert_page; its pages go back to the buddy allocator only when the last mapping and the
kernel's own reference are gone, in any order."""

from __future__ import annotations

from collections.abc import Callable
from itertools import permutations

import pytest

from impl.fork import Processes, abstract_mm
from impl.migrate import migrate_page
from impl.mmap import VM_MIXEDMAP, VM_SHARED
from impl.page_alloc import PageAllocator
from impl.pgtable import _PAGE_RW
from spec.errors import BadPageMapError, DoubleFreeError, KmemError, MigrationError
from spec.gfp import GFP_USER, MIGRATE_UNMOVABLE, gfp_migratetype
from spec.layout import PAGE_SIZE
from spec.mm_state import mm_step_violations, mm_violations
from tests.test_process import check, machine, mm_snapshot

P = PAGE_SIZE


def setup() -> tuple[Processes, int, int, int, int, int]:
    ps = Processes(machine())
    p1, p2 = ps.spawn(), ps.spawn()
    bid = ps.alloc_shared_buffer(4)
    assert bid is not None
    v1 = ps.mmap_buffer(p1, bid)
    v2 = ps.mmap_buffer(p2, bid)
    return ps, p1, p2, bid, v1, v2


def test_the_scenario() -> None:
    pa: PageAllocator
    ps, p1, p2, bid, v1, v2 = setup()
    pa = ps.pa
    pfns = list(ps.buffers[bid].pfns)
    for p in pfns:
        order, _, _, mt = pa.allocated[p]
        assert order == 0 and mt == gfp_migratetype(GFP_USER) == MIGRATE_UNMOVABLE
        assert pa.page_count(p) == 3 and ps.mapcount(p) == 2  # kernel + two mappings
    # both user addresses resolve to the same pfns, writable, VM_SHARED|VM_MIXEDMAP
    for i, p in enumerate(pfns):
        assert ps.resolve(p1, v1 + i * P) == ps.resolve(p2, v2 + i * P) == p
        assert ps.pte_writable(ps.mm_of(p1), v1 + i * P)
    vma = ps.mm_of(p1).find_vma(v1)
    assert vma is not None and vma.vm_flags & (VM_SHARED | VM_MIXEDMAP) == VM_SHARED | VM_MIXEDMAP
    assert ps.maps(p1).rstrip().endswith(f"/dev/shared_buffer{bid}")
    # a write through P1 is visible in P2 (no copy-on-write in a shared mapping)
    ps.write(p1, v1 + 2 * P + 16, 0xCAFE)
    assert ps.read(p2, v2 + 2 * P + 16) == 0xCAFE
    ps.write(p2, v2 + 8, 7)
    assert ps.read(p1, v1 + 8) == 7
    assert ps.stats["cow_copies"] == 0
    st0 = check(ps)
    # the kernel drops its reference: nothing is freed, the mappings hold the pages
    free = pa.nr_free_pages()
    assert ps.free_shared_buffer(bid) == 0
    assert pa.nr_free_pages() == free and [pa.page_count(p) for p in pfns] == [2] * 4
    st1 = check(ps)
    assert mm_step_violations(st0, st1) == []
    # P1 exits: its page tables go, the buffer pages stay for P2
    ps.exit(p1)
    assert [pa.page_count(p) for p in pfns] == [1] * 4 and ps.read(p2, v2 + 2 * P + 16) == 0xCAFE
    check(ps)
    # P2 exits: the last reference of every page is gone, back to the buddy allocator
    ps.exit(p2)
    assert [pa.page_count(p) for p in pfns] == [0] * 4
    assert ps.buffers[bid].pfns == [-1] * 4 and pa.allocated == {}
    assert pa.nr_free_pages() == 512
    check(ps)


@pytest.mark.parametrize("order", list(permutations(["kernel", "p1", "p2"])))
def test_pages_freed_only_with_the_last_reference(order: tuple[str, ...]) -> None:
    ps, p1, p2, bid, _, _ = setup()
    pfns = list(ps.buffers[bid].pfns)
    for k, who in enumerate(order):
        if who == "kernel":
            ps.free_shared_buffer(bid)
        else:
            ps.exit(p1 if who == "p1" else p2)
        left = 2 - k
        assert [ps.pa.page_count(p) for p in pfns] == [left] * 4
        check(ps)
    assert ps.pa.nr_free_pages() == 512


def test_munmap_drops_one_mapping() -> None:
    ps, p1, p2, bid, v1, v2 = setup()
    pfn = ps.buffers[bid].pfns[1]
    ps.munmap(p1, v1 + P, P)
    assert ps.pa.page_count(pfn) == 2 and ps.resolve(p1, v1 + P) is None
    assert ps.resolve(p2, v2 + P) == pfn
    check(ps)


def test_fork_shares_the_buffer_writable() -> None:
    """copy_present_pte of a shared mapping: a reference for the child, no write-protect."""
    ps, p1, _p2, bid, v1, _ = setup()
    child = ps.fork(p1)
    pfn = ps.buffers[bid].pfns[0]
    assert ps.pa.page_count(pfn) == 4 and ps.pte_writable(ps.mm_of(child), v1)
    assert ps.pgd(ps.mm_of(p1)).pte_of(v1) & _PAGE_RW
    ps.write(child, v1, 3)
    assert ps.resolve(child, v1) == pfn and ps.read(p1, v1) == 3
    check(ps)


def test_buffer_pages_never_migrate() -> None:
    ps, p1, _p2, bid, v1, _ = setup()
    pfn = ps.buffers[bid].pfns[0]
    before = mm_snapshot(ps)
    with pytest.raises(MigrationError, match="unmovable: a shared buffer page"):
        migrate_page(ps, pfn)
    assert mm_snapshot(ps) == before
    assert ps.resolve(p1, v1) == pfn


def test_bad_buffer_operations_leave_state_unchanged() -> None:
    ps, p1, _p2, bid, _, _ = setup()
    ps.free_shared_buffer(bid)
    cases: list[tuple[Callable[[], object], type[KmemError], str]] = [
        (lambda: ps.free_shared_buffer(bid), DoubleFreeError, "already dropped"),
        (lambda: ps.mmap_buffer(p1, bid), BadPageMapError, "already dropped"),
        (lambda: ps.mmap_buffer(p1, 42), BadPageMapError, "does not exist"),
    ]
    for op, exc, msg in cases:
        before = mm_snapshot(ps)
        with pytest.raises(exc, match=msg):
            op()
        assert mm_snapshot(ps) == before


def test_invariant_catches_a_moved_or_leaked_buffer_page() -> None:
    ps, _p1, _p2, bid, _, _ = setup()
    st = abstract_mm(ps)
    assert mm_violations(st) == []
    b = ps.buffers[bid]
    # a buggy migration that moved an unmovable buffer page: the step check sees it
    old = b.pfns[0]
    b.pfns[0] = old + 100
    moved = abstract_mm(ps)
    assert any(v.startswith("mm.unmovable_stay") for v in mm_step_violations(st, moved))
    b.pfns[0] = old
    # the kernel "dropped" its reference without put_page: the counts disagree
    b.kernel_ref = False
    assert any(v.startswith("mm.shared_buffer") for v in mm_violations(abstract_mm(ps)))


def test_vm_insert_page_into_a_private_mapping_copies_on_write() -> None:
    """A kernel page inserted into a private VMA is mapped read-only (PAGE_COPY): a write
    copies it to a new anonymous page (wp_page_copy, the page is not anonymous so never
    reused) and drops the mapping's reference on the kernel page."""
    ps = Processes(machine())
    pid = ps.spawn()
    va = ps.mmap(pid, 2 * P)
    bid = ps.alloc_shared_buffer(1)
    assert bid is not None
    kpfn = ps.buffers[bid].pfns[0]
    ps.vm_insert_page(pid, va, kpfn)
    assert ps.pa.page_count(kpfn) == 2 and not ps.pte_writable(ps.mm_of(pid), va)
    check(ps)
    new = ps.write(pid, va + 8, 5)
    assert new != kpfn and new in ps.anon and ps.pa.page_count(kpfn) == 1
    assert ps.fault(pid, va + P) in ps.anon  # the rest of the VMA is still anonymous memory
    check(ps)
    ps.exit(pid)
    assert ps.pa.page_count(kpfn) == 1  # the kernel's own reference remains
    ps.free_shared_buffer(bid)
    assert ps.pa.allocated == {}
