"""The invariant registry: each invariant can fail, its two encodings agree, and the layering
(spec never imports impl) holds."""

from __future__ import annotations

import ast
import random
from dataclasses import replace
from pathlib import Path

import pytest

from impl.abstraction import abstract, alloc_step
from impl.debug import CheckedPageAllocator, InvariantViolation
from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from proofs.seeded_bugs import SEEDED_BUGS
from spec.context import Context
from spec.gfp import (
    __GFP_THISNODE,
    GFP_ATOMIC,
    GFP_DMA,
    GFP_DMA32,
    GFP_KERNEL,
    GFP_NOWAIT,
    MIGRATE_MOVABLE,
    MIGRATE_UNMOVABLE,
    ZONE_DMA,
    ZONE_NORMAL,
)
from spec.invariants import INVARIANTS, STEP_PROPERTIES, step_violations, violated
from spec.state import AllocBlock, FreeBlock, MemState, StepRecord

ROOT = Path(__file__).resolve().parent.parent


def _aligned() -> MachineConfig:
    return MachineConfig.flat(64, nodes=2, max_order=4, min_pages=2)


# Zones and nodes that meet at pfns that are not MAX_PAGE_ORDER aligned (16 pages here): the
# only machines on which a merge across a zone or node boundary is possible at all.
UNALIGNED: tuple[MachineConfig, ...] = (
    MachineConfig.unaligned((40, 64, 96), max_order=4, min_pages=2),
    MachineConfig.unaligned((21, 35, 27), max_order=4, min_pages=2, reserve=1),
    MachineConfig.flat(40, nodes=2, max_order=4, min_pages=2),
)


def _random_state(seed: int, steps: int = 60, machine: MachineConfig | None = None) -> MemState:
    """A reachable state of a small two-node machine after random allocations and frees."""
    rng = random.Random(seed)
    a = PageAllocator(machine or _aligned())
    cpus = sorted(a.cpu_node)
    live: list[tuple[int, int]] = []
    for _ in range(rng.randrange(steps)):
        if live and rng.random() < 0.4:
            p, o = live.pop(rng.randrange(len(live)))
            a.free_pages_pfn(p, o)
        else:
            o = rng.randint(0, 4)
            g = rng.choice([GFP_KERNEL, GFP_ATOMIC, GFP_NOWAIT, GFP_DMA32, GFP_KERNEL | GFP_DMA])
            p2 = a.alloc_pages_node(-1, g, o, cpu=rng.choice(cpus), ctx=Context.PROCESS)
            if p2 is not None:
                live.append((p2, o))
    return abstract(a)


