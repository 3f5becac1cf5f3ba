"""Generated data sets: mnist1d, blobs, moons (deterministic by seed, no files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossatlas.engine import ConfigError, parse_options
from lossatlas.plugins.datasets.mnist1d import MNIST1D, MNIST1DOptions, make_signals
from lossatlas.plugins.datasets.synthetic import Blobs, BlobsOptions, Moons, MoonsOptions


def test_mnist1d_shapes_and_balance() -> None:
    data = MNIST1D().load(parse_options(MNIST1DOptions, {"n_samples": 500}, "d"), 0)
    assert data.train.inputs.shape == (400, 40) and data.validation.inputs.shape == (100, 40)
    assert data.n_outputs == 10 and data.task == "classification"
    _, labels = make_signals(500, 0)
    assert np.bincount(labels).tolist() == [50] * 10
    assert torch.isfinite(data.train.inputs).all()


def test_mnist1d_deterministic_by_seed() -> None:
    opts = parse_options(MNIST1DOptions, {"n_samples": 200, "length": 32}, "d")
    a, b, c = (MNIST1D().load(opts, s) for s in (3, 3, 4))
    assert a.train.inputs.shape == (160, 32)
    assert torch.equal(a.train.inputs, b.train.inputs)
    assert torch.equal(a.validation.targets, b.validation.targets)
    assert not torch.equal(a.train.inputs, c.train.inputs)


def test_mnist1d_classes_differ_by_shape() -> None:
    # Without noise, shifts, stretch and shear, each class is one fixed signal.
    x, y = make_signals(40, 0, max_shift=0, stretch=0, shear=0, correlated_noise=0, noise=0)
    for k in range(10):
        rows = x[y == k]
        assert np.allclose(rows, rows[0])
    means = np.stack([x[y == k][0] for k in range(10)])
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert (dist + np.eye(10) * 1e9).min() > 0.5


def test_blobs_and_moons() -> None:
    blobs = Blobs().load(
        parse_options(BlobsOptions, {"n_samples": 100, "centers": 4, "n_features": 3}, "d"), 1
    )
    assert blobs.train.inputs.shape == (80, 3) and blobs.n_outputs == 4
    assert set(blobs.train.targets.tolist()) <= {0, 1, 2, 3}
    again = Blobs().load(
        parse_options(BlobsOptions, {"n_samples": 100, "centers": 4, "n_features": 3}, "d"), 1
    )
    assert torch.equal(blobs.train.inputs, again.train.inputs)
    assert abs(float(blobs.train.inputs.mean())) < 1e-5  # standardised on train
    moons = Moons().load(parse_options(MoonsOptions, {}, "d"), 0)
    assert moons.train.inputs.shape == (400, 2) and moons.n_outputs == 2
    with pytest.raises(ConfigError, match=r"centers"):
        parse_options(BlobsOptions, {"centers": 1}, "dataset 'blobs'")
