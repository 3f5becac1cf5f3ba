"""The CIFAR ResNet: parameter count, the no-skip variant, BatchNorm under vmap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lossatlas.engine import ConfigError, DataBundle, Objective, Split, parse_options
from lossatlas.plugins.datasets.digits import Digits, DigitsOptions
from lossatlas.plugins.models.resnet import BasicBlock, PadShortcut, ResNetModel, ResNetOptions


def build(data: DataBundle, seed: int = 0, **table) -> nn.Module:
    return ResNetModel().build(parse_options(ResNetOptions, table, "model 'resnet'"), data, seed)


@pytest.fixture(scope="module")
def cifar_like() -> DataBundle:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (6,), generator=g)
    return DataBundle(Split(x, y), Split(x[:3], y[:3]), "classification", 10)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet20_parameter_count(cifar_like: DataBundle) -> None:
    model = build(cifar_like)
    # He et al. 2016, Table 6: ResNet-20 has 0.27M parameters (option A shortcuts).
    assert n_params(model) == 269_722
    assert sum(isinstance(m, BasicBlock) for m in model.modules()) == 9
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 19
    assert model(cifar_like.train.inputs).shape == (6, 10)
    # Depth 6n+2 and the width multiplier.
    assert sum(isinstance(m, BasicBlock) for m in build(cifar_like, depth=8).modules()) == 3
    assert n_params(build(cifar_like, depth=8, width=2)) > 3 * n_params(build(cifar_like, depth=8))


def test_no_skip_has_no_shortcuts(cifar_like: DataBundle) -> None:
    skip = build(cifar_like)
    noskip = build(cifar_like, skip=False)
    blocks = [m for m in noskip.modules() if isinstance(m, BasicBlock)]
    assert blocks and all(b.shortcut is None for b in blocks)
    assert not any(isinstance(m, (nn.Identity, PadShortcut)) for m in noskip.modules())
    assert (
        sum(
            isinstance(b.shortcut, nn.Identity) for b in skip.modules() if isinstance(b, BasicBlock)
        )
        == 7
    )
    # Functional check: with every block's last BN scale and shift at 0, a block without
    # a shortcut outputs relu(0) = 0, so the network ignores its input; with shortcuts
    # the input still flows through.
    x = cifar_like.train.inputs
    for model in (skip, noskip):
        model.eval()
        with torch.no_grad():
            for b in model.modules():
                if isinstance(b, BasicBlock):
                    b.bn2.weight.zero_()
                    b.bn2.bias.zero_()
    with torch.no_grad():
        out_noskip, out_skip = noskip(x), skip(x)
    assert torch.allclose(out_noskip, out_noskip[:1].expand_as(out_noskip))
    assert not torch.allclose(out_skip, out_skip[:1].expand_as(out_skip))


@pytest.mark.parametrize(
    "table",
    [
        {"depth": 8},
        {"depth": 8, "skip": False},
        {"depth": 8, "batchnorm": False},
        {"depth": 8, "shortcut": "conv"},
    ],
    ids=["skip", "noskip", "nobn", "conv-shortcut"],
)
def test_objective_vmaps_through_resnet(cifar_like: DataBundle, table: dict) -> None:
    model = build(cifar_like, **table)
    obj = Objective(model, cifar_like)
    assert not obj.model.training  # BN uses running statistics (buffers)
    assert torch.isfinite(obj.loss(obj.x0))
    g = torch.Generator().manual_seed(1)
    points = obj.x0 + 0.01 * torch.randn(3, obj.D, generator=g)
    out = obj.evaluate(points)
    assert np.isfinite(out["loss"]).all()
    np.testing.assert_allclose(out["loss"], [float(obj.loss(p)) for p in points], rtol=1e-4)


def test_digits_as_images_and_determinism() -> None:
    digits = Digits().load(DigitsOptions(limit=60), 0)
    a = build(digits, depth=8, input_shape=[1, 8, 8])
    b = build(digits, depth=8, input_shape=[1, 8, 8])
    assert a(digits.train.inputs[:4]).shape == (4, 10)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    obj = Objective(a, digits)
    assert np.isfinite(obj.evaluate(obj.x0.expand(3, -1).clone())["loss"]).all()


def test_depth_must_be_6n_plus_2() -> None:
    with pytest.raises(ConfigError, match=r"6n\+2"):
        parse_options(ResNetOptions, {"depth": 21}, "model 'resnet'")
