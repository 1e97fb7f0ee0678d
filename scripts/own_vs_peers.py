"""Where gdnbench's own kernels stand against the best peer, case by case, in one run.

Reads one run directory (``rows.csv``). For every case an own backend (``triton``, ``cute``) and at
least one peer (FlashInfer, fla, fla_kernel) ran, it takes the ratio own median / fastest peer
median. It then judges the ratio with ``gdnbench compare``'s noise: the two rows' half-IQRs, relative,
combined in quadrature, times k = 2. This is the measure of the tune issue's "no slower than the
best peer, beyond the two rows' noise".

    python scripts/own_vs_peers.py results/h100-sm90/decode [--worst 15]

It prints a Markdown summary per own backend: cases, how many are slower beyond the noise, by layout,
state dtype and tile source, and the worst cases.
"""

from __future__ import annotations

import argparse

import pandas as pd

from gdnbench.analysis import load_results, valid
from gdnbench.compare import NOISE_K, _rel_half_iqr

OWN = ("triton", "cute")
PEERS = ("flashinfer", "fla", "fla_kernel")


def own_vs_peers(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (case, own backend) that has a peer: the fastest peer, ratio, noise, and whether the
    own kernel is slower beyond the noise."""
    ok = valid(df).assign(rel=lambda d: _rel_half_iqr(d))
    peers = ok[ok.backend.isin(PEERS)].sort_values("median_us").drop_duplicates(["gpu_label", "case_id"])
    own = ok[ok.backend.isin(OWN)]
    m = own.merge(peers[["gpu_label", "case_id", "backend", "median_us", "rel"]], on=["gpu_label", "case_id"],
                  suffixes=("", "_peer"))
    m["ratio"] = m.median_us / m.median_us_peer
    m["noise"] = (m.rel ** 2 + m.rel_peer ** 2) ** 0.5
    m["slower"] = (m.ratio - 1) > NOISE_K * m.noise
    return m


def report(m: pd.DataFrame, worst: int) -> str:
    lines = []
    for (gpu, own), g in m.groupby(["gpu_label", "backend"]):
        s = g[g.slower]
        lines += [f"## {own} on {gpu}", "",
                  f"{len(g)} cases with a peer; slower than the fastest peer beyond the noise in {len(s)}"
                  + (f" (worst {s.ratio.max():.3f}x)" if len(s) else ""), ""]
        if len(s):
            t = (s.fillna({"tile_source": ""}).groupby(["layout", "state_dtype", "tile_source"])
                 .ratio.agg(["count", "min", "max"]).reset_index())
            lines += ["| layout | state | tile source | slower | ratio min | ratio max |", "|---|---|---|---:|---:|---:|"]
            lines += [f"| {r.layout} | {r.state_dtype} | {r.tile_source} | {r['count']} | {r['min']:.3f} | {r['max']:.3f} |"
                      for _, r in t.iterrows()]
            lines += ["", "| case | peer | ratio | noise | tile |", "|---|---|---:|---:|---|"]
            lines += [f"| {r.case_id} | {r.backend_peer} | {r.ratio:.3f} | {r.noise:.1%} | {r.tile} ({r.tile_source}) |"
                      for _, r in s.sort_values("ratio", ascending=False).head(worst).iterrows()]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories (rows.csv)")
    ap.add_argument("--worst", type=int, default=15, help="list this many of the worst cases per backend")
    a = ap.parse_args()
    print(report(own_vs_peers(load_results(a.runs)), a.worst))


if __name__ == "__main__":
    main()
