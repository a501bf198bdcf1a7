"""Real kernel traces: the trace checker (tracecheck/check.py) on what Debian's Linux 6.1.192 and
6.12.117 reported under qemu (tests/fixtures/linux-*/<shape>/trace.xz, made by
tools/capture_kernel.py), and on copies of them with one planted bug each
(tools/inject_trace_faults.py).

Two halves:
- the fault injector, on its own: every fault is planted on every real trace, the copy differs
  from the real trace only where the fault says, and the planted line really breaks the
  property the rule names (checked here from the lines themselves, not by the checker);
- the checker (skipped until tracecheck.check exists): zero violations on every real trace,
  its event counts are the trace's, and every planted fault is reported with its rule at its
  line, with no violation before it.
"""

from __future__ import annotations

import lzma
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tools.capture_kernel import event_counts
from tools.inject_trace_faults import (
    KINDS,
    LINE,
    Fault,
    NoCandidateError,
    inject,
    parse,
    set_field,
)

FIXTURES = Path(__file__).parent / "fixtures"
TRACES = sorted(p.parent for p in FIXTURES.glob("linux-*/*/trace.xz"))
IDS = [f"{p.parent.name}/{p.name}" for p in TRACES]
# the kmalloc size classes of both kernels (kmalloc_info[], mm/slab_common.c), 8 .. 8 KiB
SIZE_CLASSES = {8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192}


@cache
def trace_text(capture: Path) -> str:
    return lzma.decompress((capture / "trace.xz").read_bytes()).decode()


@cache
def fault(capture: Path, kind: str) -> Fault:
    return inject(trace_text(capture), kind)


def plantable(capture: Path, kind: str) -> bool:
    """vmalloc faults need vmalloc events: 6.2+ and a workload whose children outran the
    per-CPU stack cache (the one-CPU 6.12 capture has none); when there are none, the
    injector must say so."""
    if kind.startswith("vmalloc.") and "alloc_vmap_area:" not in trace_text(capture):
        with pytest.raises(NoCandidateError):
            inject(trace_text(capture), kind)
        return False
    return True


def fields(line: str) -> dict[str, str]:
    m = LINE.match(line)
    assert m, line
    return dict(kv.split("=", 1) for kv in m.group(3).split() if "=" in kv)


def event(line: str) -> str:
    m = LINE.match(line)
    assert m, line
    return m.group(2)


def test_the_fixtures_cover_both_kernels_and_both_shapes() -> None:
    kernels = {p.parent.name for p in TRACES}
    assert {"linux-6.1", "linux-6.12"} <= kernels
    for k in ("linux-6.1", "linux-6.12"):
        nodes = {p.name.split("-")[0] for p in TRACES if p.parent.name == k}
        assert {"1node", "2node"} <= nodes, k


# --- the injector ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("capture", TRACES, ids=IDS)
def test_fault_changes_only_what_it_says(capture: Path, kind: str) -> None:
    if not plantable(capture, kind):
        return
    real = trace_text(capture).splitlines()
    f = fault(capture, kind)
    new = f.text.splitlines()
    bad = new[f.lineno - 1]
    assert f.kind == kind and LINE.match(bad)
    if len(new) == len(real) + 1:  # a line inserted right after a real one
        assert new[:f.lineno - 1] + new[f.lineno:] == real
        if kind == "object.overlap":  # a copy of the line before with another ptr
            a, b = fields(new[f.lineno - 2]), fields(bad)
            assert {k for k in a if a[k] != b[k]} == {"ptr"}
            assert 0 < int(b["ptr"], 16) - int(a["ptr"], 16) < int(a["bytes_alloc"])
        elif kind == "vmalloc.guard":  # a copy starting in the guard page of the line before
            ea, eb = parse([new[f.lineno - 2], bad])
            assert {k for k in ea.fields if ea.fields[k] != eb.fields[k]} == {"va_start"}
            end = int(ea.fields["va_start"], 16) + int(ea.fields["size"])
            assert int(eb.fields["va_start"], 16) == end - 4096
        else:  # a real line repeated
            assert bad == new[f.lineno - 2]
        assert kind in {"page.overlap", "page.double_free", "object.overlap",
                        "object.handed_out_twice", "object.double_free", "vmalloc.overlap",
                        "vmalloc.guard"}
        return
    assert len(new) == len(real)
    changed = [i for i, (a, b) in enumerate(zip(real, new, strict=True)) if a != b]
    assert f.lineno - 1 in changed
    for i in changed:  # only the one field of each changed line
        a, b = fields(real[i]), fields(new[i])
        assert {k for k in a if a[k] != b[k]} == {
            "kmalloc.size_class": {"bytes_alloc"}, "page.free_order": {"order"},
            "page.align": {"order"}}[kind]
    assert len(changed) == (2 if kind == "page.align" else 1)


