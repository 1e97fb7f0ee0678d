"""``gdnbench peers RUN``: where gdnbench's own kernels stand against the best peer, case by case.

For every case where an own backend (``vocab.OWN_BACKENDS``: triton, cute) and at least one peer
(``vocab.PEER_BACKENDS``: FlashInfer, fla) passed the gate and were GPU-timed in the same run on the
same GPU, it takes the ratio own median / fastest peer median. The ratio is judged with ``gdnbench
compare``'s noise: the two rows' relative half-IQRs, combined in quadrature, times k = 2. "Slower" means
slower beyond that noise: the tune issue's target "no slower than the best peer, beyond the two rows'
noise".

Comparing within one run only is deliberate: the peer ran on the same GPU, clocks and software, so the
ratio needs no cross-run noise. The report gives per own backend and GPU the cases, how many are slower,
grouped by layout, state dtype and tile source (a loss on a ``heuristic`` tile is a tuning gap, one on a
``tuned`` tile a kernel gap), and the worst cases.
"""

from __future__ import annotations

import pandas as pd

from gdnbench.analysis import valid
from gdnbench.compare import NOISE_K, rel_half_iqr
from gdnbench.vocab import OWN_BACKENDS, PEER_BACKENDS


def own_vs_peers(df: pd.DataFrame, own: tuple[str, ...] = OWN_BACKENDS,
                 peers: tuple[str, ...] = PEER_BACKENDS) -> pd.DataFrame:
    """One row per (GPU, case, ``own`` backend) that has one of ``peers``: the fastest of them
    (``backend_peer``, ``median_us_peer``), ``ratio``, ``noise`` and whether the own kernel is ``slower``
    beyond the noise."""
    ok = valid(df).assign(rel=lambda d: rel_half_iqr(d))
    best = ok[ok.backend.isin(peers)].sort_values("median_us").drop_duplicates(["gpu_label", "case_id"])
    mine = ok[ok.backend.isin(own)]
    m = mine.merge(best[["gpu_label", "case_id", "backend", "median_us", "rel"]], on=["gpu_label", "case_id"],
                   suffixes=("", "_peer"))
    m["ratio"] = m.median_us / m.median_us_peer
    m["noise"] = (m.rel ** 2 + m.rel_peer ** 2) ** 0.5
    m["slower"] = (m.ratio - 1) > NOISE_K * m.noise
    return m


def report(m: pd.DataFrame, worst: int = 15) -> str:
    """Markdown: per own backend and GPU, the count slower, by layout / state dtype / tile source, and
    the ``worst`` slowest cases."""
    lines = []
    for (gpu, own), g in m.groupby(["gpu_label", "backend"]):
        s = g[g.slower]
        lines += [f"## {own} on {gpu}", "",
                  f"{len(g)} cases with a peer; slower than the fastest peer beyond the noise in {len(s)}"
                  + (f" (worst {s.ratio.max():.3f}x)" if len(s) else ""), ""]
        if len(s):
            t = (s.fillna({"tile_source": ""}).groupby(["layout", "state_dtype", "tile_source"])
                 .ratio.agg(["count", "min", "max"]).reset_index())
            lines += ["| layout | state | tile source | slower | ratio min | ratio max |",
                      "|---|---|---|---:|---:|---:|"]
            lines += [f"| {r.layout} | {r.state_dtype} | {r.tile_source} | {r['count']} | {r['min']:.3f} | "
                      f"{r['max']:.3f} |" for _, r in t.iterrows()]
            lines += ["", "| case | peer | ratio | noise | tile |", "|---|---|---:|---:|---|"]
            lines += [f"| {r.case_id} | {r.backend_peer} | {r.ratio:.3f} | {r.noise:.1%} | {r.tile} ({r.tile_source}) |"
                      for _, r in s.sort_values("ratio", ascending=False).head(worst).iterrows()]
        lines.append("")
    return "\n".join(lines)
