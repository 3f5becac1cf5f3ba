"""The python model: the user's own nn.Module by import path."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from lossatlas.engine import ConfigError, DataBundle, Objective, Split, parse_options
from lossatlas.plugins.models.importpath import PythonModel, PythonModelOptions

WHERE = "model 'python'"

MODULE = """
import math
import torch
from torch import nn

def plain(hidden=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 3))

def sized(data, seed, hidden=5):
    g = torch.Generator().manual_seed(seed)
    n_in = math.prod(data.input_shape)
    net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, data.n_outputs))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return net

class Net(nn.Module):
    def __init__(self, width=6):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)

def with_bn(data, calibrated=False):
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    if calibrated:
        with torch.no_grad():
            net.train()(data.train.inputs * 10 + 5)
        net.eval()
    return net

def not_a_model():
    return 42

def broken():
    raise ValueError("bad width")
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "la_user_model_mod.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "la_user_model_mod", raising=False)
    return "la_user_model_mod"


@pytest.fixture(scope="module")
def data() -> DataBundle:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 4, generator=g)
    y = torch.randint(0, 3, (12,), generator=g)
    return DataBundle(Split(x, y), Split(x[:4], y[:4]), "classification", 3)


def build(data: DataBundle, seed: int = 0, **table) -> torch.nn.Module:
    return PythonModel().build(parse_options(PythonModelOptions, table, WHERE), data, seed)


def test_factory_seeded_by_torch_manual_seed(user_module: str, data: DataBundle) -> None:
    state = torch.random.get_rng_state()
    a = build(data, 3, factory=f"{user_module}:plain", kwargs={"hidden": 7})
    assert torch.equal(torch.random.get_rng_state(), state)  # caller's stream untouched
    b = build(data, 3, factory=f"{user_module}:plain", kwargs={"hidden": 7})
    c = build(data, 4, factory=f"{user_module}:plain", kwargs={"hidden": 7})
    assert a[1].out_features == 7
    assert torch.equal(a[1].weight, b[1].weight) and not torch.equal(a[1].weight, c[1].weight)


def test_factory_gets_data_and_seed(user_module: str, data: DataBundle) -> None:
    a = build(data, 5, factory=f"{user_module}:sized")
    b = build(data, 5, factory=f"{user_module}:sized")
    assert a[-1].out_features == 3 and a[0].in_features == 4
    assert torch.equal(a[0].weight, b[0].weight)
    obj = Objective(a, data)
    points = obj.x0 + 0.01 * torch.randn(3, obj.D)
    out = obj.evaluate(points)
    np.testing.assert_allclose(out["loss"], [float(obj.loss(p)) for p in points], rtol=1e-4)


def test_module_class_as_factory(user_module: str, data: DataBundle) -> None:
    model = build(data, factory=f"{user_module}:Net", kwargs={"width": 2})
    assert model(data.train.inputs).shape == (12, 3)


def test_errors_name_the_import_path(user_module: str, data: DataBundle) -> None:
    with pytest.raises(ConfigError, match=r"'no_such_pkg_la:make'"):
        build(data, factory="no_such_pkg_la:make")
    with pytest.raises(ConfigError, match=rf"'{user_module}:nothing'.*no attribute"):
        build(data, factory=f"{user_module}:nothing")
    with pytest.raises(ConfigError, match=r"returned a int, not a torch.nn.Module"):
        build(data, factory=f"{user_module}:not_a_model")
    with pytest.raises(ConfigError, match=rf"'{user_module}:broken'.*bad width"):
        build(data, factory=f"{user_module}:broken")
    with pytest.raises(ConfigError, match=r"must not set seed"):
        build(data, factory=f"{user_module}:sized", kwargs={"seed": 1})
    with pytest.raises(ConfigError, match=r"package.module:name"):
        parse_options(PythonModelOptions, {"factory": "oops"}, WHERE)


def test_module_failing_at_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: DataBundle
) -> None:
    (tmp_path / "la_user_model_bad.py").write_text("raise ImportError('needs foo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"'la_user_model_bad:f'.*needs foo"):
        build(data, factory="la_user_model_bad:f")


def test_batchnorm_statistics_set_from_data_when_never_computed(
    user_module: str, data: DataBundle
) -> None:
    x = data.train.inputs
    net = build(data, factory=f"{user_module}:with_bn", bn_samples=8)
    bn = net[1]
    assert int(bn.num_batches_tracked) > 0 and not net.training
    with torch.no_grad():
        pre = net[0](x[:8])
    torch.testing.assert_close(bn.running_mean, pre.mean(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(bn.running_var, pre.var(0, unbiased=True), atol=1e-5, rtol=1e-4)
    # statistics the factory computed itself are kept
    own = build(data, factory=f"{user_module}:with_bn", kwargs={"calibrated": True})
    with torch.no_grad():
        expected = 0.1 * own[0](x * 10 + 5).mean(0)  # one update with momentum 0.1
    torch.testing.assert_close(own[1].running_mean, expected, atol=1e-4, rtol=0)
    # bn_samples = 0 leaves BN's defaults
    raw = build(data, factory=f"{user_module}:with_bn", bn_samples=0)
    assert torch.equal(raw[1].running_mean, torch.zeros(6))
    assert int(raw[1].num_batches_tracked) == 0
