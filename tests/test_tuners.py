"""gdnbench.tune: the shared gated timing loop keeps only tiles that pass the gate (a failing one is a
CSV row with the gate's message and no time), and every tuner's candidates are tiles its backend
accepts. Timing itself needs a GPU: a stand-in timer here."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import HAS_CUDA, tiny_case

import gdnbench.tune.common as common
import gdnbench.tune.cute as tune_cute
import gdnbench.tune.triton as tune_triton
from gdnbench.backends.base import triton_interpreted
from gdnbench.backends.cute.tiles import tile_reason as cute_reason
from gdnbench.backends.triton import TritonGDN
from gdnbench.backends.triton.tiles import Tile, Variant, tile_reason
from gdnbench.inputs import make_inputs


class WrongOutput(TritonGDN):
    """The Triton backend with its output zeroed: must fail the gate."""

    def build(self, case, inputs):
        launch = super().build(case, inputs)

        def wrong():
            return launch().zero_()

        return wrong


def stand_in_timer(monkeypatch, median):
    dev = "cuda" if HAS_CUDA else "cpu"
    monkeypatch.setattr(common, "make_inputs", lambda c, _: make_inputs(c, dev))
    monkeypatch.setattr(common, "time_gpu", lambda mode, c, b, cfg: SimpleNamespace(stats=SimpleNamespace(
        median=median(b, c))))
    if not HAS_CUDA:
        monkeypatch.setattr(common.torch.cuda, "empty_cache", lambda: None)


@pytest.mark.skipif(not (HAS_CUDA or triton_interpreted()), reason="needs a GPU or TRITON_INTERPRET=1")
def test_measure_keeps_only_gated_tiles(monkeypatch):
    stand_in_timer(monkeypatch, lambda b, c: float(b.tile(c).bv))
    case = tiny_case(batch=2, hk=1, hv=2, head_dim_k=16, head_dim_v=32)
    rows = []

    def make(tile_override):
        return (WrongOutput if tile_override.bv == 8 else TritonGDN)(tile_override=tile_override)

    tiles = [Tile(16, 1), Tile(8, 1), Tile(32, 1, kc=8)]
    results = common.measure(case, tiles, make, rows)
    assert results == [(16.0, tiles[0]), (32.0, tiles[2])]
    assert [r[-2] for r in rows] == ["16.000", "", "32.000"]
    assert rows[1][-1].startswith("FAILED")


@pytest.mark.skipif(not (HAS_CUDA or triton_interpreted()), reason="needs a GPU or TRITON_INTERPRET=1")
def test_measure_records_a_tile_that_cannot_build(monkeypatch):
    """A candidate the backend refuses (here a K chunk that does not divide K) is a FAILED row with the
    reason, not a crash of the whole tuning run."""
    stand_in_timer(monkeypatch, lambda b, c: 1.0)
    case = tiny_case(batch=2, hk=1, hv=2, head_dim_k=16, head_dim_v=32)
    rows = []
    results = common.measure(case, [Tile(16, 1, kc=12), Tile(16, 1)], TritonGDN, rows)
    assert results == [(1.0, Tile(16, 1))]
    assert rows[0][-1].startswith("FAILED: ValueError") and "KC=12" in rows[0][-1]


def test_write_outputs(tmp_path, monkeypatch):
    """A tuner writes this GPU's table into the backend's folder (a copy in ``out``) and the CSV."""
    from gdnbench.backends.base import Target

    monkeypatch.setattr(common, "current_target", lambda: Target("cuda", 90, "NVIDIA H100 80GB HBM3"))
    rows = [("case-a", Tile(16, 1, "chunk", blocks=2), "3.000", ""), ("case-a", Tile(8, 1), "", "FAILED: x")]
    (tmp_path / "tables").mkdir()
    best = {("k_last", "bfloat16", 128, 128, False, 1): (2.5, Tile(16, 1))}
    path = common.write_outputs(tmp_path / "tables", "note", best, tune_triton.entry, rows, tune_triton.FIELDS,
                                tmp_path, "t.csv")
    assert path.name == "device_name=NVIDIA_H100_80GB_HBM3.json" and (tmp_path / path.name).exists()
    import json

    assert json.loads(path.read_text())["entries"][0]["median_us"] == 2.5
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0].startswith("case_id,variant,bv,warps") and lines[1].startswith("case-a,chunk,16,1,0,2")


def test_cute_candidates_are_runnable_tiles():
    for c in tune_cute.plan():
        cands = tune_cute.candidates(c)
        assert cands and all(cute_reason(c, t) is None for t in cands)
        assert any(t.threads < 128 for t in cands) == (c.batch * c.hv <= 1024)


def test_triton_candidates_are_valid_tiles():
    """Every candidate is a Tile the backend accepts for the case; decode tries the per-token tiles and,
    on K-last pools where Gluon compiles (not under the interpreter), the Gluon and TMA decodes; MTP the
    per-token tiles and the chunk form (pipelined over its row blocks)."""
    for c in tune_triton.plan():
        cands = tune_triton.candidates(c)
        assert cands and all(isinstance(t, Tile) and tile_reason(c, t) is None for t in cands), c.id
        gluon = {Variant.GLUON_ROWS, Variant.GLUON_TMA} if not triton_interpreted() else set()
        want = {Variant.PER_TOKEN} | (gluon if c.tokens == 1 else {Variant.CHUNK})
        assert {t.variant for t in cands} == want, c.id
        assert any(t.blocks > 1 and t.stages for t in cands) == (c.tokens > 1)


def test_triton_class_choice_serves_every_case_of_a_class():
    """Cases sharing a class (TP1 B = 16 and TP4 B = 64: 512 row-heads) get the tile with the least summed
    slowdown over both, not the one only the faster case likes; where no tile was measured in every
    case, the fastest measured anywhere."""
    a, b, c = Tile(4, 1), Tile(64, 4, "gluon_rows"), Tile(16, 1)
    cases = {"tp1-b16": {a: 13.89, b: 14.00, c: 14.30}, "tp4-b64": {a: 14.09, b: 13.96, c: 14.20}}
    assert common.class_choice(cases) == (13.96, b)  # a: 1 + 1.0093; b: 1.0079 + 1
    assert common.class_choice({"only": {a: 2.0, b: 1.5}}) == (1.5, b)
    assert common.class_choice({"x": {a: 3.0}, "y": {b: 2.0}}) == (2.0, b)  # nothing in common


def test_triton_plan_filters():
    cases = tune_triton.plan("decode", {16, 64}, {"bfloat16"})
    assert {(c.batch, c.hv, c.state_dtype, c.tokens) for c in cases} == {
        (16, 32, "bfloat16", 1), (64, 32, "bfloat16", 1), (16, 8, "bfloat16", 1), (64, 8, "bfloat16", 1)}
