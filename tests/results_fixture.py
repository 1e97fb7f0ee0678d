"""Synthetic results directories for analysis / plot / compare tests (two GPUs, every phase)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from gdnbench.cases import Case
from gdnbench.rows import Row, RowWriter

GPUS = {"h100": ("NVIDIA H100 80GB HBM3", "sm90", 1.0), "b200": ("NVIDIA B200", "sm100", 0.6),
        "a100": ("NVIDIA A100-SXM4-80GB", "sm80", 1.5)}
SPEED = {"torch": 20.0, "flashinfer": 1.0, "fla": 1.6, "fla_kernel": 1.1}


def case(**kw) -> Case:
    base = dict(phase="decode", batch=1, hk=16, hv=32, head_dim_k=128, head_dim_v=128, layout="k_last",
                state_dtype="bfloat16", dtype="bfloat16", tokens=1, seq_lens="", pool="scattered", write_back=True,
                intermediate=False, tree=False, seed=0, model="qwen3-next-80b/tp1")
    base.update(kw)
    return Case(**base)


def cases() -> list[Case]:
    out = [case(batch=b, state_dtype=sd, pool=p) for b in (1, 4, 32, 256) for sd in ("bfloat16", "float32")
           for p in ("scattered", "contiguous")]
    out += [case(phase="mtp", batch=b, tokens=t, intermediate=True, write_back=False) for b in (1, 64) for t in (2, 4, 8)]
    out += [case(phase="mtp", batch=b, tokens=4) for b in (1, 64)]
    out += [case(phase="prefill", batch=n, tokens=8192, seq_lens=s) for n, s in ((1, "8192"), (4, "2048*4"))]
    return out


def make_run(root: Path, name: str, gpu: str = "h100", scale: dict | None = None, fail: set | None = None,
             jitter: float = 0.0, extra: dict | None = None, env: dict | None = None, mode: str = "graph",
             loose: set | None = None) -> Path:
    """A results directory with rows for every case x backend; ``scale`` multiplies one backend's
    latency, ``fail`` lists (case_id, backend) pairs written as failed, ``extra`` adds backends
    (name -> latency relative to flashinfer), ``env`` adds env.json keys, ``mode`` is the timing
    mode, ``loose`` lists (case_id, backend) pairs whose sampling did not converge."""
    gpu_name, sm, speed = GPUS[gpu]
    d = root / name
    w = RowWriter(d)
    for i, c in enumerate(cases()):
        for backend, rel in {**SPEED, **(extra or {})}.items():
            row = Row(run_id=name, backend=backend, backend_version=f"{backend} 1.0", device=f"{gpu}-{sm}", gpu=gpu_name,
                      sm=sm, kernel=backend, padding="zero")
            for k, v in c.as_row().items():
                setattr(row, k, v)
            if backend == "fla_kernel" and c.pool != "contiguous":
                row.status, row.reason = "skipped", "no pool API"
            elif fail and (c.id, backend) in fail:
                row.status, row.check, row.reason = "failed", "fail", "state: rms_rel 3e-01"
            else:
                t = (2.0 + c.batch * c.tokens / 8) * rel * speed * (scale or {}).get(backend, 1.0)
                t *= 1 + jitter * ((i % 3) - 1)
                row.status, row.check, row.timing_mode = "ok", "pass", mode
                row.median_us, row.iqr_us, row.n_samples = t, 0.004 * t, 20
                row.converged = not (loose and (c.id, backend) in loose)
                row.bytes = c.bytes_moved()
                row.gbps = row.bytes / (t * 1e-6) / 1e9
                row.pct_peak_bw = 100 * row.gbps / 3000
            w.write(row)
    (d / "env.json").write_text(json.dumps({"versions": {"torch": "2.11.0"}, "driver": "580", **(env or {})}))
    return d


def make_mixed_run(root: Path, name: str, gpus: tuple[str, ...] = ("h100", "b200"), **kw) -> Path:
    """One results directory holding the rows of several GPU models (a scale-out sweep over a mixed
    fleet: every pair once per model), made of one ``make_run`` per GPU; ``kw`` per GPU model:
    ``scale_<gpu>`` for that model's ``scale``, ``extra`` for every model's."""
    import shutil

    d = root / name
    d.mkdir(parents=True)
    lines: list[str] = []
    for gpu in gpus:
        part = make_run(root / f".{name}-parts", gpu, gpu, scale=kw.get(f"scale_{gpu}"), extra=kw.get("extra"))
        text = (part / "rows.csv").read_text().splitlines()
        lines += text if not lines else text[1:]
        shutil.copy(part / "env.json", d / "env.json")
    (d / "rows.csv").write_text("\n".join(lines) + "\n")
    shutil.rmtree(root / f".{name}-parts")
    return d


__all__ = ["make_run", "make_mixed_run", "cases", "case", "dataclasses"]
