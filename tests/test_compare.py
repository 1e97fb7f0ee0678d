"""compare.py: noise-aware verdicts; a crafted 10% regression fails, an unchanged rerun passes."""

from __future__ import annotations

import pytest
from results_fixture import case, make_run
from typer.testing import CliRunner

from gdnbench.cli import app
from gdnbench.compare import compare_runs, verdict


@pytest.mark.parametrize("ratio,noise,expected", [
    (1.10, 0.005, "slower"), (0.90, 0.005, "faster"), (1.01, 0.005, "same"), (1.03, 0.001, "same"),
    (1.10, 0.08, "ambiguous"), (1.00, 0.05, "ambiguous"), (1.06, 0.02, "slower"), (1.06, 0.04, "ambiguous"),
])
def test_verdict(ratio, noise, expected):
    assert verdict(ratio, noise, threshold=0.05) == expected


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_unchanged_rerun_passes(tmp_path):
    a = make_run(tmp_path, "base")
    b = make_run(tmp_path, "rerun", jitter=0.004)  # +-0.4%: within noise and threshold
    assert set(compare_runs([a], [b]).table.verdict) == {"same"}
    r = invoke("compare", a, b)
    assert r.exit_code == 0, r.output
    assert "same: " in r.stdout and "slower" not in r.stdout


def test_crafted_regression_fails(tmp_path):
    a = make_run(tmp_path, "base")
    b = make_run(tmp_path, "new", scale={"flashinfer": 1.10})
    c = compare_runs([a], [b])
    slow = c.table[c.table.verdict == "slower"]
    assert len(slow) > 0 and set(slow.backend) == {"flashinfer"} and c.failed
    r = invoke("compare", a, b, "--changed-only")
    assert r.exit_code == 1 and "**slower**" in r.stdout and "| torch |" not in r.stdout
    # a higher threshold lets a 10% slowdown through
    assert invoke("compare", a, b, "--threshold", "0.15").exit_code == 0


def test_broken_rows_and_warnings(tmp_path):
    a = make_run(tmp_path, "base", "h100")
    bad = case(batch=4, state_dtype="float32", pool="scattered")
    b = make_run(tmp_path, "new", "b200", fail={(bad.id, "flashinfer")})
    c = compare_runs([a], [b])
    assert (c.table.verdict == "broken").sum() == 1 and c.failed
    assert any("different GPUs" in w for w in c.warnings)
    r = invoke("compare", a, b)
    assert r.exit_code == 1 and "warning: different GPUs" in r.stderr


def test_bad_threshold(tmp_path):
    a = make_run(tmp_path, "base")
    r = invoke("compare", a, a, "--threshold", "5")
    assert r.exit_code == 2 and "--threshold" in r.stderr


def test_unconverged_rows_marked(tmp_path):
    from gdnbench.compare import markdown

    bad = case(batch=4, state_dtype="float32", pool="scattered")
    a = make_run(tmp_path, "base")
    b = make_run(tmp_path, "new", loose={(bad.id, "flashinfer")})
    text = markdown(compare_runs([a], [b]))
    row = next(line for line in text.splitlines() if f"| {bad.id} |" in line and "| flashinfer |" in line)
    assert "†" in row and "† not converged" in text
    assert sum("†" in line for line in text.splitlines() if line.startswith("| ")) == 1


def test_mixed_gpu_run_compares_each_gpu_with_itself(tmp_path):
    # A scale-out run over H100s and B200s holds every pair once per GPU model: compare matches rows by
    # GPU too, so a B200 regression shows on B200 rows only and H100 rows compare with H100 rows.
    from results_fixture import make_mixed_run

    base = make_mixed_run(tmp_path, "base")
    new = make_mixed_run(tmp_path, "new", scale_b200={"flashinfer": 1.10})
    c = compare_runs([base], [new])
    slow = c.table[c.table.verdict == "slower"]
    assert len(slow) and set(slow.gpu_label_new) == {"NVIDIA B200 (sm100)"} and set(slow.backend) == {"flashinfer"}
    assert set(c.table[c.table.verdict == "same"].gpu_label_base) == {"NVIDIA B200 (sm100)", "NVIDIA H100 80GB HBM3 (sm90)"}
    assert not c.warnings or not any("different GPUs" in w for w in c.warnings)
    # against a one-GPU run: only the GPU in common is matched, the other GPU's rows are "only in new"
    h100 = make_run(tmp_path, "h100-only", "h100")
    one = compare_runs([h100], [base])
    assert set(one.table.gpu_label_base) == {"NVIDIA H100 80GB HBM3 (sm90)"} and one.only_new > 0
    assert invoke("compare", h100, base).exit_code == 0
    # no GPU in common and several GPUs on one side: refused in one line (exit 2)
    r = invoke("compare", make_run(tmp_path, "a100-only", "a100"), base)
    assert r.exit_code == 2 and "no GPU in common" in r.stderr
