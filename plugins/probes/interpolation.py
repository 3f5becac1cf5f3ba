"""``interpolation``: the loss on the straight line between two points.

Goodfellow, Vinyals & Saxe, "Qualitatively characterizing neural network optimization
problems" (ICLR 2015, seed 003): J((1−α)θ0 + αθ1) over a grid of α that may reach
beyond [0, 1] (default −0.5 … 1.5), train and validation loss and accuracy, for any
pairs of points — initialisation → solution (Fig. 1–3), solution ↔ solution of two
seeds (Fig. 5 left), a random point → solution (Fig. 5 right), two checkpoints — and
high-resolution zooms next to the endpoints (Fig. 4c–d: 200 values in [0, 0.01] and
[0.99, 1]).

Points are formed as (1−α)·θ0 + α·θ1, so α = 0 and α = 1 give θ0 and θ1 bit for bit
and the curve's endpoints are the models' own losses. Every grid (main and zooms)
contains α = 0 and α = 1 exactly.

Per curve, :meth:`Interpolation.finalize` reports (from the main grid and the zooms
together, on α ∈ [0, 1]): the largest rise ``max_rise`` = max_j (L_j − min_{i≤j} L_i)
(0 for a monotonically non-increasing curve), the barrier height over the endpoints'
max, ``barrier`` = max_α L(α) − max(L(0), L(1)) (≥ 0), and the α and value of the
minimum over the whole grid.

Point forms in ``pairs``: every PointRef (``init``, ``init:SEED``, ``STEP``,
``STEP.VAR``, ``RUN/STEP``, ``checkpoint:PATH``), ``STEP@N`` or ``RUN/STEP@N`` (the
snapshot θ(t = N) a ``train`` step recorded at optimizer step N: any two checkpoints
of a training run) and ``random:R`` (a Gaussian point of norm R, drawn from the cell's
seed) or ``random`` (same, at the norm of the other end).

BatchNorm: the stored running statistics belong to the endpoints, not to the points
in between; ``recompute_bn = true`` recomputes them on the training data at every α
(one extra forward pass over the train split per point, point by point).

Cost: (points + 2·zoom_points) batched forward passes over the train and validation
splits per pair (one vmapped pass per chunk of points).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lossatlas.engine import (
    Cell,
    ConfigError,
    Estimate,
    PathSummary,
    Plan,
    PointRef,
    Probe,
    RandomPoint,
    StepContext,
    Variable,
    figures,
    grid_estimate,
    html_table,
    metric_variables,
    option,
    parse_random,
)

from .module_state import module_at

__all__ = [
    "Interpolation",
    "alpha_grid",
    "bn_buffers",
    "bn_recompute",
    "curve_summary",
    "evaluate_points",
    "interpolate",
    "line_paths",
    "validate_pairs",
]


@dataclass
class InterpolationOptions:
    pairs: list[list[RandomPoint | PointRef]] = field(
        default_factory=lambda: [[PointRef("init"), PointRef("train")]],
        metadata={
            "doc": "pairs [θ0, θ1] of points to join: 'init', 'init:SEED', a step, "
            "'STEP.VAR', 'RUN/STEP', 'STEP@N' (the snapshot a train step recorded at "
            "optimizer step N), 'checkpoint:PATH', 'random:R' or 'random'"
        },
    )
    labels: list[str] = field(
        default_factory=list, metadata={"doc": "one label per pair (default 'θ0 → θ1')"}
    )
    alpha_min: float = field(default=-0.5, metadata={"doc": "first α of the grid"})
    alpha_max: float = field(default=1.5, metadata={"doc": "last α of the grid"})
    points: int = option(41, doc="α values on the main grid (0 and 1 are added if missing)", ge=2)
    zoom_points: int = field(default=200, metadata={"doc": "α values in each zoom (0: none)"})
    zoom_width: float = option(0.01, doc="the zooms tile [0, w] and [1 − w, 1]", gt=0, le=0.5)
    recompute_bn: bool = field(
        default=False,
        metadata={"doc": "recompute BatchNorm statistics on the train split at every α"},
    )

    def validate(self) -> None:
        validate_pairs(self.pairs, self.labels)
        if not self.alpha_min < self.alpha_max:
            raise ValueError("option 'alpha_min' must be below 'alpha_max'")
        if self.zoom_points < 0 or self.zoom_points == 1:
            raise ValueError(
                f"option 'zoom_points' must be 0 or at least 2, got {self.zoom_points}"
            )


def validate_pairs(pairs: list[list[Any]], labels: list[str], ends: str = "[θ0, θ1]") -> None:
    """The options ``pairs`` (two points each, at least one pair) and ``labels`` (one per
    pair, or none) of a probe that joins pairs of points; ValueError naming the bad one."""
    if not pairs:
        raise ValueError(f"option 'pairs' needs at least one pair {ends}")
    for i, p in enumerate(pairs):
        if len(p) != 2:
            raise ValueError(f"option 'pairs'[{i}] must be two points {ends}, got {p}")
    if labels and len(labels) != len(pairs):
        raise ValueError(f"option 'labels' has {len(labels)} labels for {len(pairs)} pairs")


def alpha_grid(lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` evenly spaced α in [lo, hi], plus 0 and 1 exactly (the endpoints are on
    every grid), sorted. Grid values within rounding of 0 or 1 (``np.linspace`` can give
    5.6e-17 for 0) are snapped to them, so no near-duplicate of an endpoint remains."""
    a = np.linspace(lo, hi, n)
    tol = 1e-9 * (hi - lo) / max(n - 1, 1)
    for edge in (0.0, 1.0):
        a[np.abs(a - edge) <= tol] = edge
    return np.unique(np.concatenate([a, [0.0, 1.0]]))


