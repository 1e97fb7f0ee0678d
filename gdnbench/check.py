"""The correctness gate, run for every (case, backend) before any timing.

A backend is built on a fresh copy of the case's inputs and launched **twice**:

1. the first launch (compile included, timed as ``first_call_ms``) is compared with the float64
   reference of the inputs;
2. then new activations (q, k, v, gate projections) are written into the same input tensors, as a
   serving engine does between two replays of a captured graph, and the second launch starts from
   the pool the first one left. It is compared with the reference of *that* state and those
   activations. A backend that does per-call work in ``build`` (gathers the pool's slots, precomputes
   from the activations, caches a result) passes launch 1 and fails launch 2, so what is timed is
   what was checked. A backend that precomputes from the activations by design (a "kernel only"
   variant) says so (``Backend.activations_at_build``); its activations are then kept, the state still
   advances.

Each launch is checked against the reference:

* output (valid rows) and updated state (valid slots) within the tolerance of the precision they
  carry (``TOLERANCES`` below; docs/correctness.md says why each number is what it is), all finite;
* every pool slot the case does not write (guard slots, unused slots, the null slot, the hidden
  canaries before and after the pool) bit-identical to before; with write_back off, the used
  slots too;
* padded rows per the backend's declared ``Padding``: pool untouched (``slot0``: only the null slot
  may change), output rows zero for ``zero``;
* intermediate states (mtp) per step, and the intermediate buffer's hidden guard rows untouched;
* the inputs (q, k, v, gates, indices) unchanged.

On a GPU the second launch runs under the PyTorch profiler and the kernels it ran are recorded
(``gdnbench.kernels``); a launch that ran none of the kernels its backend declares fails.

A row that fails gets status ``failed`` and no latency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from gdnbench.backends.base import Backend, Output, Padding
from gdnbench.cases import Case
from gdnbench.inputs import Inputs
from gdnbench.kernels import format_kernels, profile_launch, recording_enabled, unexpected
from gdnbench.reference import Expected, reference


@dataclass(frozen=True)
class Tolerance:
    """Relative RMS error (over the tensor) and max error relative to the tensor's max magnitude."""

    rms_rel: float
    max_rel: float


# The gate's tolerances, by the precision a compared tensor carries (docs/correctness.md: the error
# each precision leaves, what a correct kernel measured, and which planted bugs each one catches).
TOLERANCES: dict[str, Tolerance] = {
    # Stored in bf16 / fp16 (outputs, bf16 states and intermediate states): storage rounding alone
    # leaves ~1.7e-3 rms; a 2% error anywhere is 4x over.
    "bf16": Tolerance(rms_rel=5e-3, max_rel=1.5e-2),
    # fp32 state of a recurrent (decode / MTP) kernel: fp32 arithmetic leaves ~1e-6; a state kept at
    # bf16 precision (~1.7e-3) is over 15x out.
    "fp32": Tolerance(rms_rel=1e-4, max_rel=1e-3),
    # Chunked prefill: products inside a chunk run on bf16 tensor cores whatever the state dtype.
    "chunk": Tolerance(rms_rel=1e-2, max_rel=3e-2),
}


def precision(case: Case, dtype: torch.dtype) -> str:
    """Which entry of ``TOLERANCES`` applies to a tensor of ``case`` stored in ``dtype``."""
    if case.phase == "prefill":
        return "chunk"
    return "bf16" if dtype in (torch.bfloat16, torch.float16) else "fp32"


def tolerance(case: Case, dtype: torch.dtype) -> Tolerance:
    return TOLERANCES[precision(case, dtype)]


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str = ""                  # the first problem found ("" when ok)
    max_abs_err: float | None = None   # worst over output, state, intermediate
    max_rel_err: float | None = None
    rms_rel_err: float | None = None
    state_rms_rel_err: float | None = None  # worst over the state and the intermediate states
    margin: float | None = None        # worst error / its tolerance over every compared tensor (< 1 passes)

    def worst(self, other: CheckResult, prefix: str = "") -> CheckResult:
        """This launch's result combined with a later one's: the worst errors, the first problem."""
        def top(a: float | None, b: float | None) -> float | None:
            return b if a is None else a if b is None else max(a, b)

        return CheckResult(ok=self.ok and other.ok,
                           message=self.message or (prefix + other.message if other.message else ""),
                           max_abs_err=top(self.max_abs_err, other.max_abs_err),
                           max_rel_err=top(self.max_rel_err, other.max_rel_err),
                           rms_rel_err=top(self.rms_rel_err, other.rms_rel_err),
                           state_rms_rel_err=top(self.state_rms_rel_err, other.state_rms_rel_err),
                           margin=top(self.margin, other.margin))


