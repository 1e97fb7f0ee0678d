"""``flashinfer`` and ``flashinfer_kernel``: FlashInfer 0.7.2's GDN entry points (CuTe DSL on SM90).

Which entry point runs is a function of the case, recorded in the ``kernel`` column:

* decode, K-last, bf16 or fp32 state: ``gated_delta_rule_decode_pretranspose`` on the pool with
  int32 slot indices, ``backend="flashinfer"`` (skips the SM100-only Cake attempt), preallocated
  bf16 output;
* decode, V-last, fp32 state, contiguous: ``gated_delta_rule_decode`` (no pool API);
* mtp, K-last bf16: ``gated_delta_rule_decode_pretranspose`` with T > 1 (bf16 intermediate buffer,
  ``disable_state_update``); fp32: ``gated_delta_rule_mtp``;
* prefill, K-last: ``chunk_gated_delta_rule`` (varlen; state pool through ``state_indices``; output
  state always passed; gates computed by torch first, since this kernel takes alpha = exp(g) and
  post-sigmoid beta, and that gate kernel is part of the timed call; ``use_qk_l2norm_in_kernel=True``,
  which FlashInfer runs as a separate ``normalize_qk`` kernel before the chunk kernel).

``flashinfer_kernel`` (prefill only) times the chunk kernel alone, as FlashInfer's own benchmark and
h100-baseline.md do: q/k L2-normalised (rounded back to the input dtype, as ``normalize_qk`` does) and
gates computed once in ``build``, a contiguous ``[N, hv, V, K]`` state without ``state_indices``. The
difference between the two rows is what the gate math, the separate L2-norm pass and the pool
indirection cost a serving engine. The decode and MTP entry points fuse all of that, so they have no
kernel-only variant.

Support is data (``ENTRY_POINTS``), from FlashInfer's documented constraints (reference notes,
flashinfer-gdn.md), so SM100 rows plan correctly on an SM90 machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gdnbench.backends.base import Backend, Padding, Target, current_target, missing_module
from gdnbench.cases import Case
from gdnbench.inputs import Inputs
from gdnbench.reference import gates, l2norm

ANY_SM90_PLUS = frozenset({90, 100, 103, 110, 120, 121})


@dataclass(frozen=True)
class EntryPoint:
    name: str
    sms: frozenset[int]          # SM generations the entry point is documented for
    padding: Padding
    kernels: tuple[str, ...]     # the GPU kernels (regexes) this entry point dispatches to (gdnbench.kernels)
    pools: tuple[str, ...] = ("contiguous", "scattered", "padded", "padded_mid")


# FlashInfer 0.7.2's kernel functions behind each entry point (flashinfer/gdn_kernels/*.py).
BF16_STATE_KERNELS = (r"gdn_decode_bf16state_mtp_ilp4_kernel", r"gdn_wide_vec_kernel")
PRETRANSPOSE_KERNELS = (r"gdn_decode_kernel_(small|big)_batch_pretranspose",)
NONTRANSPOSE_KERNELS = (r"gdn_decode_kernel_(small|big)_batch_nontranspose",)
MTP_KERNELS = (r"gdn_verify_kernel_mtp",)
PREFILL_KERNELS = (r"(?i)delta_?rule",)


# (phase, layout, state_dtype) -> entry point. Absent = unsupported (see _why_absent).
ENTRY_POINTS: dict[tuple[str, str, str], EntryPoint] = {
    ("decode", "k_last", "bfloat16"): EntryPoint("gated_delta_rule_decode_pretranspose [bf16 state]", ANY_SM90_PLUS,
                                                 Padding.SLOT0, BF16_STATE_KERNELS),
    ("decode", "k_last", "float32"): EntryPoint("gated_delta_rule_decode_pretranspose [fp32 state]", ANY_SM90_PLUS,
                                                Padding.ZERO, PRETRANSPOSE_KERNELS),
    ("decode", "v_last", "float32"): EntryPoint("gated_delta_rule_decode [V-last, no pool]", frozenset({90}),
                                                Padding.ZERO, NONTRANSPOSE_KERNELS, pools=("contiguous",)),
    ("mtp", "k_last", "bfloat16"): EntryPoint("gated_delta_rule_decode_pretranspose [bf16 state, T>1]", ANY_SM90_PLUS,
                                              Padding.SLOT0, BF16_STATE_KERNELS),
    ("mtp", "k_last", "float32"): EntryPoint("gated_delta_rule_mtp [fp32 state]", ANY_SM90_PLUS, Padding.ZERO,
                                             MTP_KERNELS),
    ("prefill", "k_last", "float32"): EntryPoint("chunk_gated_delta_rule", frozenset({90, 100, 103, 120}),
                                                 Padding.SKIP, PREFILL_KERNELS, pools=("contiguous", "scattered")),
    ("prefill", "k_last", "bfloat16"): EntryPoint("chunk_gated_delta_rule", frozenset({90, 100, 103, 120}),
                                                  Padding.SKIP, PREFILL_KERNELS, pools=("contiguous", "scattered")),
}


def _why_absent(case: Case) -> str:
    if case.layout == "v_last" and case.phase == "decode":
        return "V-last decode (gated_delta_rule_decode) takes fp32 state only"
    if case.layout == "v_last":
        return f"FlashInfer's {case.phase} kernels take a K-last state [.., V, K] only"
    return f"no FlashInfer entry point for {case.phase} / {case.layout} / {case.state_dtype}"


class FlashInfer(Backend):
    dist = "flashinfer-python"

    def __init__(self, kernel_only: bool = False) -> None:
        self.kernel_only = kernel_only
        self.name = "flashinfer_kernel" if kernel_only else "flashinfer"
        self.summary = ("FlashInfer 0.7.2 chunk prefill kernel alone (pre-normalised q/k, precomputed gates, "
                        "contiguous state)" if kernel_only else
                        "FlashInfer 0.7.2 GDN entry points (decode pretranspose / decode / mtp / chunk prefill)")

    def entry(self, case: Case) -> EntryPoint | None:
        return ENTRY_POINTS.get((case.phase, case.layout, case.state_dtype))

    def availability(self, target: Target | None = None) -> str | None:
        target = target or current_target()
        if target.device != "cuda":
            return f"needs a CUDA GPU (SM90+); this machine is {target.label}"
        if target == current_target():
            for module, dist in (("flashinfer", "flashinfer-python"), ("cutlass", "nvidia-cutlass-dsl")):
                missing = missing_module(module, dist)
                if missing:
                    return missing
        return None

    def supports(self, case: Case, target: Target | None = None) -> str | None:
        target = target or current_target()
        reason = self.availability(target)
        if reason:
            return reason
        if self.kernel_only and case.phase != "prefill":
            return ("kernel-only is a prefill variant: the decode and MTP entry points fuse gating and q/k "
                    "L2 norm (see 'flashinfer')")
        ep = self.entry(case)
        if ep is None:
            return _why_absent(case)
        if target.sm not in ep.sms:
            return f"{ep.name} is documented for {', '.join(f'sm{s}' for s in sorted(ep.sms))}, not sm{target.sm}"
        if case.dtype not in ("bfloat16", "float16"):
            return f"FlashInfer GDN takes fp16/bf16 q/k/v, not {case.dtype}"
        if (case.head_dim_k, case.head_dim_v) != (128, 128):
            return f"FlashInfer's GDN kernels tile K = V = 128 (got K={case.head_dim_k}, V={case.head_dim_v})"
        if self.kernel_only and case.pool != "contiguous":
            return "the kernel alone runs on a contiguous [N, ...] state (no state_indices); see 'flashinfer'"
        if case.pool not in ep.pools:
            if case.padded and case.phase == "prefill":
                return "chunk_gated_delta_rule has no padding: state_indices must be unique and in range"
            return f"{ep.name} has no pool API: needs a contiguous [B, ...] state"
        if case.phase == "mtp":
            if case.tree:
                return "FlashInfer's MTP kernels have no parent-token tree (retrieve_parent_token)"
            if case.state_dtype == "bfloat16" and case.intermediate and case.write_back:
                return ("bf16 MTP with an intermediate buffer skips the final write-back on its wide_vec path "
                        "(caller reads buf[:, T-1]); write-back plus buffer is not one semantics in 0.7.2")
        return None

    def kernel(self, case: Case) -> str:
        ep = self.entry(case)
        if ep is None:
            return ""
        if case.phase == "prefill" and self.kernel_only:
            return f"{ep.name} [{_cp_mode(case)}, kernel only: pre-normalised q/k, precomputed gates]"
        if case.phase == "prefill":
            return f"{ep.name} [{_cp_mode(case)}] + torch gates + normalize_qk"
        return ep.name

    def padding(self, case: Case) -> Padding:
        ep = self.entry(case)
        return ep.padding if ep else Padding.SKIP

    def expected_kernels(self, case: Case) -> tuple[str, ...]:
        ep = self.entry(case)
        return ep.kernels if ep else ()

    def activations_at_build(self, case: Case) -> bool:
        return self.kernel_only  # q/k normalised and gates computed in build: the kernel alone is timed

    def build(self, case: Case, inputs: Inputs):
        if case.phase == "prefill":
            return (_build_prefill_kernel if self.kernel_only else _build_prefill)(case, inputs)
        import flashinfer.gdn_decode as fgd

        _assert_cute_available(fgd)
        x = inputs
        B, T, hv, V = case.batch, case.tokens, case.hv, case.head_dim_v
        out = torch.zeros(B, T, hv, V, dtype=torch.bfloat16, device=x.device)
        common = dict(A_log=x.A_log, a=x.a, dt_bias=x.dt_bias, b=x.b, scale=x.scale, output=out, use_qk_l2norm=True)
        if case.layout == "v_last":
            state = x.contiguous_state()  # [B, hv, K, V]

            def launch_v_last():
                fgd.gated_delta_rule_decode(x.q, x.k, x.v, state, backend="flashinfer", **common)
                return out
            return launch_v_last
        pool_args = dict(initial_state=x.pool, initial_state_indices=x.slots)
        if case.phase == "decode":
            def launch_decode():
                fgd.gated_delta_rule_decode_pretranspose(x.q, x.k, x.v, None, backend="flashinfer", **pool_args,
                                                         **common)
                return out
            return launch_decode
        mtp = dict(intermediate_states_buffer=x.inter if case.intermediate else None,
                   disable_state_update=not case.write_back)
        if case.state_dtype == "bfloat16":
            def launch_mtp_bf16():
                fgd.gated_delta_rule_decode_pretranspose(x.q, x.k, x.v, None, backend="flashinfer", **pool_args,
                                                         **common, **mtp)
                return out
            return launch_mtp_bf16

        def launch_mtp_fp32():
            fgd.gated_delta_rule_mtp(x.q, x.k, x.v, x.pool, x.slots, x.A_log, x.a, x.dt_bias, x.b, scale=x.scale,
                                     output=out, use_qk_l2norm=True, **mtp)
            return out
        return launch_mtp_fp32


def _assert_cute_available(fgd) -> None:
    # Without the CuTe DSL, flashinfer.gdn_decode imports with these flags off and calls fail obscurely.
    for flag in ("_GDN_DECODE_BF16_STATE_AVAILABLE", "_PRETRANSPOSE_AVAILABLE", "_MTP_AVAILABLE"):
        if getattr(fgd, flag, True) is False:
            raise RuntimeError(f"flashinfer.gdn_decode.{flag} is False: its CuTe DSL kernels did not import")


def _cp_mode(case: Case) -> str:
    """Whether FlashInfer's use_cp='auto' picks the context-parallel prefill here (its own heuristic)."""
    try:
        if not torch.cuda.is_available():
            return "use_cp=auto"
        from flashinfer.gdn_kernels.delta_rule_dsl.varlen_helper import should_use_cp_host

        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        cp = should_use_cp_host(case.batch * case.hv, props.multi_processor_count, props.name,
                                device_capability=(props.major, props.minor))
        return "CP" if cp else "non-CP"
    except Exception:
        return "use_cp=auto"


