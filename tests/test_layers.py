"""The data flow's layering: a stage imports only stages before it (config -> cases -> inputs ->
backends -> reference / check -> timer -> runner -> rows -> analysis / plots / compare / trace -> cli),
never a later one, so each can be read and tested without what comes after it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).parent.parent / "gdnbench"
# module -> the gdnbench modules (prefixes) it must not import, at module level or inside functions
LATER = ("gdnbench.backends", "gdnbench.check", "gdnbench.timer", "gdnbench.runner", "gdnbench.rows",
         "gdnbench.analysis", "gdnbench.plots", "gdnbench.compare", "gdnbench.trace", "gdnbench.cli",
         "gdnbench.gpucheck", "gdnbench.energy")
FORBIDDEN = {
    "vocab.py": ("gdnbench.",),
    "where.py": ("gdnbench.",),
    "config.py": ("gdnbench.cases", "gdnbench.inputs", "gdnbench.reference") + LATER,
    "cases.py": ("gdnbench.inputs", "gdnbench.reference") + LATER,
    "inputs.py": ("gdnbench.reference",) + LATER,
    "reference.py": LATER,
    "kernels.py": LATER,
}


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_no_import_points_up(module):
    bad = sorted(n for n in imported(PKG / module) for f in FORBIDDEN[module] if n == f.rstrip(".")
                 or n.startswith(f if f.endswith(".") else f + ".") or n == f)
    assert not bad, f"{module} imports {bad}"


def test_backends_import_no_later_stage():
    later = tuple(p for p in LATER if p != "gdnbench.backends")
    for path in (PKG / "backends").rglob("*.py"):
        bad = sorted(n for n in imported(path) if any(n == p or n.startswith(p + ".") for p in later))
        assert not bad, f"{path.relative_to(PKG)} imports {bad}"
