"""Triton helpers every kernel form of the ``triton`` backend shares: the gates, the PDL wait, the
tile numbering and the L2 prefetches. Imported lazily (Triton is optional for the rest of gdnbench).
"""

import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_wait


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
