"""``gdnbench targets RUN...``: does a run meet the performance targets set for gdnbench's own kernels?

A targets file (``configs/targets/own-kernels.yaml``, the tune issue's targets) lists named targets.
Each picks one backend's rows with a ``where`` filter in the sweep configs' language, over the rows'
case fields, and sets one bound:

* ``min_pct_bw``: every row reaches at least this % of the run's copy bandwidth (``pct_peak_bw``);
* ``max_us``: every row's median is at most this many µs;
* ``vs``: no row is slower than the other side beyond the two rows' noise, as ``gdnbench compare`` and
  ``gdnbench peers`` judge it; ``vs: peers`` is the fastest peer of the case (``vocab.PEER_BACKENDS``),
  ``vs: <backend>`` one backend.

Per target and GPU the report gives the rows checked, how many miss, and the worst row with by how much
it misses (percentage points of bandwidth, µs, or the ratio). A target no row of the run matches says
so: it is neither met nor missed. Only rows that passed the gate and were timed on a GPU count (a CPU
run's timings say nothing about a GPU's bandwidth).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from pydantic import ValidationError, field_validator, model_validator

from gdnbench.analysis import gpu_timed
from gdnbench.cases import Case
from gdnbench.compare import NOISE_K
from gdnbench.config import ConfigError, StrictModel, format_validation_error, parse_where
from gdnbench.peers import own_vs_peers
from gdnbench.vocab import BACKEND_NAMES, PEER_BACKENDS
from gdnbench.where import WhereError, eval_where

DEFAULT = Path("targets") / "own-kernels.yaml"  # under the shipped configs (``cli.config_dir``)
BOUNDS = ("min_pct_bw", "max_us", "vs")


class Target(StrictModel):
    """One target: ``backend``'s rows that ``where`` keeps must meet the one bound given."""

    name: str
    backend: str
    where: str = ""
    min_pct_bw: float | None = None
    max_us: float | None = None
    vs: str | None = None

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if v not in BACKEND_NAMES:
            raise ValueError(f"'{v}' is not one of {', '.join(BACKEND_NAMES)}")
        return v

    @field_validator("vs")
    @classmethod
    def _known_side(cls, v: str | None) -> str | None:
        if v is not None and v != "peers" and v not in BACKEND_NAMES:
            raise ValueError(f"'{v}' is neither 'peers' nor one of {', '.join(BACKEND_NAMES)}")
        return v

    @field_validator("where")
    @classmethod
    def _parses(cls, v: str) -> str:
        if v:
            parse_where(v)
        return v

    @model_validator(mode="after")
    def _one_bound(self) -> Target:
        given = [b for b in BOUNDS if getattr(self, b) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(BOUNDS)} (got {', '.join(given) or 'none'})")
        return self

    @property
    def bound(self) -> str:
        if self.min_pct_bw is not None:
            return f">= {self.min_pct_bw:g}% of copy bandwidth"
        if self.max_us is not None:
            return f"<= {self.max_us:g} µs"
        return f"no slower than {'the fastest peer' if self.vs == 'peers' else self.vs} beyond the noise"


class Targets(StrictModel):
    """A targets file: a description and its targets, in order."""

    description: str = ""
    targets: list[Target]


def load_targets(path: str | Path) -> Targets:
    """Read and validate a targets file; ConfigError (one line) on any problem."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read targets ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML: {str(e).splitlines()[0]}") from None
    try:
        return Targets.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(str(path), e)) from None


def selected(rows: pd.DataFrame, t: Target) -> pd.DataFrame:
    """``t.backend``'s GPU-timed rows that passed the gate and that its ``where`` keeps."""
    rows = gpu_timed(rows)
    rows = rows[rows.backend == t.backend]
    if not t.where or rows.empty:
        return rows
    tree = parse_where(t.where)
    try:
        keep = [eval_where(tree, Case.from_row(r).where_env()) for r in rows.to_dict("records")]
    except WhereError as e:
        raise ConfigError(f"target '{t.name}': where '{t.where}' cannot be evaluated ({e})") from None
    return rows[keep]


def check(df: pd.DataFrame, targets: Targets) -> pd.DataFrame:
    """One row per (target, GPU): ``rows`` checked, ``missed``, and the ``worst`` row (``worst_case``,
    ``worst`` value, ``short_by``: how far it is from the bound, > 0 for a miss). A target with no row on
    a GPU of the run has ``rows`` 0."""
    out = []
    for i, t in enumerate(targets.targets):
        sel = selected(df, t)
        if t.vs is not None:
            ratios = _ratios(df, t)
            sel = ratios[ratios.case_id.isin(sel.case_id)]
        for gpu in sorted(df.gpu_label.unique()):
            g = sel[sel.gpu_label == gpu]
            r = {"order": i, "target": t.name, "backend": t.backend, "bound": t.bound, "gpu": gpu, "rows": len(g),
                 "missed": 0, "worst_case": "", "worst": float("nan"), "short_by": float("nan"), "unit": ""}
            if len(g):
                r.update(_judge(t, g))
            out.append(r)
    return pd.DataFrame(out)


def _ratios(df: pd.DataFrame, t: Target) -> pd.DataFrame:
    """Own rows against the other side, with ``ratio`` and ``slower`` as ``peers.own_vs_peers`` gives them."""
    return own_vs_peers(gpu_timed(df), own=(t.backend,), peers=PEER_BACKENDS if t.vs == "peers" else (t.vs,))


def _judge(t: Target, g: pd.DataFrame) -> dict:
    if t.min_pct_bw is not None:
        w = g.loc[g.pct_peak_bw.idxmin()]
        return {"missed": int((g.pct_peak_bw < t.min_pct_bw).sum()), "worst_case": w.case_id,
                "worst": float(w.pct_peak_bw), "short_by": t.min_pct_bw - float(w.pct_peak_bw), "unit": "% BW"}
    if t.max_us is not None:
        w = g.loc[g.median_us.idxmax()]
        return {"missed": int((g.median_us > t.max_us).sum()), "worst_case": w.case_id,
                "worst": float(w.median_us), "short_by": float(w.median_us) - t.max_us, "unit": "µs"}
    w = g.loc[g.ratio.idxmax()]
    return {"missed": int(g.slower.sum()), "worst_case": w.case_id, "worst": float(w.ratio),
            "short_by": float(w.ratio) - 1 - NOISE_K * float(w.noise), "unit": f"x {w.backend_peer}"}


def report(res: pd.DataFrame) -> str:
    """Markdown: per GPU, one line per target (met / missed n of m / no rows) with its worst row."""
    lines = []
    for gpu, g in res.groupby("gpu", sort=True):
        lines += [f"## {gpu}", "", "| target | backend | bound | rows | result | worst | case |",
                  "|---|---|---|---:|---|---:|---|"]
        for r in g.sort_values("order").itertuples():
            if not r.rows:
                lines.append(f"| {r.target} | {r.backend} | {r.bound} | 0 | no rows in this run | | |")
                continue
            verdict = f"**missed in {r.missed}**" if r.missed else "met"
            worst = f"{r.worst:.3f} {r.unit}" if r.unit.startswith("x") else f"{r.worst:.1f} {r.unit}"
            lines.append(f"| {r.target} | {r.backend} | {r.bound} | {r.rows} | {verdict} | {worst} | {r.worst_case} |")
        lines.append("")
    return "\n".join(lines)
