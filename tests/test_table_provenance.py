"""Every entry of the shipped H100 tile tables traces to a committed measurement: a row of a tuner CSV
under ``results/h100-sm90/{triton,cute}-tune/`` for a case of the entry's class (the tuner's own
``class_key``; for a triton MTP entry tuned before T and the buffers were part of the class, its
``coarser`` key) that timed the entry's tile at the entry's ``median_us``. A hand-edited entry, or one
whose measurements were not committed, fails here; ``docs/tuning.md`` ("Provenance of the committed
H100 tables") says which CSV holds which entries.

The early CSVs give a tile's fields in columns of their own (``bv``, ``warps``, ...), some under names
the kernels no longer use (``reread``, ``chunk``): those rows must agree with the entry on every field
both name. Later CSVs name the tile (``Tile.name``), which must be the entry's.

``UNTRACED`` lists the entries known to have no committed measurement, each with the reason; an entry
leaves it when its measurements are committed (the test then fails until it is removed from the list).
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from tuner_csvs import case_from_id, tune_rows

import gdnbench.tune.cute as cute_spec
import gdnbench.tune.triton as triton_spec
from gdnbench.backends.cute.tiles import CuteTile
from gdnbench.backends.triton.tiles import Tile

ROOT = Path(__file__).resolve().parents[1]
H100 = "device_name=NVIDIA_H100_80GB_HBM3.json"
ROUNDING_US = 0.0051  # entries keep the tuner's median to 2 or 3 decimals, the CSVs to 3
SPECS = {"triton": (triton_spec, Tile), "cute": (cute_spec, CuteTile)}

_T8_LOST = "fp32 T = 8 verify tune of 2026-12-07: the per-candidate CSV did not come back from the device"
# (backend, the entry's class key, its tile's name): why the entry has no committed row
UNTRACED = {
    ("triton", ("k_last", "float32", 128, 128, True, 8, True, False, 32), "per_token bv=4 warps=1"): _T8_LOST,
    ("triton", ("k_last", "float32", 128, 128, True, 8, True, False, 512), "per_token bv=16 warps=1 maxnreg=255"):
        _T8_LOST,
    ("triton", ("k_last", "float32", 128, 128, True, 8, True, False, 2048), "per_token bv=16 warps=4 kc=64"):
        _T8_LOST,
}


def row_keys(backend: str, case_id: str) -> set[tuple]:
    """The class keys an entry tuned on this case may have: the tuner's, and for triton the coarser
    key of an MTP entry written before T and the buffers were part of the class."""
    spec = SPECS[backend][0]
    key = spec.class_key(case_from_id(case_id))
    return {key, spec.coarser(key)} if backend == "triton" else {key}


def same_tile(tile, row: dict) -> bool:
    """Whether a CSV row timed ``tile``: by name, or, in the early column form, field by field."""
    if "tile" in row:
        return row["tile"] == tile.name
    named = [f.name for f in fields(tile) if f.name in row]
    assert "bv" in named, row
    return all(int(row[f] or 0) == int(getattr(tile, f) or 0) for f in named)


def entries(backend: str) -> list[dict]:
    return json.loads((ROOT / "gdnbench" / "backends" / backend / "tables" / H100).read_text())["entries"]


def sources(backend: str) -> dict[tuple, list[str]]:
    """Per entry (backend, class key, tile name), the CSVs holding a row that measured it."""
    spec, tile_type = SPECS[backend]
    measured = [(name, r, row_keys(backend, r["case_id"])) for name, r in tune_rows(f"{backend}-tune")]
    found = {}
    for e in entries(backend):
        key, tile = spec.key_of(e), tile_type.from_entry(e)
        found[(backend, key, tile.name)] = sorted({
            name for name, r, keys in measured
            if key in keys and abs(float(r["median_us"]) - e["median_us"]) <= ROUNDING_US and same_tile(tile, r)})
    return found


@pytest.mark.parametrize("backend", sorted(SPECS))
def test_every_shipped_entry_traces_to_a_committed_measurement(backend):
    found = sources(backend)
    assert found, backend
    untraced = {k for k, csvs in found.items() if not csvs}
    known = {k for k in UNTRACED if k[0] == backend}
    assert untraced - known == set(), f"entries with no committed measurement: {sorted(untraced - known)}"
    assert known - untraced == set(), f"listed as untraced but measured or gone: {sorted(known - untraced)}"


def test_a_changed_entry_is_caught(monkeypatch):
    """The check fails on an entry whose time or tile no committed row holds."""
    real = entries("triton")[0]
    for changed in (dict(real, median_us=real["median_us"] + 1.0), dict(real, bv=real["bv"] * 2)):
        monkeypatch.setattr(sys.modules[__name__], "entries", lambda backend, e=changed: [e])
        assert list(sources("triton").values()) == [[]]
    monkeypatch.setattr(sys.modules[__name__], "entries", lambda backend: [real])
    assert list(sources("triton").values()) != [[]]
