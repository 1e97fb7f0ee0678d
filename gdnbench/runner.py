"""The runner: for every case and backend, supports -> inputs -> reference -> gate -> timer -> row.

Rows are written as they finish (see rows.py). A backend that raises while building or running
becomes a row with status ``error`` and the message, and the sweep goes on; a row that fails the
gate is written as ``failed`` with no latency; an unsupported pair is ``skipped`` with the reason.

Rows that pass the gate but are not timed say why in ``reason`` (status ``ok``, no latency): a
``gdnbench check`` run (:data:`CHECK_ONLY_NOTE`), and on a CPU every backend that launches Triton
kernels, which run there under the Triton interpreter (:data:`INTERPRETER_NOTE`): its wall clock
measures the interpreter, not the kernel. A check-only run writes to its own folder
(``<date>_<device>_<config>-check``) and records ``check_only`` in env.json, so ``--resume`` of a
sweep never picks it, and plots and ``compare`` leave it out.

``--energy`` adds a pass after timing (GPU only; gdnbench.energy): each timed graph-mode row's graph
is replayed again over a window aligned to NVML's total-energy counter, filling ``energy_uj``,
``energy_uj_err``, ``power_w`` and ``energy_window_s``.
"""

from __future__ import annotations

import csv
import functools
import gc
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
import yaml

from gdnbench.backends import get_backend
from gdnbench.backends.base import Backend, Target, current_target, triton_interpreted
from gdnbench.cases import Case, expand
from gdnbench.check import fatal_device_error, run_gate
from gdnbench.config import Sweep
from gdnbench.env import collect_env, device_slug, gpu_uuid, host_name
from gdnbench.inputs import Inputs, make_inputs
from gdnbench.outpaths import (CHECK_SUFFIX, check_out_dir, is_check_only, latest_results_dir, make_out_dir,
                               new_results_dir)
from gdnbench.reference import Expected, reference
from gdnbench.rows import Row, RowWriter
from gdnbench.timer import TIMER_REVISION, Timing, time_cpu
from gdnbench.vocab import GPU_TIMING_MODES

CHECK_ONLY_NOTE = "checked only: gdnbench check (no timing)"
INTERPRETER_NOTE = "checked only: Triton interpreter on a CPU (TRITON_INTERPRET=1), timing not meaningful"


class RunError(Exception):
    """A problem with the run as a whole (bad option for this machine, unusable results dir)."""


@dataclass
class RunOptions:
    out_dir: Path | None = None          # default: results/<date>_<device>_<config>
    results_root: Path = Path("results")
    resume: bool = False
    check_only: bool = False
    backends: list[str] | None = None    # subset of the sweep's backends
    case_ids: list[str] | None = None    # subset of case ids (exact or prefix)
    timing_mode: str | None = None       # override the config's timing.mode
    progress: bool = True
    energy: bool = False                 # GPU: measure energy per launch of every timed graph-mode row


@dataclass
class RunSummary:
    """Where the rows went. ``counts`` and ``cases`` cover every row of the run (a resumed run's
    earlier rows included); ``added`` counts the rows this invocation wrote."""

    directory: Path
    counts: dict[str, int] = field(default_factory=dict)
    cases: int = 0
    added: dict[str, int] = field(default_factory=dict)
    mode: str = ""
    notes: list[str] = field(default_factory=list)


def resolve_timing_mode(sweep: Sweep, target: Target, override: str | None) -> str:
    mode = override or sweep.timing.mode
    if mode == "auto":
        return "graph" if target.device == "cuda" else "cpu"
    if mode in GPU_TIMING_MODES and target.device != "cuda":
        raise RunError(f"timing mode '{mode}' needs a CUDA GPU; this machine has none (use cpu or auto)")
    return mode


def select_cases(cases: list[Case], ids: list[str] | None) -> list[Case]:
    if not ids:
        return cases
    return [c for c in cases if any(c.id == i or c.id.startswith(i) for i in ids)]


def interpreted(backend: Backend, target: Target) -> bool:
    """Whether ``backend``'s launches run under the Triton interpreter here (a CPU, TRITON_INTERPRET=1)."""
    return backend.triton and target.device != "cuda" and triton_interpreted()


