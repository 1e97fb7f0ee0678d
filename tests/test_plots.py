"""plots.py: figures render from fixture CSVs (two GPUs side by side), failed rows are never drawn
as values, and plotting never imports torch."""

from __future__ import annotations

import subprocess
import sys

import matplotlib.pyplot as plt
from results_fixture import make_run
from typer.testing import CliRunner

from gdnbench.analysis import load_results, valid
from gdnbench.cli import app
from gdnbench.plots import plot_results, prefer_pools


def test_plot_results_writes_every_figure(tmp_path):
    make_run(tmp_path / "runs", "h100", "h100", fail={("decode-x", "fla")})
    make_run(tmp_path / "runs", "b200", "b200")
    written = plot_results([tmp_path / "runs"], tmp_path / "plots")
    names = {p.name for p in written}
    for stem in ("decode_qwen3-next-80b-tp1_latency", "decode_qwen3-next-80b-tp1_speedup",
                 "decode_qwen3-next-80b-tp1_roofline", "mtp_qwen3-next-80b-tp1_latency",
                 "mtp_qwen3-next-80b-tp1_tokens", "prefill_qwen3-next-80b-tp1_throughput"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    for p in written:
        assert p.stat().st_size > 1000
    assert "NVIDIA B200 (sm100)" in (tmp_path / "plots" / "summary.md").read_text()
    svg = (tmp_path / "plots" / "decode_qwen3-next-80b-tp1_latency.svg").read_text()
    assert "NVIDIA H100 80GB HBM3 (sm90)" in svg and "NVIDIA B200 (sm100)" in svg  # one column per GPU


def test_failed_rows_are_marked_not_drawn(tmp_path):
    from results_fixture import case

    bad = case(batch=32, state_dtype="bfloat16", pool="scattered")
    make_run(tmp_path / "runs", "h100", "h100", fail={(bad.id, "fla")})
    plot_results([tmp_path / "runs"], tmp_path / "plots")
    svg = (tmp_path / "plots" / "decode_qwen3-next-80b-tp1_latency.svg").read_text()
    assert "failed the check (no latency)" in svg
    df = load_results([tmp_path / "runs"])
    assert bad.id not in set(valid(df)[valid(df).backend == "fla"].case_id)


def test_prefer_pools():
    import pandas as pd

    df = pd.DataFrame({"backend": ["a", "a", "b"], "layout": ["k_last"] * 3, "pool": ["contiguous", "scattered",
                                                                                      "contiguous"], "g": [1, 1, 1]})
    assert prefer_pools(df, ["g"]).pool.tolist() == ["scattered", "contiguous"]


def test_plot_cli_and_no_torch(tmp_path):
    make_run(tmp_path / "runs", "h100", "h100")
    code = ("import sys; from typer.testing import CliRunner; from gdnbench.cli import app; "
            f"r = CliRunner().invoke(app, ['plot', '{tmp_path / 'runs'}', '-o', '{tmp_path / 'p'}']); "
            "assert r.exit_code == 0, r.output; assert 'torch' not in sys.modules, 'plot imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "p" / "summary.md").exists()
    r = CliRunner().invoke(app, ["plot", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such results" in r.stderr
    plt.close("all")
