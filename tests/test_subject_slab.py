"""The subject protocol's ``kmalloc`` and ``slab`` features of the reference subject
(cli/subject.py): answers, protocol limits, invalid requests that change nothing, and the
protocol's align/overlap/kmalloc-limits rules on random sessions."""

from __future__ import annotations

import random
from itertools import pairwise
from typing import Any

import pytest

from tests.subject_session import SubjectSession

HELLO: dict[str, Any] = {
    "op": "hello", "seq": 1, "protocol": 1, "page_size": 4096, "max_order": 10,
    "nodes": [
        {"nid": 0, "cpus": [0], "zones": [
            {"zone": "DMA", "start_pfn": 1, "pages": 4095, "min": 8},
            {"zone": "DMA32", "start_pfn": 4096, "pages": 12288, "min": 32,
             "lowmem_reserve": [0, 0, 0]}]},
        {"nid": 1, "cpus": [1], "zones": [
            {"zone": "Normal", "start_pfn": 16384, "pages": 16384, "min": 64}]}],
    "distance": [[10, 20], [20, 10]]}


class Session(SubjectSession):
    def __init__(self) -> None:
        super().__init__(HELLO)

    def state(self) -> object:
        assert self.s.sa is not None
        return self.s.sa.snapshot()


def km(size: int, gfp: str = "GFP_KERNEL", nid: int = -1, cpu: int = 0,
       ctx: str = "process") -> dict[str, Any]:
    return {"size": size, "gfp": gfp, "nid": nid, "cpu": cpu, "ctx": ctx}


def test_kmalloc_answers() -> None:
    t = Session()
    a = t("kmalloc", **km(100))
    assert set(a) == {"seq", "addr"} and a["addr"].startswith("0xffff888")
    assert int(a["addr"], 16) % 32 == 0  # kmalloc-128: 128-aligned
    assert t("kmalloc", **km(0))["addr"] == "0x10"
    assert t("kmalloc", **km(0, ctx="atomic"))["addr"] == "0x10"
    assert t("kmalloc", **km((4096 << 10) + 1))["addr"] is None  # above KMALLOC_MAX_SIZE
    big = t("kmalloc", **km(4096 << 10))["addr"]
    assert big is not None and int(big, 16) % 4096 == 0
    dma = int(t("kmalloc", **km(64, "GFP_DMA"))["addr"], 16)
    assert (dma - 0xFFFF888000000000) >> 12 < 4096  # dma-kmalloc-64: from ZONE_DMA
    on1 = int(t("kmalloc", **km(64, "GFP_KERNEL|__GFP_THISNODE", nid=1))["addr"], 16)
    assert (on1 - 0xFFFF888000000000) >> 12 >= 16384
    assert t("kmalloc", **km(64, ctx="atomic")).get("slept") is None
    for x in (a["addr"], big, "0x0", "0x10"):
        assert t("kfree", addr=x) == {"seq": t.seq, "ok": True}


def test_cache_requests_and_their_invalid_forms() -> None:
    t = Session()
    assert t("kmem_cache_create", name="c", size=72, align=64) == {"seq": t.seq, "ok": True}
    obj = t("kmem_cache_alloc", name="c", gfp="GFP_KERNEL", nid=-1, cpu=1, ctx="process")
    assert int(obj["addr"], 16) % 64 == 0
    before = t.state()
    for op, fields in [
        ("kmem_cache_create", {"name": "c", "size": 8, "align": 0}),  # name used
        ("kmem_cache_create", {"name": "d", "size": 0, "align": 0}),
        ("kmem_cache_create", {"name": "d", "size": 4096 * 8 + 1, "align": 0}),
        ("kmem_cache_create", {"name": "d", "size": 8, "align": 24}),
        ("kmem_cache_create", {"name": "d", "size": 8, "align": 8192}),
        ("kmem_cache_alloc", {"name": "nope", "gfp": "GFP_KERNEL", "nid": -1, "cpu": 0,
                              "ctx": "process"}),
        ("kmem_cache_free", {"name": "nope", "addr": obj["addr"]}),
        ("kmem_cache_free", {"name": "c", "addr": hex(int(obj["addr"], 16) + 8)}),
        ("kmem_cache_destroy", {"name": "c"}),  # objects remain
        ("kmem_cache_destroy", {"name": "kmalloc-64"}),  # not a protocol cache: unknown
        ("kfree", {"addr": hex(int(obj["addr"], 16) + 8)}),
        ("kfree", {"addr": "0xffff888040000000"}),
    ]:
        ans = t(op, **fields)
        assert set(ans) == {"seq", "error"}, (op, fields, ans)
        assert t.state() == before, (op, fields)
    assert t("kmem_cache_free", name="c", addr=obj["addr"])["ok"]
    ans = t("kmem_cache_free", name="c", addr=obj["addr"])
    assert "double free" in ans["error"]
    assert t("kmem_cache_destroy", name="c")["ok"]
    assert "unknown cache" in t("kmem_cache_alloc", name="c", gfp="GFP_KERNEL", nid=-1,
                                cpu=0, ctx="process")["error"]
    # a cache object may be freed with kfree
    assert t("kmem_cache_create", name="c", size=40, align=0)["ok"]
    o = t("kmem_cache_alloc", name="c", gfp="GFP_KERNEL", nid=0, cpu=0, ctx="process")
    assert t("kfree", addr=o["addr"])["ok"]


