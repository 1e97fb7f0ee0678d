"""backends/cute/ on a CPU: imports without nvidia-cutlass-dsl and says so; support and tile rules.
Where the CuTe DSL is installed (no GPU needed), the kernel is compiled for sm_90a and checked for
16-byte state traffic and no spills."""

from __future__ import annotations

import importlib.util
import re

import pytest
from conftest import tiny_case

import gdnbench.backends.cute.tiles as cu
from gdnbench.backends.base import Padding, Target
from gdnbench.backends.cute import BACKEND, CuteGDN
from gdnbench.backends.cute.tiles import MAX_ROWS_PER_GROUP, CuteTile, tile, tile_reason, vec
from gdnbench.backends.tables import TileTable

SM90 = Target("cuda", 90, "sm90")
HAS_CUTE = importlib.util.find_spec("cutlass") is not None
QWEN = dict(hk=16, hv=32, head_dim_k=128, head_dim_v=128)


@pytest.mark.skipif(HAS_CUTE, reason="nvidia-cutlass-dsl is installed here")
def test_missing_cutlass_is_the_reason():
    assert BACKEND.supports(tiny_case(**QWEN)) == "nvidia-cutlass-dsl not installed"
    assert BACKEND.availability() == "nvidia-cutlass-dsl not installed"


@pytest.mark.parametrize("case,expected", [
    (tiny_case(**QWEN), None),
    (tiny_case(state_dtype="bfloat16", pool="padded", batch=8, **QWEN), None),
    (tiny_case(head_dim_k=256, head_dim_v=256, state_dtype="bfloat16", hk=16, hv=32), None),
    (tiny_case(layout="v_last", **QWEN), "K-last"),
    (tiny_case(phase="mtp", tokens=2, **QWEN), "decode (T = 1)"),
    (tiny_case(write_back=False, **QWEN), "always writes"),
    (tiny_case(dtype="float32", **QWEN), "bf16 or fp16"),
    (tiny_case(head_dim_k=256, head_dim_v=256, state_dtype="float32", hk=16, hv=32), "2..32 lanes"),
])
def test_supports_on_sm90(case, expected):
    got = BACKEND.supports(case, SM90)
    assert got is None if expected is None else (got is not None and expected in got)


def test_needs_sm90():
    assert "SM90" in BACKEND.supports(tiny_case(**QWEN), Target("cuda", 80, "sm80"))
    assert BACKEND.padding(tiny_case(**QWEN)) == Padding.ZERO


@pytest.mark.parametrize("batch", [1, 4, 8, 16, 64, 512])
@pytest.mark.parametrize("state_dtype", ["bfloat16", "float32"])
def test_tile_bounds(batch, state_dtype):
    """The heuristic: rows of 16 lanes in one-warp CTAs of 2 rows per lane group up to 256 row-heads,
    64-row 4-warp CTAs of 2 vectors per lane beyond; a tile the kernel runs either way."""
    c = tiny_case(batch=batch, state_dtype=state_dtype, **QWEN)
    h = cu.heuristic_tile(c)
    if batch * c.hv <= cu.SMALL_LAUNCH:
        assert h.threads == 32 and cu.lanes(c, h.nvec) == 16 and h.bv == 4
    else:
        assert (h.bv, h.nvec, h.threads) == (64, 2, 128)
    assert tile_reason(c, h) is None


def test_tile_for_an_odd_k_falls_back():
    """A K the 64-row / 2-vector shape does not fit (bf16 K = 256: 128 elements a thread) takes the earlier
    rule (one vector per lane, 4 warps); fp32 K = 256, which one-vector rows cannot read, stays unsupported
    at every batch (the heuristic never widens what cute runs)."""
    c = tiny_case(batch=512, state_dtype="bfloat16", hk=16, hv=32, head_dim_k=256, head_dim_v=256)
    h = cu.heuristic_tile(c)
    assert (h.nvec, h.threads) == (1, 128) and tile_reason(c, h) is None
    for batch in (1, 512):
        c = tiny_case(batch=batch, state_dtype="float32", hk=16, hv=32, head_dim_k=256, head_dim_v=256)
        assert "2..32 lanes" in tile_reason(c, cu.heuristic_tile(c))


