"""Energy per launch from NVML's total-energy counter, measured over windows aligned to its updates.

``nvmlDeviceGetTotalEnergyConsumption`` reports the board's energy since the driver loaded, in mJ, but
it does not advance continuously: it steps once per internal update, tens to hundreds of ms apart
(``docs/energy.md`` gives the H100's). Two reads around a row's usual sampling window
(milliseconds) would mostly see the same value, or one step whose energy belongs to a window of
unknown length. So energy is its own pass (``sweep --energy``), after a row is timed:

1. the counter's update period is found once by polling (:func:`detect_period`): the median time
   between value changes, and their jitter;
2. the row's CUDA graph (the timer's input sets, one launch per set) is replayed back to back; after
   every counter read (which takes milliseconds) the queue is topped up to ``IN_FLIGHT_US`` of work,
   so the GPU runs without idle gaps while the host polls (:func:`measure_window`); the window's
   ``busy`` fraction shows that it did (docs/energy.md: what happened when it did not);
3. the window opens at an update edge, spans at least ``min_window_s`` and ``min_updates`` update
   periods, and closes at a later edge; the energy between the two edges is divided by the launches
   completed between them.

An edge is seen between two polls, so each end of the window is known to within the launches (and
the time) between those polls; the counter's resolution (1 mJ) and the jitter of its updates add to
that. The uncertainty per launch (:meth:`EnergyWindow.err_uj`) combines these, and shrinks with the
window's length. The energy is the whole board's, its static share included: what a serving step
costs while the GPU is busy with it.

The arithmetic (period detection, window, uncertainty, the linear fit ``calibrate`` checks) is pure
and takes any counter, clock and work step, so it is tested on a CPU with a fake counter; NVML and
torch are imported inside the GPU functions only.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from gdnbench.backends.base import Backend
    from gdnbench.cases import Case
    from gdnbench.config import Timing as TimingConfig
    from gdnbench.rows import Row

#: A window spans at least this long and this many counter updates (whichever is longer): with a
#: counter that steps about every 100 ms and jitters well under a millisecond, three updates keep a
#: row's uncertainty (recorded per row) to a few percent in under half a second (``docs/energy.md``).
MIN_WINDOW_S = 0.3
MIN_UPDATES = 3
#: Work the queue is topped up to after every counter read (an NVML read takes milliseconds,
#: ``docs/energy.md``): the window must time the work, not idle gaps between it.
IN_FLIGHT_US = 50_000.0
#: A window whose GPU was busy less than this fraction of it measured idle power too.
MIN_BUSY = 0.9
#: NVML reports total energy in whole millijoules.
NVML_RESOLUTION_MJ = 1.0
#: Calibrate: energy of a copy must follow a straight line in its bytes within this fraction.
LINEARITY_MAX_REL = 0.05


class EnergyError(Exception):
    """The counter cannot be used for this measurement (one line)."""


Read = Callable[[], float]      # the counter, in mJ
Clock = Callable[[], float]     # seconds
Step = Callable[[], float]      # run some work (or wait); returns launches completed so far


@dataclass(frozen=True)
class CounterPeriod:
    """How often the counter steps: median interval between value changes, and the largest deviation
    of an interval from it (both in seconds, from ``edges`` changes)."""

    period_s: float
    jitter_s: float
    edges: int


@dataclass(frozen=True)
class Poll:
    t: float        # clock after the read (s)
    value: float    # counter (mJ)
    done: float     # launches completed by then


def _poll(read: Read, clock: Clock, step: Step) -> Poll:
    done = step()
    value = read()
    return Poll(clock(), value, done)


def detect_period(read: Read, clock: Clock, step: Step, edges: int = 5, timeout_s: float = 5.0) -> CounterPeriod:
    """Poll (calling ``step`` between reads) until the counter has changed ``edges`` times; the
    intervals between changes give the period. EnergyError when it does not change often enough."""
    start = last = _poll(read, clock, step)
    times: list[float] = []
    while len(times) < edges:
        p = _poll(read, clock, step)
        if p.value != last.value:
            times.append((last.t + p.t) / 2)
        last = p
        if p.t - start.t > timeout_s:
            raise EnergyError(f"NVML's energy counter changed {len(times)} times in {timeout_s:g} s "
                              f"(needs {edges} to find its update period)")
    intervals = [b - a for a, b in zip(times, times[1:])]
    period = statistics.median(intervals)
    return CounterPeriod(period_s=period, jitter_s=max(abs(i - period) for i in intervals), edges=len(times))


@dataclass(frozen=True)
class Edge:
    """A counter change seen between two polls: the value after it, and where it lies (time and
    launches completed), as the midpoint and half-width of the polls around it."""

    value: float
    t: float
    t_slack: float
    done: float
    done_slack: float


def wait_edge(read: Read, clock: Clock, step: Step, timeout_s: float, last: Poll | None = None) -> tuple[Edge, Poll]:
    """Poll until the counter changes; the edge and the poll that saw it."""
    last = last or _poll(read, clock, step)
    deadline = last.t + timeout_s
    while True:
        p = _poll(read, clock, step)
        if p.value != last.value:
            return Edge(p.value, (last.t + p.t) / 2, (p.t - last.t) / 2, (last.done + p.done) / 2,
                        (p.done - last.done) / 2), p
        if p.t > deadline:
            raise EnergyError(f"NVML's energy counter did not change in {timeout_s:g} s")
        last = p


@dataclass(frozen=True)
class EnergyWindow:
    """Energy between two counter edges and the launches completed between them."""

    energy_mj: float
    window_s: float
    launches: float
    launch_slack: float     # launches: combined uncertainty of both edges' positions
    energy_slack_mj: float  # mJ: counter resolution and update jitter, both edges
    busy: float = math.nan  # fraction of the window the GPU spent running the launches (when known)

    @property
    def energy_uj(self) -> float:
        """Energy per launch (µJ)."""
        return 1e3 * self.energy_mj / self.launches

    @property
    def power_w(self) -> float:
        return self.energy_mj * 1e-3 / self.window_s

    @property
    def err_uj(self) -> float:
        """Uncertainty of energy_uj: relative errors of the energy and of the launch count, combined."""
        rel = math.hypot(self.energy_slack_mj / self.energy_mj, self.launch_slack / self.launches)
        return self.energy_uj * rel


def window_from_edges(first: Edge, last: Edge, period: CounterPeriod,
                      resolution_mj: float = NVML_RESOLUTION_MJ) -> EnergyWindow:
    """The window between two edges, with its uncertainties (pure arithmetic).

    Launch count: each edge lies between two polls, so its position in launches is known to within
    half the launches between them; the two ends combine in quadrature. Energy: each read is
    uncertain by the counter's resolution, and an update's timing by its jitter, worth the window's
    average power times the jitter at each end."""
    energy = last.value - first.value
    window = last.t - first.t
    launches = last.done - first.done
    if energy <= 0 or window <= 0 or launches <= 0:
        raise EnergyError(f"empty window (energy {energy:g} mJ over {window:.3f} s, {launches:g} launches)")
    power_mw = energy / window  # mJ/s
    launch_slack = math.hypot(first.done_slack, last.done_slack)
    energy_slack = math.hypot(resolution_mj * math.sqrt(2), power_mw * period.jitter_s * math.sqrt(2))
    return EnergyWindow(energy, window, launches, launch_slack, energy_slack)


def measure_window(read: Read, clock: Clock, step: Step, period: CounterPeriod, min_window_s: float = MIN_WINDOW_S,
                   min_updates: int = MIN_UPDATES, resolution_mj: float = NVML_RESOLUTION_MJ) -> EnergyWindow:
    """Run ``step`` (work, back to back) from one counter edge to the first edge after
    max(min_window_s, min_updates periods); the energy per launch over that window."""
    need = max(min_window_s, min_updates * period.period_s)
    timeout = 3 * max(period.period_s, 0.01) + period.jitter_s + 1.0
    first, p = wait_edge(read, clock, step, timeout)
    while p.t - first.t < need:
        p = _poll(read, clock, step)
    last, _ = wait_edge(read, clock, step, timeout, last=p)
    return window_from_edges(first, last, period, resolution_mj)


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares line y = slope * x + intercept; returns (slope, intercept, largest |residual| / y)."""
    n = len(xs)
    if n < 2 or len(ys) != n:
        raise ValueError("a line needs at least two points")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    intercept = my - slope * mx
    worst = max(abs(y - (slope * x + intercept)) / abs(y) for x, y in zip(xs, ys))
    return slope, intercept, worst


