"""align probe: π(θ_B) computes B's function (float64), sits closer to A, lowers the
barrier; a ResNet with BatchNorm; clear errors; the plot and the paths."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest
import torch

from lossatlas.engine import ConfigError, make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.context import StepContext
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store

HEAD = """
name = "r"
seed = 0
dtype = "float64"
[model]
{model}
[dataset]
plugin = "digits"
limit = 300
[[steps]]
name = "train_a"
probe = "train"
from = "init:1"
lr = 0.1
momentum = 0.9
epochs = {epochs}
batch_size = 32
seed = 1
record_every = 0
[[steps]]
name = "train_b"
probe = "train"
from = "init:2"
lr = 0.1
momentum = 0.9
epochs = {epochs}
batch_size = 32
seed = 2
record_every = 0
"""
MLP = 'plugin = "mlp"\nhidden = [24, 16]'
STEPS = """
[[steps]]
name = "align"
probe = "align"
a = "train_a"
b = "train_b"
points = 9
[[steps]]
name = "align_act"
probe = "align"
a = "train_a"
b = "train_b"
method = "activation"
samples = 200
points = 0
[[steps]]
name = "lines"
probe = "interpolation"
pairs = [["train_a", "train_b"], ["train_a", "align"]]
labels = ["naive", "aligned"]
points = 9
zoom_points = 0
"""


def run(tmp_path, text):
    cfg = parse_config(tomllib.loads(text))
    path = str(tmp_path / "s.zarr")
    run_pipeline(cfg, path, make_registry(), progress=None)
    return cfg, Store(path)


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    return run(tmp_path_factory.mktemp("align"), HEAD.format(model=MLP, epochs=6) + STEPS)


def test_the_aligned_point_computes_bs_function(mlp_run) -> None:
    cfg, store = mlp_run
    ctx = StepContext(make_registry(), cfg, cfg.steps[2], store)
    obj = ctx.objective
    for step in ("align", "align_act"):
        ds = store.open_step("r", step).load()
        assert float(ds["max_abs_output_diff"]) < 1e-14 * float(ds["max_abs_output"])
        point, source = ds["point"].values, ds["source"].values
        assert not np.array_equal(point, source)
        same = obj.evaluate_both(torch.as_tensor(np.stack([point, source])))
        for v in same.values():
            assert v[0] == pytest.approx(v[1], abs=1e-12)
        assert float(ds["distance_after"]) < float(ds["distance_before"])
        assert np.all(ds["cosine_after"].values > ds["cosine_before"].values)
        # each row is a permutation of its group's units
        for g, n in enumerate(ds.attrs["group_sizes"]):
            row = ds["permutation"].values[g]
            assert sorted(row[:n].tolist()) == list(range(n))
            assert np.all(np.isnan(row[n:]))  # padding reads back as missing


def test_alignment_lowers_the_barrier(mlp_run) -> None:
    _cfg, store = mlp_run
    ds = store.open_step("r", "align").load()
    naive, aligned = ds["train_loss_barrier"].values
    assert aligned < naive
    lines = store.open_step("r", "lines").load()
    assert lines["train_loss_barrier"].values[1] < lines["train_loss_barrier"].values[0]
    # the endpoints of align's own lines are the models' own losses
    assert ds["train_loss"].values[0, -1] == pytest.approx(
        ds["train_loss"].values[1, -1], abs=1e-12
    )


def test_plot_and_paths(mlp_run) -> None:
    import matplotlib.pyplot as plt

    _cfg, store = mlp_run
    probe = make_registry().get("probe", "align")
    for step in ("align", "align_act"):
        ds = store.open_step("r", step).load()
        fig = probe.plot(ds)
        assert len(fig.axes) == (2 if step == "align" else 1)
        plt.close(fig)
    paths = probe.paths(store.open_step("r", "align").load())
    assert [p.kind for p in paths] == ["linear", "aligned-linear"]
    assert paths[0].barrier > paths[1].barrier
    assert paths[0].length_norm == pytest.approx(1.0)
    assert probe.paths(store.open_step("r", "align_act").load()) == []


RESNET = 'plugin = "resnet"\ndepth = 8\ninput_shape = [1, 8, 8]\nbn_samples = 64'


def test_a_resnet_with_batchnorm(tmp_path) -> None:
    steps = STEPS.split('[[steps]]\nname = "align_act"')[0]
    _cfg, store = run(
        tmp_path,
        HEAD.format(model=RESNET, epochs=1).replace("limit = 300", "limit = 48")
        + steps.replace("points = 9", "points = 3"),
    )
    ds = store.open_step("r", "align").load()
    assert float(ds["max_abs_output_diff"]) < 1e-14 * float(ds["max_abs_output"])
    assert "point_buffers" in ds and ds.attrs["buffer_names"]
    assert ds.attrs["recompute_bn"] == 1
    # the aligned line's far end is B's function: its own recomputed statistics agree
    assert ds["train_loss"].values[1, -1] == pytest.approx(ds["train_loss"].values[0, -1], rel=1e-9)


def test_clear_errors_before_anything_runs(tmp_path) -> None:
    steps = STEPS.split('[[steps]]\nname = "align_act"')[0]
    text = HEAD.format(model=RESNET, epochs=1) + steps + "recompute_bn = false\n"
    with pytest.raises(ConfigError, match="recompute_bn = true"):
        run(tmp_path, text)
    assert not (tmp_path / "s.zarr").exists()
    linear = HEAD.format(model='plugin = "mlp"\nhidden = []', epochs=1) + steps
    with pytest.raises(ConfigError, match="no hidden units"):
        run(tmp_path, linear)
    assert not (tmp_path / "s.zarr").exists()


FROZEN_FACTORY = """
import math
import torch


