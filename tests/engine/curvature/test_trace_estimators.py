"""Trace estimators: exact cases to 1e-8, stochastic ones within tolerances derived
from their variance (5 standard deviations: a false failure rate below 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from curvature_cases import (
    DEVICES,
    MatrixHVP,
    ModelCase,
    matrix_with_spectrum,
    regression_objective,
)

from lossatlas.engine import ConfigError
from lossatlas.engine.curvature import (
    curvature_trace,
    directional_curvatures,
    hutchinson_trace,
    hutchpp_trace,
    hvp_operator,
    random_probes,
)

Z = 5.0  # standard deviations allowed to stochastic estimates


def _hutchinson_std(A: np.ndarray, distribution: str) -> float:
    """Standard deviation of one zᵀAz: √(2(‖A‖_F² − Σ A_ii²)) for Rademacher,
    √(2‖A‖_F²) for Gaussian probes."""
    fro2 = float(np.sum(A * A))
    if distribution == "rademacher":
        return float(np.sqrt(2 * (fro2 - np.sum(np.diag(A) ** 2))))
    return float(np.sqrt(2 * fro2))


# ----------------------------------------------------------------- Hutchinson


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_hutchinson_within_its_standard_error(device: str, distribution: str) -> None:
    lam = np.linspace(-1.0, 3.0, 150)
    A, _ = matrix_with_spectrum(lam, seed=4, device=device)
    N = 2000
    est = hutchinson_trace(MatrixHVP(A), 150, N, distribution=distribution, seed=11)
    sd = _hutchinson_std(A.cpu().numpy(), distribution)
    assert abs(est.estimate - lam.sum()) < Z * sd / np.sqrt(N)
    # The reported standard error estimates the true one (the sample s.d. of N = 2000
    # draws is within a few per cent of the population s.d.).
    assert est.std_error == pytest.approx(sd / np.sqrt(N), rel=0.15)
    assert est.n_hvp == N and est.running.shape == (N,) and est.stderr.shape == (N,)
    assert est.running[-1] == est.estimate and np.isnan(est.stderr[0])


def test_hutchinson_running_mean_of_given_probes() -> None:
    A, _ = matrix_with_spectrum(np.linspace(0.0, 1.0, 40), seed=6)
    P = random_probes(7, 40, "gaussian", seed=3)
    est = hutchinson_trace(MatrixHVP(A), 40, probes=P, batch_size=3)
    direct = ((P @ A) * P).sum(dim=1).numpy()
    np.testing.assert_allclose(est.samples, direct, rtol=1e-12)
    np.testing.assert_allclose(est.running, np.cumsum(direct) / np.arange(1, 8), rtol=1e-12)
    np.testing.assert_allclose(est.stderr[-1], direct.std(ddof=1) / np.sqrt(7), rtol=1e-10)


def test_hutchinson_basis_probes_are_exact(model_case: ModelCase) -> None:
    hvp = hvp_operator(model_case.objective, model_case.x)
    est = hutchinson_trace(hvp, model_case.D, model_case.D, distribution="basis")
    exact = float(torch.trace(model_case.H))
    assert est.estimate == pytest.approx(exact, rel=1e-8, abs=1e-10)
    with pytest.raises(ConfigError, match="only D="):
        hutchinson_trace(hvp, model_case.D, model_case.D + 1, distribution="basis")


def test_hutchinson_on_model_within_its_standard_error(model_case: ModelCase) -> None:
    hvp = hvp_operator(model_case.objective, model_case.x)
    N = 300
    est = hutchinson_trace(hvp, model_case.D, N, seed=2)
    sd = _hutchinson_std(model_case.H.numpy(), "rademacher")
    assert abs(est.estimate - float(torch.trace(model_case.H))) < Z * sd / np.sqrt(N)


# ------------------------------------------------------------------- Hutch++


def test_hutchpp_is_exact_when_the_sketch_spans_the_space(model_case: ModelCase) -> None:
    hvp = hvp_operator(model_case.objective, model_case.x)
    D = model_case.D
    est = hutchpp_trace(hvp, D, n_probes=2 * D + 5, sketch=D)
    assert est.estimate == pytest.approx(float(torch.trace(model_case.H)), rel=1e-8)
    assert np.all(np.abs(est.extra["deflated_samples"]) < 1e-8 * np.abs(model_case.evals).max())
    assert est.n_hvp == 2 * D + 5 == hvp.n_hvp


@pytest.mark.parametrize("device", DEVICES)
def test_hutchpp_unbiased_and_better_than_hutchinson_on_decaying_spectrum(device: str) -> None:
    D, N, runs = 120, 30, 40
    lam = 10.0 * np.arange(1, D + 1, dtype=float) ** -1.5  # PSD, decaying
    A, _ = matrix_with_spectrum(lam, seed=8, device=device)
    errors = np.array(
        [hutchpp_trace(MatrixHVP(A), D, N, seed=s).estimate - lam.sum() for s in range(runs)]
    )
    sd_hutch = _hutchinson_std(A.cpu().numpy(), "rademacher") / np.sqrt(N)
    # Unbiased: the mean error over the runs is within Z of its own standard error.
    assert abs(errors.mean()) < Z * errors.std(ddof=1) / np.sqrt(runs)
    # Variance reduction: Hutch++'s RMS error is well below Hutchinson's s.d. at equal N.
    assert np.sqrt(np.mean(errors**2)) < 0.5 * sd_hutch


def test_hutchpp_needs_residual_probes() -> None:
    A, _ = matrix_with_spectrum(np.ones(10))
    with pytest.raises(ConfigError, match="residual"):
        hutchpp_trace(MatrixHVP(A), 10, n_probes=6, sketch=3)


# ----------------------------------------------------------- curvature-based


def test_curvature_fit_is_exact_on_a_quadratic_loss() -> None:
    obj = regression_objective()
    x = obj.x0 + 0.3
    hvp = hvp_operator(obj, x)
    P = random_probes(12, obj.D, "gaussian", seed=5)
    U = P / P.norm(dim=1, keepdim=True)
    vHv = (U * hvp(U)).sum(dim=1).numpy()

    def loss_at(points: torch.Tensor) -> np.ndarray:
        return obj.evaluate(points)["loss"]

    for eps in (1e-2, 1.0):
        curv, rms = directional_curvatures(loss_at, x, U, epsilon=eps)
        np.testing.assert_allclose(curv, vHv, rtol=1e-8)
        assert np.all(rms < 1e-8)

    # The trace estimates: unit directions (D·uᵀHu) and the paper's raw Gaussians (zᵀHz).
    unit = curvature_trace(loss_at, x, directions=P, epsilon=0.5, chunk=5)
    np.testing.assert_allclose(unit.samples, obj.D * vHv, rtol=1e-8)
    assert unit.n_forward == 12 * 50 and unit.n_hvp == 0
    raw = curvature_trace(loss_at, x, directions=P, epsilon=0.5, normalize=False)
    hutch = hutchinson_trace(hvp, obj.D, probes=P)
    np.testing.assert_allclose(raw.running, hutch.running, rtol=1e-8)


def test_curvature_trace_converges_to_the_trace() -> None:
    obj = regression_objective(seed=1)
    x = obj.x0
    H = obj.hessian(x).numpy()
    N = 400
    est = curvature_trace(lambda P: obj.evaluate(P)["loss"], x, N, epsilon=0.5, seed=9)
    # Per-direction variance of D·uᵀHu (u uniform on the sphere):
    # 2D/(D+2)·(‖H‖_F² − Tr(H)²/D).
    D = obj.D
    var = 2 * D / (D + 2) * (np.sum(H * H) - np.trace(H) ** 2 / D)
    assert abs(est.estimate - np.trace(H)) < Z * np.sqrt(var / N)


def test_curvature_fit_on_networks_with_small_interval(model_case: ModelCase) -> None:
    obj, x = model_case.objective, model_case.x
    P = random_probes(8, obj.D, "gaussian", seed=1)
    U = P / P.norm(dim=1, keepdim=True)
    vHv = (U @ model_case.H * U).sum(dim=1).numpy()
    curv, _ = directional_curvatures(lambda Q: obj.evaluate(Q)["loss"], x, U, epsilon=1e-3)
    # Higher-order terms bias the fit by O(ε²); at ε = 1e-3 no ReLU kink is crossed here.
    np.testing.assert_allclose(curv, vHv, atol=1e-5 * np.abs(model_case.evals).max())
