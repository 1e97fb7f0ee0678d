"""``gdnbench gpu-check`` (``make gpu-check``): the GPU acceptance check that every change passes.

CI runs on CPUs only, so nothing there sees a GPU feature regress (a trace that no longer agrees with
the timer, a kernel that got slower, a library that now dispatches elsewhere). This check runs the
GPU features end to end on the GPU in hand, each step in its own child process (a crash is a failed
step with its output kept, never a lost summary):

1. ``tests``: the GPU tests (``pytest -m gpu``): every backend through the two-launch gate at real
   head sizes and the shapes only a wrong kernel gets wrong, CUDA-graph timing; the tests that assert
   a time run alone, the others in parallel (pytest-xdist) to stay within the check's minutes;
2. ``calibrate``: the timer against work of known cost (copy bandwidth, graph-timed copies, empty
   kernel), ``gdnbench calibrate``'s own verdicts;
3. ``trace``: ``gdnbench trace`` of a few decode rows of two backends under Nsight Systems; passes
   when at least ``TRACE_MIN_AGREEMENT`` of the rows of 10 µs or more have a kernel time within 5% of
   the timer's latency;
4. ``roofline``: a short roofline sweep (a subset of ``configs/roofline-decode.yaml``) compared with
   the committed baseline of this GPU by ``gdnbench compare``: fails on a row slower beyond the noise
   and 5%, or a row that broke.

It writes ``gpu-check.md`` (the summary, also printed) and each step's output and results under the
output directory, and exits 0 only when every step passed. A step first removes what an earlier
check left under its own names there (``STEP_OUTPUTS``): a rerun into the same folder measures
again instead of failing on a run folder that exists, or passing on the files of the last check.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from gdnbench.outpaths import curated_run

TRACE_MIN_AGREEMENT = 0.9
TRACE_ARGS = ("trace-decode", "-b", "triton", "-b", "flashinfer", "-c", "decode-b32-", "-c", "decode-b512-")
ROOFLINE_CONFIG = "roofline-decode"
# B = 1 (latency), 16 (the thinnest bandwidth margin) and 64 (bandwidth-bound), TP1 and TP4 heads
ROOFLINE_ARGS = ("-b", "triton", "-b", "flashinfer", "-b", "cute", "-c", "decode-b1-", "-c", "decode-b16-",
                 "-c", "decode-b64-")
STEPS = ("tests", "calibrate", "trace", "roofline")
# what each step writes under the output folder, removed before it runs
STEP_OUTPUTS = {"tests": ("tests.log", "tests-timing.log"), "calibrate": ("calibrate.json", "calibrate.log"),
                "trace": ("trace", "trace.log"), "roofline": ("roofline", "roofline.log", "compare.md")}
TESTS_TIMEOUT_S = 360
TESTS_WORKERS = 8


@dataclass
class Step:
    name: str
    ok: bool
    summary: str
    seconds: float
    details: list[str] = field(default_factory=list)


def find_baseline(config: str, slug: str, root: Path = Path("results")) -> Path | None:
    """The committed run of ``config`` on this kind of GPU: ``root/<slug>/<config>`` if it holds rows,
    else the newest run under ``root`` (two levels deep) whose env.json names this config and GPU."""
    direct = curated_run(config, slug, root)
    if (direct / "rows.csv").exists():
        return direct
    found = []
    for env in list(root.glob("*/env.json")) + list(root.glob("*/*/env.json")):
        try:
            meta = json.loads(env.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("config_name") == config and slug in env.parent.as_posix() and (env.parent / "rows.csv").exists():
            found.append((str(meta.get("timestamp", "")), env.parent))
    return max(found)[1] if found else None


def run_child(args: Sequence[str], log: Path, timeout_s: float) -> tuple[int, str]:
    """Run ``python -m ...`` args, tee its output into ``log``; (exit code, last lines of output)."""
    try:
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout_s)
        text, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        text = f"{e.stdout or ''}{e.stderr or ''}\n(timed out after {timeout_s:.0f} s)"
        code = 124
    log.write_text(text)
    return code, "\n".join(text.strip().splitlines()[-3:])


def clear_outputs(out: Path, step: str) -> None:
    """Remove what an earlier check's ``step`` left in ``out`` (its files and run folders only)."""
    for name in STEP_OUTPUTS[step]:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def pytest_counts(text: str) -> str:
    """pytest's closing line ("467 passed, 204 skipped in 210s") from its output (plugins' warnings on
    stderr may come after it)."""
    lines = [line.strip("= ") for line in text.splitlines()
             if re.search(r"\b\d+ (passed|failed|errors?|skipped|deselected)\b.* in [\d.]+s", line)]
    return lines[-1] if lines else text.strip().splitlines()[-1] if text.strip() else "no output"


