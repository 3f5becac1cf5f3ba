"""Classification losses: softmax cross-entropy, with or without label smoothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from lossatlas.engine import DataBundle, Loss, LossPlugin, cross_entropy

__all__ = ["CrossEntropyLoss", "LabelSmoothingLoss", "LabelSmoothingOptions"]


class CrossEntropyLoss(LossPlugin):
    name = "cross-entropy"
    summary = "softmax cross-entropy −log p(y|x) in nats (the default for classification)"

    def build(self, options: Any, data: DataBundle) -> Loss:
        return cross_entropy()


@dataclass
class LabelSmoothingOptions:
    smoothing: float = field(
        default=0.1,
        metadata={
            "doc": "ε: the target puts 1 − ε on the label and ε/C on every class "
            "(Szegedy et al. 2016)"
        },
    )

    def validate(self) -> None:
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"option 'smoothing' must be in [0, 1), got {self.smoothing}")


def _smoothed(outputs: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    return F.cross_entropy(outputs, targets, reduction="none", label_smoothing=smoothing)


class LabelSmoothingLoss(LossPlugin[LabelSmoothingOptions]):
    name = "label-smoothing"
    summary = "cross-entropy against label-smoothed targets (1 − ε on the label, ε/C on all)"
    Options = LabelSmoothingOptions

    def build(self, options: LabelSmoothingOptions, data: DataBundle) -> Loss:
        eps = float(options.smoothing)
        return Loss(
            name=self.name,
            fn=partial(_smoothed, smoothing=eps),
            tasks=("classification",),
            units="nats",
            description=f"cross-entropy against targets smoothed by ε = {eps:g}: "
            "−(1 − ε)·log p(y|x) − (ε/C)·Σ_c log p(c|x)",
            options={"smoothing": eps},
        )
