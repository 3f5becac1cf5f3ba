"""Losses as plugins: each built-in against a brute-force formula in float64 (value,
gradient and HVP of the objective), the fast path with a loss it has no kernel for,
the user's own loss by import path, and a run that records its loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.func import functional_call

from lossatlas.engine import (
    ConfigError,
    DataBundle,
    Loss,
    Objective,
    ShapeError,
    Split,
    make_registry,
)
from lossatlas.plugins.datasets.digits import Digits, DigitsOptions
from lossatlas.plugins.losses import (
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    LabelSmoothingLoss,
    MSELoss,
    PythonLoss,
)
from lossatlas.plugins.losses.classification import LabelSmoothingOptions
from lossatlas.plugins.losses.importpath import PythonLossOptions
from lossatlas.plugins.losses.regression import HuberOptions
from lossatlas.plugins.models.mlp import MLPModel, MLPOptions


def regression(n: int = 48, outputs: int = 2, seed: int = 0) -> DataBundle:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g) * 2 - 1
    y = torch.stack([torch.sin(2 * x.sum(1)), x[:, 0] * x[:, 1]], 1)[:, :outputs]
    y = y + 0.3 * torch.randn(y.shape, generator=g)
    return DataBundle(Split(x[:36], y[:36]), Split(x[36:], y[36:]), "regression", outputs)


def digits() -> DataBundle:
    return Digits().load(DigitsOptions(limit=80), seed=0)


# Brute force: the formula written out per element, on the module's own forward.
def l1_formula(out, y):
    return (out - y).abs().mean()


def huber_formula(out, y, delta):
    e = (out - y).abs()
    return torch.where(e <= delta, 0.5 * e**2, delta * (e - 0.5 * delta)).mean()


def mse_formula(out, y):
    return ((out - y) ** 2).mean()


def smoothed_formula(out, y, eps):
    logp = torch.log_softmax(out, dim=1)
    C = out.shape[1]
    q = torch.full_like(logp, eps / C)
    q[torch.arange(len(y)), y] += 1 - eps
    return -(q * logp).sum(1).mean()


def ce_formula(out, y):
    logp = torch.log_softmax(out, dim=1)
    return -logp[torch.arange(len(y)), y].mean()


CASES = {
    "l1": (L1Loss(), None, regression, l1_formula),
    "huber": (
        HuberLoss(),
        HuberOptions(delta=0.25),
        regression,
        lambda o, y: huber_formula(o, y, 0.25),
    ),
    "mse": (MSELoss(), None, regression, mse_formula),
    "cross-entropy": (CrossEntropyLoss(), None, digits, ce_formula),
    "label-smoothing": (
        LabelSmoothingLoss(),
        LabelSmoothingOptions(smoothing=0.2),
        digits,
        lambda o, y: smoothed_formula(o, y, 0.2),
    ),
}


def build(name: str, fast_path: bool = True):
    plugin, opts, make_data, formula = CASES[name]
    data = make_data()
    model = MLPModel().build(MLPOptions(hidden=[5], activation="tanh"), data, seed=1)
    loss = plugin.build(opts, data)
    obj = Objective(model, data, dtype=torch.float64, loss=loss, fast_path=fast_path)
    s = obj.splits["train"]

    def f(x: torch.Tensor) -> torch.Tensor:
        params, offset = {}, 0
        for pname, p in obj.model.named_parameters():
            params[pname] = x[offset : offset + p.numel()].reshape(p.shape)
            offset += p.numel()
        out = functional_call(obj.model, params, (s.inputs,))
        return formula(out.reshape(s.targets.shape) if obj.task == "regression" else out, s.targets)

    return obj, f


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_gradient_and_hvp_against_brute_force(name: str) -> None:
    obj, f = build(name)
    g = torch.Generator().manual_seed(2)
    x = obj.x0 + 0.5 * torch.randn(obj.D, generator=g, dtype=torch.float64)
    assert obj.loss_name == name
    torch.testing.assert_close(obj.loss(x), f(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(obj.evaluate(x)["loss"][0], f(x).item(), rtol=1e-12)
    torch.testing.assert_close(obj.grad(x), torch.func.grad(f)(x), rtol=1e-10, atol=1e-13)
    H = torch.func.hessian(f)(x)
    V = torch.randn(3, obj.D, generator=g, dtype=torch.float64)
    for method in ("forward", "reverse"):
        torch.testing.assert_close(obj.hvp_many(x, V, method=method), V @ H, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(obj.hvp(x, V[0]), H @ V[0], rtol=1e-9, atol=1e-11)
    if name == "huber":  # both branches of the Huber loss are in play at x
        s = obj.splits["train"]
        e = (obj._forward(x, s.inputs).reshape(s.targets.shape) - s.targets).abs()
        assert bool((e <= 0.25).any()) and bool((e > 0.25).any())


@pytest.mark.parametrize("name", ["l1", "huber", "label-smoothing"])
def test_fast_path_without_a_kernel_calls_the_loss(name: str) -> None:
    """The MLP fast path has fused kernels for cross-entropy and MSE only; with any other
    loss it calls the loss itself and still equals the generic forward."""
    fast, _ = build(name)
    slow, _ = build(name, fast_path=False)
    assert fast.evaluation_path.name == "mlp-fast-path" and slow.fast_path is None
    g = torch.Generator().manual_seed(3)
    X = fast.x0 + 0.4 * torch.randn(6, fast.D, generator=g, dtype=torch.float64)
    a, b = fast.evaluate_both(X), slow.evaluate_both(X)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12)


def test_a_loss_for_another_task_is_refused() -> None:
    data = digits()
    model = MLPModel().build(MLPOptions(hidden=[4]), data, seed=0)
    with pytest.raises(ConfigError, match="loss 'l1' is for regression"):
        Objective(model, data, loss=L1Loss().build(None, data))


def test_user_loss_by_import_path(tmp_path) -> None:
    (tmp_path / "my_losses.py").write_text(
        "import torch\n"
        "def mean_abs(outputs, targets, scale=1.0):\n"
        "    return scale * torch.nn.functional.l1_loss(outputs.reshape(targets.shape), targets)\n"
        "def per_sample(outputs, targets):\n"
        "    return (outputs.reshape(targets.shape) - targets).abs().mean(1)\n"
        "def numpy_loss(outputs, targets):\n"
        "    e = (outputs.reshape(targets.shape) - targets).detach()\n"
        "    return torch.tensor(float(e.abs().mean()))\n"
    )
    data = regression()
    model = MLPModel().build(MLPOptions(hidden=[5]), data, seed=1)
    ref = Objective(model, data, dtype=torch.float64, loss=L1Loss().build(None, data))
    x = ref.x0 + 0.1
    plugin = PythonLoss()
    for function, reduction, kwargs in (
        ("my_losses:mean_abs", "mean", {}),
        ("my_losses:per_sample", "none", {}),
        ("my_losses:mean_abs", "mean", {"scale": 1.0}),
    ):
        opts = PythonLossOptions(
            function=function, reduction=reduction, kwargs=kwargs, search_path=[str(tmp_path)]
        )
        loss = plugin.build(opts, data)
        obj = Objective(model, data, dtype=torch.float64, loss=loss)
        torch.testing.assert_close(obj.loss(x), ref.loss(x), rtol=1e-12, atol=0)
        torch.testing.assert_close(obj.grad(x), ref.grad(x), rtol=1e-10, atol=1e-14)
        assert plugin.sources(opts) == [str(tmp_path / "my_losses.py")]
    wrong = PythonLossOptions("my_losses:per_sample", reduction="mean", search_path=[str(tmp_path)])
    with pytest.raises(ShapeError, match="reduction 'mean' means a scalar"):
        Objective(model, data, loss=plugin.build(wrong, data))
    detached = PythonLossOptions("my_losses:numpy_loss", search_path=[str(tmp_path)])
    with pytest.raises(ShapeError, match="does not depend differentiably"):
        Objective(model, data, loss=plugin.build(detached, data))
    bad_kwargs = PythonLossOptions(
        "my_losses:per_sample", kwargs={"nope": 1}, search_path=[str(tmp_path)]
    )
    with pytest.raises(ConfigError, match="does not take kwargs"):
        plugin.build(bad_kwargs, data)


def test_every_builtin_is_registered_and_listed(run_cli) -> None:
    reg = make_registry()
    assert set(reg.names("loss")) == {
        "cross-entropy",
        "label-smoothing",
        "mse",
        "l1",
        "huber",
        "python",
    }
    out = run_cli("plugins").output
    assert "loss      l1" in out and "loss      huber" in out
    shown = run_cli("plugins", "huber").output
    assert '[loss] plugin = "huber"' in shown and "delta" in shown
    assert all(reg.get("loss", name).summary for name in reg.names("loss"))


def test_a_run_trains_and_measures_with_its_loss_and_records_it(
    tmp_path, tiny_config, write_config, run_cli
) -> None:
    """[loss] plugin = "l1": the train probe minimises L1, every stored loss is L1, and
    the step attrs say so (with the resolved options)."""
    import xarray as xr

    cfg = tiny_config(
        dataset={"plugin": "formula", "expression": "sin(3*x)", "n_train": 40, "n_validation": 20},
        model={"plugin": "mlp", "hidden": [8], "activation": "tanh"},
        loss={"plugin": "huber", "delta": 0.1},
        steps=[
            {"name": "train", "probe": "train", "epochs": 30, "optimizer": "adam", "lr": 0.05},
            {"name": "line", "probe": "random-line", "at": "train", "points": 5, "directions": 2},
        ],
    )
    store = tmp_path / "s.zarr"
    res = run_cli("run", write_config(cfg), "--store", store, "--quiet")
    assert res.exit_code == 0, res.output
    line = xr.open_zarr(store, group="tiny/line")
    train = xr.open_zarr(store, group="tiny/train")
    assert line.attrs["loss"] == "huber" and json.loads(line.attrs["loss_options"]) == {
        "delta": 0.1
    }
    assert "losses (lossatlas" in line.attrs["loss_plugin"]
    resolved = json.loads(line.attrs["resolved_options"])
    assert resolved["loss"] == {"plugin": "huber", "delta": 0.1}
    assert resolved["model"]["init"] == "xavier"  # a default, filled in
    # The loss at the trained point, recomputed independently, is the Huber loss.
    from lossatlas.engine.config import parse_config
    from lossatlas.engine.context import StepContext

    config = parse_config(cfg)
    ctx = StepContext(make_registry(), config, config.steps[1])
    x = torch.as_tensor(np.asarray(train["point"].values), dtype=torch.float64)
    s = ctx.objective.splits["train"]
    out = ctx.objective._forward(x, s.inputs).reshape(s.targets.shape)
    want = huber_formula(out, s.targets, 0.1).item()
    centre = float(line["train_loss"].sel(alpha=0.0).values[0])
    assert centre == pytest.approx(want, rel=1e-12)
    hist = np.asarray(train["train_loss"].values, dtype=float)
    assert hist[-1] < hist[0]


def test_loss_dataclass_reductions() -> None:
    out = torch.tensor([[1.0], [3.0]])
    y = torch.zeros(2, 1)
    for reduction, fn in (
        ("none", lambda o, t: (o - t).abs()[:, 0]),
        ("mean", lambda o, t: (o - t).abs().mean()),
        ("sum", lambda o, t: (o - t).abs().sum()),
    ):
        assert float(Loss("x", fn, reduction=reduction).sum(out, y)) == 4.0


def test_the_plugin_guide_example_is_a_working_loss_plugin(
    tmp_path, write_config, monkeypatch
) -> None:
    """docs/plugins.md's LogCosh, registered in-process, runs a pipeline; its values
    are log cosh of the error."""
    import re
    import types
    from pathlib import Path

    from lossatlas.engine import hookimpl
    from lossatlas.engine.config import load_config
    from lossatlas.engine.runner import run_pipeline
    from lossatlas.engine.store import Store

    doc = (Path(__file__).parents[3] / "docs" / "plugins.md").read_text()
    section = doc[doc.index("### Losses: `LossPlugin`") :]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[1]
    module = types.ModuleType("logcosh_plugin")
    monkeypatch.setitem(__import__("sys").modules, "logcosh_plugin", module)
    exec(compile(code, "docs/plugins.md", "exec"), module.__dict__)
    module.lossatlas_register_losses = hookimpl(lambda: [module.LogCosh()])
    registry = make_registry(plugins=[("logcosh", module)])
    assert "log-cosh" in registry.names("loss")
    cfg = {
        "name": "lc",
        "dtype": "float64",
        "model": {"plugin": "mlp", "hidden": [4]},
        "dataset": {"plugin": "formula", "expression": "x", "n_train": 20, "n_validation": 10},
        "loss": {"plugin": "log-cosh", "scale": 2.0},
        "steps": [{"name": "line", "probe": "random-line", "points": 3, "directions": 1}],
    }
    config = load_config(write_config(cfg))
    run_pipeline(config, str(tmp_path / "s.zarr"), registry)
    ds = Store(str(tmp_path / "s.zarr")).open_step("lc", "line").load()
    assert ds.attrs["loss"] == "log-cosh" and "logcosh" in ds.attrs["loss_plugin"]
    from lossatlas.engine.context import StepContext

    obj = StepContext(registry, config, config.steps[0]).objective
    s = obj.splits["train"]
    e = obj._forward(obj.x0, s.inputs).reshape(s.targets.shape) - s.targets
    want = torch.log(torch.cosh(e / 2.0)).mean().item()
    assert float(ds["train_loss"].sel(alpha=0.0).values[0]) == pytest.approx(want, rel=1e-12)
