"""interpolation probe: exact endpoints, convex quadratic, the deep-linear toy's barrier,
random points, BatchNorm statistics, summaries, plot."""

from __future__ import annotations

import tomllib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lossatlas.engine import ConfigError, DataBundle, Objective, Split, make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.context import StepContext
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.plugins.probes.interpolation import (
    alpha_grid,
    bn_buffers,
    bn_recompute,
    curve_summary,
    evaluate_points,
)

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
record_every = 2
[[steps]]
name = "interp"
probe = "interpolation"
pairs = [{pairs}]
points = 11
zoom_points = 5
"""
PAIRS = """
    ["init", "train"], ["random:20", "train"], ["train", "random"], ["train@6", "train@0"],
    ["random", "train@6"],
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
    return run(
        tmp_path_factory.mktemp(request.param), DIGITS.format(dtype=request.param, pairs=PAIRS)
    )


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
    # 'STEP@N' is the snapshot the train step recorded at optimizer step N
    tr = store.open_step("r", "train").load()
    snap6 = tr["trajectory"].sel(record=6).values
    np.testing.assert_array_equal(tr["trajectory"].sel(record=0).values, init.numpy())
    assert float(ds["distance"][3]) == pytest.approx(
        float(np.linalg.norm(snap6.astype(np.float64) - init.double().numpy())), rel=1e-6
    )
    for theta, alpha in ((torch.as_tensor(snap6), 0.0), (init, 1.0)):
        own = obj.evaluate(theta.to(obj.dtype).unsqueeze(0))["loss"][0]
        assert float(ds["train_loss"].sel(pair=3, alpha=alpha)) == own
    # 'random' next to a snapshot takes the snapshot's norm
    assert float(ds["norm0"][4]) == pytest.approx(float(np.linalg.norm(snap6)), rel=1e-6)
    assert float(ds["norm1"][4]) == float(ds["norm0"][3])
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


def test_recompute_bn_statistics_with_a_frozen_layer():
    """A frozen first layer is a constant of the objective (not in x): the BN statistics
    are recomputed with its own weights."""
    torch.manual_seed(0)
    X = torch.randn(40, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    data = DataBundle(Split(X, y), Split(X[:10], y[:10]), "classification", 3)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 3)
    )
    model[0].requires_grad_(False)
    W0, b0 = model[0].weight.detach().double().clone(), model[0].bias.detach().double().clone()
    obj = Objective(model, data, dtype=torch.float64)
    assert "0.weight" in obj.layout.frozen
    x = obj.x0 + 0.3 * torch.randn(obj.D, dtype=torch.float64)
    bufs = bn_buffers(obj, x)
    torch.testing.assert_close(bufs["1.running_mean"], (X @ W0.T + b0).mean(0))


def test_evaluate_points_recomputes_only_where_there_are_running_statistics():
    """recompute_bn is a request: without BatchNorm running statistics (no BN layer, or
    track_running_stats=False) the points are evaluated as they are."""
    torch.manual_seed(0)
    X = torch.randn(30, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    data = DataBundle(Split(X, y), Split(X[:10], y[:10]), "classification", 3)
    plain = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    running = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 3)
    )
    batch_stats = SimpleNamespace(model=torch.nn.BatchNorm1d(6, track_running_stats=False))
    assert bn_recompute(batch_stats, True) is False
    for model, recomputes in ((plain, False), (running, True)):
        obj = Objective(model, data, dtype=torch.float64, batch_size=16)
        assert bn_recompute(obj, True) is recomputes
        assert bn_recompute(obj, False) is False
        P = obj.x0 + 0.3 * torch.randn(3, obj.D, dtype=torch.float64)
        got, ref = evaluate_points(obj, P, recompute_bn=True), obj.evaluate_both(P)
        same = all(np.array_equal(got[k], ref[k]) for k in ref)
        assert same is not recomputes


def test_bad_pairs_are_config_errors(tmp_path):
    text = DIGITS.format(dtype="float64", pairs='["init", "trian"]')
    with pytest.raises(ConfigError, match="trian"):
        run(tmp_path, text)
    text = DIGITS.format(dtype="float64", pairs='["random:-1", "init"]')
    with pytest.raises(ConfigError, match="radius"):
        run(tmp_path, text)


def test_plot(digits_run, tmp_path):
    _cfg, store = digits_run
    ds = store.open_step("r", "interp").load()
    from lossatlas.plugins.probes.interpolation import Interpolation

    fig = Interpolation().plot(ds, logy=True)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 4
    assert fig.axes[0].get_yscale() == "log"
    # every pair on the main axis, train and validation
    assert len(fig.axes[0].get_lines()) == 2 * ds.sizes["pair"] + 2
    for suffix in ("png", "svg", "pdf"):
        fig.savefig(tmp_path / f"i.{suffix}")
        assert (tmp_path / f"i.{suffix}").stat().st_size > 0


