"""CuTe DSL kernel of the ``cute`` backend (design notes in ``cute.py``). Imports nvidia-cutlass-dsl;
imported lazily."""

import cutlass
import cutlass.cute as cute



@cute.kernel
def gdn_decode_klast_kernel(
    pool: cute.Tensor,    # [P, HV, V, K] state dtype, K contiguous
    q: cute.Tensor,       # [B, 1, HK, K]
    k: cute.Tensor,       # [B, 1, HK, K]
    v: cute.Tensor,       # [B, 1, HV, V]
    a: cute.Tensor,       # [B, 1, HV]
    b: cute.Tensor,       # [B, 1, HV]
    A_log: cute.Tensor,   # [HV] fp32
    dt_bias: cute.Tensor,  # [HV] fp32
    slots: cute.Tensor,   # [B] int32, -1 = padded row
    out: cute.Tensor,     # [B, 1, HV, V]
    scale: cutlass.Constexpr[float],
    HK: cutlass.Constexpr[int],
    HV: cutlass.Constexpr[int],
    K: cutlass.Constexpr[int],
    V: cutlass.Constexpr[int],
    BV: cutlass.Constexpr[int],
    VEC: cutlass.Constexpr[int],
    NVEC: cutlass.Constexpr[int],
    NUM_THREADS: cutlass.Constexpr[int],
):
    # A lane holds NVEC 16-byte vectors of each of its rows: vector j covers columns
    # (j * LANES + lane) * VEC .. + VEC, so every load instruction still reads whole 128-byte lines.
    E: cutlass.Constexpr[int] = VEC * NVEC             # state elements per lane per row
    LANES: cutlass.Constexpr[int] = K // E             # lanes that share one state row
    GROUPS: cutlass.Constexpr[int] = NUM_THREADS // LANES
    R: cutlass.Constexpr[int] = BV // GROUPS          # rows per thread group
    NVT: cutlass.Constexpr[int] = V // BV

    tidx, _, _ = cute.arch.thread_idx()
    bidx, _, _ = cute.arch.block_idx()
    group = tidx // LANES
    lane = tidx % LANES
    i_vt = bidx % NVT
    rest = bidx // NVT
    i_hv = rest % HV
    i_n = rest // HV
    i_h = i_hv // (HV // HK)

    # -- inputs that do not depend on the slot: issued alongside the slot load --
    slot = slots[i_n]
    r_qin = cute.make_rmem_tensor(cute.make_layout((NVEC, VEC), stride=(VEC, 1)), q.element_type)
    r_kin = cute.make_rmem_tensor(cute.make_layout((NVEC, VEC), stride=(VEC, 1)), k.element_type)
    for j in cutlass.range_constexpr(NVEC):
        cute.autovec_copy(cute.local_tile(q[(i_n, 0, i_h, None)], (VEC,), (j * LANES + lane,)), r_qin[(j, None)])
        cute.autovec_copy(cute.local_tile(k[(i_n, 0, i_h, None)], (VEC,), (j * LANES + lane,)), r_kin[(j, None)])
    r_q = cute.make_rmem_tensor(cute.make_layout((E,), stride=(1,)), cutlass.Float32)
    r_k = cute.make_rmem_tensor(cute.make_layout((E,), stride=(1,)), cutlass.Float32)
    sum_q = cutlass.Float32(0.0)
    sum_k = cutlass.Float32(0.0)
    for j in cutlass.range_constexpr(NVEC):  # flat index j * VEC + i, as in the state rows below
        for i in cutlass.range_constexpr(VEC):
            r_q[j * VEC + i] = cutlass.Float32(r_qin[j, i])
            r_k[j * VEC + i] = cutlass.Float32(r_kin[j, i])
            sum_q += r_q[j * VEC + i] * r_q[j * VEC + i]
            sum_k += r_k[j * VEC + i] * r_k[j * VEC + i]
    offset = LANES // 2
    while cutlass.const_expr(offset >= 1):
        sum_q += cute.arch.shuffle_sync_bfly(sum_q, offset=offset)
        sum_k += cute.arch.shuffle_sync_bfly(sum_k, offset=offset)
        offset = offset // 2
    inv_q = cute.rsqrt(sum_q + 1e-6) * scale
    inv_k = cute.rsqrt(sum_k + 1e-6)
    for i in cutlass.range_constexpr(E):
        r_q[i] = r_q[i] * inv_q
        r_k[i] = r_k[i] * inv_k

    x = cutlass.Float32(a[i_n, 0, i_hv]) + cutlass.Float32(dt_bias[i_hv])
    softplus = x
    if x <= 20.0:
        softplus = cute.log(1.0 + cute.exp(x))
    alpha = cute.exp(-cute.exp(cutlass.Float32(A_log[i_hv])) * softplus)
    beta = 1.0 / (1.0 + cute.exp(-cutlass.Float32(b[i_n, 0, i_hv])))
    r_v = cute.make_rmem_tensor(cute.make_layout((R,), stride=(1,)), cutlass.Float32)
    for r in cutlass.range_constexpr(R):
        r_v[r] = cutlass.Float32(v[i_n, 0, i_hv, i_vt * BV + r * GROUPS + group])

    if slot >= 0:
        state = pool[(cutlass.Int64(slot), i_hv, None, None)]  # [V, K]; 64-bit slot offset
        # All R rows are loaded before any is used: R independent 16-byte loads per thread in flight.
        # Row r * GROUPS + group: the CTA's groups read consecutive rows (one contiguous span per r).
        r_hs = cute.make_rmem_tensor(cute.make_layout((R, NVEC, VEC), stride=(E, VEC, 1)), pool.element_type)
        for r in cutlass.range_constexpr(R):
            row = state[(i_vt * BV + r * GROUPS + group, None)]
            for j in cutlass.range_constexpr(NVEC):
                cute.autovec_copy(cute.local_tile(row, (VEC,), (j * LANES + lane,)), r_hs[(r, j, None)])
        r_h = cute.make_rmem_tensor(cute.make_layout((R, E), stride=(E, 1)), cutlass.Float32)
        for r in cutlass.range_constexpr(R):
            for j in cutlass.range_constexpr(NVEC):
                for i in cutlass.range_constexpr(VEC):
                    r_h[r, j * VEC + i] = cutlass.Float32(r_hs[r, j, i]) * alpha
        for r in cutlass.range_constexpr(R):
            s = cutlass.Float32(0.0)
            for i in cutlass.range_constexpr(E):
                s += r_h[r, i] * r_k[i]
            offset = LANES // 2
            while cutlass.const_expr(offset >= 1):
                s += cute.arch.shuffle_sync_bfly(s, offset=offset)
                offset = offset // 2
            u = beta * (r_v[r] - s)
            o = cutlass.Float32(0.0)
            for i in cutlass.range_constexpr(E):
                r_h[r, i] = r_h[r, i] + u * r_k[i]
                o += r_h[r, i] * r_q[i]
            offset = LANES // 2
            while cutlass.const_expr(offset >= 1):
                o += cute.arch.shuffle_sync_bfly(o, offset=offset)
                offset = offset // 2
            if lane == 0:
                out[i_n, 0, i_hv, i_vt * BV + r * GROUPS + group] = o.to(out.element_type)
        for r in cutlass.range_constexpr(R):
            for j in cutlass.range_constexpr(NVEC):
                for i in cutlass.range_constexpr(VEC):
                    r_hs[r, j, i] = r_h[r, j * VEC + i].to(pool.element_type)
            row = state[(i_vt * BV + r * GROUPS + group, None)]
            for j in cutlass.range_constexpr(NVEC):
                cute.autovec_copy(r_hs[(r, j, None)], cute.local_tile(row, (VEC,), (j * LANES + lane,)))
    else:  # padded row: zero output, the pool is not touched
        if lane == 0:
            for r in cutlass.range_constexpr(R):
                out[i_n, 0, i_hv, i_vt * BV + r * GROUPS + group] = cutlass.Float32(0.0).to(out.element_type)


@cute.jit
def gdn_decode_klast(pool: cute.Tensor, q: cute.Tensor, k: cute.Tensor, v: cute.Tensor, a: cute.Tensor,
                     b: cute.Tensor, A_log: cute.Tensor, dt_bias: cute.Tensor, slots: cute.Tensor, out: cute.Tensor,
                     scale: cutlass.Constexpr[float], HK: cutlass.Constexpr[int], HV: cutlass.Constexpr[int],
                     K: cutlass.Constexpr[int], V: cutlass.Constexpr[int], BV: cutlass.Constexpr[int],
                     VEC: cutlass.Constexpr[int], NVEC: cutlass.Constexpr[int], NUM_THREADS: cutlass.Constexpr[int],
                     stream):
    """Launch one CTA of NUM_THREADS threads per (row, value head, BV-row tile of V); the batch is dynamic."""
    batch = cute.size(q.shape[0])
    gdn_decode_klast_kernel(pool, q, k, v, a, b, A_log, dt_bias, slots, out, scale, HK, HV, K, V, BV, VEC,
                            NVEC, NUM_THREADS).launch(
        grid=(batch * HV * (V // BV), 1, 1), block=(NUM_THREADS, 1, 1), stream=stream)
