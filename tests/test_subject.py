"""The reference subject: protocol conformance, and the oracle's rules over random sessions."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from cli.subject import Subject
from impl.views import buddyinfo
from oracle.machines import EXAMPLE_HELLO
from spec.gfp import __GFP_DIRECT_RECLAIM, ZONE_NORMAL, gfp_zone, parse_gfp

ROOT = Path(__file__).resolve().parent.parent

# The protocol document's example machine.
HELLO: dict[str, Any] = EXAMPLE_HELLO


def alloc(seq: int, order: int, gfp: str = "GFP_KERNEL", nid: int = -1, cpu: int = 0,
          ctx: str = "process") -> dict[str, Any]:
    return {"op": "alloc_pages", "seq": seq, "order": order, "gfp": gfp, "nid": nid,
            "cpu": cpu, "ctx": ctx}


def free(seq: int, pfn: int, order: int) -> dict[str, Any]:
    return {"op": "free_pages", "seq": seq, "pfn": pfn, "order": order}


def started(hello: dict[str, Any] | None = None) -> Subject:
    s = Subject()
    ans, done = s.handle(dict(hello or HELLO))
    assert ans == {"seq": 1, "ok": True, "name": "kmemspec",
                   "features": ["pages", "kmalloc", "slab", "vmalloc"]}
    assert not done
    return s


# --- a whole session through a pipe --------------------------------------------------------------
def test_full_session_over_stdio() -> None:
    reqs = [
        HELLO,
        alloc(2, 3),
        alloc(3, 0, "GFP_KERNEL|__GFP_THISNODE|0x8000000", nid=1, cpu=0),
        free(4, 0, 0),  # never allocated
        alloc(5, 11),
        alloc(6, 2, "GFP_KERNEL", cpu=1, ctx="atomic"),
        {"op": "vmalloc", "seq": 7, "size": 8, "gfp": "GFP_KERNEL", "cpu": 0,
         "ctx": "atomic"},
        {"op": "bye", "seq": 10},
    ]
    # seq 2's block is freed twice: first ok, then a double free
    text = "".join(json.dumps(r) + "\n" for r in reqs[:-1])
    p = subprocess.Popen([sys.executable, "-m", "cli.main", "subject", "--name", "ref"],
                         cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write(text)
    p.stdin.flush()
    answers = [json.loads(p.stdout.readline()) for _ in reqs[:-1]]
    # answers come one by one, flushed: use seq 2's pfn for the frees
    pfn2 = answers[1]["pfn"]
    for r in (free(8, pfn2, 3), free(9, pfn2, 3), reqs[-1]):
        p.stdin.write(json.dumps(r) + "\n")
        p.stdin.flush()
        answers.append(json.loads(p.stdout.readline()))
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0
    assert out == ""  # nothing after the bye answer
    assert "Traceback" not in err

    assert [a["seq"] for a in answers] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert answers[0] == {"seq": 1, "ok": True, "name": "ref",
                          "features": ["pages", "kmalloc", "slab", "vmalloc"]}
    assert isinstance(pfn2, int) and pfn2 % 8 == 0 and set(answers[1]) == {"seq", "pfn"}
    assert 16384 <= answers[2]["pfn"] < 32768  # __GFP_THISNODE on node 1; 0x token ignored
    assert set(answers[3]) == {"seq", "error"}  # pfn 0 was never allocated: it is free
    assert answers[4] == {"seq": 5, "pfn": None}  # order above max_order: null, not an error
    assert isinstance(answers[5]["pfn"], int) and "slept" not in answers[5]  # atomic
    assert set(answers[6]) == {"seq", "error"}  # vmalloc in atomic context
    assert answers[7] == {"seq": 8, "ok": True}
    assert set(answers[8]) == {"seq", "error"} and "double free" in answers[8]["error"]
    assert answers[9] == {"seq": 10, "ok": True}


def test_garbage_lines_are_answered_not_fatal() -> None:
    lines = ["this is not json", json.dumps([1, 2]), json.dumps(HELLO),
             json.dumps({"op": "alloc_pages", "seq": 2, "order": "big", "gfp": "GFP_KERNEL"}),
             json.dumps({"op": "teleport", "seq": 3}), json.dumps({"op": "bye", "seq": 4})]
    p = subprocess.run([sys.executable, "-m", "cli.main", "subject"], cwd=ROOT,
                       input="\n".join(lines) + "\n", capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0
    answers = [json.loads(ln) for ln in p.stdout.splitlines()]
    assert [a["seq"] for a in answers] == [None, None, 1, 2, 3, 4]
    assert [("error" in a) for a in answers] == [True, True, False, True, True, False]
    assert "Traceback" not in p.stderr


# --- answers, in process -------------------------------------------------------------------------
def test_invalid_frees_are_errors_that_change_nothing() -> None:
    s = started()
    assert s.a is not None
    ans, _ = s.handle(alloc(2, 2, nid=1))
    pfn = ans["pfn"]
    before = buddyinfo(s.a)
    for seq, req in enumerate([free(0, pfn, 1), free(0, pfn + 1, 0), free(0, 40000, 0),
                               free(0, pfn + 4, 2), {"op": "free_pages", "seq": 0, "pfn": -1,
                                                     "order": 0},
                               {"op": "free_pages", "seq": 0, "pfn": pfn}], 3):
        req["seq"] = seq
        ans, done = s.handle(req)
        assert set(ans) == {"seq", "error"} and ans["seq"] == seq and not done
        assert buddyinfo(s.a) == before
    assert s.handle(free(20, pfn, 2))[0] == {"seq": 20, "ok": True}


def test_requests_before_hello_and_bad_hellos() -> None:
    s = Subject()
    assert "error" in s.handle(alloc(1, 0))[0]
    bad = dict(HELLO, distance=[[10, 20]])
    assert "error" in s.handle(bad)[0]
    assert "error" in s.handle(dict(HELLO, protocol=2))[0]
    assert "error" in s.handle(dict(HELLO, page_size=65536))[0]
    assert s.handle(dict(HELLO))[0]["ok"] is True  # a corrected hello still works
    assert "already" in s.handle(dict(HELLO))[0]["error"]


def test_watermarks_from_hello_min() -> None:
    s = started()
    assert s.a is not None
    for z, mn in zip(s.a.zones, (8, 32, 64), strict=True):
        gap = max(mn >> 2, z.managed * 10 // 10000)
        assert z.wmark == [mn, mn + gap, mn + 2 * gap, mn + 3 * gap]
        assert z.managed == z.present == z.spanned


def exhaust(s: Subject, gfp: str, nid: int, cpu: int, ctx: str,
            seq: int) -> tuple[list[dict[str, Any]], int]:
    answers = []
    while True:
        ans, _ = s.handle(alloc(seq, 0, gfp, nid=nid, cpu=cpu, ctx=ctx))
        seq += 1
        answers.append(ans)
        if ans["pfn"] is None:
            return answers, seq


def test_slept_only_for_direct_reclaim_in_process_context() -> None:
    s = started()
    # atomic context: GFP_KERNEL is served without __GFP_DIRECT_RECLAIM, down to failure
    answers, seq = exhaust(s, "GFP_KERNEL|__GFP_THISNODE", 1, 1, "atomic", 2)
    assert all("slept" not in a for a in answers)
    assert len(answers) > 1000
    # process context: the pages below min are only reachable... not at all; it sleeps first
    ans, _ = s.handle(alloc(seq, 0, "GFP_KERNEL|__GFP_THISNODE", nid=1, cpu=1))
    assert ans == {"seq": seq, "pfn": None, "slept": True}
    # GFP_NOWAIT never sleeps, GFP_ATOMIC may still dip into the reserve
    ans, _ = s.handle(alloc(seq + 1, 0, "GFP_NOWAIT|__GFP_THISNODE", nid=1, cpu=1))
    assert ans == {"seq": seq + 1, "pfn": None}
    ans, _ = s.handle(alloc(seq + 2, 0, "GFP_ATOMIC|__GFP_THISNODE", nid=1, cpu=1))
    assert isinstance(ans["pfn"], int) and "slept" not in ans


def zone_bounds() -> list[tuple[int, int, int, int]]:
    """(start, end, nid, zone index) of the example machine's zones."""
    out = []
    for nd in HELLO["nodes"]:
        for zd in nd["zones"]:
            idx = ("DMA", "DMA32", "Normal").index(zd["zone"])
            out.append((zd["start_pfn"], zd["start_pfn"] + zd["pages"], nd["nid"], idx))
    return out


