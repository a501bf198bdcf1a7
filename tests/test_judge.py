"""oracle/judge.py: every rule of the subject protocol caught on hand-written wrong answers
(with the rule's name and the state that makes it wrong), correct-but-different answers
accepted, and the reference subject judged clean over deterministic sessions in spec and
exact mode, strict included. Also oracle/inprocess.py's adapters."""

from __future__ import annotations

import random
from typing import Any

import pytest

from oracle.inprocess import PythonAllocatorAdapter, ReferenceSubject, SubjectAPI
from oracle.judge import AMBIGUOUS, INVALID, VALID, Judge, RequestError, Violation
from oracle.machines import SMALL_HELLO
from spec.alloc_rules import zone_allowed
from spec.gfp import __GFP_THISNODE, gfp_zone

THISNODE = __GFP_THISNODE  # no name mangling inside classes
PO = 0xFFFF888000000000
VS = 0xFFFFC90000000000
HELLO: dict[str, Any] = {
    "op": "hello", "seq": 1, "protocol": 1, "page_size": 4096, "max_order": 4,
    "page_offset": hex(PO), "vmalloc_start": hex(VS), "vmalloc_end": "0xffffe90000000000",
    "nodes": [
        {"nid": 0, "cpus": [0, 1],
         "zones": [{"zone": "DMA", "start_pfn": 0, "pages": 40, "min": 2,
                    "lowmem_reserve": [0, 4, 8]},
                   {"zone": "DMA32", "start_pfn": 40, "pages": 88, "min": 4,
                    "lowmem_reserve": [0, 0, 6]}]},
        {"nid": 1, "cpus": [2, 3],
         "zones": [{"zone": "Normal", "start_pfn": 128, "pages": 128, "min": 8}]}],
    "distance": [[10, 20], [20, 10]],
}
ALL = ("pages", "kmalloc", "slab", "vmalloc")
# a bigger machine for mixed sessions (booting the slab allocator takes pages of its own): the
# oracle's ``small`` preset
MIXED_HELLO: dict[str, Any] = {**SMALL_HELLO, "seq": 1}


def va(phys: int) -> str:
    """The direct-map address of a physical address, as the protocol writes it."""
    return hex(PO + phys)


class S:
    """A judged session with hand-written answers: ``s(request, **answer)`` numbers both."""

    def __init__(self, features: tuple[str, ...] = ALL, **kw: Any) -> None:
        self.j = Judge(HELLO, **kw)
        self.seq = 1
        assert self.j.check_hello({"seq": 1, "ok": True, "name": "t",
                                   "features": list(features)}) == []

    def __call__(self, req: dict[str, Any], **ans: Any) -> list[Violation]:
        self.seq += 1
        return self.j.observe({**req, "seq": self.seq}, {"seq": self.seq, **ans})

    def ok(self, req: dict[str, Any], **ans: Any) -> None:
        vs = self(req, **(ans or {"ok": True}))
        assert vs == [], vs


def ap(order: int, gfp: str = "GFP_KERNEL", nid: int = -1, cpu: int = 0,
       ctx: str = "process") -> dict[str, Any]:
    return {"op": "alloc_pages", "order": order, "gfp": gfp, "nid": nid, "cpu": cpu, "ctx": ctx}


def fp(pfn: int, order: int) -> dict[str, Any]:
    return {"op": "free_pages", "pfn": pfn, "order": order}


def km(size: int, gfp: str = "GFP_KERNEL", nid: int = -1, cpu: int = 0,
       ctx: str = "process") -> dict[str, Any]:
    return {"op": "kmalloc", "size": size, "gfp": gfp, "nid": nid, "cpu": cpu, "ctx": ctx}


def kf(addr: str) -> dict[str, Any]:
    return {"op": "kfree", "addr": addr}


def cc(name: str, size: int, align: int = 0) -> dict[str, Any]:
    return {"op": "kmem_cache_create", "name": name, "size": size, "align": align}


def ca(name: str, gfp: str = "GFP_KERNEL", nid: int = -1, cpu: int = 0,
       ctx: str = "process") -> dict[str, Any]:
    return {"op": "kmem_cache_alloc", "name": name, "gfp": gfp, "nid": nid, "cpu": cpu,
            "ctx": ctx}


def cf(name: str, addr: str) -> dict[str, Any]:
    return {"op": "kmem_cache_free", "name": name, "addr": addr}


def vm(size: int, gfp: str = "GFP_KERNEL", cpu: int = 0, ctx: str = "process"
       ) -> dict[str, Any]:
    return {"op": "vmalloc", "size": size, "gfp": gfp, "cpu": cpu, "ctx": ctx}


def vf(addr: str) -> dict[str, Any]:
    return {"op": "vfree", "addr": addr}


def one(vs: list[Violation], rule: str, *details: str) -> Violation:
    """Exactly one violation, of ``rule``, whose message or detail names each of ``details``."""
    assert [v.rule for v in vs] == [rule], vs
    for d in details:
        assert d in vs[0].message + " | " + vs[0].detail, (d, vs[0])
    return vs[0]


# --- hello ------------------------------------------------------------------------------------

def test_hello_features_and_bad_answers() -> None:
    j = Judge(HELLO)
    assert j.check_hello({"seq": 1, "ok": True, "features": ["slab", "pages", "x"]}) == []
    assert j.features == ("pages", "slab")
    with pytest.raises(RequestError):  # kmalloc is not a listed feature
        j.observe({"op": "kmalloc", "seq": 2, "size": 8, "gfp": "GFP_KERNEL"}, {"seq": 2})
    for bad in ({"seq": 1, "error": "no"}, {"seq": 2, "ok": True, "features": []},
                {"seq": 1, "ok": True}, {"seq": 1, "ok": True, "features": "pages"}):
        assert [v.rule for v in Judge(HELLO).check_hello(bad)] == ["protocol"]


