"""Turning a user's arrays into a :class:`DataBundle`: task inference, splits, checks.

Shared by the data sets that take the user's own data (``tensors`` from a file,
``python`` by import path) and by the ones read from standard files (``mnist``,
``cifar10``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from lossatlas.engine import DataBundle, DataError, Split

from .digits import split_indices

__all__ = [
    "TaskOption",
    "as_numpy",
    "bundle_from_arrays",
    "expand_path",
    "infer_task",
    "subsample",
]

#: The most classes a data set read from the user's arrays may have (labels 0 … 99,999):
#: a label far beyond that is a mistake (an id, a hash) that would allocate a model
#: output per class.
MAX_CLASSES = 100_000

#: The ``task`` option of data sets that read the user's arrays.
TaskOption = Literal["auto", "classification", "regression"]


def expand_path(path: str) -> Path:
    """``~`` and environment variables expanded, made absolute (for messages)."""
    import os

    return Path(os.path.expandvars(os.path.expanduser(path))).resolve()


def as_numpy(value: Any, what: str) -> np.ndarray:
    """A numpy array from an array, a tensor or a (nested) list; DataError otherwise."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise DataError(f"{what} is not an array: {exc}") from None
    if arr.dtype == object:
        raise DataError(f"{what} is not a numeric array (it holds Python objects)")
    if np.iscomplexobj(arr):
        raise DataError(
            f"{what} holds complex numbers ({arr.dtype}); lossatlas needs real numbers "
            "(save .real or abs() of them if that is meant)"
        )
    return arr


def infer_task(targets: np.ndarray) -> Literal["classification", "regression"]:
    """Integer (or boolean) targets mean classes; floating-point targets mean regression."""
    if targets.dtype == bool or np.issubdtype(targets.dtype, np.integer):
        return "classification"
    return "regression"


