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
