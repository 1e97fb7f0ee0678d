"""Measure gdnbench's Triton GDN kernels over tile choices (BV rows x warps, the grid size of the
persistent kernel, the K chunk KC of the register tile, and for MTP the chunk-form kernel) on this GPU, and write the fastest per (layout,
state dtype, head dims, decode/MTP, batch * hv) to gdnbench/backends/triton_tiles.json, which the
``triton`` backend reads. Every candidate first passes the correctness gate.
Usage (GPU host): PYTHONPATH=$PWD python3 scripts/tune_triton.py [--out DIR] [--only decode|mtp]
[--batches 16,64] [--state-dtypes bfloat16] (re-measure those classes; the table's other entries stay).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch

from gdnbench.backends.base import triton_interpreted
from gdnbench.backends.triton_gdn import TILES_FILE, Tile, TritonGDN, chunk_reason, tile_reason, tma_reason, tuned_tiles
from gdnbench.cases import Case
from gdnbench.check import run_gate
from gdnbench.config import Timing
from gdnbench.inputs import make_inputs
from gdnbench.reference import reference
from gdnbench.timer import time_gpu

CFG = Timing(warmup=2, min_samples=5, max_samples=200, min_time_s=0.02, max_time_s=0.1, target_rel_noise=0.01)


def case(batch, hk=16, hv=32, layout="k_last", sd="bfloat16", tokens=1) -> Case:
    return Case(phase="mtp" if tokens > 1 else "decode", batch=batch, hk=hk, hv=hv, head_dim_k=128, head_dim_v=128,
                layout=layout, state_dtype=sd, dtype="bfloat16", tokens=tokens, seq_lens="", pool="scattered",
                write_back=True, intermediate=False, tree=False, seed=7)


KCS = (0, 64, 32)  # K chunk of the per-token kernels' register tile: whole K, or 2 / 4 chunks at K = 128


NFIELDS = len(Tile._fields)  # (BV, warps, programs per SM, chunk, KC, stages, reread, maxnreg, prefetch, ahead, cache)


def candidates(case: Case) -> list[tuple[int, ...]]:
    """Tiles as ``Tile`` tuples: one-program-per-tile tiles with 16..64 state elements per thread
    (K = 128), the persistent kernel at the tiles and grid sizes that keep ~32 KB of state loads in
    flight per SM without running out of registers (no tree: it has none), each at every K chunk in
    KCS; the Triton-pipelined persistent kernel at 2 and 3 stages where the grid's shared-memory
    buffers fit (whole-K tiles); for decode the two-pass (reread) tiles, also at a 64-register cap (all
    1-warp programs of 512 row-heads resident at once), and the 64-element one-pass tiles at register
    caps of 96-112 and with an L2 prefetch of the next wave's tile (``ahead``), the small tiles with q
    and k loaded in the tile's layout (``reread`` = 2) or as vectors with the norms on the row sums, with
    and without the slot branch (3, 4), the row sums as a tensor-core dot (5) and the Gluon decode at 1-8
    warps (6, K-last, not under the interpreter), each with the state's default or evict-first L2 policy
    (``cache``), and its TMA-staged persistent form (7, sm90+); and for MTP the chunk-form kernel (tensor-core dots need
    BV >= 16)."""
    return [full(t) for t in _candidates(case)]


def full(t: tuple[int, ...]) -> tuple[int, ...]:
    """A candidate as a whole ``Tile`` tuple (the fields it leaves out are 0)."""
    return t + (0,) * (NFIELDS - len(t))


def _candidates(case: Case) -> list[tuple[int, ...]]:
    out = []
    for bv in (4, 8, 16, 32, 64):
        if case.layout == "v_last" and bv < 16:
            continue
        for w in (1, 2, 4, 8):
            per_thread = bv * case.head_dim_k // (32 * w)
            if 16 <= per_thread <= 64 and (bv, w) not in ((64, 8), (32, 8)):
                out += [(bv, w, 0, 0, kc) for kc in KCS]
    if case.tokens == 1:
        for bv, w in ((8, 1), (16, 1), (16, 2), (32, 2)):
            if case.layout == "v_last" and bv < 16:
                continue
            out += [(bv, w, 0, 0, kc, 0, 1) for kc in (0, 64)]
            if bv * case.head_dim_k // (32 * w) == 64:
                out += [(bv, w, 0, 0, kc, 0, 1, 64) for kc in (0, 64)]
                # one pass under a register cap: ptxas takes 126 for these tiles (16 warps per SM); 112
                # spills nothing (18 warps), 104 / 96 park 16 / 48 bytes on the stack (19 / 21 warps)
                out += [(bv, w, 0, 0, kc, 0, 0, cap) for kc in (0, 64) for cap in (96, 104, 112)]
                # L2 asked for the next wave's tile (ahead = programs per SM; 16 fit at ~126 registers)
                out += [(bv, w, 0, 0, 0, 0, 0, 0, 0, ahead) for ahead in (8, 16)]
        # one pass with q and k in the tile's register layout (1-2 rows per thread: small batches), with q
        # and k as vectors and the norms on the row sums (3), the same without the slot branch (4)
        out += [(bv, w, 0, 0, kc, 0, reread) for bv, w in ((4, 1), (8, 1), (8, 2)) for kc in (0, 64)
                for reread in (2, 3, 4) if case.layout == "k_last" or bv >= 16]
        out += [(2, 1, 0, 0, 0, 0, reread) for reread in (3, 4) if case.layout == "k_last"]
        # the row sums as one tensor-core dot (bf16 q / k)
        if case.dtype == "bfloat16":
            out += [(bv, w, 0, 0, 0, 0, 5) for bv, w in ((16, 1), (32, 2), (64, 4))]
        # the Gluon decode (K-last, GPU only): every warp owns whole rows, so 1-8 warps per program behave
        # alike per warp at fewer programs; 16-row warps also with the L2 prefetch 2 and 4 programs per SM ahead
        if case.layout == "k_last" and not triton_interpreted():
            out += [(rows * w, w, 0, 0, kc, 0, 6, 0, 0, ahead, cache) for rows in (2, 4, 16) for w in (1, 2, 4, 8)
                    for kc in (0, 16) for ahead in ((0, 2, 4) if rows == 16 else (0,)) for cache in (0, 1, 2)]
            # persistent: 16 warps per SM walking the tiles, the next tile's state asked of L2 (ptxas gives the
            # loop 168 registers: also under a 128 cap, so all 16 warps fit)
            out += [(16 * w, w, 16 // w, 0, 16, 0, 6, cap, 0, 1) for w in (1, 2, 4) for cap in (0, 128)]
            # the TMA-staged persistent decode (sm90+): its best probe tiles, 16 warps per SM, 2-3 buffers each
            out += [t for t in ((16, 1, 16, 0, 0, 2, 7), (16, 1, 16, 0, 0, 3, 7), (32, 2, 8, 0, 0, 2, 7))
                    if tma_reason(case, Tile(*full(t))) is None]
    out += chunk_candidates(case)
    if not case.tree:
        for bv, w in ((8, 1), (16, 1), (16, 2), (32, 2), (32, 4)):
            if case.layout == "v_last" and bv < 16:
                continue
            for progs in (4, 8, 16):
                if progs * w <= 32:
                    out += [(bv, w, progs, 0, kc) for kc in KCS]
        state_bytes = torch.finfo(getattr(torch, case.state_dtype)).bits // 8
        pairs = ((8, 1), (16, 1), (32, 2), (64, 4)) if case.tokens == 1 else ((8, 1), (16, 1))
        for bv, w in pairs:
            if case.layout == "v_last" and bv < 16:
                continue
            for stages in ((2, 3) if case.tokens == 1 else (2,)):
                buf = stages * bv * case.head_dim_k * state_bytes  # the state's shared-memory ring per program
                for progs in (2, 4, 8, 12, 16):
                    if progs * w <= 16 and progs * buf <= 160 * 1024:
                        out.append((bv, w, progs, 0, 0, stages))
    return out


def chunk_candidates(case: Case) -> list[tuple[int, ...]]:
    """The chunk-form MTP kernel: BV rows x warps per block, 1-8 blocks of a head's rows per program
    (the head's T x T algebra done once for all of them), the loop over the blocks unpipelined or
    software-pipelined over 2 or 3 stages; 1-warp blocks also under a 128-register cap; 16-row blocks
    also with the program's rows prefetched into L2, and with the first 1-2 prefetched and L2 kept 1-2
    blocks ahead in the loop (``ahead``), uncapped or at 168 registers."""
    if case.tokens == 1 or chunk_reason(case, 16) is not None:
        return []
    out = [(bv, w, 0, steps, 0, stages) for bv, w in ((16, 1), (16, 2), (16, 4), (32, 2), (32, 4), (64, 4))
           for steps in (1, 2, 4, 8) if bv * steps <= case.head_dim_v
           for stages in ((0,) if steps == 1 else (0, 2, 3))]
    # one warp per block under a 128-register cap: 16 programs per SM (ptxas takes ~166 at bf16 T = 4)
    out += [(16, 1, 0, steps, 0, stages, 0, 128) for steps in (4, 8) for stages in (0, 2)]
    # a program's rows requested into L2 before the head's algebra (the loop's loads then hit in L2)
    out += [(16, w, 0, steps, 0, stages, 0, cap, steps) for w, cap in ((1, 0), (1, 128), (2, 0))
            for steps in (4, 8) for stages in (2, 3)]
    # the first 1-2 blocks requested before the algebra, and L2 kept 1-2 blocks ahead in the loop
    out += [(16, 1, 0, steps, 0, stages, 0, cap, pf, ahead) for steps in (4, 8) for stages in (2, 3)
            for cap in (0, 168) for pf in (1, 2) for ahead in (1, 2)]
    return out + persist_candidates(case)


def persist_candidates(case: Case) -> list[tuple[int, ...]]:
    """The chunk-form MTP kernel on a persistent grid (all row blocks shared out evenly, so no partial
    last wave): 12 one-warp programs per SM (what fits at its 168-register default) over 2 or 3 stages,
    with 0, 2 or 4 blocks of each head prefetched into L2; 16 per SM under a 128-register cap; 8 per SM."""
    if case.tokens == 1 or chunk_reason(case, 16) is not None:
        return []
    out = [(16, 1, 12, 1, 0, stages, 0, 0, pf) for stages in (2, 3) for pf in (0, 2, 4)]
    return out + [(16, 1, 16, 1, 0, 2, 0, 128, pf) for pf in (0, 2)] + [(16, 1, 8, 1, 0, 2)]


def plan(only: str | None = None, batches: set[int] | None = None, dtypes: set[str] | None = None) -> list[Case]:
    """K-last classes the roofline targets cover (V-last keeps the heuristic tile); ``batches`` /
    ``dtypes``: only those batch sizes / state dtypes."""
    bs = (1, 4, 16, 64, 128, 256, 512)
    cases = [case(b, sd=sd) for sd in ("bfloat16", "float32") for b in bs]
    cases += [case(b, hk=4, hv=8) for b in bs]
    cases += [case(b, sd=sd, tokens=4) for sd in ("bfloat16", "float32") for b in (1, 4, 16, 64, 128, 256)]
    return [c for c in cases if (only is None or (c.tokens > 1) == (only == "mtp"))
            and (not batches or c.batch in batches) and (not dtypes or c.state_dtype in dtypes)]


def class_key(c: Case) -> tuple:
    return (c.layout, c.state_dtype, c.head_dim_k, c.head_dim_v, c.tokens > 1, c.batch * c.hv)


def measure(c: Case, tiles: list[tuple], make_backend, rows: list) -> list[tuple[float, tuple]]:
    """Gate, then graph-time, ``make_backend(tile_override=t)`` for every tile on one set of inputs.
    Returns (median µs, tile) for the tiles that passed; appends one CSV row per tile to ``rows``
    (a failed gate: no time, the gate's message)."""
    x = make_inputs(c, "cuda")
    e = reference(x)
    results = []
    for t in tiles:
        b = make_backend(tile_override=t)
        try:
            g = run_gate(c, b, x, e)
        except Exception as err:  # noqa: BLE001 -- e.g. a tile whose shared memory or registers the GPU cannot give
            rows.append((c.id, *t, "", f"FAILED: {type(err).__name__}: {str(err).splitlines()[0][:200]}"))
            continue
        if not g.check.ok:
            rows.append((c.id, *t, "", f"FAILED: {g.check.message}"))
            continue
        us = time_gpu("graph", c, b, CFG).stats.median
        results.append((us, t))
        rows.append((c.id, *t, f"{us:.3f}", ""))
    del x, e
    torch.cuda.empty_cache()
    return results


def key_of(e: dict) -> tuple:
    return (e["layout"], e["state_dtype"], e["head_dim_k"], e["head_dim_v"], e["mtp"], e["pairs_min"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("."))
    ap.add_argument("--only", choices=("decode", "mtp"), default=None)
    ap.add_argument("--batches", default="", help="comma-separated batch sizes: re-measure only those")
    ap.add_argument("--state-dtypes", default="", help="comma-separated state dtypes: re-measure only those")
    ap.add_argument("--family", choices=("all", "chunk", "persist"), default="all",
                    help="chunk: only the chunk-form MTP tiles, next to each case's tile in the current table; "
                         "persist: only its persistent-grid tiles, likewise")
    ap.add_argument("--tiles", default="", help="explicit tiles, e.g. '16,1,0,8,0,4,0,168 16,1,0,4,0,2,0,0,4' "
                    "(Tile fields in order, the rest 0): these next to each case's current tile, where they are valid")
    args = ap.parse_args()
    try:
        given = [full(tuple(int(f) for f in t.split(","))) for t in args.tiles.split()]
    except ValueError:
        ap.error(f"--tiles: comma-separated integers per tile, tiles separated by spaces (got {args.tiles!r})")
    args.out.mkdir(parents=True, exist_ok=True)
    cases = plan(args.only, {int(b) for b in args.batches.split(",") if b},
                 {d for d in args.state_dtypes.split(",") if d})
    measured = {class_key(c) for c in cases}
    # entries of classes not re-measured here stay as they are
    best = {key_of(e): (e["median_us"], tuple(int(e.get(f, 0)) for f in Tile._fields))
            for e in tuned_tiles() if key_of(e) not in measured}
    rows = []
    by_class: dict[tuple, dict[str, dict[tuple, float]]] = {}  # class -> case id -> tile -> µs
    t0 = time.time()
    for c in cases:
        if given:  # explicit tiles (over --family), next to the case's current one
            tiles = [tuple(TritonGDN().tile(c))] + [t for t in given if tile_reason(c, Tile(*t)) is None]
        elif args.family != "all":
            family = chunk_candidates if args.family == "chunk" else persist_candidates
            tiles = [tuple(TritonGDN().tile(c))] + [full(t) for t in family(c)]
        else:
            tiles = candidates(c)
        results = measure(c, tiles, TritonGDN, rows)
        if results:
            us, t = min(results)
            key = class_key(c)
            by_class.setdefault(key, {})[c.id] = {tile_: us_ for us_, tile_ in results}
            best[key] = class_choice(by_class[key])
            print(f"{c.id:70s} best BV={t[0]:3d} warps={t[1]} progs/SM={t[2]:2d} chunk={t[3]} KC={t[4]:3d} "
                  f"stages={t[5]} reread={t[6]} maxnreg={t[7]} prefetch={t[8]} ahead={t[9]} cache={t[10]}  {us:9.2f} us  "
                  f"(of {len(results)}; worst {max(results)[0]:.2f})  [{time.time() - t0:.0f}s]", flush=True)
        write(best, rows, args.out)  # after every case: a run cut short keeps what it measured
    print(f"wrote {TILES_FILE} ({len(best)} entries) in {time.time() - t0:.0f}s")
    return 0


def class_choice(cases: dict[str, dict[tuple, float]]) -> tuple[float, tuple]:
    """The tile for a class (the cases sharing one batch x hv, e.g. TP1 B = 16 and TP4 B = 64) from each
    case's measured tiles (case id -> tile -> µs): among the tiles measured in every case, the one with
    the least summed slowdown against each case's own fastest, so no case of the class is given a tile
    only another case likes. Returns (µs of the chosen tile in its fastest case, tile)."""
    common = set.intersection(*(set(m) for m in cases.values()))
    if not common:  # nothing measured in all of them (a tile failing one case's gate): the fastest anywhere
        return min((us, t) for m in cases.values() for t, us in m.items())
    fastest = {cid: min(m.values()) for cid, m in cases.items()}
    score = {t: sum(m[t] / fastest[cid] for cid, m in cases.items()) for t in common}
    t = min(common, key=lambda t: (score[t], t))
    return min(m[t] for m in cases.values()), t


def write(best: dict, rows: list, out: Path) -> None:
    entries = [{"layout": k[0], "state_dtype": k[1], "head_dim_k": k[2], "head_dim_v": k[3], "mtp": k[4],
                "pairs_min": k[5], **dict(zip(Tile._fields, t)), "median_us": round(us, 3)}
               for k, (us, t) in sorted(best.items())]
    write_table(TILES_FILE, entries, "fastest tile per measured case (graph timer, scattered pool); lookups take the "
                "entry with the largest pairs_min <= batch * hv", out / "tune_triton.csv",
                ["case_id", *Tile._fields, "median_us", "note"], rows, out)


def write_table(tiles_file: Path, entries: list[dict], note: str, csv_path: Path, header: list[str], rows: list,
                out: Path) -> None:
    """A tuner's outputs: the tile table (into the backend, with a copy in ``out``) and every measured
    candidate as CSV rows under ``header``."""
    table = {"version": 1, "device": torch.cuda.get_device_name(), "timing": CFG.model_dump(), "note": note,
             "entries": entries}
    tiles_file.write_text(json.dumps(table, indent=1) + "\n")
    (out / tiles_file.name).write_text(tiles_file.read_text())
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
