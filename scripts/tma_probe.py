"""The TMA-staged Gluon decode (``reread`` = 7) at several persistent tiles against each bf16 decode case's
table tile, graph-timed in one process, two rounds, every tile gated first. A tile is
``BV,warps,programs/SM,stages[,ahead]``. Usage on the GPU host:
``PYTHONPATH=$PWD python3 scripts/tma_probe.py ['16,16,32;64,4,8']`` (B,HK,HV cases; default all)."""
import sys

import torch
sys.path.insert(0, __file__.rsplit('/', 1)[0])  # tune_triton's case and timing settings
from gdnbench.backends.triton_gdn import TritonGDN
from gdnbench.check import run_gate
from gdnbench.inputs import make_inputs
from gdnbench.reference import reference
from gdnbench.timer import time_gpu
from tune_triton import CFG, case

MID = [(16, 1, 16, 2), (16, 1, 12, 3), (16, 2, 8, 2), (32, 2, 8, 2), (32, 4, 4, 4), (64, 4, 4, 2), (16, 1, 8, 4),
       (64, 4, 1, 12), (16, 1, 16, 3)]
plans = {
    (16, 16, 32): MID,
    (64, 4, 8): MID,
    (64, 16, 32): [(16, 1, 16, 2), (16, 1, 12, 3), (32, 2, 8, 2), (64, 4, 4, 2), (16, 1, 16, 3)],
}


def tma_tile(spec):
    bv, w, progs, stages, *ahead = spec
    return (bv, w, progs, 0, 0, stages, 7, 0, 0, *(ahead or [0]))


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
            for t in [None] + [tma_tile(s) for s in cands]:
                b = TritonGDN(tile_override=t)
                tag = "table" if t is None else "t" + "x".join(map(str, (t[0], t[1], t[2], t[5], t[9])))
                try:
                    g = run_gate(c, b, x, e)
                except Exception as exc:  # a tile that does not compile or launch: say so, go on
                    print(f"ERROR {tag} {c.id}: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
                    continue
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
