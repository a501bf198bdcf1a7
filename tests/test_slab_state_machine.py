"""A Hypothesis state machine for slab caches and kmalloc together with page allocations:
every operation, valid and invalid, in process and atomic contexts, on one- and two-node
machines. After every step: the slab invariants of spec/slab_state.py, the page allocator's
invariants (spec/invariants.py), and the test's own model: live kmalloc objects, cache objects
and page blocks never overlap, every object lies in its class, and a call that raised left the
whole state (spec.slab snapshot) unchanged. Every seeded bug of proofs/seeded_slab_bugs.py has
a rule that shows it within one step (kmalloc with each kmalloc type, kmalloc(0), ksize of live
objects, a busy kmem_cache_destroy with wrong-cache frees, a double free after each kfree), so
the derandomized quick profile catches each of them, not by luck. Profiles:
tests/hypothesis_profiles.py; ``HYPOTHESIS_SEED`` fixes another seed."""

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
from spec.errors import (
    CacheBusyError,
    KmemError,
    ObjectDoubleFreeError,
    SleepInAtomicError,
    WrongCacheError,
)
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
from spec.layout import NUMA_NO_NODE, PAGE_SHIFT
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
    zero_or_null_ptr,
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
# kmalloc_type()'s inputs (include/linux/slab.h KMALLOC_NOT_NORMAL_BITS): each kmalloc type,
# and __GFP_RECLAIMABLE with __GFP_ACCOUNT for its priority over kmalloc-cg-
TYPE_BITS = (0, __GFP_RECLAIMABLE, __GFP_ACCOUNT, __GFP_RECLAIMABLE | __GFP_ACCOUNT, GFP_DMA)
SLAB_SIZES = st.one_of(st.sampled_from(KMALLOC_CLASSES), st.integers(1, KMALLOC_MAX_CACHE_SIZE))
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
        self.nr_busy = 0  # caches made by kmem_cache_destroy_busy, for fresh names

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
        self._kmalloc(size, gfp, nid, cpu, ctx)

    @rule(size=SLAB_SIZES, ctx=CTXS, data=st.data())
    def kmalloc_each_type(self, size: int, ctx: Context, data: st.DataObject) -> None:
        """kmalloc(size) with each kmalloc_type() mask in turn (include/linux/slab.h): every
        object must come from the cache spec.slab.kmalloc_cache_name_spec names, so a type
        bit the implementation ignores shows at once, not only when MASKS happens to draw it."""
        cpu = data.draw(st.sampled_from(self.sa.cpus))
        base = GFP_ATOMIC if ctx.atomic else GFP_KERNEL
        for bits in TYPE_BITS:
            self._kmalloc(size, base | bits, NUMA_NO_NODE, cpu, ctx)

    def _kmalloc(self, size: int, gfp: int, nid: int, cpu: int, ctx: Context) -> None:
        """kmalloc_node() checked against spec/slab.py: ZERO_SIZE_PTR for 0, the cache of
        kmalloc_cache_name_spec, ksize as kmalloc_ksize_spec, kmalloc_align_spec."""
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

    @rule(gfp=MASKS, ctx=CTXS, data=st.data())
    def kmalloc_zero(self, gfp: int, ctx: Context, data: st.DataObject) -> None:
        """kmalloc(0) is ZERO_SIZE_PTR with any mask in any context (__do_kmalloc_node returns
        it before might_alloc), and kfree() of it or of NULL does nothing (ZERO_OR_NULL_PTR,
        spec.slab.zero_or_null_ptr; mm/slab_common.c, include/linux/slab.h)."""
        nid = data.draw(st.sampled_from([-1, *range(len(self.sa.pages.nodes))]))
        before = self.sa.snapshot()
        addr = self.sa.kmalloc_node(0, gfp, nid, cpu=data.draw(st.sampled_from(self.sa.cpus)),
                                    ctx=ctx)
        assert addr == ZERO_SIZE_PTR, f"slab.kmalloc_zero: kmalloc(0) = {addr!r}"
        for a in (addr, 0):
            assert zero_or_null_ptr(a)
            self.sa.kfree(a)
        assert self.sa.snapshot() == before, (
            "slab.kmalloc_zero: kmalloc(0) or kfree(ZERO_SIZE_PTR) changed the state")

    @precondition(lambda self: any(c is None for _, c in self.objs.values()))
    @rule(data=st.data())
    def ksize_live(self, data: st.DataObject) -> None:
        """ksize() of any live kmalloc object, at any later time, is what
        spec.slab.kmalloc_ksize_spec promises for its requested size: the class, or the
        whole 2^order pages of a large kmalloc (mm/slab_common.c __ksize, mm/slub.c
        slab_ksize)."""
        addr = data.draw(st.sampled_from(sorted(a for a, (_, c) in self.objs.items()
                                                if c is None)))
        size = self.objs[addr][0]
        ks = self.sa.ksize(addr)
        assert ks == kmalloc_ksize_spec(size), (
            f"slab.ksize: ksize({addr:#x}) = {ks} for kmalloc({size}), want "
            f"{kmalloc_ksize_spec(size)}")

    @precondition(lambda self: bool(self.objs))
    @rule(data=st.data())
    def kfree(self, data: st.DataObject) -> None:
        addr = data.draw(st.sampled_from(sorted(self.objs)))
        self.objs.pop(addr)
        self.sa.kfree(addr, cpu=data.draw(st.sampled_from(self.sa.cpus)))
        self.freed.append(addr)
        if not self._live_elsewhere(addr):  # at once a double free: refused, state unchanged
            assert self._raises(self.sa.kfree, addr) is not None, (
                f"kfree({addr:#x}) twice accepted")

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

    @rule(size=st.integers(1, 3000), keep=st.booleans(), data=st.data())
    def kmem_cache_destroy_busy(self, size: int, keep: bool, data: st.DataObject) -> None:
        """A new cache with a live object, in one step. kmem_cache_destroy() must refuse it
        and keep the cache, as the kernel does (__kmem_cache_shutdown() finds "Objects
        remaining", kmem_cache_destroy() WARNs "Slab cache still has objects" and returns):
        CacheBusyError, nothing changed. kmem_cache_free() of its object to the kmalloc cache
        of the same size, and of a kmalloc object to it, must be refused (cache_from_obj():
        "Wrong slab cache"): WrongCacheError, nothing changed (mm/slab_common.c,
        mm/slub.c). Then the object is freed and the cache destroyed, or (``keep``) both
        stay for the other rules."""
        name = f"busy{self.nr_busy}"
        self.nr_busy += 1
        self.sa.kmem_cache_create(name, size, 0, SLAB_NO_MERGE)  # merged: refcount, no check
        addr = self.sa.kmem_cache_alloc(name, GFP_KERNEL)
        if addr is not None:
            e = self._raises(self.sa.kmem_cache_destroy, name)
            assert isinstance(e, CacheBusyError), (
                f"kmem_cache_destroy({name}) with live objects accepted" if e is None else
                f"kmem_cache_destroy({name}) with live objects: {type(e).__name__}: {e}")
            other = kmalloc_cache_name_spec(size, GFP_KERNEL)
            e = self._raises(self.sa.kmem_cache_free, other, addr)
            assert isinstance(e, WrongCacheError), (
                f"kmem_cache_free({other}, {addr:#x}) of an object of {name} accepted"
                if e is None else f"kmem_cache_free({other}, {addr:#x}): {e!r}")
            kobjs = sorted(a for a, (_, c) in self.objs.items()
                           if c is None and a not in self.sa.large)
            if kobjs:
                k = data.draw(st.sampled_from(kobjs))
                e = self._raises(self.sa.kmem_cache_free, name, k)
                assert isinstance(e, WrongCacheError), (
                    f"kmem_cache_free({name}, {k:#x}) of a kmalloc object accepted"
                    if e is None else f"kmem_cache_free({name}, {k:#x}): {e!r}")
            if keep and len(self.caches) < 4:
                self.caches[name] = size
                self._record(addr, size, name)
                return
            self.sa.kmem_cache_free(name, addr)
            e = self._raises(self.sa.kmem_cache_free, name, addr)
            assert isinstance(e, ObjectDoubleFreeError), (
                f"kmem_cache_free({name}, {addr:#x}) twice accepted" if e is None else
                f"kmem_cache_free({name}, {addr:#x}) twice: {e!r}")
        self.sa.kmem_cache_destroy(name)
        assert name not in self.sa.by_name

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
            self._record(o, s.size, name)
        self.invariants_hold()
        cpu = self.sa.cpus[-1] if remote else self.sa.cpus[0]
        for o in objs:
            self.objs.pop(o)
            self.sa.kmem_cache_free(s, o, cpu=cpu)
        self.freed += objs[-2:]
        self.invariants_hold()  # a wrong counter is named before the discard it disturbs
        if shrink:
            left = self.sa.kmem_cache_shrink(s)
            assert left == 0, (f"slab.discard: kmem_cache_shrink({name}) with no live object "
                               f"left {left} slabs")
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
        hypothesis_profiles.run_machine(hypothesis_profiles.seeded(SlabMachine))
    except Exception as e:
        print(f"{RULE_PREFIX} {_rule_of(e)}")
        print(f"  {str(e).splitlines()[0][:500] if str(e) else type(e).__name__}")
        raise


