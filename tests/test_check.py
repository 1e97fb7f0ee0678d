"""check.py: the gate passes the torch backend and flags each deliberately broken fake backend."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import tiny_case

from gdnbench.backends.base import Output, Padding
from gdnbench.backends.torch_eager import TorchEager
from gdnbench.check import run_gate
from gdnbench.inputs import make_inputs
from gdnbench.reference import reference


def gate(case, backend):
    x = make_inputs(case)
    return run_gate(case, backend, x, reference(x)).check


class Broken(TorchEager):
    """The torch backend plus one planted bug, applied after (or instead of) the real launch."""

    def __init__(self, bug, padding=Padding.ZERO):
        self.bug, self._padding, self.name = bug, padding, "broken"

    def padding(self, case):
        return self._padding

    def build(self, case, x):
        if self.bug == "skip_state_update":
            return super().build(dataclasses.replace(case, write_back=False), x)
        if self.bug == "wrong_gqa":
            hk = x.q.shape[2]
            perm = torch.arange(hk).roll(1)  # value head groups read the wrong k-head
            x2 = dataclasses.replace(x, q=x.q[:, :, perm], k=x.k[:, :, perm])
            return super().build(case, x2)
        if self.bug == "gather_at_build":  # the pool's states read once, in build: every launch starts there
            frozen = x.pool_storage.clone()
            x2 = dataclasses.replace(x, pool_storage=frozen.clone())
            stale = super().build(case, x2)

            def run_stale():
                x2.pool_storage.copy_(frozen)
                out = stale()
                x.pool_storage.copy_(x2.pool_storage)
                return out
            return run_stale
        if self.bug == "output_cached_at_build":  # computed once in build, the launch only updates the state
            cached = super().build(case, x.clone())().clone()
            real = super().build(case, x)

            def run_cached():
                real()
                return cached
            return run_cached
        launch = super().build(case, x)
        slot_of_row0 = x.slot_list[0]
        used = torch.tensor([s for s in x.slot_list if s >= 0])

        def run():
            out = launch()
            if self.bug == "oob_past_pool":
                x.pool_storage[-1].copy_(x.pool_storage[-2])      # one slot past the end
            elif self.bug == "oob_before_pool":
                x.pool_storage[0].mul_(0.5)                        # slot index -1 used as an offset
            elif self.bug == "neighbour_slot":
                x.pool[slot_of_row0 + 1].copy_(x.pool[slot_of_row0])
            elif self.bug == "swap_layout":
                st = x.pool[slot_of_row0]
                x.pool[slot_of_row0].copy_(st.transpose(-1, -2).reshape(st.shape).clone())
            elif self.bug == "padded_to_slot0":
                x.pool[0].add_(1.0)
            elif self.bug == "padded_output_garbage":
                out[-1].fill_(3.0)
            elif self.bug == "touch_input":
                x.q.mul_(2)
            elif self.bug == "nan_output":
                out[0].fill_(float("nan"))
            elif self.bug == "inter_oob":
                x.inter_storage[-1].add_(1)
            elif self.bug == "no_intermediate":
                x.inter.zero_()
            elif self.bug == "write_when_no_writeback":
                x.pool[slot_of_row0].mul_(0.9)
            elif self.bug == "fp32_state_at_bf16":  # an "fp32" state kept at bf16 precision
                if case.write_back:
                    x.pool[used] = x.pool[used].to(torch.bfloat16).to(x.pool.dtype)
                if case.intermediate:
                    x.inter.copy_(x.inter.to(torch.bfloat16))
            elif self.bug == "output_scale_2pct":
                out.mul_(1.02)
            return out

        return run


@pytest.mark.parametrize("case", [
    tiny_case(), tiny_case(layout="v_last", state_dtype="bfloat16"), tiny_case(pool="padded", batch=5),
    tiny_case(pool="contiguous"),
    tiny_case(phase="mtp", tokens=3, intermediate=True, write_back=False, pool="padded", batch=4),
    tiny_case(phase="mtp", tokens=3, intermediate=True, tree=True, write_back=False, state_dtype="bfloat16"),
    tiny_case(phase="prefill", batch=3, tokens=80, seq_lens="70+3+7", pool="padded", head_dim_v=16),
], ids=lambda c: c.id)
def test_torch_backend_passes(case):
    r = gate(case, TorchEager())
    assert r.ok, r.message
    assert r.rms_rel_err < 1e-2


PLANTED = [
    ("oob_past_pool", tiny_case(), "canary after the last slot changed"),
    ("oob_before_pool", tiny_case(), "canary before slot 0 changed"),
    ("neighbour_slot", tiny_case(), "guard slot"),
    ("swap_layout", tiny_case(head_dim_k=16, head_dim_v=16), "state: rms_rel"),
    ("swap_layout", tiny_case(head_dim_k=16, head_dim_v=16, layout="v_last"), "state: rms_rel"),
    ("skip_state_update", tiny_case(), "state: rms_rel"),
    ("skip_state_update", tiny_case(state_dtype="bfloat16"), "state: rms_rel"),
    ("wrong_gqa", tiny_case(hk=2, hv=4), "output: rms_rel"),
    ("padded_to_slot0", tiny_case(pool="padded", batch=4), "null slot 0 changed (padded rows must leave"),
    ("padded_output_garbage", tiny_case(pool="padded", batch=4), "padded rows are not zero"),
    ("touch_input", tiny_case(), "input q was modified"),
    ("nan_output", tiny_case(), "non-finite"),
    ("inter_oob", tiny_case(phase="mtp", tokens=2, intermediate=True, write_back=False), "outside the [B, T, ...] buffer"),
    ("no_intermediate", tiny_case(phase="mtp", tokens=2, intermediate=True, write_back=False), "intermediate: rms_rel"),
    ("write_when_no_writeback", tiny_case(phase="mtp", tokens=2, intermediate=True, write_back=False),
     "changed but this case does not write it back"),
    ("gather_at_build", tiny_case(), "launch 2: output: rms_rel"),
    ("gather_at_build", tiny_case(phase="mtp", tokens=3, pool="padded", batch=5), "launch 2: output: rms_rel"),
    ("output_cached_at_build", tiny_case(), "launch 2: output: rms_rel"),
    ("output_cached_at_build", tiny_case(phase="mtp", tokens=2, intermediate=True, write_back=False),
     "launch 2: output: rms_rel"),
    ("fp32_state_at_bf16", tiny_case(), "state: rms_rel"),
    ("fp32_state_at_bf16", tiny_case(layout="v_last", head_dim_k=128, head_dim_v=128), "state: rms_rel"),
    ("output_scale_2pct", tiny_case(state_dtype="bfloat16"), "output: rms_rel"),
    ("output_scale_2pct", tiny_case(phase="mtp", tokens=4, state_dtype="float32"), "output: rms_rel"),
    ("output_scale_2pct", tiny_case(phase="prefill", batch=2, tokens=100, seq_lens="63+37", head_dim_v=16),
     "output: rms_rel"),
]


@pytest.mark.parametrize("bug,case,message", PLANTED, ids=[f"{b}-{c.phase}-{c.layout}-{c.state_dtype}"
                                                            for b, c, _ in PLANTED])
def test_planted_bug_is_flagged(bug, case, message):
    r = gate(case, Broken(bug))
    assert not r.ok
    assert message in r.message, r.message


@pytest.mark.parametrize("case", [tiny_case(), tiny_case(phase="mtp", tokens=4, intermediate=True, write_back=False),
                                  tiny_case(layout="v_last", head_dim_k=128, head_dim_v=128, batch=4)],
                         ids=lambda c: c.id)
def test_fp32_state_at_bf16_precision_fails_by_a_wide_margin(case):
    """The fp32 tolerance is set so that a state kept at bf16 precision is >= 5x out, while the float32
    torch backend stays far inside it."""
    bad = gate(case, Broken("fp32_state_at_bf16"))
    assert not bad.ok and bad.margin >= 5, (bad.margin, bad.message)
    good = gate(case, TorchEager())
    assert good.ok and good.state_rms_rel_err < 1e-6, good.state_rms_rel_err


def test_first_launch_failure_is_named_and_second_launch_not_run():
    r = gate(tiny_case(), Broken("nan_output"))
    assert r.message.startswith("launch 1: ")


class Recorded(TorchEager):
    """The torch backend with a declared kernel, as a GPU backend would declare it."""

    def __init__(self, expect):
        self.expect, self.name = expect, "recorded"

    def expected_kernels(self, case):
        return self.expect


def test_kernels_are_recorded_and_checked(monkeypatch):
    """The gate records the second launch's kernels and fails a row that ran none of the declared ones
    (the profiler is replaced by a stand-in on the CPU)."""
    from collections import Counter

    import gdnbench.check as check

    ran = Counter({"void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>(int)": 2,
                   "gdn_recurrent_kernel": 1})
    monkeypatch.setattr(check, "profile_launch", lambda fn: (fn(), ran))
    case = tiny_case()
    x = make_inputs(case)
    g = run_gate(case, Recorded((r"gdn_recurrent_kernel",)), x, reference(x), record_kernels=True)
    assert g.check.ok and g.kernels == "vectorized_elementwise_kernel x2; gdn_recurrent_kernel x1"
    g = run_gate(case, Recorded((r"gdn_persistent_kernel",)), x, reference(x), record_kernels=True)
    assert not g.check.ok
    assert g.check.message == ("kernels: ran vectorized_elementwise_kernel x2; gdn_recurrent_kernel x1, "
                               "expected gdn_persistent_kernel")


def test_documented_slot0_padding_is_allowed_but_nothing_else():
    case = tiny_case(pool="padded", batch=4)
    assert gate(case, Broken("padded_to_slot0", padding=Padding.SLOT0)).ok
    # slot0 semantics do not excuse a write into a guard slot
    r = gate(case, Broken("neighbour_slot", padding=Padding.SLOT0))
    assert not r.ok and "guard slot" in r.message


def test_returned_state_checked_and_pool_must_stay():
    case = tiny_case(pool="contiguous")

    class KernelOnly(TorchEager):
        def __init__(self, corrupt):
            self.corrupt = corrupt

        def build(self, c, x):
            inner = super().build(dataclasses.replace(c, write_back=False), x)

            def run():
                out = inner()
                e = reference(x)  # stands in for a kernel's returned final state
                st = e.state.to(x.pool.dtype)
                return Output(out=out, state=st * (1.5 if self.corrupt else 1.0))
            return run

    assert gate(case, KernelOnly(False)).ok
    r = gate(case, KernelOnly(True))
    assert not r.ok and "returned state" in r.message


def gpu_gate(case, backend):
    x = make_inputs(case, "cuda")
    return run_gate(case, backend, x, reference(x)).check


@pytest.mark.gpu
@pytest.mark.parametrize("bug,case,message", [
    ("gather_at_build", tiny_case(batch=16, hk=16, hv=32, head_dim_k=128, head_dim_v=128), "launch 2: output"),
    ("output_cached_at_build", tiny_case(batch=16, hk=16, hv=32, head_dim_k=128, head_dim_v=128), "launch 2: output"),
    ("fp32_state_at_bf16", tiny_case(batch=16, hk=16, hv=32, head_dim_k=128, head_dim_v=128), "state: rms_rel"),
    ("output_scale_2pct", tiny_case(batch=16, hk=16, hv=32, head_dim_k=128, head_dim_v=128,
                                    state_dtype="bfloat16"), "output: rms_rel"),
], ids=lambda v: v if isinstance(v, str) and " " not in v else None)
def test_planted_bugs_fail_on_the_gpu(bug, case, message):
    """The same planted bugs at real head sizes on the GPU (where the kernels are also profiled)."""
    r = gpu_gate(case, Broken(bug))
    assert not r.ok and message in r.message, r.message
    if bug == "fp32_state_at_bf16":
        assert r.margin >= 5, r.margin
    assert gpu_gate(case, TorchEager()).ok


def test_kernels_not_recorded_when_the_profiler_sees_nothing(monkeypatch):
    """Under nsys / ncu / compute-sanitizer the profiler gets no CUPTI and records nothing: that is
    "not recorded" (empty column, no check), never "ran no kernel" (seen on the H100 under nsys)."""
    import gdnbench.check as check

    monkeypatch.setattr(check, "profile_launch", lambda fn: (fn(), None))
    case = tiny_case()
    x = make_inputs(case)
    g = run_gate(case, Recorded((r"gdn_recurrent_kernel",)), x, reference(x), record_kernels=True)
    assert g.check.ok and g.kernels == ""


def test_recording_can_be_turned_off(monkeypatch):
    from gdnbench.kernels import RECORD_ENV, recording_enabled

    monkeypatch.setenv(RECORD_ENV, "0")

    assert not recording_enabled()
    monkeypatch.setenv(RECORD_ENV, "1")
    assert recording_enabled()
