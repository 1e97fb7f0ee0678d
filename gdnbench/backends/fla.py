"""``fla`` and ``fla_kernel``: fla-core 0.6.0's Triton GDN kernels.

fla has no pool API: it takes an initial state ``[N, hv, K, V]`` (``[N, hv, V, K]`` with
``state_v_first`` = K-last) and returns a new fp32 final state. Two named variants:

* ``fla_kernel``: the kernel alone on a contiguous state (contiguous pools only; the final state is
  returned, not written back) -- what the library itself costs;
* ``fla``: the pooled use a serving engine needs -- gather the slots from the pool, run the kernel,
  cast the final state to the pool's dtype and scatter it back (padded rows: output zero, pool
  untouched).

Decode and MTP use ``fused_recurrent_gated_delta_rule`` with gating, beta sigmoid and q/k L2 norm in
the kernel (it runs under TRITON_INTERPRET=1 on a CPU, so CI checks these adapters); prefill uses
``chunk_gated_delta_rule`` with the same fusions, varlen, and fla's backend dispatch disabled
(``FLA_DISABLE_BACKEND_DISPATCH=1`` before fla is imported) so pure Triton is timed. fla returns
only the final state: no per-step intermediate states and no parent-token tree.
"""

from __future__ import annotations

import os

import torch

from gdnbench.backends.base import Backend, Output, Padding, Target, current_target, triton_availability
from gdnbench.cases import Case
from gdnbench.inputs import Inputs


def _fla_ops():
    """Import fla's GDN ops with backend dispatch disabled (fla reads the variable at import)."""
    os.environ["FLA_DISABLE_BACKEND_DISPATCH"] = "1"
    import fla.backends
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule

    if not getattr(fla.backends, "_DISPATCH_DISABLED", True):
        raise RuntimeError("fla was imported before gdnbench could disable its backend dispatch "
                           "(set FLA_DISABLE_BACKEND_DISPATCH=1 in the environment)")
    return fused_recurrent_gated_delta_rule, chunk_gated_delta_rule


class Fla(Backend):
    dist = "fla-core"
    triton = True

    def __init__(self, pooled: bool) -> None:
        self.pooled = pooled
        self.name = "fla" if pooled else "fla_kernel"
        self.summary = ("fla-core Triton kernels used on a pool (gather, kernel, scatter back)" if pooled else
                        "fla-core Triton kernel alone on a contiguous state (final state returned)")

    def availability(self, target: Target | None = None) -> str | None:
        return triton_availability(target, "fla", "fla-core")

    def supports(self, case: Case, target: Target | None = None) -> str | None:
        target = target or current_target()
        reason = self.availability(target)
        if reason:
            return reason
        if case.phase == "prefill" and target.device != "cuda":
            return "fla's chunk kernels do not run under the Triton interpreter (autotuning needs a GPU)"
        if max(case.head_dim_k, case.head_dim_v) > 256:
            return "fla keeps a whole K (and V) row in one Triton block: head dims up to 256"
        if case.phase == "mtp" and case.intermediate:
            return "fla-core 0.6.0 returns only the final state (no per-step intermediate states)"
        if case.tree:
            return "fla-core 0.6.0 has no parent-token tree"
        if not self.pooled and case.pool != "contiguous":
            return "the kernel alone runs on a contiguous [B, ...] state (no pool API); see variant 'fla'"
        if case.phase == "prefill" and case.padded:
            return "varlen prefill with padded sequences would need token compaction (fla has no slot indices)"
        return None

    def kernel(self, case: Case) -> str:
        op = "chunk_gated_delta_rule" if case.phase == "prefill" else "fused_recurrent_gated_delta_rule"
        how = "gather + kernel + cast/scatter" if self.pooled else "kernel only"
        return f"{op} [{how}, {'state_v_first' if case.layout == 'k_last' else 'V-last'}]"

    def padding(self, case: Case) -> Padding:
        return Padding.ZERO

    def expected_kernels(self, case: Case) -> tuple[str, ...]:
        if case.phase == "prefill":
            return ("chunk_gated_delta_rule_fwd_kernel_h",)  # the chunked state recurrence
        return ("fused_recurrent_gated_delta_rule_fwd_kernel",)

    def build(self, case: Case, inputs: Inputs):
        recurrent, chunk = _fla_ops()
        x = inputs
        k_last = case.layout == "k_last"
        dev = x.device
        valid = x.valid_rows
        rows = torch.tensor(valid, dtype=torch.long, device=dev)
        slots = x.slots.long()[rows]
        all_valid = len(valid) == case.batch
        kw = dict(scale=x.scale, output_final_state=True, use_qk_l2norm_in_kernel=True, use_beta_sigmoid_in_kernel=True,
                  state_v_first=k_last)
        contiguous_state = None
        if not self.pooled:
            contiguous_state = x.contiguous_state()

        if case.phase == "prefill":
            from fla.ops.utils.index import prepare_chunk_indices

            cu = x.cu_seqlens.long()
            cu_cpu = cu.cpu()
            chunk_indices = prepare_chunk_indices(cu, 64, cu_seqlens_cpu=cu_cpu)

            def run_prefill(h0: torch.Tensor):
                return chunk(x.q, x.k, x.v, x.a, x.b, initial_state=h0, cu_seqlens=cu, cu_seqlens_cpu=cu_cpu,
                             chunk_indices=chunk_indices, use_gate_in_kernel=True, A_log=x.A_log,
                             dt_bias=x.dt_bias, **kw)
            if not self.pooled:
                return lambda: Output(*run_prefill(contiguous_state))
            out_buf = torch.zeros(case.tokens, case.hv, case.head_dim_v, dtype=x.v.dtype, device=dev)

            def launch_pooled_prefill():
                o, ht = run_prefill(x.pool.index_select(0, slots))
                out_buf.copy_(o[0])
                if case.write_back:
                    x.pool.index_copy_(0, slots, ht.to(x.pool.dtype))
                return out_buf
            return launch_pooled_prefill

        def pick(t: torch.Tensor) -> torch.Tensor:
            return t if all_valid else t.index_select(0, rows)

        def run(h0: torch.Tensor):
            return recurrent(pick(x.q), pick(x.k), pick(x.v), g=pick(x.a), beta=pick(x.b), initial_state=h0,
                             use_gate_in_kernel=True, A_log=x.A_log, dt_bias=x.dt_bias, **kw)

        if not self.pooled:
            return lambda: Output(*run(contiguous_state))
        out = torch.zeros(case.batch, case.tokens, case.hv, case.head_dim_v, dtype=x.v.dtype, device=dev)

        def launch_pooled():
            o, ht = run(x.pool.index_select(0, slots))
            if all_valid:
                out.copy_(o)
            else:
                out.index_copy_(0, rows, o)
            if case.write_back:
                x.pool.index_copy_(0, slots, ht.to(x.pool.dtype))
            return out
        return launch_pooled


POOLED = Fla(pooled=True)
KERNEL_ONLY = Fla(pooled=False)
