"""A real ``trace-cmd report`` capture: the trace checker (tracecheck/check.py) and the fault
injector (tools/inject_trace_faults.py) on what trace-cmd 3.1.6 (Debian bookworm's package)
printed for Debian's Linux 6.12.117 under qemu
(tests/fixtures/linux-6.12/1node-2cpu-1g-tracecmd, made by ``tools/capture_kernel.py
--trace-cmd``), in both its default format and ``-l`` (latency: the flags column), and the
capture tool's trace-cmd mode without booting.

trace-cmd's text differs from the kernel's ``trace`` file in ways that broke the checker
before this capture existed: a NULL ``%p`` is glibc's ``(nil)`` (kfree(NULL) lines were
"malformed"), ``-l`` glues the CPU to the flags (``1d..1.``: no flags were read, so
sleep.atomic went unchecked without saying so), dropped events are marked ``CPU:N [M EVENTS
DROPPED]`` (not ``LOST``), the kmem plugin adds ``(symbol+off)`` before the fields, ``%p`` has a
``0x`` prefix, and ``page=`` is not the struct page address (tracecmd/trace-read.c
trace_show_data, libtraceevent plugin_kmem.c).
"""

from __future__ import annotations

import lzma
import re
import subprocess
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from tools import capture_kernel
from tools.capture_kernel import CONFIGS, init_script, parse_ldd, split_log, write_fixtures
from tools.inject_trace_faults import KINDS, LINE, Fault, inject, parse
from tracecheck.check import Replay, TraceReport, check_trace

CAPTURE = Path(__file__).parent / "fixtures" / "linux-6.12" / "1node-2cpu-1g-tracecmd"
FORMATS = str(CAPTURE / "kmem_formats")
REPORTS = {"default": "trace-cmd-report.xz", "latency": "trace-cmd-report-l.xz"}
ALLOCS = ("kmalloc", "kmem_cache_alloc", "mm_page_alloc")


@cache
def text(variant: str) -> str:
    return lzma.decompress((CAPTURE / REPORTS[variant]).read_bytes()).decode()


@cache
def checked(variant: str, formats: bool = True) -> TraceReport:
    return check_trace([CAPTURE / REPORTS[variant]], formats_dir=FORMATS if formats else None)


def grep_counts(trace: str) -> Counter[str]:
    """Events by name, counted independently of both the checker and the capture tool: the
    word before the second ': ' of every line that is not trace-cmd's preamble."""
    out: Counter[str] = Counter()
    for line in trace.splitlines():
        m = re.match(r"^.*? \d+\.\d{6}: (\w+): ", line)
        if m:
            out[m.group(1)] += 1
    return out


# --- the capture itself ----------------------------------------------------------------------

def test_the_capture_is_trace_cmd_on_linux_6_12_with_nothing_dropped() -> None:
    assert "6.12.117" in (CAPTURE / "version").read_text()
    assert (CAPTURE / "trace_cmd_version").read_text().startswith("trace-cmd version 3.")
    stat = (CAPTURE / "trace_cmd_stat").read_text()
    assert stat.count("CPU: ") == 2 == int((CAPTURE / "nr_cpus").read_text())
    assert re.findall(r"^(?:overrun|dropped events): (\d+)$", stat, re.M) == ["0"] * 4
    assert (CAPTURE / "trace_cmd_report_stderr").read_text() == ""
    for variant in REPORTS:  # the preamble trace-cmd prints before the events
        assert text(variant).splitlines()[0] == "cpus=2"
    readme = (CAPTURE / "README.md").read_text()
    assert "capture_kernel.py --kernel 6.12 --trace-cmd 1node-2cpu-1g" in readme
    assert "trace-cmd record -o /tmp/trace.dat -b 2048 -e kmem -e vmalloc" in readme
    size = sum(p.stat().st_size for p in CAPTURE.iterdir())
    assert size < 300_000, size


def test_both_formats_print_the_same_events() -> None:
    """-l is the same trace.dat printed with the latency columns: the same events, line for
    line, the same text after the timestamp."""
    a, b = text("default").splitlines(), text("latency").splitlines()
    assert len(a) == len(b)
    for x, y in zip(a[1:], b[1:], strict=True):
        assert x.partition(": ")[2] == y.partition(": ")[2]


