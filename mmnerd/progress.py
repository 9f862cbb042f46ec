"""Progress bars for long work and the summary table printed after each stage."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=True)


_active: list[Any] = []  # the live rich Progress, shared by nested bars


@contextlib.contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; shows a rich progress bar on a terminal, nothing otherwise.

    Nested bars (a stage's own bar inside the runner's) share one live display.
    """
    if not sys.stderr.isatty():
        yield lambda n=1: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    if _active:
        prog = _active[-1]
        task = prog.add_task(description, total=total)
        try:
            yield lambda n=1: prog.advance(task, n)
        finally:
            prog.remove_task(task)
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as prog:
        _active.append(prog)
        try:
            task = prog.add_task(description, total=total)
            yield lambda n=1: prog.advance(task, n)
        finally:
            _active.pop()


def warn(message: str) -> None:
    """A loud one-line warning on stderr (bold yellow on a terminal, plain in logs)."""
    if sys.stderr.isatty():
        console.print(f"[bold yellow]warning:[/] {message}", markup=True, highlight=False)
    else:
        print(f"mmnerd: warning: {message}", file=sys.stderr, flush=True)


def summary_table(stats: list[Any], title: str = "stage summary") -> Table:
    """One row per stage: items in, out, dropped by reason, flags, seconds."""
    table = Table(title=title)
    for col in ("stage", "in", "out", "dropped (reason: n)", "flagged", "seconds"):
        table.add_column(col, justify="right" if col in ("in", "out", "seconds") else "left")
    for s in stats:
        dropped = ", ".join(f"{k}: {v}" for k, v in sorted(s.dropped.items())) or "-"
        flagged = ", ".join(f"{k}: {v}" for k, v in sorted(s.flagged.items())) or "-"
        secs = "done before" if s.skipped else f"{s.seconds:.1f}"
        table.add_row(s.stage, str(s.items_in), str(s.items_out), dropped, flagged, secs)
    return table


def print_summary(stats: list[Any], title: str = "stage summary") -> None:
    Console().print(summary_table(stats, title))
