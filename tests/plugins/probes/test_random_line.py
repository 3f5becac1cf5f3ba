"""random-line probe: labelled coords, and a figure that fits however many directions."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib
import pytest

from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.plugins.probes.random_line import LEGEND_DIRECTIONS, RandomLine

matplotlib.use("Agg")


def _line(tmp_path: Path, tiny_config: Any, registry: Any, directions: int) -> Any:
    data = tiny_config(step={"points": 5, "directions": directions})
    path = tmp_path / "s.zarr"
    run_pipeline(parse_config(data, "t.toml"), str(path), registry, progress=None)
    return Store(str(path)).open_step("tiny", "line").load()


def test_every_coord_says_what_it_is(tmp_path: Path, tiny_config: Any, registry: Any) -> None:
    ds = _line(tmp_path, tiny_config, registry, directions=2)
    for name in ("direction", "alpha"):
        assert ds[name].attrs.get("description"), name
        assert "units" in ds[name].attrs, name
    assert "random unit direction" in ds["direction"].attrs["description"]


@pytest.mark.parametrize("directions", [3, LEGEND_DIRECTIONS, LEGEND_DIRECTIONS + 1, 24])
def test_the_figure_fits_without_a_layout_warning(
    tmp_path: Path, tiny_config: Any, registry: Any, directions: int
) -> None:
    import matplotlib.pyplot as plt

    ds = _line(tmp_path, tiny_config, registry, directions)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Tight layout not applied" among them
        fig = RandomLine().plot(ds)
        fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[-2:] == ["train", "validation"]
    if directions <= LEGEND_DIRECTIONS:
        assert labels[:-2] == [f"direction {d}" for d in range(directions)]
        assert len(fig.axes) == 2  # loss and accuracy, no colour bar
    else:
        assert labels == ["train", "validation"]
        assert fig.axes[-1].get_ylabel() == "direction"  # the colour bar
    legend = ax.get_legend().get_window_extent()
    box = ax.get_window_extent()
    assert box.x0 <= legend.x0 and legend.x1 <= box.x1
    assert box.y0 <= legend.y0 and legend.y1 <= box.y1
    plt.close(fig)