def test_trace_cmd_text_as_seen() -> None:
    """What makes trace-cmd's lines different, on the real lines (so a test of the parser
    below tests something that really occurs)."""
    t = text("default")
    assert re.search(r"^ +\S+-\d+ +\[00[01]\] +\d+\.\d{6}: kmalloc: +\(\S+\+0x[0-9a-f]+\) "
                     r"call_site=\S+ ptr=0xffff888[0-9a-f]{9} ", t, re.M)
    assert re.search(r"kfree: +\(\S+\) call_site=\S+ ptr=\(nil\)$", t, re.M)
    # page= is a constant plus the pfn, not vmemmap_base + pfn * sizeof(struct page)
    pairs = {(int(p, 16) - int(f, 16)) for p, f in
             re.findall(r"mm_page_alloc: +page=0x([0-9a-f]+) pfn=0x([0-9a-f]+) ", t)}
    assert len(pairs) == 1 and pairs.pop() % 64 != 0
    lat = text("latency")
    assert re.search(r"^\S{0,8}-\d+ +[01][.dDXbNnpshH0-9]{5} +\d+\.\d{6}: kmalloc: ", lat,
                     re.M)


# --- the checker -----------------------------------------------------------------------------

@pytest.mark.parametrize("formats", [True, False], ids=["formats", "builtin"])
@pytest.mark.parametrize("variant", REPORTS)
def test_real_trace_cmd_report_has_no_violations(variant: str, formats: bool) -> None:
    r = checked(variant, formats)
    assert r.violations == [], r.violations[:5]
    assert r.malformed == [] and r.malformed_total == 0
    assert Counter(dict(r.events)) == grep_counts(text(variant))
    assert not r.hashed_pointers and r.page_offset == 0xFFFF888000000000


def test_event_counts_are_real_and_sensible() -> None:
    """The counts are the file's own (grep), and every kind the workload makes is there."""
    t = text("default")
    r = checked("default")
    for ev in ("kmalloc", "kfree", "kmem_cache_alloc", "kmem_cache_free", "mm_page_alloc",
               "mm_page_free", "mm_page_free_batched", "alloc_vmap_area",
               "free_vmap_area_noflush"):
        assert r.events[ev] == len(re.findall(rf"\d: {ev}: ", t)), ev
    assert r.events["kmalloc"] > 400 and r.events["kmem_cache_alloc"] > 3000
    assert r.events["mm_page_alloc"] > 1000 and r.events["alloc_vmap_area"] >= 10
    # every kmalloc size class of the workload's sysctl reads, and the large path
    sizes = {int(x) for x in re.findall(r"kmalloc: .* bytes_alloc=(\d+) ", t)}
    assert {8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192} <= sizes
    assert max(sizes) >= 128 * 1024


def test_kfree_null_is_read_not_malformed() -> None:
    """kfree(NULL) is traced (before the ZERO_OR_NULL_PTR check, mm/slub.c); trace-cmd prints
    the NULL %p as "(nil)": every such line is a null free."""
    nil = len(re.findall(r"kfree: .* ptr=\(nil\)$", text("default"), re.M))
    assert nil > 100
    for variant in REPORTS:
        assert checked(variant).counters["null_frees"] == nil


def test_flags_column_only_with_latency_format() -> None:
    """Default trace-cmd report has no irq/softirq flags: sleep.atomic is said to be not
    checked; with -l every allocation is judged."""
    d, lat = checked("default"), checked("latency")
    assert d.rules_checked["sleep.atomic"] == 0
    assert any(n.startswith("sleep.atomic: the trace has no irq/softirq flags")
               for n in d.not_checked)
    allocs = sum(lat.events[e] for e in ALLOCS) - lat.counters["failed_object_allocs"]
    allocs -= lat.counters["duplicate_large_kmalloc_events"]
    assert 0 < lat.rules_checked["sleep.atomic"] <= allocs
    assert lat.rules_checked["sleep.atomic"] >= allocs - 20
    assert not any(n.startswith("sleep.atomic") for n in lat.not_checked)


def test_cpu_and_flags_of_each_prefix() -> None:
    """The CPU and flags the checker reads from real lines of both formats and of ftrace."""
    d = next(x for x in text("default").splitlines() if "kmalloc:" in x)
    lat = next(x for x in text("latency").splitlines() if "kmalloc:" in x)
    cpu_d = re.search(r"\[(\d+)\]", d)
    assert cpu_d is not None
    assert Replay.cpu_flags(d, d.index(": ")) == (cpu_d.group(1), "")
    tok = lat[:lat.index(": ")].split()[-2]
    assert Replay.cpu_flags(lat, lat.index(": ")) == (tok[0], tok[1:])
    assert int(tok[0]) == int(cpu_d.group(1)) and len(tok[1:]) == 5
    ftrace = "            init-1       [001] d..1.     5.442177: mm_page_alloc: page=x"
    assert Replay.cpu_flags(ftrace, ftrace.index(": ")) == ("001", "d..1.")


