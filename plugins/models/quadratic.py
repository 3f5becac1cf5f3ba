"""The synthetic quadratic saddles of Böttcher & Wheeler (seed 001, §III), analytically.

    L(x) = ½ Σ_i κ_i x_i²,   κ_i = +c for N − k coordinates, −c for the last k.

- eq. (26): k = N/2 — equal numbers of ±1 curvatures; Tr H = 0 (mean curvature zero):
  the expected random projection looks flat; ≈ 70% of single projections show the
  saddle (Fig. 2a).
- eq. (31): k < N/2 — more positive than negative curvatures; Tr H = (N − 2k)·c.
  §III.2 quotes Tr H = 600, i.e. N = 1000, k = 200 with c = 1 (our default); random
  projections then essentially never show the saddle. The paper's "≈ 0.5%" of Fig. 4 is
  what N = 50, k = 10 gives (the paper's values for that figure are garbled in our copy).

The critical point is x* = 0 and H = diag(κ) everywhere. This is an *analytic
objective*, not a model plugin: an indefinite quadratic cannot be written as a mean
squared error or a cross-entropy (both are bounded below), so the ``trace`` and
``projection-curvature`` probes take it through their ``landscape`` option and use its
exact loss and Hessian-vector product (cost: O(D) per point / per HVP).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from lossatlas.engine import ConfigError

__all__ = ["LANDSCAPES", "QuadraticSaddle", "make_landscape"]

#: Names accepted by the probes' ``landscape`` option besides ``model``.
LANDSCAPES = ("eq26", "eq31")


@dataclass
class QuadraticSaddle:
    """L(x) = ½ Σ κ_i x_i² with N − k curvatures +c and k curvatures −c.

    Behaves like an :data:`~lossatlas.engine.curvature.HVP` (``__call__`` on (k, D)
    blocks, attributes ``D``, ``dtype``, ``device``, counter ``n_hvp``) and gives the
    loss at many points with :meth:`loss_at`.
    """

    n_params: int = 1000
    n_negative: int = 500
    curvature: float = 1.0
    dtype: torch.dtype = torch.float64
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        if self.n_params < 2:
            raise ConfigError(f"quadratic landscape: n_params={self.n_params}; use ≥ 2")
        if not 0 <= self.n_negative <= self.n_params:
            raise ConfigError(
                f"quadratic landscape: n_negative={self.n_negative} must be in "
                f"[0, n_params={self.n_params}]"
            )
        self.D = self.n_params
        k = self.n_negative
        kappa = np.r_[np.full(self.D - k, self.curvature), np.full(k, -self.curvature)]
        self.kappa_np = kappa
        self.kappa = torch.as_tensor(kappa, dtype=self.dtype, device=self.device)
        self.x0 = torch.zeros(self.D, dtype=self.dtype, device=self.device)
        self.n_hvp = 0

    def __call__(self, V: torch.Tensor) -> torch.Tensor:
        V = V.reshape(-1, self.D).to(self.device, self.dtype)
        self.n_hvp += int(V.shape[0])
        return V * self.kappa

    def loss_at(self, points: torch.Tensor) -> np.ndarray:
        """L at each row of ``points`` (B, D), float64."""
        P = points.reshape(-1, self.D).to(self.device, torch.float64)
        return (0.5 * (P * P * self.kappa.double()).sum(dim=1)).cpu().numpy()

    @property
    def trace(self) -> float:
        return float(self.kappa_np.sum())

    @property
    def eigenvalues(self) -> np.ndarray:
        return np.sort(self.kappa_np)

    def describe(self) -> str:
        return (
            f"½Σκx², N={self.D}, {self.D - self.n_negative} curvatures +{self.curvature:g}, "
            f"{self.n_negative} curvatures −{self.curvature:g}"
        )


def make_landscape(
    name: Literal["eq26", "eq31"],
    n_params: int,
    n_negative: int,
    curvature: float = 1.0,
    device: torch.device | str = "cpu",
) -> QuadraticSaddle:
    """eq26: k = N/2 (``n_negative`` ignored); eq31: k = ``n_negative`` (must be < N/2)."""
    if name == "eq26":
        if n_params % 2:
            raise ConfigError(f"landscape 'eq26' needs an even n_params, got {n_params}")
        k = n_params // 2
    elif name == "eq31":
        k = n_negative
        if not 0 < k < n_params / 2:
            raise ConfigError(
                f"landscape 'eq31' needs 0 < n_negative < n_params/2 (more "
                f"positive than negative curvatures), got {k} of {n_params}"
            )
    else:
        raise ConfigError(f"landscape '{name}': use 'model', 'eq26' or 'eq31'")
    return QuadraticSaddle(n_params, k, curvature, torch.float64, torch.device(device))