def xdist_workers() -> int:
    """Worker processes for the GPU tests that assert no time (0: run serially, no pytest-xdist)."""
    import importlib.util
    import os

    if importlib.util.find_spec("xdist") is None:
        return 0
    return max(0, min(TESTS_WORKERS, (os.cpu_count() or 2) // 2))


def step_tests(out: Path) -> Step:
    """The GPU tests. Those marked ``timing`` run alone; the others (gates, captures: bound by
    compiling) run in parallel processes when pytest-xdist is there, which they share the GPU for
    without harm. The real-nsys test is left to ``make gpu-test``: the trace step checks the same."""
    t0 = time.time()
    base = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", "--ignore=tests/test_gpu_trace.py"]
    workers = xdist_workers()
    runs = [(["-m", "gpu and timing"], "tests-timing.log"),
            (["-m", "gpu and not timing", "-n", str(workers)], "tests.log")] if workers else [(["-m", "gpu"],
                                                                                            "tests.log")]
    ok, counts = True, []
    for extra, log in runs:
        left = TESTS_TIMEOUT_S - (time.time() - t0)
        if left < 10:  # not a 1-second child that fails for want of time
            ok, counts = False, counts + [f"{' '.join(extra[:2])}: not run, the step's {TESTS_TIMEOUT_S} s were used up"]
            continue
        code, _ = run_child([*base, *extra], out / log, left)
        ok, counts = ok and code == 0, counts + [pytest_counts((out / log).read_text())]
    how = f" ({workers} workers beside the timing tests)" if workers else ""
    return Step("tests", ok, "; ".join(counts) + how, time.time() - t0)


def step_calibrate(out: Path) -> Step:
    t0 = time.time()
    code, tail = run_child(["-m", "gdnbench", "calibrate", "-o", str(out / "calibrate.json")], out / "calibrate.log",
                           180)
    details = []
    summary = tail.splitlines()[-1] if tail else "no output"
    if (out / "calibrate.json").exists():
        from gdnbench.calibrate import verdicts

        result = json.loads((out / "calibrate.json").read_text())
        details = [f"{'ok' if v.ok else 'FAIL'}: {v.name} = {v.value:.2f} {v.unit} (limit {v.limit:g})"
                   for v in verdicts(result)]
        roof = result.get("roofline", {})
        summary = f"copy bandwidth {roof.get('copy_gbps', float('nan')):.0f} GB/s; " + "; ".join(
            d.split(": ", 1)[1] for d in details)
    return Step("calibrate", code == 0, summary, time.time() - t0, details)


def step_trace(out: Path) -> Step:
    t0 = time.time()
    directory = out / "trace"
    code, tail = run_child(["-m", "gdnbench", "trace", *TRACE_ARGS, "--out", str(directory)], out / "trace.log",
                           300)
    rows = directory / "rows_nsys.csv"
    if code != 0 or not rows.exists():
        what = f"trace exit {code}" if code != 0 else "no rows_nsys.csv"
        return Step("trace", False, f"{what}: {tail.splitlines()[-1] if tail else ''}", time.time() - t0)
    import pandas as pd

    from gdnbench.trace import agreement

    a = agreement(pd.read_csv(rows))
    ok = a.rows > 0 and a.fraction >= TRACE_MIN_AGREEMENT
    return Step("trace", ok, f"{a} (needs {TRACE_MIN_AGREEMENT:.0%})", time.time() - t0)


def step_roofline(out: Path, baseline: Path | None) -> Step:
    t0 = time.time()
    if baseline is None:
        return Step("roofline", False, f"no committed {ROOFLINE_CONFIG} baseline for this GPU under results/",
                    time.time() - t0)
    directory = out / "roofline"
    code, tail = run_child(["-m", "gdnbench", "sweep", ROOFLINE_CONFIG, *ROOFLINE_ARGS, "--out", str(directory),
                            "--no-progress"], out / "roofline.log", 300)
    if code != 0:
        return Step("roofline", False, f"sweep exit {code}: {tail.splitlines()[-1] if tail else ''}", time.time() - t0)
    from gdnbench.compare import compare_runs, markdown as compare_markdown

    try:
        c = compare_runs([baseline], [directory])
    except (FileNotFoundError, ValueError) as e:  # what `gdnbench compare` reports as exit 2
        return Step("roofline", False, f"compare: {e}", time.time() - t0)
    (out / "compare.md").write_text(compare_markdown(c, changed_only=True))
    counts = ", ".join(f"{n} {v}" for v, n in sorted(c.counts.items()))
    geo = c.table.ratio.prod() ** (1 / len(c.table)) if len(c.table) else float("nan")
    summary = f"{len(c.table)} rows vs {baseline}: {counts or 'none matched'}; geometric mean ratio {geo:.3f}"
    return Step("roofline", not c.failed and len(c.table) > 0, summary, time.time() - t0)


def markdown(steps: list[Step], env: dict) -> str:
    ok = all(s.ok for s in steps)
    lines = [f"# gdnbench gpu-check: {'PASS' if ok else 'FAIL'}", "",
             f"- GPU: {env.get('gpu_name', '?')} ({env.get('sm', '?')}), driver {env.get('driver', '?')}",
             f"- commit: {env.get('git_sha') or '? (no git here)'}{' (dirty)' if env.get('git_dirty') else ''}, "
             f"source digest {str(env.get('source_sha256', '?'))[:12]}",
             "- software: " + ", ".join(f"{k} {v}" for k, v in sorted(env.get("versions", {}).items()) if v),
             f"- total: {sum(s.seconds for s in steps):.0f} s", "",
             "| step | result | seconds | summary |", "|---|---|---:|---|"]
    for s in steps:
        lines.append(f"| {s.name} | {'pass' if s.ok else 'FAIL'} | {s.seconds:.0f} | {s.summary} |")
    for s in steps:
        if s.details:
            lines += ["", f"{s.name}:"] + [f"- {d}" for d in s.details]
    return "\n".join(lines) + "\n"


def run_gpu_check(out: Path, baseline: Path | None, steps: Sequence[str] = STEPS,
                  echo: Callable[[str], None] = print) -> bool:
    from gdnbench.env import collect_env, device_slug

    out.mkdir(parents=True, exist_ok=True)
    if baseline is None:
        baseline = find_baseline(ROOFLINE_CONFIG, device_slug())
    runners: dict[str, Callable[[], Step]] = {
        "tests": lambda: step_tests(out), "calibrate": lambda: step_calibrate(out),
        "trace": lambda: step_trace(out), "roofline": lambda: step_roofline(out, baseline)}
    env = collect_env()
    done = []
    (out / "gpu-check.md").unlink(missing_ok=True)
    for name in steps:  # the summary is rewritten after every step: a killed check still leaves one
        clear_outputs(out, name)
        step = runners[name]()
        echo(f"gpu-check {name}: {'pass' if step.ok else 'FAIL'} ({step.seconds:.0f} s) {step.summary}")
        done.append(step)
        (out / "gpu-check.md").write_text(markdown(done, env))
    echo((out / "gpu-check.md").read_text())
    return all(s.ok for s in done)
