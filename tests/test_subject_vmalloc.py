"""The subject protocol's ``vmalloc`` feature of the reference subject (cli/subject.py):
answers, the range from hello, invalid requests that change nothing, lazy booting, and the
protocol's align/range/overlap rules on random sessions."""

from __future__ import annotations

import math
import random
from typing import Any

from tests.subject_session import SubjectSession

HELLO: dict[str, Any] = {
    "op": "hello", "seq": 1, "protocol": 1, "page_size": 4096, "max_order": 10,
    "vmalloc_start": "0xffffc90000000000", "vmalloc_end": "0xffffe90000000000",
    "nodes": [
        {"nid": 0, "cpus": [0], "zones": [
            {"zone": "DMA32", "start_pfn": 4096, "pages": 12288, "min": 32}]},
        {"nid": 1, "cpus": [1], "zones": [
            {"zone": "Normal", "start_pfn": 16384, "pages": 16384, "min": 64}]}],
    "distance": [[10, 20], [20, 10]]}


class Session(SubjectSession):
    def __init__(self, hello: dict[str, Any] | None = None) -> None:
        super().__init__(hello or HELLO)

    def state(self) -> object:
        assert self.s.vm is not None and self.s.a is not None
        return (self.s.vm.snapshot(), sorted(self.s.vm.pgtable.entries()),
                dict(self.s.a.allocated), [z.free_pages for z in self.s.a.zones])


def vm(size: int, cpu: int = 0, ctx: str = "process", gfp: str = "GFP_KERNEL") -> dict[str, Any]:
    return {"size": size, "gfp": gfp, "cpu": cpu, "ctx": ctx}


def test_vmalloc_answers_and_vfree() -> None:
    t = Session()
    a = t("vmalloc", **vm(10000))
    assert set(a) == {"seq", "addr", "pfns"} and a["addr"] == "0xffffc90000000000"
    assert len(a["pfns"]) == 3 and len(set(a["pfns"])) == 3
    b = t("vmalloc", **vm(4096, cpu=1))
    assert int(b["addr"], 16) == int(a["addr"], 16) + 4 * 4096  # after a's guard page
    assert all(p >= 16384 for p in b["pfns"])  # the local node of cpu 1
    assert t("vmalloc", **vm(0)) == {"seq": 4, "addr": None}
    assert t("vmalloc", **vm(0, ctx="atomic")) == {"seq": 5, "addr": None}
    assert t("vfree", addr=a["addr"]) == {"seq": 6, "ok": True}
    assert t("vfree", addr=b["addr"]) == {"seq": 7, "ok": True}


def test_invalid_requests_change_nothing() -> None:
    t = Session()
    a = t("vmalloc", **vm(3 * 4096))
    k = t("kmalloc", size=100, gfp="GFP_KERNEL", nid=-1, cpu=0, ctx="process")
    before = t.state()
    for req in (("vmalloc", vm(4096, ctx="atomic")),
                ("vmalloc", vm(4096, cpu=1, ctx="atomic")),
                ("vfree", {"addr": hex(int(a["addr"], 16) + 4096)}),
                ("vfree", {"addr": k["addr"]}),
                ("vfree", {"addr": "0xffffc90000100000"}),
                ("vfree", {"addr": "0xffffffffa0000000"}),
                ("free_pages", {"pfn": a["pfns"][0], "order": 0}),
                ("kfree", {"addr": a["addr"]})):
        ans = t(req[0], **req[1])
        assert set(ans) == {"seq", "error"}, (req, ans)
        assert t.state() == before, req
    assert t("vfree", addr=a["addr"])["ok"]
    assert "double vfree" in t("vfree", addr=a["addr"])["error"]


def test_pages_only_sessions_boot_no_vmalloc() -> None:
    t = Session()
    t("alloc_pages", order=0, gfp="GFP_KERNEL", nid=-1, cpu=0, ctx="process")
    assert t.s.vm is None and t.s.sa is None  # no page tables, no slabs: liveness holds
    t("vmalloc", **vm(1))
    assert t.s.vm is not None


def test_the_range_comes_from_hello() -> None:
    small = {**HELLO, "vmalloc_start": "0xffffc90000000000",
             "vmalloc_end": "0xffffc90000010000"}  # 16 pages
    t = Session(small)
    a = t("vmalloc", **vm(8 * 4096))
    assert a["addr"] == "0xffffc90000000000"
    # 7 pages are left, but the kernel's VMALLOC_END is vmalloc_end - 1: the last page is
    # never handed out, so 6 pages and a guard page do not fit, 5 and a guard do
    assert t("vmalloc", **vm(6 * 4096))["addr"] is None
    c = t("vmalloc", **vm(5 * 4096))
    assert c["addr"] == "0xffffc90000009000"


def test_random_sessions_keep_the_protocol_rules() -> None:
    """align, range and overlap as the oracle checks them: page-aligned areas inside
    [vmalloc_start, vmalloc_end), ceil(size / page_size) distinct pfns in zones, no pfn
    behind two live things, at least one unmapped page between two live areas."""
    rnd = random.Random(5)
    t = Session()
    zones = [(4096, 16384), (16384, 32768)]
    live: dict[int, tuple[int, list[int]]] = {}
    pages: dict[int, int] = {}
    for _ in range(300):
        if live and rnd.random() < 0.4:
            addr = rnd.choice(sorted(live))
            assert t("vfree", addr=hex(addr))["ok"]
            for p in live.pop(addr)[1]:
                del pages[p]
            continue
        if rnd.random() < 0.2:
            ans = t("alloc_pages", order=rnd.randrange(3), gfp="GFP_KERNEL", nid=-1,
                    cpu=rnd.randrange(2), ctx="process")
            assert ans["pfn"] is not None
            continue
        size = rnd.choice([1, 4096, 4097, 20000, 100000])
        ans = t("vmalloc", **vm(size, cpu=rnd.randrange(2)))
        assert ans["addr"] is not None
        addr = int(ans["addr"], 16)
        n = math.ceil(size / 4096)
        assert addr % 4096 == 0 and len(ans["pfns"]) == n
        assert addr >= 0xFFFFC90000000000 and addr + n * 4096 <= 0xFFFFE90000000000
        assert all(any(s <= p < e for s, e in zones) for p in ans["pfns"])
        for p in ans["pfns"]:
            assert p not in pages
            pages[p] = addr
        for other, (m, _) in live.items():
            assert addr + n * 4096 < other or other + m * 4096 < addr  # a guard page between
        live[addr] = (n, ans["pfns"])
