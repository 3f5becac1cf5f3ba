"""The CIFAR ResNet: parameter count, the no-skip variant, BatchNorm under vmap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lossatlas.engine import ConfigError, DataBundle, Objective, Split, parse_options
from lossatlas.plugins.datasets.digits import Digits, DigitsOptions
from lossatlas.plugins.models.resnet import (
    BasicBlock,
    PadShortcut,
    ResNetModel,
    ResNetOptions,
    batchnorm_layers,
    calibrate_batchnorm,
)


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


def test_batchnorm_statistics_come_from_the_training_data(cifar_like: DataBundle) -> None:
    x = cifar_like.train.inputs
    model = build(cifar_like, depth=8, bn_samples=4)
    assert not model.training
    # The first BN layer's running statistics are those of its input on the first
    # bn_samples training samples (mean, and unbiased variance as torch keeps it).
    with torch.no_grad():
        pre = model.conv(model.reshape(x[:4]))
    np.testing.assert_allclose(model.bn.running_mean, pre.mean((0, 2, 3)), atol=1e-5)
    np.testing.assert_allclose(
        model.bn.running_var, pre.var((0, 2, 3), unbiased=True), rtol=1e-4, atol=1e-6
    )
    # so in eval mode that layer normalises its calibration inputs: mean 0, variance ≈ 1
    with torch.no_grad():
        out = model.bn(pre)
    np.testing.assert_allclose(out.mean((0, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.var((0, 2, 3)), 1.0, rtol=1e-3)
    # every BN layer was calibrated (none is left at BN's default mean 0 / variance 1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert not torch.equal(m.running_var, torch.ones_like(m.running_var))
            assert m.momentum == 0.1  # restored after calibration
    # bn_samples = 0 keeps BN's defaults; the parameters do not depend on it
    raw = build(cifar_like, depth=8, bn_samples=0)
    assert torch.equal(raw.bn.running_mean, torch.zeros(16))
    assert torch.equal(raw.bn.running_var, torch.ones(16))
    for pa, pb in zip(model.parameters(), raw.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_calibrate_batchnorm_batches_agree_and_no_bn_is_a_no_op(cifar_like: DataBundle) -> None:
    x = cifar_like.train.inputs
    one = build(cifar_like, depth=8, bn_samples=0)
    two = build(cifar_like, depth=8, bn_samples=0)
    assert calibrate_batchnorm(one, x[:6], batch_size=6) == 7  # depth 8: stem + 3 blocks × 2
    calibrate_batchnorm(two, x[:6], batch_size=4)  # unequal batches 4 + 2
    for a, b in zip(batchnorm_layers(one), batchnorm_layers(two), strict=True):
        torch.testing.assert_close(a.running_mean, b.running_mean, atol=1e-5, rtol=0)
        torch.testing.assert_close(a.running_var, b.running_var, atol=1e-5, rtol=1e-5)
        assert int(b.num_batches_tracked) == 1
    plain = build(cifar_like, depth=8, batchnorm=False)
    assert calibrate_batchnorm(plain, x) == 0 and not plain.training


def whole_set_statistics(model: nn.Module, x: torch.Tensor) -> list[tuple]:
    """The reference: one train-mode pass of the BN layers over all of x as one batch
    (cumulative average, momentum=None), everything else in eval mode."""
    import copy

    ref = copy.deepcopy(model).eval()
    for m in ref.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
            m.momentum = None
            if m.track_running_stats:
                m.reset_running_stats()
    with torch.no_grad():
        ref(x)
    return [
        (m.running_mean, m.running_var, int(m.num_batches_tracked)) for m in batchnorm_layers(ref)
    ]


def assert_statistics(model: nn.Module, expected: list[tuple]) -> None:
    got = batchnorm_layers(model)
    assert len(got) == len(expected)
    for m, (mean, var, calls) in zip(got, expected, strict=True):
        torch.testing.assert_close(m.running_mean, mean, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(m.running_var, var, atol=1e-12, rtol=1e-12)
        assert int(m.num_batches_tracked) == calls


def test_calibration_is_the_statistics_of_the_whole_set_in_float64() -> None:
    """400 samples in batches of 256 + 144 (the case that was off by 0.014 in the mean
    and 0.7 % in the variance of the first BN layer): every BN layer of a ResNet gets
    the per-channel mean and unbiased variance of the whole set, as one batch would."""
    g = torch.Generator().manual_seed(1)
    # brighter images first: batches with different means, as an ordered data set has
    x = torch.rand(400, 3, 8, 8, generator=g, dtype=torch.float64)
    x[:256] += 0.5
    y = torch.randint(0, 10, (400,), generator=g)
    data = DataBundle(Split(x, y), Split(x[:8], y[:8]), "classification", 10)
    model = build(data, depth=8, bn_samples=0).double()
    expected = whole_set_statistics(model, x)
    calibrate_batchnorm(model, x, batch_size=256)
    assert_statistics(model, expected)
    # the first layer by hand: the statistics of conv1(x) over all 400 samples
    with torch.no_grad():
        pre = model.conv(model.reshape(x)).transpose(0, 1).reshape(16, -1)
    torch.testing.assert_close(model.bn.running_mean, pre.mean(1), atol=1e-12, rtol=0)
    torch.testing.assert_close(model.bn.running_var, pre.var(1), atol=1e-12, rtol=1e-12)
    # bn_samples does the same in build (and any batch size gives it)
    built = build(data, depth=8, bn_samples=400).double()
    calibrate_batchnorm(built, x, batch_size=150)  # 150 + 150 + 100
    assert_statistics(built, expected)


class ReusedBN(nn.Module):
    """One BN module called twice per forward, a BN without running statistics between,
    and dropout (which calibration must leave off)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 6)
        self.bn = nn.BatchNorm1d(6)
        self.free = nn.BatchNorm1d(6, track_running_stats=False)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(torch.relu(self.bn(self.a(x))))
        h = torch.relu(self.free(self.b(h)) + 1.0)
        return self.out(torch.tanh(self.bn(self.b(h))))


def test_calibration_with_a_reused_bn_module_and_dropout() -> None:
    torch.manual_seed(0)
    x = torch.randn(50, 4, dtype=torch.float64) * 3 + 1
    model = ReusedBN().double()
    expected = whole_set_statistics(model, x)
    assert expected[0][2] == 2  # the reference averages the module's two calls
    state = torch.get_rng_state()
    assert calibrate_batchnorm(model, x, batch_size=7) == 1
    assert torch.equal(torch.get_rng_state(), state)  # dropout stayed off
    assert_statistics(model, expected)
    assert not model.training and "forward" not in vars(model.bn)  # its own forward again


def test_calibrated_resnet20_starts_with_a_sane_loss() -> None:
    # He-initialised ResNet-20 on images: with BN left at mean 0 / variance 1 the
    # eval-mode activations grow through the 19 layers and the loss is far above
    # log(10); calibrated, the logits have the scale of the normalised features.
    g = torch.Generator().manual_seed(3)
    x = torch.rand(32, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    data = DataBundle(Split(x, y), Split(x[:8], y[:8]), "classification", 10)
    loss = {}
    for n in (0, 32):
        model = build(data, bn_samples=n)
        with torch.no_grad():
            loss[n] = float(torch.nn.functional.cross_entropy(model(x), y))
    assert loss[0] > 10.0 > 5.0 > loss[32]
