"""The trace checker (tracecheck/): every rule catches a hand-made fault at the right line,
the real captures check clean, and the kernel-version variants, trace-cmd output, compressed
inputs and malformed input are handled."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import pytest
import zstandard

from tracecheck import emit
from tracecheck.check import RULES, TraceReport, check_trace

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CAPTURES = sorted(FIXTURES.glob("linux-*/*/trace.xz"))
BASE = 0xFFFF888000000000
GK, GA, GN = "GFP_KERNEL", "GFP_ATOMIC", "GFP_NOWAIT"


def va(pfn: int, off: int = 0) -> int:
    return BASE + (pfn << 12) + off


class T:
    """A hand-made trace: one line per event, line numbers as the checker counts them."""

    def __init__(self, header: bool = True) -> None:
        self.lines: list[str] = (emit.HEADER.format(n=0, cpus=2).splitlines(keepends=True)
                                 if header else [])
        self.ts = 1_000_000

    def add(self, ev: str, cpu: int = 0, flags: str = ".....", dt: int = 10) -> int:
        self.ts += dt
        self.lines.append(emit.prefix("kworker/0:1", 42, cpu, flags, self.ts) + ev + "\n")
        return len(self.lines)

    def text(self) -> str:
        return "".join(self.lines)

    def check(self, **kw: object) -> TraceReport:
        return check_trace(text=self.text(), **kw)  # type: ignore[arg-type]


def rules(r: TraceReport) -> list[tuple[str, int]]:
    return [(v.rule, v.lineno) for v in r.violations]


def kmalloc_line(ptr: int, req: int, alloc: int, gfp_bits: int = 0xCC0) -> str:
    return emit.kmalloc("foo+0x1/0x2", ptr, req, alloc, gfp_bits)


# --- the real captures ------------------------------------------------------------------------


def test_there_are_captures() -> None:
    assert len(CAPTURES) >= 4


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.parent.name)
def test_real_capture_has_no_violation(path: Path) -> None:
    r = check_trace([path])
    assert r.violations == [], r.violations[:3]
    assert r.malformed_total == 0
    assert r.events["kmem_cache_alloc"] > 100 and r.events["mm_page_alloc"] > 100
    # inferred from the trace: 0xffff888000000000 with nokaslr, a 1 GiB-aligned base otherwise
    assert r.page_offset is not None and r.page_offset % (1 << 30) == 0
    if "nokaslr" in (path.parent / "cmdline").read_text():
        assert r.page_offset == BASE
    assert r.rules_checked["object.overlap"] > 100
    assert r.rules_checked["object.in_free_page"] > 100
    assert r.layouts["kmem_cache_alloc"].startswith(("Linux 6.1+", "Linux 6.18+"))


@pytest.mark.parametrize("path", CAPTURES[:2], ids=lambda p: p.parent.name)
def test_real_capture_with_its_format_files(path: Path) -> None:
    r = check_trace([path], formats_dir=str(path.parent / "kmem_formats"))
    assert r.violations == []
    assert r.layouts["kmalloc"] == "format file"
    assert any("tracepoint formats" in n for n in r.notes)


def real_lines() -> list[str]:
    return lzma.open(CAPTURES[0], "rt").read().splitlines(keepends=True)


def first(lines: list[str], needle: str, start: int = 0) -> int:
    return next(i for i in range(start, len(lines)) if needle in lines[i])


def test_real_capture_with_injected_faults_caught_at_their_lines() -> None:
    lines = real_lines()
    # a wrong bytes_alloc
    i = first(lines, "kmalloc: ")
    bad = list(lines)
    req = int(bad[i].split("bytes_req=")[1].split()[0])
    alloc = int(bad[i].split("bytes_alloc=")[1].split()[0])
    bad[i] = bad[i].replace(f"bytes_alloc={alloc} ", f"bytes_alloc={alloc * 2} ")
    r = check_trace(text="".join(bad))
    assert ("kmalloc.size_class", i + 1) in rules(r), (req, rules(r))
    # a misaligned block: an order-1 allocation at an odd pfn
    j = first(lines, "order=1 migratetype")
    bad = list(lines)
    pfn = int(bad[j].split("pfn=")[1].split()[0], 16)
    bad[j] = bad[j].replace(f"pfn={pfn:#x} ", f"pfn={pfn + 1:#x} ")
    assert ("page.align", j + 1) in rules(check_trace(text="".join(bad)))
    # a page block allocated twice: repeat an allocation line right after itself
    k = first(lines, "mm_page_alloc: ")
    bad = [*lines[:k + 1], lines[k], *lines[k + 1:]]
    assert ("page.overlap", k + 2) in rules(check_trace(text="".join(bad)))
    # a kmalloc object freed twice: repeat its kfree
    m = next(i for i, ln in enumerate(lines) if "kfree: " in ln and "ptr=0000000000000000" not in ln
             and any(ln.split("ptr=")[1].split()[0] in x and "kmalloc: " in x
                     for x in lines[:i]))
    bad = [*lines[:m + 1], lines[m], *lines[m + 1:]]
    assert ("object.double_free", m + 2) in rules(check_trace(text="".join(bad)))


# --- every rule, on a hand-made trace ----------------------------------------------------------


def test_page_rules() -> None:
    t = T()
    t.add(emit.mm_page_alloc(0x1000, 2, 0xCC0))
    bad_align = t.add(emit.mm_page_alloc(0x2001, 1, 0xCC0))
    overlap = t.add(emit.mm_page_alloc(0x1002, 0, 0xCC0))
    t.add(emit.mm_page_alloc(0x3000, 1, 0xCC0))
    bigger = t.add(emit.mm_page_free(0x3000, 2))
    t.add(emit.mm_page_alloc(0x4000, 1, 0xCC0))
    t.add(emit.mm_page_free(0x4000, 1))
    double = t.add(emit.mm_page_free(0x4000, 1))
    mtype = t.add(emit.mm_page_alloc(0x5000, 0, 0xCC8, migratetype=0))  # __GFP_MOVABLE: 1
    r = t.check()
    assert rules(r) == [("page.align", bad_align), ("page.overlap", overlap),
                        ("page.free_order", bigger), ("page.double_free", double),
                        ("page.migratetype", mtype)]
    assert "allocated with order 1" in r.violations[2].message


def test_split_frees_are_allowed_and_account_every_page() -> None:
    t = T()
    t.add(emit.mm_page_alloc(0x100, 2, 0xCC0))
    t.add(emit.mm_page_free(0x101, 0))
    t.add(emit.mm_page_free(0x102, 1))
    t.add(emit.mm_page_free(0x100, 0))
    r = t.check()
    assert r.violations == []
    assert r.live_pages == 0 and r.counters["split_frees"] == 1


def test_order0_refree_is_counted_not_judged_unless_strict() -> None:
    t = T()
    t.add(emit.mm_page_alloc(0x100, 0, 0xCC0))
    t.add(emit.mm_page_free(0x100, 0))
    line = t.add(emit.mm_page_free(0x100, 0))
    assert t.check().violations == []
    assert t.check().counters["order0_refree"] == 1
    assert rules(t.check(strict=True)) == [("page.double_free", line)]


def test_batched_free_after_free_is_one_free() -> None:
    t = T()
    t.add(emit.mm_page_alloc(0x100, 0, 0xCC0))
    t.add(emit.mm_page_alloc(0x101, 0, 0xCC0))
    t.add(emit.mm_page_free(0x100, 0))
    t.add(emit.mm_page_free(0x101, 0))
    t.add(emit.mm_page_free_batched(0x100))
    t.add(emit.mm_page_free_batched(0x101))
    r = t.check(strict=True)
    assert r.violations == [] and r.live_pages == 0
    assert r.counters["batched_after_free"] == 2
    t2 = T()
    t2.add(emit.mm_page_alloc(0x100, 0, 0xCC0))
    t2.add(emit.mm_page_free_batched(0x100))  # alone: it is the free
    assert t2.check().live_pages == 0


def test_object_rules() -> None:
    t = T()
    t.add(kmalloc_line(va(0x10), 100, 128))
    overlap = t.add(kmalloc_line(va(0x10, 64), 64, 64))
    t.add(kmalloc_line(va(0x20), 30, 32))
    t.add(emit.kfree("bar+0x1/0x2", va(0x20)))
    double = t.add(emit.kfree("bar+0x1/0x2", va(0x20)))
    t.add(kmalloc_line(va(0x30), 200, 256))
    inner = t.add(emit.kfree("bar+0x1/0x2", va(0x30, 8)))
    r = t.check()
    assert rules(r) == [("object.overlap", overlap), ("object.double_free", double),
                        ("object.invalid_free", inner)]


def test_kmalloc_size_class_and_alignment() -> None:
    t = T()
    t.add(kmalloc_line(va(1), 70, 96))
    t.add(kmalloc_line(va(2), 129, 192))
    wrong = t.add(kmalloc_line(va(3), 100, 96))
    t.add(kmalloc_line(va(4), 8, 8))
    t.add(emit.mm_page_alloc(0x40, 2, 0x40CC0))
    t.add(kmalloc_line(va(0x40), 9000, 16384))
    large_wrong = t.add(kmalloc_line(va(0x80), 9000, 12288))
    misaligned = t.add(kmalloc_line(va(5, 32), 64, 64))
    t.add(kmalloc_line(va(6, 32), 96, 96))  # 96: 8-aligned is all kmalloc() promises
    r = t.check()
    assert rules(r) == [("kmalloc.size_class", wrong), ("kmalloc.size_class", large_wrong),
                        ("kmalloc.align", misaligned)]
    assert "size class of 100 bytes is 128" in r.violations[0].message


def test_duplicate_large_kmalloc_event_is_one_object() -> None:
    t = T()
    t.add(emit.mm_page_alloc(0x40, 2, 0x40CC0))
    t.add(kmalloc_line(va(0x40), 9000, 16384))
    t.add(kmalloc_line(va(0x40), 9000, 16384))
    t.add(emit.kfree("x+0x1/0x2", va(0x40)))
    t.add(emit.mm_page_free(0x40, 2))
    r = t.check()
    assert r.violations == [] and r.live_objects == 0
    assert r.counters["duplicate_large_kmalloc_events"] == 1


def test_object_in_free_page_needs_the_base() -> None:
    t = T()
    t.add(emit.mm_page_alloc(0x50, 0, 0xCC0))
    t.add(emit.mm_page_free(0x50, 0))
    bad = t.add(emit.kmem_cache_alloc("y+0x1/0x2", va(0x50, 0x40), 64, 64, 0xCC0))
    assert rules(t.check(page_offset=BASE)) == [("object.in_free_page", bad)]
    r = t.check()
    assert r.violations == [] and any("direct-map base" in s for s in r.not_checked)


def test_direct_map_base_is_inferred_under_kaslr() -> None:
    base = 0xFFFF9A4B00000000  # a 1 GiB-aligned randomised page_offset_base
    t = T()
    for i in range(4):
        pfn = 0x200 + 4 * i
        t.add(emit.mm_page_alloc(pfn, 2, 0x40CC0))
        t.add(kmalloc_line(base + (pfn << 12), 10000, 16384))
    r = t.check()
    assert r.page_offset == base and "inferred" in r.page_offset_how


def test_sleep_in_atomic_context() -> None:
    t = T()
    soft = t.add(kmalloc_line(va(1), 32, 32, 0xCC0), flags="..s1.")
    t.add(kmalloc_line(va(2), 32, 32, 0x820), flags="..s1.")  # GFP_ATOMIC: fine
    irqs_off = t.add(emit.mm_page_alloc(0x10, 0, 0xCC0), flags="d..1.")
    t.add(emit.kmem_cache_alloc("z+0x1/0x2", va(3), 64, 64, 0xCC0), flags="...1.")  # preempt only
    hard = t.add(emit.kmem_cache_alloc("z+0x1/0x2", va(4), 64, 64, 0x400), flags="..h1.")
    r = t.check()
    assert rules(r) == [("sleep.atomic", soft), ("sleep.atomic", irqs_off),
                        ("sleep.atomic", hard)]
    assert "flags ..s1." in r.violations[0].message


def test_vmalloc_rules() -> None:
    start = 0xFFFFC90000000000
    t = T()
    t.add(emit.alloc_vmap_area(start, 3 * 4096))
    guard = t.add(emit.alloc_vmap_area(start + 2 * 4096, 2 * 4096))
    t.add(emit.alloc_vmap_area(start + 0x100000, 3 * 4096))
    over = t.add(emit.alloc_vmap_area(start + 0x100000 - 4096, 3 * 4096))
    t.add(emit.free_vmap_area_noflush(start + 0x200000))
    r = t.check()
    assert rules(r) == [("vmalloc.guard", guard), ("vmalloc.overlap", over)]
    assert r.unknown_frees == 1


def test_every_rule_has_a_test_above() -> None:
    src = Path(__file__).read_text()
    for rule in RULES:
        assert f'"{rule}"' in src, rule


# --- what is not a violation -------------------------------------------------------------------


def test_frees_of_things_allocated_before_the_trace_are_unknown() -> None:
    t = T()
    t.add(emit.kfree("a+0x1/0x2", va(7)))
    t.add(emit.kmem_cache_free("a+0x1/0x2", va(8), "dentry"))
    t.add(emit.mm_page_free(0x77, 3))
    t.add(emit.kfree("a+0x1/0x2", 0))
    r = t.check()
    assert r.violations == [] and r.unknown_frees == 3 and r.counters["null_frees"] == 1


def test_bulk_paths_are_excused_unless_strict() -> None:
    t = T()
    t.add(emit.kmem_cache_alloc("mas_alloc_nodes+0x1/0x2", va(9), 256, 256, 0xCC0))
    t.add(emit.kmem_cache_free("mas_destroy+0x1/0x2", va(9), "maple_node"))
    refree = t.add(emit.kmem_cache_free("mas_destroy+0x1/0x2", va(9), "maple_node"))
    t.add(emit.kmem_cache_alloc("a+0x1/0x2", va(10), 256, 256, 0xCC0))
    twice = t.add(emit.kmem_cache_alloc("a+0x1/0x2", va(10), 256, 256, 0xCC0))
    r = t.check()
    assert r.violations == []
    assert r.counters["cache_object_refree"] == 1 and r.counters["untraced_free_reuse"] == 1
    assert rules(t.check(strict=True)) == [("object.double_free", refree),
                                           ("object.overlap", twice)]


def test_lost_events_forget_state_and_say_so() -> None:
    t = T()
    t.add(emit.mm_page_alloc(0x100, 0, 0xCC0))
    t.lines.append("CPU:1 [LOST 42 EVENTS]\n")
    t.add(emit.mm_page_alloc(0x100, 0, 0xCC0))  # its free was lost
    t.add(kmalloc_line(va(1), 8, 8))
    t.lines.append("##### CPU 1 buffer started ####\n")
    t.add(kmalloc_line(va(1), 8, 8))
    r = t.check()
    assert r.violations == []
    assert r.counters["lost_events"] == 42 and r.counters["state_resets"] == 2
    assert any("events were lost" in s for s in r.not_checked)


def test_clock_skew_between_cpus_is_tolerated_within_the_window() -> None:
    t = T()
    t.add(kmalloc_line(va(1), 60, 64), cpu=0)
    t.add(kmalloc_line(va(1), 60, 64), cpu=1, dt=2)      # printed first ...
    t.add(emit.kfree("f+0x1/0x2", va(1)), cpu=0, dt=2)   # ... but this free came before it
    r = t.check(strict=True)
    assert r.violations == [] and r.counters["reordered_across_cpus"] == 1
    assert r.live_objects == 1
    same_cpu = T()
    same_cpu.add(kmalloc_line(va(1), 60, 64), cpu=0)
    bad = same_cpu.add(kmalloc_line(va(1), 60, 64), cpu=0)
    same_cpu.add(emit.kfree("f+0x1/0x2", va(1)), cpu=0)
    assert rules(same_cpu.check(strict=True)) == [("object.overlap", bad)]


def test_hashed_pointers_are_detected() -> None:
    t = T()
    t.add(emit.kmalloc("a+0x1/0x2", 0xA1B2C3D4, 64, 64, 0xCC0))
    t.add(emit.kfree("a+0x1/0x2", 0xA1B2C3D4))
    double = t.add(emit.kfree("a+0x1/0x2", 0xA1B2C3D4))
    r = t.check()
    assert r.hashed_pointers
    assert any("hashed" in s for s in r.not_checked)
    assert rules(r) == [("object.double_free", double)]


# --- kernel versions and formats ---------------------------------------------------------------


def test_linux_6_18_cache_name_in_kmem_cache_alloc() -> None:
    t = T()
    t.add(emit.kmem_cache_alloc("d_alloc+0x1/0x2", va(2), 192, 192, 0xCC0, name="dentry"))
    t.add(emit.kmem_cache_free("dput+0x1/0x2", va(2), "dentry"))
    r = t.check()
    assert r.violations == [] and r.layouts["kmem_cache_alloc"] == "Linux 6.18+ (built-in)"
    assert "dentry" in r.caches and r.caches["dentry"].frees == 1


def test_linux_6_0_node_events_and_6_1_atomic_flag_and_7_x_flag_order() -> None:
    t = T()
    t.add("kmalloc_node: call_site=a+0x1/0x2 ptr=ffff888000010000 bytes_req=100 bytes_alloc=128 "
          "gfp_flags=GFP_KERNEL node=1 accounted=false")
    t.add("kmem_cache_alloc_node: call_site=a+0x1/0x2 ptr=ffff888000011000 bytes_req=60 "
          "bytes_alloc=64 gfp_flags=GFP_ATOMIC|__GFP_ATOMIC node=0 accounted=false", flags="..s1.")
    t.add("kmalloc: call_site=b+0x1/0x2 ptr=ffff888000012000 bytes_req=30 bytes_alloc=32 "
          "gfp_flags=GFP_KERNEL|__GFP_ZERO|__GFP_NOWARN|__GFP_COMP node=-1 accounted=false")
    wrong = t.add("kmalloc: call_site=b+0x1/0x2 ptr=ffff888000013000 bytes_req=30 "
                  "bytes_alloc=64 gfp_flags=GFP_KERNEL|__GFP_ZERO|__GFP_NOWARN")
    r = t.check()
    assert rules(r) == [("kmalloc.size_class", wrong)]  # the 5.x layout still judged
    assert r.layouts["kmalloc_node"] == "Linux 6.0+ (built-in)"
    assert r.nodes_requested == {1: 1, 0: 1}
    assert not any("unknown to Linux" in n for n in r.notes)  # __GFP_ATOMIC (6.1) is known


def test_module_call_sites_and_reordered_fields_parse_by_name(tmp_path: Path) -> None:
    t = T()
    t.add("kmalloc: call_site=alloc_foo+0x2c/0x90 [foo] ptr=ffff888000010000 bytes_req=70 "
          "bytes_alloc=96 gfp_flags=GFP_KERNEL node=-1 accounted=false")
    line = t.add("kmalloc: ptr=ffff888000011000 node=-1 bytes_alloc=64 bytes_req=70 "
                 "call_site=bar+0x1/0x2 gfp_flags=GFP_KERNEL accounted=false")
    r = t.check()
    assert rules(r) == [("kmalloc.size_class", line)]
    assert "alloc_foo+0x2c" in r.call_sites
    fmt = tmp_path / "events" / "kmem" / "kmalloc"
    fmt.mkdir(parents=True)
    (fmt / "format").write_text(
        'name: kmalloc\nID: 1\nformat:\n\tfield:int x;\n\nprint fmt: "ptr=%p node=%d '
        'bytes_alloc=%zu bytes_req=%zu call_site=%pS gfp_flags=%s accounted=%s", REC->ptr\n')
    r2 = t.check(formats_dir=str(tmp_path / "events"))
    assert rules(r2) == [("kmalloc.size_class", line)]
    assert "format file" in r2.layouts["kmalloc"]


def test_trace_cmd_report_format() -> None:
    lines = ["cpus=2\n", "version = 6\n"]
    ts = 5_000_000
    for cpu, ev in ((0, emit.mm_page_alloc(0x10, 1, 0xCC0)),
                    (1, emit.kmalloc("a+0x1/0x2", va(0x20), 20, 32, 0xCC0)),
                    (0, emit.mm_page_alloc(0x11, 0, 0xCC0))):
        name, _, rest = ev.partition(": ")
        ts += 5
        lines.append(emit.prefix("bash", 7, cpu, "", ts, trace_cmd=True)
                     + f"{name + ':':<22}{rest}\n")
    lines.append("CPU 1 is empty\n")
    r = check_trace(text="".join(lines))
    assert rules(r) == [("page.overlap", 5)]
    assert r.malformed_total == 0 and r.events["kmalloc"] == 1


# --- inputs ------------------------------------------------------------------------------------


def _trace_with_fault() -> tuple[str, int]:
    t = T()
    t.add(emit.mm_page_alloc(0x100, 1, 0xCC0))
    n = t.add(emit.mm_page_alloc(0x101, 0, 0xCC0))
    return t.text(), n


@pytest.mark.parametrize("kind", ["plain", "xz", "gz", "bz2", "zst"])
def test_compressed_inputs_by_magic(tmp_path: Path, kind: str) -> None:
    text, n = _trace_with_fault()
    data = text.encode()
    packed = {"plain": data, "xz": lzma.compress(data), "gz": gzip.compress(data),
              "bz2": bz2.compress(data),
              "zst": zstandard.ZstdCompressor().compress(data)}[kind]
    p = tmp_path / "trace.bin"  # no telling suffix: the magic bytes decide
    p.write_bytes(packed)
    assert rules(check_trace([p])) == [("page.overlap", n)]


def test_truncated_compressed_file_is_reported_and_checked_up_to_there(tmp_path: Path) -> None:
    text, n = _trace_with_fault()
    big = text + "".join(f"# filler {i}\n" for i in range(3000))
    p = tmp_path / "t.xz"
    p.write_bytes(lzma.compress(big.encode())[:-40])
    r = check_trace([p])
    assert rules(r) == [("page.overlap", n)]
    assert r.malformed_total == 1 and "ends early" in r.malformed[0][2]
    assert any("missing" in s for s in r.not_checked)


def test_malformed_lines_are_listed_and_the_rest_is_checked() -> None:
    t = T()
    t.lines.append("this is not a trace line\n")
    t.lines.append("\x00\x01\x02garbage\xff\n")
    t.add("kmalloc: call_site=a+0x1/0x2 ptr=zzzz bytes_req=1 bytes_alloc=8 gfp_flags=GFP_KERNEL "
          "node=-1 accounted=false")
    t.add("mm_page_alloc: nothing useful here")
    t.add("sched_switch: prev_comm=a prev_pid=1")
    t.add(emit.mm_page_alloc(0x100, 1, 0xCC0))
    n = t.add(emit.mm_page_alloc(0x100, 0, 0xCC0))
    r = t.check()
    assert rules(r) == [("page.overlap", n)]
    assert [ln for _s, ln, _m in r.malformed] == [13, 14, 15, 16]
    assert "binary" in r.malformed[1][2] and "not a number" in r.malformed[2][2]
    assert any("sched_switch" in s for s in r.notes)


def test_per_cpu_buffers_are_merged_by_timestamp(tmp_path: Path) -> None:
    cpu0 = [emit.prefix("a", 1, 0, ".....", 10) + emit.mm_page_alloc(0x100, 0, 0xCC0) + "\n",
            emit.prefix("a", 1, 0, ".....", 30) + emit.mm_page_alloc(0x100, 0, 0xCC0) + "\n"]
    cpu1 = [emit.prefix("b", 2, 1, ".....", 20) + emit.mm_page_free(0x100, 0) + "\n"]
    (tmp_path / "cpu0").write_text("".join(cpu0))
    (tmp_path / "cpu1").write_text("".join(cpu1))
    r = check_trace([tmp_path / "cpu0", tmp_path / "cpu1"])
    assert r.violations == [] and r.live_pages == 1 and r.lines == 3


def test_unreadable_files_raise_a_typed_error(tmp_path: Path) -> None:
    from spec.errors import KmemError
    with pytest.raises(KmemError, match="No such file"):
        check_trace([tmp_path / "missing"])
    with pytest.raises(KmemError, match="directory"):
        check_trace([tmp_path])
    with pytest.raises(KmemError, match="--formats"):
        check_trace(text="", formats_dir=str(tmp_path))


def test_node_bound_requests_by_the_node_of_their_page(tmp_path: Path) -> None:
    zi = FIXTURES / "linux-6.12" / "2node-2cpu-2g" / "zoneinfo"
    t = T()
    t.add("kmalloc: call_site=a+0x1/0x2 ptr=ffff888000010000 bytes_req=100 bytes_alloc=128 "
          "gfp_flags=GFP_KERNEL node=1 accounted=false")  # pfn 0x10: node 0
    t.add("kmalloc: call_site=a+0x1/0x2 ptr=ffff888050000000 bytes_req=100 bytes_alloc=128 "
          "gfp_flags=GFP_KERNEL node=1 accounted=false")  # pfn 0x50000: node 1
    r = t.check(page_offset=BASE, zoneinfo=str(zi))
    assert r.violations == [] and r.cross_node == {"1->0": 1, "1->1": 1}
    bad = tmp_path / "zoneinfo"
    bad.write_text("nothing here\n")
    from spec.errors import KmemError
    with pytest.raises(KmemError, match="zoneinfo"):
        t.check(zoneinfo=str(bad))


def test_lines_without_the_irq_info_column() -> None:
    """options/irq-info off: "comm-pid [cpu] ts: event: ..." (no flags): parsed, and the
    atomic-context rule is said not to apply to those lines (nothing to judge it by)."""
    lines = []
    for ts, ev in ((10, emit.mm_page_alloc(0x100, 1, 0xCC0)),
                   (20, kmalloc_line(va(0x30), 100, 128)),
                   (30, emit.mm_page_alloc(0x101, 0, 0xCC0))):
        lines.append(f"{'cat':>16}-{77:<7} [001] {ts // 1_000_000:5d}.{ts % 1_000_000:06d}: "
                     f"{ev}\n")
    r = check_trace(text="".join(lines))
    assert rules(r) == [("page.overlap", 3)]
    assert r.events["kmalloc"] == 1 and r.rules_checked["sleep.atomic"] == 0


def test_merged_buffers_report_the_file_and_line_of_a_violation(tmp_path: Path) -> None:
    cpu0 = ["# tracer: nop\n"] + [
        emit.prefix("a", 1, 0, ".....", ts) + emit.mm_page_alloc(pfn, 0, 0xCC0) + "\n"
        for ts, pfn in ((10, 0x200), (11, 0x201), (40, 0x300))]
    cpu1 = [emit.prefix("b", 2, 1, ".....", ts) + ev + "\n"
            for ts, ev in ((20, emit.mm_page_alloc(0x400, 1, 0xCC0)),
                           (30, emit.mm_page_alloc(0x401, 0, 0xCC0)))]
    (tmp_path / "cpu0").write_text("".join(cpu0))
    (tmp_path / "cpu1").write_text("".join(cpu1))
    r = check_trace([tmp_path / "cpu0", tmp_path / "cpu1"])
    assert [(Path(v.source).name, v.lineno, v.rule) for v in r.violations] == [
        ("cpu1", 2, "page.overlap")]
    assert r.lines == 6 and r.live_pages == 4  # the violating block replaces the old one


def test_a_large_kmalloc_freed_and_made_again_at_its_address_is_a_new_object() -> None:
    t = T()
    for _ in range(2):
        t.add(emit.mm_page_alloc(0x40, 2, 0x40CC0))
        t.add(kmalloc_line(va(0x40), 9000, 16384))
        t.add(emit.kfree("x+0x1/0x2", va(0x40)))
        t.add(emit.mm_page_free(0x40, 2))
    r = t.check()
    assert r.violations == [] and r.live_objects == 0
    assert r.counters["duplicate_large_kmalloc_events"] == 0


def test_repeated_allocation_texts_are_judged_every_time() -> None:
    """The replay remembers what follows from an allocation line's text apart from its ptr
    (a memo): the second and later lines must be judged exactly as the first."""
    t = T()
    first = t.add(kmalloc_line(va(0x10), 100, 96))
    second = t.add(kmalloc_line(va(0x11), 100, 96))
    t.add(kmalloc_line(va(0x12), 64, 64))
    misaligned = t.add(kmalloc_line(va(0x13, 32), 64, 64))
    t.add(emit.kmem_cache_alloc("c+0x1/0x2", va(0x20), 64, 64, 0xCC0))
    soft = t.add(emit.kmem_cache_alloc("c+0x1/0x2", va(0x21), 64, 64, 0xCC0), flags="..s1.")
    over = t.add(emit.kmem_cache_alloc("c+0x1/0x2", va(0x21, 32), 64, 64, 0xCC0))
    t.add(emit.mm_page_alloc(0x30, 0, 0xCC0))
    t.add(emit.mm_page_free(0x30, 0))
    in_free = t.add(emit.kmem_cache_alloc("c+0x1/0x2", va(0x30), 64, 64, 0xCC0))
    r = t.check(page_offset=BASE)
    assert rules(r) == [("kmalloc.size_class", first), ("kmalloc.size_class", second),
                        ("kmalloc.align", misaligned), ("sleep.atomic", soft),
                        ("object.overlap", over), ("object.in_free_page", in_free)]
    assert r.caches["kmalloc-96"].allocs == 2 and r.rules_checked["kmalloc.size_class"] == 4
