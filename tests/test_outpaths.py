"""outpaths.py and every command that writes: a path that cannot be written is one line naming the
option, exit 2, no traceback, and nothing written."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from results_fixture import make_run
from typer.testing import CliRunner

import gdnbench.outpaths as outpaths
from gdnbench.cli import app
from gdnbench.outpaths import OutPathError, check_out_dir, check_out_file

SMALL = """
phase: decode
backends: [torch]
axes: {batch: [1], heads: [[1, 2]], head_dim_k: [8], head_dim_v: [8]}
timing: {min_samples: 3, min_time_s: 0.0, max_time_s: 0.05}
"""


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_exit_2(r, *needles):
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.output, r.output
    for n in needles:
        assert n in lines[0], lines[0]


def snapshot(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def paths(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    return {"file": f, "under_file": f / "sub" / "dir", "locked": locked / "new"}


@pytest.fixture
def unwritable(monkeypatch, paths):
    """``locked`` is reported unwritable (as os.access reports a read-only or immutable folder; chmod
    does not stop root, who runs CI)."""
    real = os.access
    locked = paths["locked"].parent

    def access(path, mode, *a, **k):
        return False if os.fspath(path) == os.fspath(locked) and mode & os.W_OK else real(path, mode, *a, **k)

    monkeypatch.setattr(outpaths.os, "access", access)


def test_check_out_dir(paths, unwritable):
    with pytest.raises(OutPathError, match="is an existing file"):
        check_out_dir(paths["file"], "--out")
    with pytest.raises(OutPathError, match="a_file is a file, not a folder"):
        check_out_dir(paths["under_file"], "--out")
    with pytest.raises(OutPathError, match="locked is not writable"):
        check_out_dir(paths["locked"], "--out")
    check_out_dir(paths["file"].parent / "fine" / "deeper", "--out")


def test_check_out_file(paths, unwritable):
    with pytest.raises(OutPathError, match="is a folder"):
        check_out_file(paths["file"].parent, "-o")
    with pytest.raises(OutPathError, match="is a file, not a folder"):
        check_out_file(paths["file"] / "x.md", "-o")
    with pytest.raises(OutPathError, match="not writable"):
        check_out_file(paths["locked"].parent / "x.md", "-o")
    check_out_file(paths["file"].parent / "x.md", "-o")


@pytest.mark.parametrize("kind,needle", [("file", "is an existing file"), ("under_file", "is a file, not a folder"),
                                         ("locked", "is not writable")])
@pytest.mark.parametrize("cmd", ["sweep", "check"])
def test_run_out_bad(tmp_path, write_yaml, paths, unwritable, kind, needle, cmd):
    cfg = write_yaml(SMALL)
    before = snapshot(tmp_path)
    one_line_exit_2(invoke(cmd, cfg, "--out", paths[kind], "--no-progress"), "--out", needle)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind,needle", [("file", "is an existing file"), ("under_file", "is a file, not a folder"),
                                         ("locked", "is not writable")])
def test_results_root_bad(tmp_path, write_yaml, paths, unwritable, kind, needle):
    cfg = write_yaml(SMALL)
    before = snapshot(tmp_path)
    one_line_exit_2(invoke("sweep", cfg, "--results-root", paths[kind], "--no-progress"),
                    "--results-root", needle)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind,needle", [("file", "is an existing file"), ("under_file", "is a file, not a folder"),
                                         ("locked", "is not writable")])
def test_plot_out_bad(tmp_path, paths, unwritable, kind, needle):
    run = make_run(tmp_path / "runs", "h100")
    before = snapshot(tmp_path)
    one_line_exit_2(invoke("plot", run, "-o", paths[kind]), "--out", needle)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind,needle", [("under_file", "is a file, not a folder"), ("locked", "not writable")])
def test_compare_out_bad(tmp_path, paths, unwritable, kind, needle):
    run = make_run(tmp_path / "runs", "h100")
    target = paths[kind] if kind == "under_file" else paths["locked"].parent / "cmp.md"
    before = snapshot(tmp_path)
    one_line_exit_2(invoke("compare", run, run, "-o", target), "--out", needle)
    one_line_exit_2(invoke("compare", run, run, "-o", tmp_path), "--out", "is a folder")
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(not shutil.which("chattr") or os.geteuid() != 0, reason="needs chattr and root")
def test_immutable_folder(tmp_path, write_yaml):
    folder = tmp_path / "immutable"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable attribute")
    cfg = write_yaml(SMALL)
    try:
        one_line_exit_2(invoke("sweep", cfg, "--out", folder / "run", "--no-progress"),
                        "--out", "not writable")
        assert list(folder.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_calibrate_and_trace_out_bad(tmp_path, write_yaml, paths):
    one_line_exit_2(invoke("calibrate", "-o", paths["under_file"]), "--out", "is a file, not a folder")
    one_line_exit_2(invoke("trace", write_yaml(SMALL), "--out", paths["file"], "--profiler", "torch"),
                    "--out", "is an existing file")
