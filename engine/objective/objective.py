"""The :class:`Objective`: loss, metrics and derivatives of a model on data, on flat vectors.

Everything else in lossatlas works on flat parameter vectors x ∈ R^D (laid out by
:class:`~lossatlas.engine.ParamLayout`). The objective evaluates loss and metrics at
one point or at a batch of points (B × D → B, one vmapped pass per chunk of points),
gradients, Hessian-vector products (one, or many at once), and the d × d Hessian of
θ ↦ L(x0 + Mθ) on a subspace. The loss is a :class:`~lossatlas.engine.losses.Loss`
(a plugin's, or cross-entropy / MSE by task), and every value, gradient and HVP goes
through it.

Losses are full-batch over a split by default; a split that does not fit in one pass
is accumulated over mini-batches weighted by their size, so the value is the same
mean over all samples whatever the batch size.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch
from torch.func import functional_call, grad, jvp, vmap

from ..components import DataBundle, Split
from ..errors import ConfigError, ShapeError
from ..losses import Loss, default_loss
from .checks import check_shapes, check_targets
from .fastpath import CHECK_SAMPLES, EvaluationPath, MLPFastPath, confirm, plan_stack
from .layout import ParamLayout, tensor_aliases

__all__ = ["DEFAULT_MEMORY_BUDGET", "Objective", "SplitName"]

SplitName = Literal["train", "validation"]

#: Memory the objective aims to stay under for one batched evaluation (bytes).
DEFAULT_MEMORY_BUDGET = 512 * 2**20


class Objective:
    """Loss, metrics and derivatives of a model on a data set, on flat vectors.

    Parameters
    ----------
    model:
        Any ``torch.nn.Module``; its current parameters are :attr:`x0`.
    data:
        The train and validation splits and the task (classification or regression).
    device, dtype:
        Where and in which precision everything runs (float32 default, float64 for
        checks). Data and model are moved there once.
    batch_size:
        Samples per pass over a split; ``None`` for full batch. Results do not depend
        on it (mini-batches are weighted by their size).
    memory_budget:
        Bytes one batched evaluation may use; points are chunked to stay under it.
    loss:
        The loss; default by task: cross-entropy (classification) or mean squared
        error (regression), see :mod:`lossatlas.engine.losses`.
    include_frozen:
        Frozen parameters (``requires_grad=False``) are constants of the objective by
        default, not coordinates of x; ``True`` makes them coordinates too.
    fast_path:
        Allow the MLP fast path of :meth:`evaluate` (used only where it is proven to
        compute the module's forward: :mod:`~lossatlas.engine.objective.fastpath`).
    autocast:
        ``"bf16"`` or ``"fp16"``: :meth:`evaluate` runs the model's forward under
        ``torch.autocast`` in that precision (loss sums stay float64; gradients, HVPs
        and training stay in ``dtype``). Its accuracy cost is measured in
        ``benchmarks/bench_big.py``; ``None``: off.
    compile:
        :meth:`evaluate`'s batched forward (the generic path) through
        ``torch.compile`` (a one-time compilation per input shape).
    memory_format:
        ``"channels_last"``: image batches (4-D inputs) are laid out channels-last.

    Attributes: :attr:`layout` and :attr:`D` (the coordinates), :attr:`x0` (the
    model's parameters as a vector), :attr:`loss_fn` (the :class:`Loss`),
    :attr:`evaluation_path` (which forward :meth:`evaluate` runs, and why).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data: DataBundle,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        loss: Loss | None = None,
        include_frozen: bool = False,
        fast_path: bool = True,
        autocast: str | None = None,
        compile: bool = False,
        memory_format: str = "contiguous",
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.task = data.task
        self.n_outputs = data.n_outputs
        self.loss_fn: Loss = loss if loss is not None else default_loss(data.task)
        if self.task not in self.loss_fn.tasks:
            raise ConfigError(
                f"loss '{self.loss_fn.name}' is for {' and '.join(self.loss_fn.tasks)} but the "
                f"data set is a {self.task} task; choose another [loss] plugin"
            )
        self.model = model.to(self.device, dtype).eval()
        self.layout = ParamLayout(self.model, include_frozen=include_frozen)
        self.D = self.layout.D
        if self.D == 0:
            what = (
                f"all {len(self.layout.frozen)} of its parameter tensors are frozen "
                "(requires_grad=False); set include_frozen = true in [model] to study them"
                if self.layout.frozen
                else "it has no parameters"
            )
            raise ShapeError(
                f"the model ({type(model).__name__}) has no coordinates to study: {what}"
            )
        self.buffers = {n: b for n, b in self.model.named_buffers()}
        self._buffer_aliases = tensor_aliases(
            self.model, self.model.named_buffers(remove_duplicate=False)
        )
        names = set(self.layout.names)
        #: frozen parameters left out of x: constants of every forward
        self.frozen_params = {
            n: p.detach() for n, p in self.model.named_parameters() if n not in names
        }
        self.x0 = self.layout.vector(self.model).clone()
        if batch_size is not None and batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        self.splits: dict[str, Split] = {
            "train": data.train.to(self.device, dtype),
            "validation": data.validation.to(self.device, dtype),
        }
        self.batch_size = batch_size
        self.memory_budget = memory_budget
        check_targets(self)  # class labels are integers in [0, n_outputs)
        check_shapes(self)  # the model takes the inputs; the loss takes its outputs
        self._activations_per_sample = self._measure_activations()
        if autocast not in (None, "", "bf16", "fp16"):
            raise ConfigError(f"autocast must be 'bf16', 'fp16' or off, got {autocast!r}")
        if memory_format not in ("contiguous", "channels_last"):
            raise ConfigError(
                f"memory_format must be 'contiguous' or 'channels_last', got {memory_format!r}"
            )
        #: the lower precision of evaluate's forward (None: the objective's dtype)
        self.autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(autocast or "")
        self.compile = bool(compile)
        self.channels_last = memory_format == "channels_last"
        self._compiled: dict[tuple[int, ...], Callable[..., object]] = {}
        self.fast_path: MLPFastPath | None = None
        self.evaluation_path = self._choose_path(fast_path and self.autocast is None)
        if self.autocast is not None:
            self.evaluation_path = EvaluationPath(
                "generic", f"autocast {autocast}: the generic forward in lower precision"
            )
        self._twins: dict[torch.dtype, Objective] = {}
        #: bytes evaluate's chunks may take on a GPU: half the memory free when the
        #: objective was made (measured once: a chunk size that moved between calls
        #: could move the last bits of a result)
        self.device_budget = self.memory_budget
        if self.device.type == "cuda" and torch.cuda.is_available():
            free, _total = torch.cuda.mem_get_info(self.device)
            self.device_budget = max(self.memory_budget, int(free) // 2)

    # ---------------------------------------------------------------- sizing

    def _measure_activations(self) -> int:
        """Numbers of activation values one sample produces (for chunking)."""
        total = 0

        def hook(_m: torch.nn.Module, _i: object, out: object) -> None:
            nonlocal total
            if isinstance(out, torch.Tensor):
                total += out.numel()

        handles = [
            m.register_forward_hook(hook) for m in self.model.modules() if not list(m.children())
        ]
        try:
            with torch.no_grad():
                self._forward(self.x0, self._head("train", 1)[0])
        finally:
            for h in handles:
                h.remove()
        return max(total, self.n_outputs)

    def _choose_path(self, allowed: bool) -> EvaluationPath:
        """The fast path where the structure allows it and the numbers confirm it."""
        if not allowed:
            return EvaluationPath("generic", "the fast path was switched off (fast_path=False)")
        ops, why = plan_stack(self.model, self.layout)
        if ops is None:
            return EvaluationPath("generic", f"not the MLP fast path: {why}")
        fast = MLPFastPath(ops, self.loss_fn, self.device, self.dtype)
        inputs, targets = self._head("train", CHECK_SAMPLES)
        g = torch.Generator().manual_seed(0)
        scale = 0.1 * (float(self.x0.norm()) / max(self.D, 1) ** 0.5 + 1e-3)
        delta = torch.randn(self.D, generator=g, dtype=torch.float64) * scale
        X = torch.stack([self.x0, self.x0 + delta.to(self.device, self.dtype)])
        classify = self.task == "classification"

        def generic(P: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self._generic_sums(P, inputs, targets, P.shape[0], classify)

        ok, worst = confirm(fast, generic, X, inputs, targets, classify)
        if not ok:
            return EvaluationPath(
                "generic",
                f"the MLP fast path disagreed with the generic forward at the check points "
                f"(relative difference {worst:.2e}); not used",
                worst,
            )
        self.fast_path = fast
        return EvaluationPath(
            "mlp-fast-path",
            f"{why}; confirmed against the generic forward at x0 and a random nearby point "
            f"on {inputs.shape[0]} samples",
            worst,
        )

    # ----------------------------------------------------------------- basics

    @property
    def loss_name(self) -> str:
        return self.loss_fn.name

    def streamed(self, split: SplitName = "train") -> bool:
        """Whether ``split`` is read batch by batch (:mod:`lossatlas.engine.streaming`)."""
        return bool(self.splits[split].streamed)

    def _cast(
        self, inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (and float targets) in this objective's dtype; class labels stay ints."""
        if targets.is_floating_point():
            targets = targets.to(self.dtype)
        return inputs.to(self.dtype), targets

    def _head(self, split: SplitName, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` samples of a split (inputs, targets) in this objective's dtype,
        without reading the rest of a streamed split."""
        s = self.splits[split]
        if s.streamed:
            return self._cast(*s.head(n))  # type: ignore[attr-defined]
        return self._cast(s.inputs[:n], s.targets[:n])

    def _split_tensors(self, split: SplitName) -> tuple[torch.Tensor, torch.Tensor]:
        """A split's inputs and targets in this objective's dtype (the whole split: a
        streamed split is loaded, see :attr:`StreamedSplit.inputs`)."""
        s = self.splits[split]
        return self._cast(s.inputs, s.targets)

    def _forward(self, x: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """The model's outputs on ``inputs`` with parameters ``x`` (generic path).

        Every parameter and buffer slot is given explicitly, tied tensors under all
        their aliases, with ``tie_weights=False`` (see
        :func:`~lossatlas.engine.objective.layout.tensor_aliases`)."""
        state = {**self.layout.unflatten(x), **self.frozen_params}
        buffers = dict(self.buffers)
        for name, others in self._buffer_aliases.items():
            for other in others:
                buffers[other] = buffers[name]
        return functional_call(
            self.model, (self.layout.bind(state), buffers), (inputs,), tie_weights=False
        )

    def _sum_loss(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Sum over samples of the per-sample loss (through :attr:`loss_fn`)."""
        return self.loss_fn.sum(out, targets)

    def batch_loss(
        self, x: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """The mean loss of the model with parameters ``x`` on one batch (differentiable
        in ``x``; vmappable over ``x``). Cost: one forward pass over the batch."""
        return self._sum_loss(self._forward(x, inputs), targets) / int(inputs.shape[0])

    def _correct(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (out.argmax(dim=-1) == targets).sum()

    def batches(
        self, split: SplitName = "train", batch_size: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
        """(inputs, targets, weight) over a split; weights (batch/N) sum to one.

        A streamed split is read from its source batch by batch (``batch_size``, else the
        run's, else the split's own), never held whole."""
        s = self.splits[split]
        if s.streamed:
            n = len(s)
            for inputs, targets in s.batches(batch_size or self.batch_size):  # type: ignore[attr-defined]
                yield *self._cast(inputs, targets), int(inputs.shape[0]) / n
            return
        # Sliced, then cast: an objective in another dtype (astype's float64 re-checks)
        # never holds a cast copy of the whole split.
        n = int(s.inputs.shape[0])
        size = batch_size or self.batch_size or n
        for i in range(0, n, size):
            inputs, targets = self._cast(s.inputs[i : i + size], s.targets[i : i + size])
            yield inputs, targets, min(size, n - i) / n

    def as_tensor(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``x`` (shape (D,) or (B, D)) on this objective's device and dtype, or a
        ShapeError naming the length that does not fit."""
        t = torch.as_tensor(x)
        if t.ndim == 0 or t.shape[-1] != self.D:
            got = "a scalar" if t.ndim == 0 else f"{t.shape[-1]} entries"
            raise ShapeError(f"a parameter vector has {got} but the model has D={self.D}")
        return t.to(self.device, self.dtype)

    def astype(self, dtype: torch.dtype) -> Objective:
        """This objective in another precision at the same parameters (e.g. float64, to
        re-check a float32 computation): a copy of the model cast to ``dtype``; the
        data stay as they are and are cast batch by batch. Made once and kept."""
        if dtype == self.dtype:
            return self
        if dtype not in self._twins:
            twin = copy.copy(self)
            twin.dtype = dtype
            twin.model = copy.deepcopy(self.model).to(dtype)
            twin.buffers = {
                n: b.to(dtype) if b.is_floating_point() else b
                for n, b in twin.model.named_buffers()
            }
            twin.frozen_params = {n: p.to(dtype) for n, p in self.frozen_params.items()}
            twin.x0 = self.x0.to(dtype)
            twin.fast_path = None
            twin.autocast = None
            twin.compile = False
            twin._compiled = {}
            twin.evaluation_path = EvaluationPath("generic", f"a {dtype} copy for re-checks")
            twin._twins = {}
            self._twins[dtype] = twin
        return self._twins[dtype]

    # ------------------------------------------------------------ one point

    def loss(self, x: torch.Tensor, split: SplitName = "train") -> torch.Tensor:
        """L(x), the mean loss over a split; differentiable in ``x``."""
        x = self.as_tensor(x) if not x.requires_grad else x
        total = None
        for inputs, targets, _w in self.batches(split):
            term = self._sum_loss(self._forward(x, inputs), targets)
            total = term if total is None else total + term
        return total / len(self.splits[split])

    def value_and_grad(
        self, x: torch.Tensor, split: SplitName = "train"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(L(x), ∇L(x)), accumulated over mini-batches. Cost: one forward+backward."""
        x = self.as_tensor(x).detach()
        n = len(self.splits[split])
        value = torch.zeros((), device=self.device, dtype=self.dtype)
        g = torch.zeros_like(x)
        for inputs, targets, _w in self.batches(split):
            xi = x.clone().requires_grad_(True)
            term = self._sum_loss(self._forward(xi, inputs), targets) / n
            (gi,) = torch.autograd.grad(term, xi)
            value += term.detach()
            g += gi
        return value, g

    def grad(self, x: torch.Tensor, split: SplitName = "train") -> torch.Tensor:
        """∇L(x). Cost: one forward and one backward pass over the split."""
        return self.value_and_grad(x, split)[1]

    def _vector(self, v: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
        t = self.as_tensor(v)
        if t.ndim != 1:
            raise ShapeError(
                f"{what} must be one vector of D={self.D} entries, got {tuple(t.shape)}"
            )
        return t.detach()

    def hvp(self, x: torch.Tensor, v: torch.Tensor, split: SplitName = "train") -> torch.Tensor:
        """H(x)·v by a second backward pass (Pearlmutter). Cost: about two gradients."""
        x = self._vector(x, "the point x")
        v = self._vector(v, "the vector v of an HVP")
        n = len(self.splits[split])
        out = torch.zeros_like(x)
        for inputs, targets, _w in self.batches(split):
            xi = x.clone().requires_grad_(True)
            # ∂(∇L·v)/∂x = H·v with v constant: bit for bit the product with
            # grad_outputs=v, but a scalar output (grad_outputs makes torch.autograd
            # import torch.fx's symbolic shapes and sympy: ~1 s once per process)
            g = self._grad_graph(xi, inputs, targets, n)
            (hv,) = torch.autograd.grad(torch.dot(g, v), xi)
            out += hv
        return out

    def _grad_graph(
        self, xi: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, n: int
    ) -> torch.Tensor:
        """This batch's share of ∇L at ``xi`` (requires grad), with its graph kept for
        a second backward (the first half of an HVP)."""
        with torch.enable_grad():
            term = self._sum_loss(self._forward(xi, inputs), targets) / n
            (g,) = torch.autograd.grad(term, xi, create_graph=True)
        return g

    def hvp_at(
        self, x: torch.Tensor, split: SplitName = "train"
    ) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """``v ↦ H(x)·v`` at a fixed ``x`` that keeps the gradient's graph, or None.

        The gradient ∇L(x) is built once with ``create_graph=True``; each product is
        then one backward pass through it (cost ≈ one gradient, instead of the
        forward + two backwards of :meth:`hvp`). Only for full-batch splits (one graph;
        None when the split is processed in mini-batches, where the graphs of every
        batch would have to be held at once) — use :meth:`hvp` there.
        """
        n = len(self.splits[split])
        if (self.batch_size or n) < n or self.streamed(split):
            return None
        inputs, targets = self._split_tensors(split)
        xi = self._vector(x, "the point x").clone().requires_grad_(True)
        g = self._grad_graph(xi, inputs, targets, n)

        def product(v: torch.Tensor) -> torch.Tensor:
            vv = self._vector(v, "the vector v of an HVP")
            with torch.enable_grad():
                # a scalar output: bit for bit grad_outputs=vv, without the import of
                # sympy that grad_outputs costs (see hvp)
                (hv,) = torch.autograd.grad(torch.dot(g, vv), xi, retain_graph=True)
            return hv

        return product

    def hvp_many(
        self,
        x: torch.Tensor,
        vectors: torch.Tensor,
        split: SplitName = "train",
        method: Literal["auto", "forward", "reverse"] = "auto",
        chunk: int | None = None,
    ) -> torch.Tensor:
        """H(x)·V for the rows of ``vectors`` (k, D), all at once.

        ``forward``: forward-over-reverse (``jvp`` of ``grad``) vmapped over the rows.
        ``reverse``: double backward with batched grad outputs. ``auto`` takes forward
        and falls back to reverse where a layer lacks forward-mode AD. Rows are
        processed ``chunk`` at a time (default: as many as the memory budget allows).
        Cost: k HVPs, in one batched pass per chunk.
        """
        x = self._vector(x, "the point x")
        V = self.as_tensor(vectors).detach()
        if V.ndim == 1:
            return self.hvp(x, V, split)
        if V.ndim != 2:
            raise ShapeError(f"HVP vectors must be (k, D={self.D}), got {tuple(V.shape)}")
        k = V.shape[0]
        if chunk is None:
            per = self._activations_per_sample * self._pass_samples(split) * 6 + 4 * self.D
            chunk = max(1, min(k, self.memory_budget // (per * V.element_size())))
        outs = []
        for i in range(0, k, chunk):
            block = V[i : i + chunk]
            if method in ("auto", "forward"):
                try:
                    outs.append(self._hvp_forward(x, block, split))
                    continue
                except (RuntimeError, NotImplementedError):
                    if method == "forward":
                        raise
            outs.append(self._hvp_reverse(x, block, split))
        return torch.cat(outs)

    def _hvp_forward(self, x: torch.Tensor, V: torch.Tensor, split: SplitName) -> torch.Tensor:
        n = len(self.splits[split])
        out = torch.zeros_like(V)
        for inputs, targets, _w in self.batches(split):

            def f(p: torch.Tensor, inputs=inputs, targets=targets) -> torch.Tensor:
                return self._sum_loss(self._forward(p, inputs), targets) / n

            g = grad(f)

            def one(v: torch.Tensor, g=g) -> torch.Tensor:
                return jvp(g, (x,), (v,))[1]

            out += vmap(one)(V)
        return out

    def _hvp_reverse(self, x: torch.Tensor, V: torch.Tensor, split: SplitName) -> torch.Tensor:
        n = len(self.splits[split])
        out = torch.zeros_like(V)
        for inputs, targets, _w in self.batches(split):
            xi = x.clone().requires_grad_(True)
            term = self._sum_loss(self._forward(xi, inputs), targets) / n
            (gi,) = torch.autograd.grad(term, xi, create_graph=True)
            (hv,) = torch.autograd.grad(gi, xi, grad_outputs=V, is_grads_batched=True)
            out += hv
        return out

    def hessian(self, x: torch.Tensor, split: SplitName = "train") -> torch.Tensor:
        """The dense D × D Hessian (D HVPs; only for small models and checks)."""
        eye = torch.eye(self.D, device=self.device, dtype=self.dtype)
        H = self.hvp_many(x, eye, split)
        return 0.5 * (H + H.T)

    def subspace_hessian(
        self,
        x0: torch.Tensor,
        basis: torch.Tensor,
        split: SplitName = "train",
        chunk: int | None = None,
    ) -> torch.Tensor:
        """The d × d Hessian of θ ↦ L(x0 + Mθ) at θ = 0, i.e. Mᵀ H(x0) M.

        ``basis`` is M (D × d), dense or sparse; a sparse M is densified ``chunk``
        columns at a time only. Cost: d HVPs, batched.
        """
        from ..components import Subspace

        if basis.ndim != 2 or basis.shape[0] != self.D:
            raise ShapeError(
                f"subspace_hessian: the basis M must be a (D={self.D}, d) matrix whose "
                f"columns are directions, got shape {tuple(basis.shape)}"
                + ("; for one direction use basis.reshape(-1, 1)" if basis.ndim == 1 else "")
            )
        sub = Subspace(
            origin=self._vector(x0, "the point x0"), basis=basis.to(self.device, self.dtype)
        )
        d = sub.dim
        step = chunk or d
        blocks = []
        for i in range(0, d, step):
            cols = sub.columns(i, min(d, i + step))  # (k, D)
            blocks.append(self.hvp_many(x0, cols, split))  # (k, D): rows H m_i
        HM = torch.cat(blocks)  # (d, D)
        if basis.layout != torch.strided:
            Hd = torch.sparse.mm(
                sub.basis.T.coalesce() if sub.basis.is_sparse else sub.basis.T, HM.T
            ).T
        else:
            Hd = HM @ sub.basis
        return 0.5 * (Hd + Hd.T)

    # ---------------------------------------------------------- many points

    def _pass_samples(self, split: SplitName) -> int:
        """Samples one forward pass holds: the batch (the split's own when streamed)."""
        s = self.splits[split]
        n = len(s)
        if s.streamed:
            return min(n, self.batch_size or s.batch_size)  # type: ignore[attr-defined]
        return min(n, self.batch_size or n)

    def point_chunk(self, split: SplitName = "train") -> int:
        """How many points one batched pass evaluates within the memory budget."""
        n = self._pass_samples(split)
        per_point = (self._activations_per_sample * n * 3 + 2 * self.D) * (
            torch.finfo(self.dtype).bits // 8
        )
        return max(1, int(getattr(self, "device_budget", self.memory_budget) // per_point))

    def _batched_sums(self, classify: bool) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
        """(points, inputs, targets) ↦ summed loss and correct count per point, vmapped
        over the points; the data are arguments, not closed over, so a compiled version
        (``compile=True``, made once per objective and task) never sees stale data."""

        def one(
            p: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            out = self._forward(p, inputs)
            c = self._correct(out, targets) if classify else torch.zeros((), device=p.device)
            return self._sum_loss(out, targets), c

        batched = vmap(one, in_dims=(0, None, None))
        if not getattr(self, "compile", False):
            return batched
        key = (int(classify),)
        if key not in self._compiled:
            self._compiled[key] = torch.compile(batched, dynamic=False)
        return self._compiled[key]  # type: ignore[return-value]

    def _generic_sums(
        self,
        X: torch.Tensor,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        chunk: int,
        classify: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss and correct count (float64, (B,)) at the points X on one batch,
        by the generic forward: ``functional_call`` vmapped over chunks of points."""

        batched = self._batched_sums(classify)
        B = X.shape[0]
        loss = torch.zeros(B, dtype=torch.float64, device=X.device)
        correct = torch.zeros(B, dtype=torch.float64, device=X.device)
        for i in range(0, B, chunk):
            lo, co = batched(X[i : i + chunk], inputs, targets)
            loss[i : i + chunk] = lo.double()
            correct[i : i + chunk] = co.double()
        return loss, correct

    @torch.no_grad()
    def evaluate(
        self,
        points: torch.Tensor | np.ndarray,
        split: SplitName = "train",
        chunk: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Loss (and accuracy, for classification) at each row of ``points`` (B, D).

        One vmapped forward pass per chunk of points and mini-batch of data (plain
        MLPs take the proven fast path instead, :attr:`evaluation_path`); memory is
        bounded by the chunk, not by B. Returns float64 arrays of shape (B,).
        """
        X = self.as_tensor(points)
        single = X.ndim == 1
        X = X.reshape(-1, self.D)
        B = X.shape[0]
        chunk = chunk or self.point_chunk(split)
        n = len(self.splits[split])
        loss = torch.zeros(B, dtype=torch.float64, device=self.device)
        correct = torch.zeros(B, dtype=torch.float64, device=self.device)
        classify = self.task == "classification"
        low = getattr(self, "autocast", None)
        for inputs, targets, _w in self.batches(split):
            if getattr(self, "channels_last", False) and inputs.ndim == 4:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            if self.fast_path is not None:
                lo, co = self.fast_path.evaluate(X, inputs, targets, chunk, classify)
            elif low is not None:
                with torch.autocast(self.device.type, dtype=low):
                    lo, co = self._generic_sums(X, inputs, targets, chunk, classify)
            else:
                lo, co = self._generic_sums(X, inputs, targets, chunk, classify)
            loss += lo
            correct += co
        result = {"loss": (loss / n).cpu().numpy()}
        if classify:
            result["accuracy"] = (correct / n).cpu().numpy()
        if single:
            result = {k: v[:1] for k, v in result.items()}
        return result

    def evaluate_both(
        self, points: torch.Tensor | np.ndarray, chunk: int | None = None
    ) -> dict[str, np.ndarray]:
        """:meth:`evaluate` on the train and validation splits, keys prefixed
        ``train_`` and ``validation_``."""
        out = {}
        for split in ("train", "validation"):
            for k, v in self.evaluate(points, split, chunk).items():
                out[f"{split}_{k}"] = v
        return out

    def metric_names(self) -> list[str]:
        """The metrics :meth:`evaluate` returns: ``["loss", "accuracy"]`` for
        classification, ``["loss"]`` for regression (:func:`~lossatlas.engine.
        metric_variables` declares the matching result variables)."""
        return ["loss", "accuracy"] if self.task == "classification" else ["loss"]

    def function(self, split: SplitName = "train") -> Callable[[torch.Tensor], torch.Tensor]:
        """x ↦ L(x) as a plain function (full batch; for torch.func transforms)."""
        if self.streamed(split):
            raise ConfigError(
                "Objective.function needs the whole split in one pass; this split is "
                "streamed: use loss(), grad() and hvp(), which read it batch by batch"
            )
        inputs, targets = self._split_tensors(split)
        n = int(inputs.shape[0])

        def f(x: torch.Tensor) -> torch.Tensor:
            return self._sum_loss(self._forward(x, inputs), targets) / n

        return f
