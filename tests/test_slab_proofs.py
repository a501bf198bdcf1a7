"""The slab proofs (proofs/slab.py) beside the implementation: every obligation is proved, its
seeded bug refuted, and the symbolic freelist invariant of the induction agrees with the
concrete invariants of spec/slab_state.py on real slabs and on corrupted ones."""

from __future__ import annotations

import random

import pytest
import z3

from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from impl.slab_common import SlabAllocator, abstract_slabs
from proofs import slab as sp
from spec.gfp import GFP_KERNEL
from spec.slab_state import SLAB_INVARIANTS, SlabRecord, SlabState


@pytest.mark.parametrize("name", ["kmalloc.size_class", "kmalloc.large_order",
                                  "slab.freelist_induction"])
def test_obligation_proved(name: str) -> None:
    r = sp.OBLIGATIONS[name]()
    assert r.ok, r.summary()


@pytest.mark.parametrize("name", ["mutant.kmalloc_wrong_size_index",
                                  "mutant.kmalloc_large_off_by_one",
                                  "mutant.slab_free_no_double_free_check"])
def test_seeded_bug_refuted(name: str) -> None:
    _, _, run = sp.SLAB_MUTANTS[name]
    r = run()
    assert r.status == "refuted" and r.counterexample, r.summary()


def _symbolic_holds(rec: SlabRecord) -> bool:
    """proofs/slab.py's freelist_invariant evaluated on the slab's concrete values."""
    s = sp.SymSlab("c")
    free = list(rec.free)
    subst = [(s.L, z3.BitVecVal(len(free) % 16, sp.IW)),
             (s.inuse, z3.BitVecVal(rec.inuse % 16, sp.IW))]
    subst += [(s.F[j], z3.BitVecVal((free[j] if j < len(free) else 0) % 16, sp.IW))
              for j in range(sp.N_OBJECTS)]
    subst += [(s.M[x], z3.BoolVal(x in rec.marked_free)) for x in range(sp.N_OBJECTS)]
    inv = z3.And(*sp.freelist_invariant(s).values())
    return bool(z3.is_true(z3.simplify(z3.substitute(inv, *subst))))


def _concrete_holds(rec: SlabRecord) -> bool:
    st = SlabState((rec._replace(cpu_free=0),), ())
    names = ("slab.freelist_sound", "slab.inuse")
    return not any(SLAB_INVARIANTS[n].check(st) for n in names)


def test_symbolic_and_concrete_freelist_invariants_agree() -> None:
    """On real slabs of 8 objects (reachable states) and on corrupted copies of them."""
    sa = SlabAllocator(PageAllocator(MachineConfig.flat(4096)), nr_cpus=1)
    s = sa.kmem_cache_create("eight", 512)
    assert s.oo_objects == sp.N_OBJECTS
    rng = random.Random(3)
    live: list[int] = []
    recs: list[SlabRecord] = []
    for _ in range(300):
        if live and rng.random() < 0.45:
            sa.kmem_cache_free(s, live.pop(rng.randrange(len(live))), cpu=0)
        else:
            o = sa.kmem_cache_alloc(s, GFP_KERNEL)
            assert o is not None
            live.append(o)
        for r in abstract_slabs(sa).slabs:
            if r.cache == "eight" and r.where != "cpu":  # CPU slabs: inuse counts c->freelist
                recs.append(r)
    assert len(recs) > 100
    corrupted = []
    for r in recs[:200]:
        if r.free:
            corrupted.append(r._replace(free=r.free + r.free[:1]))  # an object twice
            corrupted.append(r._replace(inuse=r.inuse + 1))  # counter off
            corrupted.append(r._replace(marked_free=r.marked_free - {r.free[0]}))
        if len(r.free) < sp.N_OBJECTS:
            missing = next(x for x in range(sp.N_OBJECTS) if x not in r.free)
            corrupted.append(r._replace(marked_free=r.marked_free | {missing}))
    agree = [(_symbolic_holds(r), _concrete_holds(r)) for r in recs + corrupted]
    assert all(a == b for a, b in agree)
    assert any(not a for a, _ in agree) and any(a for a, _ in agree)


# --- the induction's transitions are the code's pushes and pops ---------------------------------

