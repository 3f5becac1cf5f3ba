"""lmc-instability probe: Frankle's barrier, children spawned from recorded snapshots,
k = T (no training left: the children are the parent, no barrier), clear errors before
anything runs, replicates summarised, the plot."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

from lossatlas.engine import ConfigError, make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.plugins.probes.lmc_instability import frankle_barrier

TEXT = """
name = "r"
seed = 0
dtype = "float64"
[model]
plugin = "mlp"
hidden = [16]
[dataset]
plugin = "{dataset}"
{data_opts}
[[steps]]
name = "train"
probe = "train"
lr = 0.1
epochs = 3
batch_size = 50
record_every = {every}
[[steps]]
name = "lmc"
probe = "lmc-instability"
of = "train"
spawn = {spawn}
replicates = 2
points = 7
"""


def run(tmp_path, **kw):
    opts = {"dataset": "digits", "data_opts": "limit = 300", "every": 3, "spawn": "[0, 3, 15]"}
    opts.update(kw)
    cfg = parse_config(tomllib.loads(TEXT.format(**opts)))
    path = str(tmp_path / "s.zarr")
    run_pipeline(cfg, path, make_registry(), progress=None)
    return Store(path)


def test_frankles_barrier_uses_the_mean_of_the_ends() -> None:
    a = np.linspace(0, 1, 5)
    assert frankle_barrier(a, np.array([0.1, 0.2, 0.5, 0.2, 0.3])) == pytest.approx(0.3)
    assert frankle_barrier(a, np.array([0.1, 0.2, np.nan, 0.2, 0.3])) != frankle_barrier(a, a)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return run(tmp_path_factory.mktemp("lmc"))


def test_children_from_the_last_step_are_the_parent(digits) -> None:
    ds = digits.open_step("r", "lmc").load()
    parent = digits.open_step("r", "train").load()
    assert int(parent["steps"]) == 15 == ds.attrs["total_steps"]
    last = {"spawn": 2}
    assert np.all(ds["distance"].isel(last).values == 0)
    assert np.all(ds["validation_error_barrier"].isel(last).values == 0)
    loss = ds["train_loss"].isel(last).values
    assert np.allclose(loss, float(parent["train_loss"].values[-1]), rtol=1e-12)
    # earlier spawns: two different data orders give two different children
    assert np.all(ds["distance"].isel(spawn=0).values > 0)
    seeds = ds["child_seed"].values
    assert len({int(s) for s in seeds.reshape(-1)}) == seeds.size
    # barriers are ≥ 0 up to the mean-of-ends definition, and the summary matches
    mean = np.nanmean(ds["validation_error_barrier"].values, axis=1)
    assert np.allclose(ds["validation_error_barrier_mean"].values, mean)


def test_a_resumed_cell_gives_the_same_numbers(digits) -> None:
    from lossatlas.engine.components import Cell
    from lossatlas.engine.context import StepContext
    from lossatlas.engine.sweep import cell_seed

    ds = digits.open_step("r", "lmc").load()
    cfg = parse_config(json.loads(ds.attrs["config"]))
    step = next(s for s in cfg.steps if s.name == "lmc")
    ctx = StepContext(make_registry(), cfg, step, digits)
    coords = {"spawn": 3, "replicate": 1}
    cell = Cell({"spawn": 1, "replicate": 1}, coords, cell_seed(cfg.seed, "lmc", coords))
    again = ctx.probe.compute(ctx.options, ctx, cell)
    assert np.array_equal(again["child_seed"], ds["child_seed"].values[1, 1])
    assert np.array_equal(again["validation_loss"], ds["validation_loss"].values[1, 1])


def test_plot(digits) -> None:
    import matplotlib.pyplot as plt

    ds = digits.open_step("r", "lmc").load()
    fig = make_registry().get("probe", "lmc-instability").plot(ds)
    assert len(fig.axes) == 2
    plt.close(fig)


def test_a_regression_task_uses_the_loss(tmp_path) -> None:
    store = run(tmp_path, dataset="formula", data_opts='expression = "sin(3 * x)"', spawn="[0]")
    ds = store.open_step("r", "lmc").load()
    assert ds.attrs["metric"] == "loss" and "validation_loss_barrier" in ds


def test_spawn_steps_the_parent_did_not_record_are_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="records snapshots at steps"):
        run(tmp_path, spawn="[0, 4]")
    with pytest.raises(ConfigError, match="after the parent's last step"):
        run(tmp_path, spawn="[0, 300]")
    assert not (tmp_path / "s.zarr").exists()
