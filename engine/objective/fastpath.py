"""The MLP fast path of :meth:`Objective.evaluate`, and the proof that it may be used.

For the plain MLPs of the seed papers, the loss at many points is computed by a fused,
cache-blocked forward (:class:`MLPFastPath`): one ``baddbmm`` per layer with the bias
inside the product and an in-place activation, instead of the separate passes of a
vmapped ``functional_call``. It computes exactly the module's forward only for some
modules, so it is used only where

1. **the structure says so** (:func:`plan_stack`): the model is a ``Sequential`` whose
   forward is ``Sequential.forward``, with no buffers and no hooks, whose children
   (every entry, in order — a module listed twice is a module applied twice) are an
   optional leading ``Flatten``, exact ``Linear`` layers and ReLU/Tanh/Sigmoid; every
   module appears once and every Linear's weight and bias are distinct tensors that are
   coordinates of x (not tied to another layer, not frozen); and
2. **the numbers say so** (:func:`confirm`): at the point x0 and at a random point
   near it, on up to :data:`CHECK_SAMPLES` training samples, its loss and correct count
   equal those of the generic forward (vmapped ``functional_call`` with the objective's
   loss) to :func:`check_tolerance`.

Otherwise :meth:`Objective.evaluate` takes the generic path; :class:`EvaluationPath`
says which path runs and why (it is stored in every step's attrs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.func import vmap

if TYPE_CHECKING:
    from ..losses import Loss
    from .layout import ParamEntry, ParamLayout

__all__ = [
    "CHECK_SAMPLES",
    "EvaluationPath",
    "MLPFastPath",
    "check_tolerance",
    "confirm",
    "plan_stack",
]

#: Training samples the fast path is confirmed on when an objective is built.
CHECK_SAMPLES = 128

_ACTIVATIONS = {torch.nn.ReLU: "relu", torch.nn.Tanh: "tanh", torch.nn.Sigmoid: "sigmoid"}

Op = tuple[str, "ParamEntry | None", "ParamEntry | None"]


@dataclass(frozen=True)
class EvaluationPath:
    """Which forward :meth:`Objective.evaluate` uses, and why.

    ``name``: ``mlp-fast-path`` or ``generic`` (vmapped ``functional_call``);
    ``reason``: one line; ``checked_difference``: the largest relative difference of
    the fast path's loss from the generic forward's at the check points (NaN when not
    checked).
    """

    name: str
    reason: str
    checked_difference: float = float("nan")

    def attrs(self) -> dict[str, Any]:
        return {
            "evaluation_path": self.name,
            "evaluation_path_reason": self.reason,
            "evaluation_path_checked_difference": self.checked_difference,
        }


def check_tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance of the fast path's confirmation: 1e-10 in float64, 1e-4 in
    float32 (the two paths sum the same terms in another order)."""
    return 1e-10 if dtype == torch.float64 else 1e-4


def _has_hooks(m: torch.nn.Module) -> bool:
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return any(bool(getattr(m, n, None)) for n in names)


def plan_stack(model: torch.nn.Module, layout: ParamLayout) -> tuple[list[Op] | None, str]:
    """The fast path's layers for ``model``, or ``(None, why not)``.

    The structural half of the rule in the module docstring. The ops are
    ``("linear", weight entry, bias entry or None)`` and ``(activation, None, None)``.
    """
    if not isinstance(model, torch.nn.Sequential) or (
        type(model).forward is not torch.nn.Sequential.forward
    ):
        return None, f"{type(model).__name__} is not a plain torch.nn.Sequential"
    if any(True for _ in model.buffers()):
        return None, "the model has buffers"
    from torch.nn.modules import module as _module

    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return None, "global forward hooks are registered"
    if _has_hooks(model):
        return None, "the Sequential has hooks"
    entries = {e.name: e for e in layout.entries}
    ops: list[Op] = []
    seen_modules: dict[int, str] = {}
    seen_params: dict[int, str] = {}
    for i, (name, m) in enumerate(model._modules.items()):
        if m is None:
            continue
        if id(m) in seen_modules:
            return None, f"module '{name}' is module '{seen_modules[id(m)]}' again (applied twice)"
        seen_modules[id(m)] = name
        if _has_hooks(m):
            return None, f"module '{name}' has hooks"
        if type(m) is torch.nn.Flatten and i == 0 and m.start_dim == 1 and m.end_dim == -1:
            continue
        if type(m) is torch.nn.Linear:
            pair = []
            for leaf in ("weight", "bias"):
                p = getattr(m, leaf)
                if p is None:
                    pair.append(None)
                    continue
                if id(p) in seen_params:
                    return None, (
                        f"parameter '{name}.{leaf}' is '{seen_params[id(p)]}' (a tied weight)"
                    )
                seen_params[id(p)] = f"{name}.{leaf}"
                entry = entries.get(f"{name}.{leaf}")
                if entry is None:
                    why = "frozen" if f"{name}.{leaf}" in layout.frozen else "not in the layout"
                    return None, f"parameter '{name}.{leaf}' is {why}"
                pair.append(entry)
            ops.append(("linear", pair[0], pair[1]))
        elif type(m) in _ACTIVATIONS:
            ops.append((_ACTIVATIONS[type(m)], None, None))
        else:
            return None, (
                f"module '{name}' is a {type(m).__name__} (the fast path knows a leading "
                "Flatten, Linear, ReLU, Tanh and Sigmoid)"
            )
    if not any(kind == "linear" for kind, _w, _b in ops):
        return None, "the model has no Linear layer"
    return ops, "a plain Sequential of Linear and ReLU/Tanh/Sigmoid layers"


