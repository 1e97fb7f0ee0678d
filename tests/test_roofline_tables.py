"""gdnbench/roofline_tables.py: a run's ratio tables, from rows.csv only."""

from __future__ import annotations

from results_fixture import make_run

from gdnbench import roofline_tables


def test_ratio_tables_per_heads_dtype_and_pool(tmp_path):
    run = make_run(tmp_path, "r", extra={"triton": 0.9, "triton_pdl": 0.85, "cute": 0.95})
    md = roofline_tables.tables(str(run))
    assert "## HK=16, HV=32, bfloat16 state, scattered pool" in md
    assert "## HK=16, HV=32, float32 state, contiguous pool" in md
    assert "## HK=16, HV=32, bfloat16 state, scattered pool, T=4" in md  # MTP groups carry T
    scattered = md.split("## HK=16, HV=32, bfloat16 state, scattered pool\n")[1].split("##")[0]
    header = scattered.splitlines()[1]
    assert "triton_pdl µs" in header and "cute/best other" in header
    assert "triton/fla_kernel" not in header  # fla_kernel has no scattered rows
    row = next(line for line in scattered.splitlines() if line.startswith("| 4 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    cols = [c.strip() for c in header.strip("|").split("|")]
    got = dict(zip(cols, cells))
    assert got["triton/FI"] == "0.900" and got["pdl/FI"] == "0.850" and got["triton/fla"] == f"{0.9 / 1.6:.3f}"
    # cute against the fastest plain launch (triton at 0.9), not triton_pdl
    assert got["cute/best other"] == f"{0.95 / 0.9:.3f}"
    contiguous = md.split("## HK=16, HV=32, bfloat16 state, contiguous pool\n")[1].split("##")[0]
    assert "triton/fla_kernel" in contiguous.splitlines()[1]
