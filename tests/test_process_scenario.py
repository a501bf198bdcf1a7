"""scenarios/process.scn through ``kmemspec run``: every expectation holds, every check_mm
passes, the shared buffer is shared, and compaction shows in /proc/buddyinfo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli.main import main
from cli.scenario import OPS, parse_scenario
from spec.errors import ScenarioError

ROOT = Path(__file__).resolve().parent.parent
SCN = ROOT / "scenarios" / "process.scn"


def buddy_rows(out: str) -> list[list[int]]:
    return [[int(x) for x in m.group(1).split()]
            for m in re.finditer(r"^Node 0, zone\s+Normal((?:\s+\d+)+)\s*$", out, re.M)]


def test_process_scenario(capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["run", str(SCN)]) == 0
    out = capsys.readouterr().out
    assert "FAILED" not in out and "VIOLATED" not in out
    assert out.count("ok: every mm invariant holds") == 4
    # copy-on-write after fork, and the buffer shared by both processes
    assert "(copy-on-write: copied from " in out
    assert re.search(r"read pid=2 addr=0x7ffff7fbd000 -> 51966 \(pfn 0xa\)", out)
    assert "/dev/shared_buffer1" in out
    assert "unmovable: a shared buffer page (GFP_USER)" in out
    # buddyinfo: boot, fragmented, compacted, all free again (then the views' final copy)
    boot, frag, compacted, end, _final = buddy_rows(out)
    assert boot == end == [0, 0, 0, 0, 32]
    assert frag[0] > 100 and compacted[4] > frag[4] + 5 and compacted[0] < frag[0] // 4
    assert re.search(r"compact nid=-1 order=-1 -> node 0 Normal: complete, \d+ pages migrated",
                     out)
    assert "read pid=3 addr=0x7ffff7ec0000 -> 77" in out  # the contents followed the page


def test_process_ops_are_parsed_and_checked() -> None:
    assert {"spawn", "fork", "exit_process", "mmap", "munmap", "fault", "write", "read",
            "buffer_alloc", "buffer_mmap", "buffer_free", "migrate", "compact", "show",
            "maps", "check_mm"} <= set(OPS)
    with pytest.raises(ScenarioError, match="needs pid="):
        parse_scenario("fork\n")
    with pytest.raises(ScenarioError, match="no field 'size'"):
        parse_scenario("mmap pid=1 size=4096\n")
