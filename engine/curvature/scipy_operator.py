""":class:`HessianOperator`: an :data:`~lossatlas.engine.curvature.operator.HVP` as a
SciPy ``LinearOperator`` (in its own module so that importing the curvature layer does
not import ``scipy.sparse.linalg``, 0.4 s of every run's start-up)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator

from .operator import HVP, resolve_hvp_target

__all__ = ["HessianOperator"]


class HessianOperator(LinearOperator):
    """An :data:`HVP` as a SciPy ``LinearOperator`` for ``H − σI`` (float64 numpy).

    ``matvec`` and ``matmat`` convert to ``dtype``/``device``, call ``hvp`` once on the
    whole block (k columns: one batched call of k HVPs) and return float64. The operator
    is symmetric: ``rmatvec`` is ``matvec``. ``n_hvp`` counts the HVPs made through it.

    Parameters
    ----------
    hvp:
        Callable (k, D) -> (k, D), rows H·v.
    D:
        The dimension.
    shift:
        σ; the operator is H − σI (Appendix B of Böttcher & Wheeler: annihilation).
    dtype, device:
        What ``hvp`` takes; default: the callable's ``dtype``/``device`` attributes, or
        float64 on CPU.
    """

    def __init__(
        self,
        hvp: HVP,
        D: int,
        shift: float = 0.0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(dtype=np.float64, shape=(D, D))
        self.hvp = hvp
        self.D = D
        self.shift = float(shift)
        self.torch_dtype, self.torch_device = resolve_hvp_target(hvp, dtype, device)
        self.n_hvp = 0

    def apply(self, V: torch.Tensor) -> torch.Tensor:
        """(H − σI)·v for the rows of a (k, D) tensor, in the HVP's dtype."""
        V = V.to(self.torch_device, self.torch_dtype)
        self.n_hvp += int(V.shape[0])
        out = self.hvp(V)
        if self.shift != 0.0:
            out = out - self.shift * V
        return out

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64).reshape(self.D, -1)
        V = torch.from_numpy(np.ascontiguousarray(X.T))
        out = self.apply(V)
        return out.detach().to("cpu", torch.float64).numpy().T

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._matmat(np.asarray(x).reshape(self.D, 1)).reshape(-1)

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._matvec(x)

    def _adjoint(self) -> HessianOperator:
        return self
