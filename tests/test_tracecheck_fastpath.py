"""The trace checker's shortcuts (tracecheck/check.py: the allocation memo, object frees read
without splitting, page allocations and frees applied in place, free records kept across an
object's next life) judge exactly as the general code: every fault is still caught at its line
when the same allocation text repeats, when frees and page events take the shortcuts, in
trace-cmd's columns and across per-CPU files; and the same trace checked with every shortcut
off (plotting turns them off) gives the same violations."""

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


def general(t: T, **kw: object) -> list[tuple[str, int]]:
    """The violations of the general code alone: plotting turns every shortcut off."""
    from tracecheck.plot import Recorder

    return rules(t.check(recorder=Recorder(), **kw))


def twice(t: T, line: str, old: int, new: int) -> int:
    """The line once at a harmless address (``old``), then at ``new``: the second is a memo
    hit (the same text apart from its ptr)."""
    t.add(line.replace(f"ptr={old:016x}", f"ptr={old + 0x100000:016x}"))
    return t.add(line.replace(f"ptr={old:016x}", f"ptr={new:016x}"))


def test_objects_in_free_pages_on_the_memo_and_page_shortcuts() -> None:
    """object.in_free_page on memo hits: the object's page free, its second page free, an
    object over three pages; a page freed inline forgets the objects left in it."""
    t = T()
    for pfn in (0x10, 0x11, 0x20, 0x30, 0x31, 0x32):
        t.add(emit.mm_page_alloc(pfn, 0, 0xCC0))
    for pfn in (0x110, 0x111, 0x120, 0x130, 0x131, 0x132):  # where the warm-up objects go
        t.add(emit.mm_page_alloc(pfn, 0, 0xCC0))
    for off in (0, 64):
        t.add(emit.kmalloc(SITE, va(0x11, off), 64, 64, 0xCC0))
    t.add(emit.mm_page_free(0x11, 0))  # inline page free: both objects forgotten
    late = t.add(emit.kfree(SITE, va(0x11)))  # unknown now, not a double free
    line = emit.kmalloc(SITE, va(0x11, 128), 64, 64, 0xCC0)
    in_free = twice(t, line, va(0x11, 128), va(0x11, 128))
    t.add(emit.mm_page_free(0x21, 0))  # never allocated: unknown, but free from now on
    line = emit.kmem_cache_alloc(SITE, va(0x20, 4096 - 64), 128, 128, 0xCC0)
    second_page = twice(t, line, va(0x20, 4096 - 64), va(0x20, 4096 - 64))
    t.add(emit.mm_page_free(0x32, 0))
    line = emit.kmem_cache_alloc(SITE, va(0x30, 64), 8000, 8192, 0xCC0)
    third_page = twice(t, line, va(0x30, 64), va(0x30, 64))
    ok = twice(t, emit.kmalloc(SITE, va(0x10), 64, 64, 0xCC0), va(0x10), va(0x10))
    r = t.check(page_offset=BASE)
    assert rules(r) == [("object.in_free_page", in_free), ("object.in_free_page", second_page),
                        ("object.in_free_page", third_page)]
    assert ok > third_page > late
    assert r.counters["objects_in_freed_pages"] == 2 and r.counters["unknown_object_frees"] == 1
    assert rules(r) == general(t, page_offset=BASE)


