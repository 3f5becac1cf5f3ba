"""Training on flat parameter vectors, recording the trajectory.

One facility shared by every probe that needs a trained model (the ``train`` probe,
the Goldilocks hyperplane/hypersphere training of Fort & Scherlis 2019, the beads of
Freeman & Bruna's Dynamic String Sampling, the trajectories of Goodfellow, Vinyals &
Saxe 2015). :func:`train` minimises the :class:`~lossatlas.engine.Objective`'s train
loss over x ∈ R^D — or over θ ∈ R^d in an affine subspace x = origin + Mθ — with SGD
(momentum, weight decay) or Adam, full batch or shuffled mini-batches, and records

- parameter snapshots every ``record_every`` optimizer steps (step 0 included),
- per epoch (index 0 = before training): train/validation loss and accuracy (full
  passes over each split, :meth:`Objective.evaluate_both`), the weights' radius ‖x‖
  (seed 000's radius: weight matrices only, biases excluded) and the step count.

It is deterministic for a seed: the mini-batch order comes from a ``torch.Generator``
seeded with ``seed`` and nothing else is random. A run whose loss or parameters become
NaN/inf stops and returns ``diverged=True`` (a result, not an exception).

Cost per optimizer step: one forward and one backward pass over the mini-batch; per
epoch, one extra forward pass over the train and the validation split for the history.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from ..errors import ConfigError, ShapeError
from ..progress import task as progress_task
from .loop import OptimizerSpec, Recorder, TrainingLoop

if TYPE_CHECKING:
    from ..components import Subspace
    from ..objective import Objective

__all__ = ["TrainResult", "minibatch_loss", "minibatch_value_and_grad", "train", "train_as"]

Optimizer = Literal["sgd", "adam"]


@dataclass
class TrainResult:
    """What :func:`train` returns.

    - ``x_final`` (D,): the parameters at the end (the point where the loss became
      non-finite if the run diverged).
    - ``record_steps`` (R,): optimizer step numbers of the snapshots (0 = start; the
      last step is always recorded when ``record_every > 0``).
    - ``trajectory`` (R, D): the snapshots, in the objective's precision (float32 or
      float64), or None when ``record_every == 0``.
    - ``history``: per-epoch arrays (index 0 = before training; one more entry if the
      run stopped inside an epoch): ``train_loss``, ``validation_loss``,
      ``train_accuracy``, ``validation_accuracy`` (classification), ``radius`` (‖x‖ over
      weight matrices), ``step`` (optimizer steps so far), ``epoch`` (epochs so far,
      fractional for a partial epoch).
    - ``diverged``: the loss or the parameters became NaN/inf; training stopped there.
    - ``steps``: optimizer steps taken.
    - ``theta_final`` (d,): the subspace coordinates at the end when ``params_subspace``
      was given, else None.
    - ``stopped``: why training ended: ``epochs``, ``max_steps``, ``target_loss`` or
      ``diverged``.
    """

    x_final: torch.Tensor
    record_steps: np.ndarray
    trajectory: np.ndarray | None
    history: dict[str, np.ndarray]
    diverged: bool
    steps: int
    theta_final: torch.Tensor | None = None
    stopped: str = "epochs"
    attrs: dict[str, object] = field(default_factory=dict)


# ----------------------------------------------------------------- mini-batch losses


def minibatch_loss(
    objective: Objective, x: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """The mean loss of the model with parameters ``x`` on one mini-batch (differentiable
    in ``x``). Cost: one forward pass over the batch."""
    return objective._sum_loss(objective._forward(x, inputs), targets) / int(inputs.shape[0])


def minibatch_value_and_grad(
    objective: Objective, x: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, gradient) on one mini-batch at ``x``; the batch is split into chunks
    of ``objective.batch_size`` if that is smaller (same value, less memory).
    Cost: one forward and one backward pass over the batch."""
    x = x.detach()
    n = int(inputs.shape[0])
    size = objective.batch_size or n
    value = torch.zeros((), device=x.device, dtype=x.dtype)
    g = torch.zeros_like(x)
    for i in range(0, n, size):
        xi = x.clone().requires_grad_(True)
        term = (
            objective._sum_loss(objective._forward(xi, inputs[i : i + size]), targets[i : i + size])
            / n
        )
        (gi,) = torch.autograd.grad(term, xi)
        value += term.detach()
        g += gi
    return value, g


