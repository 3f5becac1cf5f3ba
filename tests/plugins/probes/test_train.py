"""train probe: stored results equal engine.training.train, reuse by name, divergence,
the ``from`` option, plot."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from lossatlas.engine import ConfigError, make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.context import StepContext
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.engine.training import train
from lossatlas.plugins.probes.train import Train, planned_record_steps

CONFIG = """
name = "{name}"
seed = 0
dtype = "float64"
[model]
plugin = "mlp"
hidden = [16]
[dataset]
plugin = "digits"
limit = 300
[[steps]]
name = "train"
probe = "train"
from = "{start}"
optimizer = "sgd"
lr = {lr}
momentum = 0.9
epochs = 3
batch_size = 50
seed = 4
record_every = 4
"""


def run(path, text, **kw):
    cfg = parse_config(tomllib.loads(text))
    report = run_pipeline(cfg, str(path), make_registry(), progress=None, **kw)
    return cfg, Store(path), report


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("train") / "s.zarr"
    return (path, *run(path, CONFIG.format(name="a", start="init:3", lr=0.1)))


def test_stored_result_is_the_engine_training(trained):
    _path, cfg, store, _rep = trained
    ds = store.open_step("a", "train").load()
    ctx = StepContext(make_registry(), cfg, cfg.steps[0], store)
    x0 = ctx.resolve_point("init:3")
    assert not np.allclose(x0.numpy(), ctx.resolve_point("init").numpy())
    res = train(
        ctx.objective, x0, lr=0.1, momentum=0.9, epochs=3, batch_size=50, seed=4, record_every=4
    )
    np.testing.assert_array_equal(ds["initial"].values, x0.numpy())
    np.testing.assert_array_equal(ds["point"].values, res.x_final.numpy())
    # 240 train samples / 50 = 5 steps per epoch, 15 steps; records at 0, 4, 8, 12, 15
    assert list(ds["record"].values) == [0, 4, 8, 12, 15]
    np.testing.assert_array_equal(ds["trajectory"].values, res.trajectory)
    np.testing.assert_array_equal(ds["recorded_step"].values, [0, 4, 8, 12, 15])
    assert list(ds["epoch"].values) == [0, 1, 2, 3]
    for k in (
        "train_loss",
        "validation_loss",
        "train_accuracy",
        "validation_accuracy",
        "radius",
        "step",
    ):
        np.testing.assert_array_equal(ds[k].values, res.history[k])
    assert ds["train_loss"][-1] < ds["train_loss"][0]
    assert int(ds["steps"]) == 15 and int(ds["diverged"]) == 0
    assert ds.attrs["from"] == "init:3"


def test_trained_point_is_reused_by_name(trained, tmp_path):
    path, _cfg, store, _rep = trained
    _c, _s, report = run(path, CONFIG.format(name="a", start="init:3", lr=0.1))
    assert report.steps[0].skipped  # trained once, never again
    text = CONFIG.format(name="b", start="a/train", lr=0.1).replace("epochs = 3", "epochs = 0")
    cfg_b, store, _r = run(path, text)
    ds_b = store.open_step("b", "train").load()
    ds_a = store.open_step("a", "train").load()
    np.testing.assert_array_equal(ds_b["initial"].values, ds_a["point"].values)
    np.testing.assert_array_equal(ds_b["point"].values, ds_a["point"].values)
    ctx = StepContext(make_registry(), cfg_b, cfg_b.steps[0], store)
    np.testing.assert_array_equal(
        ctx.resolve_point("a/train.initial").numpy(), ds_a["initial"].values
    )


def test_divergence_is_recorded(tmp_path):
    _cfg, store, _report = run(tmp_path / "s.zarr", CONFIG.format(name="d", start="init", lr=1e200))
    ds = store.open_step("d", "train").load()
    assert int(ds["diverged"]) == 1
    assert int(ds["steps"]) < 15
    assert np.isnan(ds["train_loss"].values[-1])


def test_options():
    assert list(planned_record_steps(0, 7)) == [0, 7]
    assert list(planned_record_steps(3, 7)) == [0, 3, 6, 7]
    from lossatlas.engine import parse_options

    o = parse_options(Train.Options, {"from": "train2", "lr": 0.5}, "t")
    assert o.start == "train2" and o.lr == 0.5
    with pytest.raises(ConfigError, match="momentum"):
        parse_options(Train.Options, {"momentum": 1.5}, "t")
    with pytest.raises(ConfigError, match="betas"):
        parse_options(Train.Options, {"optimizer": "adam", "betas": [0.9]}, "t")
    with pytest.raises(ConfigError, match="nesterov"):
        parse_options(Train.Options, {"nesterov": True}, "t")
    with pytest.raises(ConfigError, match="unknown option 'start'"):
        parse_options(Train.Options, {"start": "init"}, "t")


def test_plot(trained, tmp_path):
    _p, _c, store, _r = trained
    fig = Train().plot(store.open_step("a", "train").load())
    assert len(fig.axes) == 3
    fig.savefig(tmp_path / "t.png")


def test_early_stop_keeps_the_last_point_in_the_trajectory(trained, tmp_path):
    _path, _cfg, store, _rep = trained
    full = store.open_step("a", "train").load()
    # stop at the end of epoch 1 (step 5), between the planned snapshots 4 and 8
    target = float(full["train_loss"][1]) * (1 + 1e-9)
    text = CONFIG.format(name="e", start="init:3", lr=0.1) + f"target_loss = {target!r}\n"
    _c, store, _r = run(tmp_path / "s.zarr", text)
    ds = store.open_step("e", "train").load()
    assert int(ds["steps"]) == 5
    assert list(ds["record"].values) == [0, 4, 8, 12, 15]  # the planned steps
    np.testing.assert_array_equal(ds["recorded_step"].values, [0, 4, 5, np.nan, np.nan])
    np.testing.assert_array_equal(ds["trajectory"].values[2], ds["point"].values)
    np.testing.assert_array_equal(ds["trajectory"].values[:2], full["trajectory"].values[:2])
    assert np.isnan(ds["trajectory"].values[3:]).all()


@pytest.mark.parametrize(
    "extra, kwargs",
    [
        ('optimizer = "adam"\nbetas = [0.8, 0.99]', {"optimizer": "adam", "betas": (0.8, 0.99)}),
        ("nesterov = true", {"nesterov": True, "momentum": 0.9}),
    ],
)
def test_adam_betas_and_nesterov_reach_the_optimizer(tmp_path, extra, kwargs):
    text = (
        CONFIG.format(name="o", start="init", lr=0.01).replace('optimizer = "sgd"\n', "")
        + extra
        + "\n"
    )
    cfg, store, _r = run(tmp_path / "s.zarr", text)
    ds = store.open_step("o", "train").load()
    ctx = StepContext(make_registry(), cfg, cfg.steps[0], store)
    opts = {"momentum": 0.9, **kwargs}
    res = train(
        ctx.objective, ctx.resolve_point("init"), lr=0.01, epochs=3, batch_size=50, seed=4, **opts
    )
    np.testing.assert_array_equal(ds["point"].values, res.x_final.numpy())
    plain = train(
        ctx.objective,
        ctx.resolve_point("init"),
        lr=0.01,
        epochs=3,
        batch_size=50,
        seed=4,
        momentum=0.9,
        optimizer=kwargs.get("optimizer", "sgd"),
    )
    assert not np.array_equal(ds["point"].values, plain.x_final.numpy())
