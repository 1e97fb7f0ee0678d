"""Makefile: the venv on a GPU machine (system site-packages, GPU extras, offline wheels) and on a CPU
(CPU torch), and `make plots` drawing only committed runs; all as dry runs (`make -n`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not shutil.which("make"), reason="needs make")


def dry(*args, cwd=REPO, path_prefix: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items()   # also when run under `make test` (a nested make)
           if k not in ("GPU", "WHEELS", "VENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEFILES", "MAKEOVERRIDES")}
    if path_prefix:
        env["PATH"] = f"{path_prefix}:{env['PATH']}"
    r = subprocess.run(["make", "--no-print-directory", "-n", "-B", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return r.stdout


def test_gpu_venv_reuses_system_torch_and_installs_gpu_extras(tmp_path):
    text = dry("venv", "GPU=1", f"VENV={tmp_path / 'v'}")
    assert "-m venv --system-site-packages" in text
    assert "pip install -q  --no-deps -e .\n" in text and "missing_requirements.py dependencies gpu" in text
    assert "[dev" not in text and "missing_requirements.py dev" not in text   # a sweep needs no test tools
    assert "torch==" not in text and "TORCH_SPEC" not in text   # never a CPU torch on a GPU machine
    assert "torch.cuda.is_available()" in text                 # the reused torch must see the GPU


def test_gpu_venv_offline_from_a_wheel_folder(tmp_path):
    text = dry("venv", "GPU=1", f"VENV={tmp_path / 'v'}", "WHEELS=/bundle/wheels")
    assert '--no-index --find-links /bundle/wheels --no-deps -e .\n' in text
    assert "pip install -q --no-index --find-links /bundle/wheels -r" in text


def test_gpu_make_test_adds_the_dev_extra(tmp_path):
    text = dry("test", "GPU=1", f"VENV={tmp_path / 'v'}", "WHEELS=/w")
    lines = text.splitlines()
    gpu = next(i for i, x in enumerate(lines) if "missing_requirements.py dependencies gpu" in x)
    dev = next(i for i, x in enumerate(lines) if "missing_requirements.py dev" in x)
    assert gpu < dev < next(i for i, x in enumerate(lines) if "-m pytest" in x)
    cpu = dry("test", "GPU=0", f"VENV={tmp_path / 'c'}")
    assert cpu.count(".[dev") == 1 and '-e ".[dev]"' in cpu   # on a CPU the venv has it already


def test_cpu_venv_as_before(tmp_path):
    text = dry("venv", "GPU=0", f"VENV={tmp_path / 'v'}")
    assert "--system-site-packages" not in text and "gpu" not in text.replace(".installed-cpu", "")
    assert '"torch==2.13.0"' in text and '-e ".[dev]"' in text


def test_gpu_detected_with_nvidia_smi(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    smi = fake / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n")
    smi.chmod(0o755)
    assert "--system-site-packages" in dry("venv", f"VENV={tmp_path / 'v'}", path_prefix=str(fake))
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert "--system-site-packages" not in dry("venv", f"VENV={tmp_path / 'v'}", path_prefix=str(fake))


@pytest.mark.skipif(not shutil.which("git"), reason="needs git")
def test_plots_draws_committed_runs_only(tmp_path, monkeypatch):
    """make plots draws the curated baselines (results/<device>/<config>/ of the sweep configs) that
    git tracks: never an untracked local run, never a tool's folder (a tuning CSV, a trace)."""
    from gdnbench.cli import app
    from gdnbench.outpaths import curated_runs

    repo = tmp_path / "repo"
    repo.mkdir()
    for run in ("h100-sm90/decode", "h100-sm90/triton-tune", "cpu/smoke-cpu", "b200-sm100/decode"):
        (repo / "results" / run).mkdir(parents=True)
        (repo / "results" / run / "rows.csv").write_text("schema_version\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    assert curated_runs(repo / "results") == [repo / "results/b200-sm100/decode", repo / "results/h100-sm90/decode"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "results/h100-sm90", "results/cpu"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "runs"], check=True)
    # in a checkout: only the tracked sweep run (not the tuner's folder, the CPU run or the untracked b200)
    assert curated_runs(repo / "results") == [repo / "results/h100-sm90/decode"]
    (line,) = [x for x in dry("plots", "GPU=0", f"VENV={tmp_path / 'v'}").splitlines() if "gdnbench plot" in x]
    assert line.split("gdnbench plot")[1].split() == ["-o", "results/plots"]  # the runs come from outpaths
    monkeypatch.chdir(tmp_path)  # no results/ here: one line, exit 2
    r = CliRunner().invoke(app, ["plot"])
    assert r.exit_code == 2 and "no curated baseline" in r.stderr and len(r.stderr.strip().splitlines()) == 1