"""Tuning the ``cute`` backend: its candidate tiles (BV rows per CTA x NVEC 16-byte vectors per lane x
threads per CTA), the case class a table entry serves (state dtype, head dims, batch x value heads) and
its ``SPEC`` for ``gdnbench tune --backend cute`` (``session.py``). The module's own command tunes a
fixed plan of roofline classes into the shipped table of this GPU:

    python -m gdnbench.tune.cute [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gdnbench.backends.cute.tiles as tiles_module
from gdnbench.backends.cute import CuteGDN
from gdnbench.backends.cute.tiles import CuteTile, heuristic_tile, tile_reason
from gdnbench.cases import Case
from gdnbench.tune.common import TunerSpec, case

NOTE = ("fastest cute tile per measured case (graph timer, scattered K-last pool); lookups take the entry with the "
        "largest pairs_min <= batch * hv")


def class_key(c: Case) -> tuple:
    return (c.state_dtype, c.head_dim_k, c.head_dim_v, c.batch * c.hv)


def entry(k: tuple, t: CuteTile) -> dict:
    return {"state_dtype": k[0], "head_dim_k": k[1], "head_dim_v": k[2], "pairs_min": k[3], **t.entry()}


def key_of(e: dict) -> tuple:
    return (e["state_dtype"], e["head_dim_k"], e["head_dim_v"], e["pairs_min"])


def candidates(c: Case) -> list[CuteTile]:
    """The heuristic tile (what the case runs with no table) and every tile the kernel accepts: NVEC
    1..8, BV 1..128 (at most 64 state elements per thread, BV a multiple of the CTA's row groups); CTAs
    of 32 and 64 threads only up to 1024 (row, head) pairs, where they give the launch more CTAs (at
    larger batches 128-thread CTAs already number in the thousands)."""
    threads = (32, 64, 128) if c.batch * c.hv <= 1024 else (128,)
    tiles = [heuristic_tile(c)] + [CuteTile(bv, nvec, n) for n in threads for nvec in (1, 2, 4, 8)
                                   for bv in (1, 2, 4, 8, 16, 32, 64, 128)]
    return list({t.name: t for t in tiles if tile_reason(c, t) is None}.values())


def plan() -> list[Case]:
    """The roofline-decode batches, TP1 heads, K-last (the only layout the kernel reads)."""
    return [case(b, sd=sd) for sd in ("bfloat16", "float32") for b in (1, 4, 16, 32, 64, 128, 256, 512)]


SPEC = TunerSpec(backend="cute", make_backend=CuteGDN, candidates=candidates, class_key=class_key, entry=entry,
                 key_of=key_of, from_entry=CuteTile.from_entry, tiles=tiles_module, note=NOTE)


def tune(cases: list[Case], out: Path, log=print) -> Path | None:
    """Measure ``cases`` over every candidate and write this GPU's shipped table (``session.tune_plan``)."""
    from gdnbench.tune.session import tune_plan

    return tune_plan(SPEC, cases, out, log)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("."))
    args = ap.parse_args(argv)
    print(f"wrote {tune(plan(), args.out, log=lambda s: print(s, flush=True))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
