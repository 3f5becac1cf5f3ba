"""A copy of a model holding given parameters and buffers (for the probes that need a
real ``nn.Module`` at a point: BatchNorm recomputation, Git Re-Basin's activation
matching and function check).

A point x holds the objective's *coordinates* only: frozen parameters
(``requires_grad = False``, unless ``[model] include_frozen = true``) are constants of
the objective, not entries of x, so they keep the model's own values in the copy.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch

__all__ = ["module_at"]


@torch.no_grad()
def module_at(
    model: torch.nn.Module,
    params: Mapping[str, torch.Tensor],
    buffers: Mapping[str, torch.Tensor] | None = None,
) -> torch.nn.Module:
    """A deep copy of ``model`` holding ``params`` (by ``named_parameters()`` name, as
    :meth:`ParamLayout.unflatten` gives them) and ``buffers`` (those named; the others
    keep the model's values), copied into the model's own dtype and device.

    A frozen parameter missing from ``params`` keeps the model's value (it is not a
    coordinate); a trainable one missing is an error (KeyError naming it). ``model``
    itself is not changed."""
    m = copy.deepcopy(model)
    for name, p in m.named_parameters():
        if name in params:
            p.copy_(params[name])
        elif p.requires_grad:
            raise KeyError(f"module_at: no value for the trainable parameter '{name}'")
    for name, b in m.named_buffers():
        if buffers is not None and name in buffers:
            b.copy_(buffers[name])
    return m
