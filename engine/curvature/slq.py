"""Spectral density of H by stochastic Lanczos quadrature (SLQ)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..progress import task as progress_task
from .operator import HVP, resolve_hvp_target
from .probes import Distribution, random_probes

__all__ = ["SpectralDensity", "lanczos_tridiagonal", "spectral_density"]


@dataclass
class SpectralDensity:
    """The SLQ estimate of the eigenvalue density of H.

    ``nodes[l]`` and ``weights[l]`` (n_probes, n_steps) are the Gauss quadrature rule of
    probe l (Ritz values and squared first components of the Ritz vectors; weights of
    a probe sum to 1, NaN/0 padding where Lanczos stopped early). ``density`` is
    φ(t) = (1/n_probes) Σ_l Σ_j w_lj · N(t; θ_lj, σ²) on ``grid``, so ∫φ ≈ 1 and
    E_φ[t^p] ≈ Tr(H^p)/D. ``steps[l]`` is the number of Lanczos steps probe l took.
    """

    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    sigma: float
    steps: np.ndarray
    n_hvp: int
    seconds: float
    D: int = 0

    def moment(self, p: int) -> float:
        """Σ_l Σ_j w_lj θ_lj^p / n_probes: the quadrature estimate of Tr(H^p)/D (exact
        in expectation for p ≤ 2·n_steps − 1)."""
        nodes = np.nan_to_num(self.nodes)
        return float(np.mean(np.sum(self.weights * nodes**p, axis=1)))

    def trace(self) -> float:
        """D times the first moment: a Hutchinson estimate of Tr(H) with unit probes."""
        return self.D * self.moment(1)


def lanczos_tridiagonal(
    hvp: HVP, V0: torch.Tensor, n_steps: int, breakdown: float = 1e-10
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Lanczos with full reorthogonalisation for several start vectors at once.

    For each row q_1 of ``V0`` (normalised here), builds the tridiagonal
    T = Q_mᵀ H Q_m of the Krylov space K_m(H, q_1): α_j = q_jᵀHq_j,
    β_j q_{j+1} = Hq_j − α_j q_j − β_{j−1} q_{j−1}, with each new vector
    re-orthogonalised (twice, classical Gram–Schmidt) against all previous ones in
    float64. A probe stops when β_j < ``breakdown``·‖H‖ estimate (an invariant subspace:
    its rule is then exact).

    Returns (alpha (n, m), beta (n, m−1), steps (n,), n_hvp). Cost: m HVPs per probe,
    one batched call of n per step.
    """
    n, D = V0.shape
    m = min(n_steps, D)
    dtype, device = V0.dtype, V0.device
    Q = torch.zeros(n, m, D, dtype=torch.float64, device=device)
    q = V0.to(torch.float64)
    q = q / torch.linalg.vector_norm(q, dim=1, keepdim=True)
    alpha = torch.zeros(n, m, dtype=torch.float64, device=device)
    beta = torch.zeros(n, max(m - 1, 0), dtype=torch.float64, device=device)
    steps = torch.full((n,), m, dtype=torch.int64, device=device)
    active = torch.ones(n, dtype=torch.bool, device=device)
    scale = torch.zeros(n, dtype=torch.float64, device=device)
    n_hvp = 0
    bar = progress_task("SLQ Lanczos", m, "iteration")
    for j in range(m):
        Q[:, j] = q
        w = hvp(q.to(dtype)).to(torch.float64)
        n_hvp += n
        bar.update(j + 1, HVPs=n_hvp)
        alpha[:, j] = (w * q).sum(dim=1)
        for _ in range(2):  # full reorthogonalisation, twice is enough
            coef = torch.einsum("nkd,nd->nk", Q[:, : j + 1], w)
            w = w - torch.einsum("nk,nkd->nd", coef, Q[:, : j + 1])
        if j == m - 1:
            break
        b = torch.linalg.vector_norm(w, dim=1)
        scale = torch.maximum(scale, alpha[:, j].abs() + b)
        stop = active & (b <= breakdown * scale.clamp_min(1e-300))
        steps[stop] = j + 1
        active &= ~stop
        beta[:, j] = torch.where(active, b, torch.zeros_like(b))
        q = torch.where(active[:, None], w / b.clamp_min(1e-300)[:, None], torch.zeros_like(w))
        if not bool(active.any()):
            break
    bar.close()
    return alpha.cpu().numpy(), beta.cpu().numpy(), steps.cpu().numpy(), n_hvp


