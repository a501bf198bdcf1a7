"""The proofs are about the code the allocator runs (issue 10).

proofs/inventory.py lists every proof, the helpers it is about and where the allocator calls
each helper. These tests fail when

* a registered proof or CrossHair contract has no inventory entry (or an entry is stale),
* an obligation's default helper is not the very function object the allocator calls,
* a call site stops calling its helper (inlines a copy, say): statically (the call site's
  code no longer reads the helper's global) and behaviourally: every helper is replaced, in
  the module namespace the allocator looks it up in, by a counting wrapper (it must be called
  by a small scenario) and by a wrong variant (the scenario's outcome must change),
* the table in docs/proofs.md is not the inventory's.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from typing import Any

import pytest

import impl.page_alloc as page_alloc
from impl.abstraction import check
from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from proofs import contracts
from proofs import obligations as ob
from proofs.inventory import DOC, HELPERS, PROOFS, base_name, markdown_table, resolve
from proofs.mutants import buddy_plus, expand_forgets_last_half, pa_off_by_one_page
from proofs.registry import all_checks
from spec.context import Context
from spec.gfp import (
    __GFP_DMA,
    __GFP_DMA32,
    GFP_ATOMIC,
    GFP_DMA,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    MIGRATE_MOVABLE,
    ZONE_DMA,
)
from spec.layout import PAGE_SIZE
from spec.reserves import ALLOC_WMARK_MIN
from tests.test_pgtable import PGTABLE_PROBES

PROOF_KINDS = ("proof", "induction", "bmc")


# --- the inventory covers every proof, and only existing ones ---------------------------------

def test_every_registered_proof_has_an_inventory_entry() -> None:
    names = {base_name(c.name) for long in (False, True) for c in all_checks(long)
             if c.kind in PROOF_KINDS}
    z3_entries = {n for n, p in PROOFS.items() if p.kind != "crosshair"}
    assert names - z3_entries == set(), "proofs without an inventory entry"
    assert z3_entries - names == set(), "inventory entries without a registered proof"


def test_every_crosshair_contract_has_an_inventory_entry() -> None:
    found = {f"crosshair:{n}" for n, f in inspect.getmembers(contracts, inspect.isfunction)
             if f.__module__ == contracts.__name__ and "post:" in (f.__doc__ or "")}
    listed = {n for n, p in PROOFS.items() if p.kind == "crosshair"}
    assert found == listed


@pytest.mark.parametrize("name", sorted(PROOFS))
def test_proof_entry_names_real_functions(name: str) -> None:
    p = PROOFS[name]
    entry = resolve(p.entry)
    assert p.about or p.note, f"{name}: no helper and no note saying what it is about"
    for q in p.about:
        assert q in HELPERS, f"{name}: helper {q} missing from HELPERS"
    if p.kind == "crosshair":  # the contract calls (or states conditions on) each helper
        conditions = " ".join(ln for ln in (entry.__doc__ or "").splitlines()
                              if ln.strip().startswith(("pre:", "post:")))
        for q in p.about:
            n = HELPERS[q].name
            assert n in entry.__code__.co_names or n in conditions, f"{name} ignores {q}"
    sig = inspect.signature(entry)
    for param, q in p.params.items():
        assert sig.parameters[param].default is resolve(q), (
            f"{name}: parameter {param} does not default to {q}")


@pytest.mark.parametrize("qualname", sorted(HELPERS))
def test_call_sites_call_the_proved_function_object(qualname: str) -> None:
    h = HELPERS[qualname]
    assert any(qualname in p.about for p in PROOFS.values()), f"{qualname}: proved by nothing"
    assert h.call_sites or h.note, f"{qualname}: no call site and no reason why"
    helper = resolve(qualname)
    for site in h.call_sites:
        fn = resolve(site.function)
        assert h.name in fn.__code__.co_names, (
            f"{site.function} no longer reads the global {h.name}")
        assert getattr(resolve_module(site.lookup), h.name) is helper, (
            f"{site.lookup}.{h.name} is not {qualname}")


def resolve_module(name: str) -> Any:
    return __import__(name, fromlist=["_"])


def test_docs_table_is_the_inventory() -> None:
    text = DOC.read_text()
    assert markdown_table() in text, "run: python -m proofs.inventory --write"


# --- scenarios: small allocator runs whose outcome depends on the helpers ---------------------

def _outcome(run: Callable[[], Any]) -> Any:
    """The scenario's result, or the exception it raised (a wrong helper may crash it)."""
    try:
        return run()
    except Exception as e:
        return ("raised", type(e).__name__)


def churn() -> Any:
    """Random allocations and frees of orders 0-2 on a 128-page zone: the free lists in list
    order (so head/tail placement shows) and the invariants after every step."""
    rng = random.Random(10)
    a = PageAllocator(MachineConfig.flat(128, max_order=4, min_pages=2))
    live: list[tuple[int, int]] = []
    trace: list[Any] = []
    for _ in range(300):
        if live and (rng.random() < 0.5 or len(live) > 16):
            pfn, order = live.pop(rng.randrange(len(live)))
            a.free_pages_pfn(pfn, order)
        else:
            order = rng.randint(0, 2)
            got = a.alloc_pages_node(-1, GFP_HIGHUSER_MOVABLE, order)
            if got is not None:
                live.append((got, order))
        trace.append((tuple(a.zones[0].free_blocks()), tuple(check(a))))
    return trace


