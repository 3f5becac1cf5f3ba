"""The cnn model: shapes from the data, deterministic init, works with the Objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lossatlas.engine import DataBundle, Objective, ShapeError, Split, parse_options
from lossatlas.plugins.datasets.digits import Digits, DigitsOptions
from lossatlas.plugins.models.cnn import CNNModel, CNNOptions


def build(data: DataBundle, seed: int = 0, **table) -> nn.Module:
    return CNNModel().build(parse_options(CNNOptions, table, "model 'cnn'"), data, seed)


def random_data(shape: tuple[int, ...], n: int = 8, classes: int = 10) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *shape, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return DataBundle(Split(x, y), Split(x[: n // 2], y[: n // 2]), "classification", classes)


def check_objective(model: nn.Module, data: DataBundle) -> None:
    obj = Objective(model, data)
    assert torch.isfinite(obj.loss(obj.x0))
    g = torch.Generator().manual_seed(1)
    points = obj.x0 + 0.01 * torch.randn(3, obj.D, generator=g)
    out = obj.evaluate(points)
    assert out["loss"].shape == (3,) and np.isfinite(out["loss"]).all()
    one_by_one = [float(obj.loss(p)) for p in points]
    np.testing.assert_allclose(out["loss"], one_by_one, rtol=1e-4)


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return Digits().load(DigitsOptions(limit=200), 0)


def test_digits_reshaped_to_images(digits: DataBundle) -> None:
    model = build(digits, input_shape=[1, 8, 8])
    assert model(digits.train.inputs[:5]).shape == (5, 10)
    assert any(isinstance(m, nn.Conv2d) for m in model.modules())
    check_objective(model, digits)


def test_cifar_shaped_images() -> None:
    data = random_data((3, 32, 32))
    model = build(data, channels=[8, 16], hidden=[32], activation="tanh")
    assert model(data.train.inputs).shape == (8, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.in_channels for c in convs] == [3, 8]
    # 32 -> 16 -> 8 after two pools: the first linear layer sees 16·8·8 features.
    first_linear = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert first_linear.in_features == 16 * 8 * 8
    check_objective(model, data)


def test_signals_use_1d_convolutions() -> None:
    data = random_data((40,))
    model = build(data, channels=[4, 4, 4])
    assert model(data.train.inputs).shape == (8, 10)
    assert all(not isinstance(m, nn.Conv2d) for m in model.modules())
    assert sum(isinstance(m, nn.Conv1d) for m in model.modules()) == 3
    check_objective(model, data)


def test_init_deterministic_and_biases_zero(digits: DataBundle) -> None:
    a, b, c = (build(digits, seed=s, input_shape=[1, 8, 8]) for s in (0, 0, 1))
    for (name, pa), pb, pc in zip(
        a.named_parameters(), b.parameters(), c.parameters(), strict=True
    ):
        assert torch.equal(pa, pb)
        if name.endswith("bias"):
            assert torch.count_nonzero(pa) == 0
        else:
            assert not torch.equal(pa, pc)


def test_bad_input_shape(digits: DataBundle) -> None:
    with pytest.raises(ShapeError, match=r"input_shape"):
        build(digits, input_shape=[1, 9, 9])
