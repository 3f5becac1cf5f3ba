"""trace: Hutchinson and curvature-based estimates against exact traces (float64)."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.context import StepContext
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store

CONFIG = """
name = "tr"
seed = 0
dtype = "float64"
[model]
plugin = "mlp"
hidden = [4]
[dataset]
plugin = "digits"
limit = 150
[[steps]]
name = "eq31"
probe = "trace"
landscape = "eq31"
directions = 60
repeats = 2
distribution = "rademacher"
density_steps = 20
[[steps]]
name = "eq26g"
probe = "trace"
landscape = "eq26"
n_params = 200
directions = 400
normalize = false
epsilon = 3.0
hutchpp = false
density_steps = 0
[[steps]]
name = "model"
probe = "trace"
directions = 30
epsilon = 1e-3
distribution = "rademacher"
density_steps = 10
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    path = str(tmp_path_factory.mktemp("tr") / "s.zarr")
    cfg = parse_config(tomllib.loads(CONFIG))
    run_pipeline(cfg, path, make_registry(), progress=None)
    return cfg, path


def _open(run, step):
    return Store(run[1]).open_step("tr", step).load()


def test_quadratic_exact_trace_and_identical_estimates(run) -> None:
    ds = _open(run, "eq31")
    assert float(ds["exact_trace"]) == 600.0
    # Rademacher directions have ‖z‖² = D, so D·uᵀHu = zᵀHz: on a quadratic the
    # curvature fit recovers Hutchinson's samples exactly.
    np.testing.assert_allclose(ds["curvature_sample"], ds["hutchinson_sample"], rtol=1e-8)
    np.testing.assert_allclose(ds["fit_rms"], 0, atol=1e-10)
    assert np.all(ds["curvature_rel_diff_median"].values < 1e-8)
    diff = ds["curvature_sample"].values - ds["hutchinson_sample"].values
    np.testing.assert_allclose(ds["curvature_bias"].values, diff.mean(axis=1), atol=1e-12)
    last = ds["hutchinson"].values[:, -1]
    se = ds["hutchinson_stderr"].values[:, -1]
    assert np.all(np.abs(last - 600) < 6 * se + 1e-9)
    np.testing.assert_allclose(ds["hutchinson"].values[:, 0], ds["hutchinson_sample"][:, 0])
    assert np.all(np.isfinite(ds["hutchpp"].values))
    assert ds["density"].attrs["slq_trace"] == pytest.approx(600, rel=0.2)
    assert sorted(set(ds["eigenvalues"].values)) == [-1.0, 1.0]


def test_gaussian_raw_directions_unbiased_on_eq26(run) -> None:
    ds = _open(run, "eq26g")
    assert float(ds["exact_trace"]) == 0.0
    np.testing.assert_allclose(ds["curvature_sample"], ds["hutchinson_sample"], atol=1e-7)
    est, se = float(ds["hutchinson"][0, -1]), float(ds["hutchinson_stderr"][0, -1])
    assert abs(est) < 5 * se


def test_model_exact_trace_is_the_dense_trace(run) -> None:
    cfg, path = run
    ds = _open(run, "model")
    ctx = StepContext(make_registry(), cfg, cfg.step("model"), Store(path))
    H = ctx.objective.hessian(ctx.resolve_point("init")).numpy()
    assert float(ds["exact_trace"]) == pytest.approx(np.trace(H), rel=1e-10)
    # the cost of each estimate, per repeat
    D = H.shape[0]
    assert (ds.attrs["hutchinson_n_hvp"], ds.attrs["hutchpp_n_hvp"]) == (30, 30)
    assert (ds.attrs["curvature_n_forward"], ds.attrs["curvature_n_hvp"]) == (30 * 50, 0)
    assert ds.attrs["exact_n_hvp"] == D
    np.testing.assert_allclose(ds["eigenvalues"].values, np.linalg.eigvalsh(H), atol=1e-10)
    # per direction, the HVP-free curvature matches zᵀHz up to the fit's bias
    h, c = ds["hutchinson_sample"].values[0], ds["curvature_sample"].values[0]
    assert np.median(np.abs(c - h) / np.abs(h)) < 0.05
    assert float(ds["curvature_rel_diff_median"][0]) == pytest.approx(
        np.median(np.abs(c - h) / np.abs(h)), rel=1e-12
    )


def test_plot(run) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from lossatlas.plugins.probes.trace import TraceProbe

    fig = TraceProbe().plot(_open(run, "eq31"), logy=True)
    assert len(fig.axes) == 2


def test_bad_landscape_names_the_step(tmp_path) -> None:
    from lossatlas.engine import ConfigError

    text = CONFIG.replace('landscape = "eq31"', 'landscape = "eq31"\nn_negative = 600')
    with pytest.raises(ConfigError, match="step 'eq31': landscape 'eq31' needs 0 < n_negative"):
        run_pipeline(
            parse_config(tomllib.loads(text)),
            str(tmp_path / "s.zarr"),
            make_registry(),
            progress=None,
        )
