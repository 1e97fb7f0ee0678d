"""The ``gdnbench`` command: a thin typer layer over the library modules.

Exit codes: 0 success; 1 some row failed the correctness gate or errored; 2 bad input (config,
options, paths): one line on stderr, never a traceback; 130 interrupted (finished rows are kept).
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from gdnbench.config import ConfigError, Sweep, load_sweep
from gdnbench.vocab import TIMING_MODES

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Microbenchmarks and profiling for Gated DeltaNet (GDN) kernels.")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PACKAGED_CONFIGS = Path(__file__).resolve().parent / "_configs"


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, Slurm, Kubernetes, a device lease ending) during a long command."""


@contextmanager
def sigterm_as_interrupt():
    """Within it, SIGTERM stops a sweep or a tune as Ctrl-C does (``Terminated``, exit 143): the rows
    written so far, or the tuner's measurements and the table of its finished classes, are kept, and the
    same command with ``--resume`` (sweep) or as is (tune) goes on. Python's default SIGTERM ends the
    process at once, with no ``finally`` run. Outside the main thread (no signals there) it does nothing."""
    def stop(signum, frame):
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stopped(e: KeyboardInterrupt, what: str) -> typer.Exit:
    """The one line and exit code of a command stopped by Ctrl-C (130) or SIGTERM (143)."""
    term = isinstance(e, Terminated)
    err.print(f"{'terminated (SIGTERM)' if term else 'interrupted'}: {what}", markup=False)
    return typer.Exit(143 if term else 130)


def config_dir() -> Path:
    """Shipped configs: the checkout's configs/ (editable installs) or the copy inside the wheel."""
    return REPO_CONFIGS if REPO_CONFIGS.is_dir() else PACKAGED_CONFIGS


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"error: {message}", markup=False)
    return typer.Exit(code)


def find_config(name: str) -> Path:
    """A path, or the name of a shipped config ("decode" -> configs/decode.yaml)."""
    p = Path(name)
    if p.exists():
        return p
    for cand in (config_dir() / name, config_dir() / f"{name}.yaml"):
        if cand.exists():
            return cand
    shipped = ", ".join(sorted(c.stem for c in config_dir().glob("*.yaml")))
    raise fail(f"{name}: no such config file (shipped configs: {shipped})")


def load(name: str, where: list[str] | None = None) -> Sweep:
    """A config by path or shipped name, validated: its structure, then its ``where`` filters on its cases.
    ``where``: filters given on the command line, kept with the config's own (every one must hold)."""
    path = find_config(name)
    try:
        return narrowed(load_sweep(path), where, path)
    except ConfigError as e:
        raise fail(str(e)) from None


def narrowed(sweep: Sweep, where: list[str] | None, path: Path) -> Sweep:
    """``sweep`` (loaded from ``path``) with the command line's ``where`` filters, each parsed, then all
    its filters checked on its cases; raises ConfigError."""
    from gdnbench.cases import check_where
    from gdnbench.config import parse_where

    for expr in where or []:
        try:
            parse_where(expr)
        except ValueError as e:
            raise ConfigError(f"--where {expr!r}: {e}") from None
    sweep = sweep.with_where(where)
    check_where(sweep, str(path))
    return sweep


def default_config() -> str:
    """configs/decode.yaml on a GPU, configs/smoke-cpu.yaml on a CPU."""
    from gdnbench.backends.base import current_target

    t = current_target()
    name = "decode" if t.device == "cuda" else "smoke-cpu"
    err.print(f"no config given: running configs/{name}.yaml ({'GPU ' + t.name if t.device == 'cuda' else 'no GPU here'})")
    return name


