"""``projection-curvature``: how random 2-D projections see a saddle (Böttcher & Wheeler,
seed 001, §II.3 and §III.1, Figs. 1, 2 and 4).

For an ensemble of random plane directions δ, η (entries N(0, 1), as in the paper, or
unit vectors) the projected Hessian

    H̃ = [[δᵀHδ, δᵀHη], [ηᵀHδ, ηᵀHη]]

is computed exactly (two HVPs per projection) together with its eigenvalues, the
principal curvatures κ̃_min ≤ κ̃_max of the 2-D loss picture. ``finalize`` gives the
fraction of projections that show the saddle (κ̃_min < −t < t < κ̃_max, with
t = flat_tol·max(|κ̃_min|, |κ̃_max|): a principal curvature within t of zero is flat,
and such a projection counts as flat/degenerate, not as a saddle or a minimum; the
fractions of minima, maxima and flat projections are stored too), the ensemble mean
of H̃ (the *expected projected Hessian*, eq. 22: Tr H · I for Gaussian directions,
Tr H / D · I for unit ones) and its eigenvalues, and the ensemble means of κ̃ — the two
ways of averaging that §III.1 contrasts.

``landscape = "eq26"``: ½Σ±x², equal numbers of ±1 curvatures (Tr H = 0): ≈ 70% of
projections show the saddle, while the expected projection is flat.
``landscape = "eq31"``: more positive curvatures (Tr H = N − 2k): the saddle almost
never shows (0 of 10,000 for N = 1000, k = 200; ≈ 0.5% for N = 50, k = 10).
``landscape = "model"``: the same study at a point of the run's model.

The two dominant Hessian directions are also found (eigsh + annihilation, or exactly on
the quadratic landscapes): along them the projected Hessian is diag(λ_max, λ_min), a
saddle whenever H has curvature of both signs (Fig. 4a).

Cost: 2 HVPs per projection (O(D) each on the quadratic landscapes), batched
``chunk`` projections at a time; one cell per ``block`` of projections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr

from lossatlas.engine import (
    Cell,
    ConfigError,
    Estimate,
    Plan,
    PointRef,
    Probe,
    StepContext,
    Variable,
    figures,
    grid_estimate,
)
from lossatlas.engine.curvature import SHAPES, default_flat_tol, shape_codes
from lossatlas.plugins.probes.trace import DENSE_LIMIT, check_landscape, landscape_for

__all__ = ["ProjectionCurvatureOptions", "ProjectionCurvatureProbe", "projected_hessians"]


@dataclass
class ProjectionCurvatureOptions:
    landscape: Literal["model", "eq26", "eq31"] = field(
        default="eq26",
        metadata={"doc": "'eq26'/'eq31': seed 001's quadratic saddles; 'model': the run's model"},
    )
    n_params: int = field(default=1000, metadata={"doc": "N of the quadratic landscapes"})
    n_negative: int = field(
        default=200, metadata={"doc": "k, negative curvatures of eq31 (eq26: N/2)"}
    )
    at: PointRef = field(
        default=PointRef("init"), metadata={"doc": "the point (landscape = 'model')"}
    )
    projections: int = field(default=10000, metadata={"ge": 1, "doc": "random 2-D projections"})
    block: int = field(default=1000, metadata={"ge": 1, "doc": "projections per cell"})
    chunk: int = field(default=64, metadata={"ge": 1, "doc": "projections per batched HVP call"})
    normalize: Literal["none", "unit"] = field(
        default="none",
        metadata={
            "doc": "'none': Gaussian directions (the paper; E[H̃] = Tr H·I); 'unit': unit "
            "vectors (E[H̃] = Tr H/D·I)"
        },
    )
    split: Literal["train", "validation"] = field(
        default="train",
        metadata={"doc": "the loss whose Hessian is projected (landscape = 'model')"},
    )
    exact: Literal["auto", "dense", "none"] = field(
        default="auto",
        metadata={
            "doc": f"landscape = 'model': Tr H from the dense Hessian, 'auto' (D ≤ "
            f"{DENSE_LIMIT}), 'dense' or 'none'"
        },
    )
    flat_tol: float = field(
        default=0.0,
        metadata={
            "ge": 0,
            "doc": "a principal curvature within flat_tol·max|κ̃| of 0 is flat: the "
            "projection is then flat/degenerate, not a saddle (0: 1e-9 in float64, "
            "1e-5 in float32)",
        },
    )

    def validate(self) -> None:
        if self.projections % self.block:
            raise ValueError(
                f"option 'block' ({self.block}) must divide 'projections' ({self.projections})"
            )


def projected_hessians(
    hvp: Any,
    D: int,
    generator: torch.Generator,
    n: int,
    *,
    unit: bool = False,
    chunk: int = 64,
    dtype: torch.dtype = torch.float64,
    device: Any = "cpu",
) -> np.ndarray:
    """(n, 3) rows (δᵀHδ, δᵀHη, ηᵀHη) for n random pairs of Gaussian (or unit) directions.

    Directions are drawn in float64 on the CPU from ``generator`` (δ then η per chunk).
    Cost: 2n HVPs, in batched calls of 2·``chunk``.
    """
    out = []
    for i in range(0, n, chunk):
        k = min(chunk, n - i)
        Z = torch.randn(2 * k, D, generator=generator, dtype=torch.float64)
        if unit:
            Z = Z / torch.linalg.vector_norm(Z, dim=1, keepdim=True)
        HZ = hvp(Z.to(device, dtype)).to("cpu", torch.float64)
        d, e, Hd, He = Z[:k], Z[k:], HZ[:k], HZ[k:]
        out.append(
            torch.stack(
                [(d * Hd).sum(1), 0.5 * ((d * He).sum(1) + (e * Hd).sum(1)), (e * He).sum(1)], dim=1
            )
        )
    return torch.cat(out).numpy()


def _eig2(h11: np.ndarray, h12: np.ndarray, h22: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (min, max) of symmetric 2 × 2 matrices, elementwise."""
    m = 0.5 * (h11 + h22)
    r = np.sqrt(0.25 * (h11 - h22) ** 2 + h12**2)
    return m - r, m + r


