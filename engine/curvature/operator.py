"""Hessian-vector products as the one interface of the curvature layer.

Every routine in :mod:`lossatlas.engine.curvature` works on an :data:`HVP`: a callable
that takes a block of vectors ``V`` of shape (k, D) and returns the rows ``H·v``, shape
(k, D). Nothing here knows about models; :func:`hvp_operator` makes such a callable
from an :class:`~lossatlas.engine.Objective`, and :class:`HessianOperator` exposes one
to SciPy as a :class:`scipy.sparse.linalg.LinearOperator`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import torch

from ..errors import ShapeError

if TYPE_CHECKING:
    from ..objective import Objective
    from .scipy_operator import HessianOperator

__all__ = ["HVP", "HessianOperator", "ObjectiveHVP", "hvp_operator", "resolve_hvp_target"]

#: A Hessian-vector product on a block: (k, D) tensor of vectors -> (k, D) tensor of H·v.
HVP = Callable[[torch.Tensor], torch.Tensor]


class ObjectiveHVP:
    """H(x)·V for the rows of V, by :meth:`Objective.hvp_many`, counting the products.

    Attributes ``D``, ``dtype`` and ``device`` tell the curvature routines what the
    vectors must look like; ``n_hvp`` counts Hessian-vector products (rows), ``n_calls``
    the batched calls. Cost per call: k HVPs (about 2k gradients), batched.

    A single vector takes one backward pass through the gradient's graph, built once at
    ``x`` and kept (:meth:`Objective.hvp_at`; the double-backward :meth:`Objective.hvp`
    where the split is mini-batched).
    For blocks, ``method="auto"`` takes forward-over-reverse (``jvp`` of ``grad``,
    vmapped over the rows), the faster for blocks in ``benchmarks/bench_curvature.py``;
    where a layer lacks forward-mode AD it falls back to double backward
    (``chosen`` says which ran, ``fallback`` holds the error). The choice is a rule, not
    a timing: a measured choice could differ between the cells of one run, or between
    a run and its resumption, and change the last bits of the results.
    """

    def __init__(
        self,
        objective: Objective,
        x: torch.Tensor,
        split: Literal["train", "validation"] = "train",
        method: Literal["auto", "forward", "reverse"] = "auto",
    ) -> None:
        self.objective = objective
        self.x = objective.as_tensor(x).detach()
        self.split = split
        self.method = method
        self.D: int = objective.D
        self.dtype: torch.dtype = objective.dtype
        self.device: torch.device = objective.device
        self.n_hvp = 0
        self.n_calls = 0
        self.chosen: str | None = None if method == "auto" else method
        self.fallback: str | None = None
        self._at: Callable[[torch.Tensor], torch.Tensor] | None = None  # Objective.hvp_at
        self._at_tried = False
        self._float64: ObjectiveHVP | None = None

    def __call__(self, V: torch.Tensor) -> torch.Tensor:
        if V.ndim not in (1, 2) or V.shape[-1] != self.D:
            raise ShapeError(
                f"an HVP of D={self.D} parameters was given vectors of shape "
                f"{tuple(V.shape)}; give (k, {self.D}) rows (or one ({self.D},) vector)"
            )
        V = V.reshape(-1, self.D).to(self.device, self.dtype)
        self.n_hvp += int(V.shape[0])
        self.n_calls += 1
        if V.shape[0] == 1:
            # One vector (every Lanczos matvec): one backward through the gradient's
            # graph, built once at x and kept (about half the cost of a fresh double
            # backward); mini-batched splits take Objective.hvp.
            if not self._at_tried:
                self._at, self._at_tried = self.objective.hvp_at(self.x, self.split), True
            if self._at is not None:
                return self._at(V[0]).unsqueeze(0)
            return self.objective.hvp(self.x, V[0], self.split).unsqueeze(0)
        if self.chosen is None:
            try:
                out = self.objective.hvp_many(self.x, V, self.split, method="forward")
                self.chosen = "forward"
                return out
            except (RuntimeError, NotImplementedError) as exc:
                self.fallback = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                self.chosen = "reverse"
        return self.objective.hvp_many(self.x, V, self.split, method=self.chosen)  # type: ignore[arg-type]

    def float64(self) -> ObjectiveHVP:
        """The same HVP in float64 at the same point (the objective's float64 copy,
        :meth:`Objective.astype`): what the eigensolvers re-check residuals with.
        Itself when already float64. Made once."""
        if self.dtype == torch.float64:
            return self
        if self._float64 is None:
            twin = self.objective.astype(torch.float64)
            self._float64 = ObjectiveHVP(twin, self.x.to(torch.float64), self.split, "reverse")
        return self._float64

    def __repr__(self) -> str:
        return (
            f"<ObjectiveHVP D={self.D} split={self.split!r} n_hvp={self.n_hvp} "
            f"method={self.chosen or self.method!r}>"
        )


def hvp_operator(
    objective: Objective,
    x: torch.Tensor,
    split: Literal["train", "validation"] = "train",
    method: Literal["auto", "forward", "reverse"] = "auto",
) -> ObjectiveHVP:
    """The :data:`HVP` ``V ↦ H(x)·V`` of an objective's loss on ``split``, with a counter.

    ``method`` selects how blocks of more than one vector are multiplied
    (single vectors use :meth:`Objective.hvp`): ``forward`` (forward-over-reverse,
    vmapped: good on GPUs), ``reverse`` (double backward: fast on CPUs) or ``auto``
    (forward, falling back to reverse; see :class:`ObjectiveHVP`). Cost: one HVP per row.
    """
    return ObjectiveHVP(objective, x, split, method)


def resolve_hvp_target(
    hvp: HVP, dtype: torch.dtype | None, device: torch.device | str | None
) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of the vectors an HVP takes: given, or the callable's own
    ``dtype``/``device`` attributes, or float64 on CPU."""
    dt = dtype if dtype is not None else getattr(hvp, "dtype", torch.float64)
    dev = device if device is not None else getattr(hvp, "device", "cpu")
    return dt, torch.device(dev)


def __getattr__(name: str) -> object:
    # HessianOperator subclasses SciPy's LinearOperator; importing scipy.sparse.linalg
    # costs 0.4 s, so the class is defined on first use (scipy_operator.py).
    if name == "HessianOperator":
        from .scipy_operator import HessianOperator

        return HessianOperator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
