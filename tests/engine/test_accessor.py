"""The ``.atlas`` accessors on a Dataset / DataTree a user opened with plain xarray."""

from __future__ import annotations

import tomllib
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import xarray as xr
import zarr

import lossatlas.engine  # noqa: F401  (registers .atlas)
from lossatlas.engine import StoreError, make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline

matplotlib.use("Agg")

CONFIG = """
name = "{name}"
seed = {seed}
dtype = "float64"

[model]
plugin = "mlp"
hidden = [8]

[dataset]
plugin = "digits"
limit = 200

[[steps]]
name = "line"
probe = "random-line"
points = 5
directions = 3
span = 0.5
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("accessor") / "s.zarr"
    registry = make_registry()
    for name, seed in (("a", 0), ("b", 5)):
        cfg = parse_config(tomllib.loads(CONFIG.format(name=name, seed=seed)))
        run_pipeline(cfg, str(path), registry, progress=None)
    return path


def open_step(store: Path, group: str) -> xr.Dataset:
    return xr.open_zarr(str(store), group=group, consolidated=False)


def test_dataset_identity_config_and_provenance(store: Path) -> None:
    ds = open_step(store, "b/line")
    assert ds.atlas.is_result
    assert ds.atlas.probe == "random-line"
    assert ds.atlas.name == "b/line"
    assert ds.atlas.status == "complete"
    assert ds.atlas.config["seed"] == 5
    assert ds.atlas.config["model"] == {"plugin": "mlp", "hidden": [8], "seed": 5}
    assert ds.atlas.options == {"points": 5, "directions": 3, "span": 0.5}
    prov = ds.atlas.provenance
    assert prov["seed"] == 5 and prov["dtype"] == "float64" and prov["device"] == "cpu"
    assert prov["torch_version"].split("+")[0][0].isdigit()
    assert {"started", "finished", "lossatlas_version"} <= set(prov)


def test_done_mask_and_completion(store: Path, tmp_path: Path) -> None:
    ds = open_step(store, "a/line")
    assert ds.atlas.cell_dims == ("direction",)
    assert ds.atlas.done.dims == ("direction",)
    assert bool(ds.atlas.done.all()) and ds.atlas.completion == 1.0
    assert not bool(ds.atlas.nonfinite.any())
    # a copy of the store with one cell reset to "not run" and one marked NaN/inf
    import shutil

    copy = tmp_path / "c.zarr"
    shutil.copytree(store, copy)
    group = zarr.open_group(str(copy), path="a/line", mode="r+")
    group["cell_status"][1] = 0
    group["cell_status"][2] = 2
    ds = open_step(copy, "a/line")
    np.testing.assert_array_equal(ds.atlas.done.values, [True, False, True])
    np.testing.assert_array_equal(ds.atlas.nonfinite.values, [False, False, True])
    assert ds.atlas.cells == (2, 3)
    assert ds.atlas.completion == pytest.approx(2 / 3)
    kept = ds.train_loss.where(ds.atlas.done)
    assert np.isnan(kept.sel(direction=1)).all() and not np.isnan(kept.sel(direction=0)).any()


def test_results_and_describe(store: Path) -> None:
    ds = open_step(store, "a/line")
    assert "cell_status" in ds and "cell_status" not in ds.atlas.results
    text = ds.atlas.describe()
    assert text.startswith("a/line: probe random-line [complete], cells 3/3")
    assert "train_loss(direction, alpha)" in text and "loss on the train split" in text


def test_plot_and_savefig(store: Path, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    ds = open_step(store, "a/line")
    fig = ds.atlas.plot(logy=True)
    assert fig.axes and fig.axes[0].get_yscale() == "log"
    plt.close(fig)
    out = tmp_path / "f.png"
    ds.atlas.savefig(str(out), dpi=50)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_not_a_result_is_a_clear_error() -> None:
    ds = xr.Dataset({"x": ("i", [1.0, 2.0])})
    assert not ds.atlas.is_result
    with pytest.raises(StoreError, match="not a lossatlas result"):
        _ = ds.atlas.probe
    with pytest.raises(StoreError, match="not a lossatlas result"):
        ds.atlas.plot()


def test_datatree_accessor(store: Path) -> None:
    import matplotlib.pyplot as plt

    tree = xr.open_datatree(str(store), engine="zarr")
    assert tree.atlas.runs == ["a", "b"]
    assert tree.atlas.steps("a") == ["line"]
    assert tree.atlas.run_config("b")["seed"] == 5
    assert tree.atlas.completion == {"a/line": 1.0, "b/line": 1.0}
    ds = tree.atlas.step("b/line")
    assert ds.atlas.probe == "random-line" and ds.atlas.config["seed"] == 5
    assert set(tree.atlas.results()) == {"a/line", "b/line"}
    fig = tree.atlas.plot("a/line")
    assert fig.axes
    plt.close(fig)
    with pytest.raises(StoreError, match="no run 'zz'.*runs: a, b"):
        tree.atlas.steps("zz")
    with pytest.raises(StoreError, match="no step 'nope'"):
        tree.atlas.step("a/nope")
    with pytest.raises(StoreError, match="RUN/STEP"):
        tree.atlas.step("a")


def test_tree_steps_follow_the_pipeline_order(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    text = CONFIG.format(name="c", seed=0).replace('name = "line"', 'name = "zeta"')
    text += '\n[[steps]]\nname = "alpha"\nprobe = "random-line"\npoints = 3\ndirections = 1\n'
    run_pipeline(parse_config(tomllib.loads(text)), str(path), make_registry(), progress=None)
    tree = xr.open_datatree(str(path), engine="zarr")
    assert tree.atlas.steps("c") == ["zeta", "alpha"]  # the config's order, not sorted
    assert list(tree.atlas.results()) == ["c/zeta", "c/alpha"]


def test_import_lossatlas_alone_registers_the_accessor(store: Path) -> None:
    """In a fresh interpreter: plain xarray + `import lossatlas` gives ds.atlas."""
    import subprocess
    import sys

    code = (
        "import xarray as xr, lossatlas;"
        f"tree = xr.open_datatree({str(store)!r}, engine='zarr');"
        "print(sorted(tree.atlas.runs))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("[")
