"""Provenance: the machine, the software and the code a run used, written once per run to env.json."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from gdnbench import __version__
from gdnbench.backends.base import Target, current_target, package_version

DISTS = ("torch", "triton", "flashinfer-python", "nvidia-cutlass-dsl", "fla-core", "nvtx", "pydantic",
         "nvidia-ml-py", "numpy", "pandas")
REPO = Path(__file__).resolve().parent.parent


def git_info() -> dict[str, Any]:
    """Commit sha and whether the working tree had uncommitted changes (None outside a checkout)."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_sha": sha, "git_dirty": bool(status) if status is not None else None}


def source_digest(pkg: Path | None = None, suffixes: tuple[str, ...] = (".py", ".json"),
                  exclude: tuple[str, ...] = ()) -> str:
    """sha256 over gdnbench's own source and tile tables (paths and bytes, sorted): names the code that
    ran even where the checkout's git metadata is stale or absent (a copied working tree). ``pkg`` and
    ``suffixes``: one folder's files of those kinds (a backend's kernel sources, for its tile tables);
    ``exclude``: file names left out."""
    h = hashlib.sha256()
    pkg = pkg or REPO / "gdnbench"
    for f in sorted(p for p in pkg.rglob("*")
                    if p.suffix in suffixes and "__pycache__" not in p.parts and p.name not in exclude):
        h.update(f.relative_to(pkg).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_info() -> dict[str, Any]:
    """GPU properties from torch, and driver / clocks / ECC from NVML when available."""
    import torch

    if not torch.cuda.is_available():
        return {}
    dev = torch.cuda.current_device()
    p = torch.cuda.get_device_properties(dev)
    info: dict[str, Any] = {
        "gpu_name": p.name, "sm": f"sm{p.major}{p.minor}", "sm_count": p.multi_processor_count,
        "gpu_memory_bytes": p.total_memory, "l2_bytes": getattr(p, "L2_cache_size", None),
        "cuda_runtime": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(dev)
        info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        info["max_sm_clock_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM)
        info["max_mem_clock_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM)
        info["power_limit_w"] = pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000
        try:
            info["ecc"] = bool(pynvml.nvmlDeviceGetCurrentEccMode(h))
        except pynvml.NVMLError:
            info["ecc"] = None
        try:
            info["mig"] = bool(pynvml.nvmlDeviceGetMigMode(h)[0])
        except pynvml.NVMLError:
            info["mig"] = None
    except Exception as e:  # NVML missing or unusable: provenance says so, the run goes on
        info["nvml"] = f"unavailable ({type(e).__name__})"
    return info


def gpu_uuid() -> str:
    """The current GPU's UUID as nvidia-smi prints it ("GPU-..."); "" on a CPU or where torch has none.

    A scale-out worker that stands in for a GPU in CPU tests (gdnbench.distributed) names itself through
    ``GDNBENCH_FAKE_GPU_UUID``."""
    fake = os.environ.get("GDNBENCH_FAKE_GPU_UUID")
    if fake:
        return fake
    import torch

    if not torch.cuda.is_available():
        return ""
    try:
        u = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
    except (AttributeError, RuntimeError):
        return ""
    return u if u.startswith(("GPU-", "MIG-")) else f"GPU-{u}"


def host_name() -> str:
    return socket.gethostname()


def device_slug(target: Target | None = None) -> str:
    """Short machine label for results directories: 'h100-sm90', 'cpu' (of ``target``, default this one)."""
    t = target or current_target()
    if t.device != "cuda":
        return "cpu"
    m = re.search(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b", t.name.upper())
    name = m.group(1).lower() if m else re.sub(r"[^a-z0-9]+", "-", t.name.lower()).strip("-")
    return f"{name}-sm{t.sm}"


def collect_env(gpu: bool = True) -> dict[str, Any]:
    """Everything worth knowing to reproduce or compare a run (``gpu=False``: not this process's GPU, which
    a scale-out driver leaves to its workers, never creating a CUDA context beside them)."""
    if not gpu:
        t = Target("cpu", None, "cpu")
    else:
        t = current_target()
    env: dict[str, Any] = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "gdnbench": __version__,
        **git_info(),
        "source_sha256": source_digest(),
        "host": host_name(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "device": t.device,
        "device_slug": device_slug(t),
        "versions": {d: package_version(d) for d in DISTS},
        "env_vars": {k: v for k, v in os.environ.items()
                     if k.startswith(("GDNBENCH_", "TRITON_", "FLA_", "FLASHINFER_", "CUTE_DSL_", "CUDA_"))},
        "argv": sys.argv,
    }
    if gpu:
        env.update(gpu_info())
    if env.get("gpu_name"):
        env["gpu_uuid"] = gpu_uuid()
    return env
