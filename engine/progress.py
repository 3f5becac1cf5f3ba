"""Progress a user can trust, also inside one long cell.

Two levels of progress reach a display:

- the run's: a step starts, a cell finishes, a step ends (:class:`Progress`, the
  callbacks :func:`~lossatlas.engine.runner.run_pipeline` makes);
- inside a cell: a training's optimizer steps and epochs, an eigen-solver's
  iterations and Hessian-vector products, a DSS string's beads — each with an ETA.

Code reports the second kind without plumbing, through a context variable::

    from lossatlas.engine import progress

    bar = progress.task("training", total=steps, unit="step")
    for ...:
        bar.update(done, epoch=f"{e}/{epochs}")
    bar.close()                      # or: with progress.task(...) as bar:

With no display installed, :func:`task` returns a meter that does nothing (one
context-variable lookup). A display installs itself for a block of code with
:func:`reporting` (``run_pipeline`` installs the ``progress`` it is given), and
receives :class:`ProgressEvent` s at most every ``interval`` seconds per task (and
always a task's last one). Displays here:

- :class:`ConsoleProgress`: what ``lossatlas run`` shows. On a terminal, and in
  Jupyter (rich's widget, with ``ipywidgets`` installed), a rich bar per step and a
  row per task running inside its cell, each with its ETA; in a log (stderr not a
  terminal, or a notebook without ``ipywidgets``) a line every few seconds
  (``LOSSATLAS_PROGRESS_SECONDS``, default 5) saying which step and cell is running and
  how far its tasks are;
- :class:`RecordingProgress`: keeps every event (tests, notebooks that draw their own).

Cells run by the Dask executor run in other processes: their inner progress is not
reported (the per-cell progress is).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from .runner import StepReport

__all__ = [
    "ConsoleProgress",
    "Meter",
    "Progress",
    "ProgressEvent",
    "ProgressSink",
    "RecordingProgress",
    "describe",
    "format_seconds",
    "reporting",
    "task",
]

#: Environment variable: seconds between two progress lines in a log (non-terminal).
SECONDS_ENV = "LOSSATLAS_PROGRESS_SECONDS"


@dataclass(frozen=True)
class ProgressEvent:
    """Where one task running inside a cell stands.

    ``name`` (``"training"``, ``"Lanczos"``, ``"DSS beads"``), ``unit`` (``"step"``,
    ``"HVP"``, ``"bead"``), ``done`` of ``total`` (None: unknown; ``bound``: the total
    is a cap the task may stop short of, such as an eigen-solver's HVP budget — its
    ETA is then an upper bound), ``elapsed`` seconds since the task started, ``rate``
    (units per second) and ``eta`` (seconds left; None until it can be said),
    ``info``: what else the task reports (epoch, restarts, residual ...), ``finished``:
    its last event; ``task``: an id, unique in the process.
    """

    task: int
    name: str
    unit: str
    done: float
    total: float | None
    elapsed: float
    rate: float | None
    eta: float | None
    info: dict[str, Any] = field(default_factory=dict)
    bound: bool = False
    finished: bool = False

    @property
    def fraction(self) -> float | None:
        """done / total in [0, 1], or None without a total."""
        if not self.total:
            return None
        return min(max(self.done / self.total, 0.0), 1.0)


class ProgressSink(Protocol):
    """Receives the progress of tasks inside cells (see :func:`reporting`)."""

    def update(self, event: ProgressEvent) -> None:
        """A task moved on, or finished (``event.finished``)."""


class Progress:
    """Callbacks for progress displays: the run's steps and cells (``run_pipeline``
    calls them) and, through :meth:`update`, the tasks inside a cell. Subclass and
    override what you show; every method defaults to nothing."""

    #: Seconds between two events of one task this display wants at most (0: all).
    interval: float = 0.1

    def step_started(self, step: str, total: int, pending: int) -> None:
        """A step starts with ``pending`` of ``total`` cells left to compute."""

    def cell_done(self, step: str, status: int) -> None:
        """One cell finished with ``status``."""

    def step_finished(self, step: str, report: StepReport) -> None:
        """A step finished."""

    def notice(self, message: str) -> None:
        """Something the user should know that is not an error (a lease taken over)."""

    def update(self, event: ProgressEvent) -> None:
        """A task inside the running cell moved on (see :class:`ProgressEvent`)."""


# --------------------------------------------------------------------- meters

_SINK: contextvars.ContextVar[Any] = contextvars.ContextVar("lossatlas_progress", default=None)
_IDS = itertools.count(1)


class Meter:
    """One task's progress, sent to the display that was installed when it started."""

    __slots__ = (
        "_closed",
        "_interval",
        "_last",
        "_sink",
        "_start",
        "bound",
        "done",
        "id",
        "info",
        "name",
        "total",
        "unit",
    )

    def __init__(self, sink: Any, name: str, total: float | None, unit: str, bound: bool) -> None:
        self._sink = sink
        self._interval = float(getattr(sink, "interval", 0.1) or 0.0)
        self.id = next(_IDS)
        self.name = name
        self.unit = unit
        self.total = None if total is None else float(total)
        self.bound = bound
        self.done = 0.0
        self.info: dict[str, Any] = {}
        self._start = time.monotonic()
        self._last = -math.inf
        self._closed = False
        self._emit(self._start, finished=False)

    def update(
        self,
        done: float | None = None,
        *,
        advance: float | None = None,
        total: float | None = None,
        **info: Any,
    ) -> None:
        """``done`` units so far (or ``advance`` by that many); a new ``total``;
        ``info``: facts shown beside the bar (``epoch="3/10"``)."""
        if self._closed:
            return
        if done is not None:
            self.done = float(done)
        elif advance:
            self.done += float(advance)
        if total is not None:
            self.total = float(total)
        if info:
            self.info.update(info)
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._emit(now, finished=False)

    def close(self, **info: Any) -> None:
        """The task ended (its last event); later updates are ignored."""
        if self._closed:
            return
        if info:
            self.info.update(info)
        self._closed = True
        self._emit(time.monotonic(), finished=True)

    def _emit(self, now: float, finished: bool) -> None:
        self._last = now
        elapsed = now - self._start
        rate = self.done / elapsed if elapsed > 0 and self.done > 0 else None
        eta = None
        if rate and self.total is not None:
            eta = max(self.total - self.done, 0.0) / rate
        event = ProgressEvent(
            task=self.id,
            name=self.name,
            unit=self.unit,
            done=self.done,
            total=self.total,
            elapsed=elapsed,
            rate=rate,
            eta=0.0 if finished else eta,
            info=dict(self.info),
            bound=self.bound,
            finished=finished,
        )
        try:
            self._sink.update(event)
        except Exception:  # a display must never break the computation
            pass

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # an exception skipped close(): say the task is gone
        with contextlib.suppress(Exception):
            if not self._closed:
                self.close()


