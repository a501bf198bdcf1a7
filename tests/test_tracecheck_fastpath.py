"""The trace checker's shortcuts (tracecheck/check.py: the allocation memo, object frees read
without splitting, page events parsed by fixed prefixes) judge exactly as the general code:
every fault is still caught at its line when the same allocation text repeats, when frees and
page events take the shortcuts, in trace-cmd's columns and across per-CPU files."""

from __future__ import annotations

from pathlib import Path

from tracecheck import emit
from tracecheck.check import TraceReport, check_trace

BASE = 0xFFFF888000000000
SITE = "foo+0x1/0x2"


def va(pfn: int, off: int = 0) -> int:
    return BASE + (pfn << 12) + off


class T:
    """A hand-made ftrace text trace (line numbers as the checker counts them)."""

    def __init__(self, trace_cmd: bool = False) -> None:
        self.trace_cmd = trace_cmd
        self.lines: list[str] = [] if trace_cmd else emit.HEADER.format(
            n=0, cpus=2).splitlines(keepends=True)
        self.ts = 1_000_000

    def add(self, ev: str, cpu: int = 0, flags: str = ".....") -> int:
        self.ts += 10
        if self.trace_cmd:  # trace-cmd report with its latency columns: not ftrace's widths
            name, _, rest = ev.partition(": ")
            self.lines.append(f"{'bash':>16}-{7:<5} [{cpu:03d}] {flags} "
                              f"{self.ts // 1_000_000:5d}.{self.ts % 1_000_000:06d}: "
                              f"{name + ':':<22}{rest}\n")
        else:
            self.lines.append(emit.prefix("kworker/0:1", 42, cpu, flags, self.ts) + ev + "\n")
        return len(self.lines)

    def check(self, **kw: object) -> TraceReport:
        return check_trace(text="".join(self.lines), **kw)  # type: ignore[arg-type]


def rules(r: TraceReport) -> list[tuple[str, int]]:
    return [(v.rule, v.lineno) for v in r.violations]


def test_repeated_allocation_text_still_catches_every_object_fault() -> None:
    """The memo path serves the second and later lines of one text: faults there are found."""
    t = T()
    for i in range(3):  # the same call site, sizes and flags: memo hits from the second on
        t.add(emit.kmalloc(SITE, va(0x10, 128 * i), 100, 128, 0xCC0))
    overlap = t.add(emit.kmalloc(SITE, va(0x10, 128), 100, 128, 0xCC0))  # again, while live
    partial = t.add(emit.kmalloc(SITE, va(0x10, 64), 100, 128, 0xCC0))  # misaligned too
    for i in range(2):
        t.add(emit.kmalloc(SITE, va(0x20, 128 * i), 100, 96, 0xCC0))
    wrong3 = t.add(emit.kmalloc(SITE, va(0x20, 256), 100, 96, 0xCC0))
    mis = t.add(emit.kmalloc(SITE, va(0x30, 8), 100, 128, 0xCC0))
    atomic = t.add(emit.kmalloc(SITE, va(0x30, 256), 100, 128, 0xCC0), flags="..s1.")
    r = t.check(strict=True)
    assert rules(r) == [("object.overlap", overlap), ("kmalloc.align", partial),
                        ("object.overlap", partial),
                        ("kmalloc.size_class", wrong3 - 2), ("kmalloc.size_class", wrong3 - 1),
                        ("kmalloc.size_class", wrong3), ("kmalloc.align", mis),
                        ("sleep.atomic", atomic)]
    assert r.events["kmalloc"] == 10 and r.rules_checked["kmalloc.size_class"] == 10
    assert r.caches["kmalloc-128"].allocs == 7


def test_repeated_frees_take_the_shortcut_and_still_judge() -> None:
    t = T()
    for i in range(4):
        t.add(emit.kmalloc(SITE, va(0x40, 64 * i), 64, 64, 0xCC0))
    for i in range(4):
        t.add(emit.kfree("bar+0x1/0x2", va(0x40, 64 * i)))
    double = t.add(emit.kfree("bar+0x1/0x2", va(0x40, 64)))
    t.add(emit.kmalloc(SITE, va(0x41), 256, 256, 0xCC0))
    inner = t.add(emit.kfree("bar+0x1/0x2", va(0x41, 8)))
    module = t.add(emit.kfree("bar+0x1/0x2 [mod]", va(0x41)))  # one token more: general path
    null = t.add(emit.kfree("bar+0x1/0x2", 0))
    r = t.check()
    assert rules(r) == [("object.double_free", double), ("object.invalid_free", inner)]
    assert module > inner and null > module
    assert r.live_objects == 0 and r.counters["null_frees"] == 1
    assert r.events["kfree"] == 8 and r.caches["kmalloc-64"].frees == 4


