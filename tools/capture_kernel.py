"""Boot one of Debian's Linux kernels (6.1 or 6.12) under qemu and capture a kmem trace and /proc.

The files land in ``tests/fixtures/linux-<kernel>/<config>/``, where ``tests/test_views.py``,
``tests/test_slab.py``, ``tests/test_capture_real.py`` and ``tests/test_trace_real.py`` read
them. Re-runnable: every step is skipped when its result already exists in the work folder
(``--work``, default ``/work/kcap``), and ``--from-log`` re-splits a saved console log without
booting. Usage and the fixture layout are described in ``tests/fixtures/README.md``.

What it does (see ``../shared/reference/kernel-capture-notes.md`` for why each choice):

0. ``apt-get install`` qemu-system-x86 and busybox-static when they are missing.
1. ``apt-get download`` the kernel image package with a private apt configuration (Debian
   bookworm, bookworm-security, bookworm-backports, trixie and trixie-security; nothing is
   installed, /boot is untouched) and ``dpkg -x`` it into the work folder. ``--kernel 6.1``
   takes ``linux-image-6.1.0-NN-amd64`` (the pinned NN, or the newest one apt knows when the
   pinned one has left the archive), ``--kernel 6.12`` the model's own 6.12.117.
2. Build an initramfs (a newc cpio written here, so no root and no cpio tool are needed):
   busybox-static, ``/dev/console``, and an ``/init`` script that prints each file between
   ``@@KCAP BEGIN name@@`` / ``@@KCAP END name@@`` markers, runs a small traced workload
   (``events/kmem``, and ``events/vmalloc`` where the kernel has them: 6.2 and later), prints
   the trace and powers off.
3. Boot it with ``qemu-system-x86_64 -accel tcg,thread=single`` (KVM hangs on these machines),
   kernel command line with ``no_hash_pointers`` (real ``ptr=``/``page=`` values).
4. Split the console log into one file per marker and write a README per configuration.

``--trace-cmd`` records with trace-cmd instead of the tracefs files: Debian's ``trace-cmd``
package is installed on the host when missing, its binary, the shared libraries ``ldd`` names
and libtraceevent's plugins are copied into the initramfs, and the guest runs
``trace-cmd record -e kmem [-e vmalloc]`` around the same workload and prints
``trace-cmd report`` (section ``trace-cmd-report``; the folder is ``<config>-tracecmd``).

``host`` copies this machine's own kernel files (whatever ``uname -r`` says) instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import lzma
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
_KEYRING = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
APT_SOURCES = "".join(
    f"deb {_KEYRING} http://deb.debian.org/{archive} {suite} main\n" for archive, suite in (
        ("debian", "bookworm"), ("debian-security", "bookworm-security"),
        ("debian", "bookworm-backports"), ("debian", "trixie"),
        ("debian-security", "trixie-security")))
NEEDS = {"qemu-system-x86_64": "qemu-system-x86", "/bin/busybox": "busybox-static"}
TRACE_CMD_NEEDS = {"trace-cmd": "trace-cmd"}  # its Depends bring libtraceevent1-plugin
# where libtraceevent (Debian's libtraceevent1-plugin) loads its plugins from: plugin_kmem
# prints a call site's symbol before the event text, as a user's trace-cmd report shows it
TRACEEVENT_PLUGINS = Path("/usr/lib/x86_64-linux-gnu/traceevent/plugins")
TRACE_CMD_SUFFIX = "-tracecmd"  # fixture folder of a --trace-cmd capture: <config>-tracecmd


@dataclass(frozen=True)
class Kernel:
    """A Debian kernel image package to capture, and how to find a newer build of it."""

    version: str    # the --kernel value and the fixture folder linux-<version>
    package: str    # the pinned Debian package
    pattern: str    # regex of the packages that are the same kernel series (newest wins)
    about: str


KERNELS: dict[str, Kernel] = {k.version: k for k in (
    Kernel("6.12", "linux-image-6.12.117+deb13-amd64", r"^linux-image-6\.12\.117\+deb13-amd64$",
           "Linux 6.12.117, Debian trixie: the tree the model pins"),
    Kernel("6.1", "linux-image-6.1.0-57-amd64", r"^linux-image-6\.1\.0-(\d+)-amd64$",
           "Linux 6.1 LTS, Debian bookworm (-security): no vmalloc tracepoints (they came in 6.2)"),
)}
DEFAULT_PACKAGE = KERNELS["6.12"].package
DEFAULT_OUT = FIXTURES / "linux-6.12"
CMDLINE = "console=ttyS0 panic=-1 quiet no_hash_pointers nokaslr"
BUSYBOX = Path("/bin/busybox")
BUFFER_KB = 2048  # per-CPU ring buffer: the workload fits, nothing is dropped (trace_stats)
XZ_ABOVE = 200 * 1024  # fixtures larger than this are stored xz-compressed
BEGIN = re.compile(r"@@KCAP BEGIN ([A-Za-z0-9_.-]+)@@\n")
EVENT = re.compile(r"\d+\.\d+: (\w+):")


@dataclass(frozen=True)
class Config:
    """One qemu machine shape."""

    name: str
    nodes: int
    cpus: int
    mem_mib: int
    about: str

    def qemu_args(self) -> list[str]:
        args = ["-smp", str(self.cpus), "-m", str(self.mem_mib)]
        if self.nodes > 1:
            per = self.mem_mib // self.nodes
            cpus_per = self.cpus // self.nodes
            for n in range(self.nodes):
                first = n * cpus_per
                cpus = f"{first}" if cpus_per == 1 else f"{first}-{first + cpus_per - 1}"
                args += ["-object", f"memory-backend-ram,id=m{n},size={per}M",
                         "-numa", f"node,nodeid={n},cpus={cpus},memdev=m{n}"]
        return args


CONFIGS: dict[str, Config] = {c.name: c for c in (
    Config("2node-2cpu-2g", 2, 2, 2048, "two NUMA nodes of 1 GiB, one CPU each"),
    Config("1node-4cpu-1g", 1, 4, 1024, "one node, 4 CPUs, 1 GiB"),
    Config("1node-1cpu-512m", 1, 1, 512, "one node, one CPU, 512 MiB (under 512 MiB of "
           "totalram hugepage_init() turns THP off: min_free_kbytes keeps its sqrt value)"),
    Config("1node-2cpu-4g", 1, 2, 4096, "one node, 2 CPUs, 4 GiB: 3 GiB below the PCI hole "
           "(DMA, DMA32) and 1 GiB above 4 GiB (Normal)"),
    Config("1node-2cpu-1g", 1, 2, 1024, "one node, 2 CPUs, 1 GiB"),
    Config("2node-4cpu-2g", 2, 4, 2048, "two NUMA nodes of 1 GiB, two CPUs each"),
)}
# the shapes a bare `capture_kernel.py --kernel V` boots
DEFAULT_CONFIGS = {"6.12": ("1node-2cpu-1g", "2node-4cpu-2g"),
                   "6.1": ("1node-2cpu-1g", "2node-4cpu-2g")}

# name -> (shell command printing it, what it is)
FILES: dict[str, tuple[str, str]] = {
    "version": ("cat /proc/version", "/proc/version"),
    "cmdline": ("cat /proc/cmdline", "/proc/cmdline"),
    "nr_cpus": ("grep -c ^processor /proc/cpuinfo", "number of 'processor' lines in /proc/cpuinfo"),
    "zoneinfo": ("cat /proc/zoneinfo", "/proc/zoneinfo right after boot"),
    "pagetypeinfo": ("cat /proc/pagetypeinfo", "/proc/pagetypeinfo"),
    "buddyinfo": ("cat /proc/buddyinfo", "/proc/buddyinfo"),
    "meminfo": ("cat /proc/meminfo", "/proc/meminfo"),
    "vmstat": ("cat /proc/vmstat", "/proc/vmstat"),
    "slabinfo": ("cat /proc/slabinfo", "/proc/slabinfo"),
    "vmallocinfo": ("cat /proc/vmallocinfo",
                    "/proc/vmallocinfo (real addresses: no_hash_pointers)"),
    "iomem": ("cat /proc/iomem", "/proc/iomem (the e820 'System RAM' ranges)"),
    "numastat": ("sep=''; for f in /sys/devices/system/node/node*/numastat; do printf \"$sep\"; "
                 "echo \"==> $f <==\"; cat $f; sep='\\n'; done",
                 "every /sys/devices/system/node/nodeN/numastat under a head(1)-style "
                 "'==> path <==' line, blank-line separated (as `kmemspec show numastat`)"),
    "node_distance": ("for f in /sys/devices/system/node/node*/distance; do echo \"$f: "
                      "$(cat $f)\"; done", "SLIT distances per node"),
    "node_cpulist": ("for f in /sys/devices/system/node/node*/cpulist; do echo \"$f: "
                     "$(cat $f)\"; done", "CPUs per node"),
    "min_free_kbytes": ("cat /proc/sys/vm/min_free_kbytes", "/proc/sys/vm/min_free_kbytes"),
    "lowmem_reserve_ratio": ("cat /proc/sys/vm/lowmem_reserve_ratio",
                             "/proc/sys/vm/lowmem_reserve_ratio"),
    "watermark_scale_factor": ("cat /proc/sys/vm/watermark_scale_factor",
                               "/proc/sys/vm/watermark_scale_factor"),
    "dmesg": ("dmesg", "the kernel log (zone ranges, early memory node ranges, Memory: line)"),
}
RECOMPUTED = ("zoneinfo-recomputed",
              "/proc/zoneinfo after writing min_free_kbytes and lowmem_reserve_ratio back "
              "unchanged: watermarks and protection recomputed from the final managed counts "
              "(after free_initmem and the initrd were freed)")
TRACE_FILES = {
    "kmem_formats": "the 'format' file of every events/kmem and events/vmalloc tracepoint",
    "trace_stats": "per-CPU ring-buffer statistics (entries, overrun, dropped) after the run",
    "trace": "/sys/kernel/tracing/trace: events/kmem and events/vmalloc during the workload",
    "trace_workload": "the traced workload script, verbatim",
}
TRACE_CMD_FILES = {
    "kmem_formats": TRACE_FILES["kmem_formats"],
    "trace_workload": TRACE_FILES["trace_workload"],
    "trace_cmd_version": "`trace-cmd --version` in the guest (the host's binary, copied)",
    "trace_cmd_record": "what `trace-cmd record` printed (its per-CPU buffer statistics)",
    "trace_cmd_stat": "`trace-cmd report --stat`: the kernel ring-buffer statistics "
                      "trace-cmd saved (overrun, dropped events)",
    "trace-cmd-report": "`trace-cmd report` of the recorded trace.dat: events/kmem and "
                        "events/vmalloc during the workload",
    "trace-cmd-report-l": "`trace-cmd report -l` of the same trace.dat: the latency format "
                          "(irq/softirq/preempt flags column)",
    "trace_cmd_report_stderr": "what `trace-cmd report` printed on stderr",
}
# what the trace-cmd text shows differently from the kernel's own trace file (seen in
# tests/fixtures/linux-6.12/1node-2cpu-1g-tracecmd; tracecheck reads both)
TRACE_CMD_NOTES = (
    "How `trace-cmd report` text differs from the kernel's `trace` file (what "
    "`kmemspec check-trace` has to read): the events of all CPUs are merged in timestamp "
    "order; the prefix is `comm-pid [cpu] timestamp:` with no irq/softirq flags column (`-l` "
    "prints `comm-pid cpuflags timestamp:`, the comm cut to 8 characters and the CPU glued to "
    "the flags, tracecmd/trace-read.c); libtraceevent's kmem plugin (plugin_kmem.so) puts "
    "`(symbol+offset)` before the fields of kmalloc, kfree, kmem_cache_alloc and "
    "kmem_cache_free; `%p` is glibc's: `ptr=0xffff888...`, and a NULL pointer `ptr=(nil)` "
    "(kfree(NULL)); `page=` of the mm_page_* events is not the struct page address but a "
    "constant plus the pfn (libtraceevent does not evaluate the print fmt's `vmemmap_base + "
    "pfn` as the kernel does), so only `pfn=` is meaningful; dropped events are marked "
    "`CPU:N [M EVENTS DROPPED]` (none here: see `trace_cmd_stat`).\n\n")
TRACE_SECTIONS = ("trace", "trace-cmd-report", "trace-cmd-report-l")  # always xz


# Sizes read(2) from a sysctl: proc_sys_call_handler() (fs/proc/proc_sysctl.c, 6.1 and 6.12)
# kvzalloc()s count + 1 bytes, so each read is one kmalloc of n + 1 bytes: every size class from
# 8 to 8192, then the large path (mm/slub.c __kmalloc_large_node: page orders 2 to 5).
SYSCTL_READS = (7, 15, 31, 63, 95, 127, 191, 255, 511, 1023, 2047, 4095, 8191,
                12287, 16383, 32767, 65535, 131071)


def workload(cfg: Config) -> str:
    """The traced workload (busybox sh), a few seconds under TCG; each step says what it is for."""
    mpol = f",mpol=interleave:0-{cfg.nodes - 1}" if cfg.nodes > 1 else ""
    reads = " ".join(str(n) for n in SYSCTL_READS)
    return (
        "# tmpfs files: inode/dentry kmem_cache allocs, page-cache pages"
        + (" interleaved over the nodes\n" if cfg.nodes > 1 else "\n")
        + f"mount -t tmpfs -o size=32m{mpol} tmpfs /mnt\n"
        "i=0; while [ $i -lt 20 ]; do echo file $i > /mnt/f$i; i=$((i+1)); done\n"
        "dd if=/dev/zero of=/mnt/big bs=64k count=8 2>/dev/null\n"
        "# kmalloc of n+1 bytes per read (fs/proc/proc_sysctl.c): size classes 8..8k, large path\n"
        f"for n in {reads}; do\n"
        "  dd if=/proc/sys/vm/min_free_kbytes of=/dev/null bs=$n count=1 2>/dev/null\n"
        "done\n"
        "# fork/exec; children alive together need new kernel stacks (vmalloc with\n"
        "# CONFIG_VMAP_STACK once the per-CPU cache of two is used: kernel/fork.c)\n"
        "i=0; while [ $i -lt 6 ]; do sh -c 'cat /proc/self/stat' > /dev/null; i=$((i+1)); done\n"
        "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait\n"
        "# seq_file buffers (kvmalloc, doubled until the record fits: fs/seq_file.c)\n"
        "cat /proc/slabinfo /proc/vmallocinfo /proc/zoneinfo > /dev/null\n"
        "find /proc/sys/vm > /dev/null\n"
        "cat /mnt/f1 /mnt/big > /dev/null\n"
        "rm -f /mnt/*\n"
        "umount /mnt\n"
    )


def _tracefs_run() -> list[str]:
    """Trace the workload through the tracefs files and print the ftrace text."""
    return [
        "echo 0 > $T/tracing_on",
        f"echo {BUFFER_KB} > $T/buffer_size_kb",
        "echo 0 > $T/options/overwrite",
        "echo 1 > $T/events/kmem/enable",
        "[ -d $T/events/vmalloc ] && echo 1 > $T/events/vmalloc/enable",
        "echo > $T/trace",
        "dump trace_workload 'cat /workload.sh'",
        "echo 1 > $T/tracing_on",
        "sh /workload.sh",
        "echo 0 > $T/tracing_on",
        "dump trace_stats 'for c in $T/per_cpu/cpu*; do echo \"==> $c/stats <==\"; "
        "cat $c/stats; done'",
        "dump trace 'cat $T/trace'",
    ]


def _trace_cmd_run() -> list[str]:
    """Record the workload with trace-cmd (the events/vmalloc system only where the kernel has
    it: ``-e vmalloc`` is an error on 6.1) and print ``trace-cmd report``; stderr of both goes
    to sections of its own so that nothing but events lands in the report."""
    return [
        "EV='-e kmem'; [ -d $T/events/vmalloc ] && EV=\"$EV -e vmalloc\"",
        "dump trace_cmd_version 'trace-cmd --version 2>&1 | grep -m 1 version'",
        "dump trace_workload 'cat /workload.sh'",
        f"trace-cmd record -o /tmp/trace.dat -b {BUFFER_KB} $EV sh /workload.sh "
        "> /tmp/record.log 2>&1",
        "dump trace_cmd_record 'cat /tmp/record.log'",
        "dump trace_cmd_stat 'trace-cmd report --stat -i /tmp/trace.dat 2>&1'",
        "dump trace-cmd-report 'trace-cmd report -i /tmp/trace.dat 2>/tmp/report.err'",
        "dump trace-cmd-report-l 'trace-cmd report -l -i /tmp/trace.dat 2>>/tmp/report.err'",
        "dump trace_cmd_report_stderr 'cat /tmp/report.err'",
    ]


def init_script(cfg: Config, trace_cmd: bool = False) -> str:
    """The initramfs /init: print every file between markers, then a traced workload (through
    the tracefs files, or with ``trace-cmd record`` when ``trace_cmd``)."""
    lines = [
        "#!/bin/busybox sh",
        "/bin/busybox --install -s /bin",
        "export PATH=/bin",
        "mount -t proc proc /proc",
        "mount -t sysfs sysfs /sys",
        "mount -t devtmpfs devtmpfs /dev",
        "mount -t tracefs tracefs /sys/kernel/tracing",
        "echo 1 4 1 7 > /proc/sys/kernel/printk",  # keep printk off the console
        "dump() { echo \"@@KCAP BEGIN $1@@\"; eval \"$2\"; echo \"@@KCAP END $1@@\"; }",
        "echo '@@KCAP START@@'",
    ]
    for name, (cmd, _) in FILES.items():
        lines.append(f"dump {name} {shlex.quote(cmd)}")
    lines += [
        "cat /proc/sys/vm/min_free_kbytes > /proc/sys/vm/min_free_kbytes",
        "cat /proc/sys/vm/lowmem_reserve_ratio > /proc/sys/vm/lowmem_reserve_ratio",
        f"dump {RECOMPUTED[0]} 'cat /proc/zoneinfo'",
        "T=/sys/kernel/tracing",
        # events/vmalloc exists from 6.2 on: the glob must not print an error into the section
        "dump kmem_formats 'for f in $T/events/kmem/*/format $T/events/vmalloc/*/format; do "
        "[ -f $f ] || continue; echo \"==> $f <==\"; cat $f; done'",
        "head -c 4096 /dev/urandom > /dev/null",  # see kernel-capture-notes.md (int3 oops)
        f"cat > /workload.sh <<'EOF'\n{workload(cfg)}EOF",
        *(_trace_cmd_run() if trace_cmd else _tracefs_run()),
        "echo '@@KCAP DONE@@'",
        "poweroff -f",
    ]
    return "\n".join(lines) + "\n"


# --- newc cpio ------------------------------------------------------------------------------
def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
                ino: int = 1) -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = head + name.encode() + b"\0"
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out


def ldd_paths(binary: Path) -> list[Path]:
    """The shared libraries ``ldd`` says ``binary`` loads, the dynamic loader included (as
    the paths the loader looks them up by: ``/lib/x86_64-linux-gnu/libc.so.6``, ...)."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True,
                         check=True).stdout
    return parse_ldd(out)


