"""Migration and compaction: movable anonymous pages move (every mapping follows, the old page
is freed), unmovable pages never do, and a compaction pass frees high-order blocks that
/proc/buddyinfo shows."""

from __future__ import annotations

import pytest

from impl.abstraction import abstract
from impl.compaction import (
    COMPACT_COMPLETE,
    COMPACT_SKIPPED,
    COMPACT_SUCCESS,
    compact_node,
    compact_nodes,
    compact_zone,
)
from impl.fork import Processes, abstract_mm
from impl.machine import MachineConfig
from impl.migrate import migrate_page
from impl.page_alloc import PageAllocator
from impl.slab_common import SlabAllocator
from impl.views import buddyinfo
from impl.vmalloc import Vmalloc
from spec.errors import BadNodeError, MigrationError
from spec.gfp import GFP_KERNEL, GFP_USER
from spec.invariants import violated
from spec.layout import PAGE_SIZE
from spec.mm_state import mm_step_violations, mm_violations
from tests.test_process import check, fill, machine, mm_snapshot

P = PAGE_SIZE


def counts(pa: PageAllocator) -> list[int]:
    """The per-order columns of node 0's first zone in /proc/buddyinfo."""
    return [int(x) for x in buddyinfo(pa).splitlines()[0].split()[4:]]


def fragmented() -> tuple[Processes, int, int, int, int]:
    """Two processes fill most of a 512-page machine with anonymous pages, a driver buffer
    sits among them, then every other page of P2 and the first half of P1 are unmapped."""
    ps = Processes(machine())
    p1, p2 = ps.spawn(), ps.spawn()
    va, vb = ps.mmap(p1, 200 * P), ps.mmap(p2, 200 * P)
    for i in range(200):
        ps.write(p1, va + i * P, i)
        ps.write(p2, vb + i * P, 1000 + i)
    bid = ps.alloc_shared_buffer(2, gfp=GFP_USER)
    assert bid is not None
    ps.mmap_buffer(p1, bid)
    ps.munmap(p1, va, 100 * P)
    for i in range(0, 200, 2):
        ps.munmap(p2, vb + i * P, P)
    return ps, p1, p2, va, vb


def test_migrate_page_moves_every_mapping() -> None:
    ps = Processes(machine())
    p1 = ps.spawn()
    va = ps.mmap(p1, 2 * P)
    old = ps.write(p1, va + 8, 42)
    child = ps.fork(p1)
    st0 = check(ps)
    new = migrate_page(ps, old)
    assert new != old and ps.pa.page_count(old) == 0
    assert ps.resolve(p1, va) == ps.resolve(child, va) == new
    assert ps.pa.page_count(new) == 2 and ps.mapcount(new) == 2
    assert ps.read(p1, va + 8) == ps.read(child, va + 8) == 42
    assert not ps.pte_writable(ps.mm_of(p1), va)  # still copy-on-write after the move
    st1 = check(ps)
    assert mm_step_violations(st0, st1) == []
    ps.write(child, va + 8, 7)  # COW still works on the new page
    assert ps.read(p1, va + 8) == 42 and ps.read(child, va + 8) == 7
    check(ps)


def test_pinned_and_unmovable_pages_refuse_migration() -> None:
    pa = machine()
    ps = Processes(pa)
    pid = ps.spawn()
    va = ps.mmap(pid, P)
    anon = ps.fault(pid, va)
    kpage = pa.alloc_pages(GFP_KERNEL, 0)
    sa = SlabAllocator(pa)
    obj = sa.kmalloc(64, GFP_KERNEL)
    assert obj is not None and kpage is not None
    vm = Vmalloc(pa)
    vaddr = vm.vmalloc(2 * P)
    assert vaddr is not None
    vpfn = vm.vmalloc_to_pfn(vaddr)
    assert vpfn is not None
    table = next(iter(ps.pgd(ps.mm_of(pid)).table_pfns()))
    pa.get_page(anon)  # a pin (as get_user_pages would take)
    cases = [(anon, "pinned: page_count 2 but mapcount 1"),
             (kpage, "a kernel page from alloc_pages"),
             (pa.virt_to_pfn(obj & ~(P - 1)), "a page of the slab"),
             (vpfn, "a page of the vmalloc"),
             (table, "a page of the pgtable"),
             (400, "not an allocated page")]
    for pfn, msg in cases:
        before = mm_snapshot(ps)
        with pytest.raises(MigrationError, match=msg):
            migrate_page(ps, pfn)
        assert mm_snapshot(ps) == before
    pa.put_page(anon)
    assert migrate_page(ps, anon) != anon


