"""cli.py and runner.py end to end on the CPU: default sweep, check, plan, list, env, resume,
interrupts, and backends that raise or fail the gate."""

from __future__ import annotations

import json
import os
import signal
import sys
import types

import pytest
from typer.testing import CliRunner

import gdnbench.backends.registry as registry
import gdnbench.config as config
from gdnbench.backends.torch_eager import TorchEager
from gdnbench.cli import app
from gdnbench.rows import RowWriter, read_rows
from gdnbench.runner import INTERPRETER_NOTE

SMALL = """
phase: decode
backends: {backends}
axes: {{batch: [1, 3], heads: [[1, 2]], head_dim_k: [8], head_dim_v: [8], pool: [scattered, padded]}}
timing: {{min_samples: 3, min_time_s: 0.0, max_time_s: 0.05}}
"""


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def only_dir(root):
    (d,) = [p for p in root.iterdir() if p.is_dir()]
    return d


def test_default_sweep_on_cpu(tmp_path):
    r = invoke("sweep", "--results-root", tmp_path, "--no-progress")
    assert r.exit_code == 0, r.output
    assert "configs/smoke-cpu.yaml" in r.stderr and "no GPU here" in r.stderr
    d = only_dir(tmp_path)
    assert d.name.endswith("_cpu_smoke-cpu")
    rows = read_rows(d / "rows.csv")
    ok = [x for x in rows if x["status"] == "ok"]
    assert {x["backend"] for x in ok} >= {"torch", "triton", "fla", "fla_kernel"}
    assert all(x["status"] in ("ok", "skipped") for x in rows)
    timed = [x for x in ok if x["backend"] == "torch"]
    assert timed and all(x["check"] == "pass" and float(x["median_us"]) > 0 and float(x["gbps"]) > 0
                         and x["timing_mode"] == "cpu" for x in timed)
    # Triton-interpreter rows are checked, not timed, and say so
    interp = [x for x in ok if x["backend"] != "torch"]
    assert interp and all(x["check"] == "pass" and x["median_us"] == "" and x["timing_mode"] == ""
                          and x["reason"] == INTERPRETER_NOTE for x in interp)
    assert "indicative only" in r.stdout
    # skipped pairs are one summary line, not one line each, and library warnings one note
    assert sum("needs a CUDA GPU" in line for line in r.stderr.splitlines()) == 1
    assert "skipped " in r.stderr and "Traceback" not in r.output
    skipped = [x for x in rows if x["status"] == "skipped"]
    assert all(x["reason"] and x["median_us"] == "" for x in skipped)
    assert any(x["backend"] == "flashinfer" and "needs a CUDA GPU" in x["reason"] for x in skipped)
    env = json.loads((d / "env.json").read_text())
    assert env["device"] == "cpu" and "torch" in env["versions"] and "git_sha" in env
    assert (d / "config.yaml").exists() and (d / "samples.csv").stat().st_size > 100
    # own kernels record their tile and its source; on a CPU no tile is tuned for this GPU: one note says so
    own = [x for x in ok if x["backend"] == "triton"]
    assert own and all(x["tile"] and x["tile_source"] in ("other-gpu", "heuristic") for x in own)
    assert all(x["tile"] == x["tile_source"] == "" for x in timed)
    notes = [line for line in r.stdout.splitlines() if "not tuned on this GPU" in line]
    assert len(notes) == 1 and "`gdnbench tune smoke-cpu --backend triton`" in notes[0], r.stdout


def test_check_only(tmp_path, write_yaml):
    cfg = write_yaml(SMALL.format(backends="[torch]"))
    r = invoke("check", cfg, "--out", tmp_path / "run", "--no-progress")
    assert r.exit_code == 0, r.output
    rows = read_rows(tmp_path / "run" / "rows.csv")
    assert len(rows) == 3 and all(x["check"] == "pass" and x["median_us"] == "" for x in rows)


def test_plan_and_list_and_env(write_yaml):
    cfg = write_yaml(SMALL.format(backends="[torch]"))
    r = invoke("plan", cfg)
    assert r.exit_code == 0 and "3 cases x 1 backends" in r.stdout and "dropped 1 combinations" in r.stdout
    r = invoke("list")
    assert r.exit_code == 0 and "torch" in r.stdout
    r = invoke("env")
    assert r.exit_code == 0 and json.loads(r.stdout)["device"] == "cpu"