def test_random_sessions_keep_the_oracle_rules() -> None:
    """align, range, overlap, sleep and liveness over seeded random page-only sessions with
    every migratetype, so pageblocks get stolen and watermarks boosted: without the subject's
    kswapd runs (docs/protocol.md) these seeds break liveness within a few hundred requests."""
    masks = ["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE", "GFP_KERNEL|__GFP_RECLAIMABLE",
             "GFP_DMA32", "GFP_DMA", "GFP_KERNEL|__GFP_THISNODE", "GFP_ATOMIC", "GFP_NOWAIT",
             "GFP_KERNEL|__GFP_NORETRY|__GFP_NOWARN"]
    bounds = zone_bounds()
    for seed in range(8):
        rnd = random.Random(seed)
        s = started()
        a = s.a
        assert a is not None
        live: dict[int, int] = {}
        used: set[int] = set()
        for seq in range(2, 1200):
            if live and rnd.random() < 0.15:  # memory fills up: the low zones run dry
                pfn = rnd.choice(list(live))
                order = live.pop(pfn)
                assert s.handle(free(seq, pfn, order))[0] == {"seq": seq, "ok": True}
                used.difference_update(range(pfn, pfn + (1 << order)))
                continue
            order = rnd.choice([0, 0, 0, 1, 2, 3, 5, 9, 10])
            mask = rnd.choice(masks)
            nid, cpu = rnd.choice([-1, -1, 0, 1]), rnd.choice([0, 1])
            ctx = rnd.choice(["process", "process", "atomic"])
            ans, _ = s.handle(alloc(seq, order, mask, nid, cpu, ctx))
            gfp = parse_gfp(mask)
            hz = min(int(gfp_zone(gfp)), ZONE_NORMAL)
            node = nid if nid >= 0 else a.cpu_node[cpu]
            thisnode = "THISNODE" in mask
            blocking = ctx == "process" and bool(gfp & __GFP_DIRECT_RECLAIM)
            if ans.get("slept"):
                assert blocking  # sleep rule
            pfn = ans["pfn"]
            if pfn is not None:
                assert pfn % (1 << order) == 0  # align
                zone = next(b for b in bounds if b[0] <= pfn < b[1])
                assert pfn + (1 << order) <= zone[1] and zone[3] <= hz  # range
                assert not thisnode or zone[2] == node
                block = set(range(pfn, pfn + (1 << order)))
                assert not block & used  # overlap
                used |= block
                live[pfn] = order
            elif blocking and order <= 10:
                # liveness: no allowed zone may hold a free block of this order whose
                # allocation leaves min + lowmem_reserve free
                for z in a.zones:
                    if z.idx > hz or (thisnode and z.nid != node):
                        continue
                    need = z.wmark[0] + z.lowmem_reserve[hz]
                    has_block = any(o >= order for _, o, _ in z.free_blocks())
                    assert not (has_block and z.free_pages - (1 << order) >= need), (
                        seed, seq, mask, order, z.name, z.free_pages, z.boost)


