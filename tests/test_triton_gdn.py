"""backends/triton_gdn.py: gdnbench's own Triton kernels pass the gate at tiny shapes under
TRITON_INTERPRET=1 (decode, MTP with intermediate states / write-back / tree, both layouts, both state
dtypes, padded pools), and the tile choice is recorded."""

from __future__ import annotations

import pytest
import torch
from conftest import HAS_CUDA, tiny_case

import gdnbench.backends.triton_gdn as tg
from gdnbench.backends.base import Padding, Target, triton_interpreted
from gdnbench.backends.triton_gdn import BACKEND, PDL, TritonGDN, heuristic_tile, tile
from gdnbench.check import run_gate
from gdnbench.inputs import make_inputs
from gdnbench.reference import reference

run_here = pytest.mark.skipif(not (HAS_CUDA or triton_interpreted()), reason="needs a GPU or TRITON_INTERPRET=1")
SMALL = dict(hk=1, hv=2, head_dim_k=16, head_dim_v=32)


def gate(case, backend=BACKEND):
    x = make_inputs(case, "cuda" if HAS_CUDA else "cpu")
    return run_gate(case, backend, x, reference(x)).check


@run_here
@pytest.mark.parametrize("layout", ["k_last", "v_last"])
@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("pool", ["contiguous", "scattered", "padded"])
def test_decode(layout, state_dtype, pool):
    r = gate(tiny_case(batch=3, layout=layout, state_dtype=state_dtype, pool=pool, **SMALL))
    assert r.ok, r.message


@run_here
@pytest.mark.parametrize("write_back,intermediate", [(True, False), (False, True), (True, True), (False, False)])
@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
def test_mtp(write_back, intermediate, state_dtype):
    case = tiny_case(phase="mtp", tokens=3, batch=3, pool="padded", write_back=write_back, intermediate=intermediate,
                     state_dtype=state_dtype, hk=1, hv=2, head_dim_k=16, head_dim_v=16)
    r = gate(case)
    assert r.ok, r.message


@run_here
@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("intermediate", [False, True])
def test_mtp_steep_decay_takes_the_eager_path(state_dtype, intermediate):
    """MTP carries the decay as one scalar while the row's cumulative log-decay stays above -60
    (``mtp_tokens``); a row past it multiplies the tile per token. Row 0 decays steeply here (a = 40:
    g ~ -40 A per token), the others as usual: both paths in one launch, checked against the reference."""
    case = tiny_case(phase="mtp", tokens=3, batch=3, pool="scattered", write_back=True, intermediate=intermediate,
                     state_dtype=state_dtype, hk=1, hv=2, head_dim_k=16, head_dim_v=16)
    x = make_inputs(case, "cuda" if HAS_CUDA else "cpu")
    x.a[0] = 40.0  # [B, T, HV]: every token of row 0
    g = -x.A_log.exp() * torch.nn.functional.softplus(x.a[0].float() + x.dt_bias)
    assert (g.sum(0) < -60).all() and (x.slots[0] >= 0)  # row 0 takes the eager path, for both heads
    r = run_gate(case, BACKEND, x, reference(x)).check
    assert r.ok, r.message


@run_here
@pytest.mark.parametrize("layout", ["k_last", "v_last"])
def test_tree(layout):
    case = tiny_case(phase="mtp", tokens=4, batch=3, hk=2, hv=4, head_dim_k=16, head_dim_v=16, intermediate=True,
                     tree=True, write_back=False, layout=layout)
    r = gate(case)
    assert r.ok, r.message


@run_here
def test_tile_override_and_gqa_groups():
    case = tiny_case(batch=2, hk=2, hv=8, head_dim_k=16, head_dim_v=32)
    for t in ((8, 1), (16, 2), (32, 4)):
        r = gate(case, TritonGDN(tile_override=t))
        assert r.ok, (t, r.message)


@run_here
@pytest.mark.parametrize("layout", ["k_last", "v_last"])
@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("progs", [1, 3, 100])
def test_persistent_kernel(layout, state_dtype, progs):
    """The persistent kernel (programs walk the tiles, prefetching the next one) on a padded pool:
    one program for every tile, several tiles per program, and more programs than tiles."""
    case = tiny_case(batch=5, hk=1, hv=2, head_dim_k=16, head_dim_v=32, layout=layout, state_dtype=state_dtype,
                     pool="padded")
    r = gate(case, TritonGDN(tile_override=(16, 1, progs)))
    assert r.ok, r.message


@run_here
@pytest.mark.parametrize("write_back,intermediate", [(True, False), (False, True)])
def test_persistent_kernel_mtp(write_back, intermediate):
    case = tiny_case(phase="mtp", tokens=3, batch=3, pool="padded", write_back=write_back, intermediate=intermediate,
                     state_dtype="bfloat16", hk=1, hv=2, head_dim_k=16, head_dim_v=16)
    r = gate(case, TritonGDN(tile_override=(8, 1, 2)))
    assert r.ok, r.message


