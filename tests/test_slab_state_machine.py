"""A Hypothesis state machine for slab caches and kmalloc together with page allocations:
every operation, valid and invalid, in process and atomic contexts, on one- and two-node
machines. After every step: the slab invariants of spec/slab_state.py, the page allocator's
invariants (spec/invariants.py), and the test's own model: live kmalloc objects, cache objects
and page blocks never overlap, every object lies in its class, and a call that raised left the
whole state (spec.slab snapshot) unchanged. Profiles: tests/hypothesis_profiles.py."""

from __future__ import annotations

import os
from itertools import pairwise
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

from impl.abstraction import abstract
from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from impl.slab_common import SlabAllocator, abstract_slabs
from proofs.seeded_slab_bugs import SEEDED_SLAB_BUGS
from spec.context import Context
from spec.errors import KmemError, SleepInAtomicError
from spec.gfp import (
    __GFP_ACCOUNT,
    __GFP_RECLAIMABLE,
    __GFP_THISNODE,
    __GFP_ZERO,
    GFP_ATOMIC,
    GFP_DMA,
    GFP_KERNEL,
    GFP_NOWAIT,
    gfpflags_allow_blocking,
)
from spec.invariants import violated
from spec.layout import PAGE_SHIFT
from spec.slab import (
    KMALLOC_CLASSES,
    KMALLOC_MAX_CACHE_SIZE,
    SLAB_HWCACHE_ALIGN,
    SLAB_NO_MERGE,
    SLAB_RECLAIM_ACCOUNT,
    SLAB_TYPESAFE_BY_RCU,
    ZERO_SIZE_PTR,
    kmalloc_align_spec,
    kmalloc_cache_name_spec,
    kmalloc_ksize_spec,
)
from spec.slab_state import slab_violations
from tests import hypothesis_profiles

SIZES = st.one_of(
    st.sampled_from([1, 8, 9, 64, 65, 96, 97, 128, 129, 192, 193, 4096, 4097, 8192, 8193,
                     12288, 65536, 0]),
    st.integers(1, KMALLOC_MAX_CACHE_SIZE), st.integers(8193, 1 << 17))
MASKS = st.sampled_from([GFP_KERNEL, GFP_ATOMIC, GFP_NOWAIT, GFP_KERNEL | __GFP_ACCOUNT,
                         GFP_KERNEL | __GFP_RECLAIMABLE, GFP_KERNEL | GFP_DMA,
                         GFP_KERNEL | __GFP_ZERO, GFP_ATOMIC | __GFP_THISNODE])
THISNODE = __GFP_THISNODE  # no name mangling inside the class
CTXS = st.sampled_from([Context.PROCESS, Context.PROCESS, Context.HARDIRQ, Context.SPINLOCK])


SEEDED_ENV = "KMEMSPEC_SEEDED_SLAB_BUG"
RULE_PREFIX = "kmemspec-rule:"


def allocator_class() -> type[SlabAllocator]:
    """SlabAllocator, or the seeded bug KMEMSPEC_SEEDED_SLAB_BUG names
    (proofs/seeded_slab_bugs.py)."""
    name = os.environ.get(SEEDED_ENV)
    if not name:
        return SlabAllocator
    return SEEDED_SLAB_BUGS[name].cls