def test_lowmem_reserve_from_hello_protects_lower_zones() -> None:
    hello = json.loads(json.dumps(HELLO))
    hello["nodes"][0]["zones"][1]["lowmem_reserve"] = [0, 0, 4000]
    s = started(hello)
    assert s.a is not None
    dma32 = s.a.zones[1]
    # the ZONE_MOVABLE column repeats Normal's: movable masks count as "Normal otherwise"
    assert dma32.lowmem_reserve == [0, 0, 4000, 4000]
    # GFP_KERNEL|__GFP_THISNODE on node 0: highest zone Normal, so DMA32 keeps 32 + 4000 free
    answers, _ = exhaust(s, "GFP_KERNEL|__GFP_THISNODE", 0, 0, "process", 2)
    assert dma32.free_pages == 32 + 4000
    assert answers[-1] == {"seq": answers[-1]["seq"], "pfn": None, "slept": True}
    answers, _ = exhaust(s, "GFP_HIGHUSER_MOVABLE|__GFP_THISNODE", 0, 0, "process", 5000)
    assert dma32.free_pages == 32 + 4000 and answers[-1]["pfn"] is None
    # with __GFP_DMA32 the highest zone is DMA32, whose reserve entry is 0: down to min
    exhaust(s, "GFP_KERNEL|GFP_DMA32", -1, 0, "process", 10000)
    assert dma32.free_pages == 32


def test_slab_requests_when_memory_is_exhausted_before_the_slab_boots() -> None:
    """The lazy slab boot fails without memory: nothing leaks, allocations answer null,
    kmem_cache_create answers an ENOMEM error, and the boot succeeds once pages are free."""
    s = started()
    held: list[int] = []
    seq = 2
    for nid in (0, 1):
        answers, seq = exhaust(s, "GFP_KERNEL|__GFP_HIGH|__GFP_THISNODE", nid, 0, "atomic", seq)
        held += [a["pfn"] for a in answers if a["pfn"] is not None]
    assert s.a is not None
    free_before = s.a.nr_free_pages()
    ans, _ = s.handle({"op": "kmalloc", "seq": seq, "size": 64, "gfp": "GFP_KERNEL", "nid": -1,
                       "cpu": 0, "ctx": "process"})
    assert ans["addr"] is None and s.sa is None
    assert s.a.nr_free_pages() == free_before  # the failed boot gave its pages back
    ans, _ = s.handle({"op": "kmem_cache_create", "seq": seq + 1, "name": "c1", "size": 64,
                       "align": 0})
    assert "ENOMEM" in ans["error"]
    ans, _ = s.handle({"op": "kfree", "seq": seq + 2, "addr": "0x10"})
    assert ans == {"seq": seq + 2, "ok": True}
    seq += 3
    for pfn in held:
        ans, _ = s.handle(free(seq, pfn, 0))
        assert ans == {"seq": seq, "ok": True}
        seq += 1
    ans, _ = s.handle({"op": "kmalloc", "seq": seq, "size": 64, "gfp": "GFP_KERNEL", "nid": -1,
                       "cpu": 0, "ctx": "process"})
    assert isinstance(ans["addr"], str) and s.sa is not None


def test_a_hello_beyond_the_physical_address_space_is_an_error() -> None:
    """A zone ending above MAX_PHYSMEM_BITS is refused with one error, not a MemoryError."""
    hello = json.loads(json.dumps(HELLO))
    hello["nodes"][1]["zones"][0]["start_pfn"] = 10**12
    s = Subject()
    ans, done = s.handle(hello)
    assert "46-bit physical address space" in ans["error"] and not done and s.a is None
