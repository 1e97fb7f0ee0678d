"""``gdnbench trace``: re-run part of a sweep under Nsight Systems and join kernel times to the rows.

The selected (case, backend) pairs run twice, each in a child ``gdnbench sweep``: first plainly (the
timer's latencies, ``rows.csv``), then under::

    nsys profile --trace=cuda,nvtx --cuda-graph-trace=node --capture-range=cudaProfilerApi
                 --capture-range-end=stop ...

into ``traced/``, so the report holds exactly the timing pass (the sweep brackets it with
cudaProfilerStart/Stop) and every measured region is an NVTX range ``<phase>|<backend>|<case id>``.
Node-level graph tracing adds ~1-2 µs to every graph node, so the timer's figure to check against is
the untraced one; the traced run's own latency is kept as ``traced_median_us``. Then ``nsys stats``
writes its kernel, NVTX and NVTX->kernel summaries, from which this module builds:

* ``kernels.csv``: per range, the kernels that ran, how many per launch, their duration statistics;
* ``rows_nsys.csv``: the run's rows plus ``nsys_kernels``, ``nsys_kernels_per_launch``,
  ``nsys_kernel_us`` (GPU kernel time per launch), ``nsys_vs_timer`` and ``traced_median_us``; and
  ``nsys_launch_us``, the traced run's per-sample NVTX ranges (gdnbench.ranges) projected onto the GPU
  per launch, with ``nsys_launch_vs_timer`` its ratio to the traced run's own timer: the like-for-like
  check that the timer measures the launches' GPU time, gaps between kernels included (the kernel
  sum leaves those gaps out, so multi-kernel launches read low against it);
* ``consistency.md``: rows where the timer's per-launch latency and the kernel time differ by more
  than 5% (and 1 µs), each with the likely reason (gaps between kernels, helper kernels such as
  casts, copies or fills inside the backend call).

Without nsys, ``--profiler torch`` records the same ranges with the PyTorch profiler into a Chrome
trace. Parsing and joining read CSVs only and are tested on stored ``nsys stats`` output.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from gdnbench.kernels import RECORD_ENV, short_kernel
from gdnbench.ranges import SAMPLES_ENV, parse_range_name, parse_sample_range

NSYS_REPORTS = ("cuda_gpu_kern_sum", "nvtx_sum", "nvtx_kern_sum", "nvtx_gpu_proj_sum")
# Kernels the timer itself launches inside a measured range, in every timing mode: the host-cover
# sleep (torch.cuda._sleep's spin_kernel, before every sample in graph and events mode) and the
# events mode's L2 flush (a fill of a uint8 buffer). No backend's work is either.
TIMER_KERNELS = re.compile(r"spin_kernel|FillFunctor<unsigned char>|FillFunctor<\(unsigned char\)>|"
                           r"FillFunctor<uint8_t>", re.IGNORECASE)
# Kernels that are usually glue around the real one (layout / dtype conversion, gathers, fills).
HELPER_KERNELS = re.compile(r"elementwise|copy|fill|cast|index|gather|scatter|arange|cat_|reduce|convert",
                            re.IGNORECASE)
TOL_REL, TOL_ABS_US = 0.05, 1.0
BIG_ROW_US = 10.0  # rows at least this long per launch must agree with the kernel time (``agreement``)


class TraceError(Exception):
    """A problem running or reading a trace, phrased for the user."""


def find_nsys(explicit: str | None = None) -> str:
    path = explicit or shutil.which("nsys")
    if not path:
        raise TraceError("nsys (Nsight Systems) not found on the PATH; pass --nsys PATH, or use --profiler torch "
                         "for a PyTorch-profiler Chrome trace of the same ranges")
    return path


def profile_command(nsys: str, report: Path, child: Sequence[str]) -> list[str]:
    """nsys profile command that records exactly the measured part of ``child``."""
    return [nsys, "profile", "--trace=cuda,nvtx", "--cuda-graph-trace=node", "--capture-range=cudaProfilerApi",
            "--capture-range-end=stop", "--sample=none", "--cpuctxsw=none", "--force-overwrite=true",
            "-o", str(report), *child]


def stats_command(nsys: str, report: Path, prefix: Path) -> list[str]:
    return [nsys, "stats", "--report", ",".join(NSYS_REPORTS), "--format", "csv", "--timeunit", "ns",
            "--force-export=true", "--force-overwrite=true", "--output", str(prefix), str(report)]


# ---- reading nsys stats CSVs ----------------------------------------------------------------------

def _col(df: pd.DataFrame, *names: str) -> str:
    """The first column whose name starts with one of ``names`` (case-insensitive)."""
    for name in names:
        for c in df.columns:
            if str(c).strip().lower().startswith(name.lower()):
                return c
    raise TraceError(f"nsys stats CSV has no column like {names[0]!r} (columns: {', '.join(map(str, df.columns))})")


def read_stats_csv(path: Path) -> pd.DataFrame:
    """An ``nsys stats --format csv`` file (skipping any preamble lines before the header)."""
    text = Path(path).read_text()
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.count(",") >= 3 and not line.startswith(("NOTICE", "WARNING"))),
                 0)
    return pd.read_csv(io.StringIO("\n".join(lines[start:])))


def _range_text(text: str) -> str:
    """NVTX range text as nsys prints it, without its ``domain:`` prefix."""
    text = str(text).strip()
    domain, sep, rest = text.partition(":")
    return rest if sep and "|" not in domain else text  # "gdnbench:<name>" or ":<name>" (default domain)


def range_key(text: str) -> tuple[str, str, str] | None:
    """NVTX range text as nsys prints it (maybe ``domain:`` prefixed) -> (phase, backend, case id)."""
    return parse_range_name(_range_text(text))


def read_nvtx_kern_sum(path: Path) -> pd.DataFrame:
    """nvtx_kern_sum -> one row per (range, kernel): phase, backend, case_id, kernel, kern_inst, total/avg/
    med/min/max/std in ns. Ranges gdnbench did not make are dropped."""
    df = read_stats_csv(path)
    rng, name = _col(df, "NVTX Range", "Range"), _col(df, "Kernel Name", "Name")
    inst = _col(df, "Kern Inst", "Instances", "Inst")
    cols = {"total_ns": _col(df, "Total Time"), "avg_ns": _col(df, "Avg"), "med_ns": _col(df, "Med"),
            "min_ns": _col(df, "Min"), "max_ns": _col(df, "Max"), "std_ns": _col(df, "StdDev", "Std")}
    out = []
    for _, r in df.iterrows():
        key = range_key(r[rng])
        if key is None:
            continue
        rec = {"phase": key[0], "backend": key[1], "case_id": key[2], "kernel": str(r[name]),
               "kern_inst": int(r[inst])}
        rec.update({k: float(r[c]) for k, c in cols.items()})
        out.append(rec)
    return pd.DataFrame(out, columns=["phase", "backend", "case_id", "kernel", "kern_inst", *cols])


def read_nvtx_gpu_proj_sum(path: Path) -> pd.DataFrame:
    """nvtx_gpu_proj_sum -> per range: total and median projected GPU time (ns) over its instances;
    ``kind`` is ``row`` for a measured range, ``sample`` for the per-sample ranges inside it
    (gdnbench.ranges)."""
    df = read_stats_csv(path)
    rng = _col(df, "Range", "NVTX Range")
    proj = _col(df, "Total Proj Time", "Projected", "Proj")
    med = next((c for c in df.columns if c.lower().startswith("proj med")), None)
    out = []
    for _, r in df.iterrows():
        text = _range_text(r[rng])
        for kind, key in (("row", parse_range_name(text)), ("sample", parse_sample_range(text))):
            if key:
                out.append({"phase": key[0], "backend": key[1], "case_id": key[2], "kind": kind,
                            "proj_ns": float(r[proj]), "med_ns": float(r[med]) if med else float("nan")})
    return pd.DataFrame(out, columns=["phase", "backend", "case_id", "kind", "proj_ns", "med_ns"])


# ---- kernels.csv, the join, the consistency report -------------------------------------------------

def kernels_table(kern: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """kernels.csv: per (range, kernel), count per launch and per-instance duration statistics (µs).

    Launches in a range = n_samples x launches_per_sample of the matching row (the range wraps the
    sampled replays only). Kernels the timer launches itself (``TIMER_KERNELS``, any timing mode) are
    marked ``timer_kernel`` and never counted as the backend's.
    """
    launches = rows.assign(launches=rows.n_samples.astype(float) * rows.launches_per_sample.astype(float))[
        ["case_id", "backend", "launches", "timing_mode"]]
    k = kern.merge(launches, on=["case_id", "backend"], how="left")
    k["per_launch"] = k.kern_inst / k.launches
    k["timer_kernel"] = [bool(TIMER_KERNELS.search(n)) for n in k.kernel]
    for c in ("total", "avg", "med", "min", "max", "std"):
        k[f"{c}_us"] = k[f"{c}_ns"] / 1e3
    return k[["phase", "backend", "case_id", "kernel", "kern_inst", "launches", "per_launch", "timer_kernel",
              "total_us", "avg_us", "med_us", "min_us", "max_us", "std_us"]]


def join_rows(rows: pd.DataFrame, kernels: pd.DataFrame, proj: pd.DataFrame | None = None,
              traced: pd.DataFrame | None = None) -> pd.DataFrame:
    """rows + nsys columns: kernel names, kernels per launch, GPU kernel µs per launch, ratio to the timer.

    ``kernels`` and ``proj`` come from the traced run (launch counts from its rows, ``traced``, when
    that run is not ``rows`` itself); the timer's latency is ``rows``'."""
    traced = rows if traced is None else traced
    k = kernels[~kernels.timer_kernel]
    g = k.groupby(["case_id", "backend"])
    agg = pd.DataFrame({
        "nsys_kernels": g.kernel.agg(lambda s: "; ".join(sorted({short_kernel(n) for n in s}))),
        "nsys_kernels_per_launch": g.per_launch.sum(),
        "nsys_kernel_us": g.total_us.sum() / g.launches.first(),
    }).reset_index()
    out = rows.merge(agg, on=["case_id", "backend"], how="left")
    out = out.merge(traced[["case_id", "backend", "median_us"]].rename(columns={"median_us": "traced_median_us"}),
                    on=["case_id", "backend"], how="left")
    if proj is not None and len(proj):
        p = proj.merge(traced[["case_id", "backend", "n_samples", "launches_per_sample"]], on=["case_id", "backend"])
        per = p.launches_per_sample.astype(float)
        # the row's range spans all its samples; a sample range one replay (its median: host_cover's
        # probes also run the replay in such a range, outside the row's)
        p["us"] = (p.proj_ns / p.n_samples.astype(float)).where(p.kind == "row", p.med_ns) / 1e3 / per
        spans = p.pivot_table(index=["case_id", "backend"], columns="kind", values="us").rename(
            columns={"row": "nsys_gpu_span_us", "sample": "nsys_launch_us"})
        out = out.merge(spans.reset_index(), on=["case_id", "backend"], how="left")
    if "nsys_launch_us" not in out:
        out["nsys_launch_us"] = float("nan")
    out["nsys_vs_timer"] = out.nsys_kernel_us / out.median_us
    out["nsys_launch_vs_timer"] = out.nsys_launch_us / out.traced_median_us
    return out


@dataclass(frozen=True)
class Finding:
    case_id: str
    backend: str
    timer_us: float
    kernel_us: float
    reason: str

    @property
    def diff_pct(self) -> float:
        return 100 * (self.timer_us - self.kernel_us) / self.timer_us


def explain(row: pd.Series, kernels: pd.DataFrame) -> str:
    """Likely reason the timer and the kernel time disagree for one row."""
    timer, kern = float(row.median_us), float(row.nsys_kernel_us)
    mine = kernels[(kernels.case_id == row.case_id) & (kernels.backend == row.backend) & ~kernels.timer_kernel]
    per_launch = float(row.nsys_kernels_per_launch)
    main = mine.kernel[mine.total_us.idxmax()] if len(mine) else None  # the backend's own kernel
    helpers = sorted({short_kernel(n, 40) for n in mine.kernel if n != main and HELPER_KERNELS.search(n)})
    parts = []
    if timer > kern:
        gap = timer - kern
        parts.append(f"{gap:.2f} µs per launch is not kernel time: gaps between the {per_launch:.3g} kernels of a "
                     f"launch (~{gap / max(per_launch, 1):.2f} µs each: launch latency between graph nodes, "
                     "or the GPU waiting for the host)")
    else:
        parts.append("kernel time exceeds the timer's latency: kernels overlap (several streams) or tracing "
                     "stretched kernel durations")
    if helpers:
        parts.append(f"helper kernels inside the backend call: {', '.join(helpers[:4])}")
    return "; ".join(parts)


def consistency(joined: pd.DataFrame, kernels: pd.DataFrame) -> tuple[list[Finding], int, int]:
    """Rows whose timer latency and nsys kernel time differ by > 5% and > 1 µs: (findings, checked, unmatched)."""
    ok = joined[(joined.status == "ok") & joined.median_us.notna()]
    matched = ok[ok.nsys_kernel_us.notna()]
    findings = []
    for _, r in matched.iterrows():
        diff = abs(float(r.median_us) - float(r.nsys_kernel_us))
        if diff > TOL_REL * float(r.median_us) and diff > TOL_ABS_US:
            findings.append(Finding(r.case_id, r.backend, float(r.median_us), float(r.nsys_kernel_us), explain(r, kernels)))
    return findings, len(matched), len(ok) - len(matched)


@dataclass(frozen=True)
class Agreement:
    """How many timed rows of at least ``min_us`` have an nsys time within ``TOL_REL`` of the timer's.

    ``measure`` says which: ``launch span`` (a sample range's projection onto the GPU, per launch, vs
    the same traced run's timer: both see the same launches, gaps between their kernels and tracing
    overhead alike) where the trace has sample ranges, else ``kernel sum`` (the launch's kernel
    durations vs the untraced timer, which leaves out the gaps between a launch's kernels)."""

    within: int
    rows: int
    ratio_min: float
    ratio_max: float
    min_us: float = BIG_ROW_US
    measure: str = "kernel sum"

    @property
    def fraction(self) -> float:
        return self.within / self.rows if self.rows else float("nan")

    def __str__(self) -> str:
        if not self.rows:
            return f"no timed rows >= {self.min_us:g} µs with kernels in the trace"
        return (f"rows >= {self.min_us:g} µs within {TOL_REL:.0%}: {self.within} of {self.rows} "
                f"({self.measure}/timer ratio {self.ratio_min:.3f} .. {self.ratio_max:.3f})")


def agreement(joined: pd.DataFrame, min_us: float = BIG_ROW_US, measure: str | None = None) -> Agreement:
    """Timer vs nsys over the rows of ``rows_nsys.csv`` that took at least ``min_us`` per launch (below
    that, launch gaps are a large share of a launch). The launch span where the trace has it (see
    :class:`Agreement`), else the kernel sum; ``measure`` forces one."""
    has_span = "nsys_launch_vs_timer" in joined and joined.nsys_launch_vs_timer.notna().any()
    measure = measure or ("launch span" if has_span else "kernel sum")
    col = "nsys_launch_vs_timer" if measure == "launch span" else "nsys_vs_timer"
    ok = joined[joined[col].notna() & (joined.median_us >= min_us)] if col in joined else joined.iloc[:0]
    if not len(ok):
        return Agreement(0, 0, float("nan"), float("nan"), min_us, measure)
    within = int(((ok[col] - 1).abs() <= TOL_REL).sum())
    return Agreement(within, len(ok), float(ok[col].min()), float(ok[col].max()), min_us, measure)


def consistency_markdown(findings: list[Finding], checked: int, unmatched: int, joined: pd.DataFrame) -> str:
    ok = joined[joined.nsys_vs_timer.notna()]
    big = ok[ok.median_us >= BIG_ROW_US]
    lines = ["# Timer vs Nsight Systems kernel time", "",
             f"Per launch: the timer's median latency (untraced run) vs the sum of GPU kernel durations nsys "
             f"attributes to the row's NVTX range in the traced run, divided by the launches in it. Flagged when "
             f"they differ by more than {TOL_REL:.0%} and {TOL_ABS_US:g} µs.", "",
             f"- rows compared: {checked} ({unmatched} timed rows had no kernels in the trace)",
             f"- within tolerance: {checked - len(findings)}; flagged: {len(findings)}"]
    if len(big):
        lines.append(f"- {agreement(joined, measure='kernel sum')}")
        span = agreement(joined, measure="launch span")
        if span.rows:
            lines.append(f"- launch span (each sample's range projected onto the GPU, per launch, vs the traced "
                         f"run's timer): {span}")
        single = big[big.nsys_kernels_per_launch.round(3) == 1]
        if len(single):
            within1 = ((single.nsys_vs_timer - 1).abs() <= TOL_REL).sum()
            gap = single.median_us - single.nsys_kernel_us
            lines.append(f"- of those, one kernel per launch: {within1} of {len(single)} within {TOL_REL:.0%}; "
                         f"timer - kernel {gap.min():.2f} .. {gap.max():.2f} µs (median {gap.median():.2f})")
    if "traced_median_us" in ok and ok.traced_median_us.notna().any() and not ok.traced_median_us.equals(ok.median_us):
        over = (ok.traced_median_us - ok.median_us) / ok.nsys_kernels_per_launch.clip(lower=1)
        lines.append(f"- tracing overhead (traced - untraced latency, per kernel): median {over.median():.2f} µs "
                     f"({over.min():.2f} .. {over.max():.2f})")
    lines += ["", "| backend | case | timer µs | nsys kernel µs | timer - kernel | likely reason |",
              "|---|---|---:|---:|---:|---|"]
    for f in sorted(findings, key=lambda f: -abs(f.diff_pct)):
        lines.append(f"| {f.backend} | {f.case_id} | {f.timer_us:.2f} | {f.kernel_us:.2f} | {f.diff_pct:+.1f}% | "
                     f"{f.reason} |")
    if not findings:
        lines.append("| | (none) | | | | |")
    return "\n".join(lines) + "\n"


def analyse(directory: Path, prefix: Path, traced_dir: Path | None = None) -> dict[str, Path]:
    """Build kernels.csv, rows_nsys.csv and consistency.md in ``directory`` from ``prefix_<report>.csv``
    (the traced run's rows in ``traced_dir``, or ``directory`` when the traced run is the only one)."""
    from gdnbench.analysis import load_results

    kern_csv = Path(f"{prefix}_nvtx_kern_sum.csv")
    if not kern_csv.exists():
        raise TraceError(f"{kern_csv} missing: nsys stats wrote no NVTX->kernel summary")
    rows = load_results([directory / "rows.csv"])
    traced = load_results([traced_dir / "rows.csv"]) if traced_dir else rows
    kernels = kernels_table(read_nvtx_kern_sum(kern_csv), traced)
    proj_csv = Path(f"{prefix}_nvtx_gpu_proj_sum.csv")
    proj = read_nvtx_gpu_proj_sum(proj_csv) if proj_csv.exists() else None
    joined = join_rows(rows, kernels, proj, traced)
    findings, checked, unmatched = consistency(joined, kernels)
    out = {"kernels": directory / "kernels.csv", "rows": directory / "rows_nsys.csv",
           "report": directory / "consistency.md"}
    kernels.to_csv(out["kernels"], index=False, float_format="%.6g")
    joined.drop(columns=["results_dir", "run_time", "gpu_label", "heads"], errors="ignore").to_csv(
        out["rows"], index=False, float_format="%.6g")
    out["report"].write_text(consistency_markdown(findings, checked, unmatched, joined))
    return out


# ---- running ----------------------------------------------------------------------------------------

def child_sweep_args(config: Path, out_dir: Path, cases: Sequence[str], backends: Sequence[str],
                     timing: str | None) -> list[str]:
    args = [sys.executable, "-m", "gdnbench", "sweep", str(config), "--out", str(out_dir), "--no-progress"]
    for c in cases:
        args += ["--case", c]
    for b in backends:
        args += ["--backend", b]
    if timing:
        args += ["--timing", timing]
    return args


def run_nsys_trace(config: Path, out_dir: Path, name: str, cases: Sequence[str], backends: Sequence[str],
                   nsys: str | None = None, timing: str | None = None) -> dict[str, Path]:
    tool = find_nsys(nsys)
    if (out_dir / "rows.csv").exists():  # the two child sweeps would refuse it, and old rows would be joined
        raise TraceError(f"{out_dir} already holds rows.csv: give another --out")
    traces = out_dir / "traces"
    traces.mkdir(parents=True, exist_ok=True)
    report = traces / name
    plain = subprocess.run(child_sweep_args(config, out_dir, cases, backends, timing))  # the timer's figures
    if not (out_dir / "rows.csv").exists():
        raise TraceError(f"the untraced sweep wrote no rows (exit {plain.returncode}); see the output above")
    traced_dir = out_dir / "traced"
    # nsys holds CUPTI: the traced child's gate does not profile its launches (gdnbench.kernels)
    proc = subprocess.run(profile_command(tool, report, child_sweep_args(config, traced_dir, cases, backends, timing)),
                          env={**os.environ, RECORD_ENV: "0", SAMPLES_ENV: "1"})
    rep = report.with_suffix(".nsys-rep")
    if not rep.exists():
        raise TraceError(f"nsys wrote no report (exit {proc.returncode}); see the output above")
    stats = subprocess.run(stats_command(tool, rep, traces / name), capture_output=True, text=True)
    if stats.returncode != 0:
        raise TraceError(f"nsys stats failed (exit {stats.returncode}): "
                         f"{(stats.stderr or stats.stdout).strip().splitlines()[-1:]}")
    out = analyse(out_dir, traces / name, traced_dir)
    out["nsys-rep"] = rep
    out["child_exit"] = Path(str(proc.returncode))
    return out


def run_torch_trace(config: Path, out_dir: Path, name: str, cases: Sequence[str], backends: Sequence[str],
                    timing: str | None = None) -> dict[str, Path]:
    """The same sweep in this process under torch.profiler; the ranges are record_function scopes."""
    import torch

    from gdnbench.config import load_sweep
    from gdnbench.runner import RunOptions, run_sweep

    traces = out_dir / "traces"
    traces.mkdir(parents=True, exist_ok=True)
    acts = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    opts = RunOptions(out_dir=out_dir, backends=list(backends) or None, case_ids=list(cases) or None,
                      timing_mode=timing, progress=False)
    with torch.profiler.profile(activities=acts) as prof:
        run_sweep(load_sweep(config), opts)
    chrome = traces / f"{name}.torch-trace.json"
    prof.export_chrome_trace(str(chrome))
    table = traces / f"{name}.torch-kernels.txt"
    sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    table.write_text(prof.key_averages().table(sort_by=sort, row_limit=60))
    return {"chrome": chrome, "table": table}
