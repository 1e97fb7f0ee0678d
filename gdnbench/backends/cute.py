"""``cute``: gdnbench's own CuTe DSL GDN decode kernel (T = 1, K-last state).

Design (kernel in ``_cute_kernels.py``). Decode moves each (row, value head)'s V x K state once in
and once out, so the kernel is organised around 16-byte global accesses and registers:

* a CTA of 128 threads (or 32 / 64: a tile parameter) owns BV consecutive state rows ``H[v0:v0+BV, :]`` of one (row, value head);
  the V dimension is split across CTAs, so a batch of 1 still launches HV * V / BV CTAs;
* a row's K elements are spread over LANES = K / (VEC * NVEC) lanes, each holding NVEC 16-byte
  vectors of the row (VEC = 8 bf16 or 4 fp32 elements; vector j of a lane at column
  ``(j * LANES + lane) * VEC``, so each load instruction still covers whole 128-byte lines). Both
  reductions over K (H k and H q) are an in-thread partial sum plus a butterfly of log2(LANES) warp
  shuffles -- no shared memory. NVEC = 1 is one vector per lane (16 lanes per bf16 row, 32 per fp32
  row); a larger NVEC trades registers for fewer shuffles (the shuffle unit issues at a quarter of
  the FP32 rate, and a fp32 row at NVEC = 1 pays five levels per reduction);
* each group of LANES threads owns R = BV / GROUPS rows, the CTA's groups reading consecutive rows;
  all R x NVEC row loads are issued before the first is used (independent 16-byte loads per thread);
* the tile (BV, NVEC) comes from ``cute_tiles.json`` when ``scripts/tune_cute.py`` measured this
  shape class on a GPU (the fastest gated candidate per batch class), else from a heuristic;
* q, k (GQA: the value head's k-head), v, the gates and the slot index are loaded together; the
  state load is the only one that waits on the slot (a 64-bit slot offset: slot * HV * V * K
  overflows int32 for large pools). Gating and L2 norms are computed in fp32 by every thread;
* a padded row (slot -1) writes a zero output and never touches the pool.

Compiled once per shape family (state dtype, input dtype, heads, K, V, and the tile BV, NVEC, threads)
for this GPU's arch, with the batch and pool size dynamic, through TVM-FFI (the launch takes torch
tensors directly), and exported to an object file under ``$GDNBENCH_CACHE`` (default
``~/.cache/gdnbench``) keyed by the CuTe DSL version and this kernel's source, so a second process
loads it instead of recompiling.

Measured on the H100 (results/2026-11-21_h100-sm90_cute-tune, _roofline-decode): from B = 16 up the
tuner picks 64-row CTAs with NVEC = 2 (8 lanes per row, three shuffle levels instead of four for
bf16 and five for fp32; fp32 B = 64: 170 -> 72 shuffles per thread offline), and the kernel went from
level with FlashInfer to 2-4% faster at B >= 128; small batches take 32- or 64-thread CTAs. At B = 64
it is latency-bound like every decode kernel measured there (ncu: 72% of DRAM peak, 33% SM
throughput, 128 registers, 25% theoretical occupancy): each CTA waits on the slot, then the state,
then stores, with no prefetch of the next tile.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import NamedTuple

import torch

from gdnbench.backends.base import (
    Backend,
    Padding,
    Target,
    current_target,
    missing_module,
    package_version,
    pick_tuned,
    read_tile_table,
)
from gdnbench.cases import Case
from gdnbench.inputs import Inputs

NUM_THREADS = 128  # heuristic tile: 4 warps per CTA
_DTYPE_NAMES = {"bfloat16": "BFloat16", "float16": "Float16", "float32": "Float32"}
_ELEM = {"bfloat16": 2, "float16": 2, "float32": 4}
_compiled: dict[tuple, object] = {}
_lock = threading.Lock()


def vec(case: Case) -> int:
    """State elements per 16-byte access."""
    return 16 // _ELEM[case.state_dtype]


MAX_ROWS_PER_GROUP = 8  # heuristic tile: 8 rows x 16 B per thread: ~70-100 registers, 4+ CTAs per SM
MAX_ELEMS_PER_THREAD = 64  # any tile: R rows x NVEC x VEC state elements per thread (fp32 registers)


class CuteTile(NamedTuple):
    """BV state rows per CTA, NVEC 16-byte vectors per lane per row, threads per CTA (32, 64 or 128:
    small CTAs give small batches more, shorter CTAs)."""
    bv: int
    nvec: int = 1
    threads: int = NUM_THREADS


def lanes(case: Case, nvec: int = 1) -> int:
    """Lanes sharing one state row."""
    return case.head_dim_k // (vec(case) * nvec)


def tile_reason(case: Case, t: CuteTile) -> str | None:
    """Why the kernel cannot run ``case`` with tile ``t`` (None: it can)."""
    n = lanes(case, t.nvec)
    if case.head_dim_k % (vec(case) * t.nvec) or n & (n - 1) or not 2 <= n <= 32:
        return (f"K={case.head_dim_k} with {case.state_dtype} state and {t.nvec} x 16 B per lane needs 2..32 "
                f"lanes per row (NVEC = 1: bf16 K = 16..256, fp32 K = 8..128, powers of two)")
    if t.threads not in (32, 64, 128):
        return f"{t.threads} threads per CTA: the kernel takes 32, 64 or 128"
    groups = t.threads // n
    if t.bv % groups or case.head_dim_v % t.bv:
        return f"V={case.head_dim_v} is not a multiple of the {t.bv}-row tile ({groups} row groups per CTA)"
    if t.bv // groups * vec(case) * t.nvec > MAX_ELEMS_PER_THREAD:
        return f"BV={t.bv}, NVEC={t.nvec}: over {MAX_ELEMS_PER_THREAD} state elements per thread"
    return None


def heuristic_tile(case: Case) -> CuteTile:
    """One vector per lane; at most 8 rows per lane group (registers), halved until the launch has
    about 2048 CTAs (enough to keep 132 SMs' memory pipes full), never below one row per group."""
    groups = NUM_THREADS // lanes(case)
    bv = min(case.head_dim_v, groups * MAX_ROWS_PER_GROUP)
    while bv > groups and case.batch * case.hv * (case.head_dim_v // bv) < 2048:
        bv //= 2
    return CuteTile(max(bv, groups))


TILES_FILE = Path(__file__).with_name("cute_tiles.json")


@functools.lru_cache(maxsize=1)
def tuned_tiles() -> list[dict]:
    """Tile choices measured by scripts/tune_cute.py (empty when none were committed)."""
    return read_tile_table(TILES_FILE)


def _entry_tile(e: dict) -> CuteTile:
    return CuteTile(int(e["bv"]), int(e["nvec"]), int(e.get("threads", NUM_THREADS)))


def tile(case: Case) -> CuteTile:
    """The tuned table's entry for this state dtype and head dims with the largest ``pairs_min`` <=
    batch * hv, if it can run the case; else the heuristic tile."""
    best = pick_tuned(tuned_tiles(), case, lambda e: (e["state_dtype"], e["head_dim_k"], e["head_dim_v"])
                      == (case.state_dtype, case.head_dim_k, case.head_dim_v)
                      and tile_reason(case, _entry_tile(e)) is None)
    return _entry_tile(best) if best else heuristic_tile(case)


def cache_dir() -> Path:
    return Path(os.environ.get("GDNBENCH_CACHE", Path.home() / ".cache" / "gdnbench")) / "cute"


def _source_hash() -> str:
    src = Path(__file__).with_name("_cute_kernels.py").read_bytes()
    return hashlib.sha256(src).hexdigest()[:16]


class CuteGDN(Backend):
    name = "cute"
    summary = "gdnbench's own CuTe DSL decode kernel (K-last, bf16/fp32 state, pooled)"
    dist = "nvidia-cutlass-dsl"

    def __init__(self, tile_override: tuple[int, ...] | None = None) -> None:
        self.tile_override = CuteTile(*tile_override) if tile_override else None  # scripts/tune_cute.py, tests

    def tile(self, case: Case) -> CuteTile:
        return self.tile_override or tile(case)

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
        t = self.tile(case)
        return (f"gdn_decode_klast_kernel [BV={t.bv}, {t.threads} threads, {lanes(case, t.nvec)} lanes x "
                f"{t.nvec} x 16B per row]")

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
    t = t or tile(case)
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
    t = t or tile(case)
    import cutlass.cute as cute
    from cutlass.cute.runtime import make_fake_stream

    from gdnbench.backends._cute_kernels import gdn_decode_klast

    options = [cute.GPUArch(arch), cute.EnableTVMFFI(True), cute.OptLevel(3)]
    if keep_artifacts:  # the dumps go to a temp folder (the default is the working directory)
        import tempfile

        from cutlass.base_dsl.compiler import DumpDir

        options += [cute.KeepPTX(True), cute.KeepCUBIN(True), DumpDir(tempfile.mkdtemp(prefix="gdnbench-cute-"))]
    return cute.compile[tuple(options)](
        gdn_decode_klast, *fake_args(case), case.head_dim_k ** -0.5, case.hk, case.hv, case.head_dim_k,
        case.head_dim_v, t.bv, vec(case), t.nvec, t.threads, make_fake_stream())


BACKEND = CuteGDN()
