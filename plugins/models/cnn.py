"""A small convolutional network: (conv-activation-maxpool) × k, then linear layers.

Sized from the data: images (C, H, W) use 2-D convolutions, 1-D signals (L,) or
(C, L) use 1-D convolutions with one channel (or C), 2-D inputs (H, W) are one-channel
images. Flat inputs (e.g. MNIST flattened to 784) are reshaped by the option
``input_shape`` (``[1, 28, 28]``). Convolutions keep the size ("same" padding); each
pool halves it (pooling stops once a side would drop below 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from lossatlas.engine import DataBundle, ModelPlugin, ShapeError

from .mlp import ACTIVATIONS, init_weights

__all__ = ["CNN", "CNNModel", "CNNOptions", "Reshape", "image_shape"]


class Reshape(nn.Module):
    """Reshape each sample to ``shape`` (the batch dimension is kept)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


def image_shape(data_shape: tuple[int, ...], input_shape: list[int], where: str) -> tuple[int, ...]:
    """The (C, L) or (C, H, W) shape the network sees, from the data's per-sample shape
    and the ``input_shape`` option (empty: infer). ShapeError if they cannot match."""
    if input_shape:
        if math.prod(input_shape) != math.prod(data_shape):
            raise ShapeError(
                f"{where}: option input_shape={list(input_shape)} has "
                f"{math.prod(input_shape)} values but each sample of the data set has "
                f"shape {data_shape} ({math.prod(data_shape)} values)"
            )
        shape = tuple(input_shape)
        if len(shape) not in (2, 3):
            raise ShapeError(
                f"{where}: input_shape must be [C, L] or [C, H, W], got {list(input_shape)}"
            )
        return shape
    if len(data_shape) == 1:
        return (1, data_shape[0])
    if len(data_shape) == 2:
        return (1, *data_shape)
    if len(data_shape) == 3:
        return data_shape
    raise ShapeError(
        f"{where}: cannot treat samples of shape {data_shape} as signals or images; set "
        "input_shape = [C, H, W] (or [C, L])"
    )


class CNN(nn.Sequential):
    """Reshape, then per channel count: conv (same padding), activation, max-pool 2;
    then flatten, hidden linear layers with the activation, and a linear output."""

    def __init__(
        self,
        shape: tuple[int, ...],
        channels: list[int],
        n_outputs: int,
        kernel: int = 3,
        hidden: list[int] | None = None,
        activation: str = "relu",
    ) -> None:
        conv = nn.Conv1d if len(shape) == 2 else nn.Conv2d
        pool = nn.MaxPool1d if len(shape) == 2 else nn.MaxPool2d
        layers: list[nn.Module] = [Reshape(shape)]
        c, size = shape[0], list(shape[1:])
        for out in channels:
            layers += [conv(c, out, kernel, padding=kernel // 2), ACTIVATIONS[activation]()]
            size = [s + 2 * (kernel // 2) - kernel + 1 for s in size]
            if min(size) >= 2:
                layers.append(pool(2))
                size = [s // 2 for s in size]
            c = out
        layers.append(nn.Flatten())
        width = c * math.prod(size)
        for h in hidden or []:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, n_outputs))
        super().__init__(*layers)


@dataclass
class CNNOptions:
    channels: list[int] = field(
        default_factory=lambda: [16, 32],
        metadata={"doc": "output channels of each conv-activation-pool block"},
    )
    kernel: int = field(
        default=3, metadata={"doc": "convolution kernel size (odd: 'same' padding)"}
    )
    hidden: list[int] = field(
        default_factory=list,
        metadata={"doc": "widths of linear layers between the convolutions and the output"},
    )
    activation: Literal["relu", "tanh", "sigmoid"] = field(
        default="relu", metadata={"doc": "activation after each conv and hidden layer"}
    )
    init: Literal["xavier", "he", "uniform"] = field(
        default="he", metadata={"doc": "weight initialisation; biases start at 0"}
    )
    input_shape: list[int] = field(
        default_factory=list,
        metadata={
            "doc": "reshape each sample to [C, H, W] or [C, L] first (e.g. [1, 8, 8] "
            "for digits); empty: from the data's shape"
        },
    )

    def validate(self) -> None:
        if not self.channels or any(c <= 0 for c in self.channels):
            raise ValueError(f"option 'channels' must list positive counts, got {self.channels}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"option 'kernel' must be odd and positive, got {self.kernel}")
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"option 'hidden': widths must be positive, got {self.hidden}")
        if any(s <= 0 for s in self.input_shape):
            raise ValueError(f"option 'input_shape' must be positive, got {self.input_shape}")


class CNNModel(ModelPlugin[CNNOptions]):
    name = "cnn"
    summary = "small CNN: (conv-activation-maxpool) x k, then linear; 1-D or 2-D from the data"
    Options = CNNOptions

    def build(self, options: CNNOptions, data: DataBundle, seed: int) -> nn.Module:
        shape = image_shape(data.input_shape, list(options.input_shape), "model 'cnn'")
        model = CNN(
            shape,
            list(options.channels),
            data.n_outputs,
            options.kernel,
            list(options.hidden),
            options.activation,
        )
        init_weights(model, options.init, torch.Generator().manual_seed(seed))
        return model
