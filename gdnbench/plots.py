"""Figures from results CSVs (matplotlib, pandas; never torch).

For each phase: latency vs batch (log-log), speedup over the baseline backend, % of the measured copy
bandwidth; MTP latency vs draft tokens T; prefill throughput vs total tokens. Each figure has one
column of panels per GPU (SM generation) with shared y axes, so generations compare at a glance,
and one figure per heads preset. Only rows that passed the gate are drawn as lines; rows that
failed it are marked with a red x on the x axis (never as a value). Each line is one backend on one
state layout and pool kind (scattered preferred, as a serving engine's pool; contiguous where a
kernel has no pool API). Written as PNG and SVG, with the GPUs, software versions and runs in the
caption; ``summary.md`` (best backend per phase x batch bucket per GPU) is written next to them.

Which rows may share a figure is decided in analysis.py: check-only runs are left out, runs of
another timer revision are not mixed in, and speedup panels use GPU timings only (a CPU run's
latency is drawn, captioned as indicative). A point whose sampling did not converge is drawn
hollow. Log axes are labelled at 1-2-3-5-7 steps when they span little more than a decade, so a
speedup of 20-35x reads off the axis. With nothing to draw (no timed row), no file is written.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator  # noqa: E402

from gdnbench.analysis import (comparable, gpu_timed, latest, load_results, provenance, summary_markdown,  # noqa: E402
                               timed_runs, unconverged, valid)
from gdnbench.outpaths import make_out_dir  # noqa: E402

#: One colour per backend, far apart (the two Triton launch modes red and orange, FlashInfer's serving
#: call and kernel dark and light blue).
COLORS = {"torch": "#7f7f7f", "flashinfer": "#1f77b4", "flashinfer_kernel": "#17becf", "fla": "#2ca02c",
          "fla_kernel": "#bcbd22", "triton": "#d62728", "triton_pdl": "#ff7f0e", "cute": "#9467bd"}
OTHER_COLOR = "#e377c2"
UNCONVERGED_LABEL = "hollow: not converged (sampling stopped above the target noise)"
CPU_CAPTION = "CPU timings: indicative only"
POOL_MARKER = {"scattered": "o", "contiguous": "s", "padded": "^", "padded_mid": "v"}
LAYOUT_LINE = {"k_last": "-", "v_last": "--"}
DTYPE_LINE = {"bfloat16": "-", "float32": ":"}
POOL_PREFERENCE = ("scattered", "contiguous", "padded", "padded_mid")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def _style(backend: str, layout: str, pool: str) -> dict:
    return dict(color=COLORS.get(backend, OTHER_COLOR), marker=POOL_MARKER.get(pool, "o"),
                linestyle=LAYOUT_LINE.get(layout, "-"))


def _label(backend: str, layout: str, pool: str) -> str:
    return f"{backend} ({layout.replace('_', '-')}, {pool})"


def prefer_pools(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Within each group of ``keys`` (+ backend, layout), keep the preferred pool kind present."""
    if df.empty:
        return df
    rank = {p: i for i, p in enumerate(POOL_PREFERENCE)}
    df = df.assign(_rank=df.pool.map(rank).fillna(9))
    best = df.groupby([*keys, "backend", "layout"])._rank.transform("min")
    return df[df._rank == best].drop(columns="_rank")


def log_ticks(axis) -> None:
    """Readable labels on a log axis: 1-2-3-5-7 steps over up to ~1.5 decades, 1-2-5 up to 3, else
    powers of ten; plain numbers (``20``, ``0.5``), no minor ticks."""
    lo, hi = axis.get_view_interval()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    subs = (1.0, 2.0, 3.0, 5.0, 7.0) if decades <= 1.5 else (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=40))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(NullLocator())


def _save(fig, out_dir: Path, stem: str, caption: str) -> list[Path]:
    fig.text(0.01, 0.005, caption, fontsize=7, color="#444444", ha="left", va="bottom", wrap=True)
    paths = []
    for ext in ("png", "svg"):
        p = out_dir / f"{stem}.{ext}"
        fig.savefig(p, dpi=130, bbox_inches="tight")
        paths.append(p)
    plt.close(fig)
    return paths


