"""Geometry of parameter space: radii, initialisation shells and the per-layer metric.

Seed 000 (Fort & Scherlis 2019, §2.2): a Gaussian initialisation of a weight matrix W
with N entries of standard deviation σ puts W on a thin shell of radius ≈ √(N−1)·σ;
the *radius* of a configuration is the L2 norm of all its weights (biases start at
zero and are ignored by the theory). ``r_Xavier`` (``r_He``) is the radius a Xavier
(He) initialisation of the whole network lands at. Everything here works from a
:class:`~lossatlas.engine.ParamLayout` alone (shapes, fan-in, fan-out), so it costs
O(D) and never builds a module.

- :func:`config_radius` — ‖x‖ over weights (or all parameters).
- :func:`init_std`, :func:`layer_init_radii`, :func:`init_radius` — σ per layer, the
  expected radius of each layer and of the whole network under a scheme.
- :func:`draw_init` — a Xavier/He draw (biases 0, norm scales 1), optionally rescaled
  to a given radius r (the points of seed 000's Fig. 3–5).
- :func:`layer_metric` — the diagonal metric η with η_ii ∝ 1/r_layer(i) (seed 000 §2.1).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from .errors import ConfigError
from .objective import ParamLayout

__all__ = [
    "Scheme",
    "config_radius",
    "draw_init",
    "init_radius",
    "init_std",
    "layer_init_radii",
    "layer_metric",
    "radius_mask",
]

Scheme = Literal["xavier", "he"]


def init_std(fan_in: int, fan_out: int, scheme: str) -> float:
    """σ of one weight entry: Xavier (Glorot normal) √(2/(fan_in+fan_out)), He √(2/fan_in)."""
    if scheme == "xavier":
        return math.sqrt(2.0 / (fan_in + fan_out))
    if scheme == "he":
        return math.sqrt(2.0 / fan_in)
    raise ConfigError(f"initialisation scheme '{scheme}' is not known; use 'xavier' or 'he'")


def radius_mask(
    layout: ParamLayout, include_bias: bool = False, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(D,) bool mask of the coordinates a radius is taken over: weights, or all."""
    if include_bias:
        return torch.ones(layout.D, dtype=torch.bool, device=device)
    return layout.mask("weight", device=device)


def config_radius(x: torch.Tensor, layout: ParamLayout, include_bias: bool = False) -> torch.Tensor:
    """The radius ‖x‖ of configuration(s) ``x`` (shape (..., D)) over weights only
    (seed 000's definition) or over all parameters. Cost: O(D)."""
    return layout.radius(x, include_bias=include_bias)


def layer_init_radii(layout: ParamLayout, scheme: str = "xavier") -> dict[int, float]:
    """Per layer (module index of the layout): the RMS radius √N·σ of its weights under
    ``scheme``. Layers without a weight matrix (norm scales, lone biases) map to the
    norm of their initial values (‖1‖ = √n for norm scales, 0 for biases)."""
    out: dict[int, float] = {}
    for e in layout.entries:
        if e.kind == "weight":
            s = init_std(e.fan_in, e.fan_out, scheme)
            out[e.layer] = math.sqrt(out.get(e.layer, 0.0) ** 2 + e.size * s * s)
    for e in layout.entries:
        if e.layer not in out:
            out[e.layer] = math.sqrt(e.size) if e.kind == "norm" else 0.0
    return out


def init_radius(layout: ParamLayout, scheme: str = "xavier") -> float:
    """r_Xavier (or r_He): the mean radius of the weights of a ``scheme`` initialisation.

    With S = Σ_l N_l σ_l² the mean squared radius and V = Σ_l 2 N_l σ_l⁴ the variance of
    the squared radius, the mean radius is E‖W‖ ≈ √S − V/(8 S^{3/2}) (second-order delta
    method; for one layer this is σ√(N − ½) ≈ the shell radius √(N−1)·σ of seed 000
    eq. 2). Biases start at zero, so the radius with or without biases is the same.
    """
    S = 0.0
    V = 0.0
    for e in layout.entries:
        if e.kind == "weight":
            s2 = init_std(e.fan_in, e.fan_out, scheme) ** 2
            S += e.size * s2
            V += 2.0 * e.size * s2 * s2
    if S == 0:
        raise ConfigError("the model has no weight matrices, so it has no initialisation radius")
    return math.sqrt(S) - V / (8.0 * S**1.5)


def draw_init(
    layout: ParamLayout,
    generator: torch.Generator,
    *,
    scheme: str = "xavier",
    radius: float | None = None,
    include_bias: bool = False,
    n: int | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Draw ``scheme`` initialisation(s) as flat vectors, optionally rescaled to ``radius``.

    Weights ~ N(0, σ_l²) per layer, biases 0, norm scales 1 (as the model plugins
    initialise them). With ``radius``, the weights of each draw are scaled by
    r/‖W‖ so that the radius (over weights, or all parameters with ``include_bias``;
    identical since biases are 0) is exactly r: the points of seed 000's radius sweeps.
    Returns (D,) or, with ``n``, (n, D). Random numbers are drawn in float64 on the CPU
    from ``generator`` (the same draw on any device). Cost: O(nD).
    """
    B = 1 if n is None else n
    x = torch.zeros(B, layout.D, dtype=torch.float64)
    for e in layout.entries:
        if e.kind == "weight":
            s = init_std(e.fan_in, e.fan_out, scheme)
            x[:, e.start : e.stop] = (
                torch.randn(B, e.size, generator=generator, dtype=torch.float64) * s
            )
        elif e.kind == "norm":
            x[:, e.start : e.stop] = 1.0
    if radius is not None:
        if radius < 0:
            raise ConfigError(f"a radius must be non-negative, got {radius}")
        w = layout.mask("weight")
        r = x[:, w].norm(dim=1, keepdim=True)
        x[:, w] = x[:, w] * (radius / r)
    x = x.to(device=device, dtype=dtype)
    return x[0] if n is None else x


def layer_metric(
    layout: ParamLayout,
    scheme: str = "xavier",
    power: float = 1.0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The diagonal metric η of seed 000 §2.1 as a (D,) vector: η_ii ∝ 1/r_l(i)^power,
    with r_l the initialisation radius of the layer (module) parameter i belongs to
    (biases share their module's weight radius). Normalised to unit root-mean-square
    over the D coordinates, so ηM keeps the average column norm of M. Layers of radius
    0 get the mean η. Cost: O(D)."""
    radii = layer_init_radii(layout, scheme)
    idx = layout.layer_index()
    r = np.array([radii[int(i)] for i in range(int(idx.max()) + 1)], dtype=np.float64)
    inv = np.where(r > 0, 1.0 / np.where(r > 0, r, 1.0) ** power, np.nan)
    eta = inv[idx]
    fill = np.nanmean(eta) if np.isfinite(eta).any() else 1.0
    eta = np.where(np.isfinite(eta), eta, fill)
    eta = eta / math.sqrt(float(np.mean(eta**2)))
    return torch.as_tensor(eta, dtype=dtype, device=device)