def make(data, frozen):
    n = math.prod(data.input_shape)
    net = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(n, 12),
        torch.nn.ReLU(),
        torch.nn.Linear(12, 10),
        torch.nn.ReLU(),
        torch.nn.Linear(10, data.n_outputs),
    )
    net[frozen].bias.requires_grad_(False)
    return net
"""
FROZEN_RUN = """
name = "r"
seed = 0
dtype = "float64"
[model]
plugin = "python"
factory = "frozen_bias_align:make"
search_path = ["{path}"]
kwargs = {{frozen = {frozen}}}
[dataset]
plugin = "digits"
limit = 120
[[steps]]
name = "weight"
probe = "align"
a = "init:1"
b = "init:2"
points = 3
[[steps]]
name = "activation"
probe = "align"
a = "init:1"
b = "init:2"
method = "activation"
samples = 100
points = 0
"""


@pytest.mark.parametrize("frozen", [5, 3], ids=["output-bias", "hidden-bias"])
def test_a_frozen_bias_keeps_its_value_and_the_function(tmp_path, frozen) -> None:
    """A frozen bias is no coordinate of x: the permuted model keeps the model's own
    bias there and computes B's function (checked by a hand-written forward pass)."""
    (tmp_path / "frozen_bias_align.py").write_text(FROZEN_FACTORY)
    cfg, store = run(tmp_path, FROZEN_RUN.format(path=tmp_path, frozen=frozen))
    ctx = StepContext(make_registry(), cfg, cfg.steps[0], store)
    obj = ctx.objective
    assert obj.layout.frozen == [f"{frozen}.bias"]
    const = {n: p.detach() for n, p in obj.model.named_parameters() if not p.requires_grad}
    X = obj.splits["validation"].inputs.reshape(len(obj.splits["validation"].inputs), -1)

    def forward(x: np.ndarray) -> torch.Tensor:
        W = {**const, **obj.layout.unflatten(torch.as_tensor(x))}
        h = torch.relu(X @ W["1.weight"].T + W["1.bias"])
        h = torch.relu(h @ W["3.weight"].T + W["3.bias"])
        return h @ W["5.weight"].T + W["5.bias"]

    for step in ("weight", "activation"):
        ds = store.open_step("r", step).load()
        # a frozen hidden bias cannot move, so its layer's units stay where they are
        fixed = [label for label, _n, _why in json.loads(ds.attrs["fixed_groups"])]
        assert fixed == ([] if frozen == 5 else ["3.weight"])
        assert ds.attrs["group_sizes"] == ([12, 10] if frozen == 5 else [12])
        assert float(ds["max_abs_output_diff"]) < 1e-14 * float(ds["max_abs_output"])
        assert int(ds["units_moved"].sum()) > 0
        point, source = ds["point"].values, ds["source"].values
        torch.testing.assert_close(forward(point), forward(source), rtol=0, atol=1e-12)
    assert float(ds["max_abs_output"]) == pytest.approx(
        float(forward(source).abs().max()), rel=1e-12
    )
