"""calibrate.py: pass/fail criteria over a calibration result."""

from __future__ import annotations

from gdnbench.calibrate import verdicts


def result(pct, empty):
    return {"copies": [{"bytes": 16 << 20, "pct_of_copy_bw": 50.0}, {"bytes": 256 << 20, "pct_of_copy_bw": pct}],
            "empty_graph_us": empty}


def test_verdicts():
    copy, empty = verdicts(result(95.0, 1.5))
    assert copy.ok and empty.ok and "256 MiB" in copy.name
    copy, empty = verdicts(result(85.0, 3.5))
    assert not copy.ok and not empty.ok
