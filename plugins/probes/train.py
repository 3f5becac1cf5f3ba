"""``train``: train the model in the full parameter space and record how it got there.

The shared training step of every probe (Goodfellow, Vinyals & Saxe 2015, seed 003:
the init → solution line and the SGD trajectory; Fort & Scherlis 2019, seed 000/004:
the radius during training; Freeman & Bruna 2017, seed 002: the endpoints to connect).
It runs :func:`lossatlas.engine.training.train` once (a single cell) and stores

- ``point`` (param): the trained parameters — later steps say ``at = "train"``, other
  runs ``"RUN/train"``; ``initial`` (param): where training started
  (``"train.initial"``);
- ``trajectory`` (record, param): snapshots every ``record_every`` optimizer steps,
  coord ``record`` = the planned step numbers; ``recorded_step`` (record) = the step
  each row actually holds. They agree except for a run that stopped early
  (``target_loss``, ``max_steps`` reached by the loss, divergence): its last point goes
  into the first slot after it, with its own step in ``recorded_step``, and the rows it
  never reached are NaN (``recorded_step`` NaN too);
- per epoch (coord ``epoch``, 0 = before training): ``train_loss``,
  ``validation_loss``, ``train_accuracy``, ``validation_accuracy`` (classification),
  ``radius`` (‖x‖ over weight matrices, seed 000's radius) and ``step``;
- ``steps`` and ``diverged`` (scalars).

A complete step in the store is never trained again: a second run of the same config
reuses it, and so does any run that names it.

Cost: epochs × ⌈N/batch_size⌉ forward+backward passes on mini-batches, plus one
forward pass over train and validation per epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lossatlas.engine import (
    Cell,
    ConfigError,
    Plan,
    PointRef,
    Probe,
    StepContext,
    Variable,
    figures,
    optimizer_options,
)
from lossatlas.engine.training import train

__all__ = ["Train", "TrainOptions", "planned_record_steps"]

#: The largest trajectory a train step records before asking for a larger record_every.
MAX_TRAJECTORY_BYTES = 2 * 2**30


@dataclass
class TrainOptions(optimizer_options(batch_size=64)):
    start: PointRef = field(
        default=PointRef("init"),
        metadata={
            "key": "from",
            "doc": "where training starts: 'init', 'init:SEED' (another "
            "initialisation), a step or 'checkpoint:PATH'",
        },
    )
    nesterov: bool = field(default=False, metadata={"doc": "Nesterov momentum (SGD)"})
    betas: list[float] = field(
        default_factory=lambda: [0.9, 0.999],
        metadata={"doc": "Adam's (β1, β2): decay rates of the gradient's moment estimates"},
    )
    weight_decay: float = field(default=0.0, metadata={"doc": "L2 weight decay"})
    seed: int = field(default=0, metadata={"doc": "seed of the mini-batch order"})
    record_every: int = field(
        default=10,
        metadata={
            "doc": "record the parameters every k optimizer steps (0: only the start and the end)"
        },
    )
    max_steps: int = field(default=0, metadata={"doc": "stop after this many steps (0: no cap)"})
    target_loss: float = field(
        default=0.0, metadata={"doc": "stop once the train loss is ≤ this (0: train all epochs)"}
    )

    def validate(self) -> None:
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"option 'betas' must be two numbers in [0, 1), got {self.betas}")
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise ValueError("option 'nesterov' needs a positive 'momentum'")
        if self.weight_decay < 0:
            raise ValueError(f"option 'weight_decay' must be ≥ 0, got {self.weight_decay}")
        for name in ("record_every", "max_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"option '{name}' must be ≥ 0, got {getattr(self, name)}")
        if self.target_loss < 0:
            raise ValueError(f"option 'target_loss' must be ≥ 0, got {self.target_loss}")


def _steps(options: TrainOptions, n_train: int) -> tuple[int, int]:
    size = n_train if options.batch_size in (0, None) else min(options.batch_size, n_train)
    per_epoch = math.ceil(n_train / size)
    total = options.epochs * per_epoch
    if options.max_steps:
        total = min(total, options.max_steps)
    return per_epoch, total


def planned_record_steps(record_every: int, total: int) -> np.ndarray:
    """Step numbers of the snapshots: 0, k, 2k, … and the last step."""
    if record_every <= 0:
        steps = [0, total]
    else:
        steps = list(range(0, total + 1, record_every))
        if steps[-1] != total:
            steps.append(total)
    return np.unique(np.asarray(steps, dtype=np.int64))


class Train(Probe[TrainOptions]):
    name = "train"
    summary = "train the model (SGD/Adam) and record its trajectory, losses and radius"
    Options = TrainOptions
    points = ("point", "initial")

    def check(self, options: TrainOptions, ctx: StepContext) -> None:
        obj = ctx.objective
        _per, total = _steps(options, len(obj.splits["train"]))
        R = len(planned_record_steps(options.record_every, total))
        size = R * obj.D * (4 if str(ctx.dtype).endswith("32") else 8)
        if size > MAX_TRAJECTORY_BYTES:
            raise ConfigError(
                f"step '{ctx.step.name}': recording {R} snapshots of D={obj.D:,} parameters "
                f"needs {size / 2**30:.1f} GiB; raise record_every (now {options.record_every})"
            )

    def plan(self, options: TrainOptions, ctx: StepContext) -> Plan:
        obj = ctx.objective
        per_epoch, total = _steps(options, len(obj.splits["train"]))
        record = planned_record_steps(options.record_every, total)
        traj_dtype = "float32" if str(ctx.dtype).endswith("32") else "float64"
        hist = ("epoch",)
        variables = {
            "point": Variable(("param",), "the parameters at the end of training"),
            "initial": Variable(("param",), "the parameters training started from"),
            "trajectory": Variable(
                ("record", "param"),
                "parameter snapshots during training",
                dtype=traj_dtype,
                finite=False,
            ),
        }
        for split in ("train", "validation"):
            for m in obj.metric_names():
                variables[f"{split}_{m}"] = Variable(
                    hist,
                    f"{m} on the whole {split} split at the end of each epoch "
                    "(epoch 0: before training)",
                    units="fraction" if m == "accuracy" else "loss",
                    finite=False,
                )
        variables["radius"] = Variable(
            hist, "‖x‖ over the weight matrices (biases excluded)", finite=False
        )
        variables["step"] = Variable(
            hist, "optimizer steps taken by the end of each epoch", finite=False
        )
        variables["recorded_step"] = Variable(
            ("record",),
            "optimizer step of each stored snapshot (the planned step, or where a run "
            "that stopped early ended; NaN: never reached)",
            units="steps",
            finite=False,
        )
        variables["steps"] = Variable((), "optimizer steps taken", dtype="int64")
        variables["diverged"] = Variable(
            (), "1 if the loss became NaN/inf and training stopped", dtype="int64"
        )
        return Plan(
            coords={
                "param": np.arange(obj.D),
                "record": record,
                "epoch": np.arange(options.epochs + 1),
            },
            variables=variables,
            cell_dims=(),
            coord_attrs={
                "record": {"description": "optimizer step of each snapshot", "units": "steps"},
                "epoch": {
                    "description": "epochs of training done (0: before training)",
                    "units": "epochs",
                },
                "param": {"description": "index into the flat parameter vector"},
            },
            attrs={
                "from": str(options.start),
                "steps_per_epoch": per_epoch,
                "planned_steps": total,
                "optimizer": options.optimizer,
            },
        )

    def compute(self, options: TrainOptions, ctx: StepContext, cell: Cell) -> dict[str, Any]:
        obj = ctx.objective
        x0 = ctx.resolve_point(options.start)
        _per_epoch, total = _steps(options, len(obj.splits["train"]))
        record = planned_record_steps(options.record_every, total)
        res = train(
            obj,
            x0,
            optimizer=options.optimizer,
            lr=options.lr,
            momentum=options.momentum,
            nesterov=options.nesterov,
            betas=(float(options.betas[0]), float(options.betas[1])),
            weight_decay=options.weight_decay,
            epochs=options.epochs,
            batch_size=options.batch_size or None,
            seed=options.seed,
            record_every=options.record_every or max(total, 1),
            max_steps=options.max_steps or None,
            target_loss=options.target_loss or None,
        )
        E = options.epochs + 1
        out: dict[str, Any] = {}
        for key in [k for k in res.history if k not in ("epoch",)]:
            arr = np.full(E, np.nan)
            vals = res.history[key][:E]
            arr[: len(vals)] = vals
            out[key] = arr
        traj = np.full(
            (len(record), obj.D),
            np.nan,
            dtype=np.float32 if str(ctx.dtype).endswith("32") else np.float64,
        )
        actual = np.full(len(record), np.nan)
        where = {int(s): i for i, s in enumerate(record)}
        assert res.trajectory is not None
        for s, row in zip(res.record_steps, res.trajectory, strict=True):
            # a run that stopped between two planned snapshots keeps its last point in
            # the next slot (never reached otherwise), marked by its own step
            i = where.get(int(s), int(np.searchsorted(record, int(s))))
            if i < len(record):
                traj[i], actual[i] = row, float(s)
        out["trajectory"] = traj
        out["recorded_step"] = actual
        out["point"] = res.x_final.detach().cpu().double().numpy()
        out["initial"] = x0.detach().cpu().double().numpy()
        out["steps"] = np.int64(res.steps)
        out["diverged"] = np.int64(res.diverged)
        return out

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        """Learning curves (loss, accuracy) per epoch and the radius ‖x‖."""
        import matplotlib.pyplot as plt

        has_acc = "train_accuracy" in ds
        n = 3 if has_acc else 2
        fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.6), squeeze=False)
        ep = ds["epoch"].values
        ax = axes[0, 0]
        ax.plot(ep, ds["train_loss"], "o-", ms=3, label="train")
        ax.plot(ep, ds["validation_loss"], "s--", ms=3, label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(figures.quantity(ds, "train_loss", "loss"))
        if kwargs.get("logy"):
            figures.log_axis(ax, "y")
        ax.set_title("loss")
        ax.legend()
        k = 1
        if has_acc:
            ax = axes[0, 1]
            ax.plot(ep, ds["train_accuracy"], "o-", ms=3, label="train")
            ax.plot(ep, ds["validation_accuracy"], "s--", ms=3, label="validation")
            ax.set_xlabel("epoch")
            ax.set_ylabel("accuracy")
            ax.set_title("accuracy")
            ax.legend()
            k = 2
        ax = axes[0, k]
        ax.plot(ep, ds["radius"], "o-", ms=3, color="C2")
        ax.set_xlabel("epoch")
        ax.set_ylabel("radius ‖x‖ of the weights")
        ax.set_title("radius")
        if int(ds["diverged"]):
            fig.text(
                0.5, -0.02, f"diverged after {int(ds['steps'])} steps", ha="center", color="C3"
            )
        fig.tight_layout()
        return fig
