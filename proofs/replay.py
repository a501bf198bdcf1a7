"""Replaying the state proofs' counterexamples on the real implementation.

A refutation of a state obligation (proofs/symbolic.py) is data: an operation sequence from the
boot state (BMC) or a pre-state plus one operation (induction). These functions run the same
operations on :class:`impl.page_alloc.PageAllocator` and check every invariant after every
step with :func:`impl.abstraction.check`. For a seeded bug in a helper, the replay shows that
the real implementation does not break the invariants on that input: the bug is in the
mutant, not in the allocator.

The replay machine is ``MachineConfig.flat(pages, max_order=3, min_pages=0)``: min watermark 0
and no lowmem reserve, so the real allocator can hand out every page, as the abstract
transition can. Allocations use GFP_HIGHUSER_MOVABLE (the MOVABLE lists the boot state fills).
The real allocator picks its own block (the head of the smallest suitable free list), which
may differ from the block the counterexample's nondeterministic choice took; a free refers to
the block allocated by an earlier step of the trace, whatever its pfn in the replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from impl.abstraction import check
from impl.machine import MachineConfig
from impl.page_alloc import NR_MT, OWNER_PAGECACHE, OWNER_PAGES, PageAllocator
from proofs.symbolic import memstate_from_data
from spec.gfp import GFP_HIGHUSER_MOVABLE
from spec.state import MemState

REPLAY_GFP = GFP_HIGHUSER_MOVABLE


@dataclass
class Replay:
    """What happened on the real allocator: one line per operation, and the invariants broken
    after each (empty lists when the implementation is sound on this input)."""

    steps: list[str] = field(default_factory=list)
    violations: list[list[str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(not v for v in self.violations)

    def summary(self) -> str:
        lines = [f"{s}: {', '.join(v) if v else 'all invariants hold'}"
                 for s, v in zip(self.steps, self.violations, strict=True)]
        return "\n".join(lines)


def machine(pages: int = 16, max_order: int = 3) -> MachineConfig:
    return MachineConfig.flat(pages, max_order=max_order, min_pages=0, name="proof-replay")


def replay_ops(ops: list[dict[str, Any]], pages: int = 16, max_order: int = 3) -> Replay:
    """Run a BMC trace (``{"op": "alloc", "order": k}`` / ``{"op": "free", "pfn", "order"}``)
    from boot. A free names the block by the pfn the trace's allocation got; it is mapped to
    the block the real allocator returned for that same allocation step."""
    a = PageAllocator(machine(pages, max_order))
    out = Replay()
    trace_to_real: dict[int, tuple[int, int]] = {}  # trace pfn -> (real pfn, order)
    for op in ops:
        if op["op"] == "alloc":
            real = a.alloc_pages(REPLAY_GFP, op["order"])
            if real is not None and op.get("pfn", -1) >= 0:
                trace_to_real[op["pfn"]] = (real, op["order"])
            what = f"alloc order={op['order']} -> " + ("fails" if real is None else hex(real))
        else:
            real_blk = trace_to_real.pop(op["pfn"], None)
            if real_blk is None:
                what = f"free pfn={op['pfn']:#x}: that allocation failed on the real allocator"
            else:
                a.free_pages_pfn(*real_blk)
                what = (f"free pfn={op['pfn']:#x} order={op['order']} -> frees "
                        f"{real_blk[0]:#x}")
        out.steps.append(what)
        out.violations.append(check(a))
    return out


def allocator_from_state(ms: MemState) -> PageAllocator:
    """A real allocator in the abstract state ``ms`` (one zone at pfn 0): every free block
    linked on the list it is on in ``ms``, the allocated blocks and their owners (page-cache
    blocks on the node's LRU), the pageblock migratetypes and the counters."""
    a = PageAllocator(machine(ms.pfn_limit, ms.max_order))
    z = a.zones[0]
    n = (ms.max_order + 1) * NR_MT
    z._lazy.clear()
    z._lazy_pages = 0
    z._buddy.clear()
    z._nxt.clear()
    z._prv.clear()
    z.heads, z.tails, z.counts = [-1] * n, [-1] * n, [0] * n
    z.free_pages = 0
    for b in sorted(ms.free.values()):
        z._link(b.pfn, b.list_order << 3 | b.list_mt, True)
        z.free_pages += 1 << b.order
    for i, mt in enumerate(ms.pageblock_mt):
        a.pageblock_flags[i] = mt
    for ab in sorted(ms.allocated.values()):
        owner = OWNER_PAGECACHE if ab.owner == OWNER_PAGECACHE else OWNER_PAGES
        a.allocated[ab.pfn] = (ab.order, 0, owner,
                               a.pageblock_flags[ab.pfn >> a.pageblock_order])
        if owner == OWNER_PAGECACHE:
            a.nodes[0].lru[ab.pfn] = None
    return a


def replay_step(pre: dict[str, Any], op: dict[str, Any]) -> Replay:
    """Run an induction counterexample's operation on a real allocator put in its pre-state
    (``data["pre"]``, ``data["op"]`` of the refutation)."""
    ms = memstate_from_data(pre)
    a = allocator_from_state(ms)
    out = Replay(["pre-state"], [check(a)])
    if op["op"] == "alloc":
        real = a.alloc_pages(REPLAY_GFP, op["order"])
        out.steps.append(f"alloc order={op['order']} -> "
                         + ("fails" if real is None else hex(real)))
    elif op["op"] == "reclaim" or a.allocated[op["pfn"]][2] == OWNER_PAGECACHE:
        a._release_lru_page(0, op["pfn"])
        out.steps.append(f"reclaim pfn={op['pfn']:#x} order={op['order']}")
    else:
        a.free_pages_pfn(op["pfn"], op["order"])
        out.steps.append(f"free pfn={op['pfn']:#x} order={op['order']}")
    out.violations.append(check(a))
    return out