def per_token_uj(energy_uj: float, batch: int, n_padded: int, tokens: int) -> float:
    """Energy per token of a decode / MTP launch: its valid rows times the tokens each verifies."""
    return energy_uj / max((batch - n_padded) * tokens, 1)


# ---- GPU ------------------------------------------------------------------------------------------

def nvml_index(torch_index: int) -> int:
    """NVML's index of torch's device ``torch_index`` (they differ under CUDA_VISIBLE_DEVICES)."""
    import torch

    mapping = getattr(torch.cuda, "_get_nvml_device_index", None)
    try:
        return int(mapping(torch_index)) if mapping else torch_index
    except Exception:
        return torch_index


class NvmlCounter:
    """NVML's total-energy counter of torch's GPU ``index`` (mJ)."""

    def __init__(self, index: int = 0) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(nvml_index(index))

    def read(self) -> float:
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))


def open_counter(index: int | None = None) -> tuple[NvmlCounter | None, str]:
    """The counter of torch's GPU ``index`` (default: the current one), or None and why not (no GPU, no
    NVML, or the GPU does not report total energy)."""
    try:
        import torch

        if index is None:
            index = torch.cuda.current_device()
    except Exception as e:
        return None, f"no CUDA GPU ({type(e).__name__})"
    try:
        counter = NvmlCounter(index)
        counter.read()
    except Exception as e:  # NVMLError_NotSupported, no driver, no pynvml
        return None, f"NVML reports no total-energy counter here ({type(e).__name__})"
    return counter, ""


