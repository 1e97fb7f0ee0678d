"""The Gluon decode (``Variant.GLUON_ROWS``) and its TMA-staged persistent form (``Variant.GLUON_TMA``).
Imported lazily, compiled for a GPU only: Gluon has no CPU interpreter.

Why Gluon. Triton chooses register layouts itself: for a one-warp program it keeps the [BV, K] tile and
the K-long q / k vectors in compatible layouts, but with several warps per program it spreads each K-long
vector over all the program's threads, so every broadcast of q or k against the tile, every norm and
every [BV] result goes through shared memory behind a barrier. Gluon states the layout: the tile is
``BlockedLayout([1, VEC], [32 / TK, TK], [warps, 1])`` (VEC elements = 16 bytes per thread along K, TK
threads of a warp across K, warps stacked over rows), q and k are its ``SliceLayout(0)`` and the row
results its ``SliceLayout(1)``. Every warp owns whole rows: the reductions over K are shuffles inside one
warp and the program has no shared memory and no barrier at any warp count, so a multi-warp program is
the one-warp program repeated at a fraction of the programs.

The math applies the L2 norms to the BV-long row sums (both row sums from the state before the update),
so the reductions over K are independent; a padded row (slot -1) writes a zero output and touches no
state. K-last pools only (the tile is a contiguous BV x K block). Measurements:
``docs/design/triton-decode.md``.
"""

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, mbarrier, tma

from gdnbench.backends.triton.kernels.common import beta_of, decay, wait_for_predecessor

# TMA global -> shared copy: ``async_copy_global_to_shared`` in Triton 3.6, renamed ``async_load`` later
_tma_load = getattr(tma, "async_load", None) or tma.async_copy_global_to_shared
# a CTA-wide barrier: ``thread_barrier`` in Triton 3.6, ``barrier`` later
_cta_barrier = getattr(gl, "thread_barrier", None) or gl.barrier


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
def _decode_rows(Hr, qr, kr, vr, ar, br, alog, dtb, scale):
    """The decode of one tile from registers: state rows Hr [BV, K] (as stored), raw q, k [K], v [BV],
    gates a, b, A_log, dt_bias. Returns the output rows [BV] and the factors of the updated state, fp32:
    ``Hf * eg + (u * sk)[:, None] * kf[None, :]`` with Hf [BV, K], u [BV], eg, sk scalars, kf [K] (formed where it
    is stored, so the output store is issued first: the kernels' measured instruction order). Both row sums come from the state before the update and the L2 norms
    land on them, so the reductions over K are independent (``raw_vector_decode``'s math)."""
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
    return (eg * sq) * hq + u * (kq * sk * sq), Hf, eg, u, sk, kf


