"""A third-party lossatlas plugin: one data set, one model and one probe.

Installed with ``pip install examples/plugin-package``; the ``lossatlas`` entry point
in its pyproject.toml is all lossatlas needs to find it (``lossatlas plugins``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lossatlas.engine import (
    Cell,
    DataBundle,
    DatasetPlugin,
    ModelPlugin,
    Plan,
    PointRef,
    Probe,
    Split,
    StepContext,
    hookimpl,
    metric_variables,
    option,
)

# ------------------------------------------------------------------- data set


@dataclass
class SpiralsOptions:
    n: int = option(300, doc="samples in all", ge=10)
    arms: int = option(3, doc="number of spiral arms (classes)", ge=2)
    noise: float = option(0.1, doc="Gaussian noise on the points", ge=0)


class Spirals(DatasetPlugin[SpiralsOptions]):
    name = "spirals"
    summary = "interleaved 2-D spirals, one class per arm (generated)"
    Options = SpiralsOptions

    def load(self, options: SpiralsOptions, seed: int) -> DataBundle:
        rng = np.random.default_rng(seed)
        per = options.n // options.arms
        xs, ys = [], []
        for k in range(options.arms):
            t = np.linspace(0.1, 1.0, per)
            angle = 3 * t + 2 * math.pi * k / options.arms
            pts = np.stack([t * np.cos(angle), t * np.sin(angle)], 1)
            xs.append(pts + options.noise * rng.standard_normal(pts.shape))
            ys.append(np.full(per, k))
        X = torch.tensor(np.concatenate(xs), dtype=torch.float32)
        y = torch.tensor(np.concatenate(ys), dtype=torch.int64)
        order = torch.tensor(rng.permutation(len(X)))
        X, y = X[order], y[order]
        cut = int(0.8 * len(X))
        return DataBundle(
            Split(X[:cut], y[:cut]),
            Split(X[cut:], y[cut:]),
            "classification",
            options.arms,
            description="spirals",
        )


# ----------------------------------------------------------------------- model


@dataclass
class SoftmaxOptions:
    temperature: float = option(1.0, doc="logits are divided by this", gt=0)


class Softmax(nn.Module):
    def __init__(self, n_in: int, n_out: int, temperature: float) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) / self.temperature


class SoftmaxRegression(ModelPlugin[SoftmaxOptions]):
    name = "softmax-regression"
    summary = "a single linear layer (multinomial logistic regression)"
    Options = SoftmaxOptions

    def build(self, options: SoftmaxOptions, data: DataBundle, seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):  # seed torch only inside: nothing else sees it
            torch.manual_seed(seed)
            return Softmax(math.prod(data.input_shape), data.n_outputs, options.temperature)


# ----------------------------------------------------------------------- probe


@dataclass
class ScalingOptions:
    at: PointRef = option(PointRef("init"), doc="the point x")
    factors: list[float] = option(
        [0.0, 0.5, 1.0, 2.0, 4.0], doc="scale factors c: loss at c·x", min_items=1
    )


class WeightScaling(Probe[ScalingOptions]):
    """Loss at c·x for a list of factors c: how the landscape changes along the ray."""

    name = "weight-scaling"
    summary = "loss and accuracy at c·x along the ray through a point"
    Options = ScalingOptions

    def plan(self, options: ScalingOptions, ctx: StepContext) -> Plan:
        return Plan(
            coords={"factor": np.asarray(options.factors, dtype=float)},
            cell_dims=("factor",),
            variables=metric_variables(ctx.objective.metric_names(), ("factor",)),
        )

    def compute(self, options: ScalingOptions, ctx: StepContext, cell: Cell) -> dict[str, Any]:
        x = ctx.resolve_point(options.at) * cell.coords["factor"]
        return {k: v[0] for k, v in ctx.objective.evaluate_both(x.unsqueeze(0)).items()}

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(ds["factor"], ds["train_loss"], "o-", label="train")
        ax.plot(ds["factor"], ds["validation_loss"], "s--", label="validation")
        ax.set_xlabel("scale factor c")
        ax.set_ylabel("loss at c·x")
        ax.legend()
        return fig


# ----------------------------------------------------------------------- hooks


@hookimpl
def lossatlas_register_datasets() -> list[DatasetPlugin]:
    return [Spirals()]


@hookimpl
def lossatlas_register_models() -> list[ModelPlugin]:
    return [SoftmaxRegression()]


@hookimpl
def lossatlas_register_probes() -> list[Probe]:
    return [WeightScaling()]