@run_here
@pytest.mark.parametrize("layout", ["k_last", "v_last"])
@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("progs,stages", [(1, 2), (3, 3), (100, 2)])
def test_pipelined_kernel(layout, state_dtype, progs, stages):
    """The Triton-pipelined persistent kernel on a padded pool: one program for every tile, several
    tiles per program (more tiles than stages), more programs than tiles; K chunked."""
    case = tiny_case(batch=5, hk=1, hv=2, head_dim_k=16, head_dim_v=32, layout=layout, state_dtype=state_dtype,
                     pool="padded")
    b = TritonGDN(tile_override=(16, 1, progs, 0, 8, stages))
    assert b.kernel(case).startswith("gdn_pipelined_kernel") and f"{stages} stages" in b.kernel(case)
    r = gate(case, b)
    assert r.ok, r.message


@run_here
@pytest.mark.parametrize("write_back,intermediate", [(True, False), (False, True), (True, True)])
def test_pipelined_kernel_mtp(write_back, intermediate):
    case = tiny_case(phase="mtp", tokens=3, batch=3, pool="padded", write_back=write_back, intermediate=intermediate,
                     state_dtype="bfloat16", hk=1, hv=2, head_dim_k=16, head_dim_v=16)
    r = gate(case, TritonGDN(tile_override=(8, 1, 2, 0, 0, 3)))
    assert r.ok, r.message


@run_here
@pytest.mark.parametrize("layout", ["k_last", "v_last"])
@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("pool", ["scattered", "padded", "contiguous"])
@pytest.mark.parametrize("kc", [0, 8])
@pytest.mark.parametrize("reread,name", [(1, "two-pass"), (2, "q/k in the tile layout"), (3, "norms on the row sums"),
                                          (4, "no slot branch"), (5, "tensor-core dot")])
def test_two_pass_decode(layout, state_dtype, pool, kc, reread, name):
    """The reread tiles: row sums from the state as loaded, the update from a second read of it (1);
    one pass with q and k loaded in the tile's layout and the norms on the row sums (2); one pass with q and
    k loaded once as vectors and the norms on the row sums (3), and the same without the slot branch (4)."""
    case = tiny_case(layout=layout, state_dtype=state_dtype, pool=pool, batch=5)
    b = TritonGDN(tile_override=(16, 1, 0, 0, kc, 0, reread))
    assert name in b.kernel(case)
    r = gate(case, b)
    assert r.ok, r.message


@pytest.mark.gpu
@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("pool", ["scattered", "padded", "contiguous"])
@pytest.mark.parametrize("tile_", [(8, 1, 0, 0, 0, 0, 6), (32, 4, 0, 0, 16, 0, 6), (64, 8, 0, 0, 0, 0, 6, 0, 0, 1),
                                   (16, 2, 1, 0, 16, 0, 6, 0, 0, 1), (8, 1, 2, 0, 0, 0, 6, 128),
                                   (8, 1, 0, 0, 0, 0, 6, 0, 0, 0, 1), (64, 4, 0, 0, 0, 0, 6, 0, 0, 1, 2)])
@pytest.mark.parametrize("pdl", [False, True])
def test_gluon_decode(state_dtype, pool, tile_, pdl):
    """The Gluon decode (``reread`` = 6, GPU only) on GQA heads at K = V = 64: one warp, four warps (16
    columns a thread) and eight (with the L2 prefetch one SM-count ahead: 67 rows x 4 heads x 1-8 tiles),
    and on persistent grids of 1 and 2 programs per SM (each program walking 2-8 tiles; with the L2
    prefetch of its next tile; under a register cap), bf16 and fp32 state (8 / 16 lanes across K; 4 at
    16 columns), padded rows, with and without PDL; with evict-first state stores (cache 1), and loads
    and stores (cache 2)."""
    gate_gqa64(state_dtype, pool, tile_, pdl, "Gluon")


def gate_gqa64(state_dtype, pool, tile_, pdl, label):
    """Gate ``tile_`` on 67 rows x 4 GQA value heads (2 key heads) at K = V = 64, the kernel named ``label``."""
    case = tiny_case(batch=67, hk=2, hv=4, head_dim_k=64, head_dim_v=64, state_dtype=state_dtype, pool=pool)
    b = TritonGDN(tile_override=tile_, pdl=pdl)
    assert tg.tile_reason(case, b.tile(case)) is None
    assert label in b.kernel(case)
    r = gate(case, b)
    assert r.ok, r.message


@pytest.mark.gpu
@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("pool", ["scattered", "padded", "contiguous"])
@pytest.mark.parametrize("tile_", [(16, 1, 1, 0, 0, 2, 7), (32, 4, 1, 0, 16, 8, 7), (64, 8, 2, 0, 0, 3, 7, 0, 0, 1),
                                   (8, 1, 4, 0, 0, 1, 7, 0, 0, 1)])
@pytest.mark.parametrize("pdl", [False, True])
def test_tma_decode(state_dtype, pool, tile_, pdl):
    """The TMA-staged Gluon decode (``reread`` = 7, sm90+) on GQA heads at K = V = 64 (67 rows x 4 heads,
    so the programs take uneven tile counts and a padded row sits between copies): buffers fewer than a
    program's tiles (refilled, phases wrapping: 1 program/SM x 2 buffers; 2 x 3 with the inputs carried a
    tile ahead), one buffer, and as many buffers as tiles (1 x 8); one to eight warps, bf16 and fp32 state,
    with and without PDL."""
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("the TMA decode needs SM90 or newer")
    gate_gqa64(state_dtype, pool, tile_, pdl, "TMA")


