"""The loop the kernel probes share (``gluon_probe.py``, ``tma_probe.py``, ``cache_probe.py``): for each
(B, HK, HV) bf16 decode case, every variant is gated against the reference, then graph-timed with
tune_triton's settings, over two rounds, one line of medians (µs) per case and round."""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from gdnbench.check import run_gate
from gdnbench.inputs import make_inputs
from gdnbench.reference import reference
from gdnbench.timer import time_gpu
from tune_triton import CFG, case

Variant = tuple[str, Callable[[], object]]  # (tag, make the backend: may set up the kernel it launches)


def run_rounds(cases: Iterable[tuple[int, int, int]], variants: Callable[[tuple[int, int, int]], list[Variant]],
               only: set[str] | None = None, rounds: int = 2) -> None:
    """Print ``round r B=.. HK=.. HV=..: tag=µs ...`` per case and round; a variant that raises or fails
    the gate prints one ERROR / FAILED line and is left out of the round's line."""
    cases = list(cases)
    for rnd in range(1, rounds + 1):
        for B, HK, HV in cases:
            if only and f"{B},{HK},{HV}" not in only:
                continue
            c = case(B, HK, HV)
            x = make_inputs(c, "cuda")
            e = reference(x)
            res = []
            for tag, make in variants((B, HK, HV)):
                b = make()
                try:
                    g = run_gate(c, b, x, e)
                except Exception as exc:  # a variant that does not compile or launch: say so, go on
                    print(f"ERROR {tag} {c.id}: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
                    continue
                if not g.check.ok:
                    print(f"FAILED {tag} {c.id}: {g.check.message}", flush=True)
                    continue
                res.append((time_gpu("graph", c, b, CFG).stats.median, tag))
            print(f"round {rnd} B={B} HK={HK} HV={HV}: " + "  ".join(f"{n}={u:.3f}" for u, n in res), flush=True)
            del x, e
            torch.cuda.empty_cache()