def spectral_density(
    hvp: HVP,
    D: int,
    n_probes: int = 10,
    n_steps: int = 80,
    grid: np.ndarray | int = 1000,
    sigma: float | None = None,
    *,
    distribution: Distribution = "rademacher",
    seed: int = 0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> SpectralDensity:
    """The eigenvalue density φ(t) = (1/D) Σ_i δ(t − λ_i) of H, smoothed, by SLQ.

    Stochastic Lanczos quadrature: Ubaru, Chen & Saad, "Fast estimation of tr(f(A)) via
    stochastic Lanczos quadrature" (SIMAX 2017); Ghorbani, Krishnan & Xiao, "An
    investigation into neural net optimization via Hessian eigenvalue density"
    (ICML 2019); PyHessian's ``density``. For each random unit probe v
    (``distribution``, normalised), m = ``n_steps`` Lanczos steps with full
    reorthogonalisation give T_m = U diag(θ) Uᵀ, and vᵀ f(H) v ≈ Σ_j τ_j f(θ_j) with
    τ_j = U_{1j}². Averaging over probes estimates Tr f(H)/D; f = the Gaussian kernel
    of width ``sigma`` gives the smoothed density.

    ``grid``: the evaluation points, or their number (then from the smallest to the
    largest node, padded by 5σ). ``sigma`` default: 1% of the spread of the nodes.

    Cost: n_probes × n_steps HVPs (one batched call of n_probes per step) and
    O(n_probes·n_steps²·D) for the reorthogonalisation; memory n_probes·n_steps·D
    floats.
    """
    t0 = time.perf_counter()
    if n_probes < 1 or n_steps < 1:
        raise ConfigError(
            f"spectral_density: n_probes={n_probes}, n_steps={n_steps}; both must be >= 1"
        )
    torch_dtype, torch_device = resolve_hvp_target(hvp, dtype, device)
    V0 = random_probes(
        n_probes,
        D,
        distribution,
        generator=generator,
        seed=seed,
        dtype=torch_dtype,
        device=torch_device,
    )
    alpha, beta, steps, n_hvp = lanczos_tridiagonal(hvp, V0, n_steps)
    m = alpha.shape[1]
    nodes = np.full((n_probes, m), np.nan)
    weights = np.zeros((n_probes, m))
    for l_ in range(n_probes):
        k = int(steps[l_])
        T = np.diag(alpha[l_, :k]) + np.diag(beta[l_, : k - 1], 1) + np.diag(beta[l_, : k - 1], -1)
        theta, U = np.linalg.eigh(T)
        nodes[l_, :k] = theta
        weights[l_, :k] = U[0] ** 2
    lo, hi = float(np.nanmin(nodes)), float(np.nanmax(nodes))
    if sigma is None:
        sigma = 0.01 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 1e-3
    if np.isscalar(grid):
        grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, int(grid))
    grid = np.asarray(grid, dtype=np.float64)
    density = np.zeros_like(grid)
    norm = 1.0 / (np.sqrt(2 * np.pi) * sigma)
    for l_ in range(n_probes):
        k = int(steps[l_])
        diff = grid[:, None] - nodes[l_, None, :k]
        density += np.exp(-0.5 * (diff / sigma) ** 2) @ weights[l_, :k] * norm
    density /= n_probes
    return SpectralDensity(
        nodes=nodes,
        weights=weights,
        grid=grid,
        density=density,
        sigma=float(sigma),
        steps=steps,
        n_hvp=n_hvp,
        seconds=time.perf_counter() - t0,
        D=D,
    )