@dataclass(frozen=True)
class GateResult:
    check: CheckResult
    first_call_s: float
    kernels: str = ""  # GPU kernels of one launch with their counts ("" when not recorded)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def changed_slots(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Indices along dim 0 where any bit differs. ``before``/``after`` ``[S, ...]``."""
    diff = (_bits(before) != _bits(after)).reshape(before.shape[0], -1).any(1)
    return diff.nonzero().squeeze(1).cpu()


class _Errors:
    def __init__(self) -> None:
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.rms_rel = 0.0
        self.state_rms = 0.0
        self.margin = 0.0
        self.problem = ""

    def fail(self, msg: str) -> None:
        if not self.problem:
            self.problem = msg

    def compare(self, what: str, got: torch.Tensor, want: torch.Tensor, tol: Tolerance) -> None:
        if got.shape != want.shape:
            self.fail(f"{what}: shape {tuple(got.shape)}, expected {tuple(want.shape)}")
            return
        if got.numel() == 0:
            return
        got = got.float()
        if not torch.isfinite(got).all():
            bad = (~torch.isfinite(got)).sum().item()
            self.fail(f"{what}: {bad} non-finite values")
            self.max_abs = self.max_rel = self.rms_rel = self.margin = float("inf")
            return
        d = (got - want).abs()
        max_abs = d.max().item()
        max_rel = max_abs / max(want.abs().max().item(), 1e-30)
        rms_rel = (d.square().mean().sqrt() / want.square().mean().sqrt().clamp_min(1e-30)).item()
        self.max_abs, self.max_rel = max(self.max_abs, max_abs), max(self.max_rel, max_rel)
        self.rms_rel = max(self.rms_rel, rms_rel)
        if what != "output":
            self.state_rms = max(self.state_rms, rms_rel)
        self.margin = max(self.margin, rms_rel / tol.rms_rel, max_rel / tol.max_rel)
        if rms_rel > tol.rms_rel or max_rel > tol.max_rel:
            self.fail(f"{what}: rms_rel {rms_rel:.2e} (tol {tol.rms_rel:.1e}), max_rel {max_rel:.2e} "
                      f"(tol {tol.max_rel:.1e})")


