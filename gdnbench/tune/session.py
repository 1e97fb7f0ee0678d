"""``gdnbench tune CONFIG --backend triton|cute``: tune a backend's tiles for the GPU in hand over the
cases of a config, and write its tile table for this GPU.

Every case of the config the backend runs is measured over the backend's named candidate tiles
(``TunerSpec.candidates``): each candidate passes the correctness gate (``gdnbench.check.run_gate``),
then is timed by the sweep's timer (``gdnbench.timer.time_gpu``) with the config's timing settings.
Cases sharing a case class (``TunerSpec.class_key``) get the tile with the least summed slowdown over
all of them (``common.class_choice``); a class is written only once every candidate of every one of its
cases is measured.

The session is resumable: each measurement goes into a state file under
``$GDNBENCH_CACHE/tune/<backend>/`` (saved after every case, every 30 s, at the budget and on Ctrl-C),
and a rerun of the same command measures only what is missing. The state is kept only while the GPU,
the kernel sources (their digest), the timing settings and mode are the same. ``--budget MINUTES`` stops
before the next candidate once the budget is spent; the table then holds the classes finished so far.
Classes are measured largest ``batch * hv`` first: an entry serves its class up to the next entry, so
a run stopped by its budget has written the classes above the one it stopped in, and no entry of its
serves a larger case it did not measure.

The table goes to the per-user folder (``$GDNBENCH_CACHE/tables/<backend>/``, which lookups prefer) or,
with ``ship``, to the backend's shipped ``tables/``; classes not re-measured keep their entries. A
per-user table holds only the classes tuned into it: lookups fall back to the shipped table class by
class, and a copy of the shipped entries would carry the shipped kernel digest's tiles under this
tune's digest. For the same reason, a per-user table tuned on other kernel sources (which lookups pass
over) loses its entries at the next tune, with a note.

Each tuned class is reported against the entry lookups took for it before the run (the per-user table,
then the shipped one of this GPU, then the other GPU's table lookups borrow from: ``ClassChange``); a
class whose previous tile, from this GPU's tables, is at most ``REPRODUCED`` slower than the chosen
one, in this run's measurements, is reproduced. That is how a fresh tune shows it reproduces a
committed table within noise. On a GPU gdnbench ships no table for, the classes ran another GPU's
tiles (``other-gpu``); the report says how far those borrowed tiles are from this GPU's choice, which
is what tuning gained there.

An entry serves its class from its ``pairs_min`` up to the next entry, so a run filtered to some cases
(``--where``, ``--case``) can give other cases of the config a tile nobody timed on them: a class tuned at
128 row-heads also serves 512 row-heads when that class has no entry of its own. The run lists those
cases (``Reached``: the config's cases it did not measure whose tile the written entries changed) and the
command that measures them.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gdnbench.backends.base import Target, cache_root, current_target
from gdnbench.backends.tables import (
    borrowed_table,
    read_table,
    table_path,
    tuned_on_other_sources,
    user_tables,
    write_table,
)
from gdnbench.cases import Case, expand
from gdnbench.config import Sweep, Timing
from gdnbench.env import collect_env
from gdnbench.inputs import make_inputs
from gdnbench.reference import reference
from gdnbench.runner import RunError, resolve_timing_mode, select_cases
from gdnbench.tune.common import TIMING, TunerSpec, class_choice, class_score, gate_and_time
from gdnbench.tune.warm import Warmer

BACKENDS = ("triton", "cute")
STATE_VERSION = 1
SAVE_EVERY_S = 30.0
REPRODUCED = 0.02  # a previous tile at most this much slower than the chosen one reproduces the class
REACHED_SHOWN = 10  # cases listed by name in the report's reach lines (the command names them all)
clock = time.monotonic  # the budget's clock (tests replace it)


class TuneError(Exception):
    """A tuning run that cannot start (bad option, no GPU, nothing to tune): one line for the CLI."""


@dataclass
class TuneOptions:
    backend: str
    ship: bool = False                 # write the shipped table instead of the per-user one
    budget_min: float | None = None    # stop before the next candidate once this many minutes are spent
    case_ids: list[str] | None = None  # only cases with these ids or id prefixes
    fresh: bool = False                # discard the state of an earlier run
    jobs: int = 1                      # worker processes that compile each class's candidates ahead (warm.py)
    progress: bool = True


@dataclass(frozen=True)
class ClassChange:
    """A re-tuned class against the table the run replaces: its key, the tile it had there (None: a new
    class) and the tile chosen now; ``slower``: how much slower the previous tile is than the chosen one
    in this run's measurements (summed slowdown over the class's cases, as the choice scores them; 0.0
    when the tile is kept, None when the previous tile was not among this run's candidates);
    ``borrowed``: the other GPU whose table the previous tile came from (None: this GPU's table)."""

    key: tuple
    previous: str | None
    chosen: str
    slower: float | None
    borrowed: str | None = None


@dataclass(frozen=True)
class Reached:
    """A case of the config the run did not measure whose tile the entries it wrote changed: its id, the
    tile lookups gave it before with that tile's source, and the tile they give it now (untimed there)."""

    case_id: str
    previous: str
    source: str
    now: str


@dataclass
class TuneSummary:
    """What a tuning run did: the table written (None: no class finished), the state and CSV files,
    classes finished of all, candidates measured now and left, whether the budget stopped it."""

    table: Path | None
    state: Path
    csv: Path
    classes_done: int
    classes_total: int
    measured: int
    left: int
    stopped: bool
    entries: int = 0
    notes: list[str] = field(default_factory=list)
    changes: list[ClassChange] = field(default_factory=list)
    reached: list[Reached] = field(default_factory=list)


def spec_for(backend: str) -> TunerSpec:
    if backend not in BACKENDS:
        raise TuneError(f"--backend: '{backend}' is not one of {', '.join(BACKENDS)}")
    return importlib.import_module(f"gdnbench.tune.{backend}").SPEC


def state_path(spec: TunerSpec, target: Target, config: str) -> Path:
    """The state file of tuning ``config`` for ``spec``'s backend on GPU ``target``."""
    return cache_root() / "tune" / spec.backend / f"{table_path(Path(), target.name).stem}_{config}.json"


@dataclass
class State:
    """The measured candidates (case id -> candidate name -> µs, or the reason it failed) and what they
    were measured on; ``key`` must match for a rerun to reuse them."""

    path: Path
    key: dict
    results: dict[str, dict[str, float | str]] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path, key: dict, fresh: bool, notes: list[str]) -> State:
        if path.exists() and not fresh:
            try:
                old = json.loads(path.read_text())
                if old.get("key") == key:
                    return cls(path, key, old.get("results", {}))
                changed = sorted(k for k in key if old.get("key", {}).get(k) != key[k])
                notes.append(f"earlier tuning state {path} discarded: its {', '.join(changed)} differ")
            except (OSError, ValueError, AttributeError) as e:
                notes.append(f"earlier tuning state {path} unreadable ({type(e).__name__}): starting over")
        return cls(path, key)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps({"version": STATE_VERSION, "key": self.key, "results": self.results}, indent=0))
        os.replace(tmp, self.path)


