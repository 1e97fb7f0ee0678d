"""scripts/own_vs_peers.py: an own kernel slower than the fastest peer beyond the noise is counted,
one within the noise is not, and each GPU of a mixed run is judged against its own peers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from results_fixture import make_mixed_run, make_run

from gdnbench.analysis import load_results

_spec = importlib.util.spec_from_file_location("own_vs_peers", Path(__file__).parent.parent / "scripts" / "own_vs_peers.py")
own_vs_peers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(own_vs_peers)


def test_slower_beyond_noise_counted(tmp_path):
    # triton 10% slower than flashinfer everywhere (IQR 0.4%: well outside the noise), cute 0.2% slower (inside)
    run = make_run(tmp_path, "run", extra={"triton": 1.10, "cute": 1.002})
    m = own_vs_peers.own_vs_peers(load_results([run]))
    tri, cute = m[m.backend == "triton"], m[m.backend == "cute"]
    assert len(tri) == len(cute) > 0
    assert tri.slower.all() and abs(tri.ratio - 1.10).max() < 1e-9 and set(tri.backend_peer) == {"flashinfer"}
    assert not cute.slower.any()
    text = own_vs_peers.report(m, worst=3)
    assert f"{len(tri)} cases with a peer; slower than the fastest peer beyond the noise in {len(tri)}" in text
    assert "beyond the noise in 0" in text  # cute


def test_each_gpu_against_its_own_peers(tmp_path):
    # on the B200 flashinfer is 20% slower, so triton (1.1x the H100-relative speed) beats it there only
    run = make_mixed_run(tmp_path, "mixed", extra={"triton": 1.10}, scale_b200={"flashinfer": 1.2, "fla_kernel": 1.2})
    m = own_vs_peers.own_vs_peers(load_results([run]))
    by_gpu = m.groupby("gpu_label").slower.mean()
    assert by_gpu[[g for g in by_gpu.index if "H100" in g][0]] == 1.0
    assert by_gpu[[g for g in by_gpu.index if "B200" in g][0]] == 0.0