def interpolate(theta0: torch.Tensor, theta1: torch.Tensor, alpha: np.ndarray) -> torch.Tensor:
    """Rows (1−α)·θ0 + α·θ1 (exactly θ0 at α = 0 and θ1 at α = 1)."""
    a = torch.as_tensor(np.asarray(alpha, dtype=np.float64)).to(theta0.device, theta0.dtype)
    # Two passes over the (points, D) block, no temporaries of its size.
    return torch.outer(1 - a, theta0).addr_(a, theta1)


def curve_summary(alpha: np.ndarray, loss: np.ndarray) -> dict[str, float]:
    """Shape of one curve: ``max_rise`` and ``barrier`` on α ∈ [0, 1], ``argmin_alpha``
    and ``min`` on the whole grid (see the module docstring). NaN-safe."""
    order = np.argsort(alpha, kind="stable")
    alpha, loss = np.asarray(alpha)[order], np.asarray(loss, dtype=np.float64)[order]
    inside = (alpha >= 0) & (alpha <= 1)
    a, L = alpha[inside], loss[inside]
    out = {"max_rise": np.nan, "barrier": np.nan, "argmin_alpha": np.nan, "min": np.nan}
    if np.all(np.isfinite(L)) and len(L):
        running_min = np.minimum.accumulate(L)
        out["max_rise"] = float(np.max(L - running_min))
        ends = max(L[a == 0][0], L[a == 1][0])
        out["barrier"] = float(max(np.max(L) - ends, 0.0))
    if np.any(np.isfinite(loss)):
        k = int(np.nanargmin(loss))
        out["argmin_alpha"], out["min"] = float(alpha[k]), float(loss[k])
    return out


