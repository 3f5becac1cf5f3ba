"""Built-in losses: cross-entropy, label-smoothed cross-entropy, MSE, L1, Huber, and
the user's own function by import path."""

from __future__ import annotations

from lossatlas.engine import LossPlugin, hookimpl

from .classification import CrossEntropyLoss, LabelSmoothingLoss
from .importpath import PythonLoss
from .regression import HuberLoss, L1Loss, MSELoss

__all__ = [
    "CrossEntropyLoss",
    "HuberLoss",
    "L1Loss",
    "LabelSmoothingLoss",
    "MSELoss",
    "PythonLoss",
]


@hookimpl
def lossatlas_register_losses() -> list[LossPlugin]:
    return [
        CrossEntropyLoss(),
        LabelSmoothingLoss(),
        MSELoss(),
        L1Loss(),
        HuberLoss(),
        PythonLoss(),
    ]
