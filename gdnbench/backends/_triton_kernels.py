"""Triton kernels of the ``triton`` backend (design notes in ``triton_gdn.py``). Imported lazily.

The per-token kernels hold a state tile as a 3-D ``[BV, NC, KC]`` register tensor: the tile's BV rows
(value index) by K = NC * KC columns, cut into NC chunks of KC columns. Triton's coalescing orders
the axes by contiguity, ties in axis order: threads go over the contiguous KC axis, then over BV (axis
0), and over NC only when BV and KC leave threads over. A reduction over K is then NC in-thread
partial sums plus a shuffle tree over only the KC / 8 (bf16) or KC / 4 (fp32) threads of one chunk.
KC = K is the plain ``[BV, K]`` tile; a smaller KC trades shuffles (the shuffle unit issues at 1/4 of
the FP32 rate) for registers holding more of each q/k vector per thread. Vectors over K are
``[NC, KC]``.
"""

import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_wait


@triton.jit
def norm_scale(x):
    """1 / ||x|| (eps 1e-6 inside the sqrt) of a [NC, KC] fp32 vector."""
    return 1.0 / tl.sqrt(tl.sum(tl.sum(x * x, axis=1), axis=0) + 1e-6)


@triton.jit
def decay(av, neg_A, dtb):
    """Log-decay ``g = -exp(A_log) * softplus(a + dt_bias)`` (threshold 20) in fp32."""
    x = av.to(tl.float32) + dtb
    return neg_A * tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(x)))


@triton.jit
def beta_of(bv):
    """``beta = sigmoid(b)`` in fp32."""
    return 1.0 / (1.0 + tl.exp(-bv.to(tl.float32)))


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
def reread_decode(Hr, q0, k0, v0, a0, b0, neg_A, dtb, scale, out, state, n, hv, HV, offs_v, offs_s,
                  V: tl.constexpr, WRITE_BACK: tl.constexpr, FLAT: tl.constexpr):
    """Decode (T = 1) in two passes over the tile: the row sums ``H k``, ``H q`` from the state as
    loaded (``Hr``), then the state read again (from L2: the tile was read moments before) for the
    update ``e^g H + u k^T`` (decode has no intermediate states). Nothing tile-sized is live across the
    reductions, so a program needs fewer registers (sm_90, bf16 BV = 16: 80 instead of 126) and more
    programs fit on an SM: held as fp32 in registers, the state of 512 (row, head) pairs (K = V = 128)
    alone would fill all 132 register files of an H100."""
    qv, kv, vv, g, beta = from_raw(q0, k0, v0, a0, b0, neg_A, dtb, scale)
    eg, u, o = overlapped_products(Hr.to(tl.float32), qv, kv, vv, g, beta, FLAT)
    tl.store(out + (n * HV + hv) * V + offs_v, o.to(out.dtype.element_ty))
    if WRITE_BACK:
        H = tl.load(state + offs_s, cache_modifier=".cg").to(tl.float32) * eg + u[:, None, None] * kv[None, :, :]
        tl.store(state + offs_s, H.to(state.dtype.element_ty))


@triton.jit
def tile_layout_decode(Hr, q, k, v0, a0, b0, neg_A, dtb, scale, out, state, n, h, hv, HK, HV, offs_k, offs_v, offs_s,
                K: tl.constexpr, V: tl.constexpr, WRITE_BACK: tl.constexpr, FLAT: tl.constexpr):
    """Decode (T = 1) in one pass with every K-long vector in the tile's own register layout (``reread``
    = 2): q and k are loaded as [BV, NC, KC] (each thread reads the columns of its own rows, so with one
    row per thread nothing is loaded twice and nothing goes through shared memory), and the five
    reductions over K (``|q|^2``, ``|k|^2``, ``k.q`` per row, ``H k``, ``H q``) are independent, so they
    overlap instead of queueing behind the norms (the norms land on the BV-long results, as in
    ``scaled_step``): ``u = beta (v - e^g sk (H k))``, ``o = e^g sq (H q) + u sk sq (k.q)``,
    ``H' = e^g H + (u sk) k^T``. Hr: the tile as stored."""
    row = (n * HK + h) * K + tl.broadcast_to(offs_k[None, :, :], Hr.shape)
    qt = tl.load(q + row).to(tl.float32)
    kt = tl.load(k + row).to(tl.float32)
    Hf = Hr.to(tl.float32)
    sq = tl.rsqrt(rowsum(qt * qt, FLAT) + 1e-6) * scale
    sk = tl.rsqrt(rowsum(kt * kt, FLAT) + 1e-6)
    kq = rowsum(qt * kt, FLAT)
    hk = rowsum(Hf * kt, FLAT)
    hq = rowsum(Hf * qt, FLAT)
    eg = tl.exp(decay(a0, neg_A, dtb))
    u = beta_of(b0) * (v0.to(tl.float32) - (eg * sk) * hk)
    o = (eg * sq) * hq + u * (kq * sk * sq)
    tl.store(out + (n * HV + hv) * V + offs_v, o.to(out.dtype.element_ty))
    if WRITE_BACK:
        H = Hf * eg + (u * sk)[:, None, None] * kt
        tl.store(state + offs_s, H.to(state.dtype.element_ty))


