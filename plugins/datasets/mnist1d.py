"""MNIST-1D-style signals, generated offline from a seed.

After the idea of Greydanus & Kobak's MNIST-1D ("Scaling down deep learning with
MNIST-1D", 2020/2024), written independently here: each class has a short template
pattern (its "digit"); a sample is its class's template, padded, sheared by a linear
trend, stretched in time, shifted, with smooth (correlated) and white noise added,
then resampled to ``length`` points. The classes are separable by shape but not by
position, so a linear model does poorly while small MLPs/CNNs do well (with the
defaults and 4,000 training signals: logistic regression about 20% validation
accuracy, a 100-100 MLP about 70%) — a small task with structure, unlike blobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lossatlas.engine import DataBundle, DatasetPlugin, Split

from .digits import split_indices

__all__ = ["MNIST1D", "TEMPLATES", "MNIST1DOptions", "make_signals"]

#: Ten template patterns of 12 points, one per class (drawn for this module).
TEMPLATES: np.ndarray = (
    np.array(
        [
            [0, 2, 4, 5, 5, 4, 4, 5, 5, 4, 2, 0],  # 0: a wide bump with a dip
            [0, 0, 0, 6, 6, 6, 6, 6, 6, 0, 0, 0],  # 1: a plateau
            [0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 0],  # 2: a rising ramp, then drop
            [0, 0, 0, 0, 7, 6, 5, 4, 3, 2, 1, 0],  # 3: jump, then falling ramp
            [0, 5, 0, -5, 0, 5, 0, -5, 0, 5, 0, 0],  # 4: oscillation
            [6, 6, 6, 0, 0, 0, 0, 0, 0, 6, 6, 6],  # 5: two edges
            [0, -2, -4, -6, -4, -2, 0, 2, 4, 6, 4, 0],  # 6: trough then peak
            [0, 3, 6, 3, 0, -3, -6, -3, 0, 0, 0, 0],  # 7: peak then trough
            [0, 0, 7, 0, 0, 0, 0, 7, 0, 0, 0, 0],  # 8: two spikes
            [5, 4, 3, 2, 1, 0, 0, 1, 2, 3, 4, 5],  # 9: a valley
        ],
        dtype=np.float64,
    )
    / 3.0
)


def _smooth(noise: np.ndarray, width: float) -> np.ndarray:
    """Gaussian-filter each row (circular), for correlated noise."""
    n = noise.shape[-1]
    k = np.arange(n) - n // 2
    kernel = np.exp(-0.5 * (k / width) ** 2)
    kernel /= kernel.sum()
    spec = np.fft.rfft(noise, axis=-1) * np.fft.rfft(np.fft.ifftshift(kernel))
    return np.fft.irfft(spec, n=n, axis=-1)


def make_signals(
    n: int,
    seed: int,
    length: int = 40,
    padding: int = 18,
    max_shift: int = 12,
    stretch: float = 0.4,
    shear: float = 0.75,
    correlated_noise: float = 0.25,
    noise: float = 0.02,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` signals (n, length) float32 and their labels (n,) int64, from ``seed``.

    Per sample: template (12 points) centred in ``padding`` zeros on each side;
    a linear trend of slope ~ U(−shear, shear) added; time stretched by a factor
    1 + U(−stretch, stretch) about the centre; shifted by U{−max_shift … max_shift}
    points (circularly); resampled to ``length`` points; then smooth noise (std
    ``correlated_noise``, Gaussian filter of width 2 points) and white noise (std
    ``noise``). Labels are balanced (n/10 of each, shuffled).
    """
    rng = np.random.default_rng([seed, 0x1D])
    labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
    width = TEMPLATES.shape[1] + 2 * padding
    t = np.linspace(-1.0, 1.0, width)
    base = np.zeros((n, width))
    base[:, padding : padding + TEMPLATES.shape[1]] = TEMPLATES[labels]
    base += rng.uniform(-shear, shear, size=(n, 1)) * t[None, :]
    factor = 1.0 + rng.uniform(-stretch, stretch, size=(n, 1))
    shift = rng.integers(-max_shift, max_shift + 1, size=(n, 1))
    # Where each output point samples the padded signal: stretched, shifted, resampled.
    grid = np.linspace(-1.0, 1.0, length)[None, :] / factor
    pos = (grid + 1.0) / 2.0 * (width - 1) - shift
    pos = np.mod(pos, width - 1)
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    rows = np.arange(n)[:, None]
    x = base[rows, lo] * (1 - frac) + base[rows, np.minimum(lo + 1, width - 1)] * frac
    smooth = _smooth(rng.normal(size=(n, length)), 2.0)
    smooth /= smooth.std(axis=1, keepdims=True) + 1e-12
    x = x + correlated_noise * smooth + noise * rng.normal(size=(n, length))
    return x.astype(np.float32), labels


@dataclass
class MNIST1DOptions:
    n_samples: int = field(default=5000, metadata={"doc": "samples generated in all"})
    validation: float = field(default=0.2, metadata={"doc": "fraction held out for validation"})
    length: int = field(default=40, metadata={"doc": "points per signal"})
    max_shift: int = field(
        default=12, metadata={"doc": "largest random shift (points of the padded signal)"}
    )
    stretch: float = field(default=0.4, metadata={"doc": "time-stretch factors are 1 ± stretch"})
    shear: float = field(default=0.75, metadata={"doc": "largest slope of the random linear trend"})
    correlated_noise: float = field(default=0.25, metadata={"doc": "std of the smooth noise"})
    noise: float = field(default=0.02, metadata={"doc": "std of the white noise"})

    def validate(self) -> None:
        if self.n_samples < 10:
            raise ValueError(f"option 'n_samples' must be at least 10, got {self.n_samples}")
        if not 0 < self.validation < 1:
            raise ValueError(f"option 'validation' must be in (0, 1), got {self.validation}")
        if self.length < 4:
            raise ValueError(f"option 'length' must be at least 4, got {self.length}")
        for name in ("max_shift", "stretch", "shear", "correlated_noise", "noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"option '{name}' must be ≥ 0")
        if self.stretch >= 1:
            raise ValueError(f"option 'stretch' must be < 1, got {self.stretch}")


class MNIST1D(DatasetPlugin[MNIST1DOptions]):
    name = "mnist1d"
    summary = "MNIST-1D-style 1-D signals (10 classes, length 40), generated from the seed"
    Options = MNIST1DOptions

    def load(self, options: MNIST1DOptions, seed: int) -> DataBundle:
        X, y = make_signals(
            options.n_samples,
            seed,
            length=options.length,
            max_shift=options.max_shift,
            stretch=options.stretch,
            shear=options.shear,
            correlated_noise=options.correlated_noise,
            noise=options.noise,
        )
        tr, va = split_indices(len(X), options.validation, seed)
        X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
        return DataBundle(
            train=Split(X_t[tr], y_t[tr]),
            validation=Split(X_t[va], y_t[va]),
            task="classification",
            n_outputs=10,
            description=f"MNIST-1D-style signals, {len(X)} of length {options.length}",
            attrs={"source": "generated (lossatlas mnist1d)", "seed": seed, "split_seed": seed},
        )
