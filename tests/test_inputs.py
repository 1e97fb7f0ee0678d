"""inputs.py: seeded, never-zero inputs; pool layout with guard slots and hidden canaries."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_case

from gdnbench.inputs import make_inputs, state_shape


def test_seeded_and_distinct_sets():
    c = tiny_case()
    a, b, other = make_inputs(c), make_inputs(c), make_inputs(c, set_index=1)
    for name, t in a.tensors().items():
        assert torch.equal(t, b.tensors()[name]), name
    assert not torch.equal(a.q, other.q) and not torch.equal(a.pool_storage, other.pool_storage)


def test_never_zero():
    x = make_inputs(tiny_case(phase="mtp", tokens=3, intermediate=True))
    for name in ("q", "k", "v", "a", "b", "A_log", "dt_bias", "pool_storage", "inter_storage"):
        t = getattr(x, name)
        assert (t != 0).float().mean() > 0.99, name


def test_contiguous_pool_layout():
    c = tiny_case(batch=4, pool="contiguous")
    x = make_inputs(c)
    assert x.slot_list == (2, 3, 4, 5)
    assert x.pool.shape == (4 + 3, *state_shape(c)) and x.pool_storage.shape[0] == 4 + 5
    assert x.pool[2:6].is_contiguous()


def test_scattered_pool_has_guards_between_used_slots():
    c = tiny_case(batch=8, pool="scattered")
    x = make_inputs(c)
    used = sorted(x.slot_list)
    assert used == list(range(2, 2 * 8 + 1, 2))  # even slots: odd neighbours are guards
    assert list(x.slot_list) != used  # rows map to slots in a random order
    assert x.pool.shape[0] == 2 * 8 + 2


def test_padded_rows_trailing():
    x = make_inputs(tiny_case(batch=16, pool="padded"))
    assert x.slot_list[-2:] == (-1, -1) and all(s > 0 for s in x.slot_list[:-2])
    assert x.slots.dtype == torch.int32 and x.valid_rows == list(range(14))


def test_layout_shapes():
    c = tiny_case(layout="k_last")
    assert make_inputs(c).pool.shape[1:] == (4, 32, 16)  # [hv, V, K]
    assert make_inputs(tiny_case(layout="v_last")).pool.shape[1:] == (4, 16, 32)  # [hv, K, V]


def test_prefill_inputs():
    c = tiny_case(phase="prefill", batch=2, tokens=7, seq_lens="5+2")
    x = make_inputs(c)
    assert x.q.shape == (1, 7, 2, 16) and x.cu_seqlens.tolist() == [0, 5, 7]


def test_tree_parents():
    x = make_inputs(tiny_case(phase="mtp", tokens=5, intermediate=True, tree=True, write_back=False))
    p = x.parents
    assert (p[:, 0] == -1).all()
    for t in range(1, 5):
        assert ((p[:, t] >= 0) & (p[:, t] < t)).all()


def test_clone_is_deep():
    x = make_inputs(tiny_case())
    y = x.clone()
    y.pool.add_(1)
    assert not torch.equal(x.pool, y.pool)


def test_contiguous_state_is_a_view_of_the_rows_slots():
    x = make_inputs(tiny_case(batch=3, pool="contiguous"))
    view = x.contiguous_state()
    assert view.shape[0] == 3 and view.data_ptr() == x.pool[x.slot_list[0]].data_ptr()
    view.add_(1.0)  # writes land in the pool
    assert torch.equal(x.pool[x.slot_list[1]], view[1])
    with pytest.raises(ValueError, match="no contiguous"):
        make_inputs(tiny_case(batch=3, pool="scattered")).contiguous_state()
