"""gdnbench.tune: a candidate is timed only when it passes the gate (a failing one gives the gate's
message and no time), every tuner's candidates are named tiles its backend accepts, and the choice per
case class. Timing itself needs a GPU: a stand-in timer here (the session: test_tune_session.py)."""

from __future__ import annotations

import dataclasses
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
from gdnbench.reference import reference


class WrongOutput(TritonGDN):
    """The Triton backend with its output zeroed: must fail the gate."""

    def build(self, case, inputs):
        launch = super().build(case, inputs)

        def wrong():
            return launch().zero_()

        return wrong


def stand_in_timer(monkeypatch, median):
    monkeypatch.setattr(common, "time_gpu", lambda mode, c, b, cfg: SimpleNamespace(stats=SimpleNamespace(
        median=median(b, c)), extra={}))


def gate_all(case, tiles, make):
    x = make_inputs(case, "cuda" if HAS_CUDA else "cpu")
    e = reference(x)
    return [common.gate_and_time(case, t, make, x, e) for t in tiles]


@pytest.mark.skipif(not (HAS_CUDA or triton_interpreted()), reason="needs a GPU or TRITON_INTERPRET=1")
def test_gate_and_time_times_only_gated_tiles(monkeypatch):
    stand_in_timer(monkeypatch, lambda b, c: float(b.tile(c).bv))
    case = tiny_case(batch=2, hk=1, hv=2, head_dim_k=16, head_dim_v=32)

    def make(tile_override):
        return (WrongOutput if tile_override.bv == 8 else TritonGDN)(tile_override=tile_override)

    results = gate_all(case, [Tile(16, 1), Tile(8, 1), Tile(32, 1, kc=8)], make)
    assert [r[0] for r in results] == [16.0, None, 32.0]
    assert results[1][1].startswith("FAILED") and results[0][1] == results[2][1] == ""


@pytest.mark.skipif(not (HAS_CUDA or triton_interpreted()), reason="needs a GPU or TRITON_INTERPRET=1")
def test_gate_and_time_records_a_tile_that_cannot_build(monkeypatch):
    """A candidate the backend refuses (here a K chunk that does not divide K) is a failure with the
    reason, not a crash of the whole tuning run."""
    stand_in_timer(monkeypatch, lambda b, c: 1.0)
    case = tiny_case(batch=2, hk=1, hv=2, head_dim_k=16, head_dim_v=32)
    results = gate_all(case, [Tile(16, 1, kc=12), Tile(16, 1)], TritonGDN)
    assert results[1] == (1.0, "")
    assert results[0][1].startswith("FAILED: ValueError") and "KC=12" in results[0][1]