def test_hello_without_seq_and_bad_machine() -> None:
    h = {k: v for k, v in HELLO.items() if k != "seq"}
    assert Judge(h).check_hello({"seq": 1, "ok": True, "features": ["pages"]}) == []
    with pytest.raises(ValueError):
        Judge({**HELLO, "nodes": []})
    with pytest.raises(ValueError):
        Judge(HELLO, mode="fast")  # type: ignore[arg-type]


# --- align ------------------------------------------------------------------------------------

def test_align_pages() -> None:
    s = S()
    one(s(ap(2), pfn=130), "align", "starts at pfn 0x80")
    s.ok(ap(2), pfn=136)           # any aligned block is fine, not only the kernel's
    s.ok(ap(0), pfn=135)


def test_align_kmalloc_and_cache() -> None:
    s = S()
    one(s(km(64), addr=va(4096 * 50 + 32)), "align", "power of two")
    s.ok(km(64), addr=va(4096 * 54 + 64))
    s.ok(km(24), addr=va(4096 * 51 + 8))     # 24 is not a power of two: 8 is enough
    one(s(km(24), addr=va(4096 * 51 + 100)), "align")
    s.ok(cc("c1", 100, 64))
    one(s(ca("c1"), addr=va(4096 * 52 + 32)), "align", "align 64")
    s.ok(ca("c1"), addr=va(4096 * 55 + 128))
    s.ok(cc("c2", 12))
    s.ok(ca("c2"), addr=va(4096 * 53 + 8))    # align 0: 8


def test_align_vmalloc() -> None:
    s = S()
    one(s(vm(100), addr=hex(VS + 16), pfns=[60]), "align", "page_size 4096")
    s.ok(vm(100), addr=hex(VS + 0x10000), pfns=[61])


# --- range ------------------------------------------------------------------------------------

def test_range_zone_of_the_mask() -> None:
    s = S()
    one(s(ap(0, "GFP_DMA"), pfn=40), "range", "highest zone is DMA")
    s.ok(ap(0, "GFP_DMA"), pfn=39)
    one(s(ap(0, "GFP_DMA32"), pfn=128), "range", "highest zone is DMA32")
    s.ok(ap(0, "GFP_DMA32"), pfn=41)   # DMA32 and DMA both allowed
    s.ok(ap(0, "GFP_DMA32"), pfn=1)
    s.ok(ap(0, "GFP_KERNEL"), pfn=2)   # a Normal request may come from DMA


def test_range_block_outside_or_across_zones() -> None:
    s = S()
    one(s(ap(0), pfn=256), "range", "zones: zone DMA of node 0")
    one(s(ap(4), pfn=32), "range", "runs into zone DMA32")   # [32, 48) crosses pfn 40
    s.ok(ap(3), pfn=24)                                       # [24, 32) is inside DMA


def test_range_thisnode() -> None:
    s = S()
    one(s(ap(0, "GFP_KERNEL|__GFP_THISNODE", nid=1), pfn=50), "range", "zone DMA32 of node 0")
    one(s(ap(0, "GFP_KERNEL|__GFP_THISNODE", nid=-1, cpu=2), pfn=51), "range")
    assert "node of cpu 3" in s(ap(0, "GFP_KERNEL|__GFP_THISNODE", cpu=3), pfn=52)[0].message
    s.ok(ap(0, "GFP_KERNEL|__GFP_THISNODE", nid=-1, cpu=2), pfn=130)
    s.ok(ap(0, "GFP_KERNEL|__GFP_THISNODE", nid=0, cpu=2), pfn=53)
    s.ok(ap(0, "GFP_KERNEL", nid=1), pfn=54)       # without __GFP_THISNODE: any node


def test_range_kmalloc() -> None:
    s = S()
    one(s(km(8), addr=hex(VS)), "range", "page_offset")
    one(s(km(8), addr=va(256 * 4096)), "range")                     # beyond memory
    one(s(km(64, "GFP_DMA"), addr=va(50 * 4096)), "range", "highest zone is DMA")
    s.ok(km(64, "GFP_DMA"), addr=va(3 * 4096))
    one(s(km(8000), addr=va(39 * 4096)), "range", "leave zone DMA", "pfn 0x28")  # into DMA32
    one(s(km(8, "GFP_KERNEL|__GFP_THISNODE", nid=1), addr=va(60 * 4096)), "range", "node 0")
    s.ok(km(8, "GFP_KERNEL|__GFP_THISNODE", nid=1), addr=va(130 * 4096))
    # nid -1: kmalloc may hand out an object of a remote CPU slab even with __GFP_THISNODE
    # (slab_alloc_node's node_match(NUMA_NO_NODE) accepts any slab): not a violation
    s.ok(km(8, "GFP_KERNEL|__GFP_THISNODE", cpu=2), addr=va(61 * 4096))
    s.ok(km(100, "GFP_KERNEL"), addr=va(5 * 4096 + 8))               # any zone without DMA


def test_range_cache_and_vmalloc() -> None:
    s = S()
    s.ok(cc("c", 64))
    one(s(ca("c", nid=1, gfp="GFP_KERNEL|__GFP_THISNODE"), addr=va(70 * 4096)), "range")
    s.ok(ca("c"), addr=va(2 * 4096))     # a cache's zone is its own: DMA is fine
    one(s(vm(4096), addr="0xffffe90000000000", pfns=[60]), "range", "vmalloc_end")
    one(s(vm(8192), addr=hex(VS), pfns=[61, 300]), "range", "pfn 0x12c")


# --- overlap ----------------------------------------------------------------------------------

def test_overlap_blocks_names_the_live_block() -> None:
    s = S()
    s.ok(ap(2), pfn=128)
    v = one(s(ap(0), pfn=129), "overlap", "pfn 0x80-0x83 (order 2, seq 2)")
    assert v.seq == 3
    s.ok(ap(0), pfn=132)
    s.ok(fp(128, 2), ok=True)
    s.ok(ap(0), pfn=129)   # free now