def _corrupt(s: MemState, rng: random.Random) -> MemState:
    """One random corruption of an abstract state (the kind of bug a wrong implementation
    would produce)."""
    free = dict(s.free)
    allocated = dict(s.allocated)
    nr_free = dict(s.nr_free)
    free_pages = dict(s.free_pages)
    pb = bytearray(s.pageblock_mt)
    zones = s.zones
    kind = rng.randrange(12)
    if kind == 0 and free:  # a free block vanishes (leak)
        del free[rng.choice(list(free))]
    elif kind == 1 and free:  # wrong order in page_private
        p = rng.choice(list(free))
        free[p] = free[p]._replace(order=free[p].order + rng.choice([-1, 1]))
    elif kind == 2 and free:  # listed twice
        p = rng.choice(list(free))
        free[p] = free[p]._replace(times_listed=2)
    elif kind == 3 and nr_free:  # nr_free drifts
        k = rng.choice(list(nr_free))
        nr_free[k] += rng.choice([-1, 1])
    elif kind == 4 and free_pages:  # NR_FREE_PAGES drifts
        zid = rng.choice(list(free_pages))
        free_pages[zid] += 1
    elif kind == 5 and free:  # a free block is also handed out
        p = rng.choice(list(free))
        allocated[p] = AllocBlock(p, free[p].order, free[p].list_zid, "pages", 0)
    elif kind == 6 and free:  # a block on the wrong migratetype list
        p = rng.choice(list(free))
        free[p] = free[p]._replace(list_mt=(free[p].list_mt + 1) % 3)
    elif kind == 7 and allocated:  # an allocated block grows over its neighbour
        p = rng.choice(list(allocated))
        allocated[p] = allocated[p]._replace(order=allocated[p].order + 1)
    elif kind == 9:  # a zone loses pages under its blocks (a hole or reserved range)
        z = zones[0]
        st, e = z.usable[0]
        zones = (z._replace(usable=((st, e - rng.randint(1, 5)),)), *zones[1:])
    elif kind == 10 and len(zones) > 1:  # the zone boundary moves into a block
        z0, z1 = zones[0], zones[1]
        cut = z0.usable[-1][1] - rng.randint(1, 6)
        zones = (z0._replace(usable=((z0.usable[0][0], cut),), end=cut),
                 z1._replace(usable=((cut, z1.usable[-1][1]),), start=cut), *zones[2:])
    elif kind == 11 and any(b.order > 0 for b in free.values()):  # split without listing
        b = rng.choice([b for b in free.values() if b.order > 0])
        lo = b._replace(order=b.order - 1, list_order=b.order - 1)
        hi = lo._replace(pfn=b.pfn + (1 << (b.order - 1)))
        free[b.pfn] = lo
        free[hi.pfn] = hi
    else:  # a pageblock relabelled under free pages
        i = rng.randrange(len(pb))
        pb[i] = (pb[i] + 1) % 3
    return replace(s, zones=zones, free=free, allocated=allocated, nr_free=nr_free,
                   free_pages=free_pages, pageblock_mt=bytes(pb), _zone_at={})


@pytest.mark.parametrize("machine", [_aligned(), *UNALIGNED], ids=lambda m: m.name)
def test_reachable_states_satisfy_every_invariant(machine: MachineConfig) -> None:
    for seed in range(15):
        s = _random_state(seed, machine=machine)
        assert violated(s) == []
        assert violated(s, fast=True) == []


@pytest.mark.parametrize("machine", [_aligned(), *UNALIGNED], ids=lambda m: m.name)
def test_two_encodings_agree_on_many_states(machine: MachineConfig) -> None:
    """The per-pfn definition (the one the proofs use) and the block-level evaluation agree,
    invariant by invariant, on reachable and corrupted states."""
    rng = random.Random(7)
    disagreements = []
    broken_seen: set[str] = set()
    for seed in range(60):
        s = _random_state(seed, machine=machine)
        for _ in range(3):
            c = _corrupt(s, rng)
            v = c.view()
            for inv in INVARIANTS.values():
                assert inv.fast is not None
                d, f = bool(inv.definition(v)), inv.fast(c)
                if d != f:
                    disagreements.append((seed, inv.name, d, f))
                if not d:
                    broken_seen.add(inv.name)
    assert disagreements == []
    # the corruptions exercised (almost) every invariant, so the agreement is meaningful
    assert broken_seen == set(INVARIANTS), set(INVARIANTS) - broken_seen


def _base() -> MemState:
    return _random_state(3, steps=40)


def _one_free(s: MemState) -> FreeBlock:
    return next(b for b in s.free.values() if b.order > 0)


@pytest.mark.parametrize("name,mutate", [
    ("buddy.partition", lambda s: replace(s, free={p: b for p, b in s.free.items()
                                                    if b != _one_free(s)})),
    ("buddy.no_overlap", lambda s: replace(s, allocated={**s.allocated, _one_free(s).pfn + 1:
                                                         AllocBlock(_one_free(s).pfn + 1, 0, 0,
                                                                    "pages", 0)})),
    ("buddy.alignment", lambda s: replace(s, free={**{p: b for p, b in s.free.items()
                                                      if b != _one_free(s)},
                                                   _one_free(s).pfn + 1: _one_free(s)._replace(
                                                       pfn=_one_free(s).pfn + 1, order=1)})),
    ("freelist.listed_once", lambda s: replace(s, free={**s.free, _one_free(s).pfn:
                                                        _one_free(s)._replace(times_listed=2)})),
    ("freelist.right_list", lambda s: replace(s, free={**s.free, _one_free(s).pfn:
                                                       _one_free(s)._replace(
                                                           list_order=_one_free(s).order - 1)})),
    ("freelist.nr_free", lambda s: replace(s, nr_free={k: n + 1 for k, n in s.nr_free.items()})),
    ("freelist.free_pages", lambda s: replace(s, free_pages={k: n + 1
                                                             for k, n in s.free_pages.items()})),
])
def test_each_invariant_can_fail(name: str, mutate: object) -> None:
    s = _base()
    assert violated(s) == []
    assert callable(mutate)
    bad = mutate(s)
    assert name in violated(bad)
    assert name in violated(bad, fast=True)


