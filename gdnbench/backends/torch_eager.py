"""``torch``: vectorised eager PyTorch, float32 compute, the baseline every backend is compared with.

Decode and MTP run the reference's step function over all valid rows and heads at once (a loop over
the T tokens only) on the pooled state: gather the slots, compute in float32, scatter back in the
pool's dtype. Prefill uses the chunked (WY) form of the recurrence, batched over sequences, heads and
chunks, with one sequential pass over chunks for the state. Padded rows: pool untouched, output zero.
Everything data-dependent (valid rows, gather indices) is computed in ``build``, so the launch is
capturable in a CUDA graph.
"""

from __future__ import annotations

import torch

from gdnbench.backends.base import Backend, Padding, Target
from gdnbench.cases import Case
from gdnbench.inputs import Inputs
from gdnbench.reference import expand_heads, from_canonical, gates, l2norm, prepare_qk, step, to_canonical

CHUNK = 64


class TorchEager(Backend):
    name = "torch"
    summary = "vectorised eager PyTorch (float32 compute); the baseline"

    def supports(self, case: Case, target: Target | None = None) -> str | None:
        return None

    def kernel(self, case: Case) -> str:
        return f"eager chunked WY (C={CHUNK})" if case.phase == "prefill" else "eager recurrent"

    def padding(self, case: Case) -> Padding:
        return Padding.ZERO

    def expected_kernels(self, case: Case) -> tuple[str, ...]:
        return ("elementwise_kernel",)  # eager ATen ops (exp, mul, add) around the einsums

    def build(self, case: Case, inputs: Inputs):
        if case.phase == "prefill":
            return _build_prefill(case, inputs)
        return _build_recurrent(case, inputs)


def _build_recurrent(case: Case, x: Inputs):
    dev = x.device
    B, T, hv, V = case.batch, case.tokens, case.hv, case.head_dim_v
    valid = x.valid_rows
    all_valid = len(valid) == B
    rows = torch.tensor(valid, dtype=torch.long, device=dev)
    slots = x.slots.long()[rows]
    out = torch.zeros(B, T, hv, V, dtype=x.v.dtype, device=dev)
    parents = x.parents.long()[rows] if case.tree else None
    ar = torch.arange(len(valid), device=dev)
    keep_steps = case.intermediate or case.tree
    pool, inter, scale = x.pool, x.inter, x.scale

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t if all_valid else t.index_select(0, rows)

    def launch() -> torch.Tensor:
        S = to_canonical(pool.index_select(0, slots), case.layout).float()
        q, k = prepare_qk(pick(x.q), pick(x.k), hv, scale, torch.float32)
        v = pick(x.v).float()
        g, beta = gates(pick(x.a), pick(x.b), x.A_log, x.dt_bias, torch.float32)
        steps, outs = [], []
        for t in range(T):
            if parents is not None and t > 0:
                S = torch.stack(steps)[parents[:, t], ar]
            S, o = step(S, q[:, t], k[:, t], v[:, t], g[:, t], beta[:, t])
            outs.append(o)
            if keep_steps:
                steps.append(S)
        o = torch.stack(outs, 1).to(out.dtype)
        if all_valid:
            out.copy_(o)
        else:
            out.index_copy_(0, rows, o)
        if inter is not None:
            inter.index_copy_(0, rows, from_canonical(torch.stack(steps, 1), case.layout).to(inter.dtype))
        if case.write_back:
            pool.index_copy_(0, slots, from_canonical(S, case.layout).to(pool.dtype))
        return out

    return launch


