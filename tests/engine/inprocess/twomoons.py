"""An in-process plugin package for the API tests: a data set, a model and a probe that
no installed distribution provides (imported by path on Dask workers)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lossatlas.engine import (
    Cell,
    DataBundle,
    DatasetPlugin,
    ModelPlugin,
    Plan,
    PointRef,
    Probe,
    Split,
    StepContext,
    Variable,
    hookimpl,
    option,
)


@dataclass
class MoonsOptions:
    n: int = option(120, doc="points per split", ge=4)
    noise: float = option(0.1, doc="Gaussian noise", ge=0)


class Moons(DatasetPlugin[MoonsOptions]):
    name = "test-moons"
    summary = "two interleaved half circles"
    Options = MoonsOptions

    def load(self, options: MoonsOptions, seed: int) -> DataBundle:
        g = torch.Generator().manual_seed(seed)

        def split(n: int) -> Split:
            t = torch.rand(n, generator=g, dtype=torch.float64) * math.pi
            y = torch.randint(0, 2, (n,), generator=g)
            x = torch.stack([torch.cos(t), torch.sin(t)], 1)
            x[y == 1] = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], 1)[y == 1]
            x = x + options.noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
            return Split(x.float(), y)

        return DataBundle(split(options.n), split(options.n), "classification", 2)


@dataclass
class TinyNetOptions:
    width: int = option(6, doc="hidden units", ge=1)


class TinyNet(ModelPlugin[TinyNetOptions]):
    name = "test-tinynet"
    summary = "2-W-2 tanh network"
    Options = TinyNetOptions

    def build(self, options: TinyNetOptions, data: DataBundle, seed: int) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):  # the contract: nothing outside sees it
            torch.manual_seed(seed)
            return torch.nn.Sequential(
                torch.nn.Linear(2, options.width),
                torch.nn.Tanh(),
                torch.nn.Linear(options.width, 2),
            )


@dataclass
class RadialOptions:
    at: PointRef = option(PointRef("init"), doc="the centre")
    scales: list[float] = option([0.0, 0.5, 1.0, 2.0], doc="multiples of x", min_items=1)


class Radial(Probe[RadialOptions]):
    """The loss at c·x for each scale c (one cell per scale)."""

    name = "test-radial"
    summary = "loss along the ray through a point"
    Options = RadialOptions
    points = ()

    def plan(self, options: RadialOptions, ctx: StepContext) -> Plan:
        return Plan(
            coords={"scale": np.asarray(options.scales, dtype=float)},
            variables={
                "train_loss": Variable(("scale",), "loss at c·x", units="nats"),
                "cell_seed": Variable(("scale",), "the cell's seed", dtype="int64"),
            },
            cell_dims=("scale",),
        )

    def compute(self, options: RadialOptions, ctx: StepContext, cell: Cell) -> dict[str, float]:
        x = ctx.resolve_point(options.at) * float(cell.coords["scale"])
        loss = ctx.objective.evaluate(x.unsqueeze(0), "train")["loss"][0]
        return {"train_loss": float(loss), "cell_seed": cell.seed % 2**31}


@hookimpl
def lossatlas_register_datasets() -> list[DatasetPlugin]:
    return [Moons()]


@hookimpl
def lossatlas_register_models() -> list[ModelPlugin]:
    return [TinyNet()]


@hookimpl
def lossatlas_register_probes() -> list[Probe]:
    return [Radial()]
