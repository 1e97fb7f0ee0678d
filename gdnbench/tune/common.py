"""What the tuners share: the tuning cases, the gated timing loop, the choice per case class and the
outputs (the backend's table for this GPU, and every measured candidate as CSV rows)."""

from __future__ import annotations

import csv
import time
from enum import Enum
from pathlib import Path
from typing import Callable

import torch

from gdnbench.backends.base import current_target
from gdnbench.backends.tables import write_table
from gdnbench.cases import Case
from gdnbench.check import run_gate
from gdnbench.config import Timing
from gdnbench.inputs import make_inputs
from gdnbench.reference import reference
from gdnbench.timer import time_gpu

TIMING = Timing(warmup=2, min_samples=5, max_samples=200, min_time_s=0.02, max_time_s=0.1, target_rel_noise=0.01)


def case(batch: int, hk: int = 16, hv: int = 32, layout: str = "k_last", sd: str = "bfloat16",
         tokens: int = 1) -> Case:
    """A tuning case: K = V = 128, bf16 inputs, a scattered pool, write-back."""
    return Case(phase="mtp" if tokens > 1 else "decode", batch=batch, hk=hk, hv=hv, head_dim_k=128, head_dim_v=128,
                layout=layout, state_dtype=sd, dtype="bfloat16", tokens=tokens, seq_lens="", pool="scattered",
                write_back=True, intermediate=False, tree=False, seed=7)


def measure(c: Case, tiles: list, make_backend: Callable, rows: list) -> list[tuple[float, object]]:
    """Gate, then graph-time, ``make_backend(tile_override=t)`` for every tile on one set of inputs.
    Returns (median µs, tile) for the tiles that passed; appends one row (case id, tile, µs, note) per
    tile to ``rows`` (a failed gate or build: no time, the reason)."""
    x = make_inputs(c, "cuda")
    e = reference(x)
    results = []
    for t in tiles:
        b = make_backend(tile_override=t)
        try:
            g = run_gate(c, b, x, e)
        except Exception as err:  # noqa: BLE001 -- e.g. a tile whose shared memory or registers the GPU cannot give
            rows.append((c.id, t, "", f"FAILED: {type(err).__name__}: {str(err).splitlines()[0][:200]}"))
            continue
        if not g.check.ok:
            rows.append((c.id, t, "", f"FAILED: {g.check.message}"))
            continue
        us = time_gpu("graph", c, b, TIMING).stats.median
        results.append((us, t))
        rows.append((c.id, t, f"{us:.3f}", ""))
    del x, e
    torch.cuda.empty_cache()
    return results


def log_best(c: Case, results: list, t0: float, log: Callable) -> tuple[float, object]:
    """Log a case's fastest tile (of how many, the slowest, seconds since ``t0``) and return it."""
    us, t = min(results, key=lambda r: r[0])
    log(f"{c.id:70s} best {t}  {us:9.2f} us  (of {len(results)}; worst {max(r[0] for r in results):.2f})  "
        f"[{time.time() - t0:.0f}s]")
    return us, t


def class_choice(cases: dict[str, dict]) -> tuple[float, object]:
    """The tile for a class (the cases sharing one batch x hv, e.g. TP1 B = 16 and TP4 B = 64) from each
    case's measured tiles (case id -> tile -> µs): among the tiles measured in every case, the one with
    the least summed slowdown against each case's own fastest, so no case of the class is given a tile
    only another case likes. Returns (µs of the chosen tile in its fastest case, tile)."""
    common = set.intersection(*(set(m) for m in cases.values()))
    if not common:  # nothing measured in all of them (a tile failing one case's gate): the fastest anywhere
        return min(((us, t) for m in cases.values() for t, us in m.items()), key=lambda p: (p[0], repr(p[1])))
    fastest = {cid: min(m.values()) for cid, m in cases.items()}
    score = {t: sum(m[t] / fastest[cid] for cid, m in cases.items()) for t in common}
    t = min(common, key=lambda t: (score[t], repr(t)))
    return min(m[t] for m in cases.values()), t


def write_outputs(folder: Path, note: str, best: dict, entry: Callable, rows: list, fields: list[str], out: Path,
                  csv_name: str) -> Path:
    """The table for this GPU (into the backend's ``tables/``, with a copy in ``out``): one entry per class
    of ``best`` (class key -> (µs, tile)), ``entry(key, tile)`` plus the median; and every measured
    candidate as CSV rows (``fields`` of the tile, µs, note)."""
    entries = [{**entry(k, t), "median_us": round(us, 3)} for k, (us, t) in sorted(best.items())]
    target = current_target()
    path = write_table(folder, target.name, target.sm, TIMING.model_dump(), note, entries)
    (out / path.name).write_text(path.read_text())
    with (out / csv_name).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", *fields, "median_us", "note"])
        w.writerows((cid, *(_cell(getattr(t, f)) for f in fields), us, note) for cid, t, us, note in rows)
    return path


def _cell(value):
    return value.value if isinstance(value, Enum) else value
