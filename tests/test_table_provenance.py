"""Every entry of the shipped H100 tile tables traces to a committed measurement: a row of a tuner CSV
under ``results/h100-sm90/{triton,cute}-tune/`` for a case of the entry's class (its layout, state
dtype, head dims, decode or MTP fields, and ``batch * hv == pairs_min``) that timed the entry's tile at
the entry's ``median_us``. A hand-edited entry, or one whose measurements were not committed, fails
here; ``docs/tuning.md`` ("Provenance of the committed H100 tables") says which CSV holds which
entries.

The early CSVs give a tile's fields in columns of their own (``bv``, ``warps``, ...), some under names
the kernels no longer use (``reread``, ``chunk``): those rows must agree with the entry on every field
both name. Later CSVs name the tile (``Tile.name``), which must be the entry's.

``UNTRACED`` lists the entries known to have no committed measurement, each with the reason; an entry
leaves it when its measurements are committed (the test then fails until it is removed from the list).
"""

from __future__ import annotations

import csv
import json
import re
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from gdnbench.backends.cute.tiles import CuteTile
from gdnbench.backends.triton.tiles import MTP_FIELDS, Tile

ROOT = Path(__file__).resolve().parents[1]
H100 = "device_name=NVIDIA_H100_80GB_HBM3.json"
CASE_ID = re.compile(
    r"(?P<phase>decode|mtp)-b(?P<batch>\d+)-h(?P<hk>\d+)x(?P<hv>\d+)-d(?P<k>\d+)x(?P<v>\d+)-(?P<layout>klast|vlast)-"
    r"(?P<sd>f32|bf16)-bf16(?:-t(?P<tokens>\d+)(?P<inter>-inter)?(?P<tree>-tree)?-(?P<wb>wb|nowb))?"
    r"-(?P<pool>[a-z_]+)-s(?P<seed>\d+)-[0-9a-f]{8}")
ROUNDING_US = 0.0051  # entries keep the tuner's median to 2 or 3 decimals, the CSVs to 3

# (backend, pairs_min, tile name, class fields beyond the head dims): why the entry has no committed row
UNTRACED = {
    ("triton", 32, "per_token bv=4 warps=1", "k_last float32 mtp T=8 inter nowb"):
        "fp32 T = 8 verify tune of 2026-12-07: the per-candidate CSV did not come back from the device",
    ("triton", 512, "per_token bv=16 warps=1 maxnreg=255", "k_last float32 mtp T=8 inter nowb"):
        "fp32 T = 8 verify tune of 2026-12-07: the per-candidate CSV did not come back from the device",
    ("triton", 2048, "per_token bv=16 warps=4 kc=64", "k_last float32 mtp T=8 inter nowb"):
        "fp32 T = 8 verify tune of 2026-12-07: the per-candidate CSV did not come back from the device",
}


def case_class(case_id: str) -> dict:
    """The class fields of a tuner CSV's case, from its id."""
    m = CASE_ID.fullmatch(case_id)
    assert m, case_id
    g = m.groupdict()
    mtp = g["phase"] == "mtp"
    return {"layout": {"klast": "k_last", "vlast": "v_last"}[g["layout"]],
            "state_dtype": {"f32": "float32", "bf16": "bfloat16"}[g["sd"]],
            "head_dim_k": int(g["k"]), "head_dim_v": int(g["v"]), "mtp": mtp,
            "tokens": int(g["tokens"]) if mtp else None, "intermediate": bool(g["inter"]) if mtp else None,
            "write_back": g["wb"] == "wb" if mtp else None, "tree": bool(g["tree"]),
            "pairs": int(g["batch"]) * int(g["hv"])}


def in_class(backend: str, entry: dict, c: dict) -> bool:
    """Whether case class ``c`` is one the entry was tuned on. The cute table is K-last decode only; a
    triton MTP entry without the MTP fields (tuned before they were part of the class) matches any."""
    if c["tree"] or c["pairs"] != entry["pairs_min"]:
        return False
    if backend == "cute":
        return not c["mtp"] and c["layout"] == "k_last" and all(
            c[f] == entry[f] for f in ("state_dtype", "head_dim_k", "head_dim_v"))
    return all(c[f] == entry[f] for f in ("layout", "state_dtype", "head_dim_k", "head_dim_v", "mtp")) and all(
        entry.get(f) is None or c[f] == entry[f] for f in MTP_FIELDS)


def same_tile(tile, row: dict) -> bool:
    """Whether a CSV row timed ``tile``: by name, or, in the early column form, field by field."""
    if "tile" in row:
        return row["tile"] == tile.name
    named = [f.name for f in fields(tile) if f.name in row]
    assert {"bv"} <= set(named), row
    return all(int(row[f] or 0) == int(getattr(tile, f) or 0) for f in named)


def entries(backend: str) -> list[dict]:
    return json.loads((ROOT / "gdnbench" / "backends" / backend / "tables" / H100).read_text())["entries"]


def rows(backend: str) -> list[tuple[str, dict, dict]]:
    out = []
    for path in sorted((ROOT / "results" / "h100-sm90" / f"{backend}-tune").glob("*.csv")):
        for r in csv.DictReader(path.open()):
            if r["median_us"]:
                out.append((path.name, r, case_class(r["case_id"])))
    return out


def label(backend: str, e: dict, tile) -> tuple:
    if backend == "cute":
        return (backend, e["pairs_min"], tile.name, f"k_last {e['state_dtype']} decode")
    mtp = "decode" if not e["mtp"] else "mtp" + "".join(
        f" {s}" for s in (f"T={e['tokens']}" if e.get("tokens") else "",
                          {True: "inter", False: "nointer"}.get(e.get("intermediate"), ""),
                          {True: "wb", False: "nowb"}.get(e.get("write_back"), "")) if s)
    return (backend, e["pairs_min"], tile.name, f"{e['layout']} {e['state_dtype']} {mtp}")


def sources(backend: str) -> dict[tuple, list[str]]:
    """Per entry (``label``), the CSVs holding a row that measured it."""
    tile_of = {"triton": Tile.from_entry, "cute": CuteTile.from_entry}[backend]
    measured = rows(backend)
    found = {}
    for e in entries(backend):
        tile = tile_of(e)
        found[label(backend, e, tile)] = sorted({
            name for name, r, c in measured
            if in_class(backend, e, c) and abs(float(r["median_us"]) - e["median_us"]) <= ROUNDING_US
            and same_tile(tile, r)})
    return found


@pytest.mark.parametrize("backend", ["triton", "cute"])
def test_every_shipped_entry_traces_to_a_committed_measurement(backend):
    found = sources(backend)
    assert found, backend
    untraced = {k for k, csvs in found.items() if not csvs}
    known = {k for k in UNTRACED if k[0] == backend}
    assert untraced - known == set(), f"entries with no committed measurement: {sorted(untraced - known)}"
    assert known - untraced == set(), f"listed as untraced but measured or gone: {sorted(known - untraced)}"


def test_a_changed_entry_is_caught(monkeypatch):
    """The check fails on an entry whose time or tile no committed row holds."""
    real = entries("triton")
    bumped = [dict(real[0], median_us=real[0]["median_us"] + 1.0)] + real[1:]
    monkeypatch.setattr(sys.modules[__name__], "entries", lambda backend: bumped)
    assert sources("triton")[label("triton", bumped[0], Tile.from_entry(bumped[0]))] == []
    other = dict(real[0], bv=real[0]["bv"] * 2)
    monkeypatch.setattr(sys.modules[__name__], "entries", lambda backend: [other])
    assert list(sources("triton").values()) == [[]]
