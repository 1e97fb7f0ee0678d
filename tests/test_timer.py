"""timer.py: input-set count, CPU timer; GPU timers (marked gpu) against work of known cost."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_case

from gdnbench.config import Timing as TimingConfig
from gdnbench.timer import input_set_count, time_cpu

L2 = 50 * 2**20


@pytest.mark.parametrize("per_launch,expected", [
    (2 * 2**20, 101),       # 2 MiB per launch: > 4 x 50 MiB takes 101 sets
    (64 * 2**20, 5),        # 64 MiB: 4 sets = 256 MiB > 200 MiB, plus one
    (2 * 2**30, 4),         # 2 GiB: min_sets
    (1024, 1024),           # tiny: capped at max_sets
])
def test_input_set_count(per_launch, expected):
    cfg = TimingConfig()
    n = input_set_count(per_launch, L2, cfg)
    assert n == expected
    assert n == cfg.max_sets or (n * per_launch > cfg.l2_multiple * L2 and n >= cfg.min_sets)


def test_capture_keeps_each_launchs_output_until_the_capture_ends(monkeypatch):
    """Every set's launch returns a new allocation (as fla's kernel alone returns its final state): all of
    them must still be alive when the last launch of the capture runs, so the graph's pool gives each set
    its own memory, and be released after the capture."""
    import contextlib
    import gc
    import weakref

    from gdnbench import timer

    class Out:  # stands in for a tensor the launch allocates
        pass

    refs, alive_at_last = [], []

    def launch_of(i, n):
        def launch():
            out = Out()
            refs.append(weakref.ref(out))
            if capturing and i == n - 1:
                alive_at_last.append(sum(r() is not None for r in refs[-n:]))
            return out
        return launch

    capturing = False

    @contextlib.contextmanager
    def fake_graph(graph, stream=None):
        nonlocal capturing
        capturing = True
        yield
        capturing = False

    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: object())
    monkeypatch.setattr(torch.cuda, "graph", fake_graph)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())

    class Stream:
        def synchronize(self):
            pass

    n = 5
    timer.capture_graph([launch_of(i, n) for i in range(n)], Stream())
    gc.collect()
    assert alive_at_last == [n]                     # the capture's 5 outputs all alive at its last launch
    assert all(r() is None for r in refs)           # and none kept after the capture


def test_input_set_count_bounded_by_memory():
    cfg = TimingConfig()
    assert input_set_count(2**20, L2, cfg, set_nbytes=2**30, free_bytes=10 * 2**30) == 6
    assert input_set_count(2**20, L2, cfg, set_nbytes=2**40, free_bytes=10 * 2**30) == 1


def test_time_cpu_counts_warmup_and_samples():
    calls = {"n": 0}

    def fn():
        calls["n"] += 1
        sum(range(2000))

    cfg = TimingConfig(warmup=2, min_samples=7, max_samples=7, min_time_s=0, max_time_s=10, target_rel_noise=1e-9)
    t = time_cpu(fn, cfg)
    assert t.mode == "cpu" and t.stats.n == 7 and calls["n"] == 9 and t.stats.median > 0


# ---- GPU (run on the GPU host: make gpu-test) --------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.timing
def test_graph_timer_reproduces_copy_bandwidth():
    from gdnbench.timer import copy_bandwidth, l2_bytes, time_graph

    peak = copy_bandwidth()["copy_gbps"]
    size = 256 * 2**20
    cfg = TimingConfig(min_samples=10, min_time_s=0.1)
    n = input_set_count(2 * size, l2_bytes(), cfg)
    bufs = [(torch.empty(size, dtype=torch.uint8, device="cuda").random_(), torch.empty(size, dtype=torch.uint8,
             device="cuda")) for _ in range(n)]
    t = time_graph([(lambda s=s, d=d: d.copy_(s)) for s, d in bufs], cfg)
    gbps = 2 * size / (t.stats.median * 1e-6) / 1e9
    assert 0.9 * peak <= gbps <= 1.1 * peak and t.launches_per_sample == n


@pytest.mark.gpu
@pytest.mark.timing
def test_copy_bandwidth_is_repeatable():
    """The roofline's denominator: two measurements in one process agree within 2% (without the
    warm-up, one taken after an idle gap read 2.3% low on the H100)."""
    from gdnbench.timer import copy_bandwidth

    a, b = copy_bandwidth()["copy_gbps"], copy_bandwidth()["copy_gbps"]
    assert abs(a - b) <= 0.02 * max(a, b), (a, b)


@pytest.mark.gpu
@pytest.mark.timing
def test_graph_timer_empty_kernel_under_3us():
    from gdnbench.timer import time_graph

    t = time_graph([lambda: torch.cuda._sleep(0)] * 500, TimingConfig(min_samples=10))
    assert 0 < t.stats.median < 3.0


@pytest.mark.gpu
@pytest.mark.timing
def test_graph_timer_leaves_out_the_host_enqueue():
    """4 empty kernels in a graph time at about what 500 do per launch: the host's cudaGraphLaunch
    (several µs) happens while a sleep kernel holds the GPU, instead of being spread over 4 launches."""
    from gdnbench.timer import time_graph

    few = time_graph([lambda: torch.cuda._sleep(0)] * 4, TimingConfig(min_samples=20))
    many = time_graph([lambda: torch.cuda._sleep(0)] * 500, TimingConfig(min_samples=10))
    assert few.extra["host_covered"] and few.extra["host_enqueue_us"] > 0, few.extra
    assert few.stats.median < many.stats.median + 1.0, (few.stats.median, many.stats.median, few.extra)


@pytest.mark.gpu
@pytest.mark.timing
@pytest.mark.parametrize("mode", ["graph", "events"])
def test_time_gpu_torch_decode(mode):
    from gdnbench.backends.torch_eager import BACKEND
    from gdnbench.timer import l2_bytes, time_gpu

    case = tiny_case(batch=16, hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype="bfloat16")
    t = time_gpu(mode, case, BACKEND, TimingConfig(min_samples=5, max_time_s=1.0))
    assert t.mode == mode and t.stats.median > 1 and "nonfinite_state" not in t.extra
    if mode == "graph":
        sets = t.extra["input_sets"]
        assert sets * case.bytes_moved() > 4 * l2_bytes() and sets >= 4
    assert "sm_clock_mhz" in t.extra


def test_sleep_cycles_outlasts_host():
    from gdnbench.timer import sleep_cycles

    assert sleep_cycles(100e-6, 2000.0) == int(100e-6 * 2 * 2000e6) + 1000  # 2x margin at 2 GHz
    assert sleep_cycles(0.0, 1980.0) == 1000


class _FakeStream:
    """A CUDA stream as a queue: work runs only when the host synchronises; an event completes once the
    work queued before it has run. Enough to tell what ``host_cover`` reads of the sleep's end."""

    def __init__(self):
        self.queue = []

    def push(self, item):
        self.queue.append(item)

    def synchronize(self):
        for item in self.queue:
            item.done = True
        self.queue.clear()

    def query(self):
        return not self.queue


