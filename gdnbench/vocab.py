"""gdnbench's vocabulary, defined once: the values a case field may take, the timing modes, the dtypes
and what they cost, and the backend names.

Everything else derives from here: the config's validation (``config.py``), a case's id and declared
bytes (``cases.py``), the torch dtypes of the inputs (``inputs.py``), the capability matrix, the CLI's
option checks and the runner. This module imports nothing, so any stage of the data flow may use it
without importing a later one.
"""

from __future__ import annotations

PHASES = ("decode", "mtp", "prefill")
LAYOUTS = ("k_last", "v_last")                # k_last: pool [P, hv, V, K]; v_last: pool [P, hv, K, V]
STATE_DTYPES = ("bfloat16", "float32")
INPUT_DTYPES = ("bfloat16", "float16", "float32")
# contiguous: consecutive slots; scattered: random slots with guards; padded: the trailing 1/8 of the
# rows have slot -1; padded_mid: as many padded rows, spread through the batch
POOLS = ("contiguous", "scattered", "padded", "padded_mid")
PADDED_POOLS = ("padded", "padded_mid")

TIMING_MODES = ("auto", "graph", "events", "cpu")  # auto: graph on a GPU, cpu otherwise
GPU_TIMING_MODES = ("graph", "events")

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
DTYPE_SHORT = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}  # in case ids

# Backend name -> "module:object"; the registry (backends/registry.py) imports them on demand.
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
# gdnbench's own kernels, and the libraries' kernels they are measured against (``gdnbench peers``);
# the eager torch baseline is neither
OWN_BACKENDS: tuple[str, ...] = ("triton", "triton_pdl", "cute")
PEER_BACKENDS: tuple[str, ...] = ("flashinfer", "flashinfer_kernel", "fla", "fla_kernel")

