"""CIFAR ResNets (He et al. 2016, §4.2) and their no-skip variants (Li et al. 2018).

A 3×3 convolution with 16·width channels, then three stages of n basic blocks each
(16, 32, 64 channels × width; the first block of stages 2 and 3 halves the spatial
size with stride 2), global average pooling and a linear layer: depth = 6n + 2
(ResNet-20: n = 3, about 0.27M parameters; ResNet-56: n = 9). A basic block is
conv3×3-BN-ReLU-conv3×3-BN, plus the shortcut, then ReLU.

- ``skip = false`` removes every shortcut (the "-noshort" networks of Li et al.,
  "Visualizing the Loss Landscape of Neural Nets", 2018).
- ``shortcut``: where a block changes shape, ``pad`` subsamples and zero-pads the
  channels (He et al.'s option A, no parameters; gives the 0.27M count), ``conv``
  uses a strided 1×1 convolution (+ BN) projection (option B).
- ``batchnorm = false`` drops the BN layers (convolutions then have biases).

BatchNorm: lossatlas evaluates (and trains) every model in eval mode, so BN layers
normalise with their *running statistics* (buffers). Buffers are not parameters: they
are not part of the flat vector x ∈ R^D, so no direction, subspace or optimiser moves
them, and they are the same at every parameter point of a landscape. With BN's
defaults (running mean 0, variance 1) an eval-mode BN layer would normalise nothing and
a He-initialised ResNet-20 would start with a loss of ~27 on CIFAR-10 and diverge when
trained; so :meth:`ResNetModel.build` sets the running statistics from the first
``bn_samples`` training samples at the initialisation (:func:`calibrate_batchnorm`,
one forward pass in train mode) and then freezes them. A ``checkpoint`` loaded into the
model brings its own statistics instead (they replace these). The interpolation probe
can recompute them at every point (``recompute_bn = true``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lossatlas.engine import DataBundle, ModelPlugin

from .cnn import Reshape, image_shape
from .mlp import init_weights

__all__ = [
    "BasicBlock",
    "ResNet",
    "ResNetModel",
    "ResNetOptions",
    "batchnorm_layers",
    "calibrate_batchnorm",
    "uncalibrated_batchnorm",
]


class PadShortcut(nn.Module):
    """Option A: subsample by ``stride`` and zero-pad the channels to ``out`` (no params)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride = c_in, c_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride] if x.ndim == 4 else x[:, :, :: self.stride]
        extra = self.c_out - self.c_in
        if extra:
            lo = extra // 2
            pad = [0, 0] * (x.ndim - 2) + [lo, extra - lo]
            x = F.pad(x, pad)
        return x


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the shortcut if ``skip``, then ReLU."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int,
        dims: int,
        skip: bool,
        batchnorm: bool,
        shortcut: str,
    ) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.conv1 = conv(c_in, c_out, 3, stride=stride, padding=1, bias=not batchnorm)
        self.bn1 = norm(c_out) if batchnorm else nn.Identity()
        self.conv2 = conv(c_out, c_out, 3, stride=1, padding=1, bias=not batchnorm)
        self.bn2 = norm(c_out) if batchnorm else nn.Identity()
        self.shortcut: nn.Module | None = None
        if skip:
            if stride == 1 and c_in == c_out:
                self.shortcut = nn.Identity()
            elif shortcut == "pad":
                self.shortcut = PadShortcut(c_in, c_out, stride)
            else:
                layers: list[nn.Module] = [conv(c_in, c_out, 1, stride=stride, bias=not batchnorm)]
                if batchnorm:
                    layers.append(norm(c_out))
                self.shortcut = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


class ResNet(nn.Module):
    """The CIFAR ResNet of depth 6n+2 on inputs of ``shape`` (C, H, W) or (C, L)."""

    def __init__(
        self,
        shape: tuple[int, ...],
        n_outputs: int,
        depth: int = 20,
        width: int = 1,
        skip: bool = True,
        batchnorm: bool = True,
        shortcut: str = "pad",
    ) -> None:
        super().__init__()
        dims = len(shape) - 1
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        n = (depth - 2) // 6
        widths = [16 * width, 32 * width, 64 * width]
        self.reshape = Reshape(shape)
        self.conv = conv(shape[0], widths[0], 3, padding=1, bias=not batchnorm)
        self.bn = norm(widths[0]) if batchnorm else nn.Identity()
        blocks: list[nn.Module] = []
        c = widths[0]
        for stage, w in enumerate(widths):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(c, w, stride, dims, skip, batchnorm, shortcut))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(c, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(self.reshape(x))))
        x = self.pool(self.blocks(x))
        return self.fc(x.flatten(1))


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics, in module order."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


