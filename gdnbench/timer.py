"""Timers: turn a backend's launch callable into per-launch time samples (microseconds).

``graph`` (GPU default): N launches, each on its own input set (its own q/k/v/gates, state pool and outputs),
captured in one CUDA graph and replayed; a sample is one replay's time / N. N is chosen so the sets
together move more than ``l2_multiple`` x the L2 size (and at least ``min_sets``), so every launch
reads its state from DRAM as a serving engine's does (one layer's state after another's).
``events``: single launches timed with CUDA events, each after an L2 flush that is not timed.

In both GPU modes (and the copy-bandwidth reference) a sleep kernel holds the GPU from before the
start event until the host has enqueued the timed work (nvbench's blocking kernel, ``host_cover``),
so the host's enqueue time is not measured: without it a replay's time included the host's
``cudaGraphLaunch`` (several µs) spread over the graph's launches, only a few at mid batch sizes
(timer revision 2; ``docs/timing.md`` records what it moved and the timer's other design measurements).
``cpu``: host wall clock around single synchronous launches.

GPU modes run on a side stream after warm-up, sample adaptively (``stats.sample_until``) inside an
NVTX range ``<phase>|<backend>|<case id>`` (around the replays, not the capture), read SM clock /
temperature / throttle reasons through NVML during sampling, and check afterwards that every state
pool is still finite (GDN kernels update their state in place, launch after launch).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from gdnbench.config import Timing as TimingConfig
from gdnbench.stats import Stats, StopRule, sample_until, summarize

if TYPE_CHECKING:
    from gdnbench.backends.base import Backend
    from gdnbench.cases import Case

#: What a run's timings can be compared with: runs of the same revision only. Raised whenever a change
#: to the timers moves their numbers; recorded in env.json, and figures never combine revisions.
#: 2: graph-mode replays and the copy-bandwidth reference are enqueued while a sleep kernel holds the GPU.
#: 3: what each launch returns is kept through the graph capture, so a library that returns a fresh final
#:    state (fla's kernel alone, torch) writes each set's own memory rather than one L2-resident block.
TIMER_REVISION = 3


@dataclass(frozen=True)
class Timing:
    """Result of timing one (case, backend): per-launch samples in µs and their summary."""

    mode: str
    samples_us: list[float]
    stats: Stats
    converged: bool
    launches_per_sample: int = 1
    extra: dict[str, object] = field(default_factory=dict)


def stop_rule(cfg: TimingConfig) -> StopRule:
    return StopRule(min_samples=cfg.min_samples, max_samples=cfg.max_samples, min_time_s=cfg.min_time_s,
                    max_time_s=cfg.max_time_s, target_rel_noise=cfg.target_rel_noise)


def time_cpu(fn: Callable[[], object], cfg: TimingConfig, name: str = "gdnbench") -> Timing:
    """Wall-clock time of single launches on the CPU, after ``cfg.warmup`` untimed launches."""
    from gdnbench.ranges import nvtx_range

    for _ in range(cfg.warmup):
        fn()

    def once() -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e6

    with nvtx_range(name):
        samples, converged = sample_until(once, stop_rule(cfg))
    return Timing(mode="cpu", samples_us=samples, stats=summarize(samples), converged=converged)


# ---- GPU ------------------------------------------------------------------------------------------

def input_set_count(bytes_per_launch: int, l2_bytes: int, cfg: TimingConfig, set_nbytes: int = 0,
                    free_bytes: int | None = None) -> int:
    """Input sets per graph: enough that the sets together move > l2_multiple * L2, at least
    ``min_sets``, at most ``max_sets``, and no more than fit in 60% of ``free_bytes`` (never < 1)."""
    need = math.ceil(cfg.l2_multiple * l2_bytes / max(bytes_per_launch, 1)) + 1
    n = min(max(cfg.min_sets, need), cfg.max_sets)
    if free_bytes is not None and set_nbytes > 0:
        n = min(n, int(0.6 * free_bytes // set_nbytes))
    return max(n, 1)


def l2_bytes() -> int:
    import torch

    p = torch.cuda.get_device_properties(torch.cuda.current_device())
    return int(getattr(p, "L2_cache_size", 0) or 50 * 2**20)


def host_cover(enqueue: Callable[[], object], clock_mhz: float, tries: int = 3) -> tuple[int, float, bool]:
    """GPU sleep that outlasts the host's time to enqueue a start event and ``enqueue()``.

    Measured with the GPU held by a long sleep: (sleep cycles with a 2x margin, host µs, covered).
    Not covered when the GPU finished the sleep before the call returned (the call synchronised with
    the GPU, or took longer than ~10 ms): no sleep can hide that, so 0 cycles are returned and the
    host's time stays in the measurement.

    Whether the sleep has ended is read from the start event recorded right after it, not from the
    stream: a call that synchronises and then enqueues more work leaves the stream busy with that work,
    though the sleep it was meant to hide is long over."""
    import torch

    stream = torch.cuda.current_stream()
    host, covered = [], True
    for _ in range(tries):
        event = torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(PROBE_SLEEP_CYCLES)
        t0 = time.perf_counter()
        event.record()  # completes when the sleep does
        enqueue()
        host.append(time.perf_counter() - t0)
        covered &= not event.query()
        stream.synchronize()
    return (sleep_cycles(max(host), clock_mhz) if covered else 0), max(host) * 1e6, covered


def _sample_events(run: Callable[[], None], cfg: TimingConfig, per: int, monitor, before: Callable[[], None] | None = None):
    """Sampling loop shared by graph and events modes: one sample = ``run()`` between two events, / per."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    count = {"n": 0}

    def once() -> float:
        if before is not None:
            before()
        start.record()
        run()
        end.record()
        end.synchronize()
        count["n"] += 1
        if count["n"] % 16 == 1:
            monitor.sample()
        return start.elapsed_time(end) * 1e3 / per

    return sample_until(once, stop_rule(cfg))


