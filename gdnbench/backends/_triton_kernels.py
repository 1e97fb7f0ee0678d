"""Triton kernels of the ``triton`` backend (design notes in ``triton_gdn.py``). Imported lazily."""

import triton
import triton.language as tl


@triton.jit
def token_inputs(q, k, v, a, b, tok, h, hv, HK, HV, neg_A, dtb, scale, offs_k, offs_v, K: tl.constexpr,
                 V: tl.constexpr):
    """One token's q, k (L2-normalised, q scaled), v and gates (g, beta), all fp32."""
    qv = tl.load(q + (tok * HK + h) * K + offs_k).to(tl.float32)
    kv = tl.load(k + (tok * HK + h) * K + offs_k).to(tl.float32)
    vv = tl.load(v + (tok * HV + hv) * V + offs_v).to(tl.float32)
    av = tl.load(a + tok * HV + hv).to(tl.float32)
    bv = tl.load(b + tok * HV + hv).to(tl.float32)
    qv = qv * (1.0 / tl.sqrt(tl.sum(qv * qv, axis=0) + 1e-6)) * scale
    kv = kv * (1.0 / tl.sqrt(tl.sum(kv * kv, axis=0) + 1e-6))
    x = av + dtb
    g = neg_A * tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(x)))
    beta = 1.0 / (1.0 + tl.exp(-bv))
    return qv, kv, vv, g, beta


@triton.jit
def gdn_recurrent_kernel(
    q, k, v, a, b, A_log, dt_bias, slots, parents, pool, inter, out, scale, HK, HV,
    T: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BV: tl.constexpr, K_LAST: tl.constexpr, WRITE_BACK: tl.constexpr, INTERMEDIATE: tl.constexpr,
    TREE: tl.constexpr,
):
    pid_nh = tl.program_id(0)
    pid_v = tl.program_id(1)
    n = (pid_nh // HV).to(tl.int64)
    hv = pid_nh % HV
    h = hv // (HV // HK)
    offs_v = pid_v * BV + tl.arange(0, BV)
    offs_k = tl.arange(0, K)
    if K_LAST:  # H[v, k] at v * K + k: a contiguous BV x K block
        offs_s = offs_v[:, None] * K + offs_k[None, :]
    else:       # S[k, v] at k * V + v, read as the same [BV, K] tile of H = S^T
        offs_s = offs_k[None, :] * V + offs_v[:, None]
    slot = tl.load(slots + n).to(tl.int64)
    neg_A = -tl.exp(tl.load(A_log + hv).to(tl.float32))
    dtb = tl.load(dt_bias + hv).to(tl.float32)
    # The first token's inputs do not depend on the slot: load them alongside it (small-batch latency).
    q0, k0, v0, g0, beta0 = token_inputs(q, k, v, a, b, n * T, h, hv, HK, HV, neg_A, dtb, scale, offs_k,
                                         offs_v, K, V)
    if slot >= 0:  # a scalar branch: the body's loads and stores stay unmasked and vectorised
        state = pool + (slot * HV + hv) * (K * V)
        H = tl.load(state + offs_s).to(tl.float32)
        for t in tl.static_range(T):
            tok = n * T + t
            if t == 0:
                qv, kv, vv, g, beta = q0, k0, v0, g0, beta0
            else:
                qv, kv, vv, g, beta = token_inputs(q, k, v, a, b, tok, h, hv, HK, HV, neg_A, dtb, scale,
                                                   offs_k, offs_v, K, V)
            if TREE:
                if t > 0:
                    p = tl.load(parents + tok)
                    if p != t - 1:  # not the previous token: reload the parent's state
                        tl.debug_barrier()
                        H = tl.load(inter + ((n * T + p) * HV + hv) * (K * V) + offs_s).to(tl.float32)
            H = H * tl.exp(g)
            u = beta * (vv - tl.sum(H * kv[None, :], axis=1))
            H = H + u[:, None] * kv[None, :]
            o = tl.sum(H * qv[None, :], axis=1)
            tl.store(out + (tok * HV + hv) * V + offs_v, o.to(out.dtype.element_ty))
            if INTERMEDIATE:
                tl.store(inter + (tok * HV + hv) * (K * V) + offs_s, H.to(inter.dtype.element_ty))
        if WRITE_BACK:
            tl.store(state + offs_s, H.to(pool.dtype.element_ty))
    else:  # padded row (slot -1): zero output, nothing else touched
        for t in tl.static_range(T):
            tl.store(out + ((n * T + t) * HV + hv) * V + offs_v, tl.zeros([BV], dtype=out.dtype.element_ty))