def _build_prefill(case: Case, x: Inputs):
    from flashinfer.gdn_prefill import chunk_gated_delta_rule

    L, hv, V = case.tokens, case.hv, case.head_dim_v
    q, k, v, a, b = x.q[0], x.k[0], x.v[0], x.a[0], x.b[0]  # [L, H, D] / [L, hv] views, contiguous
    out = torch.empty(L, hv, V, dtype=torch.bfloat16, device=x.device)
    out_state = x.pool if case.write_back else torch.empty_like(x.pool)  # the kernel always stores a final state
    max_len = max(case.lens)

    def launch():
        g, beta = gates(a, b, x.A_log, x.dt_bias, torch.float32)
        chunk_gated_delta_rule(q, k, v, g=torch.exp(g), beta=beta, scale=x.scale, initial_state=x.pool,
                               output_final_state=True, cu_seqlens=x.cu_seqlens, use_qk_l2norm_in_kernel=True,
                               output=out, output_state=out_state, state_indices=x.slots, backend="flashinfer",
                               max_seqlen=max_len)
        return out
    return launch


def _build_prefill_kernel(case: Case, x: Inputs):
    """The chunk kernel alone: everything it does not do itself is prepared here, outside the timing."""
    from flashinfer.gdn_prefill import chunk_gated_delta_rule

    L, hv, V = case.tokens, case.hv, case.head_dim_v
    q, k, v, a, b = x.q[0], x.k[0], x.v[0], x.a[0], x.b[0]
    qn, kn = (l2norm(t.float()).to(t.dtype).contiguous() for t in (q, k))  # normalize_qk's bf16 rounding
    g, beta = gates(a, b, x.A_log, x.dt_bias, torch.float32)
    alpha = torch.exp(g).contiguous()
    state = x.contiguous_state()  # [N, hv, V, K]
    out_state = state if case.write_back else torch.empty_like(state)  # in place, as FlashInfer allows
    out = torch.empty(L, hv, V, dtype=torch.bfloat16, device=x.device)
    max_len = max(case.lens)

    def launch_kernel():
        chunk_gated_delta_rule(qn, kn, v, g=alpha, beta=beta, scale=x.scale, initial_state=state,
                               output_final_state=True, cu_seqlens=x.cu_seqlens, use_qk_l2norm_in_kernel=False,
                               output=out, output_state=out_state, backend="flashinfer", max_seqlen=max_len)
        return out
    return launch_kernel


BACKEND = FlashInfer()
KERNEL_ONLY = FlashInfer(kernel_only=True)
