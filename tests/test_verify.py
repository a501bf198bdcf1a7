"""The ``make verify`` runner's reporting (proofs/verify.py, proofs/checks_extra.py): bounded
checks report their final figures, an exhaustive check that did not finish is ``unknown``
(a failure), seeded bugs pass only when caught, and the table stays readable in a pipe."""

from __future__ import annotations

import io
import sys

from rich.console import Console

from proofs import checks_extra as ce
from proofs import verify
from proofs.modelcheck import MACHINES
from proofs.registry import CheckResult
from proofs.seeded_bugs import SEEDED_BUGS

RESULT_DONE = ("RESULT machine=flat16 states=22865 transitions=771879 depth=19 seconds=12.50 "
               "cpu_seconds=11.90 states_per_s=1829 exhausted=yes violation=none")
RESULT_CUT = ("RESULT machine=numa2 states=50000 transitions=901234 depth=9 seconds=150.00 "
              "cpu_seconds=60.10 states_per_s=333 exhausted=no violation=none")
VIOLATION_OUT = """model checking mutant no-merge-order1 on flat16: ...
  ... states 10, transitions 100, depth 1, 0.0 s, 0 states/s, frontier NOT exhausted
states 39, transitions 424, depth 2, 0.0 s (0.0 s CPU), 1698 states/s, frontier NOT exhausted
VIOLATION: freelist.fully_merged
shortest path from boot (2 steps):
   1. alloc_pages_node(0, GFP_KERNEL, 1, ctx=process) -> 0x0
   2. free_pages_pfn(0x0, 1)  <-- reaches a bad state
the real PageAllocator on the same path: clean
RESULT machine=flat16 states=39 transitions=424 depth=2 seconds=0.02 cpu_seconds=0.02 \
states_per_s=1698 exhausted=no violation=freelist.fully_merged
"""


def test_result_line_is_parsed_into_final_figures() -> None:
    r = ce.parse_result_line("  ... progress\n" + RESULT_DONE + "\n")
    assert r is not None
    assert r["states"] == "22865" and r["exhausted"] == "yes" and r["violation"] == "none"
    fig = ce.figures(r)
    assert fig.startswith("22,865 states, 771,879 transitions, depth 19, 12.5 s")
    assert "1,829 states/s" in fig and fig.endswith("exhausted")
    assert ce.parse_result_line("no summary here") is None


def test_exhausted_clean_run_passes_with_its_figures() -> None:
    status, detail = ce.read_modelcheck("coverage...\nno violation\n" + RESULT_DONE, 0)
    assert status == "passed"
    assert detail.splitlines()[0] == ce.figures(ce.parse_result_line(RESULT_DONE) or {})
    assert "NOT exhausted" not in detail


def test_not_exhausted_is_unknown_never_passed() -> None:
    """The model checker stopped by its budget (exit 3), or a run that says exhausted=no even
    with exit 0, is ``unknown``: a failed row."""
    for rc in (3, 0):
        status, detail = ce.read_modelcheck("note: stopped at the time budget\n" + RESULT_CUT,
                                            rc)
        assert status == "unknown", rc
        assert "NOT exhausted" in detail and "50,000 states" in detail
    assert not CheckResult("modelcheck[numa2]", "model-check", "unknown", 1.0).ok


def test_violation_fails_with_rule_and_path() -> None:
    status, detail = ce.read_modelcheck(VIOLATION_OUT, 1)
    assert status == "failed"
    assert detail.startswith("VIOLATION freelist.fully_merged")
    assert "shortest path (2 steps): alloc_pages_node(0, GFP_KERNEL, 1, ctx=process) -> 0x0; " \
           "free_pages_pfn(0x0, 1)" in detail


def test_missing_witness_is_vacuous_and_no_result_line_is_a_failure() -> None:
    out = "FAIL: never exercised: kswapd did something\n" + RESULT_DONE
    assert ce.read_modelcheck(out, 2)[0] == "vacuous"
    status, detail = ce.read_modelcheck("Traceback (most recent call last):\n  boom", 1)
    assert status == "failed" and "no RESULT line" in detail


def test_seeded_bug_rows_pass_only_when_caught() -> None:
    status, detail = ce.read_seeded_modelcheck(VIOLATION_OUT, 1)
    assert status == "passed"
    assert detail.startswith("caught: freelist.fully_merged; shortest path (2 steps)")
    assert "real allocator: clean" in detail
    # the same violation on the real allocator's replay: not the bug's doing
    also = VIOLATION_OUT.replace("same path: clean", "same path: violates freelist.x at step 2")
    status, detail = ce.read_seeded_modelcheck(also, 1)
    assert status == "failed" and "violates freelist.x" in detail
    status, _ = ce.read_seeded_modelcheck(VIOLATION_OUT.replace("the real PageAllocator", "-"), 1)
    assert status == "failed"
    status, detail = ce.read_seeded_modelcheck("no violation\n" + RESULT_DONE, 0)
    assert status == "failed" and detail.startswith("SURVIVED")
    assert ce.read_seeded_modelcheck("note\n" + RESULT_CUT, 3)[0] == "failed"


def test_a_bug_caught_at_boot_says_so() -> None:
    out = ("VIOLATION: buddy.contiguity, freelist.free_pages\n  in the boot state\n"
           "shortest path from boot (0 steps):\n"
           "the real PageAllocator on the same path: clean\n" + RESULT_CUT)
    status, detail = ce.read_seeded_modelcheck(out, 1)
    assert status == "passed"
    assert detail.startswith("caught: buddy.contiguity, freelist.free_pages; in the boot state "
                             "(0 steps)")


