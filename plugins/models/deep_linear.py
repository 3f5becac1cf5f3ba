"""The deep (factored) linear model of Saxe et al. and seed 003 (Goodfellow, Vinyals &
Saxe 2015, Section 5 and Appendix C, Fig. 14).

y = W_L ⋯ W_2 W_1 x: linear in the input, non-linear (and non-convex) in the
parameters. With ``depth = 2``, ``width = 1`` and the ``deep-linear`` data set's single
sample x = y = 1 this is the 2-parameter toy y = w1·w2·x with loss (1 − w1·w2)²: a saddle
at the origin and a manifold of global minima on the hyperbola w2 = 1/w1.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from lossatlas.engine import DataBundle, ModelPlugin

__all__ = ["DeepLinear", "DeepLinearModel"]


class DeepLinear(nn.Module):
    """A product of ``depth`` bias-free linear maps (widths: inputs → width … → outputs)."""

    def __init__(self, n_inputs: int, n_outputs: int, depth: int, width: int) -> None:
        super().__init__()
        sizes = [n_inputs] + [width] * (depth - 1) + [n_outputs]
        self.layers = nn.ModuleList(
            nn.Linear(a, b, bias=False) for a, b in itertools.pairwise(sizes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        for layer in self.layers:
            x = layer(x)
        return x


@dataclass
class DeepLinearOptions:
    depth: int = field(default=2, metadata={"doc": "number of factors W_i"})
    width: int = field(default=1, metadata={"doc": "width of the hidden factors"})
    init_scale: float = field(
        default=0.1,
        metadata={
            "doc": "weights start N(0, (init_scale)²/fan_in) — small, near the saddle "
            "at the origin as in the paper"
        },
    )
    init: list[float] = field(
        default_factory=list,
        metadata={
            "doc": "explicit initial parameters (all D of them, in order), e.g. "
            "[0.1, 0.05] for the 2-parameter toy, exact in a float64 run; empty: random"
        },
    )

    def validate(self) -> None:
        if self.depth < 1:
            raise ValueError(f"option 'depth' must be at least 1, got {self.depth}")
        if self.width < 1:
            raise ValueError(f"option 'width' must be at least 1, got {self.width}")
        if self.init_scale < 0:
            raise ValueError(f"option 'init_scale' must be ≥ 0, got {self.init_scale}")


class DeepLinearModel(ModelPlugin[DeepLinearOptions]):
    name = "deep-linear"
    summary = "deep factored linear model y = W_L⋯W_1 x (seed 003's w1·w2 toy by default)"
    Options = DeepLinearOptions

    def build(self, options: DeepLinearOptions, data: DataBundle, seed: int) -> nn.Module:
        n_inputs = math.prod(data.input_shape)
        model = DeepLinear(n_inputs, data.n_outputs, options.depth, options.width)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in model.layers:
                std = options.init_scale / math.sqrt(layer.weight.shape[1])
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * std)
            if options.init:
                D = sum(p.numel() for p in model.parameters())
                if len(options.init) != D:
                    from lossatlas.engine import ConfigError

                    raise ConfigError(
                        f"model 'deep-linear': option 'init' has "
                        f"{len(options.init)} values but the model has D={D}"
                    )
                # float64 parameters, so a float64 run starts exactly at the given
                # values (0.1, not float32's 0.10000000149); the objective casts them to
                # the run's dtype
                model.double()
                flat = torch.as_tensor(options.init, dtype=torch.float64)
                start = 0
                for p in model.parameters():
                    p.copy_(flat[start : start + p.numel()].reshape(p.shape))
                    start += p.numel()
        return model