def graph_stepper(graph: Any, launches_per_replay: int, replays_per_step: int = 1, depth: int = 2) -> Step:
    """A step that first retires the finished groups of ``replays_per_step`` replays of ``graph``, then
    tops the queue back up to ``depth`` groups, so the GPU never idles while the host reads the counter
    (an NVML read takes milliseconds); returns launches completed."""
    import collections

    import torch

    pending: collections.deque = collections.deque()
    state = {"done": 0}

    def step() -> float:
        while pending and pending[0].query():
            pending.popleft()
            state["done"] += launches_per_replay * replays_per_step
        while len(pending) < depth:
            for _ in range(replays_per_step):
                graph.replay()
            ev = torch.cuda.Event()
            ev.record()
            pending.append(ev)
        return float(state["done"])

    return step


def idle_step(poll_s: float = 0.001) -> Step:
    return lambda: (time.sleep(poll_s), 0.0)[1]


def time_replay_us(graph: Any, stream: Any, reps: int = 5, back_to_back: int = 8) -> float:
    """GPU time of one replay of ``graph`` (µs): the median of ``reps`` timings of ``back_to_back``
    replays queued together, so the host's launch latency before the first is not counted as work
    (it would make ``busy`` read high and hide idle gaps)."""
    import torch

    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for i in range(back_to_back):
            graph.replay()
            if i == 0:
                start.record(stream)   # after the first replay is queued: the rest run behind it
        end.record(stream)
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / (back_to_back - 1))
    return statistics.median(times)


