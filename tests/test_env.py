"""env.py: provenance fields."""

from __future__ import annotations

from gdnbench.env import collect_env, device_slug, git_info


def test_collect_env_cpu():
    env = collect_env()
    for key in ("timestamp", "gdnbench", "git_sha", "host", "python", "cpu", "device", "versions", "argv"):
        assert key in env
    assert env["device"] == "cpu" and device_slug() == "cpu"
    assert env["versions"]["torch"]


def test_collect_env_records_the_settings_that_change_a_run(monkeypatch):
    """A run with tile tables disabled (or another gdnbench / Triton setting) says so in its env.json;
    unrelated variables stay out."""
    monkeypatch.setenv("GDNBENCH_NO_TILE_TABLES", "1")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("SOME_TOKEN", "secret")
    env_vars = collect_env(gpu=False)["env_vars"]
    assert env_vars["GDNBENCH_NO_TILE_TABLES"] == "1" and env_vars["TRITON_INTERPRET"] == "1"
    assert "SOME_TOKEN" not in env_vars


def test_git_info_in_checkout():
    info = git_info()
    assert info["git_sha"] is None or len(info["git_sha"]) == 40


def test_source_digest_names_the_code(tmp_path, monkeypatch):
    """The digest covers gdnbench's sources and tile tables, so it changes with them (a copied tree
    whose .git is stale still says which code ran)."""
    import shutil

    import gdnbench.env as env_mod

    assert len(env_mod.source_digest()) == 64 and env_mod.source_digest() == collect_env()["source_sha256"]
    shutil.copytree(env_mod.REPO / "gdnbench", tmp_path / "gdnbench", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(env_mod, "REPO", tmp_path)
    before = env_mod.source_digest()
    tiles = next((tmp_path / "gdnbench" / "backends" / "triton" / "tables").glob("*.json"))
    tiles.write_text(tiles.read_text() + " ")
    assert env_mod.source_digest() != before
