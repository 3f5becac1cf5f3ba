"""radius-dynamics: constrained runs keep r0, free runs from small r0 grow, exponent fit."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.plugins.probes.radius_dynamics import growth_exponent

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
"""


def test_growth_exponent_recovers_sqrt():
    t = np.arange(0, 2001, 10)
    r = np.sqrt(0.01**2 + 0.5 * t)
    assert growth_exponent(t, r) == pytest.approx(0.5, abs=0.02)


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
    assert len(RadiusDynamics().plot(ds).axes) == 2