def _prepare_interpreter() -> None:
    """Triton kernels run under the interpreter on a machine without a GPU (set before triton loads).

    Every command that asks backends what they support here (sweep, check, trace, plan, list) calls
    this first, so they all give the same answer about Triton-based backends on a CPU."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


CPU_TIMING_NOTE = ("CPU timings are indicative only: host wall clock of eager launches, mostly not converged; "
                   "summaries and figures claim no speedup from them")


def _counts(counts: dict) -> str:
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def _warnings_line(caught: list) -> str | None:
    """One line for the warnings libraries raised during a run (the first message, and how many)."""
    if not caught:
        return None
    first = caught[0]
    text = str(first.message).splitlines()[0] if str(first.message) else ""
    more = f" (+{len(caught) - 1} more)" if len(caught) > 1 else ""
    return f"note: {len(caught)} warning(s) from libraries during the run; first: {first.category.__name__}: {text}{more}"


def _run(sweep: Sweep, out_dir: Optional[Path], resume: bool, backend: Optional[List[str]],
         case: Optional[List[str]], timing: Optional[str], check_only: bool, progress: bool,
         results_root: Path, energy: bool = False, gpus: Optional[str] = None, cluster: Optional[str] = None) -> None:
    from gdnbench.runner import RunError, RunOptions, run_sweep

    _prepare_interpreter()
    opts = RunOptions(out_dir=out_dir, results_root=results_root, resume=resume, check_only=check_only,
                      backends=backend, case_ids=case, timing_mode=timing, progress=progress, energy=energy)
    try:
        with warnings.catch_warnings(record=True) as caught, sigterm_as_interrupt():
            warnings.simplefilter("default")
            if gpus is not None or cluster is not None:
                from gdnbench.distributed import ClusterSpec, run_distributed

                summary = run_distributed(sweep, opts, ClusterSpec.from_options(gpus, cluster))
            else:
                summary = run_sweep(sweep, opts)
    except RunError as e:
        raise fail(str(e)) from None
    except ValueError as e:  # a path that cannot be written, rows.csv of another schema
        raise fail(str(e)) from None
    except KeyboardInterrupt as e:
        raise stopped(e, "every finished row is in rows.csv; finish with --resume") from None
    line = _warnings_line(caught)
    if line:
        err.print(line, markup=False)
    added = _counts(summary.added) or "nothing to do"
    whole = _counts(summary.counts)
    if resume:
        out.print(f"{summary.cases} cases: {whole} (this resume: {added})")
    else:
        out.print(f"{summary.cases} cases: {whole or added}")
    for note in summary.notes:
        out.print(f"note: {note}", markup=False)
    if summary.mode == "cpu":
        out.print(f"note: {CPU_TIMING_NOTE}", markup=False)
    out.print(f"results: {summary.directory}/rows.csv")
    if summary.counts.get("failed") or summary.counts.get("error"):
        raise typer.Exit(1)


OutOpt = typer.Option(None, "--out", "-o", help="results directory (default results/<date>_<device>_<config>)")
ResumeOpt = typer.Option(False, "--resume", help="finish a partial run: skip rows already in rows.csv")
BackendOpt = typer.Option(None, "--backend", "-b", help="only these backends (repeatable)")
CaseOpt = typer.Option(None, "--case", "-c", help="only cases with this id or id prefix (repeatable)")
ProgressOpt = typer.Option(True, "--progress/--no-progress")
WhereOpt = typer.Option(None, "--where", "-w", help="only cases where this filter holds, in the config's "
                        "where language, e.g. \"layout == 'v_last'\" (repeatable; added to the config's own)")
RootOpt = typer.Option(Path("results"), "--results-root", help="parent of new results directories")


@app.command()
def sweep(config: Optional[str] = typer.Argument(None, help="config file or shipped name; default: "
                                                 "decode on a GPU, smoke-cpu on a CPU"),
          out_dir: Optional[Path] = OutOpt, resume: bool = ResumeOpt,
          backend: Optional[List[str]] = BackendOpt, case: Optional[List[str]] = CaseOpt,
          timing: Optional[str] = typer.Option(None, help="timing mode: graph | events | cpu (default: config)"),
          energy: bool = typer.Option(False, "--energy", help="GPU: also measure energy per launch (µJ) and power "
                                      "of every timed row through NVML, over windows of >= 0.3 s aligned to the "
                                      "energy counter's updates (adds ~0.5 s per row)"),
          gpus: Optional[str] = typer.Option(None, "--gpus", help="scale out over this host's GPUs with Ray: all, "
                                             "a count, or device ids (0,2); with --cluster: all or a count"),
          cluster: Optional[str] = typer.Option(None, "--cluster", help="run on a running Ray cluster: auto or "
                                                "its address (ray://host:10001, host:6379)"),
          where: Optional[List[str]] = WhereOpt, progress: bool = ProgressOpt, results_root: Path = RootOpt) -> None:
    """Run a sweep: check every (case, backend) against the reference, then time it; write rows.csv."""
    if timing is not None and timing not in TIMING_MODES:
        raise fail(f"--timing: '{timing}' is not one of {', '.join(TIMING_MODES)}")
    _run(load(config or default_config(), where), out_dir, resume, backend, case, timing, False, progress, results_root,
         energy, gpus, cluster)


@app.command()
def check(config: str = typer.Argument(..., help="config file or shipped name"),
          out_dir: Optional[Path] = OutOpt, resume: bool = ResumeOpt,
          backend: Optional[List[str]] = BackendOpt, case: Optional[List[str]] = CaseOpt,
          sanitize: bool = typer.Option(False, "--sanitize", help="re-run each row's gate under compute-sanitizer "
                                        "memcheck (one child process per row) and report its errors per row"),
          sanitizer: Optional[str] = typer.Option(None, help="path to compute-sanitizer (default: PATH)"),
          where: Optional[List[str]] = WhereOpt, progress: bool = ProgressOpt, results_root: Path = RootOpt) -> None:
    """Run only the correctness gate (no timing) into its own <date>_<device>_<config>-check folder; exit 1
    if any row fails."""
    swp = load(config, where)
    if not sanitize:
        _run(swp, out_dir, resume, backend, case, None, True, progress, results_root)
        return
    from gdnbench.progress import describe
    from gdnbench.runner import RunError, RunOptions
    from gdnbench.sanitize import sanitize_sweep

    opts = RunOptions(out_dir=out_dir, results_root=results_root, resume=resume, check_only=True,
                      backends=backend, case_ids=case)
    try:
        summary = sanitize_sweep(swp, find_config(config), opts, sanitizer,
                                 on_row=lambda r: err.print(describe(r) + (f"  [{r.sanitizer}]" if r.sanitizer else "")))
    except (RunError, ValueError) as e:  # ValueError: a path that cannot be written
        raise fail(str(e)) from None
    out.print(f"{summary.cases} cases: " + ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items())))
    out.print(f"results: {summary.directory}/rows.csv (memcheck logs in sanitizer/)")
    if summary.counts.get("failed") or summary.counts.get("error"):
        raise typer.Exit(1)


@app.command()
def plan(config: str = typer.Argument(..., help="config file or shipped name"),
         sm: Optional[int] = typer.Option(None, help="plan for this SM generation (e.g. 90, 100) instead of this machine"),
         all_cases: bool = typer.Option(False, "--all", help="list every case (default: the first 200)"),
         where: Optional[List[str]] = WhereOpt) -> None:
    """Print the cases a config expands to and, per backend, whether it supports each (and why not)."""
    from gdnbench.backends.base import Target
    from gdnbench.plan import print_plan

    swp = load(config, where)
    _prepare_interpreter()
    target = Target("cuda", sm, f"sm{sm}") if sm is not None else None
    if print_plan(swp, out, target, limit=None if all_cases else 200) == 0:
        raise fail(f"{swp.name}: selects no case (its where filters and invalid combinations remove every one)")


@app.command("list")
def list_backends(matrix: bool = typer.Option(False, "--matrix", help="capability matrix per backend variant")) -> None:
    """List the backends with their availability on this machine."""
    from rich.table import Table

    from gdnbench.backends import all_backends
    from gdnbench.backends.base import current_target, triton_interpreted

    _prepare_interpreter()
    t = current_target()
    if matrix:
        from gdnbench.capabilities import print_matrix

        print_matrix(out)
        return
    table = Table(title=f"backends on this machine ({t.name if t.device == 'cuda' else 'CPU only'})")
    for col in ("backend", "version", "available here", "what it is"):
        table.add_column(col)
    for b in all_backends():
        reason = b.availability(t)
        here = "[green]yes[/]"
        if b.triton and t.device != "cuda" and triton_interpreted():
            here += " (Triton interpreter: checked, not timed)"
        table.add_row(b.name, b.version, here if not reason else f"[dim]no: {reason}[/]", b.summary)
    out.print(table)


@app.command()
def calibrate(out_file: Optional[Path] = typer.Option(None, "--out", "-o", help="also write the figures as JSON"),
              energy: bool = typer.Option(True, "--energy/--no-energy", help="check NVML's energy counter: "
                                          "copy energy linear in bytes within 5% (where NVML reports it)")) -> None:
    """Self-check the GPU timer: copy bandwidth, graph-timed copies (>= 90%), empty kernel (< 3 µs); and the
    energy counter: copy energy linear in bytes (within 5%)."""
    import json

    import torch
    from rich.table import Table

    from gdnbench.calibrate import run_calibration, verdicts
    from gdnbench.outpaths import OutPathError, check_out_file

    if out_file is not None:
        try:
            check_out_file(out_file, "--out")
        except OutPathError as e:
            raise fail(str(e)) from None
    if not torch.cuda.is_available():
        raise fail("calibrate times GPU work; this machine has no CUDA GPU")
    result = run_calibration(energy=energy)
    out.print(f"{result['gpu']} ({result['sm']}), driver {result['driver']}, torch {result['torch']}")
    out.print(f"copy bandwidth: {result['roofline']['copy_gbps']:.0f} GB/s (1 GiB device copy, read + write)")
    table = Table()
    for col in ("graph-timed copy", "sets", "median µs", "GB/s", "% of copy BW"):
        table.add_column(col)
    for c in result["copies"]:
        table.add_row(f"{c['bytes'] >> 20} MiB", str(c["sets"]), f"{c['median_us']:.2f}", f"{c['gbps']:.0f}",
                      f"{c['pct_of_copy_bw']:.1f}")
    out.print(table)
    out.print(f"empty kernel: {result['empty_graph_us']:.2f} µs/launch in a graph, "
              f"{result['empty_events_us']:.2f} µs timed alone with events")
    e = result.get("energy") or {}
    if e.get("skipped"):
        out.print(f"energy counter: not checked ({e['skipped']})")
    elif e:
        out.print(f"energy counter: updates every {e['period_s'] * 1e3:.0f} ms (jitter {e['jitter_s'] * 1e3:.0f} ms); "
                  f"copies: " + ", ".join(f"{c['bytes'] >> 20} MiB {c['energy_uj'] / 1e3:.2f} ± {c['energy_uj_err'] / 1e3:.2f} mJ"
                                          for c in e["copies"])
                  + f"; {e['nj_per_byte']:.3f} nJ per byte moved")
    ok = True
    for v in verdicts(result):
        ok &= v.ok
        sign = ">=" if v.unit == "%" else "<"
        out.print(f"[{'green' if v.ok else 'red'}]{'PASS' if v.ok else 'FAIL'}[/] {v.name}: {v.value:.2f} "
                  f"(needs {sign} {v.limit:g})")
    if out_file:
        out_file.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if not ok:
        raise typer.Exit(1)


@app.command()
def plot(results: Optional[List[Path]] = typer.Argument(None, help="results directories or rows.csv files "
                                                                   "(several GPUs plot side by side); default: "
                                                                   "the curated baselines under results/"),
         out_dir: Path = typer.Option(Path("results/plots"), "--out", "-o", help="where PNG/SVG and summary.md go"),
         baseline: str = typer.Option("torch", help="backend that speedups are relative to")) -> None:
    """Figures per phase (latency, speedup, % of copy bandwidth; MTP vs T; prefill throughput) and summary.md."""
    from gdnbench.outpaths import PLOT_CONFIGS, curated_runs
    from gdnbench.plots import plot_results

    if not results:
        results = curated_runs()
        if not results:
            raise fail(f"no run named and no curated baseline (results/<device>/<config>/rows.csv tracked by git, "
                       f"config one of {', '.join(PLOT_CONFIGS)}) to draw")
    notes: list[str] = []
    try:
        written = plot_results(results, out_dir, baseline=baseline, notes=notes)
    except (FileNotFoundError, ValueError) as e:
        raise fail(str(e)) from None
    for note in notes:
        err.print(f"note: {note}", markup=False)
    out.print(f"{len([p for p in written if p.suffix == '.png'])} figures (PNG + SVG) and summary.md in {out_dir}")


@app.command()
def compare(base: Path = typer.Argument(..., help="baseline results directory (or rows.csv)"),
            new: Path = typer.Argument(..., help="new results directory (or rows.csv)"),
            threshold: float = typer.Option(0.05, help="a slowdown beyond this fraction (and the noise) fails"),
            backend: Optional[List[str]] = BackendOpt,
            changed_only: bool = typer.Option(False, "--changed-only", help="list only rows that are not 'same'"),
            out_file: Optional[Path] = typer.Option(None, "--out", "-o", help="also write the Markdown here")) -> None:
    """Compare two runs row by row (noise-aware); exit 1 if any row is slower beyond --threshold or broke."""
    from gdnbench.compare import compare_runs, markdown

    from gdnbench.outpaths import check_out_file

    if not 0 < threshold < 1:
        raise fail(f"--threshold must be a fraction in (0, 1), got {threshold}")
    try:
        if out_file is not None:
            check_out_file(out_file, "--out")
        c = compare_runs([base], [new], threshold=threshold, backends=backend)
    except (FileNotFoundError, ValueError) as e:
        raise fail(str(e)) from None
    text = markdown(c, changed_only=changed_only)
    out.print(text, markup=False)
    for w in c.warnings:
        err.print(f"warning: {w}", markup=False)
    if out_file:
        out_file.write_text(text)
    if c.failed:
        raise typer.Exit(1)


@app.command()
def peers(runs: List[Path] = typer.Argument(..., help="results directories (or rows.csv)"),
          worst: int = typer.Option(15, help="list this many of the slowest cases per own backend"),
          strict: bool = typer.Option(False, "--strict", help="exit 1 if an own kernel is slower than the "
                                      "fastest peer beyond the noise in any case")) -> None:
    """Own kernels (triton, cute) against the fastest peer (FlashInfer, fla) in each case of one run:
    the ratio, judged against the two rows' noise as compare judges it."""
    from gdnbench.analysis import load_results
    from gdnbench.peers import own_vs_peers, report

    try:
        m = own_vs_peers(load_results(runs))
    except (FileNotFoundError, ValueError) as e:
        raise fail(str(e)) from None
    if m.empty:
        raise fail("no case has both an own kernel and a peer that passed the gate and were GPU-timed")
    out.print(report(m, worst), markup=False)
    if strict and m.slower.any():
        raise typer.Exit(1)


