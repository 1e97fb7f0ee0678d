"""``gdnbench plan``: the cases a sweep expands to and, per backend, whether it supports each and why not."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from gdnbench.backends import get_backend
from gdnbench.backends.base import Target, current_target
from gdnbench.cases import expand
from gdnbench.config import Sweep


def print_plan(sweep: Sweep, console: Console, target: Target | None = None, limit: int | None = None) -> int:
    """Print the expansion for ``target`` (default: this machine). Returns the number of cases."""
    target = target or current_target()
    sweep = sweep.for_sm(target.sm)
    ex = expand(sweep)
    backends = [get_backend(n) for n in sweep.backends]
    table = Table(title=f"{sweep.name}: {len(ex.cases)} cases x {len(backends)} backends on {target.label}",
                  show_lines=False)
    table.add_column("case id", overflow="fold")
    for b in backends:
        table.add_column(b.name)
    gaps: Counter = Counter()
    runnable = 0
    for i, case in enumerate(ex.cases):
        cells = []
        for b in backends:
            reason = b.supports(case, target)
            if reason:
                gaps[(b.name, reason)] += 1
                cells.append("[dim]-[/]")
            else:
                runnable += 1
                cells.append("[green]yes[/]")
        if limit is None or i < limit:
            table.add_row(case.id, *cells)
    console.print(table)
    if limit is not None and len(ex.cases) > limit:
        console.print(f"... {len(ex.cases) - limit} more cases (--all to list every case)")
    console.print(f"{runnable} (case, backend) pairs will run; {sum(gaps.values())} are skipped:")
    for (name, reason), n in sorted(gaps.items()):
        console.print(f"  {name}: {reason} ({n})")
    for reason, n in ex.dropped.items():
        console.print(f"  dropped {n} combinations: {reason}")
    if ex.filtered:
        console.print(f"  {ex.filtered} combinations filtered out by where")
    return len(ex.cases)