@functools.lru_cache(maxsize=1)
def _where() -> tuple[str, str]:
    """(host, GPU UUID) of this process: one process runs on one GPU (a scale-out worker pins one)."""
    return host_name(), gpu_uuid()


def case_row(run_id: str, case: Case, backend: Backend, target: Target) -> Row:
    host, uuid = _where()
    row = Row(run_id=run_id, backend=backend.name, backend_version=backend.version,
              device=device_slug(), gpu=target.name if target.device == "cuda" else "",
              sm=f"sm{target.sm}" if target.sm else "", host=host, gpu_uuid=uuid)
    for k, v in case.as_row().items():
        setattr(row, k, v)
    row.bytes, row.flops = case.bytes_moved(), case.flops()
    try:
        row.kernel, row.padding = backend.kernel(case), backend.padding(case).value
        row.tile, row.tile_source = backend.tile_info(case) or ("", "")
    except Exception as e:  # a kernel description must never stop a run
        row.kernel = f"? ({type(e).__name__})"
    return row


def untuned_note(sweep: Sweep, cases: list[Case], backends: list[Backend], target: Target) -> str | None:
    """One line when an own backend (one with a ``tuner``) runs cases whose tile was not tuned on this
    GPU: per backend how many of the cases it runs, by source, and the command that tunes it; also a
    per-user table passed over because it was tuned on other kernel sources."""
    from gdnbench.backends.tables import TUNED

    parts, tuners = [], []
    for b in backends:
        if b.tuner is None:
            continue
        stale = b.stale_table()
        if stale:
            parts.append(f"{b.name}'s per-user table {stale} was tuned on other kernel sources and is not used")
            tuners += [] if b.tuner in tuners else [b.tuner]
        sources: dict[str, int] = {}
        runs = 0
        for c in cases:
            try:
                if b.supports(c, target):
                    continue
                info = b.tile_info(c)
            except Exception:  # the gate reports it; the note is about tiles only
                continue
            runs += 1
            if info and info[1] != TUNED:
                sources[info[1]] = sources.get(info[1], 0) + 1
        if sources:
            by = ", ".join(f"{s} {n}" for s, n in sorted(sources.items()))
            parts.append(f"{b.name} {sum(sources.values())} of {runs} cases ({by})")
            tuners += [] if b.tuner in tuners else [b.tuner]
    if not parts:
        return None
    gpu, where = (target.name, "") if target.device == "cuda" else ("no GPU here", " on a GPU")
    commands = " and ".join(f"`gdnbench tune {sweep.name or 'CONFIG'} --backend {t}`" for t in tuners)
    return f"tiles not tuned on this GPU ({gpu}): {'; '.join(parts)}; tune them with {commands}{where}"


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()[:500]


Measure = Callable[[Case, Backend], Timing]


def measure_row(mode: str, sweep: Sweep, target: Target) -> Measure:
    """The timing function for this run's mode (it makes its own input sets, seeded apart from the gate's)."""
    cfg = sweep.timing
    if mode == "cpu":
        def cpu(case: Case, backend: Backend) -> Timing:
            from gdnbench.ranges import range_name

            return time_cpu(backend.build(case, make_inputs(case, "cpu", set_index=1)), cfg,
                            range_name(case.phase, backend.name, case.id))
        return cpu
    from gdnbench import timer  # GPU modes

    return lambda case, backend: timer.time_gpu(mode, case, backend, cfg)


def fill_timing(row: Row, t: Timing, peak_gbps: float | None) -> None:
    s = t.stats
    row.timing_mode = t.mode
    row.median_us, row.iqr_us, row.p10_us, row.p90_us = s.median, s.iqr, s.p10, s.p90
    row.min_us, row.mean_us, row.cv, row.rel_noise, row.n_samples = s.min, s.mean, s.cv, s.rel_noise, s.n
    row.launches_per_sample, row.converged = t.launches_per_sample, t.converged
    row.input_sets = t.extra.get("input_sets")  # type: ignore[assignment]
    for key in ("sm_clock_mhz", "temp_c", "throttled", "throttle_reasons"):
        if key in t.extra:
            setattr(row, key, t.extra[key])
    secs = s.median * 1e-6
    if row.bytes and secs > 0:
        row.gbps = row.bytes / secs / 1e9
        if peak_gbps:
            row.pct_peak_bw = 100 * row.gbps / peak_gbps
    if row.flops and secs > 0:
        row.tflops = row.flops / secs / 1e12


