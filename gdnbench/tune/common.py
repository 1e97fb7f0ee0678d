"""What the tuners share: what a tuner knows of its backend (``TunerSpec``), the tuners' own tuning
cases and short timing, one gated and timed candidate, and the choice per case class. The session that
runs them and writes the tables: ``session.py``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

from gdnbench.cases import Case
from gdnbench.check import fatal_device_error, run_gate
from gdnbench.config import Timing
from gdnbench.timer import time_gpu

TIMING = Timing(warmup=2, min_samples=5, max_samples=200, min_time_s=0.02, max_time_s=0.1, target_rel_noise=0.01)


def case(batch: int, hk: int = 16, hv: int = 32, layout: str = "k_last", sd: str = "bfloat16",
         tokens: int = 1) -> Case:
    """A tuning case: K = V = 128, bf16 inputs, a scattered pool, write-back."""
    return Case(phase="mtp" if tokens > 1 else "decode", batch=batch, hk=hk, hv=hv, head_dim_k=128, head_dim_v=128,
                layout=layout, state_dtype=sd, dtype="bfloat16", tokens=tokens, seq_lens="", pool="scattered",
                write_back=True, intermediate=False, tree=False, seed=7)


@dataclass(frozen=True)
class TunerSpec:
    """What ``gdnbench tune --backend NAME`` needs to know of a backend: its backend object for a tile
    (``make_backend(tile_override=t)``), its candidates for a case (named tiles), the case class a table
    entry serves, the entry's fields and the tile an entry holds, and its ``tiles`` module (shipped tables,
    table lookup, and the digest of the kernel sources a table records: ``kernel_sources_digest``)."""

    backend: str
    make_backend: Callable
    candidates: Callable[[Case], list]
    class_key: Callable[[Case], tuple]
    entry: Callable[[tuple, object], dict]
    key_of: Callable[[dict], tuple]
    from_entry: Callable[[dict], object]  # a table entry's tile
    tiles: ModuleType
    note: str
    # the class an entry of an older table held for this class (a coarser key), if the key got finer
    coarser: Callable[[tuple], tuple] | None = None
    # what a candidate's compile depends on (equal keys: one kernel), for compiling ahead (``warm.py``)
    compile_key: Callable[[Case, object], tuple] | None = None

    @property
    def tables(self) -> Path:
        return self.tiles.TABLES

    def clear_cache(self) -> None:
        """Forget the table lookups hold (after writing one)."""
        self.tiles.tuned_table.cache_clear()


def gate_and_time(c: Case, t, make_backend: Callable, x, e, timing: Timing = TIMING,
                  mode: str = "graph") -> tuple[float | None, str]:
    """One candidate: gate ``make_backend(tile_override=t)`` on inputs ``x`` (reference ``e``), then time
    it. Returns (median µs, "") or (None, "FAILED: <why>") for a failed gate, build or timing, or a state
    that is not finite after the timer's replays, as the runner judges a row. An error that leaves the
    CUDA context unusable is raised, never recorded: every later candidate would fail with it, and a
    resumed session would take those failures as measured."""
    b = make_backend(tile_override=t)
    try:
        g = run_gate(c, b, x, e)
    except Exception as err:  # noqa: BLE001 -- e.g. a tile whose shared memory or registers the GPU cannot give
        return None, _failed("", err)
    if not g.check.ok:
        return None, f"FAILED: {g.check.message}"
    try:
        timed = time_gpu(mode, c, b, timing)
    except Exception as err:  # noqa: BLE001 -- e.g. out of memory for the input sets, a launch not capturable
        return None, _failed("timing: ", err)
    bad = timed.extra.get("nonfinite_state")
    if bad:
        return None, f"FAILED: state not finite after timing: {bad}"
    return timed.stats.median, ""


def _failed(stage: str, err: Exception) -> str:
    """The recorded reason for a candidate that raised; an error that leaves the CUDA context unusable
    is raised again instead (see gate_and_time)."""
    if fatal_device_error(err):
        raise err
    return f"FAILED: {stage}{type(err).__name__}: {str(err).splitlines()[0][:200]}"


def class_choice(cases: dict[str, dict]) -> tuple[float, object]:
    """The tile for a class (the cases sharing one batch x hv, e.g. TP1 B = 16 and TP4 B = 64) from each
    case's measured tiles (case id -> tile -> µs): among the tiles measured in every case, the one with
    the least summed slowdown against each case's own fastest, so no case of the class is given a tile
    only another case likes. Returns (µs of the chosen tile in its fastest case, tile)."""
    common = set.intersection(*(set(m) for m in cases.values()))
    if not common:  # nothing measured in all of them (a tile failing one case's gate): the fastest anywhere
        return min(((us, t) for m in cases.values() for t, us in m.items()), key=lambda p: (p[0], repr(p[1])))
    score = {t: class_score(cases, t) for t in common}
    t = min(common, key=lambda t: (score[t], repr(t)))
    return min(m[t] for m in cases.values()), t


def class_score(cases: dict[str, dict], t) -> float:
    """Tile ``t``'s summed slowdown over a class's cases (case id -> tile -> µs), each against the case's
    own fastest tile: what ``class_choice`` minimises (``t`` measured in every case)."""
    return sum(m[t] / min(m.values()) for m in cases.values())
