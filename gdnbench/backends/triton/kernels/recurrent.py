"""The per-token kernel (``Variant.PER_TOKEN``): decode and MTP verify, one program per state tile.

A program owns BV state rows of one (row, value head), ``H[v0:v0+BV, 0:K]`` in the K-last view, held in
registers in fp32 for the whole call, and applies the T tokens one after another: two reductions over K
and a rank-1 update per token, no shared state between programs and no atomics. MTP carries the decay as
one scalar (three passes over the tile per token instead of four) and the parent-token tree reloads a
step's state from the intermediate buffer. Design notes and measurements: ``docs/design/triton-decode.md``.

The tile is held as a 3-D ``[BV, NC, KC]`` register tensor: the BV rows by K = NC * KC columns cut into
NC chunks of KC columns. Triton's coalescing orders the axes by contiguity, ties in axis order: threads
go over the contiguous KC axis, then over BV, and over NC only when BV and KC leave threads over. A
reduction over K is then NC in-thread partial sums plus a shuffle tree over only the KC / 8 (bf16) or
KC / 4 (fp32) threads of one chunk. KC = K is the plain ``[BV, K]`` tile; a smaller KC trades shuffles
for registers holding more of each q/k vector per thread. Vectors over K are ``[NC, KC]``.
"""

import triton
import triton.language as tl

from gdnbench.backends.triton.kernels.common import (
    beta_of,
    decay,
    prefetch_rows,
    tile_coords,
    wait_for_predecessor,
)


@triton.jit
def norm_scale(x):
    """1 / ||x|| (eps 1e-6 inside the sqrt) of a [NC, KC] fp32 vector."""
    return 1.0 / tl.sqrt(tl.sum(tl.sum(x * x, axis=1), axis=0) + 1e-6)


@triton.jit
def gates(qv, kv, av, bv, neg_A, dtb, scale):
    """fp32 q (L2-normalised, scaled), k (L2-normalised), decay g and beta from raw inputs (q, k
    [NC, KC]); ``neg_A = -exp(A_log)`` and ``dtb`` fp32."""
    qv = qv.to(tl.float32)
    kv = kv.to(tl.float32)
    qv = qv * (norm_scale(qv) * scale)
    kv = kv * norm_scale(kv)
    return qv, kv, decay(av, neg_A, dtb), beta_of(bv)


