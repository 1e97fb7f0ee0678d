"""backends/torch_eager.py: the chunked prefill equals the recurrence; capture-friendly launches."""

from __future__ import annotations

import pytest
import torch

from gdnbench.backends.torch_eager import CHUNK, chunked_gdn
from gdnbench.reference import step


@pytest.mark.parametrize("L,chunk", [(64, 64), (128, 64), (48, 16), (96, 32)])
def test_chunked_equals_recurrent_float64(L, chunk):
    g = torch.Generator().manual_seed(L)
    N, H, K, V = 2, 3, 8, 5
    q = torch.nn.functional.normalize(torch.randn(N, H, L, K, generator=g, dtype=torch.float64), dim=-1) * K ** -0.5
    k = torch.nn.functional.normalize(torch.randn(N, H, L, K, generator=g, dtype=torch.float64), dim=-1)
    v = torch.randn(N, H, L, V, generator=g, dtype=torch.float64)
    gl = -torch.rand(N, H, L, generator=g, dtype=torch.float64) * 0.5
    beta = torch.rand(N, H, L, generator=g, dtype=torch.float64)
    S0 = torch.randn(N, H, K, V, generator=g, dtype=torch.float64) * 0.1
    o, S = chunked_gdn(q, k, v, gl, beta, S0, chunk=chunk)
    Sr, outs = S0, []
    for t in range(L):
        Sr, ot = step(Sr, q[:, :, t], k[:, :, t], v[:, :, t], gl[:, :, t], beta[:, :, t])
        outs.append(ot)
    assert torch.allclose(o, torch.stack(outs, 2), atol=1e-10)
    assert torch.allclose(S, Sr, atol=1e-10)


def test_zero_gate_padding_leaves_state():
    N, H, K, V = 1, 1, 4, 4
    S0 = torch.randn(N, H, K, V, dtype=torch.float64)
    z = torch.zeros(N, H, CHUNK, dtype=torch.float64)
    q = k = torch.zeros(N, H, CHUNK, K, dtype=torch.float64)
    _, S = chunked_gdn(q, k, torch.zeros(N, H, CHUNK, V, dtype=torch.float64), z, z, S0)
    assert torch.equal(S, S0)
