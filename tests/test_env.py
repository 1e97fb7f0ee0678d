"""env.py: provenance fields."""

from __future__ import annotations

from gdnbench.env import collect_env, device_slug, git_info


def test_collect_env_cpu():
    env = collect_env()
    for key in ("timestamp", "gdnbench", "git_sha", "host", "python", "cpu", "device", "versions", "argv"):
        assert key in env
    assert env["device"] == "cpu" and device_slug() == "cpu"
    assert env["versions"]["torch"]


def test_git_info_in_checkout():
    info = git_info()
    assert info["git_sha"] is None or len(info["git_sha"]) == 40
