"""Extreme Hessian eigenpairs by implicitly restarted Lanczos (ARPACK's ``eigsh``).

:func:`extreme_eigenpairs` finds a few eigenpairs at one or both ends of the spectrum;
:func:`hessian_directions` finds the two *dominant Hessian directions* of Böttcher &
Wheeler (seed 001, Section IV and Appendix B): the largest-magnitude eigenvalue λ1,
then the largest-magnitude eigenvalue of the opposite sign by annihilation, i.e. by
running Lanczos on H − λ1·I.

Both work on an :data:`~lossatlas.engine.curvature.operator.HVP` and never form H.
Every result carries the number of HVPs it cost and the relative residuals
‖Hv − λv‖ / |λ| of the returned pairs, checked with one extra batched HVP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigsh

from ..errors import ConfigError
from .operator import HVP, HessianOperator, resolve_hvp_target

__all__ = [
    "EigenResult",
    "HessianDirections",
    "default_tol",
    "extreme_eigenpairs",
    "hessian_directions",
]

Which = Literal["LA", "SA", "LM", "both"]


def default_tol(dtype: torch.dtype) -> float:
    """ARPACK's relative tolerance by the HVP's precision: 1e-9 in float64 (eigenvalues
    then agree with a dense ``eigh`` to far better than 1e-6 relative), 1e-5 in float32
    and lower precisions (the HVP itself is only accurate to about 1e-6 there)."""
    return 1e-9 if dtype == torch.float64 else 1e-5


@dataclass
class EigenResult:
    """Eigenpairs of H from HVPs.

    ``eigenvalues`` (k,) ascending, ``eigenvectors`` (k, D) unit rows in the HVP's dtype
    (row i belongs to eigenvalue i), λ_i = v_iᵀHv_i the Rayleigh quotients;
    ``residuals[i] = ‖Hv_i − λ_i v_i‖ / |λ_i|`` and
    ``residual_norms`` the same without the division; ``n_hvp`` counts every HVP made
    including the residual check; ``converged`` is False when ARPACK stopped at
    ``maxiter`` (the pairs are then the best Ritz pairs it had).
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
    method: str = "eigsh"


@dataclass
class HessianDirections:
    """The two dominant Hessian directions (seed 001, Section IV, Appendix B).

    ``eigenvalues`` = (λ_max, λ_min) and ``eigenvectors`` (2, D) in that order: row 0 the
    most positive curvature direction, row 1 the most negative one. ``dominant`` is the
    index (0 or 1) of the largest-magnitude eigenvalue λ1, found first; the other was
    found by annihilation (Lanczos on H − λ1·I). ``opposite_sign_found`` is False when H
    has no eigenvalue of the sign opposite to λ1 (H semidefinite): the second pair is
    then the eigenvalue at the other end of the spectrum, of the same sign (or zero).
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

    @property
    def is_saddle(self) -> bool:
        """True when H has curvature of both signs (the point is not a minimum/maximum)."""
        return bool(self.eigenvalues[0] > 0 > self.eigenvalues[1])


def _start_vector(
    D: int, v0: np.ndarray | torch.Tensor | None, seed: int, generator: torch.Generator | None
) -> np.ndarray:
    if v0 is not None:
        start = torch.as_tensor(v0).detach().to("cpu", torch.float64).reshape(-1).numpy()
        if start.shape != (D,):
            raise ConfigError(f"eigensolver: v0 has {start.size} entries but D={D}")
        return start
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    return torch.randn(D, generator=g, dtype=torch.float64).numpy()


def _residuals(
    op: HessianOperator, vectors: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rayleigh quotients of the *unshifted* H, and ‖Hv − λv‖ (absolute, relative)."""
    HV = op.hvp(vectors)  # one batched call of k HVPs
    op.n_hvp += int(vectors.shape[0])
    HV64 = HV.detach().to(torch.float64)
    V64 = vectors.detach().to(torch.float64)
    lam = (HV64 * V64).sum(dim=1) / (V64 * V64).sum(dim=1)
    norms = torch.linalg.vector_norm(HV64 - lam[:, None] * V64, dim=1)
    norms = norms / torch.linalg.vector_norm(V64, dim=1)
    rel = norms / lam.abs().clamp_min(torch.finfo(torch.float64).tiny)
    return lam.cpu().numpy(), norms.cpu().numpy(), rel.cpu().numpy()


