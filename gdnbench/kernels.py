"""Which GPU kernels a launch ran, and whether they are the ones its backend says it runs.

During the gate (never during timing) one launch of every GPU row runs under the PyTorch profiler
(CUPTI activity records, CUDA only). The kernels it ran, with their count per launch, become the
row's ``kernels`` column, e.g. ``gdn_recurrent_kernel x1`` or ``fused_recurrent_gated_delta_rule_fwd_kernel
x1; index_elementwise_kernel x2``. Each backend declares, per case, regular expressions for the
kernel(s) that do its work (``Backend.expected_kernels``); a row whose launch ran none of them fails
the gate with "ran X, expected Y". This catches a library routing the same call to another
implementation (a new dispatch heuristic, another code path for a shape), which would otherwise be
timed and plotted under the wrong name.

The same short names are used by ``gdnbench trace`` (``short_kernel``), so the gate's record and a
Nsight Systems trace read alike.

The profiler needs CUPTI to itself. Under another CUPTI client (Nsight Systems, Nsight Compute,
compute-sanitizer) it records nothing; a GPU launch always runs at least one kernel, so an empty
record means "not recorded", never "ran nothing": the row's ``kernels`` column is then empty and
the check is skipped. Those tools' children set ``RECORD_ENV=0`` so the profiler is not even tried.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
RECORD_ENV = "GDNBENCH_RECORD_KERNELS"  # "0": the gate does not profile (a tool holds CUPTI)


def recording_enabled() -> bool:
    return os.environ.get(RECORD_ENV, "1") != "0"


def short_kernel(name: str, width: int = 60) -> str:
    """A readable kernel name: the function name without namespaces, template arguments or parameters.

    ``void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, ...>(int, ...)``
    -> ``vectorized_elementwise_kernel``; a CuTe DSL name keeps its (long) mangled tail, cut to ``width``.
    """
    base = re.sub(r"<.*", "", re.sub(r"\(.*", "", name)).strip()
    base = base.split()[-1] if base.split() else name
    base = base.rsplit("::", 1)[-1] or base
    return base[:width]


def profile_launch(fn: Callable[[], T]) -> tuple[T, Counter | None]:
    """Run ``fn`` once under the PyTorch profiler (CUDA activity only); returns its result and the
    full names of the GPU kernels (and memcpy / memset operations) it ran, with counts, or None when
    the profiler recorded no GPU activity at all (CUPTI held by another tool: see the module doc)."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        result = fn()
        torch.cuda.synchronize()
    names: Counter = Counter(e.name for e in prof.events() if e.device_type == DeviceType.CUDA)
    return result, (names or None)


def format_kernels(ran: Counter) -> str:
    """The ``kernels`` column: short names with their count per launch, most frequent first."""
    short: Counter = Counter()
    for name, n in ran.items():
        short[short_kernel(name)] += n
    return "; ".join(f"{name} x{n}" for name, n in sorted(short.items(), key=lambda kv: (-kv[1], kv[0])))


def unexpected(ran: Counter, expected: Iterable[str]) -> str | None:
    """None when one of the kernels that ran matches one of the ``expected`` patterns (or nothing is
    expected); otherwise the gate's failure message."""
    patterns = tuple(expected)
    if not patterns:
        return None
    if any(re.search(p, name) for p in patterns for name in ran):
        return None
    got = format_kernels(ran) or "no GPU kernel"
    return f"kernels: ran {got}, expected {' | '.join(patterns)}"
