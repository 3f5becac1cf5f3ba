"""scikit-learn's bundled 8×8 digits: the embedded default data set (no download)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lossatlas.engine import DataBundle, DatasetPlugin, Split

__all__ = ["Digits", "split_indices"]


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
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
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
