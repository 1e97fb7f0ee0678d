"""scripts/missing_requirements.py: the extras' requirements this Python lacks (what make installs on a
GPU machine), by name, version and marker."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "missing_requirements.py"
spec = importlib.util.spec_from_file_location("missing_requirements", SCRIPT)
mr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mr)

PYPROJECT = """
[project]
name = "x"
dependencies = ["pytest", "no-such-main-dist-gdnbench"]
[project.optional-dependencies]
gpu = ["pytest>=1", "pytest<1", "no-such-dist-gdnbench==1.0", "also-missing; python_version < '3'"]
dev = ["pytest>=1", "no-such-dist-gdnbench==1.0"]
"""


def test_lists_only_what_is_missing_or_too_old(tmp_path):
    p = tmp_path / "pyproject.toml"
    p.write_text(PYPROJECT)
    assert mr.missing(["gpu"], p) == ["pytest<1", "no-such-dist-gdnbench==1.0"]
    assert mr.missing(["gpu", "dev"], p) == ["pytest<1", "no-such-dist-gdnbench==1.0"]   # each once
    assert mr.missing(["dependencies", "dev"], p) == ["no-such-main-dist-gdnbench", "no-such-dist-gdnbench==1.0"]


def test_unknown_extra_is_one_line(tmp_path):
    p = tmp_path / "pyproject.toml"
    p.write_text(PYPROJECT)
    r = subprocess.run([sys.executable, str(SCRIPT), "gpux", "--pyproject", str(p)], capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr.strip() == "error: pyproject.toml has no extra gpux (has: dependencies, gpu, dev)"


def test_the_real_extras_parse():
    out = subprocess.run([sys.executable, str(SCRIPT), "dependencies", "gpu", "dev"], capture_output=True, text=True, check=True)
    assert all(line and " " not in line.split(";")[0] for line in out.stdout.splitlines())


@pytest.mark.parametrize("req,ok", [("pytest", True), ("pytest>=1", True), ("pytest>=999", False),
                                    ("no-such-dist-gdnbench", False)])
def test_satisfied(req, ok):
    assert mr.satisfied(req) is ok


def test_new_venv_sees_the_parent_venvs_packages(tmp_path):
    """scripts/parent_site_pth.py: a venv made by a Python that is itself a venv (as the GPU host's
    python3 is) imports that venv's packages (its torch), its own first; from a non-venv Python it
    writes nothing (--system-site-packages covers that case)."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("the test runs in a venv's Python")
    script = SCRIPT.parent / "parent_site_pth.py"
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    code = "import importlib.util as u; print(u.find_spec('pytest').origin)"
    before = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    subprocess.run([sys.executable, str(script), str(venv)], check=True, capture_output=True)
    after = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
    import pytest as here

    assert after.stdout.strip() == here.__file__ and after.stderr == ""
    assert before.stdout.strip() != here.__file__   # the base interpreter's site-packages alone do not have it
