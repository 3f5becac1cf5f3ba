"""curve probe: exact endpoints, exact lengths, the deep-linear hyperbola (the Bezier
curve bends along the valley the chord cuts across), a digits pipeline that resumes to
the same numbers, the plot and the paths."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch
from pairs import two_minima

from lossatlas.engine import DataBundle, Objective, OptimizerOptions, Split, make_registry
from lossatlas.engine.components import Cell
from lossatlas.engine.config import parse_config
from lossatlas.engine.context import StepContext
from lossatlas.engine.options import parse_options
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.engine.sweep import cell_seed
from lossatlas.plugins.probes.curve import (
    CurveOptions,
    arc_fraction,
    curve_coefficients,
    curve_length,
    curve_points,
    garipov_lr,
    train_curve,
)


def run(tmp_path, text):
    cfg = parse_config(tomllib.loads(text))
    path = str(tmp_path / "s.zarr")
    run_pipeline(cfg, path, make_registry(), progress=None)
    return cfg, Store(path)


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
@pytest.mark.parametrize("bends", [1, 3])
def test_coefficients_are_exact_at_the_ends_and_sum_to_one(kind: str, bends: int) -> None:
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    C = curve_coefficients(kind, bends, t)
    assert C.shape == (101, bends + 2)
    assert torch.allclose(C.sum(1), torch.ones(101, dtype=torch.float64), atol=1e-15)
    assert torch.equal(C[0], torch.eye(bends + 2, dtype=torch.float64)[0])
    assert torch.equal(C[-1], torch.eye(bends + 2, dtype=torch.float64)[-1])
    g = torch.Generator().manual_seed(0)
    control = torch.randn(bends + 2, 7, generator=g, dtype=torch.float64)
    P = curve_points(kind, control, np.array([0.0, 1.0]))
    assert torch.equal(P[0], control[0]) and torch.equal(P[1], control[-1])


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
def test_length_and_arc_fraction_against_a_fine_polyline(kind: str) -> None:
    g = torch.Generator().manual_seed(1)
    control = torch.randn(4, 50, generator=g, dtype=torch.float64) * torch.tensor(
        [[1.0], [3.0], [0.2], [1.0]], dtype=torch.float64
    )
    # a fine polyline that also passes through the chain's knots (t = 0, 1/3, 2/3, 1)
    fine = np.unique(np.concatenate([np.linspace(0, 1, 200_001), np.linspace(0, 1, 4)]))
    P = curve_points(kind, control, fine)
    seg = torch.linalg.vector_norm(torch.diff(P, dim=0), dim=1).numpy()
    reference = seg.sum()
    assert curve_length(kind, control) == pytest.approx(reference, rel=1e-9)
    t = np.linspace(0, 1, 11)
    frac = arc_fraction(kind, control, t)
    cum = np.concatenate([[0.0], np.cumsum(seg)]) / reference
    assert frac[0] == 0.0 and frac[-1] == pytest.approx(1.0, abs=1e-15)
    assert np.allclose(frac, np.interp(t, fine, cum), atol=1e-8)
    if kind == "polychain":  # a chain's length is exactly the sum of its segments
        exact = float(torch.linalg.vector_norm(torch.diff(control, dim=0), dim=1).sum())
        assert curve_length(kind, control) == pytest.approx(exact, rel=1e-14)


def test_the_peers_learning_rate_schedule() -> None:
    assert garipov_lr(1.0, 0, 10) == 1.0 and garipov_lr(1.0, 5, 10) == 1.0
    assert garipov_lr(1.0, 7, 10) == pytest.approx(1 - 0.5 * 0.99)
    assert garipov_lr(1.0, 9, 10) == pytest.approx(0.01)


HYPERBOLA = """
name = "h"
seed = 0
dtype = "float64"
[model]
plugin = "deep-linear"
[dataset]
plugin = "deep-linear"
[[steps]]
name = "curve"
probe = "curve"
pairs = [["checkpoint:{a}", "checkpoint:{b}"]]
optimizer = "adam"
lr = 0.05
lr_schedule = "constant"
epochs = 400
batch_size = 0
points = 41
"""


def test_on_the_deep_linear_hyperbola_the_bezier_barrier_is_far_below_the_chords(
    tmp_path,
) -> None:
    # Two global minima of (1 − w1·w2)² on the hyperbola w1·w2 = 1: the chord between
    # them crosses w1·w2 ≈ 4.5 (loss ≈ 12); a quadratic Bezier curve can follow the
    # valley.
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    for path, (w1, w2) in ((a, (4.0, 0.25)), (b, (0.25, 4.0))):
        torch.save(
            {"layers.0.weight": torch.tensor([[w1]]), "layers.1.weight": torch.tensor([[w2]])},
            path,
        )
    _cfg, store = run(tmp_path, HYPERBOLA.format(a=a, b=b))
    ds = store.open_step("h", "curve").load()
    chord = float(ds["linear_train_loss_barrier"][0])
    bezier = float(ds["train_loss_barrier"][0])
    assert chord == pytest.approx(12.35, abs=0.1)
    assert bezier < 0.05 * chord
    assert float(ds["length_norm"][0]) > 1.0  # the curve is longer than the chord
    assert ds["train_loss"].values[0, 0] == 0.0 and ds["train_loss"].values[0, -1] == 0.0


DIGITS = (
    two_minima("r")
    + """
