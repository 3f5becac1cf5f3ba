"""The objective: the one place where a model meets data.

- :mod:`.layout` — :class:`ParamLayout`, the parameters as one flat vector x ∈ R^D
  (deduplicated like ``named_parameters()``; frozen parameters left out by default);
- :mod:`.objective` — :class:`Objective`: loss, metrics, gradients, Hessian-vector
  products and subspace Hessians at one point or many, through the run's loss;
- :mod:`.fastpath` — the MLP fast path of :meth:`Objective.evaluate`, used only where
  its structure and a numerical check at build time prove it computes the module's
  forward (:class:`EvaluationPath` says which path runs and why);
- :mod:`.devices` — devices and dtypes by name.
"""

from __future__ import annotations

from .devices import resolve_device, resolve_dtype
from .fastpath import EvaluationPath
from .layout import ParamEntry, ParamLayout
from .objective import DEFAULT_MEMORY_BUDGET, Objective, SplitName

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "EvaluationPath",
    "Objective",
    "ParamEntry",
    "ParamLayout",
    "SplitName",
    "resolve_device",
    "resolve_dtype",
]