class ProjectionCurvatureProbe(Probe[ProjectionCurvatureOptions]):
    name = "projection-curvature"
    points = ()  # no (param,) results for later steps
    summary = "ensembles of random 2-D projected Hessians: how often a saddle looks like one"
    Options = ProjectionCurvatureOptions

    def check(self, options: ProjectionCurvatureOptions, ctx: StepContext) -> None:
        if options.landscape != "model":
            check_landscape(options, ctx)
        elif options.exact == "dense" and ctx.objective.D > 20000:
            raise ConfigError(
                f"step '{ctx.step.name}': exact = 'dense' with D={ctx.objective.D:,} would "
                f"form a {ctx.objective.D:,}² Hessian; use exact = 'none'"
            )

    def estimate(self, options: ProjectionCurvatureOptions, ctx: StepContext) -> Estimate:
        """Cells, evaluations and bytes from the options (see :class:`Estimate`)."""
        n = ctx.objective.D if options.landscape == "model" else options.n_params
        return grid_estimate(
            ctx,
            options.projections // options.block,
            options.block * 6,
            hvps=options.projections * 4,
            cell_bytes=options.chunk * 4 * n * 8,
            drivers=("projections", "block", "chunk"),
        )

    def plan(self, options: ProjectionCurvatureOptions, ctx: StepContext) -> Plan:
        hvp, _loss, x, D, desc = landscape_for(options, ctx)
        scale = 1.0 if options.normalize == "none" else 1.0 / D
        if options.landscape == "model":
            from lossatlas.engine.curvature import hessian_directions

            try:
                res = hessian_directions(
                    hvp,
                    D,
                    generator=ctx.generator("eigen"),
                    flat_tol=options.flat_tol or None,
                )
            except ConfigError as exc:
                raise ConfigError(f"step '{ctx.step.name}': Hessian directions: {exc}") from None
            lam = np.asarray(res.eigenvalues, float)
            trace, trace_method = float("nan"), "none"
            if options.exact == "dense" or (options.exact == "auto" and D <= DENSE_LIMIT):
                H = ctx.objective.hessian(x, options.split).detach().to("cpu", torch.float64)
                trace, trace_method = float(torch.trace(H)), f"dense Hessian ({D} HVPs)"
            info = {
                **res.attrs(),
                "algorithm": "thick-restart Lanczos (or dense) + annihilation (seed 001 App. B)",
            }
        else:
            w = hvp.eigenvalues
            lam = np.asarray([w[-1], w[0]], float)
            trace, trace_method = hvp.trace, "analytic"
            tol = options.flat_tol or default_flat_tol(torch.float64)
            shape = SHAPES[int(shape_codes(lam[0], lam[1], tol))]
            info = {"method": "analytic", "shape": shape, "flat_tol": tol}
        n_blocks = options.projections // options.block
        dims = ("block", "projection")
        dtype = getattr(hvp, "dtype", torch.float64)
        flat_tol = options.flat_tol or default_flat_tol(dtype)
        v = {
            "h11": Variable(dims, "δᵀHδ", "loss / parameter²"),
            "h12": Variable(dims, "δᵀHη", "loss / parameter²"),
            "h22": Variable(dims, "ηᵀHη", "loss / parameter²"),
            "kappa_min": Variable(
                dims, "smaller principal curvature of the projection", "loss / parameter²"
            ),
            "kappa_max": Variable(
                dims, "larger principal curvature of the projection", "loss / parameter²"
            ),
        }
        return Plan(
            coords={
                "block": np.arange(n_blocks),
                "projection": np.arange(options.block),
                "eigen": np.asarray(["max", "min"]),
            },
            cell_dims=("block",),
            variables=v,
            static={
                "hessian_eigenvalues": (
                    ("eigen",),
                    lam,
                    {
                        "description": "dominant eigenvalues of H (λ_max, λ_min): the principal "
                        "curvatures of the projection along the Hessian directions",
                        "units": "loss / parameter²",
                        **info,
                    },
                ),
                "exact_trace": (
                    (),
                    np.float64(trace),
                    {
                        "description": "Tr H (NaN: not computed; see option 'exact')",
                        "units": "loss / parameter²",
                        "method": trace_method,
                    },
                ),
                "expected_scale": (
                    (),
                    np.float64(scale),
                    {"description": "E[H̃] = expected_scale · Tr H · I (eq. 22)", "units": ""},
                ),
            },
            attrs={
                "landscape": desc,
                "D": int(D),
                "flat_tol": float(flat_tol),
                "shape_rule": "per projection, t = flat_tol·max(|κ̃_min|, |κ̃_max|): saddle "
                "κ̃_min < −t and κ̃_max > t; minimum κ̃_min > t; maximum κ̃_max < −t; else flat",
                "normalize": options.normalize,
                "n_hvp_per_projection": 2,
                "n_hvp": 2 * options.projections,
            },
        )

    def compute(
        self, options: ProjectionCurvatureOptions, ctx: StepContext, cell: Cell
    ) -> dict[str, Any]:
        hvp, _loss, _x, D, _desc = landscape_for(options, ctx)
        dtype = getattr(hvp, "dtype", torch.float64)
        device = getattr(hvp, "device", "cpu")
        h = projected_hessians(
            hvp,
            D,
            cell.generator(),
            options.block,
            unit=options.normalize == "unit",
            chunk=options.chunk,
            dtype=dtype,
            device=device,
        )
        kmin, kmax = _eig2(h[:, 0], h[:, 1], h[:, 2])
        return {
            "h11": h[:, 0],
            "h12": h[:, 1],
            "h22": h[:, 2],
            "kappa_min": kmin,
            "kappa_max": kmax,
        }

    def finalize(
        self, options: ProjectionCurvatureOptions, ctx: StepContext, ds: xr.Dataset
    ) -> xr.Dataset | None:
        return ensemble_summary(ds)

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        return plot_projections(ds)


