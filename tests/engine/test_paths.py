"""Paths between two points compared across probes: PathSummary's barrier and length,
the comparison figure, and ``lossatlas plot`` of steps from interpolation, align,
curve, neb and dss on one pair of minima."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
from pairs import two_minima

from lossatlas.engine import ConfigError, PathSummary, make_registry, plot_paths
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store


def test_barrier_and_normalised_length() -> None:
    p = PathSummary("p", [0, 0.5, 1], [0.2, 0.9, 0.3], length=3.0, distance=2.0)
    assert p.barrier == pytest.approx(0.6) and p.length_norm == pytest.approx(1.5)
    flat = PathSummary("q", [0, 1], [0.5, 0.2], length=1.0, distance=1.0)
    assert flat.barrier == 0.0
    assert np.isnan(PathSummary("r", [0, 1], [np.nan, 1], 1.0, 1.0).barrier)
    assert np.isnan(PathSummary("s", [0, 1], [0, 1], 1.0, 0.0).length_norm)
    with pytest.raises(ValueError, match="one length"):
        PathSummary("t", [0, 1], [0, 1, 2], 1.0, 1.0)


def test_the_figure_labels_every_path_with_its_numbers() -> None:
    import matplotlib.pyplot as plt

    paths = {
        "lines": [PathSummary("linear", [0, 0.5, 1], [0.1, 1.1, 0.1], 1.0, 1.0, "linear")],
        "curve": [PathSummary("Bezier", [0, 0.4, 1], [0.1, 0.2, 0.1], 1.3, 1.0, "bezier")],
    }
    fig = plot_paths(paths, logy=True)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert " 1" in texts and " 0.1" in texts and " 1.300" in texts
    labels = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert labels == ["lines: linear", "curve: Bezier"]
    plt.close(fig)
    with pytest.raises(ConfigError, match="no path"):
        plot_paths([])


TEXT = (
    two_minima("p")
    + """
[[steps]]
name = "align"
probe = "align"
a = "a"
b = "b"
points = 5
[[steps]]
name = "lines"
probe = "interpolation"
pairs = [["a", "b"], ["a", "align"]]
labels = ["linear", "aligned linear"]
points = 9
zoom_points = 0
[[steps]]
name = "curve"
probe = "curve"
pairs = [["a", "b"]]
epochs = 2
batch_size = 60
points = 9
[[steps]]
name = "neb"
probe = "neb"
pairs = [["a", "b"]]
pivots = 1
cycles = 1
steps = 10
sub_pivots = 3
[[steps]]
name = "dss"
probe = "dss"
pairs = [["a", "b"]]
thresholds = [1.0]
bead_steps = 50
max_beads = 2
points = 5
[[steps]]
name = "line"
probe = "random-line"
at = "a"
points = 5
directions = 1
"""
)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("paths") / "s.zarr"
    run_pipeline(parse_config(tomllib.loads(TEXT)), str(path), make_registry(), progress=None)
    return path


def test_every_path_probe_declares_its_paths(store: Path) -> None:
    st = Store(str(store))
    reg = make_registry()
    found = {
        step: reg.get("probe", probe).paths(st.open_step("p", step).load())
        for step, probe in (
            ("lines", "interpolation"),
            ("align", "align"),
            ("curve", "curve"),
            ("neb", "neb"),
            ("dss", "dss"),
        )
    }
    assert [len(v) for v in found.values()] == [2, 2, 1, 1, 1]
    for paths in found.values():
        for p in paths:
            assert p.position[0] == 0.0 and p.position[-1] == pytest.approx(1.0)
            assert np.all(np.diff(p.position) > 0)
            assert p.length_norm >= 1.0 - 1e-12 and p.barrier >= 0
    # the naive line is the same path whichever probe drew it
    assert found["lines"][0].barrier == pytest.approx(found["align"][0].barrier, rel=0.2)
    assert found["lines"][0].distance == found["curve"][0].distance == found["neb"][0].distance
    assert reg.get("probe", "random-line").paths(st.open_step("p", "line").load()) == []


def test_lossatlas_plot_compares_paths_of_several_probes(store: Path, run_cli, tmp_path) -> None:
    out = tmp_path / "paths.png"
    groups = ["p/lines", "p/curve", "p/neb", "p/dss"]
    result = run_cli("plot", store, *groups, "-o", out, "--logy")
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 20_000
    # two steps of a probe that draws one result at a time: compared as paths too
    result = run_cli("plot", store, "p/lines", "p/align", "-o", out)
    assert result.exit_code == 0, result.output
    # a step without paths cannot join the comparison: one clear line
    result = run_cli("plot", store, "p/lines", "p/line", "-o", out)
    assert result.exit_code == 2
    assert "holds no path" in result.output and "p/line" in result.output
