"""gdnbench targets: each bound kind judged on the rows its ``where`` keeps (met, missed with the worst row,
or no rows), each GPU of a mixed run on its own, a bad targets file refused in one line, the command's
exits, and the shipped targets evaluated on the committed H100 roofline runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from results_fixture import make_mixed_run, make_run
from typer.testing import CliRunner

from gdnbench.analysis import load_results
from gdnbench.cli import app, config_dir
from gdnbench.config import ConfigError
from gdnbench.targets import DEFAULT, Target, Targets, check, load_targets, report

REPO = Path(__file__).resolve().parents[1]


def targets(*ts: dict) -> Targets:
    return Targets(targets=[Target(**t) for t in ts])


def test_each_bound_on_the_rows_its_filter_keeps(tmp_path):
    # triton 10% slower than flashinfer everywhere; the fixture's µs: (2 + B x T / 8) x speed
    df = load_results([make_run(tmp_path, "run", extra={"triton": 1.10})])
    res = check(df, targets(
        {"name": "vs peers", "backend": "triton", "vs": "peers"},
        {"name": "vs fla", "backend": "triton", "vs": "fla", "where": "phase == 'decode'"},
        {"name": "B = 1 fast", "backend": "triton", "where": "phase == 'decode' and batch == 1", "max_us": 2.4},
        {"name": "B = 1 faster", "backend": "triton", "where": "phase == 'decode' and batch == 1", "max_us": 2.0},
        {"name": "bandwidth", "backend": "flashinfer", "where": "phase == 'decode' and batch == 256", "min_pct_bw": 1},
        {"name": "nothing", "backend": "triton", "where": "batch == 999", "max_us": 1},
    )).set_index("target")
    tri = df[(df.backend == "triton") & (df.status == "ok")]
    assert res.loc["vs peers", "rows"] == len(tri) and res.loc["vs peers", "missed"] == len(tri)
    assert res.loc["vs peers", "worst"] == pytest.approx(1.10) and res.loc["vs peers", "unit"] == "x flashinfer"
    assert res.loc["vs fla", "missed"] == 0 and res.loc["vs fla", "rows"] == len(tri[tri.phase == "decode"])
    b1 = tri[(tri.phase == "decode") & (tri.batch == 1)]
    assert res.loc["B = 1 fast", "missed"] == 0 and res.loc["B = 1 fast", "rows"] == len(b1) == 4
    assert res.loc["B = 1 faster", "missed"] == 4
    assert res.loc["B = 1 faster", "short_by"] == pytest.approx(2.125 * 1.10 - 2.0)
    bw = df[(df.backend == "flashinfer") & (df.phase == "decode") & (df.batch == 256)].pct_peak_bw
    assert res.loc["bandwidth", "worst"] == pytest.approx(bw.min())
    assert res.loc["bandwidth", "missed"] == int((bw < 1).sum())
    assert res.loc["nothing", "rows"] == 0
    text = report(res.reset_index())
    assert "| B = 1 faster | triton | <= 2 µs | 4 | **missed in 4** | 2.3 µs |" in text
    assert "| nothing | triton | <= 1 µs | 0 | no rows in this run | | |" in text


def test_each_gpu_on_its_own(tmp_path):
    # flashinfer is 20% slower on the B200: triton (1.1x) misses on the H100 only
    run = make_mixed_run(tmp_path, "mixed", extra={"triton": 1.10}, scale_b200={"flashinfer": 1.2, "fla_kernel": 1.2})
    res = check(load_results([run]), targets({"name": "t", "backend": "triton", "vs": "peers"}))
    by_gpu = {r.gpu.split(" (")[0]: r.missed for r in res.itertuples()}
    assert len(by_gpu) == 2
    assert by_gpu["NVIDIA H100 80GB HBM3"] > 0 and by_gpu["NVIDIA B200"] == 0


def test_cpu_timings_are_not_judged(tmp_path):
    """A run timed on the CPU (host wall clock) has no row for any target."""
    df = load_results([make_run(tmp_path, "cpu", extra={"triton": 1.10}, mode="cpu")])
    res = check(df, targets({"name": "vs", "backend": "triton", "vs": "peers"},
                            {"name": "fast", "backend": "triton", "max_us": 1}))
    assert (res.rows == 0).all()


@pytest.mark.parametrize("text,needle", [
    ("targets: [{name: a, backend: nope, max_us: 1}]", "nope"),
    ("targets: [{name: a, backend: triton}]", "exactly one of"),
    ("targets: [{name: a, backend: triton, max_us: 1, vs: peers}]", "exactly one of"),
    ("targets: [{name: a, backend: triton, vs: someone}]", "neither 'peers'"),
    ("targets: [{name: a, backend: triton, max_us: 1, where: 'batch >'}]", "not a valid expression"),
    ("targets: [{name: a, backend: triton, max_us: 1, where: 'open(1)'}]", "open"),
    ("targets: [{name: a, backend: triton, max_us: 1, colour: red}]", "colour"),
    ("targets: [{name: a, backend: triton, min_pct_bw: '85'}]", "min_pct_bw"),  # strict, like the configs
])
def test_bad_targets_file_is_one_line(tmp_path, text, needle):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_targets(path)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_targets_command(tmp_path):
    """The report on stdout and exit 0; --strict exits 1 on a missed target; a bad targets file or no run
    is one line on stderr and exit 2."""
    run = make_run(tmp_path, "run", extra={"triton": 1.10})
    ok = tmp_path / "ok.yaml"
    ok.write_text("targets: [{name: slow enough, backend: triton, max_us: 10000}]")
    miss = tmp_path / "miss.yaml"
    miss.write_text("targets: [{name: vs peers, backend: triton, vs: peers}]")
    r = CliRunner().invoke(app, ["targets", str(run), "--targets", str(ok), "--strict"])
    assert r.exit_code == 0 and "| slow enough | triton | <= 10000 µs |" in r.stdout and "met" in r.stdout
    assert CliRunner().invoke(app, ["targets", str(run), "--targets", str(miss)]).exit_code == 0
    assert CliRunner().invoke(app, ["targets", str(run), "--targets", str(miss), "--strict"]).exit_code == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets: [{name: a, backend: triton}]")
    for args in (["targets", str(run), "--targets", str(bad)], ["targets", str(tmp_path / "none")]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output


def test_shipped_targets_on_the_h100_roofline_runs():
    """The shipped targets file loads, and every roofline target (bandwidth and B = 1 latency) is met on
    the committed H100 roofline runs, as when those targets were set."""
    t = load_targets(config_dir() / DEFAULT)
    res = check(load_results([REPO / "results/h100-sm90/roofline-decode", REPO / "results/h100-sm90/roofline-mtp"]), t)
    roofline = res[res.bound.str.startswith((">=", "<="))]
    checked = roofline[roofline.rows > 0]
    assert len(checked) == 6 and (checked.missed == 0).all(), checked[["target", "worst", "worst_case"]]
