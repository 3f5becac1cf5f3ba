"""Radii, initialisation shells and the per-layer metric (seed 000 §2.1–2.2)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lossatlas.engine import ConfigError, ParamLayout
from lossatlas.engine.geometry import (
    config_radius,
    draw_init,
    init_radius,
    init_std,
    layer_init_radii,
    layer_metric,
)
from lossatlas.plugins.models.mlp import MLP, init_weights


def _layout(hidden=(16, 8), n_in=12, n_out=5) -> ParamLayout:
    return ParamLayout(MLP(n_in, list(hidden), n_out))


@pytest.mark.parametrize("scheme", ["xavier", "he"])
@pytest.mark.parametrize("hidden", [(16, 8), (40,)])
def test_init_radius_is_the_mean_radius_of_many_draws(scheme, hidden):
    layout = _layout(hidden)
    g = torch.Generator().manual_seed(0)
    xs = draw_init(layout, g, scheme=scheme, n=4000)
    radii = config_radius(xs, layout)
    r = init_radius(layout, scheme)
    # the mean over 4000 draws has a standard error of std/√4000
    se = float(radii.std()) / math.sqrt(len(radii))
    assert abs(float(radii.mean()) - r) < 4 * se + 1e-3 * r
    # and the draws really are what the model plugin draws (same σ per layer)
    model = MLP(12, list(hidden), 5)
    init_weights(model, scheme, torch.Generator().manual_seed(1))
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
    assert abs(float(config_radius(flat, layout)) - r) < 0.2 * r


def test_init_radius_single_layer_matches_chi_mean():
    layout = ParamLayout(nn.Linear(30, 20, bias=False))
    s = init_std(30, 20, "xavier")
    N = 600
    chi_mean = s * math.sqrt(2) * math.exp(math.lgamma((N + 1) / 2) - math.lgamma(N / 2))
    assert init_radius(layout) == pytest.approx(chi_mean, rel=1e-5)
    assert init_radius(layout) == pytest.approx(math.sqrt(N - 1) * s, rel=1e-3)


def test_draw_rescaled_to_radius_and_biases_zero():
    layout = _layout()
    g = torch.Generator().manual_seed(3)
    x = draw_init(layout, g, radius=7.5, n=3)
    assert torch.allclose(config_radius(x, layout), torch.full((3,), 7.5, dtype=x.dtype))
    assert torch.allclose(
        config_radius(x, layout, include_bias=True), torch.full((3,), 7.5, dtype=x.dtype)
    )
    assert float(x[:, ~layout.mask("weight")].abs().max()) == 0.0
    one = draw_init(layout, torch.Generator().manual_seed(3), radius=2.0)
    assert one.shape == (layout.D,)


def test_layer_radii_and_metric():
    layout = _layout((16, 8))
    radii = layer_init_radii(layout, "xavier")
    w0 = layout.entries[0]
    assert radii[w0.layer] == pytest.approx(
        math.sqrt(w0.size) * init_std(w0.fan_in, w0.fan_out, "xavier")
    )
    eta = layer_metric(layout)
    assert eta.shape == (layout.D,)
    assert float((eta**2).mean()) == pytest.approx(1.0)
    # η ∝ 1/r_layer: the ratio of two layers' η is the inverse ratio of their radii
    e1, e2 = layout.entries[0], layout.entries[2]
    ratio = float(eta[e1.start] / eta[e2.start])
    assert ratio == pytest.approx(radii[e2.layer] / radii[e1.layer])
    # biases share their module's value
    b1 = layout.entries[1]
    assert float(eta[b1.start]) == pytest.approx(float(eta[e1.start]))


def test_unknown_scheme_is_a_config_error():
    with pytest.raises(ConfigError, match="xavier"):
        init_radius(_layout(), "lecun")
