"""distributed.py: scale-out sweeps on a local Ray cluster whose workers stand in for GPUs (custom
resource ``fake_gpu``; CPU timing): sharding, the driver as single writer, merge into one rows.csv,
retry after a killed worker, an error row after two losses, resume after the driver stops, and
``--gpus 1`` giving the rows of a plain sweep. One cluster for the whole module."""

from __future__ import annotations

import csv
import json
import os
import sys

import pytest
from typer.testing import CliRunner

from gdnbench.cli import app
from gdnbench.cases import expand
from gdnbench.config import load_sweep
from gdnbench.distributed import FAKE_GPUS_ENV, FAULT_ENV, INSTALL_HINT, ClusterSpec, run_distributed
from gdnbench.runner import RunError, RunOptions, run_sweep

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[cluster]'); scale-out tests skipped")

CONFIG = """
phase: decode
backends: [torch]
baseline: torch
axes:
  batch: [1, 3]
  heads: [[2, 4]]
  head_dim_k: [16]
  head_dim_v: [32]
  layout: [k_last, v_last]
  state_dtype: [float32]
  pool: [contiguous, scattered]
timing: {mode: auto, warmup: 1, min_samples: 3, min_time_s: 0.0, max_time_s: 0.01, target_rel_noise: 0.05}
"""
PAIRS = 8  # 2 batches x 2 layouts x 2 pools, one backend


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster with two stand-in GPUs for every test of this module."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=0, resources={"fake_gpu": 2}, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture
def sweep(tmp_path, cluster, monkeypatch):
    monkeypatch.setenv(FAKE_GPUS_ENV, "2")
    monkeypatch.delenv(FAULT_ENV, raising=False)
    path = tmp_path / "tiny.yaml"
    path.write_text(CONFIG)
    return load_sweep(path)


def rows(directory):
    with (directory / "rows.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def spec(gpus="2"):
    return ClusterSpec.from_options(gpus, None)


def opts(out, **kw):
    return RunOptions(out_dir=out, progress=False, **kw)


def test_shards_over_workers_into_one_run(sweep, tmp_path):
    summary = run_distributed(sweep, opts(tmp_path / "run"), spec("all"))
    got = rows(summary.directory)
    keys = [(r["case_id"], r["backend"]) for r in got]
    assert len(got) == PAIRS and len(set(keys)) == PAIRS and {r["status"] for r in got} == {"ok"}
    # both stand-in GPUs ran pairs, and every row says where
    assert {r["gpu_uuid"] for r in got} == {"fake-0", "fake-1"} and all(r["host"] for r in got)
    # one writer: the driver; the rows came from two other processes
    env = json.loads((summary.directory / "env.json").read_text())
    pids = {w["pid"] for w in env["workers"]}
    assert len(env["workers"]) == 2 and len(pids) == 2 and os.getpid() not in pids
    assert (summary.directory / "rows.csv").read_text().count("schema_version") == 1
    # per-worker compile caches: two different folders
    caches = [w["caches"]["TRITON_CACHE_DIR"] for w in env["workers"]]
    assert len(set(caches)) == 2 and all("fake" in c for c in caches)
    with (summary.directory / "samples.csv").open(newline="") as f:
        samples = list(csv.DictReader(f))
    assert {s["gpu_uuid"] for s in samples} == {"fake-0", "fake-1"}
    assert {(s["case_id"], s["backend"]) for s in samples} == set(keys)


def test_killed_worker_pair_retried(sweep, tmp_path, monkeypatch):
    from gdnbench.cases import expand

    victim = expand(sweep).cases[0].id
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, f"kill-once|{victim}|torch|{marker}")
    summary = run_distributed(sweep, opts(tmp_path / "run"), spec())
    got = rows(summary.directory)
    assert marker.exists()  # a worker did SIGKILL itself on that pair
    assert len(got) == PAIRS and len({(r["case_id"], r["backend"]) for r in got}) == PAIRS
    assert {r["status"] for r in got} == {"ok"}


def test_pair_lost_twice_is_an_error_row(sweep, tmp_path, monkeypatch):
    from gdnbench.cases import expand

    victim = expand(sweep).cases[1].id
    monkeypatch.setenv(FAULT_ENV, f"kill-always|{victim}|torch")
    summary = run_distributed(sweep, opts(tmp_path / "run"), spec())
    got = {r["case_id"]: r for r in rows(summary.directory)}
    assert len(got) == PAIRS and got[victim]["status"] == "error"
    assert got[victim]["reason"].startswith("worker lost twice") and " then " in got[victim]["reason"]
    assert all(r["status"] == "ok" for c, r in got.items() if c != victim)


def test_resume_after_the_driver_stops(sweep, tmp_path):
    out = tmp_path / "run"
    seen = []

    def stop_after_three(row):
        seen.append(row)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_distributed(sweep, opts(out), spec(), on_row=stop_after_three)
    assert len(rows(out)) == 3
    summary = run_distributed(sweep, opts(out, resume=True), spec())
    got = rows(out)
    assert len(got) == PAIRS and len({(r["case_id"], r["backend"]) for r in got}) == PAIRS
    assert sum(summary.added.values()) == PAIRS - 3
    again = run_distributed(sweep, opts(out, resume=True), spec())
    assert again.added == {} and len(rows(out)) == PAIRS


