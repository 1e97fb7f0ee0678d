"""The ``triton`` and ``triton_pdl`` backends: the seam between gdnbench and the package's kernels.

``supports`` says which cases the kernels cover (decode and MTP verify, head dims powers of two from
16 to 256), ``build`` launches the plan of the case's tile, and ``kernel`` names that plan in the rows.
``triton_pdl`` launches the same kernels and tiles with programmatic dependent launch (SM90+): each
launch's programs may become resident while the previous kernel drains and wait for it
(``griddepcontrol.wait``) before their first read, so only launch latency overlaps, never memory
traffic. Separate backend names keep both numbers in the rows.
"""

from __future__ import annotations

import torch

from gdnbench.backends.base import (
    Backend,
    Padding,
    Target,
    current_target,
    triton_availability,
    triton_interpreted,
)
from gdnbench.backends.tables import OVERRIDE, TUNED, TunedTiles
from gdnbench.backends.triton import tiles
from gdnbench.backends.triton.plan import describe, jit_kernel, plan
from gdnbench.backends.triton.tiles import Tile, Variant, tile_reason
from gdnbench.cases import Case
from gdnbench.inputs import Inputs


class TritonGDN(TunedTiles, Backend):
    name = "triton"
    summary = "gdnbench's own Triton kernels: decode and MTP verify, pooled state, fused gating"
    dist = "triton"
    triton = True
    tuner = "triton"
    tiles = tiles

    def __init__(self, tile_override: Tile | None = None, pdl: bool = False) -> None:
        self.tile_override = tile_override  # the tuner and tests
        self.pdl = pdl
        if pdl:
            self.name = "triton_pdl"
            self.summary = ("the triton kernels launched with programmatic dependent launch (SM90+): a "
                            "launch overlaps the previous kernel's drain, every read waits for it")

    @property
    def version(self) -> str:
        from gdnbench import __version__
        from gdnbench.backends.base import package_version

        return f"gdnbench {__version__} (triton {package_version('triton') or 'not installed'})"

    def availability(self, target: Target | None = None) -> str | None:
        return triton_availability(target, "triton", "triton")

    def supports(self, case: Case, target: Target | None = None) -> str | None:
        reason = self.availability(target) or (self.pdl and pdl_reason(target))
        if reason:
            return reason
        if case.phase == "prefill":
            return "gdnbench's Triton kernels cover decode and MTP; prefill runs on fla / FlashInfer"
        for name, d in (("K", case.head_dim_k), ("V", case.head_dim_v)):
            if d & (d - 1) or not 16 <= d <= 256:
                return f"head dim {name}={d}: the kernel tiles powers of two from 16 to 256"
        return None

    def kernel(self, case: Case) -> str:
        t, source = self.tile_choice(case)
        label = describe(case, t, self.pdl)
        return label if source in (TUNED, OVERRIDE) else f"{label[:-1]}, {source} tile]"

    def padding(self, case: Case) -> Padding:
        return Padding.ZERO

    def expected_kernels(self, case: Case) -> tuple[str, ...]:
        t = self.tile(case)
        return (plan(case, t, pdl=self.pdl).kernel,)  # the jit function the launch plan chose

    def build(self, case: Case, inputs: Inputs):
        x = inputs
        t = self.tile(case)
        reason = tile_reason(case, t)
        if reason:
            raise ValueError(reason)
        p = plan(case, t, pdl=self.pdl, sms=sm_count(x.device), interpreted=triton_interpreted())
        kern = jit_kernel(t.variant)
        out = torch.empty(case.batch, case.tokens, case.hv, case.head_dim_v, dtype=x.v.dtype, device=x.device)
        n_tiles = case.batch * case.hv * (case.head_dim_v // t.bv)
        values = {name: getattr(x, name) for name in ("q", "k", "v", "a", "b", "A_log", "dt_bias", "slots", "pool",
                                                     "scale")}
        values.update(out=out, n_tiles=n_tiles, n_blocks=n_tiles,
                      parents=x.parents if case.tree else x.slots,
                      inter=x.inter if case.intermediate else x.pool)  # placeholder pointer when unused (never touched)
        if t.variant is Variant.GLUON_TMA:  # the pool seen by TMA as [slots * HV * V, K] rows in [BV, K] blocks
            from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

            from gdnbench.backends.triton.offline import tma_layout

            values["desc"] = TensorDescriptor.from_tensor(x.pool.view(-1, case.head_dim_k), [t.bv, case.head_dim_k],
                                                          tma_layout(case))
        call = {**{name: values[name] for name in p.args}, **p.constexprs, **p.options}
        grid = (p.programs,)

        def launch():
            kern[grid](**call)
            return out

        return launch


def pdl_reason(target: Target | None = None) -> str | None:
    """Why the kernels cannot be launched with programmatic dependent launch on ``target``: PDL
    (``griddepcontrol``) exists from SM90 on, and the interpreter has no launches to overlap."""
    target = target or current_target()
    if target.device != "cuda":
        return "programmatic dependent launch needs a CUDA GPU"
    if target == current_target() and triton_interpreted():
        return "programmatic dependent launch: not under TRITON_INTERPRET=1 (no launches to overlap)"
    if target.sm is not None and target.sm < 90:
        return f"programmatic dependent launch needs SM90 or newer (sm{target.sm})"
    return None


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of the GPU (1 on the CPU interpreter)."""
    if torch.device(device).type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


BACKEND = TritonGDN()
PDL = TritonGDN(pdl=True)
