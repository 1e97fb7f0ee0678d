"""cases.py: stable ids, expansion (product, zip, where, dropped combinations), declared work."""

from __future__ import annotations

import dataclasses

from conftest import tiny_case

from gdnbench.cases import KEY_FIELDS, Case, expand, format_seq_lens, parse_seq_lens
from gdnbench.config import parse_sweep


def test_id_is_stable_and_readable():
    c = tiny_case()
    # Golden value: changing it breaks the join of old results, NVTX names and trace files.
    assert c.id == "decode-b3-h2x4-d16x32-klast-f32-bf16-scattered-s0-" + c.id.rsplit("-", 1)[1]
    assert c.id == tiny_case().id
    assert c.id == Case(**{**dataclasses.asdict(c), "model": "some/label"}).id  # label is not a parameter
    assert all(ch.isalnum() or ch in "-_." for ch in c.id)


def test_id_golden():
    assert tiny_case().id == "decode-b3-h2x4-d16x32-klast-f32-bf16-scattered-s0-135b3be8"


def test_every_key_field_changes_the_id():
    base = tiny_case(phase="mtp", tokens=2)
    changes = dict(phase="decode", batch=4, hk=1, hv=8, head_dim_k=32, head_dim_v=16, layout="v_last",
                   state_dtype="bfloat16", dtype="float16", tokens=3, seq_lens="4", pool="padded",
                   write_back=False, intermediate=True, tree=True, seed=1)
    assert set(changes) == set(KEY_FIELDS)
    ids = {dataclasses.replace(base, **{k: v}).id for k, v in changes.items()}
    assert len(ids) == len(changes) and base.id not in ids


def test_seq_lens_roundtrip():
    for lens in ([8192], [2048] * 4, [6144, 2048], [1, 1, 5, 1], [128] * 64):
        assert parse_seq_lens(format_seq_lens(lens)) == tuple(lens)
    assert format_seq_lens([2048] * 3 + [512]) == "2048*3+512"


def sweep(**kw):
    data = {"phase": "decode", "backends": ["torch"], "axes": {"heads": [[2, 4]], "head_dim_k": [16]}}
    data.update(kw)
    return parse_sweep(data)


def test_product_order_and_count():
    ex = expand(sweep(axes={"batch": [1, 2, 4], "heads": [[2, 4]], "state_dtype": ["float32", "bfloat16"]}))
    assert [(c.batch, c.state_dtype) for c in ex.cases] == [
        (1, "float32"), (1, "bfloat16"), (2, "float32"), (2, "bfloat16"), (4, "float32"), (4, "bfloat16")]


def test_zip_and_where():
    ex = expand(sweep(axes={"batch": [1, 2, 4], "seed": [7, 8, 9], "pool": ["scattered", "padded"]},
                      zip=[["batch", "seed"]], where=["pool == 'scattered' or batch >= 4"]))
    assert [(c.batch, c.seed, c.pool) for c in ex.cases] == [
        (1, 7, "scattered"), (2, 8, "scattered"), (4, 9, "scattered"), (4, 9, "padded")]
    assert ex.filtered == 1 and ex.dropped["pool 'padded' needs batch >= 2 (at least one row stays valid)"] == 1


def test_mtp_tree_combinations_dropped():
    s = parse_sweep({"phase": "mtp", "backends": ["torch"],
                     "axes": {"tokens": [2], "tree": [True], "intermediate": [False, True], "write_back": [False, True]}})
    ex = expand(s)
    assert [(c.tree, c.intermediate, c.write_back) for c in ex.cases] == [(True, True, False)]
    assert sum(ex.dropped.values()) == 3


def test_prefill_case_from_seq_lens():
    s = parse_sweep({"phase": "prefill", "backends": ["torch"], "axes": {"seq_lens": [[100, 28]], "heads": [[2, 4]]}})
    (c,) = expand(s).cases
    assert (c.batch, c.tokens, c.seq_lens, c.lens) == (2, 128, "100+28", (100, 28))


def test_bytes_and_flops_decode():
    c = tiny_case(batch=4, pool="padded", state_dtype="bfloat16")  # 1 padded row -> 3 valid rows
    assert (c.n_padded, c.n_valid) == (1, 3)
    K, V, hk, hv = 16, 32, 2, 4
    state = 3 * hv * K * V * 2 * 2  # read + write, bf16
    io = 3 * (2 * hk * K + 2 * hv * V + 2 * hv) * 2 + 2 * hv * 4 + 4 * 4
    assert c.bytes_moved() == state + io
    assert c.state_bytes() == state
    assert c.flops() == 6 * 3 * hv * K * V


def test_bytes_mtp_intermediate_no_writeback():
    c = tiny_case(phase="mtp", tokens=4, write_back=False, intermediate=True, pool="scattered")
    per = c.state_elems * 4
    assert c.state_bytes() == 3 * per * (1 + 4)


def test_padded_rows_are_trailing_and_bounded():
    assert tiny_case(batch=2, pool="padded").n_padded == 1
    assert tiny_case(batch=64, pool="padded").n_padded == 8
    assert tiny_case(batch=64, pool="scattered").n_padded == 0


def test_where_names_are_the_case_fields_and_derived_ones():
    """config.WHERE_NAMES is derived from the axes; it must name exactly what a case's where_env holds."""
    from gdnbench.config import WHERE_NAMES

    assert set(WHERE_NAMES) == set(tiny_case().where_env())


def test_padded_mid_rows_are_inside_the_batch():
    for b in (3, 8, 33, 512):
        c = tiny_case(batch=b, pool="padded_mid")
        rows = c.padded_rows
        assert rows and 0 not in rows and b - 1 not in rows and len(rows) == c.n_padded == max(1, b // 8)
        assert c.n_valid == b - len(rows)
    assert tiny_case(batch=9, pool="padded").padded_rows == (8,)
    assert tiny_case(phase="prefill", batch=3, tokens=129, seq_lens="1+63+65").cu_seqlens == [0, 1, 64, 129]