def tune_cases(sweep: Sweep, spec: TunerSpec, target: Target, case_ids: list[str] | None) -> list[Case]:
    """The config's cases (for this SM generation) that the backend runs on ``target``."""
    backend = spec.make_backend()
    reason = backend.availability(target)
    if reason:
        raise TuneError(f"{spec.backend} cannot run here: {reason}")
    all_cases = expand(sweep).cases
    cases = select_cases(all_cases, case_ids)
    if not cases:
        raise TuneError(f"--case {', '.join(case_ids or [])}: no case of '{sweep.name}' has this id or id prefix")
    runs = [c for c in cases if backend.supports(c, target) is None]
    if not runs:
        raise TuneError(f"'{sweep.name}': {spec.backend} runs none of its {len(cases)} selected cases on "
                        f"{target.label} (`gdnbench plan {sweep.name}` says why)")
    return runs


def run_tune(sweep: Sweep, opts: TuneOptions, target: Target | None = None,
             log: Callable[[str], None] = print, whole: Sweep | None = None) -> TuneSummary:
    """Tune ``opts.backend`` over ``sweep``'s cases on this GPU (module doc); returns what was done.
    ``whole``: the config without the command line's filters, whose cases the written entries may reach
    (default: ``sweep`` itself, without ``opts.case_ids``)."""
    spec = spec_for(opts.backend)
    if opts.budget_min is not None and not opts.budget_min > 0:
        raise TuneError(f"--budget: minutes must be > 0, got {opts.budget_min:g}")
    if opts.jobs < 1:
        raise TuneError(f"--jobs: worker processes must be >= 1, got {opts.jobs}")
    target = target or current_target()
    if target.device != "cuda":
        raise TuneError("gdnbench tune times kernels on a CUDA GPU; this machine has none")
    sweep = sweep.for_sm(target.sm)
    try:
        mode = resolve_timing_mode(sweep, target, None)
    except RunError as e:
        raise TuneError(str(e)) from None
    cases = tune_cases(sweep, spec, target, opts.case_ids)
    if whole is None and not opts.case_ids:
        reach = cases  # the run measures every case the config has
    else:
        reach = tune_cases(whole.for_sm(target.sm) if whole is not None else sweep, spec, target, None)
    return tune_session(cases, sweep.name or "sweep", sweep.timing, mode, spec, opts, target, log, reach=reach)