@triton.jit
def norms_on_row_sums(hk, hq, qf, kf, v0, a0, b0, neg_A, dtb, scale):
    """The decode step from the row sums of raw q and k (``hk = H k``, ``hq = H q``, [BV] fp32) with the
    L2 norms applied to them: q, k as loaded ([NC, KC] fp32), v [BV], a, b raw, ``neg_A = -exp(A_log)``
    and ``dtb`` fp32. Returns ``eg = e^g``, ``sk = 1 / ||k||``, ``u`` (the new state is
    ``e^g H + (u sk) k^T``) and the output ``o`` [BV]: ``u = beta (v - e^g sk (H k))``,
    ``o = e^g sq (H q) + u sk sq (k.q)``."""
    sq = inv_norm(qf) * scale
    sk = inv_norm(kf)
    kq = tl.sum(tl.reshape(qf * kf, (qf.shape[0] * qf.shape[1],)), axis=0)
    eg = tl.exp(decay(a0, neg_A, dtb))
    u = beta_of(b0) * (v0.to(tl.float32) - (eg * sk) * hk)
    return eg, sk, u, (eg * sq) * hq + u * (kq * sk * sq)


@triton.jit
def raw_vector_decode(Hr, q0, k0, v0, a0, b0, neg_A, dtb, scale, out, state, n, hv, HV, offs_v, offs_s,
                      V: tl.constexpr, WRITE_BACK: tl.constexpr, FLAT: tl.constexpr):
    """Decode (T = 1) in one pass with q and k as loaded ([NC, KC], once per thread) and their norms
    applied to the BV-long results (``reread`` = 3, ``norms_on_row_sums``): the row sums ``H k``, ``H q``
    take the raw vectors, so they need not wait for the norms' reductions over K (as in
    ``tile_layout_decode``, without reading q and k once per row held). Hr: the tile as stored."""
    qf = q0.to(tl.float32)
    kf = k0.to(tl.float32)
    Hf = Hr.to(tl.float32)
    eg, sk, u, o = norms_on_row_sums(rowdot(Hf, kf, FLAT), rowdot(Hf, qf, FLAT), qf, kf, v0, a0, b0, neg_A, dtb,
                                     scale)
    tl.store(out + (n * HV + hv) * V + offs_v, o.to(out.dtype.element_ty))
    if WRITE_BACK:
        H = Hf * eg + (u * sk)[:, None, None] * kf[None, :, :]
        tl.store(state + offs_s, H.to(state.dtype.element_ty))


@triton.jit
def masked_slot(pool, slot, hv, offs, HV, K: tl.constexpr, V: tl.constexpr):
    """A row's state without a slot branch: (valid, the head's state in the pool, a broadcast scalar mask
    shaped like ``offs`` that is false for a padded row, so the accesses stay 16-byte vectors)."""
    valid = slot >= 0
    state = pool + (tl.where(valid, slot, 0) * HV + hv) * (K * V)
    return valid, state, tl.full(offs.shape, 1, tl.int1) & valid


@triton.jit
def masked_vector_decode(q0, k0, v0, a0, b0, alog, dtb_r, scale, out, pool, slot, n, hv, HV, offs_v, offs_s,
                         K: tl.constexpr, V: tl.constexpr, WRITE_BACK: tl.constexpr, FLAT: tl.constexpr):
    """``raw_vector_decode`` without the slot branch (``reread`` = 4): a padded row (slot -1) loads zeros
    and stores a zero output and no state (``masked_slot``). With no branch to sink them into, the q / k /
    v / gate loads and their arithmetic need not wait for the slot: only the state load does."""
    valid, state, live = masked_slot(pool, slot, hv, offs_s, HV, K, V)
    Hr = tl.load(state + offs_s, mask=live, other=0.0)
    qf = q0.to(tl.float32)
    kf = k0.to(tl.float32)
    Hf = Hr.to(tl.float32)
    eg, sk, u, o = norms_on_row_sums(rowdot(Hf, kf, FLAT), rowdot(Hf, qf, FLAT), qf, kf, v0, a0, b0,
                                     -tl.exp(alog.to(tl.float32)), dtb_r.to(tl.float32), scale)
    tl.store(out + (n * HV + hv) * V + offs_v, tl.where(valid, o, 0.0).to(out.dtype.element_ty))
    if WRITE_BACK:
        H = Hf * eg + (u * sk)[:, None, None] * kf[None, :, :]
        tl.store(state + offs_s, H.to(pool.dtype.element_ty), mask=live)


