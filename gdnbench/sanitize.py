"""``gdnbench check --sanitize``: the correctness gate again, under compute-sanitizer memcheck.

Each (case, backend) runs in its own child process (``gdnbench check --case ID --backend NAME``)
under ``compute-sanitizer --tool memcheck``, so every memory error is attributed to one row. The
row written to the parent run carries the child's gate verdict plus a ``sanitizer`` column:
``clean`` or ``<n> errors: <first error>``; a row the sanitizer flags is marked failed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from gdnbench.backends import get_backend
from gdnbench.backends.base import current_target
from gdnbench.cases import expand
from gdnbench.config import Sweep
from gdnbench.kernels import RECORD_ENV
from gdnbench.rows import Row, RowWriter, read_rows, row_from_csv
from gdnbench.runner import RunError, RunOptions, RunSummary, case_row, prepare_run, write_provenance

SUMMARY = re.compile(r"ERROR SUMMARY: (\d+) error")
FIRST_ERROR = re.compile(r"^=+ (Invalid .*|Program hit .*|.*out of bounds.*|Error: .*)$", re.MULTILINE)


def find_sanitizer(explicit: str | None = None) -> str:
    path = explicit or shutil.which("compute-sanitizer")
    if not path:
        cands = sorted(Path("/usr/local/cuda/bin").glob("compute-sanitizer")) + sorted(
            Path("/opt/nvidia").glob("**/compute-sanitizer"))
        path = str(cands[0]) if cands else None
    if not path:
        raise RunError("compute-sanitizer not found (put it on the PATH or pass --sanitizer PATH)")
    return path


def parse_log(text: str) -> tuple[int, str]:
    """(error count, first error line) from a memcheck log."""
    m = SUMMARY.search(text)
    n = int(m.group(1)) if m else -1
    first = FIRST_ERROR.search(text)
    return n, (first.group(1).strip() if first else "")


def sanitize_sweep(sweep: Sweep, config_path: Path, opts: RunOptions, sanitizer: str | None = None,
                   on_row=None) -> RunSummary:
    tool = find_sanitizer(sanitizer)
    sweep, target, cases, backends, directory = prepare_run(sweep, opts)
    writer = RowWriter(directory)
    done = writer.done() if opts.resume else set()
    write_provenance(directory, sweep, {"config_name": sweep.name, "sanitizer": tool})
    logs = directory / "sanitizer"
    logs.mkdir(exist_ok=True)
    summary = RunSummary(directory=directory, cases=len(cases))
    # compute-sanitizer holds CUPTI: the child's gate does not profile its launches (gdnbench.kernels)
    env = {**os.environ, "GDNBENCH_NO_PROFILER_RANGE": "1", RECORD_ENV: "0"}
    for case in cases:
        for backend in backends:
            if (case.id, backend.name) in done:
                continue
            reason = backend.supports(case, target)
            if reason:
                row = case_row(directory.name, case, backend, target)
                row.status, row.reason = "skipped", reason
            else:
                row = _run_child(tool, config_path, case.id, backend.name, directory, logs, env, target)
            writer.write(row)
            summary.counts[row.status] = summary.counts.get(row.status, 0) + 1
            if on_row:
                on_row(row)
    return summary


def memcheck_command(tool: str, log: Path, config: Path, case_id: str, backend: str, out: Path) -> list[str]:
    """The child command for one row. API errors are not reported: CUDA libraries probe the driver
    (e.g. cuGetProcAddress for optional symbols) and those failed lookups are not memory errors."""
    return [tool, "--tool", "memcheck", "--report-api-errors", "no", "--log-file", str(log), "--print-limit", "20",
            sys.executable, "-m", "gdnbench", "check", str(config), "--case", case_id, "--backend", backend,
            "--out", str(out), "--no-progress"]


def _run_child(tool: str, config: Path, case_id: str, backend: str, directory: Path, logs: Path, env: dict,
               target) -> Row:
    log = logs / f"{case_id}__{backend}.log"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = memcheck_command(tool, log, config, case_id, backend, Path(tmp) / "run")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        child_rows = read_rows(Path(tmp) / "run" / "rows.csv") if (Path(tmp) / "run" / "rows.csv").exists() else []
    match = [r for r in child_rows if r["case_id"] == case_id and r["backend"] == backend]
    n, first = parse_log(log.read_text() if log.exists() else "")
    if match:
        row = row_from_csv(match[0])
    else:
        case = next(c for c in expand_sweep_case(config, case_id))
        row = case_row(directory.name, case, get_backend(backend), target)
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        row.status, row.reason = "error", f"child exited {proc.returncode}: {tail[0]}"[:500]
    row.run_id = directory.name
    if n < 0:
        row.sanitizer = "no memcheck summary (see sanitizer/ log)"
    elif n == 0:
        row.sanitizer = "clean"
    else:
        row.sanitizer = f"{n} errors: {first}"[:300]
        if row.status in ("ok", ""):
            row.status, row.reason = "failed", f"compute-sanitizer memcheck: {row.sanitizer}"
    return row


def expand_sweep_case(config: Path, case_id: str):
    from gdnbench.config import load_sweep

    sweep = load_sweep(config).for_sm(current_target().sm)
    return (c for c in expand(sweep).cases if c.id == case_id)
