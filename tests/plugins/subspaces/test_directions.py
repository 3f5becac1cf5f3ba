"""Plane directions: filter normalisation with exact orthogonality, grids, planes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossatlas.engine import ConfigError, DataBundle, Objective, ParamLayout, Split, parse_options
from lossatlas.plugins.models.mlp import MLP
from lossatlas.plugins.subspaces.directions import (
    HessianPlane,
    ThreePoints,
    UserDirections,
    block_ids,
    centred_axis,
    normalized_directions,
    plane_grid,
    unit_cosine,
)


def _model(n_in: int = 8, hidden: tuple[int, ...] = (6, 5), n_out: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    m = MLP(n_in, list(hidden), n_out).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))  # non-zero biases too
    return m


def _flat(m: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in m.parameters()])


def _filter_norms(v: torch.Tensor, layout: ParamLayout) -> list[np.ndarray]:
    out = []
    for e in layout.entries:
        if e.kind == "weight":
            out.append(v[e.start : e.stop].reshape(e.shape[0], -1).norm(dim=1).numpy())
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filter_normalized_is_orthogonal_and_normalised_per_filter(seed: int) -> None:
    m = _model()
    layout, x = ParamLayout(m), _flat(m)
    V, info = normalized_directions(x, layout, 2, torch.Generator().manual_seed(seed))
    assert abs(info["cosine"][0]) < 1e-12
    assert abs(unit_cosine(V)[0]) < 1e-12
    for row in V:
        for got, want in zip(_filter_norms(row, layout), _filter_norms(x, layout), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12)
    bias = layout.mask("bias")
    assert torch.all(V[:, bias] == 0)
    assert info["pooled_filters"] == 0


@pytest.mark.parametrize("include_bias_and_norm", [False, True])
def test_conv_filters_are_output_channels_and_norm_layers_follow_the_option(
    include_bias_and_norm: bool,
) -> None:
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 4 * 4, 5),
    ).double()
    with torch.no_grad():
        m[1].weight.add_(0.3 * torch.randn(4, dtype=torch.float64))
    layout, x = ParamLayout(m), _flat(m)
    V, info = normalized_directions(
        x, layout, 2, torch.Generator().manual_seed(1), include_bias_and_norm=include_bias_and_norm
    )
    assert abs(info["cosine"][0]) < 1e-12
    conv = layout.entries[0]
    assert conv.kind == "weight" and conv.shape == (4, 3, 3, 3)
    for row in V:  # one filter = one output channel of 27 weights
        got = row[conv.start : conv.stop].reshape(4, -1).norm(dim=1)
        want = x[conv.start : conv.stop].reshape(4, -1).norm(dim=1)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
    others = [e for e in layout.entries if e.kind != "weight"]
    assert {e.kind for e in others} == {"bias", "norm"}
    for e in others:
        block = V[:, e.start : e.stop]
        if include_bias_and_norm:  # each such tensor is one block, normalised like x
            np.testing.assert_allclose(
                block.norm(dim=1).numpy(), float(x[e.start : e.stop].norm()), rtol=1e-12
            )
        else:
            assert torch.all(block == 0)


def test_without_orthogonalisation_the_cosine_is_not_zero() -> None:
    m = _model()
    _, info = normalized_directions(
        _flat(m), ParamLayout(m), 2, torch.Generator().manual_seed(0), orthogonal=False
    )
    assert abs(info["cosine"][0]) > 1e-6


def test_one_input_filters_are_pooled_and_still_orthogonal() -> None:
    m = _model(n_in=1, hidden=(10, 10), n_out=1)  # first layer: filters of one weight
    layout, x = ParamLayout(m), _flat(m)
    V, info = normalized_directions(x, layout, 2, torch.Generator().manual_seed(0))
    assert info["pooled_filters"] == 10
    assert abs(info["cosine"][0]) < 1e-12
    first = layout.entries[0]
    for row in V:  # the pooled tensor is normalised as a whole (layer)
        np.testing.assert_allclose(
            row[first.start : first.stop].norm(), x[first.start : first.stop].norm(), rtol=1e-12
        )


@pytest.mark.parametrize("norm", ["layer", "none"])
def test_layer_and_none_normalisation(norm: str) -> None:
    m = _model()
    layout, x = ParamLayout(m), _flat(m)
    V, info = normalized_directions(
        x, layout, 3, torch.Generator().manual_seed(0), norm=norm, include_bias_and_norm=True
    )
    assert max(abs(c) for c in info["cosine"]) < 1e-12
    if norm == "none":
        np.testing.assert_allclose(V.norm(dim=1).numpy(), float(x.norm()), rtol=1e-12)
    else:
        for row in V:
            for e in layout.entries:
                np.testing.assert_allclose(
                    row[e.start : e.stop].norm(), x[e.start : e.stop].norm(), rtol=1e-12
                )


def test_block_ids_exclude_biases_by_default() -> None:
    layout = ParamLayout(_model())
    ids, info = block_ids(layout, "filter", False)
    assert np.all(ids[layout.mask("bias").numpy()] == -1)
    assert info["blocks"] == 6 + 5 + 3


def test_centred_axis_contains_the_centre() -> None:
    a = centred_axis(0.3, 25)
    assert a[12] == 0.0 and len(a) == 25 and a[0] == -0.3 and a[-1] == 0.3
    with pytest.raises(ConfigError):
        centred_axis(1.0, 24)


def test_plane_grid_row() -> None:
    x = torch.arange(4.0, dtype=torch.float64)
    d = torch.eye(4, dtype=torch.float64)[:2]
    P = plane_grid(x, d, 0.5, np.array([-1.0, 0.0, 1.0]))
    want = torch.stack([x + 0.5 * d[0] + b * d[1] for b in (-1.0, 0.0, 1.0)])
    torch.testing.assert_close(P, want)


class _Ctx:
    def __init__(self, points: dict[str, torch.Tensor], layout: ParamLayout) -> None:
        self.points = points

        class _O:
            pass

        self.objective = _O()
        self.objective.layout = layout

    def resolve_point(self, ref: str) -> torch.Tensor:
        return self.points[str(ref)].clone()


def test_three_points_plane_puts_the_models_at_their_coordinates() -> None:
    g = torch.Generator().manual_seed(0)
    pts = {k: torch.randn(7, generator=g, dtype=torch.float64) for k in "abc"}
    ctx = _Ctx(pts, None)  # type: ignore[arg-type]
    plugin = ThreePoints()
    for basis in ("raw", "orthonormal"):
        opts = parse_options(plugin.Options, {"points": ["a", "b", "c"], "basis": basis}, "t")
        sub = plugin.build(opts, ctx, pts["a"], g)
        for name, xy in zip("abc", sub.attrs["model_coords"], strict=True):
            torch.testing.assert_close(sub.embed(torch.tensor(xy, dtype=torch.float64)), pts[name])
        if basis == "orthonormal":
            assert abs(sub.attrs["cosine"][0]) < 1e-12
    same = {"a": pts["a"], "b": pts["b"], "c": 2 * pts["b"] - pts["a"]}
    opts = parse_options(plugin.Options, {"points": ["a", "b", "c"]}, "t")
    with pytest.raises(ConfigError, match="collinear"):
        plugin.build(opts, _Ctx(same, None), pts["a"], g)  # type: ignore[arg-type]


def test_user_directions_unit_and_orthogonalised() -> None:
    g = torch.Generator().manual_seed(0)
    pts = {
        "u": torch.randn(9, generator=g, dtype=torch.float64),
        "v": torch.randn(9, generator=g, dtype=torch.float64),
    }
    x = torch.ones(9, dtype=torch.float64)
    plugin = UserDirections()
    opts = parse_options(
        plugin.Options,
        {"vectors": ["u", "v"], "normalize": "unit", "orthogonalize": True, "scale": "absolute"},
        "t",
    )
    sub = plugin.build(opts, _Ctx(pts, None), x, g)  # type: ignore[arg-type]
    B = sub.basis
    torch.testing.assert_close(B.T @ B, torch.eye(2, dtype=torch.float64))
    assert abs(float(B[:, 0] @ pts["u"]) - float(pts["u"].norm())) < 1e-12


@pytest.mark.parametrize("scale", ["relative", "absolute"])
def test_hessian_plane_is_the_dense_extreme_eigenvectors(scale: str) -> None:
    g = torch.Generator().manual_seed(4)
    X = torch.randn(40, 3, generator=g, dtype=torch.float64)
    Y = torch.randn(40, 2, generator=g, dtype=torch.float64)
    data = DataBundle(
        train=Split(X, Y), validation=Split(X[:5], Y[:5]), task="regression", n_outputs=2
    )
    obj = Objective(MLP(3, [5], 2, activation="tanh").double(), data, dtype=torch.float64)
    x = obj.x0 + 0.3 * torch.randn(obj.D, generator=g, dtype=torch.float64)
    w, U = torch.linalg.eigh(obj.hessian(x))
    assert w[0] < 0 < w[-1]

    class Ctx:
        objective = obj

    plugin = HessianPlane()
    opts = parse_options(plugin.Options, {"scale": scale}, "t")
    sub = plugin.build(opts, Ctx(), x, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(sub.attrs["eigenvalues"], [w[-1], w[0]], rtol=1e-6)
    assert sub.attrs["converged"] and max(sub.attrs["residuals"]) < 1e-6 and sub.attrs["n_hvp"] > 0
    B = sub.basis.T
    r = float(x.norm()) if scale == "relative" else 1.0
    np.testing.assert_allclose(B.norm(dim=1).numpy(), r, rtol=1e-12)
    assert abs(float(B[0] @ U[:, -1])) / r > 0.9999 and abs(float(B[1] @ U[:, 0])) / r > 0.9999
