"""Compiling a tune's candidates ahead (``gdnbench tune --jobs N``, ``gdnbench.tune.warm``) on the CPU:
which candidates share a kernel, real spawned workers building tiny cases under the Triton
interpreter, and a session whose measurements and table are the same with workers as without."""

from __future__ import annotations

import pytest
from conftest import tiny_case
from test_tile_tables import GPU, tables  # noqa: F401 -- the fixture
from test_tune_session import FakeGPU

import gdnbench.tune.session as session
from gdnbench.backends.tables import read_table
from gdnbench.backends.triton.tiles import Tile, Variant
from gdnbench.config import Timing
from gdnbench.tune.triton import compile_key
from gdnbench.tune.warm import Warmed, Warmer, smallest_case


def test_compile_key_names_one_kernel_per_tile_heads_and_mtp_shape():
    """The batch and the pool do not change the kernel, but for how Triton specialises the tile count
    (a multiple of 16 or not); the tile, the heads, the dtypes and the MTP shape (T, buffers) do."""
    c, t = tiny_case(), Tile(4, 1)  # 3 x 4 heads x 8 tiles of rows: 96 tiles
    assert compile_key(tiny_case(batch=64, pool="contiguous"), t) == compile_key(c, t)
    assert compile_key(tiny_case(batch=3), Tile(32, 1)) != compile_key(tiny_case(batch=4), Tile(32, 1))  # 12, 16
    others = [compile_key(c, Tile(8, 1)), compile_key(tiny_case(hv=8), t),
              compile_key(tiny_case(state_dtype="bfloat16"), t), compile_key(tiny_case(write_back=False), t),
              compile_key(tiny_case(phase="mtp", tokens=2), t),
              compile_key(tiny_case(phase="mtp", tokens=2, intermediate=True), t),
              compile_key(tiny_case(phase="mtp", tokens=4), t), compile_key(c, Tile(4, 1, kc=8))]
    assert len({compile_key(c, t), *others}) == 1 + len(others)


def test_warmer_builds_each_kernel_once_in_spawned_workers():
    """Two spawned workers build and launch each distinct kernel once, on the smallest case needing it;
    a tile that cannot run the case is counted as failed, not raised."""
    small, big = tiny_case(batch=1), tiny_case(batch=5)
    pairs = [(big, Tile(4, 1)), (small, Tile(4, 1)), (big, Tile(8, 1)), (small, Tile(64, 1))]
    with Warmer("triton", compile_key, jobs=2) as w:
        warmed = w.warm(pairs)
        assert w.warm([]) is None
    assert warmed is not None and (warmed.candidates, warmed.kernels, warmed.failed) == (4, 3, 1)
    assert warmed.line(2).startswith("compiled ahead: 3 kernels for 4 candidates in ")
    assert "(2 worker processes, 1 failed (compiled again when measured; first: " in warmed.line(2)
    assert w.pool is None  # closed on leaving


def test_smallest_case_compiles_the_same_kernel_on_the_fewest_rows():
    """Workers build on the fewest rows with the same compile key (a large class's inputs in every
    worker at once do not fit on the GPU): one row, or as many as keep the tile count's
    specialisation (a multiple of 16), two on a padded pool."""
    t4, t32 = Tile(4, 1), Tile(32, 1)  # per row, 4 heads x 8 or 1 tiles
    assert smallest_case(tiny_case(batch=64), t4, compile_key) == tiny_case(batch=1)  # 32 tiles
    assert smallest_case(tiny_case(batch=64), t32, compile_key) == tiny_case(batch=4)  # 16 tiles
    assert smallest_case(tiny_case(batch=3), t32, compile_key) == tiny_case(batch=1)  # 12 and 4: neither
    padded = tiny_case(batch=64, pool="padded")
    assert smallest_case(padded, t4, compile_key) == tiny_case(batch=2, pool="padded")
    for c, t in ((tiny_case(batch=64), t32), (padded, t4), (tiny_case(batch=1), t4)):
        assert compile_key(smallest_case(c, t, compile_key), t) == compile_key(c, t)


