"""The 2-3-2 ReLU network of Freeman & Bruna (2017), Appendix E, trained at build time.

``permutation`` builds a bias-free MLP with one hidden ReLU layer (3 units by default;
2·3 + 3·2 = 12 parameters, as in the paper) for the ``permutation`` data set and,
with ``trained = true`` (the default), fits it to the data right away (full-batch
Adam, float64, a few thousand steps on three points: well under a second), so that
``init`` *is* a solution and ``init:SEED`` another one.
That makes the paper's counterexample a self-contained pipeline: the trained net, a
copy with two hidden units swapped (probe ``permute-units``), and ``dss`` between them.
Deterministic for a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from lossatlas.engine import DataBundle, ModelPlugin

from .mlp import MLP, init_weights

__all__ = ["PermutationNet", "PermutationNetOptions", "fit"]


@dataclass
class PermutationNetOptions:
    hidden: int = field(default=3, metadata={"doc": "hidden ReLU units"})
    bias: bool = field(
        default=False,
        metadata={"doc": "layers have biases (the paper's net has none: 12 parameters)"},
    )
    trained: bool = field(
        default=True,
        metadata={"doc": "fit the net to the data set when it is built (init is then a solution)"},
    )
    steps: int = field(default=1500, metadata={"doc": "full-batch Adam steps of the fit"})
    lr: float = field(default=0.05, metadata={"doc": "Adam learning rate of the fit"})
    restarts: int = field(
        default=8,
        metadata={
            "doc": "fresh initialisations tried (derived from the seed) until one fits to "
            "loss < 1e-6; the best is kept"
        },
    )

    def validate(self) -> None:
        if self.hidden < 1 or self.steps < 0 or self.lr <= 0 or self.restarts < 1:
            raise ValueError("options 'hidden', 'restarts' must be ≥ 1, 'steps' ≥ 0 and 'lr' > 0")


def fit(model: nn.Module, data: DataBundle, steps: int, lr: float) -> float:
    """Full-batch Adam on the train split in float64 (stops early once the mean squared
    error is below 1e-13); returns the final MSE."""
    model.double()
    x = data.train.inputs.double()
    y = data.train.targets.double()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean(dim=1).mean()
        if float(loss.detach()) < 1e-13:
            break
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = float(((model(x) - y) ** 2).mean(dim=1).mean())
    model.float()
    return final


class PermutationNet(ModelPlugin[PermutationNetOptions]):
    name = "permutation"
    summary = "2-3-2 ReLU net of Freeman & Bruna App. E, fitted to the data when built"
    Options = PermutationNetOptions

    def build(self, options: PermutationNetOptions, data: DataBundle, seed: int) -> nn.Module:
        n_in = math.prod(data.input_shape)
        best, best_loss = None, math.inf
        for r in range(options.restarts if options.trained else 1):
            model = MLP(n_in, [options.hidden], data.n_outputs, "relu", bias=options.bias)
            g = torch.Generator().manual_seed(seed * 1_000 + r)
            init_weights(model, "he", g)
            if not options.trained:
                return model
            loss = fit(model, data, options.steps, options.lr)
            if loss < best_loss:
                best, best_loss = model, loss
            if loss < 1e-6:
                break
        assert best is not None
        return best