def tune_session(cases: list[Case], name: str, timing: Timing, mode: str, spec: TunerSpec, opts: TuneOptions,
                 target: Target, log: Callable[[str], None] = print,
                 candidates_of: Callable[[Case], list] | None = None, reach: list[Case] | None = None) -> TuneSummary:
    """Measure ``cases`` (the state file named after ``name``) with ``timing`` in ``mode`` over
    ``candidates_of`` (default: every candidate of the backend) and write the table (module doc);
    ``reach``: the cases whose tile change the summary reports unless the run wrote their class."""
    notes: list[str] = []
    digest = spec.tiles.kernel_sources_digest()
    key = {"backend": spec.backend, "device": target.name, "sm": target.sm, "kernel_sources_sha256": digest,
           "timing": timing.model_dump(), "timing_mode": mode}
    state = State.open(state_path(spec, target, name), key, opts.fresh, notes)
    candidates = {c.id: {t.name: t for t in (candidates_of or spec.candidates)(c)} for c in cases}
    classes: dict[tuple, list[Case]] = {}
    for c in cases:
        classes.setdefault(spec.class_key(c), []).append(c)
    total = sum(len(v) for v in candidates.values())
    already = sum(1 for c in cases for n in candidates[c.id] if n in state.results.get(c.id, {}))
    log(f"{name}: {len(cases)} cases in {len(classes)} classes, {total} candidates: {already} measured before "
        f"({state.path}), {total - already} to measure, largest class first")
    measured, stopped = 0, False
    start = last_save = clock()
    device = "cuda" if target.device == "cuda" and torch.cuda.is_available() else "cpu"

    def budget_left() -> float | None:
        return None if opts.budget_min is None else opts.budget_min * 60 - (clock() - start)

    def over_budget() -> bool:
        left = budget_left()
        return left is not None and left <= 0

    warmer = Warmer(spec.backend, spec.compile_key, opts.jobs) if opts.jobs > 1 and spec.compile_key else None
    if opts.jobs > 1 and warmer is None:
        notes.append(f"--jobs: {spec.backend} candidates are not compiled ahead (no compile key); each compiles "
                     "when measured")
    try:
        with _bar(total, opts.progress, spec.backend) as advance:
            advance(already)
            for group in sorted(classes.values(), key=lambda g: -g[0].batch * g[0].hv):  # largest first
                if warmer is not None and not stopped and not over_budget():
                    warmed = warmer.warm([(c, candidates[c.id][n]) for c in group for n in candidates[c.id]
                                          if n not in state.results.get(c.id, {})], budget_left())
                    if warmed is not None:
                        log(warmed.line(opts.jobs))
                    elif warmer.broken:
                        notes.append(f"--jobs: {warmer.broken}")
                        warmer = None
                for c in group:
                    pending = [n for n in candidates[c.id] if n not in state.results.get(c.id, {})]
                    if not pending or stopped:
                        continue
                    if over_budget():
                        stopped = True
                        continue
                    x = make_inputs(c, device)
                    e = reference(x)
                    for tile in pending:
                        if over_budget():
                            stopped = True
                            break
                        us, note = gate_and_time(c, candidates[c.id][tile], spec.make_backend, x, e, timing, mode)
                        state.results.setdefault(c.id, {})[tile] = us if us is not None else note
                        measured += 1
                        advance(1)
                        if clock() - last_save >= SAVE_EVERY_S:
                            state.save()
                            last_save = clock()
                    del x, e
                    if device == "cuda":
                        torch.cuda.empty_cache()
                    state.save()
                    if not stopped:
                        log(_case_line(c, state.results[c.id]))
    finally:
        if warmer is not None:
            warmer.close()
        state.save()
        spec.clear_cache()
        before = {c.id: spec.tiles.select(c) for c in reach or []}
        table, entries, done, changes = _write(spec, name, timing, target, mode, classes, candidates, state,
                                               opts.ship, digest, notes)
        csv_path = _write_csv(state)
    left = total - sum(1 for c in cases for n in candidates[c.id] if n in state.results.get(c.id, {}))
    written = {ch.key for ch in changes}
    unmeasured = [c for c in reach or [] if not (c.id in candidates and spec.class_key(c) in written)]
    reached = [] if table is None else _reached(spec, unmeasured, before)
    return TuneSummary(table, state.path, csv_path, done, len(classes), measured, left, stopped, entries, notes,
                       changes, reached)