def time_graph(fns: Sequence[Callable[[], object]], cfg: TimingConfig, name: str = "gdnbench") -> Timing:
    """Capture ``fns`` (one launch per input set) in one CUDA graph; sample replays; per-launch µs."""
    import torch

    from gdnbench.clocks import ClockMonitor
    from gdnbench.ranges import in_sample_range, nvtx_range

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = capture_graph(fns, stream)
    monitor = ClockMonitor(torch.cuda.current_device())
    with torch.cuda.stream(stream):
        for _ in range(max(cfg.warmup, 1)):
            graph.replay()
        stream.synchronize()
        monitor.sample()
        run = in_sample_range(name, graph.replay)
        cycles, host_us, covered = host_cover(run, _clock(monitor))

        def before() -> None:  # the replay is enqueued while the GPU sleeps: its host time is not timed
            if cycles:
                torch.cuda._sleep(cycles)

        with nvtx_range(name):
            samples, converged = _sample_events(run, cfg, len(fns), monitor, before=before)
        monitor.sample()
    stream.synchronize()
    del graph
    return Timing(mode="graph", samples_us=samples, stats=summarize(samples), converged=converged,
                  launches_per_sample=len(fns), extra={"input_sets": len(fns), "host_enqueue_us": host_us,
                                                       "host_covered": covered, **monitor.summary()})


def _clock(monitor) -> float:
    """The last SM clock (MHz) the monitor read, 1980 (the H100's boost clock) when it has none."""
    return monitor.samples[-1][0] if monitor.samples else 1980.0


PROBE_SLEEP_CYCLES = 20_000_000  # ~10 ms at 2 GHz: longer than any launch's enqueue worth hiding


def sleep_cycles(host_seconds: float, clock_mhz: float, margin: float = 2.0) -> int:
    """GPU sleep (in SM cycles) that outlasts ``margin`` x the host's time to enqueue one launch."""
    return int(host_seconds * margin * clock_mhz * 1e6) + 1000


