"""projection-curvature: projected Hessians vs brute force, saddle fractions of seed 001."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch

from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.plugins.models.quadratic import make_landscape
from lossatlas.plugins.probes.projection_curvature import projected_hessians

CONFIG = """
name = "pc"
seed = 0
dtype = "float64"
[model]
plugin = "mlp"
hidden = [4]
[dataset]
plugin = "digits"
limit = 150
[[steps]]
name = "eq26"
probe = "projection-curvature"
landscape = "eq26"
n_params = 200
projections = 4000
block = 4000
[[steps]]
name = "eq31"
probe = "projection-curvature"
landscape = "eq31"
projections = 2000
block = 2000
normalize = "unit"
[[steps]]
name = "model"
probe = "projection-curvature"
landscape = "model"
projections = 40
block = 20
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    path = str(tmp_path_factory.mktemp("pc") / "s.zarr")
    cfg = parse_config(tomllib.loads(CONFIG))
    run_pipeline(cfg, path, make_registry(), progress=None)
    return cfg, path


def _open(run, step):
    return Store(run[1]).open_step("pc", step).load()


def test_projected_hessians_match_brute_force() -> None:
    land = make_landscape("eq31", 30, 7)
    H = torch.diag(land.kappa)
    h = projected_hessians(land, 30, torch.Generator().manual_seed(3), 5, chunk=2)
    g = torch.Generator().manual_seed(3)
    rows = []
    for k in (2, 2, 1):
        Z = torch.randn(2 * k, 30, generator=g, dtype=torch.float64)
        for d, e in zip(Z[:k], Z[k:], strict=True):
            rows.append([d @ H @ d, d @ H @ e, e @ H @ e])
    np.testing.assert_allclose(h, np.asarray(rows), rtol=1e-12)


def test_eq26_shows_the_saddle_in_about_70_percent(run) -> None:
    ds = _open(run, "eq26")
    assert float(ds["exact_trace"]) == 0.0
    assert 0.66 < float(ds["saddle_fraction"]) < 0.74  # seed 001: ≈ 70%
    k = np.stack([ds["kappa_min"].values.ravel(), ds["kappa_max"].values.ravel()])
    M = np.stack([ds[v].values.ravel() for v in ("h11", "h12", "h12", "h22")]).reshape(2, 2, -1)
    w = np.linalg.eigvalsh(M.transpose(2, 0, 1))
    np.testing.assert_allclose(w.T, k, atol=1e-9)
    # expected projected Hessian ≈ Tr H · I = 0 (sd of a mean of 4000: √(2N/4000) ≈ 0.3)
    assert abs(float(ds["expected_h11"])) < 1.5 and abs(float(ds["expected_h12"])) < 1.5


def test_eq31_never_shows_the_saddle(run) -> None:
    ds = _open(run, "eq31")
    assert float(ds["saddle_fraction"]) == 0.0
    # unit directions: E[H̃] = Tr H / D · I = 0.6 I
    assert float(ds["expected_scale"]) == pytest.approx(1e-3)
    assert float(ds["expected_h11"]) == pytest.approx(0.6, abs=0.01)
    assert list(ds["hessian_eigenvalues"].values) == [1.0, -1.0]


def test_model_landscape(run) -> None:
    cfg, path = run
    from lossatlas.engine.context import StepContext

    ds = _open(run, "model")
    ctx = StepContext(make_registry(), cfg, cfg.step("model"), Store(path))
    H = ctx.objective.hessian(ctx.resolve_point("init")).numpy()
    w = np.linalg.eigvalsh(H)
    np.testing.assert_allclose(ds["hessian_eigenvalues"].values, [w[-1], w[0]], rtol=1e-7)
    assert ds["hessian_eigenvalues"].attrs["converged"] == 1
    # exact = "auto": Tr H of the dense Hessian (D = 270 here)
    assert float(ds["exact_trace"]) == pytest.approx(np.trace(H), rel=1e-10)
    assert ds["exact_trace"].attrs["method"].startswith("dense")
    assert ds.attrs["n_hvp"] == 2 * 40
    # E[δᵀHδ] = Tr H for Gaussian δ; sd of one sample √(2‖H‖_F²), 80 samples, 5 sd
    h = np.r_[ds["h11"].values.ravel(), ds["h22"].values.ravel()]
    assert abs(h.mean() - np.trace(H)) < 5 * np.sqrt(2 * np.sum(H * H) / h.size)
    assert np.all(ds["kappa_min"].values <= ds["kappa_max"].values)


def test_plot(run) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from lossatlas.plugins.probes.projection_curvature import ProjectionCurvatureProbe

    fig = ProjectionCurvatureProbe().plot(_open(run, "eq26"))
    assert len(fig.axes) == 3


def test_projections_of_a_null_space_are_flat_not_saddles() -> None:
    """A PSD Hessian of rank 1 projects to 2 × 2 matrices of rank 1: κ̃_min is zero up
    to rounding, of either sign. Those projections are flat, not saddles (float64)."""
    import xarray as xr

    from lossatlas.plugins.probes.projection_curvature import _eig2, ensemble_summary

    g = torch.Generator().manual_seed(0)
    u = torch.randn(50, generator=g, dtype=torch.float64)
    H = torch.outer(u, u)

    def hvp(V: torch.Tensor) -> torch.Tensor:
        return V @ H

    h = projected_hessians(hvp, 50, torch.Generator().manual_seed(1), 400)
    kmin, kmax = _eig2(h[:, 0], h[:, 1], h[:, 2])
    assert (kmin < 0).any() and (kmin > 0).any()  # rounding gives the zero both signs
    dims = ("block", "projection")
    ds = xr.Dataset(
        {
            "h11": (dims, h[None, :, 0]),
            "h12": (dims, h[None, :, 1]),
            "h22": (dims, h[None, :, 2]),
            "kappa_min": (dims, kmin[None]),
            "kappa_max": (dims, kmax[None]),
        },
        attrs={"flat_tol": 1e-9},
    )
    out = ensemble_summary(ds)
    assert float(out["saddle_fraction"]) == 0.0
    assert float(out["flat_fraction"]) == 1.0
    assert float(out["minimum_fraction"]) == 0.0


def test_shape_fractions_and_hessian_shape_are_stored(run) -> None:
    ds = _open(run, "eq26")
    total = sum(float(ds[f"{k}_fraction"]) for k in ("saddle", "minimum", "maximum", "flat"))
    assert total == pytest.approx(1.0)
    assert ds.attrs["flat_tol"] == 1e-9
    assert ds["hessian_eigenvalues"].attrs["shape"] == "saddle"
    model = _open(run, "model")
    attrs = model["hessian_eigenvalues"].attrs
    assert attrs["shape"] in ("saddle", "minimum", "maximum", "degenerate")
    assert len(attrs["error_bounds"]) == 2 and attrs["flat_tol"] == 1e-9
