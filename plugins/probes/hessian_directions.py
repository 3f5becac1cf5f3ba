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
    figures,
    grid_estimate,
    html_table,
    metric_variables,
    parse_options,
)
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
        metadata={
            "doc": "Lanczos tolerance: ‖Hv − θv‖ ≤ tol·‖H‖ (0: 1e-9 in float64, 1e-5 in float32)"
        },
    )
    maxiter: int = field(
        default=0, metadata={"doc": "Lanczos restarts at most (0: bounded by max_hvp)"}
    )
    max_hvp: int = field(
        default=0,
        metadata={
            "doc": "HVPs per eigenpair at most (0: D where the dense Hessian fits, then the "
            "dense solve; 5000 beyond); at the cap the best Ritz pair is kept, with its bound"
        },
    )
    flat_tol: float = field(
        default=0.0,
        metadata={
            "doc": "an eigenvalue within its bound + flat_tol·max|λ| of 0 is flat: the point "
            "is then 'degenerate', not a saddle or minimum (0: 1e-9 float64, 1e-5 float32)"
        },
    )
    planes: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "doc": "more maps, each a subspace table by map name: {plugin = 'three-points' | "
            "'user-directions' | 'hessian' | 'filter-normalized' | 'pca-trajectory', ...} "
            "(2 directions each)"
        },
    )

    def validate(self) -> None:
        if self.points < 3 or self.points % 2 == 0:
            raise ValueError(
                f"option 'points' must be odd and at least 3 (the centre is "
                f"evaluated), got {self.points}"
            )
        if not self.span > 0:
            raise ValueError(f"option 'span' must be positive, got {self.span}")
        bad = [m for m in self.maps if m not in MAPS]
        if bad or len(set(self.maps)) != len(self.maps):
            raise ValueError(
                f"option 'maps' must list distinct entries of {list(MAPS)}, got {self.maps}"
            )
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
        if self.tol < 0 or self.maxiter < 0 or self.max_hvp < 0 or self.flat_tol < 0:
            raise ValueError("options 'tol', 'maxiter', 'max_hvp' and 'flat_tol' must be ≥ 0")


def _cache(ctx: Any, options: HessianDirectionsOptions) -> tuple[torch.Tensor, np.ndarray]:
    """(origins (map, D) in x*'s dtype, directions (map, axis, D)) read once per context."""
    key = ("hessian-directions", ctx.step.name)
    store = ctx.__dict__.setdefault("_probe_cache", {})
    if key not in store:
        x = ctx.resolve_point(options.at)
        origins = torch.as_tensor(ctx.static("origin"), dtype=torch.float64)
        store[key] = (origins.to(x.device), ctx.static("directions"), x.dtype)
    return store[key]


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


