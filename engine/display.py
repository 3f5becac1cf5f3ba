"""Progress shown to a person: rich progress bars for a run and for a report.

Used by the command line and by :func:`lossatlas.run` (rich draws its bars in a
terminal and in Jupyter alike). Nothing here decides anything: the runner reports
events through :class:`~lossatlas.engine.runner.Progress` and these draw them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .runner import Progress, StepReport

__all__ = ["RichProgress", "RichReportProgress"]


def _line(message: str) -> str:
    return "; ".join(part.strip() for part in message.splitlines() if part.strip())


class RichProgress(Progress):
    """A rich progress bar per step (``bar``) and a line when a step ends (``lines``);
    ``echo`` prints a line (``print`` by default, ``click.echo`` in the CLI) and
    ``notice`` a notice (to stderr in the CLI)."""

    def __init__(
        self,
        bar: bool = True,
        lines: bool = True,
        echo: Callable[[str], Any] = print,
        notice: Callable[[str], Any] | None = None,
    ) -> None:
        self.show_bar = bar
        self.lines = lines
        self.echo = echo
        self._notice = notice
        self.bar: Any = None
        self.task: Any = None

    def step_started(self, step: str, total: int, pending: int) -> None:
        if not self.show_bar or pending == 0:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RP

        self.bar = RP(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.bar.start()
        self.task = self.bar.add_task(f"step {step}", total=total, completed=total - pending)

    def cell_done(self, step: str, status: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

    def notice(self, message: str) -> None:
        text = f"lossatlas: notice: {_line(message)}"
        (self._notice or self.echo)(text)

    def step_finished(self, step: str, report: StepReport) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        if not self.lines:
            return
        if report.skipped:
            self.echo(f"step {step}: already complete in the store ({report.cells} cells)")
        else:
            extra = f", {report.nonfinite} with NaN/inf" if report.nonfinite else ""
            self.echo(
                f"step {step}: {report.computed} cell(s) computed{extra} in {report.seconds:.1f} s"
            )


class RichReportProgress:
    """A rich progress bar over the figures of a report (nothing when quiet)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.task: Any = None

    def start(self, total: int) -> None:
        if self.quiet or total == 0:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RP

        self.bar = RP(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task("drawing figures", total=total)

    def advance(self, label: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=f"drew {label}")

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