def test_overlap_objects_by_requested_size() -> None:
    s = S()
    base = 60 * 4096
    s.ok(km(24), addr=va(base))
    one(s(km(8), addr=va(base + 16)), "overlap", "kmalloc(24) object")
    s.ok(km(8), addr=va(base + 24))   # the requested 24 bytes end there
    s.ok(ap(0), pfn=61)
    one(s(km(8), addr=va(61 * 4096 + 64)), "overlap", "alloc_pages block pfn 0x3d")
    s.ok(cc("c", 100))
    s.ok(ca("c"), addr=va(62 * 4096))
    one(s(km(8), addr=va(62 * 4096 + 96)), "overlap", "100-byte object")
    s.ok(km(8), addr=va(62 * 4096 + 104))
    one(s(ap(0), pfn=60), "overlap", "kmalloc(")


def test_overlap_vmalloc_pages_and_guard() -> None:
    s = S()
    b = VS + 16 * 4096
    s.ok(ap(0), pfn=70)
    one(s(vm(8192), addr=hex(b), pfns=[71, 70]), "overlap", "block pfn 0x46")
    one(s(vm(8192), addr=hex(b), pfns=[72, 72]), "overlap", "page 0 (pfn 0x48)")
    s.ok(vm(8192), addr=hex(b), pfns=[72, 73])   # the failed tries left nothing behind
    one(s(vm(4096), addr=hex(b + 2 * 4096), pfns=[74]), "overlap", "guard page")
    one(s(vm(4096), addr=hex(b - 4096), pfns=[74]), "overlap", "no guard page")
    s.ok(vm(4096), addr=hex(b - 2 * 4096), pfns=[74])   # its guard page is b - 4096
    s.ok(vm(1), addr=hex(b + 3 * 4096), pfns=[75])       # one guard page between
    s.ok(vf(hex(b)), ok=True)
    s.ok(ap(1), pfn=72)
    one(s(ap(0), pfn=74), "overlap", "vmalloc area")


# --- sleep --------------------------------------------------------------------------------------

def test_sleep_rule() -> None:
    s = S()
    one(s(ap(0, ctx="atomic"), pfn=130, slept=True), "sleep", "atomic")
    one(s(ap(0, "GFP_ATOMIC"), pfn=131, slept=True), "sleep", "__GFP_DIRECT_RECLAIM")
    one(s(km(8, "GFP_NOWAIT"), addr=va(60 * 4096), slept=True), "sleep")
    s.ok(ap(0), pfn=132, slept=True)
    s.ok(ap(0), pfn=133)                        # never sleeping is fine
    s.ok(ap(0, ctx="atomic"), pfn=134)          # GFP_KERNEL in atomic context, not sleeping
    s.ok(ap(9, ctx="process"), pfn=None, slept=True)   # a failed call may have slept
    s.ok(vm(4096), addr=hex(VS), pfns=[140], slept=True)
    one(s(vm(4096, ctx="atomic"), addr=hex(VS + 0x10000), pfns=[141]), "sleep", "atomic")
    s.ok(vm(4096, ctx="atomic"), error="vmalloc in atomic context")


# --- liveness -----------------------------------------------------------------------------------

def test_liveness_only_in_pages_only_sessions() -> None:
    for features, pages_only, checked in ((("pages",), None, True), (ALL, None, False),
                                          (ALL, True, True), (("pages",), False, False)):
        s = S(features, pages_only=pages_only)
        vs = s(ap(0), pfn=None)
        assert [v.rule for v in vs] == (["liveness"] if checked else [])


def test_liveness_detail_names_zone_and_free_run() -> None:
    s = S(("pages",))
    v = one(s(ap(4), pfn=None), "liveness", "zone DMA of node 0", "pfns 0x0-0xf")
    assert "order 4" in v.message


def test_liveness_stops_after_a_non_page_request() -> None:
    s = S(ALL, pages_only=True)
    s.ok(km(8), addr=va(60 * 4096))
    s.ok(ap(0), pfn=None)


def _fill(s: S, lo: int, hi: int) -> None:
    """Allocate every page of [lo, hi) as order-0 blocks (GFP_KERNEL, nid -1)."""
    for p in range(lo, hi):
        s.ok(ap(0), pfn=p)


def test_liveness_watermarks_and_lowmem_reserve() -> None:
    s = S(("pages",))
    _fill(s, 128, 256)      # Normal full
    _fill(s, 40, 128)       # DMA32 full
    _fill(s, 0, 24)         # DMA: 16 free, min 2, lowmem_reserve [0, 4, 8]
    # GFP_KERNEL (highest zone Normal): DMA must keep 2 + 8 = 10; 16 - 1 = 15 >= 10
    one(s(ap(0), pfn=None), "liveness", "zone DMA of node 0", "= 10")
    _fill(s, 24, 31)        # 9 free: taking one leaves 8 < 10, so GFP_KERNEL may fail
    s.ok(ap(0), pfn=None)
    # GFP_DMA32 (highest zone DMA32): 2 + 4 = 6 must stay, 8 >= 6: failing breaks liveness
    one(s(ap(0, "GFP_KERNEL|__GFP_DMA32"), pfn=None), "liveness", "lowmem_reserve[DMA32] 4 = 6")
    # GFP_DMA (highest zone DMA): 2 + 0 = 2 must stay
    one(s(ap(0, "GFP_KERNEL|__GFP_DMA"), pfn=None), "liveness", "lowmem_reserve[DMA] 0 = 2")
    s.ok(ap(0, "GFP_DMA"), pfn=None)   # GFP_DMA alone has no __GFP_DIRECT_RECLAIM


