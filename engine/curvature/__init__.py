"""Curvature: eigenpairs, traces and spectral densities from Hessian-vector products.

Every routine takes an :data:`HVP` — a callable (k, D) -> (k, D) returning the rows
H·v — and never forms H, so it works for any model; :func:`hvp_operator` makes one from
an :class:`~lossatlas.engine.Objective`. The trace estimate of
:func:`curvature_trace` needs no HVP at all, only the loss at many points.

=============================  ===================================================
:func:`extreme_eigenpairs`     k eigenpairs at an end of the spectrum (Lanczos)
:func:`hessian_directions`     (λ_max, λ_min) pairs, Böttcher & Wheeler App. B
:func:`classify_extremes`      minimum / maximum / saddle / degenerate, with bounds
:func:`hutchinson_trace`       Hutchinson (1989)
:func:`hutchpp_trace`          Hutch++ (Meyer et al. 2020)
:func:`curvature_trace`        HVP-free, Böttcher & Wheeler eq. (23)
:func:`spectral_density`       stochastic Lanczos quadrature (Ubaru et al. 2017)
=============================  ===================================================
"""

from __future__ import annotations

from .classify import (
    SHAPES,
    Shape,
    classify_extremes,
    default_flat_tol,
    shape_codes,
    sign_counts,
)
from .curvature_based import LossAt, curvature_trace, directional_curvatures
from .hutchinson import hutchinson_trace
from .lanczos import (
    DEFAULT_MAX_HVP,
    DENSE_D,
    DENSE_LIMIT,
    EigenResult,
    HessianDirections,
    default_tol,
    extreme_eigenpairs,
    hessian_directions,
)
from .meyer2020hutchpp import hutchpp_trace
from .operator import HVP, ObjectiveHVP, hvp_operator
from .probes import TraceEstimate, random_probes
from .slq import SpectralDensity, lanczos_tridiagonal, spectral_density

__all__ = [
    "DEFAULT_MAX_HVP",
    "DENSE_D",
    "DENSE_LIMIT",
    "HVP",
    "SHAPES",
    "EigenResult",
    "HessianDirections",
    "HessianOperator",
    "LossAt",
    "ObjectiveHVP",
    "Shape",
    "SpectralDensity",
    "TraceEstimate",
    "classify_extremes",
    "curvature_trace",
    "default_flat_tol",
    "default_tol",
    "directional_curvatures",
    "extreme_eigenpairs",
    "hessian_directions",
    "hutchinson_trace",
    "hutchpp_trace",
    "hvp_operator",
    "lanczos_tridiagonal",
    "random_probes",
    "shape_codes",
    "sign_counts",
    "spectral_density",
]


def __getattr__(name: str) -> object:
    # Defined on first use: it subclasses SciPy's LinearOperator (scipy.sparse.linalg
    # is 0.4 s to import, and most runs never need it).
    if name == "HessianOperator":
        from .scipy_operator import HessianOperator

        return HessianOperator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