def test_free_records_of_objects_that_went_without_a_free() -> None:
    """An allocation keeps its address's old free record (free_objects): a double free is
    still found at its line, naming the right earlier free; an object that went without a
    free (overlapped, or its page freed) is no double free when its free comes."""
    t = T()
    p, q = va(0x40), va(0x41)
    t.add(emit.mm_page_alloc(0x41, 0, 0xCC0))
    line = emit.kmalloc(SITE, p, 64, 64, 0xCC0)
    t.add(line)
    t.add(emit.kfree(SITE, p))
    t.add(line)  # a memo hit: the free record of line 2 stays
    last_free = t.add(emit.kfree(SITE, p))
    double = t.add(emit.kfree(SITE, p))
    t.add(line)
    overlap = t.add(emit.kmem_cache_alloc(SITE, p + 32, 64, 64, 0xCC0))  # p's object goes
    gone = t.add(emit.kfree(SITE, p))  # not live, but no double free: unknown
    t.add(emit.kmalloc(SITE, q, 64, 64, 0xCC0))
    t.add(emit.kfree(SITE, q))
    t.add(emit.kmalloc(SITE, q, 64, 64, 0xCC0))
    t.add(emit.mm_page_free(0x41, 0))  # takes the object at q with it
    page_gone = t.add(emit.kfree(SITE, q))
    r = t.check(page_offset=BASE, strict=True)
    assert rules(r) == [("object.double_free", double), ("object.overlap", overlap)]
    assert f"already freed at line {last_free} " in r.violations[0].message
    assert page_gone > gone and r.counters["unknown_object_frees"] == 2
    assert rules(r) == general(t, page_offset=BASE, strict=True)


def test_page_shortcuts_hand_every_unusual_page_event_to_the_methods() -> None:
    """Atomic context, a block over one bitmap chunk, a block allocated again after its free,
    a batched free of a live page: each judged as the general code judges it."""
    t = T()
    t.add(emit.mm_page_alloc(0x1000, 0, 0xCC0))  # the first event (general code)
    atomic = t.add(emit.mm_page_alloc(0x1001, 0, 0xCC0), flags="..s1.")
    t.add(emit.mm_page_alloc(0x1400, 10, 0xCC0))  # 1024 pages: two chunks of 512
    t.add(emit.mm_page_free(0x1400, 10))
    t.add(emit.mm_page_alloc(0x1400, 3, 0xCC0))  # no longer free
    t.add(emit.kmalloc(SITE, va(0x1400), 64, 64, 0xCC0))
    t.add(emit.mm_page_free_batched(0x1001))  # live: an order-0 free
    again = t.add(emit.mm_page_free(0x1001, 0))  # order 0 again: counted, not judged
    t.add(emit.mm_page_alloc(0x1800, 1, 0xCC0))
    t.add(emit.mm_page_free(0x1800, 1))
    twice_freed = t.add(emit.mm_page_free(0x1800, 1))
    r = t.check(page_offset=BASE)
    assert rules(r) == [("sleep.atomic", atomic), ("page.double_free", twice_freed)]
    assert again < twice_freed and r.counters["order0_refree"] == 1
    assert r.page_orders == {0: 2, 10: 1, 3: 1, 1: 1} and r.live_pages == 1 + 8
    assert rules(r) == general(t, page_offset=BASE)
    assert r.as_json() == t.check(page_offset=BASE).as_json()


def test_lines_cut_at_their_first_two_separators() -> None:
    """The loop cuts a line at its first two ": " once: a header line that looks like an
    event is skipped, a line with one separator is malformed, a task name with ": " in it
    shifts the event name (unknown event), and the events around them are still judged."""
    t = T()
    first = t.add(emit.kmalloc(SITE, va(0x90), 64, 64, 0xCC0))
    t.lines.append("# note: kmalloc: call_site=x ptr=ffff888000090000 bytes_req=1\n")
    t.lines.append("just: one separator\n")
    one = len(t.lines)
    t.lines.append(emit.prefix("a: b", 1, 0, ".....", 2_000_000) + emit.kfree(SITE, va(0x90))
                   + "\n")
    again = t.add(emit.kmalloc(SITE, va(0x90), 64, 64, 0xCC0))  # first is still live
    r = t.check(strict=True)
    assert rules(r) == [("object.overlap", again)] and again > first
    assert [(n, m.split(":")[0]) for _s, n, m in r.malformed] == [
        (one, "no event name after the timestamp"), (one + 1, "not a trace event line")]
    assert r.events["kmalloc"] == 2 and r.events["kfree"] == 0
    assert rules(r) == general(t, strict=True)
