"""radial-profile probe: power-law fit, crossings, Stokes prediction, end to end."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.plugins.probes.radial_profile import find_crossings, fit_power_law

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
    from lossatlas.plugins.probes.radial_profile import RadialProfile

    fig = RadialProfile().plot(ds)
    assert fig.axes[0].get_yscale() == "log"
