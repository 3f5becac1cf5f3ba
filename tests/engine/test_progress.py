"""Progress inside long cells: trainings, eigen-solvers and DSS report to whatever
display is installed, with an ETA; a log gets a line every few seconds."""

from __future__ import annotations

import io
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from lossatlas.engine import make_registry, progress
from lossatlas.engine.config import parse_config
from lossatlas.engine.curvature import extreme_eigenpairs
from lossatlas.engine.progress import (
    ConsoleProgress,
    ProgressEvent,
    RecordingProgress,
    describe,
    reporting,
)
from lossatlas.engine.runner import run_pipeline

HEADER = """
name = "p"
seed = 0
dtype = "float64"

[model]
plugin = "mlp"
hidden = [8]

[dataset]
plugin = "digits"
limit = 160
"""

TRAIN = """
[[steps]]
name = "train"
probe = "train"
epochs = 4
batch_size = 16
"""


def test_without_a_display_a_task_does_nothing() -> None:
    bar = progress.task("training", 10)
    bar.update(3, epoch="1/2")
    bar.close()
    assert type(bar).__name__ == "_NullMeter"


def test_a_long_training_reports_its_steps_and_epochs_with_an_eta(tmp_path: Path) -> None:
    sink = RecordingProgress()
    config = parse_config(tomllib.loads(HEADER + TRAIN))
    run_pipeline(config, str(tmp_path / "s.zarr"), make_registry(), progress=sink)
    events = sink.of("training")
    total = int(events[0].total)  # 4 epochs of mini-batches of 16
    assert total % 4 == 0 and total >= 20
    assert events[0].done == 0 and events[0].unit == "step"
    assert [e.done for e in events[:-1]] == list(range(total + 1))  # every step (interval 0)
    assert events[-1].finished and events[-1].done == total
    assert events[total].info["epoch"] == "4/4"
    with_eta = [e for e in events[1:-1] if e.eta is not None]
    assert len(with_eta) == total
    assert with_eta[-1].eta == 0.0 and all(e.rate and e.rate > 0 for e in with_eta)
    assert ("started", "train") in sink.steps and ("finished", "train") in sink.steps


def test_lanczos_reports_hvps_against_its_budget() -> None:
    D = 600  # above the dense limit: Lanczos runs
    diag = torch.linspace(-1.0, 3.0, D, dtype=torch.float64)

    def hvp(V: torch.Tensor) -> torch.Tensor:
        return V * diag

    sink = RecordingProgress()
    with reporting(sink):
        result = extreme_eigenpairs(hvp, D, k=2, which="both", method="lanczos", max_hvp=400)
    events = sink.of("Lanczos")
    assert events and all(e.bound and e.total == 400 and e.unit == "HVP" for e in events)
    assert events[-1].finished
    assert events[-1].done == result.n_hvp - result.n_hvp_check
    assert "≤" in describe(events[-2])
    assert any("residual" in e.info for e in events)


def test_dss_reports_its_beads(tmp_path: Path) -> None:
    step = """
[[steps]]
name = "dss"
probe = "dss"
pairs = [["init:1", "init:2"]]
thresholds = [2.2]
points = 3
bead_steps = 30
max_beads = 2
max_depth = 2
train_endpoints = true
"""
    sink = RecordingProgress()
    config = parse_config(tomllib.loads(HEADER + step))
    run_pipeline(config, str(tmp_path / "s.zarr"), make_registry(), progress=sink)
    beads = sink.of("DSS beads")
    assert beads and beads[0].total == 2 and beads[0].bound and beads[-1].finished
    assert sink.of("bead training"), "the beads' own training is reported too"


def test_a_log_gets_lines_with_the_step_the_task_and_an_eta(tmp_path: Path) -> None:
    err, out = io.StringIO(), io.StringIO()
    display = ConsoleProgress(bar=False, every=0.0, out=out, err=err)
    config = parse_config(tomllib.loads(HEADER + TRAIN))
    run_pipeline(config, str(tmp_path / "s.zarr"), make_registry(), progress=display)
    lines = err.getvalue().splitlines()
    assert any(
        line.startswith("lossatlas: step train: 0/1 cells; training ")
        and "steps (" in line
        and "ETA" in line
        for line in lines
    ), lines[:5]
    assert "step train: 1 cell(s) computed in" in out.getvalue()


