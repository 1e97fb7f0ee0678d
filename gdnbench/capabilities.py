"""Capability matrix: per backend variant, which phase x layout x state dtype x pool kind x head dims x
SM generation it supports, and the reason for each gap.

It is computed by asking each backend's ``supports()`` about representative cases on each target
(this machine, and SM90 / SM100 whatever this machine is), so the matrix can never disagree with
what a sweep does. Backends encode their libraries' documented support as data, which is why SM100
rows are meaningful on an SM90 (or CPU) machine.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from gdnbench.backends import all_backends
from gdnbench.backends.base import Backend, Target, current_target
from gdnbench.cases import Case

PHASES = ("decode", "mtp", "prefill")
LAYOUTS = ("k_last", "v_last")
STATE_DTYPES = ("bfloat16", "float32")
POOLS = ("contiguous", "scattered", "padded")
HEAD_DIMS = (64, 128, 256)
MTP_FEATURES = {"intermediate": dict(intermediate=True, write_back=False),
                "tree": dict(intermediate=True, write_back=False, tree=True),
                "no write-back": dict(write_back=False)}


def probe_case(phase: str, layout: str, state_dtype: str, pool: str, head_dim: int, **flags: bool) -> Case:
    base = dict(phase=phase, batch=4, hk=16, hv=32, head_dim_k=head_dim, head_dim_v=head_dim, layout=layout,
                state_dtype=state_dtype, dtype="bfloat16", tokens=1, seq_lens="", pool=pool, write_back=True,
                intermediate=False, tree=False, seed=0)
    if phase == "mtp":
        base["tokens"] = 4
    if phase == "prefill":
        base.update(tokens=192, seq_lens="128+64", batch=2)
    base.update(flags)
    return Case(**base)


@dataclass(frozen=True)
class Cell:
    """One backend x (phase, layout, state dtype) x target."""

    pools: tuple[str, ...]
    head_dims: tuple[int, ...]
    features: tuple[str, ...]   # mtp extras supported
    missing: tuple[str, ...]    # mtp extras not supported
    reason: str                 # when nothing is supported: the most common reason
    gaps: tuple[str, ...] = ()  # when partly supported: why the other pools / head dims are not

    @property
    def supported(self) -> bool:
        return bool(self.pools)

    def text(self) -> str:
        if not self.supported:
            return f"[red]no[/]: {self.reason}"
        pools = "all pools" if len(self.pools) == len(POOLS) else "/".join(self.pools)
        dims = "/".join(str(d) for d in self.head_dims)
        extra = ""
        if self.features or self.missing:
            extra = "; " + ", ".join([f"+{f}" for f in self.features] + [f"[dim]-{m}[/]" for m in self.missing])
        gaps = "".join(f"\n[dim]gap: {g}[/]" for g in self.gaps)
        return f"[green]yes[/]: {pools}; K=V {dims}{extra}{gaps}"


def cell(backend: Backend, phase: str, layout: str, state_dtype: str, target: Target) -> Cell:
    pools: list[str] = []
    dims: list[int] = []
    reasons: Counter = Counter()
    for pool in POOLS:
        for d in HEAD_DIMS:
            r = backend.supports(probe_case(phase, layout, state_dtype, pool, d), target)
            if r is None:
                if pool not in pools:
                    pools.append(pool)
                if d not in dims:
                    dims.append(d)
            else:
                reasons[r] += 1
    features: list[str] = []
    missing: list[str] = []
    if phase == "mtp" and pools:
        for name, flags in MTP_FEATURES.items():
            ok = backend.supports(probe_case(phase, layout, state_dtype, pools[0], dims[0], **flags), target) is None
            (features if ok else missing).append(name)
    reason = reasons.most_common(1)[0][0] if reasons else ""
    gaps = tuple(reasons) if pools else ()
    return Cell(tuple(pools), tuple(sorted(dims)), tuple(features), tuple(missing), reason, gaps)


def targets() -> list[Target]:
    here = current_target()
    out = [here]
    for sm in (90, 100):
        if here.sm != sm:
            out.append(Target("cuda", sm, f"sm{sm}"))
    return out


def print_matrix(console: Console) -> None:
    ts = targets()
    table = Table(title="capability matrix (gaps give the reason; 'here' = this machine, installed libraries included)",
                  show_lines=True)
    table.add_column("backend")
    table.add_column("phase / layout / state")
    for t in ts:
        label = f"here ({t.label})" if t == current_target() else f"{t.label} (documented)"
        table.add_column(label, overflow="fold")
    for b in all_backends():
        for phase in PHASES:
            for layout in LAYOUTS:
                for sd in STATE_DTYPES:
                    cells = [cell(b, phase, layout, sd, t) for t in ts]
                    table.add_row(b.name, f"{phase} / {layout} / {sd}", *(c.text() for c in cells))
    console.print(table)
    console.print("Pools: contiguous, scattered (random slots with guards), padded (slot -1 rows). "
                  "Head dims probed: K = V in 64/128/256. mtp extras: per-step intermediate states, parent-token "
                  "tree, verify without write-back.")
