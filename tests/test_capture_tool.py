"""tools/capture_kernel.py without booting anything: the console-log splitter, the initramfs
it writes, the qemu machine shapes, the kernel series and their package fallback, the
fresh-machine install step and the fixture README (the boots themselves made
tests/fixtures/linux-6.1 and tests/fixtures/linux-6.12)."""

from __future__ import annotations

import lzma
import subprocess
from pathlib import Path

import pytest

from tools import capture_kernel
from tools.capture_kernel import (
    CONFIGS,
    FILES,
    build_initramfs,
    init_script,
    qemu_command,
    split_log,
)


def test_split_log_keeps_each_section_exactly() -> None:
    log = ("SeaBIOS noise\r\n@@KCAP BEGIN zoneinfo@@\r\nNode 0, zone      DMA\r\n  x 1\r\n"
           "@@KCAP END zoneinfo@@\r\n@@KCAP BEGIN nr_cpus@@\r\n2@@KCAP END nr_cpus@@\r\n")
    assert split_log(log) == {"zoneinfo": "Node 0, zone      DMA\n  x 1\n", "nr_cpus": "2"}
    with pytest.raises(SystemExit, match="no END marker"):
        split_log("@@KCAP BEGIN trace@@\r\npartial")


def test_initramfs_is_a_newc_archive_with_init_and_console(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a stand-in for busybox-static, which a fresh machine need not have installed
    fake = tmp_path / "busybox"
    fake.write_bytes(b"\x7fELF" + bytes(1000))
    monkeypatch.setattr(capture_kernel, "BUSYBOX", fake)
    cfg = CONFIGS["2node-2cpu-2g"]
    out = tmp_path / "initramfs.cpio"
    build_initramfs(cfg, out)
    blob = out.read_bytes()
    assert blob.startswith(b"070701") and len(blob) % 512 == 0
    names = []
    pos = 0
    while True:
        head = blob[pos:pos + 110]
        assert head[:6] == b"070701"
        fields = [int(head[6 + 8 * k:14 + 8 * k], 16) for k in range(13)]
        size, namesize = fields[6], fields[11]
        name = blob[pos + 110:pos + 110 + namesize - 1].decode()
        if name == "TRAILER!!!":
            break
        names.append((name, fields[1] >> 12, fields[9:11]))
        pos += 110 + namesize
        pos += -pos % 4
        pos += size + (-size % 4)
    assert ("dev/console", 0o02, [5, 1]) in names  # S_IFCHR, major 5 minor 1
    assert {n for n, _, _ in names} >= {"init", "bin/busybox", "proc", "sys"}
    script = init_script(cfg)
    assert script.startswith("#!/bin/busybox sh\n") and script.endswith("poweroff -f\n")
    for name in (*FILES, "zoneinfo-recomputed", "trace", "trace_stats"):
        assert f"dump {name} " in script
    assert "mpol=interleave:0-1" in script
    assert "mpol" not in init_script(CONFIGS["1node-4cpu-1g"])


def test_qemu_command_shapes() -> None:
    cmd = qemu_command(CONFIGS["2node-2cpu-2g"], Path("vmlinuz"), Path("initrd"))
    assert cmd[:3] == ["qemu-system-x86_64", "-accel", "tcg,thread=single"]
    assert "node,nodeid=1,cpus=1,memdev=m1" in cmd
    assert "memory-backend-ram,id=m0,size=1024M" in cmd
    assert cmd[-1] == "console=ttyS0 panic=-1 quiet no_hash_pointers nokaslr"
    one = qemu_command(CONFIGS["1node-4cpu-1g"], Path("vmlinuz"), Path("initrd"))
    assert "-numa" not in one and one[one.index("-smp") + 1] == "4"


# --- the 6.1 / fresh-machine additions -------------------------------------------------------

def test_kernel_series_and_fixture_folders() -> None:
    assert set(capture_kernel.KERNELS) == {"6.1", "6.12"}
    assert capture_kernel.KERNELS["6.12"].package == "linux-image-6.12.117+deb13-amd64"
    assert capture_kernel.KERNELS["6.1"].package.startswith("linux-image-6.1.0-")
    for version, configs in capture_kernel.DEFAULT_CONFIGS.items():
        assert version in capture_kernel.KERNELS
        assert {CONFIGS[c].nodes for c in configs} == {1, 2}  # one- and two-node shapes


def test_newest_package_of_a_series_by_abi_number() -> None:
    names = ["linux-image-6.1.0-9-amd64", "linux-image-6.1.0-57-amd64",
             "linux-image-6.1.0-57-rt-amd64", "linux-image-6.1.0-56-cloud-amd64",
             "linux-image-6.12.117+deb13-amd64", "linux-image-6.1.0-57-amd64-dbg"]
    pattern = capture_kernel.KERNELS["6.1"].pattern
    assert capture_kernel.newest_package(names, pattern) == "linux-image-6.1.0-57-amd64"
    assert capture_kernel.newest_package(names[:1], pattern) == "linux-image-6.1.0-9-amd64"
    assert capture_kernel.newest_package(["linux-image-6.12.1-amd64"], pattern) is None


def test_kaslr_only_when_asked_and_pointers_never_hashed() -> None:
    assert capture_kernel.kernel_cmdline().split()[-2:] == ["no_hash_pointers", "nokaslr"]
    kaslr = capture_kernel.kernel_cmdline(kaslr=True).split()
    assert "no_hash_pointers" in kaslr and "nokaslr" not in kaslr
    cmd = qemu_command(CONFIGS["2node-4cpu-2g"], Path("vmlinuz"), Path("initrd"), kaslr=True)
    assert cmd[-1] == capture_kernel.kernel_cmdline(kaslr=True)
    assert "node,nodeid=1,cpus=2-3,memdev=m1" in cmd


def test_workload_and_tracing_setup() -> None:
    """The workload reads a sysctl with every size in SYSCTL_READS (one kmalloc of n + 1
    bytes each: fs/proc/proc_sysctl.c), keeps children alive together (vmalloc'ed stacks), and
    the vmalloc events are enabled only where the kernel has them (6.2+)."""
    script = init_script(CONFIGS["1node-2cpu-1g"])
    for n in capture_kernel.SYSCTL_READS:
        assert f" {n}" in capture_kernel.workload(CONFIGS["1node-2cpu-1g"])
    assert max(capture_kernel.SYSCTL_READS) + 1 > 8192 * 8  # the large path, order >= 4
    assert "sleep 1 & done; wait" in script
    assert "[ -d $T/events/vmalloc ] && echo 1 > $T/events/vmalloc/enable" in script
    assert "[ -f $f ] || continue" in script  # no error text inside kmem_formats on 6.1
    assert f"echo {capture_kernel.BUFFER_KB} > $T/buffer_size_kb" in script
    assert script.index("events/kmem/enable") < script.index("sh /workload.sh") < script.index(
        "dump trace ")


def test_event_counts_of_ftrace_text() -> None:
    trace = ("# tracer: nop\n#\n"
             "   dd-142  [000] .....  3.815931: kmalloc: call_site=kvmalloc_node+0x3f/0xd0\n"
             "   dd-142  [000] .....  3.815932: kfree: call_site=x ptr=0000000000000000\n"
             "   dd-142  [001] d..1.  3.815933: kmalloc: call_site=y\n"
             "garbage line\n")
    assert capture_kernel.event_counts(trace) == {"kfree": 1, "kmalloc": 2}


def test_ensure_tools_installs_what_is_missing(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def run(cmd: list[str], **_: object) -> None:
        calls.append(cmd)

    monkeypatch.setattr(subprocess, "run", run)  # the module capture_kernel calls
    monkeypatch.setattr(capture_kernel, "NEEDS", {str(tmp_path / "busybox"): "busybox-static",
                                                  "no-such-qemu-here": "qemu-system-x86"})
    with pytest.raises(SystemExit, match="busybox-static qemu-system-x86"):
        capture_kernel.ensure_tools(install=False)
    assert calls == []
    capture_kernel.ensure_tools()
    install = calls[-1]
    assert "install" in install and install[-2:] == ["busybox-static", "qemu-system-x86"]
    (tmp_path / "busybox").write_bytes(b"")
    monkeypatch.setattr(capture_kernel, "NEEDS", {str(tmp_path / "busybox"): "busybox-static"})
    calls.clear()
    capture_kernel.ensure_tools()
    assert calls == []  # nothing missing, nothing run


def test_fetch_kernel_falls_back_to_the_newest_of_the_series(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Debian drops old ABIs from bookworm-security: when the pinned 6.1 package cannot be
    downloaded, the newest linux-image-6.1.0-NN-amd64 apt knows is taken (no network here:
    apt and dpkg are stand-ins)."""

    seen: list[list[str]] = []

    def run(cmd: list[str], cwd: Path | None = None,
            **_: object) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        if cmd[:2] == ["apt-get", "download"]:
            if cmd[-1] == "linux-image-6.1.0-57-amd64":
                return subprocess.CompletedProcess(cmd, 100)
            assert cwd is not None
            (Path(cwd) / f"{cmd[-1]}_6.1.200-1_amd64.deb").write_bytes(b"")
        if cmd[:2] == ["apt-cache", "pkgnames"]:
            return subprocess.CompletedProcess(cmd, 0, "linux-image-6.1.0-58-amd64\n"
                                       "linux-image-6.1.0-60-rt-amd64\nlinux-image-6.1.0-9-amd64\n")
        if cmd[:2] == ["dpkg-deb", "-f"]:
            return subprocess.CompletedProcess(cmd, 0, "6.1.200-1\n")
        if cmd[:2] == ["dpkg", "-x"]:
            (Path(cmd[3]) / "boot").mkdir(parents=True)
            (Path(cmd[3]) / "boot" / "vmlinuz-6.1.0-58-amd64").write_bytes(b"")
        return subprocess.CompletedProcess(cmd, 0, "")

    monkeypatch.setattr(subprocess, "run", run)  # the module capture_kernel calls
    k = capture_kernel.KERNELS["6.1"]
    vmlinuz, package, version = capture_kernel.fetch_kernel(tmp_path, k.package, k.pattern)
    assert package == "linux-image-6.1.0-58-amd64" and version == "6.1.200-1"
    assert vmlinuz == tmp_path / package / "boot" / "vmlinuz-6.1.0-58-amd64"
    assert "bookworm-security" in (tmp_path / "apt" / "etc" / "sources.list").read_text()
    # a second call finds the .deb and the unpacked tree: no apt at all
    seen.clear()
    assert capture_kernel.fetch_kernel(tmp_path, package)[1] == package
    assert not any(c[0].startswith("apt") for c in seen)


def test_fixture_readme_says_how_it_was_made(tmp_path: Path) -> None:
    cfg = CONFIGS["1node-2cpu-1g"]
    trace = "# tracer: nop\n   sh-1  [000] .....  1.000000: kfree: call_site=x ptr=0\n"
    sections = {"version": "Linux version 6.1.192\n", "cmdline": "console=ttyS0 no_hash_pointers\n",
                "trace_workload": "dd if=/proc/sys/vm/min_free_kbytes\n", "trace": trace}
    rows = capture_kernel.write_fixtures(cfg, sections, tmp_path, ["qemu", "-m", "1024"],
                                         "linux-image-6.1.0-57-amd64", "6.1.192-3")
    d = tmp_path / cfg.name
    assert {r[0] for r in rows} == {"version", "cmdline", "trace_workload", "trace.xz"}

    assert lzma.decompress((d / "trace.xz").read_bytes()).decode() == trace
    readme = (d / "README.md").read_text()
    for text in ("`linux-image-6.1.0-57-amd64` version `6.1.192-3`", "qemu -m 1024",
                 "console=ttyS0 no_hash_pointers", "dd if=/proc/sys/vm/min_free_kbytes",
                 "`kfree` 1 (1 in all)"):
        assert text in readme, text
