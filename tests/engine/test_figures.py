"""The shared finish of probe figures: units in labels, readable log ticks, labelled
colour bars, markers that show on any map."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from lossatlas.engine import figures

matplotlib.use("Agg")


def _ds() -> xr.Dataset:
    ds = xr.Dataset(
        {
            "train_loss": ("r", [1.0, 2.0], {"units": "1", "long_name": "train loss"}),
            "train_accuracy": ("r", [0.5, 0.6], {"units": "1"}),
            "trace": ("r", [1.0, 2.0], {"units": "1", "comment": "in units of loss / parameter²"}),
            "threshold": ("r", [1.0, 2.0], {"units": "1", "comment": "in units of loss"}),
            "seconds": ("r", [1.0, 2.0], {"units": "s"}),
            "metric": (
                "r",
                [1.0, 2.0],
                {"units": "1", "comment": "in units of the run's loss (nats for ...)"},
            ),
        },
        coords={"r": ("r", [0.1, 1.0], {"units": "1", "comment": "in units of ‖x‖"})},
        attrs={"loss_units": "nats"},
    )
    return ds


def test_units_come_from_the_stored_result() -> None:
    ds = _ds()
    assert figures.units_of(ds, "train_loss") == "nats"
    assert figures.units_of(ds, "train_accuracy") == ""
    assert figures.units_of(ds, "trace") == "nats / parameter²"
    assert figures.units_of(ds, "threshold") == "nats"
    assert figures.units_of(ds, "seconds") == "s"
    assert figures.units_of(ds, "r") == "‖x‖"
    assert figures.units_of(ds, "metric") == ""
    assert figures.quantity(ds, "train_loss") == "train loss [nats]"
    assert figures.quantity(ds, "r", "radius r") == "radius r [‖x‖]"
    assert figures.quantity(ds, "train_accuracy") == "train accuracy"


@pytest.mark.parametrize(("lo", "hi"), [(0.19, 0.6), (0.19, 0.21), (0.05, 3.0), (2.0, 40.0)])
def test_log_ticks_are_plain_numbers(lo: float, hi: float) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [lo, hi])
    figures.log_axis(ax, "y")
    fig.canvas.draw()
    ymin, ymax = ax.get_ylim()
    shown = [
        t.get_text()
        for t, v in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
        if ymin <= v <= ymax and t.get_text()
    ]
    plt.close(fig)
    assert len(shown) >= 2, shown
    for text in shown:  # never 2×10⁻¹ or 1.96×10⁻¹
        assert "times" not in text and "$" not in text, shown
        float(text)


def test_plain_number() -> None:
    assert figures.plain_number(0.2) == "0.2"
    assert figures.plain_number(1500) == "1500"
    assert figures.plain_number(1e-5) == "$10^{-5}$"
    assert figures.plain_number(2e6) == "$2\\times10^{6}$"
    assert figures.plain_number(0) == "0"


def test_colorbars_need_a_label_and_log_bars_read_plainly() -> None:
    fig, ax = plt.subplots()
    z = np.geomspace(0.2, 0.9, 12).reshape(3, 4)
    norm, levels = figures.map_norm(z, log=True)
    cs = ax.contourf(z, levels=levels, norm=norm)
    with pytest.raises(ValueError, match="needs a label"):
        figures.colorbar(fig, cs, ax, " ")
    cb = figures.colorbar(fig, cs, ax, "train loss [nats]")
    fig.canvas.draw()
    labels = [t.get_text() for t in cb.ax.get_yticklabels() if t.get_text()]
    plt.close(fig)
    assert cb.ax.get_ylabel() == "train loss [nats]"
    assert labels and all("$" not in t for t in labels), labels


def test_map_norm_is_log_only_for_positive_maps_and_bounds_its_range() -> None:
    assert figures.map_norm(np.array([-1.0, 2.0]), log=True)[0] is None
    norm, levels = figures.map_norm(np.array([1e-20, 1.0]), log=True, levels=5)
    assert norm.vmin == pytest.approx(1e-6) and len(levels) == 5


def test_markers_have_an_edge_that_contrasts_with_their_fill() -> None:
    fig, ax = plt.subplots()
    for kind in figures.MARKERS:
        line = figures.mark(ax, 0, 0, kind)
        assert line.get_markeredgecolor() != line.get_markerfacecolor(), kind
        assert line.get_zorder() > 2
    plt.close(fig)


def test_a_long_log_axis_uses_one_notation() -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [2.0, 5e5])
    figures.log_axis(ax, "y")
    fig.canvas.draw()
    ymin, ymax = ax.get_ylim()
    shown = [
        t.get_text()
        for t, v in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
        if ymin <= v <= ymax and t.get_text()
    ]
    plt.close(fig)
    assert len(shown) >= 4 and all(t.startswith("$10^{") for t in shown), shown
