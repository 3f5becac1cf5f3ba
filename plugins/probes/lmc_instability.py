"""``lmc-instability``: when does SGD noise stop mattering? (Frankle et al. 2020)

Frankle, Dziugaite, Roy & Carbin, "Linear Mode Connectivity and the Lottery Ticket
Hypothesis", ICML 2020. A network is *stable to SGD noise* from step k when two copies of
it, trained on from step k with different data orders, end up linearly connected: no
error barrier on the straight line between the two final networks. The paper's
**instability** of a pair is the error barrier

    max_α E((1−α)·θ1 + α·θ2) − mean(E(θ1), E(θ2)),

and it plots instability against k (Figs. 2–4): high at k = 0 (two trainings from the
same initialisation diverge into different basins), falling to ~0 after a short
stretch of training.

The probe takes the parent run from a ``train`` step (``of``): for every spawn step k in
``spawn`` (each a snapshot the parent recorded: ``record_every`` must divide it) and
every ``replicate``, it trains two children from θ(k) for the parent's remaining
T − k optimizer steps, with the parent's optimiser options and two data-order seeds
drawn from the cell's seed, then evaluates the line between the children on
``points`` values of α. One cell per (k, replicate).

Stored per cell: train and validation loss and accuracy along the line, the error
barrier (Frankle's instability; for regression the loss barrier) and the loss barrier
with the same definition, the distance between the children and their own metrics;
``finalize`` adds the mean and standard deviation over replicates per k.

The children restart the optimiser's state (momentum, Adam moments): a ``train`` step
records parameters, not optimiser state. Plain SGD has none, and with momentum the
state is rebuilt within ~1/(1 − momentum) steps. The paper's networks use a learning-
rate schedule; the ``train`` probe's learning rate is constant.

Cost per cell: 2 × (T − k) optimizer steps on mini-batches, plus ``points`` forward
passes over both splits.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lossatlas.engine import (
    Cell,
    ConfigError,
    Plan,
    Probe,
    StepContext,
    StepRef,
    Variable,
    figures,
    option,
    parse_options,
)

from .interpolation import evaluate_points, interpolate
from .train import TrainOptions, _steps, planned_record_steps

__all__ = ["LMCInstability", "LMCInstabilityOptions", "frankle_barrier"]


@dataclass
class LMCInstabilityOptions:
    of: StepRef = option(
        StepRef("train"),
        doc="the parent: a train step ('STEP' or 'RUN/STEP') that recorded snapshots at "
        "every spawn step",
        probes=("train",),
    )
    spawn: list[int] = field(
        default_factory=lambda: [0],
        metadata={
            "ge": 0,
            "min_items": 1,
            "doc": "optimizer steps k at which two children are spawned",
        },
    )
    replicates: int = field(
        default=1, metadata={"ge": 1, "doc": "pairs of children per k (the paper uses three)"}
    )
    points: int = field(
        default=25,
        metadata={
            "ge": 2,
            "doc": "α values on the line between the children",
        },
    )
    recompute_bn: bool = field(
        default=True,
        metadata={"doc": "recompute BatchNorm statistics at every α (where the model has BN)"},
    )

    def validate(self) -> None:
        if len(set(self.spawn)) != len(self.spawn):
            raise ValueError(f"option 'spawn' must list distinct steps, got {self.spawn}")


def frankle_barrier(alpha: np.ndarray, values: np.ndarray) -> float:
    """max over α ∈ [0, 1] of ``values`` − the mean of its two endpoint values
    (Frankle et al.'s instability for an error curve); NaN if any value is."""
    alpha, values = np.asarray(alpha, float), np.asarray(values, float)
    if not np.all(np.isfinite(values)):
        return float("nan")
    ends = 0.5 * (values[alpha == 0][0] + values[alpha == 1][0])
    return float(np.max(values) - ends)


def _parent(
    options: LMCInstabilityOptions, ctx: StepContext
) -> tuple[TrainOptions, int, np.ndarray]:
    """(the parent's train options, its planned total steps T, its recorded steps)."""
    where = f"step '{ctx.step.name}': parent '{options.of}'"
    # The engine checked that 'of' names a train step (StepRef, probes = ("train",)).
    opts = parse_options(TrainOptions, ctx.step_options(options.of), where)
    _per, total = _steps(opts, len(ctx.objective.splits["train"]))
    record = planned_record_steps(opts.record_every, total)
    return opts, total, record


class LMCInstability(Probe[LMCInstabilityOptions]):
    name = "lmc-instability"
    points = ()
    summary = "Frankle et al.: error barrier between two children spawned at step k vs k"
    Options = LMCInstabilityOptions

    def check(self, options: LMCInstabilityOptions, ctx: StepContext) -> None:
        opts, total, record = _parent(options, ctx)
        late = [k for k in options.spawn if k > total]
        if late:
            raise ConfigError(
                f"step '{ctx.step.name}': spawn steps {late} lie after the parent's last "
                f"step ({total})"
            )
        missing = [k for k in options.spawn if k not in set(record.tolist())]
        if missing:
            raise ConfigError(
                f"step '{ctx.step.name}': the parent '{options.of}' records snapshots at "
                f"steps {record[:6].tolist()}{' …' if len(record) > 6 else ''} "
                f"(record_every = {opts.record_every}); spawn steps {missing} are not among "
                "them — choose multiples of record_every or lower it"
            )
        if opts.epochs == 0 or total == 0:
            raise ConfigError(f"step '{ctx.step.name}': the parent '{options.of}' trains no step")

    def plan(self, options: LMCInstabilityOptions, ctx: StepContext) -> Plan:
        obj = ctx.objective
        opts, total, _record = _parent(options, ctx)
        alpha = np.linspace(0.0, 1.0, options.points)
        cell = ("spawn", "replicate")
        metric = "error" if obj.task == "classification" else "loss"
        variables: dict[str, Variable] = {}
        for split in ("train", "validation"):
            for m in obj.metric_names():
                variables[f"{split}_{m}"] = Variable(
                    (*cell, "alpha"),
                    f"{m} on the {split} split along the line between the two children",
                    units="1",
                )
                variables[f"child_{split}_{m}"] = Variable(
                    (*cell, "child"),
                    f"{m} of each child on the {split} split",
                    units="1",
                )
            variables[f"{split}_{metric}_barrier"] = Variable(
                cell,
                f"instability (Frankle et al.): max along the line of the {split} {metric} "
                "− the mean of the two children's",
                units="1",
            )
            if metric == "error":
                variables[f"{split}_loss_barrier"] = Variable(
                    cell,
                    f"max along the line of the {split} loss − the mean of the children's",
                    units="1",
                )
        variables["distance"] = Variable(cell, "‖θ1 − θ2‖ between the children", units="1")
        variables["child_seed"] = Variable(
            (*cell, "child"), "data-order seed of each child", units="1", dtype="int64"
        )
        return Plan(
            coords={
                "spawn": np.asarray(options.spawn, dtype=np.int64),
                "replicate": np.arange(options.replicates),
                "child": np.arange(2),
                "alpha": alpha,
            },
            variables=variables,
            cell_dims=cell,
            coord_attrs={
                "spawn": {"description": "parent's optimizer step k at the spawn", "units": "1"},
                "replicate": {"description": "pair of children at the same k", "units": "1"},
                "child": {"description": "child of the pair", "units": "1"},
                "alpha": {"description": "(1−α)·θ1 + α·θ2", "units": "1"},
            },
            attrs={
                "of": str(options.of),
                "total_steps": int(total),
                "optimizer": opts.optimizer,
                "lr": opts.lr,
                "batch_size": opts.batch_size,
                "metric": metric,
                "paper": "Frankle et al., ICML 2020",
            },
        )

    def compute(
        self, options: LMCInstabilityOptions, ctx: StepContext, cell: Cell
    ) -> dict[str, Any]:
        from lossatlas.engine.training import train

        obj = ctx.objective
        opts, total, _record = _parent(options, ctx)
        k = int(cell.coords["spawn"])
        of = str(options.of)
        start = ctx.resolve_point(f"{of}@{k}")
        remaining = total - k
        per_epoch, _ = _steps(opts, len(obj.splits["train"]))
        g = cell.generator()
        seeds = [int(s) for s in torch.randint(0, 2**31 - 1, (2,), generator=g)]
        children = []
        for seed in seeds:
            if remaining == 0:
                children.append(start.clone())
                continue
            res = train(
                obj,
                start,
                optimizer=opts.optimizer,
                lr=opts.lr,
                momentum=opts.momentum,
                nesterov=opts.nesterov,
                betas=(float(opts.betas[0]), float(opts.betas[1])),
                weight_decay=opts.weight_decay,
                epochs=math.ceil(remaining / per_epoch),
                batch_size=opts.batch_size or None,
                seed=seed,
                max_steps=remaining,
                history=False,
            )
            children.append(res.x_final)
        alpha = np.linspace(0.0, 1.0, options.points)
        values = evaluate_points(
            obj, interpolate(children[0], children[1], alpha), options.recompute_bn
        )
        out: dict[str, Any] = dict(values)
        ends = np.asarray([0, len(alpha) - 1])
        for key, v in values.items():
            out[f"child_{key}"] = v[ends]
        for split in ("train", "validation"):
            if obj.task == "classification":
                out[f"{split}_error_barrier"] = frankle_barrier(
                    alpha, 1.0 - values[f"{split}_accuracy"]
                )
            out[f"{split}_loss_barrier"] = frankle_barrier(alpha, values[f"{split}_loss"])
        out["distance"] = float((children[0] - children[1]).double().norm())
        out["child_seed"] = np.asarray(seeds, dtype=np.int64)
        return out

    def finalize(self, options: LMCInstabilityOptions, ctx: StepContext, ds: Any) -> Any:
        import xarray as xr

        metric = ds.attrs.get("metric", "error")
        out = {}
        for split in ("train", "validation"):
            name = f"{split}_{metric}_barrier"
            v = np.asarray(ds[name].values, dtype=float)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(v, axis=1), np.nanstd(v, axis=1)
            unit = "1"
            out[f"{name}_mean"] = xr.Variable(
                ("spawn",), mean, {"description": f"mean over replicates of {name}", "units": unit}
            )
            out[f"{name}_std"] = xr.Variable(
                ("spawn",), std, {"description": f"std over replicates of {name}", "units": unit}
            )
        return xr.Dataset(out)

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        """Left: instability (the error barrier between the children) against the spawn
        step k, mean ± std over replicates, train and validation (the paper's Fig. 3).
        Right: the validation error (or loss) along the line for each k."""
        import matplotlib.pyplot as plt
        from matplotlib import colors
        from matplotlib.ticker import FuncFormatter

        metric = ds.attrs.get("metric", "error")
        fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2))
        k = np.asarray(ds["spawn"].values, dtype=float)
        ax = axes[0]
        for split, style in (("validation", "o-"), ("train", "s--")):
            v = np.asarray(ds[f"{split}_{metric}_barrier"].values, dtype=float)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                ax.errorbar(
                    k, np.nanmean(v, 1), yerr=np.nanstd(v, 1), fmt=style, capsize=3, label=split
                )
        if metric == "error":
            ax.axhline(0.02, color="k", lw=0.6, ls=":", label="2% (the paper's 'stable')")
        ax.set_xscale(
            "symlog", linthresh=max(1.0, float(np.min(k[k > 0])) if np.any(k > 0) else 1.0)
        )
        ax.set_xlim(left=0)
        ax.xaxis.set_major_formatter(FuncFormatter(figures.plain_number))
        ax.set_xlabel("spawn step k (parent's optimizer steps)")
        ax.set_ylabel(f"instability: {metric} barrier")
        ax.set_title(
            f"instability vs k ({ds.sizes['replicate']} replicate(s), "
            f"T = {ds.attrs.get('total_steps')})",
            fontsize=9,
        )
        ax.legend()
        ax = axes[1]
        norm = colors.Normalize(vmin=0, vmax=max(len(k) - 1, 1))
        cmap = plt.get_cmap("viridis")
        a = ds["alpha"].values
        for i in range(len(k)):
            if metric == "error":
                y = 1 - ds["validation_accuracy"].isel(spawn=i, replicate=0)
            else:
                y = ds["validation_loss"].isel(spawn=i, replicate=0)
            ax.plot(a, y, color=cmap(norm(i)), label=f"k = {int(k[i])}")
        ax.set_xlabel("α (child 1 → child 2)")
        ax.set_ylabel(f"validation {metric}")
        ax.set_title("along the line between the children (replicate 0)", fontsize=9)
        ax.legend(ncol=2)
        fig.tight_layout()
        return fig
