"""tools/capture_kernel.py without booting anything: the console-log splitter, the initramfs
it writes, and the qemu machine shapes (the boots themselves made tests/fixtures/linux-6.12)."""

from __future__ import annotations

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
