"""``gdnbench calibrate``: a self-check of the GPU timer against work of known cost.

* the device's copy bandwidth (1 GiB device-to-device copy, bytes read + written, event-timed);
* copies of 16 / 64 / 256 MiB timed by the graph timer (each launch on its own buffers, like input
  sets): the largest must reach >= 90% of that bandwidth, else the timer adds overhead;
* an empty kernel timed by the graph timer (many launches per graph): must cost < 3 µs per launch,
  the floor under every small-batch decode number; and by the events timer, for comparison;
* where NVML reports total energy, the energy counter as ``sweep --energy`` uses it: copies of
  32-256 MiB, each over a window aligned to the counter's updates (gdnbench.energy); their energy
  must follow a straight line in the bytes moved within 5% (the largest residual of a least-squares
  fit), else the counter (or the window) does not measure work, and each window must be >= 90%
  busy, else it measured idle power. The sizes are those whose copies run at the same bandwidth:
  the energy follows the GPU time, which is linear in the bytes only there (docs/energy.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from gdnbench.config import Timing as TimingConfig

MIB = 1 << 20
COPY_SIZES = (16 * MIB, 64 * MIB, 256 * MIB)
COPY_MIN_PCT = 90.0
EMPTY_MAX_US = 3.0
ENERGY_COPY_SIZES = (32 * MIB, 64 * MIB, 128 * MIB, 256 * MIB)


@dataclass(frozen=True)
class Verdict:
    name: str
    value: float
    limit: float
    ok: bool
    unit: str


def verdicts(result: dict) -> list[Verdict]:
    """The pass/fail criteria over a calibrate result (pure; tested on CPU)."""
    largest = max(result["copies"], key=lambda c: c["bytes"])
    pct = largest["pct_of_copy_bw"]
    empty = result["empty_graph_us"]
    out = [Verdict(f"graph-timed copy of {largest['bytes'] // MIB} MiB, % of copy bandwidth", pct, COPY_MIN_PCT,
                   pct >= COPY_MIN_PCT, "%"),
           Verdict("graph-timed empty kernel, µs per launch", empty, EMPTY_MAX_US, empty < EMPTY_MAX_US, "µs")]
    energy = result.get("energy") or {}
    if "max_rel_residual" in energy:
        from gdnbench.energy import LINEARITY_MAX_REL, MIN_BUSY

        dev = 100 * energy["max_rel_residual"]
        sizes = "/".join(str(c["bytes"] // MIB) for c in energy["copies"])
        out.append(Verdict(f"copy energy ({sizes} MiB) vs bytes, largest deviation from a line, % of the value",
                           dev, 100 * LINEARITY_MAX_REL, dev < 100 * LINEARITY_MAX_REL, "% deviation"))
        # a window with idle gaps measures idle power, not the copies (older results carry no busy field)
        busy = min(c.get("busy", float("nan")) for c in energy["copies"])
        if busy == busy:
            out.append(Verdict("least busy energy window, % of it running the copies", 100 * busy, 100 * MIN_BUSY,
                               busy >= MIN_BUSY, "%"))
    return out


def energy_calibration() -> dict:
    """The energy-counter check (GPU): {"skipped": why} where NVML has no total-energy counter."""
    import time

    from gdnbench.energy import EnergyError, copy_energy_check, detect_period, idle_step, open_counter

    counter, reason = open_counter()
    if counter is None:
        return {"skipped": reason}
    try:
        period = detect_period(counter.read, time.perf_counter, idle_step())
        return copy_energy_check(ENERGY_COPY_SIZES, counter, period)
    except EnergyError as e:
        return {"skipped": str(e)}


def run_calibration(cfg: TimingConfig | None = None, energy: bool = True) -> dict:
    import torch

    from gdnbench.env import collect_env
    from gdnbench.timer import device_roofline, input_set_count, l2_bytes, time_events, time_graph

    cfg = cfg or TimingConfig(min_samples=20, min_time_s=0.2, max_time_s=3.0)
    roof = device_roofline()
    peak = float(roof["copy_gbps"])  # type: ignore[arg-type]
    copies = []
    for size in COPY_SIZES:
        n = input_set_count(2 * size, l2_bytes(), cfg, 2 * size, torch.cuda.mem_get_info()[0])
        bufs = [(torch.empty(size, dtype=torch.uint8, device="cuda").random_(),
                 torch.empty(size, dtype=torch.uint8, device="cuda")) for _ in range(n)]
        fns = [(lambda s=s, d=d: d.copy_(s)) for s, d in bufs]
        t = time_graph(fns, cfg, name=f"calibrate|copy|{size // MIB}MiB")
        gbps = 2 * size / (t.stats.median * 1e-6) / 1e9
        copies.append({"bytes": size, "sets": n, "median_us": t.stats.median, "iqr_us": t.stats.iqr,
                       "gbps": gbps, "pct_of_copy_bw": 100 * gbps / peak})
        del bufs, fns
        torch.cuda.empty_cache()
    empty = [lambda: torch.cuda._sleep(0)] * 1000
    tg = time_graph(empty, cfg, name="calibrate|empty|graph")
    te = time_events(lambda: torch.cuda._sleep(0), cfg, name="calibrate|empty|events")
    env = collect_env()
    return {"gpu": env.get("gpu_name"), "sm": env.get("sm"), "driver": env.get("driver"),
            "torch": env["versions"].get("torch"), "roofline": roof, "copies": copies,
            "empty_graph_us": tg.stats.median, "empty_graph_iqr_us": tg.stats.iqr,
            "empty_events_us": te.stats.median, "sm_clock_mhz": tg.extra.get("sm_clock_mhz"),
            "throttled": tg.extra.get("throttled"), **({"energy": energy_calibration()} if energy else {})}