def test_out_dir_exists_without_resume(tmp_path, write_yaml):
    cfg = write_yaml(SMALL.format(backends="[torch]"))
    assert invoke("sweep", cfg, "--out", tmp_path / "r", "--no-progress").exit_code == 0
    r = invoke("sweep", cfg, "--out", tmp_path / "r", "--no-progress")
    assert r.exit_code == 2 and "use --resume" in r.stderr


def interrupt_after_two_rows(monkeypatch):
    """Make the third row's write raise KeyboardInterrupt (a Ctrl-C mid-sweep); returns the real write."""
    real_write = RowWriter.write
    calls = {"n": 0}

    def interrupting_write(self, row, samples=()):
        if calls["n"] == 2:
            raise KeyboardInterrupt
        calls["n"] += 1
        real_write(self, row, samples)

    monkeypatch.setattr(RowWriter, "write", interrupting_write)
    return real_write


def test_sigterm_stops_a_sweep_as_ctrl_c_does(tmp_path, write_yaml, monkeypatch):
    """A SIGTERM mid-sweep (``timeout``, a scheduler) keeps the written rows and exits 143 with the
    resume hint; --resume finishes the run with no row lost or repeated; the handler is put back."""
    cfg = write_yaml(SMALL.format(backends="[torch]"))
    out = tmp_path / "r"
    real_write = RowWriter.write
    calls = {"n": 0}

    def write_then_terminate(self, row, samples=()):
        real_write(self, row, samples)
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(RowWriter, "write", write_then_terminate)
    before = signal.getsignal(signal.SIGTERM)
    r = invoke("sweep", cfg, "--out", out, "--no-progress")
    assert r.exit_code == 143 and "terminated (SIGTERM)" in r.stderr and "finish with --resume" in r.stderr
    assert signal.getsignal(signal.SIGTERM) is before
    assert len(read_rows(out / "rows.csv")) == 2
    monkeypatch.setattr(RowWriter, "write", real_write)
    assert invoke("sweep", cfg, "--out", out, "--resume", "--no-progress").exit_code == 0
    rows = read_rows(out / "rows.csv")
    assert len(rows) == 3 and len({(x["case_id"], x["backend"]) for x in rows}) == 3


def test_resume_finishes_without_redoing(tmp_path, write_yaml, monkeypatch):
    cfg = write_yaml(SMALL.format(backends="[torch]"))
    out = tmp_path / "r"
    real_write = interrupt_after_two_rows(monkeypatch)
    r = invoke("sweep", cfg, "--out", out, "--no-progress")
    assert r.exit_code == 130 and "finish with --resume" in r.stderr
    first = read_rows(out / "rows.csv")
    assert len(first) == 2
    monkeypatch.setattr(RowWriter, "write", real_write)
    r = invoke("sweep", cfg, "--out", out, "--resume", "--no-progress")
    assert r.exit_code == 0, r.output
    rows = read_rows(out / "rows.csv")
    assert len(rows) == 3 and rows[:2] == first
    assert len({(x["case_id"], x["backend"]) for x in rows}) == 3
    assert "resumed" in json.loads((out / "env.json").read_text())
    # resuming a complete run does nothing more
    assert invoke("sweep", cfg, "--out", out, "--resume", "--no-progress").exit_code == 0
    assert len(read_rows(out / "rows.csv")) == 3


class Raising(TorchEager):
    name = "raising"

    def build(self, case, inputs):
        raise RuntimeError("kernel compile exploded\nwith a second line")


class WrongOutput(TorchEager):
    name = "wrong"

    def build(self, case, inputs):
        launch = super().build(case, inputs)
        return lambda: launch() * 2


@pytest.fixture
def fake_backends(monkeypatch):
    mod = types.ModuleType("gdnbench_fake_backends")
    mod.RAISING, mod.WRONG = Raising(), WrongOutput()
    monkeypatch.setitem(sys.modules, "gdnbench_fake_backends", mod)
    monkeypatch.setitem(registry.BACKENDS, "raising", "gdnbench_fake_backends:RAISING")
    monkeypatch.setitem(registry.BACKENDS, "wrong", "gdnbench_fake_backends:WRONG")
    monkeypatch.setattr(config, "BACKEND_NAMES", tuple(registry.BACKENDS))