def test_warmer_builds_a_kernel_once_across_classes_and_stops_at_its_time():
    """A kernel an earlier ``warm`` built is not built again (a failed one is tried again); a warm
    with no time left builds nothing it had not started and says how many it left unbuilt."""
    small, big = tiny_case(batch=1), tiny_case(batch=5)
    with Warmer("triton", compile_key, jobs=1) as w:
        first = w.warm([(small, Tile(4, 1)), (small, Tile(64, 1))])
        again = w.warm([(big, Tile(4, 1)), (small, Tile(64, 1)), (small, Tile(8, 1))])
        assert w.warm([(big, Tile(4, 1))]) is None  # built by the first call, on the smaller case
        cut = w.warm([(small, Tile(16, 1)), (small, Tile(32, 1))], seconds=0.0)
    assert (first.kernels, first.failed) == (2, 1)
    assert (again.candidates, again.kernels, again.failed) == (3, 2, 1)  # the failed 64-row tile again
    assert cut is not None and cut.kernels == 2 and cut.unbuilt >= 1
    assert f"the budget ran out with {cut.unbuilt} not built" in cut.line(1)


def test_tune_with_workers_measures_and_writes_the_same(tables, monkeypatch):
    """A session with --jobs 2 warms each class before measuring it, building only the kernels no
    earlier class built, and then gates and times every candidate itself: the same measurements and
    table as without workers."""
    cases = [tiny_case(batch=1), tiny_case(batch=2), tiny_case(batch=8)]  # 4, 8 and 32 row-heads: 3 classes
    tiles = [Tile(4, 1), Tile(8, 1), Tile(16, 1, Variant.PER_TOKEN)]
    timing = Timing(min_samples=3, min_time_s=0.0, max_time_s=0.05)
    results = []
    for jobs in (1, 2):
        FakeGPU(monkeypatch)
        lines: list[str] = []
        opts = session.TuneOptions(backend="triton", progress=False, fresh=True, jobs=jobs)
        s = session.tune_session(cases, f"warm{jobs}", timing, "graph", session.spec_for("triton"), opts, GPU,
                                 lines.append, candidates_of=lambda c: tiles)
        warm_lines = [line for line in lines if line.startswith("compiled ahead:")]
        if jobs == 1:
            assert warm_lines == [], lines
        else:  # largest first: 32 row-heads builds all three; 8 row-heads, the same tile counts modulo 16,
            # nothing (no line); 4 row-heads, the 16-row tile's 8 tiles (not a multiple of 16), one kernel
            assert [line.split(" in ")[0] for line in warm_lines] == [
                "compiled ahead: 3 kernels for 3 candidates", "compiled ahead: 1 kernel for 3 candidates"], lines
        results.append((s.measured, s.classes_done, read_table(s.table)["entries"]))
        s.table.unlink()
    assert results[0][:2] == results[1][:2] == (9, 3)
    strip = [[{k: v for k, v in e.items() if k != "tuned"} for e in r[2]] for r in results]
    assert strip[0] == strip[1]


@pytest.mark.parametrize("jobs", [0, -2])
def test_tune_refuses_jobs_below_one(jobs):
    with pytest.raises(session.TuneError, match="--jobs: worker processes must be >= 1"):
        session.run_tune(None, session.TuneOptions(backend="triton", jobs=jobs), target=GPU)


def test_warmed_line_without_failures():
    assert Warmed(10, 4, 0, 12.4).line(8) == "compiled ahead: 4 kernels for 10 candidates in 12 s (8 worker processes)"


def test_python_m_gdnbench_does_not_rerun_in_spawned_workers():
    """A spawned worker of ``python -m gdnbench tune --jobs N`` imports the main module as
    ``__mp_main__``: it must not run the command again there."""
    import runpy

    runpy.run_module("gdnbench.__main__", run_name="__mp_main__")  # would exit (SystemExit) if it ran app()
