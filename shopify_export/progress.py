"""Progress reporting on stderr: Rich bars on a terminal, plain lines otherwise, or nothing."""

from __future__ import annotations

import sys
from typing import IO, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class Reporter(Protocol):
    """Progress output of the job runner, for the person or the script watching an export."""

    def start(self, description: str, total: int | None, completed: int) -> None:
        """Begin showing progress; ``total`` is None while the store's count is unknown."""

    def set_total(self, total: int) -> None:
        """Set the store's customer count once it is known."""

    def batch(self, number: int, saved: int, processed: int) -> None:
        """Report a committed batch: its number, its size and the job's processed count."""

    def notice(self, message: str) -> None:
        """Show a one-line notice: a retry, a wait, a changed page size."""

    def warning(self, message: str) -> None:
        """Show a one-line warning that the user should act on."""

    def stop(self) -> None:
        """Stop showing progress (the bars, if any, stay on screen)."""

    def summary(self, message: str) -> None:
        """Show the closing summary line, also in quiet mode."""


class _CustomersPerSecondColumn(ProgressColumn):
    """Customers per second over the whole run so far."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("- customers/s", style="progress.data.speed")
        return Text(f"{speed:,.0f} customers/s", style="progress.data.speed")


class RichReporter:
    """Live progress bars on a terminal: customers saved against the store's total, rate, ETA."""

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("batch {task.fields[batch]}"),
            _CustomersPerSecondColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            speed_estimate_period=60.0,
        )
        self._task: TaskID | None = None

    def start(self, description: str, total: int | None, completed: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, completed=completed, batch=0)

    def set_total(self, total: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, total=total)

    def batch(self, number: int, saved: int, processed: int) -> None:
        if self._task is not None:
            task = self._progress.tasks[self._task]
            if task.total is not None and processed > task.total:
                self._progress.update(self._task, total=processed)
            self._progress.update(self._task, completed=processed, batch=number)

    def notice(self, message: str) -> None:
        if not self.quiet:
            self._progress.console.print(Text(message, style="dim"))

    def warning(self, message: str) -> None:
        self._progress.console.print(Text(f"Warning: {message}", style="yellow"))

    def stop(self) -> None:
        self._progress.stop()

    def summary(self, message: str) -> None:
        self.console.print(Text(message))


class PlainReporter:
    """One plain line per batch, for cron jobs, pipes and log files."""

    def __init__(self, stream: IO[str] | None = None, *, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self._closed = False

    def _write(self, line: str) -> None:
        if self._closed:
            return
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            # The reader of stderr has gone (a pipe into a tool that exited): progress lines
            # are dropped, and the export goes on and records its outcome in the job.
            self._closed = True

    def start(self, description: str, total: int | None, completed: int) -> None:
        if not self.quiet:
            self._write(description)

    def set_total(self, total: int) -> None:
        if not self.quiet:
            self._write(f"Customers in the store: {total}")

    def batch(self, number: int, saved: int, processed: int) -> None:
        if not self.quiet:
            self._write(f"Batch {number}: Saved {saved} customers (Total: {processed})")

    def notice(self, message: str) -> None:
        if not self.quiet:
            self._write(message)

    def warning(self, message: str) -> None:
        self._write(f"Warning: {message}")

    def stop(self) -> None:
        pass

    def summary(self, message: str) -> None:
        self._write(message)


def make_reporter(*, quiet: bool, stream: IO[str] | None = None) -> Reporter:
    """Return Rich bars when ``stream`` (stderr by default) is a terminal, else plain lines."""
    stream = stream if stream is not None else sys.stderr
    if stream.isatty() and not quiet:
        return RichReporter(Console(file=stream, stderr=True))
    return PlainReporter(stream, quiet=quiet)
