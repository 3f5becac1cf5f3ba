"""Stochastic Lanczos quadrature against known spectra and dense Hessians, in float64."""

from __future__ import annotations

import numpy as np
import pytest
from curvature_cases import DEVICES, MatrixHVP, ModelCase, matrix_with_spectrum

from lossatlas.engine.curvature import hvp_operator, random_probes, spectral_density


@pytest.mark.parametrize("device", DEVICES)
def test_density_integrates_to_one_and_quadrature_moments_are_exact(device: str) -> None:
    D, n, m = 200, 12, 25
    lam = np.r_[np.linspace(-1.0, 1.0, 190), np.linspace(4.0, 6.0, 10)]
    A, _ = matrix_with_spectrum(lam, seed=1, device=device)
    sd = spectral_density(MatrixHVP(A), D, n_probes=n, n_steps=m, seed=4)
    assert np.trapezoid(sd.density, sd.grid) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(sd.weights.sum(axis=1), 1.0, rtol=1e-12)
    assert sd.n_hvp == n * m
    # Gauss quadrature with m nodes is exact for polynomials of degree <= 2m − 1:
    # Σ_j τ_j θ_j^p = vᵀA^p v for the unit probes v, p = 1, 2, 3.
    V = random_probes(n, D, "rademacher", seed=4, device=device)
    V = V / V.norm(dim=1, keepdim=True)
    AV = V
    for p in (1, 2, 3):
        AV = AV @ A
        exact = float((V * AV).sum(dim=1).mean())
        assert sd.moment(p) == pytest.approx(exact, rel=1e-9)
    # And in expectation the first moment is Tr(A)/D (Rademacher variance, Z = 5).
    A_np = A.cpu().numpy()
    sd1 = np.sqrt(2 * (np.sum(A_np**2) - np.sum(np.diag(A_np) ** 2))) / D
    assert abs(sd.moment(1) - lam.mean()) < 5 * sd1 / np.sqrt(n)


def test_full_lanczos_recovers_the_spectrum() -> None:
    lam = np.linspace(-2.0, 3.0, 30)
    A, Q = matrix_with_spectrum(lam, seed=2)
    sd = spectral_density(MatrixHVP(A), 30, n_probes=3, n_steps=30, seed=0)
    for probe in range(3):
        k = int(sd.steps[probe])
        assert k == 30
        np.testing.assert_allclose(np.sort(sd.nodes[probe, :k]), lam, atol=1e-9)
    # The weights are the squared overlaps of the probe with the eigenvectors.
    v = random_probes(1, 30, "rademacher", seed=0)[0]
    v = v / v.norm()
    order = np.argsort(sd.nodes[0])
    np.testing.assert_allclose(sd.weights[0, order], ((Q.T @ v) ** 2).numpy(), atol=1e-9)


def test_lanczos_stops_on_an_invariant_subspace() -> None:
    lam = np.r_[np.zeros(36), 1.0, 2.0, 3.0, 4.0]  # only 5 distinct eigenvalues
    A, _ = matrix_with_spectrum(lam, seed=3)
    sd = spectral_density(MatrixHVP(A), 40, n_probes=2, n_steps=20)
    assert np.all(sd.steps == 5)
    np.testing.assert_allclose(np.sort(sd.nodes[0, :5]), [0, 1, 2, 3, 4], atol=1e-9)
    assert np.all(np.isnan(sd.nodes[:, 5:])) and np.all(sd.weights[:, 5:] == 0)


def test_density_on_models_matches_the_dense_hessian(model_case: ModelCase) -> None:
    hvp = hvp_operator(model_case.objective, model_case.x)
    D, w = model_case.D, model_case.evals
    n = 8
    sd = spectral_density(hvp, D, n_probes=n, n_steps=60, seed=1)
    assert np.trapezoid(sd.density, sd.grid) == pytest.approx(1.0, abs=1e-6)
    # The extreme Ritz values converge to the extreme eigenvalues.
    assert np.nanmax(sd.nodes) == pytest.approx(w[-1], rel=1e-6)
    assert np.nanmin(sd.nodes) == pytest.approx(w[0], rel=1e-6)
    H = model_case.H.numpy()
    sd1 = np.sqrt(2 * (np.sum(H * H) - np.sum(np.diag(H) ** 2))) / D
    assert abs(sd.moment(1) - w.mean()) < 5 * sd1 / np.sqrt(n)
    assert sd.trace() == pytest.approx(D * sd.moment(1))
    assert hvp.n_hvp == sd.n_hvp == n * 60
