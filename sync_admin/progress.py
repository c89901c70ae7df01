"""The backfill's progress: a rich bar (customers, rate, ETA) on a terminal, plain lines otherwise.

Plain lines are for CI logs and pipes: one after the first batch, then at most one every
PLAIN_INTERVAL_SECONDS, and one at the end, so a million customers do not print a thousand lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from sync_admin import backfill, reports

PLAIN_INTERVAL_SECONDS = 5.0

Reporter = Callable[[backfill.Progress], None]


class CountColumn(ProgressColumn):
    """`410,000/1,000,000 customers`."""

    def render(self, task: Task) -> Text:
        return Text(f"{int(task.completed):,}/{int(task.total or 0):,} customers")


class RateColumn(ProgressColumn):
    """Customers per second, from rich's own moving window."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f}/s" if task.speed else "-/s")


@contextmanager
def reporter(console: Console) -> Iterator[Reporter]:
    """A callback for backfill.run that shows progress on CONSOLE (a bar when it is a terminal)."""
    if console.is_terminal:
        with _bar(console) as report:
            yield report
    else:
        yield _PlainLines(console)


@contextmanager
def _bar(console: Console) -> Iterator[Reporter]:
    # Fits 80 columns: backfill ━━━━━━━━━╸━━━━━━━━━━ 410,000/1,000,000 customers 24,828/s ETA 0:00:24
    bar = Progress(
        TextColumn("backfill"),
        BarColumn(bar_width=20),
        CountColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    task_id = None

    def report(progress: backfill.Progress) -> None:
        nonlocal task_id
        run = progress.run
        if task_id is None:
            # A resumed run starts the bar where it stopped; the rate counts this session only.
            task_id = bar.add_task("backfill", total=run.total, completed=run.scanned - progress.scanned_this_session)
        bar.update(task_id, completed=run.scanned, total=max(run.total, run.scanned))

    with bar:
        yield report


class _PlainLines:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.last_printed: float | None = None

    def __call__(self, progress: backfill.Progress) -> None:
        now = time.monotonic()
        finished = progress.run.status != "running"
        due = self.last_printed is None or now - self.last_printed >= PLAIN_INTERVAL_SECONDS
        if not (due or finished):
            return
        self.last_printed = now
        rate = progress.scanned_this_session / progress.elapsed_seconds if progress.elapsed_seconds > 0 else None
        self.console.print(reports.progress_line(progress, rate), markup=False, highlight=False)