@app.command()
def targets(runs: List[Path] = typer.Argument(..., help="results directories (or rows.csv)"),
            targets_file: Optional[Path] = typer.Option(None, "--targets", help="targets file (default: "
                                                        "configs/targets/own-kernels.yaml)"),
            strict: bool = typer.Option(False, "--strict", help="exit 1 if a target is missed")) -> None:
    """Check runs against the own kernels' performance targets: per target and GPU the rows checked,
    how many miss, and the worst row with its value."""
    from gdnbench.analysis import load_results
    from gdnbench.targets import DEFAULT, check, load_targets, report

    try:
        res = check(load_results(runs), load_targets(targets_file or config_dir() / DEFAULT))
    except (ConfigError, FileNotFoundError, ValueError) as e:
        raise fail(str(e)) from None
    out.print(report(res), markup=False)
    if strict and (res.missed > 0).any():
        raise typer.Exit(1)


@app.command()
def trace(config: str = typer.Argument(..., help="config file or shipped name (e.g. trace-decode)"),
          case: Optional[List[str]] = CaseOpt, backend: Optional[List[str]] = BackendOpt,
          out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="results directory (default "
                                                 "results/<date>_<device>_<config>-trace)"),
          name: Optional[str] = typer.Option(None, help="trace file name (default: the config's name)"),
          nsys: Optional[str] = typer.Option(None, help="path to nsys (default: PATH)"),
          profiler: str = typer.Option("nsys", help="nsys | torch (Chrome trace via torch.profiler, no nsys)"),
          timing: Optional[str] = typer.Option(None, help="timing mode for the traced run (default: config)"),
          results_root: Path = RootOpt) -> None:
    """Re-run part of a sweep under Nsight Systems; write the .nsys-rep, kernels.csv, rows_nsys.csv and a
    timer-vs-kernel consistency report."""
    from gdnbench.outpaths import OutPathError, check_out_dir
    from gdnbench.outpaths import new_results_dir
    from gdnbench.trace import TraceError, run_nsys_trace, run_torch_trace

    if profiler not in ("nsys", "torch"):
        raise fail(f"--profiler: '{profiler}' is not one of nsys, torch")
    path = find_config(config)
    swp = load(config)
    _prepare_interpreter()
    directory = out_dir or new_results_dir(swp, results_root, suffix="-trace")
    try:
        check_out_dir(directory, "--out" if out_dir else "--results-root")
    except OutPathError as e:
        raise fail(str(e)) from None
    if (directory / "rows.csv").exists():
        raise fail(f"{directory} already holds rows.csv: give another --out")
    try:
        if profiler == "torch":
            files = run_torch_trace(path, directory, name or swp.name, case or [], backend or [], timing)
        else:
            files = run_nsys_trace(path, directory, name or swp.name, case or [], backend or [], nsys, timing)
    except TraceError as e:
        raise fail(str(e)) from None
    for label, p in files.items():
        if label != "child_exit":
            out.print(f"{label}: {p}")
    if "report" in files:
        out.print(files["report"].read_text(), markup=False)