def uncalibrated_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has BatchNorm layers whose running statistics were never
    computed (``num_batches_tracked == 0``: still BN's defaults, mean 0 / variance 1)."""
    return any(
        m.num_batches_tracked is not None and int(m.num_batches_tracked) == 0
        for m in batchnorm_layers(model)
    )


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, inputs: torch.Tensor, batch_size: int = 256) -> int:
    """Set every BatchNorm layer's running mean and variance to the statistics of
    ``inputs`` at the model's current parameters; return the number of BN layers.

    The statistics are the cumulative average (``momentum=None``) of the per-batch
    statistics over batches of ``batch_size`` (exact when ``inputs`` is one batch).
    Parameters are untouched and the model is left in eval mode. Cost: one forward
    pass over ``inputs``.
    """
    bns = batchnorm_layers(model)
    if not bns or len(inputs) == 0:
        model.eval()
        return len(bns)
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for start in range(0, len(inputs), batch_size):
            model(inputs[start : start + batch_size])
    finally:
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        model.eval()
    return len(bns)


@dataclass
class ResNetOptions:
    depth: int = field(default=20, metadata={"doc": "6n+2: 20, 32, 44, 56, 110 ..."})
    width: int = field(default=1, metadata={"doc": "channel multiplier (16/32/64 × width)"})
    skip: bool = field(
        default=True,
        metadata={"doc": "residual connections; false: the no-skip network of Li et al. 2018"},
    )
    batchnorm: bool = field(
        default=True, metadata={"doc": "BatchNorm after each conv (evaluated in eval mode)"}
    )
    shortcut: Literal["pad", "conv"] = field(
        default="pad",
        metadata={
            "doc": "where a block changes shape: pad (zero-padded identity, option A) "
            "or conv (1x1 projection, option B)"
        },
    )
    init: Literal["he", "xavier", "uniform"] = field(
        default="he", metadata={"doc": "conv/linear weight initialisation; biases start at 0"}
    )
    input_shape: list[int] = field(
        default_factory=list,
        metadata={
            "doc": "reshape each sample to [C, H, W] first (e.g. [3, 32, 32] for flat "
            "CIFAR); empty: from the data's shape"
        },
    )
    bn_samples: int = field(
        default=512,
        metadata={
            "doc": "BatchNorm running statistics are set from the first N training "
            "samples at the initialisation, then frozen (0: mean 0, variance 1)"
        },
    )

    def validate(self) -> None:
        if self.depth < 8 or (self.depth - 2) % 6:
            raise ValueError(
                f"option 'depth' must be 6n+2 with n ≥ 1 (8, 14, 20, 32, 44, "
                f"56, 110 ...), got {self.depth}"
            )
        if self.width < 1:
            raise ValueError(f"option 'width' must be at least 1, got {self.width}")
        if self.bn_samples < 0:
            raise ValueError(f"option 'bn_samples' must be ≥ 0, got {self.bn_samples}")


class ResNetModel(ModelPlugin):
    name = "resnet"
    summary = "CIFAR ResNet-(6n+2) of He et al. 2016; skip/no-skip (Li et al. 2018), BN on/off"
    Options = ResNetOptions

    def build(self, options: ResNetOptions, data: DataBundle, seed: int) -> nn.Module:
        shape = image_shape(data.input_shape, list(options.input_shape), "model 'resnet'")
        model = ResNet(
            shape,
            data.n_outputs,
            options.depth,
            options.width,
            options.skip,
            options.batchnorm,
            options.shortcut,
        )
        init_weights(model, options.init, torch.Generator().manual_seed(seed))
        if options.batchnorm and options.bn_samples:
            inputs = data.train.inputs[: options.bn_samples]
            calibrate_batchnorm(model, inputs.to(next(model.parameters()).dtype))
        return model.eval()
