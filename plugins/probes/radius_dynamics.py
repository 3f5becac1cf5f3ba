"""``radius-dynamics``: how the radius moves in full-space training (seed 004).

Chang's CIFAR-10 follow-up to Fort & Scherlis (seed 004): from a Xavier point rescaled
to r0 < r_Xavier the radius grows as r ∝ √t and ends near r_X with a good solution;
from r0 > r_X it barely moves and no good solution is found; with the radius
constrained to r0 (radial gradient removed, radius restored after every step) good
solutions appear only near r_X.

Per (mode ∈ free | constrained, start radius r0 in units of r_Xavier, sample): full-space
training with ``engine.training.train`` (Adam, lr 1e-3 by default); the weights' radius
is recorded every ``record_every`` steps and the accuracy per epoch; ``snapshots``
parameter vectors per run, log-spaced in the step (step 0 and the last included), are
kept (``trajectory``), so a reader can recompute any radius, loss or direction from the
store (their size: modes × starts × samples × snapshots × D in the run's dtype).
``finalize`` fits r ∝ t^p on the steps where the radius has at least doubled (else the
last decade of steps) and keeps the final accuracies. One cell per (mode, start); cost:
its samples × epochs of training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lossatlas.engine import (
    Cell,
    ConfigError,
    Plan,
    Probe,
    StepContext,
    Variable,
    figures,
    optimizer_options,
)
from lossatlas.engine.geometry import draw_init, init_radius

from .goldilocks import mark_reference
from .radial_profile import fit_power_law

__all__ = ["RadiusDynamics", "RadiusDynamicsOptions", "growth_exponent", "snapshot_steps"]


@dataclass
class RadiusDynamicsOptions(
    optimizer_options(optimizer="adam", lr=1e-3, epochs=5, batch_size=64, epochs_min=1)
):
    starts: list[float] = field(
        default_factory=lambda: [0.1, 1.0, 10.0],
        metadata={"doc": "start radii r0 in units of r_Xavier"},
    )
    modes: list[str] = field(
        default_factory=lambda: ["free", "constrained"],
        metadata={"doc": "free training and/or training with the radius held at r0"},
    )
    samples: int = field(default=1, metadata={"doc": "runs per (mode, r0)"})
    init: Literal["xavier", "he"] = field(
        default="xavier", metadata={"doc": "initialisation whose draws are rescaled to r0"}
    )
    record_every: int = field(default=2, metadata={"doc": "record the radius every k steps"})
    snapshots: int = field(
        default=11,
        metadata={
            "doc": "parameter vectors kept per run, log-spaced in the step from 0 to the "
            "last (recorded steps; 0: none)"
        },
    )

    def validate(self) -> None:
        if not self.starts or min(self.starts) <= 0:
            raise ValueError(f"option 'starts' must list positive radii, got {self.starts}")
        bad = [m for m in self.modes if m not in ("free", "constrained")]
        if bad or not self.modes:
            raise ValueError(f"option 'modes' takes 'free' and/or 'constrained', got {self.modes}")
        if self.samples < 1 or self.record_every < 1:
            raise ValueError("need samples and record_every ≥ 1")
        if self.snapshots < 0 or self.snapshots == 1:
            raise ValueError(
                f"option 'snapshots' must be 0 (none) or ≥ 2 (the start and the end), got "
                f"{self.snapshots}"
            )


def growth_exponent(steps: np.ndarray, radius: np.ndarray) -> float:
    """p of r ∝ t^p, fitted in log-log on the steps t > 0 where r ≥ 2·r(0) (the growth
    regime of seed 004), or on the last decade of steps if the radius never doubled."""
    t, r = np.asarray(steps, float), np.asarray(radius, float)
    ok = (t > 0) & np.isfinite(r) & (r > 0)
    grown = ok & (r >= 2 * r[0])
    use = grown if grown.sum() >= 3 else ok & (t >= t[ok].max() / 10 if ok.any() else False)
    return fit_power_law(t[use], r[use])[0]


def snapshot_steps(record: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` of the recorded steps ``record``, log-spaced: the first (step 0) and
    the n − 1 positive recorded steps nearest (in log t) to points geometrically spaced
    from the first positive step to the last, both included (fewer when two points share
    a nearest step)."""
    record = np.asarray(record, dtype=np.int64)
    if n <= 0 or not len(record):
        return record[:0]
    pos = record[record > 0]
    if not len(pos) or n < 2:
        return record[:1]
    targets = np.geomspace(pos[0], pos[-1], n - 1) if n > 2 else pos[-1:].astype(float)
    nearest = pos[np.abs(np.log(pos)[None, :] - np.log(targets)[:, None]).argmin(axis=1)]
    return np.unique(np.concatenate([record[:1], nearest]))


