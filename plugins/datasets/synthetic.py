"""Small synthetic classification tasks from scikit-learn's generators (no files).

``blobs`` (isotropic Gaussian clusters, :func:`sklearn.datasets.make_blobs`) and
``moons`` (two interleaving half circles, :func:`sklearn.datasets.make_moons`). Both
are generated from the data set's seed, which also fixes the train/validation split.
Two input features by default, so their decision regions can be drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lossatlas.engine import DataBundle, DatasetPlugin, Split

from .digits import split_indices

__all__ = ["Blobs", "BlobsOptions", "Moons", "MoonsOptions"]


def _bundle(
    X: np.ndarray,
    y: np.ndarray,
    validation: float,
    seed: int,
    standardize: bool,
    n_classes: int,
    description: str,
    source: str,
) -> DataBundle:
    tr, va = split_indices(len(X), validation, seed)
    if standardize:
        mean, std = X[tr].mean(axis=0), X[tr].std(axis=0)
        X = (X - mean) / np.where(std > 0, std, 1.0)
    X_t = torch.as_tensor(X, dtype=torch.float32)
    y_t = torch.as_tensor(y, dtype=torch.int64)
    return DataBundle(
        train=Split(X_t[tr], y_t[tr]),
        validation=Split(X_t[va], y_t[va]),
        task="classification",
        n_outputs=n_classes,
        description=description,
        attrs={"source": source, "seed": seed, "split_seed": seed},
    )


def _check(n_samples: int, validation: float) -> None:
    if n_samples < 4:
        raise ValueError(f"option 'n_samples' must be at least 4, got {n_samples}")
    if not 0 < validation < 1:
        raise ValueError(f"option 'validation' must be in (0, 1), got {validation}")


@dataclass
class BlobsOptions:
    n_samples: int = field(default=500, metadata={"doc": "samples generated in all"})
    n_features: int = field(default=2, metadata={"doc": "input dimension"})
    centers: int = field(default=3, metadata={"doc": "number of clusters (= classes)"})
    cluster_std: float = field(default=1.0, metadata={"doc": "std of each cluster"})
    validation: float = field(default=0.2, metadata={"doc": "fraction held out for validation"})
    standardize: bool = field(
        default=True, metadata={"doc": "scale each feature to mean 0, std 1 (training statistics)"}
    )

    def validate(self) -> None:
        _check(self.n_samples, self.validation)
        if self.n_features < 1 or self.centers < 2:
            raise ValueError("options 'n_features' ≥ 1 and 'centers' ≥ 2 are required")
        if self.cluster_std <= 0:
            raise ValueError(f"option 'cluster_std' must be positive, got {self.cluster_std}")


class Blobs(DatasetPlugin[BlobsOptions]):
    name = "blobs"
    summary = "Gaussian clusters from sklearn.datasets.make_blobs (generated from the seed)"
    Options = BlobsOptions

    def load(self, options: BlobsOptions, seed: int) -> DataBundle:
        from sklearn.datasets import make_blobs

        X, y = make_blobs(
            n_samples=options.n_samples,
            n_features=options.n_features,
            centers=options.centers,
            cluster_std=options.cluster_std,
            random_state=seed,
        )
        return _bundle(
            X,
            y,
            options.validation,
            seed,
            options.standardize,
            options.centers,
            f"blobs: {options.centers} clusters in {options.n_features}-D",
            "sklearn.datasets.make_blobs",
        )


@dataclass
class MoonsOptions:
    n_samples: int = field(default=500, metadata={"doc": "samples generated in all"})
    noise: float = field(default=0.1, metadata={"doc": "std of Gaussian noise on the points"})
    validation: float = field(default=0.2, metadata={"doc": "fraction held out for validation"})
    standardize: bool = field(
        default=True, metadata={"doc": "scale each feature to mean 0, std 1 (training statistics)"}
    )

    def validate(self) -> None:
        _check(self.n_samples, self.validation)
        if self.noise < 0:
            raise ValueError(f"option 'noise' must be ≥ 0, got {self.noise}")


class Moons(DatasetPlugin[MoonsOptions]):
    name = "moons"
    summary = "two interleaving half circles from sklearn.datasets.make_moons (2 classes)"
    Options = MoonsOptions

    def load(self, options: MoonsOptions, seed: int) -> DataBundle:
        from sklearn.datasets import make_moons

        X, y = make_moons(n_samples=options.n_samples, noise=options.noise, random_state=seed)
        return _bundle(
            X,
            y,
            options.validation,
            seed,
            options.standardize,
            2,
            f"moons (noise {options.noise:g})",
            "sklearn.datasets.make_moons",
        )
