"""energy.py: update-period detection, windows aligned to counter edges, uncertainty, linear fit (fake
counter and clock on the CPU); calibrate's energy verdict."""

from __future__ import annotations

import math

import pytest

from gdnbench.calibrate import verdicts
from gdnbench.energy import (CounterPeriod, Edge, EnergyError, detect_period, linear_fit, measure_window,
                             per_token_uj, window_from_edges)


class FakeGPU:
    """A board drawing ``power_w`` while launches of ``launch_s`` each run back to back; its energy
    counter (mJ, whole numbers) updates every ``period_s`` (+ a fixed pattern of jitter). Each step
    of work advances the clock by ``step_s`` and completes the launches that fit."""

    def __init__(self, power_w=350.0, period_s=0.084, jitter_s=0.004, launch_s=2e-5, step_s=0.002, read_s=5e-5):
        self.p, self.period, self.jitter, self.launch, self.step_s, self.read_s = (power_w, period_s, jitter_s,
                                                                                   launch_s, step_s, read_s)
        self.t = 0.0

    def _last_update(self) -> float:
        k = math.floor(self.t / self.period)
        while k >= 0:
            u = k * self.period + self.jitter * ((k * 7919) % 5 - 2) / 2
            if u <= self.t:
                return u
            k -= 1
        return 0.0

    def read(self) -> float:
        self.t += self.read_s
        return float(math.floor(self.p * self._last_update() * 1e3))

    def clock(self) -> float:
        return self.t

    def step(self) -> float:
        self.t += self.step_s
        return float(math.floor(self.t / self.launch))

    @property
    def true_uj(self) -> float:
        return self.p * self.launch * 1e6


def test_detect_period():
    g = FakeGPU()
    p = detect_period(g.read, g.clock, g.step, edges=6)
    assert p.period_s == pytest.approx(0.084, abs=0.006) and p.jitter_s < 0.015 and p.edges == 6


def test_detect_period_refuses_a_frozen_counter():
    t = {"t": 0.0}

    def clock():
        return t["t"]

    def step():
        t["t"] += 0.01
        return 0.0

    with pytest.raises(EnergyError, match="changed 0 times"):
        detect_period(lambda: 5.0, clock, step, timeout_s=0.5)


@pytest.mark.parametrize("step_s", [0.0005, 0.002, 0.01])
def test_window_recovers_energy_per_launch(step_s):
    g = FakeGPU(step_s=step_s)
    period = detect_period(g.read, g.clock, g.step)
    w = measure_window(g.read, g.clock, g.step, period, min_window_s=1.0, min_updates=10)
    assert w.window_s >= 1.0 - period.period_s and w.window_s < 1.0 + 3 * period.period_s
    assert abs(w.energy_uj - g.true_uj) <= max(w.err_uj, 1e-9) * 1.5   # within its stated uncertainty
    assert w.err_uj / w.energy_uj < 0.03                                 # and that is small over ~1 s
    assert w.power_w == pytest.approx(350.0, rel=0.03)


def test_longer_window_lowers_the_uncertainty():
    errs = []
    for seconds in (0.5, 2.0):
        g = FakeGPU()
        period = detect_period(g.read, g.clock, g.step)
        w = measure_window(g.read, g.clock, g.step, period, min_window_s=seconds, min_updates=1)
        errs.append(w.err_uj / w.energy_uj)
    assert errs[1] < errs[0] / 2


def test_window_arithmetic():
    period = CounterPeriod(period_s=0.1, jitter_s=0.0, edges=5)
    first = Edge(value=1000.0, t=0.0, t_slack=0.001, done=0.0, done_slack=50.0)
    last = Edge(value=301000.0, t=1.0, t_slack=0.001, done=1_000_000.0, done_slack=50.0)
    w = window_from_edges(first, last, period, resolution_mj=1.0)
    assert w.energy_uj == pytest.approx(300.0)         # 300 J over 1e6 launches
    assert w.power_w == pytest.approx(300.0)
    rel = math.hypot(math.sqrt(2) / 300_000, math.hypot(50, 50) / 1e6)
    assert w.err_uj == pytest.approx(300.0 * rel)
    with pytest.raises(EnergyError, match="empty window"):
        window_from_edges(first, first, period)


def test_linear_fit_and_per_token():
    xs = [1.0, 2.0, 4.0, 8.0]
    slope, intercept, worst = linear_fit(xs, [3 + 2 * x for x in xs])
    assert slope == pytest.approx(2) and intercept == pytest.approx(3) and worst < 1e-12
    _, _, worst = linear_fit(xs, [5.0, 7.0, 11.0, 25.0])
    assert worst > 0.05
    assert per_token_uj(640.0, batch=64, n_padded=0, tokens=1) == 10.0
    assert per_token_uj(640.0, batch=72, n_padded=8, tokens=1) == 10.0


