"""Robust statistics over timing samples, and the adaptive stopping rule.

Samples are per-launch times in microseconds. The headline is the median; the spread is the IQR
(p75 - p25); the noise that stops sampling is the relative standard error of the median, estimated
robustly as 1.2533 * (IQR / 1.349) / sqrt(n) / median (1.2533 = sqrt(pi/2): the median's efficiency
for a normal distribution; IQR / 1.349 = a normal's sigma).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Stats:
    n: int
    median: float
    iqr: float
    p10: float
    p90: float
    min: float
    mean: float
    cv: float          # standard deviation / mean
    rel_noise: float   # relative standard error of the median (see module doc)


def rel_noise(samples: Sequence[float]) -> float:
    """Relative standard error of the median; inf with fewer than 3 samples."""
    n = len(samples)
    if n < 3:
        return math.inf
    q25, q50, q75 = np.percentile(samples, [25, 50, 75])
    if q50 <= 0:
        return math.inf
    return 1.2533 * ((q75 - q25) / 1.349) / math.sqrt(n) / q50


def summarize(samples: Sequence[float]) -> Stats:
    """Summary statistics (same unit as the samples). Needs at least one sample."""
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    p10, q25, med, q75, p90 = np.percentile(a, [10, 25, 50, 75, 90])
    mean = float(a.mean())
    cv = float(a.std(ddof=1) / mean) if a.size > 1 and mean > 0 else 0.0
    return Stats(n=int(a.size), median=float(med), iqr=float(q75 - q25), p10=float(p10), p90=float(p90),
                 min=float(a.min()), mean=mean, cv=cv, rel_noise=rel_noise(a))


@dataclass(frozen=True)
class StopRule:
    """Sample until at least ``min_samples`` and ``min_time_s`` and the noise is under
    ``target_rel_noise``, or until ``max_samples`` / ``max_time_s`` (then not converged)."""

    min_samples: int = 10
    max_samples: int = 2000
    min_time_s: float = 0.1
    max_time_s: float = 2.0
    target_rel_noise: float = 0.005

    def done(self, samples: Sequence[float], elapsed_s: float) -> tuple[bool, bool]:
        """(stop now, converged)."""
        n = len(samples)
        if n >= self.min_samples and elapsed_s >= self.min_time_s and rel_noise(samples) <= self.target_rel_noise:
            return True, True
        if n >= self.max_samples or elapsed_s >= self.max_time_s:
            return True, n >= self.min_samples and rel_noise(samples) <= self.target_rel_noise
        return False, False


def sample_until(measure: Callable[[], float], rule: StopRule,
                 clock: Callable[[], float] = time.perf_counter) -> tuple[list[float], bool]:
    """Call ``measure()`` (one sample, any unit) until ``rule`` says stop. Returns (samples, converged)."""
    start = clock()
    samples: list[float] = []
    while True:
        samples.append(measure())
        stop, converged = rule.done(samples, clock() - start)
        if stop:
            return samples, converged