@triton.jit
def dot_decode(q, k, q0, k0, v0, a0, b0, alog, dtb_r, scale, out, pool, slot, n, h, hv, HK, HV, offs_v,
               K: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, K_LAST: tl.constexpr, WRITE_BACK: tl.constexpr,
               DOT_BF16: tl.constexpr):
    """Decode (T = 1) with both row sums as one tensor-core dot (``reread`` = 5): ``[H k | H q]`` is
    ``H [k | q]^T`` ([BV, 16]: the token operand's rows 0 and 1 are k and q as stored, the rest zero;
    bf16 x bf16 products are exact in the fp32 accumulator, an fp32 state splits as bf16 hi + lo), so
    the K-long products and their shuffle trees become a few mma instructions; the norms land on the
    BV-long results (``norms_on_row_sums``) and the update ``e^g H + (u sk) k^T`` runs on the tile as
    loaded. No slot branch: a padded row's state accesses are masked (``masked_slot``). q0, k0:
    the raw vectors [1, K]."""
    cols = tl.arange(0, K)
    if K_LAST:
        offs = offs_v[:, None] * K + cols[None, :]
    else:
        offs = cols[None, :] * V + offs_v[:, None]
    valid, state, live = masked_slot(pool, slot, hv, offs, HV, K, V)
    Hr = tl.load(state + offs, mask=live, other=0.0)  # [BV, K] as stored
    r = tl.arange(0, 16)
    tok = tl.where((r == 0)[:, None], k, q) + (n * HK + h) * K + cols[None, :]
    kq = tl.load(tok, mask=(r < 2)[:, None], other=0.0)  # [16, K]: k, q, zeros
    if DOT_BF16:
        kq = kq.to(tl.bfloat16)
    else:
        kq = kq.to(tl.float32)
    P = raw_products(Hr, kq, DOT_BF16)  # [BV, 16]
    hk = tl.sum(tl.where((r == 0)[None, :], P, 0.0), axis=1)
    hq = tl.sum(tl.where((r == 1)[None, :], P, 0.0), axis=1)
    qf = q0.to(tl.float32)
    kf = k0.to(tl.float32)
    eg, sk, u, o = norms_on_row_sums(hk, hq, qf, kf, v0, a0, b0, -tl.exp(alog.to(tl.float32)), dtb_r.to(tl.float32),
                                     scale)
    tl.store(out + (n * HV + hv) * V + offs_v, tl.where(valid, o, 0.0).to(out.dtype.element_ty))
    if WRITE_BACK:
        H = Hr.to(tl.float32) * eg + (u * sk)[:, None] * tl.reshape(kf, (K,))[None, :]
        tl.store(state + offs, H.to(pool.dtype.element_ty), mask=live)


@triton.jit
def wait_for_predecessor(PDL: tl.constexpr):
    """With programmatic dependent launch (PDL: the ``triton_pdl`` backend), the first statement of
    every kernel: the program may be resident before the previous kernel on the stream has finished,
    and waits here until that kernel has completed and its memory is visible. Nothing is read before
    it (in serving, the kernel before this one writes q/k/v, and the slots may be rewritten), so the
    launch overlaps only the predecessor's drain, never its memory traffic."""
    if PDL:
        gdc_wait()


@triton.jit
def tile_coords(tile, HV, HK, NV: tl.constexpr):
    """Tile index -> (V block, row, value head, key head). Tiles of one head are consecutive."""
    i_v = tile % NV
    pair = tile // NV
    hv = pair % HV
    return i_v, (pair // HV).to(tl.int64), hv, hv // (HV // HK)


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
    PDL: tl.constexpr = False, REREAD: tl.constexpr = 0, AHEAD: tl.constexpr = 0, DOT_BF16: tl.constexpr = True,
):
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
    if REREAD == 5:  # branchless, the row sums as one tensor-core dot
        dot_decode(q, k, q0, k0, v0, a0, b0, alog, dtb_r, scale, out, pool, slot, n, h, hv, HK, HV, offs_v, K, V, BV,
                   K_LAST, WRITE_BACK, DOT_BF16)
        if AHEAD > 0:
            if slot2 >= 0:
                prefetch_rows(pool + (slot2 * HV + hv2) * (K * V), i_v2 * BV, BV, K, V, K_LAST)
    elif REREAD == 4:  # branchless: a padded row's loads and stores are masked instead of branched over
        masked_vector_decode(q0, k0, v0, a0, b0, alog, dtb_r, scale, out, pool, slot, n, hv, HV, offs_v, offs_s, K, V,
                             WRITE_BACK, FLAT)
        if AHEAD > 0:
            if slot2 >= 0:
                prefetch_rows(pool + (slot2 * HV + hv2) * (K * V), i_v2 * BV, BV, K, V, K_LAST)
    else:
        if slot >= 0:  # a scalar branch: the body's loads and stores stay unmasked and vectorised
            state = pool + (slot * HV + hv) * (K * V)
            if REREAD > 0:  # decode tiles that take the state as stored (reread_decode, tile_layout_decode)
                H = tl.load(state + offs_s)
            else:
                H = tl.load(state + offs_s).to(tl.float32)
            if AHEAD > 0:  # ask L2 for that tile's state now, so its program's load on the critical path hits L2
                if slot2 >= 0:
                    prefetch_rows(pool + (slot2 * HV + hv2) * (K * V), i_v2 * BV, BV, K, V, K_LAST)
            neg_A = -tl.exp(alog.to(tl.float32))
            dtb = dtb_r.to(tl.float32)
            if REREAD == 3:
                raw_vector_decode(H, q0, k0, v0, a0, b0, neg_A, dtb, scale, out, state, n, hv, HV, offs_v, offs_s, V,
                                  WRITE_BACK, FLAT)
            elif REREAD == 2:
                tile_layout_decode(H, q, k, v0, a0, b0, neg_A, dtb, scale, out, state, n, h, hv, HK, HV, offs_k, offs_v,
                                   offs_s, K, V, WRITE_BACK, FLAT)
            elif REREAD == 1:
                reread_decode(H, q0, k0, v0, a0, b0, neg_A, dtb, scale, out, state, n, hv, HV, offs_v, offs_s, V,
                              WRITE_BACK, FLAT)
            elif T > 1 and not TREE:
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