def _record_steps(options: RadiusDynamicsOptions, n_train: int) -> np.ndarray:
    bs = min(options.batch_size or n_train, n_train)
    total = options.epochs * math.ceil(n_train / bs)
    steps = list(range(0, total + 1, options.record_every))
    if steps[-1] != total:
        steps.append(total)
    return np.asarray(steps, dtype=np.int64)


class RadiusDynamics(Probe[RadiusDynamicsOptions]):
    name = "radius-dynamics"
    points = ()  # no (param,) results for later steps
    summary = "radius vs training step from r0 below/at/above r_Xavier, free or constrained"
    Options = RadiusDynamicsOptions

    def check(self, options: RadiusDynamicsOptions, ctx: StepContext) -> None:
        from .train import MAX_TRAJECTORY_BYTES

        obj = ctx.objective
        n = len(snapshot_steps(_record_steps(options, len(obj.splits["train"])), options.snapshots))
        runs = len(options.modes) * len(options.starts) * options.samples
        size = runs * n * obj.D * (4 if str(ctx.dtype).endswith("32") else 8)
        if size > MAX_TRAJECTORY_BYTES:
            raise ConfigError(
                f"step '{ctx.step.name}': keeping {n} snapshots of D={obj.D:,} parameters "
                f"for {runs} runs needs {size / 2**30:.1f} GiB; lower snapshots (now "
                f"{options.snapshots}; 0 keeps none)"
            )

    def plan(self, options: RadiusDynamicsOptions, ctx: StepContext) -> Plan:
        obj = ctx.objective
        steps = _record_steps(options, len(obj.splits["train"]))
        snaps = snapshot_steps(steps, options.snapshots)
        traj_dtype = "float32" if str(ctx.dtype).endswith("32") else "float64"
        variables = {
            "radius": Variable(
                ("mode", "start", "sample", "record"),
                "radius of the weights at the recorded step",
                units="‖x‖",
                finite=False,
            )
        }
        for s in ("train", "validation"):
            for m in obj.metric_names():
                variables[f"{s}_{m}"] = Variable(
                    ("mode", "start", "sample", "epoch"),
                    f"{m} on the {s} split after each epoch",
                    finite=False,
                )
        coords = {
            "mode": np.asarray(options.modes),
            "start": np.asarray(options.starts, float),
            "sample": np.arange(options.samples),
            "record": np.arange(len(steps)),
            "epoch": np.arange(options.epochs + 1),
        }
        static = {"step": (("record",), steps, {"description": "optimizer step of a record"})}
        if len(snaps):
            coords["snapshot"] = np.arange(len(snaps))
            coords["param"] = np.arange(obj.D)
            static["snapshot_step"] = (
                ("snapshot",),
                snaps,
                {"description": "optimizer step of a kept parameter vector", "units": "steps"},
            )
            variables["trajectory"] = Variable(
                ("mode", "start", "sample", "snapshot", "param"),
                "the parameters x at the snapshot's step (NaN: the run stopped before it)",
                dtype=traj_dtype,
                finite=False,
            )
        rx = init_radius(obj.layout, "xavier")
        static["r_xavier"] = ((), np.float64(rx), {"description": "mean Xavier radius"})
        return Plan(
            coords=coords,
            cell_dims=("mode", "start"),
            variables=variables,
            static=static,
            coord_attrs={
                "start": {"description": "start radius r0 / r_Xavier"},
                "param": {"description": "index into the flat parameter vector"},
            },
            attrs={"optimizer": options.optimizer, "lr": options.lr},
        )

    def compute(
        self, options: RadiusDynamicsOptions, ctx: StepContext, cell: Cell
    ) -> dict[str, Any]:
        import torch

        from lossatlas.engine.training import train_as

        obj = ctx.objective
        steps = _record_steps(options, len(obj.splits["train"]))
        snaps = snapshot_steps(steps, options.snapshots)
        r0 = float(cell.coords["start"]) * init_radius(obj.layout, "xavier")
        constrained = cell.coords["mode"] == "constrained"
        w = obj.layout.mask("weight", device=obj.device)
        g = cell.generator()

        def tangent(v: torch.Tensor, gr: torch.Tensor) -> torch.Tensor:
            u = torch.where(w, v, torch.zeros_like(v))
            u = u / u.norm()
            return gr - (gr * u).sum() * u

        def project(v: torch.Tensor) -> torch.Tensor:
            out = v.clone()
            out[w] = v[w] * (r0 / v[w].norm())
            return out

        n_ep = options.epochs + 1
        rad = np.full((options.samples, len(steps)), np.nan)
        kept = np.full((options.samples, len(snaps), obj.D), np.nan)
        hist = {
            f"{s}_{m}": np.full((options.samples, n_ep), np.nan)
            for s in ("train", "validation")
            for m in obj.metric_names()
        }
        for s in range(options.samples):
            x = draw_init(
                obj.layout, g, scheme=options.init, radius=r0, dtype=obj.dtype, device=obj.device
            )
            seed = int(torch.randint(0, 2**62, (1,), generator=g))
            res = train_as(
                options,
                obj,
                x,
                seed=seed,
                record_every=options.record_every,
                grad_transform=tangent if constrained else None,
                project=project if constrained else None,
            )
            traj = torch.as_tensor(res.trajectory)
            radii = obj.layout.radius(traj.to(obj.device)).cpu().numpy()
            pos = np.searchsorted(steps, res.record_steps)
            keep = (pos < len(steps)) & (steps[np.minimum(pos, len(steps) - 1)] == res.record_steps)
            rad[s, pos[keep]] = radii[keep]
            rec = np.asarray(res.record_steps)
            for k, st in enumerate(snaps):
                hit = np.flatnonzero(rec == st)
                if len(hit):
                    kept[s, k] = np.asarray(res.trajectory[hit[0]], dtype=np.float64)
            for k in hist:
                v = np.asarray(res.history[k], float)[:n_ep]
                hist[k][s, : len(v)] = v
        out = {"radius": rad, **hist}
        if len(snaps):
            out["trajectory"] = kept
        return out

    def finalize(self, options: RadiusDynamicsOptions, ctx: StepContext, ds: Any) -> Any:
        import xarray as xr

        steps = ds["step"].values
        rad = ds["radius"].values
        p = np.full(rad.shape[:3], np.nan)
        for idx in np.ndindex(*rad.shape[:3]):
            p[idx] = growth_exponent(steps, rad[idx])
        out = xr.Dataset()
        out["exponent"] = (
            ("mode", "start", "sample"),
            p,
            {"description": "fitted p of r ∝ t^p (seed 004: ½ from r0 < r_X)"},
        )
        out["final_radius"] = ds["radius"].isel(record=-1, drop=True)
        for k in [v for v in ds.data_vars if "epoch" in ds[v].dims]:
            out[f"final_{k}"] = ds[k].isel(epoch=-1, drop=True)
        return out

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        steps = ds["step"].values
        ax = axes[0]
        for j, st in enumerate(ds["start"].values):
            for mode in ds["mode"].values:
                rs = ds["radius"].sel(start=st, mode=mode)
                r, sd = rs.mean("sample").values, rs.std("sample").values
                ls = "-" if mode == "free" else "--"
                lab = f"r0 = {st:g} r_X ({mode})"
                if "exponent" in ds and mode == "free":
                    lab += f", p = {float(ds['exponent'].sel(start=st, mode=mode).mean()):.2f}"
                t = np.maximum(steps, 1)
                ax.plot(t, r, ls, color=f"C{j}", label=lab)
                if rs.sizes["sample"] > 1:  # ±σ over samples
                    ax.fill_between(t, r - sd, r + sd, color=f"C{j}", alpha=0.2, lw=0)
        ax.axhline(float(ds["r_xavier"]), color="k", ls=":", lw=1, label="r_Xavier")
        figures.log_axis(ax, "x")
        figures.log_axis(ax, "y")
        ax.set_xlabel("optimizer step t (step 0 drawn at 1)")
        ax.set_ylabel("radius ‖W‖")
        ax.set_title("radius during training")
        ax.legend()
        ax = axes[1]
        target = "validation_accuracy" if "validation_accuracy" in ds else "validation_loss"
        rx = float(ds["r_xavier"])
        for mode in ds["mode"].values:
            v = ds[target].isel(epoch=-1).sel(mode=mode)
            ax.errorbar(
                ds["start"].values * rx,
                v.mean("sample").values,
                yerr=v.std("sample").values,
                marker="o",
                capsize=3,
                ls="-" if mode == "free" else "--",
                label=mode,
            )
        mark_reference(ax, ds)
        figures.log_axis(ax, "x")
        ax.set_xlabel("start radius r0")
        ax.set_ylabel(f"final {target.replace('_', ' ')}")
        ax.set_title("final accuracy vs start radius")
        ax.legend()
        fig.tight_layout()
        return fig
