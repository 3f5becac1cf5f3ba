"""Cases for the curvature tests: small float64 models with their dense Hessian,
synthetic symmetric matrices with a known spectrum, an exactly quadratic objective."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lossatlas.engine import DataBundle, Objective, Split
from lossatlas.engine.curvature import hvp_operator
from lossatlas.plugins.datasets.digits import Digits, DigitsOptions
from lossatlas.plugins.models.mlp import MLPModel, MLPOptions

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

MODEL_CASES = {
    "relu-mlp": dict(limit=200, hidden=[8], activation="relu", seed=0),
    "tanh-mlp": dict(limit=120, hidden=[6], activation="tanh", seed=1),
}


@dataclass
class ModelCase:
    objective: Objective
    x: torch.Tensor
    H: torch.Tensor  # dense Hessian, float64
    evals: np.ndarray  # ascending
    evecs: torch.Tensor  # columns

    @property
    def D(self) -> int:
        return self.objective.D


def build_model_case(limit: int, hidden: list[int], activation: str, seed: int) -> ModelCase:
    data = Digits().load(DigitsOptions(limit=limit), seed=seed)
    model = MLPModel().build(MLPOptions(hidden=hidden, activation=activation), data, seed)
    obj = Objective(model, data, dtype=torch.float64)
    x = obj.x0.clone()
    H = torch.func.hessian(obj.function())(x)
    H = 0.5 * (H + H.T)
    w, U = torch.linalg.eigh(H)
    return ModelCase(obj, x, H, w.numpy(), U)


class MatrixHVP:
    """The HVP of a quadratic ½xᵀAx: V ↦ V·A (A symmetric), with a counter."""

    def __init__(self, A: torch.Tensor) -> None:
        self.A = A
        self.D = A.shape[0]
        self.dtype = A.dtype
        self.device = A.device
        self.n_hvp = 0

    def __call__(self, V: torch.Tensor) -> torch.Tensor:
        self.n_hvp += V.shape[0]
        return V.to(self.device, self.dtype) @ self.A


def matrix_with_spectrum(
    eigenvalues: np.ndarray, seed: int = 0, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """A = Q diag(λ) Qᵀ for a random orthogonal Q; returns (A, Q)."""
    g = torch.Generator().manual_seed(seed)
    D = len(eigenvalues)
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64)
    A = (Q * lam) @ Q.T
    return (0.5 * (A + A.T)).to(device), Q.to(device)


def regression_objective(n: int = 64, d_in: int = 5, n_out: int = 2, seed: int = 0) -> Objective:
    """A linear model with mean squared error: the loss is exactly quadratic in x."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_in, generator=g)
    Y = torch.randn(n, n_out, generator=g)
    data = DataBundle(
        train=Split(X, Y), validation=Split(X[:8], Y[:8]), task="regression", n_outputs=n_out
    )
    model = MLPModel().build(MLPOptions(hidden=[]), data, seed)
    return Objective(model, data, dtype=torch.float64)


__all__ = [
    "DEVICES",
    "MODEL_CASES",
    "MatrixHVP",
    "ModelCase",
    "build_model_case",
    "hvp_operator",
    "matrix_with_spectrum",
    "regression_objective",
]
