"""gdnbench tune on the CPU: the tuning session's resume and budget with the gate and the timer replaced
by fakes (a simulated GPU), the table it writes, and the ``tune`` command's bad input (exit 2, one line)."""

from __future__ import annotations

import json
import os
import signal
from types import SimpleNamespace

import pytest
from conftest import HAS_CUDA, tiny_case, tiny_sweep
from test_tile_tables import GPU, QWEN, entry, tables  # noqa: F401 -- the fixture
from typer.testing import CliRunner

import gdnbench.backends.triton.tiles as tt
import gdnbench.tune.common as common
import gdnbench.tune.session as session
from gdnbench.backends.base import Target
from gdnbench.backends.tables import read_table, table_path, write_table
from gdnbench.backends.triton.tiles import Tile, heuristic_tile
from gdnbench.cases import expand
from gdnbench.cli import app
from gdnbench.config import load_sweep


class FakeGPU:
    """The gate passes every tile but Tile(8, 1); a timing takes 10 s of the budget's clock and gives
    µs = BV + warps / 10 (Tile(4, 1) fastest); inputs and reference are not built."""

    def __init__(self, monkeypatch):
        self.now = 0.0
        self.timed = 0
        monkeypatch.setattr(session, "clock", lambda: self.now)
        monkeypatch.setattr(session, "make_inputs", lambda c, device: None)
        monkeypatch.setattr(session, "reference", lambda x: None)
        monkeypatch.setattr(session, "collect_env", lambda: {"timestamp": "t", "gdnbench": "0", "versions": {}})
        monkeypatch.setattr(common, "run_gate", self.gate)
        monkeypatch.setattr(common, "time_gpu", self.time)

    def gate(self, case, backend, x, e):
        ok = backend.tile(case) != Tile(8, 1)
        return SimpleNamespace(check=SimpleNamespace(ok=ok, message="" if ok else "output off by 1"))

    def time(self, mode, case, backend, cfg):
        assert mode == "graph" and cfg.max_time_s == 0.05  # the config's timing, the sweep's mode
        self.now += 10.0
        self.timed += 1
        t = backend.tile(case)
        return SimpleNamespace(stats=SimpleNamespace(median=t.bv + t.warps / 10), extra={})


def test_tune_resumes_within_budget(tables, monkeypatch, tmp_path):
    """A budget stops the session before the next candidate once spent, keeping what is measured (no class
    finished: no table); the rerun measures only the rest and writes the fastest passing tile per class
    into the per-user table, with provenance; --ship writes the shipped one from the same state."""
    shipped, user = tables
    fake = FakeGPU(monkeypatch)
    sweep = tiny_sweep(tmp_path, "[torch, triton]", "[4, 64]")
    opts = session.TuneOptions(backend="triton", budget_min=1.0, progress=False)
    s = session.run_tune(sweep, opts, target=GPU, log=lambda line: None)
    total = s.measured + s.left
    first = s.measured  # 6 timed (60 s of the budget's clock) and the failed gates among them
    assert (s.stopped, fake.timed, s.table, s.classes_done, s.classes_total) == (True, 6, None, 0, 2)
    assert 6 <= first < total and s.state.exists() and s.state.parent.parent.parent == user.parent.parent
    lines = []
    s = session.run_tune(sweep, session.TuneOptions(backend="triton", progress=False), target=GPU, log=lines.append)
    assert (s.stopped, s.measured, s.left, s.classes_done) == (False, total - first, 0, 2)
    assert lines[0] == (f"tiny: 2 cases in 2 classes, {total} candidates: {first} measured before ({s.state}), "
                        f"{total - first} to measure, largest class first")
    assert s.table == table_path(user, GPU.name) and s.entries == 2
    table = read_table(s.table)
    assert {(e["pairs_min"], Tile.from_entry(e)) for e in table["entries"]} == {(128, Tile(4, 1)), (2048, Tile(4, 1))}
    assert table["provenance"]["kernel_sources_sha256"] and table["provenance"]["config"] == "tiny"
    tt.tuned_table.cache_clear()
    assert tt.select(tiny_case(batch=4, **QWEN)) == (Tile(4, 1), "tuned")
    rows = s.csv.read_text().splitlines()
    assert rows[0] == "case_id,tile,median_us,note" and any("output off by 1" in r for r in rows)
    s = session.run_tune(sweep, session.TuneOptions(backend="triton", ship=True, progress=False), target=GPU,
                         log=lambda line: None)
    assert s.measured == 0 and s.table == table_path(shipped, GPU.name)
    assert read_table(s.table)["entries"] == table["entries"]


