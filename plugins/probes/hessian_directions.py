"""``hessian-directions``: 2-D loss maps along the dominant Hessian directions and, side by
side, along filter-normalised random directions (Böttcher & Wheeler, seed 001, §IV,
Figs. 5–9, Table 2).

At a point x* (usually a trained model) the probe

1. finds the two dominant Hessian directions once, in ``plan``: λ1 = the
   largest-magnitude eigenvalue, then the largest-magnitude eigenvalue of the opposite
   sign by annihilation (Lanczos on H − λ1·I, Appendix B), by
   :func:`lossatlas.engine.curvature.hessian_directions`; the eigenpairs are stored
   (``eigenvalues``, ``eigenvectors``) with the HVP count, tolerance, float64 error
   bounds ‖Hv − λv‖ and the point's shape (``minimum``/``maximum``/``saddle``/
   ``degenerate``: a sign counts only beyond bound + flat_tol·max|λ|) in their attrs;
2. draws two Gaussian directions normalised per filter like x* (Li et al. 2018), exactly
   orthogonal (see ``docs/probes/hessian-directions.md``);
   Any other plane can be added as a map through ``planes``: a subspace table per map
   name (``three-points``: the plane through three models, centred on the first;
   ``user-directions``: any two stored directions; ``hessian``/``filter-normalized``
   with other options), built by :meth:`StepContext.subspace`;
3. evaluates train and validation loss and accuracy on a centred ``points × points``
   grid x* + α·δ + β·η for each pair of directions — one cell per grid row (map, α),
   the whole row in one batched :meth:`Objective.evaluate_both` call;
4. in ``finalize``, locates each map's minimum (a minimum off the centre of the Hessian
   map, along the negative-curvature axis β, shows that x* is a saddle) and writes
   seed 001's Table 2 as variables: the metrics at the centre and at each map's
   train-loss minimum.

Cost: the HVPs of two Lanczos runs (tens to hundreds, capped; see attrs ``n_hvp``)
plus points² loss evaluations per map and split, batched per row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    PlotOptions,
    PointRef,
    Probe,
    StepContext,
    figures,
    grid_estimate,
    html_table,
    metric_variables,
    option,
)
from lossatlas.plugins.subspaces.directions import (
    centred_axis,
    plane_grid,
    unit_cosine,
)

__all__ = ["HessianDirectionsOptions", "HessianDirectionsProbe"]

MAPS = ("hessian", "random")


@dataclass
class HessianDirectionsOptions:
    at: PointRef = option(PointRef("init"), doc="the point x* (a trained model: e.g. 'train')")
    points: int = option(25, doc="grid points per axis (the centre is evaluated)", ge=3, odd=True)
    span: float = option(
        0.25,
        doc="α, β run over [−span, span]; relative: × ‖x*‖ (Hessian map) / per filter (random map)",
        gt=0,
    )
    scale: Literal["relative", "absolute"] = option(
        "relative",
        doc="'relative': Hessian directions × ‖x*‖, random directions filter-normalised "
        "(‖δ_f‖ = ‖x*_f‖); 'absolute': all directions unit vectors",
    )
    maps: list[str] = option(
        list(MAPS), doc="which maps to draw: 'hessian', 'random' or both", choices=MAPS
    )
    norm: Literal["filter", "layer", "none"] = option(
        "filter", doc="normalisation of the random directions (Li et al. 2018)"
    )
    include_bias_and_norm: bool = option(
        False, doc="random directions also move biases and norm-layer scales"
    )
    split: Literal["train", "validation"] = option(
        "train", doc="the loss whose Hessian gives the directions"
    )
    tol: float = option(
        0.0,
        doc="Lanczos tolerance: ‖Hv − θv‖ ≤ tol·‖H‖ (0: 1e-9 in float64, 1e-5 in float32)",
        ge=0,
    )
    maxiter: int = option(0, doc="Lanczos restarts at most (0: bounded by max_hvp)", ge=0)
    max_hvp: int = option(
        0,
        doc="HVPs per eigenpair at most (0: D where the dense Hessian fits, then the dense "
        "solve; 5000 beyond); at the cap the best Ritz pair is kept, with its bound",
        ge=0,
    )
    flat_tol: float = option(
        0.0,
        doc="an eigenvalue within its bound + flat_tol·max|λ| of 0 is flat: the point is "
        "then 'degenerate', not a saddle or minimum (0: 1e-9 float64, 1e-5 float32)",
        ge=0,
    )
    planes: dict[str, Any] = option(
        {},
        doc="more maps, each a subspace table by map name: {plugin = 'three-points' | "
        "'user-directions' | 'hessian' | 'filter-normalized' | 'pca-trajectory', ...} "
        "(2 directions each)",
    )

    def validate(self) -> None:
        if not self.maps and not self.planes:
            raise ValueError("options 'maps' and 'planes' are both empty: there is no map to draw")
        for name, spec in self.planes.items():
            if name in MAPS:
                raise ValueError(
                    f"option 'planes': the name '{name}' is taken by a built-in map; rename it"
                )
            if not isinstance(spec, dict) or not isinstance(spec.get("plugin"), str):
                raise ValueError(
                    f"option 'planes': plane '{name}' must be a table with plugin = \"...\" "
                    "(e.g. 'three-points', 'user-directions')"
                )

    def tables(self) -> dict[str, dict[str, Any]]:
        """Every map as the subspace table that builds it: the built-in maps by the
        ``hessian`` and ``filter-normalized`` plugins, then ``planes``."""
        out: dict[str, dict[str, Any]] = {}
        if "hessian" in self.maps:
            out["hessian"] = {
                "plugin": "hessian",
                "split": self.split,
                "tol": self.tol,
                "maxiter": self.maxiter,
                "max_hvp": self.max_hvp,
                "flat_tol": self.flat_tol,
                "scale": self.scale,
            }
        if "random" in self.maps:
            out["random"] = {
                "plugin": "filter-normalized",
                "dim": 2,
                "norm": self.norm,
                "include_bias_and_norm": self.include_bias_and_norm,
                "orthogonal": True,
            }
        out.update(self.planes)
        return out


def _plane_units(attrs: dict[str, Any]) -> str:
    """What a step of 1 along a plane's axes means, from its subspace attrs."""
    kind = str(attrs.get("kind", ""))
    if kind == "three-points":
        raw = attrs.get("model_coords", [[0, 0], [1, 0]])[1] == [1.0, 0.0]
        return "× (b − a), × (c − a)" if raw else "parameter distance"
    if kind == "hessian":
        return "× ‖x*‖" if attrs.get("scale") == "relative" else "absolute"
    if kind.startswith("random-"):
        return "per filter" if "filter" in kind else kind.removeprefix("random-")
    if kind == "user":
        return "× the given directions"
    if kind == "pca-trajectory":
        return "" if attrs.get("scale") == "fit" else "parameter distance"
    return kind or "basis units"


