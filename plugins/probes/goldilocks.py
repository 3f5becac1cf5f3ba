"""``goldilocks``: curvature on random hyperplanes through random points at radius r.

Fort & Scherlis 2019 (seed 000), Figs. 3 and 4. For each radius r (log-spaced,
relative to r_Xavier), subspace dimension d and sample, draw a Xavier initialisation
rescaled to radius r (biases 0) and a random d-dim hyperplane x = P + Mθ through it,
and compute on it the exact d × d Hessian H_d = Mᵀ H M (d batched Hessian-vector
products) and its eigenvalues (``torch.linalg.eigvalsh``, float64):

- Tr(H_d), ‖H_d‖ (Frobenius, √Σ h_i²) and the ratio Tr(H_d)/‖H_d‖ — large in the
  Goldilocks zone, about independent of d once d ≫ (Tr H/‖H‖)²;
- the fraction of positive eigenvalues — above ½ in the zone, falling as d grows. An
  eigenvalue counts as positive (negative) only beyond flat_tol·max|λ| (default 1e-9 in
  float64, 1e-5 in float32; attr ``flat_tol``); within it it is *flat*
  (``frac_flat``), so the null space of a degenerate Hessian is neither;
- loss and accuracy at the point.

``finalize`` adds mean ± σ over samples and the radius where the mean ratio peaks
(which should sit near r_Xavier). Cost per cell: d HVPs over the Hessian's split
plus one evaluation of the point; memory D·d for a dense M (O(d√D) sparse).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from lossatlas.engine import (
    Cell,
    Estimate,
    Plan,
    Probe,
    ShapeError,
    StepContext,
    Variable,
    figures,
    grid_estimate,
)
from lossatlas.engine.curvature import default_flat_tol, sign_counts
from lossatlas.engine.geometry import draw_init, init_radius, layer_metric

__all__ = [
    "Goldilocks",
    "GoldilocksOptions",
    "hessian_stats",
    "plot_compare",
    "radius_grid",
]


# ----------------------------------------------------------- shared helpers


def radius_grid(options: Any, ctx: StepContext) -> tuple[np.ndarray, np.ndarray, float]:
    """(absolute radii, radii relative to the reference, reference radius) of a probe
    whose options have radius_min, radius_max, radii and radius_unit."""
    layout = ctx.objective.layout
    ref = 1.0 if options.radius_unit == "absolute" else init_radius(layout, options.radius_unit)
    rel = np.geomspace(options.radius_min, options.radius_max, options.radii)
    if options.radii == 1:
        rel = np.array([options.radius_min])
    return rel * ref, rel, ref


def hessian_stats(H: torch.Tensor, flat_tol: float | None = None) -> dict[str, Any]:
    """Tr, Frobenius norm, ratio, eigenvalues and sign counts of a symmetric H.

    An eigenvalue is positive (negative) only beyond ``flat_tol``·max|λ| (default by
    H's dtype, :func:`~lossatlas.engine.curvature.default_flat_tol`), else flat."""
    tol = default_flat_tol(H.dtype) if flat_tol is None else float(flat_tol)
    Hd = H.detach().to("cpu", torch.float64)
    eig = torch.linalg.eigvalsh(Hd)
    tr = float(eig.sum())
    fro = float(torch.sqrt((eig**2).sum()))
    npos, nneg, nflat = sign_counts(eig, tol)
    n = eig.numel()
    return {
        "trace": tr,
        "norm": fro,
        "ratio": tr / fro if fro > 0 else np.nan,
        "n_positive": npos,
        "n_negative": nneg,
        "n_flat": nflat,
        "frac_positive": npos / n,
        "frac_negative": nneg / n,
        "frac_flat": nflat / n,
        "flat_tol": tol,
        "eig_max": float(eig[-1]),
        "eig_min": float(eig[0]),
        "eigenvalues": eig.numpy(),
    }


def _validate_radii(o: Any) -> None:
    if not 0 < o.radius_min <= o.radius_max:
        raise ValueError(f"need 0 < radius_min ≤ radius_max, got {o.radius_min}, {o.radius_max}")
    if o.radii < 1:
        raise ValueError(f"option 'radii' must be at least 1, got {o.radii}")


def _validate_basis(o: Any) -> None:
    """The sparse-fort count range of a probe's options (0 = the default of each end)."""
    if o.nnz_min < 0 or o.nnz_max < 0:
        raise ValueError(
            f"options 'nnz_min'/'nnz_max' must be ≥ 0 (0: default), got {o.nnz_min}, {o.nnz_max}"
        )
    if o.nnz_min and o.nnz_max and o.nnz_min > o.nnz_max:
        raise ValueError(f"need nnz_min ≤ nnz_max, got nnz_min={o.nnz_min} > nnz_max={o.nnz_max}")


def _span(options: Any, ctx: StepContext) -> int:
    """How many coordinates a probe's subspaces may use: D, or the weights only."""
    layout = ctx.objective.layout
    if getattr(options, "directions", "all") == "weights":
        return int(layout.mask("weight").sum())
    return int(ctx.objective.D)


def _check_dims(
    dims: list[int], options: Any, ctx: StepContext, where: str, extra: int = 0
) -> None:
    """Refuse, before anything is written, a d that does not fit: d + ``extra`` (1 for a
    hypersphere's radial direction) must be ≤ the coordinates the subspaces span."""
    n = _span(options, ctx)
    D = int(ctx.objective.D)
    for d in dims:
        if d + extra > n:
            need = f"dim={d} + 1 (a hypersphere's radial direction)" if extra else f"dim={d}"
            if n < D:
                has = f"{n:,}, the model's weight coordinates (of D={D:,}; directions = 'weights')"
            else:
                has = f"D={D} (the model has {D:,} parameters)"
            raise ShapeError(f"{where}: subspace {need} > {has}; use dims ≤ {n - extra}")


@dataclass
class GoldilocksOptions:
    radius_min: float = field(
        default=0.01, metadata={"doc": "smallest radius, in units of radius_unit"}
    )
    radius_max: float = field(default=100.0, metadata={"doc": "largest radius"})
    radii: int = field(default=9, metadata={"doc": "number of log-spaced radii"})
    radius_unit: Literal["xavier", "he", "absolute"] = field(
        default="xavier", metadata={"doc": "radii are multiples of r_Xavier, of r_He, or absolute"}
    )
    dims: list[int] = field(
        default_factory=lambda: [10, 40],
        metadata={
            "ge": 1,
            "min_items": 1,
            "doc": "hyperplane dimensions d",
        },
    )
    samples: int = field(
        default=3,
        metadata={
            "ge": 1,
            "doc": "random points (and planes) per (r, d)",
        },
    )
    init: Literal["xavier", "he"] = field(
        default="xavier",
        metadata={"doc": "the initialisation whose draws are rescaled to radius r"},
    )
    basis: Literal["dense", "sparse-fort", "sparse-chang"] = field(
        default="dense",
        metadata={
            "doc": "dense orthonormal M, or sparse near-orthogonal (seed 000 / seed 004 recipe)"
        },
    )
    nnz_min: int = field(default=0, metadata={"doc": "sparse-fort: fewest non-zeros per column"})
    nnz_max: int = field(default=0, metadata={"doc": "sparse-fort: most non-zeros per column"})
    metric: bool = field(
        default=False, metadata={"doc": "use ηM with η_ii ∝ 1/r_layer (seed 000 §2.1)"}
    )
    include_bias: bool = field(
        default=False,
        metadata={"doc": "radius over all parameters (else weights only; biases are drawn 0)"},
    )
    directions: Literal["all", "weights"] = field(
        default="all",
        metadata={"doc": "hyperplanes span all coordinates, or weights only (biases fixed at 0)"},
    )
    split: Literal["train", "validation"] = field(
        default="train", metadata={"doc": "split the Hessian is taken on"}
    )
    eigenvalues: bool = field(
        default=False,
        metadata={"doc": "also store every eigenvalue of H_d (padded with NaN to max(dims))"},
    )
    flat_tol: float = field(
        default=0.0,
        metadata={
            "ge": 0,
            "doc": "|λ| ≤ flat_tol·max|λ| counts as flat, neither positive nor negative "
            "(0: 1e-9 in float64, 1e-5 in float32)",
        },
    )

    def validate(self) -> None:
        _validate_radii(self)
        _validate_basis(self)


STAT_VARS = {
    "trace": ("Tr(H_d), the total curvature on the hyperplane", "loss units"),
    "norm": ("‖H_d‖, Frobenius norm √Σh_i²", "loss units"),
    "ratio": ("Tr(H_d)/‖H_d‖", ""),
    "frac_positive": (
        "fraction of positive eigenvalues of H_d (λ > flat_tol·max|λ|)",
        "fraction",
    ),
    "n_positive": ("number of positive eigenvalues of H_d (λ > flat_tol·max|λ|)", "count"),
    "frac_negative": ("fraction of negative eigenvalues of H_d (λ < −flat_tol·max|λ|)", "fraction"),
    "frac_flat": (
        "fraction of flat eigenvalues of H_d (|λ| ≤ flat_tol·max|λ|: zero within the accuracy)",
        "fraction",
    ),
    "eig_max": ("largest eigenvalue of H_d", "loss units"),
    "eig_min": ("smallest eigenvalue of H_d", "loss units"),
}


def _basis_kwargs(options: Any, ctx: StepContext) -> dict[str, Any]:
    """``make_basis`` keywords from a probe's options: the sparse-fort count range (None:
    the recipe's default for the spanned coordinates), the metric η of the draws'
    scheme, and the support (weights only, or None for all coordinates)."""
    from lossatlas.plugins.subspaces.hyperplane import default_nnz

    layout = ctx.objective.layout
    nnz = None
    if options.nnz_min or options.nnz_max:
        lo, hi = default_nnz(_span(options, ctx))
        lo = options.nnz_min or min(lo, options.nnz_max)
        nnz = (lo, max(lo, options.nnz_max or hi))
    scheme = getattr(options, "init", "xavier")
    eta = layer_metric(layout, scheme) if options.metric else None
    support = layout.mask("weight") if options.directions == "weights" else None
    return {"nnz": nnz, "eta": eta, "support": support}


def _hyperplane(
    options: Any, ctx: StepContext, x: torch.Tensor, d: int, g: torch.Generator
) -> torch.Tensor:
    from lossatlas.plugins.subspaces.hyperplane import make_basis

    kw = _basis_kwargs(options, ctx)
    return make_basis(ctx.objective.D, d, g, options.basis, dtype=x.dtype, **kw).to(x.device)


class Goldilocks(Probe[GoldilocksOptions]):
    name = "goldilocks"
    points = ()  # no (param,) results for later steps
    summary = "Tr(H)/‖H‖ and positive eigenvalues on random hyperplanes vs radius (seed 000)"
    Options = GoldilocksOptions

    def check(self, options: GoldilocksOptions, ctx: StepContext) -> None:
        _check_dims(options.dims, options, ctx, f"probe 'goldilocks' (step '{ctx.step.name}')")

    def estimate(self, options: GoldilocksOptions, ctx: StepContext) -> Estimate:
        """Cells, evaluations and bytes from the options (see :class:`Estimate`)."""
        cells = options.radii * len(options.dims) * options.samples
        d = max(options.dims)
        per = 2 * len(ctx.objective.metric_names()) + 8 + (d if options.eigenvalues else 0)
        D = ctx.objective.D
        return grid_estimate(
            ctx,
            cells,
            per,
            points_per_cell=1,
            hvps=options.radii * options.samples * sum(options.dims),
            cell_bytes=(D * d + 2 * d * d) * 8,
            drivers=("radii", "dims", "samples"),
        )

    def plan(self, options: GoldilocksOptions, ctx: StepContext) -> Plan:
        obj = ctx.objective
        radii, rel, ref = radius_grid(options, ctx)
        dims = ("radius", "dim", "sample")
        variables = {
            f"{s}_{m}": Variable(
                dims,
                f"{m} at the point on the {s} split",
                units="fraction" if m == "accuracy" else "nats",
            )
            for s in ("train", "validation")
            for m in obj.metric_names()
        }
        for k, (desc, units) in STAT_VARS.items():
            variables[k] = Variable(dims, desc, units=units)
        coords = {
            "radius": radii,
            "dim": np.asarray(options.dims, dtype=np.int64),
            "sample": np.arange(options.samples),
        }
        if options.eigenvalues:
            coords["eig"] = np.arange(max(options.dims))
            variables["eigenvalues"] = Variable(
                (*dims, "eig"), "eigenvalues of H_d, ascending, NaN-padded", finite=False
            )
        lay = obj.layout
        return Plan(
            coords=coords,
            cell_dims=dims,
            variables=variables,
            static={
                "radius_relative": (
                    ("radius",),
                    rel,
                    {
                        "description": f"r / r_{options.radius_unit}"
                        if options.radius_unit != "absolute"
                        else "r (absolute)"
                    },
                ),
                "r_xavier": (
                    (),
                    np.float64(init_radius(lay, "xavier")),
                    {"description": "mean radius of a Xavier init (weights)"},
                ),
                "r_he": (
                    (),
                    np.float64(init_radius(lay, "he")),
                    {"description": "mean radius of a He init (weights)"},
                ),
            },
            coord_attrs={
                "radius": {
                    "description": "radius of the random point, "
                    + ("all parameters" if options.include_bias else "weights only (biases 0)"),
                    "units": "‖x‖",
                },
                "dim": {"description": "hyperplane dimension d"},
            },
            attrs={
                "flat_tol": options.flat_tol or default_flat_tol(obj.dtype),
                "sign_rule": "an eigenvalue of H_d is positive (negative) beyond "
                "flat_tol·max|λ|, else flat",
                "radius_over": "all parameters" if options.include_bias else "weights",
                "r_reference": ref,
                "radius_unit": options.radius_unit,
                "basis": options.basis,
                "metric": int(options.metric),
                "directions": options.directions,
                "n_params": obj.D,
            },
        )

    def compute(self, options: GoldilocksOptions, ctx: StepContext, cell: Cell) -> dict[str, Any]:
        obj = ctx.objective
        r = float(cell.coords["radius"])
        d = int(cell.coords["dim"])
        g = cell.generator()
        x = draw_init(
            obj.layout,
            g,
            scheme=options.init,
            radius=r,
            include_bias=options.include_bias,
            dtype=obj.dtype,
            device=obj.device,
        )
        M = _hyperplane(options, ctx, x, d, g)
        stats = hessian_stats(
            obj.subspace_hessian(x, M, split=options.split), options.flat_tol or None
        )
        out: dict[str, Any] = {k: v[0] for k, v in obj.evaluate_both(x.unsqueeze(0)).items()}
        out.update({k: stats[k] for k in STAT_VARS})
        if options.eigenvalues:
            pad = np.full(max(options.dims), np.nan)
            pad[:d] = stats["eigenvalues"]
            out["eigenvalues"] = pad
        return out

    def finalize(self, options: GoldilocksOptions, ctx: StepContext, ds: Any) -> Any:
        import xarray as xr

        out = xr.Dataset()
        names = ["ratio", "frac_positive", "frac_flat", "trace", "norm"]
        names += ["train_loss", "validation_loss"]
        names += [n for n in ("train_accuracy", "validation_accuracy") if n in ds]
        for k in names:
            out[f"{k}_mean"] = ds[k].mean("sample")
            out[f"{k}_std"] = ds[k].std("sample")
            out[f"{k}_mean"].attrs = {"description": f"mean over samples of {k}"}
            out[f"{k}_std"].attrs = {"description": f"standard deviation over samples of {k}"}
        mean = ds["ratio"].mean("sample").transpose("radius", "dim").values
        r = ds["radius"].values
        peak = np.array(
            [
                r[int(np.argmax(np.where(np.isfinite(c), c, -np.inf)))]
                if np.isfinite(c).any()
                else np.nan
                for c in mean.T
            ]
        )
        out["peak_radius"] = (
            ("dim",),
            peak,
            {"description": "radius where the mean Tr/‖H‖ peaks", "units": "‖x‖"},
        )
        return out

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        return plot_compare({"": ds}, **kwargs)

    def plot_many(self, datasets: Any, **kwargs: Any) -> Any:
        """Seed 000 Fig. 4: Tr/‖H‖ vs r / r_Xavier of several results on one figure."""
        return plot_compare(dict(datasets), **kwargs)


def _band(ax: Any, x: np.ndarray, mean: np.ndarray, std: np.ndarray, **kw: Any) -> None:
    ax.plot(x, mean, **kw)
    ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=kw.get("color"), lw=0)