def test_tune_keeps_other_classes_and_discards_stale_state(tables, monkeypatch, tmp_path):
    """The first per-user table holds only the classes tuned into it: a shipped class it did not
    measure stays in the shipped table, which lookups fall back to. A state measured with other kernel
    sources is discarded with a note."""
    shipped, user = tables
    FakeGPU(monkeypatch)
    keep = entry(Tile(16, 2), layout="v_last", median_us=9.0)
    write_table(shipped, GPU.name, 90, {}, "", [keep])
    sweep = tiny_sweep(tmp_path, "[torch, triton]", "[4]")
    s = session.run_tune(sweep, session.TuneOptions(backend="triton", progress=False), target=GPU,
                         log=lambda line: None)
    assert keep not in read_table(s.table)["entries"] and s.entries == 1
    tt.tuned_table.cache_clear()
    assert tt.select(tiny_case(batch=4, layout="v_last", **QWEN)) == (Tile(16, 2), "tuned")  # from the shipped one
    assert tt.select(tiny_case(batch=4, **QWEN)) == (Tile(4, 1), "tuned")  # from the per-user one
    state = json.loads(s.state.read_text())
    state["key"]["kernel_sources_sha256"] = "old"
    s.state.write_text(json.dumps(state))
    s = session.run_tune(sweep, session.TuneOptions(backend="triton", progress=False), target=GPU,
                         log=lambda line: None)
    assert s.measured > 0 and "kernel_sources_sha256" in s.notes[0]
    # --ship keeps the shipped class it did not measure as it was; the new entry records its own tune
    s = session.run_tune(sweep, session.TuneOptions(backend="triton", ship=True, progress=False), target=GPU,
                         log=lambda line: None)
    entries = read_table(s.table)["entries"]
    assert keep in entries and "tuned" not in keep and len(entries) == 2
    tuned = next(e["tuned"] for e in entries if e != keep)
    assert tuned == {"measured": "t", "config": "tiny", "kernel_sources_sha256": tt.kernel_sources_digest()}


def test_tune_drops_a_per_user_table_of_other_kernel_sources(tables, monkeypatch, tmp_path):
    """A per-user table tuned on other kernel sources, which lookups pass over, keeps none of its
    entries at the next tune (they would be stamped with this tune's digest), with a note; its class
    is compared with the shipped entry, the one lookups took."""
    shipped, user = tables
    FakeGPU(monkeypatch)
    write_table(shipped, GPU.name, 90, {}, "", [entry(Tile(4, 1), pairs_min=128)])
    old = [entry(Tile(16, 1), pairs_min=128), entry(Tile(16, 2), layout="v_last")]
    write_table(user, GPU.name, 90, {}, "", old, {"kernel_sources_sha256": "other"})
    sweep = tiny_sweep(tmp_path, "[torch, triton]", "[4]")
    s = session.run_tune(sweep, session.TuneOptions(backend="triton", progress=False), target=GPU,
                         log=lambda line: None)
    table = read_table(s.table)
    assert [Tile.from_entry(e) for e in table["entries"]] == [Tile(4, 1)] and s.entries == 1
    assert table["provenance"]["kernel_sources_sha256"] == tt.kernel_sources_digest()
    assert any("other kernel sources" in n and "2 entries are dropped" in n for n in s.notes), s.notes
    assert [(c.previous, c.slower) for c in s.changes] == [("per_token bv=4 warps=1", 0.0)]