@triton.jit
def load_tile(q, k, v, a, b, A_log, dt_bias, pool, tile, slot, n_tiles, HK, HV, K: tl.constexpr, V: tl.constexpr,
              BV: tl.constexpr, KC: tl.constexpr, T: tl.constexpr, K_LAST: tl.constexpr):
    """One tile's state (as stored: zero for a padded row or past the last tile) and its first
    token's raw inputs (past the last tile: tile 0's, never used). The state mask is a broadcast
    scalar, so its loads stay 16-byte vectors."""
    NV: tl.constexpr = V // BV
    NC: tl.constexpr = K // KC
    live = tile < n_tiles
    i_v, n, hv, h = tile_coords(tl.where(live, tile, 0), HV, HK, NV)
    has_state = live & (slot >= 0)
    base = (tl.where(has_state, slot, 0) * HV + hv) * (K * V)
    H = tl.load(pool + base + state_offsets(i_v, K, V, BV, KC, K_LAST),
                mask=tl.full([BV, NC, KC], 1, tl.int1) & has_state, other=0.0)
    qv, kv, vv, av, bv = raw_inputs(q, k, v, a, b, n * T, h, hv, HK, HV, k_offsets(K, KC), i_v * BV + tl.arange(0, BV),
                                    K, V)
    alog = tl.load(A_log + hv)
    dtb = tl.load(dt_bias + hv)
    return H, qv, kv, vv, av, bv, alog, dtb


@triton.jit
def slot_of(slots, tile, n_tiles, HV, HK, NV: tl.constexpr):
    """Pool slot of a tile's row (-1 past the last tile)."""
    live = tile < n_tiles
    _, n, _, _ = tile_coords(tl.where(live, tile, 0), HV, HK, NV)
    return tl.where(live, tl.load(slots + n).to(tl.int64), -1)


@triton.jit
def gdn_persistent_kernel(
    q, k, v, a, b, A_log, dt_bias, slots, pool, inter, out, scale, HK: tl.constexpr, HV: tl.constexpr, n_tiles,
    T: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BV: tl.constexpr, KC: tl.constexpr, K_LAST: tl.constexpr, WRITE_BACK: tl.constexpr,
    INTERMEDIATE: tl.constexpr, FLAT: tl.constexpr, PDL: tl.constexpr = False,
):
    """Persistent variant: a fixed grid of programs walks the tiles (tile, tile + grid, ...) and loads
    the next tile's state and first-token inputs before working on the current one (software
    double-buffering in registers), with the slot index read one more tile ahead, so a program always
    has a state load in flight while it computes and stores (no parent-token tree)."""
    wait_for_predecessor(PDL)
    NV: tl.constexpr = V // BV
    NC: tl.constexpr = K // KC
    pid = tl.program_id(0)
    step = tl.num_programs(0)
    slot = slot_of(slots, pid, n_tiles, HV, HK, NV)
    slot_next = slot_of(slots, pid + step, n_tiles, HV, HK, NV)
    Hs, qv, kv, vv, av, bv, alog, dtb = load_tile(q, k, v, a, b, A_log, dt_bias, pool, pid, slot, n_tiles, HK, HV,
                                                  K, V, BV, KC, T, K_LAST)
    offs_k = k_offsets(K, KC)
    for tile in range(pid, n_tiles, step):
        # prefetch: the next tile (its slot is already here) and the slot of the one after it
        nxt = tile + step
        Hs_n, qv_n, kv_n, vv_n, av_n, bv_n, alog_n, dtb_n = load_tile(
            q, k, v, a, b, A_log, dt_bias, pool, nxt, slot_next, n_tiles, HK, HV, K, V, BV, KC, T, K_LAST)
        slot_after = slot_of(slots, nxt + step, n_tiles, HV, HK, NV)
        # the current tile
        i_v, n, hv, h = tile_coords(tile, HV, HK, NV)
        valid = slot >= 0
        offs_v = i_v * BV + tl.arange(0, BV)
        offs_s = state_offsets(i_v, K, V, BV, KC, K_LAST)
        H = Hs.to(tl.float32)
        neg_A = -tl.exp(alog.to(tl.float32))
        dtb_f = dtb.to(tl.float32)
        for t in tl.static_range(T):
            tok = n * T + t
            if t == 0:
                qf, kf, vf, g, beta = from_raw(qv, kv, vv, av, bv, neg_A, dtb_f, scale)
            else:
                qf, kf, vf, g, beta = token_inputs(q, k, v, a, b, tok, h, hv, HK, HV, neg_A, dtb_f, scale, offs_k,
                                                   offs_v, K, V)
            H, o = token_step(H, qf, kf, vf, g, beta, T == 1, FLAT)
            tl.store(out + (tok * HV + hv) * V + offs_v, tl.where(valid, o, 0.0).to(out.dtype.element_ty))
            if INTERMEDIATE:
                tl.store(inter + (tok * HV + hv) * (K * V) + offs_s, H.to(inter.dtype.element_ty),
                         mask=tl.full([BV, NC, KC], 1, tl.int1) & valid)
        if WRITE_BACK:
            tl.store(pool + (tl.where(valid, slot, 0) * HV + hv) * (K * V) + offs_s, H.to(pool.dtype.element_ty),
                     mask=tl.full([BV, NC, KC], 1, tl.int1) & valid)
        Hs, qv, kv, vv, av, bv, alog, dtb = Hs_n, qv_n, kv_n, vv_n, av_n, bv_n, alog_n, dtb_n
        slot, slot_next = slot_next, slot_after


