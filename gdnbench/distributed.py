"""Scale-out sweeps: ``gdnbench sweep CONFIG --gpus all|N|0,2`` on one host, ``--cluster auto|ADDRESS``
on a running Ray cluster.

One Ray actor per GPU (``num_gpus=1``: Ray gives it exactly one device through CUDA_VISIBLE_DEVICES)
runs (case, backend) pairs start to end with :func:`gdnbench.runner.run_pair`, the steps a local
sweep runs: the gate and the timing of a pair happen on that one GPU. The driver (the ``gdnbench``
process) hands each idle worker its next pair, waits on the results with ``ray.wait`` and is the only
writer of the run directory: rows and samples are appended by :class:`gdnbench.rows.RowWriter` as they
arrive, so ``rows.csv`` is never written by two processes and ``--resume`` works as for a local sweep.

* GPU models: workers are grouped by GPU model (name and SM); every group runs every pair of the
  config (resolved for its SM generation), sharded over its workers. A run over H100s and A100s thus
  holds a complete sweep per model, and plots / ``compare`` keep each model apart (``gpu_label``).
  ``--resume`` keys on (case, backend, GPU model).
* Per worker: compiled-kernel caches of its own (``TRITON_CACHE_DIR``, ``GDNBENCH_CACHE`` subfolders
  keyed by host and GPU index), so no two workers compile into one cache at once; the copy bandwidth
  (% of peak) measured on its own GPU (every worker's figure is in env.json ``workers``); tile tables
  looked up for its own GPU (gdnbench.backends.tables).
* Faults: actors restart (``max_restarts=-1``). A pair whose worker died under it (kill -9, out of
  memory, a GPU error that leaves the CUDA context unusable: the driver then restarts that worker with
  ``ray.kill``) is retried once, on another worker of its group where there is one; lost a second
  time, it is written as an ``error`` row with the reason. Ctrl-C or a driver crash loses only rows
  in flight; ``--resume`` runs exactly the pairs rows.csv lacks.

CPU tests stand workers in for GPUs: ``GDNBENCH_FAKE_GPUS=N`` starts a local cluster with a custom
resource ``fake_gpu: N`` and the workers request that instead of ``num_gpus``. ``GDNBENCH_FAULT``
(``kill-once|CASE_ID|BACKEND|MARKER_FILE`` or ``kill-always|CASE_ID|BACKEND``) makes a worker SIGKILL
itself when it starts that pair: the fault-tolerance tests use it.

Ray is an optional extra (``pip install -e ".[cluster]"``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gdnbench.backends import get_backend
from gdnbench.backends.base import Backend, Target
from gdnbench.cases import Case
from gdnbench.config import Sweep
from gdnbench.rows import Row, RowWriter
from gdnbench.runner import (CaseInputs, Instruments, RunError, RunOptions, RunSummary, case_row, energy_off, instruments,
                             one_line, resolve_timing_mode, run_counts, run_directory, run_pair, select_pairs,
                             untuned_note, write_provenance)
from gdnbench.timer import TIMER_REVISION

RAY_VERSION = "2.60.0"
INSTALL_HINT = (f'--gpus / --cluster need Ray: pip install -e ".[cluster]" (or pip install "ray[default]=={RAY_VERSION}")')
FAKE_GPUS_ENV = "GDNBENCH_FAKE_GPUS"
FAULT_ENV = "GDNBENCH_FAULT"
FAKE_RESOURCE = "fake_gpu"
#: How long the driver waits for any worker to answer (a pair's result, or a lost worker back) before it
#: gives up with the rows written so far: far longer than a pair or a restart takes.
RESTART_WAIT_S = 1800.0


@dataclass(frozen=True)
class ClusterSpec:
    """Where a scale-out sweep runs: ``gpus`` "all" | "N" | "0,2,..." (ids only on a local cluster);
    ``cluster`` None (a local cluster started for this run) | "auto" | an address."""

    gpus: str | None = "all"
    cluster: str | None = None
    fake_gpus: int = 0

    @classmethod
    def from_options(cls, gpus: str | None, cluster: str | None) -> "ClusterSpec":
        fake = os.environ.get(FAKE_GPUS_ENV, "")
        return cls(gpus=gpus or "all", cluster=cluster, fake_gpus=int(fake) if fake.isdigit() else 0)

    def parsed(self) -> tuple[int | None, list[int] | None]:
        """(count or None for all, device ids or None)."""
        text = (self.gpus or "all").strip()
        if text == "all":
            return None, None
        if text.isdigit():
            if int(text) < 1:
                raise RunError(f"--gpus {text}: give all, a count >= 1 or device ids like 0,2")
            return int(text), None
        try:
            ids = [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise RunError(f"--gpus {text}: not all, a count or comma-separated device ids (0,2,...)") from None
        if not ids or len(set(ids)) != len(ids) or min(ids) < 0:
            raise RunError(f"--gpus {text}: device ids must be distinct integers >= 0")
        if self.cluster:
            raise RunError(f"--gpus {text}: device ids choose GPUs of this host; with --cluster give a count or all")
        return len(ids), ids


def import_ray():
    try:
        import ray
    except ImportError:
        raise RunError(INSTALL_HINT) from None
    return ray


# ---- the worker (one per GPU) ----------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs to run a group's pairs (sent once through the object store)."""

    sweep: Sweep
    mode: str
    check_only: bool = False
    energy: bool = False
    cases: tuple[Case, ...] = ()     # the group's selected cases and backends, for the untuned-tile note
    backends: tuple[str, ...] = ()


