"""``random-line``: loss and accuracy along random directions through a point.

The simplest landscape picture (the 1-D plots of Goodfellow et al. 2015 and Li et al.
2018 through a point): L(x + α·‖x‖·u) for unit Gaussian directions u, with α a
fraction of the point's norm. The grid is symmetric and always contains α = 0 exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from lossatlas.engine import (
    Cell,
    ConfigError,
    Estimate,
    Plan,
    PointRef,
    Probe,
    StepContext,
    figures,
    grid_estimate,
    metric_variables,
    option,
)

__all__ = ["RandomLine"]

#: Up to this many directions get a legend entry each; more are coloured along a
#: colour map with a colour bar (a legend of 24 directions would not fit the axes).
LEGEND_DIRECTIONS = 8


@dataclass
class RandomLineOptions:
    at: PointRef = option(PointRef("init"), doc="the point x (a reference)")
    points: int = option(
        41, doc="grid points along each line (the centre is evaluated)", ge=3, odd=True
    )
    span: float = option(1.0, doc="α runs over [−span, span] (× ‖x‖)", gt=0)
    directions: int = option(3, doc="number of random directions", ge=1)
    scale: Literal["relative", "absolute"] = option(
        "relative", doc="'relative' (× ‖x‖) or 'absolute'"
    )


class RandomLine(Probe[RandomLineOptions]):
    name = "random-line"
    points = ()  # no (param,) results for later steps
    summary = "loss and accuracy along random unit directions through a point"
    Options = RandomLineOptions
    blockable = True  # a direction's line is cheap: several per unit of work

    def estimate(self, options: RandomLineOptions, ctx: StepContext) -> Estimate:
        """Cells, evaluations and bytes from the options (see :class:`Estimate`)."""
        nm = 2 * len(ctx.objective.metric_names())
        return grid_estimate(
            ctx,
            options.directions,
            options.points * nm,
            points_per_cell=options.points,
            drivers=("directions", "points"),
        )

    def plan(self, options: RandomLineOptions, ctx: StepContext) -> Plan:
        obj = ctx.objective
        x = ctx.resolve_point(options.at)
        norm = float(x.norm())
        if options.scale == "relative" and norm == 0:
            raise ConfigError(
                f"step '{ctx.step.name}': the point has norm 0; use scale = 'absolute'"
            )
        alpha = np.linspace(-options.span, options.span, options.points)
        alpha[options.points // 2] = 0.0
        return Plan(
            coords={"direction": np.arange(options.directions), "alpha": alpha},
            cell_dims=("direction",),
            variables=metric_variables(obj.metric_names(), ("direction", "alpha")),
            static={
                "point_norm": (
                    (),
                    np.float64(norm),
                    {"description": "‖x‖ at the point", "units": ""},
                )
            },
            coord_attrs={
                "direction": {
                    "description": "index of the random unit direction u (each its own "
                    "Gaussian draw, seeded by the cell)",
                    "units": "",
                },
                "alpha": {
                    "description": "step along the direction, "
                    + ("× ‖x‖" if options.scale == "relative" else "absolute"),
                    "units": "‖x‖" if options.scale == "relative" else "",
                },
            },
            attrs={"at": str(options.at)},
        )

    def compute(self, options: RandomLineOptions, ctx: StepContext, cell: Cell) -> dict[str, Any]:
        return self.compute_block(options, ctx, [cell])[0]

    def compute_block(
        self, options: RandomLineOptions, ctx: StepContext, cells: Sequence[Cell]
    ) -> list[dict[str, Any]]:
        """Several directions' lines in one batched evaluation (each direction drawn from
        its own cell's seed, its points built as alone)."""
        obj = ctx.objective
        x = ctx.resolve_point(options.at)
        scale = float(x.norm()) if options.scale == "relative" else 1.0
        alpha = torch.linspace(-options.span, options.span, options.points, dtype=torch.float64)
        alpha[options.points // 2] = 0.0
        step = (alpha * scale).to(x.dtype).to(x.device).unsqueeze(1)
        lines = []
        for cell in cells:
            g = cell.generator()
            u = torch.randn(obj.D, generator=g, dtype=torch.float64).to(x.device, x.dtype)
            u = u / u.norm()
            lines.append(x.unsqueeze(0) + step * u)
        values = obj.evaluate_both(torch.cat(lines) if len(lines) > 1 else lines[0])
        n = options.points
        return [{k: v[i * n : (i + 1) * n] for k, v in values.items()} for i in range(len(cells))]

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        """Loss (and accuracy) against α, one colour per direction; solid: train,
        dashed: validation. Up to :data:`LEGEND_DIRECTIONS` directions are named in the
        legend; more are coloured along a colour map with a colour bar."""
        import matplotlib.pyplot as plt
        from matplotlib.colors import Normalize
        from matplotlib.lines import Line2D

        has_acc = "train_accuracy" in ds
        fig, axes = plt.subplots(
            1, 2 if has_acc else 1, figsize=(10 if has_acc else 5.5, 4), squeeze=False
        )
        directions = list(ds["direction"].values)
        many = len(directions) > LEGEND_DIRECTIONS
        cmap, norm = plt.get_cmap("viridis"), Normalize(0, max(len(directions) - 1, 1))

        def color(k: int) -> Any:
            return cmap(norm(k)) if many else f"C{k}"

        ax = axes[0, 0]
        for k, d in enumerate(directions):
            ax.plot(
                ds["alpha"],
                ds["train_loss"].sel(direction=d),
                color=color(k),
                label=None if many else f"direction {d}",
            )
            ax.plot(
                ds["alpha"],
                ds["validation_loss"].sel(direction=d),
                color=color(k),
                ls="--",
                alpha=0.7,
            )
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel(figures.quantity(ds, "alpha", "α"))
        ax.set_ylabel(figures.quantity(ds, "train_loss", "loss"))
        if kwargs.get("logy"):
            figures.log_axis(ax, "y")
        styles = [
            Line2D([], [], color="0.3", label="train"),
            Line2D([], [], color="0.3", ls="--", alpha=0.7, label="validation"),
        ]
        handles = styles if many else [*ax.get_legend_handles_labels()[0], *styles]
        ax.legend(handles=handles, ncol=2 if len(handles) > 5 else 1)
        ax.set_title(f"loss along {len(directions)} random directions")
        if has_acc:
            ax = axes[0, 1]
            for k, d in enumerate(directions):
                ax.plot(ds["alpha"], ds["train_accuracy"].sel(direction=d), color=color(k))
                ax.plot(
                    ds["alpha"],
                    ds["validation_accuracy"].sel(direction=d),
                    color=color(k),
                    ls="--",
                    alpha=0.7,
                )
            ax.axvline(0, color="k", lw=0.5)
            ax.set_xlabel("α")
            ax.set_ylabel("accuracy")
            ax.set_title("accuracy (solid: train, dashed: validation)")
        if many:
            fig.colorbar(
                plt.cm.ScalarMappable(norm=norm, cmap=cmap),
                ax=axes[0, -1],
                label="direction",
                fraction=0.05,
            )
        fig.tight_layout()
        return fig
