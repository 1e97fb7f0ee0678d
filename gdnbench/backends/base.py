"""The backend seam: what every backend module exposes, and the machine it is asked about.

A backend is one object with ``name``, ``version``, ``supports(case, target) -> reason | None`` and
``build(case, inputs) -> zero-argument callable``. ``build`` compiles, allocates and converts
layouts; the callable only launches work, so it can be captured in a CUDA graph. It returns the
output tensor (``[B, T, hv, V]``, prefill ``[L, hv, V]``) or an :class:`Output` when the backend
hands back its final state instead of updating the pool in place. Optional libraries are imported
inside ``supports``/``build`` only; a missing one is a reason, never a crash, and a backend never
falls back to another implementation.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable, NamedTuple, Union

import torch

from gdnbench.cases import Case
from gdnbench.inputs import Inputs


class Padding(str, Enum):
    """What a backend does with a padded row (slot index -1); the gate checks exactly this."""

    ZERO = "zero"    # pool untouched, output rows are zero
    SKIP = "skip"    # pool untouched, output rows unspecified
    SLOT0 = "slot0"  # reads/writes of padded rows go to the null slot 0 (may change); output unspecified


class Output(NamedTuple):
    """A launch's results when the final state is returned rather than written to the pool.

    out: as above; state: ``[n_valid, *state_shape]`` in the case's layout, one per valid row.
    """

    out: torch.Tensor
    state: torch.Tensor | None = None


Launch = Callable[[], Union[torch.Tensor, Output]]


@dataclass(frozen=True)
class Target:
    """The machine a support question is about: ``cpu`` or ``cuda`` with its SM generation (90 = H100)."""

    device: str
    sm: int | None = None
    name: str = ""

    @property
    def label(self) -> str:
        return f"sm{self.sm}" if self.sm is not None else self.device


@functools.lru_cache(maxsize=1)
def current_target() -> Target:
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return Target("cuda", major * 10 + minor, torch.cuda.get_device_name())
    return Target("cpu", None, "cpu")


def cache_root() -> Path:
    """gdnbench's per-user folder, ``$GDNBENCH_CACHE`` (default ``~/.cache/gdnbench``): compiled cute
    kernels, tile tables tuned on this machine and tuning state."""
    return Path(os.environ.get("GDNBENCH_CACHE") or Path.home() / ".cache" / "gdnbench")


def kernel_cache_root() -> Path:
    """Where compiled kernels go: ``$GDNBENCH_KERNEL_CACHE``, else :func:`cache_root`. A scale-out
    worker points it at a folder of its own (no two compile into one cache) while its tile tables and
    tuning state stay the user's (gdnbench.distributed)."""
    return Path(os.environ.get("GDNBENCH_KERNEL_CACHE") or cache_root())


def package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_module(module: str, dist: str) -> str | None:
    """Reason text when ``module`` cannot be imported here (checked without importing it)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"{dist} not installed"


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_availability(target: Target | None, module: str, dist: str) -> str | None:
    """Why a Triton-based backend cannot run on ``target``: its library missing here, or no GPU and
    no TRITON_INTERPRET=1 (Triton kernels run on a CPU only under the interpreter)."""
    target = target or current_target()
    if target == current_target():
        missing = missing_module(module, dist)
        if missing:
            return missing
    if target.device != "cuda" and not triton_interpreted():
        return "needs a CUDA GPU (or TRITON_INTERPRET=1 on a CPU)"
    return None


class Backend:
    """Base class with the shared plumbing; subclasses set the class attributes and override
    ``supports``, ``build`` and, where they differ, ``kernel`` and ``padding``."""

    name: str = ""
    summary: str = ""
    dist: str | None = None  # distribution whose version is recorded per row
    triton: bool = False     # launches Triton kernels: interpreted (checked, not timed) on a CPU
    tuner: str | None = None  # the `gdnbench tune --backend` that tunes this backend's tiles (own kernels)

    @property
    def version(self) -> str:
        if self.dist is None:
            from gdnbench import __version__

            return f"gdnbench {__version__}"
        v = package_version(self.dist)
        return f"{self.dist} {v}" if v else f"{self.dist} (not installed)"

    def availability(self, target: Target | None = None) -> str | None:
        """Why this backend cannot run at all on ``target`` (library missing, needs a GPU), or None."""
        return None

    def supports(self, case: Case, target: Target | None = None) -> str | None:  # pragma: no cover
        """Why ``case`` cannot run on ``target`` (default: this machine), or None if it can."""
        raise NotImplementedError

    def build(self, case: Case, inputs: Inputs) -> Launch:  # pragma: no cover
        raise NotImplementedError

    def kernel(self, case: Case) -> str:
        """Which entry point / variant runs for this case (the CSV's ``kernel`` column)."""
        return self.name

    def padding(self, case: Case) -> Padding:
        return Padding.SKIP

    def tile_info(self, case: Case) -> tuple[str, str] | None:
        """The tile this case runs with and where it came from (``tuned``, ``other-gpu``, ``heuristic``:
        ``gdnbench.backends.tables``), for backends whose tiles are tuned per GPU; None for the others.
        The rows' ``tile`` and ``tile_source`` columns."""
        return None

    def stale_table(self) -> Path | None:
        """This GPU's per-user tile table when it is passed over because it was tuned on other kernel
        sources (``gdnbench.backends.tables``); None for backends without tables."""
        return None

    def expected_kernels(self, case: Case) -> tuple[str, ...]:
        """Regular expressions for the GPU kernel(s) that do this case's work. The gate profiles one
        launch and fails the row if none of the kernels it ran matches (``gdnbench.kernels``); an
        empty tuple expects nothing."""
        return ()

    def activations_at_build(self, case: Case) -> bool:
        """True when ``build`` precomputes from the activations (q, k, v, gates) on purpose, so the
        launch reads a transformed copy: the gate's second launch then keeps the activations (the
        state still advances). Only a backend that declares itself "kernel only" may say so."""
        return False