@gluon.jit
def _decode_tile(q, k, v, a, b, A_log, dt_bias, pool, out, scale, tile, slot, later, slot2, HK: gl.constexpr,
                 HV: gl.constexpr, K: gl.constexpr, V: gl.constexpr, BV: gl.constexpr, VEC: gl.constexpr,
                 TK: gl.constexpr, NW: gl.constexpr, WRITE_BACK: gl.constexpr, PREFETCH: gl.constexpr,
                 CACHE: gl.constexpr):
    """One BV x K tile (the V blocks of a head consecutive, as in ``grid_tile``) at pool slot ``slot``
    (-1: padded row, zero output, the pool untouched). PREFETCH: once this tile's state load is issued,
    ask L2 for the state of tile ``later`` at slot ``slot2`` (skipped when -1). CACHE: 1 stores the
    state with an evict-first policy, 2 also loads it so (``cache_policy``)."""
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
        if CACHE == 2:
            Hr = gl.load(state + offs, eviction_policy="evict_first")
        else:
            Hr = gl.load(state + offs)
        if PREFETCH:
            if slot2 >= 0:
                _prefetch_l2(pool + (slot2 * HV + (later // NV) % HV) * (K * V) + (later % NV) * (BV * K),
                             BV * K * pool.dtype.element_ty.primitive_bitwidth // 8, NW)
        o, Hf, eg, u, sk, kf = _decode_rows(Hr, qr, kr, vr, ar, br, alog, dtb, scale)
        gl.store(out + (n * HV + hv) * V + offs_v, o.to(out.dtype.element_ty))
        if WRITE_BACK:
            new = (Hf * eg + (u * sk)[:, None] * kf[None, :]).to(pool.dtype.element_ty)
            if CACHE > 0:
                gl.store(state + offs, new, eviction_policy="evict_first")
            else:
                gl.store(state + offs, new)
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
    WRITE_BACK: gl.constexpr, PDL: gl.constexpr, AHEAD: gl.constexpr, CACHE: gl.constexpr,
):
    """Decode (T = 1), K-last pool, BV x K tiles. q, k [B, HK, K], v [B, HV, V], a, b [B, HV] (bf16 /
    fp16); A_log, dt_bias [HV] fp32; slots [B] int32 (-1: padded); pool [slots, HV, V, K] (bf16 / fp32 /
    fp16); out [B, HV, V]; n_tiles = B * HV * V / BV. VEC: state elements per 16-byte access; TK: threads
    of a warp across K (VEC * TK <= K); NW: warps.

    One program per tile: with AHEAD > 0 a program also asks L2 for the state of the program AHEAD
    further on (its slot loaded with ours). CACHE: the state's L2 eviction policy (``_decode_tile``)."""
    wait_for_predecessor(PDL)
    NV: gl.constexpr = V // BV
    pid = gl.program_id(0)
    slot = gl.load(slots + pid // NV // HV).to(gl.int64)
    later = pid + AHEAD
    slot2 = slot
    if AHEAD > 0:
        slot2 = _slot_of(slots, later, gl.num_programs(0), HV, NV)
    _decode_tile(q, k, v, a, b, A_log, dt_bias, pool, out, scale, pid, slot, later, slot2, HK, HV, K, V, BV, VEC,
                 TK, NW, WRITE_BACK, AHEAD > 0, CACHE)


@gluon.jit
def _tile_inputs(q, k, v, a, b, A_log, dt_bias, tile, HK: gl.constexpr, HV: gl.constexpr, K: gl.constexpr,
                 V: gl.constexpr, BV: gl.constexpr, LK: gl.constexpr, LV: gl.constexpr):
    """The inputs of one BV x K tile: q, k [K] (layout LK), v [BV] (LV), a, b, A_log, dt_bias scalars."""
    NV: gl.constexpr = V // BV
    pair = tile // NV
    hv = pair % HV
    n = (pair // HV).to(gl.int64)
    h = hv // (HV // HK)
    offs_k = gl.arange(0, K, layout=LK)
    offs_v = (tile % NV) * BV + gl.arange(0, BV, layout=LV)
    return (gl.load(q + (n * HK + h) * K + offs_k), gl.load(k + (n * HK + h) * K + offs_k),
            gl.load(v + (n * HV + hv) * V + offs_v), gl.load(a + n * HV + hv), gl.load(b + n * HV + hv),
            gl.load(A_log + hv), gl.load(dt_bias + hv))


@gluon.jit
def _state_row(slot, tile, HV: gl.constexpr, V: gl.constexpr, BV: gl.constexpr):
    """First pool row (of ``[slots * HV * V, K]``) of a tile at ``slot``; -BV for a padded row (slot -1):
    a block wholly outside the pool, which TMA fills with zeros without reading memory, so the tile's
    mbarrier completes as for any other copy. Rows fit int32 (``tma_reason``)."""
    NV: gl.constexpr = V // BV
    row = ((slot * HV + (tile // NV) % HV) * V + (tile % NV) * BV).to(gl.int32)
    return gl.where(slot >= 0, row, -BV)


@gluon.jit
def _issue_state(desc, bar, buf, row, pred, NBYTES: gl.constexpr):
    """Start the TMA copy of the ``[BV, K]`` pool block at ``row`` into ``buf``; ``bar`` completes its
    phase when it lands (skipped when ``pred`` is false)."""
    mbarrier.expect(bar, NBYTES, pred=pred)
    _tma_load(desc, [row, 0], bar, buf, pred=pred)


@gluon.jit
def gdn_decode_tma_kernel(
    q, k, v, a, b, A_log, dt_bias, slots, desc, pool, out, scale, n_tiles, HK: gl.constexpr, HV: gl.constexpr,
    K: gl.constexpr, V: gl.constexpr, BV: gl.constexpr, VEC: gl.constexpr, TK: gl.constexpr, NW: gl.constexpr,
    WRITE_BACK: gl.constexpr, PDL: gl.constexpr, STAGES: gl.constexpr, SP: gl.constexpr, CARRY: gl.constexpr,
):
    """Decode (T = 1), K-last pool, on a persistent grid that stages the state through shared memory
    (``Variant.GLUON_TMA``). Arguments as ``gdn_decode_rows_kernel``'s, with ``desc`` a TMA descriptor of the
    pool as ``[slots * HV * V, K]`` rows in ``[BV, K]`` blocks (unswizzled) for the loads; the updated
    state is stored from registers through ``pool``.

    Program p takes tiles p, p + G, ... (G programs). It first starts the TMA copies of its first STAGES
    tiles (one shared-memory buffer and mbarrier each), then for each tile waits for its buffer, reads it
    into the rows layout, hands the buffer to the tile STAGES further on and runs the decode from
    registers. A program's slot loads are thus paid once, not once per wave, and with STAGES >= its
    tiles every state byte is requested at launch. SP: STAGES rounded up to a power of two. CARRY: the next tile's inputs (q, k, v, gates) are
    loaded while this tile computes (else at the top of each tile, overlapping its wait)."""
    L: gl.constexpr = gl.BlockedLayout([1, VEC], [32 // TK, TK], [NW, 1], [1, 0])
    LK: gl.constexpr = gl.SliceLayout(0, L)
    LV: gl.constexpr = gl.SliceLayout(1, L)
    NV: gl.constexpr = V // BV
    NBYTES: gl.constexpr = BV * K * desc.dtype.primitive_bitwidth // 8
    wait_for_predecessor(PDL)
    pid = gl.program_id(0)
    G = gl.num_programs(0)
    # every thread holds the first STAGES tiles' slots: one load, read back without shuffles; issued
    # with the first tile's inputs before the barriers' set-up (the compiler puts a CTA barrier after
    # each shared-memory op, and no load moves across one)
    LS: gl.constexpr = gl.BlockedLayout([SP], [32], [NW], [0])
    first = pid + gl.arange(0, SP, layout=LS) * G
    rows = _state_row(_slot_of(slots, first, n_tiles, HV, NV), first, HV, V, BV)
    qr, kr, vr, ar, br, alog, dtb = _tile_inputs(q, k, v, a, b, A_log, dt_bias, pid, HK, HV, K, V, BV, LK, LV)
    bufs = gl.allocate_shared_memory(desc.dtype, [STAGES, BV, K], desc.layout)
    bars = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(STAGES):
        mbarrier.init(bars.index(s), count=1)
    fence_async_shared()  # the barriers' init is visible to the TMA unit before its first copy
    for s in gl.static_range(STAGES):
        row = gl.sum(gl.where(gl.arange(0, SP, layout=LS) == s, rows, 0), axis=0)
        _issue_state(desc, bars.index(s), bufs.index(s), row, pid + s * G < n_tiles, NBYTES)
    mine = gl.cdiv(n_tiles - pid, G)
    for i in range(mine):
        tile = pid + i * G
        j = i % STAGES
        refill = tile + STAGES * G
        slot = _slot_of(slots, tile, n_tiles, HV, NV)  # both slots load while the tile's copy may still be landing
        row_refill = _state_row(_slot_of(slots, refill, n_tiles, HV, NV), refill, HV, V, BV)
        if not CARRY:
            qr, kr, vr, ar, br, alog, dtb = _tile_inputs(q, k, v, a, b, A_log, dt_bias, tile, HK, HV, K, V, BV, LK,
                                                         LV)
        mbarrier.wait(bars.index(j), (i // STAGES) & 1)
        Hr = bufs.index(j).load(L)
        fence_async_shared()  # this thread's reads of the buffer are ordered before the next TMA write
        _cta_barrier()  # ... and every warp's
        _issue_state(desc, bars.index(j), bufs.index(j), row_refill, refill < n_tiles, NBYTES)
        qc, kc, vc, ac, bc, alc, dtc = qr, kr, vr, ar, br, alog, dtb
        if CARRY:  # next tile's inputs (the last program's last tile reloads its own: never used)
            nxt = gl.minimum(tile + G, n_tiles - 1)
            qr, kr, vr, ar, br, alog, dtb = _tile_inputs(q, k, v, a, b, A_log, dt_bias, nxt, HK, HV, K, V, BV, LK,
                                                         LV)
        pair = tile // NV
        hv = pair % HV
        n = (pair // HV).to(gl.int64)
        offs_v = (tile % NV) * BV + gl.arange(0, BV, layout=LV)
        if slot >= 0:
            o, Hf, eg, u, sk, kf = _decode_rows(Hr, qc, kc, vc, ac, bc, alc, dtc, scale)
            gl.store(out + (n * HV + hv) * V + offs_v, o.to(out.dtype.element_ty))
            if WRITE_BACK:
                offs = offs_v[:, None] * K + gl.arange(0, K, layout=LK)[None, :]
                state = pool + (slot * HV + hv) * (K * V)
                gl.store(state + offs, (Hf * eg + (u * sk)[:, None] * kf[None, :]).to(pool.dtype.element_ty))
        else:
            gl.store(out + (n * HV + hv) * V + offs_v, gl.zeros([BV], out.dtype.element_ty, layout=LV))
    for s in gl.static_range(STAGES):
        mbarrier.invalidate(bars.index(s))
