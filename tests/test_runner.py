"""runner.py: timing-mode resolution and derived throughput columns."""

from __future__ import annotations

import pytest

from gdnbench.backends.base import Target
from gdnbench.config import parse_sweep
from gdnbench.rows import Row
from gdnbench.runner import RunError, fill_timing, resolve_timing_mode
from gdnbench.stats import summarize
from gdnbench.timer import Timing

SWEEP = parse_sweep({"phase": "decode", "backends": ["torch"]})


def test_resolve_timing_mode():
    assert resolve_timing_mode(SWEEP, Target("cuda", 90, "H100"), None) == "graph"
    assert resolve_timing_mode(SWEEP, Target("cpu"), None) == "cpu"
    assert resolve_timing_mode(SWEEP, Target("cuda", 90), "events") == "events"
    with pytest.raises(RunError):
        resolve_timing_mode(SWEEP, Target("cpu"), "graph")


def test_fill_timing_derives_throughput_once():
    row = Row(bytes=3_000_000, flops=6_000_000)
    t = Timing(mode="graph", samples_us=[1.0, 1.0, 1.0], stats=summarize([1.0, 1.0, 1.0]), converged=True,
               launches_per_sample=8, extra={"input_sets": 8, "sm_clock_mhz": 1980.0, "throttled": False})
    fill_timing(row, t, peak_gbps=3000.0)
    assert row.gbps == pytest.approx(3000.0) and row.pct_peak_bw == pytest.approx(100.0)
    assert row.tflops == pytest.approx(6.0) and row.input_sets == 8 and row.sm_clock_mhz == 1980.0
    assert row.timing_mode == "graph" and row.median_us == 1.0 and row.converged
