"""``mean-probe``: loss at random points around the initialisation, a row per direction.

``finalize`` returns, by ``mode``:

- ``assign``: ``ds.assign(mean_loss=ds.loss.mean("sample"))`` (the whole Dataset back);
- ``dataset``: a new Dataset of the summary alone;
- ``overwrite``: ``ds.assign(loss=ds.loss * 2)`` (changes a planned variable: refused);
- ``newdim``: a summary over a new dim ``stat`` with its coordinate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr

from lossatlas.engine import Cell, Plan, Probe, Variable, hookimpl


@dataclass
class MeanOptions:
    directions: int = 3
    samples: int = 4
    mode: Literal["assign", "dataset", "overwrite", "newdim"] = "assign"


class MeanProbe(Probe):
    name = "mean-probe"
    summary = "loss at random points; finalize returns ds.assign(...)"
    Options = MeanOptions
    points = ()

    def plan(self, options: MeanOptions, ctx: Any) -> Plan:
        return Plan(
            coords={
                "direction": np.arange(options.directions),
                "sample": np.arange(options.samples),
            },
            variables={"loss": Variable(("direction", "sample"), "loss at a random point")},
            cell_dims=("direction",),
        )

    def compute(self, options: MeanOptions, ctx: Any, cell: Cell) -> dict[str, Any]:
        obj = ctx.objective
        g = cell.generator()
        x = obj.x0 + 0.1 * torch.randn(options.samples, obj.D, generator=g).to(obj.x0)
        return {"loss": obj.evaluate(x)["loss"]}

    def finalize(self, options: MeanOptions, ctx: Any, ds: xr.Dataset) -> xr.Dataset:
        if options.mode == "assign":
            return ds.assign(mean_loss=ds.loss.mean("sample"))
        if options.mode == "dataset":
            return xr.Dataset({"mean_loss": ds.loss.mean("sample")})
        if options.mode == "overwrite":
            return ds.assign(loss=ds.loss * 2)
        q = ds.loss.quantile([0.25, 0.75], dim="sample").rename(quantile="stat")
        return ds.assign(loss_quartiles=q)

    def plot(self, ds: xr.Dataset, **kwargs: Any) -> Any:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ds.loss.plot(ax=ax)
        return fig


@hookimpl
def lossatlas_register_probes() -> list[Probe]:
    return [MeanProbe()]