def direct_map() -> Any:
    """__get_free_pages and free_pages on the default machine."""
    a = PageAllocator(MachineConfig.default())
    addr = a.get_free_pages(GFP_KERNEL, 1)
    pfn = a.virt_to_pfn(addr)
    a.free_pages(addr, 1)
    return addr, pfn, a.nr_free_pages(), dict(a.allocated)


def gfp_routes() -> Any:
    """Fresh allocators (the per-mask cache is empty) serving several masks, a blocking mask
    in hardirq context and a bad zone combination."""
    out: list[Any] = []
    a = PageAllocator(MachineConfig.default())
    for gfp in (GFP_KERNEL, GFP_DMA, GFP_HIGHUSER_MOVABLE):
        pfn = a.alloc_pages_node(-1, gfp, 0)
        out.append((pfn, a.allocated.get(pfn) if pfn is not None else None))
    out.append(_outcome(lambda: PageAllocator(MachineConfig.tiny()).alloc_pages_node(
        -1, GFP_KERNEL, 0, ctx=Context.HARDIRQ)))
    out.append(_outcome(lambda: PageAllocator(MachineConfig.tiny()).alloc_pages_node(
        -1, __GFP_DMA | __GFP_DMA32, 0)))
    return out


def reclaim() -> Any:
    """GFP_KERNEL on a tiny machine full of page cache: the slow path sleeps in direct
    reclaim."""
    a = PageAllocator(MachineConfig.tiny())
    a.pagecache_add(0, 29)
    a.drain_effects()
    pfns = [a.alloc_pages_node(-1, GFP_KERNEL, 0) for _ in range(4)]
    return pfns, [(e.kind, e.detail) for e in a.drain_effects()]


def atomic_reserve() -> Any:
    """GFP_ATOMIC until it fails: how deep into the min watermark the reserves let it go,
    and the warning when it fails."""
    a = PageAllocator(MachineConfig.tiny())
    pfns: list[int] = []
    while True:
        pfn = a.alloc_pages_node(-1, GFP_ATOMIC, 0)
        if pfn is None:
            break
        pfns.append(pfn)
    return pfns, [(e.kind, e.detail) for e in a.drain_effects()]


def _const(value: Any) -> Callable[..., Any]:
    return lambda *args, **kw: value


