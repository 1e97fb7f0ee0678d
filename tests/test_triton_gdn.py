"""backends/triton/: gdnbench's own Triton kernels pass the gate at tiny shapes under
TRITON_INTERPRET=1 (decode, MTP with intermediate states / write-back / tree, both layouts, both state
dtypes, padded pools), and the tile choice is recorded."""

from __future__ import annotations

import pytest
import torch
from conftest import HAS_CUDA, tiny_case

import gdnbench.backends.triton.backend as tb
import gdnbench.backends.triton.plan as tp
import gdnbench.backends.triton.tiles as tg
from gdnbench.backends.base import Padding, Target, triton_interpreted
from gdnbench.backends.tables import TileTable
from gdnbench.backends.triton import BACKEND, PDL, TritonGDN
from gdnbench.backends.triton.tiles import Tile, Variant, heuristic_tile, tile
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
@run_here
def test_tile_override_and_gqa_groups():
    case = tiny_case(batch=2, hk=2, hv=8, head_dim_k=16, head_dim_v=32)
    for t in (Tile(8, 1), Tile(16, 2), Tile(32, 4)):
        r = gate(case, TritonGDN(tile_override=t))
        assert r.ok, (t, r.message)


def test_tile_is_validated_once():
    """A Tile names its variant and takes only that variant's fields; table entries round-trip."""
    assert Tile(16, 1).variant is Variant.PER_TOKEN and Tile(16, 1, "chunk").variant is Variant.CHUNK
    with pytest.raises(ValueError, match="takes no cache"):
        Tile(16, 1, Variant.PER_TOKEN, cache=1)
    with pytest.raises(ValueError, match="takes no blocks, stages"):
        Tile(16, 1, Variant.GLUON_ROWS, blocks=2, stages=2)
    with pytest.raises(ValueError, match="persistent grid"):
        Tile(16, 1, Variant.GLUON_TMA)
    with pytest.raises(ValueError):
        Tile(12, 1)
    with pytest.raises(ValueError):
        Tile(16, 1, "persistent")
    t = Tile(16, 1, Variant.CHUNK, blocks=4, stages=2, prefetch=2, ahead=1)
    assert Tile.from_entry({"layout": "k_last", "pairs_min": 8, **t.entry(), "median_us": 1.0}) == t
    assert t.entry() == {"variant": "chunk", "bv": 16, "warps": 1, "blocks": 4, "stages": 2, "prefetch": 2, "ahead": 1}


GLUON_TILES = [Tile(8, 1, "gluon_rows"), Tile(32, 4, "gluon_rows", kc=16), Tile(64, 8, "gluon_rows", ahead=1),
               Tile(8, 1, "gluon_rows", maxnreg=128), Tile(8, 1, "gluon_rows", cache=1),
               Tile(64, 4, "gluon_rows", ahead=1, cache=2)]


@pytest.mark.gpu
@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("pool", ["scattered", "padded", "contiguous"])
@pytest.mark.parametrize("tile_", GLUON_TILES)
@pytest.mark.parametrize("pdl", [False, True])
def test_gluon_decode(state_dtype, pool, tile_, pdl):
    """The Gluon decode (GPU only) on GQA heads at K = V = 64: one warp, four warps (16 columns a thread)
    and eight (with the L2 prefetch one SM-count ahead: 67 rows x 4 heads x 1-8 tiles), under a register
    cap, bf16 and fp32 state, padded rows, with and without PDL; with evict-first state stores (cache 1),
    and loads and stores (cache 2)."""
    gate_gqa64(state_dtype, pool, tile_, pdl, "Gluon")


def gate_gqa64(state_dtype, pool, tile_, pdl, label):
    """Gate ``tile_`` on 67 rows x 4 GQA value heads (2 key heads) at K = V = 64, the kernel named ``label``."""
    case = tiny_case(batch=67, hk=2, hv=4, head_dim_k=64, head_dim_v=64, state_dtype=state_dtype, pool=pool)
    b = TritonGDN(tile_override=tile_, pdl=pdl)
    assert tg.tile_reason(case, b.tile(case)) is None
    assert label in b.kernel(case)
    r = gate(case, b)
    assert r.ok, r.message


