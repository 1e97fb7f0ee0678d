"""The explicit list of backends: name -> "module:object" (``gdnbench.vocab.BACKENDS``, where the
config's validation reads the names too). Importing this module imports nothing heavy.

Each backend module exposes one object satisfying ``gdnbench.backends.base.Backend``. Adding a backend
means writing its module and adding one line to ``vocab.BACKENDS``; there is no registration side
effect and no priority order, and a backend never falls back to another one.
"""

from __future__ import annotations

from gdnbench.vocab import BACKEND_NAMES, BACKENDS

__all__ = ["BACKENDS", "BACKEND_NAMES"]
