"""interpolation probe: exact endpoints, convex quadratic, the deep-linear toy's barrier,
random points, BatchNorm statistics, summaries, plot."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch

from lossatlas.engine import ConfigError, DataBundle, Objective, Split, make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.context import StepContext
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.plugins.probes.interpolation import bn_buffers, curve_summary

DIGITS = """
name = "r"
seed = 0
dtype = "{dtype}"
[model]
plugin = "mlp"
hidden = [16]
[dataset]
plugin = "digits"
limit = 300
[[steps]]
name = "train"
probe = "train"
lr = 0.2
momentum = 0.9
epochs = 3
batch_size = 32
record_every = 0
[[steps]]
name = "interp"
probe = "interpolation"
pairs = [["init", "train"], ["random:20", "train"], ["train", "random"]]
points = 11
zoom_points = 5
"""


def run(tmp_path, text):
    cfg = parse_config(tomllib.loads(text))
    path = str(tmp_path / "s.zarr")
    run_pipeline(cfg, path, make_registry(), progress=None)
    return cfg, Store(path)


def context(cfg, step, store):
    step_cfg = next(s for s in cfg.steps if s.name == step)
    return StepContext(make_registry(), cfg, step_cfg, store)


@pytest.fixture(scope="module", params=["float64", "float32"])
def digits_run(request, tmp_path_factory):
    return run(tmp_path_factory.mktemp(request.param), DIGITS.format(dtype=request.param))


def test_endpoints_are_the_models_own_losses_exactly(digits_run):
    cfg, store = digits_run
    ds = store.open_step("r", "interp").load()
    ctx = context(cfg, "interp", store)
    obj = ctx.objective
    init, trained = ctx.resolve_point("init"), ctx.resolve_point("train")
    for theta, alpha in ((init, 0.0), (trained, 1.0)):
        own = obj.evaluate_both(theta.unsqueeze(0))
        for k, v in own.items():
            for prefix, dim in (
                ("", "alpha"),
                ("zoom0_", "alpha_zoom0"),
                ("zoom1_", "alpha_zoom1"),
            ):
                if alpha in ds[dim].values:
                    got = float(ds[prefix + k].sel({"pair": 0, dim: alpha}))
                    assert got == v[0], (k, dim, alpha)
    # the solution end of the other pairs too
    own = obj.evaluate(trained.unsqueeze(0))["loss"][0]
    assert float(ds["train_loss"].sel(pair=1, alpha=1.0)) == own
    assert float(ds["train_loss"].sel(pair=2, alpha=0.0)) == own
    # random:R has norm R; 'random' takes the other end's norm
    assert float(ds["norm0"][1]) == pytest.approx(20.0, rel=1e-6)
    assert float(ds["norm1"][2]) == pytest.approx(float(ds["norm0"][2]), rel=1e-6)
    # grids hold α = 0 and 1 exactly; the main grid reaches beyond [0, 1]
    assert {0.0, 1.0} <= set(ds["alpha"].values)
    assert ds["alpha"].min() == -0.5 and ds["alpha"].max() == 1.5
    assert ds["alpha_zoom0"].values[0] == 0 and ds["alpha_zoom1"].values[-1] == 1
    # init → solution of a trained MLP: no barrier, the minimum near α = 1
    assert float(ds["train_loss_barrier"][0]) == 0
    assert 0.8 <= float(ds["train_loss_argmin_alpha"][0]) <= 1.5


def test_convex_quadratic_gives_a_convex_curve(tmp_path):
    text = """
name = "q"
seed = 0
dtype = "float64"
[model]
plugin = "deep-linear"
depth = 1
[dataset]
plugin = "deep-linear"
dim = 3
samples = 20
[[steps]]
name = "interp"
probe = "interpolation"
pairs = [["init", "init:7"], ["init", "random:3"]]
alpha_min = -2.0
alpha_max = 3.0
points = 31
zoom_points = 0
"""
    _cfg, store = run(tmp_path, text)
    ds = store.open_step("q", "interp").load()
    a = ds["alpha"].values
    for p in range(2):
        L = ds["train_loss"].isel(pair=p).values
        # a linear model with squared error: the curve is a parabola in α
        coef = np.polyfit(a, L, 2)
        assert coef[0] > 0
        np.testing.assert_allclose(np.polyval(coef, a), L, rtol=1e-9, atol=1e-12)
        slopes = np.diff(L) / np.diff(a)
        assert np.all(np.diff(slopes) >= -1e-9)
        assert float(ds["train_loss_barrier"][p]) == 0.0


def test_deep_linear_toy_shows_the_barrier_between_two_minima(tmp_path):
    for name, w in (("a", [0.5, 2.0]), ("b", [2.0, 0.5])):
        torch.save(
            {"layers.0.weight": torch.tensor([[w[0]]]), "layers.1.weight": torch.tensor([[w[1]]])},
            tmp_path / f"{name}.pt",
        )
    text = f"""