def parse_ldd(out: str) -> list[Path]:
    """Paths of ``ldd`` output: ``name => /path (0x...)`` and ``/lib64/ld-linux... (0x...)``
    lines (the vDSO has no file)."""
    paths: list[Path] = []
    for line in out.splitlines():
        m = re.match(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)", line)
        if m:
            paths.append(Path(m.group(1)))
    return paths


def trace_cmd_files() -> dict[str, tuple[bytes, int]]:
    """Initramfs path -> (content, mode) of the host's trace-cmd: the binary as bin/trace-cmd
    (PATH=/bin), every library ldd names at the path the loader looks for (symlinks are
    stored as the files they point to) and libtraceevent's plugins."""
    exe = shutil.which("trace-cmd")
    if exe is None:
        raise SystemExit("trace-cmd is not installed (apt-get install trace-cmd)")
    files: dict[str, tuple[bytes, int]] = {"bin/trace-cmd": (Path(exe).read_bytes(), 0o755)}
    libs = ldd_paths(Path(exe))
    plugins = sorted(TRACEEVENT_PLUGINS.glob("*.so")) if TRACEEVENT_PLUGINS.is_dir() else []
    for so in plugins:
        libs += [p for p in ldd_paths(so) if p not in libs]
    for lib in [*libs, *plugins]:
        files[str(lib).lstrip("/")] = (lib.resolve().read_bytes(), 0o755)
    return files


