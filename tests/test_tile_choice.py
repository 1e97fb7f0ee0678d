"""The shipped H100 tables choose exactly the tiles pinned in ``fixtures/h100_tiles.json``: for every
case of configs/decode.yaml, mtp.yaml and roofline-*.yaml, the triton and cute tile (and its source) the
lookup gives on an H100. A GPU is simulated (its name and SM, Gluon not interpreted); no per-user table
exists. A refactor must leave them as they are; a deliberate re-tune rewrites the fixture with

    TRITON_INTERPRET=0 python tests/test_tile_choice.py

so the commit's diff of the fixture lists every case whose tile the new table changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import gdnbench.backends.cute.tiles as ct
import gdnbench.backends.triton.tiles as tt
from gdnbench.backends.base import Target
from gdnbench.cases import expand
from gdnbench.config import load_sweep

CONFIG_NAMES = ("decode", "mtp", "roofline-decode", "roofline-mtp")
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


@pytest.mark.parametrize("config", CONFIG_NAMES)
def test_h100_tiles_unchanged(on_h100, config):
    cases = expand(load_sweep(CONFIGS / f"{config}.yaml").for_sm(90)).cases
    assert cases
    for c in cases:
        assert choices(c) == GOLDEN.get(c.id, {}), c.id


def choices(c) -> dict:
    """The triton and cute tile of case ``c`` (those that run it) and their sources, as pinned."""
    got = {}
    if c.phase != "prefill":
        t, source = tt.select(c)
        got["triton"] = [t.entry(), source]
    if c.phase == "decode" and c.layout == "k_last" and c.write_back:
        t, source = ct.select(c)
        got["cute"] = [{"bv": t.bv, "nvec": t.nvec, "threads": t.threads}, source]
    return got


if __name__ == "__main__":  # rewrite the fixture from the shipped tables (module doc)
    import os

    assert os.environ.get("TRITON_INTERPRET") == "0", "run with TRITON_INTERPRET=0 (Gluon tiles count as runnable)"
    os.environ.pop("GDNBENCH_NO_TILE_TABLES", None)
    os.environ["GDNBENCH_CACHE"] = "/nonexistent-gdnbench-cache"  # no per-user table
    for module in (tt, ct):
        module.current_target = lambda: H100
        module.tuned_table.cache_clear()
    golden = {c.id: choices(c) for name in CONFIG_NAMES
              for c in expand(load_sweep(CONFIGS / f"{name}.yaml").for_sm(90)).cases}
    path = Path(__file__).parent / "fixtures" / "h100_tiles.json"
    lines = [f" {json.dumps(cid)}: {json.dumps(golden[cid], sort_keys=True, separators=(',', ':'))}"
             for cid in sorted(golden)]
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n")  # one case per line: the diff names the cases
    print(f"wrote {path}: {len(golden)} cases")