@pytest.mark.parametrize("capture", TRACES, ids=IDS)
def test_planted_lines_break_the_property(capture: Path) -> None:
    """What makes each planted line wrong, read off the trace's own lines."""
    lines = {k: fault(capture, k).text.splitlines() for k in KINDS if plantable(capture, k)}

    def at(kind: str) -> tuple[str, dict[str, str]]:
        line = lines[kind][fault(capture, kind).lineno - 1]
        return event(line), fields(line)

    ev, f = at("page.align")
    assert ev == "mm_page_alloc" and f["order"] == "1" and int(f["pfn"], 16) % 2 == 1
    ev, f = at("kmalloc.size_class")
    assert ev == "kmalloc" and int(f["bytes_alloc"]) not in SIZE_CLASSES
    assert int(f["bytes_alloc"]) >= int(f["bytes_req"])
    ev, f = at("page.free_order")
    assert ev == "mm_page_free"
    # the free's block was allocated with a smaller order and is still live at the free
    text = lines["page.free_order"][:fault(capture, "page.free_order").lineno - 1]
    allocs = [fields(x) for x in text if LINE.match(x) and event(x) == "mm_page_alloc"
              and fields(x)["pfn"] == f["pfn"]]
    assert allocs and int(allocs[-1]["order"]) == int(f["order"]) - 1
    assert int(f["pfn"], 16) % (1 << int(f["order"])) == 0  # aligned: only the order is wrong
    ev, f = at("page.double_free")
    assert ev == "mm_page_free" and int(f["order"]) >= 1  # order 0 may be a bulk realloc
    assert at("object.double_free")[0] == "kfree"  # kmalloc'ed: no bulk allocation path
    for kind, name in (("page.overlap", "mm_page_alloc"), ("object.overlap", "kmem_cache_alloc"),
                       ("object.handed_out_twice", "kmem_cache_alloc")):
        assert at(kind)[0] == name, kind
    if "vmalloc.guard" in lines:  # the planted area begins inside the live one's last page
        a, b = parse(lines["vmalloc.guard"][fault(capture, "vmalloc.guard").lineno - 2:][:2])
        end = int(a.fields["va_start"], 16) + int(a.fields["size"])
        assert (a.name, b.name) == ("alloc_vmap_area", "alloc_vmap_area")
        assert end - 4096 <= int(b.fields["va_start"], 16) < end


def test_set_field_and_bad_requests() -> None:
    line = ("  dd-142  [000] .....  3.815909: mm_page_alloc: page=ffffea000017d600 pfn=0x5f58 "
            "order=3 migratetype=0 gfp_flags=GFP_KERNEL")
    assert "order=2 migratetype" in set_field(line, "order", "2")
    assert set_field(line, "pfn", "0x1").count("pfn=0x1 ") == 1
    with pytest.raises(ValueError, match="ptr="):
        set_field(line, "ptr", "0")
    with pytest.raises(ValueError, match="unknown fault"):
        inject(line, "page.leak")
    with pytest.raises(NoCandidateError):
        inject("# tracer: nop\n" + line + "\n", "page.free_order")  # never freed
    assert [e.name for e in parse(["# x", line])] == ["mm_page_alloc"]


def test_injector_skips_internal_moves_and_the_batched_repeat() -> None:
    """mm_page_alloc_zone_locked / mm_page_pcpu_drain are not allocations, the
    mm_page_free_batched after an mm_page_free is not a second free (so a block freed that way
    is not edited: the batched line would contradict it), a page double free goes on an order
    >= 1 block, and a free within REORDER seconds of its allocation is not used."""
    base = "  sh-1  [000] .....  1.{:06d}: "
    lines = ["# tracer: nop",
             base.format(1000) + "mm_page_alloc_zone_locked: page=ffffea0000000040 pfn=0x1 "
             "order=0 migratetype=0 percpu_refill=1",
             base.format(2000) + "mm_page_alloc: page=ffffea0000000040 pfn=0x1 order=0 "
             "migratetype=0 gfp_flags=GFP_KERNEL",
             base.format(30000) + "mm_page_free: page=ffffea0000000040 pfn=0x1 order=0",
             base.format(30001) + "mm_page_free_batched: page=ffffea0000000040 pfn=0x1 order=0",
             base.format(40000) + "mm_page_alloc: page=ffffea00000000c0 pfn=0x3 order=0 "
             "migratetype=0 gfp_flags=GFP_KERNEL",
             base.format(40001) + "mm_page_free: page=ffffea00000000c0 pfn=0x3 order=0",
             base.format(50000) + "mm_page_alloc: page=ffffea0000000100 pfn=0x4 order=1 "
             "migratetype=0 gfp_flags=GFP_KERNEL",
             base.format(50001) + "mm_page_free: page=ffffea0000000100 pfn=0x4 order=1",
             base.format(60000) + "mm_page_alloc: page=ffffea0000000200 pfn=0x8 order=1 "
             "migratetype=0 gfp_flags=GFP_KERNEL",
             base.format(90000) + "mm_page_free: page=ffffea0000000200 pfn=0x8 order=1"]
    text = "\n".join(lines) + "\n"
    f = inject(text, "page.align")  # not pfn 0x1: its free is batched
    assert f.lineno == 6 and "pfn=0x3 order=1" in f.text.splitlines()[5]
    assert "pfn=0x3 order=1" in f.text.splitlines()[6]  # its free, edited to match
    f = inject(text, "page.double_free")  # not 0x4: freed 1 us after its allocation
    assert f.lineno == 12 and f.text.splitlines()[11] == lines[10]
    f = inject(text, "page.free_order")
    assert f.lineno == 11 and "pfn=0x8 order=2" in f.text.splitlines()[10]
    f = inject(text, "page.overlap")
    assert f.lineno == 11 and f.text.splitlines()[10] == lines[9]


