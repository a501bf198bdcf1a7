"""The vmalloc proofs (proofs/vmalloc.py) are about the code vmalloc runs: each proved helper
is called by a small vmalloc run through the module global the implementation reads, and a
wrong variant put there changes the run's outcome; the obligations prove and their seeded
bugs are refuted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import impl.vmalloc as vmalloc_mod
from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator
from impl.pgtable import GFP_PGTABLE_KERNEL
from impl.vmalloc import Vmalloc
from proofs import vmalloc as pv
from spec.context import Context
from spec.errors import KmemError
from spec.gfp import __GFP_DMA, GFP_KERNEL, GFP_NOFS
from spec.layout import PAGE_SIZE

P = PAGE_SIZE


def vmalloc_probe() -> Any:
    """Areas of several sizes (one aligned, so va_clip splits with two remainders), a hole
    reused after a purge, GFP_NOFS, and a vmalloc under a spinlock: every address, page and
    page-table page, and the error."""
    v = Vmalloc(PageAllocator(MachineConfig.default()))
    out: list[Any] = []
    a = v.vmalloc(3 * P)
    b = v.vmalloc_node_range(P, 16 * P, v.vmalloc_start, v.kernel_vmalloc_end, GFP_KERNEL)
    c = v.vmalloc(5 * P, gfp=GFP_NOFS)
    assert a is not None
    v.vfree(a)
    v.purge_vmap_area_lazy()
    d = v.vmalloc(P)
    for x in (a, b, c, d):
        out.append((x, tuple(v.busy[x].pages) if x in v.busy else None))
    out.append(sorted(v.pgtable.table_pfns()))
    try:
        out.append(v.vmalloc(P, ctx=Context.SPINLOCK))
    except KmemError as e:
        out.append(type(e).__name__)
    out.append(list(v.free.blocks()))
    return out


def _outcome(run: Callable[[], Any]) -> Any:
    try:
        return run()
    except Exception as e:  # a wrong helper may crash the run
        return ("raised", type(e).__name__)


WRONG: dict[str, Callable[..., Any]] = {
    "vmalloc_context_ok": lambda ctx: True,
    "vmalloc_page_gfp": lambda gfp: gfp | __GFP_DMA,
    "vmalloc_pgtable_gfp": lambda gfp: GFP_PGTABLE_KERNEL | __GFP_DMA,
    "fit_start": lambda va_start, vstart, align: max(va_start, vstart) + P,
    "is_within_this_va": lambda *a, **kw: False,
    "clip_remainders": lambda s, e, nva, size: (s, s, nva + size + P, e),
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_vmalloc_runs_the_proved_helper(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    real = getattr(vmalloc_mod, name)
    baseline = _outcome(vmalloc_probe)
    calls = 0

    def counting(*args: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args, **kw)

    monkeypatch.setattr(vmalloc_mod, name, counting)
    assert _outcome(vmalloc_probe) == baseline
    assert calls > 0
    monkeypatch.setattr(vmalloc_mod, name, WRONG[name])
    assert _outcome(vmalloc_probe) != baseline


def test_obligations_prove() -> None:
    for name, fn in pv.OBLIGATIONS.items():
        r = fn()
        assert r.ok, (name, r.summary())


@pytest.mark.parametrize("name", sorted(pv.VM_MUTANTS))
def test_seeded_bugs_are_refuted(name: str) -> None:
    _ob, _bug, run = pv.VM_MUTANTS[name]
    r = run()
    assert r.status == "refuted" and r.counterexample, r.summary()


def test_in_interrupt_only_guard_lets_a_spinlock_holder_in() -> None:
    """The seeded guard's counterexample is a real bug on the implementation: with it, a
    vmalloc under a spinlock goes on and allocates with GFP_KERNEL in atomic context (the page
    allocator's own check then reports it)."""
    r = pv.VM_MUTANTS["mutant.vmalloc_in_interrupt_only"][2]()
    ctx = int(r.counterexample["ctx"], 16)
    assert Context(ctx) in (Context.PREEMPT_DISABLED, Context.SPINLOCK)
    v = Vmalloc(PageAllocator(MachineConfig.flat(1024)))
    with pytest.raises(KmemError, match="sleeping function"):
        v.vmalloc(P, ctx=Context(ctx))