def _sym_values(s: sp.SymSlab, stack: list[int], pad: list[int], free: bytearray,
                objects: int) -> list[tuple[z3.ExprRef, z3.ExprRef]]:
    """Concrete values for a SymSlab: F is the Python list (its last element, the head, is
    F[L-1]) over ``pad`` (a stack array keeps what a pop left), M the slab's free map, inuse
    objects minus free objects."""
    cells = stack + pad[len(stack):]
    out: list[tuple[z3.ExprRef, z3.ExprRef]] = [
        (s.L, z3.BitVecVal(len(stack), sp.IW)),
        (s.inuse, z3.BitVecVal(objects - sum(free), sp.IW))]
    out += [(s.F[j], z3.BitVecVal(cells[j], sp.IW)) for j in range(sp.N_OBJECTS)]
    out += [(s.M[x], z3.BoolVal(bool(free[x]))) for x in range(sp.N_OBJECTS)]
    return out


def _transition_holds(kind: str, pre_list: list[int], post_list: list[int], pre_free: bytearray,
                      post_free: bytearray, x: int) -> bool:
    """proofs/slab.py's _alloc / _free (guard and relation) on a real transition."""
    pre, post = sp.SymSlab("pre"), sp.SymSlab("post")
    pad = pre_list + [0] * sp.N_OBJECTS
    guard, rel = (sp._alloc(pre, post) if kind == "alloc"
                  else sp._free(pre, post, z3.BitVecVal(x, sp.IW), True))
    subst = (_sym_values(pre, pre_list, pad, pre_free, sp.N_OBJECTS)
             + _sym_values(post, post_list, pad, post_free, sp.N_OBJECTS))
    return bool(z3.is_true(z3.simplify(z3.substitute(z3.And(guard, rel), *subst))))


def _lists(sa: SlabAllocator, name: str) -> dict[int, tuple[list[int], list[int], bytearray]]:
    """Every slab of the cache: (its CPU freelist if it is CPU 0's slab, its own freelist,
    its free map), copied."""
    s = sa.find_cache(name)
    c = s.cpu[0]
    return {pfn: (list(c.freelist) if c.slab is sl else [], list(sl.freelist), bytearray(sl.free))
            for pfn, sl in s.slabs.items()}


def _classify(pre: tuple[list[int], list[int], bytearray],
              post: tuple[list[int], list[int], bytearray]) -> tuple[str, list[int], list[int]]:
    """Which one list a step pushed on or popped from: ("cpu"|"slab", pre list, post list),
    or ("other", ...) when both changed (a slab loaded onto the CPU, deactivated...)."""
    if pre[1] == post[1] and pre[0] != post[0]:
        return "cpu", pre[0], post[0]
    if pre[0] == post[0] and pre[1] != post[1]:
        return "slab", pre[1], post[1]
    return "other", [], []


def test_the_inductions_transitions_are_what_the_code_does() -> None:
    """Ties the freelist induction (a symbolic model of Slab.freelist/Slab.free, not the code)
    to the code: every real allocation and free that pops or pushes one list of a slab of 8
    objects (the CPU freelist: the fast paths; the slab's own: remote frees) satisfies the
    proved transition relation with the real lists and free map; a wrong push (at the tail)
    does not."""
    sa = SlabAllocator(PageAllocator(MachineConfig.flat(4096, nodes=2)), nr_cpus=1)
    s = sa.kmem_cache_create("eight", 512)
    assert s.oo_objects == sp.N_OBJECTS and sorted(s.cpu) == [0, 1]
    rng = random.Random(5)
    live: list[int] = []
    seen: dict[tuple[str, str], int] = {}
    for _ in range(400):
        before = _lists(sa, "eight")
        if live and rng.random() < 0.45:
            addr = live.pop(rng.randrange(len(live)))
            slab, x = sa.lookup_object(addr)
            kind = "free"
            sa.kmem_cache_free(s, addr, cpu=rng.choice([0, 1]))  # CPU 1: a remote free
        else:
            o = sa.kmem_cache_alloc(s, GFP_KERNEL, cpu=0)
            assert o is not None
            live.append(o)
            slab, x = sa.lookup_object(o)
            kind = "alloc"
        after = _lists(sa, "eight")
        if slab.pfn not in before or slab.pfn not in after:
            continue  # a new slab, or a discarded one: not a push or pop
        which, pre_l, post_l = _classify(before[slab.pfn], after[slab.pfn])
        if which == "other":
            continue
        assert _transition_holds(kind, pre_l, post_l, before[slab.pfn][2],
                                 after[slab.pfn][2], x), (kind, which, pre_l, post_l)
        seen[(kind, which)] = seen.get((kind, which), 0) + 1
    assert seen.get(("alloc", "cpu"), 0) > 50 and seen.get(("free", "cpu"), 0) > 20
    assert seen.get(("free", "slab"), 0) > 20, seen
    # the check can fail: a free that pushes at the tail of the list, not at its head
    pre_free = bytearray([0, 1, 1, 0, 0, 0, 0, 0])
    post_free = bytearray([1, 1, 1, 0, 0, 0, 0, 0])
    assert _transition_holds("free", [2, 1], [2, 1, 0], pre_free, post_free, 0)
    assert not _transition_holds("free", [2, 1], [0, 2, 1], pre_free, post_free, 0)


