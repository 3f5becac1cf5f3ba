"""Progress shown to a person while a report is drawn (a rich bar over its figures).

A run's display, cells and what runs inside them, is
:class:`lossatlas.engine.progress.ConsoleProgress`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RichReportProgress"]


class RichReportProgress:
    """A rich progress bar over the figures of a report where someone watches (a
    terminal, or Jupyter where rich can draw: :func:`lossatlas.engine.progress.
    _interactive`, what a run's bars go by); nothing when quiet, in a log or under CI."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.task: Any = None

    def start(self, total: int) -> None:
        from .progress import _interactive

        if self.quiet or total == 0 or not _interactive():
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
