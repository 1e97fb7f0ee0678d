"""backends/fla.py: both variants pass the gate on tiny shapes under TRITON_INTERPRET=1 on a CPU,
and report why they do not support what fla-core 0.6.0 lacks."""

from __future__ import annotations

import pytest
from conftest import HAS_CUDA, tiny_case

from gdnbench.backends.base import Target, triton_interpreted
from gdnbench.backends.fla import KERNEL_ONLY, POOLED
from gdnbench.check import run_gate
from gdnbench.inputs import make_inputs
from gdnbench.reference import reference

pytestmark = pytest.mark.skipif(not (HAS_CUDA or triton_interpreted()), reason="needs a GPU or TRITON_INTERPRET=1")
SMALL = dict(hk=1, hv=2, head_dim_k=16, head_dim_v=16)


def gate(backend, case):
    x = make_inputs(case, "cuda" if HAS_CUDA else "cpu")
    return run_gate(case, backend, x, reference(x)).check


@pytest.mark.parametrize("layout", ["k_last", "v_last"])
@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("pool", ["contiguous", "padded"])
def test_pooled_decode(layout, state_dtype, pool):
    r = gate(POOLED, tiny_case(batch=3, layout=layout, state_dtype=state_dtype, pool=pool, **SMALL))
    assert r.ok, r.message


@pytest.mark.parametrize("write_back", [True, False])
def test_mtp_both_variants(write_back):
    case = tiny_case(phase="mtp", tokens=3, batch=2, pool="contiguous", write_back=write_back, **SMALL)
    for backend in (POOLED, KERNEL_ONLY):
        r = gate(backend, case)
        assert r.ok, (backend.name, r.message)


def test_kernel_only_bf16_state_returns_fp32_state():
    r = gate(KERNEL_ONLY, tiny_case(batch=2, pool="contiguous", state_dtype="bfloat16", **SMALL))
    assert r.ok, r.message


@pytest.mark.parametrize("case,backend,expected", [
    (tiny_case(phase="mtp", tokens=2, intermediate=True, write_back=False), POOLED, "only the final state"),
    (tiny_case(pool="scattered"), KERNEL_ONLY, "no pool API"),
    (tiny_case(head_dim_k=512), POOLED, "up to 256"),
    (tiny_case(phase="prefill", batch=2, tokens=8, seq_lens="4*2"), POOLED, None),
])
def test_support_reasons(case, backend, expected):
    got = backend.supports(case, Target("cuda", 90, "sm90"))
    assert (got is None) if expected is None else (expected in got)


def test_prefill_not_under_interpreter():
    assert "interpreter" in POOLED.supports(tiny_case(phase="prefill", batch=1, tokens=4, seq_lens="4"), Target("cpu"))