def line_paths(ds: Any, kind: str = "linear", prefix: str = "") -> list[PathSummary]:
    """The straight lines of an interpolation-like result (``pair`` × ``alpha`` with
    optional zooms, ``distance`` per pair) as :class:`~lossatlas.engine.PathSummary`,
    α ∈ [0, 1] only; ``prefix`` selects variables named ``{prefix}train_loss`` …"""
    labels = list(ds.attrs.get("labels") or [str(p) for p in ds["pair"].values])
    out = []
    for k in range(ds.sizes["pair"]):
        alphas = [np.asarray(ds["alpha"].values, dtype=float)]
        loss = [np.asarray(ds[f"{prefix}train_loss"].isel(pair=k).values, dtype=float)]
        val = [np.asarray(ds[f"{prefix}validation_loss"].isel(pair=k).values, dtype=float)]
        for z in ("zoom0", "zoom1"):
            if f"{z}_{prefix}train_loss" in ds:
                alphas.append(np.asarray(ds[f"alpha_{z}"].values, dtype=float))
                loss.append(np.asarray(ds[f"{z}_{prefix}train_loss"].isel(pair=k).values))
                val.append(np.asarray(ds[f"{z}_{prefix}validation_loss"].isel(pair=k).values))
        a, L, V = np.concatenate(alphas), np.concatenate(loss), np.concatenate(val)
        inside = (a >= 0) & (a <= 1)
        a, L, V = a[inside], L[inside], V[inside]
        a, first = np.unique(a, return_index=True)
        d = float(np.asarray(ds["distance"].isel(pair=k).values))
        out.append(PathSummary(labels[k], a, L[first], d, d, kind, V[first]))
    return out


def _is_random(ref: str) -> bool:
    return isinstance(ref, RandomPoint) or ref == "random" or ref.startswith("random:")


