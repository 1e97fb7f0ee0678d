"""gpucheck.py: the acceptance check's pieces that need no GPU (baseline lookup, verdicts, summary),
and trace.agreement, the criterion its trace step applies."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from gdnbench import gpucheck
from gdnbench.cli import app
from gdnbench.gpucheck import Step, find_baseline, markdown, pytest_counts
from gdnbench.trace import agreement


def run_dir(path, config, ts, rows=True):
    path.mkdir(parents=True)
    (path / "env.json").write_text(json.dumps({"config_name": config, "timestamp": ts}))
    if rows:
        (path / "rows.csv").write_text("schema_version\n1\n")
    return path


def test_find_baseline_prefers_the_curated_layout(tmp_path):
    run_dir(tmp_path / "2026-01-01_h100-sm90_roofline-decode", "roofline-decode", "2026-01-01T00:00:00")
    newer = run_dir(tmp_path / "2026-02-01_h100-sm90_roofline-decode-2", "roofline-decode", "2026-02-01T00:00:00")
    run_dir(tmp_path / "2026-03-01_h100-sm90_roofline-decode-3", "roofline-decode", "2026-03-01T00:00:00",
            rows=False)  # no rows: not a baseline
    run_dir(tmp_path / "2026-03-01_b200-sm100_roofline-decode", "roofline-decode", "2026-03-01T00:00:00")
    run_dir(tmp_path / "2026-03-01_h100-sm90_mtp", "roofline-mtp", "2026-03-01T00:00:00")
    assert find_baseline("roofline-decode", "h100-sm90", tmp_path) == newer
    curated = run_dir(tmp_path / "h100-sm90" / "roofline-decode", "roofline-decode", "2025-01-01T00:00:00")
    assert find_baseline("roofline-decode", "h100-sm90", tmp_path) == curated
    assert find_baseline("roofline-decode", "h200-sm90", tmp_path) is None


def test_pytest_counts_reads_the_closing_line():
    assert pytest_counts("....\n== 467 passed, 204 skipped in 210.3s ==") == "467 passed, 204 skipped in 210.3s"
    assert pytest_counts("F..\n1 failed, 2 passed in 3s") == "1 failed, 2 passed in 3s"
    # as on the H100 under xdist: pytest-benchmark's warnings on stderr come after the closing line
    text = ("....\n631 passed, 331 skipped, 8 warnings in 192.10s (0:03:12)\n"
            + "logger.py:44: PytestBenchmarkWarning: Benchmarks are automatically disabled\n  warner(x)\n" * 3)
    assert pytest_counts(text) == "631 passed, 331 skipped, 8 warnings in 192.10s (0:03:12)"


def test_summary_passes_only_when_every_step_passed():
    env = {"gpu_name": "NVIDIA H100 80GB HBM3", "sm": "sm90", "versions": {"torch": "2.11"}, "git_sha": "abc"}
    good = [Step("tests", True, "10 passed", 1.0), Step("trace", True, "rows", 2.0)]
    assert markdown(good, env).startswith("# gdnbench gpu-check: PASS")
    text = markdown(good + [Step("roofline", False, "1 slower", 3.0, ["detail"])], env)
    assert text.startswith("# gdnbench gpu-check: FAIL") and "| roofline | FAIL | 3 | 1 slower |" in text
    assert "- detail" in text and "NVIDIA H100 80GB HBM3 (sm90)" in text


def test_agreement_counts_rows_of_10_us_or_more_within_5_percent():
    j = pd.DataFrame({"median_us": [5.0, 20.0, 30.0, 100.0, 50.0],
                      "nsys_vs_timer": [0.5, 0.97, 1.04, 1.2, float("nan")]})
    a = agreement(j)
    assert (a.within, a.rows) == (2, 3) and a.fraction == pytest.approx(2 / 3)
    assert a.ratio_min == pytest.approx(0.97) and a.ratio_max == pytest.approx(1.2)
    assert "2 of 3" in str(a)
    assert agreement(j[j.median_us < 10]).rows == 0


def test_gpu_check_needs_a_gpu():
    r = CliRunner().invoke(app, ["gpu-check"])
    assert r.exit_code == 2 and "no CUDA GPU" in r.stderr


def test_roofline_step_compares_the_new_run_with_the_baseline(tmp_path, monkeypatch):
    """The roofline step's verdict comes from `gdnbench compare` of the short sweep against the
    baseline: the same rows pass, a row 20% slower fails (the sweep is replaced by a copy here)."""
    import shutil

    import gdnbench.gpucheck as gc
    from results_fixture import make_run

    base = make_run(tmp_path, "base")
    real = gc.run_child

    def fake(args, log, timeout_s):
        if "sweep" in args:  # the short roofline sweep: a run like the baseline, flashinfer scaled
            out = Path(args[args.index("--out") + 1])
            shutil.copytree(make_run(tmp_path / f"src{fake.slow}", out.name, scale={"flashinfer": fake.slow}), out)
            return 0, "ok"
        return real(args, log, timeout_s)

    monkeypatch.setattr(gc, "run_child", fake)
    fake.slow = 1.0
    (tmp_path / "out1").mkdir()
    step = gc.step_roofline(tmp_path / "out1", base)
    assert step.ok and "same" in step.summary, step.summary
    fake.slow = 1.2
    (tmp_path / "out2").mkdir()
    step = gc.step_roofline(tmp_path / "out2", base)
    assert not step.ok and "slower" in step.summary, step.summary


@pytest.mark.parametrize("workers", [0, 4])
def test_tests_step_runs_timing_tests_alone(monkeypatch, tmp_path, workers):
    """With pytest-xdist, the tests that assert a time run first and alone, the others in parallel;
    without it, one serial run. Both runs must pass for the step to pass."""
    calls = []

    def fake_child(args, log, timeout_s):
        calls.append(list(args))
        log.write_text("...\n3 passed in 1s\n  warner(x)\n")
        return (1 if "timing" in " ".join(args) and "not timing" not in " ".join(args) else 0), "  warner(x)"

    monkeypatch.setattr(gpucheck, "run_child", fake_child)
    monkeypatch.setattr(gpucheck, "xdist_workers", lambda: workers)
    step = gpucheck.step_tests(tmp_path)
    marks = [a[a.index("-m", 1) + 1] for a in calls]
    if workers:
        assert marks == ["gpu and timing", "gpu and not timing"] and calls[1][-2:] == ["-n", "4"]
        assert not step.ok and step.summary == "3 passed in 1s; 3 passed in 1s (4 workers beside the timing tests)"
    else:
        assert marks == ["gpu"] and "-n" not in calls[0] and step.ok
    assert all("--ignore=tests/test_gpu_trace.py" in a for a in calls)


def test_tests_step_does_not_start_a_run_without_time(monkeypatch, tmp_path):
    """When the timing tests use up the step's time, the parallel run is reported as not run (a
    failure that says why), not started with a second to live."""
    calls = []
    clock = iter([0.0, 0.0, gpucheck.TESTS_TIMEOUT_S - 2, gpucheck.TESTS_TIMEOUT_S])

    def fake_child(args, log, timeout_s):
        calls.append(timeout_s)
        log.write_text("8 passed in 350s\n")
        return 0, ""

    monkeypatch.setattr(gpucheck, "run_child", fake_child)
    monkeypatch.setattr(gpucheck, "xdist_workers", lambda: 4)
    monkeypatch.setattr(gpucheck.time, "time", lambda: next(clock))
    step = gpucheck.step_tests(tmp_path)
    assert len(calls) == 1 and not step.ok
    assert "-m gpu and not timing: not run" in step.summary


def fake_commands(tmp_path):
    """A stand-in for gpu-check's child commands that behaves as the real ones do on a folder: `trace`
    and `sweep` refuse an --out that already holds rows.csv (exit 2); otherwise they write a run there:
    the trace with kernel/timer ratio ``fake.ratio``, the sweep a copy of a results fixture run."""
    import shutil

    from results_fixture import make_run

    def fake(args, log, timeout_s):
        out = Path(args[args.index("--out") + 1])
        if (out / "rows.csv").exists():
            log.write_text(f"error: {out} already holds rows.csv\n")
            return 2, f"error: {out} already holds rows.csv"
        fake.calls += 1
        if "trace" in args:
            out.mkdir(parents=True)
            rows = pd.DataFrame({"median_us": [20.0, 40.0], "nsys_vs_timer": [fake.ratio, fake.ratio]})
            rows.to_csv(out / "rows.csv", index=False)
            rows.to_csv(out / "rows_nsys.csv", index=False)
        else:
            shutil.copytree(make_run(tmp_path / f"src{fake.calls}", out.name), out)
        log.write_text("ok\n")
        return 0, "ok"

    fake.calls, fake.ratio = 0, 1.0
    return fake


def test_a_rerun_into_the_same_folder_measures_again(tmp_path, monkeypatch):
    """`make gpu-check` twice in one checkout writes to the same folder. The second check must run
    each step again: not fail because the roofline sweep's folder exists, and not pass the trace
    step on the first check's rows (here the second trace disagrees with the timer by 20%)."""
    from results_fixture import make_run

    import gdnbench.env

    base = make_run(tmp_path, "base")
    fake = fake_commands(tmp_path)
    monkeypatch.setattr(gpucheck, "run_child", fake)
    monkeypatch.setattr(gdnbench.env, "collect_env", lambda: {"gpu_name": "test GPU"})
    out = tmp_path / "gpu-check"
    assert gpucheck.run_gpu_check(out, base, ("trace", "roofline"), echo=lambda t: None)
    fake.ratio = 1.2
    assert not gpucheck.run_gpu_check(out, base, ("trace", "roofline"), echo=lambda t: None)
    assert fake.calls == 4
    report = (out / "gpu-check.md").read_text()
    assert "| trace | FAIL |" in report and "0 of 2" in report, report
    assert "| roofline | pass |" in report, report
    assert pd.read_csv(out / "trace" / "rows_nsys.csv").nsys_vs_timer.tolist() == [1.2, 1.2]


def test_trace_step_fails_when_the_trace_command_fails(tmp_path, monkeypatch):
    """A trace that exits non-zero fails the step, whatever rows_nsys.csv the folder holds."""
    fake = fake_commands(tmp_path)
    monkeypatch.setattr(gpucheck, "run_child", fake)
    assert gpucheck.step_trace(tmp_path).ok  # a first trace, agreeing with the timer
    step = gpucheck.step_trace(tmp_path)  # the command now refuses the folder: exit 2
    assert not step.ok and step.summary.startswith("trace exit 2: error:"), step.summary
