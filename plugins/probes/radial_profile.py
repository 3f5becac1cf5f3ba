"""``radial-profile``: mean loss, Tr(H) and ‖H‖ of random points versus their radius.

Fort & Scherlis 2019 (seed 000), Fig. 5 and §2.5–2.6.

- Fig. 5a: the mean loss ⟨L⟩ at random Xavier-shaped points rescaled to radius r is
  flat (≈ log C for C classes) inside the zone and grows as a power law r^{n_L} above
  it, n_L = the number of weight layers for ReLU networks. ``finalize`` fits the
  exponent on the radii above the zone (``fit_above``; by default where ⟨L⟩ exceeds
  5× its small-radius value) and stores it with n_L for comparison.
- Fig. 5b: Tr(H_d)/r and ‖H_d‖/r on random d-dim hyperplanes for several d; the
  radii where the two curves cross (Tr/‖H‖ = 1) mark the zone's inner and outer edges.
  The Laplacian (Stokes) relation, eq. 4, ⟨Tr H⟩ = ∂²⟨L⟩/∂r² + (n−1)/r·∂⟨L⟩/∂r in
  the n-dim weight space the points are drawn in, is stored too, as the prediction
  (d/n)·⟨Tr H⟩ for Tr(H_d) on an orthonormal d-plane of weights
  (``directions = "weights"``), from log-log derivatives of the measured ⟨L⟩(r)
  (:func:`stokes_laplacian`). Eq. 4 averages over the uniform sphere; Xavier-shaped
  points are uniform only when every layer has the same σ, so it is a prediction, not
  an identity. ``plot_compare`` draws Fig. 5a for several architectures.

One cell per radius: ``samples`` points evaluated in one vmapped pass, and
``hessian_samples`` × len(dims) subspace Hessians (d batched HVPs each).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lossatlas.engine import (
    Cell,
    Estimate,
    Plan,
    Probe,
    StepContext,
    Variable,
    figures,
    grid_estimate,
)
from lossatlas.engine.geometry import draw_init, init_radius

from .goldilocks import (
    _check_dims,
    _hyperplane,
    _validate_basis,
    _validate_radii,
    hessian_stats,
    mark_reference,
    radius_grid,
    radius_label,
)

__all__ = [
    "RadialProfile",
    "RadialProfileOptions",
    "find_crossings",
    "fit_power_law",
    "plot_compare",
    "stokes_laplacian",
]


@dataclass
class RadialProfileOptions:
    radius_min: float = field(default=0.01, metadata={"doc": "smallest radius (radius_unit)"})
    radius_max: float = field(default=100.0, metadata={"doc": "largest radius"})
    radii: int = field(default=13, metadata={"doc": "number of log-spaced radii"})
    radius_unit: Literal["xavier", "he", "absolute"] = field(
        default="xavier", metadata={"doc": "radii are multiples of r_Xavier, of r_He, or absolute"}
    )
    init: Literal["xavier", "he"] = field(
        default="xavier", metadata={"doc": "initialisation whose draws are rescaled to radius r"}
    )
    samples: int = field(default=16, metadata={"ge": 1, "doc": "random points per radius for ⟨L⟩"})
    dims: list[int] = field(
        default_factory=lambda: [5, 20, 50],
        metadata={"ge": 1, "min_items": 1, "doc": "hyperplane dimensions d for Tr(H_d) and ‖H_d‖"},
    )
    hessian_samples: int = field(
        default=2,
        metadata={
            "ge": 0,
            "doc": "random points (and planes) per radius and d for the Hessian (0: none)",
        },
    )
    basis: Literal["dense", "sparse-fort", "sparse-chang"] = field(
        default="dense", metadata={"doc": "hyperplane basis recipe"}
    )
    nnz_min: int = field(default=0, metadata={"doc": "sparse-fort: fewest non-zeros per column"})
    nnz_max: int = field(default=0, metadata={"doc": "sparse-fort: most non-zeros per column"})
    metric: bool = field(default=False, metadata={"doc": "use ηM (η_ii ∝ 1/r_layer)"})
    directions: Literal["all", "weights"] = field(
        default="all",
        metadata={"doc": "hyperplanes span all coordinates, or weights only (biases fixed at 0)"},
    )
    include_bias: bool = field(
        default=False,
        metadata={"doc": "radius over all parameters (else weights only; biases are drawn 0)"},
    )
    split: Literal["train", "validation"] = field(
        default="train", metadata={"doc": "split of ⟨L⟩ and of the Hessian"}
    )
    fit_above: float = field(
        default=0.0,
        metadata={
            "doc": "fit the power law on radii ≥ this (radius_unit); 0: where ⟨L⟩ ≥ 5× its "
            "small-radius value"
        },
    )

    def validate(self) -> None:
        _validate_radii(self)
        _validate_basis(self)


def fit_power_law(r: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares (exponent, prefactor) of y = c·r^p in log-log space."""
    ok = np.isfinite(y) & (y > 0) & (r > 0)
    if ok.sum() < 2:
        return np.nan, np.nan
    p, logc = np.polyfit(np.log(r[ok]), np.log(y[ok]), 1)
    return float(p), float(np.exp(logc))


