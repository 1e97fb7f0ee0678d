"""Progress display for sweeps: a rich progress bar with ETA, and one line per finished row."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Callable, Iterator

from rich.console import Console
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
        return f"{head} {extra}"
    if row.status == "ok":
        return f"{head} check pass (rms_rel {row.rms_rel_err:.1e})" if row.rms_rel_err is not None else head
    return f"{head}  {row.reason}"


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool = True) -> Iterator[Callable[[Row], None]]:
    """Yields ``advance(row)``: prints the row's line and, when enabled on a terminal, moves a bar
    (with ETA) by one. Lines are printed either way: they are the run's log."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    if not enabled:
        yield lambda row: console.print(describe(row))
        return
    columns = (TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("sweep", total=total)

        def advance(row: Row) -> None:
            bar.console.print(describe(row))
            bar.advance(task)

        yield advance
