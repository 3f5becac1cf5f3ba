"""``hessian-directions``: 2-D loss maps along the dominant Hessian directions and, side by
side, along filter-normalised random directions (Böttcher & Wheeler, seed 001, §IV,
Figs. 5–9, Table 2).

At a point x* (usually a trained model) the probe

1. finds the two dominant Hessian directions once, in ``plan``: λ1 = the
   largest-magnitude eigenvalue, then the largest-magnitude eigenvalue of the opposite
   sign by annihilation (Lanczos on H − λ1·I, Appendix B), by
   :func:`lossatlas.engine.curvature.hessian_directions`; the eigenpairs are stored
   (``eigenvalues``, ``eigenvectors``) with the HVP count, tolerance and residuals
   ‖Hv − λv‖/|λ| in their attrs;
2. draws two Gaussian directions normalised per filter like x* (Li et al. 2018), exactly
   orthogonal (see ``docs/probes/hessian-directions.md``);
3. evaluates train and validation loss and accuracy on a centred ``points × points``
   grid x* + α·δ + β·η for each pair of directions — one cell per grid row (map, α),
   the whole row in one batched :meth:`Objective.evaluate_both` call;
4. in ``finalize``, locates each map's minimum (a minimum off the centre of the Hessian
   map, along the negative-curvature axis β, shows that x* is a saddle) and writes
   seed 001's Table 2 as variables: the metrics at the centre and at each map's
   train-loss minimum.

Cost: the HVPs of two eigsh runs (tens to hundreds; see attrs ``n_hvp``) plus
2 × points² loss evaluations per split, batched per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr

from lossatlas.engine import Cell, ConfigError, Plan, PointRef, Probe, metric_variables
from lossatlas.plugins.subspaces.directions import (
    centred_axis,
    normalized_directions,
    plane_grid,
    unit_cosine,
)

__all__ = ["HessianDirectionsOptions", "HessianDirectionsProbe"]

MAPS = ("hessian", "random")


@dataclass
class HessianDirectionsOptions:
    at: PointRef = field(
        default=PointRef("init"), metadata={"doc": "the point x* (a trained model: e.g. 'train')"}
    )
    points: int = field(
        default=25, metadata={"doc": "grid points per axis (odd: the centre is evaluated)"}
    )
    span: float = field(
        default=0.25,
        metadata={
            "doc": "α, β run over [−span, span]; relative: × ‖x*‖ (Hessian map) / per filter "
            "(random map)"
        },
    )
    scale: Literal["relative", "absolute"] = field(
        default="relative",
        metadata={
            "doc": "'relative': Hessian directions × ‖x*‖, random directions filter-normalised "
            "(‖δ_f‖ = ‖x*_f‖); 'absolute': all directions unit vectors"
        },
    )
    maps: list[str] = field(
        default_factory=lambda: list(MAPS),
        metadata={"doc": "which maps to draw: 'hessian', 'random' or both"},
    )
    norm: Literal["filter", "layer", "none"] = field(
        default="filter",
        metadata={"doc": "normalisation of the random directions (Li et al. 2018)"},
    )
    include_bias_and_norm: bool = field(
        default=False, metadata={"doc": "random directions also move biases and norm-layer scales"}
    )
    split: Literal["train", "validation"] = field(
        default="train", metadata={"doc": "the loss whose Hessian gives the directions"}
    )
    tol: float = field(
        default=0.0,
        metadata={"doc": "eigsh relative tolerance (0: 1e-9 in float64, 1e-5 in float32)"},
    )
    maxiter: int = field(default=0, metadata={"doc": "eigsh restarts (0: ARPACK default)"})

    def validate(self) -> None:
        if self.points < 3 or self.points % 2 == 0:
            raise ValueError(
                f"option 'points' must be odd and at least 3 (the centre is "
                f"evaluated), got {self.points}"
            )
        if not self.span > 0:
            raise ValueError(f"option 'span' must be positive, got {self.span}")
        bad = [m for m in self.maps if m not in MAPS]
        if bad or not self.maps or len(set(self.maps)) != len(self.maps):
            raise ValueError(
                f"option 'maps' must list distinct entries of {list(MAPS)}, got {self.maps}"
            )
        if self.tol < 0 or self.maxiter < 0:
            raise ValueError("options 'tol' and 'maxiter' must be ≥ 0")


def _cache(ctx: Any, options: HessianDirectionsOptions) -> tuple[torch.Tensor, np.ndarray]:
    """(x*, directions (map, axis, D)) read back once per context."""
    key = ("hessian-directions", ctx.step.name)
    store = ctx.__dict__.setdefault("_probe_cache", {})
    if key not in store:
        store[key] = (ctx.resolve_point(options.at), ctx.static("directions"))
    return store[key]


class HessianDirectionsProbe(Probe):
    name = "hessian-directions"
    summary = "2-D loss maps along the dominant Hessian directions vs filter-normalised random"
    Options = HessianDirectionsOptions

    def check(self, options: HessianDirectionsOptions, ctx: Any) -> None:
        if "hessian" in options.maps and ctx.objective.D < 3:
            raise ConfigError(
                f"step '{ctx.step.name}': the model has D={ctx.objective.D} "
                "parameters; Hessian directions need D ≥ 3"
            )

    def plan(self, options: HessianDirectionsOptions, ctx: Any) -> Plan:
        from lossatlas.engine.curvature import hessian_directions, hvp_operator

        obj = ctx.objective
        x = ctx.resolve_point(options.at)
        r = float(x.norm())
        if options.scale == "relative" and r == 0:
            raise ConfigError(
                f"step '{ctx.step.name}': the point '{options.at}' has norm 0; "
                "use scale = 'absolute'"
            )
        maps = list(options.maps)
        dirs = np.zeros((len(maps), 2, obj.D))
        static: dict[str, Any] = {}
        attrs: dict[str, Any] = {
            "at": str(options.at),
            "scale": options.scale,
            "span": options.span,
        }
        cosines = []
        if "hessian" in maps:
            res = hessian_directions(
                hvp_operator(obj, x, options.split),
                obj.D,
                tol=options.tol or None,
                maxiter=options.maxiter or None,
                generator=ctx.generator("eigen"),
            )
            V = res.eigenvectors.detach().to("cpu", torch.float64)
            eig_attrs = {
                "description": "dominant Hessian eigenvalues (λ_max, λ_min): the largest-"
                "magnitude one, then the opposite-sign end by annihilation",
                "units": "loss / parameter²",
                "n_hvp": int(res.n_hvp),
                "tol": float(res.tol),
                "converged": int(res.converged),
                "residuals": [float(v) for v in res.residuals],
                "residual_norms": [float(v) for v in res.residual_norms],
                "dominant": ["max", "min"][res.dominant],
                "opposite_sign_found": int(res.opposite_sign_found),
                "seconds": round(float(res.seconds), 3),
                "split": options.split,
                "method": "eigsh (implicitly restarted Lanczos) + annihilation, seed 001 App. B",
            }
            static["eigenvalues"] = (("eigen",), np.asarray(res.eigenvalues, float), eig_attrs)
            static["eigenvectors"] = (
                ("eigen", "param"),
                V.numpy(),
                {"description": "unit eigenvectors of the eigenvalues (rows)", "units": ""},
            )
            attrs.update(
                lambda_max=float(res.eigenvalues[0]),
                lambda_min=float(res.eigenvalues[1]),
                n_hvp=int(res.n_hvp),
                eigen_converged=int(res.converged),
            )
            W = V * (r if options.scale == "relative" else 1.0)
            dirs[maps.index("hessian")] = W.numpy()
            cosines.append(unit_cosine(W)[0])
        if "random" in maps:
            R, info = normalized_directions(
                x,
                obj.layout,
                2,
                ctx.generator("random"),
                norm=options.norm,
                include_bias_and_norm=options.include_bias_and_norm,
                orthogonal=True,
            )
            R = R.cpu()
            if options.scale == "absolute":
                R = R / torch.linalg.vector_norm(R, dim=1, keepdim=True)
            dirs[maps.index("random")] = R.numpy()
            cosines.append(unit_cosine(R)[0])
            attrs.update(
                random_blocks=info["blocks"],
                random_pooled_filters=info["pooled_filters"],
                random_norm=options.norm,
            )
        static["directions"] = (
            ("map", "axis", "param"),
            dirs,
            {
                "description": "the displacement vectors δ (axis alpha) and η (axis beta) of each "
                "map: x = x* + α·δ + β·η",
                "units": "parameter",
            },
        )
        static["direction_norm"] = (
            ("map", "axis"),
            np.linalg.norm(dirs, axis=2),
            {"description": "‖δ‖, ‖η‖", "units": "parameter"},
        )
        static["direction_cosine"] = (
            ("map",),
            np.asarray(cosines),
            {"description": "cos(δ, η), measured in float64 (0 up to rounding)", "units": ""},
        )
        static["point_norm"] = ((), np.float64(r), {"description": "‖x*‖", "units": ""})
        axis = centred_axis(options.span, options.points)
        unit = "× ‖x*‖ (per filter for random)" if options.scale == "relative" else "absolute"
        coords: dict[str, np.ndarray] = {
            "map": np.asarray(maps),
            "alpha": axis,
            "beta": axis.copy(),
            "axis": np.asarray(["alpha", "beta"]),
            "param": np.arange(obj.D),
        }
        if "hessian" in maps:
            coords["eigen"] = np.asarray(["max", "min"])
        return Plan(
            coords=coords,
            cell_dims=("map", "alpha"),
            variables=metric_variables(obj.metric_names(), ("map", "alpha", "beta")),
            static=static,
            attrs=attrs,
            coord_attrs={
                "alpha": {"description": "step along δ (Hessian map: v_max)", "units": unit},
                "beta": {"description": "step along η (Hessian map: v_min)", "units": unit},
                "param": {"description": "index into the flat parameter vector"},
            },
        )

    def compute(self, options: HessianDirectionsOptions, ctx: Any, cell: Cell) -> dict[str, Any]:
        x, dirs = _cache(ctx, options)
        m = cell.index["map"]
        beta = centred_axis(options.span, options.points)
        d = torch.as_tensor(dirs[m], dtype=torch.float64)
        pts = plane_grid(x.to(torch.float64), d, float(cell.coords["alpha"]), beta)
        return ctx.objective.evaluate_both(pts.to(x.dtype))

    def finalize(
        self, options: HessianDirectionsOptions, ctx: Any, ds: xr.Dataset
    ) -> xr.Dataset | None:
        return table2(ds)

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        return plot_maps(ds, metric=kwargs.get("metric", "loss"), logz=kwargs.get("logy", False))


def table2(ds: xr.Dataset) -> xr.Dataset:
    """Seed 001's Table 2 and each map's minima, as variables over ``map``.

    ``min_{split}_loss`` and its location ``min_{split}_loss_alpha/_beta``;
    ``at_min_{metric}``: every metric at the train-loss minimum;
    ``centre_{metric}``: the metrics at x* itself; ``min_off_centre``: 1 where the
    train-loss minimum is not at the centre (along a Hessian direction of negative
    curvature: x* is a saddle).
    """
    metrics = [
        v
        for v in ("train_loss", "validation_loss", "train_accuracy", "validation_accuracy")
        if v in ds
    ]
    maps = list(ds["map"].values)
    a0 = int(np.argmin(np.abs(ds["alpha"].values)))
    b0 = int(np.argmin(np.abs(ds["beta"].values)))
    out: dict[str, Any] = {}
    loc: dict[str, list[tuple[int, int]]] = {}
    for split in ("train", "validation"):
        vals, al, be, idxs = [], [], [], []
        for m in maps:
            L = np.asarray(ds[f"{split}_loss"].sel(map=m).values, dtype=float)
            if np.all(np.isnan(L)):
                i, j, v = a0, b0, np.nan
            else:
                i, j = np.unravel_index(np.nanargmin(L), L.shape)
                v = L[i, j]
            vals.append(v)
            al.append(float(ds["alpha"].values[i]))
            be.append(float(ds["beta"].values[j]))
            idxs.append((int(i), int(j)))
        loc[split] = idxs
        out[f"min_{split}_loss"] = (
            ("map",),
            np.asarray(vals),
            {"description": f"minimum of the {split} loss over the map", "units": "loss"},
        )
        out[f"min_{split}_loss_alpha"] = (
            ("map",),
            np.asarray(al),
            {
                "description": f"α of the {split}-loss minimum",
                "units": ds["alpha"].attrs.get("units", ""),
            },
        )
        out[f"min_{split}_loss_beta"] = (
            ("map",),
            np.asarray(be),
            {
                "description": f"β of the {split}-loss minimum",
                "units": ds["beta"].attrs.get("units", ""),
            },
        )
    for metric in metrics:
        vals = [
            float(ds[metric].sel(map=m).values[i, j])
            for m, (i, j) in zip(maps, loc["train"], strict=True)
        ]
        out[f"at_min_{metric}"] = (
            ("map",),
            np.asarray(vals),
            {
                "description": f"{metric} at the map's train-loss minimum (seed 001 Table 2)",
                "units": ds[metric].attrs.get("units", ""),
            },
        )
        out[f"centre_{metric}"] = (
            (),
            np.float64(ds[metric].isel(map=0).values[a0, b0]),
            {
                "description": f"{metric} at x* (the centre of every map)",
                "units": ds[metric].attrs.get("units", ""),
            },
        )
    off = [int((i, j) != (a0, b0)) for i, j in loc["train"]]
    out["min_off_centre"] = (
        ("map",),
        np.asarray(off, dtype=np.int8),
        {
            "description": "1 if the train-loss minimum is off the centre (on the Hessian map: "
            "x* is not a minimum along these directions)",
            "units": "",
        },
    )
    return xr.Dataset({k: xr.Variable(*v) for k, v in out.items()})


def plot_maps(ds: Any, metric: str = "loss", logz: bool = False) -> Any:
    """Side-by-side contour maps (rows: train, validation; columns: maps) with minima."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    if f"train_{metric}" not in ds:
        raise ConfigError(f"hessian-directions plot: the result has no metric '{metric}'")
    maps = [str(m) for m in ds["map"].values]
    fig, axes = plt.subplots(2, len(maps), figsize=(5.2 * len(maps), 9.0), squeeze=False)
    alpha, beta = ds["alpha"].values, ds["beta"].values
    A, B = np.meshgrid(alpha, beta, indexing="ij")
    for col, m in enumerate(maps):
        for row, split in enumerate(("train", "validation")):
            ax = axes[row, col]
            Z = np.asarray(ds[f"{split}_{metric}"].sel(map=m).values, dtype=float)
            finite = Z[np.isfinite(Z)]
            norm = None
            if logz and finite.size and finite.min() > 0:
                norm = LogNorm(vmin=finite.min(), vmax=finite.max())
            cs = ax.contourf(A, B, Z, levels=30, cmap="viridis", norm=norm)
            ax.contour(A, B, Z, levels=15, colors="k", linewidths=0.3, alpha=0.5)
            fig.colorbar(cs, ax=ax, shrink=0.85)
            best = np.nanargmax(Z) if metric == "accuracy" else np.nanargmin(Z)
            i, j = np.unravel_index(best, Z.shape)
            ax.plot(
                alpha[i],
                beta[j],
                "x",
                color="red",
                ms=11,
                mew=2.5,
                label=f"{'max' if metric == 'accuracy' else 'min'} {Z[i, j]:.4g} at "
                f"({alpha[i]:.3g}, {beta[j]:.3g})",
            )
            ax.plot(0, 0, "+", color="white", ms=11, mew=2, label="x*")
            ax.legend(fontsize=7, loc="upper right")
            if m == "hessian":
                lab = ("α (v_max", "β (v_min")
                if "eigenvalues" in ds:
                    lam = ds["eigenvalues"].values
                    lab = (f"α (v_max, λ={lam[0]:.3g}", f"β (v_min, λ={lam[1]:.3g}")
            else:
                lab = ("α (random δ", "β (random η")
            rel = ds.attrs.get("scale", "relative") == "relative"
            unit = ("× ‖x*‖" if m == "hessian" else "per filter") if rel else "absolute"
            ax.set_xlabel(f"{lab[0]}; {unit})")
            ax.set_ylabel(f"{lab[1]}; {unit})")
            ax.set_title(f"{split} {metric}: {m} directions")
    title = "seed 001: Hessian vs random directions"
    if "eigenvalues" in ds:
        a = ds["eigenvalues"].attrs
        res = a.get("residuals", [])
        title += f" — {a.get('n_hvp')} HVPs, tol {a.get('tol'):.0e}, residuals " + ", ".join(
            f"{r:.1e}" for r in res
        )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.text(0.5, 0.005, title, ha="center", fontsize=9)
    return fig