def _seed_key(name: str) -> tuple[str, ...]:
    """The seed keys of a map's plane (the built-in maps keep version 0.1's)."""
    return {"hessian": ("eigen",), "random": ("random",)}.get(name, ("plane", name))


@dataclass
class HessianDirectionsPlotOptions(PlotOptions):
    """``lossatlas plot ... -O metric=accuracy -O levels=20``."""

    metric: Literal["loss", "accuracy"] = field(
        default="loss", metadata={"doc": "what the maps show: 'loss' or 'accuracy'"}
    )
    levels: int = field(default=30, metadata={"doc": "filled contour levels per map (2 or more)"})

    def validate(self) -> None:
        if self.levels < 2:
            raise ConfigError(f"option 'levels': a map needs 2 levels or more, got {self.levels}")


class HessianDirectionsProbe(Probe[HessianDirectionsOptions]):
    name = "hessian-directions"
    points = ()  # no (param,) results for later steps
    summary = "2-D loss maps along the dominant Hessian directions vs filter-normalised random"
    Options = HessianDirectionsOptions
    blockable = True  # rows of a map are cheap: several per unit of work
    PlotOptions = HessianDirectionsPlotOptions

    def check(self, options: HessianDirectionsOptions, ctx: StepContext) -> None:
        if "hessian" in options.maps and ctx.objective.D < 3:
            raise ConfigError(
                f"step '{ctx.step.name}': the model has D={ctx.objective.D} "
                "parameters; Hessian directions need D ≥ 3"
            )
        for name, spec in options.tables().items():
            ctx.check_subspace(spec)  # its point references are checked by the engine
            n = len(spec["vectors"]) if isinstance(spec.get("vectors"), list) else spec.get("dim")
            if n is not None and n != 2:
                raise ConfigError(
                    f"step '{ctx.step.name}': plane '{name}' (subspace '{spec['plugin']}') "
                    f"has {n} directions; a 2-D map needs exactly 2"
                )

    def estimate(self, options: HessianDirectionsOptions, ctx: StepContext) -> Estimate:
        """Cells, evaluations and bytes from the options (see :class:`Estimate`)."""
        nm = 2 * len(ctx.objective.metric_names())
        maps = max(1, len(options.tables()))
        D = ctx.objective.D
        return grid_estimate(
            ctx,
            maps * options.points,
            options.points * nm,
            points_per_cell=options.points,
            cell_bytes=4 * D * 8,
            drivers=("points", "maps"),
        )

    def _point(self, options: HessianDirectionsOptions, ctx: StepContext) -> torch.Tensor:
        """x*, refused with one line where it has no Hessian (NaN/inf, a loss of inf)."""
        x = ctx.resolve_point(options.at)
        loss = float(ctx.objective.evaluate(x, options.split)["loss"][0])
        if not (bool(torch.isfinite(x).all()) and np.isfinite(loss)):
            what = "has NaN/inf parameters" if not torch.isfinite(x).all() else f"has loss {loss}"
            raise ConfigError(
                f"step '{ctx.step.name}': the point '{options.at}' {what}, so it has no "
                "Hessian (did its training diverge? see its 'diverged' variable)"
            )
        if options.scale == "relative" and float(x.norm()) == 0:
            raise ConfigError(
                f"step '{ctx.step.name}': the point '{options.at}' has norm 0; "
                "use scale = 'absolute'"
            )
        return x

    def plan(self, options: HessianDirectionsOptions, ctx: StepContext) -> Plan:
        """The grid of every map; the planes themselves are built in the cells."""
        obj = ctx.objective
        x = self._point(options, ctx)
        maps = list(options.tables())
        axis = centred_axis(options.span, options.points)
        unit = "× ‖x*‖ (per filter for random)" if options.scale == "relative" else "absolute"
        coords: dict[str, np.ndarray] = {
            "map": np.asarray(maps),
            "alpha": axis,
            "beta": axis.copy(),
            "axis": np.asarray(["alpha", "beta"]),
            "param": np.arange(obj.D),
        }
        if "hessian" in options.maps:
            coords["eigen"] = np.asarray(["max", "min"])
        norm = np.float64(float(x.norm()))
        return Plan(
            coords=coords,
            cell_dims=("map", "alpha"),
            variables=metric_variables(obj.metric_names(), ("map", "alpha", "beta")),
            static={"point_norm": ((), norm, {"description": "‖x*‖", "units": ""})},
            attrs={"at": str(options.at), "scale": options.scale, "span": options.span},
            coord_attrs={
                "alpha": {"description": "step along δ (Hessian map: v_max)", "units": unit},
                "beta": {"description": "step along η (Hessian map: v_min)", "units": unit},
                "param": {"description": "index into the flat parameter vector"},
            },
        )

    def plane(
        self, options: HessianDirectionsOptions, ctx: StepContext, name: str
    ) -> dict[str, Any]:
        """Map ``name``'s plane: ``origin`` (D,), ``directions`` (2, D) in float64 and the
        subspace's ``attrs`` (with ``at_point``: 1 where the origin is x* itself) — built
        once per step by its subspace plugin (the Hessian map's eigen-solve included)
        and read back by every other cell and process."""

        def build() -> dict[str, Any]:
            spec = options.tables()[name]
            x = ctx.resolve_point(options.at)
            sub = ctx.subspace(spec, x, ctx.seed_for(*_seed_key(name)))
            where = f"step '{ctx.step.name}': plane '{name}' (subspace '{spec['plugin']}')"
            if sub.dim != 2:
                raise ConfigError(f"{where} has {sub.dim} directions; a 2-D map needs exactly 2")
            if sub.origin.shape != x.shape:
                raise ConfigError(
                    f"{where}: its origin has {sub.origin.numel()} entries, D={ctx.objective.D}"
                )
            W = sub.columns().detach().to("cpu", torch.float64)
            if name == "random" and options.scale == "absolute":
                W = W / torch.linalg.vector_norm(W, dim=1, keepdim=True)
            if not torch.all(torch.isfinite(W)) or torch.any(
                torch.linalg.vector_norm(W, dim=1) == 0
            ):
                raise ConfigError(f"{where}: a direction is zero or not finite")
            origin = sub.origin.detach().to("cpu", torch.float64).numpy()
            x_np = x.detach().to("cpu", torch.float64).numpy()
            attrs = json.loads(json.dumps(sub.attrs, default=str))
            attrs["at_point"] = int(np.array_equal(origin, x_np))
            return {"origin": origin, "directions": W.numpy(), "attrs": attrs}

        return ctx.artifact(f"plane-{name}", build)

    def compute(
        self, options: HessianDirectionsOptions, ctx: StepContext, cell: Cell
    ) -> dict[str, Any]:
        return self.compute_block(options, ctx, [cell])[0]

    def compute_block(
        self, options: HessianDirectionsOptions, ctx: StepContext, cells: Sequence[Cell]
    ) -> list[dict[str, Any]]:
        """Grid rows (map, α) of one unit of work, evaluated in one batched call: each
        row's points are built in float64 (as one row alone) and stacked in the run's
        dtype, so a row's values do not depend on the rows it shares a unit with."""
        beta = centred_axis(options.span, options.points)
        rows = []
        for cell in cells:
            plane = self.plane(options, ctx, str(cell.coords["map"]))
            origin = torch.as_tensor(plane["origin"], dtype=torch.float64)
            d = torch.as_tensor(plane["directions"], dtype=torch.float64)
            rows.append(plane_grid(origin, d, float(cell.coords["alpha"]), beta).to(ctx.dtype))
        pts = torch.cat(rows) if len(rows) > 1 else rows[0]
        values = ctx.objective.evaluate_both(pts.to(ctx.objective.device))
        n = len(beta)
        return [{k: v[i * n : (i + 1) * n] for k, v in values.items()} for i in range(len(cells))]

    def finalize(
        self, options: HessianDirectionsOptions, ctx: StepContext, ds: xr.Dataset
    ) -> xr.Dataset | None:
        planes = {str(m): self.plane(options, ctx, str(m)) for m in ds["map"].values}
        summary = planes_dataset(options, ds, planes)
        return xr.merge([summary, table2(ds.assign(summary))], combine_attrs="override")

    def report_html(self, ds: Any) -> str | None:
        """Seed 001's Table 2: per map, the metrics at its train-loss minimum and where
        it is; the Hessian's extreme eigenvalues with their error bounds."""
        if "min_train_loss" not in ds:
            return None
        metrics = [
            m
            for m in ("train_loss", "validation_loss", "train_accuracy", "validation_accuracy")
            if f"at_min_{m}" in ds
        ]
        rows = []
        for m in ds["map"].values:
            sel = {"map": m}
            rows.append(
                (
                    str(m),
                    *(float(ds[f"at_min_{k}"].sel(sel)) for k in metrics),
                    f"({float(ds['min_train_loss_alpha'].sel(sel)):.3g}, "
                    f"{float(ds['min_train_loss_beta'].sel(sel)):.3g})",
                    "yes" if int(ds["min_off_centre"].sel(sel)) else "no",
                )
            )
        header = ["map", *(f"{k.replace('_', ' ')} at the minimum" for k in metrics)]
        html = html_table(
            rows,
            [*header, "minimum at (α, β)", "off centre"],
            caption="Table 2 (Böttcher & Wheeler): each map's train-loss minimum",
        )
        if "eigenvalues" in ds:
            a = ds["eigenvalues"].attrs
            bounds = list(a.get("error_bounds", a.get("residual_norms", [])))
            lam = [float(v) for v in np.atleast_1d(ds["eigenvalues"].values)]
            html += html_table(
                [
                    (f"{v:.6g}", f"{b:.1e}" if i < len(bounds) else "")
                    for i, (v, b) in enumerate(
                        zip(lam, bounds + [float("nan")] * len(lam), strict=False)
                    )
                ],
                ["eigenvalue of H at x*", "error bound"],
                caption=f"the Hessian directions ({a.get('n_hvp', '?')} HVPs; the point is "
                f"{a.get('shape', '?')})",
            )
        return html

    def plot(
        self, ds: Any, metric: str = "loss", levels: int = 30, logy: bool = False, **_: Any
    ) -> Any:
        return plot_maps(ds, metric=metric, logz=logy, levels=levels)


