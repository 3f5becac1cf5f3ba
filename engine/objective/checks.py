"""What the objective checks when it is built: integer class labels within n_outputs,
model outputs of the data's shape, and a loss that returns what its reduction says and
depends differentiably on the outputs (one line each, naming what to change)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..errors import ShapeError

if TYPE_CHECKING:
    from .objective import Objective

__all__ = ["check_loss", "check_shapes", "check_targets"]


def check_targets(self: Objective) -> None:
    """Class labels must be integers in [0, n_outputs)."""
    if self.task != "classification":
        return
    for name, s in self.splits.items():
        t = s.targets
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ShapeError(
                f"the {name} split's class labels are {t.dtype}, not integers; "
                "give int64 labels 0 … n_outputs−1"
            )
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.n_outputs):
            raise ShapeError(
                f"the {name} split has class labels from {int(t.min())} to {int(t.max())} "
                f"but the data set declares n_outputs={self.n_outputs}; labels must lie "
                f"in 0 … {self.n_outputs - 1} (set n_outputs to the number of classes)"
            )


def check_shapes(self: Objective) -> None:
    """The model takes the data's inputs and gives one output per class or target."""
    sample, tsample = self._head("train", 2)
    try:
        with torch.no_grad():
            out = self._forward(self.x0, sample)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ShapeError(
            f"the model cannot take the data set's inputs of shape "
            f"{tuple(sample.shape[1:])}: {first}"
        ) from None
    if not isinstance(out, torch.Tensor):
        raise ShapeError(
            f"the model returns a {type(out).__name__} per batch, not a tensor of outputs"
        )
    want = (sample.shape[0], self.n_outputs)
    got = tuple(out.shape)
    ok = got == want or (
        self.task == "regression" and self.n_outputs == 1 and got == (sample.shape[0],)
    )
    if not ok:
        what = "classes" if self.task == "classification" else "outputs"
        raise ShapeError(
            f"the model gives outputs of shape {got[1:]} per sample but the data set "
            f"has {self.n_outputs} {what}; set the model's output size to {self.n_outputs}"
        )
    check_loss(self, out.detach(), tsample)


def check_loss(self: Objective, out: torch.Tensor, targets: torch.Tensor) -> None:
    """The loss returns what its reduction says, and depends on the outputs."""
    loss = self.loss_fn
    where = f"loss '{loss.name}'"
    o = out.clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            value = loss.fn(o, targets)
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ShapeError(
            f"{where} fails on the model's outputs {tuple(out.shape)} and targets "
            f"{tuple(targets.shape)}: {type(exc).__name__}: {first}"
        ) from None
    if not isinstance(value, torch.Tensor):
        raise ShapeError(f"{where} returned a {type(value).__name__}, not a torch tensor")
    want = (out.shape[0],) if loss.reduction == "none" else ()
    if tuple(value.shape) != want:
        hint = "one value per sample" if loss.reduction == "none" else "a scalar (its reduction)"
        raise ShapeError(
            f"{where} returned shape {tuple(value.shape)} for a batch of {out.shape[0]} "
            f"samples but its reduction '{loss.reduction}' means {hint}; set its reduction "
            "to what the function returns ('none', 'mean' or 'sum')"
        )
    if not value.is_floating_point():
        raise ShapeError(f"{where} returned {value.dtype} values, not floating point")
    if not value.requires_grad:
        raise ShapeError(
            f"{where} does not depend differentiably on the model's outputs (does it "
            "call .item(), .detach() or numpy?); write it in torch operations"
        )
