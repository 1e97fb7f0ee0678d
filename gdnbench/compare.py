"""``gdnbench compare BASE NEW``: match rows by (case id, backend) and judge each latency change
against both runs' spread, so it can gate a kernel change.

Per matched row: ratio = new median / base median, and a noise estimate from the two runs' IQRs
(half-IQR relative to the median, combined in quadrature). With change = ratio - 1 and ``k`` = 2:

* ``slower``    |change| > k*noise and change > +threshold   (a real regression beyond the threshold)
* ``faster``    |change| > k*noise and change < -threshold
* ``same``      |change| <= threshold and (the change is real, or the noise band fits in the threshold)
* ``ambiguous`` the change is within the noise, but the noise band is wider than the threshold

A row that passed the gate in BASE but failed it (or errored) in NEW is ``broken``. The exit code is
1 when any row is ``slower`` or ``broken``. Differences in GPU, backend versions or (from env.json)
software versions are reported as warnings: such a comparison is between setups, not just code.

Only timed runs compare: a check-only run (no latencies) on either side is refused with one line, and
so is a pair of runs with no row in common (ValueError; the CLI exits 2): a table of zero rows with a
geometric mean of nan proves nothing. A row whose sampling did not converge on either side is marked.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from gdnbench.analysis import UNCONVERGED_MARK, latest, load_results, timed_runs, unconverged, valid

NOISE_K = 2.0


def verdict(ratio: float, noise: float, threshold: float, k: float = NOISE_K) -> str:
    change = ratio - 1.0
    significant = abs(change) > k * noise
    if significant and change > threshold:
        return "slower"
    if significant and change < -threshold:
        return "faster"
    if abs(change) <= threshold and (significant or k * noise <= threshold):
        return "same"
    return "ambiguous"


@dataclass
class Comparison:
    table: pd.DataFrame
    only_base: int = 0
    only_new: int = 0
    warnings: list[str] = field(default_factory=list)
    threshold: float = 0.05

    @property
    def counts(self) -> dict[str, int]:
        return self.table.verdict.value_counts().to_dict() if len(self.table) else {}

    @property
    def failed(self) -> bool:
        return bool(self.counts.get("slower") or self.counts.get("broken"))


def rel_half_iqr(df: pd.DataFrame) -> pd.Series:
    """Each row's noise: half its IQR over its median."""
    return (df.iqr_us.astype(float) / 2) / df.median_us.astype(float)


def _env_versions(paths: Sequence[str | Path]) -> dict[str, str]:
    versions: dict[str, str] = {}
    for p in paths:
        for env in sorted(Path(p).glob("**/env.json")) if Path(p).is_dir() else []:
            try:
                data = json.loads(env.read_text())
            except (OSError, ValueError):
                continue
            for k, v in (data.get("versions") or {}).items():
                if v:
                    versions.setdefault(k, v)
            if data.get("driver"):
                versions.setdefault("driver", str(data["driver"]))
    return versions


def compare_runs(base: Sequence[str | Path], new: Sequence[str | Path], threshold: float = 0.05,
                 backends: Sequence[str] | None = None) -> Comparison:
    b_all, n_all = _timed(base, "BASE"), _timed(new, "NEW")
    if backends:
        b_all, n_all = b_all[b_all.backend.isin(backends)], n_all[n_all.backend.isin(backends)]
    b, n = valid(b_all), valid(n_all)
    key = match_key(b_all, n_all)
    cols = list(dict.fromkeys(key + ["phase", "median_us", "iqr_us", "gpu_label", "backend_version", "loose"]))
    b, n = b.assign(loose=unconverged(b)), n.assign(loose=unconverged(n))
    m = b[cols].merge(n[cols], on=key, suffixes=("_base", "_new"))
    if "gpu_label" in key:
        m["gpu_label_base"] = m["gpu_label_new"] = m.gpu_label
    m["ratio"] = m.median_us_new / m.median_us_base
    m["noise"] = (rel_half_iqr(m.rename(columns={"iqr_us_base": "iqr_us", "median_us_base": "median_us"})) ** 2
                  + rel_half_iqr(m.rename(columns={"iqr_us_new": "iqr_us", "median_us_new": "median_us"})) ** 2
                  ).pow(0.5)
    m["verdict"] = [verdict(r, s, threshold) for r, s in zip(m.ratio, m.noise)]
    # A row that was correct and now is not: the worst regression.
    broke = b[key].merge(n_all[n_all.status.isin(["failed", "error"])][key + ["status", "reason"]], on=key)
    if m.empty and broke.empty:
        only = f" among backends {', '.join(backends)}" if backends else ""
        raise ValueError(f"no timed row of NEW ({', '.join(map(str, new))}: {len(n)}) matches one of BASE "
                         f"({', '.join(map(str, base))}: {len(b)}) by case id and backend{only}: nothing to compare")
    m["loose"] = m.loose_base.astype(bool) | m.loose_new.astype(bool)
    rows = [m]
    if len(broke):
        rows.append(broke.assign(verdict="broken", phase="", ratio=math.nan, noise=math.nan))
    table = pd.concat(rows, ignore_index=True).sort_values(["verdict", "ratio"], ascending=[True, False])
    warnings = []
    gb, gn = sorted(set(b_all.gpu_label)), sorted(set(n_all.gpu_label))
    if gb != gn:
        warnings.append(f"different GPUs: base {', '.join(gb)}; new {', '.join(gn)}")
    for backend in sorted(set(m.backend)):
        vb = set(m[m.backend == backend].backend_version_base)
        vn = set(m[m.backend == backend].backend_version_new)
        if vb != vn:
            warnings.append(f"{backend}: version {', '.join(sorted(vb))} -> {', '.join(sorted(vn))}")
    eb, en = _env_versions(base), _env_versions(new)
    for k in sorted(set(eb) & set(en)):
        if eb[k] != en[k]:
            warnings.append(f"software differs: {k} {eb[k]} -> {en[k]}")
    tb = set(b_all.timing_mode) - {""}
    tn = set(n_all.timing_mode) - {""}
    if tb and tn and tb != tn:
        warnings.append(f"timing modes differ: {', '.join(sorted(tb))} -> {', '.join(sorted(tn))}")
    only_base = len(b[key].merge(n[key], on=key, how="left", indicator=True).query("_merge == 'left_only'")) - len(broke)
    only_new = len(n[key].merge(b[key], on=key, how="left", indicator=True).query("_merge == 'left_only'"))
    return Comparison(table=table.reset_index(drop=True), only_base=max(only_base, 0), only_new=only_new,
                      warnings=warnings, threshold=threshold)


