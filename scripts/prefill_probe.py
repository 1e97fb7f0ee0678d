"""Why gdnbench's FlashInfer prefill figure differs from the reference baseline: the same
``chunk_gated_delta_rule`` call timed several ways (H100 host; prints a table).

  ours        the backend's launch: gates computed by torch inside the call, pool through state_indices,
              use_qk_l2norm_in_kernel=True (FlashInfer runs its separate normalize_qk kernel first)
  no-gates    gates precomputed outside the timed call, pool through state_indices
  contiguous  gates precomputed, a contiguous [N, HV, V, K] initial state, no state_indices
  do_bench    'contiguous' timed with triton.testing.do_bench (the baseline's method), median
  kernel      the flashinfer_kernel backend: q/k pre-normalised, gates precomputed, contiguous state,
              use_qk_l2norm_in_kernel=False (FlashInfer's default), events timer
  kernel db   'kernel' timed with do_bench
  norm db     FlashInfer's normalize_qk(q, k) alone, do_bench

A second table times fla's chunk_gated_delta_rule on a contiguous state with do_bench two ways: as
the fla_kernel backend calls it (chunk indices and cu_seqlens_cpu precomputed) and plainly (fla
derives them from the device cu_seqlens on every call, a host sync).
"""

from __future__ import annotations

import dataclasses

import torch
import triton

from gdnbench.backends import get_backend
from gdnbench.cases import Case
from gdnbench.config import Timing
from gdnbench.inputs import make_inputs
from gdnbench.reference import gates
from gdnbench.timer import time_events

CFG = Timing(min_samples=10, min_time_s=0.05, max_time_s=0.5)


def row(lens: tuple[int, ...]) -> str:
    from flashinfer.gdn_prefill import chunk_gated_delta_rule

    case = Case(phase="prefill", batch=len(lens), hk=16, hv=32, head_dim_k=128, head_dim_v=128, layout="k_last",
                state_dtype="float32", dtype="bfloat16", tokens=sum(lens), seq_lens="+".join(map(str, lens)),
                pool="scattered", write_back=True, intermediate=False, tree=False, seed=0)
    x = make_inputs(case, "cuda")
    ours = time_events(get_backend("flashinfer").build(case, x), CFG)
    q, k, v, a, b = x.q[0], x.k[0], x.v[0], x.a[0], x.b[0]
    g, beta = gates(a, b, x.A_log, x.dt_bias, torch.float32)
    alpha = torch.exp(g)
    out = torch.empty(case.tokens, case.hv, case.head_dim_v, dtype=torch.bfloat16, device="cuda")
    kw = {"scale": x.scale, "output_final_state": True, "cu_seqlens": x.cu_seqlens, "use_qk_l2norm_in_kernel": True,
          "output": out, "backend": "flashinfer", "max_seqlen": max(lens)}
    h0 = x.pool.index_select(0, x.slots.long()).contiguous()
    ht = torch.empty_like(h0)

    def pooled():
        chunk_gated_delta_rule(q, k, v, g=alpha, beta=beta, initial_state=x.pool, output_state=x.pool,
                               state_indices=x.slots, **kw)

    def contiguous():
        chunk_gated_delta_rule(q, k, v, g=alpha, beta=beta, initial_state=h0, output_state=ht, **kw)

    t_nog = time_events(pooled, CFG)
    t_con = time_events(contiguous, CFG)
    db = bench(contiguous)
    kcase = dataclasses.replace(case, pool="contiguous")
    kx = make_inputs(kcase, "cuda")
    kernel = get_backend("flashinfer_kernel").build(kcase, kx)
    t_ker = time_events(kernel, CFG)
    from flashinfer.gdn_kernels.qk_l2norm import normalize_qk
    norm = bench(lambda: normalize_qk(q, k))
    covered = "/".join(str(t.extra["host_covered"]) for t in (ours, t_nog, t_con, t_ker))
    return (f"| {len(lens)} x {lens[0]} | {ours.stats.median:.1f} | {t_nog.stats.median:.1f} | "
            f"{t_con.stats.median:.1f} | {db:.1f} | {t_ker.stats.median:.1f} | {bench(kernel):.1f} | "
            f"{norm:.1f} | {covered} |")


def bench(fn) -> float:
    """triton.testing.do_bench median in µs (CUDA events, L2 flush between calls)."""
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median") * 1e3


def fla_row(lens: tuple[int, ...]) -> str:
    from gdnbench.backends.fla import _fla_ops

    _, chunk = _fla_ops()
    case = Case(phase="prefill", batch=len(lens), hk=16, hv=32, head_dim_k=128, head_dim_v=128, layout="k_last",
                state_dtype="float32", dtype="bfloat16", tokens=sum(lens), seq_lens="+".join(map(str, lens)),
                pool="contiguous", write_back=True, intermediate=False, tree=False, seed=0)
    x = make_inputs(case, "cuda")
    ours = bench(get_backend("fla_kernel").build(case, x))
    h0 = x.pool[x.slot_list[0]: x.slot_list[0] + case.batch]
    cu = x.cu_seqlens.long()

    def plain():
        chunk(x.q, x.k, x.v, x.a, x.b, initial_state=h0, cu_seqlens=cu, use_gate_in_kernel=True, A_log=x.A_log,
              dt_bias=x.dt_bias, scale=x.scale, output_final_state=True, use_qk_l2norm_in_kernel=True,
              use_beta_sigmoid_in_kernel=True, state_v_first=True)
    return f"| {len(lens)} x {lens[0]} | {ours:.1f} | {bench(plain):.1f} |"


SHAPES = ((8192,), (2048,) * 4, (512,) * 16, (128,) * 64)


def main() -> None:
    print("| shape | ours µs | no-gates µs | contiguous µs | do_bench µs | kernel µs | kernel db µs | norm db µs "
          "| host covered |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for lens in SHAPES:
        print(row(lens), flush=True)
    print("\n| shape | fla_kernel do_bench µs | fla plain do_bench µs |")
    print("|---|---:|---:|")
    for lens in SHAPES:
        print(fla_row(lens), flush=True)


if __name__ == "__main__":
    main()
