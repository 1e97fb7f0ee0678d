"""Print triton vs triton_pdl (and whatever else a run holds) side by side from a run's rows.csv:
median µs per (heads, state dtype, pool, batch) and the PDL / plain ratio. Usage: pdl_probe.py RUN_DIR"""

import sys

import pandas as pd

rows = pd.read_csv(f"{sys.argv[1]}/rows.csv")
ok = rows[rows.status == "ok"]
t = ok.pivot_table(index=["hv", "tokens", "state_dtype", "pool", "batch"], columns="backend", values="median_us")
if {"triton", "triton_pdl"} <= set(t.columns):
    t["pdl/plain"] = t["triton_pdl"] / t["triton"]
bw = ok.pivot_table(index=["hv", "tokens", "state_dtype", "pool", "batch"], columns="backend", values="gbps")
t["pdl GB/s"] = bw.get("triton_pdl")
print(t.round(3).to_string())
bad = rows[rows.status != "ok"]
print(f"{len(ok)} ok, {len(bad)} not ok")
print(bad[["case_id", "backend", "status", "reason"]].head(10).to_string())