def test_gluon_decode_reasons(monkeypatch):
    """Where the Gluon decode cannot run, a reason; a table entry it cannot run is passed over."""
    qwen = dict(hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype="bfloat16", batch=16)
    monkeypatch.setattr(tg, "triton_interpreted", lambda: False)
    assert tg.tile_reason(tiny_case(**qwen), tg.Tile(64, 4, 0, 0, 0, 0, 6)) is None
    assert "K-last" in tg.tile_reason(tiny_case(**qwen, layout="v_last"), tg.Tile(64, 4, 0, 0, 0, 0, 6))
    assert "multiple" in tg.tile_reason(tiny_case(**qwen), tg.Tile(4, 4, 0, 0, 0, 0, 6))  # 2 rows per warp pass
    assert "multiple of 8" in tg.tile_reason(tiny_case(**qwen), tg.Tile(64, 4, 0, 0, 4, 0, 6))  # half a vector
    assert tg.rows_layout(tiny_case(**qwen)) == (8, 16)
    assert tg.rows_layout(tiny_case(**qwen), tg.Tile(64, 4, 0, 0, 16, 0, 6)) == (8, 8)  # 16 columns a thread
    assert tg.rows_layout(tiny_case(**{**qwen, "state_dtype": "float32"})) == (4, 32)
    entries = [entry(mtp=False, pairs_min=1, bv=16, warps=1), entry(mtp=False, pairs_min=512, bv=64, warps=4, reread=6)]
    monkeypatch.setattr(tg, "tuned_tiles", lambda: entries)
    assert tile(tiny_case(**qwen)).reread == 6
    monkeypatch.setattr(tg, "triton_interpreted", lambda: True)
    assert "interpreter" in tg.tile_reason(tiny_case(**qwen), tg.Tile(64, 4, 0, 0, 0, 0, 6))
    assert tile(tiny_case(**qwen)) == tg.Tile(16, 1)  # the next entry down, which the interpreter runs


def test_two_pass_is_decode_only():
    mtp = tiny_case(phase="mtp", tokens=3)
    assert "decode" in tg.tile_reason(mtp, tg.Tile(16, 1, 0, 0, 0, 0, 1))
    assert "decode" in tg.tile_reason(tiny_case(), tg.Tile(16, 1, 2, 0, 0, 0, 1))
    assert tg.tile_reason(tiny_case(), tg.Tile(16, 1, 0, 0, 0, 0, 1)) is None
    assert tg.tile_reason(tiny_case(), tg.Tile(4, 1, 0, 0, 0, 0, 2)) is None
    assert "decode" in tg.tile_reason(mtp, tg.Tile(4, 1, 0, 0, 0, 0, 2))
    assert "reread is 0" in tg.tile_reason(tiny_case(), tg.Tile(4, 1, 0, 0, 0, 0, 8))
    assert tg.register_cap(tiny_case(), tg.Tile(16, 1, 0, 0, 0, 0, 1, 64)) == {"maxnreg": 64}


def test_stages_need_a_persistent_grid():
    case = tiny_case(batch=2, hk=1, hv=2, head_dim_k=16, head_dim_v=16)
    with pytest.raises(ValueError, match="stages"):
        TritonGDN(tile_override=(8, 1, 0, 0, 0, 2)).build(case, make_inputs(case, "cpu"))