@triton.jit
def k_offsets(K: tl.constexpr, KC: tl.constexpr):
    """Offsets of a K-vector as [NC, KC] (NC = K / KC)."""
    return tl.arange(0, K // KC)[:, None] * KC + tl.arange(0, KC)[None, :]


@triton.jit
def raw_inputs(q, k, v, a, b, tok, h, hv, HK, HV, offs_k, offs_v, K: tl.constexpr, V: tl.constexpr):
    """One token's inputs as stored: q, k [NC, KC] (key head h), v [BV], a, b (value head hv)."""
    return (tl.load(q + (tok * HK + h) * K + offs_k), tl.load(k + (tok * HK + h) * K + offs_k),
            tl.load(v + (tok * HV + hv) * V + offs_v), tl.load(a + tok * HV + hv), tl.load(b + tok * HV + hv))


@triton.jit
def from_raw(qr, kr, vr, ar, br, neg_A, dtb, scale):
    """q, k ([NC, KC], L2-normalised, q scaled), v [BV] and gates (g, beta), all fp32, from raw inputs."""
    qv, kv, g, beta = gates(qr, kr, ar, br, neg_A, dtb, scale)
    return qv, kv, vr.to(tl.float32), g, beta


@triton.jit
def token_inputs(q, k, v, a, b, tok, h, hv, HK, HV, neg_A, dtb, scale, offs_k, offs_v, K: tl.constexpr,
                 V: tl.constexpr):
    """One token's q, k ([NC, KC], L2-normalised, q scaled), v [BV] and gates (g, beta), all fp32."""
    qr, kr, vr, ar, br = raw_inputs(q, k, v, a, b, tok, h, hv, HK, HV, offs_k, offs_v, K, V)
    return from_raw(qr, kr, vr, ar, br, neg_A, dtb, scale)


@triton.jit
def rowsum(x, FLAT: tl.constexpr):
    """Row sums of a [BV, NC, KC] tile: [BV], as one [BV, K] sum (FLAT) or over NC and then KC (see
    ``rowdot``)."""
    if FLAT:
        return tl.sum(tl.reshape(x, (x.shape[0], x.shape[1] * x.shape[2])), axis=1)
    else:
        return tl.sum(tl.sum(x, axis=1), axis=1)


@triton.jit
def rowdot(H, x, FLAT: tl.constexpr):
    """H x for a [BV, NC, KC] tile and a [NC, KC] vector: [BV].

    FLAT: reduced as one [BV, K] sum through a reshape that moves no data (Triton gives it a linear
    layout over the same registers), so each thread's share of a row is one multiply-add chain
    (ptxas fuses the products) before a shuffle tree over only the KC / 8 (bf16) or KC / 4 (fp32)
    threads of a chunk; summing over NC and then KC costs a multiply, a multiply-add and an add per
    pair of elements instead (sm_90 offline, bf16 T = 4: 2784 -> 2568 instructions per program).
    Not FLAT (tiles whose lanes also split the K chunks, ``flat_rowdot``): the NC partial sums, then
    one [BV, KC] reduction across threads; Triton 3.6 compiled the flat sum wrongly on the H100 for
    such a layout (bf16 BV=4 KC=32 failed the gate)."""
    return rowsum(H * x[None, :, :], FLAT)


@triton.jit
def overlapped_products(H, qv, kv, vv, g, beta, FLAT: tl.constexpr):
    """One token's products from the state before its update: ``e^g``, the update's row weights
    ``u = beta (v - e^g (H k))`` [BV] and the output ``o = e^g (H q) + u (k.q)`` [BV] (the new state is
    ``e^g H + u k^T``)."""
    eg = tl.exp(g)
    hk = rowdot(H, kv, FLAT)
    hq = rowdot(H, qv, FLAT)
    u = beta * (vv - eg * hk)
    return eg, u, eg * hq + u * tl.sum(tl.sum(kv * qv, axis=1), axis=0)


@triton.jit
def token_step(H, qv, kv, vv, g, beta, OVERLAP: tl.constexpr, FLAT: tl.constexpr):
    """One token on a [BV, NC, KC] tile (fp32): returns (new H, output [BV]).

    OVERLAP: both products read the state before the update, ``o = e^g (H q) + u (k.q)`` with
    ``u = beta (v - e^g (H k))``, so the two reductions over K are independent and overlap (one
    shuffle-reduction latency per token on the critical path instead of two). On the H100 that is
    1-4% faster for decode (T = 1) and 4-9% slower for MTP T = 4 (more registers live across the
    unrolled tokens), so the kernels use it for T = 1 only (results/*_triton-tune)."""
    if OVERLAP:
        eg, u, o = overlapped_products(H, qv, kv, vv, g, beta, FLAT)
        return H * eg + u[:, None, None] * kv[None, :, :], o
    else:
        H = H * tl.exp(g)
        u = beta * (vv - rowdot(H, kv, FLAT))
        H = H + u[:, None, None] * kv[None, :, :]
        return H, rowdot(H, qv, FLAT)


@triton.jit
def inv_norm(x):
    """1 / ||x|| (eps 1e-6 inside the sqrt) of a [NC, KC] fp32 vector, summed as one flat [K] vector
    (a thread's share is one multiply-add chain, then the shuffle tree) with a hardware rsqrt."""
    NC: tl.constexpr = x.shape[0]
    KC: tl.constexpr = x.shape[1]
    return tl.rsqrt(tl.sum(tl.reshape(x * x, (NC * KC,)), axis=0) + 1e-6)


@triton.jit
def scaled_step(H, qf, kf, vv, c, inv_c, beta, sq, sk, FLAT: tl.constexpr):
    """One token on a [BV, NC, KC] tile Hs whose true state is ``c * Hs`` after this token's decay,
    (``inv_c = 1 / c``), with q and k as loaded (fp32, not normalised) and their scales ``sq = scale / ||q||``,
    ``sk = 1 / ||k||``: returns (new Hs, output [BV]). The true step ``u = beta (v - H k)``,
    ``H += u k^T``, ``o = H q`` becomes ``u = beta (v - c sk (Hs k))``, ``Hs += (u sk / c) k^T``,
    ``o = c sq (Hs q)``: the scales land on BV-long vectors instead of K-long ones, and a decay
    folded into ``c`` costs no pass over the tile."""
    u = beta * (vv - (c * sk) * rowdot(H, kf, FLAT))
    H = H + (u * (sk * inv_c))[:, None, None] * kf[None, :, :]
    return H, (c * sq) * rowdot(H, qf, FLAT)


@triton.jit
def mtp_tokens(H, q0, k0, v0, g_all, beta_all, q, k, v, inter, out, state, n, h, hv, HK: tl.constexpr,
               HV: tl.constexpr, scale, offs_k, offs_v, offs_s, T: tl.constexpr, K: tl.constexpr,
               V: tl.constexpr, LAZY: tl.constexpr, WRITE_BACK: tl.constexpr, INTERMEDIATE: tl.constexpr,
               FLAT: tl.constexpr):
    """The T tokens of one tile: H its fp32 state [BV, NC, KC] as loaded (``state``: the head's pool
    slot, ``offs_s`` the tile's offsets), stored here with the outputs and intermediate states. q0, k0, v0: the
    first token's raw inputs; g_all, beta_all [TP]: every token's log-decay and beta (fp32, zero past T);
    q and k stay as loaded, their L2 norms and the scale applied to BV-long vectors (``scaled_step``).
    Each token's q and k are loaded one token ahead, so their L2 latency overlaps the token before
    instead of stalling the start of every token (v, used after the first row sum, is loaded in place:
    prefetching it too made the bf16 BV = 16 tile spill under its 128-register cap).

    LAZY: the decays are carried as one scalar, the true state being ``exp(gc_t) * Hs`` with ``gc_t``
    the cumulative log-decay, so a token costs three passes over the tile (two row sums, one rank-1
    update) instead of four, and the scale is applied once, on the store. The caller takes this path
    only when ``exp(-gc_T)`` stays far from fp32 overflow; otherwise (LAZY false) each token multiplies
    the tile by its decay, as the reference does."""
    gc = 0.0
    c = 1.0
    qn, kn = q0, k0
    for t in tl.static_range(T):
        tok = n * T + t
        qr, kr = qn, kn
        if t + 1 < T:  # the next token's q and k load while this one computes (one token ahead)
            qn = tl.load(q + ((tok + 1) * HK + h) * K + offs_k)
            kn = tl.load(k + ((tok + 1) * HK + h) * K + offs_k)
        if t == 0:
            vr = v0
        else:
            vr = tl.load(v + (tok * HV + hv) * V + offs_v)
        qf = qr.to(tl.float32)
        kf = kr.to(tl.float32)
        this = tl.arange(0, g_all.shape[0]) == t
        g = tl.sum(tl.where(this, g_all, 0.0), axis=0)
        beta = tl.sum(tl.where(this, beta_all, 0.0), axis=0)
        if LAZY:
            gc = gc + g
            c = tl.exp(gc)
            inv_c = tl.exp(-gc)
        else:
            H = H * tl.exp(g)
            inv_c = 1.0
        H, o = scaled_step(H, qf, kf, vr.to(tl.float32), c, inv_c, beta, inv_norm(qf) * scale, inv_norm(kf), FLAT)
        tl.store(out + (tok * HV + hv) * V + offs_v, o.to(out.dtype.element_ty))
        if INTERMEDIATE:
            tl.store(inter + (tok * HV + hv) * (K * V) + offs_s, (H * c).to(inter.dtype.element_ty))
    if WRITE_BACK:
        tl.store(state + offs_s, (H * c).to(state.dtype.element_ty))


@triton.jit
def state_offsets(i_v, K: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, KC: tl.constexpr,
                  K_LAST: tl.constexpr):
    """Offsets of the tile's state as [BV, NC, KC] (element [r, c, j] is H[v0 + r, c * KC + j])."""
    offs_v = (i_v * BV + tl.arange(0, BV))[:, None, None]
    offs_k = k_offsets(K, KC)[None, :, :]
    if K_LAST:  # H[v, k] at v * K + k: a contiguous BV x K block
        return offs_v * K + offs_k
    else:       # S[k, v] at k * V + v, read as the same tile of H = S^T
        return offs_k * V + offs_v


@triton.jit
def grid_tile(slots, HK, HV, K: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, KC: tl.constexpr,
              K_LAST: tl.constexpr):
    """This program's tile in a 1-D grid of B * HV * (V / BV) tiles, the V blocks of one head
    consecutive (``tile_coords``), so programs that run together read neighbouring state (a head's
    K x V block is contiguous in a K-last pool; with the head index fastest, as before, they read
    4-16 KB pieces of as many heads; the cute and FlashInfer kernels order their CTAs this way too).
    Returns row n (int64), value head, key head, V offsets [BV], K offsets [NC, KC], the state tile's
    offsets [BV, NC, KC], and the row's slot (int64, -1 = padded)."""
    i_v, n, hv, h = tile_coords(tl.program_id(0), HV, HK, V // BV)
    return (n, hv, h, i_v * BV + tl.arange(0, BV), k_offsets(K, KC), state_offsets(i_v, K, V, BV, KC, K_LAST),
            tl.load(slots + n).to(tl.int64))


@triton.jit
def gdn_recurrent_kernel(
    q, k, v, a, b, A_log, dt_bias, slots, parents, pool, inter, out, scale, HK: tl.constexpr, HV: tl.constexpr,
    T: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BV: tl.constexpr, KC: tl.constexpr, K_LAST: tl.constexpr, WRITE_BACK: tl.constexpr,
    INTERMEDIATE: tl.constexpr, TREE: tl.constexpr, FLAT: tl.constexpr, TP: tl.constexpr,
    PDL: tl.constexpr = False, AHEAD: tl.constexpr = 0,
):
    """Decode (T = 1) and MTP verify (T > 1, optionally a parent-token tree) for one BV x K state tile per
    program: the slot and the first token's inputs are loaded together, then the state tile (the only load
    that waits for the slot). AHEAD > 0: the program also asks L2 for the tile of the program AHEAD
    further on (the next wave's), so that program's state load hits L2. A padded row (slot -1) writes a
    zero output and touches no state (a scalar branch keeps the body's accesses 16-byte vectors)."""
    wait_for_predecessor(PDL)
    n, hv, h, offs_v, offs_k, offs_s, slot = grid_tile(slots, HK, HV, K, V, BV, KC, K_LAST)
    if AHEAD > 0:  # the tile of the program AHEAD further on (the next wave's): its slot, loaded alongside ours
        later = tl.program_id(0) + AHEAD
        i_v2, n2, hv2, _h2 = tile_coords(later, HV, HK, V // BV)
        slot2 = tl.load(slots + n2, mask=later < tl.num_programs(0), other=-1).to(tl.int64)
    # The first token's raw inputs do not depend on the slot: load them alongside it (small-batch
    # latency). Their arithmetic (norms, gates) waits until the state load is issued: it would
    # otherwise sit between the slot's arrival and that load, the one on the critical path.
    alog = tl.load(A_log + hv)
    dtb_r = tl.load(dt_bias + hv)
    q0, k0, v0, a0, b0 = raw_inputs(q, k, v, a, b, n * T, h, hv, HK, HV, offs_k, offs_v, K, V)
    if T > 1 and not TREE:  # the MTP path's decision (mtp_tokens): every token's decay, before the slot
        offs_t = tl.arange(0, TP)
        a_all = tl.load(a + (n * T + offs_t) * HV + hv, mask=offs_t < T, other=0.0)
        b_all = tl.load(b + (n * T + offs_t) * HV + hv, mask=offs_t < T, other=0.0)
    if slot >= 0:  # a scalar branch: the body's loads and stores stay unmasked and vectorised
        state = pool + (slot * HV + hv) * (K * V)
        H = tl.load(state + offs_s).to(tl.float32)
        if AHEAD > 0:  # ask L2 for that tile's state now, so its program's load on the critical path hits L2
            if slot2 >= 0:
                prefetch_rows(pool + (slot2 * HV + hv2) * (K * V), i_v2 * BV, BV, K, V, K_LAST)
        neg_A = -tl.exp(alog.to(tl.float32))
        dtb = dtb_r.to(tl.float32)
        if T > 1 and not TREE:
            # lazy decay while exp(-gc) < e^60 (fp32 overflows past e^88); steeper decays, eager
            g_all = tl.where(offs_t < T, decay(a_all, neg_A, dtb), 0.0)
            beta_all = beta_of(b_all)
            if tl.sum(g_all, axis=0) > -60.0:
                mtp_tokens(H, q0, k0, v0, g_all, beta_all, q, k, v, inter, out, state, n, h, hv, HK, HV, scale,
                           offs_k, offs_v, offs_s, T, K, V, True, WRITE_BACK, INTERMEDIATE, FLAT)
            else:
                mtp_tokens(H, q0, k0, v0, g_all, beta_all, q, k, v, inter, out, state, n, h, hv, HK, HV, scale,
                           offs_k, offs_v, offs_s, T, K, V, False, WRITE_BACK, INTERMEDIATE, FLAT)
        else:
            for t in tl.static_range(T):
                tok = n * T + t
                if t == 0:
                    qv, kv, vv, g, beta = from_raw(q0, k0, v0, a0, b0, neg_A, dtb, scale)
                else:
                    qv, kv, vv, g, beta = token_inputs(q, k, v, a, b, tok, h, hv, HK, HV, neg_A, dtb, scale,
                                                       offs_k, offs_v, K, V)
                if TREE:
                    if t > 0:
                        p = tl.load(parents + tok)
                        if p != t - 1:  # not the previous token: reload the parent's state
                            tl.debug_barrier()
                            H = tl.load(inter + ((n * T + p) * HV + hv) * (K * V) + offs_s).to(tl.float32)
                H, o = token_step(H, qv, kv, vv, g, beta, T == 1, FLAT)
                tl.store(out + (tok * HV + hv) * V + offs_v, o.to(out.dtype.element_ty))
                if INTERMEDIATE:
                    tl.store(inter + (tok * HV + hv) * (K * V) + offs_s, H.to(inter.dtype.element_ty))
            if WRITE_BACK:
                tl.store(state + offs_s, H.to(pool.dtype.element_ty))
    else:  # padded row (slot -1): zero output, nothing else touched
        for t in tl.static_range(T):
            tl.store(out + ((n * T + t) * HV + hv) * V + offs_v, tl.zeros([BV], dtype=out.dtype.element_ty))
