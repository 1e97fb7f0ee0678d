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


def test_latest_and_comparable_go_by_the_recorded_time(tmp_path):
    """Curated runs are named by config, not date: the latest is the one env.json dates last."""
    from gdnbench.analysis import comparable

    make_run(tmp_path, "decode", env={"timer_revision": 3, "timestamp": "2026-12-07T08:11:30+00:00"})
    make_run(tmp_path, "roofline-decode", env={"timer_revision": 2, "timestamp": "2026-11-30T10:00:00+00:00"},
             scale={"torch": 2.0})
    df = load_results([tmp_path])
    assert set(latest(df).results_dir) == {"decode"}
    c, dropped = comparable(df)
    assert set(c.results_dir) == {"decode"} and all(d.startswith("roofline-decode:") for d in dropped)


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


def test_batch_buckets_cover_every_batch_exactly():
    from gdnbench.analysis import BATCH_BUCKETS, batch_bucket

    for b in range(1, 5000):
        hits = [label for lo, hi, label in BATCH_BUCKETS if lo <= b <= hi]
        assert len(hits) == 1 and batch_bucket(b) == hits[0]
        label = hits[0]
        if label.endswith("+"):
            assert b >= int(label[:-1])
        else:
            lo, _, hi = label.partition("-")
            assert int(lo) <= b <= int(hi or lo), (b, label)
    assert batch_bucket(5) == "5-32" and batch_bucket(33) == "33-128" and batch_bucket(129) == "129+"


def test_baseline_is_not_a_competitor(tmp_path):
    from results_fixture import cases

    # MTP: only flashinfer and the torch baseline pass; torch must not be called "next fastest"
    fail = {(c.id, b) for c in cases() if c.phase == "mtp" for b in ("fla", "fla_kernel")}
    make_run(tmp_path, "h", "h100", fail=fail)
    df = load_results([tmp_path])
    best = best_backends(df)
    mtp = best[best.phase == "mtp"]
    assert set(mtp.best) == {"flashinfer"} and mtp.speedup_vs_next.isna().all()
    assert "torch" not in set(best.best)
    md = summary_markdown(df)
    mtp_lines = [line for line in md.splitlines() if line.startswith("| mtp")]
    assert mtp_lines and all("no other backend" in line and "x)" not in line for line in mtp_lines)


def test_cpu_timings_claim_no_speedup(tmp_path):
    make_run(tmp_path, "c", "h100", mode="cpu")
    df = load_results([tmp_path])
    assert best_backends(df).empty
    md = summary_markdown(df)
    assert "indicative only" in md and "x)" not in md


def test_unconverged_winner_marked(tmp_path):
    from results_fixture import cases

    from gdnbench.analysis import UNCONVERGED_MARK

    loose = {(c.id, "flashinfer") for c in cases() if c.phase == "decode" and c.batch == 1}
    make_run(tmp_path, "h", "h100", loose=loose)
    md = summary_markdown(load_results([tmp_path]))
    line = next(x for x in md.splitlines() if x.startswith("| decode | bfloat16"))
    assert line.split("|")[4].strip().endswith(UNCONVERGED_MARK)   # batch 1-4: unconverged winner
    assert not line.split("|")[5].strip().endswith(UNCONVERGED_MARK)


def test_timed_and_comparable_runs(tmp_path):
    from gdnbench.analysis import comparable, timed_runs

    make_run(tmp_path, "2026-01-01_h100_decode")                       # no timer revision: stands alone
    make_run(tmp_path, "2026-02-01_h100_decode", env={"timer_revision": 2}, scale={"torch": 2.0})
    make_run(tmp_path, "2026-03-01_h100_decode-more", env={"timer_revision": 2})
    check = make_run(tmp_path, "2026-04-01_h100_decode-check", env={"check_only": True})
    df = load_results([tmp_path])
    t, ignored = timed_runs(df)
    assert ignored == [check.name] and check.name not in set(t.results_dir)
    c, dropped = comparable(t)
    assert set(c.results_dir) == {"2026-02-01_h100_decode", "2026-03-01_h100_decode-more"}
    assert dropped and all(d.startswith("2026-01-01_h100_decode:") for d in dropped)
    # a run that records no revision is never mixed with another
    make_run(tmp_path / "b", "2026-01-01_x")
    make_run(tmp_path / "b", "2026-02-01_y")
    c, _ = comparable(timed_runs(load_results([tmp_path / "b"]))[0])
    assert set(c.results_dir) == {"2026-02-01_y"}


def test_energy_per_token_table(tmp_path):
    import pandas as pd

    d = make_run(tmp_path, "h", "h100")
    df = pd.read_csv(d / "rows.csv")
    df["energy_uj"] = df.batch * 10.0
    df["energy_uj_err"] = 0.5
    df.to_csv(d / "rows.csv", index=False)
    md = summary_markdown(load_results([tmp_path]))
    assert "# Decode energy per token" in md and "| flashinfer | 10 ± 0.31 | 10 ± 0.016" in md
