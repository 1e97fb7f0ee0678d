"""reference.py: the math against hand-written loops, and consistency across phases and layouts."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_case

from gdnbench.inputs import make_inputs
from gdnbench.reference import gates, l2norm, reference


def naive_decode_one(x, row: int, head: int) -> tuple[list[float], list[list[float]]]:
    """Scalar Python loops for one row and value head (V-last math on float64 scalars)."""
    c = x.case
    K, V = c.head_dim_k, c.head_dim_v
    h = head // (c.hv // c.hk)
    slot = x.slot_list[row]
    st = x.pool[slot, head].double()
    S = [[float(st[kk, vv]) if c.layout == "v_last" else float(st[vv, kk]) for vv in range(V)] for kk in range(K)]
    q = [float(t) for t in x.q[row, 0, h].double()]
    k = [float(t) for t in x.k[row, 0, h].double()]
    v = [float(t) for t in x.v[row, 0, head].double()]
    nq = math.sqrt(sum(t * t for t in q) + 1e-6)
    nk = math.sqrt(sum(t * t for t in k) + 1e-6)
    q = [t / nq * K ** -0.5 for t in q]
    k = [t / nk for t in k]
    xg = float(x.a[row, 0, head].double()) + float(x.dt_bias[head].double())
    sp = xg if xg > 20 else math.log1p(math.exp(xg))
    alpha = math.exp(-math.exp(float(x.A_log[head].double())) * sp)
    beta = 1 / (1 + math.exp(-float(x.b[row, 0, head].double())))
    S = [[alpha * S[kk][vv] for vv in range(V)] for kk in range(K)]
    u = [beta * (v[vv] - sum(S[kk][vv] * k[kk] for kk in range(K))) for vv in range(V)]
    S = [[S[kk][vv] + k[kk] * u[vv] for vv in range(V)] for kk in range(K)]
    o = [sum(S[kk][vv] * q[kk] for kk in range(K)) for vv in range(V)]
    return o, S


@pytest.mark.parametrize("layout", ["k_last", "v_last"])
def test_decode_matches_scalar_loops(layout):
    x = make_inputs(tiny_case(layout=layout, batch=2, hk=1, hv=2, head_dim_k=4, head_dim_v=3, state_dtype="float32"))
    e = reference(x)
    for row in range(2):
        for head in range(2):
            o, S = naive_decode_one(x, row, head)
            assert torch.allclose(e.out[row, 0, head].double(), torch.tensor(o, dtype=torch.float64), atol=1e-6)
            got = e.state[row, head].double()
            got = got if layout == "v_last" else got.T
            assert torch.allclose(got, torch.tensor(S, dtype=torch.float64), atol=1e-6)


def test_layouts_agree():
    xk = make_inputs(tiny_case(layout="k_last"))
    c_v = tiny_case(layout="v_last")
    xv = dataclasses.replace(xk, case=c_v, pool_storage=xk.pool_storage.transpose(-1, -2).contiguous())
    ek, ev = reference(xk), reference(xv)
    assert torch.allclose(ek.out, ev.out)
    assert torch.allclose(ek.state.transpose(-1, -2), ev.state)


def test_gqa_uses_repeat_interleave():
    x = make_inputs(tiny_case(hk=2, hv=4))
    e = reference(x)
    # Swap q/k of head 1 and head 0: value heads 0,1 (group of k-head 0) change, 2,3 do not ...
    y = dataclasses.replace(x, q=x.q.flip(2), k=x.k.flip(2))
    f = reference(y)
    assert not torch.allclose(e.out[:, :, :2], f.out[:, :, :2])
    assert not torch.allclose(e.out[:, :, 2:], f.out[:, :, 2:])
    # ... and making both k-heads equal to head 0 leaves value heads 0 and 1 unchanged.
    z = dataclasses.replace(x, q=x.q[:, :, :1].expand_as(x.q).contiguous(), k=x.k[:, :, :1].expand_as(x.k).contiguous())
    g = reference(z)
    assert torch.allclose(e.out[:, :, :2], g.out[:, :, :2])


def test_l2norm_eps_inside_sqrt_and_softplus_threshold():
    x = torch.tensor([[3e-4, 4e-4]], dtype=torch.float64)
    assert torch.allclose(l2norm(x), x / math.sqrt(25e-8 + 1e-6))
    assert not torch.allclose(l2norm(x), F.normalize(x, dim=-1, eps=1e-6))
    a = torch.tensor([25.0, -3.0], dtype=torch.float64)
    g, beta = gates(a, torch.zeros(2, dtype=torch.float64), torch.zeros(2), torch.zeros(2), torch.float64)
    assert g[0].item() == -25.0 and abs(g[1].item() + math.log1p(math.exp(-3.0))) < 1e-12
    assert torch.allclose(beta, torch.full((2,), 0.5, dtype=torch.float64))


def test_mtp_is_sequential_decode():
    c = tiny_case(phase="mtp", tokens=3, intermediate=True, pool="padded", batch=4)
    x = make_inputs(c)
    e = reference(x)
    cur = x.clone()
    dc = tiny_case(batch=4, pool="padded")
    for t in range(3):
        step_in = dataclasses.replace(cur, case=dc, q=x.q[:, t:t + 1], k=x.k[:, t:t + 1], v=x.v[:, t:t + 1],
                                      a=x.a[:, t:t + 1], b=x.b[:, t:t + 1], inter_storage=None)
        d = reference(step_in)
        rows = e.valid_rows
        assert torch.allclose(d.out[rows, 0], e.out[rows, t], atol=1e-6)
        assert torch.allclose(d.state[rows], e.inter[rows, t], atol=1e-6)
        cur.pool[cur.slots.long()[rows]] = d.state[rows].to(cur.pool.dtype)
    assert torch.allclose(e.state[e.valid_rows], e.inter[e.valid_rows, -1])
    assert e.out[3].isnan().all()  # padded row: unspecified


def test_tree_with_chain_parents_equals_chain():
    c = tiny_case(phase="mtp", tokens=4, intermediate=True, tree=True, write_back=False)
    x = make_inputs(c)
    chain = dataclasses.replace(x, parents=torch.arange(-1, 3, dtype=torch.int32).expand(3, 4).contiguous())
    plain = dataclasses.replace(x, case=dataclasses.replace(c, tree=False), parents=None)
    assert torch.allclose(reference(chain).inter, reference(plain).inter)
    assert not torch.allclose(reference(x).inter, reference(plain).inter)  # random parents do differ


def test_prefill_is_sequential_decode():
    c = tiny_case(phase="prefill", batch=2, tokens=5, seq_lens="3+2", pool="scattered")
    x = make_inputs(c)
    e = reference(x)
    cu = [0, 3, 5]
    for n in range(2):
        L = cu[n + 1] - cu[n]
        mc = tiny_case(phase="mtp", batch=1, tokens=L, pool="contiguous")
        sl = slice(cu[n], cu[n + 1])
        one = dataclasses.replace(x, case=mc, q=x.q[:, sl], k=x.k[:, sl], v=x.v[:, sl], a=x.a[:, sl], b=x.b[:, sl],
                                  slots=x.slots[n:n + 1], slot_list=(x.slot_list[n],), cu_seqlens=None)
        m = reference(one)
        assert torch.allclose(e.out[sl], m.out[0], atol=1e-6)
        assert torch.allclose(e.state[n], m.state[0], atol=1e-6)


def test_row_chunking_does_not_change_results():
    x = make_inputs(tiny_case(batch=8, phase="mtp", tokens=2, intermediate=True))
    a, b = reference(x), reference(x, row_chunk=3)
    assert torch.equal(a.out, b.out) and torch.equal(a.state, b.state) and torch.equal(a.inter, b.inter)