def private_caches(key: str) -> dict[str, str]:
    """Give this process compiled-kernel caches of its own (Triton's and gdnbench's CuTe cache), as
    subfolders of the usual ones named by ``key`` (host and GPU index): set before anything compiles.
    The per-user tile tables (``$GDNBENCH_CACHE/tables``) stay where a plain sweep finds them."""
    from gdnbench.backends.base import cache_root

    triton = Path(os.environ.get("TRITON_CACHE_DIR") or Path.home() / ".triton" / "cache")
    dirs = {"GDNBENCH_KERNEL_CACHE": str(cache_root() / "workers" / key),
            "TRITON_CACHE_DIR": str(triton / f"gdnbench-{key}")}
    os.environ.update(dirs)
    return dirs


def _fault(spec: str | None, case: Case, backend: str) -> None:
    """Test hook (GDNBENCH_FAULT): SIGKILL this worker when it starts the named pair."""
    if not spec:
        return
    kind, case_id, name, *rest = spec.split("|") + ["", "", ""]
    if case.id != case_id or backend != name:
        return
    if kind == "kill-once":
        marker = Path(rest[0])
        if marker.exists():
            return
        marker.write_text(str(os.getpid()))
    elif kind != "kill-always":
        return
    os.kill(os.getpid(), signal.SIGKILL)