def test_liveness_movable_masks_use_the_normal_reserve() -> None:
    """The protocol: a request's highest zone is Normal unless __GFP_DMA/__GFP_DMA32, so a
    movable mask (gfp_zone() = ZONE_MOVABLE) keeps lowmem_reserve[Normal] too."""
    s = S(("pages",))
    _fill(s, 128, 256)
    _fill(s, 40, 128)
    _fill(s, 0, 30)          # 10 free in DMA: 10 - 1 = 9 >= min 2 (+ 4 for DMA32), < 2 + 8
    s.ok(ap(0, "GFP_HIGHUSER_MOVABLE"), pfn=None)
    s.ok(ap(0, "GFP_TRANSHUGE"), pfn=None)
    s.ok(ap(0), pfn=None)
    v = one(s(ap(0, "GFP_KERNEL|__GFP_DMA32|__GFP_MOVABLE"), pfn=None), "liveness",
            "lowmem_reserve[DMA32] 4 = 6")
    assert "taking them leaves 9 >= 6" in v.detail


def test_liveness_dma32_reserve_exactly() -> None:
    s = S(("pages",))
    _fill(s, 128, 256)
    _fill(s, 40, 128)
    _fill(s, 0, 33)          # 7 free in DMA: GFP_DMA32 needs 2 + 4 = 6 left; 7 - 1 = 6 ok
    one(s(ap(0, "GFP_KERNEL|__GFP_DMA32"), pfn=None), "liveness", "lowmem_reserve[DMA32] 4 = 6")
    s.ok(ap(0), pfn=33)      # 6 free: 6 - 1 = 5 < 6
    s.ok(ap(0, "GFP_KERNEL|__GFP_DMA32"), pfn=None)


def test_liveness_needs_an_aligned_run() -> None:
    s = S(("pages",))
    _fill(s, 40, 128)
    _fill(s, 0, 40)
    for p in range(128, 256, 2):   # Normal: 64 free pages, none two aligned in a row
        s.ok(ap(0), pfn=p)
    s.ok(ap(1), pfn=None)          # no aligned run of order 1 anywhere
    one(s(ap(0), pfn=None), "liveness", "zone Normal", "pfns 0x81-0x81")


def test_liveness_stops_once_the_view_lost_a_page() -> None:
    s = S(("pages",))
    s.ok(ap(0), pfn=130)
    assert s(ap(0), pfn=130)[0].rule == "overlap"   # the subject now holds a page unseen
    s.ok(ap(0), pfn=None)
    assert not s.j.liveness_active


def test_liveness_not_for_non_blocking_atomic_or_too_big() -> None:
    s = S(("pages",))
    s.ok(ap(0, "GFP_ATOMIC"), pfn=None)
    s.ok(ap(0, "GFP_NOWAIT"), pfn=None)
    s.ok(ap(0, ctx="atomic"), pfn=None)
    s.ok(ap(5), pfn=None)          # above max_order 4: null is due


def test_liveness_thisnode_limits_the_zones() -> None:
    s = S(("pages",))
    _fill(s, 128, 256)             # node 1 full
    s.ok(ap(0, "GFP_KERNEL|__GFP_THISNODE", nid=1), pfn=None)
    s.ok(ap(0, "GFP_KERNEL|__GFP_THISNODE", cpu=2), pfn=None)
    one(s(ap(0, "GFP_KERNEL", nid=1), pfn=None), "liveness", "node 0")
    one(s(ap(0, "GFP_KERNEL|__GFP_THISNODE", nid=0, cpu=2), pfn=None), "liveness")


# --- free ---------------------------------------------------------------------------------------

def test_valid_frees_answered_with_error() -> None:
    s = S()
    s.ok(ap(1), pfn=130)
    one(s(fp(130, 1), error="nope"), "free", "live block of seq 2")
    assert list(s.j.live_blocks()) == [(130, 1)]   # the view did not change
    s.ok(fp(130, 1), ok=True)
    one(s(kf("0x0"), error="x"), "free", "does nothing")
    s.ok(kf("0x10"), ok=True)
    s.ok(km(8), addr=va(60 * 4096))
    one(s(kf(va(60 * 4096)), error="x"), "free", "live kmalloc object of seq")


def test_strict_invalid_requests() -> None:
    s = S(strict=True)
    s.ok(ap(1), pfn=130)
    s.ok(km(32), addr=va(60 * 4096))
    s.ok(cc("a", 64))
    s.ok(cc("b", 64))
    s.ok(ca("a"), addr=va(61 * 4096))
    s.ok(vm(4096), addr=hex(VS), pfns=[62])
    invalid = [
        (fp(130, 0), "allocated with order 1"), (fp(131, 0), "inside the alloc_pages block"),
        (fp(60, 0), "kmalloc(32) object"), (fp(62, 0), "vmalloc area"), (fp(90, 0), "no live"),
        (kf(va(60 * 4096 + 8)), "kmalloc(32)"), (kf(va(130 * 4096)), "alloc_pages block"),
        (kf(hex(VS)), "vmalloc area"),
        (cf("b", va(61 * 4096)), "not a live object of cache 'b'"),
        (cf("a", va(60 * 4096)), "kmalloc(32)"), (cf("zz", va(61 * 4096)), "unknown cache"),
        (ca("zz"), "unknown cache"), ({"op": "kmem_cache_destroy", "name": "a"}, "remain"),
        ({"op": "kmem_cache_destroy", "name": "zz"}, "unknown"),
        (cc("a", 8), "already used"), (cc("d", 0), "size 0"), (cc("d", 32769), "size 32769"),
        (cc("d", 8, 24), "align 24"), (cc("d", 8, 8192), "align 8192"),
        (vf(hex(VS + 4096)), "not the start"), (vf(va(130 * 4096)), "not the start"),
    ]
    for req, why in invalid:
        kind, reason = s.j.classify({**req, "seq": 99})
        assert kind == INVALID and why in reason, (req, reason)
        assert not s.j.is_valid({**req, "seq": 99})
        s.ok(req, error="refused")                 # an error is right, nothing changes
        key = "addr" if req["op"] == "kmem_cache_alloc" else "ok"
        val: Any = va(63 * 4096) if key == "addr" else True
        one(s(req, **{key: val}), "free", why)      # anything else breaks the free rule
    one(s(vm(4096, ctx="atomic"), addr=hex(VS + 0x10000), pfns=[64]), "sleep")
    assert sorted(s.j.live_blocks()) == [(130, 1)] and list(s.j.live_kmalloc()) == [PO + 60 * 4096]
    assert list(s.j.caches()["a"].live) == [PO + 61 * 4096] and list(s.j.live_vmalloc()) == [VS]