def planes_dataset(
    options: HessianDirectionsOptions, ds: xr.Dataset, planes: dict[str, dict[str, Any]]
) -> xr.Dataset:
    """Every map's plane as variables over ``map`` (origin, directions, their norms and
    cosine; the Hessian map's eigenpairs over ``eigen``) and the attrs the plot and
    Table 2 read (map kinds and units, the eigen-solve's cost and accuracy)."""
    maps = [str(m) for m in ds["map"].values]
    origins = np.stack([planes[m]["origin"] for m in maps])
    dirs = np.stack([planes[m]["directions"] for m in maps])
    kinds = [str(planes[m]["attrs"].get("kind", m)) for m in maps]
    rel = options.scale == "relative"
    builtin = {
        "hessian": "× ‖x*‖" if rel else "absolute",
        "random": "per filter" if rel else "absolute",
    }
    units = [builtin.get(m) or _plane_units(planes[m]["attrs"]) for m in maps]
    out: dict[str, Any] = {
        "origin": (
            ("map", "param"),
            origins,
            {"description": "the centre of each map (x* unless a plane has its own)", "units": ""},
        ),
        "origin_is_point": (
            ("map",),
            np.asarray([planes[m]["attrs"]["at_point"] for m in maps], dtype=np.int8),
            {"description": "1 where the map is centred on x* itself", "units": ""},
        ),
        "directions": (
            ("map", "axis", "param"),
            dirs,
            {
                "description": "the displacement vectors δ (axis alpha) and η (axis beta) of "
                "each map: x = x* + α·δ + β·η",
                "units": "parameter",
            },
        ),
        "direction_norm": (
            ("map", "axis"),
            np.linalg.norm(dirs, axis=2),
            {"description": "‖δ‖, ‖η‖", "units": "parameter"},
        ),
        "direction_cosine": (
            ("map",),
            np.asarray([unit_cosine(torch.as_tensor(d))[0] for d in dirs]),
            {"description": "cos(δ, η), measured in float64 (0 up to rounding)", "units": ""},
        ),
    }
    attrs: dict[str, Any] = {"map_kinds": kinds, "map_units": units}
    if "hessian" in options.maps:
        a = planes["hessian"]["attrs"]
        V = dirs[maps.index("hessian")]
        V = V / np.linalg.norm(V, axis=1, keepdims=True)
        eig_attrs = {
            "description": "dominant Hessian eigenvalues (λ_max, λ_min): the largest-"
            "magnitude one, then the opposite-sign end by annihilation; each within "
            "its error bound (attr error_bounds, float64 residual norms)",
            "units": "loss / parameter²",
            # netCDF has no booleans: flags as 0/1, as the solver's own attrs give them
            **{k: int(a[k]) if isinstance(a[k], bool) else a[k] for k in _EIGEN_ATTRS if k in a},
            "residual_norms": list(a.get("residuals", [])),
            "split": options.split,
            "algorithm": "thick-restart Lanczos (or the dense Hessian) + annihilation, "
            "seed 001 App. B",
        }
        out["eigenvalues"] = (("eigen",), np.asarray(a["eigenvalues"], float), eig_attrs)
        out["eigenvectors"] = (
            ("eigen", "param"),
            V,
            {"description": "unit eigenvectors of the eigenvalues (rows)", "units": ""},
        )
        attrs.update(
            lambda_max=float(a["eigenvalues"][0]),
            lambda_min=float(a["eigenvalues"][1]),
            lambda_error_bounds=[float(v) for v in a["error_bounds"]],
            n_hvp=int(a["n_hvp"]),
            eigen_converged=int(a["converged"]),
            shape=a["shape"],
            shape_flat_tol=float(a["flat_tol"]),
            shape_rule="saddle: λ_min < −t_min and λ_max > t_max; minimum: λ_min > t_min; "
            "maximum: λ_max < −t_max; else degenerate (flat within the accuracy); "
            "t = error bound + flat_tol·max|λ|",
        )
    if "random" in options.maps:
        a = planes["random"]["attrs"]
        attrs.update(
            random_blocks=a["blocks"],
            random_pooled_filters=a["pooled_filters"],
            random_norm=options.norm,
        )
    for name in options.planes:
        a = {k: v for k, v in planes[name]["attrs"].items() if k != "at_point"}
        if "model_coords" in a:
            attrs[f"plane_{name}_model_coords"] = [float(c) for xy in a["model_coords"] for c in xy]
        attrs[f"plane_{name}"] = json.dumps(a, default=str, sort_keys=True)
    return xr.Dataset({k: xr.Variable(*v) for k, v in out.items()}, attrs=attrs)