@triton.jit
def gdn_pipelined_kernel(
    q, k, v, a, b, A_log, dt_bias, slots, pool, inter, out, scale, HK: tl.constexpr, HV: tl.constexpr, n_tiles,
    T: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BV: tl.constexpr, KC: tl.constexpr, K_LAST: tl.constexpr, WRITE_BACK: tl.constexpr,
    INTERMEDIATE: tl.constexpr, STAGES: tl.constexpr, FLAT: tl.constexpr, PDL: tl.constexpr = False,
):
    """Persistent, software-pipelined by Triton: a fixed grid of programs walks the tiles in a
    ``tl.range(..., num_stages=STAGES)`` loop whose body is one plain tile (slot, state, inputs,
    update, stores). Triton's pipeliner turns the body's loads into asynchronous copies (cp.async)
    into shared-memory buffers issued STAGES - 1 tiles ahead (the slot one stage before the state it
    addresses), so state bytes stay in flight without holding registers: the register double buffer
    of ``gdn_persistent_kernel`` done by the hardware copy engine instead (no parent-token tree).
    Padded rows use broadcast-scalar masks."""
    wait_for_predecessor(PDL)
    NV: tl.constexpr = V // BV
    NC: tl.constexpr = K // KC
    pid = tl.program_id(0)
    step = tl.num_programs(0)
    offs_k = k_offsets(K, KC)
    for tile in tl.range(pid, n_tiles, step, num_stages=STAGES):
        i_v, n, hv, h = tile_coords(tile, HV, HK, NV)
        slot = tl.load(slots + n).to(tl.int64)
        valid = slot >= 0
        live = tl.full([BV, NC, KC], 1, tl.int1) & valid
        state = pool + (tl.where(valid, slot, 0) * HV + hv) * (K * V)
        offs_s = state_offsets(i_v, K, V, BV, KC, K_LAST)
        offs_v = i_v * BV + tl.arange(0, BV)
        H = tl.load(state + offs_s, mask=live, other=0.0).to(tl.float32)
        neg_A = -tl.exp(tl.load(A_log + hv).to(tl.float32))
        dtb = tl.load(dt_bias + hv).to(tl.float32)
        for t in tl.static_range(T):
            tok = n * T + t
            qv, kv, vv, g, beta = token_inputs(q, k, v, a, b, tok, h, hv, HK, HV, neg_A, dtb, scale, offs_k, offs_v,
                                               K, V)
            H, o = token_step(H, qv, kv, vv, g, beta, T == 1, FLAT)
            tl.store(out + (tok * HV + hv) * V + offs_v, tl.where(valid, o, 0.0).to(out.dtype.element_ty))
            if INTERMEDIATE:
                tl.store(inter + (tok * HV + hv) * (K * V) + offs_s, H.to(inter.dtype.element_ty), mask=live)
        if WRITE_BACK:
            tl.store(state + offs_s, H.to(pool.dtype.element_ty), mask=live)


@triton.jit
def dup16(x):
    """[8] -> [16]: x twice (index i holds x[i % 8])."""
    return tl.reshape(tl.permute(tl.join(x, x), (1, 0)), (16,))


@triton.jit
def bf16_pair(x):
    """fp32 x as bf16 hi + lo (x ~ hi + lo to ~2^-16): the two halves of a split dot operand."""
    hi = x.to(tl.bfloat16)
    return hi, (x - hi.to(tl.float32)).to(tl.bfloat16)


@triton.jit
def mm32(x, y, BF16: tl.constexpr):
    """x @ y for small fp32 operands on tensor cores, each split as bf16 hi + lo: hi hi + hi lo + lo hi
    (~2^-16 relative; Triton's tf32x3 costs ~160 instructions per [16, 16] product on sm_90, this ~40).
    Without BF16 (the CPU interpreter) a plain fp32 dot."""
    if BF16:
        x_hi, x_lo = bf16_pair(x)
        y_hi, y_lo = bf16_pair(y)
        return tl.dot(x_lo, y_hi, tl.dot(x_hi, y_lo, tl.dot(x_hi, y_hi)))
    else:
        return tl.dot(x, y)


