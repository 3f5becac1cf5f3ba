"""The multilayer perceptron, the workhorse model of every seed paper."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from lossatlas.engine import DataBundle, ModelPlugin

__all__ = ["MLP", "MLPModel", "init_weights"]

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def init_weights(
    module: nn.Module, scheme: str, generator: torch.Generator, bound: float | None = None
) -> None:
    """Initialise every Linear/Conv weight by ``scheme`` and set biases to zero.

    ``xavier``: N(0, 2/(fan_in+fan_out)) (Glorot normal); ``he``: N(0, 2/fan_in);
    ``uniform``: U[−a, a] with a = ``bound`` (seed 002's U[−1, 1] is ``bound=1``), or
    a = 1/√fan_in when ``bound`` is None (the bound of torch's default for Linear).
    Biases start at zero, as seed 000 assumes.
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            with torch.no_grad():
                if scheme == "xavier":
                    std = math.sqrt(2.0 / (fan_in + fan_out))
                    m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * std)
                elif scheme == "he":
                    std = math.sqrt(2.0 / fan_in)
                    m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * std)
                elif scheme == "uniform":
                    a = 1.0 / math.sqrt(fan_in) if bound is None else float(bound)
                    u = torch.rand(m.weight.shape, generator=generator)
                    m.weight.copy_((2 * u - 1) * a)
                else:  # pragma: no cover - options are validated
                    raise ValueError(scheme)
                if m.bias is not None:
                    m.bias.zero_()


class MLP(nn.Sequential):
    """Flatten, then Linear-activation blocks, then a Linear output layer, optionally
    followed by an output activation (seed 002's sigmoid on every layer)."""

    def __init__(
        self,
        n_inputs: int,
        hidden: list[int],
        n_outputs: int,
        activation: str = "relu",
        bias: bool = True,
        output_activation: str = "none",
    ) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        width = n_inputs
        for h in hidden:
            layers += [nn.Linear(width, h, bias=bias), ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, n_outputs, bias=bias))
        if output_activation != "none":
            layers.append(ACTIVATIONS[output_activation]())
        super().__init__(*layers)


@dataclass
class MLPOptions:
    hidden: list[int] = field(
        default_factory=lambda: [100, 100],
        metadata={"doc": "widths of the hidden layers (empty: a linear model)"},
    )
    activation: Literal["relu", "tanh", "sigmoid"] = field(
        default="relu", metadata={"doc": "activation after each hidden layer"}
    )
    bias: bool = field(default=True, metadata={"doc": "layers have biases"})
    init: Literal["xavier", "he", "uniform"] = field(
        default="xavier",
        metadata={
            "doc": "weight initialisation: xavier N(0, 2/(fan_in+fan_out)), he N(0, 2/fan_in), "
            "uniform U[−a, a] (a = init_bound); biases start at 0"
        },
    )
    init_bound: float = field(
        default=0.0,
        metadata={
            "doc": "a of init = 'uniform' (seed 002: 1.0 for U[−1, 1]); 0: 1/√fan_in per "
            "layer, the bound of torch's default for Linear"
        },
    )
    output_activation: Literal["none", "sigmoid", "tanh", "relu"] = field(
        default="none",
        metadata={
            "doc": "activation after the output layer (seed 002's regression: sigmoid); "
            "none for logits"
        },
    )

    def validate(self) -> None:
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"option 'hidden': widths must be positive, got {self.hidden}")
        if self.init_bound < 0:
            raise ValueError(f"option 'init_bound' must be ≥ 0, got {self.init_bound}")
        if self.init_bound and self.init != "uniform":
            raise ValueError(
                f"option 'init_bound' is the bound of init = 'uniform', but init = "
                f"'{self.init}'; set init = \"uniform\" or drop init_bound"
            )


class MLPModel(ModelPlugin[MLPOptions]):
    name = "mlp"
    summary = (
        "multilayer perceptron: widths, depth, relu/tanh/sigmoid, output activation, "
        "xavier/he/uniform init"
    )
    Options = MLPOptions

    def build(self, options: MLPOptions, data: DataBundle, seed: int) -> nn.Module:
        n_inputs = math.prod(data.input_shape)
        model = MLP(
            n_inputs,
            list(options.hidden),
            data.n_outputs,
            options.activation,
            options.bias,
            options.output_activation,
        )
        g = torch.Generator().manual_seed(seed)
        init_weights(model, options.init, g, options.init_bound or None)
        return model