def test_one_gpu_gives_the_rows_of_a_plain_sweep(sweep, tmp_path):
    plain = run_sweep(sweep, opts(tmp_path / "plain"))
    one = run_distributed(sweep, opts(tmp_path / "one"), spec("1"))
    key = lambda d: sorted((r["case_id"], r["backend"], r["status"], r["check"], r["timing_mode"]) for r in rows(d))  # noqa: E731
    assert key(plain.directory) == key(one.directory) and len(key(one.directory)) == PAIRS
    assert {r["gpu_uuid"] for r in rows(one.directory)} == {"fake-0"}


def test_cli_gpus(sweep, tmp_path):
    config = tmp_path / "tiny.yaml"
    r = CliRunner().invoke(app, ["sweep", str(config), "--gpus", "2", "--out", str(tmp_path / "cli"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert f"{PAIRS} ok" in r.stdout
    for bad, text in ((["--gpus", "x,1"], "--gpus x,1"), (["--gpus", "3"], "Ray sees 2 GPU(s)"),
                      (["--gpus", "0,1", "--cluster", "auto"], "with --cluster give a count")):
        r = CliRunner().invoke(app, ["sweep", str(config), *bad, "--out", str(tmp_path / "bad"), "--no-progress"])
        assert r.exit_code == 2 and text in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.output


def test_without_ray_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    r = CliRunner().invoke(app, ["sweep", str(config), "--gpus", "all", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and r.stderr.strip() == f"error: {INSTALL_HINT}"
    assert not (tmp_path / "x").exists()


def test_connecting_keeps_the_callers_sigterm_handler(monkeypatch):
    """``ray.init`` installs a SIGTERM handler that exits the driver; the CLI's (stop as Ctrl-C does, every
    row kept, exit 143) is put back after it, and with no handler of the caller's Ray's stays. A stand-in
    ``ray`` that installs its handler as Ray 2.60's ``init`` does."""
    import signal
    from types import SimpleNamespace

    from gdnbench.cli import sigterm_as_interrupt
    from gdnbench.distributed import connect

    def ray_exit(signum, frame):
        raise SystemExit(signum)

    fake = SimpleNamespace(is_initialized=lambda: False,
                           init=lambda **kw: signal.signal(signal.SIGTERM, ray_exit))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt():
        cli_handler = signal.getsignal(signal.SIGTERM)
        assert connect(fake, ClusterSpec("all")) and signal.getsignal(signal.SIGTERM) is cli_handler
    assert signal.getsignal(signal.SIGTERM) is before
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        assert connect(fake, ClusterSpec("all")) and signal.getsignal(signal.SIGTERM) is ray_exit
    finally:
        signal.signal(signal.SIGTERM, before)


def test_gpus_parsing():
    assert ClusterSpec("all").parsed() == (None, None)
    assert ClusterSpec("4").parsed() == (4, None)
    assert ClusterSpec("0,2").parsed() == (2, [0, 2])
    for bad in ("0", "a", "1,1", "-1,2"):
        with pytest.raises(RunError):
            ClusterSpec(bad).parsed()


def test_worker_caches_are_private_but_tables_are_the_users(tmp_path, monkeypatch):
    """A worker compiles into caches of its own, yet looks up the user's tuned tile tables where a plain
    sweep does: a --gpus sweep uses the same tiles (and says the same tile_source) as a local one."""
    from gdnbench.backends.cute.backend import cache_dir
    from gdnbench.backends.tables import user_tables
    from gdnbench.distributed import private_caches

    monkeypatch.setenv("GDNBENCH_CACHE", str(tmp_path / "user"))
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton"))
    monkeypatch.setenv("GDNBENCH_KERNEL_CACHE", "")   # restored by monkeypatch after the worker's override
    dirs = private_caches("host-gpu1")
    assert user_tables("triton") == tmp_path / "user" / "tables" / "triton"
    assert cache_dir() == tmp_path / "user" / "workers" / "host-gpu1" / "cute"
    assert dirs["TRITON_CACHE_DIR"] == str(tmp_path / "triton" / "gdnbench-host-gpu1")
    assert "GDNBENCH_CACHE" not in dirs


def test_untuned_tile_note_reaches_the_driver(sweep, tmp_path):
    """The worker reads its GPU's tile tables and the driver prints the runner's one-line note."""
    config = load_sweep(tmp_path / "tiny.yaml").model_copy(update={"backends": ["torch", "triton"]})
    o = opts(tmp_path / "check", check_only=True, case_ids=[next(iter(expand(config).cases)).id])
    one = run_distributed(config, o, spec("1"))
    plain = run_sweep(config, opts(tmp_path / "plain", check_only=True, case_ids=o.case_ids))
    untuned = [n for n in one.notes if n.startswith("tiles not tuned")]
    assert len(untuned) == 1 and untuned == [n for n in plain.notes if n.startswith("tiles not tuned")]
    assert "gdnbench tune" in untuned[0] and "triton 1 of 1 cases" in untuned[0]