def test_compaction_frees_high_order_blocks() -> None:
    ps, p1, p2, va, vb = fragmented()
    pa = ps.pa
    buf = list(ps.buffers[1].pfns)
    before = counts(pa)
    st0 = check(ps)
    free = pa.nr_free_pages()
    (res,) = compact_nodes(ps)
    assert res.status == COMPACT_COMPLETE and res.migrated > 0
    after = counts(pa)
    assert after[-1] > before[-1] + 5  # many more order-4 (MAX_PAGE_ORDER) blocks
    assert sum(after[:-1]) < sum(before[:-1])
    assert pa.nr_free_pages() == free  # pages moved, none lost or gained
    # contents followed their pages; the buffer did not move
    assert [ps.read(p2, vb + i * P) for i in range(1, 200, 2)] == list(range(1001, 1200, 2))
    assert [ps.read(p1, va + i * P) for i in range(100, 200)] == list(range(100, 200))
    assert ps.buffers[1].pfns == buf
    st1 = check(ps)
    assert mm_step_violations(st0, st1) == []
    # moved pages went up: every destination is above its source
    assert all(new > old for old, new in res.moves)
    # a second pass finds nothing left to gain
    (again,) = compact_nodes(ps)
    assert counts(pa) == after and again.status == COMPACT_COMPLETE


def test_compact_zone_with_a_target_order() -> None:
    """Every other page of nearly all memory free: no order-4 block. compact_zone(order 4)
    stops at the first pageblock boundary where one exists (COMPACT_SUCCESS), having moved far
    fewer pages than a whole-zone pass; the next request finds it without compacting."""
    ps = Processes(machine())
    pa = ps.pa
    pid = ps.spawn()
    va = ps.mmap(pid, 600 * P)
    n = fill(ps, pid, va, keep=6)
    for i in range(0, n, 2):
        ps.munmap(pid, va + i * P, P)
    assert counts(pa)[3:] == [0, 0]
    z = pa.zones[0]
    res = compact_zone(ps, z, 4)
    assert res.status == COMPACT_SUCCESS and 0 < res.migrated <= 32
    assert z.nr_free(4) >= 1
    again = compact_zone(ps, z, 4)
    assert again.status == COMPACT_SUCCESS and again.migrated == 0
    (full,) = compact_nodes(ps)
    assert full.status == COMPACT_COMPLETE and full.migrated > 3 * res.migrated
    assert counts(pa)[4] > 10
    assert all(ps.read(pid, va + i * P) == i for i in range(1, n, 2))
    check(ps)


def test_compaction_skipped_without_free_pages() -> None:
    pa = PageAllocator(MachineConfig.flat(128, max_order=4, min_pages=4))
    ps = Processes(pa)
    pid = ps.spawn()
    va = ps.mmap(pid, 200 * P)
    n = 0
    while pa.nr_free_pages() > 8:
        ps.fault(pid, va + n * P)
        n += 1
    res = compact_zone(ps, pa.zones[0], 4)
    assert res.status == COMPACT_SKIPPED and res.migrated == 0
    check(ps)


def test_unmovable_page_pins_its_pageblock() -> None:
    """An unmovable page in a pageblock full of movable ones: compaction moves its neighbours
    but the page stays, so that pageblock never becomes a free MAX_PAGE_ORDER block."""
    ps = Processes(machine())
    pa = ps.pa
    pid = ps.spawn()
    va = ps.mmap(pid, 64 * P)
    for i in range(64):
        ps.fault(pid, va + i * P)
    bid = ps.alloc_shared_buffer(1)
    assert bid is not None
    kpfn = ps.buffers[bid].pfns[0]
    ps.munmap(pid, va, 32 * P)
    compact_nodes(ps)
    assert ps.buffers[bid].pfns == [kpfn] and pa.page_count(kpfn) == 1
    block = kpfn & ~15
    head, order, is_free = pa.block_containing(block)
    assert not (is_free and order == 4 and head == block)
    check(ps)


def test_compaction_cost_follows_the_zone_not_its_free_pages() -> None:
    """1 GiB, almost all free: the scanners skip free blocks by their order, so the work is
    a few steps per pageblock, not one per page."""
    pa = PageAllocator(MachineConfig.flat(1 << 18, max_order=10, min_pages=64))
    ps = Processes(pa)
    pid = ps.spawn()
    va = ps.mmap(pid, 64 * P)
    for i in range(64):
        ps.fault(pid, va + i * P)
    (res,) = compact_node(ps, 0)
    pageblocks = (1 << 18) >> pa.pageblock_order
    assert res.migrate_scanned + res.free_scanned <= 2 * pageblocks + 64
    assert violated(abstract(pa), fast=True) == []
    assert mm_violations(abstract_mm(ps)) == []


def test_compact_node_bad_node() -> None:
    ps = Processes(machine())
    with pytest.raises(BadNodeError):
        compact_node(ps, 3)