#: The eigen-solve's facts kept on the ``eigenvalues`` variable.
_EIGEN_ATTRS = (
    "n_hvp",
    "tol",
    "converged",
    "method",
    "error_bounds",
    "residuals",
    "residual_check",
    "dominant",
    "opposite_sign_found",
    "shape",
    "flat_tol",
    "seconds",
)


def table2(ds: xr.Dataset) -> xr.Dataset:
    """Seed 001's Table 2 and each map's minima, as variables over ``map``.

    ``min_{split}_loss`` and its location ``min_{split}_loss_alpha/_beta``;
    ``at_min_{metric}``: every metric at the train-loss minimum;
    ``centre_{metric}``: the metrics at x* itself (NaN if no map is centred on x*);
    ``min_off_centre``: 1 where the train-loss minimum is not at the map's centre (along
    a Hessian direction of negative curvature: x* is a saddle).
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
    at_point = (
        [int(v) for v in ds["origin_is_point"].values]
        if "origin_is_point" in ds
        else [1] * len(maps)
    )
    centre_map = at_point.index(1) if 1 in at_point else None
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
        centre = np.nan if centre_map is None else ds[metric].isel(map=centre_map).values[a0, b0]
        out[f"centre_{metric}"] = (
            (),
            np.float64(centre),
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


def plot_maps(ds: Any, metric: str = "loss", logz: bool = False, levels: int = 30) -> Any:
    """Side-by-side contour maps (rows: train, validation; columns: maps) with minima;
    ``logz``: a logarithmic colour scale (where the map is positive)."""
    import matplotlib.pyplot as plt

    if f"train_{metric}" not in ds:
        raise ConfigError(f"hessian-directions plot: the result has no metric '{metric}'")
    maps = [str(m) for m in ds["map"].values]
    fig, axes = plt.subplots(2, len(maps), figsize=(5.4 * len(maps), 9.2), squeeze=False)
    alpha, beta = ds["alpha"].values, ds["beta"].values
    A, B = np.meshgrid(alpha, beta, indexing="ij")
    rel = ds.attrs.get("scale", "relative") == "relative"
    default_units = {
        "hessian": "× ‖x*‖" if rel else "absolute",
        "random": "per filter" if rel else "absolute",
    }
    units = list(ds.attrs.get("map_units", [default_units.get(m, "") for m in maps]))
    kinds = list(ds.attrs.get("map_kinds", maps))
    at_point = [int(v) for v in ds["origin_is_point"].values] if "origin_is_point" in ds else []
    best_kind = "maximum" if metric == "accuracy" else "minimum"
    for col, m in enumerate(maps):
        for row, split in enumerate(("train", "validation")):
            ax = axes[row, col]
            name = f"{split}_{metric}"
            Z = np.asarray(ds[name].sel(map=m).values, dtype=float)
            norm, lv = figures.map_norm(Z, logz, levels)
            cs = ax.contourf(A, B, Z, levels=lv, cmap="viridis", norm=norm)
            ax.contour(A, B, Z, levels=15, colors="k", linewidths=0.3, alpha=0.5)
            label = figures.quantity(ds, name) + (" (log scale)" if norm is not None else "")
            figures.colorbar(fig, cs, ax, label)
            best = np.nanargmax(Z) if metric == "accuracy" else np.nanargmin(Z)
            i, j = np.unravel_index(best, Z.shape)
            figures.mark(
                ax,
                alpha[i],
                beta[j],
                best_kind,
                label=f"{'max' if metric == 'accuracy' else 'min'} {Z[i, j]:.4g} at "
                f"({alpha[i]:.3g}, {beta[j]:.3g})",
            )
            centred = at_point[col] if col < len(at_point) else True
            figures.mark(ax, 0, 0, "centre", label="x*" if centred else "origin")
            plane = json.loads(ds.attrs.get(f"plane_{m}", "{}"))
            if plane.get("path_coords"):  # a trajectory on its plane (pca-trajectory)
                xy = np.asarray(plane["path_coords"], dtype=float)[:, :2]
                ax.plot(xy[:, 0], xy[:, 1], "-", color="white", lw=1.2, path_effects=figures.halo())
                figures.mark(ax, xy[:, 0], xy[:, 1], "point", label="trajectory")
            coords = ds.attrs.get(f"plane_{m}_model_coords")
            if coords is not None:
                xy = np.asarray(coords, dtype=float).reshape(-1, 2)
                figures.mark(
                    ax, xy[:, 0], xy[:, 1], "model", label="models", path_effects=figures.halo(2.0)
                )
            ax.legend(loc="upper right")
            if m == "hessian":
                lab = ("α (v_max", "β (v_min")
                if "eigenvalues" in ds:
                    lam = ds["eigenvalues"].values
                    lab = (f"α (v_max, λ={lam[0]:.3g}", f"β (v_min, λ={lam[1]:.3g}")
            elif m == "random":
                lab = ("α (random δ", "β (random η")
            else:
                lab = (f"α ({kinds[col]} δ", f"β ({kinds[col]} η")
                lam = plane.get("eigenvalues")
                if kinds[col] == "hessian" and lam:
                    lab = (f"α (v_max, λ={lam[0]:.3g}", f"β (v_min, λ={lam[1]:.3g}")
            if plane.get("axis_labels"):  # the plane names its own axes
                lab = tuple(
                    f"{a} ({name}" for a, name in zip("αβ", plane["axis_labels"], strict=False)
                )
            unit = f"; {units[col]}" if units[col] else ""
            ax.set_xlabel(f"{lab[0]}{unit})")
            ax.set_ylabel(f"{lab[1]}{unit})")
            ax.set_title(f"{split} {metric}: {m} directions")
    title = (
        "seed 001: Hessian vs random directions"
        if set(MAPS) <= set(maps)
        else "loss maps along " + ", ".join(f"{m} ({k})" for m, k in zip(maps, kinds, strict=False))
    )
    if "eigenvalues" in ds:
        a = ds["eigenvalues"].attrs
        bounds = a.get("error_bounds", a.get("residual_norms", []))
        title += f" — {a.get('n_hvp')} HVPs, tol {a.get('tol'):.0e}, error bounds " + ", ".join(
            f"{r:.1e}" for r in bounds
        )
        if "shape" in a:
            title += f"; the point is {a['shape']}"
    fig.suptitle(title, wrap=True)
    fig.tight_layout()
    return fig