def measure_graph(fns: Sequence[Callable[[], object]], counter: NvmlCounter, period: CounterPeriod,
                  step_us: float = 2000.0, min_window_s: float = MIN_WINDOW_S,
                  min_updates: int = MIN_UPDATES) -> EnergyWindow:
    """Capture ``fns`` in a graph and measure its energy per launch over a window (GPU).

    Each step enqueues about ``step_us`` of replays, and ``IN_FLIGHT_US`` of work stays queued, so the
    GPU runs back to back while the host polls. The window's ``busy`` fraction (GPU time of the
    completed launches over the window) shows that it did."""
    import torch

    from gdnbench.timer import capture_graph

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = capture_graph(fns, stream)
    with torch.cuda.stream(stream):
        graph.replay()
        stream.synchronize()
        replay_us = time_replay_us(graph, stream)
        reps = max(1, math.ceil(step_us / max(replay_us, 1e-3)))
        depth = max(2, math.ceil(IN_FLIGHT_US / (reps * max(replay_us, 1e-3))))
        step = graph_stepper(graph, len(fns), reps, depth)
        w = measure_window(counter.read, time.perf_counter, step, period, min_window_s, min_updates)
        stream.synchronize()
    del graph
    busy = w.launches / len(fns) * replay_us * 1e-6 / w.window_s
    return dataclasses.replace(w, busy=busy)


@dataclass
class EnergyPass:
    """The ``--energy`` pass of a sweep: one counter and its period, filling rows' energy columns."""

    counter: NvmlCounter | None
    period: CounterPeriod | None
    cfg: Any
    reason: str = ""

    @classmethod
    def open(cls, cfg: TimingConfig) -> EnergyPass:
        import torch

        counter, reason = open_counter() if torch.cuda.is_available() else (None, "needs a CUDA GPU")
        if counter is None:
            return cls(None, None, cfg, reason)
        try:
            period = detect_period(counter.read, time.perf_counter, idle_step())
        except EnergyError as e:
            return cls(None, None, cfg, str(e))
        return cls(counter, period, cfg)

    def fill(self, row: Row, case: Case, backend: Backend) -> None:
        """Energy columns of a timed row (its reason notes a failure; the row stays ok)."""
        from gdnbench.timer import graph_launches

        assert self.counter is not None and self.period is not None
        try:
            sets, fns = graph_launches(case, backend, self.cfg)
            w = measure_graph(fns, self.counter, self.period)
            del sets, fns
        except Exception as e:
            text = str(e).splitlines()[0] if str(e) else ""
            row.reason = f"energy not measured: {type(e).__name__}: {text}"[:300]
            return
        if w.busy < MIN_BUSY:  # idle power in the window: no figure rather than a wrong one
            row.reason = f"energy not measured: the window was only {w.busy:.0%} busy (idle power included)"
            return
        row.energy_uj, row.energy_uj_err, row.power_w, row.energy_window_s = w.energy_uj, w.err_uj, w.power_w, w.window_s


def copy_energy_check(sizes: Sequence[int], counter: NvmlCounter, period: CounterPeriod) -> dict:
    """Energy per device copy of each size (a graph of copies between distinct buffers) and the
    straight line through them: calibrate's check that the counter measures work linearly (GPU)."""
    import torch

    points = []
    for size in sizes:
        n = max(2, min(8, int(0.5 * torch.cuda.mem_get_info()[0] // (2 * size))))
        bufs = [(torch.empty(size, dtype=torch.uint8, device="cuda").random_(),
                 torch.empty(size, dtype=torch.uint8, device="cuda")) for _ in range(n)]
        fns = [(lambda s=s, d=d: d.copy_(s)) for s, d in bufs]
        w = measure_graph(fns, counter, period)
        points.append({"bytes": size, "energy_uj": w.energy_uj, "energy_uj_err": w.err_uj, "power_w": w.power_w,
                       "window_s": w.window_s, "launches": w.launches, "busy": w.busy})
        del bufs, fns
        torch.cuda.empty_cache()
    slope, intercept, worst = linear_fit([2.0 * p["bytes"] for p in points], [p["energy_uj"] for p in points])
    return {"copies": points, "nj_per_byte": slope * 1e3, "intercept_uj": intercept, "max_rel_residual": worst,
            "period_s": period.period_s, "jitter_s": period.jitter_s}
