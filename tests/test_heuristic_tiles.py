"""The no-table tiles of the own backends against the H100 measurements they rest on.

``heuristic_tile`` is what a case runs when no table entry serves it (below a class's smallest measured
size, or with ``GDNBENCH_NO_TILE_TABLES=1``). Its rules were read off GPU measurements that are
committed under ``results/h100-sm90/``; these tests replay them on the CPU, so a change to a rule is
checked against the evidence, and evidence that no longer describes the rule is caught:

* the tables-disabled decode sweep (``decode-no-tables``): every triton and cute row there ran the
  tile the heuristic still picks, so that run's peer comparison (``docs/tuning.md``) is about this
  rule.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from gdnbench.backends.cute.tiles import heuristic_tile as cute_heuristic
from gdnbench.backends.triton.tiles import heuristic_tile
from gdnbench.cases import KEY_FIELDS, Case

H100 = Path(__file__).resolve().parents[1] / "results" / "h100-sm90"


def no_table_rows() -> list[dict[str, str]]:
    path = H100 / "decode-no-tables" / "rows.csv"
    return [r for r in csv.DictReader(path.open()) if r["backend"] in ("triton", "cute") and r["status"] == "ok"]


def row_case(r: dict[str, str]) -> Case:
    types = {"batch": int, "hk": int, "hv": int, "head_dim_k": int, "head_dim_v": int, "tokens": int, "seed": int,
             "write_back": lambda s: s == "True", "intermediate": lambda s: s == "True", "tree": lambda s: s == "True"}
    c = Case(**{f: types.get(f, str)(r[f]) for f in KEY_FIELDS})
    assert c.id == r["case_id"]
    return c


@pytest.mark.parametrize("backend,rule", [("triton", heuristic_tile), ("cute", cute_heuristic)])
def test_the_tables_disabled_decode_run_ran_todays_heuristic(backend, rule):
    """The committed tables-disabled decode sweep ran, for every one of its triton and cute rows, the tile
    this heuristic picks now; a rule change makes that run's peer comparison stale, and this fails
    until the run is redone (``results/h100-sm90/decode-no-tables/README.md``)."""
    rows = [r for r in no_table_rows() if r["backend"] == backend]
    assert len(rows) >= 140
    assert {r["tile_source"] for r in rows} == {"heuristic"}
    stale = [(r["case_id"], r["tile"], rule(row_case(r)).name) for r in rows if rule(row_case(r)).name != r["tile"]]
    assert not stale, stale[:5]