@pytest.mark.skipif(not (HAS_CUDA or triton_interpreted()), reason="needs a GPU or TRITON_INTERPRET=1")
def test_gate_and_time_judges_timing_as_the_runner_does(monkeypatch):
    """A candidate whose timing fails (out of memory for the input sets) or leaves a non-finite state is
    a FAILED result; an error that kills the CUDA context stops the session instead of being recorded
    against every later candidate."""
    case = tiny_case(batch=2, hk=1, hv=2, head_dim_k=16, head_dim_v=32)

    def timer(outcome):
        def time_gpu(mode, c, b, cfg):
            if isinstance(outcome, Exception):
                raise outcome
            return SimpleNamespace(stats=SimpleNamespace(median=1.0), extra=outcome)
        monkeypatch.setattr(common, "time_gpu", time_gpu)

    timer(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    (r,) = gate_all(case, [Tile(16, 1)], TritonGDN)
    assert r[0] is None and r[1].startswith("FAILED: timing: RuntimeError: CUDA out of memory")
    timer({"nonfinite_state": "3 of 2048 values are nan"})
    (r,) = gate_all(case, [Tile(16, 1)], TritonGDN)
    assert r == (None, "FAILED: state not finite after timing: 3 of 2048 values are nan")
    timer(RuntimeError("CUDA error: an illegal memory access was encountered"))
    with pytest.raises(RuntimeError, match="illegal memory access"):
        gate_all(case, [Tile(16, 1)], TritonGDN)


def test_cute_candidates_are_runnable_tiles():
    for c in tune_cute.plan():
        cands = tune_cute.candidates(c)
        assert cands and all(cute_reason(c, t) is None for t in cands) and len({t.name for t in cands}) == len(cands)
        assert any(t.threads < 128 for t in cands) == (c.batch * c.hv <= 1024)


def test_triton_candidates_are_valid_tiles():
    """Every candidate is a Tile the backend accepts for the case; decode tries the per-token tiles and,
    on K-last pools where Gluon compiles (not under the interpreter), the Gluon and TMA decodes; MTP the
    per-token tiles and the chunk form (pipelined over its row blocks)."""
    for c in tune_triton.plan():
        cands = tune_triton.candidates(c)
        assert cands and all(isinstance(t, Tile) and tile_reason(c, t) is None for t in cands), c.id
        assert len({t.name for t in cands}) == len(cands), c.id  # candidates are told apart by name
        gluon = {Variant.GLUON_ROWS, Variant.GLUON_TMA} if not triton_interpreted() else set()
        want = {Variant.PER_TOKEN} | (gluon if c.tokens == 1 else {Variant.CHUNK})
        assert {t.variant for t in cands} == want, c.id
        assert any(t.blocks > 1 and t.stages for t in cands) == (c.tokens > 1)


def test_mtp_candidates_hold_uncapped_twins_of_the_capped_tiles():
    """Each MTP per-token tile that ``plan.register_cap`` caps at 128 registers has an uncapped twin, so
    the tuner can keep the tile where the cap costs time; the plan of the twin sets ptxas's own limit.
    Decode tiles are never capped and get no twin."""
    from gdnbench.backends.triton.plan import register_cap

    for c in (common.case(256, sd="float32", tokens=4), common.case(64, tokens=2)):
        cands = tune_triton.candidates(c)
        capped = [t for t in cands if t.variant is Variant.PER_TOKEN and not t.maxnreg and register_cap(c, t)]
        assert capped, c.id
        for t in capped:
            twin = Tile(t.bv, t.warps, t.variant, kc=t.kc, maxnreg=tune_triton.UNCAPPED)
            assert twin in cands and register_cap(c, twin) == {"maxnreg": tune_triton.UNCAPPED}, (c.id, t.name)
    decode = tune_triton.candidates(common.case(64))
    assert not any(t.maxnreg == tune_triton.UNCAPPED for t in decode)


def test_heuristic_tile_is_a_candidate():
    """The tuner measures the tile a case gets with no table, so a tuned entry never loses to it (the
    V-last heuristic, 128 rows x 8 warps at large batches, is outside the per-token grid)."""
    from gdnbench.backends.cute.tiles import heuristic_tile as cute_heuristic
    from gdnbench.backends.triton.tiles import heuristic_tile

    for c in tune_triton.plan() + [common.case(512, layout="v_last", sd="float32")]:
        assert heuristic_tile(c).name in {t.name for t in tune_triton.candidates(c)}, c.id
    for c in tune_cute.plan():
        assert cute_heuristic(c).name in {t.name for t in tune_cute.candidates(c)}, c.id


def test_triton_classes_keep_mtp_variants_apart():
    """MTP cases of another T, buffer or write-back are other classes; an entry round-trips to its class;
    a decode class has the key of an entry written before the MTP fields existed (a re-tune replaces
    it), an old MTP entry does not (it stays, as the fallback of every MTP variant)."""
    t4, t8 = common.case(64, tokens=4), common.case(64, tokens=8)
    inter = dataclasses.replace(t4, intermediate=True, write_back=False)
    assert len({tune_triton.class_key(c) for c in (t4, t8, inter)}) == 3
    for c in (t4, t8, inter, common.case(64)):
        k = tune_triton.class_key(c)
        assert tune_triton.key_of(tune_triton.entry(k, Tile(16, 1))) == k
    old = {"layout": "k_last", "state_dtype": "bfloat16", "head_dim_k": 128, "head_dim_v": 128, "pairs_min": 2048,
           "bv": 16, "warps": 1}
    assert tune_triton.key_of({**old, "mtp": False}) == tune_triton.class_key(common.case(64))
    assert tune_triton.key_of({**old, "mtp": True}) != tune_triton.class_key(t4)
    assert "tokens" not in tune_triton.entry(tune_triton.class_key(common.case(64)), Tile(16, 1))
    assert tune_triton.coarser(tune_triton.class_key(t4)) == tune_triton.key_of({**old, "mtp": True, "pairs_min": 2048})


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
