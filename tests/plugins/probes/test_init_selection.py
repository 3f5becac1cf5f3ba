"""init-selection: Hessian measures per init, training per epoch, fitted slopes."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch
from torch.func import hessian

from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.context import StepContext
from lossatlas.engine.geometry import draw_init
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.engine.sweep import cell_seed
from lossatlas.plugins.probes.init_selection import fit_line
from lossatlas.plugins.subspaces.hyperplane import make_basis

CONFIG = """
name = "is"
seed = 0
dtype = "float64"
[model]
plugin = "mlp"
hidden = [8]
[dataset]
plugin = "digits"
limit = 200
[[steps]]
name = "fig6"
probe = "init-selection"
inits = 4
dim = 5
epochs = 2
lr = 0.01
batch_size = 50
"""


def test_fit_line():
    x = np.array([1.0, 2, 3, 4])
    s, b, r = fit_line(x, 2 * x + 1)
    assert (s, b, r) == pytest.approx((2, 1, 1))
    assert np.isnan(fit_line(x[:2], x[:2])[0])


def test_init_selection_end_to_end(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from lossatlas.plugins.probes.init_selection import InitSelection

    cfg = parse_config(tomllib.loads(CONFIG))
    path = str(tmp_path / "s.zarr")
    run_pipeline(cfg, path, make_registry(), progress=None)
    ds = Store(path).open_step("is", "fig6")
    assert ds["validation_accuracy"].dims == ("init", "epoch") and ds.sizes["epoch"] == 3
    np.testing.assert_allclose(
        ds["initial_validation_loss"].values, ds["validation_loss"].isel(epoch=0).values
    )
    assert ((ds["n_positive"] >= 0) & (ds["n_positive"] <= 5)).all()
    np.testing.assert_allclose(ds["frac_positive"] * 5, ds["n_positive"])
    # Xavier draws at their natural radius: near r_Xavier
    assert abs(float(ds["radius"].mean()) / float(ds["r_xavier"]) - 1) < 0.1
    s, _b, r = fit_line(ds["trace"].values, ds["validation_accuracy"].isel(epoch=2).values)
    assert float(ds["slope_trace"].sel(epoch=2)) == pytest.approx(s)
    assert float(ds["correlation_trace"].sel(epoch=2)) == pytest.approx(r)
    r_d = fit_line(ds["trace"].values, ds["initial_validation_loss"].values)[2]
    assert float(ds["loss_correlation_trace"]) == pytest.approx(r_d)
    assert float(ds["loss_correlation_n_positive"]) == pytest.approx(
        float(ds["loss_npos_correlation"]), nan_ok=True
    )
    # one init's Hessian measures against torch.func.hessian, from the cell's seed
    obj = StepContext(make_registry(), cfg, cfg.steps[0]).objective
    g = torch.Generator().manual_seed(cell_seed(cfg.seed, "fig6", {"init": 2}))
    x = draw_init(obj.layout, g)
    M = make_basis(obj.D, 5, g, "dense")
    f = obj.function()
    H = hessian(lambda t: f(x + M @ t))(torch.zeros(5, dtype=torch.float64))
    eig = torch.linalg.eigvalsh(H)
    cell = ds.isel(init=2)
    assert float(cell["trace"]) == pytest.approx(float(eig.sum()), rel=1e-8)
    assert float(cell["ratio"]) == pytest.approx(float(eig.sum() / H.norm()), rel=1e-8)
    t = float(ds.attrs["flat_tol"]) * float(eig.abs().max())
    assert int(cell["n_positive"]) == int((eig > t).sum())
    assert int(cell["n_flat"]) == int((eig.abs() <= t).sum())
    assert float(cell["radius"]) == pytest.approx(float(obj.layout.radius(x)), rel=1e-12)
    assert float(cell["initial_validation_loss"]) == pytest.approx(
        float(obj.loss(x, "validation")), rel=1e-10
    )
    assert len(InitSelection().plot(ds).axes) == 4
