"""Compiling a tune's candidates ahead, in worker processes (``gdnbench tune --jobs N``).

The session's first gate of a tile compiles it, one tile after another on one core of a many-core
host; where kernels are large that can be much of a tune's time. With ``jobs`` > 1, before the
session measures a case class, a ``Warmer`` builds and launches each of the class's pending candidates
once in ``jobs`` worker processes on the same GPU. Triton's on-disk cache (``TRITON_CACHE_DIR``, default
``~/.triton/cache``, which the workers inherit and write atomically) then holds the compiled kernels
when the session's own gate asks for them.

Candidates that compile to one kernel (``TunerSpec.compile_key``: for triton the tile, the dtypes and
the kernel's constexprs and options, which name the heads but not the batch) are compiled once, on the
case of the fewest rows that compiles to that kernel (``smallest_case``), so a worker holds little
memory: eight workers each holding a large class's inputs while they compile do not fit on the GPU,
and the builds that cannot allocate fail at once. A kernel built for an earlier class (the same heads
at another batch) is not built again. Warming stops at the tune's budget: the kernels not built
by then are compiled when measured, if the session measures them at all.

Warming changes no measurement: the session gates and times every candidate itself, as without
workers, and nothing a worker does is recorded but a count. A worker that fails (a tile the GPU cannot
build, out of memory, a crash) costs only its own time; the session then compiles that tile itself,
and a pool that broke is not used again. The workers stay idle while the session times, each holding
its CUDA context.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures import TimeoutError as WaitTimeout  # the builtin only from Python 3.11
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace

from gdnbench.cases import Case


@dataclass(frozen=True)
class Warmed:
    """One class's warming: the candidates it covered, the kernels built for them (one per compile
    key not built for an earlier class), how many of those builds failed and why the first did, the
    seconds it took, and how many kernels were left unbuilt when the budget ran out."""

    candidates: int
    kernels: int
    failed: int
    seconds: float
    unbuilt: int = 0
    first_failure: str = ""

    def line(self, jobs: int) -> str:
        why = f"; first: {self.first_failure}" if self.first_failure else ""
        failed = f", {self.failed} failed (compiled again when measured{why})" if self.failed else ""
        cut = f"; the budget ran out with {self.unbuilt} not built" if self.unbuilt else ""
        n = self.kernels - self.unbuilt
        return (f"compiled ahead: {n} kernel{'' if n == 1 else 's'} for {self.candidates} candidates in "
                f"{self.seconds:.0f} s ({jobs} worker processes{failed}{cut})")


def build_once(backend: str, case: Case, tile) -> str:
    """In a worker: build ``case`` with ``tile`` on fresh inputs and launch it once, which compiles the
    kernel into Triton's cache. Returns "" or why it failed (never raises: a failed warm-up is harmless)."""
    import torch

    from gdnbench.inputs import make_inputs
    from gdnbench.tune.session import spec_for

    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        x = make_inputs(case, device)
        spec_for(backend).make_backend(tile_override=tile).build(case, x)()
        if device == "cuda":
            torch.cuda.synchronize()
        return ""
    except Exception as err:  # noqa: BLE001 -- the session's own gate records the real reason
        return f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
    finally:
        x = None
        if device == "cuda":
            torch.cuda.empty_cache()


def smallest_case(c: Case, t, compile_key: Callable[[Case, object], tuple]) -> Case:
    """``c`` with the fewest rows that compiles to the same kernel with tile ``t`` (``c`` itself when no
    smaller batch does); a padded pool keeps two rows, one of them padded."""
    key = compile_key(c, t)
    for batch in range(2 if c.padded else 1, c.batch):
        small = replace(c, batch=batch)
        if compile_key(small, t) == key:
            return small
    return c


class Warmer:
    """A pool of ``jobs`` spawned worker processes that compile candidates ahead (module doc). Use as a
    context manager; ``warm`` blocks until the class's kernels are built."""

    def __init__(self, backend: str, compile_key: Callable[[Case, object], tuple], jobs: int):
        self.backend, self.compile_key, self.jobs = backend, compile_key, jobs
        self.pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
        self.broken: str | None = None
        self.built: set[tuple] = set()  # compile keys built without failing, by earlier classes too

    def warm(self, pairs: list[tuple[Case, object]], seconds: float | None = None) -> Warmed | None:
        """Build each distinct kernel of ``pairs`` (case, tile) not built before once, on the fewest rows
        that compile to it (``smallest_case``), for at most ``seconds`` (None: no limit; builds not
        started by then are cancelled); None when there is nothing to build or the pool broke earlier
        (``broken`` says why)."""
        if not pairs or self.pool is None:
            return None
        smallest: dict[tuple, tuple[Case, object]] = {}  # compile key -> the fewest rows that build it
        for c, t in pairs:
            k = self.compile_key(c, t)
            if k not in self.built and k not in smallest:
                smallest[k] = (smallest_case(c, t, self.compile_key), t)
        if not smallest:
            return None
        start = time.monotonic()
        failed, first = 0, ""
        futures = {}
        try:
            futures = {self.pool.submit(build_once, self.backend, c, t): k for k, (c, t) in smallest.items()}
            for f in as_completed(futures, timeout=seconds):
                if why := f.result():
                    failed += 1
                    first = first or why
                else:
                    self.built.add(futures[f])
        except WaitTimeout:  # the budget: what has not started is not built; what runs finishes in its worker
            for f in futures:
                f.cancel()
        except BrokenProcessPool as err:
            self.broken = f"a worker process died ({err}); the rest is compiled as measured"
            self.close()
            return None
        unbuilt = sum(1 for f in futures if not f.done() or f.cancelled())
        return Warmed(len(pairs), len(smallest), failed, time.monotonic() - start, unbuilt, first)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def __enter__(self) -> Warmer:  # noqa: PYI034 -- typing.Self needs Python 3.11; 3.10 is supported
        return self

    def __exit__(self, *exc) -> None:
        self.close()
