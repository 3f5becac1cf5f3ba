"""Hyperplanes and hyperspheres: recipes, subspace Hessians vs brute force, sphere steps."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import hessian

from lossatlas.engine import Objective, ShapeError, Subspace
from lossatlas.engine.geometry import draw_init, layer_metric
from lossatlas.plugins.datasets.digits import Digits, DigitsOptions
from lossatlas.plugins.models.mlp import MLP
from lossatlas.plugins.subspaces.hyperplane import (
    HyperplaneOptions,
    StackedProjection,
    _nnz,
    default_nnz,
    make_basis,
    make_sphere,
    remove_radial,
    sparse_chang,
    sparse_fort,
)


@pytest.fixture(scope="module")
def obj64() -> Objective:
    data = Digits().load(DigitsOptions(limit=120), 0)
    torch.manual_seed(0)
    return Objective(MLP(64, [6], 10), data, dtype=torch.float64)


def _dense(M: torch.Tensor) -> torch.Tensor:
    return M.to_dense() if M.layout != torch.strided else M


@pytest.mark.parametrize("kind", ["dense", "sparse-fort", "sparse-chang"])
@pytest.mark.parametrize("metric", [False, True])
def test_subspace_hessian_matches_brute_force(obj64, kind, metric):
    g = torch.Generator().manual_seed(1)
    x0 = draw_init(obj64.layout, g, radius=3.0)
    eta = layer_metric(obj64.layout) if metric else None
    M = make_basis(obj64.D, 7, g, kind, eta=eta)
    assert (M.layout == torch.strided) == (kind == "dense")
    H = obj64.subspace_hessian(x0, M)
    f = obj64.function()
    Md = _dense(M)
    brute = hessian(lambda t: f(x0 + Md @ t))(torch.zeros(7, dtype=torch.float64))
    torch.testing.assert_close(H, brute, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("recipe", [sparse_fort, sparse_chang])
def test_sparse_recipes_unit_columns_near_orthogonal(recipe):
    D, d = 40000, 30
    M = recipe(D, d, torch.Generator().manual_seed(5))
    assert M.layout == torch.sparse_coo and M.is_coalesced()
    Md = M.to_dense()
    norms = Md.norm(dim=0)
    torch.testing.assert_close(norms, torch.ones(d, dtype=torch.float64))
    G = Md.T @ Md
    off = G - torch.diag(torch.diagonal(G))
    # inner products of independent random supports have std 1/√D
    assert float(off.abs().max()) < 6 / math.sqrt(D)
    # entries of a column are ±1/√n, and about √D of them per column
    nnz = (Md != 0).sum(dim=0).double()
    assert 0.3 * math.sqrt(D) < float(nnz.mean()) < 2 * math.sqrt(D)
    col = Md[:, 0][Md[:, 0] != 0]
    torch.testing.assert_close(col.abs(), torch.full_like(col, 1 / math.sqrt(col.numel())))
    assert M.values().numel() < 3 * d * math.sqrt(D)  # kept sparse: O(d√D) memory


def test_sparse_fort_count_range():
    M = sparse_fort(1000, 50, torch.Generator().manual_seed(0), nnz=(3, 5))
    nnz = (M.to_dense() != 0).sum(dim=0)
    assert int(nnz.min()) >= 3 and int(nnz.max()) <= 5


def test_too_large_dim_is_a_shape_error():
    with pytest.raises(ShapeError, match="D=10"):
        make_basis(10, 11, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", ["dense", "sparse-chang"])
def test_hypersphere_step_keeps_radius(obj64, kind):
    g = torch.Generator().manual_seed(2)
    x0 = draw_init(obj64.layout, g, radius=4.0)
    sph = make_sphere(x0, 5, g, kind, radius=2.5)
    theta = sph.theta0
    assert float(sph.embed(theta).norm()) == pytest.approx(2.5, abs=1e-12)
    torch.testing.assert_close(sph.embed(theta), x0 * (2.5 / 4.0))
    opt = torch.optim.Adam([theta.requires_grad_(True)], lr=0.05)
    for _ in range(20):
        x = sph.embed(theta)
        gx = torch.autograd.grad(obj64.loss(x), x)[0]
        with torch.no_grad():
            theta.grad = sph.tangent(theta, gx)
        opt.step()
        with torch.no_grad():
            theta.copy_(sph.restore(theta))
        assert abs(float(sph.embed(theta.detach()).norm()) - 2.5) < 1e-12
    assert float((sph.embed(theta.detach()) - x0 * 2.5 / 4).norm()) > 1e-3  # it moved


def test_remove_radial_is_tangent():
    x = torch.randn(3, 50, dtype=torch.float64)
    g = torch.randn(3, 50, dtype=torch.float64)
    t = remove_radial(x, g)
    assert float((t * x).sum(dim=1).abs().max()) < 1e-12


@pytest.mark.parametrize("kind", ["dense", "sparse-fort"])
def test_stacked_projection_equals_each(kind):
    D, d = 300, 4
    g = torch.Generator().manual_seed(0)
    subs = [
        Subspace(
            origin=torch.randn(D, generator=g, dtype=torch.float64), basis=make_basis(D, d, g, kind)
        )
        for _ in range(3)
    ]
    stack = StackedProjection(subs)
    theta = torch.randn(3, d, generator=g, dtype=torch.float64)
    X = stack.embed(theta)
    for r, s in enumerate(subs):
        torch.testing.assert_close(X[r], s.embed(theta[r]))
    G = torch.randn(3, D, generator=g, dtype=torch.float64)
    P = stack.pullback(G)
    for r, s in enumerate(subs):
        torch.testing.assert_close(P[r], _dense(s.basis).T @ G[r])


def test_sphere_confined_to_weights_counts_only_the_weights(obj64):
    w = obj64.layout.mask("weight")
    n_w = int(w.sum())
    x0 = draw_init(obj64.layout, torch.Generator().manual_seed(0), radius=1.0)
    with pytest.raises(ShapeError, match=f"d\\+1 ≤ {n_w} .*use dim ≤ {n_w - 1}"):
        make_sphere(x0, n_w, torch.Generator().manual_seed(0), support=w)
    sph = make_sphere(x0, 4, torch.Generator().manual_seed(0), "sparse-fort", support=w)
    Q = sph.basis.to_dense()
    assert float(Q[~w].abs().max()) == 0.0  # biases stay 0, so ‖x‖ is the weights' radius


def test_sparse_fort_count_range_follows_the_spanned_coordinates():
    assert _nnz(HyperplaneOptions(basis="sparse-fort"), 10_000) is None  # recipe default
    lo, hi = _nnz(HyperplaneOptions(basis="sparse-fort", nnz_max=20), 10_000)
    assert (lo, hi) == (20, 20)  # default low end ⌈√D/2⌉ = 50 clipped to the high end
    lo, hi = _nnz(HyperplaneOptions(basis="sparse-fort", nnz_min=7), 10_000)
    assert (lo, hi) == (7, default_nnz(10_000)[1])
