"""The GDN math in plain PyTorch, and the oracle every backend is checked against.

One recurrent step per token and value head, on the canonical state ``S`` of shape ``[K, V]``
(the v_last layout; a k_last pool holds ``H = S^T``)::

    g    = -exp(A_log) * softplus(a + dt_bias)      # softplus threshold 20; alpha = exp(g)
    beta = sigmoid(b)
    q, k = q / sqrt(sum(q^2) + 1e-6) * scale, k / sqrt(sum(k^2) + 1e-6)
    S    = exp(g) * S
    u    = beta * (v - S^T k)
    S    = S + outer(k, u)
    o    = S^T q

GQA: value head ``hv`` reads q/k head ``hv // (HV // HK)`` (repeat_interleave). ``reference`` runs
these steps token by token in float64 and returns the expected outputs and states; the ``torch``
backend uses the same functions in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gdnbench.inputs import Inputs

L2_EPS = 1e-6
SOFTPLUS_THRESHOLD = 20.0


def gates(a: torch.Tensor, b: torch.Tensor, A_log: torch.Tensor, dt_bias: torch.Tensor,
          dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused gating. a, b ``[..., hv]``; A_log, dt_bias ``[hv]`` -> (g log-decay, beta), both ``[..., hv]``."""
    x = a.to(dtype) + dt_bias.to(dtype)
    g = -torch.exp(A_log.to(dtype)) * F.softplus(x, beta=1.0, threshold=SOFTPLUS_THRESHOLD)
    return g, torch.sigmoid(b.to(dtype))


def l2norm(x: torch.Tensor) -> torch.Tensor:
    """x / sqrt(sum(x^2) + 1e-6) over the last dim (eps inside the sqrt, unlike F.normalize)."""
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + L2_EPS)