class MLPFastPath:
    """Summed loss and correct count at many points of a Linear/activation stack.

    Built from the ops of :func:`plan_stack` and the objective's loss; the loss runs as
    a fused kernel where the engine has one (``cross-entropy``, ``mse``), else through
    ``loss.sum`` vmapped over the points.
    """

    #: Bytes of activations one forward block may hold on a CPU (a share of the L3:
    #: 6 MiB measured best on the digits MLP, 2 cores, 32 MiB L3).
    CPU_CACHE_BYTES = 6 * 2**20

    def __init__(self, ops: list[Op], loss: Loss, device: torch.device, dtype: torch.dtype):
        self.ops = ops
        self.loss = loss
        self.device = device
        self.dtype = dtype
        #: output widths of the linear layers (for the blocks and buffers)
        self.widths = [w.shape[0] for kind, w, _b in ops if kind == "linear" and w is not None]
        self.cache_bytes = self.CPU_CACHE_BYTES

    def cache_chunk(self, n: int) -> int:
        """Points per forward block: on CPU as many as keep one layer's activations
        within :attr:`cache_bytes`; elsewhere unlimited."""
        if self.device.type != "cpu":
            return 1 << 30
        per_point = n * max(self.widths) * torch.finfo(self.dtype).bits // 8
        return max(1, self.cache_bytes // per_point)

    def evaluate(
        self,
        X: torch.Tensor,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        chunk: int,
        classify: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss and correct count (float64, (B,)) at the points X on one batch.

        Two levels: the forward runs a few points at a time (:meth:`cache_chunk`), so
        that their activations stay in the CPU's cache (a 64-point block of a
        1438-sample split spills it and ran 0.6x a per-point loop), into one output
        block per memory-budget chunk, whose loss is then one pass. All blocks share
        buffers made once per call: fresh ones of a few MB per block cost page faults
        that took a third of the time.
        """
        B, N = X.shape[0], inputs.shape[0]
        inner = min(chunk, self.cache_chunk(N))
        hidden = max(self.widths[:-1], default=0)
        scratch = [X.new_empty(inner * N * hidden) for _ in range(2 if hidden else 0)]
        out = X.new_empty((min(chunk, B), self.widths[-1], N))
        loss = torch.empty(B, dtype=torch.float64, device=X.device)
        correct = torch.empty(B, dtype=torch.float64, device=X.device)
        for i in range(0, B, chunk):
            block = X[i : i + chunk]
            o = out[: block.shape[0]]
            for j in range(0, block.shape[0], inner):
                self.forward(block[j : j + inner], inputs, o[j : j + inner], scratch)
            lo, co = self.batched_loss(o, targets, classify)
            loss[i : i + chunk] = lo
            correct[i : i + chunk] = co
        return loss, correct

    def forward(
        self,
        X: torch.Tensor,
        inputs: torch.Tensor,
        out: torch.Tensor | None = None,
        scratch: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Outputs of the stack at the points X (B, D), class-major: (B, out, N),
        written into ``out`` if given; hidden activations go into the two flat
        ``scratch`` buffers in turn if given.

        Each layer is one ``baddbmm`` (bias fused into the matrix product) and an
        in-place activation. Hidden layers are sample-major (B, N, width); the last
        linear layer computes W·hᵀ on a transposed view (no copy) into (B, out, N): a
        product with a narrow output (10 classes) ran 4× faster that way round on a
        CPU, and the loss then reduces over rows that are contiguous along the samples.
        """
        B, N = X.shape[0], inputs.shape[0]
        h = inputs.reshape(N, -1).unsqueeze(0).expand(B, -1, -1)
        layer = 0  # linear layers so far
        for kind, w, b in self.ops:
            if kind == "linear":
                assert w is not None
                W = X[:, w.start : w.stop].reshape(B, *w.shape)
                layer += 1
                if layer == len(self.widths):  # the last one
                    bias = None if b is None else X[:, b.start : b.stop].unsqueeze(2)
                    h, W, dest = W, h.transpose(1, 2), out
                else:
                    bias = None if b is None else X[:, b.start : b.stop].unsqueeze(1)
                    W = W.transpose(1, 2)
                    dest = None
                    if scratch:
                        buf = scratch[layer % 2]
                        dest = buf[: B * N * w.shape[0]].view(B, N, w.shape[0])
                h = (
                    torch.bmm(h, W, out=dest)
                    if bias is None
                    else torch.baddbmm(bias, h, W, out=dest)
                )
            elif kind == "relu":
                h = h.relu_()
            elif kind == "tanh":
                h = h.tanh_()
            elif kind == "sigmoid":
                h = h.sigmoid_()
        return h

    def batched_loss(
        self, out: torch.Tensor, targets: torch.Tensor, classify: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss and correct count per point from class-major outputs (B, out, N),
        which it may overwrite (they are the fast path's own buffer)."""
        B, _C, N = out.shape
        kernel = self.loss.kernel
        if kernel == "cross-entropy" and classify:
            # Cross-entropy as logsumexp − picked logit, from one max reduction that gives
            # both the stabiliser and the predicted class (the first of tied maxima, as
            # argmax): on CPU, argmax and log_softmax over a short class dim cost more
            # than the matrix products here. exp runs in place: no fresh block.
            top, predicted = out.max(dim=1)
            picked = out.gather(1, targets.view(1, 1, N).expand(B, 1, N)).squeeze(1)
            correct = (predicted == targets.unsqueeze(0)).sum(dim=1)
            lse = out.sub_(top.unsqueeze(1)).exp_().sum(dim=1).log_().add_(top)
            return (lse - picked).sum(dim=1), correct
        if kernel == "mse" and not classify:
            diff = out.sub_(targets.reshape(N, -1).T.unsqueeze(0))
            return diff.square_().mean(dim=1).sum(dim=1), torch.zeros(B, device=out.device)
        correct = (
            (out.argmax(dim=1) == targets.unsqueeze(0)).sum(dim=1)
            if classify
            else torch.zeros(B, device=out.device)
        )
        loss_sum: Callable[[torch.Tensor], torch.Tensor] = lambda o: self.loss.sum(  # noqa: E731
            o.T, targets
        )
        return vmap(loss_sum)(out), correct


def confirm(
    fast: MLPFastPath,
    generic: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    X: torch.Tensor,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    classify: bool,
) -> tuple[bool, float]:
    """(agrees, largest relative loss difference) of the fast path against ``generic``
    (the objective's generic forward: points -> summed loss, correct count) at the
    points X on one batch. The correct counts must be equal, the losses within
    :func:`check_tolerance`; a non-finite loss on either side that the other does not
    share is a disagreement."""
    with torch.no_grad():
        f_loss, f_correct = fast.evaluate(X, inputs, targets, X.shape[0], classify)
        g_loss, g_correct = generic(X)
    f_loss, g_loss = f_loss.double(), g_loss.double()
    same_nan = torch.equal(torch.isfinite(f_loss), torch.isfinite(g_loss))
    fin = torch.isfinite(f_loss) & torch.isfinite(g_loss)
    diff = ((f_loss - g_loss).abs() / g_loss.abs().clamp_min(1e-300))[fin]
    worst = float(diff.max()) if diff.numel() else 0.0
    ok = (
        same_nan
        and worst <= check_tolerance(fast.dtype)
        and (not classify or torch.equal(f_correct.double(), g_correct.double()))
    )
    return bool(ok), worst
