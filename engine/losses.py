"""Losses: how a model's outputs on a batch are scored against the targets.

A :class:`Loss` is what the :class:`~lossatlas.engine.Objective` minimises and probes
measure; every loss value, gradient, HVP and training step goes through
:meth:`Loss.sum`. Loss *plugins* (:class:`~lossatlas.engine.LossPlugin`, registered
through the ``lossatlas_register_losses`` hook; built-ins in
:mod:`lossatlas.plugins.losses`) build one from their options and the data set; a
config selects one with ``[loss] plugin = "l1"``. Without a ``[loss]`` table the
loss is chosen by the task: :func:`cross_entropy` for classification,
:func:`mean_squared_error` for regression (:func:`default_loss`).

The two defaults are defined here, in the engine, because an objective must have a
loss without a plugin registry (tests, scripts); the built-in plugins
``cross-entropy`` and ``mse`` return these same objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

__all__ = [
    "Loss",
    "Reduction",
    "cross_entropy",
    "default_loss",
    "default_loss_name",
    "mean_squared_error",
    "per_sample_mean",
]

#: What a loss function returns for a batch of N samples: one value per sample
#: (``none``, shape (N,)), their mean (``mean``, a scalar) or their sum (``sum``).
Reduction = Literal["none", "mean", "sum"]


@dataclass(frozen=True)
class Loss:
    """A loss function bound to its options.

    Parameters
    ----------
    name:
        The loss's name (its plugin's name for a plugin's loss), for provenance.
    fn:
        ``fn(outputs, targets)``: ``outputs`` are the model's outputs on a batch, shape
        (N, C) (or whatever the model returns per batch), ``targets`` the batch's
        targets (int64 class labels (N,) for classification, floats for regression).
        It must be written in torch operations (autograd, ``torch.func.vmap`` and
        forward-mode AD run through it; no ``.item()``, no numpy).
    reduction:
        What ``fn`` returns: ``none`` — one loss per sample (N,); ``mean`` — the mean
        over the batch's samples (a scalar; most torch losses by default); ``sum``.
    tasks:
        The tasks it applies to (``classification``, ``regression``); the objective
        refuses a loss for another task.
    units:
        What a loss value is measured in (stored with results).
    options:
        The options it was built with (for provenance).
    kernel:
        The name of a fused kernel of the MLP fast path that computes this loss
        (engine-internal; ``None`` for every plugin loss: the fast path then calls
        ``fn``). A kernel is confirmed against ``fn`` when the objective is built.
    """

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    reduction: Reduction = "none"
    tasks: tuple[str, ...] = ("classification", "regression")
    units: str = ""
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    kernel: str | None = None

    def sum(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The sum over the batch's samples of the per-sample loss (a scalar)."""
        value = self.fn(outputs, targets)
        if self.reduction == "mean":
            return value * targets.shape[0]
        if self.reduction == "sum":
            return value
        return value.sum()

    def describe(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name}({opts})" if opts else self.name


def per_sample_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over every dim but the first: (N, ...) -> (N,) (a regression loss per
    sample averaged over its outputs)."""
    return values.reshape(values.shape[0], -1).mean(dim=1)


def _cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # −log_softmax at the label: what F.cross_entropy computes (its nll_loss picks and
    # negates the same log_softmax values, bit for bit), written so that vmap over
    # points needs no decomposition: nll_loss under vmap imports sympy (0.5 s, once
    # per process: most of a small run's evaluation time).
    logp = torch.log_softmax(outputs, dim=-1)
    return -logp.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)


def _squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return per_sample_mean((outputs.reshape(targets.shape) - targets) ** 2)


def cross_entropy() -> Loss:
    """Softmax cross-entropy of the outputs (logits) against class labels, in nats;
    the default for classification."""
    return Loss(
        name="cross-entropy",
        fn=_cross_entropy,
        tasks=("classification",),
        units="nats",
        description="softmax cross-entropy −log p(y|x), mean over samples",
        kernel="cross-entropy",
    )


def mean_squared_error() -> Loss:
    """Squared error averaged over the outputs of a sample, then over samples; the
    default for regression."""
    return Loss(
        name="mse",
        fn=_squared_error,
        tasks=("regression",),
        units="squared target units",
        description="mean squared error: mean over samples of the mean over outputs of (f(x) − y)²",
        kernel="mse",
    )


def default_loss_name(task: str) -> str:
    """``cross-entropy`` for classification, ``mse`` for regression."""
    return "cross-entropy" if task == "classification" else "mse"


def default_loss(task: str) -> Loss:
    """The loss a task gets when a config names none: cross-entropy or MSE."""
    return cross_entropy() if task == "classification" else mean_squared_error()
