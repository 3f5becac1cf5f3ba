"""pca-trajectory subspace: its directions and variances are numpy's SVD of the centred
offsets (float64); the path's projection; a map over the plane with the trajectory
drawn on it; clear errors."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

from lossatlas.engine import ConfigError, make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.plugins.subspaces.pca_trajectory import trajectory_pca


@pytest.mark.parametrize(("R", "D", "dim"), [(12, 300, 2), (40, 30, 3), (5, 1000, 4)])
def test_directions_and_variances_are_numpys_svd(R: int, D: int, dim: int) -> None:
    rng = np.random.default_rng(R)
    # a path with a dominant direction, like a training run
    M = np.cumsum(rng.normal(size=(R, D)) * np.linspace(3, 0.1, D), axis=0)
    got = trajectory_pca(M, dim)
    Mc = M - M.mean(0)
    _u, s, Vt = np.linalg.svd(Mc, full_matrices=False)
    for j in range(dim):
        sign = np.sign(got["components"][j] @ Vt[j])
        assert np.allclose(got["components"][j], sign * Vt[j], atol=1e-10)
        # scikit-learn's sign: the largest |entry| of the left vector is positive
        u = Mc @ got["components"][j]
        assert u[np.argmax(np.abs(u))] > 0
    assert np.allclose(got["singular_values"], s[:dim], rtol=1e-10)
    assert np.allclose(got["explained_variance"], s[:dim] ** 2 / (R - 1), rtol=1e-10)
    assert np.allclose(got["explained_variance_ratio"], s[:dim] ** 2 / np.sum(s**2), rtol=1e-10)
    G = got["components"] @ got["components"].T
    assert np.allclose(G, np.eye(dim), atol=1e-14)


def test_too_few_directions_is_a_clear_error() -> None:
    M = np.outer(np.arange(6.0), np.ones(10))  # a straight path: one direction
    with pytest.raises(ConfigError, match="spans 1 direction"):
        trajectory_pca(M, 2)


TEXT = """
name = "r"
seed = 0
dtype = "float64"
[model]
plugin = "mlp"
hidden = [16]
[dataset]
plugin = "digits"
limit = 300
[[steps]]
name = "train"
probe = "train"
lr = 0.1
momentum = 0.9
epochs = 3
batch_size = 32
record_every = {every}
[[steps]]
name = "map"
probe = "hessian-directions"
at = "train"
maps = []
points = 7
span = 1.0
planes = {{ pca = {{ plugin = "pca-trajectory", of = "train", scale = "{scale}" }} }}
"""


def run(tmp_path, every=2, scale="fit"):
    cfg = parse_config(tomllib.loads(TEXT.format(every=every, scale=scale)))
    path = str(tmp_path / "s.zarr")
    run_pipeline(cfg, path, make_registry(), progress=None)
    return Store(path)


@pytest.mark.parametrize("scale", ["fit", "unit"])
def test_a_map_over_the_plane_with_the_path_on_it(tmp_path, scale: str) -> None:
    import matplotlib.pyplot as plt

    store = run(tmp_path, scale=scale)
    ds = store.open_step("r", "map").load()
    train = store.open_step("r", "train").load()
    plane = json.loads(ds.attrs["plane_pca"])
    assert plane["kind"] == "pca-trajectory" and plane["snapshots"] == train.sizes["record"]
    ratio = plane["explained_variance_ratio"]
    assert ratio[0] > ratio[1] > 0 and sum(ratio) <= 1 + 1e-12
    coords = np.asarray(plane["path_coords"])
    # the last snapshot is the centre of the map (the trained point itself)
    assert np.allclose(coords[-1], 0, atol=1e-12)
    # the coordinates are the projections of θ_i − θ_n on the stored directions
    T = train["trajectory"].values - train["point"].values
    W = ds["directions"].values[0]  # (axis, param)
    assert np.allclose(T @ W.T / (W * W).sum(1), coords, atol=1e-9)
    if scale == "fit":
        assert np.max(np.abs(coords)) == pytest.approx(1 / 1.2)
    else:
        assert np.allclose(np.linalg.norm(W, axis=1), 1.0)
    fig = make_registry().get("probe", "hessian-directions").plot(ds)
    labels = [ax.get_xlabel() for ax in fig.axes]
    assert any("PC1" in lab and "% of the variance" in lab for lab in labels)
    assert any(
        "trajectory" in t.get_text()
        for ax in fig.axes
        if ax.get_legend()
        for t in ax.get_legend().get_texts()
    )
    plt.close(fig)


def test_a_run_without_snapshots_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="snapshot"):
        run(tmp_path, every=0)


def test_a_trajectory_step_that_does_not_exist_is_refused_before_anything_runs(tmp_path) -> None:
    text = TEXT.format(every=2, scale="fit").replace('of = "train"', 'of = "trian"')
    with pytest.raises(ConfigError, match="names no earlier step.*did you mean 'train'"):
        run_pipeline(parse_config(tomllib.loads(text)), str(tmp_path / "s.zarr"), make_registry())
    assert not (tmp_path / "s.zarr").exists()
