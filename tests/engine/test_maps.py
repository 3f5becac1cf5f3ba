"""2-D maps of any result: found without knowing the probe, drawn as 3-D surfaces
(``plot --surface``, ``ds.atlas.plot(surface=True)``), exported to VTK and read back
equal to the stored map; clear errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from test_vtk import read_vts

from lossatlas.engine import ConfigError, make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.maps import export_vts, find_map, plot_surfaces
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store

TEXT = """
name = "m"
seed = 0
dtype = "float64"
[model]
plugin = "mlp"
hidden = [8]
[dataset]
plugin = "digits"
limit = 120
[[steps]]
name = "maps"
probe = "hessian-directions"
points = 5
span = 0.5
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("maps") / "s.zarr"
    run_pipeline(parse_config(tomllib.loads(TEXT)), str(path), make_registry(), progress=None)
    return path


def test_the_map_is_found_without_knowing_the_probe(store: Path) -> None:
    ds = Store(str(store)).open_step("m", "maps").load()
    grid = find_map(ds)
    assert (grid.x_name, grid.y_name) == ("alpha", "beta")
    assert (
        "train_loss[map=hessian]" in grid.fields
        and "validation_accuracy[map=random]" in grid.fields
    )
    np.testing.assert_array_equal(
        grid.fields["train_loss[map=random]"], ds["train_loss"].sel(map="random").values
    )
    assert "loss on the train split" in grid.info["train_loss[map=hessian]"]


def test_a_result_without_a_map_and_ambiguous_axes_are_clear_errors() -> None:
    ds = xr.Dataset(
        {"train_loss": (("alpha",), np.zeros(3))},
        coords={"alpha": [0.0, 1.0, 2.0]},
        attrs={"probe": "x"},
    )
    with pytest.raises(ConfigError, match="has no 2-D map"):
        find_map(ds)
    cube = xr.Dataset(
        {"a": (("x", "y", "z"), np.zeros((2, 3, 4)))},
        coords={"x": [0.0, 1.0], "y": [0.0, 1.0, 2.0], "z": np.arange(4.0)},
    )
    with pytest.raises(ConfigError, match="--axes"):
        find_map(cube)
    assert set(find_map(cube, ["y", "z"]).fields) == {"a[x=0.0]", "a[x=1.0]"}
    # surfaces draw the maps over every pair of axes
    import matplotlib.pyplot as plt

    fig = plot_surfaces(cube, max_panels=20)
    surfaces = [ax for ax in fig.axes if ax.name == "3d"]
    assert len(surfaces) == 4 + 3 + 2  # (x, y) per z, (x, z) per y, (y, z) per x
    bars = [ax for ax in fig.axes if getattr(ax, "_colorbar", None)]
    assert len(bars) == len(surfaces) and all(ax.get_ylabel() == "a" for ax in bars)
    plt.close(fig)
    with pytest.raises(ConfigError, match="not a numeric dim"):
        find_map(cube, ["y", "w"])


def test_surfaces_from_the_cli_and_the_accessor(store: Path, run_cli, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    out = tmp_path / "surface.png"
    result = run_cli("plot", store, "m/maps", "--surface", "--logy", "-o", out)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 10_000
    ds = Store(str(store)).open_step("m", "maps")
    fig = ds.atlas.plot(surface=True)
    assert [ax.get_title() for ax in fig.axes if ax.name == "3d"] == [
        "train_loss[map=hessian]",
        "train_loss[map=random]",
        "validation_loss[map=hessian]",
        "validation_loss[map=random]",
    ]
    plt.close(fig)
    fig = plot_surfaces(ds.load(), variables=["train_accuracy"])
    assert len([ax for ax in fig.axes if ax.name == "3d"]) == 2
    plt.close(fig)


def test_export_writes_a_vtk_grid_equal_to_the_stored_maps(
    store: Path, run_cli, tmp_path: Path
) -> None:
    out = tmp_path / "maps.vts"
    result = run_cli("export", store, "m/maps", "--format", "vtk", "-o", out)
    assert result.exit_code == 0, result.output
    ds = Store(str(store)).open_step("m", "maps").load()
    (nx, ny), points, arrays = read_vts(out)
    assert (nx, ny) == (ds.sizes["alpha"], ds.sizes["beta"])
    for m in ds["map"].values:
        for var in ("train_loss", "validation_loss", "train_accuracy", "validation_accuracy"):
            np.testing.assert_array_equal(arrays[f"{var}[map={m}]"], ds[var].sel(map=m).values)
    np.testing.assert_array_equal(np.unique(points[:, 0]), ds["alpha"].values)
    lifted = export_vts(ds, tmp_path / "lifted.vts", height="train_loss[map=hessian]")
    _s, points, _a = read_vts(lifted)
    np.testing.assert_array_equal(
        points[:, 2].reshape(ny, nx).T, ds["train_loss"].sel(map="hessian").values
    )


def test_export_errors_are_one_line(store: Path, run_cli, tmp_path: Path) -> None:
    result = run_cli("export", store, "m/maps", "--format", "vtk", "-o", tmp_path / "m.png")
    assert result.exit_code != 0 and ".vts" in result.output
    result = run_cli(
        "export", store, "m/maps", "--format", "vtk", "-o", tmp_path / "m.vts", "--height", "bogus"
    )
    assert result.exit_code != 0 and "maps:" in result.output
    result = run_cli("export", store, "m/nope", "--format", "vtk", "-o", tmp_path / "m.vts")
    assert result.exit_code != 0 and "no result for step 'nope'" in result.output
    assert not (tmp_path / "m.vts").exists()