def test_a_log_line_comes_at_most_every_few_seconds(tmp_path: Path) -> None:
    err = io.StringIO()
    display = ConsoleProgress(bar=False, every=3600.0, out=io.StringIO(), err=err)
    config = parse_config(tomllib.loads(HEADER + TRAIN))
    run_pipeline(config, str(tmp_path / "s.zarr"), make_registry(), progress=display)
    assert err.getvalue() == ""  # the run took less than an hour


def test_a_failing_display_never_breaks_the_computation() -> None:
    class Broken(RecordingProgress):
        def update(self, event: ProgressEvent) -> None:
            raise RuntimeError("display gone")

    with reporting(Broken()):
        bar = progress.task("x", 3)
        bar.update(1)
        bar.close()


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (
            ProgressEvent(1, "training", "step", 30, 120, 10.0, 3.0, 30.0, {"epoch": "1/4"}),
            "training 30/120 steps (25%), epoch 1/4, 3 steps/s, ETA 0:30",
        ),
        (
            ProgressEvent(2, "Lanczos", "HVP", 50, 400, 5.0, 10.0, 35.0, bound=True),
            "Lanczos 50/≤400 HVPs, 10 HVPs/s, ETA ≤0:35",
        ),
        (
            ProgressEvent(3, "fits", "direction", 8, None, 2.0, None, None, finished=True),
            "fits 8 directions, done in 0:02",
        ),
    ],
)
def test_describe(event: ProgressEvent, text: str) -> None:
    assert describe(event) == text


def test_the_eta_is_honest_about_a_steady_task(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(np.arange(0.0, 100.0, 1.0))
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(clock)))
    sink = RecordingProgress()
    with reporting(sink):
        bar = progress.task("t", 10)  # starts at t = 0
        for i in range(1, 5):
            bar.update(i)  # one unit per second
    assert [e.eta for e in sink.events[1:]] == [9.0, 8.0, 7.0, 6.0]


def test_a_terminal_shows_a_bar_per_step_and_a_row_per_task(tmp_path: Path) -> None:
    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=140, color_system=None)
    display = ConsoleProgress(bar=True, console=console, out=io.StringIO())
    display.interval = 0.0  # draw every event: the run is short
    seen: list[list[str]] = []
    original = display.update

    def spy(event: ProgressEvent) -> None:
        original(event)
        if display._rich is not None:
            seen.append([t.description.strip() for t in display._rich.tasks])

    display.update = spy  # type: ignore[method-assign]
    config = parse_config(tomllib.loads(HEADER + TRAIN))
    run_pipeline(config, str(tmp_path / "s.zarr"), make_registry(), progress=display)
    assert ["[bold]step train", "training (steps)"] in seen
    assert "step train" in screen.getvalue()
    assert display._rich is None  # stopped when the step ended


def test_a_task_row_shows_its_eta_once() -> None:
    """The row's eta column holds the ETA; its info column the task's fields and rate,
    not the ETA again (a log line says all of it)."""
    from rich.console import Console

    console = Console(file=io.StringIO(), force_terminal=True, width=140, color_system=None)
    display = ConsoleProgress(bar=True, console=console, out=io.StringIO())
    display.step_started("train", 4, 4)
    try:
        event = ProgressEvent(1, "training", "step", 30, 120, 10.0, 3.0, 30.0, {"epoch": "1/4"})
        display.update(event)
        assert display._rich is not None
        row = display._rich.tasks[-1]
        assert row.fields == {"eta": "ETA 0:30", "info": "epoch 1/4, 3 steps/s"}
    finally:
        if display._rich is not None:
            display._rich.stop()
    assert describe(event).endswith("epoch 1/4, 3 steps/s, ETA 0:30")


@pytest.mark.parametrize("widgets", [True, False])
def test_a_notebook_gets_bars_only_where_rich_can_draw_them(
    monkeypatch: pytest.MonkeyPatch, widgets: bool
) -> None:
    """In Jupyter rich's live display needs ipywidgets; without it a run would warn
    "install ipywidgets" at every step and show nothing until the step ends (seen in a
    real kernel), so the notebook gets the log's lines instead."""
    import importlib.util

    import rich.console

    monkeypatch.setattr(rich.console, "_is_jupyter", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (
            (real("json") if widgets else None) if name == "ipywidgets" else real(name, *a)
        ),
    )
    shown = ConsoleProgress(err=io.StringIO())
    assert shown.show_bar is widgets
    assert shown.log is not widgets