def test_pages_only_sessions_keep_no_slab_pages() -> None:
    t = Session()
    assert t.s.sa is None
    t("alloc_pages", order=0, gfp="GFP_KERNEL", nid=-1, cpu=0, ctx="process")
    assert t.s.sa is None


@pytest.mark.parametrize("seed", range(4))
def test_random_sessions_keep_align_overlap_and_limits(seed: int) -> None:
    """Random kmalloc/cache traffic: every object is aligned as the protocol's ``align`` rule
    says and no two live objects (requested bytes) overlap; frees of live objects are ok."""
    rng = random.Random(seed)
    t = Session()
    t("kmem_cache_create", name="a", size=24, align=0)
    t("kmem_cache_create", name="b", size=200, align=128)
    live: dict[int, tuple[int, str | None]] = {}
    for _ in range(400):
        r = rng.random()
        if r < 0.45 or not live:
            size = rng.choice([rng.randint(1, 9000), 8, 96, 192, 4096, 8192, 8193])
            gfp = rng.choice(["GFP_KERNEL", "GFP_ATOMIC", "GFP_NOWAIT", "GFP_KERNEL_ACCOUNT",
                              "GFP_KERNEL|__GFP_RECLAIMABLE"])
            ans = t("kmalloc", **km(size, gfp, rng.choice([-1, 0, 1]), rng.choice([0, 1]),
                                     rng.choice(["process", "atomic"])))
            assert "error" not in ans
            if ans["addr"] is not None:
                addr = int(ans["addr"], 16)
                assert addr % 8 == 0
                if size & (size - 1) == 0:
                    assert addr % size == 0
                live[addr] = (size, None)
        elif r < 0.7:
            cname, size, align = rng.choice([("a", 24, 8), ("b", 200, 128)])
            ans = t("kmem_cache_alloc", name=cname, gfp="GFP_KERNEL", nid=rng.choice([-1, 0, 1]),
                    cpu=rng.choice([0, 1]), ctx="process")
            addr = int(ans["addr"], 16)
            assert addr % align == 0
            live[addr] = (size, cname)
        else:
            addr = rng.choice(sorted(live))
            _, name = live.pop(addr)
            ans = (t("kfree", addr=hex(addr)) if name is None or rng.random() < 0.3
                   else t("kmem_cache_free", name=name, addr=hex(addr)))
            assert ans.get("ok") is True, ans
        spans = sorted((a, a + n) for a, (n, _) in live.items())
        assert all(e <= s for (_, e), (s, _) in pairwise(spans))


def test_a_slab_boot_that_fails_half_way_gives_its_slab_pages_back() -> None:
    """On the tiny machine (32 pages), vmalloc leaves enough pages for the slab boot's first
    caches but not all of them: the boot fails after its first slabs were made, and the
    pages go back (they used to be refused by free_pages as slab pages, and the valid kmalloc
    was answered with that error: the oracle's `protocol` rule)."""
    from oracle.machines import hello_of

    t = SubjectSession({**hello_of("tiny"), "seq": 1})
    vm = {"gfp": "GFP_KERNEL|__GFP_NORETRY", "cpu": 0, "ctx": "process"}
    for size in (12289, 4096, 65536, 262149, 1, 262149, 12289, 8192, 262149):
        assert "error" not in t("vmalloc", size=size, **vm)
    a = t.s.a
    assert a is not None
    free, used = a.nr_free_pages(), dict(a.allocated)
    assert t("kmalloc", **km(512, "GFP_DMA|__GFP_HIGH")) == {"seq": t.seq, "addr": None}
    assert t.s.sa is None and a.nr_free_pages() == free and a.allocated == used
    assert t("kfree", addr="0x10") == {"seq": t.seq, "ok": True}
    # kmalloc(0) is ZERO_SIZE_PTR whether or not the slab allocator could boot
    assert t("kmalloc", **km(0)) == {"seq": t.seq, "addr": "0x10"} and t.s.sa is None
