"""Per-GPU tile tables on the CPU: the lookup's precedence (per-user table of this GPU, shipped table of
this GPU, another GPU's shipped table, the heuristic), the rows' ``tile`` / ``tile_source`` and the
sweep's one-line note about tiles not tuned on this GPU. A GPU is simulated by name and SM."""

from __future__ import annotations

import pytest
from conftest import tiny_case, tiny_sweep

import gdnbench.backends.triton.tiles as tt
from gdnbench.backends.base import Target
from gdnbench.backends.tables import table_path, user_tables, write_table
from gdnbench.backends.torch_eager import TorchEager
from gdnbench.backends.triton import TritonGDN
from gdnbench.backends.triton.tiles import Tile, heuristic_tile
from gdnbench.cases import expand
from gdnbench.runner import case_row, untuned_note

GPU = Target("cuda", 90, "Test GPU 80GB")
QWEN = dict(hk=16, hv=32, head_dim_k=128, head_dim_v=128, state_dtype="bfloat16")


def entry(tile: Tile, **kw) -> dict:
    """A triton table entry: K-last bf16 128 x 128 decode from one row-head, unless overridden."""
    return {"layout": "k_last", "state_dtype": "bfloat16", "head_dim_k": 128, "head_dim_v": 128, "mtp": False,
            "pairs_min": 1, **tile.entry(), **kw}


@pytest.fixture
def tables(monkeypatch, tmp_path):
    """Empty shipped and per-user triton tables, lookups on ``GPU``; yields the two folders."""
    shipped, cache = tmp_path / "shipped", tmp_path / "cache"
    shipped.mkdir()
    monkeypatch.setenv("GDNBENCH_CACHE", str(cache))
    monkeypatch.delenv("GDNBENCH_NO_TILE_TABLES", raising=False)
    monkeypatch.setattr(tt, "TABLES", shipped)
    monkeypatch.setattr(tt, "current_target", lambda: GPU)
    tt.tuned_table.cache_clear()
    yield shipped, user_tables("triton")
    tt.tuned_table.cache_clear()


def test_table_precedence(tables, monkeypatch):
    """Per-user table of this GPU > shipped table of this GPU > another GPU's shipped table > heuristic;
    a per-user table of another GPU is never borrowed; GDNBENCH_NO_TILE_TABLES=1 disables them all."""
    shipped, user = tables
    case = tiny_case(batch=4, **QWEN)

    def lookup():
        tt.tuned_table.cache_clear()
        return tt.select(case)

    assert lookup() == (heuristic_tile(case), "heuristic")
    write_table(user, "Other GPU", 90, {}, "", [entry(Tile(4, 1))])  # another GPU's per-user table: ignored
    assert lookup() == (heuristic_tile(case), "heuristic")
    write_table(shipped, "Other GPU", 80, {}, "", [entry(Tile(8, 1))])
    write_table(shipped, "Same SM GPU", 90, {}, "", [entry(Tile(16, 1))])
    assert lookup() == (Tile(16, 1), "other-gpu")  # the same SM generation first
    write_table(shipped, GPU.name, 90, {}, "", [entry(Tile(32, 1))])
    assert lookup() == (Tile(32, 1), "tuned") and tt.tuned_table().path == table_path(shipped, GPU.name)
    write_table(user, GPU.name, 90, {}, "", [entry(Tile(64, 2))])
    assert lookup() == (Tile(64, 2), "tuned") and tt.tuned_table().path == table_path(user, GPU.name)
    monkeypatch.setenv("GDNBENCH_NO_TILE_TABLES", "1")
    assert lookup() == (heuristic_tile(case), "heuristic")


def test_an_entry_this_version_cannot_read_is_passed_over(tables):
    """A per-user table written by another gdnbench version may hold an entry whose tile this one
    refuses (a field it no longer has, an invalid size): the lookup passes over it (the next entry,
    else the heuristic) instead of failing the backend's supports / build."""
    shipped, user = tables
    case = tiny_case(batch=4, **QWEN)
    bad = {**entry(Tile(32, 1)), "bv": 0}                                # Tile(0, ...) raises ValueError
    odd = {k: v for k, v in entry(Tile(16, 1)).items() if k != "bv"}     # no bv at all
    write_table(user, GPU.name, 90, {}, "", [entry(Tile(8, 1)), {**bad, "pairs_min": 2}, {**odd, "pairs_min": 3}])
    tt.tuned_table.cache_clear()
    assert tt.select(case) == (Tile(8, 1), "tuned")
    write_table(user, GPU.name, 90, {}, "", [bad])
    tt.tuned_table.cache_clear()
    assert tt.select(case) == (heuristic_tile(case), "heuristic")


