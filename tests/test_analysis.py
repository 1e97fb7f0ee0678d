"""analysis.py: loading several runs / GPUs, validity, best-backend summary."""

from __future__ import annotations

import pytest
from results_fixture import make_run

import gdnbench
from gdnbench.analysis import best_backends, latest, load_results, summary_markdown, valid


def test_load_results_combines_gpus(tmp_path):
    make_run(tmp_path, "a_h100", "h100")
    make_run(tmp_path, "b_b200", "b200", fail={("x", "y")})
    df = gdnbench.load_results([tmp_path])
    assert set(df.gpu_label) == {"NVIDIA H100 80GB HBM3 (sm90)", "NVIDIA B200 (sm100)"}
    assert set(df.results_dir) == {"a_h100", "b_b200"}
    assert df.batch.dtype.name == "Int64" and df.write_back.dtype == bool
    assert (valid(df).status == "ok").all() and len(valid(df)) < len(df)


def test_load_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_results([tmp_path / "missing"])
    (tmp_path / "rows.csv").write_text("schema_version,case_id\n99,x\n")
    with pytest.raises(ValueError, match="schema_version"):
        load_results([tmp_path / "rows.csv"])


def test_latest_keeps_newest_run(tmp_path):
    make_run(tmp_path, "2026-01-01_h100_decode", scale={"torch": 1.0})
    make_run(tmp_path, "2026-02-01_h100_decode", scale={"torch": 2.0})
    df = latest(load_results([tmp_path]))
    assert set(df[df.backend == "torch"].results_dir) == {"2026-02-01_h100_decode"}


def test_best_backends_and_markdown(tmp_path):
    make_run(tmp_path, "h", "h100")
    make_run(tmp_path, "b", "b200", scale={"fla": 0.5})  # on the "B200", fla is the fastest
    df = load_results([tmp_path])
    best = best_backends(df)
    h = best[(best.gpu.str.contains("H100")) & (best.phase == "decode")]
    assert set(h.best) == {"flashinfer"}
    b = best[(best.gpu.str.contains("B200")) & (best.phase == "decode")]
    assert set(b.best) == {"fla"} and (b.speedup_vs_next > 1).all()
    md = summary_markdown(df)
    assert "## NVIDIA B200 (sm100)" in md and "| decode | bfloat16 | k_last |" in md
