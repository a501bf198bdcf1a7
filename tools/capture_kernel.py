"""Boot Debian's Linux 6.12 kernel under qemu and capture its /proc files and a kmem trace.

The files land in ``tests/fixtures/linux-6.12/<config>/``, where ``tests/test_views.py`` parses
them with the same parsers it applies to the model's views. Re-runnable: every step is skipped
when its result already exists in the work folder (``--work``, default ``/work/kcap``), and
``--from-log`` re-splits a saved console log without booting. Usage and the fixture layout are
described in ``tests/fixtures/README.md``.

What it does (see ``../shared/reference/kernel-capture-notes.md`` for why each choice):

1. ``apt-get download`` the kernel image package with a private apt configuration (Debian
   trixie, trixie-security and bookworm-backports; nothing is installed) and ``dpkg -x`` it.
2. Build an initramfs (a newc cpio written here, so no root and no cpio tool are needed):
   busybox-static, ``/dev/console``, and an ``/init`` script that prints each file between
   ``@@KCAP BEGIN name@@`` / ``@@KCAP END name@@`` markers, runs a small traced workload
   (``events/kmem`` and ``events/vmalloc``), prints the trace and powers off.
3. Boot it with ``qemu-system-x86_64 -accel tcg,thread=single`` (KVM hangs on these machines).
4. Split the console log into one file per marker and write a README per configuration.

``host`` copies this machine's own kernel files (whatever ``uname -r`` says) instead.

Needs: ``qemu-system-x86``, ``busybox-static``, ``xz-utils`` (``apt-get install``).
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
DEFAULT_OUT = REPO / "tests" / "fixtures" / "linux-6.12"
DEFAULT_PACKAGE = "linux-image-6.12.117+deb13-amd64"
APT_SOURCES = (
    "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
    "http://deb.debian.org/debian trixie main\n"
    "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
    "http://deb.debian.org/debian-security trixie-security main\n"
    "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
    "http://deb.debian.org/debian bookworm-backports main\n"
)
CMDLINE = "console=ttyS0 panic=-1 quiet no_hash_pointers nokaslr"
BUSYBOX = Path("/bin/busybox")
XZ_ABOVE = 200 * 1024  # fixtures larger than this are stored xz-compressed
BEGIN = re.compile(r"@@KCAP BEGIN ([A-Za-z0-9_.-]+)@@\n")


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
)}

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


def init_script(cfg: Config) -> str:
    """The initramfs /init: print every file between markers, then a traced workload."""
    mpol = f",mpol=interleave:0-{cfg.nodes - 1}" if cfg.nodes > 1 else ""
    workload = (
        f"mount -t tmpfs -o size=32m{mpol} tmpfs /mnt\n"
        "i=0; while [ $i -lt 20 ]; do echo file $i > /mnt/f$i; i=$((i+1)); done\n"
        "dd if=/dev/zero of=/mnt/big bs=64k count=8 2>/dev/null\n"
        "find /proc/sys/vm > /dev/null\n"
        "cat /mnt/f1 /mnt/big > /dev/null\n"
        "rm -f /mnt/*\n"
        "umount /mnt\n"
    )
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
        "dump kmem_formats 'for f in $T/events/kmem/*/format $T/events/vmalloc/*/format; do "
        "echo \"==> $f <==\"; cat $f; done'",
        "head -c 4096 /dev/urandom > /dev/null",  # see kernel-capture-notes.md (int3 oops)
        "echo 0 > $T/tracing_on",
        "echo 512 > $T/buffer_size_kb",
        "echo 0 > $T/options/overwrite",
        "echo 1 > $T/events/kmem/enable",
        "echo 1 > $T/events/vmalloc/enable",
        "echo > $T/trace",
        f"cat > /workload.sh <<'EOF'\n{workload}EOF",
        "dump trace_workload 'cat /workload.sh'",
        "echo 1 > $T/tracing_on",
        "sh /workload.sh",
        "echo 0 > $T/tracing_on",
        "dump trace_stats 'for c in $T/per_cpu/cpu*; do echo \"==> $c/stats <==\"; "
        "cat $c/stats; done'",
        "dump trace 'cat $T/trace'",
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


def build_initramfs(cfg: Config, path: Path) -> None:
    """A newc archive: directories, /dev/console, busybox and /init (gzip is not needed)."""
    parts: list[bytes] = []
    ino = 1
    for d in ("bin", "dev", "proc", "sys", "tmp", "mnt"):
        parts.append(_cpio_entry(d, stat.S_IFDIR | 0o755, ino=ino))
        ino += 1
    parts.append(_cpio_entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1), ino=ino))
    parts.append(_cpio_entry("bin/busybox", stat.S_IFREG | 0o755, BUSYBOX.read_bytes(),
                             ino=ino + 1))
    parts.append(_cpio_entry("init", stat.S_IFREG | 0o755, init_script(cfg).encode(),
                             ino=ino + 2))
    parts.append(_cpio_entry("TRAILER!!!", 0, ino=0))
    blob = b"".join(parts)
    blob += b"\0" * (-len(blob) % 512)
    path.write_bytes(blob)


# --- kernel ---------------------------------------------------------------------------------
def fetch_kernel(work: Path, package: str) -> Path:
    """apt-get download + dpkg -x into work/<package>; returns the vmlinuz path."""
    root = work / package
    found = sorted((root / "boot").glob("vmlinuz-*")) if root.exists() else []
    if found:
        return found[0]
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
    env = dict(os.environ, APT_CONFIG=str(conf))
    subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
    debs = work / "deb"
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "-q", package], env=env, check=True, cwd=debs)
    deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return sorted((root / "boot").glob("vmlinuz-*"))[0]


def qemu_command(cfg: Config, kernel: Path, initrd: Path) -> list[str]:
    return ["qemu-system-x86_64", "-accel", "tcg,thread=single", "-nographic", "-no-reboot",
            *cfg.qemu_args(), "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", CMDLINE]


def boot(cfg: Config, kernel: Path, work: Path, timeout: int) -> tuple[Path, list[str]]:
    """Run qemu once; the console log is saved as work/<config>/console.log."""
    d = work / cfg.name
    d.mkdir(parents=True, exist_ok=True)
    initrd = d / "initramfs.cpio"
    build_initramfs(cfg, initrd)
    cmd = qemu_command(cfg, kernel, initrd)
    log = d / "console.log"
    with log.open("wb") as f:
        subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                       timeout=timeout, check=False)
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


def write_fixtures(cfg: Config, sections: dict[str, str], out: Path, cmd: list[str],
                   package: str) -> list[tuple[str, int, str]]:
    """One file per section (xz above XZ_ABOVE bytes) and README.md; returns the rows."""
    d = out / cfg.name
    d.mkdir(parents=True, exist_ok=True)
    for old in d.iterdir():
        old.unlink()
    about = {k: v[1] for k, v in FILES.items()} | {RECOMPUTED[0]: RECOMPUTED[1]} | TRACE_FILES
    rows: list[tuple[str, int, str]] = []
    for name, body in sections.items():
        data = body.encode()
        fname = name
        if len(data) > XZ_ABOVE:
            data = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
            fname += ".xz"
        (d / fname).write_bytes(data)
        rows.append((fname, len(data), about.get(name, name)))
    version = sections.get("version", "?").strip()
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                          check=False).stdout.split("\n")[0]
    table = "\n".join(f"| `{n}` | {s} | {a} |" for n, s, a in rows)
    (d / "README.md").write_text(
        f"# {cfg.name}: {cfg.about}\n\n"
        f"Captured by `tools/capture_kernel.py` on {dt.date.today().isoformat()} from Debian "
        f"package `{package}`.\n\n"
        f"Kernel: `{version}`\n\n"
        f"qemu: `{qemu}`; host kernel `{os.uname().release}`, no KVM (TCG).\n\n"
        "qemu command line (the initramfs is built by the tool):\n\n"
        f"```sh\n{shlex.join(cmd)}\n```\n\n"
        "| file | bytes | what |\n|---|---:|---|\n"
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
    p.add_argument("configs", nargs="*", default=list(CONFIGS),
                   help=f"machine shapes ({', '.join(CONFIGS)}), or 'host'")
    p.add_argument("--work", type=Path, default=Path("/work/kcap"),
                   help="work folder outside the repository (kernel, initramfs, console logs)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture folder")
    p.add_argument("--package", default=DEFAULT_PACKAGE, help="Debian kernel image package")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per boot")
    p.add_argument("--from-log", action="store_true",
                   help="re-split work/<config>/console.log without booting")
    args = p.parse_args(argv)
    if args.configs == ["host"]:
        capture_host(args.out)
        return 0
    for name in args.configs:
        if name not in CONFIGS:
            p.error(f"unknown config {name!r}")
    if not BUSYBOX.exists() or shutil.which("qemu-system-x86_64") is None:
        p.error("needs qemu-system-x86 and busybox-static (apt-get install them)")
    kernel = fetch_kernel(args.work, args.package)
    for name in args.configs:
        cfg = CONFIGS[name]
        log = args.work / cfg.name / "console.log"
        cmd = qemu_command(cfg, kernel, args.work / cfg.name / "initramfs.cpio")
        if not args.from_log:
            print(f"booting {cfg.name}: {shlex.join(cmd)}", flush=True)
            log, cmd = boot(cfg, kernel, args.work, args.timeout)
        text = log.read_bytes().decode("utf-8", "replace")
        if "@@KCAP DONE@@" not in text:
            print(f"{cfg.name}: the guest did not finish; see {log}", file=sys.stderr)
            return 1
        rows = write_fixtures(cfg, split_log(text), args.out, cmd, args.package)
        total = sum(s for _, s, _ in rows)
        print(f"{cfg.name}: {len(rows)} files, {total} bytes in {args.out / cfg.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
