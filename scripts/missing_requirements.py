#!/usr/bin/env python3
"""Print the requirements of pyproject.toml (its main ``dependencies`` and optional extras) that this
Python does not satisfy.

``make`` uses it on a GPU machine to install only what the machine lacks, then gdnbench itself with
``--no-deps``. A machine that already has CUDA torch, FlashInfer, the CuTe DSL and fla-core (a site
image, or the GPU host's staged bundle) keeps them: asking pip for ``.[gpu]`` there would make its
resolver check every dependency those installed packages declare, which fails offline when one was
installed without some of them (FlashInfer declares packages its GDN path never imports; a torch
image may lack the setuptools its metadata names). Runs before gdnbench is installed, on the standard
library (plus ``packaging`` for version specifiers where it is there).

Usage: python3 scripts/missing_requirements.py dependencies|EXTRA [...] [--pyproject PATH]
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip, which every venv has, carries a copy of tomli
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]


def satisfied(requirement: str) -> bool:
    """Whether an installed distribution satisfies ``requirement`` (name, extras ignored, version)."""
    try:
        from packaging.requirements import Requirement
    except ModuleNotFoundError:
        name = re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0]
        try:
            md.version(name)
            return True
        except md.PackageNotFoundError:
            return False
    req = Requirement(requirement)
    if req.marker is not None and not req.marker.evaluate():
        return True
    try:
        version = md.version(req.name)
    except md.PackageNotFoundError:
        return False
    return req.specifier.contains(version, prereleases=True)


def missing(extras: list[str], pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = {"dependencies": project.get("dependencies", []), **project.get("optional-dependencies", {})}
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"error: pyproject.toml has no extra {', '.join(unknown)} (has: {', '.join(optional)})")
    reqs = dict.fromkeys(r for e in extras for r in optional[e])
    return [r for r in reqs if not satisfied(r)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("extras", nargs="+", help="'dependencies' (the main ones) or an extra's name")
    ap.add_argument("--pyproject", type=Path, default=Path(__file__).resolve().parent.parent / "pyproject.toml")
    args = ap.parse_args(argv)
    for r in missing(args.extras, args.pyproject):
        print(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