def test_kmem_cache_create_may_fail_with_an_error() -> None:
    s = S(strict=True)
    s.ok(cc("a", 64), error="ENOMEM")          # no memory for the cache: it does not exist
    assert "a" not in s.j.caches()
    assert s.j.classify({**ca("a"), "seq": 9})[0] == INVALID
    s.ok(ca("a"), error="unknown cache")
    one(s(ca("a"), addr=va(61 * 4096)), "free", "unknown cache")


def test_cache_lifecycle_and_kfree_of_cache_object() -> None:
    s = S(strict=True)
    s.ok(cc("a", 64))
    s.ok(ca("a"), addr=va(61 * 4096))
    s.ok(kf(va(61 * 4096)), ok=True)            # a cache object may be freed with kfree
    assert len(s.j.caches()["a"].live) == 0
    s.ok({"op": "kmem_cache_destroy", "name": "a"}, ok=True)
    assert "a" not in s.j.caches()
    s.ok(cc("a", 128))                         # the name may be used again
    assert s.j.caches()["a"].size == 128


def test_ambiguous_requests_accept_both_answers() -> None:
    s = S(strict=True)
    assert s.j.classify({**cc("kmalloc-64", 64), "seq": 9})[0] == AMBIGUOUS
    s.ok(cc("kmalloc-64", 64), error="name already used")
    s.ok(cc("kmem_cache", 64), ok=True)
    assert "kmem_cache" in s.j.caches()
    s.ok(vf("0x0"), ok=True)
    s.ok(vf("0x0"), error="no")
    # something handed out with a violation is not recorded; its free is then ambiguous
    s.ok(ap(0), pfn=130)
    assert s(ap(0), pfn=130)[0].rule == "overlap"
    s.ok(fp(130, 0), ok=True)
    assert s.j.classify({**fp(130, 0), "seq": 9})[0] == AMBIGUOUS
    s.ok(fp(130, 0), ok=True)
    assert s.j.classify({**fp(130, 0), "seq": 9})[0] == INVALID


# --- kmalloc-limits -----------------------------------------------------------------------------

def test_kmalloc_limits() -> None:
    s = S()
    s.ok(km(0), addr="0x10")
    one(s(km(0), addr=None), "kmalloc-limits", "ZERO_SIZE_PTR")
    one(s(km(0), addr="0x0"), "kmalloc-limits")
    one(s(km(0), addr=va(60 * 4096)), "kmalloc-limits")
    top = 4096 << 4
    one(s(km(top + 1), addr=va(128 * 4096)), "kmalloc-limits", "4096 << 4")
    s.ok(km(top + 1), addr=None)
    s.ok(km(top), addr=va(128 * 4096))   # exactly KMALLOC_MAX_SIZE is allowed
    s.ok(km(top), addr=None)             # and may fail
    assert s.j.rules_checked["kmalloc-limits"] == 6


# --- protocol -----------------------------------------------------------------------------------

def test_protocol_answer_shapes() -> None:
    s = S()
    s.seq += 1
    one(s.j.observe({**ap(0), "seq": s.seq}, {"seq": s.seq + 1, "pfn": 130}), "protocol",
        f"expected seq {s.seq}")
    one(s(ap(0)), "protocol", "answers 'pfn'")
    one(s(ap(0), pfn="130"), "protocol")
    one(s(ap(0), pfn=True), "protocol")
    one(s(km(8), addr=12345), "protocol")
    one(s(km(8), addr="0x0"), "protocol")
    one(s(km(8), addr="0xzz"), "protocol")
    one(s({"op": "bye"}, ok=False), "protocol")
    one(s(ap(0), pfn=130, slept="yes"), "protocol")
    one(s(ap(0), error="no memory"), "protocol", "no invalid requests")
    assert [v.rule for v in s(ap(0), error=5)] == ["protocol", "protocol"]
    assert [v.rule for v in s(ap(0), error="x", pfn=None)] == ["protocol", "protocol"]
    one(s(ap(5), pfn=0), "protocol", "WARN_ON_ONCE")
    one(s(vm(5000), addr=hex(VS), pfns=[70]), "protocol", "= 2")
    one(s(vm(5000), addr=hex(VS), pfns=[70, "71"]), "protocol")
    one(s(vm(0), addr=hex(VS), pfns=[]), "protocol", "size 0")
    s.ok(vm(0), addr=None)
    s.ok(vm(100), addr=None)
    s.ok({"op": "bye"}, ok=True)
    assert list(s.j.live_blocks()) == [(130, 0)] and list(s.j.live_vmalloc()) == []


def test_error_answer_with_slept_is_protocol() -> None:
    s = S(strict=True)
    one(s(fp(1, 0), error="x", slept=True), "protocol", "only allocation results")


