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


@pytest.mark.skipif(not (HAS_CUDA or triton_interpreted()), reason="needs a GPU or TRITON_INTERPRET=1")
def test_measure_records_a_tile_that_cannot_build(monkeypatch):
    """A candidate the backend refuses (here stages without a persistent grid) is a FAILED row with the
    reason, not a crash of the whole tuning run."""
    dev = "cuda" if HAS_CUDA else "cpu"
    monkeypatch.setattr(tune_triton, "make_inputs", lambda c, _: make_inputs(c, dev))
    monkeypatch.setattr(tune_triton, "time_gpu",
                        lambda mode, c, b, cfg: SimpleNamespace(stats=SimpleNamespace(median=1.0)))
    if not HAS_CUDA:
        monkeypatch.setattr(tune_triton.torch.cuda, "empty_cache", lambda: None)
    case = tiny_case(batch=2, hk=1, hv=2, head_dim_k=16, head_dim_v=32)
    rows = []
    results = tune_triton.measure(case, [(16, 1, 0, 0, 0, 2), (16, 1, 0, 0, 0, 0)], TritonGDN, rows)
    assert results == [(1.0, (16, 1, 0, 0, 0, 0))]
    assert rows[0][-1].startswith("FAILED: ValueError") and "stages" in rows[0][-1]


def test_triton_candidates_are_valid_tiles():
    """Every candidate is a full ``Tile`` the backend accepts (``tile_reason``): BV divides V, KC divides
    K, stages only on a persistent grid or the chunk-form kernel's loop over a head's row blocks (MTP),
    the pipelined kernel's shared-memory ring within 160 KB per SM, neither persistent kernel on a
    parent-token tree, two-pass (reread) tiles for decode only."""
    from gdnbench.backends.base import triton_interpreted
    from gdnbench.backends.triton_gdn import Tile, tile_reason

    for c in tune_triton.plan():
        cands = tune_triton.candidates(c)
        assert cands and all(len(t) == len(Tile._fields) for t in cands)
        for t in map(Tile._make, cands):
            assert tile_reason(c, t) is None, (c.id, t)
            assert c.head_dim_v % t.bv == 0 and (t.kc == 0 or c.head_dim_k % t.kc == 0)
            assert not t.stages or t.progs_per_sm or t.chunk
            if t.chunk:  # the chunk-form MTP kernel: its blocks of a head's rows divide V
                assert c.tokens > 1 and c.head_dim_v % (t.bv * t.chunk) == 0
            elif t.stages:
                assert t.progs_per_sm * t.stages * t.bv * c.head_dim_k * (4 if c.state_dtype == "float32" else 2) \
                    <= 160 * 1024
        assert any(t[5] for t in cands)
        assert any(t[6] for t in cands) == (c.tokens == 1)  # two-pass tiles: decode only
        # every decode variant (one pass, two passes, tile layout, vector norms, no slot branch, dot; Gluon
        # for K-last pools where it compiles, i.e. not under the interpreter) is tried
        gluon = {6, 7} if c.layout == "k_last" and not triton_interpreted() else set()
        assert {t[6] for t in cands} == ({0, 1, 2, 3, 4, 5} | gluon if c.tokens == 1 else {0})
        assert any(t[3] > 1 and t[5] for t in cands) == (c.tokens > 1)  # pipelined chunk-form tiles: MTP only


def test_triton_class_choice_serves_every_case_of_a_class():
    """Cases sharing a class (TP1 B = 16 and TP4 B = 64: 512 row-heads) get the tile with the least summed
    slowdown over both, not the one only the faster case likes; where no tile was measured in every
    case, the fastest measured anywhere."""
    a, b, c = (4, 1), (64, 4), (16, 1)
    cases = {"tp1-b16": {a: 13.89, b: 14.00, c: 14.30}, "tp4-b64": {a: 14.09, b: 13.96, c: 14.20}}
    assert tune_triton.class_choice(cases) == (13.96, b)  # a: 1 + 1.0093; b: 1.0079 + 1
    assert tune_triton.class_choice({"only": {a: 2.0, b: 1.5}}) == (1.5, b)
    assert tune_triton.class_choice({"x": {a: 3.0}, "y": {b: 2.0}}) == (2.0, b)  # nothing in common


def test_triton_plan_filters():
    cases = tune_triton.plan("decode", {16, 64}, {"bfloat16"})
    assert {(c.batch, c.hv, c.state_dtype, c.tokens) for c in cases} == {
        (16, 32, "bfloat16", 1), (64, 32, "bfloat16", 1), (16, 8, "bfloat16", 1), (64, 8, "bfloat16", 1)}