TMA_TILES = [Tile(16, 1, "gluon_tma", progs_per_sm=1, stages=2), Tile(32, 4, "gluon_tma", progs_per_sm=1, kc=16, stages=8),
             Tile(64, 8, "gluon_tma", progs_per_sm=2, stages=3, ahead=1),
             Tile(8, 1, "gluon_tma", progs_per_sm=4, stages=1, ahead=1)]


@pytest.mark.gpu
@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("pool", ["scattered", "padded", "contiguous"])
@pytest.mark.parametrize("tile_", TMA_TILES)
@pytest.mark.parametrize("pdl", [False, True])
def test_tma_decode(state_dtype, pool, tile_, pdl):
    """The TMA-staged Gluon decode (sm90+) on GQA heads at K = V = 64 (67 rows x 4 heads, so the programs
    take uneven tile counts and a padded row sits between copies): buffers fewer than a program's tiles
    (refilled, phases wrapping), one buffer, and as many buffers as tiles; one to eight warps, bf16 and
    fp32 state, with and without PDL."""
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("the TMA decode needs SM90 or newer")
    gate_gqa64(state_dtype, pool, tile_, pdl, "TMA")


def use_table(monkeypatch, entries, source="tuned"):
    monkeypatch.setattr(tg, "tuned_table", lambda: TileTable("test GPU", source, entries))


def test_gluon_decode_reasons(monkeypatch):
    """Where the Gluon decode cannot run, a reason; a table entry it cannot run is passed over."""
    qwen = dict(hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype="bfloat16", batch=16)
    rows = Tile(64, 4, "gluon_rows")
    monkeypatch.setattr(tg, "triton_interpreted", lambda: False)
    assert tg.tile_reason(tiny_case(**qwen), rows) is None
    assert "K-last" in tg.tile_reason(tiny_case(**qwen, layout="v_last"), rows)
    assert "multiple" in tg.tile_reason(tiny_case(**qwen), Tile(4, 4, "gluon_rows"))  # 2 rows per warp pass
    assert "multiple of 8" in tg.tile_reason(tiny_case(**qwen), Tile(64, 4, "gluon_rows", kc=4))  # half a vector
    assert "decode only" in tg.tile_reason(tiny_case(**qwen, phase="mtp", tokens=2), rows)
    assert tg.rows_layout(tiny_case(**qwen)) == (8, 16)
    assert tg.rows_layout(tiny_case(**qwen), Tile(64, 4, "gluon_rows", kc=16)) == (8, 8)  # 16 columns a thread
    assert tg.rows_layout(tiny_case(**{**qwen, "state_dtype": "float32"})) == (4, 32)
    use_table(monkeypatch, [entry(mtp=False, pairs_min=1, bv=16, warps=1),
                            entry(mtp=False, pairs_min=512, variant="gluon_rows", bv=64, warps=4)])
    assert tile(tiny_case(**qwen)).variant is Variant.GLUON_ROWS
    monkeypatch.setattr(tg, "triton_interpreted", lambda: True)
    assert "interpreter" in tg.tile_reason(tiny_case(**qwen), rows)
    assert tile(tiny_case(**qwen)) == Tile(16, 1)  # the next entry down, which the interpreter runs


