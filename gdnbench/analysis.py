"""Analysis over results: load rows.csv files into one DataFrame, and summarise them.

Reads only CSVs (pandas; never torch), so plots, ``compare`` and notebooks run anywhere. Results
from several machines concatenate cleanly: every row names its ``gpu``, ``sm`` and ``device``.

What may be compared is decided here, once, for plots, summaries and ``compare``:

* only timed runs: a check-only run (env.json ``check_only``, a ``-check`` folder, or no timed row at
  all) has no latencies and is left out (:func:`timed_runs`), so it can never replace a timed row;
* figures and summaries never mix runs whose timings cannot be compared (:func:`comparable`): per GPU,
  phase and heads preset they draw the latest run, together with the runs of the same timer revision
  (env.json ``timer_revision``; a run without one stands alone);
* speedups and "best backend" claims use GPU timings only (:data:`GPU_TIMING_MODES`): CPU wall clock
  is indicative, and the baseline backend is what others are compared with, never a competitor;
* rows whose sampling did not converge are counted, and marked wherever they are shown.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from gdnbench.outpaths import is_check_only
from gdnbench.rows import COLUMNS, READABLE_SCHEMAS, SCHEMA_VERSION
from gdnbench.vocab import GPU_TIMING_MODES

KEY = ["case_id", "backend"]
#: First batch of each summary bucket; a bucket runs to the next one's first batch - 1 (the last is open).
BATCH_BUCKET_STARTS = (1, 5, 33, 129)


def _bucket_label(lo: int, hi: int | None) -> str:
    return f"{lo}+" if hi is None else (str(lo) if lo == hi else f"{lo}-{hi}")


#: (first batch, last batch, label); labels come from the bounds, so a bucket says exactly what it holds.
BATCH_BUCKETS: tuple[tuple[int, int, str], ...] = tuple(
    (lo, nxt - 1 if nxt else 1 << 62, _bucket_label(lo, nxt - 1 if nxt else None))
    for lo, nxt in zip(BATCH_BUCKET_STARTS, (*BATCH_BUCKET_STARTS[1:], None)))
#: Footnote mark of a value from rows whose sampling did not converge.
UNCONVERGED_MARK = "†"
INT_COLUMNS = ("batch", "hk", "hv", "head_dim_k", "head_dim_v", "tokens", "n_padded", "seed", "n_samples",
               "launches_per_sample", "input_sets", "bytes", "flops", "schema_version")
BOOL_COLUMNS = ("write_back", "intermediate", "tree", "converged", "throttled")


def _paths(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        matches = [Path(m) for m in sorted(glob.glob(str(p)))] or [Path(p)]
        for m in matches:
            if m.is_dir():
                out.extend(sorted(m.glob("**/rows.csv")))
            elif m.exists():
                out.append(m)
            else:
                raise FileNotFoundError(f"{m}: no such results directory or rows.csv")
    if not out:
        raise FileNotFoundError(f"no rows.csv under {', '.join(map(str, paths))}")
    return out


def load_results(paths: Sequence[str | Path] | str | Path) -> pd.DataFrame:
    """Rows of one or more runs as a DataFrame. ``paths``: results directories (searched for
    ``rows.csv``), rows.csv files or globs. Adds ``results_dir`` and ``gpu_label`` ("NVIDIA H100 80GB
    HBM3 (sm90)", or "cpu"); types the numeric and boolean columns."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    frames = []
    for p in _paths(paths):
        df = pd.read_csv(p, dtype={"seq_lens": str, "model": str, "reason": str, "sanitizer": str,
                                   "kernels": str, "throttle_reasons": str, "sm": str, "gpu": str, "tile": str,
                                   "tile_source": str})
        versions = set(df.get("schema_version", pd.Series([SCHEMA_VERSION])).dropna().astype(int))
        if versions - set(READABLE_SCHEMAS):
            raise ValueError(f"{p}: schema_version {sorted(versions)}; this gdnbench reads "
                             f"{', '.join(map(str, READABLE_SCHEMAS))}")
        df["results_dir"] = p.parent.name
        env = _run_env(p.parent)
        df["check_only"] = is_check_only(p.parent)
        df["run_time"] = str(env.get("timestamp") or "")
        revision = env.get("timer_revision")
        df["timer_group"] = f"timer-revision-{revision}" if revision is not None else f"run-{p.parent.name}"
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    for col in ("seq_lens", "model", "reason", "sanitizer", "throttle_reasons", "sm", "gpu", "kernel",
                "kernels", "backend_version", "timing_mode", "check", "padding", "tile", "tile_source"):
        df[col] = df[col].fillna("").astype(str)
    for col in INT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    for col in BOOL_COLUMNS:
        df[col] = df[col].map({True: True, False: False, "True": True, "False": False})
    df["gpu_label"] = [f"{g} ({s})" if g else (d or "cpu") for g, s, d in zip(df.gpu, df.sm, df.device)]
    df["heads"] = [m if m else f"{k}/{v}" for m, k, v in zip(df.model, df.hk, df.hv)]
    return df


def _run_env(directory: Path) -> dict:
    try:
        env = json.loads((directory / "env.json").read_text())
    except (OSError, ValueError):
        return {}
    return env if isinstance(env, dict) else {}


def timed_runs(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Rows of timed runs only, and the runs left out: check-only runs (env.json ``check_only``, a
    ``-check`` folder) and runs without a single timed row."""
    timed = set(df[df.median_us.notna()].results_dir)
    keep = df.results_dir.isin(timed) & ~df.check_only.fillna(False).astype(bool)
    return df[keep], sorted(set(df[~keep].results_dir))


def _by_age(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` from the oldest run to the latest: by the time env.json records (``timestamp``), then by
    results folder name (dated folders sort by date; a run without a timestamp counts as the oldest).
    The curated layout names folders by config (``decode``, ``roofline-decode``), so the name alone
    says nothing of age."""
    return df.sort_values(["run_time", "results_dir"], kind="stable")


def comparable(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per GPU, phase and heads preset, the rows of runs that may share a figure: the latest run's
    timer group (same ``timer_revision``; a run that records none is its own group). Returns the rows
    and, for each run left out somewhere, a line saying where."""
    if df.empty:
        return df, []
    parts, dropped = [], []
    for (gpu, phase, heads), g in df.groupby(["gpu_label", "phase", "heads"], sort=True):
        newest = _by_age(g).iloc[-1].timer_group
        keep = g[g.timer_group == newest]
        parts.append(keep)
        for run in sorted(set(g.results_dir) - set(keep.results_dir)):
            dropped.append(f"{run}: left out of {phase} / {heads} on {gpu} (its timings are not comparable with "
                           f"{', '.join(sorted(set(keep.results_dir)))}: another timer revision)")
    return pd.concat(parts), dropped


def latest(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (GPU, case, backend): the one from the latest run (``_by_age``)."""
    return _by_age(df).drop_duplicates(["gpu_label", "case_id", "backend"], keep="last")


def valid(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with a trustworthy latency: status ok, gate passed, a median."""
    return df[(df.status == "ok") & (df.check == "pass") & df.median_us.notna()]


def gpu_timed(df: pd.DataFrame) -> pd.DataFrame:
    """Valid rows timed on a GPU: the only ones speedups and best-backend claims are made from."""
    v = valid(df)
    return v[v.timing_mode.isin(GPU_TIMING_MODES)]


def _is_false(value: object) -> bool:
    return isinstance(value, (bool, np.bool_)) and not value


def unconverged(df: pd.DataFrame) -> pd.Series:
    """Rows whose sampling stopped at a limit above the target noise (converged is False; unknown is not)."""
    return df.converged.map(_is_false).astype(bool)


def batch_bucket(batch: int) -> str:
    for lo, hi, label in BATCH_BUCKETS:
        if lo <= batch <= hi:
            return label
    return "?"


BEST_COLUMNS = ["gpu", "phase", "state_dtype", "layout", "bucket", "best", "wins", "cases", "speedup_vs_next",
                "unconverged"]


def best_backends(df: pd.DataFrame, baseline: str = "torch") -> pd.DataFrame:
    """Per GPU, phase, state dtype, layout and batch bucket: the backend that is fastest on the most
    cases (among GPU-timed valid rows of the same case, the baseline excluded: it is what the others
    are measured against, not a competitor), its win count, its median speedup over the next-fastest
    competitor (NaN where it ran alone), and whether any of its winning rows did not converge."""
    v = gpu_timed(df)
    v = v[v.backend != baseline]
    records = []
    for (gpu, _case_id), g in v.groupby(["gpu_label", "case_id"]):
        g = g.sort_values("median_us")
        first = g.iloc[0]
        speedup = g.iloc[1].median_us / first.median_us if len(g) > 1 else float("nan")
        records.append({"gpu": gpu, "phase": first.phase, "state_dtype": first.state_dtype, "layout": first.layout,
                        "bucket": batch_bucket(int(first.batch)), "winner": first.backend, "speedup": speedup,
                        "unconverged": _is_false(first.converged)})
    wins = pd.DataFrame(records)
    if wins.empty:
        return pd.DataFrame(columns=BEST_COLUMNS)
    rows = []
    for keys, g in wins.groupby(["gpu", "phase", "state_dtype", "layout", "bucket"]):
        counts = g.winner.value_counts()
        best = counts.index[0]
        mine = g[g.winner == best]
        rows.append((*keys, best, int(counts.iloc[0]), len(g), float(mine.speedup.median()),
                     bool(mine.unconverged.any())))
    out = pd.DataFrame(rows, columns=BEST_COLUMNS)
    order = {label: i for i, (_, _, label) in enumerate(BATCH_BUCKETS)}
    out["bucket_order"] = out.bucket.map(order)
    out = out.sort_values(["gpu", "phase", "state_dtype", "layout", "bucket_order"])
    return out.drop(columns="bucket_order").reset_index(drop=True)


def _best_cell(r: pd.DataFrame) -> str:
    if r.empty:
        return ""
    speed = r.speedup_vs_next.iloc[0]
    vs = "no other backend" if pd.isna(speed) else f"{speed:.2f}x"
    mark = UNCONVERGED_MARK if r.unconverged.iloc[0] else ""
    return f"{r.best.iloc[0]} ({r.wins.iloc[0]}/{r.cases.iloc[0]}, {vs}){mark}"


def energy_per_token(df: pd.DataFrame) -> pd.DataFrame:
    """Decode rows with an energy: µJ per token (valid rows x tokens per launch) and its uncertainty."""
    v = gpu_timed(df)
    v = v[(v.phase == "decode") & v.energy_uj.notna()] if "energy_uj" in v else v.iloc[0:0]
    if v.empty:
        return pd.DataFrame(columns=["gpu", "backend", "bucket", "uj_per_token", "err"])
    toks = ((v.batch - v.n_padded.fillna(0)) * v.tokens).astype(float).clip(lower=1)
    return pd.DataFrame({"gpu": v.gpu_label, "backend": v.backend, "bucket": [batch_bucket(int(b)) for b in v.batch],
                         "uj_per_token": v.energy_uj.astype(float) / toks,
                         "err": v.energy_uj_err.astype(float) / toks})


def summary_markdown(df: pd.DataFrame, baseline: str = "torch") -> str:
    """Per-GPU Markdown tables: best backend per phase x state dtype x layout x batch bucket; decode
    energy per token where rows carry energy; what was left out (CPU timings) and why."""
    best = best_backends(df, baseline)
    buckets = [label for _, _, label in BATCH_BUCKETS]
    lines = ["# Best backend per GPU, phase and batch bucket", "",
             "Cell: the backend fastest on most cases in the bucket (wins/cases) and its median speedup over "
             f"the next-fastest competitor on those cases ({baseline}, the baseline, is not a competitor). Only "
             "GPU-timed rows that passed the correctness gate count. "
             f"{UNCONVERGED_MARK}: some of the winner's rows did not converge (sampling stopped at its limit "
             "above the target noise).", ""]
    for gpu, g in best.groupby("gpu", sort=True):
        lines += [f"## {gpu}", "", "| phase | state | layout | " + " | ".join(f"batch {b}" for b in buckets) + " |",
                  "|---|---|---|" + "---|" * len(buckets)]
        for (phase, sd, layout), h in g.groupby(["phase", "state_dtype", "layout"], sort=True):
            cells = [_best_cell(h[h.bucket == b]) for b in buckets]
            lines.append(f"| {phase} | {sd} | {layout} | " + " | ".join(cells) + " |")
        lines.append("")
    if best.empty:
        lines.append("(no GPU-timed case has a backend other than the baseline that passed the gate)")
        lines.append("")
    e = energy_per_token(df)
    if not e.empty:
        from gdnbench.energy import MIN_UPDATES, MIN_WINDOW_S

        lines += ["# Decode energy per token", "",
                  f"GPU energy per token (µJ; whole board, over windows of >= {MIN_WINDOW_S:g} s and {MIN_UPDATES} "
                  "updates of NVML's energy counter, aligned to them), "
                  "median over the bucket's cases, ± the median uncertainty.", ""]
        for gpu, g in e.groupby("gpu", sort=True):
            present = [b for b in buckets if b in set(g.bucket)]
            lines += [f"## {gpu}", "", "| backend | " + " | ".join(f"batch {b}" for b in present) + " |",
                      "|---|" + "---|" * len(present)]
            for backend, h in g.groupby("backend", sort=True):
                cells = []
                for b in present:
                    r = h[h.bucket == b]
                    cells.append("" if r.empty else f"{r.uj_per_token.median():.3g} ± {r.err.median():.2g}")
                lines.append(f"| {backend} | " + " | ".join(cells) + " |")
            lines.append("")
    cpu = valid(df)
    cpu = cpu[cpu.timing_mode == "cpu"]
    if len(cpu):
        lines.append(f"Note: {len(cpu)} rows were timed on a CPU (timing mode cpu). CPU timings are indicative "
                     "only: they are left out of these tables and of every speedup.")
    interp = df[(df.status == "ok") & df.median_us.isna() & df.reason.str.startswith("checked only")]
    if len(interp):
        lines.append(f"Note: {len(interp)} rows passed the correctness gate but were not timed "
                     f"({'; '.join(sorted(set(interp.reason)))}).")
    return "\n".join(lines) + "\n"


def provenance(df: pd.DataFrame) -> str:
    """One caption line: GPUs, software versions, runs."""
    gpus = ", ".join(sorted(set(df.gpu_label)))
    versions = ", ".join(sorted(set(v for v in df.backend_version if v)))
    runs = ", ".join(sorted(set(df.results_dir)))
    modes = ", ".join(sorted(set(m for m in df.timing_mode if m)))
    return f"{gpus} | {versions} | timing: {modes or '-'} | runs: {runs}"