@triton.jit
def state_half(v0, kh, K: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, K_LAST: tl.constexpr):
    """Offsets of a [BV, K / 2] half (columns kh * K / 2 ..) of the state block at rows v0.."""
    rows = v0 + tl.arange(0, BV)
    cols = kh * (K // 2) + tl.arange(0, K // 2)
    if K_LAST:
        return rows[:, None] * K + cols[None, :]
    else:
        return cols[None, :] * V + rows[:, None]


@triton.jit
def raw_products(Hs, kqd, DOT_BF16: tl.constexpr):
    """H kq^T ([BV, 16] fp32) for a block of the state as stored and the token operand: bf16 x bf16
    exact in the fp32 accumulator; an fp32 state split as bf16 hi + lo."""
    if DOT_BF16 and Hs.dtype == tl.bfloat16:
        return tl.dot(Hs, tl.trans(kqd))
    elif DOT_BF16:
        H_hi, H_lo = bf16_pair(Hs)
        return tl.dot(H_lo, tl.trans(kqd), tl.dot(H_hi, tl.trans(kqd)))
    else:
        return tl.dot(Hs.to(tl.float32), tl.trans(kqd))


@triton.jit
def updated_half(Hs, kqd, Wt, c_t, eye_v, DOT_BF16: tl.constexpr):
    """``c_t Hs + Wt kq`` ([BV, K / 2] fp32) for a half of a state block as stored, the token operand's
    matching half and the fp32 weights Wt [BV, 16] (split as bf16 hi + lo). For a bf16 state ``c_t Hs``
    is a dot too, ``(c_t I) Hs`` with c_t split likewise: the tensor cores read Hs as it is (no widening,
    no multiply over the tile)."""
    if DOT_BF16 and Hs.dtype == tl.bfloat16:
        c_hi, c_lo = bf16_pair(c_t)
        acc = tl.dot(tl.where(eye_v, c_lo, 0.0).to(tl.bfloat16), Hs, tl.dot(tl.where(eye_v, c_hi, 0.0).to(tl.bfloat16), Hs))
    else:
        acc = c_t * Hs.to(tl.float32)
    if DOT_BF16:
        W_hi, W_lo = bf16_pair(Wt)
        return tl.dot(W_lo, kqd, tl.dot(W_hi, kqd, acc))
    else:
        return tl.dot(Wt, kqd, acc)


@triton.jit
def store_state(H, offs, inter_t, state, TO_INTER: tl.constexpr, TO_POOL: tl.constexpr):
    """Store a state block H (fp32) at ``offs`` into the intermediate buffer of its token and/or the
    pool slot, each in its own dtype."""
    if TO_INTER:
        tl.store(inter_t + offs, H.to(inter_t.dtype.element_ty))
    if TO_POOL:
        tl.store(state + offs, H.to(state.dtype.element_ty))


@triton.jit
def prefetch_rows(state, v0, nr, K: tl.constexpr, V: tl.constexpr, K_LAST: tl.constexpr):
    """Ask L2 for state rows v0 .. v0 + nr - 1 (all K columns) with sm90 bulk prefetches
    (``cp.async.bulk.prefetch.L2``: no registers, no waiting): one contiguous range in a K-last pool,
    issued by thread 0; K ranges of nr elements in a V-last pool."""
    ESIZE: tl.constexpr = state.dtype.element_ty.primitive_bitwidth // 8
    if K_LAST:
        ptrs = state + v0 * K + tl.zeros([1], dtype=tl.int32)
        nbytes = nr * (K * ESIZE) + tl.zeros([1], dtype=tl.int32)
    else:
        ptrs = state + tl.arange(0, K) * V + v0
        nbytes = nr * ESIZE + tl.zeros([K], dtype=tl.int32)
    tl.inline_asm_elementwise(
        "{ .reg .pred p; .reg .u32 t; mov.u32 t, %tid.x; setp.eq.u32 p, t, 0; "
        "@p cp.async.bulk.prefetch.L2.global [$1], $2; mov.u32 $0, 0; }" if K_LAST else
        "{ cp.async.bulk.prefetch.L2.global [$1], $2; mov.u32 $0, 0; }",
        "=r,l,r", [ptrs, nbytes], dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def prefetch_l2(ptrs):
    """Ask L2 for the 128-byte lines at ``ptrs`` (``prefetch.global.L2``: no registers, no waiting)."""
    tl.inline_asm_elementwise("{ prefetch.global.L2 [$1]; mov.u32 $0, 0; }", "=r,l", [ptrs], dtype=tl.int32,
                              is_pure=False, pack=1)


@triton.jit
def chunk_head(q, k, v, a, b, A_log, dt_bias, pool, inter, out, scale, slot, n, hv, h, b_lo, n_blk,
               HK: tl.constexpr, HV: tl.constexpr, T: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
               BV: tl.constexpr, K_LAST: tl.constexpr, WRITE_BACK: tl.constexpr, INTERMEDIATE: tl.constexpr,
               DOT_BF16: tl.constexpr, STAGES: tl.constexpr, PREFETCH: tl.constexpr, AHEAD: tl.constexpr,
               HINTS: tl.constexpr):
    """Row blocks ``b_lo .. b_lo + n_blk - 1`` (BV state rows each) of one (row n, value head hv, key head
    h) whose pool slot is ``slot`` (int64, -1: padded): the head's algebra once, then the blocks
    (``gdn_mtp_chunk_kernel``). ``n_blk`` constexpr where it is (a fixed trip count: the per-program
    grid compiles as it did before the persistent one)."""
    rows = tl.arange(0, BV)
    # the gates first, on an 8-wide token axis (zero past T: no decay, no update), with the head's gate
    # parameters: the token operand below goes through shared memory behind a barrier that waits for
    # its loads, so whatever is issued after it starts a round trip later (in the slot branch, A_log and
    # dt_bias were issued only after the Gram dot)
    j = tl.arange(0, 8)
    av = tl.load(a + (n * T + j) * HV + hv, mask=j < T, other=0.0)
    bv = tl.load(b + (n * T + j) * HV + hv, mask=j < T, other=0.0)
    alog = tl.load(A_log + hv)
    dtb = tl.load(dt_bias + hv)
    if HINTS:  # L2 asked now for the program's v rows of every token (the 128-byte lines at its first row
        # and 64 rows on): the first block's v is loaded only after the algebra, and would wait on DRAM there
        v_row = b_lo * BV + tl.minimum(tl.arange(0, 2) * 64, n_blk * BV - 1)
        prefetch_l2(v + ((n * T + tl.minimum(j, T - 1)) * HV + hv)[:, None] * V + v_row[None, :])
    # the token operand as stored, in two K halves: row r < 8 is k of token r, row r >= 8 q of token
    # r - 8 (zero past T)
    r = tl.arange(0, 16)
    t_r = r % 8
    live_r = t_r < T
    row = ((n * T + t_r) * HK + h) * K
    ptr = row[:, None] + tl.arange(0, K // 2)[None, :]
    ptr = tl.where((r < 8)[:, None], k + ptr, q + ptr)
    if HINTS:  # ptxas issues the second half's loads only once the first half has arrived and gone to
        # shared memory (on its way to the dots): ask L2 for the second half first, so that wait is an L2 hit
        prefetch_l2(tl.where(r < 8, k + row + K // 2, q + row + K // 2))
    kq_a = tl.load(ptr, mask=live_r[:, None], other=0.0)
    kq_b = tl.load(ptr + K // 2, mask=live_r[:, None], other=0.0)
    # v of token i in column i < 8, the outputs in column 8 + t: both addressed as [BV, 16] from here
    tok_v = ((n * T + t_r) * HV + hv)[None, :] * V + rows[:, None]
    v_live = ((r < 8) & live_r)[None, :]
    o_live = ((r >= 8) & live_r)[None, :]
    if slot >= 0:
        state = pool + (slot * HV + hv) * (K * V)
        if PREFETCH > 0:  # up to PREFETCH of the blocks requested into L2 now, before the head's algebra
            prefetch_rows(state, b_lo * BV, tl.minimum(n_blk, PREFETCH) * BV, K, V, K_LAST)
        if DOT_BF16:
            kq_a = kq_a.to(tl.bfloat16)
            kq_b = kq_b.to(tl.bfloat16)
        else:
            kq_a = kq_a.to(tl.float32)
            kq_b = kq_b.to(tl.float32)
        G = tl.dot(kq_b, tl.trans(kq_b), tl.dot(kq_a, tl.trans(kq_a)))  # [16, 16] raw Gram matrix
        s_i = r[:, None]
        t_i = r[None, :]
        # 1 / ||x|| (eps inside the sqrt) of every row, from the Gram diagonal, times the scale on the q rows
        sc = tl.rsqrt(tl.sum(tl.where(s_i == t_i, G, 0.0), axis=1) + 1e-6) * tl.where(r < 8, 1.0, scale)
        Gn = G * sc[:, None] * sc[None, :]
        g = tl.where(j < T, decay(av, -tl.exp(alog.to(tl.float32)), dtb.to(tl.float32)), 0.0)
        gc = dup16(tl.cumsum(g, axis=0))
        beta = dup16(tl.where(j < T, beta_of(bv), 0.0))
        c = tl.exp(gc)
        D = tl.where((s_i < 8) & (s_i <= t_i % 8) & (t_i % 8 < T), tl.exp(gc[None, :] - gc[:, None]), 0.0)
        N = tl.where(s_i < t_i, D * Gn, 0.0) * tl.where(r < 8, beta, 0.0)[None, :]  # k side only
        eye = tl.where(s_i == t_i, 1.0, 0.0)
        M = eye - N
        if T > 2:
            N2 = mm32(N, N, DOT_BF16)
            M = mm32(M, eye + N2, DOT_BF16)
            if T > 4:
                M = mm32(M, eye + mm32(N2, N2, DOT_BF16), DOT_BF16)
        Z = M + mm32(M, tl.where((s_i < 8) & (t_i >= 8), D * Gn, 0.0), DOT_BF16)  # [[M, M Bq], [0, I]]
        # Y = [beta (v - c H0 k) | c H0 q] from v and the raw products: per-column factors
        fv = tl.where(r < 8, beta, 0.0)
        fp = tl.where(r < 8, -beta, 1.0) * c * sc
        eye_v = rows[:, None] == rows[None, :]
        vm_next = tl.load(v + tok_v + b_lo * BV, mask=v_live, other=0.0)
        for i in tl.range(0, n_blk, num_stages=STAGES):
            v0 = (b_lo + i) * BV
            vm = vm_next.to(tl.float32)
            vm_next = tl.load(v + tok_v + (b_lo + tl.minimum(i + 1, n_blk - 1)) * BV, mask=v_live, other=0.0)
            if AHEAD > 0:  # L2 kept AHEAD blocks ahead of this one (clamped to the last: no branch in the loop)
                prefetch_rows(state, (b_lo + tl.minimum(i + AHEAD, n_blk - 1)) * BV, BV, K, V, K_LAST)
            # the block as stored, in two K halves (each half's update needs only its own accumulator)
            offs_a = state_half(v0, 0, K, V, BV, K_LAST)
            offs_b = state_half(v0, 1, K, V, BV, K_LAST)
            Hs_a = tl.load(state + offs_a)
            Hs_b = tl.load(state + offs_b)
            P = raw_products(Hs_a, kq_a, DOT_BF16) + raw_products(Hs_b, kq_b, DOT_BF16)  # [BV, 16]: H0 k_t | H0 q_t
            UO = mm32(vm * fv[None, :] + P * fp[None, :], Z, DOT_BF16)  # [BV, 16]: u_t | o_t
            tl.store(out + tok_v + v0, UO.to(out.dtype.element_ty), mask=o_live)
            for t in tl.static_range(T):
                if INTERMEDIATE or t == T - 1:
                    c_t = tl.sum(tl.where(r == t, c, 0.0), axis=0)
                    w = tl.where(r < 8, sc * tl.sum(tl.where(t_i == t, D, 0.0), axis=1), 0.0)  # D[s, t] / ||k_s||
                    Wt = UO * w[None, :]  # the weights of the raw k rows (the q rows get zero)
                    inter_t = inter + ((n * T + t) * HV + hv) * (K * V)
                    store_state(updated_half(Hs_a, kq_a, Wt, c_t, eye_v, DOT_BF16), offs_a, inter_t, state,
                                INTERMEDIATE, WRITE_BACK and t == T - 1)
                    store_state(updated_half(Hs_b, kq_b, Wt, c_t, eye_v, DOT_BF16), offs_b, inter_t, state,
                                INTERMEDIATE, WRITE_BACK and t == T - 1)
    else:  # padded row (slot -1): zero output, nothing else touched
        for i in tl.range(0, n_blk):
            tl.store(out + tok_v + (b_lo + i) * BV, tl.zeros([BV, 16], dtype=out.dtype.element_ty), mask=o_live)


@triton.jit
def gdn_mtp_chunk_kernel(
    q, k, v, a, b, A_log, dt_bias, slots, pool, inter, out, scale, HK: tl.constexpr, HV: tl.constexpr, n_blocks,
    T: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BV: tl.constexpr, K_LAST: tl.constexpr, WRITE_BACK: tl.constexpr, INTERMEDIATE: tl.constexpr,
    DOT_BF16: tl.constexpr, STEPS: tl.constexpr = 1, STAGES: tl.constexpr = 1, PREFETCH: tl.constexpr = 0,
    PERSIST: tl.constexpr = False, PDL: tl.constexpr = False, AHEAD: tl.constexpr = 0, HINTS: tl.constexpr = False,
):
    """MTP verify (T = 2..8) in chunk form: the T-step recurrence rewritten around the initial state
    H0 so that its K-long products are tensor-core dots instead of 3T passes over the tile.

    With cumulative decays ``gc_t = g_1 + .. + g_t``, ``c_t = exp(gc_t)``, ``D[s, t] = exp(gc_t - gc_s)``
    (s <= t, else 0), normalised k and scaled q: ``H_t = c_t H0 + sum_{s<=t} D[s,t] u_s k_s^T``, so
    ``u_t = beta_t (v_t - c_t H0 k_t) - beta_t sum_{s<t} D[s,t] (k_s.k_t) u_s``, i.e. ``U (I + N) = R``
    with ``R[:, t] = beta_t (v_t - c_t H0 k_t)`` and ``N[s, t] = beta_t D[s,t] (k_s.k_t)`` (s < t:
    nilpotent, so ``(I + N)^-1 = (I - N)(I + N^2)(I + N^4)`` exactly for T <= 8), and
    ``o_t = c_t H0 q_t + sum_{s<=t} D[s,t] (k_s.q_t) u_s``.

    Tokens sit on a 16-wide axis: index i < 8 is token i's k side, i >= 8 token i - 8's q side (zero
    past T; tensor-core dots need 16 on every side). A program owns STEPS consecutive blocks of BV
    state rows of one (row, value head); with PERSIST the grid is fixed and each program takes an
    even share of all ``n_blocks`` blocks (head-major), a contiguous run that may start and end inside
    a head (``chunk_head`` per head it touches). Once per head of a program, the head's algebra:

    * one dot of the token operand as stored (k rows, then q rows) with itself: the raw Gram matrix,
      whose diagonal holds the squared norms, so the L2 norms and the scale land on small results;
    * ``Z = [[M, M Bq], [0, I]]`` with ``M = (I + N)^-1``, ``Bq[s, t] = D[s,t] (k_s.q_t)``, from
      [16, 16] dots.

    Then per block of BV rows (a loop Triton software-pipelines over STAGES, so the next block's
    state is in flight while this one computes; with PREFETCH = n the first n blocks are requested
    into L2 before the algebra): ``P = H0 [k | q]^T`` ([BV, 16], one dot: bf16 x
    bf16 products are exact in the fp32 accumulator; an fp32 state is split as bf16 hi + lo),
    ``Y = [R | c * (H0 q)]`` elementwise, ``[U | O] = Y Z``, the outputs stored from it, and each
    stored state ``c_t H0 + (U w_t) k^T`` as one dot. fp32 dot factors are split as bf16 hi + lo
    (``mm32``, ~2^-16 relative). The decays enter only as ``D <= 1`` and ``c_t <= 1``: no range
    limit, unlike the per-token kernel's lazy scale. Without DOT_BF16 (the CPU interpreter, whose
    bf16 tl.dot is wrong) every operand is fp32.
    """
    wait_for_predecessor(PDL)
    NV: tl.constexpr = V // BV  # row blocks per head
    if PERSIST:
        # blocks b of all heads (head-major: head b // NV, rows (b % NV) * BV ..) split evenly over the
        # grid, each program a contiguous run, crossing heads where it must
        P = tl.num_programs(0)
        p = tl.program_id(0)
        start = p * (n_blocks // P) + tl.minimum(p, n_blocks % P)
        end = start + n_blocks // P + (p < n_blocks % P).to(tl.int32)
        for pair in range(start // NV, (end - 1) // NV + 1):
            hv = pair % HV
            n = tl.cast(pair // HV, tl.int64)
            b_lo = tl.maximum(start - pair * NV, 0)
            chunk_head(q, k, v, a, b, A_log, dt_bias, pool, inter, out, scale, tl.load(slots + n).to(tl.int64),
                       n, hv, hv // (HV // HK), b_lo, tl.minimum(end - pair * NV, NV) - b_lo,
                       HK, HV, T, K, V, BV, K_LAST, WRITE_BACK, INTERMEDIATE, DOT_BF16, STAGES, PREFETCH, AHEAD, HINTS)
    else:
        i_v, n, hv, h = tile_coords(tl.program_id(0), HV, HK, NV // STEPS)
        chunk_head(q, k, v, a, b, A_log, dt_bias, pool, inter, out, scale, tl.load(slots + n).to(tl.int64), n, hv,
                   h, i_v * STEPS, STEPS, HK, HV, T, K, V, BV, K_LAST, WRITE_BACK, INTERMEDIATE,
                   DOT_BF16, STAGES, PREFETCH, AHEAD, HINTS)
