"""radial-profile probe: power-law fit, crossings, Stokes prediction, end to end."""

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
from lossatlas.plugins.probes.radial_profile import (
    find_crossings,
    fit_power_law,
    plot_compare,
    stokes_laplacian,
)
from lossatlas.plugins.subspaces.hyperplane import make_basis

CONFIG = """
name = "rp"
seed = 1
dtype = "float64"
[model]
plugin = "mlp"
hidden = [8, 8]
[dataset]
plugin = "digits"
limit = 200
[[steps]]
name = "profile"
probe = "radial-profile"
radius_min = 0.1
radius_max = 1000.0
radii = 7
samples = 6
dims = [3, 8]
hessian_samples = 1
"""


def test_fit_power_law_recovers_exponent():
    r = np.geomspace(1, 100, 9)
    p, c = fit_power_law(r, 2.5 * r**3)
    assert p == pytest.approx(3.0) and c == pytest.approx(2.5)


@pytest.mark.parametrize("p", [0.0, 1.0, 3.0])
def test_stokes_laplacian_exact_for_power_laws_on_a_coarse_grid(p):
    # ⟨L⟩ = c r^p in R^n: ∇²L = c p (p + n − 2) r^{p−2}, whatever the log step
    n, c = 500, 0.7
    r = np.geomspace(0.01, 100, 9)  # a factor 3.16 per step
    lap = stokes_laplacian(r, c * r**p, n)
    np.testing.assert_allclose(lap, c * p * (p + n - 2) * r ** (p - 2), rtol=1e-9, atol=1e-8)


def test_stokes_laplacian_matches_the_trace_of_an_isotropic_quadratic():
    # L(w) = a + b‖w‖² in R^n: ⟨L⟩(r) = a + b r², Tr H = 2 b n exactly (brute force below)
    n, a, b = 40, 2.3, 0.4
    r = np.geomspace(0.1, 10, 41)
    H = hessian(lambda w: a + b * (w**2).sum())(torch.zeros(n, dtype=torch.float64))
    lap = stokes_laplacian(r, a + b * r**2, n)
    # the log-log derivative of a + b r² is not a power law: second-order accurate only
    np.testing.assert_allclose(lap, float(torch.trace(H)), rtol=0.02)


def test_find_crossings():
    r = np.geomspace(0.01, 100, 9)
    f = np.array([-1, -0.5, 0.5, 1, 2, 1, -1, -2, -3.0])
    inner, outer = find_crossings(r, f)
    assert r[1] < inner < r[2] and r[5] < outer < r[6]
    assert inner == pytest.approx(np.exp((np.log(r[1]) + np.log(r[2])) / 2))
    assert np.isnan(find_crossings(r, -np.ones(9))[0])


def test_radial_profile_end_to_end(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    cfg = parse_config(tomllib.loads(CONFIG))
    path = str(tmp_path / "s.zarr")
    run_pipeline(cfg, path, make_registry(), progress=None)
    ds = Store(path).open_step("rp", "profile")
    assert ds["train_loss"].dims == ("radius", "sample")
    assert ds["trace"].dims == ("radius", "dim", "hsample")
    # flat ≈ log 10 at small radius, power law with exponent ≈ n_L = 3 at large radius
    assert float(ds["loss_mean"][0]) == pytest.approx(np.log(10), rel=1e-3)
    assert int(ds["n_layers"]) == 3
    assert 2.0 < float(ds["exponent"]) < 4.0
    assert ds["zone_inner"].dims == ("dim",) and ds["zone_outer"].dims == ("dim",)
    assert ds["trace_stokes"].dims == ("radius", "dim")
    # the Stokes prediction lives in the weight space the points are drawn in
    n_w = int(ds.attrs["n_weights"])
    assert n_w == 64 * 8 + 8 * 8 + 8 * 10 < int(ds.attrs["n_params"])
    lap = stokes_laplacian(ds["radius"].values, ds["loss_mean"].values, n_w)
    np.testing.assert_allclose(
        ds["trace_stokes"].values, lap[:, None] * ds["dim"].values[None, :] / n_w, rtol=1e-12
    )
    # one cell's stored Tr(H_d) and ‖H_d‖ against torch.func.hessian, from the cell's seed
    ctx = StepContext(make_registry(), cfg, cfg.steps[0])
    obj = ctx.objective
    ir = 5
    rad = ds["radius"].values[ir].item()
    g = torch.Generator().manual_seed(cell_seed(cfg.seed, "profile", {"radius": rad}))
    X = draw_init(obj.layout, g, radius=rad, n=6)
    f = obj.function()
    np.testing.assert_allclose(
        ds["train_loss"].isel(radius=ir).values, [float(f(x)) for x in X], rtol=1e-10
    )
    x = draw_init(obj.layout, g, radius=rad)
    for i, d in enumerate((3, 8)):
        M = make_basis(obj.D, d, g, "dense")
        H = hessian(lambda t, M=M: f(x + M @ t))(torch.zeros(d, dtype=torch.float64))
        cell = ds.isel(radius=ir, dim=i, hsample=0)
        assert float(cell["trace"]) == pytest.approx(float(torch.trace(H)), rel=1e-8)
        assert float(cell["norm"]) == pytest.approx(float(H.norm()), rel=1e-8)
    from lossatlas.plugins.probes.radial_profile import RadialProfile

    fig = RadialProfile().plot(ds)
    assert fig.axes[0].get_yscale() == "log"
    assert fig.axes[1].collections  # ±σ bands on Tr(H)/r and ‖H‖/r (Fig. 5b)
    fig = plot_compare({"a": ds, "b": ds})
    np.testing.assert_allclose(
        fig.axes[0].lines[0].get_xdata(), ds["radius"].values / float(ds["r_xavier"])
    )
