"""Tune the ``cute`` backend: time its decode kernel over its tiles (BV rows per CTA x NVEC 16-byte
vectors per lane x threads per CTA) on this GPU and write the fastest per (state dtype, head dims,
batch x value heads) to this GPU's table (``gdnbench/backends/cute/tables/``). Every candidate passes
the correctness gate first; the timing loop and settings are ``gdnbench.tune.common``'s.

    python -m gdnbench.tune.cute [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gdnbench.backends.cute import CuteGDN
from gdnbench.backends.cute.tiles import TABLES, CuteTile, tile_reason
from gdnbench.cases import Case
from gdnbench.tune.common import case, log_best, measure, write_outputs

FIELDS = ["bv", "nvec", "threads"]
NOTE = ("fastest cute tile per measured case (graph timer, scattered K-last pool); lookups take the entry with the "
        "largest pairs_min <= batch * hv")


def entry(k: tuple, t: CuteTile) -> dict:
    return {"state_dtype": k[0], "head_dim_k": k[1], "head_dim_v": k[2], "pairs_min": k[3], "bv": t.bv, "nvec": t.nvec,
            "threads": t.threads}


def candidates(c: Case) -> list[CuteTile]:
    """Every tile the kernel accepts for this case: NVEC 1..8, BV 1..128 (at most 64 state elements per
    thread, BV a multiple of the CTA's row groups); CTAs of 32 and 64 threads only up to 1024 (row, head)
    pairs, where they give the launch more CTAs (at larger batches 128-thread CTAs already number in the
    thousands)."""
    threads = (32, 64, 128) if c.batch * c.hv <= 1024 else (128,)
    return [CuteTile(bv, nvec, n) for n in threads for nvec in (1, 2, 4, 8) for bv in (1, 2, 4, 8, 16, 32, 64, 128)
            if tile_reason(c, CuteTile(bv, nvec, n)) is None]


def plan() -> list[Case]:
    """The roofline-decode batches, TP1 heads, K-last (the only layout the kernel reads)."""
    return [case(b, sd=sd) for sd in ("bfloat16", "float32") for b in (1, 4, 16, 32, 64, 128, 256, 512)]


def tune(cases: list[Case], out: Path, log=print) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    rows: list = []
    best: dict[tuple, tuple[float, CuteTile]] = {}
    t0 = time.time()
    path = TABLES
    for c in cases:
        results = measure(c, candidates(c), CuteGDN, rows)
        if results:
            best[(c.state_dtype, c.head_dim_k, c.head_dim_v, c.batch * c.hv)] = log_best(c, results, t0, log)
        path = write_outputs(TABLES, NOTE, best, entry, rows, FIELDS, out, "tune_cute.csv")  # after every case
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("."))
    args = ap.parse_args(argv)
    print(f"wrote {tune(plan(), args.out, log=lambda s: print(s, flush=True))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