[[steps]]
name = "curve"
probe = "curve"
pairs = [["a", "b"], ["b", "a"]]
kind = "{kind}"
bends = {bends}
epochs = 3
batch_size = 50
points = 9
"""
)


@pytest.fixture(scope="module", params=[("bezier", 1), ("polychain", 2)])
def digits_curve(request, tmp_path_factory):
    kind, bends = request.param
    return run(tmp_path_factory.mktemp(kind), DIGITS.format(kind=kind, bends=bends))


def test_endpoints_are_the_models_own_losses_and_a_resumed_cell_repeats(digits_curve) -> None:
    cfg, store = digits_curve
    ds = store.open_step("r", "curve").load()
    step = next(s for s in cfg.steps if s.name == "curve")
    ctx = StepContext(make_registry(), cfg, step, store)
    obj = ctx.objective
    a, b = ctx.resolve_point("a"), ctx.resolve_point("b")
    for p, (w0, w1) in enumerate(((a, b), (b, a))):
        for end, w in ((0, w0), (-1, w1)):
            own = obj.evaluate_both(w.unsqueeze(0))
            for key, v in own.items():
                assert ds[key].values[p, end] == v[0]
                assert ds[f"linear_{key}"].values[p, end] == v[0]
        assert float(ds["distance"][p]) == pytest.approx(float((w1 - w0).norm()), rel=1e-14)
    assert np.all(np.diff(ds["arc"].values, axis=1) > 0)
    assert np.all(ds["length_norm"].values >= 1.0 - 1e-12)
    # the same cell computed again (a resumed run) gives the same numbers, bit for bit
    coords = {"pair": 1}
    cell = Cell(index={"pair": 1}, coords=coords, seed=cell_seed(cfg.seed, "curve", coords))
    again = ctx.probe.compute(ctx.options, ctx, cell)
    assert np.array_equal(np.asarray(again["bends"]), ds["bends"].values[1])
    assert np.array_equal(again["train_loss"], ds["train_loss"].values[1])


def test_plot_and_paths(digits_curve) -> None:
    import matplotlib.pyplot as plt

    _cfg, store = digits_curve
    ds = store.open_step("r", "curve").load()
    probe = make_registry().get("probe", "curve")
    fig = probe.plot(ds, logy=True)
    assert len(fig.axes) == 3
    plt.close(fig)
    paths = probe.paths(ds)
    assert len(paths) == 2
    assert paths[0].position[0] == 0.0 and paths[0].position[-1] == pytest.approx(1.0)
    assert paths[0].length_norm == pytest.approx(float(ds["length_norm"][0]))
    assert paths[0].barrier == pytest.approx(float(ds["train_loss_barrier"][0]))


def test_batchnorm_statistics_are_recomputed_at_every_t(tmp_path) -> None:
    from lossatlas.plugins.probes.interpolation import evaluate_points

    text = (
        DIGITS.format(kind="bezier", bends=1)
        .replace(
            'plugin = "mlp"\nhidden = [16]',
            'plugin = "resnet"\ndepth = 8\nbn_samples = 32\ninput_shape = [1, 8, 8]',
        )
        .replace("limit = 300", "limit = 60")
        .replace('pairs = [["a", "b"], ["b", "a"]]', 'pairs = [["a", "b"]]')
        .replace("epochs = 4", "epochs = 1")
        .replace("points = 9", "points = 3")
    )
    cfg, store = run(tmp_path, text)
    ds = store.open_step("r", "curve").load()
    assert ds.attrs["recompute_bn"] == 1
    step = next(s for s in cfg.steps if s.name == "curve")
    ctx = StepContext(make_registry(), cfg, step, store)
    a, b = ctx.resolve_point("a"), ctx.resolve_point("b")
    ends = evaluate_points(ctx.objective, torch.stack([a, b]), recompute_bn=True)
    frozen = ctx.objective.evaluate_both(torch.stack([a, b]))
    assert ds["train_loss"].values[0, [0, -1]] == pytest.approx(ends["train_loss"], rel=1e-12)
    assert not np.allclose(ends["train_loss"], frozen["train_loss"])  # the recomputation mattered


def test_one_training_step_applies_weight_decay_once() -> None:
    """The shared optimiser options with curve's defaults; the step descends
    L(φ(t)) + ½·wd·‖φ(t)‖² (weight decay in the loss only, not again in the optimiser):
    one full-batch SGD step moves the bend by −lr·c₁(t)·(∇L(φ(t)) + wd·φ(t))."""
    defaults = parse_options(CurveOptions, {}, "step 'curve'")
    assert isinstance(defaults, OptimizerOptions)
    assert (defaults.optimizer, defaults.lr, defaults.momentum) == ("sgd", 0.05, 0.9)
    assert (defaults.epochs, defaults.batch_size) == (20, 64)
    torch.manual_seed(0)
    X = torch.randn(24, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (24,))
    data = DataBundle(Split(X, y), Split(X[:8], y[:8]), "classification", 3)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    obj = Objective(model, data, dtype=torch.float64)
    w0 = obj.x0.clone()
    w1 = w0 + torch.randn(obj.D, dtype=torch.float64)
    o = parse_options(
        CurveOptions,
        {"epochs": 1, "batch_size": 0, "momentum": 0.0, "lr": 0.1, "weight_decay": 0.3,
         "lr_schedule": "constant"},
        "step 'curve'",
    )  # fmt: skip
    control, _history, diverged = train_curve(obj, w0, w1, o, torch.Generator().manual_seed(5))
    assert not diverged
    t = torch.rand(1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    c = curve_coefficients("bezier", 1, t)[0]
    bend = (w0 + w1) / 2
    x = c[0] * w0 + c[1] * bend + c[2] * w1
    grad = torch.func.grad(obj.function("train"))(x)
    expect = bend - 0.1 * c[1] * (grad + 0.3 * x)
    torch.testing.assert_close(control[1], expect, rtol=0, atol=1e-12)
