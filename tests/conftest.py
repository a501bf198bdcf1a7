"""Shared test helpers: a full snapshot of allocator state, and small machine fixtures."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from impl.machine import MachineConfig
from impl.page_alloc import PageAllocator


def snapshot(a: PageAllocator) -> dict[str, Any]:
    """Everything an operation could change, deep-copied so later mutation cannot alias it:
    every zone's free lists (heads, tails, counts, the intrusive links, lazy boot ranges),
    counters, watermarks and boosts; allocated blocks, references, per-CPU context stacks,
    pageblock migratetypes, node LRUs and kswapd state, pending effects and NUMA access costs.
    """
    zones = [
        {
            "free_pages": z.free_pages,
            "counts": list(z.counts),
            "heads": list(z.heads),
            "tails": list(z.tails),
            "_buddy": dict(z._buddy),
            "_nxt": dict(z._nxt),
            "_prv": dict(z._prv),
            "_lazy": copy.deepcopy(z._lazy),
            "_lazy_pages": z._lazy_pages,
            "wmark": list(z.wmark),
            "lowmem_reserve": list(z.lowmem_reserve),
            "boost": z.boost,
            "boosted": z.boosted,
            "numa": (z.numa_hit, z.numa_miss, z.numa_foreign, z.numa_local, z.numa_other,
                     z.interleave_hit),
        }
        for z in a.zones
    ]
    return {
        "zones": zones,
        "allocated": dict(a.allocated),
        "refs": dict(a.refs),
        "nr_page_table_pages": list(a.nr_page_table_pages),
        "ctx": {cpu: list(st) for cpu, st in a.ctx.items()},
        "pageblock_flags": bytes(a.pageblock_flags),
        "lru": [list(n.lru) for n in a.nodes],
        "kswapd_awake": [n.kswapd_awake for n in a.nodes],
        "effects": list(a.effects),
        "access_cost": dict(a.access_cost),
        "accesses": dict(a.accesses),
    }


@pytest.fixture
def tiny() -> PageAllocator:
    """One node, 32 pages, MAX_PAGE_ORDER 3, min watermark 2."""
    return PageAllocator(MachineConfig.tiny())


@pytest.fixture
def default_machine() -> PageAllocator:
    """The two-node, 16 GiB-per-node default machine, freshly booted."""
    return PageAllocator(MachineConfig.default())


def one_error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``kmemspec ARGV`` in-process; assert exit 2 and a single error line; return it."""
    from cli.main import main  # the CLI imports lazily; so do the tests that need it

    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kmemspec: error: "), lines[0]
    return lines[0]
