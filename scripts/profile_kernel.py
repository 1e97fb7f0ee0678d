"""Launch one backend's kernel for one case under a profiler range, for Nsight Compute:

    ncu --profile-from-start off --section SpeedOfLight ... python3 scripts/profile_kernel.py \\
        --backend triton --batch 64 --state-dtype bfloat16 [--tokens 4 [--intermediate] [--no-write-back]]
        [--tile variant=chunk,bv=16,warps=1,blocks=4]

The gate runs first (a profile of a wrong kernel is worthless); warm-up launches compile and cache
outside the profiled range; exactly one launch is inside it (cudaProfilerStart/Stop).
"""

from __future__ import annotations

import argparse
import sys

import torch

from gdnbench.backends import get_backend
from gdnbench.backends.triton import TritonGDN
from gdnbench.backends.triton.tiles import Tile
from gdnbench.cases import Case
from gdnbench.check import run_gate
from gdnbench.inputs import make_inputs
from gdnbench.reference import reference
from gdnbench.vocab import BACKEND_NAMES, POOLS, STATE_DTYPES


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="triton", choices=BACKEND_NAMES)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hk", type=int, default=16)
    ap.add_argument("--hv", type=int, default=32)
    ap.add_argument("--state-dtype", default="bfloat16", choices=STATE_DTYPES)
    ap.add_argument("--tokens", type=int, default=1)
    ap.add_argument("--pool", default="scattered", choices=POOLS)
    ap.add_argument("--intermediate", action="store_true", help="MTP: keep every step's state in the buffer")
    ap.add_argument("--no-write-back", dest="write_back", action="store_false",
                    help="MTP verify: leave the pool's state as it was")
    ap.add_argument("--tile", default=None, help="triton only: Tile fields as name=value pairs, e.g. variant=gluon_rows,bv=64,warps=4")
    a = ap.parse_args()
    if a.tokens == 1 and (a.intermediate or not a.write_back):
        ap.error("--intermediate and --no-write-back are MTP options: give --tokens 2 or more")
    if not torch.cuda.is_available():
        ap.error("no CUDA GPU: this script profiles a kernel launch on one")
    case = Case(phase="mtp" if a.tokens > 1 else "decode", batch=a.batch, hk=a.hk, hv=a.hv, head_dim_k=128,
                head_dim_v=128, layout="k_last", state_dtype=a.state_dtype, dtype="bfloat16", tokens=a.tokens,
                seq_lens="", pool=a.pool, write_back=a.write_back, intermediate=a.intermediate, tree=False, seed=0)
    fields = dict(kv.split("=") for kv in a.tile.split(",")) if a.tile else {}
    tile = Tile(**{k: v if k == "variant" else int(v) for k, v in fields.items()}) if a.tile else None
    backend = TritonGDN(tile, pdl=a.backend == "triton_pdl") if tile else get_backend(a.backend)
    x = make_inputs(case, "cuda")
    gate = run_gate(case, backend, x, reference(x))
    kernel = backend.kernel(case) if hasattr(backend, "kernel") else backend.name
    print(f"{case.id} {backend.name}: {kernel}; gate {'pass' if gate.check.ok else 'FAIL ' + gate.check.message}",
          file=sys.stderr)
    fn = backend.build(case, x)
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    fn()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    return 0 if gate.check.ok else 1


if __name__ == "__main__":
    sys.exit(main())
