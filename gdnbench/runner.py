"""The runner: for every case and backend, supports -> inputs -> reference -> gate -> timer -> row.

Rows are written as they finish (see rows.py). A backend that raises while building or running
becomes a row with status ``error`` and the message, and the sweep goes on; a row that fails the
gate is written as ``failed`` with no latency; an unsupported pair is ``skipped`` with the reason.
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
import yaml

from gdnbench.backends import get_backend
from gdnbench.backends.base import Backend, Target, current_target
from gdnbench.cases import Case, expand
from gdnbench.check import run_gate
from gdnbench.config import Sweep
from gdnbench.env import collect_env, device_slug
from gdnbench.inputs import Inputs, make_inputs
from gdnbench.reference import Expected, reference
from gdnbench.rows import Row, RowWriter
from gdnbench.timer import Timing, time_cpu


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


@dataclass
class RunSummary:
    directory: Path
    counts: dict[str, int] = field(default_factory=dict)
    cases: int = 0


def resolve_timing_mode(sweep: Sweep, target: Target, override: str | None) -> str:
    mode = override or sweep.timing.mode
    if mode == "auto":
        return "graph" if target.device == "cuda" else "cpu"
    if mode in ("graph", "events") and target.device != "cuda":
        raise RunError(f"timing mode '{mode}' needs a CUDA GPU; this machine has none (use cpu or auto)")
    return mode


def new_results_dir(sweep: Sweep, root: Path, suffix: str = "") -> Path:
    stem = f"{_dt.date.today().isoformat()}_{device_slug()}_{sweep.name or 'sweep'}{suffix}"
    path, n = root / stem, 2
    while path.exists():
        path, n = root / f"{stem}_{n}", n + 1
    return path


def latest_results_dir(sweep: Sweep, root: Path) -> Path | None:
    """Most recent results dir of this config on this kind of device (for --resume without --out)."""
    suffix = f"_{device_slug()}_{sweep.name or 'sweep'}"
    found = sorted((p for p in root.glob(f"*{suffix}*") if (p / "rows.csv").exists()),
                   key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def select_cases(cases: list[Case], ids: list[str] | None) -> list[Case]:
    if not ids:
        return cases
    return [c for c in cases if any(c.id == i or c.id.startswith(i) for i in ids)]


def case_row(run_id: str, case: Case, backend: Backend, target: Target) -> Row:
    row = Row(run_id=run_id, backend=backend.name, backend_version=backend.version,
              device=device_slug(), gpu=target.name if target.device == "cuda" else "",
              sm=f"sm{target.sm}" if target.sm else "")
    for k, v in case.as_row().items():
        setattr(row, k, v)
    row.bytes, row.flops = case.bytes_moved(), case.flops()
    try:
        row.kernel, row.padding = backend.kernel(case), backend.padding(case).value
    except Exception as e:  # a kernel description must never stop a run
        row.kernel = f"? ({type(e).__name__})"
    return row


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()[:500]


def _fatal_device_error(e: BaseException) -> bool:
    text = str(e)
    return any(s in text for s in ("illegal memory access", "CUDA error: an illegal", "unspecified launch failure",
                                   "device-side assert"))


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


def gate_rows(cases: list[Case], backends: list[Backend], run_id: str, target: Target,
              done: set[tuple[str, str]]) -> Iterator[tuple[Row, bool]]:
    """Pass 1: for each pending (case, backend), supports -> inputs -> reference -> gate.

    Yields (row, passed). A row that did not pass is final (skipped / failed / error); a passed row
    still needs timing (pass 2).
    """
    device = "cuda" if target.device == "cuda" else "cpu"
    for case in cases:
        pending = [b for b in backends if (case.id, b.name) not in done]
        if not pending:
            continue
        template: Inputs | None = None
        expected: Expected | None = None
        setup_error: str | None = None
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
            if template is None and setup_error is None:
                try:
                    template = make_inputs(case, device)
                    expected = reference(template)
                except Exception as e:  # e.g. out of memory for the float64 reference
                    setup_error = f"inputs/reference: {one_line(e)}"
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
                if _fatal_device_error(e):
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
        del template, expected
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()


def time_row(row: Row, case: Case, backend: Backend, measure: Measure, peak_gbps: float | None) -> list[float]:
    """Pass 2 for one gated row: time it and fill the timing columns; returns the raw samples."""
    try:
        t = measure(case, backend)
    except Exception as e:
        row.status, row.reason = "error", one_line(e)
        _clear_timing(row)
        if _fatal_device_error(e):
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


def _clear_timing(row: Row) -> None:
    for name in ("median_us", "iqr_us", "p10_us", "p90_us", "min_us", "mean_us", "cv", "rel_noise", "n_samples",
                 "launches_per_sample", "input_sets", "converged", "gbps", "pct_peak_bw", "tflops"):
        setattr(row, name, None)
    row.timing_mode = ""


def prepare_run(sweep: Sweep, opts: RunOptions) -> tuple[Sweep, Target, list[Case], list[Backend], Path]:
    target = current_target()
    sweep = sweep.for_sm(target.sm)
    cases = select_cases(expand(sweep).cases, opts.case_ids)
    names = sweep.backends
    if opts.backends:
        unknown = [b for b in opts.backends if b not in sweep.backends]
        if unknown:
            raise RunError(f"backend(s) {', '.join(unknown)} not in this sweep ({', '.join(sweep.backends)})")
        names = [b for b in sweep.backends if b in opts.backends]
    backends = [get_backend(n) for n in names]
    if opts.resume:
        directory = opts.out_dir or latest_results_dir(sweep, opts.results_root)
        if directory is None or not (directory / "rows.csv").exists():
            raise RunError(f"--resume: no earlier run of '{sweep.name}' on {device_slug()} under "
                           f"{opts.results_root}/ (give --out DIR)")
    else:
        directory = opts.out_dir or new_results_dir(sweep, opts.results_root)
        if (directory / "rows.csv").exists():
            raise RunError(f"{directory} already holds rows.csv: use --resume to finish it or another --out")
    return sweep, target, cases, backends, directory


def write_provenance(directory: Path, sweep: Sweep, extra: dict | None = None) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    env_path = directory / "env.json"
    env = collect_env()
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


def run_sweep(sweep: Sweep, opts: RunOptions, on_row: Callable[[Row], None] | None = None) -> RunSummary:
    """Run (or resume) a sweep; returns where the rows went and how many of each status."""
    sweep, target, cases, backends, directory = prepare_run(sweep, opts)
    mode = resolve_timing_mode(sweep, target, opts.timing_mode)
    writer = RowWriter(directory)
    done = writer.done() if opts.resume else set()
    if opts.resume:
        writer.prune_samples(done)
    extra: dict = {"config_name": sweep.name, "timing_mode": mode}
    peak = None
    if target.device == "cuda" and not opts.check_only:
        from gdnbench.timer import device_roofline

        roof = device_roofline()
        extra["roofline"] = roof
        peak = roof.get("copy_gbps")
    write_provenance(directory, sweep, extra)
    measure = None if opts.check_only else measure_row(mode, sweep, target)
    summary = RunSummary(directory=directory, cases=len(cases))
    total = sum(1 for c in cases for b in backends if (c.id, b.name) not in done)
    from gdnbench.progress import progress_bar

    def emit(row: Row, samples: list[float], advance: Callable[[Row], None]) -> None:
        writer.write(row, samples)
        summary.counts[row.status] = summary.counts.get(row.status, 0) + 1
        advance(row)
        if on_row:
            on_row(row)

    gated: list[tuple[Row, Case, Backend]] = []
    by_id = {c.id: c for c in cases}
    by_name = {b.name: b for b in backends}
    with progress_bar(total, enabled=opts.progress) as advance:
        for row, passed in gate_rows(cases, backends, directory.name, target, done):
            if passed and measure is not None:
                gated.append((row, by_id[row.case_id], by_name[row.backend]))
            else:
                if passed:
                    row.status = "ok"
                emit(row, [], advance)
        if gated and measure is not None:
            with ProfilerRange(target):  # exactly the measured work, for nsys --capture-range=cudaProfilerApi
                for row, case, backend in gated:
                    emit(row, time_row(row, case, backend, measure, peak), advance)
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
