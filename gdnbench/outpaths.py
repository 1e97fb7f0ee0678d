"""Output paths: where a run's folder goes, and whether a folder or file given on the command line can
be written, checked before any work.

A run's folder is ``<root>/<date>_<device>_<config>[-check][_N]``: a check-only run (``gdnbench check``)
gets its own suffix and records ``check_only`` in env.json, so ``--resume`` of a sweep never picks it.
A curated baseline is such a run moved to ``results/<device-slug>/<config>/`` and committed; this module
is the one place that spells that layout (``make plots``, ``make gpu-check`` and the README's figures
find the baselines through :func:`curated_run` / :func:`curated_runs`).

Every command that writes (``sweep`` / ``check`` / ``trace`` results folders, ``plot -o``, ``compare -o``,
``calibrate -o``) asks here first, so a bad path is one line naming the option, the path and what was
expected (exit 2), and nothing is written: not a results folder, not a partial file. The checks are
read-only: a folder that does not exist yet is judged by its nearest existing ancestor (it must be a
folder, and writable: ``os.access`` also reports read-only file systems and immutable folders).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gdnbench.config import Sweep

#: The sweeps whose curated runs the figures draw (``gdnbench plot`` with no run named).
PLOT_CONFIGS = ("decode", "mtp", "prefill", "roofline-decode", "roofline-mtp")

#: Suffix of a check-only run's folder: never a timed sweep's, so --resume and plots can tell them apart.
CHECK_SUFFIX = "-check"


class OutPathError(ValueError):
    """A path that cannot be written, phrased as one line for the user."""


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_out_dir(path: Path, option: str) -> None:
    """``path`` is, or can be created as, a writable folder; else OutPathError naming ``option``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutPathError(f"{option} {path}: is an existing file; expected a folder (new, or a run to resume)")
    anc = _existing_ancestor(path)
    if not anc.is_dir():
        raise OutPathError(f"{option} {path}: {anc} is a file, not a folder; expected a folder path")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutPathError(f"{option} {path}: {anc} is not writable (permissions, read-only file system or "
                           "immutable folder); expected a writable folder")


def check_out_file(path: Path, option: str) -> None:
    """``path`` can be written as a file in an existing, writable folder; else OutPathError."""
    path = Path(path)
    if path.is_dir():
        raise OutPathError(f"{option} {path}: is a folder; expected a file name")
    parent = path.parent
    anc = _existing_ancestor(parent)
    if anc != parent:
        what = "is a file, not a folder" if not anc.is_dir() else f"exists but {parent} does not"
        raise OutPathError(f"{option} {path}: {anc} {what}; expected a file in an existing folder")
    if not parent.is_dir():
        raise OutPathError(f"{option} {path}: {parent} is a file, not a folder; expected a file in an existing folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutPathError(f"{option} {path}: the file is not writable")
    if not path.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise OutPathError(f"{option} {path}: {parent} is not writable (permissions, read-only file system or "
                           "immutable folder)")


def make_out_dir(path: Path, option: str) -> Path:
    """Check ``path`` (check_out_dir) and create it; an OSError on creation is an OutPathError too."""
    check_out_dir(path, option)
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutPathError(f"{option} {path}: cannot create the folder ({e.strerror or e})") from None
    return Path(path)


def new_results_dir(sweep: Sweep, root: Path, suffix: str = "", slug: str | None = None) -> Path:
    from gdnbench.env import device_slug  # imports torch: only when a run needs its folder

    stem = f"{_dt.date.today().isoformat()}_{slug or device_slug()}_{sweep.name or 'sweep'}{suffix}"
    path, n = root / stem, 2
    while path.exists():
        path, n = root / f"{stem}_{n}", n + 1
    return path


def is_check_only(directory: Path) -> bool:
    """Whether a results folder holds a check-only run (env.json says so, or its name ends in -check)."""
    try:
        if json.loads((Path(directory) / "env.json").read_text()).get("check_only"):
            return True
    except (OSError, ValueError, AttributeError):
        pass
    return re.search(rf"{re.escape(CHECK_SUFFIX)}(_\d+)?$", Path(directory).name) is not None


def latest_results_dir(sweep: Sweep, root: Path, check_only: bool = False, slug: str | None = None) -> Path | None:
    """Most recent results dir of this config on this kind of device (for --resume without --out):
    a timed sweep's for ``sweep --resume``, a check-only run's for ``check --resume``, never the other."""
    from gdnbench.env import device_slug

    suffix = CHECK_SUFFIX if check_only else ""
    pattern = re.compile(rf"\d{{4}}-\d{{2}}-\d{{2}}_{re.escape(slug or device_slug())}_{re.escape(sweep.name or 'sweep')}"
                         rf"{re.escape(suffix)}(_\d+)?")
    found = sorted((p for p in root.glob("*") if pattern.fullmatch(p.name) and (p / "rows.csv").exists()
                    and is_check_only(p) == check_only), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def curated_run(config: str, slug: str, root: Path = Path("results")) -> Path:
    """The curated baseline folder of ``config`` on the GPU ``slug`` (it may not exist)."""
    return Path(root) / slug / config


def curated_runs(root: Path = Path("results"), configs: tuple[str, ...] = PLOT_CONFIGS) -> list[Path]:
    """Every curated baseline of ``configs`` under ``root`` that holds rows, by GPU then config. In a git
    checkout only the runs git tracks: a local run (a CPU smoke sweep, a run not yet curated) that was
    moved into the layout is left out. Outside a checkout, every one."""
    root = Path(root)
    found = sorted(p.parent for c in configs for p in root.glob(f"*/{c}/rows.csv"))
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "--", "*/rows.csv"], capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return found
    if listed.returncode != 0:  # not a git checkout
        return found
    tracked = {(root / line).parent.resolve() for line in listed.stdout.splitlines() if line}
    return [p for p in found if p.resolve() in tracked]
