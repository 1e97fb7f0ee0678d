"""``cute``: gdnbench's own CuTe DSL GDN decode kernel (T = 1, K-last state).

Decode moves each (row, value head)'s V x K state once in and once out, so the kernel
(``kernels/decode_klast.py``) is organised around 16-byte global accesses and registers: a CTA owns BV
consecutive state rows of one (row, value head), a row's K elements are spread over a few lanes each
holding NVEC 16-byte vectors, and both reductions over K are an in-thread partial sum plus a butterfly
of warp shuffles, with no shared memory. The state load is the only one that waits on the slot index; a
padded row (slot -1) writes a zero output and never touches the pool. Tiles: ``tiles.py``.

Compiled once per shape family (state dtype, input dtype, heads, K, V and the tile) for this GPU's
arch, with the batch and pool size dynamic, through TVM-FFI (the launch takes torch tensors directly),
and exported to an object file under ``$GDNBENCH_CACHE`` (default ``~/.cache/gdnbench``) keyed by the
CuTe DSL version and the kernel's source, so a second process loads it instead of recompiling.
Design notes and measurements: ``docs/design/cute-decode.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import torch

from gdnbench.backends.base import (
    Backend,
    Padding,
    Target,
    kernel_cache_root,
    current_target,
    missing_module,
    package_version,
)
from gdnbench.backends.cute import tiles
from gdnbench.backends.tables import OVERRIDE, TUNED, TunedTiles
from gdnbench.backends.cute.tiles import CuteTile, lanes, tile_reason, vec
from gdnbench.cases import Case
from gdnbench.inputs import Inputs

KERNEL_SOURCE = Path(__file__).parent / "kernels" / "decode_klast.py"
_DTYPE_NAMES = {"bfloat16": "BFloat16", "float16": "Float16", "float32": "Float32"}
_compiled: dict[tuple, object] = {}
_lock = threading.Lock()

def cache_dir() -> Path:
    return kernel_cache_root() / "cute"


def _source_hash() -> str:
    src = KERNEL_SOURCE.read_bytes()
    return hashlib.sha256(src).hexdigest()[:16]


class CuteGDN(TunedTiles, Backend):
    name = "cute"
    summary = "gdnbench's own CuTe DSL decode kernel (K-last, bf16/fp32 state, pooled)"
    dist = "nvidia-cutlass-dsl"
    tuner = "cute"
    tiles = tiles

    def __init__(self, tile_override: CuteTile | None = None) -> None:
        self.tile_override = tile_override  # the tuner and tests

    def availability(self, target: Target | None = None) -> str | None:
        target = target or current_target()
        if target == current_target():
            missing = missing_module("cutlass", "nvidia-cutlass-dsl")
            if missing:
                return missing
        if target.device != "cuda" or (target.sm or 0) < 90:
            return f"needs a CUDA GPU of SM90 or newer; this machine is {target.label}"
        return None

    def supports(self, case: Case, target: Target | None = None) -> str | None:
        reason = self.availability(target)
        if reason:
            return reason
        if case.phase != "decode":
            return "the cute kernel covers decode (T = 1); MTP verify and prefill are not implemented"
        if not case.write_back:
            return "the cute kernel always writes the updated state back to the pool"
        if case.layout != "k_last":
            return "the cute kernel reads K-last state [.., V, K] (K contiguous for 16-byte row loads)"
        if case.dtype not in ("bfloat16", "float16"):
            return f"q/k/v must be bf16 or fp16, not {case.dtype}"
        return tile_reason(case, self.tile(case))

    def kernel(self, case: Case) -> str:
        t, source = self.tile_choice(case)
        note = "" if source in (TUNED, OVERRIDE) else f", {source} tile"
        return (f"gdn_decode_klast_kernel [BV={t.bv}, {t.threads} threads, {lanes(case, t.nvec)} lanes x "
                f"{t.nvec} x 16B per row{note}]")

    def padding(self, case: Case) -> Padding:
        return Padding.ZERO

    def expected_kernels(self, case: Case) -> tuple[str, ...]:
        return ("gdn_decode_klast_kernel",)

    def build(self, case: Case, inputs: Inputs):
        import cuda.bindings.driver as cuda

        t = self.tile(case)
        reason = tile_reason(case, t)
        if reason:
            raise ValueError(reason)
        fn = compiled_kernel(case, inputs.device, t)
        x = inputs
        out = torch.empty(case.batch, 1, case.hv, case.head_dim_v, dtype=x.v.dtype, device=x.device)
        args = (x.pool, x.q, x.k, x.v, x.a, x.b, x.A_log, x.dt_bias, x.slots, out)
        for t in args:
            if not t.is_contiguous():
                raise ValueError("the cute kernel takes contiguous tensors")

        def launch():
            fn(*args, cuda.CUstream(torch.cuda.current_stream().cuda_stream))
            return out

        return launch


def _arch(device: torch.device) -> str:
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}{'a' if major >= 9 else ''}"


def compiled_kernel(case: Case, device: torch.device, t: CuteTile | None = None):
    """The TVM-FFI callable for this case's shape family and tile: from this process, the disk cache,
    or a fresh compile (which is then exported to the disk cache)."""
    arch = _arch(device)
    t = t or tiles.tile(case)
    key = (arch, case.state_dtype, case.dtype, case.hk, case.hv, case.head_dim_k, case.head_dim_v, t.bv, t.nvec,
           t.threads)
    with _lock:
        if key in _compiled:
            return _compiled[key]
        name = "gdn_decode_klast_" + "_".join(str(p) for p in key).replace(".", "")
        meta = {"cutlass_dsl": package_version("nvidia-cutlass-dsl"), "source": _source_hash(), "key": list(key)}
        path = cache_dir() / arch / f"{name}.o"
        meta_path = path.with_suffix(".json")
        fn = None
        if path.exists() and meta_path.exists():
            try:
                if json.loads(meta_path.read_text()) == meta:
                    fn = _load(path, name)
            except Exception:
                fn = None  # a stale or unreadable artifact: recompile below
        if fn is None:
            compiled = _compile(case, arch, t=t)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".o.tmp{os.getpid()}")
                compiled.export_to_c(str(tmp), function_name=name)
                os.replace(tmp, path)
                meta_path.write_text(json.dumps(meta))
                fn = _load(path, name)
            except Exception:
                fn = compiled  # persisting is best effort; the in-process kernel still runs
        _compiled[key] = fn
        return fn


def _load(path: Path, name: str):
    import cutlass.cute as cute

    return getattr(cute.runtime.load_module(str(path), enable_tvm_ffi=True), name)


def fake_args(case: Case):
    """Fake tensors (row-major, 16-byte aligned, batch and pool size dynamic) for cute.compile."""
    import cutlass
    import cutlass.cute as cute
    from cutlass.cute.runtime import make_fake_compact_tensor

    def fake(dtype: str, shape):
        return make_fake_compact_tensor(getattr(cutlass, _DTYPE_NAMES[dtype]) if dtype in _DTYPE_NAMES else dtype,
                                        shape, stride_order=tuple(range(len(shape) - 1, -1, -1)), assumed_align=16)

    B, P = cute.sym_int(), cute.sym_int()
    dt, K, V, HK, HV = case.dtype, case.head_dim_k, case.head_dim_v, case.hk, case.hv
    return (fake(case.state_dtype, (P, HV, V, K)), fake(dt, (B, 1, HK, K)), fake(dt, (B, 1, HK, K)),
            fake(dt, (B, 1, HV, V)), fake(dt, (B, 1, HV)), fake(dt, (B, 1, HV)), fake("float32", (HV,)),
            fake("float32", (HV,)), fake(cutlass.Int32, (B,)), fake(dt, (B, 1, HV, V)))


def _compile(case: Case, arch: str, keep_artifacts: bool = False, t: CuteTile | None = None):
    """cute.compile for ``arch`` (works without a GPU for offline checks)."""
    t = t or tiles.tile(case)
    import cutlass.cute as cute
    from cutlass.cute.runtime import make_fake_stream

    from gdnbench.backends.cute.kernels.decode_klast import gdn_decode_klast

    options = [cute.GPUArch(arch), cute.EnableTVMFFI(True), cute.OptLevel(3)]
    if keep_artifacts:  # the dumps go to a temp folder (the default is the working directory)
        import tempfile

        from cutlass.base_dsl.compiler import DumpDir

        options += [cute.KeepPTX(True), cute.KeepCUBIN(True), DumpDir(tempfile.mkdtemp(prefix="gdnbench-cute-"))]
    return cute.compile[tuple(options)](
        gdn_decode_klast, *fake_args(case), case.head_dim_k ** -0.5, case.hk, case.hv, case.head_dim_k,
        case.head_dim_v, t.bv, vec(case), t.nvec, t.threads, make_fake_stream())


BACKEND = CuteGDN()