def build_initramfs(cfg: Config, path: Path, trace_cmd: bool = False) -> None:
    """A newc archive: directories, /dev/console, busybox and /init (gzip is not needed), and
    with ``trace_cmd`` the host's trace-cmd with its libraries and plugins."""
    parts: list[bytes] = []
    ino = 1
    extra = trace_cmd_files() if trace_cmd else {}
    dirs = ["bin", "dev", "proc", "sys", "tmp", "mnt"]
    for name in extra:
        parents = Path(name).parents
        dirs += [str(d) for d in reversed(parents) if str(d) != "." and str(d) not in dirs]
    for d in dirs:
        parts.append(_cpio_entry(d, stat.S_IFDIR | 0o755, ino=ino))
        ino += 1
    parts.append(_cpio_entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1), ino=ino))
    parts.append(_cpio_entry("bin/busybox", stat.S_IFREG | 0o755, BUSYBOX.read_bytes(),
                             ino=ino + 1))
    parts.append(_cpio_entry("init", stat.S_IFREG | 0o755,
                             init_script(cfg, trace_cmd).encode(), ino=ino + 2))
    ino += 3
    for name, (data, mode) in extra.items():
        parts.append(_cpio_entry(name, stat.S_IFREG | mode, data, ino=ino))
        ino += 1
    parts.append(_cpio_entry("TRAILER!!!", 0, ino=0))
    blob = b"".join(parts)
    blob += b"\0" * (-len(blob) % 512)
    path.write_bytes(blob)