def projection_shapes(ds: xr.Dataset) -> np.ndarray:
    """Shape code (index into ``SHAPES``) of every stored projection, flattened, by the
    result's ``flat_tol`` (0 for results stored before it existed: plain signs)."""
    kmin = np.asarray(ds["kappa_min"].values, float).reshape(-1)
    kmax = np.asarray(ds["kappa_max"].values, float).reshape(-1)
    return shape_codes(kmax, kmin, float(ds.attrs.get("flat_tol", 0.0)))


def ensemble_summary(ds: xr.Dataset) -> xr.Dataset:
    """Shape fractions, expected projected Hessian and mean principal curvatures."""
    flat = {
        k: np.asarray(ds[k].values, float).reshape(-1)
        for k in ("h11", "h12", "h22", "kappa_min", "kappa_max")
    }
    codes = projection_shapes(ds)
    frac = {name: float(np.mean(codes == i)) for i, name in enumerate(SHAPES)}
    m11, m12, m22 = (float(np.mean(flat[k])) for k in ("h11", "h12", "h22"))
    emin, emax = _eig2(np.asarray(m11), np.asarray(m12), np.asarray(m22))
    u = "loss / parameter²"
    t = "t = flat_tol·max|κ̃|"
    out = {
        "saddle_fraction": (
            (),
            frac["saddle"],
            f"fraction of projections showing a saddle, κ̃_min < −t and κ̃_max > t ({t})",
            "",
        ),
        "minimum_fraction": ((), frac["minimum"], f"fraction with κ̃_min > t ({t})", ""),
        "maximum_fraction": ((), frac["maximum"], f"fraction with κ̃_max < −t ({t})", ""),
        "flat_fraction": (
            (),
            frac["degenerate"],
            f"fraction with a principal curvature within t of 0 ({t}): flat/degenerate",
            "",
        ),
        "expected_h11": ((), m11, "ensemble mean of δᵀHδ", u),
        "expected_h12": ((), m12, "ensemble mean of δᵀHη", u),
        "expected_h22": ((), m22, "ensemble mean of ηᵀHη", u),
        "expected_kappa_min": ((), float(emin), "smaller eigenvalue of the mean H̃", u),
        "expected_kappa_max": ((), float(emax), "larger eigenvalue of the mean H̃", u),
        "mean_kappa_min": ((), float(np.mean(flat["kappa_min"])), "mean of κ̃_min", u),
        "mean_kappa_max": ((), float(np.mean(flat["kappa_max"])), "mean of κ̃_max", u),
    }
    return xr.Dataset(
        {
            k: xr.Variable(d, np.float64(v), {"description": desc, "units": un})
            for k, (d, v, desc, un) in out.items()
        }
    )


