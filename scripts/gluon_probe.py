"""The Gluon decode (``reread`` = 6) at several (BV, warps, ahead) against each bf16 decode case's table tile,
graph-timed in one process, two rounds, every tile gated first. Usage on the GPU host:
``PYTHONPATH=$PWD python3 scripts/gluon_probe.py ['16,16,32;64,4,8']`` (B,HK,HV cases; default all)."""
import sys

sys.path.insert(0, __file__.rsplit('/', 1)[0])  # tune_triton's case and timing settings, the probes' loop
from gdnbench.backends.triton_gdn import TritonGDN
from probe_common import run_rounds

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

    def variants(key):
        tiles = [None] + [(bv, w, 0, 0, 0, 0, 6, 0, 0, a) for bv, w, a in plans[key]]
        return [("table" if t is None else f"g{t[0]}x{t[1]}a{t[9]}", lambda t=t: TritonGDN(tile_override=t))
                for t in tiles]

    run_rounds(plans, variants, only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
