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

LOG_INTERVAL_ENV = "MMNERD_PROGRESS_INTERVAL"
"""Seconds between progress log lines when stderr is not a terminal (default 10; 0 = every
update)."""


def _interval() -> float:
    import os

    try:
        return max(0.0, float(os.environ.get(LOG_INTERVAL_ENV, "10")))
    except ValueError:
        return 10.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class LogProgress:
    """Progress as log lines (stderr is a file, a pipe, Slurm, CI): one line every
    ``interval`` seconds while work advances, and one at the end, with the count, the total
    and share when known, the rate and the time left."""

    def __init__(self, description: str, total: int | None, unit: str, interval: float):
        import time

        self.description, self.total, self.unit, self.interval = description, total, unit, interval
        self.count = 0
        self.t0 = self.last = time.monotonic()

    def line(self, final: bool = False) -> str:
        import time

        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = self.count / elapsed
        done = f"{self.count}"
        if self.total:
            done += f"/{self.total} {self.unit} ({self.count / self.total:.0%})"
        else:
            done += f" {self.unit}"
        text = f"mmnerd: {self.description}: {done}, {rate:.1f} {self.unit}/s"
        if final:
            return f"{text}, done in {_duration(elapsed)}"
        if self.total and rate > 0 and self.count < self.total:
            text += f", about {_duration((self.total - self.count) / rate)} left"
        return text

    def advance(self, n: int = 1) -> None:
        import time

        self.count += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            print(self.line(), file=sys.stderr, flush=True)

    def close(self) -> None:
        print(self.line(final=True), file=sys.stderr, flush=True)


def log_line(message: str) -> None:
    """A progress note (a shard finished, ...): printed when stderr is not a terminal, where
    the bars cannot show it."""
    if not sys.stderr.isatty():
        print(f"mmnerd: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def progress_bar(
    description: str, total: int | None = None, unit: str = "posts"
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``.  On a terminal: a rich bar with the count of ``total``, the
    rate and the time left, which stays on screen when done; otherwise log lines
    (:class:`LogProgress`).  Nested bars (a stage's own bar inside the runner's) share one
    live display."""
    if not sys.stderr.isatty():
        log = LogProgress(description, total, unit, _interval())
        yield log.advance
        log.close()  # not after an error: the error's own line is what matters then
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if _active:
        prog = _active[-1]
        task = prog.add_task(description, total=total)
        try:
            yield lambda n=1: prog.advance(task, n)
        finally:
            prog.update(task, total=prog.tasks[task].completed)  # a finished bar shows full
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _rate_column(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as prog:
        _active.append(prog)
        try:
            task = prog.add_task(description, total=total)
            yield lambda n=1: prog.advance(task, n)
            prog.update(task, total=prog.tasks[task].completed)
        finally:
            _active.pop()


def _rate_column(unit: str) -> Any:
    """A rich column with the task's rate in ``unit``/s."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.1f} {unit}/s" if speed else "", style="progress.data.speed")

    return RateColumn()


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