def _bn_modules(model: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    """BatchNorm layers with running statistics (``track_running_stats=False`` layers
    always normalise with the batch's own statistics: nothing to recompute)."""
    return [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


@torch.no_grad()
def bn_buffers(obj: Any, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The model's buffers with BatchNorm running statistics recomputed at ``x`` on the
    whole train split, in batches of ``obj.batch_size``: each BN layer normalises a
    batch with the batch's own statistics (train mode) and its running mean and
    (unbiased) variance become the size-weighted averages of the batch statistics —
    Ioffe & Szegedy (2015), Algorithm 2, as ``torch.optim.swa_utils.update_bn``. The
    mean is the split's mean; the variance is the split's exact variance when the split
    is one batch. Only the BN layers run in train mode (dropout and the rest stay in
    eval mode, so the result is deterministic). Cost: one forward pass over the train
    split."""
    model = module_at(obj.model, obj.layout.unflatten(x))  # frozen parameters kept
    bns = _bn_modules(model)
    for m in bns:
        m.reset_running_stats()
    model.eval()
    for m in bns:
        m.train()
    seen = 0
    for inputs, _t, _w in obj.batches("train"):
        size = int(inputs.shape[0])
        for m in bns:
            m.momentum = size / (seen + size)
        model(inputs)
        seen += size
    return {n: b.detach().clone() for n, b in model.named_buffers()}


def bn_recompute(obj: Any, recompute_bn: bool) -> bool:
    """Whether :func:`evaluate_points` recomputes BatchNorm statistics given the option
    ``recompute_bn``: only where the model has BatchNorm layers with running
    statistics (for a plan's ``recompute_bn`` attribute)."""
    return bool(recompute_bn and _bn_modules(obj.model))


def _evaluate(obj: Any, X: torch.Tensor, splits: Sequence[str]) -> dict[str, np.ndarray]:
    if tuple(splits) == ("train", "validation"):
        return obj.evaluate_both(X)
    return {f"{s}_{k}": v for s in splits for k, v in obj.evaluate(X, s).items()}


def evaluate_points(
    obj: Any,
    X: torch.Tensor,
    recompute_bn: bool = False,
    splits: Sequence[str] = ("train", "validation"),
) -> dict[str, np.ndarray]:
    """:meth:`Objective.evaluate_both` at the rows of ``X`` (keys ``train_loss`` …; with
    ``splits``, :meth:`Objective.evaluate` on those splits only, same keys); with
    ``recompute_bn``, where the model has BatchNorm with running statistics
    (:func:`bn_recompute`), the statistics are recomputed at each row first
    (:func:`bn_buffers`, point by point) and the objective's own buffers are restored
    afterwards."""
    if not bn_recompute(obj, recompute_bn):
        return _evaluate(obj, X, splits)
    rows: list[dict[str, np.ndarray]] = []
    saved = obj.buffers
    try:
        for x in X:
            obj.buffers = bn_buffers(obj, x)
            rows.append(_evaluate(obj, x.unsqueeze(0), splits))
    finally:
        obj.buffers = saved
    return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


class Interpolation(Probe[InterpolationOptions]):
    name = "interpolation"
    points = ()  # no (param,) results for later steps
    summary = "loss and accuracy on the line (1−α)θ0 + αθ1 between pairs of points, with zooms"
    Options = InterpolationOptions

    # -------------------------------------------------------------- checking

    def check(self, options: InterpolationOptions, ctx: StepContext) -> None:
        for pair in options.pairs:
            if all(_is_random(p) for p in pair) and any(parse_random(p) is None for p in pair):
                raise ConfigError(
                    f"step '{ctx.step.name}': pair {list(pair)}: 'random' takes the "
                    "norm of the other point; give one of them a radius ('random:R')"
                )
        if options.recompute_bn and not _bn_modules(ctx.objective.model):
            raise ConfigError(
                f"step '{ctx.step.name}': recompute_bn = true but the model has no BatchNorm "
                "layers with running statistics; remove recompute_bn"
            )

    # -------------------------------------------------------------- planning

    def _grids(self, o: InterpolationOptions) -> dict[str, np.ndarray]:
        grids = {"alpha": alpha_grid(o.alpha_min, o.alpha_max, o.points)}
        if o.zoom_points:
            grids["alpha_zoom0"] = np.linspace(0.0, o.zoom_width, o.zoom_points)
            z1 = np.linspace(1.0 - o.zoom_width, 1.0, o.zoom_points)
            z1[-1] = 1.0
            grids["alpha_zoom1"] = z1
        return grids

    def labels(self, options: InterpolationOptions) -> list[str]:
        return list(options.labels) or [f"{a} → {b}" for a, b in options.pairs]

    def estimate(self, options: InterpolationOptions, ctx: StepContext) -> Estimate:
        """Cells, evaluations and bytes from the options (see :class:`Estimate`)."""
        nm = 2 * len(ctx.objective.metric_names())
        points = options.points + 2 * options.zoom_points
        return grid_estimate(
            ctx,
            len(options.pairs),
            points * nm + 3,
            points_per_cell=points,
            drivers=("pairs", "points", "zoom_points"),
        )

    def plan(self, options: InterpolationOptions, ctx: StepContext) -> Plan:
        obj = ctx.objective
        grids = self._grids(options)
        variables: dict[str, Variable] = {}
        for dim in grids:
            prefix = "" if dim == "alpha" else dim.removeprefix("alpha_") + "_"
            for k, v in metric_variables(obj.metric_names(), ("pair", dim)).items():
                v.description += f" at (1−α)θ0 + αθ1 ({dim})"
                variables[prefix + k] = v
        variables["distance"] = Variable(("pair",), "‖θ1 − θ0‖")
        variables["norm0"] = Variable(("pair",), "‖θ0‖")
        variables["norm1"] = Variable(("pair",), "‖θ1‖")
        coord_attrs = {
            d: {"description": "interpolation coefficient: (1−α)θ0 + αθ1", "units": ""}
            for d in grids
        }
        coord_attrs["pair"] = {"description": "index of the pair of points"}
        return Plan(
            coords={"pair": np.arange(len(options.pairs)), **grids},
            variables=variables,
            cell_dims=("pair",),
            coord_attrs=coord_attrs,
            aux_coords={
                "pair_label": (
                    "pair",
                    np.asarray(self.labels(options), dtype=str),
                    {"long_name": "pair of points", "units": "1"},
                )
            },
            attrs={
                "recompute_bn": int(options.recompute_bn),
                "task": obj.task,
                "labels": self.labels(options),
                "theta0": [str(p[0]) for p in options.pairs],
                "theta1": [str(p[1]) for p in options.pairs],
            },
        )

    # ------------------------------------------------------------- computing

    def _endpoint(self, ref: str, other: str, ctx: StepContext, g: torch.Generator) -> torch.Tensor:
        obj = ctx.objective
        if not _is_random(ref):
            return ctx.resolve_point(ref)
        radius = parse_random(ref)
        r = float(self._endpoint(other, ref, ctx, g).double().norm()) if radius is None else radius
        u = torch.randn(obj.D, generator=g, dtype=torch.float64)
        return (u * (r / u.norm())).to(obj.device, obj.dtype)

    def compute(
        self, options: InterpolationOptions, ctx: StepContext, cell: Cell
    ) -> dict[str, Any]:
        obj = ctx.objective
        a_ref, b_ref = (str(r) for r in options.pairs[cell.index["pair"]])
        g = cell.generator()
        theta0 = self._endpoint(a_ref, b_ref, ctx, g)
        theta1 = self._endpoint(b_ref, a_ref, ctx, g)
        out: dict[str, Any] = {
            "distance": float((theta1 - theta0).double().norm()),
            "norm0": float(theta0.double().norm()),
            "norm1": float(theta1.double().norm()),
        }
        for dim, alpha in self._grids(options).items():
            prefix = "" if dim == "alpha" else dim.removeprefix("alpha_") + "_"
            X = interpolate(theta0, theta1, alpha)
            for k, v in evaluate_points(obj, X, options.recompute_bn).items():
                out[prefix + k] = v
        return out

    # ------------------------------------------------------------- summaries

    def finalize(self, options: InterpolationOptions, ctx: StepContext, ds: Any) -> Any:
        import xarray as xr

        out = {}
        for split in ("train", "validation"):
            name = f"{split}_loss"
            rows: dict[str, list[float]] = {}
            for p in range(ds.sizes["pair"]):
                alphas = [ds["alpha"].values]
                losses = [ds[name].isel(pair=p).values]
                for z in ("zoom0", "zoom1"):
                    if f"{z}_{name}" in ds:
                        alphas.append(ds[f"alpha_{z}"].values)
                        losses.append(ds[f"{z}_{name}"].isel(pair=p).values)
                s = curve_summary(np.concatenate(alphas), np.concatenate(losses))
                for k, v in s.items():
                    rows.setdefault(k, []).append(v)
            docs = {
                "max_rise": "largest rise of the loss along α ∈ [0, 1]: "
                "max_j (L_j − min_{i≤j} L_i); 0 if monotone non-increasing",
                "barrier": "max over α ∈ [0, 1] of L minus the larger endpoint loss",
                "argmin_alpha": "α of the lowest loss on the grid",
                "min": "lowest loss on the grid",
            }
            for k, v in rows.items():
                out[f"{name}_{k}"] = xr.Variable(
                    ("pair",),
                    np.asarray(v),
                    attrs={
                        "description": f"{split}: {docs[k]}",
                        "units": "" if k == "argmin_alpha" else "loss",
                    },
                )
        return xr.Dataset(out)

    # ------------------------------------------------------------------ paths

    def paths(self, ds: Any) -> list[Any]:
        """Each pair's straight line on α ∈ [0, 1] (main grid and zooms together), for
        the path comparison figure (:func:`lossatlas.engine.plot_paths`)."""
        return line_paths(ds, kind="linear")

    # ------------------------------------------------------------------ report

    def report_html(self, ds: Any) -> str | None:
        """A row per pair: the train and validation barriers (max − max of ends), the
        loss minimum along the line and where it is (seed 003's monotonicity check)."""
        needed = ("train_loss_barrier", "validation_loss_barrier", "train_loss_min")
        if any(n not in ds for n in needed):
            return None
        labels = list(ds.attrs.get("labels") or [str(p) for p in ds["pair"].values])
        rows = []
        for k in range(ds.sizes["pair"]):
            sel = {"pair": k}
            rows.append(
                (
                    labels[k],
                    float(ds["train_loss_barrier"].isel(sel)),
                    float(ds["validation_loss_barrier"].isel(sel)),
                    float(ds["train_loss_min"].isel(sel)),
                    float(ds["train_loss_argmin_alpha"].isel(sel))
                    if "train_loss_argmin_alpha" in ds
                    else float("nan"),
                )
            )
        units = figures.units_of(ds, "train_loss") or "loss units"
        return html_table(
            rows,
            ["pair", "train barrier", "validation barrier", "min train loss", "at α"],
            caption=f"barriers along each line ({units}; barrier = max − max of the ends)",
        )

    # ------------------------------------------------------------------ plot

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        """Fig. 2/3/5 of seed 003 (all pairs on one axis; train solid, validation dashed;
        ``logy`` for Fig. 3), the accuracy, and the zooms of Fig. 4c–d."""
        import matplotlib.pyplot as plt

        has_acc = "train_accuracy" in ds
        zooms = [z for z in ("zoom0", "zoom1") if f"{z}_train_loss" in ds]
        panels = 1 + int(has_acc) + len(zooms)
        cols = 2 if panels > 1 else 1
        rows = (panels + 1) // 2
        fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
        flat = list(axes.ravel())
        labels = list(ds.attrs.get("labels") or [str(p) for p in ds["pair"].values])
        logy = bool(kwargs.get("logy"))

        def curves(
            ax: Any, dim: str, prefix: str, metric: str, legend: bool, validation: bool = True
        ) -> None:
            a = ds[dim].values
            for k in range(ds.sizes["pair"]):
                ax.plot(
                    a,
                    ds[f"{prefix}train_{metric}"].isel(pair=k),
                    color=f"C{k}",
                    label=f"{labels[k]} (train)" if legend else None,
                )
                if not validation:
                    continue
                ax.plot(
                    a,
                    ds[f"{prefix}validation_{metric}"].isel(pair=k),
                    color=f"C{k}",
                    ls="--",
                    alpha=0.8,
                    label=f"{labels[k]} (validation)" if legend else None,
                )
            for edge in (0.0, 1.0):
                if a.min() <= edge <= a.max():
                    ax.axvline(edge, color="k", lw=0.5, alpha=0.5)
            ax.set_xlabel("α")
            ax.set_ylabel(figures.quantity(ds, f"{prefix}train_{metric}", metric))
            if logy and metric == "loss":
                figures.log_axis(ax, "y")

        ax = flat.pop(0)
        curves(ax, "alpha", "", "loss", True)
        ax.set_title("J((1−α)θ0 + αθ1)")
        handles, names = ax.get_legend_handles_labels()
        if has_acc:
            ax = flat.pop(0)
            curves(ax, "alpha", "", "accuracy", False)
            ax.set_title("accuracy (solid: train, dashed: validation)")
        for z in zooms:
            ax = flat.pop(0)
            curves(ax, f"alpha_{z}", f"{z}_", "loss", False, validation=False)
            a = ds[f"alpha_{z}"].values
            ax.set_title(f"train loss, {len(a)} values in [{a.min():.3g}, {a.max():.3g}]")
        for ax in flat:
            ax.set_visible(False)
        fig.legend(handles, names, loc="lower center", ncol=2, frameon=False)
        rows_legend = (len(names) + 1) // 2
        fig.tight_layout(rect=(0, min(0.3, 0.035 * rows_legend / rows + 0.01), 1, 1))
        return fig