@run_here
@pytest.mark.parametrize("tokens", [2, 3, 8])
@pytest.mark.parametrize("write_back,intermediate", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("state_dtype,layout", [("float32", "k_last"), ("bfloat16", "k_last"), ("bfloat16", "v_last")])
@pytest.mark.parametrize("tile", [(16, 1, 0, 1), (16, 1, 0, 2, 0, 2), (16, 1, 0, 2, 0, 2, 0, 0, 1),
                                  (16, 1, 5, 1, 0, 2, 0, 0, 1)])
def test_chunk_mtp_kernel(tokens, write_back, intermediate, state_dtype, layout, tile):
    """The chunk-form MTP kernel (the T steps solved around the initial state, tensor-core dots) on a
    padded pool with GQA, T = 2, 3 (padded to the 16-wide token operand) and 8 (the largest); one block
    of rows per program, and a program looping over both blocks of a head, pipelined over 2 stages,
    with and without the L2 prefetch of its rows (PTX: on the GPU only; the interpreter skips it); a
    persistent grid of 5 programs per SM (the interpreter counts one SM; 132 on the H100) sharing the
    12 blocks out 3, 3, 2, 2, 2, so programs start and end inside a head."""
    case = tiny_case(phase="mtp", tokens=tokens, batch=3, pool="padded", write_back=write_back,
                     intermediate=intermediate, state_dtype=state_dtype, layout=layout, hk=1, hv=2, head_dim_k=32,
                     head_dim_v=32)
    r = gate(case, TritonGDN(tile_override=tile))
    assert r.ok, r.message


@run_here
@pytest.mark.parametrize("state_dtype,layout", [("bfloat16", "k_last"), ("float32", "v_last"), ("bfloat16", "v_last")])
@pytest.mark.parametrize("phase,tokens,tile", [("decode", 1, (8, 1, 0, 0, 0, 0, 0, 0, 0, 1)),
                                               ("mtp", 3, (8, 1, 0, 0, 0, 0, 0, 0, 0, 1)),
                                               ("mtp", 3, (16, 1, 0, 2, 0, 2, 0, 0, 1, 1))])
def test_l2_prefetch_ahead(state_dtype, layout, phase, tokens, tile):
    """``ahead``: the per-tile kernel asks L2 for the tile of the program one SM-count further on (67 rows
    x 2 heads x 4 tiles = 536 programs on the H100's 132 SMs, so most programs prefetch one, padded rows'
    slots skipped), the chunk-form kernel for the next row block in each step; PTX, so on the GPU only
    (the interpreter runs the kernels without it). The results must not change."""
    case = tiny_case(phase=phase, tokens=tokens, batch=67 if HAS_CUDA else 3, pool="padded", write_back=True,
                     intermediate=tokens > 1, state_dtype=state_dtype, layout=layout, hk=1, hv=2, head_dim_k=32,
                     head_dim_v=32)
    r = gate(case, TritonGDN(tile_override=tile))
    assert r.ok, r.message


def test_l2_prefetch_ahead_tiles():
    """Which kernels take ``ahead``, and the kernel names that record it."""
    dec = tiny_case(hk=16, hv=32, head_dim_k=128, head_dim_v=128)
    mtp = tiny_case(phase="mtp", tokens=4, hk=16, hv=32, head_dim_k=128, head_dim_v=128)
    assert TritonGDN(tile_override=(16, 1, 0, 0, 0, 0, 0, 0, 0, 16)).kernel(dec) == (
        "gdn_recurrent_kernel [decode, k-last, BV=16, warps=1, L2 prefetch 16 programs/SM ahead]")
    assert TritonGDN(tile_override=(16, 1, 0, 4, 0, 2, 0, 0, 2, 1)).kernel(mtp) == (
        "gdn_mtp_chunk_kernel [mtp T=4, k-last, BV=16, warps=1, 4 blocks/program, 2 stages, L2 prefetch of 2 "
        "blocks, L2 prefetch 1 block ahead]")
    assert "one-program-per-tile" in tg.tile_reason(dec, tg.Tile(16, 1, 8, 0, 0, 0, 0, 0, 0, 1))
    assert "16 bytes" in tg.tile_reason(tiny_case(layout="v_last", state_dtype="bfloat16"),
                                        tg.Tile(4, 1, 0, 0, 0, 0, 0, 0, 0, 1))
    assert tg.tile_reason(tiny_case(layout="v_last", state_dtype="float32"), tg.Tile(4, 1, 0, 0, 0, 0, 0, 0, 0, 1)) is None
    # the offline compile (what the kernels look like for sm_90) sets the per-tile distance for 132 SMs
    assert tg.chunk_consts(tg.Tile(16, 1, 0, 4, 0, 2, 0, 0, 2, 1), interpreted=False)["AHEAD"] == 1
    assert tg.chunk_consts(tg.Tile(16, 1, 0, 4, 0, 2, 0, 0, 2, 1), interpreted=True)["AHEAD"] == 0


@run_here
@pytest.mark.parametrize("state_dtype,layout", [("bfloat16", "k_last"), ("float32", "v_last")])
def test_chunk_persistent_grid_crosses_heads(state_dtype, layout):
    """The persistent chunk-form grid with more blocks than programs, so every program takes blocks of
    several heads and most start or end inside one: one program per SM, 67 rows x 2 heads x 2 blocks on
    the H100's 132 SMs (268 blocks: 2-3 each), 5 rows on the interpreter's one SM (one program, 20 blocks);
    padded pool, GQA, intermediate states and write-back, L2 prefetch of up to 2 blocks on the GPU."""
    case = tiny_case(phase="mtp", tokens=3, batch=67 if HAS_CUDA else 5, pool="padded", write_back=True,
                     intermediate=True, state_dtype=state_dtype, layout=layout, hk=1, hv=2, head_dim_k=32,
                     head_dim_v=32)
    r = gate(case, TritonGDN(tile_override=(16, 1, 1, 1, 0, 2, 0, 0, 2)))
    assert r.ok, r.message


@run_here
@pytest.mark.parametrize("layout", ["k_last", "v_last"])
@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("phase,tokens,progs", [("decode", 1, 0), ("decode", 1, 2), ("mtp", 3, 0), ("mtp", 3, 2)])
def test_k_chunked_tiles(layout, state_dtype, phase, tokens, progs):
    """The [BV, K / KC, KC] register tile (reductions over K as in-thread chunk sums plus a short
    shuffle tree) on both per-token kernels: K = 32 in chunks of 8, GQA, padded pool, MTP with both
    the intermediate states and write-back."""
    case = tiny_case(phase=phase, tokens=tokens, batch=3, pool="padded", layout=layout, state_dtype=state_dtype,
                     hk=1, hv=2, head_dim_k=32, head_dim_v=16, intermediate=tokens > 1)
    b = TritonGDN(tile_override=(8, 1, progs, 0, 8))
    assert "KC=8" in b.kernel(case)
    r = gate(case, b)
    assert r.ok, r.message


@run_here
@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("phase,tokens,progs,stages", [("decode", 1, 0, 0), ("decode", 1, 2, 0), ("decode", 1, 2, 2),
                                                      ("mtp", 3, 0, 0)])
@pytest.mark.parametrize("bv,kc,flat", [(16, 16, True), (8, 8, False)])
def test_flat_and_two_step_row_sums(state_dtype, phase, tokens, progs, stages, bv, kc, flat):
    """rowdot's two reductions over K on every per-token kernel: one flat [BV, K] sum where the K
    chunks are not split across lanes (BV=16, KC=16: 16 rows x 1-4 vectors fill the warp), the NC
    then KC sums where they are (BV=8, KC=8 at K=32)."""
    case = tiny_case(phase=phase, tokens=tokens, batch=3, pool="padded", state_dtype=state_dtype, hk=1, hv=2,
                     head_dim_k=32, head_dim_v=16, intermediate=tokens > 1)
    t = tg.Tile(bv, 1, progs, 0, kc, stages)
    assert tg.flat_rowdot(case, t) is flat
    r = gate(case, TritonGDN(tile_override=t))
    assert r.ok, r.message


def test_flat_rowdot_rule():
    c = tiny_case(batch=64, hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype="bfloat16")
    assert not tg.flat_rowdot(c, tg.Tile(4, 1, 0, 0, 32))     # 4 rows x 4 vectors: lanes on the chunks too
    assert tg.flat_rowdot(c, tg.Tile(4, 1, 0, 0, 64))         # 4 x 8 fill the warp
    assert tg.flat_rowdot(c, tg.Tile(4, 1))                   # KC = K: nothing to split
    c32 = tiny_case(batch=64, hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype="float32")
    assert tg.flat_rowdot(c32, tg.Tile(4, 1, 0, 0, 32))       # fp32: 4 x 8 vectors
    mtp = tiny_case(phase="mtp", tokens=4, batch=64, hk=16, hv=32, head_dim_k=128, head_dim_v=128)
    assert not tg.flat_rowdot(mtp, tg.Tile(16, 1, 8, 0, 0, 2))  # pipelined MTP: the flat sum spilled
    assert tg.flat_rowdot(mtp, tg.Tile(16, 1, 8, 0, 0, 0))      # the register-prefetch persistent kernel


@run_here
def test_k_chunked_tree():
    case = tiny_case(phase="mtp", tokens=4, batch=3, hk=2, hv=4, head_dim_k=32, head_dim_v=16, intermediate=True,
                     tree=True, write_back=False)
    r = gate(case, TritonGDN(tile_override=(16, 1, 0, 0, 16)))
    assert r.ok, r.message


def test_k_chunk_must_divide_k():
    case = tiny_case(batch=2, hk=1, hv=2, head_dim_k=32, head_dim_v=16)
    assert TritonGDN(tile_override=(8, 1, 0, 0, 64)).tile(case).k_chunk(case) == 32  # capped at K
    assert "KC" not in TritonGDN(tile_override=(8, 1, 0, 0, 64)).kernel(case)
    x = make_inputs(case, "cpu")
    with pytest.raises(ValueError, match="KC=12"):
        TritonGDN(tile_override=(8, 1, 0, 0, 12)).build(case, x)


def test_chunk_kernel_limits():
    mtp = dict(phase="mtp", tokens=4, hk=16, hv=32, head_dim_k=128, head_dim_v=128)
    assert tg.chunk_reason(tiny_case(**mtp), 16) is None
    assert "BV >= 16" in tg.chunk_reason(tiny_case(**mtp), 8)
    assert "K >= 32" in tg.chunk_reason(tiny_case(**{**mtp, "head_dim_k": 16}), 16)
    assert "T = 2..8" in tg.chunk_reason(tiny_case(**{**mtp, "tokens": 1, "phase": "decode"}), 16)
    assert "tree" in tg.chunk_reason(tiny_case(**mtp, tree=True, intermediate=True, write_back=False), 16)
    assert "bf16 dot operands" in tg.chunk_reason(tiny_case(**mtp, dtype="float16"), 16)
    assert TritonGDN(tile_override=(32, 4, 0, 1)).kernel(tiny_case(**mtp)) == (
        "gdn_mtp_chunk_kernel [mtp T=4, k-last, BV=32, warps=4]")
    assert TritonGDN(tile_override=(16, 1, 0, 4, 0, 2)).kernel(tiny_case(**mtp)) == (
        "gdn_mtp_chunk_kernel [mtp T=4, k-last, BV=16, warps=1, 4 blocks/program, 2 stages]")
    assert "do not divide V=128" in tg.tile_reason(tiny_case(**mtp), tg.Tile(64, 4, 0, 4))
    assert tg.tile_reason(tiny_case(**mtp), tg.Tile(16, 1, 0, 8, 0, 2)) is None
    assert "chunk-form" in tg.tile_reason(tiny_case(**mtp), tg.Tile(16, 1, 0, 0, 0, 0, 0, 0, 1))
    assert TritonGDN(tile_override=(16, 1, 0, 8, 0, 2, 0, 128, 8)).kernel(tiny_case(**mtp)) == (
        "gdn_mtp_chunk_kernel [mtp T=4, k-last, BV=16, warps=1, 8 blocks/program, 2 stages, L2 prefetch of 8 "
        "blocks, maxnreg=128]")
    # the persistent grid: blocks shared out evenly, one block per loop step, registers capped at 168
    assert TritonGDN(tile_override=(16, 1, 12, 1, 0, 3, 0, 0, 2)).kernel(tiny_case(**mtp)) == (
        "gdn_mtp_chunk_kernel [mtp T=4, k-last, BV=16, warps=1, persistent, 12 programs/SM, 3 stages, L2 prefetch "
        "of 2 blocks, maxnreg=168]")
    assert "chunk = 1" in tg.tile_reason(tiny_case(**mtp), tg.Tile(16, 1, 12, 4, 0, 2))
    with pytest.raises(ValueError, match="tree"):
        TritonGDN(tile_override=(32, 4, 0, 1)).build(tiny_case(**mtp, tree=True, intermediate=True, write_back=False),
                                                     None)


def entry(**kw) -> dict:
    """A tuned-table entry for K-last bf16 128 x 128 heads unless overridden."""
    return {"layout": "k_last", "state_dtype": "bfloat16", "head_dim_k": 128, "head_dim_v": 128, **kw}


def test_tuned_chunk_entry_skipped_where_it_cannot_run(monkeypatch):
    entries = [entry(mtp=True, pairs_min=1, bv=16, warps=1),
               entry(mtp=True, pairs_min=64, bv=32, warps=4, chunk=1),
               entry(mtp=True, pairs_min=1024, bv=16, warps=1, progs_per_sm=8, stages=2)]
    monkeypatch.setattr(tg, "tuned_tiles", lambda: entries)
    mtp = dict(phase="mtp", tokens=4, hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype="bfloat16", batch=8)
    assert tile(tiny_case(**mtp)) == tg.Tile(32, 4, 0, 1, 0, 0, 0, 0, 0)
    assert tile(tiny_case(**mtp, tree=True, intermediate=True, write_back=False)) == tg.Tile(16, 1, 0, 0, 0, 0, 0, 0, 0)
    # a pipelined persistent entry on a tree case: the per-tile kernel at the same tile (no stages)
    big = {**mtp, "batch": 64, "tree": True, "intermediate": True, "write_back": False}
    assert tile(tiny_case(**big)) == tg.Tile(16, 1, 0, 0, 0, 0, 0, 0, 0)


def test_supports_and_kernel_column():
    t = Target("cuda", 90, "sm90")
    assert BACKEND.supports(tiny_case(), t) is None
    assert "prefill" in BACKEND.supports(tiny_case(phase="prefill", batch=1, tokens=4, seq_lens="4"), t)
    assert "powers of two" in BACKEND.supports(tiny_case(head_dim_k=96), t)
    assert BACKEND.padding(tiny_case()) == Padding.ZERO
    assert BACKEND.kernel(tiny_case(phase="mtp", tokens=4, tree=True, intermediate=True, write_back=False)).startswith(
        "gdn_recurrent_kernel [mtp T=4 tree, k-last, BV=")
    assert TritonGDN(tile_override=(16, 2, 8)).kernel(tiny_case()) == (
        "gdn_persistent_kernel [decode, k-last, BV=16, warps=2, 8 programs/SM]")


def test_pdl_variant_is_a_gpu_only_launch_mode():
    """triton_pdl: the same kernels and tiles, launched with programmatic dependent launch, which exists
    from SM90 on; the kernel column says so, and there is nothing to overlap under the interpreter."""
    case = tiny_case()
    assert PDL.name == "triton_pdl" and BACKEND.name == "triton"
    assert PDL.supports(case, Target("cuda", 90, "sm90")) is None
    assert PDL.supports(case, Target("cuda", 100, "sm100")) is None
    assert "SM90" in PDL.supports(case, Target("cuda", 80, "sm80"))
    assert "GPU" in PDL.supports(case, Target("cpu"))
    if not HAS_CUDA:
        assert "GPU" in PDL.supports(case)
    assert PDL.kernel(case).endswith(", PDL]") and "PDL" not in BACKEND.kernel(case)
    assert PDL.tile(case) == BACKEND.tile(case)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")
@pytest.mark.parametrize("state_dtype,tokens", [("bfloat16", 1), ("float32", 1), ("bfloat16", 4)])
def test_pdl_launches_chained_on_one_pool_stay_ordered(state_dtype, tokens):
    """80 PDL launches back to back in a CUDA graph, each reading the state its predecessor wrote,
    end where 80 plain launches do: a read issued before the wait would see a stale state and drift
    by a whole step."""
    case = tiny_case(batch=64, hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype=state_dtype,
                     tokens=tokens, phase="mtp" if tokens > 1 else "decode", pool="scattered")
    if PDL.supports(case):
        pytest.skip(PDL.supports(case))
    ends = []
    for backend in (BACKEND, PDL):
        x = make_inputs(case, "cuda")
        launch = backend.build(case, x)
        launch()  # compile outside the capture (both runs take this one step)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(8):
                out = launch()
        for _ in range(10):
            graph.replay()
        torch.cuda.synchronize()
        ends.append((x.pool.float().clone(), out.float().clone()))
    (pool0, out0), (pool1, out1) = ends
    tol = 1e-4 if state_dtype == "float32" else 2e-2
    assert torch.isfinite(pool0).all()
    torch.testing.assert_close(pool1, pool0, rtol=tol, atol=tol)
    torch.testing.assert_close(out1, out0, rtol=tol, atol=tol)


def test_heuristic_tile_fills_the_gpu():
    big = tiny_case(batch=512, hk=16, hv=32, head_dim_k=128, head_dim_v=128)
    small = tiny_case(batch=1, hk=16, hv=32, head_dim_k=128, head_dim_v=128)
    assert heuristic_tile(big)[0] > heuristic_tile(small)[0]
    bv = heuristic_tile(small).bv
    assert 32 * (128 // bv) >= 256  # B = 1 still splits V into many programs
    assert heuristic_tile(tiny_case(layout="v_last", batch=1, hk=16, hv=32, head_dim_k=128, head_dim_v=128))[0] >= 32


def test_tuned_table_wins_over_heuristic(monkeypatch):
    entries = [entry(mtp=False, pairs_min=1, bv=16, warps=2),
               entry(mtp=False, pairs_min=1024, bv=64, warps=4, progs_per_sm=8),
               entry(state_dtype="float32", mtp=True, pairs_min=1, bv=32, warps=4, progs_per_sm=4, kc=32)]
    monkeypatch.setattr(tg, "tuned_tiles", lambda: entries)
    qwen = dict(hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype="bfloat16")
    assert tile(tiny_case(batch=4, **qwen)) == tg.Tile(16, 2, 0, 0, 0, 0, 0, 0, 0)  # an entry without a grid size: one program per tile
    assert tile(tiny_case(batch=64, **qwen)) == tg.Tile(64, 4, 8, 0, 0, 0, 0, 0, 0)
    mtp = dict(qwen, state_dtype="float32", phase="mtp", tokens=4, batch=8)
    assert tile(tiny_case(**mtp)) == tg.Tile(32, 4, 4, 0, 32, 0, 0, 0, 0)  # the entry's K chunk carries through
    assert tile(tiny_case(**mtp, tree=True, intermediate=True, write_back=False)) == tg.Tile(32, 4, 0, 0, 32, 0, 0, 0, 0)  # no tree: grid kernel
    assert tile(tiny_case(batch=64, **{**qwen, "state_dtype": "float32"})) == heuristic_tile(
        tiny_case(batch=64, **{**qwen, "state_dtype": "float32"}))


@pytest.mark.slow
@pytest.mark.parametrize("state_dtype,layout,tokens,tile_,pdl", [
    ("bfloat16", "k_last", 1, None, False), ("float32", "v_last", 1, None, False),
    ("bfloat16", "k_last", 4, None, False), ("bfloat16", "k_last", 1, (16, 2, 8), False),
    ("float32", "k_last", 4, (32, 4, 4), False), ("bfloat16", "k_last", 4, (32, 4, 0, 1), False),
    # every kernel once with programmatic dependent launch
    ("bfloat16", "k_last", 1, None, True), ("bfloat16", "k_last", 4, None, True),
    ("bfloat16", "k_last", 1, (16, 2, 8), True), ("bfloat16", "k_last", 1, (16, 1, 4, 0, 0, 2), True),
    ("bfloat16", "k_last", 4, (32, 4, 0, 1), True),
    # the two-pass decode tile: the state tile is not held across the row sums
    ("bfloat16", "k_last", 1, (16, 1, 0, 0, 0, 0, 1), False),
    # the Gluon decode: one and four warps (with the L2 prefetch ahead), fp32 state at eight, PDL
    ("bfloat16", "k_last", 1, (16, 1, 0, 0, 0, 0, 6), True), ("bfloat16", "k_last", 1, (64, 4, 0, 0, 0, 0, 6, 0, 0, 4), False),
    ("float32", "k_last", 1, (64, 8, 0, 0, 0, 0, 6), False),
    # ... with evict-first state stores, and loads and stores
    ("bfloat16", "k_last", 1, (16, 1, 0, 0, 0, 0, 6, 0, 0, 0, 1), False),
    ("bfloat16", "k_last", 1, (64, 4, 0, 0, 0, 0, 6, 0, 0, 4, 2), True),
    # the TMA-staged decode: the state through shared memory, refilled buffers, inputs a tile ahead
    ("bfloat16", "k_last", 1, (16, 1, 16, 0, 0, 2, 7), False), ("float32", "k_last", 1, (32, 4, 1, 0, 0, 4, 7, 0, 0, 1), True)])
def test_compiles_for_sm90_with_vector_state_traffic(state_dtype, layout, tokens, tile_, pdl):
    """Offline sm_90 compile (no GPU needed): the state tile moves in 16-byte vectors and nothing spills
    to local memory -- what decode at the bandwidth roofline needs. With PDL, the wait for the previous
    kernel comes before the first global load (and only then)."""
    import dataclasses
    import json
    import os
    import subprocess
    import sys

    case = tiny_case(batch=64, hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype=state_dtype, layout=layout,
                     tokens=tokens, phase="mtp" if tokens > 1 else "decode")
    code = ("import json, sys; from gdnbench.cases import Case; from gdnbench.backends.triton_gdn import aot_report; "
            "print(json.dumps(aot_report(Case(**json.loads(sys.argv[1])), tile_=json.loads(sys.argv[2]), "
            "pdl=json.loads(sys.argv[3]))))")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(dataclasses.asdict(case)), json.dumps(tile_),
                          json.dumps(pdl)], capture_output=True, text=True, env=env, check=True).stdout
    rep = json.loads(out.strip().splitlines()[-1])
    assert rep["pdl_wait"] == ("first" if pdl else "none"), rep
    pipelined = tile_ is not None and len(tile_) > 5 and tile_[5] > 0  # state loads are cp.async copies there
    assert (rep["ld_v4"] >= 4 or pipelined) and rep["st_v4"] >= 4, rep
    assert not rep["ptx_local"], rep
    if "local" in rep:
        assert rep["local"] == 0, rep
        # MTP tiles run at the 128-register cap (register_cap), where ptxas may park a few prefetched
        # values (the next token's q and k) on the stack depending on the Triton release (3.6, the H100
        # host's: none for the bf16 tile, 24 bytes for fp32 BV = 16; 3.9: 96 bytes for bf16); a spilled
        # state tile is kilobytes (the pipelined kernel at T = 4 once spilled 6-10 KB per thread).
        assert rep["stack"] <= (128 if tokens > 1 else 0), rep
        if tile_ is not None and len(tile_) > 6 and tile_[6] == 1:  # two-pass: sm_90, Triton 3.6: 80 (one pass: 126)
            assert rep["registers"] <= 96, rep
    if tile_ is not None and len(tile_) > 6 and tile_[6] == 6:  # Gluon: warps own rows, nothing crosses warps
        assert rep["shared_bytes"] == 0, rep
    cache = tile_[10] if tile_ is not None and len(tile_) > 10 else 0  # the state's L2 eviction policy
    assert rep["st_evict_first"] == (rep["st_v4"] if cache else 0), rep  # every state store, or none
    assert (rep["ld_evict_first"] >= 4) == (cache == 2), rep
    if tile_ is not None and len(tile_) > 6 and tile_[6] == 7:  # TMA: a buffer per stage, 16-byte state stores
        size = 2 if state_dtype == "bfloat16" else 4
        assert rep["shared_bytes"] >= tile_[5] * tile_[0] * 128 * size, rep


