"""scripts/tune_triton.py and scripts/tune_cute.py: the shared gated timing loop keeps only tiles that
pass the gate (a failing one is a CSV row with the gate's message and no time), and the cute tuner's
candidates are tiles the kernel accepts. Timing itself needs a GPU: a stand-in timer here."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import HAS_CUDA, tiny_case

from gdnbench.backends.base import triton_interpreted
from gdnbench.backends.cute import tile_reason
from gdnbench.backends.triton_gdn import TritonGDN
from gdnbench.inputs import make_inputs

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import tune_cute  # noqa: E402
import tune_triton  # noqa: E402


class WrongOutput(TritonGDN):
    """The Triton backend with its output zeroed: must fail the gate."""

    def build(self, case, inputs):
        launch = super().build(case, inputs)

        def wrong():
            return launch().zero_()

        return wrong


@pytest.mark.skipif(not (HAS_CUDA or triton_interpreted()), reason="needs a GPU or TRITON_INTERPRET=1")
def test_measure_keeps_only_gated_tiles(monkeypatch):
    dev = "cuda" if HAS_CUDA else "cpu"
    monkeypatch.setattr(tune_triton, "make_inputs", lambda c, _: make_inputs(c, dev))
    monkeypatch.setattr(tune_triton, "time_gpu",
                        lambda mode, c, b, cfg: SimpleNamespace(stats=SimpleNamespace(median=float(b.tile(c).bv))))
    if not HAS_CUDA:
        monkeypatch.setattr(tune_triton.torch.cuda, "empty_cache", lambda: None)
    case = tiny_case(batch=2, hk=1, hv=2, head_dim_k=16, head_dim_v=32)
    rows = []

    def make(tile_override):
        return (WrongOutput if tile_override[0] == 8 else TritonGDN)(tile_override=tile_override)

    results = tune_triton.measure(case, [(16, 1, 0, 0, 0), (8, 1, 0, 0, 0), (32, 1, 0, 0, 8)], make, rows)
    assert results == [(16.0, (16, 1, 0, 0, 0)), (32.0, (32, 1, 0, 0, 8))]
    assert [r[-2] for r in rows] == ["16.000", "", "32.000"]
    assert rows[1][-1].startswith("FAILED")


def test_cute_candidates_are_runnable_tiles():
    for c in tune_cute.plan():
        cands = tune_cute.candidates(c)
        assert cands and all(tile_reason(c, t) is None for t in cands)
        assert any(t.threads < 128 for t in cands) == (c.batch * c.hv <= 1024)