def mark_reference(ax: Any, ds: Any, label: bool = True) -> None:
    """Vertical line at r_Xavier (and r_He, dotted) on a radius axis."""
    if "r_xavier" in ds:
        ax.axvline(
            float(ds["r_xavier"]), color="k", ls="--", lw=1, label="r_Xavier" if label else None
        )
    if "r_he" in ds:
        ax.axvline(float(ds["r_he"]), color="0.5", ls=":", lw=1, label="r_He" if label else None)


def plot_compare(datasets: dict[str, Any], **kwargs: Any) -> Any:
    """Seed 000 Fig. 3 (fraction positive and Tr/‖H‖ vs r, one curve per d, ±σ bands)
    for one result, or Fig. 4 (Tr/‖H‖ vs r for several architectures) for several
    (``{label: dataset}``); radius axes log-scaled, r_Xavier marked."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    k = 0
    relative = len(datasets) > 1  # architectures differ in r_Xavier: compare r / r_ref
    for label, ds in datasets.items():
        r = ds["radius_relative"].values if relative else ds["radius"].values
        for d in ds["dim"].values:
            sel = ds.sel(dim=d)
            name = f"{label} d={int(d)}".strip()
            for ax, var in zip(axes, ("frac_positive", "ratio"), strict=True):
                v = sel[var]
                _band(
                    ax,
                    r,
                    v.mean("sample").values,
                    v.std("sample").values,
                    color=f"C{k % 10}",
                    label=name,
                    marker="o",
                    ms=3,
                )
            k += 1
    first = next(iter(datasets.values()))
    for ax in axes:
        figures.log_axis(ax, "x")
        if relative:
            unit = first.attrs.get("radius_unit", "xavier")
            ax.axvline(
                1.0,
                color="k",
                ls="--",
                lw=1,
                label=f"r_{unit.capitalize()}" if ax is axes[1] else None,
            )
            ax.set_xlabel(f"radius r / r_{unit.capitalize()} (each architecture's own)")
        else:
            mark_reference(ax, first, label=ax is axes[1])
            ax.set_xlabel(radius_label(first))
    axes[0].axhline(0.5, color="0.6", lw=0.8)
    axes[0].set_ylabel("fraction of positive eigenvalues of H_d")
    axes[0].set_title("(a) fraction of positive eigenvalues")
    axes[1].axhline(0.0, color="0.6", lw=0.8)
    axes[1].set_ylabel("Tr(H_d) / ‖H_d‖")
    axes[1].set_title("(b) Tr(H)/‖H‖ on random hyperplanes")
    axes[1].legend()
    fig.tight_layout()
    return fig


def radius_label(ds: Any) -> str:
    """``radius r [‖x‖] of the weights``: the stored radius coordinate's quantity and
    units (:func:`lossatlas.engine.figures.quantity`) and what it is measured over."""
    over = ds.attrs.get("radius_over", "weights")
    return f"{figures.quantity(ds, 'radius', 'radius r')} of the {over}"
