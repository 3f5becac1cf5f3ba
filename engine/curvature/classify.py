"""What curvature says about a point: minimum, maximum, saddle — or too flat to tell.

An eigenvalue is only known to within its error bound, and a Hessian with a null space
(always-zero input pixels, the softmax's shift invariance, a zero-residual fit) has
eigenvalues that are zero up to rounding, of either sign. So a sign is counted only
beyond a threshold

    t = bound + tol · scale,        scale = max |λ|

and within it an eigenvalue is *flat*. A point is a **saddle** only when its smallest
eigenvalue is below −t and its largest above +t; a **minimum** when the smallest is
above +t (a **maximum** when the largest is below −t); anything else is
**degenerate** (flat along some direction, within the accuracy: a minimum, a saddle
and a flat valley cannot be told apart there). The tolerance ``tol`` is relative to
the spectrum's scale: :func:`default_flat_tol` is 1e-9 in float64 and 1e-5 in float32,
as the eigensolvers' default tolerances.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

__all__ = [
    "SHAPES",
    "Shape",
    "classify_extremes",
    "default_flat_tol",
    "shape_codes",
    "sign_counts",
]

Shape = Literal["minimum", "maximum", "saddle", "degenerate"]
#: The shapes, in the order of their integer codes (as stored in result variables).
SHAPES: tuple[Shape, ...] = ("minimum", "maximum", "saddle", "degenerate")


def default_flat_tol(dtype: torch.dtype) -> float:
    """|λ| ≤ tol · max|λ| counts as zero: 1e-9 in float64, 1e-5 in float32."""
    return 1e-9 if dtype == torch.float64 else 1e-5


def shape_codes(
    lam_max: np.ndarray | float,
    lam_min: np.ndarray | float,
    tol: float,
    bound_max: np.ndarray | float = 0.0,
    bound_min: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Elementwise shape codes (indices into :data:`SHAPES`) of (λ_max, λ_min) pairs
    with error bounds; see the module docstring for the rule."""
    hi = np.asarray(lam_max, dtype=float)
    lo = np.asarray(lam_min, dtype=float)
    scale = np.maximum(np.abs(hi), np.abs(lo))
    t_hi = np.asarray(bound_max, dtype=float) + tol * scale
    t_lo = np.asarray(bound_min, dtype=float) + tol * scale
    codes = np.full(np.broadcast(hi, lo).shape, SHAPES.index("degenerate"), dtype=np.int8)
    codes = np.where(lo > t_lo, SHAPES.index("minimum"), codes)
    codes = np.where(hi < -t_hi, SHAPES.index("maximum"), codes)
    codes = np.where((hi > t_hi) & (lo < -t_lo), SHAPES.index("saddle"), codes)
    return codes.astype(np.int8)


def classify_extremes(
    lam_max: float,
    lam_min: float,
    tol: float,
    bound_max: float = 0.0,
    bound_min: float = 0.0,
) -> Shape:
    """The shape of a point from its extreme eigenvalues and their error bounds."""
    return SHAPES[int(shape_codes(lam_max, lam_min, tol, bound_max, bound_min))]


def sign_counts(
    eigenvalues: np.ndarray | torch.Tensor, tol: float, bound: float = 0.0
) -> tuple[int, int, int]:
    """(positive, negative, flat) counts of a spectrum: an eigenvalue is flat when
    |λ| ≤ bound + tol · max|λ|."""
    w = np.asarray(torch.as_tensor(eigenvalues).detach().cpu().double().numpy()).reshape(-1)
    if w.size == 0:
        return 0, 0, 0
    t = bound + tol * float(np.max(np.abs(w)))
    pos = int(np.sum(w > t))
    neg = int(np.sum(w < -t))
    return pos, neg, int(w.size - pos - neg)