def match_key(base: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """Rows match on (case id, backend), and on the GPU too where both sides ran on some GPU in common:
    a run over several GPU models (``sweep --gpus`` on a mixed fleet) holds one row per pair and GPU, and
    each GPU is compared with itself. Two runs with no GPU in common compare across GPUs (with a
    warning), which is only unambiguous when each ran on one GPU model."""
    gb, gn = set(base.gpu_label), set(new.gpu_label)
    if gb & gn:
        return ["case_id", "backend", "gpu_label"]
    if len(gb) > 1 or len(gn) > 1:
        raise ValueError(f"BASE ran on {', '.join(sorted(gb))}; NEW on {', '.join(sorted(gn))}: no GPU in common, "
                         "and a side with several GPUs cannot be matched row by row (compare runs of one GPU each)")
    return ["case_id", "backend"]


def _timed(paths: Sequence[str | Path], side: str) -> pd.DataFrame:
    df, ignored = timed_runs(load_results(paths))
    if df.empty:
        why = f" ({', '.join(ignored)}: check-only, no timings)" if ignored else ""
        raise ValueError(f"{side} {', '.join(map(str, paths))}: holds no timed rows{why}; compare needs timed runs")
    return latest(df)


def markdown(c: Comparison, changed_only: bool = False) -> str:
    counts = c.counts
    geo = math.exp(c.table.ratio.dropna().map(math.log).mean()) if c.table.ratio.notna().any() else math.nan
    lines = [f"# gdnbench compare (threshold {c.threshold:.0%}, noise = IQR-based, k = {NOISE_K:g})", ""]
    lines += [f"- warning: {w}" for w in c.warnings]
    lines += [f"- matched rows: {len(c.table)}; " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())),
              f"- geometric-mean ratio (new / base): {geo:.4f}",
              f"- rows only in base: {c.only_base}; only in new: {c.only_new}", "",
              "| verdict | backend | case | base µs | new µs | ratio | noise |", "|---|---|---|---:|---:|---:|---:|"]
    t = c.table[c.table.verdict != "same"] if changed_only else c.table
    for r in t.itertuples():
        if r.verdict == "broken":
            lines.append(f"| **broken** | {r.backend} | {r.case_id} | | | | {getattr(r, 'status', '')}: "
                         f"{getattr(r, 'reason', '')} |")
            continue
        mark = f"**{r.verdict}**" if r.verdict in ("slower", "ambiguous") else r.verdict
        loose = UNCONVERGED_MARK if getattr(r, "loose", False) is True else ""
        lines.append(f"| {mark} | {r.backend} | {r.case_id} | {r.median_us_base:.2f} | {r.median_us_new:.2f} | "
                     f"{r.ratio:.3f}{loose} | {r.noise:.1%} |")
    if "loose" in c.table and (c.table.loose == True).any():  # noqa: E712
        lines += ["", f"{UNCONVERGED_MARK} not converged in base or new: sampling stopped at its limit above the "
                  "target noise; treat the ratio with care."]
    return "\n".join(lines) + "\n"
