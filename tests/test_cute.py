"""backends/cute.py on a CPU: imports without nvidia-cutlass-dsl and says so; support and tile rules.
Where the CuTe DSL is installed (no GPU needed), the kernel is compiled for sm_90a and checked for
16-byte state traffic and no spills."""

from __future__ import annotations

import importlib.util
import re

import pytest
from conftest import tiny_case

from gdnbench.backends.base import Padding, Target
from gdnbench.backends.cute import BACKEND, MAX_ROWS_PER_GROUP, tile, vec

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


@pytest.mark.parametrize("batch", [1, 4, 16, 64, 512])
@pytest.mark.parametrize("state_dtype", ["bfloat16", "float32"])
def test_tile_bounds(batch, state_dtype):
    c = tiny_case(batch=batch, state_dtype=state_dtype, **QWEN)
    bv = tile(c)
    groups = 128 // (128 // vec(c))
    assert groups <= bv <= groups * MAX_ROWS_PER_GROUP and 128 % bv == 0
    assert f"BV={bv}" in BACKEND.kernel(c)


@pytest.mark.skipif(not HAS_CUTE, reason="nvidia-cutlass-dsl not installed")
@pytest.mark.parametrize("state_dtype", ["bfloat16", "float32"])
def test_offline_compile_sm90(state_dtype):
    """cute.compile for sm_90a without a GPU: 16-byte loads/stores of the state, no local memory."""
    from gdnbench.backends.cute import _compile

    compiled = _compile(tiny_case(batch=64, state_dtype=state_dtype, **QWEN), "sm_90a", keep_artifacts=True)
    ptx = str(compiled.artifacts.PTX)
    assert len(re.findall(r"ld\.global\.v4", ptx)) >= 4 and len(re.findall(r"st\.global\.v4", ptx)) >= 4
    assert ".local" not in ptx