def test_kmalloc_runs_the_table_the_size_class_proof_is_about(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """kmalloc.size_class proves impl.slab_common._KMALLOC_INDEX equal to kmalloc_index_of on
    every size; kmalloc() must pick its cache through that table: statically (kmalloc_node ->
    kmalloc_slab -> kmalloc_index -> _KMALLOC_INDEX) and behaviourally (the table of the
    refuted seeded bug, put in its place, changes where kmalloc(65) comes from)."""
    import impl.slab_common as sc

    assert "kmalloc_slab" in SlabAllocator.kmalloc_node.__code__.co_names
    assert "kmalloc_index" in SlabAllocator.kmalloc_slab.__code__.co_names
    assert "_KMALLOC_INDEX" in sc.kmalloc_index.__code__.co_names
    sa = SlabAllocator(PageAllocator(MachineConfig.flat(4096)))
    a = sa.kmalloc(65, GFP_KERNEL)
    assert a is not None and sa.lookup_object(a)[0].cache.name == "kmalloc-96"
    wrong = [0] + [int(sp.index_wrong_table(n)) for n in range(1, 8193)]
    assert sp.kmalloc_size_class(index_of=sp.index_wrong_table).status == "refuted"
    monkeypatch.setattr(sc, "_KMALLOC_INDEX", wrong)
    b = sa.kmalloc(65, GFP_KERNEL)
    assert b is not None and sa.lookup_object(b)[0].cache.name == "kmalloc-128"


def test_kmalloc_objects_are_where_the_alignment_proof_puts_them() -> None:
    """kmalloc.alignment reasons about objects at base + i * slab_stride(size,
    kmalloc_cache_align(size, SLAB_KMALLOC), False), i < order_objects(order, stride), with
    the helpers the proof takes by default. The hot path computes addresses inline (slab.base
    + idx * s.size): a fresh slab of every kmalloc class, filled by kmalloc, holds exactly the
    proof's objects, each aligned as spec.slab.kmalloc_align_spec promises."""
    import inspect

    from impl.slab_common import KMALLOC_INFO, kmalloc_cache_align
    from impl.slub import order_objects, slab_stride
    from spec.layout import PAGE_SHIFT
    from spec.slab import SLAB_KMALLOC, kmalloc_align_spec

    params = inspect.signature(sp.kmalloc_alignment).parameters
    assert params["align_of"].default is kmalloc_cache_align
    assert params["stride"].default is slab_stride
    sa = SlabAllocator(PageAllocator(MachineConfig.flat(16384)), nr_cpus=4)
    for size, short in KMALLOC_INFO.values():
        s = sa.find_cache(f"kmalloc-{short}")
        assert not s.slabs
        st = int(slab_stride(size, kmalloc_cache_align(size, SLAB_KMALLOC), False))
        objs = [sa.kmalloc(size, GFP_KERNEL) for _ in range(s.oo_objects)]
        assert all(o is not None for o in objs) and len(s.slabs) == 1
        slab = next(iter(s.slabs.values()))
        base = sa.pages.page_offset + (slab.pfn << PAGE_SHIFT)
        want = [base + i * st for i in range(int(order_objects(slab.order, st)))]
        assert sorted(o for o in objs if o is not None) == want, short
        assert all(o % kmalloc_align_spec(size) == 0 for o in want)