# helper -> (scenario, wrong variant); one entry per proved helper with a call site
PROBES: dict[str, tuple[Callable[[], Any], Callable[..., Any]]] = {
    "impl.buddy.find_buddy_pfn": (churn, buddy_plus),
    "impl.buddy.combined_pfn": (churn, lambda pfn, buddy_pfn: pfn),
    "impl.buddy.higher_buddy_pfn": (churn, _const(-1)),
    "impl.buddy.expand_halves": (churn, expand_forgets_last_half),
    "impl.direct_map.pfn_to_virt": (direct_map, lambda pfn, off=0: pfn * PAGE_SIZE + off + 1),
    "impl.direct_map.virt_to_pfn": (direct_map, lambda virt, off=0: (virt - off) // PAGE_SIZE - 1),
    "impl.direct_map.__va": (direct_map, lambda phys, off=0: phys),
    "impl.direct_map.__pa": (direct_map, pa_off_by_one_page),
    "spec.gfp.check_gfp": (gfp_routes, lambda gfp: gfp),
    "spec.gfp.gfp_is_valid": (gfp_routes, _const(True)),
    "spec.gfp.gfp_zone": (gfp_routes, _const(ZONE_DMA)),
    "spec.gfp.gfp_migratetype": (gfp_routes, _const(MIGRATE_MOVABLE)),
    "spec.gfp.gfpflags_allow_blocking": (gfp_routes, _const(False)),
    "spec.gfp.format_gfp": (atomic_reserve, _const("?")),
    "spec.reserves.may_sleep": (reclaim, _const(False)),
    "impl.page_alloc.alloc_enters_reclaim": (reclaim, _const(False)),
    "spec.reserves.watermark_min_adjusted": (atomic_reserve, lambda mark, flags: mark),
    "spec.reserves.gfp_to_alloc_flags": (atomic_reserve, _const(ALLOC_WMARK_MIN)),
}
PROBES.update(PGTABLE_PROBES)  # impl/pgtable.py's helpers (tests/test_pgtable.py)
# a call site whose scenario differs from its helper's (the same helper read elsewhere)
SITE_SCENARIOS: dict[tuple[str, str], Callable[[], Any]] = {
    ("spec.gfp.gfpflags_allow_blocking", "spec.reserves"): reclaim,
}
# helpers the page allocator does not call (slab code, the CLI): counted by their own runs
COUNTED_ELSEWHERE = {
    "impl.buddy.get_order", "impl.slab_common.kmalloc_cache_align", "impl.slub.slab_stride",
    "impl.slub.order_objects", "spec.gfp.parse_gfp",
    # vmalloc's (wrong variants: tests/test_vmalloc_proofs.py)
    "impl.vmalloc.vmalloc_context_ok", "impl.vmalloc.vmalloc_page_gfp",
    "impl.vmalloc.vmalloc_pgtable_gfp", "impl.vmalloc.fit_start",
    "impl.vmalloc.is_within_this_va", "impl.vmalloc.clip_remainders",
}


def _sites() -> list[tuple[str, str]]:
    return [(q, s.lookup) for q, h in HELPERS.items() for s in h.call_sites
            if q not in COUNTED_ELSEWHERE]


def test_every_page_allocator_helper_has_a_probe() -> None:
    with_sites = {q for q, h in HELPERS.items() if h.call_sites} - COUNTED_ELSEWHERE
    assert with_sites == set(PROBES)


@pytest.mark.parametrize(("qualname", "lookup"), _sites(), ids=lambda x: str(x))
def test_the_allocator_runs_the_proved_helper(monkeypatch: pytest.MonkeyPatch, qualname: str,
                                              lookup: str) -> None:
    """Counted: the scenario calls the helper through ``lookup``. Wrong: replacing it there
    changes what the allocator does."""
    h = HELPERS[qualname]
    scenario, wrong = PROBES[qualname]
    scenario = SITE_SCENARIOS.get((qualname, lookup), scenario)
    module = resolve_module(lookup)
    real = getattr(module, h.name)
    baseline = _outcome(scenario)
    calls = 0

    def counting(*args: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args, **kw)

    monkeypatch.setattr(module, h.name, counting)
    assert _outcome(scenario) == baseline
    assert calls > 0, f"{scenario.__name__} never calls {lookup}.{h.name}"
    monkeypatch.setattr(module, h.name, wrong)
    assert _outcome(scenario) != baseline, (
        f"{lookup}.{h.name} replaced by a wrong variant: {scenario.__name__} unchanged")


@pytest.mark.parametrize("qualname", sorted(COUNTED_ELSEWHERE))
def test_helpers_outside_the_page_allocator_are_called(monkeypatch: pytest.MonkeyPatch,
                                                       qualname: str) -> None:
    from cli.scenario import _parse_value  # only this test needs the CLI and the slab
    from impl.slab_common import SlabAllocator

    h = HELPERS[qualname]
    calls: dict[str, int] = {}
    for site in h.call_sites:
        module = resolve_module(site.lookup)
        real = getattr(module, h.name)

        def counting(*args: Any, _real: Any = real, _lk: str = site.lookup, **kw: Any) -> Any:
            calls[_lk] = calls.get(_lk, 0) + 1
            return _real(*args, **kw)

        monkeypatch.setattr(module, h.name, counting)
    if qualname == "spec.gfp.parse_gfp":
        _parse_value("gfp", "GFP_KERNEL", "test")
    elif qualname.startswith("impl.vmalloc."):
        from tests.test_vmalloc_proofs import vmalloc_probe
        vmalloc_probe()
    else:
        s = SlabAllocator(PageAllocator(MachineConfig.default()), nr_cpus=2)
        addr = s.kmalloc(3 * PAGE_SIZE, GFP_KERNEL)  # a large kmalloc: get_order
        assert addr
        s.kfree(addr)
    assert set(calls) == {site.lookup for site in h.call_sites}, calls


# --- issue 10's example: buddy with + instead of ^ ---------------------------------------------

def test_buddy_plus_is_refuted_and_is_what_the_allocator_would_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The proof's default helper is the allocator's; the wrong helper is refuted by the
    proof and, put where the allocator looks it up, is run by the free path and breaks an
    invariant on the first free of a block whose + neighbour is free."""
    default = inspect.signature(ob.buddy_arithmetic).parameters["find_buddy"].default
    assert default is resolve("impl.page_alloc.find_buddy_pfn")
    r = ob.buddy_arithmetic(find_buddy=buddy_plus)
    assert r.status == "refuted" and "buddy(buddy(pfn)) == pfn" in r.failed

    ran: list[tuple[int, int]] = []

    def spy(pfn: int, order: int) -> int:
        ran.append((pfn, order))
        return int(buddy_plus(pfn, order))

    monkeypatch.setattr(page_alloc, "find_buddy_pfn", spy)
    a = PageAllocator(MachineConfig.tiny())
    assert [a.alloc_pages_node(-1, GFP_HIGHUSER_MOVABLE, 0) for _ in range(4)] == [0, 1, 2, 3]
    a.free_pages_pfn(2, 0)  # 2 + 1 = 3 is allocated: no merge, as with ^
    assert check(a) == []
    a.free_pages_pfn(1, 0)  # 1 + 1 = 2 is free: merged with a page that is not its buddy
    assert (1, 0) in ran
    assert check(a) != []
    assert 0 in a.allocated  # ... into a block [0, 2) that covers the allocated page 0