# --- the checker ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def check_trace() -> Any:
    mod = pytest.importorskip("tracecheck.check")
    return mod.check_trace


@pytest.mark.parametrize("capture", TRACES, ids=IDS)
def test_real_trace_has_no_violations(check_trace: Any, capture: Path) -> None:
    report = check_trace([capture / "trace.xz"], formats_dir=str(capture / "kmem_formats"))
    assert report.violations == [], report.violations[:5]
    assert report.malformed == []
    assert Counter(dict(report.events)) == Counter(event_counts(trace_text(capture)))


@pytest.mark.parametrize("capture", TRACES, ids=IDS)
def test_real_trace_without_format_files(check_trace: Any, capture: Path) -> None:
    """The built-in layouts of 6.1 and 6.12 read the same traces with no format files."""
    report = check_trace(text=trace_text(capture))
    assert report.violations == [], report.violations[:5]
    assert report.malformed == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("capture", TRACES, ids=IDS)
def test_planted_fault_is_caught_at_its_line(check_trace: Any, capture: Path, kind: str) -> None:
    if not plantable(capture, kind):
        return
    f = fault(capture, kind)
    report = check_trace(text=f.text, formats_dir=str(capture / "kmem_formats"),
                         strict=f.strict)
    hits = [(v.rule, v.lineno) for v in report.violations]
    assert (f.rule, f.lineno) in hits, (f.note, hits[:5])
    if not f.strict:
        assert min(line for _, line in hits) == f.lineno, (f.note, hits[:5])
    else:  # strict judges every kmem_cache re-free too; the real trace has no overlap
        real = check_trace([capture / "trace.xz"], strict=True)
        assert f.rule not in {v.rule for v in real.violations}


@pytest.mark.parametrize("capture", TRACES[:1], ids=IDS[:1])
def test_same_object_twice_is_excused_unless_strict(check_trace: Any, capture: Path) -> None:
    """The same object at the same address handed out twice is what an untraced
    kmem_cache_free_bulk() followed by a reallocation looks like: not a violation by default."""
    f = fault(capture, "object.handed_out_twice")
    report = check_trace(text=f.text, formats_dir=str(capture / "kmem_formats"))
    assert report.violations == []


def direct_map_bases(text: str) -> set[int]:
    """ptr - (pfn << PAGE_SHIFT) of every large kmalloc (bytes_alloc > 8 KiB: whole pages from
    __kmalloc_large_node, mm/slub.c) and the mm_page_alloc of its pages just before it."""
    events = parse(text.splitlines())
    bases = set()
    for k, e in enumerate(events):
        size = int(e.fields.get("bytes_alloc", "0"))
        if e.name != "kmalloc" or size <= 8192:
            continue
        order = (size >> 12).bit_length() - 1
        page = next(p for p in reversed(events[max(0, k - 8):k])
                    if p.name == "mm_page_alloc" and p.fields["order"] == str(order))
        bases.add(int(e.fields["ptr"], 16) - (int(page.fields["pfn"], 16) << 12))
    return bases


@pytest.mark.parametrize("capture", TRACES, ids=IDS)
def test_direct_map_base_inferred(check_trace: Any, capture: Path) -> None:
    """The checker's direct-map base is the one the large kmallocs show: 0xffff888000000000
    with nokaslr, a randomised 1 GiB-aligned base with KASLR (linux-6.1/2node-4cpu-2g)."""
    report = check_trace([capture / "trace.xz"])
    assert not report.hashed_pointers
    bases = direct_map_bases(trace_text(capture))
    if not bases:  # the older 6.12 workloads have no large kmalloc
        return
    assert len(bases) == 1 and report.page_offset in bases
    (base,) = bases
    assert base % (1 << 30) == 0
    kaslr = "nokaslr" not in (capture / "cmdline").read_text().split()
    assert (base != 0xFFFF888000000000) == kaslr, hex(base)


def test_a_kaslr_capture_exists() -> None:
    assert any("nokaslr" not in (c / "cmdline").read_text().split() and direct_map_bases(
        trace_text(c)) for c in TRACES)
