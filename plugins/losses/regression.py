"""Regression losses: mean squared error, mean absolute error (L1) and Huber.

Each is a per-sample loss averaged over the sample's outputs, then over samples (the
objective's mean): for one output, MSE = mean (f(x) − y)², L1 = mean |f(x) − y| (the
loss of Freeman & Bruna's polynomial regression, seed 002 §4.1), Huber = mean of
½e² for |e| ≤ δ and δ(|e| − ½δ) beyond.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from lossatlas.engine import DataBundle, Loss, LossPlugin, mean_squared_error, per_sample_mean

__all__ = ["HuberLoss", "HuberOptions", "L1Loss", "MSELoss"]


class MSELoss(LossPlugin):
    name = "mse"
    summary = "mean squared error (the default for regression)"

    def build(self, options: Any, data: DataBundle) -> Loss:
        return mean_squared_error()


def _absolute(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return per_sample_mean((outputs.reshape(targets.shape) - targets).abs())


class L1Loss(LossPlugin):
    name = "l1"
    summary = "mean absolute error |f(x) − y| (seed 002's polynomial regression)"

    def build(self, options: Any, data: DataBundle) -> Loss:
        return Loss(
            name=self.name,
            fn=_absolute,
            tasks=("regression",),
            units="target units",
            description="mean absolute error: mean over samples of the mean over outputs "
            "of |f(x) − y|",
        )


@dataclass
class HuberOptions:
    delta: float = field(
        default=1.0,
        metadata={"doc": "δ: quadratic ½e² for |e| ≤ δ, linear δ(|e| − ½δ) beyond"},
    )

    def validate(self) -> None:
        if not self.delta > 0:
            raise ValueError(f"option 'delta' must be positive, got {self.delta}")


def _huber(outputs: torch.Tensor, targets: torch.Tensor, delta: float) -> torch.Tensor:
    e = (outputs.reshape(targets.shape) - targets).abs()
    quadratic = 0.5 * e * e
    linear = delta * (e - 0.5 * delta)
    return per_sample_mean(torch.where(e <= delta, quadratic, linear))


class HuberLoss(LossPlugin[HuberOptions]):
    name = "huber"
    summary = "Huber loss: squared error near 0, absolute error beyond δ"
    Options = HuberOptions

    def build(self, options: HuberOptions, data: DataBundle) -> Loss:
        delta = float(options.delta)
        return Loss(
            name=self.name,
            fn=partial(_huber, delta=delta),
            tasks=("regression",),
            units="squared target units",
            description=f"Huber loss with δ = {delta:g}: mean of ½e² (|e| ≤ δ) or "
            "δ(|e| − ½δ) (|e| > δ), e = f(x) − y",
            options={"delta": delta},
        )