def test_kmem_cache_free_names_its_cache_on_the_shortcut() -> None:
    t = T()
    for i in range(3):
        t.add(emit.kmem_cache_alloc(SITE, va(0x50, 176 * i), 176, 176, 0xCC0))
    for i in range(3):
        t.add(emit.kmem_cache_free(SITE, va(0x50, 176 * i), "vm_area_struct"))
    r = t.check()
    assert r.violations == [] and r.live_objects == 0
    assert r.caches["vm_area_struct [176/176]"].allocs == 3
    assert r.caches["vm_area_struct [176/176]"].frees == 3


def test_trace_cmd_columns_still_check_sleep_in_atomic_context() -> None:
    """trace-cmd report has no fixed columns: the memo record does not hold the verdict."""
    t = T(trace_cmd=True)
    # the same text three times: the third line is a memo hit
    atomic = [t.add(emit.kmalloc(SITE, va(0x60, 64 * i), 32, 32, 0xCC0), flags="..s1.")
              for i in range(3)]
    t.add(emit.kmalloc(SITE, va(0x60, 256), 32, 32, 0xCC0), flags=".....")
    r = t.check()
    assert rules(r) == [("sleep.atomic", n) for n in atomic]


def test_page_shortcuts_judge_every_page_rule() -> None:
    t = T()
    t.add(emit.mm_page_alloc(0x100, 1, 0xCC0))
    misaligned = t.add(emit.mm_page_alloc(0x203, 1, 0xCC0))
    overlap = t.add(emit.mm_page_alloc(0x100, 0, 0xCC0))
    wrong_mt = t.add(emit.mm_page_alloc(0x300, 0, 0xCC0, migratetype=1))
    t.add(emit.mm_page_free(0x300, 0))
    t.add(emit.mm_page_free_batched(0x300))  # the same free: counted once
    t.add(emit.mm_page_alloc(0x400, 2, 0xCC0))
    bigger = t.add(emit.mm_page_free(0x400, 3))
    t.add(emit.mm_page_alloc(0x500, 1, 0xCC0))
    t.add(emit.mm_page_free(0x500, 1))
    double = t.add(emit.mm_page_free(0x500, 1))
    bad = t.add(emit.mm_page_alloc(0x600, 0, 0xCC0).replace("pfn=0x600", "pfn=0xzz"))
    r = t.check()
    assert rules(r) == [("page.align", misaligned), ("page.overlap", overlap),
                        ("page.migratetype", wrong_mt), ("page.free_order", bigger),
                        ("page.double_free", double)]
    assert r.counters["batched_after_free"] == 1
    assert [n for _s, n, _m in r.malformed] == [bad]


def test_per_cpu_files_with_repeated_text_count_every_event(tmp_path: Path) -> None:
    """Several per-CPU buffers replay in runs: the memo and the event counts carry over."""
    cpu0 = [emit.prefix("a", 1, 0, ".....", 10 + 20 * i)
            + emit.kmalloc(SITE, va(0x70, 64 * i), 64, 64, 0xCC0) + "\n" for i in range(3)]
    cpu1 = [emit.prefix("b", 2, 1, ".....", 20 + 20 * i)
            + emit.kmalloc(SITE, va(0x80, 64 * i), 64, 64, 0xCC0) + "\n" for i in range(3)]
    cpu1.append(emit.prefix("b", 2, 1, ".....", 100)
                + emit.kmalloc(SITE, va(0x70, 64), 64, 64, 0xCC0) + "\n")
    (tmp_path / "cpu0").write_text("".join(cpu0))
    (tmp_path / "cpu1").write_text("".join(cpu1))
    r = check_trace([tmp_path / "cpu0", tmp_path / "cpu1"], strict=True)
    assert r.events["kmalloc"] == 7 and r.caches["kmalloc-64"].allocs == 7
    assert [(v.rule, v.source.endswith("cpu1"), v.lineno) for v in r.violations] == [
        ("object.overlap", True, 4)]
