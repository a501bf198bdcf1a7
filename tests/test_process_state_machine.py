"""A Hypothesis state machine over processes, shared buffers, migration and compaction on a
small machine (memory runs out, so the OOM paths are taken too). The test keeps its own model
of what every process must read at every address: private words per process (copied at
fork), buffer words shared by every mapping. After every step: the invariants of
spec/mm_state.py, the step invariant (unmovable pages never move), the effect of every mmap
and munmap (spec/vma_rules.py), the page allocator's
invariants, and bad input left everything unchanged. Profiles: tests/hypothesis_profiles.py."""

from __future__ import annotations

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
from impl.compaction import compact_nodes
from impl.fork import Processes, abstract_mm
from impl.machine import MachineConfig
from impl.migrate import migrate_page
from impl.mmap import MAP_PRIVATE, PROT_READ, PROT_WRITE, calc_vm_flags
from impl.page_alloc import PageAllocator
from spec.errors import (
    BadPageMapError,
    BadUserAddressError,
    DoubleFreeError,
    MigrationError,
    MmOomError,
    NoSuchProcessError,
    SegfaultError,
)
from spec.invariants import violated
from spec.layout import PAGE_SIZE
from spec.mm_state import MmState, mm_step_violations, mm_violations
from spec.vma_rules import mmap_effect_violations, munmap_effect_violations
from tests import hypothesis_profiles
from tests.test_process import mm_snapshot

P = PAGE_SIZE
Kind = tuple[str, int, int]  # ("anon", 0, 0) or ("buf", buffer id, page index)
ANON: Kind = ("anon", 0, 0)