def subsample(n: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of a random subset of ``limit`` of ``n`` samples (all if 0 or ≥ n)."""
    if limit <= 0 or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng([seed, 0x5EB5])
    return np.sort(rng.choice(n, size=limit, replace=False))


def _targets(y: np.ndarray, task: str, what: str) -> torch.Tensor:
    if task == "classification":
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise DataError(
                f"{what}: classification targets must be one class index per sample, "
                f'got shape {y.shape}; use task = "regression" for vector targets'
            )
        if np.issubdtype(y.dtype, np.floating):
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise DataError(
                    f"{what}: classification targets must be whole numbers, got floats "
                    'with a fractional part; use task = "regression"'
                )
        elif not (y.dtype == bool or np.issubdtype(y.dtype, np.integer)):
            raise DataError(f"{what}: targets of dtype {y.dtype} are not class indices")
        yi = y.astype(np.int64)
        if yi.size and yi.min() < 0:
            raise DataError(f"{what}: class indices must be ≥ 0, found {int(yi.min())}")
        if yi.size and yi.max() >= MAX_CLASSES:
            raise DataError(
                f"{what}: class index {int(yi.max())} is outside [0, {MAX_CLASSES}); labels "
                "must be 0 … n_classes-1 (relabel with numpy.unique(y, return_inverse=True))"
            )
        return torch.as_tensor(yi)
    if not np.issubdtype(y.dtype, np.number) and y.dtype != bool:
        raise DataError(f"{what}: targets of dtype {y.dtype} are not numbers")
    yf = y.astype(np.float32)
    if yf.ndim == 1:
        yf = yf[:, None]
    if not np.all(np.isfinite(yf)):
        raise DataError(f"{what}: regression targets contain NaN or infinite values")
    return torch.as_tensor(yf)


def _inputs(x: np.ndarray, what: str) -> torch.Tensor:
    if x.ndim == 0:
        raise DataError(f"{what}: inputs must have a sample dimension, got a scalar")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{what}: inputs of dtype {x.dtype} are not numbers")
    if x.ndim == 1:
        x = x[:, None]
    xf = x.astype(np.float32)
    if not np.all(np.isfinite(xf)):
        raise DataError(f"{what}: inputs contain NaN or infinite values")
    return torch.as_tensor(xf)


def bundle_from_arrays(
    X: Any,
    y: Any,
    X_val: Any | None = None,
    y_val: Any | None = None,
    *,
    task: TaskOption = "auto",
    validation: float = 0.2,
    seed: int = 0,
    limit: int = 0,
    source: str,
    description: str = "",
) -> DataBundle:
    """A :class:`DataBundle` from arrays or tensors, with the user's data checked.

    Without ``X_val``/``y_val`` a ``validation`` fraction of the samples is held out by
    ``seed`` (:func:`split_indices`). ``task="auto"`` infers classification from
    integer targets (classes ``0 … max``) and regression from floating-point ones.
    Inputs become float32 (a 1-D input array becomes one feature per sample);
    regression targets become float32 of shape (N, k) (a 1-D array becomes (N, 1)).
    ``limit`` keeps a random subset of that many training samples (0: all).
    ``source`` names where the arrays came from, for messages and provenance.
    """
    x_tr = as_numpy(X, f"{source}: the inputs")
    y_tr = as_numpy(y, f"{source}: the targets")
    given = X_val is not None or y_val is not None
    if given and (X_val is None or y_val is None):
        raise DataError(f"{source}: validation inputs and targets must be given together")
    if given:
        x_va = as_numpy(X_val, f"{source}: the validation inputs")
        y_va = as_numpy(y_val, f"{source}: the validation targets")
    for xs, ys, which in ((x_tr, y_tr, "training"),) + (
        ((x_va, y_va, "validation"),) if given else ()
    ):
        if xs.ndim == 0 or ys.ndim == 0 or xs.shape[0] != ys.shape[0]:
            raise DataError(
                f"{source}: the {which} inputs (shape {xs.shape}) and targets "
                f"(shape {ys.shape}) do not have the same number of samples"
            )
    if not given:
        if x_tr.shape[0] < 2:
            raise DataError(f"{source}: need at least 2 samples to split, got {x_tr.shape[0]}")
        tr, va = split_indices(x_tr.shape[0], validation, seed)
        x_tr, y_tr, x_va, y_va = x_tr[tr], y_tr[tr], x_tr[va], y_tr[va]
    elif x_va.shape[1:] != x_tr.shape[1:]:
        raise DataError(
            f"{source}: validation inputs have shape {x_va.shape[1:]} per sample but "
            f"training inputs have {x_tr.shape[1:]}"
        )
    keep = subsample(x_tr.shape[0], limit, seed)
    x_tr, y_tr = x_tr[keep], y_tr[keep]
    if x_tr.shape[0] == 0:
        raise DataError(f"{source}: the training split is empty")

    kind = infer_task(y_tr) if task == "auto" else task
    train = Split(_inputs(x_tr, f"{source} (train)"), _targets(y_tr, kind, f"{source} (train)"))
    val = Split(
        _inputs(x_va, f"{source} (validation)"), _targets(y_va, kind, f"{source} (validation)")
    )
    if kind == "classification":
        top = max(int(train.targets.max()), int(val.targets.max()) if len(val) else 0)
        n_outputs = top + 1
    else:
        if train.targets.shape[1:] != val.targets.shape[1:]:
            raise DataError(
                f"{source}: validation targets have shape {tuple(val.targets.shape[1:])} "
                f"per sample but training targets have {tuple(train.targets.shape[1:])}"
            )
        n_outputs = int(np.prod(train.targets.shape[1:]))
    return DataBundle(
        train=train,
        validation=val,
        task=kind,
        n_outputs=n_outputs,
        description=description or source,
        attrs={
            "source": source,
            "split_seed": seed,
            "validation": "given" if given else validation,
            "limit": limit,
        },
    )
