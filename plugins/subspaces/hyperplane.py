"""Random d-dim hyperplanes x = P + M·θ and hyperspheres ‖x‖ = r0 (seeds 000 and 004).

Fort & Scherlis (seed 000, §2.1) restrict a network to x(θ) = P + Mθ with M ∈ R^{D×d}
frozen, (near-)orthogonal columns and θ = 0 at the start. Three recipes for M:

- ``dense``: exactly orthonormal Gaussian directions (QR). Memory D·d.
- ``sparse-fort`` (seed 000): each column has a random number n of randomly placed
  non-zeros, each ±1/√n (n uniform in [nnz_min, nnz_max], default ≈ [√D/2, 3√D/2]).
- ``sparse-chang`` (seed 004): each entry is ±1 with probability 1/√D (about √D per
  column, d√D in all), columns normalised.

Sparse M stays a ``torch.sparse_coo`` tensor: memory O(nnz), products O(nnz). Two
columns with independent random supports have inner product of standard deviation
1/√D whatever n is, so they are near-orthogonal for D ≫ 1. The per-layer metric
M → ηM (η_ii ∝ 1/r_layer, :func:`lossatlas.engine.geometry.layer_metric`) is an option.

The hypersphere (seed 004) is x = Qφ with Q = [x̂0, M] ∈ R^{D×(d+1)} and ‖x‖ = r0,
a d-dimensional sphere through the rescaled start point r0·x̂0. Training on it removes
the radial component r̂·∇ℓ from the gradient and restores x ← x·r0/‖x‖ after every
step (:func:`remove_radial`, :func:`restore_radius`, :class:`SphereSubspace`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from lossatlas.engine import ConfigError, ShapeError, StepContext, Subspace, SubspacePlugin
from lossatlas.engine.geometry import layer_metric

from .random import orthonormal_gaussian

__all__ = [
    "Hyperplane",
    "HyperplaneOptions",
    "Hypersphere",
    "HypersphereOptions",
    "SphereSubspace",
    "StackedProjection",
    "make_basis",
    "remove_radial",
    "restore_radius",
    "sparse_chang",
    "sparse_fort",
]

BasisKind = Literal["dense", "sparse-fort", "sparse-chang"]


# ----------------------------------------------------------------- the recipes


def _positions(D: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` distinct random positions in [0, D) (fast for n ≪ D: draw, drop repeats,
    top up)."""
    if n >= D:
        return torch.arange(D)
    if n > D // 4:
        return torch.randperm(D, generator=generator)[:n].sort().values
    got = torch.unique(torch.randint(0, D, (n,), generator=generator))
    while got.numel() < n:
        extra = torch.randint(0, D, (n - got.numel(),), generator=generator)
        got = torch.unique(torch.cat([got, extra]))
    return got


def _signs(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=generator).to(torch.float64) * 2 - 1


def _coo(
    rows: list[torch.Tensor], vals: list[torch.Tensor], D: int, d: int, dtype: torch.dtype
) -> torch.Tensor:
    cols = [torch.full_like(r, j) for j, r in enumerate(rows)]
    idx = torch.stack([torch.cat(rows), torch.cat(cols)])
    return torch.sparse_coo_tensor(
        idx, torch.cat(vals).to(dtype), (D, d), check_invariants=False
    ).coalesce()


