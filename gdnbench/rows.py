"""Rows: the tidy CSV schema (one row per case x backend) and its incremental writer.

Columns are the fields of :class:`Row`, in order; units are in the names (``_us``, ``_ms``,
``_gbps``...). Every row carries ``schema_version``. Rows are appended and flushed one at a time, so
a crash or Ctrl-C loses no finished row, and ``--resume`` skips the (case_id, backend) pairs already
in the file. Raw timing samples go to a sidecar, ``samples.csv`` (case_id, backend, sample, time_us,
gpu_uuid). Only one process writes a run's files: the sweep's driver (also under ``--gpus`` /
``--cluster``, where workers send their rows back to it).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

SCHEMA_VERSION = 2
# Versions whose files still load (each later version only added columns; missing ones read as empty).
READABLE_SCHEMAS = (1, 2)
STATUSES = ("ok", "skipped", "failed", "error")


@dataclass
class Row:
    schema_version: int = SCHEMA_VERSION
    run_id: str = ""
    case_id: str = ""
    # case key columns (gdnbench.cases.Case)
    phase: str = ""
    model: str = ""
    batch: int | None = None
    hk: int | None = None
    hv: int | None = None
    head_dim_k: int | None = None
    head_dim_v: int | None = None
    layout: str = ""
    state_dtype: str = ""
    dtype: str = ""
    tokens: int | None = None
    seq_lens: str = ""
    pool: str = ""
    n_padded: int | None = None
    write_back: bool | None = None
    intermediate: bool | None = None
    tree: bool | None = None
    seed: int | None = None
    # backend
    backend: str = ""
    backend_version: str = ""
    kernel: str = ""
    padding: str = ""
    # outcome
    status: str = ""            # ok | skipped | failed | error
    reason: str = ""            # why skipped / failed / error
    check: str = ""             # pass | fail | "" (not checked)
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    rms_rel_err: float | None = None
    state_rms_rel_err: float | None = None  # worst over the state and intermediate states
    check_margin: float | None = None  # worst error / tolerance over every compared tensor (< 1 passes)
    kernels: str = ""           # GPU kernels one launch ran, with counts ("" on a CPU)
    sanitizer: str = ""         # check --sanitize: clean | "<n> errors: <first>" | "" (not run)
    # timing (empty unless status == ok)
    timing_mode: str = ""       # cpu | graph | events
    first_call_ms: float | None = None
    median_us: float | None = None
    iqr_us: float | None = None
    p10_us: float | None = None
    p90_us: float | None = None
    min_us: float | None = None
    mean_us: float | None = None
    cv: float | None = None
    rel_noise: float | None = None
    n_samples: int | None = None
    launches_per_sample: int | None = None
    input_sets: int | None = None
    converged: bool | None = None
    # declared work and derived throughput
    bytes: int | None = None
    flops: int | None = None
    gbps: float | None = None
    pct_peak_bw: float | None = None
    tflops: float | None = None
    # machine and conditions
    device: str = ""
    gpu: str = ""
    sm: str = ""
    sm_clock_mhz: float | None = None
    temp_c: float | None = None
    throttled: bool | None = None
    throttle_reasons: str = ""
    # energy (sweep --energy, GPU with NVML's total-energy counter; gdnbench.energy): per launch, over a
    # window of graph replays aligned to the counter's updates
    energy_uj: float | None = None      # GPU energy per launch (µJ), whole board, idle share included
    energy_uj_err: float | None = None  # its uncertainty (µJ): counter resolution and update-edge timing
    power_w: float | None = None        # average board power over the window (W)
    energy_window_s: float | None = None  # the window: from one counter update to a later one (s)
    # where exactly it ran (appended in the scale-out change; older version-2 files lack them): the host
    # name, and the GPU's UUID ("GPU-..."; "" on a CPU, "fake-<n>" for a test worker standing in for one)
    host: str = ""
    gpu_uuid: str = ""
    # gdnbench's own kernels (Backend.tile_info): the tile the case ran with and where it came from
    tile: str = ""              # e.g. "gluon_rows bv=4 warps=1 cache=2"; "" for other backends
    tile_source: str = ""       # tuned (a table of this GPU) | other-gpu | heuristic (gdnbench.backends.tables)


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Row))
SAMPLE_COLUMNS = ("case_id", "backend", "sample", "time_us", "gpu_uuid")


def _cell(v: object) -> object:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def _open_csv(path: Path, columns: tuple[str, ...]) -> None:
    """Start ``path`` with its header, or check that an existing file has exactly ``columns``."""
    if path.exists() and path.stat().st_size > 0:
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if tuple(header) != columns:
            raise ValueError(f"{path}: written with another schema; cannot append (start a new run)")
    else:
        with path.open("w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerow(columns)


class RowWriter:
    """Appends rows to ``rows.csv`` (and samples to ``samples.csv``) in ``directory``, flushing each."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "rows.csv"
        self.samples_path = self.dir / "samples.csv"
        _open_csv(self.path, COLUMNS)
        _open_csv(self.samples_path, SAMPLE_COLUMNS)

    def done(self) -> set[tuple[str, str]]:
        """(case_id, backend) pairs already written (for --resume)."""
        return {(k[0], k[1]) for k in self.done_on()}

    def done_on(self) -> set[tuple[str, str, str, str]]:
        """(case_id, backend, gpu, sm) of the rows already written: a run over several GPU models runs
        every pair once per model (gdnbench.distributed), so its --resume keys on the model too."""
        with self.path.open(newline="") as f:
            return {(r["case_id"], r["backend"], r.get("gpu") or "", r.get("sm") or "")
                    for r in csv.DictReader(f) if r.get("status") in STATUSES}

    def prune_samples(self, keep: set[tuple[str, str]] | None = None) -> None:
        """Drop samples of rows that never got written (a run killed between the two writes): a sample
        is kept when a written row has its case, backend and GPU UUID (``keep``: (case_id, backend)
        pairs, whichever GPU, for callers that know no more)."""
        with self.path.open(newline="") as f:
            written = {(r["case_id"], r["backend"], r.get("gpu_uuid") or "")
                       for r in csv.DictReader(f) if r.get("status") in STATUSES}
        with self.samples_path.open(newline="") as f:
            rows = [r for r in csv.reader(f)][1:]
        kept = [r for r in rows if (r[0], r[1], r[4] if len(r) > 4 else "") in written
                and (keep is None or (r[0], r[1]) in keep)]
        if len(kept) != len(rows):
            with self.samples_path.open("w", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(SAMPLE_COLUMNS)
                w.writerows(kept)

    def write(self, row: Row, samples_us: Iterable[float] = ()) -> None:
        if samples_us:
            with self.samples_path.open("a", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                for i, t in enumerate(samples_us):
                    w.writerow((row.case_id, row.backend, i, f"{t:.6g}", row.gpu_uuid))
                f.flush()
        with self.path.open("a", newline="") as f:
            csv.writer(f, lineterminator="\n").writerow([_cell(getattr(row, c)) for c in COLUMNS])
            f.flush()
            os.fsync(f.fileno())


def row_from_csv(cells: dict[str, str]) -> Row:
    """A Row from a CSV record (types restored from the field annotations; empty cells -> defaults)."""
    kw: dict[str, object] = {}
    for f in dataclasses.fields(Row):
        v = cells.get(f.name, "")
        if v == "":
            continue
        ann = str(f.type)
        if ann.startswith("bool"):
            kw[f.name] = v == "True"
        elif ann.startswith("int"):
            kw[f.name] = int(float(v))
        elif ann.startswith("float"):
            kw[f.name] = float(v)
        else:
            kw[f.name] = v
    return Row(**kw)


def read_rows(path: Path) -> list[dict[str, str]]:
    """rows.csv as a list of dicts of strings (no pandas needed)."""
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))
