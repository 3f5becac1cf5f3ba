"""scikit-learn's bundled 8×8 digits: the embedded default data set (no download)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lossatlas.engine import DataBundle, DatasetPlugin, Split

__all__ = ["Digits", "digits_arrays", "split_indices"]


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``load_digits(return_X_y=True)`` gives them (float64
    pixels 0..16, int labels), read from the CSV file scikit-learn ships.

    The file is read directly (``np.loadtxt``, as scikit-learn reads it): importing
    scikit-learn costs about a second, the larger part of a small run's start-up.
    Without the file (another scikit-learn layout), ``load_digits`` itself."""
    import gzip
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt", encoding="utf-8") as f:
                data = np.loadtxt(f, delimiter=",")
            return data[:, :-1], data[:, -1].astype(int, copy=False)
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return np.asarray(X), np.asarray(y)


def split_indices(n: int, validation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random train/validation split of ``n`` samples by ``seed``."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_val = round(validation * n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@dataclass
class DigitsOptions:
    validation: float = field(default=0.2, metadata={"doc": "fraction held out for validation"})
    limit: int = field(default=0, metadata={"doc": "use only the first N samples (0: all 1797)"})
    normalize: bool = field(default=True, metadata={"doc": "scale pixels from 0..16 to 0..1"})

    def validate(self) -> None:
        if not 0 < self.validation < 1:
            raise ValueError(f"option 'validation' must be in (0, 1), got {self.validation}")
        if self.limit < 0 or self.limit == 1:
            raise ValueError(f"option 'limit' must be 0 (all) or at least 2, got {self.limit}")


class Digits(DatasetPlugin[DigitsOptions]):
    name = "digits"
    summary = "scikit-learn's bundled 8x8 handwritten digits (1797 samples, 10 classes)"
    Options = DigitsOptions

    def load(self, options: DigitsOptions, seed: int) -> DataBundle:
        X, y = digits_arrays()
        if options.limit:
            X, y = X[: options.limit], y[: options.limit]
        if options.normalize:
            X = X / 16.0
        tr, va = split_indices(len(X), options.validation, seed)
        X_t = torch.as_tensor(X, dtype=torch.float32)
        y_t = torch.as_tensor(y, dtype=torch.int64)
        return DataBundle(
            train=Split(X_t[tr], y_t[tr]),
            validation=Split(X_t[va], y_t[va]),
            task="classification",
            n_outputs=10,
            description="sklearn digits 8x8",
            attrs={"source": "sklearn.datasets.load_digits", "split_seed": seed},
        )
