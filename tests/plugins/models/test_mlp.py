"""The mlp model: output activation, uniform initialisation with an explicit bound."""

from __future__ import annotations

import math

import pytest
import torch

from lossatlas.engine import ConfigError, Objective, parse_options
from lossatlas.plugins.datasets.formula import Formula, FormulaOptions
from lossatlas.plugins.models.mlp import MLPModel, MLPOptions


def build(**table):
    data = Formula().load(FormulaOptions(preset="fb2017-quadratic", n_train=64), 0)
    opts = parse_options(MLPOptions, table, "model 'mlp'")
    return MLPModel().build(opts, data, seed=3), data


def test_seed_002_net_sigmoid_everywhere_no_bias_uniform_pm1() -> None:
    """1-4-4-1, a sigmoid after every layer (the output included), no biases,
    weights U[−1, 1]: what Freeman & Bruna's regression net is."""
    model, data = build(
        hidden=[4, 4],
        activation="sigmoid",
        output_activation="sigmoid",
        bias=False,
        init="uniform",
        init_bound=1.0,
    )
    assert [type(m).__name__ for m in model] == [
        "Flatten",
        "Linear",
        "Sigmoid",
        "Linear",
        "Sigmoid",
        "Linear",
        "Sigmoid",
    ]
    assert sum(p.numel() for p in model.parameters()) == 4 + 16 + 4
    W = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert W.abs().max() <= 1.0 and W.abs().max() > 0.8  # U[−1, 1], not ±1/√fan_in
    x = data.train.inputs
    h = torch.sigmoid(x @ model[1].weight.T)
    h = torch.sigmoid(h @ model[3].weight.T)
    torch.testing.assert_close(model(x), torch.sigmoid(h @ model[5].weight.T))
    obj = Objective(model, data, dtype=torch.float64)
    assert obj.evaluation_path.name == "mlp-fast-path"  # the trailing sigmoid is proven


def test_uniform_default_bound_is_one_over_sqrt_fan_in() -> None:
    model, _ = build(hidden=[50], init="uniform")
    w = model[1].weight.detach()  # fan_in = 1
    assert w.abs().max() <= 1.0
    w2 = model[3].weight.detach()  # fan_in = 50
    assert w2.abs().max() <= 1 / math.sqrt(50) and w2.abs().max() > 0.8 / math.sqrt(50)
    assert all(float(m.bias.detach().abs().max()) == 0 for m in (model[1], model[3]))


def test_a_bound_without_uniform_is_refused() -> None:
    with pytest.raises(ConfigError, match="init_bound.*init = 'xavier'"):
        build(init_bound=1.0)
    with pytest.raises(ConfigError, match="output_activation"):
        build(output_activation="softmax")
