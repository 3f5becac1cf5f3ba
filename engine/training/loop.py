"""The one training loop: K members trained together by one ``torch.optim`` optimizer.

Every trainer of lossatlas runs on :class:`TrainingLoop`: :func:`~lossatlas.engine.
training.train` (one model, in the full space, a subspace or on a sphere), the ensembles
of subspace trainings (Goldilocks, d_int90: R subspaces at once) and the beads of Dynamic
String Sampling (k beads at once). A trainer supplies what differs (the gradient of its
loss for a batch, a projection after each step, when a member is done); the loop owns
what is shared:

- the parametrisation: one parameter tensor per member (x ∈ R^D, θ ∈ R^d ...), so each
  member has its own optimizer state and step count (Adam's bias correction counts that
  member's steps), and a member that stopped keeps its parameters and its state (its
  gradient is None: ``torch.optim`` skips it);
- the optimizer (:class:`OptimizerSpec`: SGD with momentum/Nesterov or Adam, weight
  decay), built once;
- the recorder (:class:`Recorder`): callbacks after every step and at every epoch's end,
  where a trainer records snapshots or a history and where progress is reported;
- the stop rule: :meth:`TrainingLoop.stop` marks members done (target reached,
  diverged, a step cap), :attr:`TrainingLoop.running` says whether any is left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["OptimizerSpec", "Recorder", "TrainingLoop"]


@dataclass(frozen=True)
class OptimizerSpec:
    """Which ``torch.optim`` optimizer a loop uses and its settings: ``sgd``
    (``torch.optim.SGD``: momentum, dampening 0, Nesterov where momentum > 0) or
    ``adam`` (``torch.optim.Adam``: ``betas``, ``eps``); ``weight_decay`` is torch's L2
    term on the trained tensor."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    nesterov: bool = False
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(
                f"training: optimizer '{self.optimizer}' is not known; use 'sgd' or 'adam'"
            )
        if not self.lr > 0:
            raise ConfigError(f"training: lr must be positive, got {self.lr}")

    @classmethod
    def of(cls, options: Any, **extra: Any) -> OptimizerSpec:
        """The spec of a probe's options (fields ``optimizer``, ``lr`` and, where they
        exist, ``momentum``, ``weight_decay``, ``betas``, ``nesterov``)."""
        kw: dict[str, Any] = {"optimizer": options.optimizer, "lr": options.lr}
        for name in ("momentum", "weight_decay", "nesterov"):
            if hasattr(options, name):
                kw[name] = getattr(options, name)
        if hasattr(options, "betas"):
            kw["betas"] = tuple(options.betas)
        kw.update(extra)
        return cls(**kw)

    def build(self, params: Sequence[torch.Tensor]) -> torch.optim.Optimizer:
        """The optimizer over ``params`` (one tensor per member)."""
        if self.optimizer == "sgd":
            return torch.optim.SGD(
                list(params),
                lr=self.lr,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
                nesterov=self.nesterov and self.momentum > 0,
            )
        return torch.optim.Adam(
            list(params),
            lr=self.lr,
            betas=self.betas,
            eps=self.eps,
            weight_decay=self.weight_decay,
        )

    def attrs(self) -> dict[str, Any]:
        """Plain facts for provenance."""
        return {
            "optimizer": self.optimizer,
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
        }


class Recorder:
    """Callbacks of a :class:`TrainingLoop` (subclass and override what you need).

    ``stepped`` runs after every optimizer step, ``epoch_ended`` when a trainer ends an
    epoch, ``finished`` once at the end: a trainer records its snapshots and history
    here, and progress reporting (a bar, an event) belongs here too, one line per hook.
    """

    def started(self, loop: TrainingLoop) -> None:
        """Before the first step."""

    def stepped(self, loop: TrainingLoop) -> None:
        """After each optimizer step (``loop.step`` steps taken so far)."""

    def epoch_ended(self, loop: TrainingLoop, epoch: int) -> None:
        """After epoch ``epoch`` (1-based) of a trainer that counts epochs."""

    def finished(self, loop: TrainingLoop) -> None:
        """After the last step."""


class Recorders(Recorder):
    """Several recorders called in order."""

    def __init__(self, *recorders: Recorder | None) -> None:
        self.recorders = [r for r in recorders if r is not None]

    def started(self, loop: TrainingLoop) -> None:
        for r in self.recorders:
            r.started(loop)

    def stepped(self, loop: TrainingLoop) -> None:
        for r in self.recorders:
            r.stepped(loop)

    def epoch_ended(self, loop: TrainingLoop, epoch: int) -> None:
        for r in self.recorders:
            r.epoch_ended(loop, epoch)

    def finished(self, loop: TrainingLoop) -> None:
        for r in self.recorders:
            r.finished(loop)


class TrainingLoop:
    """K members (rows of ``start``) trained together; see the module docstring.

    ``project(params)``, if given, runs after every step under ``torch.no_grad`` and may
    change the members' tensors in place (a constraint: a sphere, a hyperplane).
    ``total``: the planned number of steps (for progress), None if unknown.
    """

    def __init__(
        self,
        start: torch.Tensor | Sequence[torch.Tensor],
        spec: OptimizerSpec,
        *,
        recorder: Recorder | None = None,
        project: Callable[[list[torch.Tensor]], None] | None = None,
        total: int | None = None,
    ) -> None:
        rows = list(start) if not isinstance(start, torch.Tensor) else list(start.unbind(0))
        self.params: list[torch.Tensor] = [r.detach().clone().requires_grad_(True) for r in rows]
        self.spec = spec
        self.optimizer = spec.build(self.params)
        self.recorder = recorder or Recorder()
        self.project = project
        self.total = total
        self.active = np.ones(len(self.params), dtype=bool)
        #: optimizer steps each member took
        self.steps = np.zeros(len(self.params), dtype=np.int64)
        #: optimizer steps of the loop (a step updates every active member)
        self.step = 0
        self.recorder.started(self)

    @property
    def k(self) -> int:
        return len(self.params)

    @property
    def running(self) -> bool:
        """Whether any member is still training."""
        return bool(self.active.any())

    def stacked(self) -> torch.Tensor:
        """The members as one (K, n) tensor (detached copy)."""
        with torch.no_grad():
            return torch.stack([p.detach() for p in self.params])

    def stop(self, members: np.ndarray | Sequence[bool] | Sequence[int]) -> None:
        """Mark members done (a boolean mask or indices): they take no further step."""
        m = np.asarray(members)
        if m.dtype == bool:
            self.active &= ~m
        else:
            self.active[m.astype(np.int64)] = False

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def apply(self, grads: torch.Tensor | Sequence[torch.Tensor] | None = None) -> None:
        """One optimizer step of the active members: with ``grads`` (K rows) their
        gradients, or None when the trainer accumulated them into ``params[k].grad``
        itself (a backward pass through the members); then the projection, the counts
        and :meth:`Recorder.stepped`."""
        for k, p in enumerate(self.params):
            if not self.active[k]:
                p.grad = None
            elif grads is not None:
                p.grad = grads[k].detach().to(p.dtype)
        self.optimizer.step()
        if self.project is not None:
            with torch.no_grad():
                self.project(self.params)
        self.steps += self.active
        self.step += 1
        self.recorder.stepped(self)

    def end_epoch(self, epoch: int) -> None:
        self.recorder.epoch_ended(self, epoch)

    def finish(self) -> torch.Tensor:
        """Call :meth:`Recorder.finished`; return the members (K, n), detached."""
        self.recorder.finished(self)
        return self.stacked()
