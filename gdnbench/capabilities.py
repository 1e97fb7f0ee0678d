"""Capability matrix: per backend variant, which phase x layout x state dtype x pool kind x head dims x
SM generation it supports, and the reason for each gap.

It is computed by asking each backend's ``supports()`` about representative cases on each target
(this machine, and SM90 / SM100 whatever this machine is), so the matrix can never disagree with
what a sweep does. Head dims are probed as K x V pairs, the model sizes (64, 128, 256) and odd ones
(16 x 32, 7 x 7): a backend that accepts every probe is shown as taking any K and V, one that takes
only some lists exactly those, so the matrix neither overstates nor understates what runs. Backends encode their libraries' documented support as data, which is why SM100
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
from gdnbench.vocab import LAYOUTS, PHASES, POOLS, STATE_DTYPES

#: (K, V) probes: the models' head dims, then odd shapes (unequal, not a power of two).
HEAD_DIMS = ((64, 64), (128, 128), (256, 256), (16, 32), (7, 7))
MTP_FEATURES = {"intermediate": dict(intermediate=True, write_back=False),
                "tree": dict(intermediate=True, write_back=False, tree=True),
                "no write-back": dict(write_back=False)}


def probe_case(phase: str, layout: str, state_dtype: str, pool: str, head_dim: int | tuple[int, int],
               **flags: bool) -> Case:
    k, v = head_dim if isinstance(head_dim, tuple) else (head_dim, head_dim)
    base = dict(phase=phase, batch=4, hk=16, hv=32, head_dim_k=k, head_dim_v=v, layout=layout,
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
    head_dims: tuple[tuple[int, int], ...]  # (K, V) probes supported
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
        dims = dims_text(self.head_dims)
        extra = ""
        if self.features or self.missing:
            extra = "; " + ", ".join([f"+{f}" for f in self.features] + [f"[dim]-{m}[/]" for m in self.missing])
        gaps = "".join(f"\n[dim]gap: {g}[/]" for g in self.gaps)
        return f"[green]yes[/]: {pools}; {dims}{extra}{gaps}"


def dims_text(dims: tuple[tuple[int, int], ...]) -> str:
    """``any K x V`` when every probe is supported, else the supported probes (``K x V 64x64/128x128``)."""
    if set(dims) >= set(HEAD_DIMS):
        return "any K x V (probed " + ", ".join(f"{k}x{v}" for k, v in HEAD_DIMS) + ")"
    return "K x V " + "/".join(f"{k}x{v}" for k, v in dims)


def ask(backend: Backend, case: Case, target: Target) -> str | None:
    """``backend.supports`` as a sweep asks it: an exception is a reason (the runner skips such a row)."""
    try:
        return backend.supports(case, target)
    except Exception as e:
        text = str(e).splitlines()[0] if str(e) else ""
        return f"supports() raised {type(e).__name__}: {text}".strip()


def cell(backend: Backend, phase: str, layout: str, state_dtype: str, target: Target) -> Cell:
    pools: list[str] = []
    dims: list[int] = []
    reasons: Counter = Counter()
    for pool in POOLS:
        for d in HEAD_DIMS:
            r = ask(backend, probe_case(phase, layout, state_dtype, pool, d), target)
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
            ok = ask(backend, probe_case(phase, layout, state_dtype, pools[0], dims[0], **flags), target) is None
            (features if ok else missing).append(name)
    reason = reasons.most_common(1)[0][0] if reasons else ""
    gaps = tuple(reasons) if pools else ()
    return Cell(tuple(pools), tuple(d for d in HEAD_DIMS if d in dims), tuple(features), tuple(missing), reason, gaps)


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
    console.print("Pools: contiguous, scattered (random slots with guards), padded (trailing slot -1 rows), "
                  "padded_mid (slot -1 rows inside the batch). "
                  "Head dims probed (K x V): " + ", ".join(f"{k}x{v}" for k, v in HEAD_DIMS) + ". mtp extras: per-step intermediate states, parent-token "
                  "tree, verify without write-back.")