class CaseInputs:
    """A case's gate inputs and float64 reference, built once and shared by every backend of the case.

    ``get(case)`` builds them on first use (only a backend that runs the case needs them) and keeps
    them while the same case is asked for; another case, or ``release()``, frees them first (a
    garbage collection and, on a GPU, the allocator's cache: ~0.1 s with torch and the GPU libraries
    loaded, so it is paid per case, not per pair). A failure to build is kept as ``error`` for the
    rest of the case's backends."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.case_id: str | None = None
        self.template: Inputs | None = None
        self.expected: Expected | None = None
        self.error: str | None = None
        self.builds = 0

    def get(self, case: Case) -> tuple[Inputs | None, Expected | None, str | None]:
        if self.case_id != case.id:
            self.release()
            self.case_id = case.id
        if self.template is None and self.error is None:
            self.builds += 1
            try:
                self.template = make_inputs(case, self.device)
                self.expected = reference(self.template)
            except Exception as e:  # e.g. out of memory for the float64 reference
                self.template = self.expected = None
                self.error = f"inputs/reference: {one_line(e)}"
        return self.template, self.expected, self.error

    def release(self) -> None:
        if self.case_id is None:
            return
        built = self.template is not None or self.error is not None
        self.case_id = self.template = self.expected = self.error = None
        if built:
            gc.collect()
            if self.device == "cuda":
                torch.cuda.empty_cache()


def gate_rows(cases: list[Case], backends: list[Backend], run_id: str, target: Target,
              done: set[tuple[str, str]], inputs: CaseInputs | None = None) -> Iterator[tuple[Row, bool]]:
    """Pass 1: for each pending (case, backend), supports -> inputs -> reference -> gate.

    Yields (row, passed). A row that did not pass is final (skipped / failed / error); a passed row
    still needs timing (pass 2). With ``inputs`` (a scale-out worker's, kept between calls) a case's
    inputs stay for its next pair; without, they are freed after each case.
    """
    own = inputs is None
    keep = inputs or CaseInputs("cuda" if target.device == "cuda" else "cpu")
    for case in cases:
        pending = [b for b in backends if (case.id, b.name) not in done]
        if not pending:
            continue
        for backend in pending:
            row = case_row(run_id, case, backend, target)
            try:
                reason = backend.supports(case, target)
            except Exception as e:
                reason = f"supports() raised {one_line(e)}"
            if reason:
                row.status, row.reason = "skipped", reason
                yield row, False
                continue
            template, expected, setup_error = keep.get(case)
            if setup_error:
                row.status, row.reason = "error", setup_error
                yield row, False
                continue
            assert template is not None and expected is not None
            try:
                gate = run_gate(case, backend, template, expected)
            except Exception as e:
                row.status, row.reason = "error", one_line(e)
                yield row, False
                if fatal_device_error(e):
                    raise RunError(f"{one_line(e)} in {backend.name} on {case.id}: the CUDA context is "
                                   "unusable; finished rows are kept, rerun with --resume to go on") from e
                continue
            c = gate.check
            row.check = "pass" if c.ok else "fail"
            row.first_call_ms = gate.first_call_s * 1e3
            row.max_abs_err, row.max_rel_err, row.rms_rel_err = c.max_abs_err, c.max_rel_err, c.rms_rel_err
            row.state_rms_rel_err, row.check_margin, row.kernels = c.state_rms_rel_err, c.margin, gate.kernels
            if not c.ok:
                row.status, row.reason = "failed", c.message
            yield row, c.ok
        if own:
            keep.release()


def time_row(row: Row, case: Case, backend: Backend, measure: Measure, peak_gbps: float | None) -> list[float]:
    """Pass 2 for one gated row: time it and fill the timing columns; returns the raw samples."""
    try:
        t = measure(case, backend)
    except Exception as e:
        row.status, row.reason = "error", one_line(e)
        _clear_timing(row)
        if fatal_device_error(e):
            raise RunError(f"{one_line(e)} in {backend.name} on {case.id} while timing: the CUDA context "
                           "is unusable; finished rows are kept, rerun with --resume to go on") from e
        return []
    fill_timing(row, t, peak_gbps)
    bad = t.extra.get("nonfinite_state")
    if bad:
        row.status, row.reason = "failed", f"state not finite after timing: {bad}"
        _clear_timing(row)
        return []
    row.status = "ok"
    return t.samples_us


def timed_here(passed: bool, backend: Backend, target: Target, measure: Measure | None) -> bool:
    """Whether a gated row goes on to timing: it passed, the run times, and its launches are not the
    Triton interpreter's (a CPU)."""
    return passed and measure is not None and not interpreted(backend, target)


def mark_untimed(row: Row, passed: bool, measure: Measure | None) -> None:
    """A row that passed the gate but is not timed: ok, with the reason it has no latency."""
    if passed:
        row.status = "ok"
        row.reason = CHECK_ONLY_NOTE if measure is None else INTERPRETER_NOTE


def run_pair(case: Case, backend: Backend, run_id: str, target: Target, measure: Measure | None,
             peak_gbps: float | None, energy: object | None = None,
             inputs: CaseInputs | None = None) -> tuple[Row, list[float]]:
    """One (case, backend) from start to end on this process's device: gate, then (if it passed and the
    run times) timing and the energy pass. The unit of work of a scale-out sweep (gdnbench.distributed);
    a local sweep runs the same steps, gating every pair before timing any. Raises RunError when the
    CUDA context is unusable afterwards. ``inputs``: the caller's CaseInputs, so consecutive pairs of
    one case share its inputs and reference (without, they are built and freed for this pair)."""
    [(row, passed)] = list(gate_rows([case], [backend], run_id, target, set(), inputs))
    if not timed_here(passed, backend, target, measure):
        mark_untimed(row, passed, measure)
        return row, []
    assert measure is not None
    samples = time_row(row, case, backend, measure, peak_gbps)
    if energy is not None and row.status == "ok":
        energy.fill(row, case, backend)  # type: ignore[attr-defined]
    return row, samples


def _clear_timing(row: Row) -> None:
    for name in ("median_us", "iqr_us", "p10_us", "p90_us", "min_us", "mean_us", "cv", "rel_noise", "n_samples",
                 "launches_per_sample", "input_sets", "converged", "gbps", "pct_peak_bw", "tflops"):
        setattr(row, name, None)
    row.timing_mode = ""


def _empty_selection(sweep: Sweep, ex_cases: list[Case], opts: RunOptions, target: Target) -> str:
    name = sweep.name or "sweep"
    if ex_cases:
        return (f"--case {', '.join(opts.case_ids or [])}: no case of '{name}' has this id or id prefix "
                f"({len(ex_cases)} cases, e.g. {ex_cases[0].id}; `gdnbench plan {name}` lists them)")
    return (f"'{name}' selects no case on {target.label}: its where filters and invalid combinations remove every "
            "combination of its axes (`gdnbench plan` shows what is dropped)")


def select_pairs(sweep: Sweep, opts: RunOptions, target: Target) -> tuple[Sweep, list[Case], list[Backend]]:
    """The sweep resolved for ``target``'s SM generation, its selected cases (none is an error) and backends."""
    sweep = sweep.for_sm(target.sm)
    all_cases = expand(sweep).cases
    cases = select_cases(all_cases, opts.case_ids)
    if not cases:
        raise RunError(_empty_selection(sweep, all_cases, opts, target))
    names = sweep.backends
    if opts.backends:
        unknown = [b for b in opts.backends if b not in sweep.backends]
        if unknown:
            raise RunError(f"backend(s) {', '.join(unknown)} not in this sweep ({', '.join(sweep.backends)})")
        names = [b for b in sweep.backends if b in opts.backends]
    return sweep, cases, [get_backend(n) for n in names]


def run_directory(sweep: Sweep, opts: RunOptions, slug: str | None = None) -> Path:
    """The results folder of this run (a new one, or the one --resume finishes), checked writable and
    created; ``slug`` names the device(s) (default: this machine's)."""
    slug = slug or device_slug()
    option = "--out" if opts.out_dir else "--results-root"
    kind = "check-only run" if opts.check_only else "timed sweep"
    check_out_dir(opts.out_dir if opts.out_dir is not None else opts.results_root, option)
    if opts.resume:
        directory = opts.out_dir or latest_results_dir(sweep, opts.results_root, opts.check_only, slug)
        if directory is None or not (directory / "rows.csv").exists():
            raise RunError(f"--resume: no earlier {kind} of '{sweep.name}' on {slug} under "
                           f"{opts.results_root}/ (give --out DIR)")
        if is_check_only(directory) != opts.check_only:
            other = "gdnbench check --resume" if not opts.check_only else "gdnbench sweep --resume"
            raise RunError(f"--resume {directory}: holds a {'check-only run' if not opts.check_only else 'timed sweep'}, "
                           f"not a {kind}; finish it with {other}, or give another --out")
    else:
        suffix = CHECK_SUFFIX if opts.check_only else ""
        directory = opts.out_dir or new_results_dir(sweep, opts.results_root, suffix=suffix, slug=slug)
        if (directory / "rows.csv").exists():
            raise RunError(f"{directory} already holds rows.csv: use --resume to finish it or another --out")
    make_out_dir(directory, option)
    return directory


def prepare_run(sweep: Sweep, opts: RunOptions) -> tuple[Sweep, Target, list[Case], list[Backend], Path]:
    """Everything a run needs, checked before anything is written: the cases (none selected is an
    error), the backends, and a results folder that can be written (RunError / OutPathError)."""
    target = current_target()
    sweep, cases, backends = select_pairs(sweep, opts, target)
    return sweep, target, cases, backends, run_directory(sweep, opts)


def write_provenance(directory: Path, sweep: Sweep, extra: dict | None = None, local_gpu: bool = True) -> dict:
    """env.json and config.yaml; ``local_gpu=False`` (a scale-out driver) leaves this process's GPU out:
    the workers' GPUs are in ``extra``."""
    directory.mkdir(parents=True, exist_ok=True)
    env_path = directory / "env.json"
    env = collect_env(gpu=local_gpu)
    if extra:
        env.update(extra)
    if env_path.exists():  # a resumed run keeps the original provenance and notes each resume
        old = json.loads(env_path.read_text())
        old.setdefault("resumed", []).append({k: env.get(k) for k in ("timestamp", "git_sha", "git_dirty", "host")})
        env = old
    env_path.write_text(json.dumps(env, indent=2, default=str) + "\n")
    (directory / "config.yaml").write_text(
        yaml.safe_dump(json.loads(sweep.model_dump_json()), sort_keys=False))
    return env


def run_counts(directory: Path) -> tuple[dict[str, int], int]:
    """Statuses and distinct cases over every row of a run's rows.csv."""
    counts: dict[str, int] = {}
    cases: set[str] = set()
    with (Path(directory) / "rows.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            counts[r["status"]] = counts.get(r["status"], 0) + 1
            cases.add(r["case_id"])
    return counts, len(cases)


@dataclass
class Instruments:
    """What timing a sweep's rows needs on this machine, set up once per process (the plain runner, or
    each scale-out worker): the row timer, this GPU's copy bandwidth (the roofline's peak) and the
    opt-in energy pass. ``energy_note`` says why energy was asked for but is off here."""

    measure: Measure | None
    roofline: dict
    energy: object | None     # gdnbench.energy.EnergyPass
    energy_note: str = ""

    @property
    def peak_gbps(self) -> float | None:
        return self.roofline.get("copy_gbps")


def instruments(sweep: Sweep, mode: str, target: Target, check_only: bool, energy: bool) -> Instruments:
    """Set up the timer, copy bandwidth and energy pass of a run (nothing of them for a check-only run)."""
    if check_only:
        return Instruments(None, {}, None)
    roofline: dict = {}
    if target.device == "cuda":
        from gdnbench.timer import device_roofline

        roofline = device_roofline()
    tools = Instruments(measure_row(mode, sweep, target), roofline, None)
    if energy:
        from gdnbench.energy import EnergyPass

        tools.energy = EnergyPass.open(sweep.timing)
        if tools.energy.reason:
            tools.energy, tools.energy_note = None, tools.energy.reason
    return tools


def energy_off(reason: str) -> str:
    """The summary note of a run asked for energy where the counter is unusable."""
    return f"energy: {reason}; rows carry no energy columns"


def run_sweep(sweep: Sweep, opts: RunOptions, on_row: Callable[[Row], None] | None = None) -> RunSummary:
    """Run (or resume) a sweep; returns where the rows went and how many of each status."""
    target = current_target()
    mode = resolve_timing_mode(sweep.for_sm(target.sm), target, opts.timing_mode)
    if opts.energy and (opts.check_only or mode != "graph"):
        raise RunError("--energy measures graph-mode rows on a GPU: "
                       + ("this run is not timed" if opts.check_only else f"this run's timing mode is {mode}"))
    sweep, target, cases, backends, directory = prepare_run(sweep, opts)
    writer = RowWriter(directory)
    done = writer.done() if opts.resume else set()
    if opts.resume:
        writer.prune_samples()
    extra: dict = {"config_name": sweep.name, "timing_mode": mode, "check_only": opts.check_only,
                   "timer_revision": TIMER_REVISION}
    tools = instruments(sweep, mode, target, opts.check_only, opts.energy)
    if tools.roofline:
        extra["roofline"] = tools.roofline
    write_provenance(directory, sweep, extra)
    measure, peak, energy = tools.measure, tools.peak_gbps, tools.energy
    summary = RunSummary(directory=directory, cases=len(cases), mode="" if opts.check_only else mode)
    note = untuned_note(sweep, cases, backends, target)
    if note:
        summary.notes.append(note)
    if tools.energy_note:
        summary.notes.append(energy_off(tools.energy_note))
    total = sum(1 for c in cases for b in backends if (c.id, b.name) not in done)
    from gdnbench.progress import progress_bar

    def emit(row: Row, samples: list[float], advance: Callable[[Row], None]) -> None:
        writer.write(row, samples)
        summary.added[row.status] = summary.added.get(row.status, 0) + 1
        advance(row)
        if on_row:
            on_row(row)

    gated: list[tuple[Row, Case, Backend]] = []
    by_id = {c.id: c for c in cases}
    by_name = {b.name: b for b in backends}
    with progress_bar(total, enabled=opts.progress) as advance:
        for row, passed in gate_rows(cases, backends, directory.name, target, done):
            backend = by_name[row.backend]
            if timed_here(passed, backend, target, measure):
                gated.append((row, by_id[row.case_id], backend))
            else:
                mark_untimed(row, passed, measure)
                emit(row, [], advance)
        if gated and measure is not None:
            with ProfilerRange(target):  # exactly the measured work, for nsys --capture-range=cudaProfilerApi
                for row, case, backend in gated:
                    samples = time_row(row, case, backend, measure, peak)
                    if energy is not None and row.status == "ok":
                        energy.fill(row, case, backend)
                    emit(row, samples, advance)
    summary.counts, summary.cases = run_counts(directory)
    return summary


class ProfilerRange:
    """cudaProfilerStart/Stop around the measured part of a sweep (``nsys --capture-range=cudaProfilerApi``)."""

    def __init__(self, target: Target) -> None:
        self.on = target.device == "cuda" and os.environ.get("GDNBENCH_NO_PROFILER_RANGE") != "1"

    def __enter__(self) -> None:
        if self.on:
            torch.cuda.profiler.start()

    def __exit__(self, *exc: object) -> None:
        if self.on:
            torch.cuda.profiler.stop()