def _fake_cuda(monkeypatch):
    from gdnbench import timer

    stream = _FakeStream()

    class Work:
        done = False

    class Event(Work):
        def __init__(self, enable_timing=False):
            pass

        def record(self):
            stream.push(self)

        def query(self):
            return self.done

    monkeypatch.setattr(torch.cuda, "current_stream", lambda: stream)
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "_sleep", lambda cycles: stream.push(Work()))
    return timer, stream, Work


@pytest.mark.parametrize("syncs,covered", [(False, True), (True, False)])
def test_host_cover_reads_the_sleeps_end_not_the_streams(monkeypatch, syncs, covered):
    """A call that synchronises and then enqueues one more kernel leaves the stream busy, though the
    sleep ended: it must read as not covered (0 cycles, its host time kept in the measurement). Asking
    the stream whether it is busy, the old check, read it as covered."""
    timer, stream, Work = _fake_cuda(monkeypatch)

    def call():
        stream.push(Work())
        if syncs:
            stream.synchronize()
            stream.push(Work())

    cycles, host_us, got = timer.host_cover(call, 1980.0)
    assert got is covered and host_us >= 0
    assert (cycles > 0) is covered


@pytest.mark.gpu
@pytest.mark.timing
def test_events_timer_hides_host_overhead():
    """A launch that spends 2 ms on the host before a tiny kernel must time as the kernel alone."""
    import time as _time

    from gdnbench.timer import time_events

    x = torch.ones(1024, device="cuda")

    def slow_host():
        _time.sleep(0.002)
        x.add_(1)

    t = time_events(slow_host, TimingConfig(min_samples=5, max_time_s=1.0))
    assert t.stats.median < 100 and t.extra["host_enqueue_us"] > 1500
    assert t.extra["host_covered"]


@pytest.mark.gpu
@pytest.mark.timing
def test_events_timer_keeps_host_time_of_a_syncing_launch():
    """A launch that waits for the GPU cannot be covered by a sleep: no sleep, host time measured."""
    import time as _time

    from gdnbench.timer import time_events

    x = torch.ones(1024, device="cuda")

    def syncing():
        x.add_(1)
        torch.cuda.current_stream().synchronize()
        _time.sleep(0.001)
        x.add_(1)

    t = time_events(syncing, TimingConfig(min_samples=5, max_time_s=1.0))
    assert not t.extra["host_covered"] and t.stats.median > 900
