"""Warp stall breakdown of one triton launch (Nsight Compute's raw WarpStateStats metrics): why warps
are not issuing, per issued instruction. Run on the GPU host:
    ncu --profile-from-start off --csv --page raw --section WarpStateStats --section SpeedOfLight \\
        --section Occupancy python3 scripts/profile_kernel.py ARGS | python3 scripts/ncu_stalls.py
"""

import csv
import sys


def main() -> int:
    rows = list(csv.reader(sys.stdin))
    heads = [i for i, r in enumerate(rows) if r and r[0] == "ID"]
    if not heads:
        print("no ncu rows:", " | ".join(",".join(r) for r in rows[:5])[:400])
        return 1
    h = rows[heads[0]]
    for i in heads:
        for vals in rows[i + 2:]:
            if not vals or vals[0] == "ID":
                break
            out = []
            for k, v in zip(h, vals):
                try:
                    x = float(v.replace(",", ""))
                except ValueError:
                    continue
                if ("issue_stalled" in k and x >= 0.05) or k in (
                        "gpu__time_duration.sum", "sm__warps_active.avg.pct_of_peak_sustained_active",
                        "dram__throughput.avg.pct_of_peak_sustained_elapsed", "launch__registers_per_thread",
                        "smsp__average_warps_issue_stalled_per_issue_active.ratio"):
                    out.append((x, k))
            for x, k in sorted(out, reverse=True):
                print(f"  {k:90s} {x:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
