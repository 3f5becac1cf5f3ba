"""``permute-units``: a copy of a point with hidden units of one layer permuted.

Permuting the hidden units of a layer (the rows of its weight and bias, and the matching
input columns of the next layer's weight) leaves the network's function, hence its loss,
unchanged: the discrete symmetry of §2.3.1 of Freeman & Bruna (2017). Their Appendix E
connects a trained 2-3-2 ReLU net to such a copy with two hidden units swapped, a pair
that Dynamic String Sampling (probe ``dss``) must fail to connect. The result is a
``point`` (param,), so later steps say ``at = "<this step>"``; the copied point is kept
as ``source`` and the plot shows both layers' weights before and after, unit by unit.

Cost: two loss evaluations (before and after, as a check).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lossatlas.engine import (
    Cell,
    ConfigError,
    Plan,
    PointRef,
    Probe,
    StepContext,
    Variable,
    figures,
)

__all__ = ["PermuteUnits", "PermuteUnitsOptions", "permute_units"]


@dataclass
class PermuteUnitsOptions:
    at: PointRef = field(default=PointRef("init"), metadata={"doc": "the point to copy"})
    layer: str = field(
        default="",
        metadata={
            "doc": "module name of the layer whose output units are permuted (e.g. '1' in an "
            "mlp); empty: the first layer with a weight matrix"
        },
    )
    units: list[int] = field(
        default_factory=lambda: [0, 1],
        metadata={"doc": "units cycled: units[0] takes units[1]'s place, ... ([0, 1] swaps two)"},
    )

    def validate(self) -> None:
        if len(self.units) < 2 or len(set(self.units)) != len(self.units):
            raise ValueError(f"option 'units' needs at least two distinct units, got {self.units}")
        if min(self.units) < 0:
            raise ValueError("option 'units': unit indices must be ≥ 0")


def _entries(layout: Any, layer: str, units: list[int]) -> tuple[Any, Any, Any]:
    weights = [e for e in layout.entries if e.kind == "weight"]
    if not weights:
        raise ConfigError("permute-units: the model has no weight matrices")
    if layer:
        found = [i for i, e in enumerate(weights) if e.module == layer]
        if not found:
            names = ", ".join(repr(e.module) for e in weights)
            raise ConfigError(f"permute-units: no layer '{layer}' with a weight; layers: {names}")
        k = found[0]
    else:
        k = 0
    w = weights[k]
    if k + 1 >= len(weights):
        raise ConfigError(
            f"permute-units: layer '{w.module}' is the output layer; its "
            "units are not hidden (choose an earlier layer)"
        )
    nxt = weights[k + 1]
    n = w.shape[0]
    if len(nxt.shape) < 2 or nxt.shape[1] != n:
        raise ConfigError(
            f"permute-units: layer '{w.module}' has {n} units but the next "
            f"weight '{nxt.name}' takes {nxt.shape[1]} inputs; only layers "
            "feeding the next one unit by unit can be permuted"
        )
    if max(units) >= n:
        raise ConfigError(
            f"permute-units: layer '{w.module}' has {n} units; units {units} are out of range"
        )
    bias = next((e for e in layout.entries if e.module == w.module and e.kind == "bias"), None)
    return w, bias, nxt


def permute_units(layout: Any, x: torch.Tensor, layer: str, units: list[int]) -> torch.Tensor:
    """x with the output units ``units`` of ``layer`` cycled (function unchanged)."""
    w, bias, nxt = _entries(layout, layer, units)
    n = w.shape[0]
    order = list(range(n))
    for a, b in zip(units, units[1:] + units[:1], strict=True):
        order[a] = b
    idx = torch.as_tensor(order, device=x.device)
    y = x.clone()
    W = x[w.slice].reshape(w.shape)
    y[w.slice] = W[idx].reshape(-1)
    if bias is not None:
        y[bias.slice] = x[bias.slice][idx]
    V = x[nxt.slice].reshape(nxt.shape)
    y[nxt.slice] = V[:, idx].reshape(-1)
    return y


class PermuteUnits(Probe[PermuteUnitsOptions]):
    name = "permute-units"
    summary = "copy of a point with hidden units swapped (same function; Freeman & Bruna)"
    Options = PermuteUnitsOptions
    points = ("point", "source")

    def check(self, options: PermuteUnitsOptions, ctx: StepContext) -> None:
        _entries(ctx.objective.layout, options.layer, list(options.units))

    def plan(self, options: PermuteUnitsOptions, ctx: StepContext) -> Plan:
        w, bias, nxt = _entries(ctx.objective.layout, options.layer, list(options.units))

        def where(e: Any) -> list[Any]:
            return [e.name, e.slice.start, e.slice.stop, list(e.shape)]

        return Plan(
            coords={"param": np.arange(ctx.objective.D)},
            variables={
                "point": Variable(("param",), "the permuted copy"),
                "source": Variable(("param",), "the point that was copied"),
                "loss_before": Variable((), "train loss at the point", units="loss"),
                "loss_after": Variable(
                    (), "train loss at the copy (equal up to rounding)", units="loss"
                ),
            },
            attrs={
                "at": str(options.at),
                "units": list(options.units),
                "layer": w.module,
                # [name, start, stop, shape] of the permuted rows and columns, so the
                # plot can redraw the two weight matrices from the flat points
                "permuted_weight": where(w),
                "next_weight": where(nxt),
                "permuted_bias": where(bias) if bias is not None else [],
            },
        )

    def compute(self, options: PermuteUnitsOptions, ctx: StepContext, cell: Cell) -> dict[str, Any]:
        obj = ctx.objective
        x = ctx.resolve_point(options.at)
        y = permute_units(obj.layout, x, options.layer, list(options.units))
        loss = obj.evaluate(torch.stack([x, y]))["loss"]
        return {"point": y, "source": x, "loss_before": loss[0], "loss_after": loss[1]}

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        """Both weight matrices around the permuted layer, before and after, with one
        row per hidden unit (the rows of the layer's weight, the columns of the next
        layer's), the permuted units marked, and the two losses in the title."""
        import matplotlib.pyplot as plt

        units = [int(u) for u in ds.attrs["units"]]
        fig, axes = plt.subplots(2, 2, figsize=(9, 6), squeeze=False)
        for col, key in enumerate(("permuted_weight", "next_weight")):
            where_ = ds.attrs[key]
            if isinstance(where_, str):  # stored as JSON text (netCDF-safe)
                where_ = json.loads(where_)
            name, start, stop, shape = where_
            for row, var in enumerate(("source", "point")):
                block = np.asarray(ds[var].values[int(start) : int(stop)]).reshape(shape)
                if col == 0:  # rows of this layer's weight are its units
                    rows = block.reshape(shape[0], -1)
                else:  # columns of the next layer's weight are the same units
                    rows = np.moveaxis(block, 1, 0).reshape(shape[1], -1)
                ax = axes[row, col]
                lim = float(np.abs(rows).max()) or 1.0
                im = ax.imshow(
                    rows, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest"
                )
                for u in units:
                    ax.axhline(u, color="k", lw=0.6, ls=":")
                ax.set_yticks(range(rows.shape[0]) if rows.shape[0] <= 20 else [])
                ax.set_ylabel("hidden unit")
                ax.set_xlabel("input" if col == 0 else "output (× kernel)")
                ax.set_title(f"{name}, {'before' if row == 0 else 'after'}", fontsize=9)
                figures.colorbar(fig, im, ax, "weight value", fraction=0.046)
        before, after = float(ds["loss_before"]), float(ds["loss_after"])
        fig.suptitle(
            f"layer '{ds.attrs['layer']}': units {units} cycled; train loss "
            f"{before:.6g} → {after:.6g} (|Δ| = {abs(after - before):.2g})",
            fontsize=10,
        )
        fig.tight_layout()
        return fig