# ------------------------------------------------------------------------- training


def _history_entry(objective: Objective, x: torch.Tensor) -> dict[str, float]:
    finite = bool(torch.isfinite(x).all())
    if finite:
        metrics = objective.evaluate_both(x.detach().unsqueeze(0))
        out = {k: float(v[0]) for k, v in metrics.items()}
    else:
        out = {
            f"{s}_{m}": math.nan for s in ("train", "validation") for m in objective.metric_names()
        }
    out["radius"] = float(objective.layout.radius(x.detach())) if finite else math.nan
    return out


def train(
    objective: Objective,
    x0: torch.Tensor | np.ndarray,
    *,
    optimizer: Optimizer = "sgd",
    lr: float = 0.1,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    epochs: int = 10,
    batch_size: int | None = None,
    seed: int = 0,
    record_every: int = 0,
    max_steps: int | None = None,
    target_loss: float | None = None,
    check_every: int | None = None,
    grad_transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    params_subspace: Subspace | None = None,
    theta0: torch.Tensor | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    nesterov: bool = False,
    history: bool = True,
    progress: Callable[[int, int | None], None] | None = None,
) -> TrainResult:
    """Train from ``x0`` and record the trajectory (see the module docstring).

    Parameters
    ----------
    objective:
        Loss and data; training minimises its train-split loss.
    x0:
        Start (D,). With ``params_subspace`` the start is the subspace's point at
        ``theta0`` (default θ = 0, i.e. its origin) and ``x0`` is ignored (pass None).
    optimizer, lr, momentum, weight_decay, betas, nesterov:
        ``torch.optim.SGD`` (momentum, dampening 0, optional Nesterov) or
        ``torch.optim.Adam`` (``betas``); ``weight_decay`` is an L2 term on the trained
        vector, as in torch.
    epochs:
        Passes over the train split; ``batch_size`` None = full batch (one step per
        epoch). Mini-batches are a fresh permutation per epoch from a generator seeded
        with ``seed``; the last batch of an epoch may be smaller.
    record_every:
        Record x every k optimizer steps (0: none). Step 0 and the last step are always
        in a non-empty record.
    max_steps:
        Stop after this many optimizer steps (whatever ``epochs`` says).
    target_loss:
        Stop once the full train loss is ≤ this. Full batch: checked before every step
        (free, the step's own loss). Mini-batch: checked at the end of every epoch and
        every ``check_every`` steps if given (one full forward pass each).
    grad_transform:
        ``g ← grad_transform(v, g)`` before each update, where v is the trained vector
        (x, or θ with a subspace); e.g. remove the radial component to move on a sphere.
    project:
        ``v ← project(v)`` after each update (e.g. renormalise to radius r0).
    params_subspace:
        Train θ ∈ R^d in x = origin + Mθ (M dense or sparse; gradient Mᵀ∇L by autograd)
        instead of x. Recorded trajectories and ``x_final`` are full x vectors.
    history:
        Evaluate the per-epoch history (False: only index 0 and the end; cheaper).
    progress:
        ``progress(steps_done, total_steps_or_None)`` after every step.

    Cost: one forward+backward per mini-batch step; per history entry one forward pass
    over the train and validation splits.
    """
    if optimizer not in ("sgd", "adam"):
        raise ConfigError(f"training: optimizer '{optimizer}' is not known; use 'sgd' or 'adam'")
    if not lr > 0:
        raise ConfigError(f"training: lr must be positive, got {lr}")
    if epochs < 0:
        raise ConfigError(f"training: epochs must be ≥ 0, got {epochs}")
    if batch_size is not None and batch_size <= 0:
        raise ConfigError(f"training: batch_size must be positive, got {batch_size}")
    if record_every < 0:
        raise ConfigError(f"training: record_every must be ≥ 0, got {record_every}")
    if max_steps is not None and max_steps < 0:
        raise ConfigError(f"training: max_steps must be ≥ 0, got {max_steps}")

    device, dtype = objective.device, objective.dtype
    split = objective.splits["train"]
    n = len(split)
    size = n if batch_size is None or batch_size >= n else int(batch_size)
    full_batch = size == n
    per_epoch = math.ceil(n / size)
    total = epochs * per_epoch if max_steps is None else min(epochs * per_epoch, max_steps)

    # The trained leaf: x itself, or θ in a subspace.
    sub = params_subspace
    if sub is not None:
        if sub.origin.shape[-1] != objective.D:
            raise ShapeError(
                f"training: the subspace lives in D={sub.origin.shape[-1]} but the "
                f"model has D={objective.D}"
            )
        origin = sub.origin.to(device, dtype)
        basis = sub.basis.to(device, dtype)
        from ..components import Subspace as _Sub

        sub = _Sub(origin=origin, basis=basis, attrs=sub.attrs)
        start = (
            torch.zeros(sub.dim, device=device, dtype=dtype)
            if theta0 is None
            else torch.as_tensor(theta0).to(device, dtype).reshape(sub.dim)
        )

        def point(v: torch.Tensor) -> torch.Tensor:
            return sub.embed(v)
    else:
        start = objective.as_tensor(x0).detach().reshape(objective.D)

        def point(v: torch.Tensor) -> torch.Tensor:
            return v

    # One member of the shared loop: its optimizer, projection and recorder.
    spec = OptimizerSpec(optimizer, lr, momentum, weight_decay, tuple(betas), nesterov)

    def constrain(params: list[torch.Tensor]) -> None:
        if project is not None:
            params[0].copy_(project(params[0].detach()))

    loop = TrainingLoop(
        [start],
        spec,
        recorder=_Progress(progress),
        project=constrain if project is not None else None,
        total=total,
    )
    leaf = loop.params[0]

    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))

    hist: dict[str, list[float]] = {}

    def log(x: torch.Tensor, steps: int) -> None:
        entry = _history_entry(objective, x)
        entry["step"] = float(steps)
        entry["epoch"] = steps / per_epoch
        for k, v in entry.items():
            hist.setdefault(k, []).append(v)

    record: list[np.ndarray] = []
    record_steps: list[int] = []
    np_dtype = np.float64 if dtype == torch.float64 else np.float32

    def snap(x: torch.Tensor, steps: int) -> None:
        if record_every and (not record_steps or record_steps[-1] != steps):
            record.append(x.detach().to("cpu").numpy().astype(np_dtype, copy=True))
            record_steps.append(steps)

    def full_train_loss(x: torch.Tensor) -> float:
        return float(objective.evaluate(x.detach().unsqueeze(0), "train")["loss"][0])

    steps = 0
    diverged = False
    stopped = "epochs"
    with torch.no_grad():
        x = point(leaf).detach()
    log(x, 0)
    snap(x, 0)
    logged_at = 0

    def done() -> bool:
        return max_steps is not None and steps >= max_steps

    if done():
        stopped = "max_steps"
    elif target_loss is not None and hist["train_loss"][0] <= target_loss:
        stopped = "target_loss"
    else:
        bar = progress_task("training", total, "step", bound=target_loss is not None)
        for _epoch in range(epochs):
            order = torch.randperm(n, generator=gen) if not full_batch else None
            stop_now = False
            for b in range(per_epoch):
                if order is None:
                    inputs, targets = split.inputs, split.targets
                else:
                    idx = order[b * size : (b + 1) * size].to(split.inputs.device)
                    inputs, targets = split.inputs[idx], split.targets[idx]
                loop.zero_grad()
                m = int(inputs.shape[0])
                chunk = objective.batch_size or m
                value = 0.0
                for i in range(0, m, chunk):
                    term = (
                        objective._sum_loss(
                            objective._forward(point(leaf), inputs[i : i + chunk]),
                            targets[i : i + chunk],
                        )
                        / m
                    )
                    term.backward()
                    value += float(term.detach())
                if not math.isfinite(value):
                    diverged, stop_now = True, True
                    break
                if full_batch and target_loss is not None and value <= target_loss:
                    stopped, stop_now = "target_loss", True
                    break
                if grad_transform is not None:
                    with torch.no_grad():
                        leaf.grad = grad_transform(leaf.detach(), leaf.grad).to(leaf.dtype)
                loop.apply()  # the step, the projection, the recorder
                steps += 1
                with torch.no_grad():
                    x = point(leaf).detach()
                if not bool(torch.isfinite(x).all()):
                    diverged, stop_now = True, True
                    break
                if record_every and steps % record_every == 0:
                    snap(x, steps)
                bar.update(steps, epoch=f"{steps / per_epoch:.3g}/{epochs}")
                if done():
                    stopped, stop_now = "max_steps", True
                    break
                if (
                    not full_batch
                    and target_loss is not None
                    and check_every
                    and steps % check_every == 0
                    and full_train_loss(x) <= target_loss
                ):
                    stopped, stop_now = "target_loss", True
                    break
            if stop_now:
                break
            if history:
                log(x, steps)
                logged_at = steps
            if target_loss is not None and not full_batch:
                last = hist["train_loss"][-1] if history else full_train_loss(x)
                if last <= target_loss:
                    stopped = "target_loss"
                    break
        bar.close()
        if diverged:
            stopped = "diverged"
        if diverged or steps != logged_at:
            log(x, steps)
        last_loss = hist.get("train_loss") or [0.0]
        if not diverged and not math.isfinite(last_loss[-1]):
            # finite parameters whose full-split loss overflowed (e.g. on the last step)
            diverged, stopped = True, "diverged"

    snap(x, steps)
    final_theta = leaf.detach().clone() if sub is not None else None
    traj = np.stack(record) if record_every else None
    return TrainResult(
        x_final=x.detach().clone(),
        record_steps=np.asarray(record_steps, dtype=np.int64),
        trajectory=traj,
        history={k: np.asarray(v, dtype=np.float64) for k, v in hist.items()},
        diverged=diverged,
        steps=steps,
        theta_final=final_theta,
        stopped=stopped,
        attrs={
            "optimizer": optimizer,
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "epochs": epochs,
            "batch_size": size,
            "seed": int(seed),
            "steps_per_epoch": per_epoch,
        },
    )


class _Progress(Recorder):
    """``progress(steps_done, total_or_None)`` after every step (train's callback)."""

    def __init__(self, progress: Callable[[int, int | None], None] | None) -> None:
        self.progress = progress

    def stepped(self, loop: TrainingLoop) -> None:
        if self.progress is not None:
            self.progress(loop.step, loop.total)


def train_as(
    options: Any, objective: Objective, x0: torch.Tensor, *, seed: int, **kwargs: Any
) -> TrainResult:
    """:func:`train` with the optimiser of a probe's options: its fields ``optimizer``,
    ``lr``, ``momentum``, ``epochs`` and ``batch_size`` (0: full batch); ``kwargs`` go
    to :func:`train` as they are."""
    return train(
        objective,
        x0,
        optimizer=options.optimizer,
        lr=options.lr,
        momentum=options.momentum,
        epochs=options.epochs,
        batch_size=options.batch_size or None,
        seed=seed,
        **kwargs,
    )
