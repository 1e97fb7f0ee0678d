"""The chunk-form MTP kernel (``Variant.CHUNK``): the T steps rewritten around the initial state so
the K-long work is tensor-core dots instead of 3T passes over a register tile.

A program takes ``STEPS`` blocks of BV rows of one (row, value head); the head's T x T algebra (Gram
matrix, triangular solve) is done once per program and the loop over its row blocks is
software-pipelined by Triton. It serves bf16 MTP from 16 row-heads up on the H100; the math is in
``gdn_mtp_chunk_kernel``'s docstring, the measurements in ``docs/design/triton-decode.md``.
"""

import triton
import triton.language as tl

from gdnbench.backends.triton.kernels.common import (
    beta_of,
    decay,
    prefetch_l2,
    prefetch_rows,
    tile_coords,
    wait_for_predecessor,
)


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
    PDL: tl.constexpr = False, AHEAD: tl.constexpr = 0, HINTS: tl.constexpr = False,
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
    state rows of one (row, value head). Once per program, the head's algebra:

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
    i_v, n, hv, h = tile_coords(tl.program_id(0), HV, HK, NV // STEPS)
    chunk_head(q, k, v, a, b, A_log, dt_bias, pool, inter, out, scale, tl.load(slots + n).to(tl.int64), n, hv,
               h, i_v * STEPS, STEPS, HK, HV, T, K, V, BV, K_LAST, WRITE_BACK, INTERMEDIATE,
               DOT_BF16, STAGES, PREFETCH, AHEAD, HINTS)
