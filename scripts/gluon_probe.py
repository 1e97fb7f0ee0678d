"""The Gluon decode (``reread`` = 6) at several (BV, warps, ahead) against each bf16 decode case's table tile,
graph-timed in one process, two rounds, every tile gated first. Usage on the GPU host:
``PYTHONPATH=$PWD python3 scripts/gluon_probe.py ['16,16,32;64,4,8']`` (B,HK,HV cases; default all)."""
import sys

import torch
sys.path.insert(0, __file__.rsplit('/', 1)[0])  # tune_triton's case and timing settings
from gdnbench.backends.triton_gdn import TritonGDN
from gdnbench.check import run_gate
from gdnbench.inputs import make_inputs
from gdnbench.reference import reference
from gdnbench.timer import time_gpu
from tune_triton import CFG, case

plans = {
    (16, 16, 32): [(16, 1, 4), (64, 4, 0), (64, 4, 4), (64, 4, 2), (128, 8, 0), (128, 8, 4), (32, 2, 4), (128, 8, 2)],
    (64, 4, 8): [(16, 1, 4), (64, 4, 0), (64, 4, 4), (64, 4, 2), (128, 8, 0), (128, 8, 4), (32, 2, 4), (128, 8, 2)],
    (1, 16, 32): [(4, 1, 0), (2, 1, 0), (8, 2, 0), (16, 4, 0), (32, 8, 0), (8, 1, 0)],
    (1, 4, 8): [(2, 1, 0), (4, 1, 0), (8, 2, 0), (16, 4, 0)],
    (4, 4, 8): [(4, 1, 0), (8, 2, 0), (16, 4, 0), (32, 8, 0)],
    (4, 16, 32): [(16, 1, 0), (64, 4, 0), (32, 2, 0), (128, 8, 0)],
    (64, 16, 32): [(16, 1, 4), (64, 4, 4), (64, 4, 2), (128, 8, 4), (128, 8, 2)],
    (256, 16, 32): [(16, 1, 2), (64, 4, 2), (128, 8, 2), (64, 4, 4)],
}


def main() -> int:
    only = set(sys.argv[1].split(';')) if len(sys.argv) > 1 else None
    for rnd in (1, 2):
        for (B, HK, HV), cands in plans.items():
            if only and f"{B},{HK},{HV}" not in only:
                continue
            c = case(B, HK, HV)
            x = make_inputs(c, "cuda")
            e = reference(x)
            res = []
            for t in [None] + [(bv, w, 0, 0, 0, 0, 6, 0, 0, a) for bv, w, a in cands]:
                b = TritonGDN(tile_override=t)
                g = run_gate(c, b, x, e)
                tag = "table" if t is None else f"g{t[0]}x{t[1]}a{t[9]}"
                if not g.check.ok:
                    print(f"FAILED {tag} {c.id}: {g.check.message}", flush=True)
                    continue
                us = time_gpu("graph", c, b, CFG).stats.median
                res.append((us, tag))
            print(f"round {rnd} B={B} HK={HK} HV={HV}: " + "  ".join(f"{n}={u:.3f}" for u, n in res), flush=True)
            del x, e
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