class HessianDirectionsProbe(Probe):
    name = "hessian-directions"
    points = ()  # no (param,) results for later steps
    summary = "2-D loss maps along the dominant Hessian directions vs filter-normalised random"
    Options = HessianDirectionsOptions
    PlotOptions = HessianDirectionsPlotOptions

    def check(self, options: HessianDirectionsOptions, ctx: Any) -> None:
        if "hessian" in options.maps and ctx.objective.D < 3:
            raise ConfigError(
                f"step '{ctx.step.name}': the model has D={ctx.objective.D} "
                "parameters; Hessian directions need D ≥ 3"
            )
        names = [s.name for s in ctx.config.steps]
        earlier = names[: names.index(ctx.step.name)] if ctx.step.name in names else []
        for name, spec in options.planes.items():
            ctx.check_subspace(spec)
            n = len(spec["vectors"]) if isinstance(spec.get("vectors"), list) else spec.get("dim")
            if n is not None and n != 2:
                raise ConfigError(
                    f"step '{ctx.step.name}': plane '{name}' (subspace '{spec['plugin']}') "
                    f"has {n} directions; a 2-D map needs exactly 2"
                )
            plugin = ctx.registry.get("subspace", spec["plugin"])
            table = {k: v for k, v in spec.items() if k != "plugin"}
            opts = parse_options(plugin.Options, table, f"plane '{name}'")
            for value in vars(opts).values():  # every point reference, one or a list
                for ref in value if isinstance(value, list) else [value]:
                    if isinstance(ref, PointRef):
                        ctx.check_ref(str(ref), earlier)

    def estimate(self, options: HessianDirectionsOptions, ctx: Any) -> Estimate:
        """Cells, evaluations and bytes from the options (see :class:`Estimate`)."""
        nm = 2 * len(ctx.objective.metric_names())
        maps = max(1, len(options.maps))
        D = ctx.objective.D
        return grid_estimate(
            ctx,
            maps * options.points,
            options.points * nm,
            points_per_cell=options.points,
            cell_bytes=4 * D * 8,
            drivers=("points", "maps"),
        )

    def plan(self, options: HessianDirectionsOptions, ctx: Any) -> Plan:
        from lossatlas.engine.curvature import hessian_directions, hvp_operator

        obj = ctx.objective
        x = ctx.resolve_point(options.at)
        loss = float(obj.evaluate(x, options.split)["loss"][0])
        if not (bool(torch.isfinite(x).all()) and np.isfinite(loss)):
            what = "has NaN/inf parameters" if not torch.isfinite(x).all() else f"has loss {loss}"
            raise ConfigError(
                f"step '{ctx.step.name}': the point '{options.at}' {what}, so it has no "
                "Hessian (did its training diverge? see its 'diverged' variable)"
            )
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
            try:
                res = hessian_directions(
                    hvp_operator(obj, x, options.split),
                    obj.D,
                    tol=options.tol or None,
                    maxiter=options.maxiter or None,
                    max_hvp=options.max_hvp or None,
                    flat_tol=options.flat_tol or None,
                    generator=ctx.generator("eigen"),
                )
            except ConfigError as exc:
                raise ConfigError(f"step '{ctx.step.name}': Hessian directions: {exc}") from None
            if res.is_zero:
                raise ConfigError(
                    f"step '{ctx.step.name}': Hessian directions: the Hessian is zero here "
                    "(H·v = 0 for every vector tried): every eigenvalue is 0 and no direction "
                    "dominates (all ReLU units dead? a diverged training?)"
                )
            V = res.eigenvectors.detach().to("cpu", torch.float64)
            eig_attrs = {
                "description": "dominant Hessian eigenvalues (λ_max, λ_min): the largest-"
                "magnitude one, then the opposite-sign end by annihilation; each within "
                "its error bound (attr error_bounds, float64 residual norms)",
                "units": "loss / parameter²",
                **res.attrs(),
                "residual_norms": [float(v) for v in res.residual_norms],
                "split": options.split,
                "algorithm": "thick-restart Lanczos (or the dense Hessian) + annihilation, "
                "seed 001 App. B",
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
                lambda_error_bounds=[float(v) for v in res.error_bounds],
                n_hvp=int(res.n_hvp),
                eigen_converged=int(res.converged),
                shape=res.shape,
                shape_flat_tol=float(res.flat_tol),
                shape_rule="saddle: λ_min < −t_min and λ_max > t_max; minimum: λ_min > t_min; "
                "maximum: λ_max < −t_max; else degenerate (flat within the accuracy); "
                "t = error bound + flat_tol·max|λ|",
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
        x_np = x.detach().to("cpu", torch.float64).numpy()
        origins = np.tile(x_np, (len(maps), 1))
        kinds = ["hessian" if m == "hessian" else f"random-{options.norm}-normalized" for m in maps]
        rel = options.scale == "relative"
        units = [
            ("× ‖x*‖" if m == "hessian" else "per filter") if rel else "absolute" for m in maps
        ]
        for name, spec in options.planes.items():
            sub = ctx.subspace(spec, x, ctx.seed_for("plane", name))
            where = f"step '{ctx.step.name}': plane '{name}' (subspace '{spec['plugin']}')"
            if sub.dim != 2:
                raise ConfigError(f"{where} has {sub.dim} directions; a 2-D map needs exactly 2")
            if sub.origin.shape != x.shape:
                raise ConfigError(
                    f"{where}: its origin has {sub.origin.numel()} entries, D={obj.D}"
                )
            W = sub.columns().detach().to("cpu", torch.float64)
            if not torch.all(torch.isfinite(W)) or torch.any(
                torch.linalg.vector_norm(W, dim=1) == 0
            ):
                raise ConfigError(f"{where}: a direction is zero or not finite")
            maps.append(name)
            dirs = np.concatenate([dirs, W.numpy()[None]])
            origins = np.concatenate(
                [origins, sub.origin.detach().to("cpu", torch.float64).numpy()[None]]
            )
            cosines.append(unit_cosine(W)[0])
            kinds.append(str(sub.attrs.get("kind", spec["plugin"])))
            units.append(_plane_units(sub.attrs))
            if "model_coords" in sub.attrs:
                attrs[f"plane_{name}_model_coords"] = [
                    float(c) for xy in sub.attrs["model_coords"] for c in xy
                ]
            attrs[f"plane_{name}"] = json.dumps(sub.attrs, default=str, sort_keys=True)
        attrs["map_kinds"] = kinds
        attrs["map_units"] = units
        at_point = [bool(np.array_equal(o, x_np)) for o in origins]
        static["origin"] = (
            ("map", "param"),
            origins,
            {"description": "the centre of each map (x* unless a plane has its own)", "units": ""},
        )
        static["origin_is_point"] = (
            ("map",),
            np.asarray(at_point, dtype=np.int8),
            {"description": "1 where the map is centred on x* itself", "units": ""},
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
        origins, dirs, dtype = _cache(ctx, options)
        m = cell.index["map"]
        beta = centred_axis(options.span, options.points)
        d = torch.as_tensor(dirs[m], dtype=torch.float64)
        pts = plane_grid(origins[m], d, float(cell.coords["alpha"]), beta)
        return ctx.objective.evaluate_both(pts.to(dtype))

    def finalize(
        self, options: HessianDirectionsOptions, ctx: Any, ds: xr.Dataset
    ) -> xr.Dataset | None:
        return table2(ds)

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
