"""Measure gdnbench's CuTe DSL decode kernel over its tiles (BV rows per CTA x NVEC 16-byte vectors
per lane per row x threads per CTA) on this GPU, and write the fastest per (state dtype, head dims, batch * hv) to
gdnbench/backends/cute_tiles.json, which the ``cute`` backend reads. Every candidate first passes the
correctness gate; the gated timing loop and its settings are those of scripts/tune_triton.py.
Usage (GPU host): PYTHONPATH=$PWD python3 scripts/tune_cute.py [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tune_triton import case, measure, write_table  # the same cases, timing settings and gated timing loop

from gdnbench.backends.cute import TILES_FILE, CuteGDN, CuteTile, tile_reason
from gdnbench.cases import Case


def candidates(c: Case) -> list[CuteTile]:
    """Every tile the kernel accepts for this case: NVEC 1..8, BV 1..128 (at most 64 state elements per
    thread, BV a multiple of the CTA's row groups); CTAs of 32 and 64 threads only up to 1024 (row,
    head) pairs, where they give the launch more CTAs (at larger batches 128-thread CTAs already number
    in the thousands)."""
    threads = (32, 64, 128) if c.batch * c.hv <= 1024 else (128,)
    return [CuteTile(bv, nvec, n) for n in threads for nvec in (1, 2, 4, 8) for bv in (1, 2, 4, 8, 16, 32, 64, 128)
            if tile_reason(c, CuteTile(bv, nvec, n)) is None]


def plan() -> list[Case]:
    """The roofline-decode batches, TP1 heads, K-last (the only layout the kernel reads)."""
    return [case(b, sd=sd) for sd in ("bfloat16", "float32") for b in (1, 4, 16, 32, 64, 128, 256, 512)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("."))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows, best = [], {}
    t0 = time.time()
    for c in plan():
        results = measure(c, candidates(c), CuteGDN, rows)
        if results:
            us, t = min(results)
            best[(c.state_dtype, c.head_dim_k, c.head_dim_v, c.batch * c.hv)] = (us, t)
            print(f"{c.id:70s} best BV={t.bv:3d} NVEC={t.nvec} threads={t.threads:3d}  {us:9.2f} us  (of {len(results)}; worst "
                  f"{max(results)[0]:.2f})  [{time.time() - t0:.0f}s]", flush=True)
        write(best, rows, args.out)  # after every case: a run cut short keeps what it measured
    print(f"wrote {TILES_FILE} ({len(best)} entries) in {time.time() - t0:.0f}s")
    return 0


def write(best: dict, rows: list, out: Path) -> None:
    entries = [{"state_dtype": k[0], "head_dim_k": k[1], "head_dim_v": k[2], "pairs_min": k[3], "bv": t.bv,
                "nvec": t.nvec, "threads": t.threads, "median_us": round(us, 3)} for k, (us, t) in sorted(best.items())]
    write_table(TILES_FILE, entries, "fastest cute tile per measured case (graph timer, scattered K-last pool); "
                "lookups take the entry with the largest pairs_min <= batch * hv", out / "tune_cute.csv",
                ["case_id", "bv", "nvec", "threads", "median_us", "note"], rows, out)


if __name__ == "__main__":
    sys.exit(main())