def test_requests_outside_the_protocol_raise() -> None:
    s = S()
    bad = [{"op": "alloc_pages", "seq": 5, "gfp": "GFP_KERNEL"},
           {**ap(0), "seq": 5, "cpu": 9}, {**ap(0), "seq": 5, "nid": 2},
           {**ap(0), "seq": 5, "ctx": "irq"}, {**ap(0), "seq": 5, "gfp": "GFP_BOGUS"},
           {**ap(0), "seq": 5, "gfp": "__GFP_DMA|__GFP_DMA32"}, {**ap(0), "seq": "5"},
           {"op": "mmap", "seq": 5}, {**kf("12"), "seq": 5}, {**ap(-1), "seq": 5}]
    for r in bad:
        assert not s.j.is_valid(r)
        with pytest.raises(RequestError):
            s.j.observe(r, {"seq": 5, "pfn": 130})
    assert list(s.j.live_blocks()) == [] and s.j.requests == 0


# --- the views the generator uses ------------------------------------------------------------

def test_views() -> None:
    s = S(("pages",))
    s.ok(ap(2), pfn=128)
    s.ok(ap(0), pfn=3)
    assert sorted(s.j.live_blocks()) == [(3, 0), (128, 2)]
    assert s.j.zone_free() == [("DMA", 0, 39, 2), ("DMA32", 0, 88, 4), ("Normal", 1, 124, 8)]
    s.ok(fp(3, 0), ok=True)
    assert s.j.zone_free()[0] == ("DMA", 0, 40, 2)
    assert s.j.is_valid({**fp(128, 2), "seq": 9}) and not s.j.is_valid({**fp(128, 1), "seq": 9})
    assert s.j.classify({**ap(0), "seq": 9})[0] == VALID


# --- exact mode -------------------------------------------------------------------------------

def test_exact_mode_demands_the_reference_choice() -> None:
    ref = ReferenceSubject()
    j = Judge(HELLO, mode="exact")
    assert j.check_hello(ref.request(dict(HELLO))) == []
    r = {**ap(0), "seq": 2}
    pfn = ref.request(r)["pfn"]
    assert j.observe(r, {"seq": 2, "pfn": pfn}) == []   # the reference passes
    assert j.rules_checked["exact"] == 1
    other = 200 if pfn != 200 else 201
    for mode, rules in (("exact", ["exact"]), ("spec", [])):
        j2 = Judge(HELLO, mode=mode)  # type: ignore[arg-type]
        assert j2.check_hello({"seq": 1, "ok": True, "features": ["pages"]}) == []
        vs = j2.observe(r, {"seq": 2, "pfn": other})   # another free page: spec accepts
        assert [v.rule for v in vs] == rules
        if vs:
            assert f"'pfn': {pfn}" in vs[0].detail and "kernel's policy" in vs[0].message


def test_exact_mode_off_when_the_reference_lacks_a_feature() -> None:
    j = Judge(HELLO, mode="exact")
    j._ref_ops = frozenset({"alloc_pages", "free_pages"})  # as if the reference had pages only
    assert j.check_hello({"seq": 1, "ok": True, "features": ["pages", "kmalloc"]}) == []
    assert j.exact_disabled is not None and "kmalloc" in j.exact_disabled
    assert j.observe({**ap(0), "seq": 2}, {"seq": 2, "pfn": 201}) == []
    with pytest.raises(ValueError):
        Judge({**HELLO, "page_size": 8192}, mode="exact")


# --- the reference subject over deterministic sessions ---------------------------------------

GFPS = ["GFP_KERNEL", "GFP_ATOMIC", "GFP_DMA", "GFP_DMA32", "GFP_NOWAIT",
        "GFP_HIGHUSER_MOVABLE", "GFP_KERNEL|__GFP_THISNODE", "GFP_KERNEL|__GFP_NORETRY",
        "GFP_ATOMIC|__GFP_THISNODE", "GFP_DMA|__GFP_THISNODE", "GFP_KERNEL|__GFP_ZERO",
        "GFP_KERNEL|__GFP_DMA", "GFP_KERNEL|__GFP_DMA32", "GFP_USER|__GFP_DMA|__GFP_THISNODE"]
KGFPS = ["GFP_KERNEL", "GFP_ATOMIC", "GFP_DMA", "GFP_KERNEL|__GFP_THISNODE", "GFP_NOWAIT",
         "GFP_KERNEL_ACCOUNT", "GFP_KERNEL|__GFP_RECLAIMABLE"]
KSIZES = [0, 1, 8, 9, 24, 64, 96, 97, 192, 256, 4096, 8192, 8193, 20000]


def _request(j: Judge, rng: random.Random, kinds: tuple[str, ...], strict: bool,
             names: list[int]) -> dict[str, Any]:
    """One deterministic pseudo-random request on the judge's view (the oracle's generator
    is oracle-engine's; this one only feeds the tests)."""
    k = rng.choice(kinds)
    bad = strict and rng.random() < 0.08
    nid, cpu, ctx = rng.choice([-1, -1, 0, 1]), rng.randrange(4), rng.choice(
        ["process", "process", "atomic"])
    if k == "pages":
        blocks = j.live_blocks()
        if blocks and rng.random() < 0.45:
            pfn, o = blocks[rng.randrange(len(blocks))]
            return fp(pfn + bad, o) if rng.random() < 0.5 else fp(pfn, o + bad)
        return ap(rng.choice([0, 0, 0, 1, 2, 3, 4, 4, 5, 8, 9]), rng.choice(GFPS), nid, cpu, ctx)
    if k == "kmalloc":
        live = j.live_kmalloc()
        if live and rng.random() < 0.45:
            return kf(hex(live[rng.randrange(len(live))] + 8 * bad))
        size = rng.choice([*KSIZES, j.kmalloc_max, j.kmalloc_max + 1])
        return km(size, rng.choice(KGFPS), nid, cpu, ctx)
    if k == "vmalloc":
        areas = j.live_vmalloc()
        if areas and rng.random() < 0.45:
            return vf(hex(areas[rng.randrange(len(areas))] + 4096 * bad))
        return vm(rng.choice([0, 1, 4096, 4097, 20000]), "GFP_KERNEL", cpu,
                  "atomic" if bad else "process")
    caches = list(j.caches().values())
    x = rng.random()
    if not caches or x < 0.06:
        names[0] += 1
        return cc(f"c{names[0] - bad}", rng.choice([1, 8, 24, 100, 4000, 30000, 32769 * bad]),
                  rng.choice([0, 8, 64, 256, 24 * bad]))
    c = rng.choice(caches)
    if x < 0.55:
        return ca(c.name, rng.choice(["GFP_KERNEL", "GFP_ATOMIC", "GFP_KERNEL|__GFP_THISNODE"]),
                  nid, cpu, ctx)
    if x < 0.95 and len(c.live):
        a = c.live[rng.randrange(len(c.live))]
        return {"op": rng.choice(["kmem_cache_free", "kfree"]), "name": c.name, "addr": hex(a)}
    return {"op": "kmem_cache_destroy", "name": c.name}


