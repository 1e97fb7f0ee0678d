"""Every backend passes the correctness gate at real head sizes wherever it claims support, and its
launch can be captured and timed in a CUDA graph (GPU host: make gpu-test)."""

from __future__ import annotations

import pytest

from gdnbench.backends import get_backend
from gdnbench.cases import Case
from gdnbench.check import run_gate
from gdnbench.config import Timing as TimingConfig
from gdnbench.inputs import make_inputs
from gdnbench.reference import reference

pytestmark = pytest.mark.gpu
BACKENDS = ["torch", "flashinfer", "flashinfer_kernel", "fla", "fla_kernel", "triton", "triton_pdl", "cute"]


def qwen(**kw) -> Case:
    base = dict(phase="decode", batch=5, hk=16, hv=32, head_dim_k=128, head_dim_v=128, layout="k_last",
                state_dtype="float32", dtype="bfloat16", tokens=1, seq_lens="", pool="scattered", write_back=True,
                intermediate=False, tree=False, seed=3)
    base.update(kw)
    return Case(**base)


CASES = [qwen(layout=lay, state_dtype=sd, pool=pool, batch=b)
         for lay in ("k_last", "v_last") for sd in ("bfloat16", "float32")
         for pool in ("contiguous", "scattered", "padded") for b in (5, 40)]
CASES += [qwen(phase="mtp", tokens=t, state_dtype=sd, pool=pool, write_back=wb, intermediate=inter, batch=b)
          for t in (2, 4) for sd in ("bfloat16", "float32") for pool in ("contiguous", "padded")
          for wb, inter in ((True, False), (False, True)) for b in (3, 40)]
CASES += [qwen(phase="mtp", tokens=4, intermediate=True, write_back=False, tree=True)]
CASES += [qwen(phase="prefill", batch=n, tokens=sum(lens), seq_lens="+".join(map(str, lens)), state_dtype=sd,
               pool=pool)
          for n, lens in ((1, (300,)), (3, (64, 129, 7))) for sd in ("float32", "bfloat16")
          for pool in ("scattered", "contiguous")]
# Shapes only a wrong kernel gets wrong: GQA ratio 3 (Qwen3.5-27B heads), K != V, padded rows inside
# the batch, prefill lengths around the 64-token chunk with the initial state from the pool.
CASES += [qwen(hk=16, hv=48, layout=lay, state_dtype=sd, batch=b, pool=pool)
          for lay in ("k_last", "v_last") for sd in ("bfloat16", "float32") for b, pool in ((5, "scattered"),
                                                                                           (40, "contiguous"))]
CASES += [qwen(head_dim_k=k, head_dim_v=v, layout=lay, state_dtype=sd)
          for k, v in ((128, 64), (64, 128)) for lay in ("k_last", "v_last") for sd in ("bfloat16", "float32")]
CASES += [qwen(pool="padded_mid", layout=lay, state_dtype=sd, batch=b)
          for lay in ("k_last", "v_last") for sd in ("bfloat16", "float32") for b in (5, 40)]
CASES += [qwen(phase="mtp", tokens=4, pool="padded_mid", state_dtype=sd, write_back=wb, intermediate=not wb, batch=40)
          for sd in ("bfloat16", "float32") for wb in (True, False)]
CASES += [qwen(phase="mtp", tokens=4, hk=16, hv=48, state_dtype=sd, write_back=False, intermediate=True, batch=9)
          for sd in ("bfloat16", "float32")]
CASES += [qwen(phase="prefill", batch=4, tokens=1129, seq_lens="1+63+65+1000", state_dtype=sd, hk=hk, hv=hv,
               pool=pool)
          for sd in ("float32", "bfloat16") for hk, hv in ((16, 32), (16, 48)) for pool in ("scattered", "contiguous")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gate_where_supported(backend, case):
    b = get_backend(backend)
    reason = b.supports(case)
    if reason:
        pytest.skip(reason)
    x = make_inputs(case, "cuda")
    r = run_gate(case, b, x, reference(x)).check
    assert r.ok, r.message


@pytest.mark.parametrize("backend", BACKENDS)
def test_graph_timing_decode(backend):
    from gdnbench.timer import time_gpu

    case = qwen(batch=64, state_dtype="bfloat16", pool="contiguous")
    b = get_backend(backend)
    if b.supports(case):
        pytest.skip(b.supports(case))
    t = time_gpu("graph", case, b, TimingConfig(min_samples=5, max_time_s=0.5))
    assert t.stats.median > 0 and "nonfinite_state" not in t.extra
