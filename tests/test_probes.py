"""scripts/probe_common.py, tma_probe.py, cache_probe.py: the probes' shared loop reports a failing or
raising variant on its own line and times the rest; the TMA probe's tiles are TMA tiles the backend
accepts; the cache probe's variants change only the state load / store of the Gluon decode's source.
Timing needs a GPU: stand-ins for the inputs, gate and timer here."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import gdnbench.backends.triton_gdn as tg

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import cache_probe  # noqa: E402
import probe_common  # noqa: E402
import tma_probe  # noqa: E402


def test_run_rounds_reports_failures_and_times_the_rest(monkeypatch, capsys):
    monkeypatch.setattr(probe_common, "make_inputs", lambda c, dev: object())
    monkeypatch.setattr(probe_common, "reference", lambda x: object())
    monkeypatch.setattr(probe_common.torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(probe_common, "run_gate", lambda c, b, x, e: b())
    monkeypatch.setattr(probe_common, "time_gpu",
                        lambda mode, c, b, cfg: SimpleNamespace(stats=SimpleNamespace(median=1.5)))

    def raises():
        raise ValueError("no such tile")

    ok = lambda: SimpleNamespace(check=SimpleNamespace(ok=True))  # noqa: E731
    bad = lambda: SimpleNamespace(check=SimpleNamespace(ok=False, message="max abs err 3"))  # noqa: E731
    variants = lambda key: [("a", lambda: ok), ("b", lambda: bad), ("c", lambda: raises)]  # noqa: E731
    probe_common.run_rounds([(1, 4, 8), (16, 16, 32)], variants, only={"1,4,8"}, rounds=2)
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("round")] == ["round 1 B=1 HK=4 HV=8: a=1.500",
                                                                  "round 2 B=1 HK=4 HV=8: a=1.500"]
    assert sum(line.startswith("FAILED b") and "max abs err 3" in line for line in out) == 2
    assert sum(line.startswith("ERROR c") and "ValueError: no such tile" in line for line in out) == 2


def test_tma_probe_tiles_are_tma_tiles(monkeypatch):
    monkeypatch.setattr(tg, "triton_interpreted", lambda: False)
    assert tma_probe.tma_tile((16, 1, 16, 2)) == (16, 1, 16, 0, 0, 2, 7, 0, 0, 0)
    assert tma_probe.tma_tile((64, 4, 1, 8, 1)) == (64, 4, 1, 0, 0, 8, 7, 0, 0, 1)
    for (B, HK, HV), specs in tma_probe.plans.items():
        c = tma_probe_case(B, HK, HV)
        for spec in specs:
            assert tg.tile_reason(c, tg.Tile(*tma_probe.tma_tile(spec))) is None, (c.id, spec)


def tma_probe_case(B, HK, HV):
    from tune_triton import case

    return case(B, HK, HV)


def test_cache_probe_variants_change_only_the_state_traffic():
    src = cache_probe.SRC.splitlines()
    for name, (ld, st) in cache_probe.VARIANTS.items():
        text = Path(cache_probe.variant(name).fn.__code__.co_filename).read_text().splitlines()
        changed = [(a.strip(), b.strip()) for a, b in zip(src, text) if a != b]
        assert len(text) == len(src) and len(changed) == bool(ld) + bool(st), (name, changed)
        if ld:
            assert ("Hr = gl.load(state + offs)", f"Hr = gl.load(state + offs, {ld})") in changed
        if st:
            assert ("gl.store(state + offs, new)", f"gl.store(state + offs, new, {st})") in changed