@pytest.mark.parametrize("state_dtype,t,expected", [
    ("bfloat16", CuteTile(64, 1), None),            # 16 lanes x 8 bf16, 8 groups x 8 rows
    ("bfloat16", CuteTile(32, 2), None),            # 8 lanes x 2 vectors, 16 groups x 2 rows
    ("float32", CuteTile(16, 4), None),             # 8 lanes x 4 vectors of 4 fp32
    ("float32", CuteTile(64, 8), None),             # 4 lanes x 8 vectors, 32 groups x 2 rows = 64 elements
    ("float32", CuteTile(8, 4), "multiple"),        # fewer rows than the CTA's 16 row groups
    ("bfloat16", CuteTile(128, 2), "64 state elements"),
    ("bfloat16", CuteTile(64, 16), "lanes"),        # one lane per row
    ("float32", CuteTile(32, 3), "lanes"),
    ("float32", CuteTile(4, 4, 32), None),          # one warp: 4 groups of 8 lanes, one row each
    ("float32", CuteTile(1, 1, 32), None),          # one warp, one fp32 row of 32 lanes
    ("bfloat16", CuteTile(4, 2, 64), "multiple"),   # 64 threads / 8 lanes = 8 groups > 4 rows
    ("bfloat16", CuteTile(16, 1, 96), "32, 64 or 128"),
])
def test_tile_rules(state_dtype, t, expected):
    got = tile_reason(tiny_case(state_dtype=state_dtype, **QWEN), t)
    assert got is None if expected is None else (got is not None and expected in got)


def test_tuned_table_and_override(monkeypatch):
    entries = [{"state_dtype": "float32", "head_dim_k": 128, "head_dim_v": 128, "pairs_min": 32, "bv": 16, "nvec": 4},
               {"state_dtype": "float32", "head_dim_k": 128, "head_dim_v": 128, "pairs_min": 2048, "bv": 64,
                "nvec": 2},
               {"state_dtype": "float32", "head_dim_k": 64, "head_dim_v": 64, "pairs_min": 1, "bv": 32, "nvec": 2},
               {"state_dtype": "float32", "head_dim_k": 128, "head_dim_v": 128, "pairs_min": 1, "bv": 4, "nvec": 4,
                "threads": 32}]
    monkeypatch.setattr(cu, "tuned_table", lambda: TileTable("test GPU", "tuned", entries))
    f32 = dict(QWEN, state_dtype="float32")
    assert tile(tiny_case(batch=1, **f32)) == CuteTile(16, 4, 128)
    assert tile(tiny_case(batch=1, hk=4, hv=8, head_dim_k=128, head_dim_v=128, state_dtype="float32")) == CuteTile(4, 4, 32)
    assert tile(tiny_case(batch=63, **f32)) == CuteTile(16, 4, 128)
    assert tile(tiny_case(batch=64, **f32)) == CuteTile(64, 2, 128)
    assert tile(tiny_case(batch=64, **dict(QWEN, state_dtype="bfloat16"))) == cu.heuristic_tile(
        tiny_case(batch=64, **dict(QWEN, state_dtype="bfloat16")))  # no bf16 entries: heuristic
    c = tiny_case(batch=8, **f32)
    assert "8 lanes x 4 x 16B per row" in BACKEND.kernel(c) and "BV=16" in BACKEND.kernel(c)
    assert "BV=32, 128 threads, 16 lanes x 2 x 16B" in CuteGDN(tile_override=CuteTile(32, 2)).kernel(c)
    assert "multiple" in CuteGDN(tile_override=CuteTile(8, 4)).supports(c, SM90)


@pytest.mark.skipif(not HAS_CUTE, reason="nvidia-cutlass-dsl not installed")
@pytest.mark.parametrize("state_dtype,t", [("bfloat16", None), ("float32", None), ("bfloat16", CuteTile(32, 2)),
                                           ("float32", CuteTile(32, 4)), ("float32", CuteTile(4, 4, 32))])
def test_offline_compile_sm90(state_dtype, t):
    """cute.compile for sm_90a without a GPU: 16-byte loads/stores of the state, no local memory."""
    from gdnbench.backends.cute.backend import _compile

    compiled = _compile(tiny_case(batch=64, state_dtype=state_dtype, **QWEN), "sm_90a", keep_artifacts=True, t=t)
    ptx = str(compiled.artifacts.PTX)
    assert len(re.findall(r"ld\.global\.v4", ptx)) >= 4 and len(re.findall(r"st\.global\.v4", ptx)) >= 4
    assert ".local" not in ptx
