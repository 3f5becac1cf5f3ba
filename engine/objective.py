"""The objective: the one place where a model meets data.

Everything else in lossatlas works on flat parameter vectors x ∈ R^D. The
:class:`Objective` evaluates loss and metrics at one point or at a batch of points
(B × D → B, one vmapped pass per chunk of points), gradients, Hessian-vector products
(one, or many at once), and the d × d Hessian of θ ↦ L(x0 + Mθ) on a subspace.

Losses are full-batch over a split by default; a split that does not fit in one pass
is accumulated over mini-batches weighted by their size, so the value is the same
mean over all samples whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp, vmap

from .components import DataBundle, Split
from .errors import ConfigError, ShapeError

__all__ = ["Objective", "ParamEntry", "ParamLayout", "resolve_device", "resolve_dtype"]

SplitName = Literal["train", "validation"]

#: Memory the objective aims to stay under for one batched evaluation (bytes).
DEFAULT_MEMORY_BUDGET = 512 * 2**20


def resolve_device(name: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a torch device, or a clear error."""
    text = str(name)
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ConfigError(f"device '{text}' is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device '{text}' was asked for but CUDA is not available on this machine "
                "(torch.cuda.is_available() is False); use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device '{text}': this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type not in ("cpu", "mps"):
        raise ConfigError(f"device '{text}' is not supported; use cpu, cuda or cuda:N")
    return device


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    table = {"float32": torch.float32, "float64": torch.float64}
    if name not in table:
        raise ConfigError(f"dtype '{name}' is not supported; use float32 or float64")
    return table[name]


# ------------------------------------------------------------------ parameter layout


@dataclass(frozen=True)
class ParamEntry:
    """Where one parameter tensor lives in the flat vector, and what it is."""

    name: str
    shape: tuple[int, ...]
    start: int
    stop: int
    #: Index of the module (layer) it belongs to, in module order.
    layer: int
    #: The module's dotted name (``net.0``).
    module: str
    #: ``weight`` (a matrix or filter bank), ``bias``, or ``norm`` (a 1-D scale).
    kind: Literal["weight", "bias", "norm"]
    fan_in: int
    fan_out: int
    #: ‖p‖ at the model's initialisation.
    init_radius: float

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


class ParamLayout:
    """The layout of a model's parameters in the flat vector x ∈ R^D."""

    def __init__(self, model: torch.nn.Module) -> None:
        entries = []
        start = 0
        module_index: dict[str, int] = {}
        for name, p in model.named_parameters():
            module = name.rsplit(".", 1)[0] if "." in name else ""
            layer = module_index.setdefault(module, len(module_index))
            leaf = name.rsplit(".", 1)[-1]
            if p.ndim >= 2:
                kind = "weight"
                fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(p)
            elif leaf == "bias":
                kind, fan_in, fan_out = "bias", 0, int(p.shape[0])
            else:
                kind, fan_in, fan_out = "norm", 0, int(p.shape[0])
            n = p.numel()
            entries.append(
                ParamEntry(
                    name=name,
                    shape=tuple(p.shape),
                    start=start,
                    stop=start + n,
                    layer=layer,
                    module=module,
                    kind=kind,
                    fan_in=int(fan_in),
                    fan_out=int(fan_out),
                    init_radius=float(p.detach().norm()),
                )
            )
            start += n
        self.entries: list[ParamEntry] = entries
        self.D: int = start

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def unflatten(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``x`` (shape (..., D)) as the model's parameter tensors."""
        lead = x.shape[:-1]
        return {e.name: x[..., e.start : e.stop].reshape(*lead, *e.shape) for e in self.entries}

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([tensors[e.name].reshape(-1) for e in self.entries])

    def mask(self, *kinds: str, device: torch.device | str = "cpu") -> torch.Tensor:
        """Boolean (D,) mask of the entries of the given kinds."""
        m = torch.zeros(self.D, dtype=torch.bool, device=device)
        for e in self.entries:
            if e.kind in kinds:
                m[e.start : e.stop] = True
        return m

    def layer_index(self) -> np.ndarray:
        """(D,) int array: the layer each coordinate belongs to."""
        out = np.empty(self.D, dtype=np.int64)
        for e in self.entries:
            out[e.start : e.stop] = e.layer
        return out

    def radius(self, x: torch.Tensor, include_bias: bool = False) -> torch.Tensor:
        """‖x‖ over weights only (the radius of seed 000) or over all parameters."""
        if include_bias:
            return x.norm(dim=-1)
        m = self.mask("weight", device=x.device)
        return x[..., m].norm(dim=-1)


# ------------------------------------------------------------------------- objective

_ACTIVATIONS = {torch.nn.ReLU: "relu", torch.nn.Tanh: "tanh", torch.nn.Sigmoid: "sigmoid"}


def _linear_stack(
    model: torch.nn.Module, layout: ParamLayout
) -> list[tuple[str, ParamEntry | None, ParamEntry | None]] | None:
    """The layers of a plain MLP (``Sequential`` of Flatten, Linear and ReLU/Tanh/
    Sigmoid, no buffers), or None for any other model (which takes the vmapped path)."""
    if type(model) is not torch.nn.Sequential and not (
        isinstance(model, torch.nn.Sequential)
        and type(model).forward is torch.nn.Sequential.forward
    ):
        return None
    if list(model.buffers()):
        return None
    entries = {e.name: e for e in layout.entries}
    ops: list[tuple[str, ParamEntry | None, ParamEntry | None]] = []
    for i, (name, m) in enumerate(model.named_children()):
        if isinstance(m, torch.nn.Flatten) and i == 0:
            continue
        if type(m) is torch.nn.Linear:
            ops.append(("linear", entries[f"{name}.weight"], entries.get(f"{name}.bias")))
        elif type(m) in _ACTIVATIONS:
            ops.append((_ACTIVATIONS[type(m)], None, None))
        else:
            return None
    return ops or None


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
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.task = data.task
        self.n_outputs = data.n_outputs
        self.model = model.to(self.device, dtype).eval()
        self.layout = ParamLayout(self.model)
        self.D = self.layout.D
        self.buffers = {n: b for n, b in self.model.named_buffers()}
        self.x0 = self.layout.flatten(
            {n: p.detach() for n, p in self.model.named_parameters()}
        ).clone()
        self.splits: dict[str, Split] = {
            "train": data.train.to(self.device, dtype),
            "validation": data.validation.to(self.device, dtype),
        }
        if batch_size is not None and batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size
        self.memory_budget = memory_budget
        self._check_shapes(data)
        self._activations_per_sample = self._measure_activations()
        self._stack = _linear_stack(self.model, self.layout)
        #: output widths of the fast path's linear layers (for its blocks and buffers)
        self._stack_width = [w.shape[0] for kind, w, _b in self._stack or [] if kind == "linear"]

    # ----------------------------------------------------------------- basics

    def _check_shapes(self, data: DataBundle) -> None:
        sample = self.splits["train"].inputs[:2]
        try:
            with torch.no_grad():
                out = self._forward(self.x0, sample)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise ShapeError(
                f"the model cannot take the data set's inputs of shape "
                f"{tuple(sample.shape[1:])}: {first}"
            ) from None
        want = (sample.shape[0], self.n_outputs)
        got = tuple(out.shape)
        if self.task == "regression" and self.n_outputs == 1 and got == (sample.shape[0],):
            return
        if got != want:
            what = "classes" if self.task == "classification" else "outputs"
            raise ShapeError(
                f"the model gives outputs of shape {got[1:]} per sample but the data set "
                f"has {self.n_outputs} {what}; set the model's output size to {self.n_outputs}"
            )

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
                self._forward(self.x0, self.splits["train"].inputs[:1])
        finally:
            for h in handles:
                h.remove()
        return max(total, self.n_outputs)

    def _forward(self, x: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, (self.layout.unflatten(x), self.buffers), (inputs,))

    def _sum_loss(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Sum over samples of the per-sample loss."""
        if self.task == "classification":
            return F.cross_entropy(out, targets, reduction="sum")
        out = out.reshape(targets.shape)
        per = (out - targets) ** 2
        return per.reshape(per.shape[0], -1).mean(dim=1).sum()

    def _correct(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (out.argmax(dim=-1) == targets).sum()

    def batches(self, split: SplitName = "train", batch_size: int | None = None):
        """(inputs, targets, weight) over a split; weights (batch/N) sum to one."""
        s = self.splits[split]
        n = len(s)
        size = batch_size or self.batch_size or n
        for i in range(0, n, size):
            yield s.inputs[i : i + size], s.targets[i : i + size], min(size, n - i) / n

    def as_tensor(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(x)
        if t.shape[-1] != self.D:
            raise ShapeError(
                f"a parameter vector has {t.shape[-1]} entries but the model has D={self.D}"
            )
        return t.to(self.device, self.dtype)

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

    def hvp(self, x: torch.Tensor, v: torch.Tensor, split: SplitName = "train") -> torch.Tensor:
        """H(x)·v by a second backward pass (Pearlmutter). Cost: about two gradients."""
        x = self.as_tensor(x).detach()
        v = self.as_tensor(v).detach()
        n = len(self.splits[split])
        out = torch.zeros_like(x)
        for inputs, targets, _w in self.batches(split):
            xi = x.clone().requires_grad_(True)
            (hv,) = torch.autograd.grad(self._grad_graph(xi, inputs, targets, n), xi, v)
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
        if (self.batch_size or n) < n:
            return None
        s = self.splits[split]
        xi = self.as_tensor(x).detach().clone().requires_grad_(True)
        g = self._grad_graph(xi, s.inputs, s.targets, n)

        def product(v: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                (hv,) = torch.autograd.grad(
                    g, xi, grad_outputs=self.as_tensor(v).detach(), retain_graph=True
                )
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
        x = self.as_tensor(x).detach()
        V = self.as_tensor(vectors).detach()
        if V.ndim == 1:
            return self.hvp(x, V, split)
        k = V.shape[0]
        if chunk is None:
            per = self._activations_per_sample * len(self.splits[split]) * 6 + 4 * self.D
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
        from .components import Subspace

        sub = Subspace(origin=self.as_tensor(x0), basis=basis.to(self.device, self.dtype))
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

    def point_chunk(self, split: SplitName = "train") -> int:
        """How many points one batched pass evaluates within the memory budget."""
        n = min(len(self.splits[split]), self.batch_size or len(self.splits[split]))
        per_point = (self._activations_per_sample * n * 3 + 2 * self.D) * (
            torch.finfo(self.dtype).bits // 8
        )
        return max(1, int(self.memory_budget // per_point))

    @torch.no_grad()
    def evaluate(
        self,
        points: torch.Tensor | np.ndarray,
        split: SplitName = "train",
        chunk: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Loss (and accuracy, for classification) at each row of ``points`` (B, D).

        One vmapped forward pass per chunk of points and mini-batch of data (plain
        MLPs take a fused, cache-blocked path instead, :meth:`_stack_evaluate`); memory
        is bounded by the chunk, not by B. Returns float64 arrays of shape (B,).
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

        for inputs, targets, _w in self.batches(split):
            if self._stack is not None:
                lo, co = self._stack_evaluate(X, inputs, targets, chunk, classify)
                loss += lo
                correct += co
                continue

            def one(p: torch.Tensor, inputs=inputs, targets=targets):
                out = self._forward(p, inputs)
                c = self._correct(out, targets) if classify else torch.zeros((), device=p.device)
                return self._sum_loss(out, targets), c

            batched = vmap(one)
            for i in range(0, B, chunk):
                lo, co = batched(X[i : i + chunk])
                loss[i : i + chunk] += lo.double()
                correct[i : i + chunk] += co.double()
        result = {"loss": (loss / n).cpu().numpy()}
        if classify:
            result["accuracy"] = (correct / n).cpu().numpy()
        if single:
            result = {k: v[:1] for k, v in result.items()}
        return result

    #: Bytes of activations one forward block of the MLP fast path may hold on a CPU
    #: (a share of the L3: 6 MiB measured best on the digits MLP, 2 cores, 32 MiB L3).
    CPU_CACHE_BYTES = 6 * 2**20

    def _cache_chunk(self, n: int) -> int:
        """Points per forward block of the MLP fast path: on CPU as many as keep one
        layer's activations within :attr:`CPU_CACHE_BYTES`; elsewhere unlimited."""
        if self.device.type != "cpu":
            return 1 << 30
        per_point = n * max(self._stack_width) * torch.finfo(self.dtype).bits // 8
        return max(1, self.CPU_CACHE_BYTES // per_point)

    def _stack_evaluate(
        self,
        X: torch.Tensor,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        chunk: int,
        classify: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss and correct count (float64, (B,)) at the points X on one batch
        of data: the MLP fast path of :meth:`evaluate`.

        Two levels: the forward runs a few points at a time (:meth:`_cache_chunk`), so
        that their activations stay in the CPU's cache (a 64-point block of a
        1438-sample split spills it and ran 0.6x a per-point loop), into one output
        block per memory-budget chunk, whose loss is then one pass. All blocks share
        buffers made once per call: fresh ones of a few MB per block cost page faults
        that took a third of the time.
        """
        B, N = X.shape[0], inputs.shape[0]
        inner = min(chunk, self._cache_chunk(N))
        hidden = max(self._stack_width[:-1], default=0)
        scratch = [X.new_empty(inner * N * hidden) for _ in range(2 if hidden else 0)]
        out = X.new_empty((min(chunk, B), self._stack_width[-1], N))
        loss = torch.empty(B, dtype=torch.float64, device=X.device)
        correct = torch.empty(B, dtype=torch.float64, device=X.device)
        for i in range(0, B, chunk):
            block = X[i : i + chunk]
            o = out[: block.shape[0]]
            for j in range(0, block.shape[0], inner):
                self._stack_forward(block[j : j + inner], inputs, o[j : j + inner], scratch)
            lo, co = self._batched_loss(o, targets, classify)
            loss[i : i + chunk] = lo
            correct[i : i + chunk] = co
        return loss, correct

    def _stack_forward(
        self,
        X: torch.Tensor,
        inputs: torch.Tensor,
        out: torch.Tensor | None = None,
        scratch: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Outputs of a Linear/activation stack at the points X (B, D), class-major:
        (B, out, N), written into ``out`` if given; hidden activations go into the
        two flat ``scratch`` buffers in turn if given.

        Each layer is one ``baddbmm`` (bias fused into the matrix product) and an
        in-place activation, instead of the separate product, bias and activation
        passes of a vmapped forward. Hidden layers are sample-major (B, N, width); the
        last linear layer computes W·hᵀ on a transposed view (no copy) into
        (B, out, N): a product with a narrow output (10 classes) ran 4× faster that
        way round on a CPU, and the loss then reduces over rows that are contiguous
        along the samples.
        """
        B, N = X.shape[0], inputs.shape[0]
        h = inputs.reshape(N, -1).unsqueeze(0).expand(B, -1, -1)
        layer = 0  # linear layers so far
        for kind, w, b in self._stack:
            if kind == "linear":
                W = X[:, w.start : w.stop].reshape(B, *w.shape)
                layer += 1
                if layer == len(self._stack_width):  # the last one
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

    def _batched_loss(
        self, out: torch.Tensor, targets: torch.Tensor, classify: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss and correct count per point from class-major outputs (B, out, N),
        which it overwrites (they are the fast path's own buffer)."""
        B, _C, N = out.shape
        if classify:
            # Cross-entropy as logsumexp − picked logit, from one max reduction that gives
            # both the stabiliser and the predicted class (the first of tied maxima, as
            # argmax): on CPU, argmax and log_softmax over a short class dim cost more
            # than the matrix products here. exp runs in place: no fresh block.
            top, predicted = out.max(dim=1)
            picked = out.gather(1, targets.view(1, 1, N).expand(B, 1, N)).squeeze(1)
            correct = (predicted == targets.unsqueeze(0)).sum(dim=1)
            lse = out.sub_(top.unsqueeze(1)).exp_().sum(dim=1).log_().add_(top)
            return (lse - picked).sum(dim=1), correct
        diff = out.sub_(targets.reshape(N, -1).T.unsqueeze(0))
        return diff.square_().mean(dim=1).sum(dim=1), torch.zeros(B, device=out.device)

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
        return ["loss", "accuracy"] if self.task == "classification" else ["loss"]

    def function(self, split: SplitName = "train") -> Callable[[torch.Tensor], torch.Tensor]:
        """x ↦ L(x) as a plain function (full batch; for torch.func transforms)."""
        s = self.splits[split]
        n = len(s)

        def f(x: torch.Tensor) -> torch.Tensor:
            return self._sum_loss(self._forward(x, s.inputs), s.targets) / n

        return f
