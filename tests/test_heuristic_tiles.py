"""The no-table tiles of the own backends against the H100 measurements they rest on.

``heuristic_tile`` is what a case runs when no table entry serves it (below a class's smallest measured
size, or with ``GDNBENCH_NO_TILE_TABLES=1``). Its rules were read off GPU measurements that are
committed under ``results/h100-sm90/``; these tests replay them on the CPU, so a change to a rule is
checked against the evidence, and evidence that no longer describes the rule is caught:

* the triton tuner's MTP candidates (every per-token tile it timed per case): the heuristic's tile was
  measured and is within a few percent of the case's fastest per-token tile;
* the tables-disabled decode sweep (``decode-no-tables``): every triton and cute row there ran the
  tile the heuristic still picks, so that run's peer comparison (``docs/tuning.md``) is about this
  rule.
"""

from __future__ import annotations

import csv

import pytest
from tuner_csvs import H100, case_from_id

from gdnbench.backends.cute.tiles import heuristic_tile as cute_heuristic
from gdnbench.backends.triton.tiles import Tile, Variant, heuristic_tile
from gdnbench.cases import Case

TUNE = H100 / "triton-tune"


def per_token_times() -> dict[str, dict[str, float]]:
    """Per MTP case, the median µs of each per-token tile (by ``Tile.name``) the H100 tuner timed. The
    early CSVs give a tile's fields in columns; rows naming a field the per-token kernel no longer
    takes (its ``reread``) or another form (``chunk``, ``progs_per_sm``, ``stages``) are left out."""
    times: dict[str, dict[str, float]] = {}
    for path in (TUNE / "tune_triton-session6-mtp.csv", TUNE / "tune_triton-mtp-b1-tp4-fp32.csv",
                 TUNE / "tune_triton-mtp-keep-b64-tp1.csv"):
        for r in csv.DictReader(path.open()):
            if "tile" in r:
                name = r["tile"]
            elif any(int(r[f]) for f in ("chunk", "progs_per_sm", "stages", "reread")):
                continue
            else:
                name = Tile(int(r["bv"]), int(r["warps"]), kc=int(r["kc"]), maxnreg=int(r["maxnreg"])).name
            if name.startswith(Variant.PER_TOKEN.value):
                times.setdefault(r["case_id"], {})[name] = float(r["median_us"])
    return times


def test_mtp_heuristic_is_within_2_percent_of_the_fastest_per_token_tile():
    """Every K-last MTP case the H100 tuner measured (2-4 tokens, 8-8192 row-heads, bf16 and fp32
    state): the heuristic tile is among the measured ones and at most 1.02x the fastest. The decode
    rule it replaced for MTP took 1.13-1.48x where its tile was measured: the bound is not one any
    per-token tile meets."""
    times = per_token_times()
    assert len(times) >= 12
    worst = {}
    for case_id, by_tile in times.items():
        case = case_from_id(case_id)
        name = heuristic_tile(case).name
        assert name in by_tile, (case_id, name)
        worst[case_id] = by_tile[name] / min(by_tile.values())
    assert max(worst.values()) <= 1.02, max(worst.items(), key=lambda kv: kv[1])
    assert max(max(t.values()) / min(t.values()) for t in times.values()) > 1.3  # the tiles differ


def test_mtp_heuristic_fits_the_gpu_and_the_kernel():
    """One warp, 4-16 rows (4-8 for fp32 with the buffer and write-back) halved towards ~2048 programs;
    register chunks only where they divide K."""
    def mtp(batch, hv, sd="float32", k=128, v=128):
        return Case(phase="mtp", batch=batch, hk=min(hv, 16), hv=hv, head_dim_k=k, head_dim_v=v, layout="k_last",
                    state_dtype=sd, dtype="bfloat16", tokens=4, seq_lens="", pool="scattered", write_back=True,
                    intermediate=False, tree=False, seed=0)

    assert [heuristic_tile(mtp(b, 32)).bv for b in (1, 4, 16, 256)] == [4, 8, 16, 16]
    assert heuristic_tile(mtp(1, 8)) == Tile(4, 1, kc=32)
    assert heuristic_tile(mtp(64, 32, sd="bfloat16")) == Tile(16, 1, kc=64)
    assert heuristic_tile(mtp(64, 32, sd="bfloat16", k=64)) == Tile(16, 1)  # a chunk of all K is no chunk
    assert heuristic_tile(mtp(1, 8, v=8)).bv == 4
    v_last = Case(**{**mtp(1, 8).__dict__, "layout": "v_last"})
    assert heuristic_tile(v_last).kc == 0  # V-last MTP keeps the decode rule
    keep = Case(**{**mtp(64, 32).__dict__, "intermediate": True})  # fp32, buffer and write-back: 32 a thread
    assert heuristic_tile(keep) == Tile(8, 1, kc=64)
    assert heuristic_tile(Case(**{**keep.__dict__, "batch": 1, "hk": 4, "hv": 8})) == Tile(4, 1, kc=32)
    assert heuristic_tile(Case(**{**keep.__dict__, "state_dtype": "bfloat16"})) == Tile(16, 1, kc=64)
    assert heuristic_tile(Case(**{**keep.__dict__, "write_back": False})) == Tile(16, 1, kc=32)


def no_table_rows() -> list[dict[str, str]]:
    path = H100 / "decode-no-tables" / "rows.csv"
    return [r for r in csv.DictReader(path.open()) if r["backend"] in ("triton", "cute") and r["status"] == "ok"]


@pytest.mark.parametrize("backend,rule", [("triton", heuristic_tile), ("cute", cute_heuristic)])
def test_the_tables_disabled_decode_run_ran_todays_heuristic(backend, rule):
    """The committed tables-disabled decode sweep ran, for every one of its triton and cute rows, the tile
    this heuristic picks now; a rule change makes that run's peer comparison stale, and this fails
    until the run is redone (``results/h100-sm90/decode-no-tables/README.md``)."""
    rows = [r for r in no_table_rows() if r["backend"] == backend]
    assert len(rows) >= 140
    assert {r["tile_source"] for r in rows} == {"heuristic"}
    assert all(Case.from_row(r).id == r["case_id"] for r in rows)
    picked = [(r["case_id"], r["tile"], rule(Case.from_row(r)).name) for r in rows]
    stale = [p for p in picked if p[1] != p[2]]
    assert not stale, stale[:5]
