"""Analysis over results: load rows.csv files into one DataFrame, and summarise them.

Reads only CSVs (pandas; never torch), so plots, ``compare`` and notebooks run anywhere. Results
from several machines concatenate cleanly: every row names its ``gpu``, ``sm`` and ``device``.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from gdnbench.rows import COLUMNS, READABLE_SCHEMAS, SCHEMA_VERSION

KEY = ["case_id", "backend"]
BATCH_BUCKETS = ((1, 4, "1-4"), (5, 32, "8-32"), (33, 128, "64-128"), (129, 1 << 30, "256+"))
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
                                   "kernels": str, "throttle_reasons": str, "sm": str, "gpu": str})
        versions = set(df.get("schema_version", pd.Series([SCHEMA_VERSION])).dropna().astype(int))
        if versions - set(READABLE_SCHEMAS):
            raise ValueError(f"{p}: schema_version {sorted(versions)}; this gdnbench reads "
                             f"{', '.join(map(str, READABLE_SCHEMAS))}")
        df["results_dir"] = p.parent.name
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    for col in ("seq_lens", "model", "reason", "sanitizer", "throttle_reasons", "sm", "gpu", "kernel",
                "kernels", "backend_version", "timing_mode", "check", "padding"):
        df[col] = df[col].fillna("").astype(str)
    for col in INT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    for col in BOOL_COLUMNS:
        df[col] = df[col].map({True: True, False: False, "True": True, "False": False})
    df["gpu_label"] = [f"{g} ({s})" if g else (d or "cpu") for g, s, d in zip(df.gpu, df.sm, df.device)]
    df["heads"] = [m if m else f"{k}/{v}" for m, k, v in zip(df.model, df.hk, df.hv)]
    return df


def latest(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (GPU, case, backend): the one from the latest run (results dirs sort by date)."""
    return df.sort_values("results_dir").drop_duplicates(["gpu_label", "case_id", "backend"], keep="last")


def valid(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with a trustworthy latency: status ok, gate passed, a median."""
    return df[(df.status == "ok") & (df.check == "pass") & df.median_us.notna()]


def batch_bucket(batch: int) -> str:
    for lo, hi, label in BATCH_BUCKETS:
        if lo <= batch <= hi:
            return label
    return "?"


def best_backends(df: pd.DataFrame) -> pd.DataFrame:
    """Per GPU, phase, state dtype, layout and batch bucket: the backend that is fastest on the most
    cases (among valid rows of the same case), with its win count and median speedup over the
    runner-up. Only cases with at least two valid backends count."""
    v = valid(df)
    records = []
    for (gpu, _case_id), g in v.groupby(["gpu_label", "case_id"]):
        if len(g) < 2:
            continue
        g = g.sort_values("median_us")
        first, second = g.iloc[0], g.iloc[1]
        records.append({"gpu": gpu, "phase": first.phase, "state_dtype": first.state_dtype, "layout": first.layout,
                        "bucket": batch_bucket(int(first.batch)), "winner": first.backend,
                        "speedup": second.median_us / first.median_us})
    wins = pd.DataFrame(records)
    if wins.empty:
        return pd.DataFrame(columns=["gpu", "phase", "state_dtype", "layout", "bucket", "best", "wins", "cases",
                                     "speedup_vs_next"])
    rows = []
    for keys, g in wins.groupby(["gpu", "phase", "state_dtype", "layout", "bucket"]):
        counts = g.winner.value_counts()
        best = counts.index[0]
        rows.append((*keys, best, int(counts.iloc[0]), len(g), float(g[g.winner == best].speedup.median())))
    out = pd.DataFrame(rows, columns=["gpu", "phase", "state_dtype", "layout", "bucket", "best", "wins", "cases",
                                      "speedup_vs_next"])
    order = {label: i for i, (_, _, label) in enumerate(BATCH_BUCKETS)}
    out["bucket_order"] = out.bucket.map(order)
    out = out.sort_values(["gpu", "phase", "state_dtype", "layout", "bucket_order"])
    return out.drop(columns="bucket_order").reset_index(drop=True)


def summary_markdown(df: pd.DataFrame) -> str:
    """Per-GPU Markdown tables: best backend per phase x state dtype x layout x batch bucket."""
    best = best_backends(df)
    lines = ["# Best backend per GPU, phase and batch bucket", "",
             "Cell: the backend fastest on most cases in the bucket (wins/cases) and its median speedup over "
             "the next-fastest backend on those cases. Only rows that passed the correctness gate count.", ""]
    buckets = [label for _, _, label in BATCH_BUCKETS]
    for gpu, g in best.groupby("gpu", sort=True):
        lines += [f"## {gpu}", "", "| phase | state | layout | " + " | ".join(f"batch {b}" for b in buckets) + " |",
                  "|---|---|---|" + "---|" * len(buckets)]
        for (phase, sd, layout), h in g.groupby(["phase", "state_dtype", "layout"], sort=True):
            cells = []
            for b in buckets:
                r = h[h.bucket == b]
                cells.append("" if r.empty else
                             f"{r.best.iloc[0]} ({r.wins.iloc[0]}/{r.cases.iloc[0]}, {r.speedup_vs_next.iloc[0]:.2f}x)")
            lines.append(f"| {phase} | {sd} | {layout} | " + " | ".join(cells) + " |")
        lines.append("")
    if best.empty:
        lines.append("(no case has two backends that passed the gate)")
    return "\n".join(lines) + "\n"


def provenance(df: pd.DataFrame) -> str:
    """One caption line: GPUs, software versions, runs."""
    gpus = ", ".join(sorted(set(df.gpu_label)))
    versions = ", ".join(sorted(set(v for v in df.backend_version if v)))
    runs = ", ".join(sorted(set(df.results_dir)))
    modes = ", ".join(sorted(set(m for m in df.timing_mode if m)))
    return f"{gpus} | {versions} | timing: {modes or '-'} | runs: {runs}"
