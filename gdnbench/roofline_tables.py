"""Markdown ratio tables of a roofline run, read from its rows.csv only: per (heads, state dtype, pool),
triton's median and its ratio to FlashInfer and fla (and fla_kernel where it ran), % of the run's copy
bandwidth, the same for triton_pdl and cute where the run has them, and FlashInfer's own figures.
"cute/best other" compares cute with the fastest plain-launch row of the others (triton, flashinfer, fla,
fla_kernel; triton_pdl is a different launch mode and is left out).

Usage: python -m gdnbench.roofline_tables RESULTS_DIR   (printed; run READMEs paste it under their text)
"""

from __future__ import annotations

import sys

import pandas as pd

PLAIN = ("triton", "flashinfer", "fla", "fla_kernel")


def tables(run: str) -> str:
    d = pd.read_csv(f"{run}/rows.csv")
    ok = d[d.status == "ok"]
    out: list[str] = []
    groups = sorted(ok.groupby(["hk", "hv", "state_dtype", "pool", "tokens"]), key=lambda x: x[0])
    for (hk, hv, sd, pool, tokens), g in groups:
        p = g.pivot_table(index="batch", columns="backend", values="median_us")
        bw = g.pivot_table(index="batch", columns="backend", values="pct_peak_bw")
        fk, pdl, cute = "fla_kernel" in p, "triton_pdl" in p, "cute" in p
        cols = ["batch", "triton µs", "triton/FI", "triton/fla"] + (["triton/fla_kernel"] if fk else []) + ["triton %BW"]
        if pdl:
            cols += ["triton_pdl µs", "pdl/FI", "pdl %BW"]
        if cute:
            cols += ["cute µs", "cute/FI", "cute/best other", "cute %BW"]
        cols += ["FI µs", "FI %BW"]
        t_label = f", T={tokens}" if tokens > 1 else ""
        out += [f"## HK={hk}, HV={hv}, {sd} state, {pool} pool{t_label}", "", "| " + " | ".join(cols) + " |",
                "|" + "|".join("---:" for _ in cols) + "|"]
        for b in p.index:
            t, w = p.loc[b], bw.loc[b]
            row = [str(b), f"{t.triton:.2f}", f"{t.triton / t.flashinfer:.3f}", f"{t.triton / t.fla:.3f}"]
            if fk:
                row.append(f"{t.triton / t.fla_kernel:.3f}")
            row.append(f"{w.triton:.1f}")
            if pdl:
                row += [f"{t.triton_pdl:.2f}", f"{t.triton_pdl / t.flashinfer:.3f}", f"{w.triton_pdl:.1f}"]
            if cute:
                best = min(t[k] for k in PLAIN if k in t and pd.notna(t[k]))
                row += [f"{t.cute:.2f}", f"{t.cute / t.flashinfer:.3f}", f"{t.cute / best:.3f}", f"{w.cute:.1f}"]
            row += [f"{t.flashinfer:.2f}", f"{w.flashinfer:.1f}"]
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(tables(sys.argv[1]))
