"""What a decode launch costs before any GDN arithmetic: the latency floor under the graph timer.

For each case, times with ``gdnbench.timer.time_gpu`` (graph mode, cold L2, the case's own input sets)
kernels that do less and less of the triton backend's work, on the same grid and warps as its tuned
tile:

  empty        one launch of the tile grid whose programs do nothing (launch and program start)
  copy         each program loads its BV x K state tile and stores it back, rows addressed directly
  slot copy    the same, at the row's pool slot (the slot load, then the dependent state load)
  slot copy + inputs   the same plus every input load of the GDN kernel (q, k, v, a, b, A_log, dt_bias),
               folded into the output: the GDN kernel's memory traffic without its arithmetic
  torch copy   ``dst.copy_(src)`` of the case's state bytes (the copy-bandwidth reference's kernel at
               this size)
  triton, triton_pdl   the backends themselves (slot, q/k/v/gates, norms, update, output)

and prints a markdown table of medians and % of the measured copy bandwidth (bytes as the roofline
counts them: ``Case.bytes_moved``, state read + written plus inputs and outputs). Usage on the GPU
host: ``python3 scripts/latency_floor.py > floor.md``.
"""

from __future__ import annotations

import sys

import torch
import triton
import triton.language as tl

from gdnbench.backends import get_backend
from gdnbench.backends._triton_kernels import tile_coords
from gdnbench.backends.triton_gdn import tile
from gdnbench.cases import Case
from gdnbench.config import Timing as TimingConfig
from gdnbench.timer import copy_bandwidth, time_gpu


@triton.jit
def empty_kernel(slots):
    pass


@triton.jit
def state_copy_kernel(slots, pool, HV: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BV: tl.constexpr,
                      SLOT: tl.constexpr):
    """One BV x K tile of a K-last state, loaded and stored back in place (tiles of one head consecutive,
    as in the triton kernels); SLOT: at the row's pool slot, else at pool row n."""
    i_v, n, hv, _ = tile_coords(tl.program_id(0), HV, HV, V // BV)
    s = tl.load(slots + n).to(tl.int64) if SLOT else n
    offs = (i_v * BV + tl.arange(0, BV))[:, None] * K + tl.arange(0, K)[None, :]
    p = pool + (s * HV + hv) * (K * V) + offs
    tl.store(p, tl.load(p))


@triton.jit
def inputs_copy_kernel(q, k, v, a, b, A_log, dt_bias, slots, pool, out, HK: tl.constexpr, HV: tl.constexpr,
                       K: tl.constexpr, V: tl.constexpr, BV: tl.constexpr):
    """The slot copy plus every load of the triton kernel's first token (q and k of the key head, the
    tile's v, a, b, A_log, dt_bias), folded into the output so none is dropped: the GDN kernel's memory
    traffic and dependences without its arithmetic."""
    i_v, n, hv, h = tile_coords(tl.program_id(0), HV, HK, V // BV)
    s = tl.load(slots + n).to(tl.int64)
    offs_k = tl.arange(0, K)
    rows = i_v * BV + tl.arange(0, BV)
    qv = tl.load(q + (n * HK + h) * K + offs_k).to(tl.float32)
    kv = tl.load(k + (n * HK + h) * K + offs_k).to(tl.float32)
    vv = tl.load(v + (n * HV + hv) * V + rows).to(tl.float32)
    gates = (tl.load(a + n * HV + hv).to(tl.float32) + tl.load(b + n * HV + hv).to(tl.float32)
             + tl.load(A_log + hv) + tl.load(dt_bias + hv))
    p = pool + (s * HV + hv) * (K * V) + rows[:, None] * K + offs_k[None, :]
    tl.store(p, tl.load(p))
    tl.store(out + (n * HV + hv) * V + rows, (vv + (tl.sum(qv + kv, axis=0) + gates) * 0.0).to(out.dtype.element_ty))


class Probe:
    """A minimal backend for ``time_gpu``: ``name`` and ``build(case, inputs) -> launch``."""

    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind

    def build(self, case: Case, x):
        t = tile(case)
        grid = (case.batch * case.hv * (case.head_dim_v // t.bv),)
        if self.kind == "empty":
            return lambda: empty_kernel[grid](x.slots, num_warps=t.warps)
        if self.kind == "torch":
            n = case.batch * case.hv * case.head_dim_k * case.head_dim_v
            src = x.pool.reshape(-1)[:n]
            dst = torch.empty_like(src)
            return lambda: dst.copy_(src)
        if self.kind == "inputs":
            out = torch.empty_like(x.v)
            return lambda: inputs_copy_kernel[grid](x.q, x.k, x.v, x.a, x.b, x.A_log, x.dt_bias, x.slots, x.pool, out,
                                                    case.hk, case.hv, case.head_dim_k, case.head_dim_v, t.bv,
                                                    num_warps=t.warps)
        slot = self.kind == "slot"
        return lambda: state_copy_kernel[grid](x.slots, x.pool, case.hv, case.head_dim_k, case.head_dim_v, t.bv,
                                               slot, num_warps=t.warps)


def case(batch: int, hk: int, hv: int) -> Case:
    return Case(phase="decode", batch=batch, hk=hk, hv=hv, head_dim_k=128, head_dim_v=128, layout="k_last",
                state_dtype="bfloat16", dtype="bfloat16", tokens=1, seq_lens="", pool="scattered", write_back=True,
                intermediate=False, tree=False, seed=0)


def main() -> int:
    cfg = TimingConfig(mode="graph", min_samples=10, min_time_s=0.05, max_time_s=0.5, target_rel_noise=0.005)
    runs = [Probe("empty", "empty"), Probe("copy", "copy"), Probe("slot copy", "slot"),
            Probe("slot copy + inputs", "inputs"), Probe("torch copy", "torch"),
            get_backend("triton"), get_backend("triton_pdl")]
    bw = copy_bandwidth()["copy_gbps"]
    print(f"copy bandwidth {bw:.0f} GB/s ({torch.cuda.get_device_name()}); µs per launch (% of copy bandwidth)\n")
    print("| case | tile | " + " | ".join(r.name for r in runs) + " |")
    print("|---|---|" + "---:|" * len(runs))
    for c in (case(1, 16, 32), case(4, 16, 32), case(16, 16, 32), case(64, 16, 32), case(16, 4, 8), case(64, 4, 8)):
        cells = []
        for r in runs:
            us = time_gpu("graph", c, r, cfg).stats.median
            cells.append(f"{us:.2f} ({100 * c.bytes_moved() / (us * 1e-6) / 1e9 / bw:.1f}%)")
        t = tile(c)
        print(f"| B={c.batch} HK={c.hk} HV={c.hv} | BV={t.bv} w={t.warps} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
