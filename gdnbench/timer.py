"""Timers: turn a backend's launch callable into per-launch time samples (microseconds).

``cpu``: host wall clock around single synchronous launches (the CPU path of the suite).
GPU modes (``graph``, ``events``) live alongside and share the same sampling loop
(``stats.sample_until``) and the same result type.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from gdnbench.config import Timing as TimingConfig
from gdnbench.stats import Stats, StopRule, sample_until, summarize


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


def time_cpu(fn: Callable[[], object], cfg: TimingConfig) -> Timing:
    """Wall-clock time of single launches on the CPU, after ``cfg.warmup`` untimed launches."""
    for _ in range(cfg.warmup):
        fn()

    def once() -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e6

    samples, converged = sample_until(once, stop_rule(cfg))
    return Timing(mode="cpu", samples_us=samples, stats=summarize(samples), converged=converged)