class SlabMachine(RuleBasedStateMachine):
    """The slab allocator against the test's model of what is live."""

    def __init__(self) -> None:
        super().__init__()
        self.sa: SlabAllocator
        self.objs: dict[int, tuple[int, str | None]] = {}  # addr -> (bytes, cache or None)
        self.blocks: dict[int, int] = {}  # pfn -> order (alloc_pages)
        self.caches: dict[str, int] = {}  # protocol-style caches: name -> object size
        self.freed: list[int] = []

    @initialize(nodes=st.sampled_from([1, 2]), pages=st.sampled_from([2048, 3000]))
    def boot(self, nodes: int, pages: int) -> None:
        self.sa = allocator_class()(PageAllocator(MachineConfig.flat(pages, nodes=nodes)))

    # --- helpers ---------------------------------------------------------------------------------
    def _raises(self, fn: Any, *args: Any, **kw: Any) -> KmemError | None:
        """Run a call that may be invalid: on a KmemError the whole state must be unchanged."""
        before = self.sa.snapshot()
        try:
            fn(*args, **kw)
        except KmemError as e:
            assert self.sa.snapshot() == before, f"{type(e).__name__} changed the state"
            return e
        return None

    def _record(self, addr: int | None, nbytes: int, cache: str | None) -> None:
        if addr is None or addr == ZERO_SIZE_PTR:
            return
        assert addr not in self.objs
        self.objs[addr] = (nbytes, cache)

    # --- kmalloc ---------------------------------------------------------------------------------
    @rule(size=SIZES, gfp=MASKS, ctx=CTXS, data=st.data())
    def kmalloc(self, size: int, gfp: int, ctx: Context, data: st.DataObject) -> None:
        nid = data.draw(st.sampled_from([-1, *range(len(self.sa.pages.nodes))]))
        cpu = data.draw(st.sampled_from(self.sa.cpus))
        if ctx.atomic and gfpflags_allow_blocking(gfp) and size:
            e = self._raises(self.sa.kmalloc_node, size, gfp, nid, cpu=cpu, ctx=ctx)
            assert isinstance(e, SleepInAtomicError), e
            return
        addr = self.sa.kmalloc_node(size, gfp, nid, cpu=cpu, ctx=ctx)
        if size == 0:
            assert addr == ZERO_SIZE_PTR, f"slab.kmalloc_zero: kmalloc(0) = {addr!r}"
            return
        if addr is None:
            return
        if size <= KMALLOC_MAX_CACHE_SIZE:
            got = self.sa.lookup_object(addr)[0].cache.name
            want = kmalloc_cache_name_spec(size, gfp)
            assert got == want, f"slab.kmalloc_cache: kmalloc({size}) from {got}, want {want}"
        ks = self.sa.ksize(addr)
        assert ks == kmalloc_ksize_spec(size), (
            f"slab.ksize: ksize({addr:#x}) = {ks} for kmalloc({size}), want "
            f"{kmalloc_ksize_spec(size)}")
        assert addr % kmalloc_align_spec(size) == 0, (
            f"kmalloc.alignment: kmalloc({size}) = {addr:#x}, not aligned to "
            f"{kmalloc_align_spec(size)}")
        if gfp & THISNODE and nid >= 0:
            pfn = (addr - self.sa.pages.page_offset) >> PAGE_SHIFT
            z = self.sa.pages.zone_of_pfn(pfn)
            assert z is not None and z.nid == nid
        self._record(addr, size, None)

    @precondition(lambda self: bool(self.objs))
    @rule(data=st.data())
    def kfree(self, data: st.DataObject) -> None:
        addr = data.draw(st.sampled_from(sorted(self.objs)))
        self.objs.pop(addr)
        self.sa.kfree(addr, cpu=data.draw(st.sampled_from(self.sa.cpus)))
        self.freed.append(addr)

    @rule(data=st.data())
    def kfree_invalid(self, data: st.DataObject) -> None:
        """A freed object, an interior address, an address in no slab: a typed error."""
        pa = self.sa.pages
        cands = [a for a in self.freed[-5:] if a not in self.objs]  # double frees
        cands += [a + 8 for a, (n, _) in self.objs.items() if n > 8][:3]  # interior
        last = pa.max_pfn - 1
        if last not in self.sa.slab_of_pfn:  # in no slab, no large kmalloc
            cands.append(pa.page_offset + (last << PAGE_SHIFT))
        if not cands:
            return
        addr = data.draw(st.sampled_from(cands))
        if addr in self.objs or addr in self.sa.large or self._live_elsewhere(addr):
            return
        assert self._raises(self.sa.kfree, addr) is not None, f"kfree({addr:#x}) accepted"

    def _live_elsewhere(self, addr: int) -> bool:
        """A live object the test does not track (a kmem_cache or kmem_cache_node object of a
        cache created meanwhile) may now sit at a freed address."""
        try:
            slab, idx = self.sa.lookup_object(addr)
        except KmemError:
            return False
        return not slab.free[idx]

    # --- caches ----------------------------------------------------------------------------------
    @precondition(lambda self: len(self.caches) < 4)
    @rule(size=st.integers(1, 3000), align=st.sampled_from([0, 8, 64, 256]),
          flags=st.sampled_from([0, SLAB_HWCACHE_ALIGN, SLAB_RECLAIM_ACCOUNT,
                                 SLAB_TYPESAFE_BY_RCU]))
    def kmem_cache_create(self, size: int, align: int, flags: int) -> None:
        name = f"c{len(self.caches)}_{size}"
        if name in self.sa.by_name:
            return
        s = self.sa.kmem_cache_create(name, size, align, flags | SLAB_NO_MERGE)
        assert s.size >= size and s.size % max(align, 8) == 0
        self.caches[name] = size

    @rule(size=st.sampled_from([0, -1, 1 << 23]), align=st.sampled_from([3, 24]))
    def kmem_cache_create_invalid(self, size: int, align: int) -> None:
        assert self._raises(self.sa.kmem_cache_create, "bad", size, align) is not None
        if self.caches:
            assert self._raises(self.sa.kmem_cache_create, next(iter(self.caches)), 8) \
                is not None

    @precondition(lambda self: bool(self.caches))
    @rule(data=st.data(), gfp=st.sampled_from([GFP_KERNEL, GFP_ATOMIC, GFP_NOWAIT]),
          ctx=CTXS)
    def kmem_cache_alloc(self, data: st.DataObject, gfp: int, ctx: Context) -> None:
        name = data.draw(st.sampled_from(sorted(self.caches)))
        nid = data.draw(st.sampled_from([-1, *range(len(self.sa.pages.nodes))]))
        if ctx.atomic and gfpflags_allow_blocking(gfp):
            e = self._raises(self.sa.kmem_cache_alloc_node, name, gfp, nid, ctx=ctx)
            assert isinstance(e, SleepInAtomicError)
            return
        addr = self.sa.kmem_cache_alloc_node(name, gfp, nid, ctx=ctx)
        s = self.sa.find_cache(name)
        if addr is not None:
            assert addr % s.align == 0
            self._record(addr, s.size, name)

    @precondition(lambda self: any(c for _, c in self.objs.values()))
    @rule(data=st.data())
    def kmem_cache_free(self, data: st.DataObject) -> None:
        addr = data.draw(st.sampled_from(sorted(a for a, (_, c) in self.objs.items() if c)))
        _, name = self.objs[addr]
        assert name is not None
        wrong = [c for c in self.caches if c != name]
        if len(wrong) > 0 and data.draw(st.booleans()):
            assert self._raises(self.sa.kmem_cache_free, wrong[0], addr) is not None, (
                f"kmem_cache_free({wrong[0]}, {addr:#x}) of an object of {name} accepted")
            return
        self.objs.pop(addr)
        self.sa.kmem_cache_free(name, addr, cpu=data.draw(st.sampled_from(self.sa.cpus)))
        self.freed.append(addr)

    @precondition(lambda self: bool(self.caches))
    @rule(data=st.data())
    def kmem_cache_shrink_or_destroy(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.caches)))
        if data.draw(st.booleans()):
            self.sa.kmem_cache_shrink(name)
            return
        busy = any(c == name for _, c in self.objs.values())
        e = self._raises(self.sa.kmem_cache_destroy, name)
        assert (e is not None) == busy, (
            f"kmem_cache_destroy({name}) with live objects accepted" if busy else
            f"kmem_cache_destroy({name}) of an empty cache refused: {e}")
        if not busy:
            del self.caches[name]

    @rule(remote=st.booleans(), shrink=st.booleans())
    def fill_and_empty(self, remote: bool, shrink: bool) -> None:
        """Fill more slabs than min_partial keeps, then free every object (from another CPU
        when ``remote``): empty slabs must go back to the page allocator, counters follow."""
        name = "churn"
        if name not in self.sa.by_name:
            self.sa.kmem_cache_create(name, 512, 0, SLAB_NO_MERGE)
        s = self.sa.find_cache(name)
        n = s.oo_objects * (s.min_partial + s.cpu_partial_slabs + 2)
        got = [self.sa.kmem_cache_alloc(s, GFP_KERNEL) for _ in range(n)]
        objs = [o for o in got if o is not None]
        for o in objs:
            self._record(o, s.size, None)
        self.invariants_hold()
        cpu = self.sa.cpus[-1] if remote else self.sa.cpus[0]
        for o in objs:
            self.objs.pop(o)
            self.sa.kmem_cache_free(s, o, cpu=cpu)
        self.freed += objs[-2:]
        if shrink:
            assert self.sa.kmem_cache_shrink(s) == 0 or any(
                c == name for _, c in self.objs.values())
        kept = sum(nd.nr_slabs for nd in s.node)
        bound = s.min_partial * len(s.node) + s.cpu_partial_slabs * len(s.cpu) + len(s.cpu)
        assert kept <= bound, (f"slab.discard: {kept} slabs kept after freeing everything, at "
                               f"most {bound} (min_partial per node, CPU partial, CPU slabs)")

    # --- pages alongside -------------------------------------------------------------------------
    @rule(order=st.integers(0, 3), gfp=st.sampled_from([GFP_KERNEL, GFP_ATOMIC]))
    def alloc_pages(self, order: int, gfp: int) -> None:
        pfn = self.sa.pages.alloc_pages_node(-1, gfp, order)
        if pfn is not None:
            self.blocks[pfn] = order

    @precondition(lambda self: bool(self.blocks))
    @rule(data=st.data())
    def free_pages(self, data: st.DataObject) -> None:
        pfn = data.draw(st.sampled_from(sorted(self.blocks)))
        self.sa.pages.free_pages_pfn(pfn, self.blocks.pop(pfn))

    # --- after every step ------------------------------------------------------------------------
    @invariant()
    def invariants_hold(self) -> None:
        if not hasattr(self, "sa"):
            return
        bad = slab_violations(abstract_slabs(self.sa))
        assert not bad, bad
        bad2 = violated(abstract(self.sa.pages), fast=True)
        assert not bad2, bad2

    @invariant()
    def nothing_overlaps(self) -> None:
        if not hasattr(self, "sa"):
            return
        off = self.sa.pages.page_offset
        spans = sorted([(a, a + max(n, 1)) for a, (n, _) in self.objs.items()]
                       + [(off + (p << PAGE_SHIFT), off + ((p + (1 << o)) << PAGE_SHIFT))
                          for p, o in self.blocks.items()])
        for (_, e), (s, _) in pairwise(spans):
            assert e <= s, "two live allocations overlap"