name = "toy"
seed = 0
dtype = "float64"
[model]
plugin = "deep-linear"
[dataset]
plugin = "deep-linear"
[[steps]]
name = "interp"
probe = "interpolation"
pairs = [["checkpoint:{tmp_path}/a.pt", "checkpoint:{tmp_path}/b.pt"]]
labels = ["(0.5, 2) ↔ (2, 0.5)"]
alpha_min = 0.0
alpha_max = 1.0
points = 21
zoom_points = 0
"""
    _cfg, store = run(tmp_path, text)
    ds = store.open_step("toy", "interp").load()
    a = ds["alpha"].values
    w1, w2 = 0.5 + 1.5 * a, 2.0 - 1.5 * a
    np.testing.assert_allclose(
        ds["train_loss"].isel(pair=0), (1 - w1 * w2) ** 2, rtol=1e-12, atol=1e-15
    )
    assert float(ds["train_loss"].isel(pair=0)[0]) == 0.0  # both ends on w2 = 1/w1
    assert float(ds["train_loss"].isel(pair=0)[-1]) == 0.0
    # the hyperbola bends away: the midpoint (1.25, 1.25) costs (1 − 1.5625)²
    assert float(ds["train_loss_barrier"][0]) == pytest.approx(0.31640625, rel=1e-12)
    assert float(ds["train_loss_max_rise"][0]) == pytest.approx(0.31640625, rel=1e-12)


def test_curve_summary_by_hand():
    a = np.array([-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5])
    L = np.array([9.0, 3.0, 2.0, 2.5, 1.0, 1.5, 0.5])
    s = curve_summary(a, L)
    assert s["max_rise"] == 0.5  # 2.0 → 2.5 (and 1.0 → 1.5)
    assert s["barrier"] == 0.0  # never above max(L(0), L(1)) = 3
    assert s["argmin_alpha"] == 1.5 and s["min"] == 0.5
    s = curve_summary(a, np.array([0, 1.0, 4.0, 2.0, 1.5, 1.0, 0]))
    assert s["barrier"] == 3.0


def test_recompute_bn_statistics():
    torch.manual_seed(0)
    X = torch.randn(50, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (50,))
    data = DataBundle(Split(X, y), Split(X[:10], y[:10]), "classification", 3)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 3)
    )
    obj = Objective(model, data, dtype=torch.float64, batch_size=16)
    x = obj.x0 + 0.3 * torch.randn(obj.D, dtype=torch.float64)
    bufs = bn_buffers(obj, x)
    W = obj.layout.unflatten(x)
    h = X @ W["0.weight"].T + W["0.bias"]
    torch.testing.assert_close(bufs["1.running_mean"], h.mean(0))
    # size-weighted average of the per-batch unbiased variances
    var = [h[i : i + 16].var(0, unbiased=True) * len(h[i : i + 16]) for i in range(0, 50, 16)]
    torch.testing.assert_close(bufs["1.running_var"], torch.stack(var).sum(0) / 50)
    assert obj.buffers["1.running_mean"].abs().max() == 0  # the objective is untouched
    obj.batch_size = None  # one batch: the exact statistics of the split
    bufs = bn_buffers(obj, x)
    torch.testing.assert_close(bufs["1.running_var"], h.var(0, unbiased=True))


def test_bad_pairs_are_config_errors(tmp_path):
    text = DIGITS.format(dtype="float64").replace(
        '["init", "train"], ["random:20", "train"], ["train", "random"]', '["init", "trian"]'
    )
    with pytest.raises(ConfigError, match="trian"):
        run(tmp_path, text)
    text = DIGITS.format(dtype="float64").replace(
        '["init", "train"], ["random:20", "train"], ["train", "random"]', '["random:-1", "init"]'
    )
    with pytest.raises(ConfigError, match="radius"):
        run(tmp_path, text)


def test_plot(digits_run, tmp_path):
    _cfg, store = digits_run
    ds = store.open_step("r", "interp").load()
    from lossatlas.plugins.probes.interpolation import Interpolation

    fig = Interpolation().plot(ds, logy=True)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 4
    fig.savefig(tmp_path / "i.png")