def test_rows_record_tile_and_source(tables):
    shipped, _ = tables
    write_table(shipped, GPU.name, 90, {}, "", [entry(Tile(32, 1), pairs_min=64)])
    tt.tuned_table.cache_clear()
    tuned, small = tiny_case(batch=4, **QWEN), tiny_case(batch=1, hk=16, hv=32, head_dim_k=128, head_dim_v=128)
    row = case_row("run", tuned, TritonGDN(), GPU)
    assert (row.tile, row.tile_source) == ("per_token bv=32 warps=1", "tuned")
    row = case_row("run", small, TritonGDN(pdl=True), GPU)
    assert (row.tile, row.tile_source) == (heuristic_tile(small).name, "heuristic")
    assert (case_row("run", tuned, TorchEager(), GPU).tile, case_row("run", tuned, TorchEager(), GPU).tile_source) \
        == ("", "")
    assert Tile(4, 1, "gluon_rows", cache=2).name == "gluon_rows bv=4 warps=1 cache=2"


def test_untuned_note_names_the_command(tables, tmp_path):
    """One line when an own backend runs a case with a tile not tuned here; none when all are tuned."""
    shipped, _ = tables
    sweep = tiny_sweep(tmp_path, "[triton, triton_pdl, torch]", "[4, 64]")
    cases = expand(sweep).cases
    backends = [TritonGDN(), TritonGDN(pdl=True), TorchEager()]
    note = untuned_note(sweep, cases, backends, GPU)
    assert note == ("tiles not tuned on this GPU (Test GPU 80GB): triton 2 of 2 cases (heuristic 2); triton_pdl 2 of "
                    "2 cases (heuristic 2); tune them with `gdnbench tune tiny --backend triton`")
    write_table(shipped, GPU.name, 90, {}, "", [entry(Tile(32, 1))])
    tt.tuned_table.cache_clear()
    assert untuned_note(sweep, cases, backends, GPU) is None
    assert untuned_note(sweep, cases, [TorchEager()], GPU) is None


def test_per_user_table_of_other_kernel_sources_is_passed_over(tables, tmp_path):
    """A per-user table tuned on other kernel sources (an upgrade changed the kernels) gives way to the
    shipped table of this GPU, and the sweep's note names it and the command that re-tunes; one tuned on
    these sources, or one that recorded no digest, is used as before."""
    shipped, user = tables
    case = tiny_case(batch=4, **QWEN)
    write_table(shipped, GPU.name, 90, {}, "", [entry(Tile(32, 1))])
    old = {"kernel_sources_sha256": "0" * 64}
    path = write_table(user, GPU.name, 90, {}, "", [entry(Tile(64, 2))], old)
    tt.tuned_table.cache_clear()
    assert tt.select(case) == (Tile(32, 1), "tuned") and tt.tuned_table().stale == path
    assert TritonGDN().stale_table() == path and TorchEager().stale_table() is None
    sweep = tiny_sweep(tmp_path, "[triton, torch]", "[4]")
    note = untuned_note(sweep, expand(sweep).cases, [TritonGDN()], GPU)
    assert note == (f"tiles not tuned on this GPU (Test GPU 80GB): triton's per-user table {path} was tuned on "
                    "other kernel sources and is not used; tune them with `gdnbench tune tiny --backend triton`")
    shipped_path = table_path(shipped, GPU.name)
    shipped_path.unlink()  # no shipped table either: the heuristic, and still the note
    tt.tuned_table.cache_clear()
    assert tt.select(case) == (heuristic_tile(case), "heuristic") and tt.tuned_table().stale == path
    for prov in ({"kernel_sources_sha256": tt.kernel_sources_digest()}, None):
        write_table(user, GPU.name, 90, {}, "", [entry(Tile(64, 2))], prov)
        tt.tuned_table.cache_clear()
        assert tt.select(case) == (Tile(64, 2), "tuned") and tt.tuned_table().stale is None