@app.command()
def tune(config: Optional[str] = typer.Argument(None, help="config whose cases are tuned (default: decode)"),
         backend: Optional[str] = typer.Option(None, "--backend", "-b", help="triton | cute"),
         ship: bool = typer.Option(False, "--ship", help="write the table gdnbench ships "
                                   "(gdnbench/backends/<backend>/tables/) instead of the per-user one"),
         budget: Optional[float] = typer.Option(None, "--budget", help="stop after this many minutes, keeping "
                                                "what is measured (rerun to go on)"),
         case: Optional[List[str]] = CaseOpt, where: Optional[List[str]] = WhereOpt,
         fresh: bool = typer.Option(False, "--fresh", help="discard the measurements of an earlier run"),
         jobs: int = typer.Option(1, "--jobs", "-j", help="compile each class's candidates ahead in this many "
                                  "worker processes on the same GPU (Triton's cache); 1: as measured"),
         progress: bool = ProgressOpt) -> None:
    """Tune a backend's tiles for this GPU over a config's cases: gate and time every candidate tile, keep
    the fastest per case class, write this GPU's table (per-user under $GDNBENCH_CACHE, or --ship)."""
    from gdnbench.tune.session import BACKENDS, TuneError, TuneOptions, change_lines, reach_lines, run_tune

    if backend not in BACKENDS:
        raise fail(f"--backend: {'give one' if backend is None else repr(backend) + ' is not one'} of "
                   f"{', '.join(BACKENDS)}")
    whole = load(config or "decode")  # the cases the new entries may reach
    try:
        swp = narrowed(whole, where, find_config(config or "decode"))
    except ConfigError as e:
        raise fail(str(e)) from None
    opts = TuneOptions(backend=backend, ship=ship, budget_min=budget, case_ids=case, fresh=fresh, jobs=jobs,
                       progress=progress)
    try:
        with sigterm_as_interrupt():
            s = run_tune(swp, opts, log=lambda line: err.print(line, markup=False),
                         whole=whole if where else None)
    except TuneError as e:
        raise fail(str(e)) from None
    except KeyboardInterrupt as e:
        raise stopped(e, "the measured candidates are kept, and any class that finished is in this GPU's "
                      "table; rerun the same command to go on") from None
    for note in s.notes:
        out.print(f"note: {note}", markup=False)
    out.print(f"{s.classes_done} of {s.classes_total} case classes tuned; {s.measured} candidates measured now, "
              f"{s.left} left")
    if s.stopped:
        out.print(f"budget spent: {s.left} candidates left over {s.classes_total - s.classes_done} case classes; "
                  "rerun the same command to go on", markup=False)
    out.print(f"table: {s.table} ({s.entries} entries)" if s.table else "table: not written (no class finished)",
              markup=False)
    for line in change_lines(s.changes):
        out.print(line, markup=False)
    for line in reach_lines(s.reached, config or "decode", backend, ship):
        out.print(line, markup=False)
    out.print(f"measurements: {s.csv} (state: {s.state})", markup=False)