class ProcessMachine(RuleBasedStateMachine):
    ps: Processes
    pages: dict[int, dict[int, Kind]]  # pid -> user page -> what is mapped there
    mem: dict[int, dict[int, int]]  # pid -> word address -> value (private memory)
    bufmem: dict[int, dict[int, int]]  # buffer id -> byte offset -> value
    bufs: dict[int, bool]  # buffer id -> the kernel still holds it
    last: MmState | None

    @initialize()
    def boot(self) -> None:
        self.ps = Processes(PageAllocator(MachineConfig.flat(256, max_order=4, min_pages=4)))
        self.pages, self.mem, self.bufmem, self.bufs = {}, {}, {}, {}
        self.last = None
        # init with eight written pages, so that fork and copy-on-write start at once
        pid = self.ps.spawn()
        va = self.ps.mmap(pid, 8 * P)
        self.pages[pid] = dict.fromkeys(range(va, va + 8 * P, P), ANON)
        self.mem[pid] = {}
        for k in range(8):
            self.ps.write(pid, va + k * P, k + 1)
            self.mem[pid][va + k * P] = k + 1

    # --- helpers --------------------------------------------------------------------------------
    def _pid(self, i: int) -> int:
        pids = sorted(self.pages)
        return pids[i % len(pids)]

    def _segments(self, pid: int) -> list[tuple[int, int, int]]:
        """The address space as spec/vma_rules.py sees it."""
        return [(v.vm_start, v.vm_end, v.vm_flags) for v in self.ps.mm_of(pid).vmas]

    def _page(self, pid: int, i: int) -> int:
        vas = sorted(self.pages[pid])
        return vas[i % len(vas)]

    def _refused(self, fn: Any, exc: type[Exception]) -> None:
        """Bad input: the typed error, and not a bit of state changed."""
        before = mm_snapshot(self.ps)
        try:
            fn()
        except exc:
            pass
        else:
            raise AssertionError(f"accepted: {fn}")
        assert mm_snapshot(self.ps) == before, "bad input changed the state"

    # --- processes ----------------------------------------------------------------------------
    @rule()
    def spawn(self) -> None:
        try:
            pid = self.ps.spawn()
        except MmOomError:
            return
        self.pages[pid], self.mem[pid] = {}, {}

    @precondition(lambda self: self.pages)
    @rule(i=st.integers(0, 7), then=st.sampled_from(["parent", "child", None]),
          j=st.integers(0, 63), value=st.integers(1, 255))
    def fork(self, i: int, then: str | None, j: int, value: int) -> None:
        """fork, then (copy-on-write's edge) a write by the parent or the child."""
        pid = self._pid(i)
        try:
            child = self.ps.fork(pid)
        except MmOomError:
            return
        self.pages[child] = dict(self.pages[pid])
        self.mem[child] = dict(self.mem[pid])
        if then is not None and self.pages[pid]:
            self._write(pid if then == "parent" else child, j, 8, value)

    @precondition(lambda self: self.pages)
    @rule(i=st.integers(0, 7))
    def exit(self, i: int) -> None:
        pid = self._pid(i)
        self.ps.exit(pid)
        del self.pages[pid], self.mem[pid]
        self._refused(lambda: self.ps.exit(pid), NoSuchProcessError)

    @precondition(lambda self: self.pages)
    @rule(i=st.integers(0, 7), n=st.integers(1, 12))
    def mmap(self, i: int, n: int) -> None:
        pid = self._pid(i)
        before = self._segments(pid)
        va = self.ps.mmap(pid, n * P)
        assert mmap_effect_violations(before, self._segments(pid), va, va + n * P,
                                      calc_vm_flags(PROT_READ | PROT_WRITE, MAP_PRIVATE)) == []
        for k in range(n):
            assert va + k * P not in self.pages[pid]
            self.pages[pid][va + k * P] = ANON

    @precondition(lambda self: any(self.pages.values()))
    @rule(i=st.integers(0, 7), j=st.integers(0, 63), n=st.integers(1, 4))
    def munmap(self, i: int, j: int, n: int) -> None:
        pid = self._pid(i)
        if not self.pages[pid]:
            before = mm_snapshot(self.ps)  # nothing mapped: a no-op returning 0, as Linux
            assert self.ps.munmap(pid, 0x10000, P) == 0
            assert mm_snapshot(self.ps) == before
            return
        va = self._page(pid, j)
        segs = self._segments(pid)
        self.ps.munmap(pid, va, n * P)
        assert munmap_effect_violations(segs, self._segments(pid), va, va + n * P) == []
        for k in range(n):
            self.pages[pid].pop(va + k * P, None)
            for w in range(va + k * P, va + (k + 1) * P, 8):
                self.mem[pid].pop(w, None)

    # --- memory accesses -----------------------------------------------------------------------
    def _write(self, pid: int, j: int, off: int, value: int) -> None:
        va = self._page(pid, j)
        try:
            self.ps.write(pid, va + off, value)
        except MmOomError:
            return
        kind = self.pages[pid][va]
        if kind[0] == "anon":
            self.mem[pid][va + off] = value
        else:
            self.bufmem[kind[1]][kind[2] * P + off] = value

    @precondition(lambda self: any(self.pages.values()))
    @rule(i=st.integers(0, 7), j=st.integers(0, 63), off=st.sampled_from([0, 8, 4088]),
          value=st.integers(1, 255))
    def write(self, i: int, j: int, off: int, value: int) -> None:
        pid = self._pid(i)
        if self.pages[pid]:
            self._write(pid, j, off, value)

    @precondition(lambda self: any(self.pages.values()))
    @rule(i=st.integers(0, 7))
    def read_all(self, i: int) -> None:
        """Every modelled word of one process, and the first word of each of its pages."""
        pid = self._pid(i)
        for va, kind in sorted(self.pages[pid].items()):
            for off in {0, 8, *(a - va for a in self.mem[pid] if va <= a < va + P)}:
                try:
                    got = self.ps.read(pid, va + off)
                except MmOomError:
                    return
                want = (self.mem[pid].get(va + off, 0) if kind[0] == "anon"
                        else self.bufmem[kind[1]].get(kind[2] * P + off, 0))
                assert got == want, f"pid {pid} read {got} at {va + off:#x}, expected {want}"

    @precondition(lambda self: self.pages)
    @rule(i=st.integers(0, 7), addr=st.sampled_from([0, 0x10000, 0x7FFFFFFFF000,
                                                        0xFFFF888000000000, -P]))
    def bad_access(self, i: int, addr: int) -> None:
        pid = self._pid(i)
        if addr in self.pages[pid]:
            return
        exc = SegfaultError if 0 <= addr < 0x7FFFFFFFF000 else BadUserAddressError
        self._refused(lambda: self.ps.write(pid, addr, 1), exc)
        self._refused(lambda: self.ps.munmap(pid, addr + 1, P), BadUserAddressError)

    # --- shared buffers ------------------------------------------------------------------------
    @rule(n=st.integers(1, 3))
    def buffer_alloc(self, n: int) -> None:
        bid = self.ps.alloc_shared_buffer(n)
        if bid is not None:
            self.bufs[bid] = True
            self.bufmem[bid] = {}

    @precondition(lambda self: self.pages and self.bufs)
    @rule(i=st.integers(0, 7), b=st.integers(0, 7))
    def buffer_mmap(self, i: int, b: int) -> None:
        pid = self._pid(i)
        bid = sorted(self.bufs)[b % len(self.bufs)]
        if not self.bufs[bid]:
            self._refused(lambda: self.ps.mmap_buffer(pid, bid), BadPageMapError)
            return
        try:
            va = self.ps.mmap_buffer(pid, bid)
        except MmOomError:
            return
        for k in range(len(self.ps.buffers[bid].pfns)):
            self.pages[pid][va + k * P] = ("buf", bid, k)

    @precondition(lambda self: self.bufs)
    @rule(b=st.integers(0, 7))
    def buffer_free(self, b: int) -> None:
        bid = sorted(self.bufs)[b % len(self.bufs)]
        if not self.bufs[bid]:
            self._refused(lambda: self.ps.free_shared_buffer(bid), DoubleFreeError)
            return
        self.ps.free_shared_buffer(bid)
        self.bufs[bid] = False

    # --- migration and compaction ------------------------------------------------------------
    @precondition(lambda self: self.ps.anon or self.ps.buffer_page)
    @rule(j=st.integers(0, 255), buffer=st.booleans())
    def migrate(self, j: int, buffer: bool) -> None:
        if buffer and self.ps.buffer_page:
            pfn = sorted(self.ps.buffer_page)[j % len(self.ps.buffer_page)]
            self._refused(lambda: migrate_page(self.ps, pfn), MigrationError)
            return
        if not self.ps.anon:
            return
        pfn = sorted(self.ps.anon)[j % len(self.ps.anon)]
        try:
            new = migrate_page(self.ps, pfn)
        except MigrationError as e:
            assert "ENOMEM" in str(e)
            return
        assert self.ps.pa.page_count(pfn) == 0 and new in self.ps.anon

    @rule()
    def compact(self) -> None:
        compact_nodes(self.ps)

    # --- after every step ---------------------------------------------------------------------
    @invariant()
    def invariants_hold(self) -> None:
        st_ = abstract_mm(self.ps)
        bad = mm_violations(st_)
        if self.last is not None:
            bad += mm_step_violations(self.last, st_)
        assert bad == [], bad
        self.last = st_
        assert violated(abstract(self.ps.pa), fast=True) == []
        for pid, pages in self.pages.items():
            assert set(self.ps.mm_of(pid).ptes) <= set(pages)


def test_process_state_machine() -> None:
    hypothesis_profiles.run_machine(ProcessMachine)
