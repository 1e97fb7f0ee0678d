"""Tuning the ``triton`` backend: its candidate tiles per case, the case class a table entry serves
(layout, state dtype, head dims, decode / MTP with its T and buffers, batch x value heads) and its ``SPEC`` for
``gdnbench tune --backend triton`` (``session.py``). Every candidate passes the correctness gate
first; cases sharing a class get the tile with the least summed slowdown over all of them.

The module's own command tunes a fixed plan of roofline classes into the shipped table of this GPU:

    python -m gdnbench.tune.triton [--out DIR] [--only decode|mtp] [--batches 16,64]
        [--state-dtypes bfloat16] [--family chunk|gluon|tma]

Candidates are :class:`Tile` instances named by variant (see ``candidates``); ``--family`` measures
one family next to each case's current tile, keeping the other classes' entries.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import gdnbench.backends.triton.tiles as tiles_module
from gdnbench.backends.base import triton_interpreted
from gdnbench.backends.triton import TritonGDN
from gdnbench.backends.triton.plan import plan as launch_plan
from gdnbench.backends.triton.plan import register_cap
from gdnbench.backends.triton.tiles import Tile, Variant, chunk_reason, heuristic_tile, tile, tile_reason
from gdnbench.cases import Case
from gdnbench.tune.common import TunerSpec, case

KCS = (0, 64, 32)  # K chunk of the per-token register tile: whole K, or 2 / 4 chunks at K = 128
UNCAPPED = 255  # maxnreg of an uncapped twin: ptxas's own limit per thread, so no cap binds
NOTE = ("fastest tile per measured case (graph timer, scattered pool); lookups take the entry with the largest "
        "pairs_min <= batch * hv")
P, C, G, TMA = Variant.PER_TOKEN, Variant.CHUNK, Variant.GLUON_ROWS, Variant.GLUON_TMA


def per_token_candidates(c: Case) -> list[Tile]:
    """One program per tile with 16..64 state elements per thread (K = 128) at every K chunk; for decode
    the 64-element tiles also with an L2 prefetch 2-8 programs per SM ahead (the next wave's tile); for
    MTP the tiles ``plan.register_cap`` caps (64 elements a thread) also uncapped (``UNCAPPED``), so a
    table can hold the tile the cap slows (fp32 state with the buffer spills under it)."""
    out = []
    for bv in (4, 8, 16, 32, 64):
        for w in (1, 2, 4, 8):
            per_thread = bv * c.head_dim_k // (32 * w)
            if 16 <= per_thread <= 64 and (bv, w) not in ((64, 8), (32, 8)) and (c.layout == "k_last" or bv >= 16):
                tiles = [Tile(bv, w, P, kc=kc) for kc in KCS]
                out += tiles + [replace(t, maxnreg=UNCAPPED) for t in tiles if register_cap(c, t)]
                if c.tokens == 1 and per_thread == 64:
                    out += [Tile(bv, w, P, ahead=ahead) for ahead in (2, 4, 8)]
    return out


def gluon_candidates(c: Case) -> list[Tile]:
    """The Gluon decode (K-last, GPU only): 2-, 4- and 16-row warps at 1-8 warps per program, 16-row warps
    also with the L2 prefetch 2 and 4 programs per SM ahead, each with every L2 eviction policy."""
    if c.tokens > 1 or c.layout != "k_last" or triton_interpreted():
        return []
    return [Tile(rows * w, w, G, kc=kc, ahead=ahead, cache=cache) for rows in (2, 4, 16) for w in (1, 2, 4, 8)
            for kc in (0, 16) for ahead in ((0, 2, 4) if rows == 16 else (0,)) for cache in (0, 1, 2)]


def tma_candidates(c: Case) -> list[Tile]:
    """The TMA-staged decode (sm90+, kept as a candidate: ``Variant.GLUON_TMA``): its best probe tiles,
    16 warps per SM with 2-3 buffers each."""
    if c.tokens > 1 or c.layout != "k_last" or triton_interpreted():
        return []
    tiles = [Tile(16, 1, TMA, progs_per_sm=16, stages=2), Tile(16, 1, TMA, progs_per_sm=16, stages=3),
             Tile(32, 2, TMA, progs_per_sm=8, stages=2)]
    return [t for t in tiles if tile_reason(c, t) is None]


def chunk_candidates(c: Case) -> list[Tile]:
    """The chunk-form MTP kernel: BV rows x warps per block, 1-8 blocks of a head's rows per program, the
    loop over them unpipelined or over 2 or 3 stages; 1-warp blocks also under a 128-register cap; 16-row
    blocks also with the program's rows asked of L2 before the head's algebra, and with the first 1-2
    asked and L2 kept 1-2 blocks ahead in the loop, uncapped or at 168 registers."""
    if c.tokens == 1 or chunk_reason(c, 16) is not None:
        return []
    out = [Tile(bv, w, C, blocks=steps, stages=stages)
           for bv, w in ((16, 1), (16, 2), (16, 4), (32, 2), (32, 4), (64, 4))
           for steps in (1, 2, 4, 8) if bv * steps <= c.head_dim_v for stages in ((0,) if steps == 1 else (0, 2, 3))]
    out += [Tile(16, 1, C, blocks=steps, stages=stages, maxnreg=128) for steps in (4, 8) for stages in (0, 2)]
    out += [Tile(16, w, C, blocks=steps, stages=stages, maxnreg=cap, prefetch=steps)
            for w, cap in ((1, 0), (1, 128), (2, 0)) for steps in (4, 8) for stages in (2, 3)]
    out += [Tile(16, 1, C, blocks=steps, stages=stages, maxnreg=cap, prefetch=pf, ahead=ahead)
            for steps in (4, 8) for stages in (2, 3) for cap in (0, 168) for pf in (1, 2) for ahead in (1, 2)]
    return out


FAMILIES = {"chunk": chunk_candidates, "gluon": gluon_candidates, "tma": tma_candidates}


def candidates(c: Case) -> list[Tile]:
    """Every family's candidates that can run ``c``, and the heuristic tile (what the case runs with no
    table), so a tuned entry is never one the heuristic beats."""
    tiles = [heuristic_tile(c), *per_token_candidates(c), *gluon_candidates(c), *tma_candidates(c),
             *chunk_candidates(c)]
    return list({t.name: t for t in tiles if tile_reason(c, t) is None}.values())


def plan(only: str | None = None, batches: set[int] | None = None, dtypes: set[str] | None = None) -> list[Case]:
    """The K-last classes the roofline targets cover (V-last keeps the heuristic tile); ``batches`` /
    ``dtypes``: only those batch sizes / state dtypes."""
    bs = (1, 4, 16, 64, 128, 256, 512)
    cases = [case(b, sd=sd) for sd in ("bfloat16", "float32") for b in bs]
    cases += [case(b, hk=4, hv=8) for b in bs]
    cases += [case(b, sd=sd, tokens=4) for sd in ("bfloat16", "float32") for b in (1, 4, 16, 64, 128, 256)]
    return [c for c in cases if (only is None or (c.tokens > 1) == (only == "mtp"))
            and (not batches or c.batch in batches) and (not dtypes or c.state_dtype in dtypes)]


def class_key(c: Case) -> tuple:
    """(layout, state dtype, K, V, MTP, T, intermediate buffer, write-back, batch x value heads); the
    three MTP fields are None for decode. T and the buffers change the bytes a program moves per state
    row (T intermediate states written, the final state or not), so MTP variants are tuned apart."""
    mtp = c.tokens > 1
    return (c.layout, c.state_dtype, c.head_dim_k, c.head_dim_v, mtp, c.tokens if mtp else None,
            c.intermediate if mtp else None, c.write_back if mtp else None, c.batch * c.hv)


def entry(k: tuple, t: Tile) -> dict:
    extra = {f: v for f, v in zip(tiles_module.MTP_FIELDS, k[5:8]) if v is not None}
    return {"layout": k[0], "state_dtype": k[1], "head_dim_k": k[2], "head_dim_v": k[3], "mtp": k[4], **extra,
            "pairs_min": k[8], **t.entry()}


def key_of(e: dict) -> tuple:
    """An entry's class key; an entry without the MTP fields (tuned before they existed) has None there."""
    return (e["layout"], e["state_dtype"], e["head_dim_k"], e["head_dim_v"], e["mtp"],
            *(e.get(f) for f in tiles_module.MTP_FIELDS), e["pairs_min"])


