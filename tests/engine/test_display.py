"""The report's progress bar: drawn only where someone watches, as a run's bars are."""

from __future__ import annotations

import pytest

from lossatlas.engine import progress
from lossatlas.engine.display import RichReportProgress


@pytest.mark.parametrize(
    ("watched", "quiet", "drawn"),
    [(True, False, True), (True, True, False), (False, False, False)],
)
def test_a_bar_only_where_someone_watches(
    monkeypatch: pytest.MonkeyPatch, watched: bool, quiet: bool, drawn: bool
) -> None:
    monkeypatch.setattr(progress, "_interactive", lambda: watched)
    bar = RichReportProgress(quiet)
    bar.start(3)
    try:
        assert (bar.bar is not None) is drawn
        bar.advance("run/step")  # a no-op without a bar
    finally:
        bar.stop()
    assert bar.bar is None


def test_nothing_to_draw_starts_no_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "_interactive", lambda: True)
    bar = RichReportProgress(quiet=False)
    bar.start(0)
    assert bar.bar is None
