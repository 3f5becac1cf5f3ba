"""subspace-training: ensemble = one by one, sphere radius kept, d_int, end to end."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch

from lossatlas.engine import LossAtlasError, Objective, Subspace, make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.geometry import draw_init
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.plugins.datasets.digits import Digits, DigitsOptions
from lossatlas.plugins.models.mlp import MLP
from lossatlas.plugins.probes.subspace_training import intrinsic_dimension, train_ensemble
from lossatlas.plugins.subspaces.hyperplane import make_basis, make_sphere


@pytest.fixture(scope="module")
def obj64() -> Objective:
    data = Digits().load(DigitsOptions(limit=150), 0)
    torch.manual_seed(0)
    return Objective(MLP(64, [6], 10), data, dtype=torch.float64)


@pytest.mark.parametrize("sphere", [False, True])
@pytest.mark.parametrize("kind", ["dense", "sparse-chang"])
def test_ensemble_equals_one_by_one(obj64, sphere, kind):
    g = torch.Generator().manual_seed(0)
    subs = []
    for r in (0.5, 3.0, 9.0):
        x = draw_init(obj64.layout, g, radius=r)
        subs.append(
            make_sphere(x, 4, g, kind)
            if sphere
            else Subspace(origin=x, basis=make_basis(obj64.D, 4, g, kind))
        )
    kw = dict(sphere=sphere, lr=0.05, epochs=2, batch_size=32)
    together = train_ensemble(obj64, subs, seeds=[1, 2, 3], **kw)
    for i, s in enumerate(subs):
        alone = train_ensemble(obj64, [s], seeds=[i + 1], **kw)
        for k in ("train_loss", "validation_accuracy", "x"):
            np.testing.assert_allclose(together[k][i], alone[k][0], rtol=1e-9, atol=1e-12)
    assert together["train_loss"].shape == (3, 3)
    # training lowered the loss somewhere, and the sphere kept each radius exactly
    assert (together["train_loss"][:, -1] < together["train_loss"][:, 0]).any()
    if sphere:
        radii = np.linalg.norm(together["x"], axis=1)
        np.testing.assert_allclose(radii, [0.5, 3.0, 9.0], rtol=0, atol=1e-12)
    else:
        # the hyperplane start is θ = 0 at the drawn point, and it moved within the plane
        M = subs[0].basis.to_dense() if subs[0].basis.layout != torch.strided else subs[0].basis
        delta = torch.as_tensor(together["x"][0]) - subs[0].origin
        theta = torch.linalg.lstsq(M, delta).solution
        torch.testing.assert_close(M @ theta, delta)


@pytest.mark.parametrize("sphere", [False, True])
def test_one_full_batch_sgd_step_matches_brute_force(obj64, sphere):
    # θ1 = θ0 − lr·∇_θ L(x(θ0)) by torch.func.grad; on the sphere the x-gradient loses
    # its radial part first and θ is rescaled so that ‖Qθ‖ = r0 afterwards (seed 004)
    g = torch.Generator().manual_seed(4)
    x = draw_init(obj64.layout, g, radius=2.0)
    sub = make_sphere(x, 5, g, "dense") if sphere else Subspace(x, make_basis(obj64.D, 5, g))
    lr = 0.3
    res = train_ensemble(
        obj64, [sub], sphere=sphere, optimizer="sgd", lr=lr, epochs=1, batch_size=None
    )
    f = obj64.function()
    M = sub.basis
    theta0 = sub.theta0 if sphere else torch.zeros(5, dtype=torch.float64)
    x0 = sub.origin + M @ theta0
    gx = torch.func.grad(f)(x0)
    if sphere:
        u = x0 / x0.norm()
        gx = gx - (gx @ u) * u
    theta1 = theta0 - lr * (M.T @ gx)
    x1 = sub.origin + M @ theta1
    if sphere:
        x1 = x1 * (2.0 / x1.norm())
    np.testing.assert_allclose(res["x"][0], x1.numpy(), rtol=1e-10, atol=1e-13)
    assert res["train_loss"][0, 0] == pytest.approx(float(f(x0)), rel=1e-10)
    assert res["train_loss"][0, 1] == pytest.approx(float(f(x1)), rel=1e-10)


def test_intrinsic_dimension():
    dims = np.array([1, 10, 100])
    assert intrinsic_dimension(dims, np.array([0.1, 0.5, 0.9]), 0.9) == pytest.approx(100)
    assert intrinsic_dimension(dims, np.array([0.1, 0.5, 0.9]), 0.7) == pytest.approx(
        np.sqrt(10 * 100)
    )
    assert intrinsic_dimension(dims, np.array([0.95, 0.5, 0.9]), 0.9) == 1
    assert np.isnan(intrinsic_dimension(dims, np.array([0.1, 0.2, 0.3]), 0.9))


# two epochs do not converge: the tests that are not about that silence the warning
pytestmark = pytest.mark.filterwarnings("ignore::lossatlas.engine.training.ConvergenceWarning")

CONFIG = """
name = "st"
seed = 0
[model]
plugin = "mlp"
hidden = [8]
[dataset]
plugin = "digits"
limit = 200
[[steps]]
name = "fig2"
probe = "subspace-training"
radii = 2
dims = [2, 8]
samples = 2
epochs = 2
lr = 0.1
batch_size = 50
"""


def run_config(tmp_path, text=CONFIG, name="s.zarr"):
    cfg = parse_config(tomllib.loads(text))
    path = str(tmp_path / name)
    run_pipeline(cfg, path, make_registry(), progress=None)
    return cfg, Store(path).open_step("st", "fig2")


def test_subspace_training_end_to_end(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from lossatlas.plugins.probes.subspace_training import SubspaceTraining

    _cfg, ds = run_config(tmp_path)
    assert ds["validation_accuracy"].dims == ("surface", "dim", "radius", "sample", "epoch")
    assert ds.sizes["epoch"] == 3
    assert ds["d_int"].dims == ("surface", "radius")
    assert ds["final_mean"].dims == ("surface", "dim", "radius")
    assert ds["still_falling"].dims == ("surface", "dim", "radius", "sample")
    fig = SubspaceTraining().plot(ds)
    assert len(fig.axes) >= 3


def test_d_int_is_li_et_al_s_by_default(tmp_path):
    """No option: the threshold is 0.9 × the mean accuracy of full-space training."""
    _cfg, ds = run_config(tmp_path)
    assert ds["d_int"].attrs["reference_kind"] == "full"
    base = ds["baseline_validation_accuracy"].values
    assert base.shape == (2,) and ((base > 0) & (base <= 1)).all()
    assert ds["d_int"].attrs["reference"] == pytest.approx(base.mean())
    assert ds["d_int"].attrs["threshold"] == pytest.approx(0.9 * base.mean())
    # the baseline is deterministic: the same numbers from a second store
    _cfg, again = run_config(tmp_path, name="t.zarr")
    np.testing.assert_array_equal(again["baseline_validation_accuracy"].values, base)


def test_grid_best_reference_and_the_old_name(tmp_path):
    _cfg, ds = run_config(
        tmp_path, CONFIG.replace("radii = 2", 'radii = 2\nreference = "grid-best"')
    )
    assert ds["d_int"].attrs["reference_kind"] == "grid-best"
    assert "baseline_validation_accuracy" not in ds
    best = float(ds["final_validation_accuracy"].mean("sample").max())
    assert ds["d_int"].attrs["reference"] == pytest.approx(best)
    assert "NOT Li et al." in ds["d_int"].attrs["description"]
    path = tmp_path / "old.zarr"
    cfg_text = CONFIG.replace("radii = 2", 'radii = 2\nreference = "grid"')
    with pytest.raises(LossAtlasError, match=r"'grid' is now called 'grid-best'.*default 'full'"):
        run_pipeline(
            parse_config(tomllib.loads(cfg_text)), str(path), make_registry(), progress=None
        )
    assert not path.exists()


def test_stored_final_points_rebuild_and_keep_the_sphere_radius(tmp_path):
    """From the store alone: rebuild each cell's final points from the stored θ and the
    cell's seed, and check ‖x‖ = r on the spheres as training left them (no final
    rescale hides a drift), the stored norms, and the stored final losses."""
    from lossatlas.engine.context import StepContext
    from lossatlas.plugins.probes.subspace_training import final_points

    text = CONFIG.replace('name = "st"', 'name = "st"\ndtype = "float64"').replace(
        "lr = 0.1", 'lr = 0.3\nbasis = "sparse-chang"'
    )
    cfg, ds = run_config(tmp_path, text)
    obj = StepContext(make_registry(), cfg, cfg.steps[0]).objective
    radii = ds["radius"].values
    for surface in ("hyperplane", "hypersphere"):
        for d in ds["dim"].values:
            sel = ds.sel(surface=surface, dim=d)
            theta = sel["final_theta"].values
            n = int(d) + (surface == "hypersphere")
            assert np.isfinite(theta[..., :n]).all() and np.isnan(theta[..., n:]).all()
            x = final_points(ds, surface, d)  # (radius, sample, D), model rebuilt from the store
            norms = x.norm(dim=-1).numpy()
            np.testing.assert_allclose(sel["final_norm"].values, norms, rtol=1e-12)
            if surface == "hypersphere":
                np.testing.assert_allclose(norms, radii[:, None].repeat(2, 1), rtol=1e-12)
                assert (np.abs(theta[..., 1:n]) > 0).any()  # it moved on the sphere
            loss = obj.evaluate_both(x.reshape(-1, obj.D))["validation_loss"]
            np.testing.assert_allclose(
                sel["final_validation_loss"].values.ravel(), loss, rtol=1e-10
            )


def test_convergence_flag_and_warning(tmp_path):
    """Six epochs at a small lr: runs whose loss still falls steadily are flagged and
    warned about (the flag is what the stored losses say); convergence_tol = 0 is off."""
    from lossatlas.engine.training import ConvergenceWarning

    slow = CONFIG.replace("lr = 0.1", "lr = 0.01").replace("epochs = 2", "epochs = 6")
    slow = slow.replace("radii = 2", 'radii = 2\nreference = "grid-best"')
    with pytest.warns(ConvergenceWarning, match=r"still falling.*of 16 subspace trainings"):
        _cfg, ds = run_config(tmp_path, slow)
    loss = ds["train_loss"].values
    share = (loss[..., -3] - loss[..., -1]) / (loss[..., 0] - loss[..., -1])  # last 2 of 6
    np.testing.assert_allclose(ds["loss_decrease_share"].values, share)
    np.testing.assert_array_equal(ds["still_falling"].values, share > 0.1)
    assert ds["still_falling"].values.sum() >= 8
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        _cfg, ds = run_config(tmp_path, slow + "convergence_tol = 0\n", name="t.zarr")
    assert not ds["still_falling"].values.any()
