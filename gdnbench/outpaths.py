"""Output paths: check that a folder or file given on the command line can be written, before any work.

Every command that writes (``sweep`` / ``check`` / ``trace`` results folders, ``plot -o``, ``compare -o``,
``calibrate -o``) asks here first, so a bad path is one line naming the option, the path and what was
expected (exit 2), and nothing is written: not a results folder, not a partial file. The checks are
read-only: a folder that does not exist yet is judged by its nearest existing ancestor (it must be a
folder, and writable: ``os.access`` also reports read-only file systems and immutable folders).
"""

from __future__ import annotations

import os
from pathlib import Path


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