def _reached(spec: TunerSpec, cases: list[Case], before: dict[str, tuple]) -> list[Reached]:
    """Of ``cases`` (none in a class the run wrote), those whose lookup now gives another tile than
    ``before`` (case id -> (tile, source) looked up before the table was written)."""
    out = []
    for c in cases:
        now = spec.tiles.select(c)[0]
        was, source = before[c.id]
        if now != was:
            out.append(Reached(c.id, was.name, source, now.name))
    return out


def _case_line(c: Case, results: dict[str, float | str]) -> str:
    timed = {n: us for n, us in results.items() if not isinstance(us, str)}
    if not timed:
        return f"{c.id}: no candidate passed the gate"
    best = min(timed, key=timed.__getitem__)
    return f"{c.id}: best {best} {timed[best]:.2f} µs (of {len(timed)} passing, {len(results) - len(timed)} failed)"


def _write(spec: TunerSpec, name: str, timing: Timing, target: Target, mode: str, classes: dict[tuple, list[Case]],
           candidates: dict[str, dict], state: State, ship: bool, digest: str,
           notes: list[str] | None = None) -> tuple[Path | None, int, int, list[ClassChange]]:
    """This GPU's table with every finished class's choice; returns (path or None, entries, classes done,
    each written class against the entry lookups took for it before). A per-user table of other kernel
    sources keeps none of its entries (module doc; a line in ``notes`` says so).

    Each new entry records its own tune (``tuned``: when, from which config, on which kernel sources),
    while the table's ``provenance`` describes the last tune only: a table keeps the entries of the
    classes a run did not measure, from earlier tunes, perhaps on other kernel sources."""
    best: dict[tuple, tuple[float, object]] = {}
    measured: dict[tuple, dict[str, dict[str, float]]] = {}  # class -> case id -> tile name -> µs
    done = 0
    for key, group in classes.items():
        if any(n not in state.results.get(c.id, {}) for c in group for n in candidates[c.id]):
            continue
        done += 1
        timed = {c.id: {candidates[c.id][n]: us for n, us in state.results[c.id].items()
                        if n in candidates[c.id] and not isinstance(us, str)} for c in group}
        timed = {cid: m for cid, m in timed.items() if m}
        if timed:
            best[key] = class_choice(timed)
            measured[key] = {cid: {t.name: us for t, us in m.items()} for cid, m in timed.items()}
    if not best:
        return None, 0, done, []
    folder = spec.tables if ship else user_tables(spec.backend)
    base = read_table(table_path(folder, target.name))
    if not ship and base is not None and tuned_on_other_sources(base, digest):
        if notes is not None and base["entries"]:
            notes.append(f"the per-user table {table_path(folder, target.name)} was tuned on other kernel sources: "
                         f"its {len(base['entries'])} entries are dropped (lookups passed over them)")
        base = None
    # lookup order (``load_table``'s chain, rebuilt here because that chain is None while tables are
    # disabled, and the report compares with the tables whatever the switch): this GPU's, then lent
    looked_up: list[tuple[dict | None, str | None]] = [(base, None)]
    if not ship:
        looked_up.append((read_table(table_path(spec.tables, target.name)), None))
    other = borrowed_table(spec.tables, target)
    if other:
        looked_up.append((other[1], other[1].get("device", "another GPU")))
    changes = [_change(spec, key, t, measured[key], looked_up) for key, (_, t) in best.items()]
    env = collect_env()
    kept = [e for e in (base or {}).get("entries", []) if spec.key_of(e) not in best]
    tuned = {"measured": env["timestamp"], "config": name, "kernel_sources_sha256": digest}
    new = [{**spec.entry(k, t), "median_us": round(us, 3), "tuned": tuned} for k, (us, t) in best.items()]
    entries = sorted(kept + new, key=lambda e: tuple(str(v) for v in spec.key_of(e)[:-1]) + (spec.key_of(e)[-1],))
    provenance = {"measured": env["timestamp"], "config": name, "timing_mode": mode,
                  "driver": env.get("driver"), "cuda_runtime": env.get("cuda_runtime"), "gdnbench": env["gdnbench"],
                  "git_sha": env.get("git_sha"), "git_dirty": env.get("git_dirty"), "versions": env["versions"],
                  "kernel_sources_sha256": digest}
    path = write_table(folder, target.name, target.sm, timing.model_dump(), spec.note, entries, provenance)
    spec.clear_cache()
    return path, len(entries), done, changes