def facet(data: pd.DataFrame, failed: pd.DataFrame, *, x: str, y: str, row: str, row_label, line_keys: Sequence[str],
          title: str, xlabel: str, ylabel: str, logx: bool, logy: bool, hline: float | None, out_dir: Path, stem: str,
          caption: str, style=None, label=None, xcat: list | None = None) -> list[Path]:
    """Rows of panels by ``row``, one column per GPU; a line per distinct ``line_keys``."""
    style = style or (lambda k: _style(*k))
    label = label or (lambda k: _label(*k))
    gpus = sorted(set(data.gpu_label) | set(failed.gpu_label))
    rows = sorted(set(data[row]) | set(failed[row]))  # one type per facet column: numbers sort numerically
    xticks = sorted(set(data[x]) | set(failed[x])) if not xcat else None
    fig, axes = plt.subplots(len(rows), len(gpus), figsize=(5.2 * len(gpus) + 3.2, 3.3 * len(rows) + 0.8),
                             squeeze=False, sharex=True, sharey="row")
    handles: dict[str, Line2D] = {}
    for i, rv in enumerate(rows):
        for j, gpu in enumerate(gpus):
            ax = axes[i][j]
            panel = data[(data[row] == rv) & (data.gpu_label == gpu)]
            for key, g in panel.groupby(list(line_keys), sort=True):
                key = key if isinstance(key, tuple) else (key,)
                g = g.sort_values(x, key=(lambda col: col.map(xcat.index)) if xcat else None)
                xs = [xcat.index(v) for v in g[x]] if xcat else g[x]
                (h,) = ax.plot(xs, g[y], label=label(key), markersize=4, linewidth=1.4, **style(key))
                handles.setdefault(label(key), h)
                loose = unconverged(g).to_numpy() if "converged" in g else None
                if loose is not None and loose.any():  # hollow markers over the points that did not converge
                    st = style(key)
                    (hh,) = ax.plot([v for v, u in zip(xs, loose) if u], g[y][loose], linestyle="none",
                                    marker=st.get("marker", "o"), markersize=6, markerfacecolor="white",
                                    markeredgecolor=st.get("color"), markeredgewidth=1.2, gid="unconverged")
                    handles.setdefault(UNCONVERGED_LABEL, Line2D([], [], linestyle="none", marker="o", markersize=6,
                                                                 markerfacecolor="white", markeredgecolor="black"))
            bad = failed[(failed[row] == rv) & (failed.gpu_label == gpu)]
            if len(bad):
                xs = [xcat.index(v) for v in bad[x]] if xcat else bad[x]
                (h,) = ax.plot(xs, [0] * len(bad), "x", color="red", markersize=7, clip_on=False,
                               transform=ax.get_xaxis_transform())
                handles.setdefault("failed the check (no latency)", h)
            if hline is not None:
                ax.axhline(hline, color="black", linewidth=0.8, linestyle=":")
            if logx and not xcat:
                ax.set_xscale("log", base=2)
                ax.set_xticks([float(t) for t in xticks])
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_locator(NullLocator())
            if logy:
                ax.set_yscale("log")
            if xcat:
                ax.set_xticks(range(len(xcat)))
                ax.set_xticklabels(xcat, rotation=30, ha="right", fontsize=7)
            ax.grid(True, which="major", alpha=0.3)
            if i == 0:
                ax.set_title(gpu, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{row_label(rv)}\n{ylabel}", fontsize=8)
            if i == len(rows) - 1:
                ax.set_xlabel(xlabel, fontsize=8)
            ax.tick_params(labelsize=7)
    if logy:  # after every panel is drawn: shared y limits are final
        for ax_row in axes:
            for ax in ax_row:
                log_ticks(ax.yaxis)
    fig.suptitle(title, fontsize=11)
    fig.legend(handles.values(), handles.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
               frameon=False)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    return _save(fig, out_dir, stem, caption)


def _speedup(v: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Speedup over the baseline per case, from GPU timings only (CPU wall clock claims no speedup)."""
    v = gpu_timed(v)
    base = v[v.backend == baseline][["gpu_label", "case_id", "median_us"]].rename(columns={"median_us": "base_us"})
    m = v[v.backend != baseline].merge(base, on=["gpu_label", "case_id"])
    return m.assign(speedup=m.base_us / m.median_us)


def _caption(h: pd.DataFrame) -> str:
    cap = provenance(h)
    return f"{cap} | {CPU_CAPTION}" if (valid(h).timing_mode == "cpu").any() else cap


def plot_batch_sweeps(df: pd.DataFrame, phase: str, out_dir: Path, baseline: str, where: str = "") -> list[Path]:
    """Latency, speedup and % of copy bandwidth vs batch, one figure set per heads preset."""
    d = df[df.phase == phase]
    if phase == "mtp":  # a batch sweep at the headline point: T = 4, all drafts committed
        d = d[(d.tokens == 4) & (d.write_back == True) & (d.intermediate == False)]  # noqa: E712
        where = "T = 4, write-back, no intermediate buffer"
    paths: list[Path] = []
    for heads, h in d.groupby("heads"):
        v = prefer_pools(valid(h), ["gpu_label", "state_dtype"])
        f = h[h.status == "failed"]
        if v.empty and f.empty:
            continue
        cap = _caption(h)
        name = f"{phase}_{slug(heads)}"
        common = dict(x="batch", row="state_dtype", row_label=lambda s: f"{s} state",
                      line_keys=["backend", "layout", "pool"], xlabel="batch (sequences)", logx=True, caption=cap,
                      out_dir=out_dir)
        sub = f" — {where}" if where else ""
        paths += facet(v, f, y="median_us", title=f"{phase} latency, heads {heads}{sub}", ylabel="µs per launch",
                       logy=True, hline=None, stem=f"{name}_latency", **common)
        s = prefer_pools(_speedup(valid(h), baseline), ["gpu_label", "state_dtype"])  # match before choosing pools
        if not s.empty:
            paths += facet(s, f.iloc[0:0], y="speedup", title=f"{phase} speedup over {baseline}, heads {heads}{sub}",
                           ylabel=f"x faster than {baseline}", logy=True, hline=1.0, stem=f"{name}_speedup", **common)
        r = v[v.pct_peak_bw.notna()]
        if not r.empty:
            paths += facet(r, f, y="pct_peak_bw", title=f"{phase} % of measured copy bandwidth, heads {heads}{sub}",
                           ylabel="% of copy BW", logy=False, hline=100.0, stem=f"{name}_roofline", **common)
    return paths


def plot_mtp_tokens(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """MTP verify latency vs draft tokens T (intermediate buffer, no write-back), rows = batch."""
    d = df[(df.phase == "mtp") & (df.intermediate == True) & (df.write_back == False) & (df.tree == False)]  # noqa: E712
    paths: list[Path] = []
    for heads, h in d.groupby("heads"):
        v = prefer_pools(valid(h), ["gpu_label", "state_dtype", "batch"])
        if v.nunique().get("tokens", 0) < 2:
            continue
        paths += facet(v, h[h.status == "failed"], x="tokens", y="median_us", row="batch",
                       row_label=lambda b: f"batch {b}", line_keys=["backend", "state_dtype", "pool"],
                       title=f"MTP verify latency vs draft tokens, heads {heads} (per-step states to a buffer, "
                             "pool not written)", xlabel="draft tokens T", ylabel="µs per launch", logx=True,
                       logy=True, hline=None, out_dir=out_dir, stem=f"mtp_{slug(heads)}_tokens",
                       caption=_caption(h),
                       style=lambda k: dict(color=COLORS.get(k[0], OTHER_COLOR), marker=POOL_MARKER.get(k[2], "o"),
                                            linestyle=DTYPE_LINE.get(k[1], "-")),
                       label=lambda k: f"{k[0]} ({k[1]} state, {k[2]})")
    return paths


def plot_prefill(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Prefill throughput (million tokens / s) vs total tokens, or vs sequence shape when every
    shape has the same total."""
    d = df[df.phase == "prefill"]
    paths: list[Path] = []
    for heads, h in d.groupby("heads"):
        v = prefer_pools(valid(h), ["gpu_label", "state_dtype", "seq_lens"])
        if v.empty:
            continue
        v = v.assign(mtok_s=v.tokens.astype(float) / v.median_us)  # tokens per µs = million tokens per s
        categorical = v.tokens.nunique() == 1
        xcat = None
        if categorical:
            order = v.drop_duplicates("seq_lens").sort_values(["batch"]).seq_lens.tolist()
            xcat, x, xlabel = order, "seq_lens", f"sequences x length ({int(v.tokens.iloc[0])} tokens in all)"
        else:
            x, xlabel = "tokens", "total tokens"
        paths += facet(v, h[h.status == "failed"], x=x, y="mtok_s", row="state_dtype",
                       row_label=lambda s: f"{s} state", line_keys=["backend", "layout", "pool"],
                       title=f"chunked prefill throughput, heads {heads}", xlabel=xlabel,
                       ylabel="million tokens / s", logx=not categorical, logy=True, hline=None, out_dir=out_dir,
                       stem=f"prefill_{slug(heads)}_throughput", caption=_caption(h), xcat=xcat)
    return paths


def drawable(paths: Sequence[str | Path], notes: list[str] | None = None) -> pd.DataFrame:
    """The rows figures may draw: timed runs, comparable within each figure, latest per case and
    backend. ValueError (one line) when no row is left to draw; ``notes`` collects what was left out."""
    df = load_results(paths)
    df, ignored = timed_runs(df)
    names = ", ".join(str(p) for p in paths)
    if notes is not None and ignored:
        notes.append(f"left out {len(ignored)} run(s) without timings (check-only runs): {', '.join(ignored)}")
    if df.empty:
        raise ValueError(f"nothing to draw: {names} hold no timed rows"
                         + (f" ({', '.join(ignored)}: check-only, no timings)" if ignored else ""))
    df, dropped = comparable(df)
    if notes is not None:
        notes.extend(dropped)
    df = latest(df)
    if valid(df).empty and not (df.status == "failed").any():
        raise ValueError(f"nothing to draw: {names} hold no row that passed the gate with a latency, nor a failed one")
    return df


def plot_results(paths: Sequence[str | Path], out_dir: str | Path, baseline: str = "torch",
                 notes: list[str] | None = None) -> list[Path]:
    """Every figure for the rows under ``paths``, plus summary.md; returns the files written.
    ValueError (one line, nothing written) when there is nothing to draw or ``out_dir`` cannot be written."""
    df = drawable(paths, notes)
    out_dir = make_out_dir(Path(out_dir), "--out")
    written: list[Path] = []
    for phase in ("decode", "mtp"):
        written += plot_batch_sweeps(df, phase, out_dir, baseline)
    written += plot_mtp_tokens(df, out_dir)
    written += plot_prefill(df, out_dir)
    summary = out_dir / "summary.md"
    summary.write_text(summary_markdown(df, baseline))
    written.append(summary)
    return written