def test_fully_merged_and_contiguity_can_fail() -> None:
    """Two free buddies left unmerged; a block straddling two zones."""
    a = PageAllocator(MachineConfig.flat(8, nodes=1, max_order=3, min_pages=0))
    s = abstract(a)
    (head,) = s.free.values()  # one order-3 block
    halves = {head.pfn: head._replace(order=2, list_order=2),
              head.pfn + 4: head._replace(pfn=head.pfn + 4, order=2, list_order=2)}
    split = replace(s, free={**s.free, **halves}, nr_free={(0, 2, head.list_mt): 2})
    split = replace(split, free={p: b for p, b in split.free.items() if p in halves})
    assert "freelist.fully_merged" in violated(split)
    assert "freelist.fully_merged" in violated(split, fast=True)
    z0 = s.zones[0]
    two = replace(s, zones=(z0._replace(usable=((0, 4),), end=4),
                            z0._replace(zid=1, start=4, usable=((4, 8),))), _zone_at={})
    assert "buddy.contiguity" in violated(two)
    assert "buddy.contiguity" in violated(two, fast=True)


def _cross_zone_merged(s: MemState) -> MemState:
    """The state a __free_one_page without page_is_buddy()'s zone check leaves behind: the
    last free block of one zone and the first of the next, buddies of the same order across
    an unaligned boundary, merged into one block listed on the second zone."""
    for lo in sorted(s.free.values(), key=lambda b: b.pfn):
        k = lo.order
        hi = s.free.get(lo.pfn + (1 << k))
        if (hi is not None and hi.order == k and k < s.max_order and lo.pfn % (2 << k) == 0
                and s.zone_at(lo.pfn) != s.zone_at(hi.pfn) and s.zone_at(hi.pfn) >= 0):
            merged = hi._replace(pfn=lo.pfn, order=k + 1, list_order=k + 1)
            free = {p: b for p, b in s.free.items() if p not in (lo.pfn, hi.pfn)}
            nr_free = dict(s.nr_free)
            for b in (lo, hi):
                nr_free[(b.list_zid, k, b.list_mt)] -= 1
            key = (hi.list_zid, k + 1, hi.list_mt)
            nr_free[key] = nr_free.get(key, 0) + 1
            return replace(s, free={**free, lo.pfn: merged}, nr_free=nr_free)
    raise AssertionError("no pair of free buddies across a zone boundary")


@pytest.mark.parametrize("machine", UNALIGNED, ids=lambda m: m.name)
def test_cross_zone_merge_is_flagged(machine: MachineConfig) -> None:
    """A block merged across an unaligned zone or node boundary breaks buddy.contiguity
    (and the list it sits on is not its head's zone's), in both encodings; the seeded bug
    that does it is caught at boot, by the same invariant."""
    s = abstract(PageAllocator(machine))
    assert violated(s) == []
    bad = _cross_zone_merged(s)
    for fast in (False, True):
        got = violated(bad, fast=fast)
        assert "buddy.contiguity" in got and "freelist.right_list" in got, got
    booted = abstract(SEEDED_BUGS["cross-zone-merge"].cls(machine))
    assert "buddy.contiguity" in violated(booted)
    assert "buddy.contiguity" in violated(booted, fast=True)