def test_tile_table_reader_and_picker(tmp_path):
    """backends/base.py: a missing or malformed table reads as empty (the heuristic applies); the
    picker takes the accepted entry with the largest pairs_min the case reaches."""
    from gdnbench.backends.base import pick_tuned, read_tile_table

    assert read_tile_table(tmp_path / "absent.json") == []
    (tmp_path / "bad.json").write_text('{"version": 1}')
    assert read_tile_table(tmp_path / "bad.json") == []
    entries = [{"pairs_min": 1, "id": "a"}, {"pairs_min": 64, "id": "b"}, {"pairs_min": 128, "id": "c"}]
    case = tiny_case(batch=4, hv=32)  # 128 pairs
    assert pick_tuned(entries, case, lambda e: True)["id"] == "c"
    assert pick_tuned(entries, case, lambda e: e["id"] != "c")["id"] == "b"
    assert pick_tuned(entries, tiny_case(batch=1, hv=32), lambda e: e["id"] != "a") is None


def _same(a, w) -> bool:
    """A launch argument is the one expected (None: not compared); tensors by storage and shape (the pool
    is a fresh view each time it is read)."""
    if w is None or a is w:
        return True
    if torch.is_tensor(w):
        return torch.is_tensor(a) and a.data_ptr() == w.data_ptr() and a.shape == w.shape
    return a == w