def coarser(k: tuple) -> tuple:
    """The key an MTP class had before T and the buffers were part of it (what its cases ran before)."""
    return (*k[:5], None, None, None, k[8])


def compile_key(c: Case, t: Tile) -> tuple:
    """What Triton compiles for ``c`` with ``t``: the tile, the dtypes, the kernel's constexprs (heads,
    head dims, T, layout and buffers, not the batch), compile options, and how Triton specialises the one
    integer argument, the tile count (a multiple of 16, or 1). Cases with equal keys share one kernel, so
    compiling ahead builds it once (``warm.py``)."""
    p = launch_plan(c, t, interpreted=triton_interpreted())
    n_tiles = c.batch * c.hv * (c.head_dim_v // t.bv)
    return (t.name, c.dtype, c.state_dtype, p.kernel, tuple(sorted(p.constexprs.items())),
            tuple(sorted(p.options.items())), n_tiles % 16 == 0, n_tiles == 1)


SPEC = TunerSpec(backend="triton", make_backend=TritonGDN, candidates=candidates, class_key=class_key, entry=entry,
                 key_of=key_of, from_entry=Tile.from_entry, tiles=tiles_module, note=NOTE, coarser=coarser,
                 compile_key=compile_key)


def tune(cases: list[Case], out: Path, family: str | None = None, log=print) -> Path | None:
    """Measure ``cases`` (all candidates, or one ``family`` next to each case's current tile) and write
    this GPU's shipped table: the re-measured classes replaced, the others kept (``session.tune_plan``)."""
    from gdnbench.tune.session import tune_plan

    pick = (lambda c: [t for t in [tile(c)] + FAMILIES[family](c) if tile_reason(c, t) is None]) if family else None
    return tune_plan(SPEC, cases, out, log, pick, name=f"plan-{family}" if family else "plan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("."))
    ap.add_argument("--only", choices=("decode", "mtp"), default=None)
    ap.add_argument("--batches", default="", help="comma-separated batch sizes: re-measure only those")
    ap.add_argument("--state-dtypes", default="", help="comma-separated state dtypes: re-measure only those")
    ap.add_argument("--family", choices=sorted(FAMILIES), default=None,
                    help="measure only this family's tiles, next to each case's current tile")
    args = ap.parse_args(argv)
    cases = plan(args.only, {int(b) for b in args.batches.split(",") if b}, {d for d in args.state_dtypes.split(",") if d})
    path = tune(cases, args.out, args.family, log=lambda s: print(s, flush=True))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
