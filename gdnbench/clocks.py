"""GPU clocks, temperature and throttle reasons through NVML (nvidia-ml-py), sampled around a measurement.

A row is flagged ``throttled`` when, at any sample, the GPU reported a reason that lowers clocks
under load (power cap, thermal or hardware slowdown, power brake). Idle and application-clock
reasons are recorded but do not flag a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: NVML clocks-event (throttle) reason bits -> short names (nvml.h, nvmlClocksEventReason*).
REASONS: dict[int, str] = {
    0x1: "gpu_idle", 0x2: "app_clocks", 0x4: "sw_power_cap", 0x8: "hw_slowdown", 0x10: "sync_boost",
    0x20: "sw_thermal", 0x40: "hw_thermal", 0x80: "hw_power_brake", 0x100: "display_clock",
}
THROTTLING = 0x4 | 0x8 | 0x20 | 0x40 | 0x80


def decode_reasons(mask: int) -> list[str]:
    """Bit mask -> reason names, in bit order; unknown bits as hex."""
    names = [name for bit, name in REASONS.items() if mask & bit]
    unknown = mask & ~sum(REASONS)
    if unknown:
        names.append(hex(unknown))
    return names


@dataclass
class ClockMonitor:
    """Collects (SM clock MHz, temperature C, reason mask) samples for one device; inert without NVML."""

    device_index: int = 0
    samples: list[tuple[float, float, int]] = field(default_factory=list)
    _handle: Any = None
    _nvml: Any = None

    def __post_init__(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.device_index)
            self._nvml = pynvml
        except Exception:  # no NVML: rows simply carry no clock columns
            self._handle = None

    @property
    def available(self) -> bool:
        return self._handle is not None

    def sample(self) -> None:
        if not self.available:
            return
        n = self._nvml
        try:
            clock = n.nvmlDeviceGetClockInfo(self._handle, n.NVML_CLOCK_SM)
            temp = n.nvmlDeviceGetTemperature(self._handle, n.NVML_TEMPERATURE_GPU)
            getter = getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None) or n.nvmlDeviceGetCurrentClocksThrottleReasons
            self.samples.append((float(clock), float(temp), int(getter(self._handle))))
        except Exception:
            pass

    def summary(self) -> dict[str, Any]:
        """Columns for a row: mean SM clock, max temperature, throttled flag, reasons seen."""
        if not self.samples:
            return {}
        mask = 0
        for _, _, m in self.samples:
            mask |= m
        return {
            "sm_clock_mhz": sum(c for c, _, _ in self.samples) / len(self.samples),
            "temp_c": max(t for _, t, _ in self.samples),
            "throttled": bool(mask & THROTTLING),
            "throttle_reasons": "|".join(decode_reasons(mask & ~0x1)),
        }