# --- kernel ---------------------------------------------------------------------------------
def ensure_tools(install: bool = True, trace_cmd: bool = False) -> None:
    """Install qemu-system-x86 and busybox-static (and trace-cmd, with ``trace_cmd``) with apt
    when missing (a fresh machine)."""
    needs = NEEDS | (TRACE_CMD_NEEDS if trace_cmd else {})
    missing = sorted({pkg for path, pkg in needs.items()
                      if not (Path(path).exists() if path.startswith("/") else shutil.which(path))})
    if not missing:
        return
    if not install:
        raise SystemExit(f"needs {' '.join(missing)} (apt-get install them)")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run([*sudo, "apt-get", "update", "-q"], env=env, check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                   env=env, check=True)


def apt_env(work: Path) -> dict[str, str]:
    """A private apt configuration under work/apt (its own sources and lists; nothing is
    installed with it, so the machine's apt state and /boot are untouched)."""
    apt = work / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "etc/sources.list.d",
                "etc/preferences.d"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "etc" / "sources.list").write_text(APT_SOURCES)
    conf = apt / "apt.conf"
    conf.write_text(
        f'Dir::Etc::sourcelist "{apt}/etc/sources.list";\n'
        f'Dir::Etc::sourceparts "{apt}/etc/sources.list.d";\n'
        f'Dir::Etc::preferencesparts "{apt}/etc/preferences.d";\n'
        f'Dir::State::lists "{apt}/lists";\n'
        f'Dir::Cache "{apt}/cache";\n')
    return dict(os.environ, APT_CONFIG=str(conf))