@run_here
@pytest.mark.parametrize("tokens", [2, 3, 8])
@pytest.mark.parametrize("write_back,intermediate", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("state_dtype,layout", [("float32", "k_last"), ("bfloat16", "k_last"), ("bfloat16", "v_last")])
@pytest.mark.parametrize("tile_", [Tile(16, 1, "chunk"), Tile(16, 1, "chunk", blocks=2, stages=2),
                                   Tile(16, 1, "chunk", blocks=2, stages=2, prefetch=1)])
def test_chunk_mtp_kernel(tokens, write_back, intermediate, state_dtype, layout, tile_):
    """The chunk-form MTP kernel (the T steps solved around the initial state, tensor-core dots) on a
    padded pool with GQA, T = 2, 3 (padded to the 16-wide token operand) and 8 (the largest); one block
    of rows per program, and a program looping over both blocks of a head, pipelined over 2 stages,
    with and without the L2 prefetch of its rows (PTX: on the GPU only; the interpreter skips it)."""
    case = tiny_case(phase="mtp", tokens=tokens, batch=3, pool="padded", write_back=write_back,
                     intermediate=intermediate, state_dtype=state_dtype, layout=layout, hk=1, hv=2, head_dim_k=32,
                     head_dim_v=32)
    r = gate(case, TritonGDN(tile_override=tile_))
    assert r.ok, r.message


@run_here
@pytest.mark.parametrize("state_dtype,layout", [("bfloat16", "k_last"), ("float32", "v_last"), ("bfloat16", "v_last")])
@pytest.mark.parametrize("phase,tokens,tile_", [("decode", 1, Tile(8, 1, ahead=1)), ("mtp", 3, Tile(8, 1, ahead=1)),
                                                ("mtp", 3, Tile(16, 1, "chunk", blocks=2, stages=2, prefetch=1,
                                                                ahead=1))])
def test_l2_prefetch_ahead(state_dtype, layout, phase, tokens, tile_):
    """``ahead``: the per-tile kernel asks L2 for the tile of the program one SM-count further on (67 rows
    x 2 heads x 4 tiles = 536 programs on the H100's 132 SMs, so most programs prefetch one, padded rows'
    slots skipped), the chunk-form kernel for the next row block in each step; PTX, so on the GPU only
    (the interpreter runs the kernels without it). The results must not change."""
    case = tiny_case(phase=phase, tokens=tokens, batch=67 if HAS_CUDA else 3, pool="padded", write_back=True,
                     intermediate=tokens > 1, state_dtype=state_dtype, layout=layout, hk=1, hv=2, head_dim_k=32,
                     head_dim_v=32)
    r = gate(case, TritonGDN(tile_override=tile_))
    assert r.ok, r.message


def test_l2_prefetch_ahead_tiles():
    """Which kernels take ``ahead``, and the kernel names that record it."""
    dec = tiny_case(hk=16, hv=32, head_dim_k=128, head_dim_v=128)
    mtp = tiny_case(phase="mtp", tokens=4, hk=16, hv=32, head_dim_k=128, head_dim_v=128)
    assert TritonGDN(tile_override=Tile(16, 1, ahead=16)).kernel(dec) == (
        "gdn_recurrent_kernel [decode, k-last, BV=16, warps=1, L2 prefetch 16 programs/SM ahead]")
    chunk = Tile(16, 1, "chunk", blocks=4, stages=2, prefetch=2, ahead=1)
    assert TritonGDN(tile_override=chunk).kernel(mtp) == (
        "gdn_mtp_chunk_kernel [mtp T=4, k-last, BV=16, warps=1, 4 blocks/program, 2 stages, L2 prefetch of 2 "
        "blocks, L2 prefetch 1 block ahead]")
    assert "16 bytes" in tg.tile_reason(tiny_case(layout="v_last", state_dtype="bfloat16"), Tile(4, 1, ahead=1))
    assert tg.tile_reason(tiny_case(layout="v_last", state_dtype="float32"), Tile(4, 1, ahead=1)) is None
    # the plan: the per-tile distance in programs for the GPU's SMs, nothing of it under the interpreter
    assert tp.plan(dec, Tile(16, 1, ahead=2), sms=132).constexprs["AHEAD"] == 264
    assert tp.plan(mtp, chunk, sms=132).constexprs["AHEAD"] == 1
    assert tp.plan(mtp, chunk, sms=132, interpreted=True).constexprs["AHEAD"] == 0


@run_here
@pytest.mark.parametrize("layout", ["k_last", "v_last"])
@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("phase,tokens", [("decode", 1), ("mtp", 3)])
def test_k_chunked_tiles(layout, state_dtype, phase, tokens):
    """The [BV, K / KC, KC] register tile (reductions over K as in-thread chunk sums plus a short
    shuffle tree): K = 32 in chunks of 8, GQA, padded pool, MTP with both the intermediate states and
    write-back."""
    case = tiny_case(phase=phase, tokens=tokens, batch=3, pool="padded", layout=layout, state_dtype=state_dtype,
                     hk=1, hv=2, head_dim_k=32, head_dim_v=16, intermediate=tokens > 1)
    b = TritonGDN(tile_override=Tile(8, 1, kc=8))
    assert "KC=8" in b.kernel(case)
    r = gate(case, b)
    assert r.ok, r.message


@run_here
@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("phase,tokens", [("decode", 1), ("mtp", 3)])
@pytest.mark.parametrize("bv,kc,flat", [(16, 16, True), (8, 8, False)])
def test_flat_and_two_step_row_sums(state_dtype, phase, tokens, bv, kc, flat):
    """rowdot's two reductions over K: one flat [BV, K] sum where the K chunks are not split across lanes
    (BV=16, KC=16: 16 rows x 1-4 vectors fill the warp), the NC then KC sums where they are (BV=8, KC=8
    at K=32)."""
    case = tiny_case(phase=phase, tokens=tokens, batch=3, pool="padded", state_dtype=state_dtype, hk=1, hv=2,
                     head_dim_k=32, head_dim_v=16, intermediate=tokens > 1)
    t = Tile(bv, 1, kc=kc)
    assert tp.flat_rowdot(case, t) is flat
    r = gate(case, TritonGDN(tile_override=t))
    assert r.ok, r.message


def test_flat_rowdot_rule():
    c = tiny_case(batch=64, hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype="bfloat16")
    assert not tp.flat_rowdot(c, Tile(4, 1, kc=32))     # 4 rows x 4 vectors: lanes on the chunks too
    assert tp.flat_rowdot(c, Tile(4, 1, kc=64))         # 4 x 8 fill the warp
    assert tp.flat_rowdot(c, Tile(4, 1))                # KC = K: nothing to split
    c32 = tiny_case(batch=64, hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype="float32")
    assert tp.flat_rowdot(c32, Tile(4, 1, kc=32))       # fp32: 4 x 8 vectors


@run_here
def test_k_chunked_tree():
    case = tiny_case(phase="mtp", tokens=4, batch=3, hk=2, hv=4, head_dim_k=32, head_dim_v=16, intermediate=True,
                     tree=True, write_back=False)
    r = gate(case, TritonGDN(tile_override=Tile(16, 1, kc=16)))
    assert r.ok, r.message


def test_k_chunk_must_divide_k():
    case = tiny_case(batch=2, hk=1, hv=2, head_dim_k=32, head_dim_v=16)
    assert TritonGDN(tile_override=Tile(8, 1, kc=64)).tile(case).k_chunk(case) == 32  # capped at K
    assert "KC" not in TritonGDN(tile_override=Tile(8, 1, kc=64)).kernel(case)
    x = make_inputs(case, "cpu")
    with pytest.raises(ValueError, match="KC=12"):
        TritonGDN(tile_override=Tile(8, 1, kc=12)).build(case, x)


def test_chunk_kernel_limits():
    mtp = dict(phase="mtp", tokens=4, hk=16, hv=32, head_dim_k=128, head_dim_v=128)
    assert tg.chunk_reason(tiny_case(**mtp), 16) is None
    assert "BV >= 16" in tg.chunk_reason(tiny_case(**mtp), 8)
    assert "K >= 32" in tg.chunk_reason(tiny_case(**{**mtp, "head_dim_k": 16}), 16)
    assert "T = 2..8" in tg.chunk_reason(tiny_case(**{**mtp, "tokens": 1, "phase": "decode"}), 16)
    assert "tree" in tg.chunk_reason(tiny_case(**mtp, tree=True, intermediate=True, write_back=False), 16)
    assert "bf16 dot operands" in tg.chunk_reason(tiny_case(**mtp, dtype="float16"), 16)
    assert TritonGDN(tile_override=Tile(32, 4, "chunk")).kernel(tiny_case(**mtp)) == (
        "gdn_mtp_chunk_kernel [mtp T=4, k-last, BV=32, warps=4]")
    assert TritonGDN(tile_override=Tile(16, 1, "chunk", blocks=4, stages=2)).kernel(tiny_case(**mtp)) == (
        "gdn_mtp_chunk_kernel [mtp T=4, k-last, BV=16, warps=1, 4 blocks/program, 2 stages]")
    assert "do not divide V=128" in tg.tile_reason(tiny_case(**mtp), Tile(64, 4, "chunk", blocks=4))
    assert tg.tile_reason(tiny_case(**mtp), Tile(16, 1, "chunk", blocks=8, stages=2)) is None
    with pytest.raises(ValueError, match="takes no prefetch"):
        Tile(16, 1, prefetch=1)
    assert TritonGDN(tile_override=Tile(16, 1, "chunk", blocks=8, stages=2, maxnreg=128, prefetch=8)).kernel(
        tiny_case(**mtp)) == ("gdn_mtp_chunk_kernel [mtp T=4, k-last, BV=16, warps=1, 8 blocks/program, 2 stages, "
                              "L2 prefetch of 8 blocks, maxnreg=128]")
    with pytest.raises(ValueError, match="tree"):
        TritonGDN(tile_override=Tile(32, 4, "chunk")).build(
            tiny_case(**mtp, tree=True, intermediate=True, write_back=False), None)


def entry(**kw) -> dict:
    """A tuned-table entry for K-last bf16 128 x 128 heads unless overridden."""
    return {"layout": "k_last", "state_dtype": "bfloat16", "head_dim_k": 128, "head_dim_v": 128, **kw}


def test_tuned_chunk_entry_skipped_where_it_cannot_run(monkeypatch):
    use_table(monkeypatch, [entry(mtp=True, pairs_min=1, bv=16, warps=1),
                            entry(mtp=True, pairs_min=64, variant="chunk", bv=32, warps=4)])
    mtp = dict(phase="mtp", tokens=4, hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype="bfloat16", batch=8)
    assert tile(tiny_case(**mtp)) == Tile(32, 4, "chunk")
    assert tile(tiny_case(**mtp, tree=True, intermediate=True, write_back=False)) == Tile(16, 1)


def test_supports_and_kernel_column(monkeypatch):
    t = Target("cuda", 90, "sm90")
    assert BACKEND.supports(tiny_case(), t) is None
    assert "prefill" in BACKEND.supports(tiny_case(phase="prefill", batch=1, tokens=4, seq_lens="4"), t)
    assert "powers of two" in BACKEND.supports(tiny_case(head_dim_k=96), t)
    assert BACKEND.padding(tiny_case()) == Padding.ZERO
    assert BACKEND.kernel(tiny_case(phase="mtp", tokens=4, tree=True, intermediate=True, write_back=False)).startswith(
        "gdn_recurrent_kernel [mtp T=4 tree, k-last, BV=")
    # the column says where a tile came from unless it is this GPU's own table
    qwen = tiny_case(batch=16, hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype="bfloat16")
    use_table(monkeypatch, [entry(mtp=False, pairs_min=1, bv=16, warps=1)])
    assert BACKEND.kernel(qwen) == "gdn_recurrent_kernel [decode, k-last, BV=16, warps=1]"
    use_table(monkeypatch, [entry(mtp=False, pairs_min=1, bv=16, warps=1)], "other-gpu")
    assert BACKEND.kernel(qwen).endswith(", other-gpu tile]") and tg.tile_source(qwen) == "other-gpu"
    assert BACKEND.kernel(tiny_case()).endswith(", heuristic tile]") and tg.tile_source(tiny_case()) == "heuristic"


def test_tables_are_looked_up_by_gpu(tmp_path):
    """This GPU's own table; else another GPU's, the same SM generation first; else none."""
    from gdnbench.backends.tables import load_table, table_path, write_table

    assert load_table(tmp_path, Target("cuda", 90, "NVIDIA H100 80GB HBM3")) is None
    write_table(tmp_path, "NVIDIA B200", 100, {}, "", [{"pairs_min": 1, "id": "b200"}])
    write_table(tmp_path, "NVIDIA H100 80GB HBM3", 90, {}, "", [{"pairs_min": 1, "id": "h100"}])
    assert table_path(tmp_path, "NVIDIA H100 80GB HBM3").name == "device_name=NVIDIA_H100_80GB_HBM3.json"
    own = load_table(tmp_path, Target("cuda", 90, "NVIDIA H100 80GB HBM3"))
    assert (own.source, own.entries[0]["id"]) == ("tuned", "h100")
    h200 = load_table(tmp_path, Target("cuda", 90, "NVIDIA H200"))
    assert (h200.source, h200.device, h200.entries[0]["id"]) == ("other-gpu", "NVIDIA H100 80GB HBM3", "h100")
    b300 = load_table(tmp_path, Target("cuda", 103, "NVIDIA B300"))
    assert b300.source == "other-gpu" and load_table(tmp_path, Target("cpu")).source == "other-gpu"
    (tmp_path / "device_name=bad.json").write_text('{"version": 1}')  # unreadable: skipped
    assert tg.TABLES.is_dir() and load_table(tg.TABLES, Target("cuda", 90, "NVIDIA H100 80GB HBM3")).source == "tuned"


def test_shipped_table_uses_only_shipped_variants():
    """Every entry of every shipped table is a valid Tile; the variants the H100 table picks."""
    for path in tg.TABLES.glob("*.json"):
        import json

        entries = json.loads(path.read_text())["entries"]
        tiles = [Tile.from_entry(e) for e in entries]
        assert {t.variant for t in tiles} <= set(Variant)
    assert {t.variant for t in tiles} == {Variant.PER_TOKEN, Variant.CHUNK, Variant.GLUON_ROWS}


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
    assert ", PDL" in PDL.kernel(case) and "PDL" not in BACKEND.kernel(case)
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
    assert heuristic_tile(big).bv > heuristic_tile(small).bv
    bv = heuristic_tile(small).bv
    assert 32 * (128 // bv) >= 256  # B = 1 still splits V into many programs
    v_last = tiny_case(layout="v_last", batch=1, hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype="float32")
    assert heuristic_tile(v_last).bv * 4 >= 64  # V-last rows of >= 64 bytes of state


@pytest.mark.parametrize("layout,state_dtype", [("v_last", "float32"), ("v_last", "bfloat16"), ("k_last", "float32")])
def test_heuristic_tile_keeps_programs_small(layout, state_dtype):
    """V-last and K-last fp32 heuristic tiles never take 8 warps (one program per SM by registers);
    V-last ones hold 64 state elements per thread and rows of >= 64 bytes (docs/tuning.md); at 2048+
    row-heads both are the 64-row, 4-warp tile the H100 tuner chose for K-last fp32."""
    for batch, hv in ((1, 8), (1, 32), (4, 32), (16, 32), (32, 16), (32, 32), (512, 32), (512, 64)):
        c = tiny_case(layout=layout, state_dtype=state_dtype, batch=batch, hk=16 if hv >= 32 else 4, hv=hv,
                      head_dim_k=128, head_dim_v=128)
        t = heuristic_tile(c)
        assert tg.tile_reason(c, t) is None and t.warps <= 4, (c.id, t.name)
        if layout == "v_last":
            assert t.bv * 128 == 32 * t.warps * 64 and t.bv * (32 if state_dtype == "float32" else 16) >= 512, t.name
        if batch * hv >= 2048:
            assert (t.bv, t.warps) == (64, 4), (c.id, t.name)
    small = tiny_case(layout="v_last", state_dtype="float32", batch=1, hk=16, hv=32, head_dim_k=128, head_dim_v=128)
    assert (heuristic_tile(small).bv, heuristic_tile(small).warps) == (16, 1)  # the tuner's pick at B = 1


def test_tuned_table_wins_over_heuristic(monkeypatch):
    use_table(monkeypatch, [entry(mtp=False, pairs_min=1, bv=16, warps=2),
                            entry(mtp=False, pairs_min=1024, bv=64, warps=4, ahead=2),
                            entry(state_dtype="float32", mtp=True, pairs_min=1, bv=32, warps=4, kc=32)])
    qwen = dict(hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype="bfloat16")
    assert tile(tiny_case(batch=4, **qwen)) == Tile(16, 2)
    assert tile(tiny_case(batch=64, **qwen)) == Tile(64, 4, ahead=2)
    mtp = dict(qwen, state_dtype="float32", phase="mtp", tokens=4, batch=8)
    assert tile(tiny_case(**mtp)) == Tile(32, 4, kc=32)  # the entry's K chunk carries through
    assert tile(tiny_case(**mtp, tree=True, intermediate=True, write_back=False)) == Tile(32, 4, kc=32)
    assert tile(tiny_case(batch=64, **{**qwen, "state_dtype": "float32"})) == heuristic_tile(
        tiny_case(batch=64, **{**qwen, "state_dtype": "float32"}))


def offline_report(case, tile_: Tile | None = None, pdl: bool = False) -> dict:
    """``offline.aot_report`` of ``case`` for sm_90, in a process without TRITON_INTERPRET (the
    interpreter replaces Triton's standard library, so the compiler cannot run under it)."""
    import dataclasses
    import json
    import os
    import subprocess
    import sys

    code = ("import json, sys; from gdnbench.cases import Case; from gdnbench.backends.triton.offline import "
            "aot_report; from gdnbench.backends.triton.tiles import Tile; t = json.loads(sys.argv[2]); "
            "print(json.dumps(aot_report(Case(**json.loads(sys.argv[1])), tile_=t and Tile(**t), "
            "pdl=json.loads(sys.argv[3]))))")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    t = tile_ and {**dataclasses.asdict(tile_), "variant": tile_.variant.value}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(dataclasses.asdict(case)), json.dumps(t),
                          json.dumps(pdl)], capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("state_dtype,layout,tokens,tile_,pdl", [
    ("bfloat16", "k_last", 1, None, False), ("float32", "v_last", 1, None, False),
    ("bfloat16", "k_last", 4, None, False), ("float32", "k_last", 4, Tile(32, 4, kc=32), False),
    ("bfloat16", "k_last", 4, Tile(32, 4, "chunk"), False),
    # every kernel once with programmatic dependent launch
    ("bfloat16", "k_last", 1, None, True), ("bfloat16", "k_last", 4, None, True),
    ("bfloat16", "k_last", 1, Tile(16, 1, ahead=2), True), ("bfloat16", "k_last", 4, Tile(32, 4, "chunk"), True),
    # the Gluon decode: one and four warps (with the L2 prefetch ahead), fp32 state at eight, PDL
    ("bfloat16", "k_last", 1, Tile(16, 1, "gluon_rows"), True),
    ("bfloat16", "k_last", 1, Tile(64, 4, "gluon_rows", ahead=4), False),
    ("float32", "k_last", 1, Tile(64, 8, "gluon_rows"), False),
    # ... with evict-first state stores, and loads and stores
    ("bfloat16", "k_last", 1, Tile(16, 1, "gluon_rows", cache=1), False),
    ("bfloat16", "k_last", 1, Tile(64, 4, "gluon_rows", ahead=4, cache=2), True),
    # the TMA-staged decode: the state through shared memory, refilled buffers, inputs a tile ahead
    ("bfloat16", "k_last", 1, Tile(16, 1, "gluon_tma", progs_per_sm=16, stages=2), False),
    ("float32", "k_last", 1, Tile(32, 4, "gluon_tma", progs_per_sm=1, stages=4, ahead=1), True)])
def test_compiles_for_sm90_with_vector_state_traffic(state_dtype, layout, tokens, tile_, pdl):
    """Offline sm_90 compile (no GPU needed): the state tile moves in 16-byte vectors and nothing spills
    to local memory -- what decode at the bandwidth roofline needs. With PDL, the wait for the previous
    kernel comes before the first global load (and only then)."""
    case = tiny_case(batch=64, hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype=state_dtype, layout=layout,
                     tokens=tokens, phase="mtp" if tokens > 1 else "decode")
    rep = offline_report(case, tile_, pdl)
    assert rep["pdl_wait"] == ("first" if pdl else "none"), rep
    variant = tile_.variant if tile_ else None
    assert (rep["ld_v4"] >= 4 or variant is Variant.GLUON_TMA) and rep["st_v4"] >= 4, rep  # TMA: state by copies
    assert not rep["ptx_local"], rep
    if "local" in rep:
        assert rep["local"] == 0, rep
        # MTP tiles run at the 128-register cap (register_cap), where ptxas may park a few prefetched
        # values (the next token's q and k) on the stack depending on the Triton release (3.6, the H100
        # host's: none for the bf16 tile, 24 bytes for fp32 BV = 16; 3.9: 96 bytes for bf16); a spilled
        # state tile is kilobytes. Stack traffic inside the token loop is not free, though: fp32 with the
        # buffer and write-back spilled there and moved 11% more DRAM bytes on the H100 (ncu), which the
        # keep test below rules out for the heuristic's tile.
        assert rep["stack"] <= (128 if tokens > 1 else 0), rep
    if variant is Variant.GLUON_ROWS:  # Gluon: warps own rows, nothing crosses warps
        assert rep["shared_bytes"] == 0, rep
    cache = tile_.cache if tile_ else 0  # the state's L2 eviction policy
    assert rep["st_evict_first"] == (rep["st_v4"] if cache else 0), rep  # every state store, or none
    assert (rep["ld_evict_first"] >= 4) == (cache == 2), rep
    if variant is Variant.GLUON_TMA:  # TMA: a buffer per stage, 16-byte state stores
        size = 2 if state_dtype == "bfloat16" else 4
        assert rep["shared_bytes"] >= tile_.stages * tile_.bv * 128 * size, rep


@pytest.mark.slow
def test_mtp_heuristic_keeps_fp32_with_buffer_and_write_back_off_the_stack():
    """fp32 MTP with the buffer and write-back: the one-warp 64-element tile spills under the
    128-register cap (on the H100, 11% more DRAM bytes and up to 1.37x slower:
    ``results/h100-sm90/ncu-mtp``), so the heuristic's tile must compile with no stack at all."""
    case = tiny_case(phase="mtp", batch=64, hk=16, hv=32, head_dim_k=128, head_dim_v=128, tokens=4,
                     intermediate=True, write_back=True)
    t = heuristic_tile(case)
    assert t.bv * case.head_dim_k // (32 * t.warps) == 32
    rep = offline_report(case, t)
    if "local" not in rep:
        pytest.skip("Triton's cuobjdump is not installed: no register report")
    assert rep["local"] == 0 and rep["stack"] == 0, rep


def test_tile_table_reader_and_picker(tmp_path):
    """backends/tables.py: a missing or malformed table reads as None (the heuristic applies); the
    picker takes the accepted entry with the largest pairs_min the case reaches."""
    from gdnbench.backends.tables import pick_tuned, read_table

    assert read_table(tmp_path / "absent.json") is None
    (tmp_path / "bad.json").write_text('{"version": 1}')
    assert read_table(tmp_path / "bad.json") is None
    for text in ('{"version": 2, "entries": []}', '{"entries": []}', '[1, 2]'):  # another format version
        (tmp_path / "other.json").write_text(text)
        assert read_table(tmp_path / "other.json") is None, text
    (tmp_path / "ok.json").write_text('{"version": 1, "entries": []}')
    assert read_table(tmp_path / "ok.json") == {"version": 1, "entries": []}
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
    """The Gluon decodes' build without a GPU: a stand-in kernel records the launch. One program per tile
    for the rows kernel, SMs x programs per SM for the TMA kernel; the TMA kernel gets a descriptor of the
    pool as [slots * HV * V, K] rows in [BV, K] blocks plus the pool itself (the stores), and the plan's
    compile-time arguments."""
    launches = []

    class Stand:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **kw: launches.append((self.name, grid, args, kw))

    monkeypatch.setattr(tg, "triton_interpreted", lambda: False)
    monkeypatch.setattr(tb, "triton_interpreted", lambda: False)
    monkeypatch.setattr(tb, "jit_kernel", lambda v: Stand(v))
    monkeypatch.setattr(tb, "sm_count", lambda device: 132)
    case = tiny_case(batch=5, hk=2, hv=4, head_dim_k=64, head_dim_v=64, state_dtype="bfloat16")
    x = make_inputs(case, "cpu")
    for tile_, pdl in ((Tile(16, 1, "gluon_rows", ahead=1, cache=2), False),
                       (Tile(16, 2, "gluon_rows", kc=16, maxnreg=96), True),
                       (Tile(16, 1, "gluon_tma", progs_per_sm=16, stages=2, ahead=1), True)):
        b = TritonGDN(tile_override=tile_, pdl=pdl)
        out = b.build(case, x)()
        name, grid, args, kw = launches.pop()
        n_tiles = case.batch * case.hv * case.head_dim_v // tile_.bv
        tma = tile_.variant is Variant.GLUON_TMA
        assert name is tile_.variant and args == ()
        assert grid == (min(n_tiles, tile_.progs_per_sm * 132) if tma else n_tiles,)
        names = ("q", "k", "v", "a", "b", "A_log", "dt_bias", "slots", *(["desc"] if tma else []), "pool", "out",
                 "scale", "n_tiles")
        want = (x.q, x.k, x.v, x.a, x.b, x.A_log, x.dt_bias, x.slots, *([None] if tma else []), x.pool, out, x.scale,
                n_tiles)
        got = {n: kw.pop(n) for n in names}
        assert all(_same(got[n], w) for n, w in zip(names, want)), got
        if tma:
            desc = got["desc"]
            assert desc.base.data_ptr() == x.pool.data_ptr() and list(desc.shape) == [x.pool.shape[0] * 4 * 64, 64]
            assert list(desc.block_shape) == [16, 64]
        p = tp.plan(case, tile_, pdl=pdl, sms=132)
        assert p.kernel == ("gdn_decode_tma_kernel" if tma else "gdn_decode_rows_kernel")
        assert kw == {**p.constexprs, "num_warps": tile_.warps, **({"launch_pdl": True} if pdl else {}),
                      **({"maxnreg": tile_.maxnreg} if tile_.maxnreg else {})}