class PairWorker:
    """A Ray actor on one GPU (or a stand-in): runs pairs with run_pair and returns their rows."""

    def __init__(self, slot: int, fake: bool, fault: str | None = None) -> None:
        import socket

        self.fake, self.fault = fake, fault
        if fake:
            os.environ["GDNBENCH_FAKE_GPU_UUID"] = f"fake-{slot}"
            index = f"fake{slot}"
        else:
            import ray

            index = f"gpu{','.join(str(i) for i in ray.get_gpu_ids())}"
        self.caches = private_caches(f"{socket.gethostname()}-{index}")
        self.index = index
        self.config: WorkerConfig | None = None
        self.state: Instruments | None = None
        self.inputs: CaseInputs | None = None  # the last case's gate inputs and reference, for its next pair

    def describe(self) -> dict:
        import torch

        from gdnbench.backends.base import current_target
        from gdnbench.env import device_slug, gpu_uuid, host_name

        if not torch.cuda.is_available():
            os.environ.setdefault("TRITON_INTERPRET", "1")
        elif torch.cuda.device_count() != 1:
            raise RuntimeError(f"this worker sees {torch.cuda.device_count()} GPUs; Ray should pin it to one")
        t = current_target()
        return {"host": host_name(), "gpu": t.name if t.device == "cuda" else "", "sm": t.sm,
                "device": t.device, "device_slug": device_slug(), "gpu_uuid": gpu_uuid(), "index": self.index,
                "pid": os.getpid(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "caches": self.caches}

    def setup(self, config: WorkerConfig) -> dict:
        """Prepare to run a group's pairs: the timer, this GPU's copy bandwidth, the energy pass."""
        from gdnbench.backends.base import current_target

        target = current_target()
        tools = instruments(config.sweep, config.mode, target, config.check_only, config.energy)
        self.config = config
        self.state = tools
        if self.inputs is not None:
            self.inputs.release()
        self.inputs = CaseInputs("cuda" if target.device == "cuda" else "cpu")
        return {"roofline": tools.roofline, "energy_note": tools.energy_note,
                "untuned_note": self.untuned(config, target)}

    @staticmethod
    def untuned(config: WorkerConfig, target: Target) -> str:
        """The runner's untuned-tile note, read where the tile tables of this GPU are (the worker)."""
        return untuned_note(config.sweep, list(config.cases), [get_backend(n) for n in config.backends],
                            target) or ""

    def run(self, case: Case, backend_name: str, run_id: str, config: WorkerConfig) -> tuple[Row, list[float], str]:
        """One pair: (row, samples, fatal) where ``fatal`` says why this worker's CUDA context is gone."""
        from gdnbench.backends.base import current_target

        if self.state is None or self.config != config:  # a restarted worker sets itself up again
            self.setup(config)
        assert self.state is not None
        _fault(self.fault, case, backend_name)
        tools = self.state
        backend = get_backend(backend_name)
        target = current_target()
        try:
            row, samples = run_pair(case, backend, run_id, target, tools.measure, tools.peak_gbps, tools.energy,
                                    self.inputs)
        except RunError as e:  # the CUDA context is unusable: the driver restarts this worker
            row = case_row(run_id, case, backend, target)
            row.status, row.reason = "error", str(e)
            return row, [], str(e)
        return row, samples, ""


# ---- the driver -------------------------------------------------------------------------------------

@dataclass
class Task:
    case: Case
    backend: Backend
    group: int
    attempt: int = 0
    avoid: int | None = None    # the worker this pair was lost on (retried elsewhere if possible)
    lost: str = ""
    lost_on: list[str] = field(default_factory=list)


@dataclass
class Group:
    """The workers of one GPU model, its sweep and its pending pairs."""

    target: Target
    key: tuple[str, str]        # (gpu, sm) as rows write them
    workers: list[int] = field(default_factory=list)
    queue: deque = field(default_factory=deque)
    config: Any = None          # ObjectRef of its WorkerConfig


def connect(ray, spec: ClusterSpec) -> bool:
    """Connect to (or start) the Ray cluster; True when this call started it (and must shut it down)."""
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False, "configure_logging": True}
    count, ids = spec.parsed()
    before = signal.getsignal(signal.SIGTERM)
    try:
        if spec.cluster:
            ray.init(address=spec.cluster, **kw)
            keep_sigterm_handler(before)
            return True
        if ids is not None:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            devices = visible.split(",") if visible else [str(i) for i in range(max(ids) + 1)]
            if max(ids) >= len(devices):
                raise RunError(f"--gpus {spec.gpus}: this host shows {len(devices)} GPU(s) (CUDA_VISIBLE_DEVICES="
                               f"{visible})")
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices[i] for i in ids)
        if spec.fake_gpus:
            kw.update(num_gpus=0, num_cpus=max(2, os.cpu_count() or 2), resources={FAKE_RESOURCE: spec.fake_gpus})
        ray.init(include_dashboard=False, **kw)
        keep_sigterm_handler(before)
    except RunError:
        raise
    except Exception as e:  # no cluster at the address, a port in use...
        raise RunError(f"Ray: {one_line(e)}") from None
    return True


def keep_sigterm_handler(before: Any) -> None:
    """``ray.init`` makes SIGTERM end the driver (``sys.exit``); a Python handler installed before it (the
    CLI's, which stops a sweep as Ctrl-C does: every row kept, exit 143) is put back, so a scale-out
    sweep stops as a plain one does. Without one, Ray's stays."""
    if callable(before) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, before)