def test_seeded_statemachine_rows_show_the_broken_rule() -> None:
    out = ("F\nkmemspec-rule: numa.zone_statistics\n  step record ...\n"
           "1 failed in 3.20s\n")
    status, detail = ce.read_seeded_statemachine(out, 1)
    assert status == "passed"
    assert detail.startswith("caught: numa.zone_statistics -- step record ...")
    assert ce.read_seeded_statemachine("1 passed in 9.1s\n", 0)[0] == "failed"
    status, detail = ce.read_seeded_statemachine("E   ImportError: boom\n1 error\n", 1)
    assert status == "failed" and "without a kmemspec-rule: line" in detail


def test_statemachine_failure_surfaces_the_rule() -> None:
    out = "F\nkmemspec-rule: liveness.blocking\n  zone 0 could serve\n1 failed in 4.0s\n"
    status, detail = ce.read_statemachine(out, 1)
    assert status == "failed"
    assert detail.splitlines()[0] == "kmemspec-rule: liveness.blocking -- zone 0 could serve"
    assert ce.read_statemachine("1 passed in 17.00s\n", 0) == ("passed", "1 passed in 17.00s")


def test_pytest_summary_with_and_without_a_summary_line() -> None:
    assert ce._pytest_line("....\n4 passed in 2.10s\n") == "4 passed in 2.10s"
    assert ce._pytest_line("..s.F   [100%]\n") == "3 passed, 1 skipped, 1 failed"


def test_rows_are_generated_from_the_machines_and_the_catalogue() -> None:
    names = [c.name for c in ce.extra_checks()]
    long_names = [c.name for c in ce.extra_checks(long=True)]
    assert len(names) == len(set(names)) and len(long_names) == len(set(long_names))
    for m in MACHINES:
        assert f"modelcheck[{m}]" in names
    for bug in SEEDED_BUGS.values():
        # every bug is caught in make verify (a model-checker row at least); the slower
        # state-machine rows run in make verify-long
        assert any(n.startswith(f"seeded.{bug.name}[") for n in names), bug.name
        for where in bug.caught_by:
            label = where.removeprefix("modelcheck:")
            assert f"seeded.{bug.name}[{label}]" in long_names, (bug.name, where)
            if where != "statemachine":
                assert f"seeded.{bug.name}[{label}]" in names, (bug.name, where)
    checks = {c.name: c for c in ce.extra_checks(long=True)}
    mc_row = checks["modelcheck[flat16]"]
    assert "--require-exhaustive" in mc_row.argv and "--budget" in mc_row.argv
    for c in checks.values():
        if c.name.endswith("[statemachine]"):
            assert c.env["KMEMSPEC_SEEDED_BUG"] == c.name.removeprefix("seeded.").split("[")[0]


def test_a_failing_subprocess_row_is_read_by_its_parser() -> None:
    check = ce.ExtraCheck("modelcheck[fake]", "a fake run", (sys.executable, "-c", (
        "print('  ... states 5, frontier NOT exhausted'); "
        f"print({RESULT_CUT!r}); raise SystemExit(3)")), parse="modelcheck")
    r = ce.run_check(check)
    assert r.status == "unknown" and r.returncode == 3
    assert r.detail.splitlines()[0].startswith("50,000 states")


def _rows() -> list[CheckResult]:
    return [
        CheckResult("seeded.cross-zone-merge[zones-unaligned]", "seeded", "passed", 0.8,
                    "caught: buddy.contiguity, freelist.right_list; shortest path (0 steps): "
                    "; 1 states"),
        CheckResult("modelcheck[flat16]", "model-check", "passed", 12.5,
                    "22,865 states, 771,879 transitions, depth 19, 12.5 s (11.9 s CPU), "
                    "1,829 states/s, exhausted"),
        CheckResult("modelcheck[numa2]", "model-check", "unknown", 150.0,
                    "50,000 states, 901,234 transitions, depth 9, 150.0 s (60.1 s CPU), 333 "
                    "states/s, NOT exhausted within its budget: the bound was not checked"),
    ]


def test_pipe_rendering_never_folds_details() -> None:
    """In a pipe (not a terminal, 80 columns) the details follow the table, each on one line
    at full length, instead of a detail column folded one character per line."""
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=False, color_system=None)
    verify.render(_rows(), 20.0, console)
    out = buf.getvalue()
    lines = out.splitlines()
    for r in _rows():
        assert any(r.detail in ln for ln in lines), r.name
    table_lines = lines[:lines.index("details:")]
    assert all(len(ln) <= 80 for ln in table_lines)
    # no column of single characters: every table line holding a row name holds all of it
    for r in _rows():
        assert any(r.name in ln for ln in table_lines), r.name


def test_wide_terminal_keeps_the_detail_column() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=200, force_terminal=True, color_system=None)
    verify.render(_rows(), 20.0, console)
    out = buf.getvalue()
    assert "details:" not in out and "1,829 states/s" in out


def test_select_by_exact_name_substring_or_glob() -> None:
    from proofs.registry import Check

    checks = [Check(n, "x", lambda lg: None) for n in
              ("modelcheck[flat16]", "modelcheck[numa2]", "seeded.a[flat16]")]
    assert [c.name for c in verify.select(checks, "modelcheck[flat16]")] == ["modelcheck[flat16]"]
    assert [c.name for c in verify.select(checks, "modelcheck")] == [
        "modelcheck[flat16]", "modelcheck[numa2]"]
    assert [c.name for c in verify.select(checks, "seeded.*")] == ["seeded.a[flat16]"]