def _cal(energy):
    return {"copies": [{"bytes": 256 << 20, "pct_of_copy_bw": 95.0}], "empty_graph_us": 1.5, "energy": energy}


def test_calibrate_energy_verdict():
    copies = [{"bytes": b << 20} for b in (64, 128, 256, 512)]
    good = verdicts(_cal({"copies": copies, "max_rel_residual": 0.02}))
    assert len(good) == 3 and good[2].ok and "deviation from a line" in good[2].name
    bad = verdicts(_cal({"copies": copies, "max_rel_residual": 0.08}))
    assert not bad[2].ok
    assert len(verdicts(_cal({"skipped": "no counter"}))) == 2
    # a window where the GPU mostly idled between copies measured idle power: it fails
    busy = [{**c, "busy": b} for c, b in zip(copies, (0.98, 0.99, 0.97, 0.99))]
    v = verdicts(_cal({"copies": busy, "max_rel_residual": 0.02}))
    assert len(v) == 4 and v[3].ok and v[3].value == pytest.approx(97)
    idle = [{**c, "busy": b} for c, b in zip(copies, (0.1, 0.2, 0.4, 0.9))]
    assert not verdicts(_cal({"copies": idle, "max_rel_residual": 0.02}))[3].ok


def test_energy_module_imports_no_gpu_library():
    import subprocess
    import sys

    code = ("import sys, gdnbench.energy; bad = [m for m in ('torch', 'pynvml') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_graph_stepper_tops_the_queue_up_after_every_read(monkeypatch):
    """The energy window's GPU must never idle while the host reads the counter: each step retires the
    finished groups of replays and enqueues new ones until ``depth`` groups are in flight again (the
    H100 calibrate run with a stepper that added one group per read, a read taking 3-17 ms, measured
    windows 43% busy). A fake event finishes when the fake GPU clock passes its enqueued end."""
    import torch

    from gdnbench.energy import graph_stepper

    gpu = {"now": 0.0, "queued_until": 0.0, "replays": 0}

    class Graph:
        def replay(self):
            gpu["replays"] += 1
            gpu["queued_until"] = max(gpu["queued_until"], gpu["now"]) + 1.0   # 1 ms of work per replay

    class Event:
        def record(self):
            self.at = gpu["queued_until"]

        def query(self):
            return gpu["now"] >= self.at

    monkeypatch.setattr(torch.cuda, "Event", Event)
    step = graph_stepper(Graph(), launches_per_replay=4, replays_per_step=2, depth=5)   # 10 ms in flight
    assert step() == 0 and gpu["replays"] == 10
    idle = 0.0
    for _ in range(200):          # each read takes 7 ms: the queue (>= 10 ms) must not run dry
        gpu["now"] += 7.0
        idle += max(0.0, gpu["now"] - gpu["queued_until"])
        done = step()
        assert gpu["queued_until"] - gpu["now"] >= 10.0 - 2.0 - 1e-9
    assert idle == 0.0
    assert done == pytest.approx(4 * 2 * (gpu["replays"] // 2 - 5), abs=8)   # all but the groups in flight


@pytest.mark.parametrize("busy,filled", [(0.97, True), (0.5, False)])
def test_a_mostly_idle_window_gives_no_figure(monkeypatch, busy, filled):
    """A row's energy comes only from a window the GPU spent >= 90% of running its launches; otherwise
    the columns stay empty and the reason says why (the figure would include idle power)."""
    import dataclasses

    from gdnbench import energy, timer
    from gdnbench.energy import EnergyPass, EnergyWindow
    from gdnbench.rows import Row

    w = EnergyWindow(energy_mj=300.0, window_s=1.0, launches=1000.0, launch_slack=1.0, energy_slack_mj=1.0)
    monkeypatch.setattr(timer, "graph_launches", lambda case, backend, cfg: ([], [lambda: None]))
    monkeypatch.setattr(energy, "measure_graph", lambda fns, counter, period: dataclasses.replace(w, busy=busy))
    row = Row(case_id="c", backend="b", phase="decode", status="ok", check="pass", median_us=10.0)
    EnergyPass(counter=object(), period=CounterPeriod(0.1, 0.0, 5), cfg=None).fill(row, None, None)
    if filled:
        assert row.energy_uj == pytest.approx(300.0) and row.power_w == pytest.approx(0.3) and not row.reason
    else:
        assert row.energy_uj is None and row.power_w is None and row.energy_window_s is None
        assert row.reason == "energy not measured: the window was only 50% busy (idle power included)"