def newest_package(names: list[str], pattern: str) -> str | None:
    """The newest package of a series (by its ABI number, e.g. 6.1.0-57 over 6.1.0-9)."""
    rx = re.compile(pattern)
    hits = [(tuple(int(g) for g in m.groups()), n) for n in names if (m := rx.match(n))]
    return max(hits)[1] if hits else None


def fetch_kernel(work: Path, package: str, pattern: str | None = None) -> tuple[Path, str, str]:
    """apt-get download + dpkg -x into work/<package>: (vmlinuz path, package, its version).
    When the pinned package has left the archive (Debian drops old ABIs from -security), the
    newest package matching ``pattern`` is taken instead, and the README says which."""
    debs = work / "deb"
    debs.mkdir(parents=True, exist_ok=True)
    if not sorted(debs.glob(f"{package}_*.deb")):
        env = apt_env(work)
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        got = subprocess.run(["apt-get", "download", "-q", package], env=env, cwd=debs,
                             check=False)
        if got.returncode != 0 and pattern is not None:
            names = subprocess.run(["apt-cache", "pkgnames", "linux-image-"], env=env,
                                   capture_output=True, text=True, check=True).stdout.split()
            newer = newest_package(names, pattern)
            if newer is None:
                raise SystemExit(f"no package matches {pattern} in {APT_SOURCES}")
            print(f"{package} is not in the archive any more; taking {newer}", flush=True)
            package = newer
            subprocess.run(["apt-get", "download", "-q", package], env=env, cwd=debs, check=True)
        elif got.returncode != 0:
            raise SystemExit(f"apt-get download {package} failed")
    deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True,
                             text=True, check=True).stdout.strip()
    root = work / package
    if not sorted((root / "boot").glob("vmlinuz-*")):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return sorted((root / "boot").glob("vmlinuz-*"))[0], package, version