def _change(spec: TunerSpec, key: tuple, chosen, timed: dict[str, dict[str, float]],
            tables: list[tuple[dict | None, str | None]]) -> ClassChange:
    """Class ``key``'s choice against the entry lookups took for it before the run: the first of
    ``tables`` (lookup order; each a table or None when absent, with the GPU that lends it, None for
    this GPU's own) with an entry of the class, or else of the coarser class its cases ran from where the
    key got finer. Scored on this run's measurements ``timed`` (case id -> tile name -> µs) the way
    ``class_choice`` scores tiles."""
    old: list[dict] = []
    lender = None
    for table, lender in tables:
        entries = (table or {}).get("entries", [])
        old = [e for e in entries if spec.key_of(e) == key]
        if not old and spec.coarser is not None and spec.coarser(key) != key:  # an entry of the coarser class
            old = [e for e in entries if spec.key_of(e) == spec.coarser(key)]
        if old:
            break
    if not old:
        return ClassChange(key, None, chosen.name, None)
    try:
        previous = spec.from_entry(old[0]).name
    except (ValueError, KeyError, TypeError):  # an entry this version cannot read
        return ClassChange(key, "(unreadable entry)", chosen.name, None, lender)
    if previous == chosen.name:
        return ClassChange(key, previous, chosen.name, 0.0, lender)
    if not all(previous in m for m in timed.values()):
        return ClassChange(key, previous, chosen.name, None, lender)
    slower = class_score(timed, previous) / class_score(timed, chosen.name) - 1
    return ClassChange(key, previous, chosen.name, slower, lender)