def plot_projections(ds: Any) -> Any:
    """Fig. 1 (running ensemble means vs number of projections) and Fig. 2 (histograms)."""
    import matplotlib.pyplot as plt

    flat = {
        k: np.asarray(ds[k].values, float).reshape(-1)
        for k in ("h11", "h12", "h22", "kappa_min", "kappa_max")
    }
    S = np.arange(1, flat["h11"].size + 1)
    run = {k: np.cumsum(v) / S for k, v in flat.items()}
    tr = float(ds["exact_trace"].values)
    expected = tr * float(ds["expected_scale"].values)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for k, c in (("h11", "C0"), ("h22", "C1"), ("h12", "C2")):
        ax.plot(S, run[k], color=c, lw=1, label=f"⟨{k}⟩")
    if np.isfinite(expected):
        ax.axhline(expected, color="k", ls="--", lw=1, label=f"E[h11] = E[h22] = {expected:.4g}")
        ax.axhline(0, color="0.5", ls=":", lw=1)
    figures.log_axis(ax, "x")
    ax.set_xlabel("number of projections S")
    ax.set_ylabel(figures.quantity(ds, "h11", "running mean"))
    ax.set_title("ensemble means of the projected Hessian (Fig. 1a/c)", fontsize=9)
    ax.legend()
    ax = axes[1]
    ax.plot(S, run["kappa_min"], color="C3", lw=1, label="⟨κ̃_min⟩")
    ax.plot(S, run["kappa_max"], color="C4", lw=1, label="⟨κ̃_max⟩")
    emin, emax = _eig2(run["h11"], run["h12"], run["h22"])
    ax.plot(S, emin, color="C3", ls="--", lw=1, label="eigenvalues of ⟨H̃⟩")
    ax.plot(S, emax, color="C4", ls="--", lw=1)
    ax.axhline(0, color="0.5", ls=":", lw=1)
    figures.log_axis(ax, "x")
    ax.set_xlabel("number of projections S")
    ax.set_ylabel(figures.quantity(ds, "kappa_min", "principal curvature"))
    ax.set_title("principal curvatures: mean of κ̃ vs κ̃ of the mean (Fig. 1b/d)", fontsize=9)
    ax.legend()
    ax = axes[2]
    bins = 60
    ax.hist(flat["kappa_min"], bins=bins, alpha=0.6, color="C3", label="κ̃_min")
    ax.hist(flat["kappa_max"], bins=bins, alpha=0.6, color="C4", label="κ̃_max")
    ax.axvline(0, color="k", lw=0.8)
    saddle = float(np.mean(projection_shapes(ds) == SHAPES.index("saddle")))
    lam = ds["hessian_eigenvalues"].values
    ax.set_title(
        f"saddle seen in {100 * saddle:.2f}% of {S[-1]} projections; "
        f"Hessian directions: κ = {lam[0]:.3g}, {lam[1]:.3g}",
        fontsize=9,
    )
    ax.set_xlabel(figures.quantity(ds, "kappa_min", "principal curvature of the projection"))
    ax.set_ylabel("projections")
    ax.legend()
    fig.suptitle(ds.attrs.get("landscape", ""), fontsize=9)
    fig.tight_layout()
    return fig
