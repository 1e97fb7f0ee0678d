"""stats.py: summary statistics and the adaptive stopping rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gdnbench.stats import StopRule, rel_noise, sample_until, summarize


def test_summarize_known_values():
    s = summarize([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert s.n == 10 and s.median == 5.5 and s.min == 1 and s.mean == 5.5
    assert s.iqr == pytest.approx(np.percentile(range(1, 11), 75) - np.percentile(range(1, 11), 25))
    assert (s.p10, s.p90) == (pytest.approx(1.9), pytest.approx(9.1))
    assert s.cv == pytest.approx(np.std(range(1, 11), ddof=1) / 5.5)


def test_rel_noise_shrinks_with_samples_and_spread():
    rng = np.random.default_rng(0)
    small = 100 + rng.normal(0, 1, 20)
    big = 100 + rng.normal(0, 1, 2000)
    assert rel_noise(big) < rel_noise(small) < rel_noise(100 + rng.normal(0, 10, 20))
    assert rel_noise([1.0, 2.0]) == math.inf
    assert rel_noise([5.0] * 10) == 0.0


class FakeClock:
    def __init__(self, step: float):
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        return self.t

    def advance(self) -> None:
        self.t += self.step


def run(rule: StopRule, values, step=0.01):
    clock = FakeClock(step)
    it = iter(values)

    def measure():
        clock.advance()
        return next(it)

    return sample_until(measure, rule, clock=clock)


def test_stops_when_quiet_after_minimums():
    rule = StopRule(min_samples=10, max_samples=1000, min_time_s=0.05, max_time_s=10, target_rel_noise=0.01)
    samples, converged = run(rule, [10.0] * 1000)
    assert converged and len(samples) == 10  # min_samples dominates (0.1 s > min_time_s)


def test_min_time_respected():
    rule = StopRule(min_samples=3, max_samples=1000, min_time_s=0.5, max_time_s=10, target_rel_noise=0.01)
    samples, converged = run(rule, [10.0] * 1000, step=0.01)
    assert converged and len(samples) == 50


def test_noisy_stops_at_timeout_not_converged():
    rng = np.random.default_rng(1)
    rule = StopRule(min_samples=5, max_samples=10_000, min_time_s=0.0, max_time_s=1.0, target_rel_noise=1e-6)
    samples, converged = run(rule, list(10 + rng.exponential(5, 100_000)), step=0.01)
    assert not converged and len(samples) == 100


def test_max_samples_cap():
    rule = StopRule(min_samples=5, max_samples=30, min_time_s=0.0, max_time_s=100, target_rel_noise=1e-9)
    rng = np.random.default_rng(2)
    samples, _ = run(rule, list(10 + rng.normal(0, 1, 1000)))
    assert len(samples) == 30