def change_lines(changes: list[ClassChange]) -> list[str]:
    """The command's report of a run's classes against the entries lookups took before: one summary line;
    how many of the classes that had an entry in this GPU's tables it reproduces (module doc); for the
    classes that ran another GPU's tiles, how many of those borrowed tiles are as fast here as the
    choice, and the worst; then one line per class whose tile changed."""
    if not changes:
        return []
    new = [c for c in changes if c.previous is None]
    kept = [c for c in changes if c.slower == 0.0]
    moved = [c for c in changes if c not in new and c not in kept]
    lines = [f"against the entries lookups took before: {len(kept)} of {len(changes)} tuned classes keep their tile, "
             f"{len(moved)} change, {len(new)} are new"]
    within = f"{REPRODUCED:.0%} slower than the chosen one here"
    own = [c for c in changes if c.previous is not None and c.borrowed is None]
    if own:
        same = [c for c in own if c.slower is not None and c.slower <= REPRODUCED]
        lines.append(f"reproduced within {REPRODUCED:.0%}: {len(same)} of {len(own)} classes that had an entry "
                     f"(its tile at most {within})")
    for lender in sorted({c.borrowed for c in changes if c.borrowed}):
        lent = [c for c in changes if c.borrowed == lender]
        same = [c for c in lent if c.slower is not None and c.slower <= REPRODUCED]
        slowest = max((c.slower for c in lent if c.slower is not None), default=None)
        worst = f"; the slowest {slowest:.1%}" if slowest else ""
        lines.append(f"borrowed from {lender} (other-gpu): {len(same)} of {len(lent)} classes ran a tile at most "
                     f"{within}{worst}")
    for c in sorted(moved, key=lambda c: -(c.slower or 0.0)):
        how = (f"the previous tile is {c.slower:.1%} slower here" if c.slower is not None
               else "the previous tile was not measured here")
        where = f", borrowed from {c.borrowed}" if c.borrowed else ""
        lines.append(f"  {', '.join(str(k) for k in c.key)}: {c.previous} -> {c.chosen} ({how}{where})")
    return lines


def reach_lines(reached: list[Reached], config: str, backend: str, ship: bool) -> list[str]:
    """The report's lines for the cases the run's entries reached without measuring them (``Reached``):
    how many, the first ``REACHED_SHOWN`` with their tile before and now, and the command that tunes
    exactly them (each then gets an entry of its own class, measured)."""
    if not reached:
        return []
    n = len(reached)
    head = (f"the new entries also change the tile of {n} {'case' if n == 1 else 'cases'} of '{config}' this run "
            "did not measure (the new tile is not timed on them):")
    lines = [head]
    lines += [f"  {r.case_id}: {r.previous} ({r.source}) -> {r.now}" for r in reached[:REACHED_SHOWN]]
    if n > REACHED_SHOWN:
        lines.append(f"  and {n - REACHED_SHOWN} more")
    ids = " ".join(f"-c {r.case_id}" for r in reached)
    lines.append(f"measure them: gdnbench tune {config} -b {backend}{' --ship' if ship else ''} {ids}")
    return lines


def _write_csv(state: State) -> Path:
    """Every measured candidate, next to the state file: case id, tile, µs, why it failed."""
    path = state.path.with_suffix(".csv")
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["case_id", "tile", "median_us", "note"])
        for cid, results in state.results.items():
            for name, us in results.items():
                w.writerow([cid, name, "" if isinstance(us, str) else f"{us:.3f}", us if isinstance(us, str) else ""])
    return path


class _bar:
    """A rich progress bar over the candidates (transient, on a terminal only); ``advance(n)``."""

    def __init__(self, total: int, enabled: bool, backend: str) -> None:
        console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.progress = Progress(TextColumn(f"[bold]tune {backend}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True,
                                 disable=not (enabled and sys.stderr.isatty()))
        self.task = self.progress.add_task("tune", total=total)

    def __enter__(self) -> Callable[[int], None]:
        self.progress.__enter__()
        return lambda n: self.progress.advance(self.task, n)

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)


def tune_plan(spec: TunerSpec, cases: list[Case], out: Path, log: Callable[[str], None] = print,
              candidates_of: Callable[[Case], list] | None = None, name: str = "plan") -> Path | None:
    """``python -m gdnbench.tune.<backend>``: a session over a tuner's own case plan, timed with the
    tuners' short graph timing (``common.TIMING``), written to the shipped table of this GPU; the table
    and the measurements are copied into ``out``. Returns the table's path (None: nothing finished)."""
    out.mkdir(parents=True, exist_ok=True)
    opts = TuneOptions(backend=spec.backend, ship=True, progress=True)
    s = tune_session(cases, f"{name}", TIMING, "graph", spec, opts, current_target(), log, candidates_of)
    for path in (s.table, s.csv):
        if path is not None:
            (out / path.name).write_text(path.read_text())
    return s.table
