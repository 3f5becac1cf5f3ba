"""Eigenpairs by Lanczos against a dense eigendecomposition, in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from curvature_cases import DEVICES, MatrixHVP, ModelCase, matrix_with_spectrum

from lossatlas.engine import ConfigError, DataBundle, Objective
from lossatlas.engine.curvature import (
    HessianOperator,
    extreme_eigenpairs,
    hessian_directions,
    hvp_operator,
)
from lossatlas.plugins.datasets.digits import Digits, DigitsOptions
from lossatlas.plugins.models.mlp import MLPModel, MLPOptions

RTOL = 1e-6  # eigenvalues, relative
COS = 0.9999  # eigenvectors, |cos| to the dense ones


def _cos(v: torch.Tensor, u: torch.Tensor) -> float:
    v, u = v.double().cpu(), u.double().cpu()
    return float(abs(v @ u) / (v.norm() * u.norm()))


# ------------------------------------------------------------------ operator


@pytest.mark.parametrize("device", DEVICES)
def test_operator_matvec_matmat_shift_and_count(device: str) -> None:
    A, _ = matrix_with_spectrum(np.linspace(-1, 2, 30), device=device)
    hvp = MatrixHVP(A)
    op = HessianOperator(hvp, 30, shift=0.5)
    A_np = A.cpu().numpy()
    x = np.random.default_rng(0).standard_normal(30)
    X = np.random.default_rng(1).standard_normal((30, 4))
    np.testing.assert_allclose(op.matvec(x), A_np @ x - 0.5 * x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.matmat(X), A_np @ X - 0.5 * X, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.rmatvec(x), op.matvec(x), rtol=0, atol=0)
    assert op.n_hvp == 1 + 4 + 1 + 1
    assert hvp.n_hvp == op.n_hvp


def test_hvp_operator_matches_dense_and_counts(model_case: ModelCase) -> None:
    hvp = hvp_operator(model_case.objective, model_case.x)
    g = torch.Generator().manual_seed(0)
    V = torch.randn(3, model_case.D, dtype=torch.float64, generator=g)
    torch.testing.assert_close(hvp(V), V @ model_case.H, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(hvp(V[:1]), V[:1] @ model_case.H, rtol=1e-9, atol=1e-12)
    assert hvp.n_hvp == 4 and hvp.n_calls == 2


@pytest.mark.parametrize("method", ["auto", "forward", "reverse"])
def test_hvp_methods_agree_with_dense(model_case: ModelCase, method: str) -> None:
    hvp = hvp_operator(model_case.objective, model_case.x, method=method)
    V = torch.randn(
        5, model_case.D, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(hvp(V), V @ model_case.H, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(hvp(V[:3]), V[:3] @ model_case.H, rtol=1e-9, atol=1e-12)
    assert hvp.n_hvp == 8
    # auto is a rule (forward for blocks), so every cell and every resumption agrees
    assert hvp.chosen == ("forward" if method == "auto" else method)
    assert hvp.fallback is None


@pytest.mark.parametrize("method", ["forward", "reverse"])
def test_hvp_over_unequal_mini_batches_weights_by_batch_size(
    model_case: ModelCase, method: str
) -> None:
    """Batches of 47 over N samples (the last one smaller): the same H as one full batch."""
    obj = model_case.objective
    batched = Objective(obj.model, _bundle(obj), dtype=torch.float64, batch_size=47)
    assert len(obj.splits["train"]) % 47 != 0
    V = torch.randn(3, obj.D, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    hvp = hvp_operator(batched, model_case.x, method=method)
    torch.testing.assert_close(hvp(V), V @ model_case.H, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(hvp(V[:1]), V[:1] @ model_case.H, rtol=1e-9, atol=1e-12)


def _bundle(obj: Objective) -> DataBundle:
    return DataBundle(
        train=obj.splits["train"],
        validation=obj.splits["validation"],
        task=obj.task,
        n_outputs=obj.n_outputs,
    )


def test_auto_hvp_falls_back_to_double_backward(
    model_case: ModelCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    obj = model_case.objective

    def no_forward_ad(*args: object, **kwargs: object) -> torch.Tensor:
        raise NotImplementedError("Trying to use forward AD with a layer that does not support it")

    monkeypatch.setattr(obj, "_hvp_forward", no_forward_ad)
    hvp = hvp_operator(obj, model_case.x)
    V = torch.randn(
        4, model_case.D, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    torch.testing.assert_close(hvp(V), V @ model_case.H, rtol=1e-9, atol=1e-12)
    assert hvp.chosen == "reverse" and "forward AD" in (hvp.fallback or "")
    with pytest.raises(NotImplementedError):
        hvp_operator(obj, model_case.x, method="forward")(V)


# --------------------------------------------------------- extreme eigenpairs


@pytest.mark.parametrize("method", ["lanczos", "dense", "auto"])
@pytest.mark.parametrize("which", ["LA", "SA"])
def test_extreme_eigenpairs_match_dense_on_models(
    model_case: ModelCase, which: str, method: str
) -> None:
    w, U, k = model_case.evals, model_case.evecs, 2
    hvp = hvp_operator(model_case.objective, model_case.x)
    res = extreme_eigenpairs(hvp, model_case.D, k=k, which=which, method=method)
    idx = np.arange(len(w) - k, len(w)) if which == "LA" else np.arange(k)
    assert res.converged
    np.testing.assert_allclose(res.eigenvalues, w[idx], rtol=RTOL)
    for row, i in enumerate(idx):
        assert _cos(res.eigenvectors[row], U[:, i]) > COS
    assert np.all(res.residuals < 1e-6)
    assert np.all(np.abs(res.eigenvalues - w[idx]) <= res.error_bounds + 1e-12)
    assert res.n_hvp == hvp.n_hvp
    assert res.method == ("lanczos" if method == "lanczos" else res.method)


@pytest.mark.parametrize("method", ["lanczos", "dense"])
@pytest.mark.parametrize("device", DEVICES)
def test_extreme_eigenpairs_both_ends_and_lm_on_known_spectrum(device: str, method: str) -> None:
    lam = np.r_[-5.0, -3.0, np.linspace(-1, 1, 196), 2.0, 4.0]
    A, Q = matrix_with_spectrum(lam, seed=3, device=device)
    both = extreme_eigenpairs(MatrixHVP(A), 200, k=4, which="both", method=method)
    np.testing.assert_allclose(both.eigenvalues, [-5, -3, 2, 4], rtol=1e-9)
    lm = extreme_eigenpairs(MatrixHVP(A), 200, k=2, which="LM", method=method)
    np.testing.assert_allclose(lm.eigenvalues, [-5, 4], rtol=1e-9)
    assert _cos(lm.eigenvectors[0], Q[:, 0]) > COS
    assert _cos(lm.eigenvectors[1], Q[:, -1]) > COS
    assert lm.eigenvectors.device.type == device


def test_tiny_problem_falls_back_to_dense() -> None:
    A, _ = matrix_with_spectrum(np.array([-1.0, 0.5, 2.0, 3.0]))
    res = extreme_eigenpairs(MatrixHVP(A), 4, k=3, which="LA")
    assert res.method == "dense"
    np.testing.assert_allclose(res.eigenvalues, [0.5, 2.0, 3.0], rtol=1e-12)


def test_same_seed_same_result_and_bad_k() -> None:
    A, _ = matrix_with_spectrum(np.linspace(-1, 3, 80), seed=1)
    a = extreme_eigenpairs(MatrixHVP(A), 80, k=1, seed=7, method="lanczos")
    b = extreme_eigenpairs(MatrixHVP(A), 80, k=1, seed=7, method="lanczos")
    assert a.n_hvp == b.n_hvp
    torch.testing.assert_close(a.eigenvectors, b.eigenvectors, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="k=80"):
        extreme_eigenpairs(MatrixHVP(A), 80, k=80)


# --------------------------------------------------------- Hessian directions


def test_hessian_directions_match_dense_extremes(model_case: ModelCase) -> None:
    w, U = model_case.evals, model_case.evecs
    assert w[0] < 0 < w[-1], "the untrained point must have an indefinite Hessian"
    hvp = hvp_operator(model_case.objective, model_case.x)
    res = hessian_directions(hvp, model_case.D, method="lanczos")
    assert res.converged and res.opposite_sign_found and res.is_saddle
    assert res.shape == "saddle"
    np.testing.assert_allclose(res.eigenvalues, [w[-1], w[0]], rtol=RTOL)
    assert _cos(res.eigenvectors[0], U[:, -1]) > COS
    assert _cos(res.eigenvectors[1], U[:, 0]) > COS
    assert np.all(res.residuals < 1e-6)
    assert res.n_hvp == hvp.n_hvp
    # The dominant pair was found first.
    assert res.dominant == (0 if w[-1] >= -w[0] else 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "extremes", [(3.0, -0.5), (0.4, -6.0)], ids=["positive-dominant", "negative-dominant"]
)
def test_hessian_directions_on_synthetic_indefinite(device: str, extremes: tuple) -> None:
    top, bottom = extremes
    lam = np.r_[bottom, np.linspace(bottom * 0.9, top * 0.9, 298), top]
    A, Q = matrix_with_spectrum(lam, seed=5, device=device)
    res = hessian_directions(MatrixHVP(A), 300, method="lanczos")
    assert res.opposite_sign_found
    np.testing.assert_allclose(res.eigenvalues, [top, bottom], rtol=1e-9)
    assert _cos(res.eigenvectors[0], Q[:, -1]) > COS
    assert _cos(res.eigenvectors[1], Q[:, 0]) > COS
    assert res.dominant == (0 if top > -bottom else 1)


def test_hessian_directions_semidefinite_says_no_opposite_sign() -> None:
    lam = np.r_[0.01, np.linspace(0.1, 1.0, 148), 5.0]
    A, _ = matrix_with_spectrum(lam, seed=2)
    res = hessian_directions(MatrixHVP(A), 150, method="lanczos")
    assert not res.opposite_sign_found and not res.is_saddle and res.shape == "minimum"
    np.testing.assert_allclose(res.eigenvalues, [5.0, 0.01], rtol=1e-7)
    # Negative semidefinite: the dominant one is the most negative.
    res = hessian_directions(MatrixHVP(-A), 150, method="lanczos")
    assert not res.opposite_sign_found and res.dominant == 1 and res.shape == "maximum"
    np.testing.assert_allclose(res.eigenvalues, [-0.01, -5.0], rtol=1e-7)


# ------------------------------------------------- the review's hard spectra (float64)


def _null_space_matrix(D: int = 910, cluster: int = 0, seed: int = 0) -> torch.Tensor:
    """PSD: 60 eigenvalues in [0.5, 3], ``cluster`` in (0, 1e-7], the rest exactly 0
    (always-zero pixels, softmax shift invariance, a zero-residual fit)."""
    rng = np.random.default_rng(seed)
    lam = np.r_[
        np.linspace(0.5, 3.0, 60), rng.uniform(0, 1e-7, cluster), np.zeros(D - 60 - cluster)
    ]
    A, _ = matrix_with_spectrum(lam, seed=seed)
    return A


@pytest.mark.parametrize("method", ["lanczos", "auto", "dense"])
def test_psd_null_space_is_degenerate_not_a_saddle(method: str) -> None:
    """The review: λ_min = −2.2e−17 gave is_saddle = True and opposite_sign_found = True.
    Within its error bound the bottom is flat: 'degenerate', neither saddle nor minimum."""
    A = _null_space_matrix()
    kwargs = {} if method == "auto" else {"method": method}
    res = hessian_directions(MatrixHVP(A), A.shape[0], **kwargs)
    assert not res.is_saddle and not res.opposite_sign_found
    assert res.shape == "degenerate"
    assert res.eigenvalues[0] == pytest.approx(3.0, rel=1e-9)
    assert abs(res.eigenvalues[1]) <= res.error_bounds[1] + res.flat_tol * 3.0
    assert np.all(res.error_bounds < 1e-8)


def test_near_null_cluster_is_answered_within_a_bounded_hvp_count() -> None:
    """The review: hundreds of eigenvalues below 1e−6·λ_max took 91,021 HVPs at D = 910
    and then an exception. Now: converged, far below D HVPs, the bottom within its bound
    of the cluster."""
    D = 910
    A = _null_space_matrix(D, cluster=600)
    hvp = MatrixHVP(A)
    res = hessian_directions(hvp, D)  # the defaults (D > 512: Lanczos)
    assert res.converged and hvp.n_hvp == res.n_hvp
    assert res.n_hvp < D and res.method == "lanczos"  # a dense solve would cost D
    w = np.linalg.eigvalsh(A.numpy())
    assert abs(res.eigenvalues[1] - w[0]) <= res.error_bounds[1] + 1e-12
    assert res.shape == "degenerate"


def test_unconverged_run_returns_its_best_ritz_pairs() -> None:
    """At the HVP cap the answer is the best Ritz pair with converged=False and an honest
    bound (the true eigenvalue within it), not an exception."""
    lam = np.r_[np.linspace(0.0, 1.0, 1999), 1.0 + 1e-6]  # a tiny relative gap at the top
    A, _ = matrix_with_spectrum(lam, seed=4)
    hvp = MatrixHVP(A)
    res = extreme_eigenpairs(hvp, 2000, k=1, which="LA", max_hvp=40, tol=1e-14)
    assert not res.converged
    assert hvp.n_hvp <= 40 + 20 + 1  # the cap (plus at most one basis) and the re-check
    assert abs(res.eigenvalues[0] - lam[-1]) <= res.error_bounds[0] + 1e-12
    assert res.error_bounds[0] > 0 and res.method == "lanczos"


def test_auto_switches_to_dense_instead_of_passing_d_hvps() -> None:
    """A tolerance below float64 rounding cannot be met by Lanczos: after D HVPs the
    dense solve answers (exactly), instead of restarting for ever."""
    lam = np.r_[np.linspace(0.0, 1.0, 599), 1.0 + 1e-9]
    A, _ = matrix_with_spectrum(lam, seed=6)
    hvp = MatrixHVP(A)
    res = extreme_eigenpairs(hvp, 600, k=1, which="LA", tol=1e-20)
    assert res.method == "lanczos+dense" and res.converged
    assert hvp.n_hvp <= 2 * 600 + 21
    assert res.eigenvalues[0] == pytest.approx(lam[-1], rel=1e-12)


def test_zero_hessian_is_degenerate_not_an_error() -> None:
    A = torch.zeros(700, 700, dtype=torch.float64)
    res = hessian_directions(MatrixHVP(A), 700)
    np.testing.assert_array_equal(res.eigenvalues, [0.0, 0.0])
    assert res.shape == "degenerate" and res.converged


def test_hvp_of_the_wrong_length_is_a_shape_error(model_case: ModelCase) -> None:
    from lossatlas.engine import ShapeError

    hvp = hvp_operator(model_case.objective, model_case.x)
    with pytest.raises(ShapeError, match=f"D={model_case.D}"):
        hvp(torch.ones(5, dtype=torch.float64))
    with pytest.raises(ShapeError, match=f"D={model_case.D}"):
        hvp(torch.ones(2, 3, model_case.D, dtype=torch.float64))


def test_float32_error_bounds_cover_the_true_error() -> None:
    """A float32 objective at a trained point: the float64 re-checked bound covers the
    distance to the float64 dense eigenvalue (the float32 residual alone need not)."""
    from lossatlas.engine.training import train

    data = Digits().load(DigitsOptions(limit=200), seed=0)
    model = MLPModel().build(MLPOptions(hidden=[8], activation="tanh"), data, 0)
    obj32 = Objective(model, data, dtype=torch.float32)
    x = train(obj32, obj32.x0, optimizer="adam", lr=0.05, epochs=150, history=False).x_final
    obj64 = Objective(
        MLPModel().build(MLPOptions(hidden=[8], activation="tanh"), data, 0),
        data,
        dtype=torch.float64,
    )
    w = torch.linalg.eigvalsh(obj64.hessian(x.double())).numpy()
    res = hessian_directions(hvp_operator(obj32, x), obj32.D)
    assert res.method == "lanczos" and res.steps[0].residual_check == "float64"
    truth = np.array([w[-1], w[0]])
    assert np.all(np.abs(res.eigenvalues - truth) <= res.error_bounds * (1 + 1e-6) + 1e-12)