@pytest.mark.parametrize(
    "lo, hi, n",
    [
        (-0.5, 1.5, 41),
        (-0.5, 1.5, 11),
        (-0.3, 1.3, 17),
        (-1.0, 2.0, 31),
        (0.0, 1.0, 2),
        (0.2, 0.8, 7),
    ],
)
def test_alpha_grid_has_exact_endpoints_and_no_near_duplicates(lo, hi, n):
    a = alpha_grid(lo, hi, n)
    assert 0.0 in a and 1.0 in a and a[0] == min(lo, 0.0) and a[-1] == max(hi, 1.0)
    assert np.all(np.diff(a) > 1e-6 * (hi - lo) / n)  # sorted, no 5.6e-17 next to 0
    # every linspace value is on the grid (up to the snap onto 0 and 1)
    near = np.abs(np.linspace(lo, hi, n)[:, None] - a[None, :]).min(axis=1)
    assert near.max() <= 1e-12
    assert len(a) == n + sum(not np.isclose(np.linspace(lo, hi, n), e).any() for e in (0, 1))


def test_bad_snapshot_references(tmp_path):
    base = DIGITS.format(dtype="float64", pairs="{pairs}")
    for sub in "abc":
        (tmp_path / sub).mkdir()
    with pytest.raises(ConfigError, match="STEP@N"):
        run(tmp_path / "a", base.format(pairs='["train@six", "init"]'))
    with pytest.raises(ConfigError, match="names no earlier step"):
        run(tmp_path / "b", base.format(pairs='["trian@2", "init"]'))
    # step 3 was never recorded (record_every = 2): the error names the nearest ones
    with pytest.raises(ConfigError, match=r"no snapshot at optimizer step 3; .* 2, 4"):
        run(tmp_path / "c", base.format(pairs='["train@3", "init"]'))


BN_FACTORY = """
import math
import torch


def make(data):
    n = math.prod(data.input_shape)
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(n, 6),
        torch.nn.BatchNorm1d(6),
        torch.nn.ReLU(),
        torch.nn.Linear(6, data.n_outputs),
    )
"""

BN_RUN = """
name = "bn"
seed = 0
dtype = "float64"
[model]
plugin = "python"
factory = "bn_factory_interp:make"
search_path = ["{path}"]
[dataset]
plugin = "digits"
limit = 150
[[steps]]
name = "fixed"
probe = "interpolation"
pairs = [["init", "init:1"]]
alpha_min = -0.5
alpha_max = 1.5
points = 9
zoom_points = 0
[[steps]]
name = "recomputed"
probe = "interpolation"
pairs = [["init", "init:1"]]
alpha_min = -0.5
alpha_max = 1.5
points = 9
zoom_points = 0
recompute_bn = true
"""


def test_recompute_bn_end_to_end_against_brute_force(tmp_path):
    (tmp_path / "bn_factory_interp.py").write_text(BN_FACTORY)
    cfg, store = run(tmp_path, BN_RUN.format(path=tmp_path))
    fixed = store.open_step("bn", "fixed").load()
    ds = store.open_step("bn", "recomputed").load()
    ctx = context(cfg, "recomputed", store)
    obj = ctx.objective
    x0, x1 = ctx.resolve_point("init"), ctx.resolve_point("init:1")
    Xt, yt = obj.splits["train"].inputs.double(), obj.splits["train"].targets
    Xv, yv = obj.splits["validation"].inputs.double(), obj.splits["validation"].targets
    Xt, Xv = Xt.reshape(len(Xt), -1), Xv.reshape(len(Xv), -1)
    for alpha in ds["alpha"].values:
        W = obj.layout.unflatten((1 - alpha) * x0 + alpha * x1)

        def hidden(X, W=W):
            return X @ W["2.weight"].T + W["2.bias"]  # dropout off (eval mode)

        h = hidden(Xt)
        mean, var = h.mean(0), h.var(0, unbiased=True)  # one batch: the split's statistics

        def loss(X, y, W=W, mean=mean, var=var):
            z = (hidden(X) - mean) / torch.sqrt(var + 1e-5) * W["3.weight"] + W["3.bias"]
            logits = torch.relu(z) @ W["5.weight"].T + W["5.bias"]
            return float(torch.nn.functional.cross_entropy(logits, y))

        got = ds.sel(pair=0, alpha=alpha)
        assert float(got["train_loss"]) == pytest.approx(loss(Xt, yt), rel=1e-10)
        assert float(got["validation_loss"]) == pytest.approx(loss(Xv, yv), rel=1e-10)
    # without the option the stored statistics (the initialisation's) are used: the
    # curve differs, and its ends are the models' own losses exactly
    mid = {"pair": 0, "alpha": 0.5}
    assert abs(float(fixed["train_loss"].sel(mid)) - float(ds["train_loss"].sel(mid))) > 1e-3
    for x, a in ((x0, 0.0), (x1, 1.0)):
        own = obj.evaluate(x.unsqueeze(0))["loss"][0]
        assert float(fixed["train_loss"].sel(pair=0, alpha=a)) == own
