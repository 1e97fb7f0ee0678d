"""NVTX ranges for measured regions, named ``<phase>|<backend>|<case id>`` in domain ``gdnbench``.

The ``nvtx`` package is used when installed (it supports domains and registers its strings, which
nsys matches); otherwise torch.cuda.nvtx (no domain: the range name still carries the full key).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

DOMAIN = "gdnbench"


def range_name(phase: str, backend: str, case_id: str) -> str:
    """The NVTX range (and trace) key of one (case, backend)."""
    return f"{phase}|{backend}|{case_id}"


def parse_range_name(name: str) -> tuple[str, str, str] | None:
    """Inverse of range_name (None for a range gdnbench did not make)."""
    parts = name.split("|")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


@contextlib.contextmanager
def nvtx_range(name: str) -> Iterator[None]:
    """An NVTX range (for nsys) that is also a torch.profiler scope (for ``trace --profiler torch``)."""
    import torch

    try:
        import nvtx
    except ImportError:
        nvtx = None
    with torch.profiler.record_function(name):
        if nvtx is not None:
            with nvtx.annotate(message=name, domain=DOMAIN, color="green"):
                yield
        elif torch.cuda.is_available():
            torch.cuda.nvtx.range_push(name)
            try:
                yield
            finally:
                torch.cuda.nvtx.range_pop()
        else:
            yield