def find_crossings(r: np.ndarray, f: np.ndarray) -> tuple[float, float]:
    """(inner, outer): the first radius where f crosses 0 upwards and the first
    downward crossing after it, linearly interpolated in log r; NaN where none."""
    inner = outer = np.nan
    lr = np.log(r)
    for i in range(len(r) - 1):
        a, b = f[i], f[i + 1]
        if not (np.isfinite(a) and np.isfinite(b)):
            continue
        if np.isnan(inner) and a <= 0 < b:
            inner = float(np.exp(lr[i] + (lr[i + 1] - lr[i]) * (-a) / (b - a)))
        elif not np.isnan(inner) and a > 0 >= b:
            outer = float(np.exp(lr[i] + (lr[i + 1] - lr[i]) * a / (a - b)))
            break
    if np.isnan(inner) and np.isfinite(f[0]) and f[0] > 0:
        # already inside the zone at the smallest radius: look for its outer edge only
        for i in range(len(r) - 1):
            a, b = f[i], f[i + 1]
            if np.isfinite(a) and np.isfinite(b) and a > 0 >= b:
                outer = float(np.exp(lr[i] + (lr[i + 1] - lr[i]) * a / (a - b)))
                break
    return inner, outer


def stokes_laplacian(r: np.ndarray, mean_loss: np.ndarray, n: int) -> np.ndarray:
    """The spherical-mean Laplacian of seed 000 eq. 4, ∂²⟨L⟩/∂r² + (n−1)/r·∂⟨L⟩/∂r, in
    R^n from ⟨L⟩ sampled at the (log-spaced) radii ``r``.

    Derivatives are taken in log-log space, where ⟨L⟩ is flat or a power law: with
    s = d ln⟨L⟩/d ln r (central differences, ``np.gradient``), ∂⟨L⟩/∂r = ⟨L⟩ s/r and
    ∂²⟨L⟩/∂r² = ⟨L⟩(s² − s + ds/d ln r)/r², so the Laplacian is
    ⟨L⟩/r² · (s² + (n−2)s + ds/d ln r) — exact for a power law on any grid (plain finite
    differences in r are off by a factor sinh(p h)/(p h) at a log step h). Needs ⟨L⟩ > 0
    (cross-entropy); NaN elsewhere. Cost O(len(r)).
    """
    r = np.asarray(r, float)
    L = np.asarray(mean_loss, float)
    if len(r) < 3:
        return np.full(len(r), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        lnL = np.where(L > 0, np.log(np.where(L > 0, L, 1.0)), np.nan)
        lr = np.log(r)
        s = np.gradient(lnL, lr, edge_order=2)
        ds = np.gradient(s, lr, edge_order=2)
        return L / r**2 * (s**2 + (n - 2) * s + ds)


class RadialProfile(Probe[RadialProfileOptions]):
    name = "radial-profile"
    points = ()  # no (param,) results for later steps
    summary = "mean loss (power law) and Tr(H)/r, ‖H‖/r versus radius (seed 000 Fig. 5)"
    Options = RadialProfileOptions

    def check(self, options: RadialProfileOptions, ctx: StepContext) -> None:
        _check_dims(options.dims, options, ctx, f"probe 'radial-profile' (step '{ctx.step.name}')")

    def estimate(self, options: RadialProfileOptions, ctx: StepContext) -> Estimate:
        """Cells, evaluations and bytes from the options (see :class:`Estimate`)."""
        nm = len(ctx.objective.metric_names())
        d = max(options.dims)
        per = options.samples * nm + 2 * len(options.dims) * options.hessian_samples
        return grid_estimate(
            ctx,
            options.radii,
            per,
            points_per_cell=options.samples,
            hvps=options.radii * options.hessian_samples * sum(options.dims),
            cell_bytes=(ctx.objective.D * d + d * d) * 8,
            drivers=("radii", "samples", "dims", "hessian_samples"),
        )

    def plan(self, options: RadialProfileOptions, ctx: StepContext) -> Plan:
        obj = ctx.objective
        radii, rel, ref = radius_grid(options, ctx)
        variables = {
            f"{options.split}_{m}": Variable(
                ("radius", "sample"),
                f"{m} at random points on the {options.split} split",
                units="fraction" if m == "accuracy" else "nats",
            )
            for m in obj.metric_names()
        }
        variables["trace"] = Variable(("radius", "dim", "hsample"), "Tr(H_d)", "loss units")
        variables["norm"] = Variable(
            ("radius", "dim", "hsample"), "‖H_d‖ (Frobenius)", "loss units"
        )
        n_layers = sum(1 for e in obj.layout.entries if e.kind == "weight")
        return Plan(
            coords={
                "radius": radii,
                "sample": np.arange(options.samples),
                "dim": np.asarray(options.dims, dtype=np.int64),
                "hsample": np.arange(options.hessian_samples),
            },
            cell_dims=("radius",),
            variables=variables,
            static={
                "radius_relative": (("radius",), rel, {"description": "r / reference radius"}),
                "r_xavier": (
                    (),
                    np.float64(init_radius(obj.layout, "xavier")),
                    {"description": "mean radius of a Xavier init (weights)"},
                ),
                "r_he": (
                    (),
                    np.float64(init_radius(obj.layout, "he")),
                    {"description": "mean radius of a He init (weights)"},
                ),
                "n_layers": (
                    (),
                    np.int64(n_layers),
                    {"description": "weight layers n_L (the predicted exponent)"},
                ),
            },
            coord_attrs={"radius": {"description": "radius of the random points", "units": "‖x‖"}},
            attrs={
                "radius_over": "all parameters" if options.include_bias else "weights",
                "r_reference": ref,
                "split": options.split,
                "n_params": obj.D,
                "n_weights": int(obj.layout.mask("weight").sum()),
                "directions": options.directions,
            },
        )

    def compute(
        self, options: RadialProfileOptions, ctx: StepContext, cell: Cell
    ) -> dict[str, Any]:
        obj = ctx.objective
        r = float(cell.coords["radius"])
        g = cell.generator()
        X = draw_init(
            obj.layout,
            g,
            scheme=options.init,
            radius=r,
            n=options.samples,
            include_bias=options.include_bias,
            dtype=obj.dtype,
            device=obj.device,
        )
        out: dict[str, Any] = {
            f"{options.split}_{k}": v for k, v in obj.evaluate(X, options.split).items()
        }
        nd, ns = len(options.dims), options.hessian_samples
        tr = np.full((nd, ns), np.nan)
        nm = np.full((nd, ns), np.nan)
        for s in range(ns):
            x = draw_init(
                obj.layout,
                g,
                scheme=options.init,
                radius=r,
                include_bias=options.include_bias,
                dtype=obj.dtype,
                device=obj.device,
            )
            for i, d in enumerate(options.dims):
                M = _hyperplane(options, ctx, x, int(d), g)
                st = hessian_stats(obj.subspace_hessian(x, M, split=options.split))
                tr[i, s], nm[i, s] = st["trace"], st["norm"]
        out["trace"], out["norm"] = tr, nm
        return out

    def finalize(self, options: RadialProfileOptions, ctx: StepContext, ds: Any) -> Any:
        import xarray as xr

        r = ds["radius"].values
        loss = ds[f"{options.split}_loss"]
        mean = loss.mean("sample").values
        out = xr.Dataset()
        out["loss_mean"] = (("radius",), mean, {"description": "mean loss over samples"})
        out["loss_std"] = (
            ("radius",),
            loss.std("sample").values,
            {"description": "standard deviation of the loss over samples"},
        )
        rel = ds["radius_relative"].values
        if options.fit_above > 0:
            use = rel >= options.fit_above
        else:
            flat = mean[0]
            use = mean >= 5 * flat
            if use.sum() < 2:
                use = np.zeros_like(use)
                use[-3:] = True
        p, c = fit_power_law(r[use], mean[use])
        out["exponent"] = (
            (),
            p,
            {
                "description": "fitted exponent p of ⟨L⟩ ∝ r^p above the "
                "zone (seed 000: = n_L for ReLU nets)"
            },
        )
        out["prefactor"] = ((), c, {"description": "fitted c of ⟨L⟩ = c·r^p"})
        out["fit_mask"] = (
            ("radius",),
            use.astype(np.int8),
            {"description": "1 where the radius was used in the power-law fit"},
        )
        if ds.sizes.get("hsample", 0):
            tr = ds["trace"].mean("hsample")
            nm = ds["norm"].mean("hsample")
            out["trace_mean"] = tr
            out["norm_mean"] = nm
            out["trace_std"] = ds["trace"].std("hsample")
            out["norm_std"] = ds["norm"].std("hsample")
            edges = np.full((ds.sizes["dim"], 2), np.nan)
            for i in range(ds.sizes["dim"]):
                t, n = tr.values[:, i], nm.values[:, i]
                edges[i] = find_crossings(r, (t - n) / np.where(n > 0, n, np.nan))
            for k, edge in enumerate(("inner", "outer")):
                out[f"zone_{edge}"] = (
                    ("dim",),
                    edges[:, k],
                    {
                        "description": f"{edge} edge of the zone: radius where Tr(H_d) = ‖H_d‖ "
                        "(NaN: no crossing)",
                        "units": "‖x‖",
                    },
                )
            n = int(ds.attrs.get("n_weights", 0) or ds.attrs.get("n_params", 0)) or 1
            lap = stokes_laplacian(r, mean, n)
            dims = ds["dim"].values.astype(float)
            out["trace_stokes"] = (
                ("radius", "dim"),
                lap[:, None] * dims[None, :] / n,
                {
                    "description": "(d/n)·[∂²⟨L⟩/∂r² + (n−1)/r·∂⟨L⟩/∂r] (n = weight "
                    "coordinates): the Stokes prediction of ⟨Tr H_d⟩ on weight-space planes "
                    "(eq. 4)"
                },
            )
        return out

    def plot_many(self, datasets: Any, **kwargs: Any) -> Any:
        """Seed 000 Fig. 5a: ⟨L⟩ vs r / r_Xavier of several architectures, with fits."""
        return plot_compare(dict(datasets), **kwargs)

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        import matplotlib.pyplot as plt

        has_h = "trace_mean" in ds
        fig, axes = plt.subplots(
            1, 2 if has_h else 1, figsize=(11 if has_h else 5.5, 4.2), squeeze=False
        )
        ax = axes[0, 0]
        _loss_panel(ax, ds, ds["radius"].values, "C0", "⟨L⟩ at random points")
        mark_reference(ax, ds)
        ax.set_xlabel(radius_label(ds))
        ax.set_title("(a) loss at random points vs radius")
        ax.legend()
        if has_h:
            _curvature_panel(axes[0, 1], ds)
        fig.tight_layout()
        return fig


def _loss_panel(ax: Any, ds: Any, x: np.ndarray, color: str, label: str) -> None:
    """⟨L⟩ ± σ over samples against ``x`` on log-log axes, with the power-law fit."""
    r = ds["radius"].values
    split = ds.attrs.get("split", "train")
    loss = ds[f"{split}_loss"]
    mean = ds["loss_mean"].values if "loss_mean" in ds else loss.mean("sample").values
    std = ds["loss_std"].values if "loss_std" in ds else loss.std("sample").values
    ax.plot(x, mean, "o-", ms=3, color=color, label=label)
    lo = np.maximum(mean - std, mean * 0.05)  # a log axis: keep the band's floor positive
    ax.fill_between(x, lo, mean + std, alpha=0.2, color=color, lw=0)
    if "exponent" in ds and np.isfinite(float(ds["exponent"])):
        use = ds["fit_mask"].values.astype(bool)
        p, c = float(ds["exponent"]), float(ds["prefactor"])
        n_l = int(ds["n_layers"]) if "n_layers" in ds else None
        ax.plot(
            x[use],
            c * r[use] ** p,
            "--",
            color="k" if color == "C0" else color,
            lw=1,
            label=f"fit ∝ r^{p:.2f}" + (f" (n_L = {n_l})" if n_l else ""),
        )
    figures.log_axis(ax, "x")
    figures.log_axis(ax, "y")
    ax.set_ylabel(figures.quantity(ds, f"{split}_loss", f"mean {split} loss"))


def _curvature_panel(ax: Any, ds: Any) -> None:
    """Seed 000 Fig. 5b: Tr(H_d)/r and ‖H_d‖/r ± σ per d, crossings marked."""
    r = ds["radius"].values
    for k, d in enumerate(ds["dim"].values):
        for var, mk, ls, name in (("trace", "o", "-", "Tr(H)/r"), ("norm", "s", "--", "‖H‖/r")):
            m = ds[f"{var}_mean"].sel(dim=d).values / r
            sd = ds[f"{var}_std"].sel(dim=d).values / r if f"{var}_std" in ds else 0 * m
            m = np.where(m > 0, m, np.nan)  # Tr(H_d) < 0 cannot be drawn on a log axis
            ax.plot(r, m, marker=mk, ls=ls, ms=3, color=f"C{k}", label=f"{name}, d={int(d)}")
            ax.fill_between(
                r, np.maximum(m - sd, m * 0.05), m + sd, color=f"C{k}", alpha=0.15, lw=0
            )
        for e in (float(ds["zone_inner"].sel(dim=d)), float(ds["zone_outer"].sel(dim=d))):
            if np.isfinite(e):
                ax.axvline(e, color=f"C{k}", lw=0.6, alpha=0.6)
    mark_reference(ax, ds, label=False)
    figures.log_axis(ax, "x")
    figures.log_axis(ax, "y")
    ax.set_xlabel(radius_label(ds))
    units = figures.units_of(ds, "trace_mean") or "loss units"
    ax.set_ylabel(f"Tr(H_d)/r and ‖H_d‖/r [{units} / ‖x‖]")
    ax.set_title("(b) Tr(H)/r (solid) and ‖H‖/r (dashed) ± σ; crossings = zone edges")
    ax.legend(ncol=2)


def plot_compare(datasets: dict[str, Any], **kwargs: Any) -> Any:
    """Seed 000 Fig. 5a for several architectures (``{label: dataset}``): ⟨L⟩ ± σ at
    random points against r / r_Xavier (each architecture's own), with each power-law
    fit and its exponent next to the architecture's number of layers n_L."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.6))
    for k, (label, ds) in enumerate(datasets.items()):
        rel = ds["radius"].values / float(ds["r_xavier"])
        _loss_panel(ax, ds, rel, f"C{(k + 1) % 10}", label)
    ax.axvline(1.0, color="k", ls="--", lw=1, label="r_Xavier")
    ax.set_xlabel("radius r / r_Xavier (each architecture's own)")
    ax.set_title("(a) loss at random points vs radius, several architectures")
    ax.legend(ncol=2)
    fig.tight_layout()
    return fig
