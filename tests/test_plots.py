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


def test_log_axis_labels_read_off_a_speedup():
    from gdnbench.plots import log_ticks

    fig, ax = plt.subplots()
    ax.plot([1, 2, 4], [20.0, 27.0, 35.0])
    ax.set_yscale("log")
    log_ticks(ax.yaxis)
    fig.canvas.draw()
    lo, hi = ax.get_ylim()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text() and lo <= t.get_position()[1] <= hi]
    assert len(labels) >= 2 and {"20", "30"} <= set(labels), labels
    plt.close(fig)


def test_backend_colours_far_apart():
    import itertools

    from matplotlib.colors import to_rgb

    from gdnbench.backends.registry import BACKEND_NAMES
    from gdnbench.plots import COLORS, OTHER_COLOR

    assert set(BACKEND_NAMES) <= set(COLORS)
    def dist(a, b):
        return sum((x - y) ** 2 for x, y in zip(to_rgb(a), to_rgb(b))) ** 0.5 * 255

    for a, b in itertools.combinations([*COLORS.values(), OTHER_COLOR], 2):
        assert dist(a, b) > 60, (a, b)
    assert dist(COLORS["triton"], COLORS["triton_pdl"]) > 90


def test_unconverged_points_hollow(tmp_path):
    from results_fixture import cases

    loose = {(c.id, "fla") for c in cases() if c.phase == "decode" and c.batch == 4}
    make_run(tmp_path / "runs", "h100", "h100", loose=loose)
    plot_results([tmp_path / "runs"], tmp_path / "plots")
    svg = (tmp_path / "plots" / "decode_qwen3-next-80b-tp1_latency.svg").read_text()
    assert "not converged" in svg and 'id="unconverged' in svg


def test_cpu_rows_no_speedup_panel(tmp_path):
    make_run(tmp_path / "runs", "cpu", "h100", mode="cpu")
    written = plot_results([tmp_path / "runs"], tmp_path / "plots")
    names = {p.name for p in written}
    assert "decode_qwen3-next-80b-tp1_latency.png" in names
    assert not any("speedup" in n for n in names)
    assert "indicative only" in (tmp_path / "plots" / "decode_qwen3-next-80b-tp1_latency.svg").read_text()


def test_runs_of_other_timer_revisions_not_mixed(tmp_path):
    old = make_run(tmp_path / "runs", "2026-01-01_h100_decode", "h100", scale={"torch": 3.0})
    make_run(tmp_path / "runs", "2026-02-01_h100_roofline", "h100", env={"timer_revision": 2})
    notes: list[str] = []
    plot_results([tmp_path / "runs"], tmp_path / "plots", notes=notes)
    svg = (tmp_path / "plots" / "decode_qwen3-next-80b-tp1_latency.svg").read_text()
    assert old.name not in svg and "2026-02-01_h100_roofline" in svg
    assert any(n.startswith(old.name) for n in notes)


def test_mixed_gpu_run_splits_by_gpu(tmp_path):
    # One scale-out run whose rows came from two GPU models: each GPU is its own column and summary section.
    from results_fixture import make_mixed_run

    run = make_mixed_run(tmp_path / "runs", "fleet")
    df = load_results([run])
    assert set(df.gpu_label) == {"NVIDIA H100 80GB HBM3 (sm90)", "NVIDIA B200 (sm100)"} and set(df.results_dir) == {"fleet"}
    plot_results([run], tmp_path / "plots")
    svg = (tmp_path / "plots" / "decode_qwen3-next-80b-tp1_latency.svg").read_text()
    assert "NVIDIA H100 80GB HBM3 (sm90)" in svg and "NVIDIA B200 (sm100)" in svg
    summary = (tmp_path / "plots" / "summary.md").read_text()
    assert "## NVIDIA H100 80GB HBM3 (sm90)" in summary and "## NVIDIA B200 (sm100)" in summary