def test_a_class_this_gpus_table_lacks_is_looked_up_further(tables):
    """A table of this GPU that covers only some classes (a per-user tune of V-last cases on a GPU with
    no shipped table) serves those; every other case takes the next table that has an entry for it
    (another GPU's shipped one), not the heuristic; an entry this GPU's table has always wins."""
    shipped, user = tables
    k_last, v_last = tiny_case(batch=4, **QWEN), tiny_case(batch=4, **QWEN, layout="v_last")
    write_table(shipped, "Same SM GPU", 90, {}, "", [entry(Tile(16, 1)), entry(Tile(32, 2), layout="v_last")])
    write_table(user, GPU.name, 90, {}, "", [entry(Tile(64, 4), layout="v_last")])
    tt.tuned_table.cache_clear()
    assert tt.select(v_last) == (Tile(64, 4), "tuned")
    assert tt.select(k_last) == (Tile(16, 1), "other-gpu")
    chain = tt.tuned_table()
    assert (chain.source, chain.fallback.source, chain.fallback.fallback) == ("tuned", "other-gpu", None)
    write_table(shipped, GPU.name, 90, {}, "", [entry(Tile(8, 1))])  # this GPU's shipped table: before others
    tt.tuned_table.cache_clear()
    assert tt.select(k_last) == (Tile(8, 1), "tuned") and tt.select(v_last) == (Tile(64, 4), "tuned")
    assert tt.tuned_table().fallback.fallback.path == table_path(shipped, "Same SM GPU")


def test_an_mtp_entry_naming_t_and_buffers_serves_only_those_cases(tables):
    """An MTP entry that names T, the intermediate buffer and write-back (as the tuner writes them) serves
    only cases with those values, and is preferred to an entry that names none (a table tuned before they
    existed) even measured at a smaller batch; other MTP cases keep the generic entry."""
    _, user = tables
    mtp = {**QWEN, "phase": "mtp"}
    generic = entry(Tile(16, 1), mtp=True, pairs_min=1024)
    specific = {**entry(Tile(32, 2), mtp=True, pairs_min=64), "tokens": 8, "intermediate": True, "write_back": False}
    write_table(user, GPU.name, 90, {}, "", [generic, specific])
    tt.tuned_table.cache_clear()
    t8_inter = tiny_case(batch=64, tokens=8, intermediate=True, write_back=False, **mtp)
    t4 = tiny_case(batch=64, tokens=4, **mtp)
    assert tt.select(t8_inter) == (Tile(32, 2), "tuned") and tt.select(t4) == (Tile(16, 1), "tuned")


def test_kernel_digest_leaves_out_the_lookup_code(tmp_path):
    """A table's kernel digest changes with the kernels and launch code, not with ``tiles.py`` (lookup,
    heuristic): a new heuristic must not make every per-user table stale or discard a tuning state."""
    from gdnbench.backends.tables import package_digest

    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "decode.py").write_text("x = 1\n")
    (tmp_path / "tiles.py").write_text("heuristic = 1\n")
    before = package_digest(tmp_path)
    (tmp_path / "tiles.py").write_text("heuristic = 2\n")
    assert package_digest(tmp_path) == before
    (tmp_path / "kernels" / "decode.py").write_text("x = 2\n")
    assert package_digest(tmp_path) != before


def test_own_backends_report_the_tile_they_run_and_its_source(tables, monkeypatch):
    """Both own backends (``TunedTiles``) give the rows the tile ``build`` launches and where it came
    from: an override (the tuner's candidates) as ``override``, else this GPU's table as ``tuned``, else
    the heuristic; the tile a table or test patches on the tiles module is the one they see."""
    import gdnbench.backends.cute.tiles as ct
    from gdnbench.backends.cute import CuteGDN
    from gdnbench.backends.cute.tiles import CuteTile
    from gdnbench.backends.tables import TileTable

    shipped, _ = tables
    case = tiny_case(batch=4, **QWEN)
    assert TritonGDN().tile_info(case) == (heuristic_tile(case).name, "heuristic")
    write_table(shipped, GPU.name, 90, {}, "", [entry(Tile(32, 1))])
    tt.tuned_table.cache_clear()
    for b in (TritonGDN(), TritonGDN(pdl=True)):
        assert b.tile(case) == Tile(32, 1) and b.tile_info(case) == (Tile(32, 1).name, "tuned")
    over = TritonGDN(tile_override=Tile(16, 2))
    assert over.tile(case) == Tile(16, 2) and over.tile_info(case) == (Tile(16, 2).name, "override")
    assert "tile]" not in over.kernel(case)

    f32 = dict(QWEN, state_dtype="float32")
    c = tiny_case(batch=4, **f32)
    monkeypatch.setattr(ct, "tuned_table", lambda: TileTable("test GPU", "other-gpu", [
        {"state_dtype": "float32", "head_dim_k": 128, "head_dim_v": 128, "pairs_min": 1, "bv": 16, "nvec": 4}]))
    assert CuteGDN().tile(c) == CuteTile(16, 4) and CuteGDN().tile_info(c) == (CuteTile(16, 4).name, "other-gpu")
    assert "other-gpu tile" in CuteGDN().kernel(c) and CuteGDN().stale_table() is None
    assert CuteGDN(tile_override=CuteTile(32, 2)).tile_info(c) == (CuteTile(32, 2).name, "override")