def test_tune_reports_its_choice_against_the_table_it_replaces(tables, monkeypatch, tmp_path):
    """Each re-tuned class is compared, on this run's measurements, with its entry in the table the run
    replaces: kept, changed (how much slower the old tile is here), not measured here, or new. This is
    how a fresh tune shows that it reproduces a committed table."""
    shipped, _ = tables
    FakeGPU(monkeypatch)
    old_entries = [entry(Tile(16, 1), pairs_min=128), entry(Tile(4, 1), pairs_min=2048)]
    write_table(shipped, GPU.name, 90, {}, "", old_entries)
    sweep = tiny_sweep(tmp_path, "[torch, triton]", "[4, 64]")
    s = session.run_tune(sweep, session.TuneOptions(backend="triton", progress=False), target=GPU,
                         log=lambda line: None)
    by_pairs = {c.key[-1]: c for c in s.changes}
    best, old = "per_token bv=4 warps=1", "per_token bv=16 warps=1"
    assert by_pairs[2048] == session.ClassChange(by_pairs[2048].key, best, best, 0.0)
    moved = by_pairs[128]
    assert (moved.previous, moved.chosen) == (old, best)
    assert moved.slower == pytest.approx(16.1 / 4.1 - 1)  # the fake's µs: BV + warps / 10, one case per class
    lines = session.change_lines(s.changes)
    assert lines[0] == "against the entries lookups took before: 1 of 2 tuned classes keep their tile, 1 change, 0 are new"
    assert lines[1].startswith("reproduced within 2%: 1 of 2 classes that had an entry")
    assert lines[2].endswith(f"{old} -> {best} (the previous tile is 292.7% slower here)")
    spec, key = session.spec_for("triton"), moved.key
    timed = {"case": {best: 4.1}}
    unmeasured = session._change(spec, key, Tile(4, 1), timed, [({"entries": [entry(Tile(64, 8), pairs_min=128)]}, None)])
    assert (unmeasured.previous, unmeasured.slower) == ("per_token bv=64 warps=8", None)
    assert session._change(spec, key, Tile(4, 1), timed, [(None, None), (None, None)]) == session.ClassChange(key, None, best, None)
    assert session.change_lines([unmeasured])[1] == ("reproduced within 2%: 0 of 1 classes that had an entry "
                                                     "(its tile at most 2% slower than the chosen one here)")
    assert "was not measured here" in session.change_lines([unmeasured])[2]
    mtp_key = (*key[:4], True, 4, False, True, 128)  # T = 4 with write-back: its cases ran the MTP entry
    generic = {"entries": [entry(Tile(16, 1), mtp=True, pairs_min=128)]}
    measured = {"case": {best: 4.1, old: 16.1, "per_token bv=8 warps=1": 8.1}}
    was = session._change(spec, mtp_key, Tile(4, 1), measured, [(None, None), (generic, None)])
    assert (was.previous, was.slower) == (old, pytest.approx(16.1 / 4.1 - 1))
    # tables in lookup order: a per-user entry of the coarser class wins over a shipped exact one, as in lookups
    exact = {"entries": [entry(Tile(8, 1), mtp=True, tokens=4, intermediate=False, write_back=True, pairs_min=128)]}
    assert session._change(spec, mtp_key, Tile(4, 1), measured, [(generic, None), (exact, None)]).previous == old
    assert session._change(spec, mtp_key, Tile(4, 1), measured, [(None, None), (exact, None)]).previous == "per_token bv=8 warps=1"


def test_tune_reports_tiles_borrowed_from_another_gpu(tables, monkeypatch, tmp_path):
    """On a GPU with no table of its own, lookups ran another GPU's shipped tiles (``other-gpu``): a
    tune compares its choice with those, in a line of its own (not as reproduced: they were never
    measured on this GPU), and names the lender on each changed class; with --ship too."""
    shipped, _ = tables
    FakeGPU(monkeypatch)
    other = [entry(Tile(16, 1), pairs_min=128), entry(Tile(4, 1), pairs_min=2048)]
    write_table(shipped, "Lender GPU", 90, {}, "", other)
    sweep = tiny_sweep(tmp_path, "[torch, triton]", "[4, 64]")
    for ship in (False, True):
        s = session.run_tune(sweep, session.TuneOptions(backend="triton", ship=ship, progress=False), target=GPU,
                             log=lambda line: None)
        by_pairs = {c.key[-1]: c for c in s.changes}
        assert {c.borrowed for c in s.changes} == {"Lender GPU"}
        assert (by_pairs[2048].slower, by_pairs[128].previous) == (0.0, "per_token bv=16 warps=1")
        lines = session.change_lines(s.changes)
        assert lines[0] == ("against the entries lookups took before: 1 of 2 tuned classes keep their tile, "
                            "1 change, 0 are new")
        assert lines[1] == ("borrowed from Lender GPU (other-gpu): 1 of 2 classes ran a tile at most 2% slower "
                            "than the chosen one here; the slowest 292.7%")
        assert not any(line.startswith("reproduced") for line in lines)
        assert lines[2].endswith("(the previous tile is 292.7% slower here, borrowed from Lender GPU)")
    # now this GPU has its own (shipped) table: the next tune compares with it, not with the lender's
    s = session.run_tune(sweep, session.TuneOptions(backend="triton", progress=False), target=GPU,
                         log=lambda line: None)
    assert {c.borrowed for c in s.changes} == {None}
    assert session.change_lines(s.changes)[1].startswith("reproduced within 2%: 2 of 2 classes")