def test_no_stray_pages_can_fail() -> None:
    a = PageAllocator(MachineConfig.flat(16, nodes=1, max_order=3, min_pages=0))
    s = abstract(a)
    holed = replace(s, zones=(s.zones[0]._replace(usable=((0, 12),)),), _zone_at={})
    assert "buddy.no_stray_pages" in violated(holed)
    assert "buddy.no_stray_pages" in violated(holed, fast=True)


def _rec(**kw: object) -> StepRecord:
    base = dict(op="alloc_pages", gfp=GFP_KERNEL, ctx=0, order=0, pfn=5, zid=0, slept=False,
                free_after=100, mark=10, no_watermarks=False, zone_idx=ZONE_NORMAL, nid=0,
                pref_nid=0)
    base.update(kw)
    return StepRecord(**base)  # type: ignore[arg-type]


def test_step_properties_can_fail() -> None:
    assert step_violations(_rec()) == []
    assert step_violations(_rec(slept=True)) == []
    assert "context.atomic_never_sleeps" in step_violations(_rec(slept=True, ctx=2))
    assert "context.atomic_never_sleeps" in step_violations(_rec(slept=True, gfp=GFP_ATOMIC))
    assert "watermark.reserves" in step_violations(_rec(free_after=9))
    assert step_violations(_rec(free_after=9, no_watermarks=True)) == []
    assert step_violations(_rec(free_after=0, pfn=-1)) == []
    assert "range.zone_and_node" in step_violations(_rec(gfp=1, zone_idx=ZONE_NORMAL))
    assert step_violations(_rec(gfp=1, zone_idx=ZONE_DMA)) == []
    assert "range.zone_and_node" in step_violations(
        _rec(gfp=GFP_KERNEL | __GFP_THISNODE, nid=1, pref_nid=0))
    assert set(STEP_PROPERTIES) == {"context.atomic_never_sleeps", "watermark.reserves",
                                    "range.zone_and_node", "liveness.blocking",
                                    "watermark.no_premature_failure", "reclaim.request_scope",
                                    "numa.zone_statistics", "kswapd.balanced"}


def test_alloc_step_records_real_calls() -> None:
    a = PageAllocator(MachineConfig.flat(64, nodes=2, max_order=4, min_pages=4))
    pfn, rec = alloc_step(a, 1, GFP_KERNEL | __GFP_THISNODE, 2)
    assert pfn is not None and rec.nid == 1 and rec.order == 2 and not rec.slept
    assert rec.free_after == a.zones[rec.zid].free_pages
    assert step_violations(rec) == []


def test_debug_mode_catches_a_broken_implementation() -> None:
    class Leaky(CheckedPageAllocator):
        def _expand(self, z: object, pfn: int, low: int, high: int, mt: int) -> None:
            return None  # forgets to put the split halves back

    ok = CheckedPageAllocator(MachineConfig.tiny())
    assert ok.alloc_pages_node(-1, GFP_KERNEL, 0) is not None
    bad = Leaky(MachineConfig.tiny())
    with pytest.raises(InvariantViolation, match=r"buddy\.partition"):
        bad.alloc_pages_node(-1, GFP_KERNEL, 0)


def test_boot_state_pageblocks_are_movable() -> None:
    a = PageAllocator(MachineConfig.tiny())
    s = abstract(a)
    assert set(s.pageblock_mt) == {MIGRATE_MOVABLE}
    assert MIGRATE_UNMOVABLE not in s.pageblock_mt


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(n.name.split(".")[0] for n in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_spec_never_imports_impl() -> None:
    """The layering of the design card: spec is what is allowed, impl how; spec stands alone."""
    for f in sorted((ROOT / "spec").glob("*.py")):
        bad = _imports(f) & {"impl", "proofs", "cli", "tests", "benchmarks"}
        assert not bad, f"{f.name} imports {bad}"
    for f in sorted((ROOT / "impl").glob("*.py")):
        bad = _imports(f) & {"proofs", "cli", "tests", "benchmarks"}
        assert not bad, f"{f.name} imports {bad}"