def verify(case: Case, padding: Padding, before: Inputs, after: Inputs, result: torch.Tensor | Output,
           expected: Expected) -> CheckResult:
    """Compare one launch's effects (``after``, ``result``) with the reference and the pristine inputs."""
    out, state_ret = (result.out, result.state) if isinstance(result, Output) else (result, None)
    e = _Errors()
    valid = expected.valid_rows
    dev = before.device
    rows = torch.tensor(valid, dtype=torch.long, device=dev)
    padded_rows = [i for i in range(case.batch) if i not in set(valid)]

    # -- output ------------------------------------------------------------------------------
    if not isinstance(out, torch.Tensor) or out.numel() != expected.out.numel():
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        e.fail(f"output: shape {got}, expected {tuple(expected.out.shape)}")
    else:
        out = out.reshape(expected.out.shape)
        out_tol = tolerance(case, out.dtype)
        if case.phase == "prefill":
            m = expected.valid_tokens
            e.compare("output", out[m], expected.out[m], out_tol)
            if padding == Padding.ZERO and bool((~m).any()) and bool((out[~m] != 0).any()):
                e.fail("output: rows of padded sequences are not zero (backend declares zero)")
        else:
            e.compare("output", out[rows], expected.out[rows], out_tol)
            if padding == Padding.ZERO and padded_rows and bool((out[padded_rows] != 0).any()):
                e.fail("output: padded rows are not zero (backend declares zero)")

    # -- state ---------------------------------------------------------------------------------
    slots = after.slots.long()[rows] if valid else rows
    state_tol = tolerance(case, after.pool.dtype)
    if state_ret is not None:
        e.compare("returned state", state_ret.reshape(len(valid), *after.pool.shape[1:]),
                  expected.state[rows], state_tol)
    elif case.write_back and valid:
        e.compare("state", after.pool[slots], expected.state[rows], state_tol)

    # -- pool integrity: everything not allowed to change is bit-identical -------------------
    P = before.pool.shape[0]
    allowed = set(slots.tolist()) if (case.write_back and state_ret is None) else set()
    if padding == Padding.SLOT0 and padded_rows:
        allowed.add(0)
    owner = {s: r for r, s in enumerate(before.slot_list) if s >= 0}
    for storage_idx in changed_slots(before.pool_storage, after.pool_storage).tolist():
        slot = storage_idx - 1
        if slot in allowed:
            continue
        if slot == -1:
            e.fail("pool: the canary before slot 0 changed (a write at index -1, before the pool)")
        elif slot == P:
            e.fail("pool: the canary after the last slot changed (a write past the end of the pool)")
        elif slot == 0:
            e.fail("pool: the null slot 0 changed" + (" (padded rows must leave the pool untouched)"
                                                    if padded_rows else ""))
        elif slot in owner:
            e.fail(f"pool: slot {slot} (row {owner[slot]}) changed but this case does not write it back")
        else:
            e.fail(f"pool: guard slot {slot} changed (no row uses it)")

    # -- intermediate states -------------------------------------------------------------------
    if case.intermediate and expected.inter is not None:
        inter = after.inter
        if inter is None:
            e.fail("intermediate: no buffer")
        else:
            e.compare("intermediate", inter[rows], expected.inter[rows], tolerance(case, inter.dtype))
            guards = changed_slots(before.inter_storage[[0, -1]], after.inter_storage[[0, -1]])
            if len(guards):
                e.fail("intermediate: a write outside the [B, T, ...] buffer (hidden guard row changed)")

    # -- inputs must not be modified ---------------------------------------------------------------
    for name in ("q", "k", "v", "a", "b", "A_log", "dt_bias", "slots", "cu_seqlens", "parents"):
        t0, t1 = getattr(before, name), getattr(after, name)
        if t0 is not None and not torch.equal(_bits(t0), _bits(t1)):
            e.fail(f"input {name} was modified")

    return CheckResult(ok=not e.problem, message=e.problem, max_abs_err=e.max_abs, max_rel_err=e.max_rel,
                       rms_rel_err=e.rms_rel, state_rms_rel_err=e.state_rms, margin=e.margin)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


SECOND_LAUNCH_SEED = 0x2A0D  # seeds the activations of the gate's second launch


def fatal_device_error(e: BaseException) -> bool:
    """Whether ``e`` left the CUDA context unusable (every later launch in this process fails too), so
    a caller must stop rather than record it against one backend or tile and go on."""
    text = str(e)
    return any(s in text for s in ("illegal memory access", "CUDA error: an illegal", "unspecified launch failure",
                                   "device-side assert"))


def run_gate(case: Case, backend: Backend, template: Inputs, expected: Expected,
             record_kernels: bool | None = None) -> GateResult:
    """Build ``backend`` on a fresh copy of ``template``, launch twice, verify each launch (module doc).

    ``record_kernels`` (default: on a GPU, unless ``GDNBENCH_RECORD_KERNELS=0``) profiles the second
    launch and checks its kernels against ``backend.expected_kernels(case)``."""
    x = template.clone()
    synchronize(x.device)
    t0 = time.perf_counter()
    fn = backend.build(case, x)
    result = fn()
    synchronize(x.device)
    first = time.perf_counter() - t0
    padding = backend.padding(case)
    check = verify(case, padding, template, x, result, expected)
    if not check.ok:
        return GateResult(check=replace(check, message="launch 1: " + check.message), first_call_s=first)

    if not backend.activations_at_build(case):
        x.redraw_activations(SECOND_LAUNCH_SEED)
    before = x.clone()
    expected2 = reference(before)
    if record_kernels is None:
        record_kernels = x.device.type == "cuda" and recording_enabled()
    ran = None
    if record_kernels:
        result, ran = profile_launch(fn)
    else:
        result = fn()
        synchronize(x.device)
    check = check.worst(verify(case, padding, before, x, result, expected2), prefix="launch 2: ")
    kernels = ""
    if ran is not None:  # None: the profiler could not record (another CUPTI client), nothing checked
        kernels = format_kernels(ran)
        problem = unexpected(ran, backend.expected_kernels(case))
        if problem and check.ok:
            check = replace(check, ok=False, message=problem)
    return GateResult(check=check, first_call_s=first, kernels=kernels)