def test_tune_lists_the_cases_its_entries_reach_unmeasured(tables, monkeypatch, tmp_path):
    """A tune filtered to B = 4 writes the class at 128 row-heads, whose entry then also serves B = 64
    (2048 row-heads, no entry of its own) though the run never timed it there: the report lists that
    case with its tile before and now, and the command that tunes it. Tuning it writes its own class,
    after which nothing is listed."""
    FakeGPU(monkeypatch)
    monkeypatch.setattr(session, "current_target", lambda: GPU)
    tiny_sweep(tmp_path, "[torch, triton]", "[4, 64]")
    cfg = str(tmp_path / "tiny.yaml")
    big = next(c for c in expand(load_sweep(tmp_path / "tiny.yaml")).cases if c.batch == 64)
    assert heuristic_tile(big) != Tile(4, 1)
    r = CliRunner().invoke(app, ["tune", cfg, "-b", "triton", "--no-progress", "-w", "batch == 4"])
    assert r.exit_code == 0 and "1 of 1 case classes tuned" in r.stdout, r.output
    lines = r.stdout.splitlines()
    at = lines.index(f"the new entries also change the tile of 1 case of '{cfg}' this run did not measure "
                     "(the new tile is not timed on them):")
    assert lines[at + 1] == f"  {big.id}: {heuristic_tile(big).name} (heuristic) -> per_token bv=4 warps=1"
    assert lines[at + 2] == f"measure them: gdnbench tune {cfg} -b triton -c {big.id}"
    r = CliRunner().invoke(app, lines[at + 2].split()[3:] + ["--no-progress"])
    assert r.exit_code == 0 and "1 of 1 case classes tuned" in r.stdout and "also change" not in r.stdout, r.output
    tt.tuned_table.cache_clear()
    assert tt.select(big)[1] == "tuned" and tt.tuned_table().entries[-1]["pairs_min"] == 2048
    # a run over the whole config reaches nothing it did not measure
    s = session.run_tune(load_sweep(tmp_path / "tiny.yaml"), session.TuneOptions(backend="triton", progress=False),
                         target=GPU, log=lambda line: None)
    assert s.reached == [] and s.classes_done == 2
    many = [session.Reached(f"case{i}", "bv=8", "tuned", "bv=4") for i in range(12)]
    lines = session.reach_lines(many, "mtp", "triton", ship=True)
    assert len(lines) == 13 and lines[1] == "  case0: bv=8 (tuned) -> bv=4" and lines[11] == "  and 2 more"
    assert lines[12].startswith("measure them: gdnbench tune mtp -b triton --ship -c case0 ") and "-c case11" in lines[12]


