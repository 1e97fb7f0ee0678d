"""Backends: one module each, listed explicitly in ``registry.py``; looked up lazily by name.

This package's ``__init__`` imports nothing heavy (config validation imports the names from here);
the seam itself lives in ``base.py``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from gdnbench.backends.registry import BACKEND_NAMES, BACKENDS

if TYPE_CHECKING:
    from gdnbench.backends.base import Backend

__all__ = ["BACKEND_NAMES", "get_backend", "all_backends"]


def get_backend(name: str) -> Backend:
    """The backend object called ``name`` (imports its module, which imports no optional library)."""
    try:
        module, _, attr = BACKENDS[name].partition(":")
    except KeyError:
        raise KeyError(f"unknown backend '{name}' (allowed: {', '.join(BACKEND_NAMES)})") from None
    return getattr(importlib.import_module(module), attr)


def all_backends() -> list[Backend]:
    return [get_backend(n) for n in BACKEND_NAMES]
