"""Tuned tile tables, one file per GPU, shared by the backends that tune their own kernels.

A tuner measures a kernel's tiles on one GPU and writes the fastest per case class to
``<backend>/tables/device_name=<GPU name, spaces as _>.json`` (the naming vLLM's fused_moe configs
use). A lookup takes the current GPU's own table (``tuned``); a GPU without one borrows another GPU's
table, preferring one of the same SM generation (``other-gpu``: its tiles run, but were not measured
here); a case no table entry fits gets the backend's heuristic tile (``heuristic``). The table a tile
came from is part of the answer, so a row can say how much to trust it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gdnbench.backends.base import Target
from gdnbench.cases import Case

TUNED, OTHER_GPU, HEURISTIC = "tuned", "other-gpu", "heuristic"


def table_path(folder: Path, device: str) -> Path:
    """Where the table of GPU ``device`` (``torch.cuda.get_device_name()``) lives."""
    return folder / f"device_name={device.replace(' ', '_')}.json"


@dataclass(frozen=True)
class TileTable:
    """A tuned table's entries, the GPU they were measured on and whether that is this GPU."""

    device: str
    source: str  # TUNED or OTHER_GPU
    entries: list[dict] = field(default_factory=list)


def read_table(path: Path) -> dict | None:
    """A table file's contents (None when absent or unreadable: the backend then uses its heuristic)."""
    try:
        table = json.loads(path.read_text())
        table["entries"]  # noqa: B018 -- a table without entries is no table
        return table
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_table(folder: Path, target: Target) -> TileTable | None:
    """This GPU's table, else another GPU's (same SM generation first, then by name), else None."""
    own = read_table(table_path(folder, target.name)) if target.device == "cuda" else None
    if own is not None:
        return TileTable(own.get("device", target.name), TUNED, own["entries"])
    others = [t for t in (read_table(p) for p in sorted(folder.glob("device_name=*.json"))) if t is not None]
    others.sort(key=lambda t: t.get("sm") != target.sm)  # stable: same SM generation first
    if others:
        return TileTable(others[0].get("device", "?"), OTHER_GPU, others[0]["entries"])
    return None


def pick_tuned(entries: list[dict], case: Case, fits: Callable[[dict], bool]) -> dict | None:
    """Of the entries ``fits`` accepts for ``case``, the one measured at the largest ``pairs_min`` <=
    batch * hv (None: no entry applies)."""
    pairs = case.batch * case.hv
    ok = [e for e in entries if e["pairs_min"] <= pairs and fits(e)]
    return max(ok, key=lambda e: e["pairs_min"]) if ok else None


def choose(table: TileTable | None, case: Case, matches: Callable[[dict], bool], make: Callable[[dict], object],
           reason: Callable[[Case, object], str | None], fallback: Callable[[Case], object]) -> tuple[object, str]:
    """The tile for ``case`` and its source: the table's entry (``matches`` its class, its tile ``make(e)``
    runs the case) with the largest ``pairs_min`` <= batch * hv, else ``fallback(case)`` (``heuristic``)."""
    best = table and pick_tuned(table.entries, case, lambda e: matches(e) and reason(case, make(e)) is None)
    return (make(best), table.source) if best else (fallback(case), HEURISTIC)


def write_table(folder: Path, device: str, sm: int | None, timing: dict, note: str, entries: list[dict]) -> Path:
    """Write a tuner's table for GPU ``device`` into ``folder``; returns its path."""
    path = table_path(folder, device)
    table = {"version": 1, "device": device, "sm": sm, "timing": timing, "note": note, "entries": entries}
    path.write_text(json.dumps(table, indent=1) + "\n")
    return path