def kernel_cmdline(kaslr: bool = False) -> str:
    """no_hash_pointers: ptr= and page= print real addresses (lib/vsprintf.c); nokaslr unless
    asked, so the direct map starts at 0xffff888000000000 (with KASLR it moves in 1 GiB steps
    and a checker has to infer it from the trace)."""
    return CMDLINE if not kaslr else CMDLINE.replace(" nokaslr", "")


def qemu_command(cfg: Config, kernel: Path, initrd: Path, kaslr: bool = False) -> list[str]:
    return ["qemu-system-x86_64", "-accel", "tcg,thread=single", "-nographic", "-no-reboot",
            *cfg.qemu_args(), "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", kernel_cmdline(kaslr)]


def boot(cfg: Config, kernel: Path, run: Path, timeout: int,
         kaslr: bool = False, trace_cmd: bool = False) -> tuple[Path, list[str]]:
    """Run qemu once (nice'd: the machine is shared); the console log is run/console.log."""
    run.mkdir(parents=True, exist_ok=True)
    initrd = run / "initramfs.cpio"
    build_initramfs(cfg, initrd, trace_cmd)
    cmd = qemu_command(cfg, kernel, initrd, kaslr)
    log = run / "console.log"
    with log.open("wb") as f:
        subprocess.run(["nice", "-n", "10", *cmd], stdin=subprocess.DEVNULL, stdout=f,
                       stderr=subprocess.STDOUT, timeout=timeout, check=False)
    return log, cmd


# --- splitting ------------------------------------------------------------------------------
def split_log(text: str) -> dict[str, str]:
    """Marker-delimited sections of a console log, CRLF turned back into LF. A section's text
    is exactly what was printed between the markers (a file without a final newline keeps
    none)."""
    text = text.replace("\r\n", "\n")
    out: dict[str, str] = {}
    for m in BEGIN.finditer(text):
        name = m.group(1)
        end = text.find(f"@@KCAP END {name}@@", m.end())
        if end < 0:
            raise SystemExit(f"section {name} has no END marker: the boot was cut short")
        out[name] = text[m.end():end]
    return out


def event_counts(trace: str) -> dict[str, int]:
    """Events by name in ftrace text output (lines ``task-pid [cpu] flags ts: name: fields``)."""
    counts: dict[str, int] = {}
    for line in trace.splitlines():
        if line.startswith("#"):
            continue
        m = EVENT.search(line)
        if m:
            counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return dict(sorted(counts.items()))


