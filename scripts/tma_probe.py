"""The TMA-staged Gluon decode (``reread`` = 7) at several persistent tiles against each bf16 decode case's
table tile, graph-timed in one process, two rounds, every tile gated first. A tile is
``BV,warps,programs/SM,stages[,ahead]``. Usage on the GPU host:
``PYTHONPATH=$PWD python3 scripts/tma_probe.py ['16,16,32;64,4,8']`` (B,HK,HV cases; default all)."""
import sys

sys.path.insert(0, __file__.rsplit('/', 1)[0])  # tune_triton's case and timing settings, the probes' loop
from gdnbench.backends.triton_gdn import TritonGDN
from probe_common import run_rounds

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

    def variants(key):
        tiles = [None] + [tma_tile(s) for s in plans[key]]
        return [("table" if t is None else "t" + "x".join(map(str, (t[0], t[1], t[2], t[5], t[9]))),
                 lambda t=t: TritonGDN(tile_override=t)) for t in tiles]

    run_rounds(plans, variants, only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
