"""Shared test setup: CPU runs use Triton's interpreter; GPU tests are marked and skipped without a GPU."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from gdnbench.cases import Case  # noqa: E402

HAS_CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run `make gpu-test` on the GPU host)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def tiny_case(**kw) -> Case:
    """A small valid case (decode, 2/4 heads, K=16, V=32) with fields overridden by ``kw``."""
    base = dict(phase="decode", batch=3, hk=2, hv=4, head_dim_k=16, head_dim_v=32, layout="k_last",
                state_dtype="float32", dtype="bfloat16", tokens=1, seq_lens="", pool="scattered",
                write_back=True, intermediate=False, tree=False, seed=0)
    base.update(kw)
    return Case(**base)


TINY_SWEEP = """
name: tiny
phase: decode
backends: {backends}
axes: {{batch: {batch}, heads: [[16, 32]], head_dim_k: [128], head_dim_v: [128], state_dtype: [bfloat16],
        pool: [scattered]}}
timing: {{min_samples: 3, min_time_s: 0.0, max_time_s: 0.05}}
"""


def tiny_sweep(folder, backends: str, batch: str):
    """A decode sweep named ``tiny``: Qwen3-Next TP1 heads, K = V = 128, bf16 state, a scattered pool."""
    from gdnbench.config import load_sweep

    path = folder / "tiny.yaml"
    path.write_text(TINY_SWEEP.format(backends=backends, batch=batch))
    return load_sweep(path)


@pytest.fixture
def write_yaml(tmp_path):
    def write(text: str, name: str = "cfg.yaml"):
        p = tmp_path / name
        p.write_text(text)
        return p
    return write