def chunked_gdn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                S: torch.Tensor, chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked (WY) GDN over whole sequences. q, k ``[N, H, L, K]`` (prepared: normalised, q scaled),
    v ``[N, H, L, V]``, g, beta ``[N, H, L]`` with L a multiple of ``chunk``; S ``[N, H, K, V]``.

    Padding positions must have g = 0 and beta = 0 (they leave the state unchanged). Returns
    (o ``[N, H, L, V]``, final S). Within a chunk, with cumulative log decay c_i and
    A_ij = beta_i (k_i . k_j) exp(c_i - c_j) for i > j, T = (I + A)^-1 turns the delta rule into
    W = T (beta k exp(c)), U = T (beta v); then per chunk, in order:
    V' = U - W S, o = (q exp(c)) S + tril(q k^T exp(c_i - c_j)) V', S = exp(c_C) S + (k exp(c_C - c))^T V'.
    """
    N, H, L, K = k.shape
    nc = L // chunk
    shp = (N, H, nc, chunk)
    q, k, v = q.reshape(*shp, K), k.reshape(*shp, K), v.reshape(*shp, -1)
    g, beta = g.reshape(shp), beta.reshape(shp)
    c = g.cumsum(-1)
    diff = c[..., :, None] - c[..., None, :]
    lower_incl = torch.ones(chunk, chunk, dtype=torch.bool, device=k.device).tril()
    decay = torch.where(lower_incl, diff, torch.full_like(diff, float("-inf"))).exp()  # exp(c_i - c_j), i >= j
    kb = k * beta[..., None]
    A = ((kb @ k.transpose(-1, -2)) * decay).tril(-1)  # strictly lower
    eye = torch.eye(chunk, dtype=k.dtype, device=k.device)
    Tm = torch.linalg.solve_triangular(eye + A, eye.expand_as(A), upper=False, unitriangular=True)
    W = Tm @ (kb * c.exp()[..., None])
    U = Tm @ (v * beta[..., None])
    o = torch.empty_like(v)
    for i in range(nc):
        qi, ki, ci = q[:, :, i], k[:, :, i], c[:, :, i]
        attn = (qi @ ki.transpose(-1, -2)) * decay[:, :, i]
        vn = U[:, :, i] - W[:, :, i] @ S
        o[:, :, i] = (qi * ci.exp()[..., None]) @ S + attn @ vn
        last = ci[..., -1:]
        S = S * last.exp()[..., None] + (ki * (last - ci).exp()[..., None]).transpose(-1, -2) @ vn
    return o.reshape(N, H, L, -1), S


def _build_prefill(case: Case, x: Inputs):
    dev = x.device
    hv = case.hv
    lens = case.lens
    cu = case.cu_seqlens
    valid = x.valid_rows
    out = torch.zeros(case.tokens, hv, case.head_dim_v, dtype=x.v.dtype, device=dev)
    if not valid:
        return lambda: out
    Lp = -(-max(lens[r] for r in valid) // CHUNK) * CHUNK
    pad_token = case.tokens  # index of an all-zero row appended below
    gather = torch.full((len(valid), Lp), pad_token, dtype=torch.long)
    for i, r in enumerate(valid):
        gather[i, : lens[r]] = torch.arange(cu[r], cu[r] + lens[r])
    gather = gather.to(dev)
    flat = gather.flatten()
    real = (flat != pad_token).nonzero().squeeze(1)
    real_tokens = flat[real]
    rows = torch.tensor(valid, dtype=torch.long, device=dev)
    slots = x.slots.long()[rows]
    pool, scale, n = x.pool, x.scale, len(valid)

    def padded(t: torch.Tensor) -> torch.Tensor:
        """[L, ...] -> [n, Lp, ...] with zeros at padding positions."""
        t = torch.cat([t, t.new_zeros(1, *t.shape[1:])])
        return t[gather]

    def launch() -> torch.Tensor:
        q = expand_heads(l2norm(x.q[0].float()) * scale, hv)
        k = expand_heads(l2norm(x.k[0].float()), hv)
        g, beta = gates(x.a[0], x.b[0], x.A_log, x.dt_bias, torch.float32)
        qp, kp, vp = (padded(t).transpose(1, 2) for t in (q, k, x.v[0].float()))  # [n, hv, Lp, D]
        gp, bp = (padded(t).transpose(1, 2) for t in (g, beta))                 # [n, hv, Lp]
        S = to_canonical(pool.index_select(0, slots), case.layout).float()
        o, S = chunked_gdn(qp, kp, vp, gp, bp, S)
        o = o.transpose(1, 2).reshape(n * Lp, hv, -1)
        out.index_copy_(0, real_tokens, o.index_select(0, real).to(out.dtype))
        if case.write_back:
            pool.index_copy_(0, slots, from_canonical(S, case.layout).to(pool.dtype))
        return out

    return launch


BACKEND = TorchEager()
