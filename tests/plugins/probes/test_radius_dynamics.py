"""radius-dynamics: constrained runs keep r0, free runs from small r0 grow, exponent fit."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch

from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.context import StepContext
from lossatlas.engine.geometry import draw_init, init_radius
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.engine.sweep import cell_seed
from lossatlas.plugins.probes.radius_dynamics import growth_exponent, snapshot_steps

CONFIG = """
name = "rd"
seed = 0
dtype = "float64"
[model]
plugin = "mlp"
hidden = [8]
[dataset]
plugin = "digits"
limit = 200
[[steps]]
name = "radius"
probe = "radius-dynamics"
starts = [0.05, 1.0]
epochs = 2
lr = 0.01
batch_size = 40
record_every = 2
samples = 2
"""


def test_growth_exponent_recovers_sqrt():
    t = np.arange(0, 2001, 10)
    r = np.sqrt(0.01**2 + 0.5 * t)
    assert growth_exponent(t, r) == pytest.approx(0.5, abs=0.02)


def test_snapshot_steps_are_log_spaced_recorded_steps():
    record = np.arange(0, 1001, 2)
    snaps = snapshot_steps(record, 5)
    assert snaps[0] == 0 and snaps[-1] == 1000 and len(snaps) == 5
    assert np.isin(snaps, record).all()
    np.testing.assert_allclose(np.diff(np.log(snaps[1:])), np.log(500) / 3, rtol=0.05)
    assert snapshot_steps(record, 0).size == 0
    # a short run: fewer distinct steps than asked for
    np.testing.assert_array_equal(snapshot_steps(np.array([0, 1, 2]), 11), [0, 1, 2])
    np.testing.assert_array_equal(snapshot_steps(np.array([0, 4]), 2), [0, 4])
    np.testing.assert_array_equal(snapshot_steps(record, 2), [0, 1000])
    assert len(snapshot_steps(record, 3)) == 3


def test_radius_dynamics_end_to_end(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from lossatlas.plugins.probes.radius_dynamics import RadiusDynamics

    cfg = parse_config(tomllib.loads(CONFIG))
    path = str(tmp_path / "s.zarr")
    run_pipeline(cfg, path, make_registry(), progress=None)
    ds = Store(path).open_step("rd", "radius")
    rx = float(ds["r_xavier"])
    steps = ds["step"].values
    assert steps[0] == 0 and steps[-1] == 2 * 4  # 160 train samples / 40 = 4 steps per epoch
    rad = ds["radius"]
    assert np.isfinite(rad.values).all()
    np.testing.assert_allclose(
        rad.sel(mode="constrained").values,
        np.broadcast_to(
            np.array([0.05, 1.0])[:, None, None] * rx, rad.sel(mode="constrained").shape
        ),
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        rad.isel(record=0).values[:, :, 0], np.array([[0.05, 1.0]] * 2) * rx, rtol=1e-10
    )
    free_small = rad.sel(mode="free", start=0.05).values[0]
    assert free_small[-1] > free_small[0]  # the radius grows from a small start
    assert ds["exponent"].dims == ("mode", "start", "sample")
    fig = RadiusDynamics().plot(ds)
    assert len(fig.axes) == 2
    assert fig.axes[0].collections  # ±σ bands over the 2 samples
    # the kept parameter vectors: log-spaced recorded steps, and the stored radius of
    # each is the weights' norm of its vector
    snaps = ds["snapshot_step"].values
    np.testing.assert_array_equal(snaps, snapshot_steps(steps, 11))
    traj = ds["trajectory"]
    assert traj.dims == ("mode", "start", "sample", "snapshot", "param")
    obj = StepContext(make_registry(), cfg, cfg.steps[0]).objective
    radii = obj.layout.radius(torch.as_tensor(traj.values.reshape(-1, obj.D))).numpy()
    at = rad.isel(record=np.searchsorted(steps, snaps))
    np.testing.assert_allclose(radii, at.values.reshape(-1), rtol=1e-12)


def test_snapshots_zero_keeps_no_trajectory_and_size_is_checked(tmp_path):
    from lossatlas.engine import LossAtlasError

    cfg = parse_config(tomllib.loads(CONFIG + "snapshots = 0\n"))
    path = str(tmp_path / "s.zarr")
    run_pipeline(cfg, path, make_registry(), progress=None)
    ds = Store(path).open_step("rd", "radius")
    assert "trajectory" not in ds and "snapshot" not in ds.dims
    big = CONFIG.replace("hidden = [8]", "hidden = [256, 256]").replace(
        "samples = 2", "samples = 200"
    )
    with pytest.raises(LossAtlasError, match=r"GiB; lower snapshots"):
        run_pipeline(
            parse_config(tomllib.loads(big)),
            str(tmp_path / "b.zarr"),
            make_registry(),
            progress=None,
        )
    assert not (tmp_path / "b.zarr").exists()


ONE_STEP = """
name = "rd1"
seed = 5
dtype = "float64"
[model]
plugin = "mlp"
hidden = [8]
[dataset]
plugin = "digits"
limit = 200
[[steps]]
name = "radius"
probe = "radius-dynamics"
starts = [0.3, 3.0]
optimizer = "sgd"
lr = 0.5
epochs = 1
batch_size = 0
record_every = 1
"""


@pytest.mark.parametrize("mode", ["free", "constrained"])
def test_one_full_batch_step_matches_brute_force(tmp_path, mode):
    # x1 = x0 − lr·g (free), or with g's radial part (weights only) removed and the
    # weights rescaled back to r0 afterwards (constrained, seed 004)
    cfg = parse_config(tomllib.loads(ONE_STEP))
    path = str(tmp_path / "s.zarr")
    run_pipeline(cfg, path, make_registry(), progress=None)
    ds = Store(path).open_step("rd1", "radius")
    obj = StepContext(make_registry(), cfg, cfg.steps[0]).objective
    w = obj.layout.mask("weight")
    for start in (0.3, 3.0):
        coords = {"mode": mode, "start": start}
        g = torch.Generator().manual_seed(cell_seed(cfg.seed, "radius", coords))
        r0 = start * init_radius(obj.layout)
        x0 = draw_init(obj.layout, g, radius=r0)
        grad = torch.func.grad(obj.function())(x0)
        if mode == "constrained":
            u = torch.where(w, x0, torch.zeros_like(x0))
            u = u / u.norm()
            grad = grad - (grad @ u) * u
        x1 = x0 - 0.5 * grad
        if mode == "constrained":
            x1[w] = x1[w] * (r0 / x1[w].norm())
        cell = ds.sel(mode=mode, start=start).isel(sample=0)
        assert float(cell["train_loss"].isel(epoch=1)) == pytest.approx(
            float(obj.loss(x1)), rel=1e-10
        )
        np.testing.assert_allclose(
            cell["radius"].values, [r0, float(obj.layout.radius(x1))], rtol=1e-12
        )
        # the stored trajectory holds the start and the point after the step
        np.testing.assert_array_equal(cell["snapshot_step"].values, [0, 1])
        np.testing.assert_allclose(cell["trajectory"].values[0], x0.numpy(), rtol=0, atol=0)
        np.testing.assert_allclose(cell["trajectory"].values[1], x1.numpy(), rtol=1e-12)
