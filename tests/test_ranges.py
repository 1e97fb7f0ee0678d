"""ranges.py: NVTX range names round-trip; ranges are harmless without a GPU."""

from __future__ import annotations

from conftest import tiny_case

from gdnbench.ranges import nvtx_range, parse_range_name, range_name


def test_range_name_roundtrip():
    c = tiny_case()
    name = range_name(c.phase, "flashinfer", c.id)
    assert name == f"decode|flashinfer|{c.id}"
    assert parse_range_name(name) == ("decode", "flashinfer", c.id)
    assert parse_range_name("calibrate|copy") is None and parse_range_name("a||b") is None


def test_nvtx_range_noop_on_cpu():
    with nvtx_range("decode|torch|x"):
        pass