def test_raising_and_failing_backends_become_rows(tmp_path, write_yaml, fake_backends):
    cfg = write_yaml(SMALL.format(backends="[raising, torch, wrong]"))
    r = invoke("sweep", cfg, "--out", tmp_path / "r", "--no-progress")
    assert r.exit_code == 1, r.output
    rows = read_rows(tmp_path / "r" / "rows.csv")
    by = {(x["backend"]): [] for x in rows}
    for x in rows:
        by[x["backend"]].append(x)
    assert all(x["status"] == "error" and x["reason"] == "RuntimeError: kernel compile exploded" for x in by["raising"])
    assert all(x["status"] == "ok" for x in by["torch"])
    assert all(x["status"] == "failed" and x["check"] == "fail" and x["median_us"] == "" and "output" in x["reason"]
               for x in by["wrong"])


def test_timing_mode_needs_gpu(write_yaml, tmp_path):
    cfg = write_yaml(SMALL.format(backends="[torch]"))
    r = invoke("sweep", cfg, "--timing", "graph", "--out", tmp_path / "r")
    assert r.exit_code == 2 and "needs a CUDA GPU" in r.stderr


def test_plan_for_another_sm():
    r = invoke("plan", "decode", "--sm", "100", "--all")
    assert r.exit_code == 0 and "on sm100" in r.stdout and "decode-b1024" in r.stdout
    r = invoke("plan", "decode", "--sm", "90", "--all")
    assert "decode-b1024" not in r.stdout


def test_where_option_narrows_plan_and_tune(monkeypatch, tmp_path):
    """``--where`` adds a filter to the config's own: plan lists only the cases it keeps; a filter that
    does not parse or cannot be evaluated is one line and exit 2 (plan and tune alike)."""
    r = invoke("plan", "decode", "--sm", "90", "--all", "--where", "layout == 'v_last'", "-w", "batch == 512")
    assert r.exit_code == 0 and "decode: 4 cases" in r.stdout, r.output
    assert "cute: the cute kernel reads K-last state" in r.stdout  # cute runs none: every case is V-last
    monkeypatch.setenv("GDNBENCH_CACHE", str(tmp_path))
    for cmd in (["plan", "decode"], ["tune", "decode", "-b", "triton"]):
        for bad, needle in (("layout ==", "--where 'layout =='"), ("batch / 0 > 1", "division by zero")):
            r = invoke(*cmd, "--where", bad)
            assert r.exit_code == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, (cmd, r.output)
    assert not any(tmp_path.iterdir())


def test_where_option_holds_on_a_gpu_with_a_per_sm_override():
    """decode.yaml has an sm100 override: the command line's filter is kept through its merge (it was
    once dropped there, so a Blackwell GPU ran the whole config)."""
    r = invoke("plan", "decode", "--sm", "100", "--all", "-w", "batch == 1024 and layout == 'v_last'")
    assert r.exit_code == 0 and "on sm100" in r.stdout, r.output
    assert "decode-b1024" in r.stdout and "decode-b1-" not in r.stdout and "klast" not in r.stdout


def test_where_option_narrows_sweep_and_check(tmp_path, write_yaml):
    """``sweep`` and ``check`` take ``--where`` as plan and tune do: only the cases it keeps run, and the
    run's config.yaml records the filter (what ``--resume`` reads back)."""
    cfg = write_yaml(SMALL.format(backends="[torch]"), name="small.yaml")
    for cmd in ("sweep", "check"):
        out = tmp_path / cmd
        r = invoke(cmd, cfg, "--where", "batch == 3", "--out", out, "--no-progress")
        assert r.exit_code == 0, r.output
        rows = read_rows(out / "rows.csv")
        assert {x["batch"] for x in rows} == {"3"} and len(rows) == 2, rows  # 2 pools x torch at batch 3
        assert "batch == 3" in (out / "config.yaml").read_text()
        r = invoke(cmd, cfg, "--where", "batch ==", "--out", tmp_path / f"{cmd}-bad", "--no-progress")
        assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "--where 'batch =='" in r.stderr, r.output
        assert not (tmp_path / f"{cmd}-bad").exists()


# ---- check runs never poison --resume, plot or compare ---------------------------------------------

