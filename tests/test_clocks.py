"""clocks.py: NVML throttle reasons and the per-row summary."""

from __future__ import annotations

from gdnbench.clocks import ClockMonitor, decode_reasons


def test_decode_reasons():
    assert decode_reasons(0) == []
    assert decode_reasons(0x4 | 0x40) == ["sw_power_cap", "hw_thermal"]
    assert decode_reasons(0x10000) == ["0x10000"]


def monitor(samples):
    m = ClockMonitor.__new__(ClockMonitor)
    m.samples, m._handle, m._nvml = list(samples), None, None
    return m


def test_summary_flags_throttling_only_for_load_reasons():
    quiet = monitor([(1980.0, 40.0, 0x1), (1980.0, 42.0, 0x0)]).summary()
    assert quiet == {"sm_clock_mhz": 1980.0, "temp_c": 42.0, "throttled": False, "throttle_reasons": ""}
    hot = monitor([(1980.0, 40.0, 0x0), (1600.0, 85.0, 0x20)]).summary()
    assert hot["throttled"] and hot["throttle_reasons"] == "sw_thermal" and hot["sm_clock_mhz"] == 1790.0
    assert monitor([]).summary() == {}
