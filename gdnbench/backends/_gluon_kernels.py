"""The ``triton`` backend's decode kernel written in Gluon (``reread`` = 6; design notes in ``triton_gdn.py``).
Imported lazily, compiled for a GPU only: Gluon has no CPU interpreter.

Why Gluon. Triton chooses register layouts itself. For a one-warp program it keeps the [BV, K] tile and
the K-long q / k vectors in compatible layouts, but with several warps per program it spreads each
K-long vector over all the program's threads (one element each), so every broadcast of q or k against
the tile, every norm and every [BV] result goes through shared memory behind a barrier (sm_90 offline,
bf16 BV = 64 x 4 warps: 14 barriers; BV = 16 x 1 warp: none). Gluon states the layout: the tile is
``BlockedLayout([1, VEC], [32 / TK, TK], [warps, 1])`` (VEC elements = 16 bytes per thread along K,
TK threads of a warp across K, warps stacked over rows), q and k are its ``SliceLayout(0)`` and the row
results its ``SliceLayout(1)``. Every warp then owns whole rows: the reductions over K are shuffles
inside one warp, the broadcasts move nothing, and the program has no shared memory and no barrier at
any warp count (sm_90 offline: BV = 16 x 1, 64 x 4 and 128 x 8 warps, 128 registers each). A
multi-warp program is thus the one-warp program repeated, at a quarter or an eighth of the programs:
fewer blocks for the block scheduler to place (an empty kernel over 4096 one-warp programs takes
3.47 µs under the graph timer on the H100, against 1.17 for 128 programs; ``scripts/latency_floor.py``).

The math is ``raw_vector_decode``'s (the L2 norms applied to the BV-long row sums, both row sums from
the state before the update), with the slot branch: a padded row (slot -1) writes a zero output and
touches no state. K-last pools only (the tile is a contiguous BV x K block).
"""

from triton.experimental import gluon
from triton.experimental.gluon import language as gl

from gdnbench.backends._triton_kernels import beta_of, decay, wait_for_predecessor


@gluon.jit
def _prefetch_l2(ptr, nbytes, NW: gl.constexpr):
    """Ask L2 for ``nbytes`` contiguous bytes at ``ptr`` (sm90 bulk prefetch by thread 0: no registers,
    no waiting)."""
    one: gl.constexpr = gl.BlockedLayout([1], [32], [NW], [0])
    gl.inline_asm_elementwise(
        "{ .reg .pred p; .reg .u32 t; mov.u32 t, %tid.x; setp.eq.u32 p, t, 0; "
        "@p cp.async.bulk.prefetch.L2.global [$1], $2; mov.u32 $0, 0; }",
        "=r,l,r", [ptr + gl.zeros([1], gl.int32, layout=one), gl.full([1], nbytes, gl.int32, layout=one)],
        dtype=gl.int32, is_pure=False, pack=1)


