"""A real Nsight Systems trace on the GPU: two backends x two decode cases, the launch span nsys
projects per launch agrees with the timer's latency within 5% on every row (all are >= 10 µs), and
the kernels nsys saw are the ones the gate recorded (GPU host: make gpu-test; skipped without nsys)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from gdnbench.cli import find_config
from gdnbench.trace import agreement, run_nsys_trace

pytestmark = pytest.mark.gpu
BACKENDS = ("triton", "flashinfer")
CASES = ("decode-b32-h16x32-d128x128-klast-bf16-bf16-scattered",
         "decode-b512-h16x32-d128x128-klast-f32-bf16-scattered")


@pytest.mark.skipif(shutil.which("nsys") is None, reason="nsys not on the PATH (source /opt/gdnenv/env.sh)")
def test_nsys_kernel_time_agrees_with_the_timer(tmp_path):
    from gdnbench.backends import get_backend

    missing = [b for b in BACKENDS if get_backend(b).availability()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not available here")
    run_nsys_trace(find_config("trace-decode"), tmp_path / "t", "decode", CASES, BACKENDS)
    j = pd.read_csv(tmp_path / "t" / "rows_nsys.csv")
    ok = j[j.status == "ok"]
    assert len(ok) == len(BACKENDS) * len(CASES), j[["backend", "case_id", "status", "reason"]]
    a = agreement(ok)
    assert a.measure == "launch span", "the traced run wrote no per-sample ranges"
    assert a.rows == len(ok) and a.within == a.rows, ok[["backend", "case_id", "median_us", "traced_median_us",
                                                        "nsys_launch_us", "nsys_kernel_us", "nsys_kernels"]].to_string()
    for _, r in ok.iterrows():  # nsys saw the kernel the gate recorded (the timer's sleep is not counted)
        main = str(r.kernels).split(" x")[0]
        assert main[:40] in str(r.nsys_kernels), (r.kernels, r.nsys_kernels)
        assert "spin_kernel" not in str(r.nsys_kernels)