def test_gluon_builds_launch_the_kernel_they_name(monkeypatch):
    """The Gluon decodes' build (``reread`` = 6 and 7) without a GPU: a stand-in kernel records the launch.
    One program per tile for the rows kernel (a persistent grid with programs per SM), SMs x programs per
    SM for the TMA kernel; the TMA kernel gets a descriptor of the pool as [slots * HV * V, K] rows in
    [BV, K] blocks plus the pool itself (the stores), and the compile-time arguments of ``_gluon_consts``."""
    launches = []

    class Stand:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **kw: launches.append((self.name, grid, args, kw))

    monkeypatch.setattr(tg, "triton_interpreted", lambda: False)
    monkeypatch.setattr(tg, "_gluon_decode", lambda: Stand("rows"))
    monkeypatch.setattr(tg, "_gluon_tma", lambda: Stand("tma"))
    monkeypatch.setattr(tg, "sm_count", lambda device: 132)
    case = tiny_case(batch=5, hk=2, hv=4, head_dim_k=64, head_dim_v=64, state_dtype="bfloat16")
    x = make_inputs(case, "cpu")
    for t, pdl in (((16, 1, 0, 0, 0, 0, 6, 0, 0, 1, 2), False), ((16, 2, 1, 0, 16, 0, 6, 96), True),
                   ((16, 1, 16, 0, 0, 2, 7, 0, 0, 1), True)):
        tile_ = tg.Tile(*t)
        b = TritonGDN(tile_override=t, pdl=pdl)
        out = b.build(case, x)()
        name, grid, args, kw = launches.pop()
        n_tiles = case.batch * case.hv * case.head_dim_v // tile_.bv
        assert name == ("tma" if tile_.reread == 7 else "rows")
        assert grid == (min(n_tiles, tile_.progs_per_sm * 132) if tile_.progs_per_sm else n_tiles,)
        want = (x.q, x.k, x.v, x.a, x.b, x.A_log, x.dt_bias, x.slots, *([None] if tile_.reread == 7 else []), x.pool,
                out, x.scale, n_tiles)
        assert len(args) == len(want) and all(_same(a, w) for a, w in zip(args, want)), args
        if tile_.reread == 7:
            desc = args[8]
            assert desc.base.data_ptr() == x.pool.data_ptr() and list(desc.shape) == [x.pool.shape[0] * 4 * 64, 64]
            assert list(desc.block_shape) == [16, 64]
        assert kw == {**tg._gluon_consts(case, tile_, pdl, 132), "num_warps": tile_.warps,
                      **({"launch_pdl": True} if pdl else {}), **({"maxnreg": tile_.maxnreg} if tile_.maxnreg else {})}