def run_reference(n: int, seed: int, kinds: tuple[str, ...], *, strict: bool, mode: str,
                  pages_only: bool | None = None, subject: SubjectAPI | None = None,
                  hello: dict[str, Any] = HELLO) -> Judge:
    subj = subject if subject is not None else ReferenceSubject()
    j = Judge(hello, strict=strict, mode=mode, pages_only=pages_only)  # type: ignore[arg-type]
    assert j.check_hello(subj.request(dict(hello))) == []
    kinds = tuple(k for k in kinds if k in j.features)
    rng = random.Random(seed)
    names = [0]
    for seq in range(2, n + 2):
        r = {**_request(j, rng, kinds, strict, names), "seq": seq}
        if not strict and not j.is_valid(r):
            continue
        vs = j.observe(r, subj.request(r))
        assert vs == [], (vs[0], seq)
    assert j.observe({"op": "bye", "seq": n + 2}, subj.request({"op": "bye", "seq": n + 2})) == []
    subj.close()
    return j


@pytest.mark.parametrize("mode", ["spec", "exact"])
@pytest.mark.parametrize("strict", [False, True])
def test_reference_passes_mixed_sessions(mode: str, strict: bool) -> None:
    j = run_reference(3000, 3 + strict, ("pages", "kmalloc", "slab", "vmalloc"), strict=strict,
                      mode=mode, hello=MIXED_HELLO)
    rc = j.rules_checked
    for rule in ("align", "range", "overlap", "sleep", "free", "kmalloc-limits", "protocol"):
        assert rc[rule] > 0, rule
    assert rc["liveness"] == 0
    assert (rc["exact"] > 0) == (mode == "exact")


@pytest.mark.parametrize("mode", ["spec", "exact"])
def test_reference_passes_pages_only_sessions_with_liveness(mode: str) -> None:
    j = run_reference(2500, 5, ("pages",), strict=True, mode=mode, pages_only=True)
    assert j.rules_checked["liveness"] > 10


def test_reference_passes_vmalloc_when_it_has_the_feature() -> None:
    ref = ReferenceSubject()
    if "vmalloc" not in ref.request(dict(HELLO))["features"]:
        pytest.skip("the reference subject has no vmalloc feature yet")
    j = run_reference(800, 9, ("vmalloc", "pages"), strict=True, mode="exact")
    assert j.rules_checked["overlap"] > 0


# --- a Python allocator through the adapter ----------------------------------------------------

class TinyBuddy:
    """A small, correct buddy allocator over the hello machine (pages and kmalloc of whole
    blocks), for the adapter; ``bug`` plants one realistic defect."""

    def __init__(self, hello: dict[str, Any], bug: str = "") -> None:
        self.bug = bug
        self.max_order = hello["max_order"]
        self.po = int(hello["page_offset"], 16)
        self.cpu_node = {c: n["nid"] for n in hello["nodes"] for c in n["cpus"]}
        self.zones: list[tuple[int, int, int, int]] = []  # (nid, zone index, start, end)
        self.free: list[dict[int, set[int]]] = []
        for n in hello["nodes"]:
            for z in n["zones"]:
                s, e = z["start_pfn"], z["start_pfn"] + z["pages"]
                self.zones.append((n["nid"], ["DMA", "DMA32", "Normal"].index(z["zone"]), s, e))
                fl: dict[int, set[int]] = {o: set() for o in range(self.max_order + 1)}
                p = s
                while p < e:
                    o = self.max_order
                    while p % (1 << o) or p + (1 << o) > e:
                        o -= 1
                    fl[o].add(p)
                    p += 1 << o
                self.free.append(fl)
        self.live: dict[int, tuple[int, int]] = {}   # pfn -> (order, zone)
        self.kmem: dict[int, tuple[int, int, int]] = {}  # addr -> (pfn, order, zone)

    def _alloc(self, order: int, gfp: int, nid: int, cpu: int) -> tuple[int, int] | None:
        if order > self.max_order:
            return None
        pref = self.cpu_node[cpu] if nid == -1 else nid
        for zi, (znid, zone, _s, _e) in enumerate(self.zones):
            if (not zone_allowed(zone, gfp) and self.bug != "ignore-dma") or (
                    gfp & THISNODE and znid != pref):
                continue
            fl = self.free[zi]
            for o in range(order, self.max_order + 1):
                if fl[o]:
                    p = min(fl[o])
                    fl[o].remove(p)
                    while o > order:
                        o -= 1
                        fl[o].add(p + (1 << o))
                    if self.bug == "overlap-after-split" and order == 0 and fl[0]:
                        fl[0].add(p)
                    return p, zi
        return None

    def _free(self, pfn: int, order: int, zi: int) -> None:
        _n, _z, s, e = self.zones[zi]
        fl = self.free[zi]
        while order < self.max_order:
            buddy = pfn ^ (1 << order)
            if buddy not in fl[order] or not s <= buddy < e:
                break
            fl[order].remove(buddy)
            pfn = min(pfn, buddy)
            order += 1
        fl[order].add(pfn)

    def alloc_pages(self, order: int, gfp: int, nid: int, cpu: int, ctx: str) -> int | None:
        r = self._alloc(order, gfp, nid, cpu)
        if r is None:
            return None
        self.live[r[0]] = (order, r[1])
        return r[0]

    def free_pages(self, pfn: int, order: int) -> None:
        if self.live.get(pfn, (None,))[0] != order:
            raise ValueError(f"bad free of pfn {pfn:#x} order {order}")
        self._free(pfn, order, self.live.pop(pfn)[1])

    def kmalloc(self, size: int, gfp: int, nid: int, cpu: int, ctx: str) -> int | None:
        if size == 0:
            return 16
        order = max(0, (size - 1).bit_length() - 12)
        r = self._alloc(order, gfp if gfp_zone(gfp) == 0 else gfp & ~0xF, nid, cpu)
        if r is None:
            return None
        addr = self.po + (r[0] << 12)
        self.kmem[addr] = (r[0], order, r[1])
        return addr

    def kfree(self, addr: int) -> None:
        if addr in (0, 16):
            return
        self._free(*self.kmem.pop(addr))


