"""NVTX ranges for measured regions, named ``<phase>|<backend>|<case id>`` in domain ``gdnbench``.

The ``nvtx`` package is used when installed (it supports domains and registers its strings, which
nsys matches); otherwise torch.cuda.nvtx (no domain: the range name still carries the full key).

Under ``gdnbench trace`` (``GDNBENCH_NVTX_SAMPLES=1`` in the traced child) each timed sample's launch
work (the graph replay, or the launch in events mode; not the timer's sleep or events) also gets a
range ``<phase>|<backend>|<case id>|sample``. nsys projects it onto the GPU: from the first kernel's
start to the last kernel's end, gaps between a launch's kernels included, which is what the timer
measures per sample.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Callable, Iterator

DOMAIN = "gdnbench"
SAMPLE = "sample"
SAMPLES_ENV = "GDNBENCH_NVTX_SAMPLES"


def range_name(phase: str, backend: str, case_id: str) -> str:
    """The NVTX range (and trace) key of one (case, backend)."""
    return f"{phase}|{backend}|{case_id}"


def parse_range_name(name: str) -> tuple[str, str, str] | None:
    """Inverse of range_name (None for a range gdnbench did not make, or a sample range)."""
    parts = name.split("|")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


def sample_range_name(name: str) -> str:
    """The per-sample range inside the measured range ``name``."""
    return f"{name}|{SAMPLE}"


def parse_sample_range(name: str) -> tuple[str, str, str] | None:
    """Inverse of sample_range_name: the (phase, backend, case id) of a sample range, else None."""
    head, sep, tail = name.rpartition("|")
    return parse_range_name(head) if sep and tail == SAMPLE else None


def sample_ranges_enabled() -> bool:
    return os.environ.get(SAMPLES_ENV) == "1"


@functools.lru_cache(maxsize=1)
def _nvtx_module():
    """The ``nvtx`` package, or None: looked up once (a failed import searches sys.path every time, and
    a traced sweep opens a range per timed sample)."""
    try:
        import nvtx
    except ImportError:
        return None
    return nvtx


@contextlib.contextmanager
def _annotate(label: str, color: str) -> Iterator[None]:
    """An NVTX range of ``label``: the ``nvtx`` package's (domain ``gdnbench``) when installed, else
    torch.cuda.nvtx's on a GPU, else nothing."""
    nvtx = _nvtx_module()
    if nvtx is not None:
        with nvtx.annotate(message=label, domain=DOMAIN, color=color):
            yield
        return
    import torch

    if not torch.cuda.is_available():
        yield
        return
    torch.cuda.nvtx.range_push(label)
    try:
        yield
    finally:
        torch.cuda.nvtx.range_pop()


def in_sample_range(name: str, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` inside an NVTX sample range of ``name`` (NVTX only: no profiler scope per sample) when
    ``GDNBENCH_NVTX_SAMPLES=1`` (a traced child); else ``fn`` itself, untouched."""
    if not sample_ranges_enabled():
        return fn
    label = sample_range_name(name)

    def run() -> None:
        with _annotate(label, "blue"):
            fn()
    return run


@contextlib.contextmanager
def nvtx_range(name: str) -> Iterator[None]:
    """An NVTX range (for nsys) that is also a torch.profiler scope (for ``trace --profiler torch``)."""
    import torch

    with torch.profiler.record_function(name), _annotate(name, "green"):
        yield
