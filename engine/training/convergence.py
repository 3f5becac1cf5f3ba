"""Whether trainings ended with their loss still falling (the check every training probe
runs on its results)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["ConvergenceWarning", "convergence_window", "loss_still_falling"]


class ConvergenceWarning(UserWarning):
    """Trainings ended while their loss was still falling (see :func:`loss_still_falling`)."""


def convergence_window(epochs: int) -> int:
    """The epochs :func:`loss_still_falling` looks back over: the last quarter, at least 1."""
    return max(1, math.ceil(epochs / 4))


def loss_still_falling(
    losses: Any, *, tol: float = 0.1, window: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Whether trainings ended with their loss still falling.

    ``losses`` (..., E + 1): the loss per epoch (index 0 = before training, the last =
    the end), e.g. ``TrainResult.history["train_loss"]``. The *share* is the part of the
    run's whole decrease that came in its last ``window`` epochs (default: the last
    quarter, at least one): (L[E − w] − L[E]) / (L[0] − L[E]). A run is still falling
    when its share is above ``tol`` (10 % by default): a loss that falls linearly has
    share w/E (¼), one that converged early has ≈ 0, and one that decays as e^(−t/τ) over
    E = 20 epochs has 0.03 for τ = 5 and 0.10 for τ = 10 epochs. Scale-free, so a slow
    run (small lr) is judged like a fast one, and a cross-entropy creeping towards 0 after
    the fit is not "falling". Returns (still_falling, share), both of shape (...); a run
    whose loss did not go down at all (or is not finite at those epochs) is not falling
    and has share NaN. "Not falling" is not "at a minimum": it says more epochs of the
    same schedule would change little.
    """
    L = np.asarray(losses, dtype=np.float64)
    epochs = L.shape[-1] - 1
    if epochs < 1:
        shape = L.shape[:-1]
        return np.zeros(shape, dtype=bool), np.full(shape, np.nan)
    w = min(window or convergence_window(epochs), epochs)
    first, mid, last = L[..., 0], L[..., -1 - w], L[..., -1]
    total = first - last
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, (mid - last) / total, np.nan)
    share = np.where(np.isfinite(share), share, np.nan)
    return np.nan_to_num(share, nan=-np.inf) > tol, share
