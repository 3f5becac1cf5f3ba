"""Extreme Hessian eigenpairs from HVPs: thick-restart Lanczos that always answers.

:func:`extreme_eigenpairs` finds a few eigenpairs at one or both ends of the spectrum;
:func:`hessian_directions` finds the two *dominant Hessian directions* of Böttcher &
Wheeler (seed 001, Section IV and Appendix B): the largest-magnitude eigenvalue λ1,
then the largest-magnitude eigenvalue of the opposite sign by annihilation, i.e. on
H − λ1·I. Both work on an :data:`~lossatlas.engine.curvature.operator.HVP` and never
form H unless that is the cheaper way.

**The solver.** Lanczos with full reorthogonalisation and thick restarts (Wu & Simon
2000; mathematically the implicit restart of ARPACK, Lehoucq & Sorensen 1996): a basis
of ``ncv`` vectors, the Rayleigh–Ritz projection T = VᵀHV, and at each restart the
``p = k + (ncv − k)/2`` Ritz vectors nearest the wanted end are kept. It stops when

    ‖H y − θ y‖ ≤ tol · ‖H‖     for each wanted Ritz pair (θ, y),

with ‖H‖ estimated by the largest |Ritz value| seen. The scale is the spectrum's, not
the Ritz value's own (ARPACK's ``tol·|θ|``): an eigenvalue near zero — the bottom of a
PSD Hessian with a null space — is then found to the accuracy the arithmetic allows
instead of never. **Near-degenerate ends**: a cluster narrower than tol·‖H‖ is one
answer — the Ritz vector lies in the cluster's span and its Ritz value is within the
error bound of an eigenvalue of the cluster; the kept Ritz vectors carry the cluster
across restarts, and an exhausted Krylov space (an invariant subspace, e.g. a
low-rank Hessian) is continued from a fresh random vector orthogonal to the basis.

**Bounded.** The number of HVPs is capped (``max_hvp``; default D where the dense
matrix is affordable, :data:`DEFAULT_MAX_HVP` beyond), and so are the restarts
(``maxiter``). A run that meets its cap returns the best Ritz pairs it has with
``converged = False``, their residuals and error bounds — never an exception. With
``method = "auto"`` a small problem (D ≤ :data:`DENSE_D`) is solved densely from the
start, and a Lanczos run that would pass D HVPs switches to the dense solve (D batched
HVPs and ``eigh``) while D ≤ :data:`DENSE_LIMIT`.

**Honest accuracy.** The returned eigenvalues are the Rayleigh quotients of the
returned vectors and their ``error_bounds`` the residual norms ‖Hv − λv‖, both
computed in float64 — with a float64 HVP when the HVP offers one (an
:class:`~lossatlas.engine.curvature.operator.ObjectiveHVP` of a float32 objective does:
a float64 copy of the model at the same point). For a symmetric H an eigenvalue lies
within ‖Hv − λv‖ of λ, so the bound covers the true error of a float32 run, up to
float64 rounding (the residual of the float32 HVP itself would not:
docs/curvature.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from ..errors import ConfigError, ShapeError
from ..progress import task as progress_task
from .classify import Shape, classify_extremes, default_flat_tol
from .operator import HVP, resolve_hvp_target

__all__ = [
    "DEFAULT_MAX_HVP",
    "DENSE_D",
    "DENSE_LIMIT",
    "EigenResult",
    "HessianDirections",
    "default_tol",
    "extreme_eigenpairs",
    "hessian_directions",
]

Which = Literal["LA", "SA", "LM", "both"]
Method = Literal["auto", "lanczos", "dense"]

#: D up to which ``method="auto"`` forms the dense Hessian from the start.
DENSE_D = 512
#: D up to which the dense Hessian is affordable (D² float64: 128 MiB at 4096).
DENSE_LIMIT = 4096
#: HVP cap of a Lanczos run where the dense matrix is not affordable.
DEFAULT_MAX_HVP = 5000


def default_tol(dtype: torch.dtype) -> float:
    """Relative tolerance by the HVP's precision: 1e-9 in float64, 1e-5 in float32 and
    lower precisions (the HVP itself is only accurate to about 1e-6 there). A pair has
    converged when ‖Hv − θv‖ ≤ tol · ‖H‖."""
    return 1e-9 if dtype == torch.float64 else 1e-5


@dataclass
class EigenResult:
    """Eigenpairs of H from HVPs.

    - ``eigenvalues`` (k,) ascending: float64 Rayleigh quotients λ_i = v_iᵀHv_i of the
      returned vectors (re-checked in float64, see the module docstring);
    - ``eigenvectors`` (k, D): unit rows in the HVP's dtype, row i belongs to λ_i;
    - ``error_bounds`` (k,): ‖Hv_i − λ_i v_i‖ in float64 — an eigenvalue of H lies
      within it of λ_i (``residual_norms`` is the same array, by its old name);
    - ``residuals`` (k,): ``error_bounds / scale``, relative to the spectrum's scale;
    - ``scale``: the estimate of ‖H‖ (largest |Ritz value|) the tolerance refers to;
    - ``converged``: every wanted pair met ‖Hv − θv‖ ≤ tol·scale within the caps
      (False: the best Ritz pairs at the cap — use them with their bounds);
    - ``n_hvp``: every HVP made, the re-check included (``n_hvp_check``);
    - ``method``: ``lanczos``, ``dense`` or ``lanczos+dense`` (Lanczos stopped at D
      HVPs, then the dense solve); ``restarts``; ``residual_check``: the precision of
      the HVP that made the bounds (``float64`` or the HVP's own).
    """

    eigenvalues: np.ndarray
    eigenvectors: torch.Tensor
    n_hvp: int
    tol: float
    converged: bool
    residuals: np.ndarray
    residual_norms: np.ndarray
    seconds: float
    which: str = "LA"
    method: str = "lanczos"
    error_bounds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: float = 0.0
    restarts: int = 0
    n_hvp_check: int = 0
    residual_check: str = "float64"


@dataclass
class HessianDirections:
    """The two dominant Hessian directions (seed 001, Section IV, Appendix B).

    ``eigenvalues`` = (λ_max, λ_min) and ``eigenvectors`` (2, D) in that order: row 0 the
    most positive curvature direction, row 1 the most negative one. ``dominant`` is the
    index (0 or 1) of the largest-magnitude eigenvalue λ1, found first; the other was
    found by annihilation (H − λ1·I). ``error_bounds`` bound each eigenvalue's error
    (float64 residual norms). ``shape`` classifies the point
    (:mod:`~lossatlas.engine.curvature.classify`: ``saddle`` only when λ_min is below
    −(its bound + flat_tol·scale) and λ_max above +(…); ``degenerate`` when an end is
    within its threshold of zero). ``opposite_sign_found`` is True when the second
    eigenvalue has the sign opposite to λ1 beyond its threshold.
    """

    eigenvalues: np.ndarray
    eigenvectors: torch.Tensor
    dominant: int
    opposite_sign_found: bool
    n_hvp: int
    tol: float
    converged: bool
    residuals: np.ndarray
    residual_norms: np.ndarray
    seconds: float
    steps: list[EigenResult] = field(default_factory=list, repr=False)
    error_bounds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    flat_tol: float = 0.0
    shape: Shape = "degenerate"
    method: str = "lanczos"

    @property
    def is_saddle(self) -> bool:
        """True only when H has curvature of both signs beyond the error bounds."""
        return self.shape == "saddle"

    @property
    def is_zero(self) -> bool:
        """H·v = 0 for every vector tried: no direction dominates (dead units?)."""
        return bool(np.all(self.eigenvalues == 0) and np.all(self.error_bounds == 0))

    def attrs(self) -> dict[str, Any]:
        """Plain facts for a result's attrs: cost, tolerances, bounds and the shape."""
        return {
            "n_hvp": int(self.n_hvp),
            "tol": float(self.tol),
            "converged": int(self.converged),
            "method": self.method,
            "error_bounds": [float(v) for v in self.error_bounds],
            "residuals": [float(v) for v in self.residuals],
            "residual_check": self.steps[0].residual_check if self.steps else "",
            "dominant": ["max", "min"][self.dominant],
            "opposite_sign_found": int(self.opposite_sign_found),
            "shape": self.shape,
            "flat_tol": float(self.flat_tol),
            "seconds": round(float(self.seconds), 3),
        }


# ------------------------------------------------------------------------ the solver


class _Problem:
    """An HVP in float64 terms, counting products, with the dense Hessian cached."""

    def __init__(self, hvp: HVP, D: int, dtype: torch.dtype, device: torch.device) -> None:
        self.hvp = hvp
        self.D = D
        self.dtype = dtype
        self.device = device
        self.n_hvp = 0
        self._dense: tuple[np.ndarray, np.ndarray] | None = None

    def apply(self, V: torch.Tensor) -> torch.Tensor:
        """H·v for the rows of V (float64 in, float64 out, on the HVP's device)."""
        self.n_hvp += int(V.shape[0])
        out = self.hvp(V.to(self.device, self.dtype))
        if tuple(out.shape) != tuple(V.shape):
            raise ShapeError(
                f"the HVP returned shape {tuple(out.shape)} for vectors of shape "
                f"{tuple(V.shape)}; it must return the rows H·v, (k, D={self.D})"
            )
        return out.detach().to(self.device, torch.float64)

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """(eigenvalues ascending, eigenvectors as columns) of the dense H: D HVPs in
        blocks, symmetrised, ``eigh`` in float64. Made once."""
        if self._dense is None:
            D = self.D
            block = max(1, min(D, 256))
            H = np.empty((D, D))
            bar = progress_task("dense Hessian", D, "HVP")
            for i in range(0, D, block):
                eye = torch.zeros(min(block, D - i), D, dtype=torch.float64, device=self.device)
                eye[torch.arange(eye.shape[0]), torch.arange(i, i + eye.shape[0])] = 1.0
                H[i : i + eye.shape[0]] = self.apply(eye).cpu().numpy()
                bar.update(i + eye.shape[0])
            bar.close()
            if not np.all(np.isfinite(H)):
                raise ConfigError("the Hessian holds NaN/inf values here (a diverged point?)")
            H = 0.5 * (H + H.T)
            self._dense = np.linalg.eigh(H)
        return self._dense


def _select(theta: np.ndarray, count: int, which: str) -> np.ndarray:
    """Indices of the ``count`` Ritz values nearest the wanted end, ascending order."""
    count = min(count, theta.size)
    order = np.argsort(theta, kind="stable")
    if which == "LA":
        idx = order[theta.size - count :]
    elif which == "SA":
        idx = order[:count]
    elif which == "LM":
        idx = np.argsort(np.abs(theta), kind="stable")[theta.size - count :]
    else:  # BE: both ends
        lo = count // 2
        idx = np.unique(np.r_[order[:lo], order[theta.size - (count - lo) :]])
    return np.sort(idx)


def _lanczos(
    prob: _Problem,
    k: int,
    which: str,
    tol: float,
    ncv: int,
    max_restarts: int,
    max_hvp: int,
    v0: torch.Tensor,
    shift: float,
    generator: torch.Generator,
) -> tuple[np.ndarray, torch.Tensor, np.ndarray, bool, int, float]:
    """Thick-restart Lanczos on H − shift·I (see the module docstring).

    Returns (Ritz values of H − shift·I (k,), Ritz vectors (k, D) float64, residual
    estimates (k,), converged, restarts, scale of H)."""
    D, dev = prob.D, prob.device
    m = max(min(ncv, D), k + 1) if D > k else D
    V = torch.zeros(m + 1, D, dtype=torch.float64, device=dev)
    T = np.zeros((m, m))
    V[0] = v0 / v0.norm()
    kept = 0
    restarts = 0
    scale = abs(shift)
    start_hvp = prob.n_hvp
    exhausted = False  # the whole space is spanned (j + 1 == D)
    bar = progress_task("Lanczos", max_hvp, "HVP", bound=True)
    while True:
        size = kept
        beta = 0.0
        for j in range(kept, m):
            w = prob.apply(V[j : j + 1])[0]
            bar.update(prob.n_hvp - start_hvp, restarts=restarts)
            if shift:
                w = w - shift * V[j]
            h = V[: j + 1] @ w
            w = w - V[: j + 1].T @ h
            h2 = V[: j + 1] @ w  # full reorthogonalisation, twice (DGKS)
            w = w - V[: j + 1].T @ h2
            hc = (h + h2).cpu().numpy()
            T[: j + 1, j] = hc
            T[j, : j + 1] = hc
            beta = float(w.norm())
            scale = max(scale, abs(float(hc[j]) + shift), beta)
            size = j + 1
            if not math.isfinite(beta) or not np.all(np.isfinite(hc)):
                raise ConfigError("the Hessian holds NaN/inf values here (a diverged point?)")
            if beta <= 1e-12 * max(scale, 1e-300):
                # An invariant subspace: its Ritz values are exact. Continue from a fresh
                # random vector orthogonal to the basis (coupling 0).
                beta = 0.0
                if j + 1 >= D:
                    exhausted = True
                    break
                r = torch.randn(D, generator=generator, dtype=torch.float64).to(dev)
                for _ in range(2):
                    r = r - V[: j + 1].T @ (V[: j + 1] @ r)
                V[j + 1] = r / r.norm()
            else:
                V[j + 1] = w / beta
            if j + 1 < m:
                T[j + 1, j] = T[j, j + 1] = beta
            if prob.n_hvp - start_hvp >= max_hvp:
                break
        theta, S = np.linalg.eigh(T[:size, :size])
        res = np.abs(beta * S[size - 1, :])
        scale = max(scale, float(np.max(np.abs(theta + shift))) if theta.size else 0.0)
        wanted = _select(theta, k, which)
        done = bool(np.all(res[wanted] <= tol * scale))
        out_of_budget = prob.n_hvp - start_hvp >= max_hvp or restarts >= max_restarts
        bar.update(residual=f"{float(np.max(res[wanted])) / (tol * scale or 1.0):.2g}× tol")
        if done or out_of_budget or exhausted or size >= D:
            bar.close()
            Y = torch.as_tensor(S[:, wanted].T, device=dev) @ V[:size]
            converged = done or exhausted or size >= D
            return theta[wanted], Y, res[wanted], converged, restarts, scale
        p = min(size - 1, k + max(1, (size - k) // 2))
        keep = _select(theta, p, which)
        Y = torch.as_tensor(S[:, keep].T, device=dev) @ V[:size]
        V[:p] = Y
        V[p] = V[size]
        T[:] = 0.0
        T[np.arange(p), np.arange(p)] = theta[keep]
        kept = p
        restarts += 1


def _check(
    hvp: HVP, vectors: torch.Tensor, problem: _Problem
) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(Rayleigh quotients, residual norms ‖Hv − λv‖, HVPs made, precision) of unit
    ``vectors``, in float64: with the HVP's float64 twin where it offers one."""
    twin = None
    if problem.dtype != torch.float64:
        make = getattr(hvp, "float64", None)
        if callable(make):
            try:
                twin = make()
            except (RuntimeError, TypeError, NotImplementedError):  # e.g. MPS: no float64
                twin = None
    V64 = vectors.detach().to(torch.float64)
    V64 = V64 / torch.linalg.vector_norm(V64, dim=1, keepdim=True)
    if twin is not None:
        HV = twin(V64.to(getattr(twin, "device", V64.device))).detach()
        precision = "float64"
    else:
        HV = hvp(V64.to(problem.device, problem.dtype)).detach()
        precision = "float64" if problem.dtype == torch.float64 else str(problem.dtype)
    HV = HV.to(V64.device, torch.float64)
    lam = (HV * V64).sum(dim=1)
    norms = torch.linalg.vector_norm(HV - lam[:, None] * V64, dim=1)
    return lam.cpu().numpy(), norms.cpu().numpy(), int(V64.shape[0]), precision


def _start_vector(
    D: int, v0: np.ndarray | torch.Tensor | None, generator: torch.Generator
) -> torch.Tensor:
    if v0 is not None:
        start = torch.as_tensor(v0).detach().to("cpu", torch.float64).reshape(-1)
        if start.shape != (D,):
            raise ConfigError(f"eigensolver: v0 has {start.numel()} entries but D={D}")
        if not bool(start.norm() > 0):
            raise ConfigError("eigensolver: v0 is the zero vector")
        return start
    return torch.randn(D, generator=generator, dtype=torch.float64)


@dataclass
class _Caps:
    """A solve's tolerance and caps (the public functions' keywords), and its random
    stream (start vectors, fresh vectors after an invariant subspace)."""

    tol: float
    maxiter: int | None
    ncv: int | None
    max_hvp: int | None
    generator: torch.Generator


def _solve(
    prob: _Problem, k: int, which: str, method: str, v0: torch.Tensor, shift: float, caps: _Caps
) -> tuple[np.ndarray, torch.Tensor, bool, str, int, float]:
    """(values of H − shift·I (k,), vectors (k, D) float64, converged, method, restarts,
    scale): dense, Lanczos, or Lanczos then dense, as the module docstring says."""
    D = prob.D
    tol, maxiter, ncv, max_hvp = caps.tol, caps.maxiter, caps.ncv, caps.max_hvp

    def dense() -> tuple[np.ndarray, torch.Tensor, float]:
        w, U = prob.dense()
        idx = _select(w - shift, k, which)
        vec = torch.as_tensor(U[:, idx].T.copy(), device=prob.device)
        return w[idx] - shift, vec, float(np.max(np.abs(w))) if w.size else 0.0

    if method == "dense" or (method == "auto" and (D <= DENSE_D or k >= D - 1)):
        if D > 50_000:
            raise ConfigError(
                f"eigensolver: a dense Hessian of D={D:,} does not fit in memory; "
                "use method = 'lanczos'"
            )
        vals, vec, scale = dense()
        return vals, vec, True, "dense", 0, scale
    m = ncv or max(2 * k + 1, 20)
    affordable = D <= DENSE_LIMIT
    budget = max_hvp if max_hvp is not None else (D if affordable else DEFAULT_MAX_HVP)
    restarts_cap = maxiter if maxiter is not None else max(1, budget)
    vals, vec, _res, conv, restarts, scale = _lanczos(
        prob, k, which, tol, m, restarts_cap, budget, v0.to(prob.device), shift, caps.generator
    )
    if not conv and method == "auto" and affordable and max_hvp is None and maxiter is None:
        vals, vec, scale = dense()
        return vals, vec, True, "lanczos+dense", restarts, scale
    return vals, vec, conv, "lanczos", restarts, scale


def _validate(D: int, k: int, which: str) -> None:
    if not 1 <= k < D:
        raise ConfigError(f"extreme_eigenpairs: k={k} eigenpairs asked of a D={D} Hessian")
    if which not in ("LA", "SA", "LM", "both"):
        raise ConfigError(f"extreme_eigenpairs: which='{which}'; use LA, SA, LM or both")
    if which == "both" and k < 2:
        raise ConfigError("extreme_eigenpairs: which='both' needs k >= 2")


def _eigen(
    hvp: HVP,
    prob: _Problem,
    k: int,
    which: str,
    method: str,
    v0: torch.Tensor,
    shift: float,
    caps: _Caps,
    t0: float,
) -> EigenResult:
    """One solve as an :class:`EigenResult`, re-checked in float64."""
    before = prob.n_hvp
    arpack_which = "BE" if which == "both" else which
    _vals, vec, converged, used, restarts, scale = _solve(
        prob, k, arpack_which, method, v0, shift, caps
    )
    values, norms, n_check, precision = _check(hvp, vec, prob)
    order = np.argsort(values, kind="stable")
    vectors = vec[torch.as_tensor(order, device=vec.device)].to(prob.device, prob.dtype)
    values, norms = values[order], norms[order]
    scale = max(scale, float(np.max(np.abs(values))) if values.size else 0.0)
    return EigenResult(
        eigenvalues=values,
        eigenvectors=vectors,
        n_hvp=prob.n_hvp - before + n_check,
        tol=caps.tol,
        converged=bool(converged),
        residuals=norms / scale if scale > 0 else np.zeros_like(norms),
        residual_norms=norms,
        seconds=time.perf_counter() - t0,
        which=which,
        method=used,
        error_bounds=norms,
        scale=scale,
        restarts=restarts,
        n_hvp_check=n_check,
        residual_check=precision,
    )


def extreme_eigenpairs(
    hvp: HVP,
    D: int,
    k: int = 1,
    which: Which = "LA",
    *,
    tol: float | None = None,
    maxiter: int | None = None,
    ncv: int | None = None,
    v0: np.ndarray | torch.Tensor | None = None,
    seed: int = 0,
    generator: torch.Generator | None = None,
    shift: float = 0.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    max_hvp: int | None = None,
    method: Method = "auto",
) -> EigenResult:
    """k extreme eigenpairs of H (or of H − σI, reported as eigenpairs of H).

    - ``which="LA"``: the k largest (algebraic) eigenvalues; ``"SA"``: the k smallest;
      ``"LM"``: the k of largest magnitude; ``"both"``: k/2 from each end.
    - ``tol``: a Ritz pair has converged when ‖Hv − θv‖ ≤ tol·‖H‖; default
      :func:`default_tol` (1e-9 in float64, 1e-5 in float32).
    - ``maxiter`` (restarts) and ``max_hvp`` (HVPs) cap the Lanczos run; defaults: D
      HVPs where the dense Hessian is affordable (then the dense solve), else
      :data:`DEFAULT_MAX_HVP`. At a cap the best Ritz pairs come back with
      ``converged=False``.
    - ``method``: ``auto`` (dense for D ≤ :data:`DENSE_D`, Lanczos otherwise, dense
      after D HVPs), ``lanczos`` or ``dense``.
    - ``v0``: start vector; default a Gaussian vector from ``generator`` (or ``seed``),
      so results are reproducible. ``shift`` σ: iterate on H − σI.

    Cost: typically a few tens of HVPs per eigenpair (each restart costs about
    ``ncv − p`` HVPs, ``ncv = max(2k + 1, 20)``), plus k for the float64 re-check;
    the dense solve costs D HVPs, batched. See the module docstring for the guarantees.
    """
    t0 = time.perf_counter()
    _validate(D, k, which)
    if method not in ("auto", "lanczos", "dense"):
        raise ConfigError(f"extreme_eigenpairs: method='{method}'; use auto, lanczos or dense")
    torch_dtype, torch_device = resolve_hvp_target(hvp, dtype, device)
    tol = default_tol(torch_dtype) if tol is None else float(tol)
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    prob = _Problem(hvp, D, torch_dtype, torch_device)
    caps = _Caps(tol, maxiter, ncv, max_hvp, g)
    return _eigen(hvp, prob, k, which, method, _start_vector(D, v0, g), float(shift), caps, t0)


def hessian_directions(
    hvp: HVP,
    D: int,
    *,
    tol: float | None = None,
    maxiter: int | None = None,
    ncv: int | None = None,
    seed: int = 0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    max_hvp: int | None = None,
    method: Method = "auto",
    flat_tol: float | None = None,
) -> HessianDirections:
    """The dominant Hessian directions: (λ_max, v_max) and (λ_min, v_min).

    Böttcher & Wheeler (seed 001), Algorithm 1 and Appendix B:

    1. λ1 = the largest-magnitude eigenvalue of H.
    2. Annihilation: the largest-magnitude eigenvalue μ of H − λ1·I. Its spectrum is
       λ_i − λ1, all of the sign opposite to λ1, and the largest in magnitude belongs
       to the eigenvalue at the other end of the spectrum: λ = μ + λ1. If H has an
       eigenvalue of the opposite sign, λ is the largest-magnitude one of them (the
       paper's target); if not (H semidefinite), λ is the smallest-magnitude end.

    The pairs are returned ordered (most positive, most negative), as float64 Rayleigh
    quotients with float64 error bounds, and the point is classified (``shape``) with
    ``flat_tol`` (default :func:`~lossatlas.engine.curvature.default_flat_tol`). Where
    the dense Hessian is formed (small D, or a Lanczos run that would pass D HVPs)
    both ends come from the one matrix.

    Cost: the HVPs of two Lanczos runs (each capped, see :func:`extreme_eigenpairs`)
    plus 2 for the float64 re-check, or D for the dense matrix; all in ``n_hvp``.
    """
    t0 = time.perf_counter()
    if D < 2:
        raise ConfigError(f"hessian_directions: D={D}; two directions need D ≥ 2")
    torch_dtype, torch_device = resolve_hvp_target(hvp, dtype, device)
    tol = default_tol(torch_dtype) if tol is None else float(tol)
    flat_tol = default_flat_tol(torch_dtype) if flat_tol is None else float(flat_tol)
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    prob = _Problem(hvp, D, torch_dtype, torch_device)
    caps = _Caps(tol, maxiter, ncv, max_hvp, g)
    first = _eigen(hvp, prob, 1, "LM", method, _start_vector(D, None, g), 0.0, caps, t0)
    lam1 = float(first.eigenvalues[0])
    # Once the dense matrix exists, the other end comes from it too.
    second_method = "dense" if prob._dense is not None else method
    second = _eigen(hvp, prob, 1, "LM", second_method, _start_vector(D, None, g), lam1, caps, t0)
    lam2 = float(second.eigenvalues[0])
    pairs = sorted([(lam1, first), (lam2, second)], key=lambda p: -p[0])
    dominant = 0 if pairs[0][1] is first else 1
    values = np.array([p[0] for p in pairs])
    bounds = np.concatenate([p[1].error_bounds for p in pairs])
    scale = max(first.scale, second.scale, float(np.max(np.abs(values))))
    shape = classify_extremes(values[0], values[1], flat_tol, bounds[0], bounds[1])
    threshold = float(second.error_bounds[0]) + flat_tol * scale
    opposite = (lam2 < -threshold) if lam1 > 0 else (lam2 > threshold)
    methods = {first.method, second.method}
    return HessianDirections(
        eigenvalues=values,
        eigenvectors=torch.cat([p[1].eigenvectors for p in pairs]),
        dominant=dominant,
        opposite_sign_found=bool(opposite),
        n_hvp=first.n_hvp + second.n_hvp,
        tol=tol,
        converged=first.converged and second.converged,
        residuals=bounds / scale if scale > 0 else np.zeros_like(bounds),
        residual_norms=bounds,
        seconds=time.perf_counter() - t0,
        steps=[first, second],
        error_bounds=bounds,
        flat_tol=flat_tol,
        shape=shape,
        method="+".join(sorted(methods)) if len(methods) > 1 else first.method,
    )