def _rule_of(e: BaseException) -> str:
    """The invariant or check a failure broke, from its message."""
    text = str(e)
    for name in ("slab.freelist_sound", "slab.geometry", "slab.one_place", "slab.inuse",
                 "slab.node_counters", "slab.disjoint", "slab.discard", "slab.ksize",
                 "slab.kmalloc_cache", "slab.kmalloc_zero"):
        if name in text:
            return name
    if "overlap" in text:
        return "overlap"
    if "changed the state" in text:
        return "bad_input.state_unchanged"
    if "accepted" in text:
        return "bad_input.rejected"
    return f"statemachine.{type(e).__name__}"


def test_slab_state_machine() -> None:
    """The slab state machine with the selected profile; on a failure a line
    ``kmemspec-rule: <rule>`` names what broke (the make verify rows read it)."""
    try:
        hypothesis_profiles.run_machine(SlabMachine)
    except Exception as e:
        print(f"{RULE_PREFIX} {_rule_of(e)}")
        print(f"  {str(e).splitlines()[0][:500] if str(e) else type(e).__name__}")
        raise


@pytest.mark.parametrize("bug", sorted(b for b, s in SEEDED_SLAB_BUGS.items() if s.statemachine))
def test_seeded_slab_bug_is_caught(bug: str, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Each seeded slab bug makes the state machine fail, naming a rule."""
    monkeypatch.setenv(SEEDED_ENV, bug)
    monkeypatch.setenv("KMEMSPEC_SHRINK_SECONDS", "2")  # found is enough: shrink briefly
    with pytest.raises(Exception):  # noqa: B017 - any failure of the machine counts
        test_slab_state_machine()
    assert RULE_PREFIX in capsys.readouterr().out


assert KMALLOC_CLASSES  # the classes the SIZES strategy probes the edges of