@gluon.jit
def _decode_tile(q, k, v, a, b, A_log, dt_bias, pool, out, scale, tile, slot, later, slot2, HK: gl.constexpr,
                 HV: gl.constexpr, K: gl.constexpr, V: gl.constexpr, BV: gl.constexpr, VEC: gl.constexpr,
                 TK: gl.constexpr, NW: gl.constexpr, WRITE_BACK: gl.constexpr, PREFETCH: gl.constexpr):
    """One BV x K tile (the V blocks of a head consecutive, as in ``grid_tile``) at pool slot ``slot``
    (-1: padded row, zero output, the pool untouched). PREFETCH: once this tile's state load is issued,
    ask L2 for the state of tile ``later`` at slot ``slot2`` (skipped when -1)."""
    L: gl.constexpr = gl.BlockedLayout([1, VEC], [32 // TK, TK], [NW, 1], [1, 0])
    LK: gl.constexpr = gl.SliceLayout(0, L)  # K-long vectors: every row's threads hold the same columns
    LV: gl.constexpr = gl.SliceLayout(1, L)  # row results: one value per row, in the warp owning it
    NV: gl.constexpr = V // BV
    i_v = tile % NV
    pair = tile // NV
    hv = pair % HV
    n = (pair // HV).to(gl.int64)
    h = hv // (HV // HK)
    # the inputs do not depend on the slot: loaded alongside it
    offs_k = gl.arange(0, K, layout=LK)
    offs_v = i_v * BV + gl.arange(0, BV, layout=LV)
    qr = gl.load(q + (n * HK + h) * K + offs_k)
    kr = gl.load(k + (n * HK + h) * K + offs_k)
    vr = gl.load(v + (n * HV + hv) * V + offs_v)
    ar = gl.load(a + n * HV + hv)
    br = gl.load(b + n * HV + hv)
    alog = gl.load(A_log + hv)
    dtb = gl.load(dt_bias + hv)
    if slot >= 0:
        state = pool + (slot * HV + hv) * (K * V)
        offs = offs_v[:, None] * K + offs_k[None, :]
        Hr = gl.load(state + offs)
        if PREFETCH:
            if slot2 >= 0:
                _prefetch_l2(pool + (slot2 * HV + (later // NV) % HV) * (K * V) + (later % NV) * (BV * K),
                             BV * K * pool.dtype.element_ty.primitive_bitwidth // 8, NW)
        qf = qr.to(gl.float32)
        kf = kr.to(gl.float32)
        Hf = Hr.to(gl.float32)
        hk = gl.sum(Hf * kf[None, :], axis=1)  # [BV]: the row sums of raw q and k, independent of the norms
        hq = gl.sum(Hf * qf[None, :], axis=1)
        sq = gl.rsqrt(gl.sum(qf * qf, axis=0) + 1e-6) * scale
        sk = gl.rsqrt(gl.sum(kf * kf, axis=0) + 1e-6)
        kq = gl.sum(qf * kf, axis=0)
        eg = gl.exp(decay(ar, -gl.exp(alog), dtb))
        u = beta_of(br) * (vr.to(gl.float32) - (eg * sk) * hk)
        gl.store(out + (n * HV + hv) * V + offs_v, ((eg * sq) * hq + u * (kq * sk * sq)).to(out.dtype.element_ty))
        if WRITE_BACK:
            gl.store(state + offs, (Hf * eg + (u * sk)[:, None] * kf[None, :]).to(pool.dtype.element_ty))
    else:  # padded row: zero output, the pool untouched
        gl.store(out + (n * HV + hv) * V + offs_v, gl.zeros([BV], out.dtype.element_ty, layout=LV))


@gluon.jit
def _slot_of(slots, tile, n_tiles, HV: gl.constexpr, NV: gl.constexpr):
    """Pool slot (int64) of a tile's row; -1 past the last tile."""
    return gl.load(slots + tile // NV // HV, mask=tile < n_tiles, other=-1).to(gl.int64)


@gluon.jit
def gdn_decode_rows_kernel(
    q, k, v, a, b, A_log, dt_bias, slots, pool, out, scale, n_tiles, HK: gl.constexpr, HV: gl.constexpr,
    K: gl.constexpr, V: gl.constexpr, BV: gl.constexpr, VEC: gl.constexpr, TK: gl.constexpr, NW: gl.constexpr,
    WRITE_BACK: gl.constexpr, PDL: gl.constexpr, AHEAD: gl.constexpr, PERSIST: gl.constexpr,
):
    """Decode (T = 1), K-last pool, BV x K tiles. q, k [B, HK, K], v [B, HV, V], a, b [B, HV] (bf16 /
    fp16); A_log, dt_bias [HV] fp32; slots [B] int32 (-1: padded); pool [slots, HV, V, K] (bf16 / fp32 /
    fp16); out [B, HV, V]; n_tiles = B * HV * V / BV. VEC: state elements per 16-byte access; TK: threads
    of a warp across K (VEC * TK <= K); NW: warps.

    One program per tile (PERSIST false): with AHEAD > 0 a program also asks L2 for the state of the
    program AHEAD further on (its slot loaded with ours). PERSIST: a grid of fewer programs walks the
    tiles (tile, tile + grid, ...) with the next tile's slot loaded one tile ahead, and with AHEAD > 0 asks
    L2 for the next tile's state while it works on the current one (programs start once, so no program
    of a later wave waits for its launch or its slot)."""
    wait_for_predecessor(PDL)
    NV: gl.constexpr = V // BV
    pid = gl.program_id(0)
    if PERSIST:
        step = gl.num_programs(0)
        slot = _slot_of(slots, pid, n_tiles, HV, NV)
        for tile in range(pid, n_tiles, step):
            slot_next = _slot_of(slots, tile + step, n_tiles, HV, NV)
            _decode_tile(q, k, v, a, b, A_log, dt_bias, pool, out, scale, tile, slot, tile + step, slot_next, HK, HV,
                         K, V, BV, VEC, TK, NW, WRITE_BACK, AHEAD > 0)
            slot = slot_next
    else:
        slot = gl.load(slots + pid // NV // HV).to(gl.int64)
        later = pid + AHEAD
        slot2 = slot
        if AHEAD > 0:
            slot2 = _slot_of(slots, later, gl.num_programs(0), HV, NV)
        _decode_tile(q, k, v, a, b, A_log, dt_bias, pool, out, scale, pid, slot, later, slot2, HK, HV, K, V, BV, VEC,
                     TK, NW, WRITE_BACK, AHEAD > 0)