def expand_heads(x: torch.Tensor, hv: int) -> torch.Tensor:
    """``[..., hk, D]`` -> ``[..., hv, D]``: each k-head serves a contiguous group of value heads."""
    return x.repeat_interleave(hv // x.shape[-2], dim=-2)


def prepare_qk(q: torch.Tensor, k: torch.Tensor, hv: int, scale: float, dtype: torch.dtype):
    """L2-normalise q and k, scale q, expand to hv heads. ``[..., hk, K]`` -> ``[..., hv, K]`` in dtype."""
    return expand_heads(l2norm(q.to(dtype)) * scale, hv), expand_heads(l2norm(k.to(dtype)), hv)


def step(S: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
         beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One token. S ``[n, hv, K, V]``; q, k ``[n, hv, K]`` (prepared); v ``[n, hv, V]``; g, beta ``[n, hv]``.

    Returns (new S, output ``[n, hv, V]``); the output reads the updated state.
    """
    S = S * torch.exp(g)[..., None, None]
    u = beta[..., None] * (v - torch.einsum("nhkv,nhk->nhv", S, k))
    S = S + k[..., :, None] * u[..., None, :]
    return S, torch.einsum("nhkv,nhk->nhv", S, q)


def to_canonical(state: torch.Tensor, layout: str) -> torch.Tensor:
    """Pool-layout state ``[..., V, K]`` (k_last) or ``[..., K, V]`` (v_last) -> ``[..., K, V]`` view."""
    return state.transpose(-1, -2) if layout == "k_last" else state


def from_canonical(S: torch.Tensor, layout: str) -> torch.Tensor:
    return S.transpose(-1, -2) if layout == "k_last" else S


@dataclass
class Expected:
    """Reference results, float32 (computed in float64). Rows that are padded hold NaN.

    out ``[B, T, hv, V]`` (prefill ``[L, hv, V]``); state ``[B, *state_shape]`` final state per row in
    the pool's layout; inter ``[B, T, *state_shape]`` state after each step (mtp with intermediate).
    """

    out: torch.Tensor
    state: torch.Tensor
    inter: torch.Tensor | None
    valid_rows: list[int]
    valid_tokens: torch.Tensor | None = None  # prefill: bool [L], tokens of valid sequences


def reference(inputs: Inputs, dtype: torch.dtype = torch.float64, row_chunk: int | None = None) -> Expected:
    """Expected outputs and states for one input set. Rows are independent, so they are processed in
    chunks of ``row_chunk`` rows to bound float64 memory (default: ~1 GiB of state per chunk)."""
    case = inputs.case
    if case.phase == "prefill":
        return _reference_prefill(inputs, dtype)
    B, T, hv, V = case.batch, case.tokens, case.hv, case.head_dim_v
    dev = inputs.device
    if row_chunk is None:
        per_row = case.state_elems * 8 * (T + 3 if case.intermediate or case.tree else 4)
        row_chunk = max(1, (1 << 30) // per_row)
    out = torch.full((B, T, hv, V), float("nan"), dtype=torch.float32, device=dev)
    state = torch.full((B, *inputs.pool.shape[1:]), float("nan"), dtype=torch.float32, device=dev)
    inter = (torch.full((B, T, *inputs.pool.shape[1:]), float("nan"), dtype=torch.float32, device=dev)
             if case.intermediate else None)
    valid = inputs.valid_rows
    for lo in range(0, len(valid), row_chunk):
        rows = torch.tensor(valid[lo:lo + row_chunk], dtype=torch.long, device=dev)
        slots = inputs.slots.long()[rows]
        S = to_canonical(inputs.pool[slots], case.layout).to(dtype)
        q, k = prepare_qk(inputs.q[rows], inputs.k[rows], hv, inputs.scale, dtype)
        v = inputs.v[rows].to(dtype)
        g, beta = gates(inputs.a[rows], inputs.b[rows], inputs.A_log, inputs.dt_bias, dtype)
        parents = inputs.parents[rows].long() if case.tree else None
        steps: list[torch.Tensor] = []
        ar = torch.arange(len(rows), device=dev)
        for t in range(T):
            if parents is not None and t > 0:
                S = torch.stack(steps)[parents[:, t], ar]
            S, o = step(S, q[:, t], k[:, t], v[:, t], g[:, t], beta[:, t])
            out[rows, t] = o.float()
            if case.intermediate or case.tree:
                steps.append(S)
        state[rows] = from_canonical(S, case.layout).float()
        if inter is not None:
            inter[rows] = from_canonical(torch.stack(steps, 1), case.layout).float()
    return Expected(out=out, state=state, inter=inter, valid_rows=valid)


def _reference_prefill(inputs: Inputs, dtype: torch.dtype) -> Expected:
    """Token-by-token recurrence for every sequence (sequences advance together, masked by length)."""
    case = inputs.case
    dev = inputs.device
    hv, V = case.hv, case.head_dim_v
    lens = case.lens
    cu = case.cu_seqlens
    valid = inputs.valid_rows
    out = torch.full((case.tokens, hv, V), float("nan"), dtype=torch.float32, device=dev)
    state = torch.full((case.batch, *inputs.pool.shape[1:]), float("nan"), dtype=torch.float32, device=dev)
    valid_tokens = torch.zeros(case.tokens, dtype=torch.bool, device=dev)
    if not valid:
        return Expected(out=out, state=state, inter=None, valid_rows=valid, valid_tokens=valid_tokens)
    rows = torch.tensor(valid, dtype=torch.long, device=dev)
    S = to_canonical(inputs.pool[inputs.slots.long()[rows]], case.layout).to(dtype)
    q, k = prepare_qk(inputs.q[0], inputs.k[0], hv, inputs.scale, dtype)
    v = inputs.v[0].to(dtype)
    g, beta = gates(inputs.a[0], inputs.b[0], inputs.A_log, inputs.dt_bias, dtype)
    max_len = max(lens[r] for r in valid)
    starts = torch.tensor([cu[r] for r in valid], device=dev)
    row_lens = torch.tensor([lens[r] for r in valid], device=dev)
    for t in range(max_len):
        active = t < row_lens
        tok = torch.where(active, starts + t, starts)  # inactive rows read a valid token, result discarded
        S_new, o = step(S, q[tok], k[tok], v[tok], g[tok], beta[tok])
        S = torch.where(active[:, None, None, None], S_new, S)
        out[tok[active]] = o[active].float()
        valid_tokens[tok[active]] = True
    state[rows] = from_canonical(S, case.layout).float()
    return Expected(out=out, state=state, inter=None, valid_rows=valid, valid_tokens=valid_tokens)
