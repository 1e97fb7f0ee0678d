"""gdnbench peers: an own kernel slower than the fastest peer beyond the noise is counted, one within the
noise is not, each GPU of a mixed run is judged against its own peers; the command's exits."""

from __future__ import annotations

from results_fixture import make_mixed_run, make_run
from typer.testing import CliRunner

from gdnbench.analysis import load_results
from gdnbench.cli import app
from gdnbench.peers import own_vs_peers, report


def test_slower_beyond_noise_counted(tmp_path):
    # triton 10% slower than flashinfer everywhere (IQR 0.4%: well outside the noise), cute 0.2% slower (inside)
    run = make_run(tmp_path, "run", extra={"triton": 1.10, "cute": 1.002})
    m = own_vs_peers(load_results([run]))
    tri, cute = m[m.backend == "triton"], m[m.backend == "cute"]
    assert len(tri) == len(cute) > 0
    assert tri.slower.all() and abs(tri.ratio - 1.10).max() < 1e-9 and set(tri.backend_peer) == {"flashinfer"}
    assert not cute.slower.any()
    text = report(m, worst=3)
    assert f"{len(tri)} cases with a peer; slower than the fastest peer beyond the noise in {len(tri)}" in text
    assert "beyond the noise in 0" in text  # cute


def test_each_gpu_against_its_own_peers(tmp_path):
    # on the B200 flashinfer is 20% slower, so triton (1.1x the H100-relative speed) beats it there only
    run = make_mixed_run(tmp_path, "mixed", extra={"triton": 1.10}, scale_b200={"flashinfer": 1.2, "fla_kernel": 1.2})
    m = own_vs_peers(load_results([run]))
    by_gpu = m.groupby("gpu_label").slower.mean()
    assert by_gpu[next(g for g in by_gpu.index if "H100" in g)] == 1.0
    assert by_gpu[next(g for g in by_gpu.index if "B200" in g)] == 0.0


def test_peers_command(tmp_path):
    """The report on stdout, exit 0; --strict exits 1 on a loss beyond the noise, 0 without one; a run
    without an own kernel next to a peer, or no run at all, is one line and exit 2."""
    lose = make_run(tmp_path, "lose", extra={"triton": 1.10, "cute": 1.002})
    r = CliRunner().invoke(app, ["peers", str(lose)])
    assert r.exit_code == 0 and "## triton on" in r.stdout, r.output
    assert CliRunner().invoke(app, ["peers", str(lose), "--strict"]).exit_code == 1
    win = make_run(tmp_path, "win", extra={"triton": 0.9, "cute": 0.95})
    assert CliRunner().invoke(app, ["peers", str(win), "--strict"]).exit_code == 0
    for bad in (tmp_path / "nope",):
        r = CliRunner().invoke(app, ["peers", str(bad)])
        assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output


def test_own_backends_are_the_ones_with_a_tuner():
    """vocab.OWN_BACKENDS (peers, pandas-only) and the backends that tune their own tiles (the runner's
    untuned note) are one set; the peers are the other backends but the eager baseline."""
    from gdnbench.backends import get_backend
    from gdnbench.vocab import BACKEND_NAMES, OWN_BACKENDS, PEER_BACKENDS

    assert {n for n in BACKEND_NAMES if get_backend(n).tuner is not None} == set(OWN_BACKENDS)
    assert set(PEER_BACKENDS) == set(BACKEND_NAMES) - set(OWN_BACKENDS) - {"torch"}