def test_sigterm_keeps_the_measurements_and_the_finished_classes(tables, monkeypatch, tmp_path):
    """``gdnbench tune`` stopped by SIGTERM (``timeout``, a scheduler) as the second class starts: exit
    143, the first class in the per-user table, every measurement in the state; rerunning the same
    command measures only the rest. Classes go largest first, so the stopped run's entry (2048 row-heads)
    serves no case it did not measure: B = 4 keeps its tile."""
    _, user = tables
    fake = FakeGPU(monkeypatch)
    monkeypatch.setattr(session, "current_target", lambda: GPU)
    seen = []
    fake_time = fake.time

    def time_then_terminate(mode, case, backend, cfg):
        if case.id not in seen:
            seen.append(case.id)
            if len(seen) == 2:
                os.kill(os.getpid(), signal.SIGTERM)
        return fake_time(mode, case, backend, cfg)

    monkeypatch.setattr(common, "time_gpu", time_then_terminate)
    tiny_sweep(tmp_path, "[torch, triton]", "[4, 64]")
    args = ["tune", str(tmp_path / "tiny.yaml"), "-b", "triton", "--no-progress"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 143 and "terminated (SIGTERM)" in r.stderr, r.output
    table = read_table(table_path(user, GPU.name))
    assert [e["pairs_min"] for e in table["entries"]] == [2048]
    small = next(c for c in expand(load_sweep(tmp_path / "tiny.yaml")).cases if c.batch == 4)
    tt.tuned_table.cache_clear()
    assert tt.select(small) == (heuristic_tile(small), "heuristic")
    rerun = []

    def time_and_note(mode, case, backend, cfg):
        rerun.append(case.id)
        return fake_time(mode, case, backend, cfg)

    monkeypatch.setattr(common, "time_gpu", time_and_note)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0 and "2 of 2 case classes tuned" in r.stdout, r.output
    assert set(rerun) == {seen[1]}  # the first case's measurements were kept
    assert sorted(e["pairs_min"] for e in read_table(table_path(user, GPU.name))["entries"]) == [128, 2048]


def test_tune_refuses_what_it_cannot_tune(tmp_path):
    sweep = tiny_sweep(tmp_path, "[torch, triton]", "[4]")
    with pytest.raises(session.TuneError, match="CUDA GPU"):
        session.run_tune(sweep, session.TuneOptions(backend="triton"), target=Target("cpu"))
    with pytest.raises(session.TuneError, match="no case"):
        session.run_tune(sweep, session.TuneOptions(backend="triton", case_ids=["nope"]), target=GPU)
    prefill = load_sweep("configs/prefill.yaml")
    with pytest.raises(session.TuneError, match="runs none"):
        session.run_tune(prefill, session.TuneOptions(backend="triton"), target=GPU)


@pytest.mark.parametrize("args,needle", [
    (["tune", "smoke-cpu"], "--backend: give one of triton, cute"),
    (["tune", "smoke-cpu", "--backend", "fla"], "--backend: 'fla' is not one of triton, cute"),
    (["tune", "smoke-cpu", "-b", "triton", "--budget", "0"], "--budget: minutes must be > 0"),
    (["tune", "smoke-cpu", "-b", "triton", "--jobs", "0"], "--jobs: worker processes must be >= 1"),
    (["tune", "nosuchconfig", "-b", "cute"], "nosuchconfig: no such config file"),
    pytest.param(["tune", "smoke-cpu", "-b", "triton"], "CUDA GPU",
                 marks=pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU")),
])
def test_tune_cli_bad_input(args, needle, monkeypatch, tmp_path):
    monkeypatch.setenv("GDNBENCH_CACHE", str(tmp_path))
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    assert r.stderr.count("\n") == 1 and needle in r.stderr and not r.stdout, r.output
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")
def test_tune_session_on_the_gpu(monkeypatch, tmp_path):
    """End to end on this GPU with two candidates: real gate and graph timer, a per-user table that the
    lookup then takes (``tuned``) for the case."""
    from gdnbench.backends.base import current_target
    from gdnbench.tune.triton import SPEC

    monkeypatch.setenv("GDNBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("GDNBENCH_NO_TILE_TABLES", raising=False)
    case = tiny_case(batch=8, **QWEN)
    opts = session.TuneOptions(backend="triton", progress=False)
    try:
        s = session.tune_session([case], "gpu-test", common.TIMING, "graph", SPEC, opts, current_target(),
                                 log=lambda line: None, candidates_of=lambda c: [Tile(16, 1), Tile(32, 2)])
        assert (s.classes_done, s.left, s.measured) == (1, 0, 2) and s.table.parent == tmp_path / "tables" / "triton"
        assert tt.select(case)[1] == "tuned" and tt.select(case)[0] in (Tile(16, 1), Tile(32, 2))
    finally:
        tt.tuned_table.cache_clear()
