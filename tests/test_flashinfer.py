"""backends/flashinfer.py on a CPU: the module imports without FlashInfer, and its support table
answers for SM90 / SM100 as FlashInfer 0.7.2 documents (the kernels themselves run in GPU tests)."""

from __future__ import annotations

import pytest
from conftest import tiny_case

import gdnbench.backends.base as base
from gdnbench.backends.base import Padding, Target
from gdnbench.backends.flashinfer import BACKEND as FI
from gdnbench.backends.flashinfer import KERNEL_ONLY as FIK

SM90, SM100, CPU = Target("cuda", 90, "sm90"), Target("cuda", 100, "sm100"), Target("cpu")


def qwen(**kw):
    return tiny_case(hk=16, hv=32, head_dim_k=128, head_dim_v=128, **kw)


@pytest.mark.parametrize("case,target,expected", [
    (qwen(), SM90, None),
    (qwen(state_dtype="bfloat16", pool="padded", batch=8), SM90, None),
    (qwen(layout="v_last", pool="contiguous"), SM90, None),
    (qwen(layout="v_last", pool="contiguous"), SM100, "documented for sm90, not sm100"),
    (qwen(layout="v_last", pool="scattered"), SM90, "no pool API"),
    (qwen(layout="v_last", state_dtype="bfloat16", pool="contiguous"), SM90, "takes fp32 state only"),
    (tiny_case(), SM90, "tile K = V = 128"),
    (qwen(dtype="float32"), SM90, "fp16/bf16 q/k/v"),
    (qwen(phase="mtp", tokens=4, tree=True, intermediate=True, write_back=False), SM90, "no parent-token tree"),
    (qwen(phase="mtp", tokens=4, state_dtype="bfloat16", intermediate=True, write_back=True), SM90, "skips the final write-back"),
    (qwen(phase="mtp", tokens=4, state_dtype="bfloat16", intermediate=True, write_back=False), SM90, None),
    (qwen(phase="mtp", tokens=4, layout="v_last"), SM90, "K-last state"),
    (qwen(phase="prefill", batch=2, tokens=128, seq_lens="64*2"), SM100, None),
    (qwen(phase="prefill", batch=2, tokens=128, seq_lens="64*2", pool="padded"), SM90, "no padding"),
    (qwen(), CPU, "needs a CUDA GPU"),
])
def test_supports(case, target, expected):
    got = FI.supports(case, target)
    if expected is None:
        assert got is None
    else:
        assert got is not None and expected in got


@pytest.mark.parametrize("case,expected", [
    (qwen(phase="prefill", batch=2, tokens=128, seq_lens="64*2", pool="contiguous"), None),
    (qwen(phase="prefill", batch=2, tokens=128, seq_lens="64*2", pool="scattered"), "contiguous [N, ...] state"),
    (qwen(phase="prefill", batch=2, tokens=128, seq_lens="64*2", pool="padded"), "contiguous [N, ...] state"),
    (qwen(), "prefill variant"),
    (qwen(phase="mtp", tokens=4), "prefill variant"),
    (tiny_case(phase="prefill", batch=2, tokens=8, seq_lens="4*2", pool="contiguous"), "tile K = V = 128"),
])
def test_kernel_only_variant_supports(case, expected):
    got = FIK.supports(case, SM90)
    assert got is None if expected is None else (got is not None and expected in got)


def test_kernel_only_variant_names_what_it_leaves_out():
    case = qwen(phase="prefill", batch=1, tokens=64, seq_lens="64", pool="contiguous")
    assert FIK.name == "flashinfer_kernel" and FI.name == "flashinfer"
    assert "kernel only: pre-normalised q/k, precomputed gates" in FIK.kernel(case)
    assert "torch gates + normalize_qk" in FI.kernel(case)


def test_kernel_and_padding_per_entry_point():
    assert FI.kernel(qwen(state_dtype="bfloat16")) == "gated_delta_rule_decode_pretranspose [bf16 state]"
    assert FI.padding(qwen(state_dtype="bfloat16")) == Padding.SLOT0  # documented: -1 -> null slot 0
    assert FI.padding(qwen()) == Padding.ZERO                         # fp32: skipped, zero output row
    assert FI.kernel(qwen(phase="mtp", tokens=2)) == "gated_delta_rule_mtp [fp32 state]"
    assert FI.kernel(qwen(phase="prefill", batch=1, tokens=64, seq_lens="64")).startswith("chunk_gated_delta_rule [")


def test_missing_library_is_a_reason(monkeypatch):
    gpu = Target("cuda", 90, "fake H100")
    monkeypatch.setattr(base, "current_target", lambda: gpu)
    monkeypatch.setattr("gdnbench.backends.flashinfer.current_target", lambda: gpu)
    monkeypatch.setattr("gdnbench.backends.flashinfer.missing_module",
                        lambda module, dist: f"{dist} not installed")
    assert FI.supports(qwen()) == "flashinfer-python not installed"
    assert "not installed" in FI.version or FI.version.startswith("flashinfer-python")