def write_fixtures(cfg: Config, sections: dict[str, str], out: Path, cmd: list[str],
                   package: str, deb_version: str = "",
                   invocation: str = "") -> list[tuple[str, int, str]]:
    """One file per section (xz above XZ_ABOVE bytes, a trace always) and README.md, in
    ``out/<config>`` (``out/<config>-tracecmd`` for a trace-cmd capture); returns the rows."""
    trace_cmd = "trace-cmd-report" in sections
    d = out / (cfg.name + (TRACE_CMD_SUFFIX if trace_cmd else ""))
    d.mkdir(parents=True, exist_ok=True)
    for old in d.iterdir():
        old.unlink()
    about = ({k: v[1] for k, v in FILES.items()} | {RECOMPUTED[0]: RECOMPUTED[1]}
             | (TRACE_CMD_FILES if trace_cmd else TRACE_FILES))
    rows: list[tuple[str, int, str]] = []
    for name, body in sections.items():
        data = body.encode()
        fname = name
        if len(data) > XZ_ABOVE or (name in TRACE_SECTIONS and data):
            data = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
            fname += ".xz"
        (d / fname).write_bytes(data)
        rows.append((fname, len(data), about.get(name, name)))
    version = sections.get("version", "?").strip()
    qemu = "?"
    if shutil.which("qemu-system-x86_64"):
        qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                              text=True, check=False).stdout.split("\n")[0]
    table = "\n".join(f"| `{n}` | {s} | {a} |" for n, s, a in rows)
    counts = event_counts(sections.get("trace-cmd-report" if trace_cmd else "trace", ""))
    events = ", ".join(f"`{k}` {v}" for k, v in counts.items())
    work = sections.get("trace_workload", "")
    deb = f" version `{deb_version}`" if deb_version else ""
    (d / "README.md").write_text(
        f"# {cfg.name}: {cfg.about}\n\n"
        f"Captured by `tools/capture_kernel.py` on {dt.date.today().isoformat()} from Debian "
        f"package `{package}`{deb}"
        + (f", with\n\n```sh\n{invocation}\n```\n\n" if invocation else ".\n\n")
        + f"Kernel: `{version}`\n\n"
        f"Kernel command line: `{sections.get('cmdline', '?').strip()}`\n\n"
        f"qemu: `{qemu}`; host kernel `{os.uname().release}`, no KVM (TCG).\n\n"
        "qemu command line (the initramfs is built by the tool; the tool runs it under "
        "`nice -n 10`):\n\n"
        f"```sh\n{shlex.join(cmd)}\n```\n\n"
        + (f"Traced workload (`trace_workload`, run by busybox sh with `events/kmem` and, where "
           f"the kernel has them, `events/vmalloc` enabled, {BUFFER_KB} KiB ring buffer per CPU, "
           f"overwrite off):\n\n```sh\n{work}```\n\nEvents in `trace`: {events} "
           f"({sum(counts.values())} in all).\n\n" if work and not trace_cmd else "")
        + (f"Traced workload (`trace_workload`), recorded by the host's trace-cmd "
           f"(`{sections.get('trace_cmd_version', '?').strip().splitlines()[0]}`, Debian "
           "package `trace-cmd`, copied into the initramfs with the libraries `ldd` names and "
           "libtraceevent's plugins) and printed by it in the guest:\n\n```sh\n"
           f"trace-cmd record -o /tmp/trace.dat -b {BUFFER_KB} -e kmem -e vmalloc sh "
           "/workload.sh > /tmp/record.log 2>&1\n"
           "trace-cmd report -i /tmp/trace.dat 2>/tmp/report.err\n"
           "trace-cmd report -l -i /tmp/trace.dat 2>>/tmp/report.err\n```\n\n"
           "(`-e vmalloc` only where the kernel has `events/vmalloc`.)\n\n"
           f"```sh\n{work}```\n\nEvents in `trace-cmd-report`: {events} "
           f"({sum(counts.values())} in all).\n\n" + TRACE_CMD_NOTES
           if work and trace_cmd else "")
        + "| file | bytes | what |\n|---|---:|---|\n"
        f"{table}\n\n"
        "Files are the exact text the guest printed (the serial console's CRLF turned back into "
        "LF); `.xz` files are xz-compressed. Everything before the trace section was read "
        "before the traced workload ran.\n")
    return rows