def start_workers(ray, spec: ClusterSpec) -> tuple[list, list[dict]]:
    count, _ = spec.parsed()
    resource = FAKE_RESOURCE if spec.fake_gpus else "GPU"
    have = int(ray.cluster_resources().get(resource, 0))
    if have == 0:
        where = f"the cluster at {spec.cluster}" if spec.cluster else "this host"
        raise RunError(f"--gpus {spec.gpus}: Ray sees no GPU on {where}")
    n = have if count is None else count
    if n > have:
        raise RunError(f"--gpus {spec.gpus}: Ray sees {have} GPU(s)")
    opts: dict[str, Any] = {"max_restarts": -1, "max_task_retries": 0}
    if spec.fake_gpus:
        opts.update(num_cpus=0, resources={FAKE_RESOURCE: 1})
    else:
        opts.update(num_gpus=1, num_cpus=1)
    actor = ray.remote(PairWorker).options(**opts)
    fault = os.environ.get(FAULT_ENV) or None
    workers = [actor.remote(i, bool(spec.fake_gpus), fault) for i in range(n)]
    try:
        infos = ray.get([w.describe.remote() for w in workers])
    except Exception as e:
        raise RunError(f"a worker failed to start: {one_line(e)}") from None
    return workers, infos


def _group_key(target: Target) -> tuple[str, str]:
    return (target.name if target.device == "cuda" else "", f"sm{target.sm}" if target.sm else "")


AFFINITY_WINDOW = 64  # how far into the queue a worker looks for another pair of its last case


def pick(queue: deque, worker: int, last_case: str | None, others: bool) -> int | None:
    """Which queued pair ``worker`` runs next (its index in ``queue``, None: none it may take).

    A pair of the case the worker ran last comes first: the worker still holds that case's gate
    inputs and reference (``runner.CaseInputs``), as a plain sweep gates all of a case's backends on
    one set. The queue is in case order, so such a pair, if any is left, is near the front: only the
    first ``AFFINITY_WINDOW`` pairs are searched. Otherwise the first pair. A pair lost on this worker
    (``avoid``) is left to another worker while there is one."""
    first = None
    for k, task in enumerate(queue):
        if first is not None and k >= AFFINITY_WINDOW:
            break
        if task.avoid == worker and others:
            continue
        if task.case.id == last_case:
            return k
        if first is None:
            first = k
    return first


def run_distributed(sweep: Sweep, opts: RunOptions, spec: ClusterSpec,
                    on_row: Callable[[Row], None] | None = None) -> RunSummary:
    """Run (or resume) a sweep over the GPUs of a Ray cluster; the driver writes every row."""
    ray = import_ray()
    spec.parsed()  # bad --gpus is refused before a cluster starts
    owned = connect(ray, spec)
    workers: list = []
    try:
        workers, infos = start_workers(ray, spec)
        return _drive(ray, sweep, opts, workers, infos, on_row)
    finally:
        for w in workers:
            ray.kill(w, no_restart=True)
        if owned:
            ray.shutdown()