# The rule each seeded bug breaks first (proofs/seeded_slab_bugs.py): caught by the check
# meant for it, not by a later consequence.
CAUGHT_BY = {
    "slab-free-forgets-inuse": "slab.inuse",
    "deactivate-drops-cpu-freelist": "slab.freelist_sound",
    "slab-no-double-free-check": "bad_input.rejected",
    "discard-keeps-node-count": "slab.node_counters",
    "slab-objects-one-short": "slab.geometry",
    "get-freelist-keeps-slab-freelist": "slab.freelist_sound",
    "cache-free-into-callers-cache": "bad_input.rejected",
    "ksize-large-times-order": "slab.ksize",
    "destroy-ignores-live-objects": "bad_input.rejected",
    "kmalloc-type-ignores-reclaimable": "slab.kmalloc_cache",
    "kmalloc-zero-is-null": "slab.kmalloc_zero",
}


@pytest.mark.parametrize("bug", sorted(b for b, s in SEEDED_SLAB_BUGS.items() if s.statemachine))
def test_seeded_slab_bug_is_caught(bug: str, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Each seeded slab bug makes the state machine fail, naming the rule it breaks."""
    monkeypatch.setenv(SEEDED_ENV, bug)
    monkeypatch.setenv("KMEMSPEC_SHRINK_SECONDS", "0.5")  # found is enough: shrink briefly
    with pytest.raises(Exception):  # noqa: B017 - any failure of the machine counts
        test_slab_state_machine()
    out = capsys.readouterr().out
    assert f"{RULE_PREFIX} {CAUGHT_BY.get(bug, '')}" in out, out


assert KMALLOC_CLASSES  # the classes the SIZES strategy probes the edges of