def _solve(
    op: HessianOperator,
    k: int,
    which: str,
    tol: float,
    maxiter: int | None,
    ncv: int | None,
    v0: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, bool]:
    D = op.shape[0]
    if k >= D - 1:
        # ARPACK needs k < D - 1; a problem this small is cheaper dense (D HVPs).
        eye = torch.eye(D, dtype=torch.float64)
        H = op._matmat(eye.numpy())
        H = 0.5 * (H + H.T)
        w, U = np.linalg.eigh(H)
        if which == "LA":
            idx = np.arange(D - k, D)
        elif which == "SA":
            idx = np.arange(k)
        elif which == "LM":
            idx = np.sort(np.argsort(np.abs(w))[D - k :])
        else:  # BE
            idx = np.unique(np.r_[np.arange(k // 2), np.arange(D - (k - k // 2), D)])
        return w[idx], U[:, idx], True
    try:
        w, U = eigsh(op, k=k, which=which, tol=tol, maxiter=maxiter, ncv=ncv, v0=v0)
        return w, U, True
    except ArpackNoConvergence as exc:
        if len(exc.eigenvalues) == 0:
            raise ConfigError(
                f"eigsh found no eigenpair of the Hessian to tol={tol:g} within "
                f"maxiter={maxiter} restarts ({op.n_hvp} HVPs); raise maxiter or tol"
            ) from None
        return exc.eigenvalues, exc.eigenvectors, False
    except ArpackError as exc:
        if "Starting vector is zero" in str(exc):
            raise ConfigError(
                "the Hessian is zero here (H·v = 0 for a random v): every eigenvalue is 0 and "
                "no direction dominates (all ReLU units dead? a diverged training?)"
            ) from None
        raise ConfigError(f"eigsh failed ({exc}); the Hessian may hold NaN/inf values") from None


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
) -> EigenResult:
    """k extreme eigenpairs of H (or of H − σI, reported as eigenpairs of H).

    Implicitly restarted Lanczos (Lehoucq & Sorensen 1996; ARPACK via
    ``scipy.sparse.linalg.eigsh``) on the :class:`HessianOperator` of ``hvp``:

    - ``which="LA"``: the k largest (algebraic) eigenvalues; ``"SA"``: the k smallest;
      ``"LM"``: the k of largest magnitude; ``"both"``: k/2 from each end (ARPACK "BE").
    - ``tol``: ARPACK's stopping rule ‖Hv − θv‖ ≤ tol·|θ| on every Ritz pair; default
      :func:`default_tol` (1e-9 in float64). Since an eigenvalue of H lies within the
      residual of every Ritz value, eigenvalues are right to ``tol`` relative, and in
      practice to about tol² (Rayleigh quotients).
    - ``v0``: start vector; default a Gaussian vector from ``generator`` (or ``seed``),
      so results are reproducible.
    - ``shift`` σ: iterate on H − σI; eigenvalues are returned as those of H.

    Cost: typically a few tens of HVPs per eigenpair at ``tol=1e-9`` (each restart
    costs ``ncv − k`` HVPs; ARPACK's default ``ncv = max(2k + 1, 20)``), plus k for the
    residual check, made in one batched call. For k ≥ D − 1 the D × D matrix is formed
    with D HVPs instead.
    """
    t0 = time.perf_counter()
    if not 1 <= k < D:
        raise ConfigError(f"extreme_eigenpairs: k={k} eigenpairs asked of a D={D} Hessian")
    if which not in ("LA", "SA", "LM", "both"):
        raise ConfigError(f"extreme_eigenpairs: which='{which}'; use LA, SA, LM or both")
    if which == "both" and k < 2:
        raise ConfigError("extreme_eigenpairs: which='both' needs k >= 2")
    torch_dtype, torch_device = resolve_hvp_target(hvp, dtype, device)
    tol = default_tol(torch_dtype) if tol is None else float(tol)
    op = HessianOperator(hvp, D, shift=shift, dtype=torch_dtype, device=torch_device)
    start = _start_vector(D, v0, seed, generator)
    arpack_which = "BE" if which == "both" else which
    mu, U, converged = _solve(op, k, arpack_which, tol, maxiter, ncv, start)
    order = np.argsort(mu)
    mu, U = mu[order], U[:, order]
    vectors = torch.from_numpy(np.ascontiguousarray(U.T)).to(torch_device, torch_dtype)
    # Report the Rayleigh quotients of H: as accurate as ARPACK's Ritz values of H − σI
    # and free of the cancellation in μ + σ.
    values, norms, rel = _residuals(op, vectors)
    order = np.argsort(values)
    values, norms, rel, vectors = values[order], norms[order], rel[order], vectors[order]
    return EigenResult(
        eigenvalues=values,
        eigenvectors=vectors,
        n_hvp=op.n_hvp,
        tol=tol,
        converged=converged,
        residuals=rel,
        residual_norms=norms,
        seconds=time.perf_counter() - t0,
        which=which,
        method="eigsh" if k < D - 1 else "dense",
    )


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
) -> HessianDirections:
    """The dominant Hessian directions: (λ_max, v_max) and (λ_min, v_min).

    Böttcher & Wheeler (seed 001), Algorithm 1 and Appendix B:

    1. λ1 = the largest-magnitude eigenvalue of H (``eigsh(which="LM", k=1)``).
    2. Annihilation: the largest-magnitude eigenvalue μ of H − λ1·I. Its spectrum is
       λ_i − λ1, all of the sign opposite to λ1, and the largest in magnitude belongs
       to the eigenvalue at the other end of the spectrum: λ = μ + λ1. If H has an
       eigenvalue of the opposite sign, λ is the largest-magnitude one of them (the
       paper's target); if not (H semidefinite), λ is the smallest-magnitude end and
       ``opposite_sign_found`` is False.

    The pairs are returned ordered (most positive, most negative). Eigenvalues are the
    Rayleigh quotients of the returned unit vectors with the unshifted H, so the shift
    does not cost accuracy.

    Cost: the HVPs of two ``eigsh`` runs plus 2 for the residual checks (all counted in
    ``n_hvp``). The second run converges at the rate set by the relative gap at the far
    end of the spectrum, as Lanczos with ``which="SA"``/``"LA"`` would (the Krylov
    space of H − λ1·I is that of H); far fewer HVPs than power iteration on the
    shifted matrix, whose rate is the ratio of the two largest |λ_i − λ1|.
    """
    t0 = time.perf_counter()
    torch_dtype, torch_device = resolve_hvp_target(hvp, dtype, device)
    tol = default_tol(torch_dtype) if tol is None else float(tol)
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    common = dict(tol=tol, maxiter=maxiter, ncv=ncv, dtype=torch_dtype, device=torch_device)
    first = extreme_eigenpairs(hvp, D, 1, "LM", generator=g, **common)
    lam1 = float(first.eigenvalues[0])
    second = extreme_eigenpairs(hvp, D, 1, "LM", shift=lam1, generator=g, **common)
    lam2 = float(second.eigenvalues[0])
    opposite = lam2 * lam1 < 0
    pairs = [(lam1, first, 0), (lam2, second, 0)]
    pairs.sort(key=lambda p: -p[0])  # most positive first
    dominant = 0 if pairs[0][1] is first else 1
    values = np.array([p[0] for p in pairs])
    vectors = torch.cat([p[1].eigenvectors for p in pairs])
    return HessianDirections(
        eigenvalues=values,
        eigenvectors=vectors,
        dominant=dominant,
        opposite_sign_found=bool(opposite),
        n_hvp=first.n_hvp + second.n_hvp,
        tol=tol,
        converged=first.converged and second.converged,
        residuals=np.concatenate([p[1].residuals for p in pairs]),
        residual_norms=np.concatenate([p[1].residual_norms for p in pairs]),
        seconds=time.perf_counter() - t0,
        steps=[first, second],
    )
