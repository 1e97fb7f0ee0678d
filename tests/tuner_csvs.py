"""The committed H100 tuner CSVs (``results/h100-sm90/{triton,cute}-tune/``) as the tests read them:
their rows, and the case each row names by id, rebuilt as a :class:`Case` whose id (and so its hash of
every key field) must equal the one in the CSV."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from gdnbench.cases import Case
from gdnbench.vocab import DTYPE_SHORT

H100 = Path(__file__).resolve().parents[1] / "results" / "h100-sm90"
CASE_ID = re.compile(
    r"(?P<phase>decode|mtp)-b(?P<batch>\d+)-h(?P<hk>\d+)x(?P<hv>\d+)-d(?P<k>\d+)x(?P<v>\d+)-(?P<layout>klast|vlast)-"
    r"(?P<sd>[a-z0-9]+)-(?P<dt>[a-z0-9]+)(?:-t(?P<tokens>\d+)(?P<inter>-inter)?(?P<tree>-tree)?-(?P<wb>wb|nowb))?"
    r"-(?P<pool>[a-z_]+)-s(?P<seed>\d+)-[0-9a-f]{8}")
DTYPE_LONG = {short: name for name, short in DTYPE_SHORT.items()}


def case_from_id(case_id: str) -> Case:
    """The decode or MTP case a tuner CSV names by id (a decode case writes its state back)."""
    m = CASE_ID.fullmatch(case_id)
    assert m, case_id
    g = m.groupdict()
    mtp = g["phase"] == "mtp"
    c = Case(phase=g["phase"], batch=int(g["batch"]), hk=int(g["hk"]), hv=int(g["hv"]), head_dim_k=int(g["k"]),
             head_dim_v=int(g["v"]), layout={"klast": "k_last", "vlast": "v_last"}[g["layout"]],
             state_dtype=DTYPE_LONG[g["sd"]], dtype=DTYPE_LONG[g["dt"]], tokens=int(g["tokens"]) if mtp else 1,
             seq_lens="", pool=g["pool"], write_back=g["wb"] == "wb" if mtp else True,
             intermediate=bool(g["inter"]), tree=bool(g["tree"]), seed=int(g["seed"]))
    assert c.id == case_id, (c.id, case_id)
    return c


def tune_rows(folder: str) -> list[tuple[str, dict]]:
    """(CSV name, row) for every timed row of the CSVs in ``H100 / folder``, by file name."""
    return [(path.name, r) for path in sorted((H100 / folder).glob("*.csv"))
            for r in csv.DictReader(path.open()) if r["median_us"]]