def sparse_fort(
    D: int,
    d: int,
    generator: torch.Generator,
    nnz: tuple[int, int] | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Seed 000's sparse near-orthogonal M (D, d): column j has n_j ~ U{lo..hi} random
    non-zeros, each ±1/√n_j (unit columns). Cost O(d·n), memory O(d·n)."""
    lo, hi = nnz or default_nnz(D)
    lo, hi = max(1, min(lo, D)), max(1, min(hi, D))
    rows, vals = [], []
    for _ in range(d):
        n = int(torch.randint(lo, hi + 1, (1,), generator=generator))
        pos = _positions(D, n, generator)
        rows.append(pos)
        vals.append(_signs(pos.numel(), generator) / math.sqrt(pos.numel()))
    return _coo(rows, vals, D, d, dtype)


def sparse_chang(
    D: int,
    d: int,
    generator: torch.Generator,
    density: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Seed 004's sparse M (D, d): each entry ±1 with probability p = 1/√D (about √D
    per column), then columns normalised. Cost O(d√D), memory O(d√D)."""
    p = density if density is not None else 1.0 / math.sqrt(D)
    counts = torch.binomial(
        torch.full((d,), float(D), dtype=torch.float64),
        torch.full((d,), p, dtype=torch.float64),
        generator=generator,
    )
    rows, vals = [], []
    for j in range(d):
        pos = _positions(D, max(1, int(counts[j])), generator)
        rows.append(pos)
        vals.append(_signs(pos.numel(), generator) / math.sqrt(pos.numel()))
    return _coo(rows, vals, D, d, dtype)


def default_nnz(D: int) -> tuple[int, int]:
    """Seed 000's count range when none is given: n ∈ [⌈√D/2⌉, ⌈3√D/2⌉] (mean ≈ √D)."""
    s = math.sqrt(D)
    return max(1, math.ceil(s / 2)), max(1, math.ceil(1.5 * s))


def make_basis(
    D: int,
    d: int,
    generator: torch.Generator,
    kind: str = "dense",
    *,
    nnz: tuple[int, int] | None = None,
    eta: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
    support: torch.Tensor | None = None,
) -> torch.Tensor:
    """M (D, d) by ``kind`` (dense | sparse-fort | sparse-chang), rescaled to ηM when the
    metric ``eta`` (D,) is given. Sparse results are coalesced COO tensors. ``support``
    (a bool (D,) mask, e.g. the weights) confines the directions to those coordinates:
    the recipe is applied in R^{|support|} and scattered into R^D."""
    if support is not None:
        rows = torch.nonzero(support.cpu(), as_tuple=True)[0]
        sub_eta = None if eta is None else eta.cpu()[rows]
        Ms = make_basis(int(rows.numel()), d, generator, kind, nnz=nnz, eta=sub_eta, dtype=dtype)
        if Ms.layout == torch.strided:
            M = torch.zeros(D, d, dtype=dtype)
            M[rows] = Ms
            return M
        idx = Ms.indices().clone()
        idx[0] = rows[idx[0]]
        return torch.sparse_coo_tensor(idx, Ms.values(), (D, d)).coalesce()
    if d > D:
        raise ShapeError(f"a {d}-dim subspace does not fit in D={D} parameters; use dim ≤ {D}")
    if kind == "dense":
        M = orthonormal_gaussian(D, d, generator, torch.float64)
        if eta is not None:
            M = M * eta.to(torch.float64).cpu().unsqueeze(1)
        return M.to(dtype)
    if kind == "sparse-fort":
        M = sparse_fort(D, d, generator, nnz, torch.float64)
    elif kind == "sparse-chang":
        M = sparse_chang(D, d, generator, None, torch.float64)
    else:
        raise ConfigError(f"basis '{kind}' is not known; use dense, sparse-fort or sparse-chang")
    if eta is not None:
        idx = M.indices()
        vals = M.values() * eta.to(torch.float64).cpu()[idx[0]]
        M = torch.sparse_coo_tensor(idx, vals, M.shape).coalesce()
    return M.to(dtype)


# ----------------------------------------------------------------- hypersphere


def remove_radial(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """g − (r̂·g) r̂ with r̂ = x/‖x‖ (rows of (..., D) batches independently)."""
    r = x / x.norm(dim=-1, keepdim=True)
    return g - (g * r).sum(dim=-1, keepdim=True) * r


def restore_radius(x: torch.Tensor, r0: float | torch.Tensor) -> torch.Tensor:
    """x·r0/‖x‖ (rows independently): back onto the sphere of radius r0."""
    r0 = torch.as_tensor(r0, dtype=x.dtype, device=x.device)
    if r0.ndim == 1:
        r0 = r0.unsqueeze(-1)
    return x * (r0 / x.norm(dim=-1, keepdim=True))


@dataclass
class SphereSubspace(Subspace):
    """A d-dim hypersphere x = Qφ, ‖x‖ = r0, Q = [x̂0, M] (D, d+1), origin 0.

    ``theta0`` = (r0, 0, …, 0) is the start point r0·x̂0. After an optimiser step on φ,
    :meth:`restore` rescales φ so that ‖Qφ‖ = r0 exactly (seed 004); :meth:`tangent`
    removes the radial part of a gradient given in x-space before it is pulled back.
    """

    radius: float = 0.0

    @property
    def sphere_dim(self) -> int:
        return self.dim - 1

    @property
    def theta0(self) -> torch.Tensor:
        t = torch.zeros(self.dim, dtype=self.origin.dtype, device=self.origin.device)
        t[0] = self.radius
        return t

    def pullback(self, g: torch.Tensor) -> torch.Tensor:
        """Qᵀg for g of shape (D,) or (B, D)."""
        single = g.ndim == 1
        G = g.reshape(-1, g.shape[-1]).to(self.origin.dtype)
        if self.basis.layout != torch.strided:
            out = torch.sparse.mm(self.basis.t(), G.T).T
        else:
            out = G @ self.basis
        return out[0] if single else out

    def tangent(self, theta: torch.Tensor, g_x: torch.Tensor) -> torch.Tensor:
        """Qᵀ(g − (r̂·g) r̂) at x = Qθ: the θ-gradient with its radial part removed."""
        return self.pullback(remove_radial(self.embed(theta), g_x))

    def restore(self, theta: torch.Tensor) -> torch.Tensor:
        """θ·r0/‖Qθ‖, so that ‖Qθ‖ = r0."""
        x = self.embed(theta)
        n = x.norm(dim=-1, keepdim=theta.ndim > 1)
        return theta * (self.radius / n)


# -------------------------------------------------- many subspaces as one map


class StackedProjection:
    """R affine maps x_r = o_r + M_r θ_r (all of dim d) applied as one differentiable op.

    Dense bases are stacked (R, D, d) and applied by one batched matmul; sparse bases
    are concatenated into one index list and applied by one gather + ``index_add``
    (memory O(total nnz)). Used to train many small subspace problems as an ensemble.
    """

    def __init__(self, subspaces: list[Subspace]) -> None:
        if not subspaces:
            raise ValueError("no subspaces")
        dims = {s.dim for s in subspaces}
        if len(dims) != 1:
            raise ShapeError(f"stacked subspaces must share one dim, got {sorted(dims)}")
        self.R = len(subspaces)
        self.d = subspaces[0].dim
        self.D = int(subspaces[0].origin.shape[0])
        self.origin = torch.stack([s.origin for s in subspaces])
        self.sparse = any(s.basis.layout != torch.strided for s in subspaces)
        if self.sparse:
            rows, cols, vals = [], [], []
            for r, s in enumerate(subspaces):
                B = s.basis if s.basis.layout != torch.strided else s.basis.to_sparse()
                B = B.to_sparse_coo().coalesce() if B.layout != torch.sparse_coo else B.coalesce()
                i = B.indices()
                rows.append(i[0] + r * self.D)
                cols.append(i[1] + r * self.d)
                vals.append(B.values())
            self.rows = torch.cat(rows).to(self.origin.device)
            self.cols = torch.cat(cols).to(self.origin.device)
            self.vals = torch.cat(vals).to(self.origin.device, self.origin.dtype)
        else:
            self.M = torch.stack([s.basis for s in subspaces]).to(self.origin.dtype)

    def embed(self, theta: torch.Tensor) -> torch.Tensor:
        """X (R, D) from θ (R, d); differentiable in θ."""
        if self.sparse:
            contrib = self.vals * theta.reshape(-1)[self.cols]
            flat = self.origin.reshape(-1).index_add(0, self.rows, contrib)
            return flat.reshape(self.R, self.D)
        return self.origin + torch.bmm(self.M, theta.unsqueeze(-1)).squeeze(-1)

    def pullback(self, G: torch.Tensor) -> torch.Tensor:
        """M_rᵀ g_r for G (R, D) → (R, d)."""
        if self.sparse:
            out = torch.zeros(self.R * self.d, dtype=G.dtype, device=G.device)
            out.index_add_(0, self.cols, self.vals * G.reshape(-1)[self.rows])
            return out.reshape(self.R, self.d)
        return torch.bmm(G.unsqueeze(1), self.M).squeeze(1)


# --------------------------------------------------------------------- plugins


@dataclass
class HyperplaneOptions:
    dim: int = field(default=10, metadata={"ge": 1, "doc": "dimension d of the hyperplane"})
    basis: BasisKind = field(
        default="dense",
        metadata={"doc": "dense (orthonormal), sparse-fort (seed 000) or sparse-chang (seed 004)"},
    )
    nnz_min: int = field(
        default=0, metadata={"ge": 0, "doc": "sparse-fort: fewest non-zeros per column (0: ⌈√D/2⌉)"}
    )
    nnz_max: int = field(
        default=0, metadata={"ge": 0, "doc": "sparse-fort: most non-zeros per column (0: ⌈3√D/2⌉)"}
    )
    metric: bool = field(
        default=False, metadata={"doc": "rescale M → ηM with η_ii ∝ 1/r_layer (seed 000 §2.1)"}
    )
    metric_scheme: Literal["xavier", "he"] = field(
        default="xavier", metadata={"doc": "initialisation whose layer radii define η"}
    )
    directions: Literal["all", "weights"] = field(
        default="all",
        metadata={
            "doc": "span all coordinates, or weights only (biases fixed, as seed 000's theory)"
        },
    )

    def validate(self) -> None:
        if self.nnz_min and self.nnz_max and self.nnz_min > self.nnz_max:
            raise ValueError(f"nnz_min={self.nnz_min} > nnz_max={self.nnz_max}")


def _nnz(options: Any, D: int) -> tuple[int, int] | None:
    """The sparse-fort count range of ``options`` for ``D`` spanned coordinates; None
    (the recipe's own default) when neither end is set."""
    if not (options.nnz_min or options.nnz_max):
        return None
    lo, hi = default_nnz(D)
    lo = options.nnz_min or min(lo, options.nnz_max)
    return lo, max(lo, options.nnz_max or hi)


def _eta(options: Any, ctx: StepContext, dtype: torch.dtype) -> torch.Tensor | None:
    if not options.metric:
        return None
    return layer_metric(ctx.objective.layout, options.metric_scheme, dtype=torch.float64)


def _support(options: Any, ctx: StepContext) -> torch.Tensor | None:
    return ctx.objective.layout.mask("weight") if options.directions == "weights" else None


def _spanned(options: Any, ctx: StepContext, D: int) -> int:
    sup = _support(options, ctx)
    return D if sup is None else int(sup.sum())


class Hyperplane(SubspacePlugin[HyperplaneOptions]):
    name = "hyperplane"
    summary = "random d-dim hyperplane x = P + Mθ: dense orthonormal or sparse (seeds 000/004)"
    Options = HyperplaneOptions

    def build(
        self,
        options: HyperplaneOptions,
        ctx: StepContext,
        origin: torch.Tensor,
        generator: torch.Generator,
    ) -> Subspace:
        D = int(origin.shape[0])
        M = make_basis(
            D,
            options.dim,
            generator,
            options.basis,
            nnz=_nnz(options, _spanned(options, ctx, D)),
            eta=_eta(options, ctx, origin.dtype),
            dtype=origin.dtype,
            support=_support(options, ctx),
        )
        return Subspace(
            origin=origin,
            basis=M.to(origin.device),
            attrs={"kind": f"hyperplane-{options.basis}", "metric": int(options.metric)},
        )


@dataclass
class HypersphereOptions(HyperplaneOptions):
    radius: float = field(
        default=0.0,
        metadata={"ge": 0, "doc": "sphere radius r0 (0: the radius of the point it goes through)"},
    )

    def validate(self) -> None:
        super().validate()


def make_sphere(
    origin: torch.Tensor,
    d: int,
    generator: torch.Generator,
    kind: str = "dense",
    *,
    radius: float = 0.0,
    nnz: tuple[int, int] | None = None,
    eta: torch.Tensor | None = None,
    support: torch.Tensor | None = None,
) -> SphereSubspace:
    """The d-dim hypersphere of radius r0 (default ‖origin‖) through r0·x̂ (x̂ = origin's
    direction): Q = [x̂, M], with M's columns made orthogonal to x̂ when dense."""
    D = int(origin.shape[0])
    n = D if support is None else int(support.sum())
    if d + 1 > n:
        raise ShapeError(
            f"a {d}-dim hypersphere needs d+1 ≤ {n} directions (its radial one and d more); "
            f"use dim ≤ {n - 1}"
        )
    norm = float(origin.norm())
    if norm == 0:
        raise ConfigError(
            "a hypersphere through the point 0 is undefined; start from a point of non-zero radius"
        )
    r0 = radius or norm
    xhat = origin.detach().to(torch.float64).cpu() / norm
    M = make_basis(D, d, generator, kind, nnz=nnz, eta=eta, dtype=torch.float64, support=support)
    if M.layout == torch.strided:
        M = M - xhat.unsqueeze(1) * (xhat @ M).unsqueeze(0)
        if eta is None:
            M, _ = torch.linalg.qr(M)
        Q = torch.cat([xhat.unsqueeze(1), M], dim=1)
    else:
        idx = M.indices()
        head = torch.stack([torch.arange(D), torch.zeros(D, dtype=torch.long)])
        Q = torch.sparse_coo_tensor(
            torch.cat([head, idx + torch.tensor([[0], [1]])], dim=1),
            torch.cat([xhat, M.values()]),
            (D, d + 1),
        ).coalesce()
    dt, dev = origin.dtype, origin.device
    return SphereSubspace(
        origin=torch.zeros(D, dtype=dt, device=dev),
        basis=Q.to(dev, dt),
        attrs={"kind": f"hypersphere-{kind}", "sphere_dim": d, "radius": r0},
        radius=r0,
    )


class Hypersphere(SubspacePlugin[HypersphereOptions]):
    name = "hypersphere"
    summary = "random d-dim hypersphere ‖x‖ = r0 through a point (seed 000 Fig. 2b, seed 004)"
    Options = HypersphereOptions

    def build(
        self,
        options: HypersphereOptions,
        ctx: StepContext,
        origin: torch.Tensor,
        generator: torch.Generator,
    ) -> Subspace:
        D = int(origin.shape[0])
        return make_sphere(
            origin,
            options.dim,
            generator,
            options.basis,
            radius=options.radius,
            nnz=_nnz(options, _spanned(options, ctx, D)),
            eta=_eta(options, ctx, origin.dtype),
            support=_support(options, ctx),
        )
