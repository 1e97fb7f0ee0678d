"""Progress display for sweeps: a rich progress bar with ETA, and one line per finished row.

Skipped rows (a backend that does not support a case here) are not listed one by one: their lines
would bury the results on a machine where a whole backend cannot run. They are summarised in one
line, by backend and reason, when the run ends; rows.csv has each one.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

if TYPE_CHECKING:
    from gdnbench.rows import Row

STYLE = {"ok": "green", "skipped": "dim", "failed": "bold red", "error": "bold magenta"}


def describe(row: Row) -> str:
    """One line for a finished row: status, backend, case and the headline number or the reason."""
    head = f"[{STYLE.get(row.status, '')}]{row.status:7}[/] {row.backend:10} {row.case_id}"
    if row.status == "ok" and row.median_us is not None:
        extra = f"{row.median_us:10.2f} µs"
        if row.pct_peak_bw is not None:
            extra += f" {row.pct_peak_bw:5.1f}% BW"
        if row.energy_uj is not None:
            extra += f" {row.energy_uj:.1f} ± {row.energy_uj_err or 0:.1f} µJ"
        if row.converged is False:
            extra += " (not converged)"
        return f"{head} {extra}"
    if row.status == "ok":
        text = f"{head} check pass (rms_rel {row.rms_rel_err:.1e})" if row.rms_rel_err is not None else head
        return f"{text}  [dim]{escape(row.reason)}[/]" if row.reason else text
    return f"{head}  {escape(row.reason)}"


def skipped_summary(rows: Iterable[Row]) -> str:
    """One line for skipped rows: how many, per backend and reason."""
    by = Counter((r.backend, r.reason) for r in rows)
    parts = [f"{b} x{n}: {escape(reason)}" for (b, reason), n in sorted(by.items(), key=lambda kv: (-kv[1], kv[0]))]
    return f"[dim]skipped {sum(by.values())} (case, backend) pairs (reasons per row in rows.csv): {'; '.join(parts)}[/]"


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool = True) -> Iterator[Callable[[Row], None]]:
    """Yields ``advance(row)``: prints the row's line and, when enabled on a terminal, moves a bar
    (with ETA) by one. Lines are printed either way: they are the run's log."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    skipped: list[Row] = []

    def line(print_: Callable[[str], None], row: Row) -> None:
        if row.status == "skipped":
            skipped.append(row)
            return
        print_(describe(row))

    if not enabled:
        yield lambda row: line(console.print, row)
        if skipped:
            console.print(skipped_summary(skipped))
        return
    columns = (TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("sweep", total=total)

        def advance(row: Row) -> None:
            line(bar.console.print, row)
            bar.advance(task)

        yield advance
        if skipped:
            bar.console.print(skipped_summary(skipped))