def test_sleeping_mask_with_irqs_off_is_caught_in_latency_format() -> None:
    """A GFP_KERNEL kmalloc line whose flags column says irqs off (d): sleep.atomic at that
    line, and nothing else."""
    lines = text("latency").splitlines()
    i = next(i for i, x in enumerate(lines) if i > len(lines) // 2 and " kmalloc: " in x
             and "gfp_flags=GFP_KERNEL " in x)
    tok = lines[i][:lines[i].index(": ")].split()[-2]
    lines[i] = lines[i].replace(f" {tok} ", f" {tok[0]}d{tok[2:]} ", 1)
    r = check_trace(text="\n".join(lines) + "\n", formats_dir=FORMATS)
    assert [(v.rule, v.lineno) for v in r.violations] == [("sleep.atomic", i + 1)]


def test_events_dropped_marker_forgets_state() -> None:
    """trace-cmd marks a ring-buffer overrun "CPU:N [M EVENTS DROPPED]" (trace-read.c): a page
    block handed out twice across such a marker is not a violation (its free may be among the
    dropped events), and the loss is reported."""
    f = inject(text("default"), "page.overlap")
    lines = f.text.splitlines()
    marked = [*lines[:f.lineno - 1], "CPU:1 [42 EVENTS DROPPED]", *lines[f.lineno - 1:]]
    plain = check_trace(text=f.text, formats_dir=FORMATS)
    assert ("page.overlap", f.lineno) in [(v.rule, v.lineno) for v in plain.violations]
    r = check_trace(text="\n".join(marked) + "\n", formats_dir=FORMATS)
    assert r.violations == [] and r.malformed == []
    assert r.counters["lost_events"] == 42 and r.counters["lost_markers"] == 1
    assert any("events were lost" in n for n in r.not_checked)


# --- the fault injector on trace-cmd text -----------------------------------------------------

@cache
def fault(variant: str, kind: str) -> Fault:
    return inject(text(variant), kind)


@pytest.mark.parametrize("variant", REPORTS)
def test_injector_reads_every_event_line(variant: str) -> None:
    lines = text(variant).splitlines()
    assert all(LINE.match(x) for x in lines[1:])
    events = parse(lines)
    assert Counter(e.name for e in events) == grep_counts(text(variant))
    assert all(e.fields["ptr"] == "0" for e in events if e.name == "kfree"
               and lines[e.index].endswith("ptr=(nil)"))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", REPORTS)
def test_planted_fault_is_caught_at_its_line(variant: str, kind: str) -> None:
    f = fault(variant, kind)
    real = text(variant).splitlines()
    new = f.text.splitlines()
    assert len(new) - len(real) in (0, 1) and LINE.match(new[f.lineno - 1])
    r = check_trace(text=f.text, formats_dir=FORMATS, strict=f.strict)
    hits = [(v.rule, v.lineno) for v in r.violations]
    assert (f.rule, f.lineno) in hits, (f.note, hits[:5])
    if not f.strict:
        assert min(line for _, line in hits) == f.lineno, (f.note, hits[:5])
    else:  # strict also judges order-0 and kmem_cache re-frees; the real trace has no overlap
        strict_real = check_trace([CAPTURE / REPORTS[variant]], formats_dir=FORMATS,
                                  strict=True)
        assert f.rule not in {v.rule for v in strict_real.violations}


def test_planted_object_keeps_trace_cmd_pointer_format() -> None:
    """The moved object of object.overlap is printed as trace-cmd prints pointers (0x...)."""
    f = fault("default", "object.overlap")
    a, b = f.text.splitlines()[f.lineno - 2:f.lineno]
    pa = re.search(r" ptr=(\S+)", a)
    pb = re.search(r" ptr=(\S+)", b)
    assert pa and pb and pb.group(1).startswith("0x")
    assert 0 < int(pb.group(1), 16) - int(pa.group(1), 16) < 4096
    assert a.replace(pa.group(1), pb.group(1)) == b


# --- the capture tool's trace-cmd mode (no boot) ----------------------------------------------

LDD = """\tlinux-vdso.so.1 (0x00007fa3d5ebb000)
\tlibtraceevent.so.1 => /lib/x86_64-linux-gnu/libtraceevent.so.1 (0x00007fa3d5e05000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fa3d5b45000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007fa3d5ebd000)
"""


def test_parse_ldd() -> None:
    assert parse_ldd(LDD) == [Path("/lib/x86_64-linux-gnu/libtraceevent.so.1"),
                              Path("/lib/x86_64-linux-gnu/libc.so.6"),
                              Path("/lib64/ld-linux-x86-64.so.2")]
    assert parse_ldd("\tstatically linked\n") == []