def test_check_run_is_separate_from_sweeps(tmp_path, write_yaml):
    from gdnbench.runner import CHECK_ONLY_NOTE

    cfg = write_yaml(SMALL.format(backends="[torch]"), name="small.yaml")
    root = tmp_path / "results"
    assert invoke("sweep", cfg, "--results-root", root, "--no-progress").exit_code == 0
    (timed,) = [p for p in root.iterdir()]
    r = invoke("check", cfg, "--results-root", root, "--no-progress")
    assert r.exit_code == 0, r.output
    (checked,) = [p for p in root.iterdir() if p != timed]
    assert checked.name.endswith("_small-check") and json.loads((checked / "env.json").read_text())["check_only"]
    assert all(x["reason"] == CHECK_ONLY_NOTE for x in read_rows(checked / "rows.csv"))
    # --resume of the sweep finds the timed run, not the newer check-only one
    r = invoke("sweep", cfg, "--results-root", root, "--resume", "--no-progress")
    assert r.exit_code == 0 and f"{timed}/rows.csv" in r.stdout and "3 cases: 3 ok" in r.stdout, r.output
    # ... and refuses a check-only folder named explicitly
    r = invoke("sweep", cfg, "--out", checked, "--resume", "--no-progress")
    assert r.exit_code == 2 and "check-only run" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # plot: the check-only run is left out, the timed rows are drawn
    r = invoke("plot", timed, checked, "-o", tmp_path / "plots")
    assert r.exit_code == 0, r.output
    assert "check-only" in r.stderr and not r.stdout.startswith("0 figures")
    # plot with nothing to draw: one line, exit 2, no folder
    r = invoke("plot", checked, "-o", tmp_path / "plots2")
    assert r.exit_code == 2 and "nothing to draw" in r.stderr and not (tmp_path / "plots2").exists()
    # compare refuses a side without timings, and two runs with no row in common
    r = invoke("compare", timed, checked)
    assert r.exit_code == 2 and "no timed rows" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    other = write_yaml(SMALL.format(backends="[torch]").replace("batch: [1, 3]", "batch: [2]"), name="other.yaml")
    assert invoke("sweep", other, "--out", tmp_path / "other", "--no-progress").exit_code == 0
    r = invoke("compare", timed, tmp_path / "other")
    assert r.exit_code == 2 and "nothing to compare" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_resumed_summary_counts_every_row(tmp_path, write_yaml, monkeypatch):
    cfg = write_yaml(SMALL.format(backends="[torch]"))
    out = tmp_path / "r"
    real_write = interrupt_after_two_rows(monkeypatch)
    assert invoke("sweep", cfg, "--out", out, "--no-progress").exit_code == 130
    monkeypatch.setattr(RowWriter, "write", real_write)
    r = invoke("sweep", cfg, "--out", out, "--resume", "--no-progress")
    assert r.exit_code == 0 and "3 cases: 3 ok (this resume: 1 ok)" in r.stdout, r.stdout


# ---- plan and list agree with sweep about Triton on a CPU -------------------------------------------

def test_plan_and_list_agree_with_sweep_on_triton(write_yaml, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cfg = write_yaml(SMALL.format(backends="[torch, triton, fla]").replace("head_dim_k: [8], head_dim_v: [8]", "head_dim_k: [16], head_dim_v: [16]"))
    r = invoke("plan", cfg)
    assert r.exit_code == 0, r.output
    assert "needs a CUDA GPU" not in r.stdout and "9 (case, backend) pairs will run" in r.stdout, r.stdout
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    r = invoke("list")
    assert r.exit_code == 0
    lines = {line.split()[1]: line for line in r.stdout.splitlines() if line.startswith("│ ") and len(line.split()) > 2}
    for name in ("triton", "fla", "fla_kernel"):
        assert "no:" not in lines[name] and "yes (Triton" in lines[name], lines[name]


# ---- an empty selection is bad input -----------------------------------------------------------------

@pytest.mark.parametrize("extra,where,needle", [
    (["-c", "nosuchcase"], None, "--case nosuchcase: no case"),
    ([], "batch > 100", "selects no case"),
])
def test_empty_selection_exit_2(tmp_path, write_yaml, extra, where, needle):
    text = SMALL.format(backends="[torch]") + (f"where: ['{where}']\n" if where else "")
    cfg = write_yaml(text)
    for cmd in ("sweep", "check"):
        r = invoke(cmd, cfg, "--results-root", tmp_path / "root", "--no-progress", *extra)
        assert r.exit_code == 2 and needle in r.stderr, r.output
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
        assert not (tmp_path / "root").exists()
    if where:
        r = invoke("plan", cfg)
        assert r.exit_code == 2 and "selects no case" in r.stderr


def test_energy_needs_gpu_graph_mode(tmp_path, write_yaml):
    cfg = write_yaml(SMALL.format(backends="[torch]"))
    r = invoke("sweep", cfg, "--energy", "--results-root", tmp_path / "root", "--no-progress")
    assert r.exit_code == 2 and "--energy" in r.stderr and "timing mode is cpu" in r.stderr
    assert not (tmp_path / "root").exists()
