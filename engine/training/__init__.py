"""Training on flat parameter vectors: the one loop and the trainers on it.

- :mod:`.loop`: :class:`TrainingLoop` (K members, one ``torch.optim`` optimizer, a
  recorder, a stop rule), :class:`OptimizerSpec`, :class:`Recorder`;
- :mod:`.single`: :func:`train` (one model in the full space, a subspace or on a sphere,
  recording its trajectory and history) and :func:`train_as`;
- :mod:`.convergence`: :func:`loss_still_falling`, the check every training probe runs.

The ensembles of subspace trainings and the beads of Dynamic String Sampling run on the
same :class:`TrainingLoop`.
"""

from __future__ import annotations

from .convergence import ConvergenceWarning, convergence_window, loss_still_falling
from .loop import OptimizerSpec, Recorder, Recorders, TrainingLoop
from .single import TrainResult, minibatch_loss, minibatch_value_and_grad, train, train_as

__all__ = [
    "ConvergenceWarning",
    "OptimizerSpec",
    "Recorder",
    "Recorders",
    "TrainResult",
    "TrainingLoop",
    "convergence_window",
    "loss_still_falling",
    "minibatch_loss",
    "minibatch_value_and_grad",
    "train",
    "train_as",
]