def capture_host(out: Path) -> None:
    """Copy this machine's own kernel files (read-only material, not a Debian kernel)."""
    rel = os.uname().release
    d = out.parent / f"host-{rel}"
    d.mkdir(parents=True, exist_ok=True)
    files = {"version": "/proc/version", "zoneinfo": "/proc/zoneinfo",
             "pagetypeinfo": "/proc/pagetypeinfo", "buddyinfo": "/proc/buddyinfo",
             "min_free_kbytes": "/proc/sys/vm/min_free_kbytes",
             "lowmem_reserve_ratio": "/proc/sys/vm/lowmem_reserve_ratio",
             "watermark_scale_factor": "/proc/sys/vm/watermark_scale_factor"}
    rows = []
    for name, src in files.items():
        data = Path(src).read_bytes()
        (d / name).write_bytes(data)
        rows.append(f"| `{name}` | {len(data)} | `{src}` |")
    numa = sorted(Path("/sys/devices/system/node").glob("node*/numastat"))
    text = "\n".join(f"==> {p} <==\n{p.read_text()}" for p in numa)
    (d / "numastat").write_text(text)
    rows.append(f"| `numastat` | {len(text)} | every node's numastat, head(1)-style |")
    (d / "README.md").write_text(
        f"# This sandbox's own kernel ({rel})\n\n"
        f"Copied by `tools/capture_kernel.py host` on {dt.date.today().isoformat()} from the "
        "machine the tests were written on: a Firecracker guest, not the Debian kernel the model "
        "pins. Used only where its format is the same as 6.12's (see tests/fixtures/README.md)."
        f"\n\nKernel: `{Path('/proc/version').read_text().strip()}`\n\n"
        "| file | bytes | source |\n|---|---:|---|\n" + "\n".join(rows) + "\n")
    print(f"wrote {d}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("configs", nargs="*",
                   help=f"machine shapes ({', '.join(CONFIGS)}; default: "
                   f"{', '.join(DEFAULT_CONFIGS['6.12'])}), or 'host'")
    p.add_argument("--kernel", "--kernel-version", dest="kernel", choices=sorted(KERNELS),
                   default="6.12", help="which Debian kernel series (default 6.12)")
    p.add_argument("--work", type=Path, default=Path("/work/kcap"),
                   help="work folder outside the repository (kernel, initramfs, console logs)")
    p.add_argument("--out", type=Path, help="fixture folder (default tests/fixtures/linux-KERNEL)")
    p.add_argument("--package", help="Debian kernel image package (default: the pinned one)")
    p.add_argument("--kaslr", action="store_true",
                   help="boot without nokaslr: the direct map base is randomised")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per boot")
    p.add_argument("--no-install", action="store_true",
                   help="do not apt-get install qemu-system-x86 / busybox-static when missing")
    p.add_argument("--from-log", action="store_true",
                   help="re-split the saved console log of each config without booting")
    p.add_argument("--trace-cmd", action="store_true",
                   help="record with trace-cmd (installed on the host when missing, copied "
                   "into the initramfs) and print `trace-cmd report`; fixture folder "
                   "<config>-tracecmd")
    args = p.parse_args(argv)
    kern = KERNELS[args.kernel]
    out: Path = args.out or FIXTURES / f"linux-{kern.version}"
    if args.configs == ["host"]:
        capture_host(out)
        return 0
    configs = args.configs or list(DEFAULT_CONFIGS[kern.version])
    for name in configs:
        if name not in CONFIGS:
            p.error(f"unknown config {name!r}")
    if not args.from_log:
        ensure_tools(install=not args.no_install, trace_cmd=args.trace_cmd)
    kernel, package, deb_version = fetch_kernel(
        args.work, args.package or kern.package, None if args.package else kern.pattern)
    for name in configs:
        cfg = CONFIGS[name]
        tag = cfg.name + (TRACE_CMD_SUFFIX if args.trace_cmd else "")
        run = args.work / "runs" / f"linux-{kern.version}" / tag
        log = run / "console.log"
        cmd = qemu_command(cfg, kernel, run / "initramfs.cpio", args.kaslr)
        if not args.from_log:
            print(f"booting {cfg.name}: {shlex.join(cmd)}", flush=True)
            log, cmd = boot(cfg, kernel, run, args.timeout, args.kaslr, args.trace_cmd)
        text = log.read_bytes().decode("utf-8", "replace")
        if "@@KCAP DONE@@" not in text:
            print(f"{cfg.name}: the guest did not finish; see {log}", file=sys.stderr)
            return 1
        flags = (f"--kernel {kern.version}" + (" --kaslr" if args.kaslr else "")
                 + (" --trace-cmd" if args.trace_cmd else ""))
        rows = write_fixtures(cfg, split_log(text), out, cmd, package, deb_version,
                              f"python tools/capture_kernel.py {flags} {cfg.name}")
        total = sum(s for _, s, _ in rows)
        print(f"{tag}: {len(rows)} files, {total} bytes in {out / tag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