def test_trace_cmd_init_script() -> None:
    cfg = CONFIGS["1node-2cpu-1g"]
    script = init_script(cfg, trace_cmd=True)
    assert "[ -d $T/events/vmalloc ] && EV=\"$EV -e vmalloc\"" in script
    rec = script.index("trace-cmd record -o /tmp/trace.dat -b 2048 $EV sh /workload.sh")
    assert script.index("cat > /workload.sh") < rec < script.index("dump trace-cmd-report ")
    assert "dump trace-cmd-report-l 'trace-cmd report -l " in script
    assert "echo 1 > $T/events/kmem/enable" not in script  # trace-cmd enables the events
    default = init_script(cfg)
    assert "trace-cmd" not in default and "dump trace 'cat $T/trace'" in default


def test_trace_cmd_initramfs_holds_the_binary_and_libraries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "busybox"
    fake.write_bytes(b"\x7fELF" + bytes(100))
    monkeypatch.setattr(capture_kernel, "BUSYBOX", fake)
    monkeypatch.setattr(capture_kernel, "trace_cmd_files", lambda: {
        "bin/trace-cmd": (b"tc", 0o755),
        "lib/x86_64-linux-gnu/libc.so.6": (b"libc", 0o755),
        "usr/lib/x86_64-linux-gnu/traceevent/plugins/plugin_kmem.so": (b"kmem", 0o755)})
    out = tmp_path / "initramfs.cpio"
    capture_kernel.build_initramfs(CONFIGS["1node-2cpu-1g"], out, trace_cmd=True)
    blob = out.read_bytes()
    names = re.findall(rb"070701[0-9A-F]{104}([^\0]+)\0", blob)
    for want in (b"lib", b"lib/x86_64-linux-gnu", b"usr/lib/x86_64-linux-gnu/traceevent",
                 b"bin/trace-cmd", b"lib/x86_64-linux-gnu/libc.so.6", b"init"):
        assert want in names, want
    assert names.index(b"lib") < names.index(b"lib/x86_64-linux-gnu/libc.so.6")


def test_trace_cmd_files_of_this_host() -> None:
    """The host's trace-cmd (when installed) with every library ldd names and the plugins."""
    files = None
    try:
        files = capture_kernel.trace_cmd_files()
    except SystemExit:
        pytest.skip("trace-cmd is not installed here")
    assert files["bin/trace-cmd"][0][:4] == b"\x7fELF"
    assert any(n.endswith("/libtraceevent.so.1") for n in files)
    assert any(n.startswith("lib64/ld-linux") for n in files)
    if capture_kernel.TRACEEVENT_PLUGINS.is_dir():
        assert any(n.endswith("/plugin_kmem.so") for n in files)


def test_ensure_tools_installs_trace_cmd_when_asked(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **_: calls.append(cmd))
    monkeypatch.setattr(capture_kernel, "NEEDS", {str(tmp_path): "busybox-static"})
    monkeypatch.setattr(capture_kernel, "TRACE_CMD_NEEDS", {"no-such-trace-cmd": "trace-cmd"})
    capture_kernel.ensure_tools()
    assert calls == []  # not asked for: nothing missing
    capture_kernel.ensure_tools(trace_cmd=True)
    assert calls[0][-2:] == ["update", "-q"] and calls[-1][-1] == "trace-cmd"


def test_trace_cmd_fixture_folder_and_readme(tmp_path: Path) -> None:
    sections = split_log(
        "@@KCAP BEGIN version@@\nLinux version 6.12.117\n@@KCAP END version@@\n"
        "@@KCAP BEGIN trace_cmd_version@@\ntrace-cmd version 3.1.6\n@@KCAP END "
        "trace_cmd_version@@\n@@KCAP BEGIN trace_workload@@\ndd\n@@KCAP END trace_workload@@\n"
        "@@KCAP BEGIN trace-cmd-report@@\ncpus=1\n   sh-1 [000]  1.000000: kfree:  "
        "call_site=x ptr=(nil)\n@@KCAP END trace-cmd-report@@\n")
    rows = write_fixtures(CONFIGS["1node-2cpu-1g"], sections, tmp_path, ["qemu"], "linux-image")
    d = tmp_path / "1node-2cpu-1g-tracecmd"
    assert {n for n, _s, _a in rows} == {"version", "trace_cmd_version", "trace_workload",
                                          "trace-cmd-report.xz"}
    assert lzma.decompress((d / "trace-cmd-report.xz").read_bytes()).decode().startswith(
        "cpus=1\n")
    readme = (d / "README.md").read_text()
    assert "`trace-cmd version 3.1.6`" in readme
    assert "Events in `trace-cmd-report`: `kfree` 1 (1 in all)" in readme
    assert "trace-cmd record -o /tmp/trace.dat" in readme and "(nil)" in readme