def _drive(ray, sweep: Sweep, opts: RunOptions, workers: list, infos: list[dict],
           on_row: Callable[[Row], None] | None) -> RunSummary:
    from gdnbench.env import device_slug
    from gdnbench.progress import progress_bar

    groups: list[Group] = []
    group_of: dict[int, int] = {}
    for i, info in enumerate(infos):
        target = Target(info["device"], info["sm"], info["gpu"] or info["device"])
        key = _group_key(target)
        g = next((j for j, gr in enumerate(groups) if gr.key == key), None)
        if g is None:
            groups.append(Group(target=target, key=key))
            g = len(groups) - 1
        groups[g].workers.append(i)
        group_of[i] = g
    modes, plans = [], []
    for g in groups:
        mode = resolve_timing_mode(sweep.for_sm(g.target.sm), g.target, opts.timing_mode)
        if opts.energy and (opts.check_only or mode != "graph"):
            raise RunError(f"--energy measures graph-mode rows on a GPU: the timing mode on {g.target.name} is {mode}")
        modes.append(mode)
        plans.append(select_pairs(sweep, opts, g.target))
    slug = "+".join(dict.fromkeys(device_slug(g.target) for g in groups))
    directory = run_directory(plans[0][0], opts, slug)
    writer = RowWriter(directory)
    done = writer.done_on() if opts.resume else set()
    if opts.resume:
        writer.prune_samples()
    for g, (swp, cases, backends), mode in zip(groups, plans, modes):
        g.config = ray.put(WorkerConfig(swp, mode, opts.check_only, opts.energy, tuple(cases),
                                        tuple(b.name for b in backends)))
        g.queue.extend(Task(c, b, groups.index(g)) for c in cases for b in backends
                       if (c.id, b.name, *g.key) not in done)
    total = sum(len(g.queue) for g in groups)
    setups = ray.get([w.setup.remote(groups[group_of[i]].config) for i, w in enumerate(workers)])
    worker_env = [{**info, **setup} for info, setup in zip(infos, setups)]
    extra: dict = {"config_name": sweep.name, "timing_mode": modes[0] if len(set(modes)) == 1 else modes,
                   "check_only": opts.check_only, "timer_revision": TIMER_REVISION,
                   "scale_out": {"workers": len(workers), "gpu_models": [g.target.name for g in groups]},
                   "workers": worker_env, "device": infos[0]["device"], "device_slug": slug}
    if groups[0].target.device == "cuda":
        extra.update(gpu_name=groups[0].target.name, sm=groups[0].key[1])
    if worker_env[0]["roofline"]:
        extra["roofline"] = worker_env[0]["roofline"]
    write_provenance(directory, plans[0][0], extra, local_gpu=False)
    summary = RunSummary(directory=directory, cases=len(plans[0][1]), mode="" if opts.check_only else modes[0])
    notes = {s["energy_note"] for s in setups if s["energy_note"]}
    summary.notes += sorted({s["untuned_note"] for s in setups if s["untuned_note"]})
    summary.notes += [energy_off(n) for n in sorted(notes)]
    run_id = directory.name
    inflight: dict = {}
    idle: set[int] = set(range(len(workers)))

    last_case: dict[int, str] = {}

    def take(i: int) -> Task | None:
        g = groups[group_of[i]]
        k = pick(g.queue, i, last_case.get(i), len(g.workers) > 1)
        if k is None:
            return None
        task = g.queue[k]
        del g.queue[k]
        last_case[i] = task.case.id
        return task

    def dispatch() -> None:
        for i in sorted(idle):
            task = take(i)
            if task is None:
                continue
            idle.discard(i)
            ref = workers[i].run.remote(task.case, task.backend.name, run_id, groups[task.group].config)
            inflight[ref] = (i, task)

    def lost_row(i: int, task: Task) -> Row:
        info = infos[i]
        row = case_row(run_id, task.case, task.backend, groups[task.group].target)
        row.host, row.gpu_uuid, row.device = info["host"], info["gpu_uuid"], info["device_slug"]
        row.status, row.reason = "error", (f"worker lost twice while running this pair (on "
                                           f"{' then '.join(task.lost_on)}): {task.lost}")[:500]
        return row

    def ping(i: int) -> None:  # a lost worker takes pairs again once Ray has restarted it
        inflight[workers[i].describe.remote()] = (i, None)

    with progress_bar(total, enabled=opts.progress) as advance:
        dispatch()
        while any(task is not None for _, task in inflight.values()) or any(g.queue for g in groups):
            if not inflight:  # cannot happen: every worker is busy, idle (then it took a pair) or pinged
                raise RunError("scale-out: pairs left but no worker to run them; rerun with --resume")
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=RESTART_WAIT_S)
            if not ready:
                raise RunError(f"no worker answered for {RESTART_WAIT_S:.0f} s (lost and not restarted): finished "
                               "rows are kept, rerun with --resume once the GPUs are back")
            i, task = inflight.pop(ready[0])
            if task is None:
                try:
                    ray.get(ready[0])
                    idle.add(i)
                    dispatch()
                except ray.exceptions.RayError:  # still restarting
                    time.sleep(0.2)
                    ping(i)
                continue
            try:
                row, samples, fatal = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # the worker died under the pair (kill -9, OOM...)
                row, samples, fatal = None, [], one_line(e)
            if fatal:
                if row is not None:  # its CUDA context is gone: a fresh process for the next pairs
                    ray.kill(workers[i], no_restart=False)
                ping(i)
                task.lost = fatal
                task.lost_on.append(f"{infos[i]['host']}/{infos[i]['index']}")
                if task.attempt == 0:
                    task.attempt, task.avoid = 1, i
                    groups[task.group].queue.appendleft(task)
                    dispatch()
                    continue
                if row is None:
                    row = lost_row(i, task)
                else:
                    row.reason = f"failed twice, CUDA context unusable: {row.reason}"[:500]
                samples = []
            else:
                idle.add(i)
            writer.write(row, samples)
            summary.added[row.status] = summary.added.get(row.status, 0) + 1
            advance(row)
            if on_row:
                on_row(row)
            dispatch()
    summary.counts, summary.cases = run_counts(directory)
    return summary