def time_events(fn: Callable[[], object], cfg: TimingConfig, name: str = "gdnbench",
                flush_bytes: int | None = None) -> Timing:
    """Single launches between CUDA events, each after an untimed L2 flush (memset of 2x L2).

    Before the start event a sleep kernel holds the GPU for longer than the host takes to enqueue
    the launch (nvbench's blocking-kernel idea), so Python and driver overhead of the call is not in
    the measured time; what is measured is the launch's GPU work, including gaps between its kernels.
    A call that synchronises with the GPU (or takes > ~10 ms to enqueue) cannot be covered: it is
    timed without the sleep, host time included, and ``extra["host_covered"]`` says so.
    """
    import torch

    from gdnbench.clocks import ClockMonitor
    from gdnbench.ranges import in_sample_range, nvtx_range

    flush = torch.empty(flush_bytes or 2 * l2_bytes(), dtype=torch.uint8, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    monitor = ClockMonitor(torch.cuda.current_device())
    with torch.cuda.stream(stream):
        for _ in range(max(cfg.warmup, 1)):
            fn()
        stream.synchronize()
        monitor.sample()
        run = in_sample_range(name, fn)
        cycles, host_us, covered = host_cover(run, _clock(monitor))

        def before() -> None:
            flush.zero_()
            if cycles:
                torch.cuda._sleep(cycles)

        with nvtx_range(name):
            samples, converged = _sample_events(run, cfg, 1, monitor, before=before)
        monitor.sample()
    stream.synchronize()
    return Timing(mode="events", samples_us=samples, stats=summarize(samples), converged=converged,
                  launches_per_sample=1, extra={"input_sets": 1, "host_enqueue_us": host_us, "host_covered": covered,
                                                **monitor.summary()})


def _nonfinite(inputs_sets) -> str | None:
    import torch

    for i, x in enumerate(inputs_sets):
        for label, t in (("pool", x.pool_storage), ("intermediate", x.inter_storage)):
            if t is not None and not bool(torch.isfinite(t).all()):
                return f"{label} of input set {i}"
    return None


def graph_launches(case: Case, backend: Backend, cfg: TimingConfig) -> tuple[list, list[Callable[[], object]]]:
    """Graph mode's input sets (1, 2, ...: enough to spill the L2, see input_set_count) and one built
    launch per set: what one graph replay runs (the timer's and the energy pass's)."""
    import torch

    from gdnbench.inputs import make_inputs

    first = make_inputs(case, "cuda", set_index=1)
    free, _ = torch.cuda.mem_get_info()
    n = input_set_count(case.bytes_moved(), l2_bytes(), cfg, first.nbytes(), free)
    sets = [first] + [make_inputs(case, "cuda", set_index=i) for i in range(2, n + 1)]
    return sets, [backend.build(case, x) for x in sets]


def capture_graph(fns: Sequence[Callable[[], object]], stream) -> object:
    """One CUDA graph of ``fns`` captured on ``stream`` after one eager warm-up launch of each.

    What a launch returns (its output, and for a library that allocates it, its new state) is kept
    until the capture ends. Otherwise the graph's memory pool hands every set the block the previous
    set's launch just freed, and all launches of a replay write their outputs to the same addresses:
    for a library that returns a fresh final state (fla's kernel alone) those writes then hit in L2
    whenever one state fits there, which no serving engine's stream of layers gets. Kept, each set
    writes its own memory, as each layer's state is its own."""
    import torch

    with torch.cuda.stream(stream):
        for fn in fns:  # warm-up: one eager launch per set (lazy allocations, autotune, caches)
            fn()
    stream.synchronize()
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph, stream=stream):
            kept = [fn() for fn in fns]
        del kept
    except Exception as e:
        raise RuntimeError(f"launch is not capturable in a CUDA graph ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}); time it with --timing events") from e
    return graph


def time_gpu(mode: str, case: Case, backend: Backend, cfg: TimingConfig) -> Timing:
    """Time ``backend`` on ``case`` in ``mode`` (graph | events) with fresh input sets (1, 2, ...)."""
    import torch

    from gdnbench.inputs import make_inputs
    from gdnbench.ranges import range_name

    name = range_name(case.phase, backend.name, case.id)
    if mode == "graph":
        sets, fns = graph_launches(case, backend, cfg)
        t = time_graph(fns, cfg, name)
    elif mode == "events":
        sets = [make_inputs(case, "cuda", set_index=1)]
        t = time_events(backend.build(case, sets[0]), cfg, name)
    else:
        raise ValueError(f"unknown GPU timing mode '{mode}'")
    torch.cuda.synchronize()
    bad = _nonfinite(sets)
    if bad:
        t.extra["nonfinite_state"] = bad
    return t


def copy_bandwidth(nbytes: int = 1 << 30, reps: int = 20, warmup_s: float = 0.3) -> dict[str, float]:
    """Device-to-device copy of ``nbytes`` (bytes read + written count): median of ``reps`` event
    timings after ``warmup_s`` seconds of back-to-back copies. The warm-up lets the clocks settle:
    copies timed straight after an idle gap read low, which put rows above 100% of the reference
    (``docs/timing.md``)."""
    import time

    import torch

    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    torch.cuda.synchronize()
    end = time.perf_counter() + warmup_s
    while time.perf_counter() < end:
        dst.copy_(src)
        torch.cuda.synchronize()
    cycles, _, _ = host_cover(lambda: dst.copy_(src), 1980.0)  # the copy is enqueued while the GPU sleeps
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(cycles)
        a.record()
        dst.copy_(src)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e-3)
    t = sorted(times)[len(times) // 2]
    del src, dst
    torch.cuda.empty_cache()
    return {"copy_bytes": nbytes, "copy_s": t, "copy_gbps": 2 * nbytes / t / 1e9, "copy_reps": reps,
            "copy_warmup_s": warmup_s}


def device_roofline() -> dict[str, object]:
    """Measured once per run and written to env.json: the copy bandwidth that % of peak refers to."""
    r: dict[str, object] = dict(copy_bandwidth())
    r["method"] = (f"median of {r['copy_reps']} event-timed 1 GiB device-to-device copies after {r['copy_warmup_s']} s "
                   "of warm-up copies; GB/s counts bytes read + written")
    r["l2_bytes"] = l2_bytes()
    return r
