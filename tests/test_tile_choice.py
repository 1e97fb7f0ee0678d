"""The shipped H100 tables keep choosing exactly the tiles they chose before per-GPU tuning became a
command: ``fixtures/h100_tiles.json`` holds, for every case of configs/decode.yaml, mtp.yaml and
roofline-*.yaml, the triton and cute tile (and its source) the lookup gave on an H100 at main before
issue 28. A GPU is simulated (its name and SM, Gluon not interpreted); no per-user table exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import gdnbench.backends.cute.tiles as ct
import gdnbench.backends.triton.tiles as tt
from gdnbench.backends.base import Target
from gdnbench.cases import expand
from gdnbench.config import load_sweep

H100 = Target("cuda", 90, "NVIDIA H100 80GB HBM3")
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "h100_tiles.json").read_text())


@pytest.fixture
def on_h100(monkeypatch, tmp_path):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setenv("GDNBENCH_CACHE", str(tmp_path / "cache"))
    for module in (tt, ct):
        monkeypatch.setattr(module, "current_target", lambda: H100)
        module.tuned_table.cache_clear()
    yield
    for module in (tt, ct):
        module.tuned_table.cache_clear()


@pytest.mark.parametrize("config", ["decode", "mtp", "roofline-decode", "roofline-mtp"])
def test_h100_tiles_unchanged(on_h100, config):
    cases = expand(load_sweep(CONFIGS / f"{config}.yaml").for_sm(90)).cases
    assert cases
    for c in cases:
        want = GOLDEN.get(c.id, {})
        if c.phase != "prefill":
            t, source = tt.select(c)
            assert [t.entry(), source] == want["triton"], c.id
        if c.phase == "decode" and c.layout == "k_last" and c.write_back:
            t, source = ct.select(c)
            assert [{"bv": t.bv, "nvec": t.nvec, "threads": t.threads}, source] == want["cute"], c.id
