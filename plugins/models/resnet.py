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

import functools
from dataclasses import dataclass, field
from typing import Any, Literal

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


class _StopForward(Exception):
    """Raised inside a calibration pass once the BatchNorm call being measured is done."""


def _channel_stats(x: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(n, mean, M2) per channel (dim 1) of ``x``: n values per channel, M2 the sum of
    squared deviations from the mean. Computed in x's dtype (as BatchNorm's own train
    mode does), returned in float64 for the accumulation over batches."""
    dims = [0, *range(2, x.dim())]
    n = float(x.numel() // x.shape[1])
    var, mean = torch.var_mean(x.detach(), dim=dims, correction=0)
    return n, mean.to(torch.float64), var.to(torch.float64) * n


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, inputs: torch.Tensor, batch_size: int = 1024) -> int:
    """Set every BatchNorm layer's running mean and variance to the per-channel mean and
    unbiased variance of its input over all of ``inputs``; return the number of BN
    layers with running statistics.

    The result is what one forward pass over ``inputs`` as a single batch gives with
    the BN layers in train mode (``momentum=None``) and everything else in eval mode
    (dropout off): each BN layer measures its input with every earlier BN layer
    normalising by the statistics of the whole set (as in that pass: by the biased
    variance). A BN module called several times per forward pass keeps the average of
    its calls' statistics, as torch's cumulative average does. Each batch's statistics
    are computed in the model's dtype (as BN's train mode does) and combined in float64
    (Chan et al.'s pairwise update).

    Cost: one forward pass (that single train-mode pass) when ``len(inputs) ≤
    batch_size``; otherwise the statistics of a BN call are exact only once all batches
    have passed it, so the calls are calibrated one after another, each with a pass over
    the batches that stops at that call: about (calls + 1)/2 forward passes over
    ``inputs`` (ResNet-20, 19 BN layers: ≈ 10; ``batch_size`` is a memory knob).
    Parameters are untouched and the model is left in eval mode.
    """
    tracked = batchnorm_layers(model)
    if not tracked or len(inputs) == 0:
        model.eval()
        return len(tracked)
    every = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if len(inputs) <= batch_size:  # one batch: BN's own train mode computes exactly this
        momenta = [m.momentum for m in every]
        model.eval()
        try:
            for m in every:
                if m.track_running_stats:
                    m.reset_running_stats()
                m.momentum = None
                m.train()
            model(inputs)
        finally:
            for m, mom in zip(every, momenta, strict=True):
                m.momentum = mom
            model.eval()
        return len(tracked)
    batches = [
        inputs[i : i + max(1, batch_size)] for i in range(0, len(inputs), max(1, batch_size))
    ]
    # (module index, call number) -> (mean, biased variance, n) of its input, float64
    done: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, float]] = {}
    calls: dict[int, int] = {}
    acc: dict[str, Any] = {}

    def normalise(m: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, site: tuple) -> torch.Tensor:
        mean, var, _n = done[site]
        return F.batch_norm(
            x, mean.to(x.dtype), var.to(x.dtype), m.weight, m.bias, False, 0.0, m.eps
        )

    def site_forward(i: int, m: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
        site = (i, calls.get(i, 0))
        calls[i] = site[1] + 1
        if site in done:
            return normalise(m, x, site)
        if acc.get("site") not in (None, site):
            raise RuntimeError(
                "calibrate_batchnorm: the model calls its BatchNorm layers in a different "
                "order for different inputs; calibrate it with one batch (batch_size ≥ "
                f"{len(inputs)})"
            )
        n_b, mean_b, m2_b = _channel_stats(x)
        if acc.get("site") is None:
            acc.update(site=site, n=n_b, mean=mean_b, m2=m2_b)
        else:  # Chan, Golub & LeVeque's pairwise update
            n_a, mean_a, m2_a = acc["n"], acc["mean"], acc["m2"]
            n = n_a + n_b
            delta = mean_b - mean_a
            acc.update(
                n=n, mean=mean_a + delta * (n_b / n), m2=m2_a + m2_b + delta**2 * (n_a * n_b / n)
            )
        if acc["batch"] == len(batches) - 1:  # every batch has passed this call
            done[site] = (acc["mean"], acc["m2"] / acc["n"], acc["n"])
            acc["site"] = None
        raise _StopForward

    for i, m in enumerate(every):
        m.forward = functools.partial(site_forward, i, m)
    model.eval()
    try:
        while True:
            acc.clear()
            acc["site"] = None
            finished = False
            for b, batch in enumerate(batches):
                acc["batch"] = b
                calls.clear()
                try:
                    model(batch)
                except _StopForward:
                    continue
                finished = True  # a whole forward pass met no uncalibrated BN call
                break
            if finished:
                break
    finally:
        for m in every:
            del m.forward
        model.eval()
    for i, m in enumerate(every):
        sites = [done[s] for s in sorted(done) if s[0] == i]
        if not sites or not m.track_running_stats:
            continue
        mean = torch.stack([s[0] for s in sites]).mean(0)
        var = torch.stack([s[1] * s[2] / max(s[2] - 1.0, 1.0) for s in sites]).mean(0)
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        m.num_batches_tracked.fill_(len(sites))
    return len(tracked)


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


class ResNetModel(ModelPlugin[ResNetOptions]):
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