class _NullMeter:
    """What :func:`task` returns when nothing displays progress: does nothing."""

    __slots__ = ()

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self, **info: Any) -> None:
        pass

    def __enter__(self) -> _NullMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


_NULL = _NullMeter()


def task(
    name: str, total: float | None = None, unit: str = "step", *, bound: bool = False
) -> Meter | _NullMeter:
    """Start reporting the task ``name`` (``total`` units of ``unit``; ``bound``: the
    total is a cap the task may stop short of). Returns a :class:`Meter`, or a
    do-nothing one when no display is installed (:func:`reporting`)."""
    sink = _SINK.get()
    if sink is None:
        return _NULL
    return Meter(sink, name, total, unit, bound)


@contextlib.contextmanager
def reporting(sink: ProgressSink | None) -> Iterator[ProgressSink | None]:
    """Send the progress of every :func:`task` started inside the block to ``sink``
    (None: to nobody). A :class:`Progress` that does not override ``update`` is not
    installed (its tasks would report to nothing)."""
    if sink is not None and isinstance(sink, Progress) and type(sink).update is Progress.update:
        sink = None
    token = _SINK.set(sink)
    try:
        yield sink
    finally:
        _SINK.reset(token)


# ----------------------------------------------------------------- formatting


def format_seconds(seconds: float | None) -> str:
    """``75`` → ``1:15``; ``4000`` → ``1:06:40``; None → ``?``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _count(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _plural(unit: str, n: float | None) -> str:
    if not unit or n == 1:
        return unit
    return unit if unit.endswith("s") else f"{unit}s"


def describe(event: ProgressEvent, with_name: bool = True) -> str:
    """One line: ``training 1,200/3,000 steps (40%), epoch 4/10, 38 steps/s, ETA 0:47``
    (``≤`` before a total or ETA that is a cap, e.g. an HVP budget)."""
    unit = _plural(event.unit, event.total if event.total is not None else event.done)
    cap = "≤" if event.bound else ""
    if event.total is not None:
        text = f"{_count(event.done)}/{cap}{_count(event.total)} {unit}"
        frac = event.fraction
        if frac is not None and not event.bound:
            text += f" ({100 * frac:.0f}%)"
    else:
        text = f"{_count(event.done)} {unit}"
    parts = [f"{event.name} {text}" if with_name else text, *_details(event)]
    if not event.finished and event.eta is not None:
        parts.append(f"ETA {cap}{format_seconds(event.eta)}")
    return ", ".join(parts)


def _details(event: ProgressEvent) -> list[str]:
    """What a line says between the count and the ETA: the task's own fields
    (``epoch 4/10``), then ``done in 0:02`` or the rate (``38 steps/s``)."""
    parts = [f"{k} {v}" for k, v in event.info.items()]
    if event.finished:
        parts.append(f"done in {format_seconds(event.elapsed)}")
    elif event.rate:
        parts.append(f"{event.rate:,.3g} {_plural(event.unit, event.rate)}/s")
    return parts


# ------------------------------------------------------------------- displays


class RecordingProgress(Progress):
    """Keeps every event (``interval`` 0: each update is one): for tests, and for
    notebooks that draw progress their own way."""

    interval = 0.0

    def __init__(self) -> None:
        self.events: list[ProgressEvent] = []
        self.steps: list[tuple[str, str]] = []

    def update(self, event: ProgressEvent) -> None:
        self.events.append(event)

    def step_started(self, step: str, total: int, pending: int) -> None:
        self.steps.append(("started", step))

    def step_finished(self, step: str, report: StepReport) -> None:
        self.steps.append(("finished", step))

    def of(self, name: str) -> list[ProgressEvent]:
        """The events of tasks called ``name``."""
        return [e for e in self.events if e.name == name]


def _seconds_from_env(default: float = 5.0) -> float:
    raw = os.environ.get(SECONDS_ENV, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        return default
    return value if value >= 0 and math.isfinite(value) else default


def _interactive() -> bool:
    """stderr is a terminal, or this is a Jupyter kernel where rich can draw its widget
    (``ipywidgets`` installed: without it rich's live display warns "install ipywidgets"
    at every step and shows nothing until the step ends, so a notebook gets lines)."""
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):
        pass
    try:
        from rich.console import Console

        if not Console().is_jupyter:
            return False
        import importlib.util

        return importlib.util.find_spec("ipywidgets") is not None
    except Exception:
        return False


class ConsoleProgress(Progress):
    """``lossatlas run``'s display (see the module docstring).

    ``bar``: rich bars (None: on a terminal or in Jupyter, else lines in a log; False:
    lines); ``lines``: print a line when a step ends (``step line: 4 cell(s) computed
    in 1.2 s``); ``every``: seconds between two progress lines in a log (default
    ``LOSSATLAS_PROGRESS_SECONDS`` or 5); ``log``: progress lines at all when there is
    no bar; ``out``/``err``: where step lines and progress lines go (default: stdout
    and stderr at the time of printing); ``console``: the ``rich.console.Console`` the
    bars are drawn on (default: one on stderr; in Jupyter rich draws a widget).
    """

    def __init__(
        self,
        bar: bool | None = None,
        lines: bool = True,
        *,
        every: float | None = None,
        log: bool = True,
        out: TextIO | None = None,
        err: TextIO | None = None,
        console: Any = None,
    ) -> None:
        self.console = console
        self.show_bar = _interactive() if bar is None else bool(bar)
        self.lines = lines
        self.log = log and not self.show_bar
        self.every = _seconds_from_env() if every is None else float(every)
        self._out, self._err = out, err
        self.interval = 0.1 if self.show_bar else min(self.every, 1.0)
        self._rich: Any = None
        self._step_task: Any = None
        self._rows: dict[int, Any] = {}
        self._step = ""
        self._cells = (0, 0)
        self._first = 0
        self._t0 = 0.0
        self._open: dict[int, ProgressEvent] = {}
        self._last_line = 0.0

    # ---- streams
    def _print(self, text: str, err: bool = False) -> None:
        stream = (self._err or sys.stderr) if err else (self._out or sys.stdout)
        print(text, file=stream, flush=True)

    # ---- run-level callbacks
    def step_started(self, step: str, total: int, pending: int) -> None:
        self._step = step
        self._cells = (total - pending, total)
        self._first = total - pending
        self._t0 = time.monotonic()
        self._last_line = self._t0
        self._open.clear()
        if pending == 0 or not self.show_bar:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichBars

        self._rich = RichBars(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            TextColumn("[dim]{task.fields[info]}"),
            console=self.console if self.console is not None else Console(stderr=True),
            transient=False,
        )
        self._rich.start()
        self._step_task = self._rich.add_task(
            f"[bold]step {step}", total=total, completed=total - pending, eta="", info=""
        )

    def cell_done(self, step: str, status: int) -> None:
        done, total = self._cells
        self._cells = (done + 1, total)
        for event in list(self._open.values()):  # a cell's tasks end with it
            self._drop(event.task)
        if self._rich is not None:
            left = self._cell_eta()
            self._rich.update(
                self._step_task, advance=1, eta=f"ETA {format_seconds(left)}" if left else ""
            )
        self._maybe_line()

    def _cell_eta(self) -> float | None:
        """Seconds left for the step's cells, at the pace of the cells done so far in
        this process (cells done before a resume do not count)."""
        done, total = self._cells
        ran = done - self._first
        if ran <= 0 or total <= done:
            return None
        return (time.monotonic() - self._t0) / ran * (total - done)

    def notice(self, message: str) -> None:
        self._print("lossatlas: notice: " + "; ".join(message.splitlines()), err=True)

    def step_finished(self, step: str, report: StepReport) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
            self._rows.clear()
        self._open.clear()
        if not self.lines:
            return
        if report.skipped:
            self._print(f"step {step}: already complete in the store ({report.cells} cells)")
        else:
            extra = f", {report.nonfinite} with NaN/inf" if report.nonfinite else ""
            self._print(
                f"step {step}: {report.computed} cell(s) computed{extra} in {report.seconds:.1f} s"
            )

    # ---- tasks inside the cell
    def update(self, event: ProgressEvent) -> None:
        if event.finished:
            self._drop(event.task)
            return
        self._open[event.task] = event
        if self._rich is not None:
            row = self._rows.get(event.task)
            depth = len(self._rows) if row is None else None
            eta = f"ETA {'≤' if event.bound else ''}{format_seconds(event.eta)}"
            fields = {
                "eta": eta if event.eta is not None else "",
                "info": ", ".join(_details(event)),  # the ETA has its own column
            }
            if row is None:
                indent = "  " * (1 + (depth or 0))
                self._rows[event.task] = self._rich.add_task(
                    f"{indent}{event.name} ({_plural(event.unit, 2)})",
                    total=event.total,
                    completed=event.done,
                    **fields,
                )
            else:
                self._rich.update(row, completed=event.done, total=event.total, **fields)
        self._maybe_line()

    def _drop(self, task_id: int) -> None:
        self._open.pop(task_id, None)
        row = self._rows.pop(task_id, None)
        if row is not None and self._rich is not None:
            self._rich.remove_task(row)

    def _maybe_line(self) -> None:
        """In a log: a line every ``every`` seconds while a step runs."""
        if not self.log or not self._step:
            return
        now = time.monotonic()
        if now - self._last_line < self.every:
            return
        self._last_line = now
        done, total = self._cells
        left = self._cell_eta()
        head = f"lossatlas: step {self._step}: {done}/{total} cells"
        if left:
            head += f", ETA {format_seconds(left)}"
        tasks = [describe(e) for e in self._open.values()]
        self._print(head + ("; " + "; ".join(tasks) if tasks else ""), err=True)