def test_adapter_runs_a_correct_python_allocator() -> None:
    sub = PythonAllocatorAdapter(lambda h: TinyBuddy(h), name="tiny")
    assert isinstance(sub, SubjectAPI)
    j = run_reference(1500, 7, ("pages", "kmalloc"), strict=True, mode="spec", subject=sub)
    assert j.features == ("pages", "kmalloc")
    j = run_reference(1500, 8, ("pages",), strict=True, mode="spec", pages_only=True,
                      subject=PythonAllocatorAdapter(lambda h: TinyBuddy(h)))
    assert j.rules_checked["liveness"] > 0
    assert sub.request({"op": "vmalloc", "seq": 3, "size": 1})["error"]


@pytest.mark.parametrize(("bug", "rule"), [("overlap-after-split", "overlap"),
                                           ("ignore-dma", "range")])
def test_adapter_broken_allocator_is_caught(bug: str, rule: str) -> None:
    sub = PythonAllocatorAdapter(lambda h: TinyBuddy(h, bug))
    with pytest.raises(AssertionError) as e:
        run_reference(3000, 7, ("pages",), strict=False, mode="spec", subject=sub)
    assert f"Violation(rule='{rule}'" in str(e.value)


class TinyVmalloc(TinyBuddy):
    """TinyBuddy plus vmalloc: order-0 pages behind a bump-allocated area, one guard page."""

    def __init__(self, hello: dict[str, Any]) -> None:
        super().__init__(hello)
        self.next_va = int(hello["vmalloc_start"], 16)
        self.areas: dict[int, list[tuple[int, int]]] = {}

    def vmalloc(self, size: int, gfp: int, cpu: int, ctx: str
                ) -> tuple[int, list[int]] | None:
        if ctx != "process" and size:
            raise ValueError("vmalloc in atomic context")
        if size == 0:
            return None
        got: list[tuple[int, int]] = []
        for _ in range(-(-size // 4096)):
            r = self._alloc(0, gfp, -1, cpu)
            if r is None:
                for p, zi in got:
                    self._free(p, 0, zi)
                return None
            got.append(r)
        addr, self.next_va = self.next_va, self.next_va + (len(got) + 1) * 4096
        self.areas[addr] = got
        return addr, [p for p, _ in got]

    def vfree(self, addr: int) -> None:
        for p, zi in self.areas.pop(addr):
            self._free(p, 0, zi)


def test_adapter_vmalloc() -> None:
    sub = PythonAllocatorAdapter(lambda h: TinyVmalloc(h))
    j = run_reference(1500, 4, ("pages", "vmalloc"), strict=True, mode="spec", subject=sub)
    assert j.features == ("pages", "kmalloc", "vmalloc")
    assert j.rules_checked["overlap"] > 100


def test_adapter_reports_sleep_and_errors() -> None:
    class Sleepy(TinyBuddy):
        slept = False

        def alloc_pages(self, order: int, gfp: int, nid: int, cpu: int, ctx: str) -> int | None:
            self.slept = True
            return super().alloc_pages(order, gfp, nid, cpu, ctx)

    sub = PythonAllocatorAdapter(lambda h: Sleepy(h))
    j = Judge(HELLO)
    assert j.check_hello(sub.request(dict(HELLO))) == []
    r = {**ap(0, "GFP_ATOMIC"), "seq": 2}
    one(j.observe(r, sub.request(r)), "sleep")
    r = {**fp(7, 0), "seq": 3}
    ans = sub.request(r)
    assert ans["error"].startswith("ValueError: bad free") and "slept" not in ans
    assert j.observe(r, ans) == []


def test_reference_subject_answers_internal_errors() -> None:
    ref = ReferenceSubject()
    ref.request(dict(HELLO))
    ref._s.handle = lambda m: (_ for _ in ()).throw(RuntimeError("boom"))
    assert "internal error" in ref.request({**ap(0), "seq": 2})["error"]
    assert "boom" in ref.log.getvalue()


def test_benchmark_workload_is_judged_clean() -> None:
    """benchmarks/judge.py's recorded sessions replay without a violation (small run)."""
    from benchmarks.judge import judge_cost, record

    for kinds, pages_only in ((("pages", "kmalloc", "slab", "vmalloc"), False), (("pages",), True)):
        pairs, per_request = record(400, kinds, pages_only, 3)
        assert len(pairs) == 400 and per_request > 0
        assert all(c > 0 for c in judge_cost(pairs, pages_only, 1))