@app.command("gpu-check")
def gpu_check(out_dir: Path = typer.Option(Path("gpu-check"), "--out", "-o", help="where the summary and each "
                                           "step's output go"),
              baseline: Optional[Path] = typer.Option(None, help="roofline baseline run (default: the committed "
                                                      "roofline-decode run of this GPU under results/)"),
              step: Optional[List[str]] = typer.Option(None, "--step", "-s", help="run only these steps "
                                                       "(tests, calibrate, trace, roofline)")) -> None:
    """The GPU acceptance check: GPU tests, calibrate, a short nsys trace, a short roofline vs the baseline."""
    import torch

    from gdnbench.gpucheck import STEPS, run_gpu_check

    if not torch.cuda.is_available():
        raise fail("gpu-check runs the GPU features; this machine has no CUDA GPU")
    unknown = [s for s in step or [] if s not in STEPS]
    if unknown:
        raise fail(f"--step: {', '.join(unknown)} not among {', '.join(STEPS)}")
    if baseline is not None and not (baseline / "rows.csv").exists():
        raise fail(f"--baseline: {baseline} holds no rows.csv")
    ok = run_gpu_check(out_dir, baseline, step or STEPS, echo=lambda t: out.print(t, markup=False))
    if not ok:
        raise typer.Exit(1)


@app.command()
def env() -> None:
    """Print the provenance recorded in every run's env.json."""
    import json

    from gdnbench.env import collect_env

    out.print_json(json.dumps(collect_env(), default=str))


def main() -> None:  # pragma: no cover - console entry for python -m
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
