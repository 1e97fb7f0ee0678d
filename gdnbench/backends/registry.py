"""The explicit list of backends: name -> "module:object". Importing this module imports nothing heavy.

Each backend module exposes one object satisfying ``gdnbench.backends.base.Backend``. Adding a backend
means writing its module and adding one line here; there is no registration side effect and no
priority order, and a backend never falls back to another one.
"""

from __future__ import annotations

BACKENDS: dict[str, str] = {
    "torch": "gdnbench.backends.torch_eager:BACKEND",
    "flashinfer": "gdnbench.backends.flashinfer:BACKEND",
    "flashinfer_kernel": "gdnbench.backends.flashinfer:KERNEL_ONLY",
    "fla": "gdnbench.backends.fla:POOLED",
    "fla_kernel": "gdnbench.backends.fla:KERNEL_ONLY",
    "triton": "gdnbench.backends.triton:BACKEND",
    "triton_pdl": "gdnbench.backends.triton:PDL",
    "cute": "gdnbench.backends.cute:BACKEND",
}
BACKEND_NAMES: tuple[str, ...] = tuple(BACKENDS)
