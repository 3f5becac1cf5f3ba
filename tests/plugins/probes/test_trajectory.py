"""trajectory probe: the α/β projection against brute force, the deep-linear toy's
real surface, the control plane, plot."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.plugins.probes.trajectory import Trajectory, project_trajectory


def test_projection_against_brute_force():
    rng = np.random.default_rng(0)
    T = np.cumsum(rng.normal(size=(30, 50)), axis=0)
    start, end = T[0], T[-1]
    alpha, beta, V, u = project_trajectory(T, start, end)
    for t in range(len(T)):
        d = T[t] - start
        # α: the coordinate along u; β: the distance from the line, by least squares
        c = np.linalg.lstsq((end - start)[:, None], d, rcond=None)[0][0]
        assert alpha[t] == pytest.approx(c * np.linalg.norm(end - start), rel=1e-10)
        assert beta[t] == pytest.approx(np.linalg.norm(d - c * (end - start)), abs=1e-9)
        np.testing.assert_allclose(start + alpha[t] * u + beta[t] * V[t], T[t], atol=1e-9)
    assert alpha[0] == 0 and beta[0] == 0 and beta[-1] == pytest.approx(0, abs=1e-9)
    assert np.abs(V[1:-1] @ u).max() < 1e-10


TOY = """
name = "toy"
seed = 0
dtype = "float64"
[model]
plugin = "deep-linear"
init = [0.1, 0.05]
[dataset]
plugin = "deep-linear"
[[steps]]
name = "train"
probe = "train"
lr = 0.1
epochs = 40
batch_size = 0
record_every = 2
[[steps]]
name = "traj"
probe = "trajectory"
grid = 9
control_grid = 7
surface = "{surface}"
"""


@pytest.mark.parametrize("surface", ["paper", "plane"])
def test_deep_linear_toy(tmp_path, surface):
    cfg = parse_config(tomllib.loads(TOY.format(surface=surface)))
    path = tmp_path / "s.zarr"
    run_pipeline(cfg, str(path), make_registry(), progress=None)
    store = Store(path)
    ds = store.open_step("toy", "traj").load()
    tr = store.open_step("toy", "train").load()
    # trained to the hyperbola w1·w2 = 1
    w = tr["point"].values
    assert w[0] * w[1] == pytest.approx(1.0, abs=1e-3)
    # the real surface over (w1, w2) is (1 − w1·w2)²
    W1, W2 = np.meshgrid(ds["w1"].values, ds["w2"].values, indexing="ij")
    np.testing.assert_allclose(
        ds["weights_train_loss"].values, (1 - W1 * W2) ** 2, rtol=1e-12, atol=1e-14
    )
    np.testing.assert_array_equal(ds["traj_w1"].values, tr["trajectory"].values[:, 0])
    # α runs from 0 to ‖θ_f − θ_i‖, β starts and ends at 0
    assert ds["traj_alpha"].values[0] == 0
    assert ds["traj_alpha"].values[-1] == pytest.approx(float(ds["distance"]), rel=1e-12)
    assert ds["traj_beta"].values[-1] == pytest.approx(0, abs=1e-12)
    assert float(ds["max_residual"]) == ds["traj_beta"].values.max()
    assert 0 < float(ds["max_residual"]) < float(ds["max_norm"])
    np.testing.assert_allclose(
        ds["traj_train_loss"].values, (1 - tr["trajectory"].values.prod(axis=1)) ** 2, rtol=1e-12
    )
    # the surface on the β = 0 line is the interpolation init → solution
    a = ds["alpha"].values
    u = (w - tr["initial"].values) / float(ds["distance"])
    on_line = tr["initial"].values[None, :] + a[:, None] * u[None, :]
    b0 = np.argmin(np.abs(ds["beta"].values))
    if ds["beta"].values[b0] == 0:
        np.testing.assert_allclose(
            ds["surface_train_loss"].values[:, b0], (1 - on_line.prod(axis=1)) ** 2, rtol=1e-10
        )
    # the control plane passes through the solution
    assert ds["control_a"].values[-1] == 0 and ds["control_b"].values[-1] == 0
    assert ds["control_train_loss"].shape == (7, 7)
    fig = Trajectory().plot(ds, logy=True)
    assert len([ax for ax in fig.axes if ax.get_visible()]) >= 4
    fig.savefig(tmp_path / "t.png")
