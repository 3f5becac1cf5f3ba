"""Plane directions for 2-D loss maps: filter-normalised random, Hessian, user, three models.

- :func:`normalized_directions` (subspace ``filter-normalized``): Gaussian directions
  rescaled per filter, per layer or not at all (Li et al. 2018, "Visualizing the Loss
  Landscape of Neural Nets"), and made *exactly* orthogonal without breaking the
  normalisation (see below).
- subspace ``hessian``: the two dominant Hessian directions (λ_max, λ_min) of Böttcher &
  Wheeler (seed 001, Appendix B), from :func:`lossatlas.engine.curvature.hessian_directions`.
- subspace ``user-directions``: any directions stored by earlier steps (or checkpoints).
- subspace ``three-points``: the plane through three models (or through the origin
  point and two models).
- :func:`plane_grid` / :func:`centred_axis`: odd grids that always contain the centre.

**Orthogonal *and* filter-normalised.** Filter normalisation rescales each filter of a
direction to the norm of the same filter of x; Gram–Schmidt on whole vectors would break
that, and normalising after a global Gram–Schmidt breaks orthogonality (cos ~ 1/√D, not
0). We orthogonalise *inside every filter*: the second direction's filter is made
orthogonal to the first direction's filter, then both are rescaled to ‖x_f‖. Since
⟨δ, η⟩ = Σ_f ⟨δ_f, η_f⟩ and every term is zero, the directions are orthogonal up to
rounding (|cos| ~ 1e-16) and each filter has exactly the norm Li et al. ask for. A
filter with fewer entries than directions (e.g. the 1-input first layer of a 1-D
regression MLP: every filter is one number) cannot hold orthogonal pieces; such
filters are pooled into one block per tensor (normalised like ``layer``), and counted
in the subspace's attrs (``pooled_filters``).

Cost: O(D·d) arithmetic, no forward pass (``hessian``: the HVPs of two capped Lanczos runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from lossatlas.engine import (
    ConfigError,
    ParamLayout,
    PointRef,
    StepContext,
    Subspace,
    SubspacePlugin,
    option,
)

__all__ = [
    "FilterNormalized",
    "HessianPlane",
    "ThreePoints",
    "UserDirections",
    "block_ids",
    "centred_axis",
    "normalized_directions",
    "plane_grid",
    "unit_cosine",
]

Norm = Literal["filter", "layer", "none"]
Scale = Literal["relative", "absolute"]


# ------------------------------------------------------------------------ grids


def centred_axis(span: float, points: int) -> np.ndarray:
    """``points`` (odd) equidistant values in [−span, span] whose middle one is exactly 0."""
    if points < 1 or points % 2 == 0:
        raise ConfigError(f"a centred grid needs an odd number of points, got {points}")
    axis = np.linspace(-span, span, points) if points > 1 else np.zeros(1)
    axis[points // 2] = 0.0
    return axis


def plane_grid(
    origin: torch.Tensor,
    directions: torch.Tensor,
    alpha: float | torch.Tensor,
    beta: np.ndarray | torch.Tensor,
) -> torch.Tensor:
    """Points x + α·δ + β_j·η for one α and every β_j: a (len(β), D) block (one grid row)."""
    b = torch.as_tensor(np.asarray(beta), dtype=origin.dtype, device=origin.device)
    d = directions.to(origin.device, origin.dtype)
    row = origin + float(alpha) * d[0]
    return row.unsqueeze(0) + b.unsqueeze(1) * d[1].unsqueeze(0)


# ------------------------------------------------------------ filter normalisation


def block_ids(
    layout: ParamLayout, norm: Norm, include_bias_and_norm: bool, min_size: int = 1
) -> tuple[np.ndarray, dict[str, int]]:
    """(D,) int array: the normalisation block of each coordinate (−1: left at zero).

    ``filter``: one block per output filter of a weight (a row of a Linear weight, an
    output channel of a conv kernel); filters with fewer than ``min_size`` entries are
    pooled into one block per tensor. ``layer``: one block per tensor. ``none``: one
    block for all included coordinates. Biases and norm-layer scales are excluded (−1)
    unless ``include_bias_and_norm``; then each such tensor is one block.
    """
    ids = np.full(layout.D, -1, dtype=np.int64)
    nxt = 0
    pooled = 0
    for e in layout.entries:
        if e.kind != "weight" and not include_bias_and_norm:
            continue
        if norm == "none":
            ids[e.start : e.stop] = 0
            nxt = 1
            continue
        per = e.size // e.shape[0] if e.kind == "weight" and e.shape else e.size
        if norm == "filter" and e.kind == "weight" and per >= min_size:
            n_f = e.shape[0]
            ids[e.start : e.stop] = nxt + np.repeat(np.arange(n_f), per)
            nxt += n_f
        else:
            if norm == "filter" and e.kind == "weight":
                pooled += e.shape[0]
            ids[e.start : e.stop] = nxt
            nxt += 1
    return ids, {"blocks": int(nxt), "pooled_filters": int(pooled)}


def _block_dot(a: torch.Tensor, b: torch.Tensor, idx: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.zeros(n, dtype=a.dtype, device=a.device)
    return out.index_add_(0, idx, a * b)


def normalized_directions(
    x: torch.Tensor,
    layout: ParamLayout,
    d: int,
    generator: torch.Generator,
    *,
    norm: Norm = "filter",
    include_bias_and_norm: bool = False,
    orthogonal: bool = True,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """d Gaussian directions (d, D), normalised per filter/layer like x (Li et al. 2018).

    Each block b (see :func:`block_ids`) of each direction gets the norm ‖x_b‖ of x on
    that block; coordinates outside every block (biases, norm scales by default) are 0.
    With ``orthogonal`` the directions are Gram–Schmidt orthogonalised *within each
    block* before the rescaling, so they are exactly orthogonal as whole vectors and
    exactly normalised per block. ``norm="none"``: one block for everything, so the
    directions are orthogonal with norm ‖x‖ (over the included coordinates).

    Returns (directions in float64 on x's device, info) with ``info["cosine"]`` the
    measured cosines between distinct directions (float64) and the block counts.
    Cost: O(d²·D). Random numbers come from ``generator`` on the CPU, so the result
    does not depend on the device.
    """
    D = layout.D
    ids_np, info = block_ids(layout, norm, include_bias_and_norm, min_size=d if orthogonal else 1)
    if info["blocks"] == 0:
        raise ConfigError(
            "filter normalisation: the model has no weights to normalise; "
            "set include_bias_and_norm = true or norm = 'none'"
        )
    dev = x.device
    mask = torch.from_numpy(ids_np >= 0).to(dev)
    x64 = x.detach().to(torch.float64) * mask  # coordinates outside every block count nowhere
    idx = torch.from_numpy(np.where(ids_np >= 0, ids_np, 0)).to(dev)
    n = info["blocks"]
    tiny = torch.finfo(torch.float64).tiny
    Z = torch.randn(d, D, generator=generator, dtype=torch.float64).to(dev)
    Z = Z * mask
    dirs: list[torch.Tensor] = []
    for i in range(d):
        z = Z[i]
        if orthogonal:
            for _ in range(2):  # twice is enough (Kahan)
                for q in dirs:
                    coef = _block_dot(z, q, idx, n) / _block_dot(q, q, idx, n).clamp_min(tiny)
                    z = z - coef[idx] * q * mask
        dirs.append(z)
    target = _block_dot(x64, x64, idx, n).sqrt()
    out = []
    for z in dirs:
        zn = _block_dot(z, z, idx, n).sqrt()
        factor = torch.where(zn > 0, target / zn.clamp_min(tiny), torch.zeros_like(zn))
        out.append(z * factor[idx] * mask)
    V = torch.stack(out)
    info = {
        **info,
        "norm": norm,
        "include_bias_and_norm": include_bias_and_norm,
        "orthogonal": orthogonal,
        "cosine": unit_cosine(V),
    }
    return V, info


def unit_cosine(V: torch.Tensor) -> list[float]:
    """Cosines between distinct rows of V (upper triangle, row-major), in float64."""
    W = V.detach().to(torch.float64)
    nrm = torch.linalg.vector_norm(W, dim=1).clamp_min(torch.finfo(torch.float64).tiny)
    C = (W @ W.T) / (nrm[:, None] * nrm[None, :])
    iu = torch.triu_indices(W.shape[0], W.shape[0], 1)
    return [float(c) for c in C[iu[0], iu[1]].cpu()]


def _scaled(V: torch.Tensor, x: torch.Tensor, scale: Scale) -> torch.Tensor:
    """Unit rows × ‖x‖ (relative) or × 1 (absolute)."""
    U = V / torch.linalg.vector_norm(V, dim=1, keepdim=True)
    if scale == "relative":
        r = float(x.norm())
        if r == 0:
            raise ConfigError("scale = 'relative' at a point of norm 0; use scale = 'absolute'")
        U = U * r
    return U


def _basis(V: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    return V.T.contiguous().to(origin.device, origin.dtype)


# ----------------------------------------------------------------- subspace plugins


@dataclass
class FilterNormalizedOptions:
    dim: int = field(default=2, metadata={"ge": 1, "doc": "number of directions"})
    norm: Norm = field(
        default="filter",
        metadata={"doc": "'filter' (Li et al. 2018), 'layer', or 'none' (one block: norm ‖x‖)"},
    )
    include_bias_and_norm: bool = field(
        default=False,
        metadata={"doc": "also move biases and norm-layer scales (each tensor one block)"},
    )
    orthogonal: bool = field(
        default=True,
        metadata={"doc": "orthogonalise within each block: exactly orthogonal and normalised"},
    )


class FilterNormalized(SubspacePlugin[FilterNormalizedOptions]):
    name = "filter-normalized"
    summary = "Gaussian directions normalised per filter like x (Li et al. 2018), orthogonal"
    Options = FilterNormalizedOptions

    def build(
        self,
        options: FilterNormalizedOptions,
        ctx: StepContext,
        origin: torch.Tensor,
        generator: torch.Generator,
    ) -> Subspace:
        V, info = normalized_directions(
            origin,
            ctx.objective.layout,
            options.dim,
            generator,
            norm=options.norm,
            include_bias_and_norm=options.include_bias_and_norm,
            orthogonal=options.orthogonal,
        )
        return Subspace(
            origin=origin,
            basis=_basis(V, origin),
            attrs={"kind": f"random-{options.norm}-normalized", **info},
        )


@dataclass
class HessianOptions:
    split: Literal["train", "validation"] = field(
        default="train", metadata={"doc": "the loss whose Hessian is used"}
    )
    tol: float = field(
        default=0.0,
        metadata={
            "ge": 0,
            "doc": "Lanczos tolerance: ‖Hv − θv‖ ≤ tol·‖H‖ (0: 1e-9 in float64, 1e-5 in float32)",
        },
    )
    maxiter: int = field(
        default=0, metadata={"ge": 0, "doc": "Lanczos restarts at most (0: bounded by max_hvp)"}
    )
    max_hvp: int = field(
        default=0,
        metadata={
            "ge": 0,
            "doc": "HVPs per eigenpair at most (0: D where the dense Hessian fits; 5000)",
        },
    )
    scale: Scale = field(
        default="relative",
        metadata={"doc": "'relative': unit eigenvectors × ‖x‖; 'absolute': unit eigenvectors"},
    )
    flat_tol: float = option(
        0.0,
        doc="an eigenvalue within its bound + flat_tol·max|λ| of 0 is flat (the point's "
        "shape is then 'degenerate'; 0: 1e-9 float64, 1e-5 float32)",
        ge=0,
    )


class HessianPlane(SubspacePlugin[HessianOptions]):
    name = "hessian"
    summary = "the two dominant Hessian directions (λ_max, λ_min), Böttcher & Wheeler App. B"
    Options = HessianOptions

    def build(
        self,
        options: HessianOptions,
        ctx: StepContext,
        origin: torch.Tensor,
        generator: torch.Generator,
    ) -> Subspace:
        from lossatlas.engine.curvature import hessian_directions, hvp_operator

        obj = ctx.objective
        try:
            res = hessian_directions(
                hvp_operator(obj, origin, options.split),
                obj.D,
                tol=options.tol or None,
                maxiter=options.maxiter or None,
                max_hvp=options.max_hvp or None,
                flat_tol=options.flat_tol or None,
                generator=generator,
            )
        except ConfigError as exc:
            step = getattr(getattr(ctx, "step", None), "name", None)
            where = f"step '{step}': " if step else ""
            raise ConfigError(f"{where}subspace 'hessian': {exc}") from None
        if res.is_zero:
            step = getattr(getattr(ctx, "step", None), "name", None)
            where = f"step '{step}': " if step else ""
            raise ConfigError(
                f"{where}subspace 'hessian': the Hessian is zero here (H·v = 0 for every "
                "vector tried): no direction dominates (all ReLU units dead?)"
            )
        V = _scaled(res.eigenvectors.to(torch.float64), origin, options.scale)
        return Subspace(
            origin=origin,
            basis=_basis(V, origin),
            attrs={
                **res.attrs(),
                "kind": "hessian",
                "eigenvalues": [float(v) for v in res.eigenvalues],
                "converged": bool(res.converged),
                "opposite_sign_found": bool(res.opposite_sign_found),
                "scale": options.scale,
                "cosine": unit_cosine(V),
            },
        )


@dataclass
class UserDirectionsOptions:
    vectors: list[PointRef] = field(
        default_factory=list,
        metadata={
            "min_items": 1,
            "doc": "the directions: 'STEP.VAR', 'RUN/STEP.VAR' or 'checkpoint:PATH' (≥ 1)",
        },
    )
    normalize: Literal["none", "unit", "filter", "layer"] = field(
        default="none",
        metadata={
            "doc": "rescale each direction: as given, to unit norm (× ‖x‖ if relative), or "
            "per filter/layer like x"
        },
    )
    orthogonalize: bool = field(
        default=False,
        metadata={"doc": "Gram–Schmidt the directions in the order given (before 'unit' scaling)"},
    )
    scale: Scale = field(
        default="relative",
        metadata={"doc": "with normalize = 'unit': × ‖x‖ ('relative') or not ('absolute')"},
    )


def _rescale_blocks(
    V: torch.Tensor, x: torch.Tensor, layout: ParamLayout, norm: Norm
) -> torch.Tensor:
    ids_np, info = block_ids(layout, norm, include_bias_and_norm=False)
    idx = torch.from_numpy(np.where(ids_np >= 0, ids_np, 0)).to(V.device)
    mask = torch.from_numpy(ids_np >= 0).to(V.device)
    n = info["blocks"]
    x64 = x.to(torch.float64) * mask
    target = _block_dot(x64, x64, idx, n).sqrt()
    rows = []
    for v in V * mask:
        vn = _block_dot(v, v, idx, n).sqrt()
        f = torch.where(vn > 0, target / vn.clamp_min(1e-300), torch.zeros_like(vn))
        rows.append(v * f[idx] * mask)
    return torch.stack(rows)


class UserDirections(SubspacePlugin[UserDirectionsOptions]):
    name = "user-directions"
    summary = "directions stored by earlier steps or checkpoints, optionally normalised"
    Options = UserDirectionsOptions

    def build(
        self,
        options: UserDirectionsOptions,
        ctx: StepContext,
        origin: torch.Tensor,
        generator: torch.Generator,
    ) -> Subspace:
        V = torch.stack([ctx.resolve_point(r).to(torch.float64) for r in options.vectors])
        if options.orthogonalize:
            Q, R = torch.linalg.qr(V.T)
            if torch.any(torch.abs(torch.diagonal(R)) < 1e-12 * torch.abs(R).max()):
                raise ConfigError(
                    "subspace 'user-directions': the vectors are linearly "
                    "dependent; drop one or set orthogonalize = false"
                )
            V = (Q * torch.sign(torch.diagonal(R))).T * torch.linalg.vector_norm(V, dim=1)[:, None]
        if torch.any(torch.linalg.vector_norm(V, dim=1) == 0):
            raise ConfigError("subspace 'user-directions': a direction is zero")
        if options.normalize == "unit":
            V = _scaled(V, origin, options.scale)
        elif options.normalize in ("filter", "layer"):
            V = _rescale_blocks(V, origin, ctx.objective.layout, options.normalize)
        return Subspace(
            origin=origin,
            basis=_basis(V, origin),
            attrs={
                "kind": "user",
                "vectors": [str(r) for r in options.vectors],
                "cosine": unit_cosine(V),
            },
        )


@dataclass
class ThreePointsOptions:
    points: list[PointRef] = field(
        default_factory=list,
        metadata={
            "min_items": 2,
            "max_items": 3,
            "doc": "2 models (plane through the origin point and them) or 3 (the first is "
            "the origin)",
        },
    )
    basis: Literal["raw", "orthonormal"] = field(
        default="raw",
        metadata={
            "doc": "'raw': columns b − a, c − a (models at (0,0), (1,0), (0,1)); "
            "'orthonormal': Gram–Schmidt, coordinates are distances"
        },
    )


class ThreePoints(SubspacePlugin[ThreePointsOptions]):
    name = "three-points"
    summary = "the plane through three models (Garipov et al. 2018 style)"
    Options = ThreePointsOptions

    def build(
        self,
        options: ThreePointsOptions,
        ctx: StepContext,
        origin: torch.Tensor,
        generator: torch.Generator,
    ) -> Subspace:
        pts = [ctx.resolve_point(r).to(torch.float64) for r in options.points]
        a = pts[0] if len(pts) == 3 else origin.to(torch.float64)
        b, c = pts[-2], pts[-1]
        V = torch.stack([b - a, c - a])
        if torch.linalg.matrix_rank(V) < 2:
            raise ConfigError(
                "subspace 'three-points': the models are collinear (or equal); they span no plane"
            )
        coords = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
        if options.basis == "orthonormal":
            u = V[0] / V[0].norm()
            w = V[1] - (V[1] @ u) * u
            w = w / w.norm()
            coords = [[0.0, 0.0], [float(V[0] @ u), 0.0], [float(V[1] @ u), float(V[1] @ w)]]
            V = torch.stack([u, w])
        return Subspace(
            origin=a.to(origin.device, origin.dtype),
            basis=_basis(V, origin),
            attrs={
                "kind": "three-points",
                "points": [str(p) for p in options.points],
                "model_coords": coords,
                "cosine": unit_cosine(V),
            },
        )
