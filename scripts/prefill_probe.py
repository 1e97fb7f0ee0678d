"""Why gdnbench's FlashInfer prefill figure differs from the reference baseline: the same
``chunk_gated_delta_rule`` call timed four ways (H100 host; prints a table).

  ours        the backend's launch: gates computed by torch inside the call, pool through state_indices
  no-gates    gates precomputed outside the timed call, pool through state_indices
  contiguous  gates precomputed, a contiguous [N, HV, V, K] initial state, no state_indices
  do_bench    'contiguous' timed with triton.testing.do_bench (the baseline's method), median
"""

from __future__ import annotations

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
    db = triton.testing.do_bench(contiguous, warmup=25, rep=200, return_mode="median") * 1e3
    covered = "/".join(str(t.extra["host_covered"]) for t in (ours, t_nog, t_con))
    return (f"| {len(lens)} x {lens[0]} | {ours.stats.median:.1f} | {t_nog.stats.median:.1f} | "
            f"{t_con.stats.median:.1f} | {db:.1f} | {covered} |")


def main() -> None:
    print("| shape | ours µs | no-gates µs | contiguous µs | do_bench µs | host covered |")
    print("|---|---:|---:|---:|---:|---|")
    for lens in ((8192,), (2048,) * 4, (512,) * 16, (128,) * 64):
        print(row(lens), flush=True)


if __name__ == "__main__":
    main()
