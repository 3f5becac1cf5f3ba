"""Permutation symmetries of any ``nn.Module``, and Git Re-Basin's matchings.

Ainsworth, Hayase & Srinivasa, "Git Re-Basin: Merging Models modulo Permutation
Symmetries" (ICLR 2023; code: github.com/samuela/git-re-basin). Hidden units can be
permuted without changing the function a network computes; Git Re-Basin finds the
permutation π that brings model B closest to a reference model A, after which the
straight line between A and π(B) often has no loss barrier.

The peer writes a *permutation spec* by hand for every architecture
(``mlp_permutation_spec``, ``resnet20_permutation_spec`` …: which axis of which weight
each permutation acts on). Here the spec is **found by tracing one forward pass** of the
model (:func:`trace_permutations`), so any ``nn.Module`` works:

- every ``linear`` / ``conv`` output (and ``embedding`` feature) starts a permutation
  *group* of its units; element-wise ops, activations, pooling, dropout, BatchNorm /
  LayerNorm / InstanceNorm (their scale, shift **and running statistics** follow the
  group), ``flatten`` (a unit then spans H·W consecutive features), reshapes that keep
  the unit axis, slicing of other axes, ``cat`` and channel padding carry it on;
- adding two streams ties their groups (a residual stream is one group, as in the
  peer's ``P_bg0``); where the streams' units only partly meet (zero-padded shortcuts,
  He et al.'s option A; concatenation) a group is *split* into runs and only the runs
  that meet are tied;
- a group that reaches anything else — the model's output, an op the tracer does not
  know, a parameter used outside a known layer, a parameter named ``frozen`` (one that
  is no coordinate of the point, so it cannot move) — is *fixed* (left unpermuted), so
  the function never changes: unknown code costs alignment, never correctness.

A :class:`PermutationSpec` lists, per free group, every axis run of every parameter and
buffer it permutes. :func:`apply_permutation` permutes a flat parameter vector (and the
buffers); :func:`weight_matching` is the peer's Algorithm 2 (per group a
``scipy.optimize.linear_sum_assignment`` on Σ W_A W_Bᵀ over the group's axes, groups in
random order, iterated until no group improves); :func:`activation_matching` is its §3.1
(per group one assignment on the summed products of post-activation features, E[a bᵀ],
over a sample of training inputs).

Cost: tracing is one forward pass of two samples; weight matching is, per iteration,
one n × n assignment per group and the products of its weights; activation matching is
one forward pass per model over the samples plus one assignment per group.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from .module_state import module_at

__all__ = [
    "PermutationSpec",
    "activation_matching",
    "apply_permutation",
    "identity_permutation",
    "matching_objective",
    "model_with",
    "random_permutation",
    "trace_permutations",
    "weight_matching",
]

# ------------------------------------------------------------------ op vocabulary

#: Ops applied to one tensor entry by entry (the unit axis passes through unchanged).
UNARY = {
    "relu", "relu_", "relu6", "gelu", "silu", "silu_", "mish", "elu", "elu_", "selu",
    "celu", "leaky_relu", "leaky_relu_", "hardtanh", "hardtanh_", "hardswish",
    "hardsigmoid", "softplus", "softsign", "tanh", "tanh_", "sigmoid", "sigmoid_",
    "logsigmoid", "tanhshrink", "threshold", "dropout", "dropout1d", "dropout2d",
    "dropout3d", "alpha_dropout", "feature_alpha_dropout", "neg", "__neg__", "abs",
    "exp", "log", "log1p", "sqrt", "rsqrt", "square", "sin", "cos", "clamp", "clamp_",
    "clip", "clone", "contiguous", "detach", "to", "float", "double", "type_as",
    "__pos__", "erf", "reciprocal", "sign", "nan_to_num",
}  # fmt: skip
#: The activations whose outputs activation matching compares (the peer's post-ReLU).
ACTIVATIONS = {
    "relu", "relu_", "relu6", "gelu", "silu", "silu_", "mish", "elu", "elu_", "selu",
    "celu", "leaky_relu", "leaky_relu_", "hardtanh", "hardtanh_", "hardswish", "softplus",
    "tanh", "tanh_", "sigmoid", "sigmoid_",
}  # fmt: skip
#: Element-wise ops of two operands (broadcasting).
BINARY = {
    "add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__", "__rsub__",
    "__isub__", "mul", "mul_", "__mul__", "__rmul__", "__imul__", "div", "div_",
    "__truediv__", "__rtruediv__", "__itruediv__", "maximum", "minimum", "pow", "__pow__",
}  # fmt: skip
#: Pooling over the spatial axes (the channel axis 1 passes through).
POOLS = {
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "lp_pool1d",
    "lp_pool2d", "max_pool1d_with_indices", "max_pool2d_with_indices",
}  # fmt: skip
REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "prod"}
#: Calls that only read a tensor's metadata (never change a permutation).
METADATA = {"__get__", "dim", "size", "numel", "__len__", "ndimension", "nelement", "stride"}


# --------------------------------------------------------------------- groups


@dataclass
class Seg:
    """A run of ``size`` units along an axis, each unit spanning ``inner`` consecutive
    entries; ``group`` is the permutation group acting on the units (None: fixed)."""

    group: int | None
    size: int
    inner: int = 1

    @property
    def length(self) -> int:
        return self.size * self.inner


class _Groups:
    """Union-find over permutation groups, with fixing and splitting into runs."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.fixed: list[str] = []  # why a root is fixed ("" while free)
        self.split: dict[int, tuple[int, int]] = {}  # root -> (left part, right part)
        self.origin: list[str] = []  # the weight whose output units a group permutes
        self.start: list[int] = []  # its first unit there (a part of a split group)
        self.full: list[int] = []  # that weight's number of output units

    def new(self, size: int, origin: str, start: int = 0, full: int | None = None) -> int:
        self.parent.append(len(self.parent))
        self.size.append(int(size))
        self.fixed.append("")
        self.origin.append(origin)
        self.start.append(start)
        self.full.append(int(size) if full is None else full)
        return len(self.parent) - 1

    def label(self, g: int) -> str:
        a, n = self.start[g], self.size[g]
        return self.origin[g] if (a, n) == (0, self.full[g]) else f"{self.origin[g]}[{a}:{a + n}]"

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def expand(self, layout: Sequence[Seg]) -> list[Seg]:
        """The layout with every group replaced by its current root (a split root by its
        parts) and fixed runs as ``Seg(None, length)``."""
        out: list[Seg] = []
        stack = list(reversed(layout))
        while stack:
            s = stack.pop()
            r = None if s.group is None else self.find(s.group)
            if r is not None and r in self.split:
                a, b = self.split[r]
                stack.append(Seg(b, self.size[b], s.inner))
                stack.append(Seg(a, self.size[a], s.inner))
            elif r is None or self.fixed[r]:
                out.append(Seg(None, s.length))
            else:
                out.append(Seg(r, s.size, s.inner))
        return out

    def fix(self, layout: Sequence[Seg] | None, reason: str) -> None:
        for s in self.expand(layout or []):
            if s.group is not None:
                self.fixed[s.group] = reason

    def cut(self, g: int, k: int) -> None:
        """Split root ``g`` after its first ``k`` units (into two groups)."""
        r = self.find(g)
        o, s, f = self.origin[r], self.start[r], self.full[r]
        a = self.new(k, o, s, f)
        b = self.new(self.size[r] - k, o, s + k, f)
        self.fixed[a] = self.fixed[b] = self.fixed[r]
        self.split[r] = (a, b)

    def _refine(self, layout: Sequence[Seg], cuts: set[int]) -> list[Seg] | None:
        """``layout`` cut at the entry positions ``cuts`` (groups split where needed);
        None if a cut falls inside a unit (a unit of ``inner`` entries is indivisible)."""
        while True:
            pos, did = 0, False
            for s in self.expand(layout):
                inside = [c for c in cuts if pos < c < pos + s.length]
                if inside and s.group is not None:
                    c = min(inside)
                    if (c - pos) % s.inner:
                        return None
                    self.cut(s.group, (c - pos) // s.inner)
                    did = True
                    break
                pos += s.length
            if not did:
                break
        out: list[Seg] = []
        pos = 0
        for s in self.expand(layout):  # fixed runs are cut by position
            if s.group is None:
                edges = sorted(
                    {pos, pos + s.length} | {c for c in cuts if pos < c < pos + s.length}
                )
                out += [Seg(None, b - a) for a, b in itertools.pairwise(edges)]
            else:
                out.append(s)
            pos += s.length
        return out

    @staticmethod
    def _bounds(layout: Sequence[Seg]) -> set[int]:
        out, pos = set(), 0
        for s in layout:
            pos += s.length
            out.add(pos)
        return out

    def unify(self, a: Sequence[Seg], b: Sequence[Seg], reason: str) -> list[Seg]:
        """Tie two layouts of one axis run by run (the same permutation must act on
        both); runs that cannot be tied (different unit widths, fixed on one side) are
        fixed on both. Returns the tied layout."""
        cuts = self._bounds(self.expand(a)) | self._bounds(self.expand(b))
        ra, rb = self._refine(a, cuts), self._refine(b, cuts)
        if (
            ra is None
            or rb is None
            or len(ra) != len(rb)
            or any(x.length != y.length for x, y in zip(ra, rb, strict=True))
        ):
            self.fix(a, reason)
            self.fix(b, reason)
            return self.expand(a)
        for sa, sb in zip(ra, rb, strict=True):
            if sa.group is None or sb.group is None or sa.inner != sb.inner:
                self.fix([sa], reason)
                self.fix([sb], reason)
            elif self.find(sa.group) != self.find(sb.group):
                self.parent[self.find(sb.group)] = self.find(sa.group)
        return self.expand(ra)


# ---------------------------------------------------------------------- tracing


@dataclass
class Event:
    """One traced call: its name, arguments and output."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    out: Any


class _Recorder(TorchFunctionMode):
    """Records every top-level torch call of a forward pass (nested calls run with the
    mode off, so ``F.batch_norm`` is one event, not its internals). With ``keep``, only
    the outputs of those event indices are kept (for activation matching)."""

    def __init__(self, keep: set[int] | None = None) -> None:
        super().__init__()
        self.events: list[Event] = []
        self.keep = keep
        self.outputs: dict[int, torch.Tensor] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", str(func))
        if name in METADATA:
            return out
        i = len(self.events)
        if self.keep is None:
            self.events.append(Event(name, tuple(args), dict(kwargs), out))
        else:
            self.events.append(Event(name, (), {}, None))
            if i in self.keep and isinstance(out, torch.Tensor):
                self.outputs[i] = out.detach()
        return out


def _trace(
    model: torch.nn.Module, inputs: torch.Tensor, keep: set[int] | None = None
) -> tuple[_Recorder, Any]:
    rec = _Recorder(keep)
    with torch.no_grad(), rec:
        out = model(inputs)
    return rec, out


def _arg(ev: Event, i: int, name: str, default: Any = None) -> Any:
    if name in ev.kwargs:
        return ev.kwargs[name]
    return ev.args[i] if len(ev.args) > i else default


def _tensors(obj: Any) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


Runs = list[tuple[int, int, int, int]]


@dataclass
class PermutationSpec:
    """Where the permutation symmetries of a model act, found by :func:`trace_permutations`.

    - ``sizes[g]``: units of free group g; ``labels[g]``: where it starts (the weight
      whose output units it permutes, ``[a:b]`` for part of one, ``+k tied`` when k more
      layers' units were tied to it, e.g. along a residual stream).
    - ``params`` / ``buffers``: name → {axis: [(offset, size, inner, group or −1)]}, the
      runs along each permuted axis (−1: not permuted).
    - ``activations``: (event index, axis, runs) of the post-activation tensors that
      activation matching compares.
    - ``fixed``: (label, units, reason) of the groups that had to stay fixed besides the
      model's output units: they reach code the tracer does not understand.
    """

    sizes: list[int]
    labels: list[str]
    params: dict[str, dict[int, Runs]]
    buffers: dict[str, dict[int, Runs]]
    activations: list[tuple[int, int, Runs]]
    fixed: list[tuple[str, int, str]] = field(default_factory=list)

    @property
    def n_groups(self) -> int:
        return len(self.sizes)

    @property
    def fixed_units(self) -> int:
        return sum(n for _label, n, _why in self.fixed)

    def slots(self, g: int) -> list[tuple[str, int, int, int]]:
        """(parameter, axis, offset, inner) of every run of group ``g``."""
        return [
            (name, axis, off, inner)
            for name, axes in self.params.items()
            for axis, runs in axes.items()
            for off, _size, inner, grp in runs
            if grp == g
        ]


def _pooled_dims(name: str) -> int:
    m = re.search(r"(\d)d", name)
    return int(m.group(1)) if m else 1


class _Tracer:
    """Turns the events of one forward pass into permutation groups (see
    :func:`trace_permutations`)."""

    def __init__(self, model: torch.nn.Module, frozen: Iterable[str] = ()) -> None:
        self.param_name = {id(p): n for n, p in model.named_parameters()}
        self.frozen = set(frozen)
        self.frozen_bound: list[tuple[str, list[Seg]]] = []  # fixed once the pass is over
        self.buffer_name = {id(b): n for n, b in model.named_buffers()}
        self.G = _Groups()
        self.state: dict[int, tuple[int, list[Seg]]] = {}  # id -> (axis < 0, layout)
        self.bindings: dict[tuple[str, str, int], list[Seg]] = {}
        self.opaque: set[str] = set()
        self.acts: list[tuple[int, int, list[Seg]]] = []
        self._bound: set[int] = set()

    # helpers ----------------------------------------------------------------

    def rec(self, t: Any) -> tuple[int, list[Seg]] | None:
        return self.state.get(id(t)) if isinstance(t, torch.Tensor) else None

    def kind(self, t: Any) -> tuple[str, str] | None:
        if not isinstance(t, torch.Tensor):
            return None
        if id(t) in self.param_name:
            return ("param", self.param_name[id(t)])
        if id(t) in self.buffer_name:
            return ("buffer", self.buffer_name[id(t)])
        return None

    def bind(self, t: Any, axis: int, layout: list[Seg], why: str) -> bool:
        """Bind axis ``axis`` of parameter/buffer ``t`` to ``layout`` (False: ``t`` is a
        computed tensor, which cannot follow a permutation)."""
        k = self.kind(t)
        if k is None:
            return False
        self._bound.add(id(t))
        if k[1] in self.frozen:  # its values cannot move: neither can its units
            self.frozen_bound.append((k[1], list(layout)))
            return True
        if k[1] in self.opaque:
            self.G.fix(layout, why)
            return True
        key = (k[0], k[1], axis % t.ndim)
        if key in self.bindings:
            self.bindings[key] = self.G.unify(self.bindings[key], layout, why)
        else:
            self.bindings[key] = list(layout)
        return True

    def make_opaque(self, t: Any, why: str) -> None:
        k = self.kind(t)
        if k is None or k[1] in self.opaque:
            return
        self.opaque.add(k[1])
        for key, layout in self.bindings.items():
            if key[1] == k[1]:
                self.G.fix(layout, why)

    def out(self, t: Any, axis: int, layout: list[Seg]) -> None:
        if isinstance(t, torch.Tensor):
            self.state[id(t)] = (axis - t.ndim if axis >= 0 else axis, list(layout))

    def fix_all(self, ev: Event, why: str) -> None:
        for t in _tensors((ev.args, ev.kwargs)):
            r = self.rec(t)
            if r is not None:
                self.G.fix(r[1], why)

    # the pass ---------------------------------------------------------------

    def run(self, events: list[Event]) -> None:
        for i, ev in enumerate(events):
            if not any(True for _ in _tensors(ev.out)):
                continue
            self._bound = set()
            why = f"op '{ev.name}'"
            self.handle(i, ev, why)
            # a parameter used in any way the handler did not bind cannot be permuted
            for t in _tensors((ev.args, ev.kwargs)):
                if id(t) not in self._bound:
                    self.make_opaque(t, f"parameter used by {why}")

    def handle(self, i: int, ev: Event, why: str) -> None:
        G, name = self.G, ev.name
        x = ev.args[0] if ev.args else _arg(ev, 0, "input")
        rx = self.rec(x)
        if name == "linear":
            W, b = _arg(ev, 1, "weight"), _arg(ev, 2, "bias")
            if self.kind(W) is None or (b is not None and self.kind(b) is None):
                return self.fix_all(ev, f"{why} with a computed weight")
            if rx is not None:
                if rx[0] == -1:
                    self.bind(W, 1, rx[1], why)
                else:
                    G.fix(rx[1], f"{why} on another axis")
            g = G.new(W.shape[0], self.param_name[id(W)])
            layout = [Seg(g, W.shape[0])]
            self.bind(W, 0, layout, why)
            if b is not None:
                self.bind(b, 0, layout, why)
            return self.out(ev.out, -1, layout)
        if name in ("conv1d", "conv2d", "conv3d"):
            W, b = _arg(ev, 1, "weight"), _arg(ev, 2, "bias")
            groups = int(_arg(ev, 6, "groups", 1))
            if self.kind(W) is None or (b is not None and self.kind(b) is None):
                return self.fix_all(ev, f"{why} with a computed weight")
            ax = -(W.ndim - 1)  # the channel axis of the input and the output
            if groups == 1:
                if rx is not None:
                    if rx[0] == ax:
                        self.bind(W, 1, rx[1], why)
                    else:
                        G.fix(rx[1], f"{why} on another axis")
                g = G.new(W.shape[0], self.param_name[id(W)])
                layout = [Seg(g, W.shape[0])]
            elif rx is not None and rx[0] == ax and groups == x.shape[ax] == W.shape[0]:
                layout = rx[1]  # depthwise: every channel keeps its own filter
            else:
                return self.fix_all(ev, f"{why} with groups={groups}")
            self.bind(W, 0, layout, why)
            if b is not None:
                self.bind(b, 0, layout, why)
            return self.out(ev.out, ax, layout)
        if name == "embedding":
            W = _arg(ev, 1, "weight")
            if self.kind(W) is None:
                return self.fix_all(ev, f"{why} with a computed weight")
            g = G.new(W.shape[1], self.param_name[id(W)])
            self.bind(W, 1, [Seg(g, W.shape[1])], why)
            return self.out(ev.out, -1, [Seg(g, W.shape[1])])
        if name in ("batch_norm", "instance_norm"):
            ax = 1 - x.ndim
            if rx is None or rx[0] != ax:
                return self.fix_all(ev, f"{why} over another axis")
            stats = [_arg(ev, j, k) for j, k in enumerate(NORM_ARGS, start=1)]
            if not all(self.bind(t, 0, rx[1], why) for t in stats if t is not None):
                return G.fix(rx[1], f"{why} with computed statistics")
            return self.out(ev.out, ax, rx[1])
        if name == "layer_norm":
            shape = tuple(_arg(ev, 1, "normalized_shape"))
            first = x.ndim - len(shape)
            affine = [t for t in (_arg(ev, 2, "weight"), _arg(ev, 3, "bias")) if t is not None]
            if rx is None:
                return None
            axis = rx[0] + x.ndim
            if axis < first:  # normalises later axes only: the units pass through
                return self.out(ev.out, rx[0], rx[1]) if not affine else self.fix_all(ev, why)
            if not all(self.bind(t, axis - first, rx[1], why) for t in affine):
                return G.fix(rx[1], f"{why} with a computed scale")
            return self.out(ev.out, rx[0], rx[1])
        if name in UNARY or name in ("softmax", "log_softmax"):
            if rx is None:
                return None
            self.out(ev.out, rx[0], rx[1])
            if name in ACTIVATIONS:
                self.acts.append((i, rx[0], rx[1]))
            return None
        if name in BINARY:
            return self.binary(ev, why)
        if name in POOLS:
            if rx is None:
                return None
            if rx[0] < -_pooled_dims(name):
                for t in _tensors(ev.out):
                    if t.is_floating_point():
                        self.out(t, rx[0], rx[1])
                return None
            return G.fix(rx[1], f"{why} across the units")
        if name == "flatten":
            if rx is None:
                return None
            start = int(_arg(ev, 1, "start_dim", 0)) % x.ndim
            end = int(_arg(ev, 2, "end_dim", -1)) % x.ndim
            axis = rx[0] + x.ndim
            if axis < start or axis > end:
                return self.out(ev.out, axis if axis < start else axis - (end - start), rx[1])
            if axis == start:
                inner = math.prod(x.shape[start + 1 : end + 1])
                return self.out(ev.out, start, _scaled(rx[1], inner))
            return G.fix(rx[1], f"{why} with the units inside")
        if name in ("reshape", "view", "unsqueeze", "squeeze"):
            if rx is None:
                return None
            return self.reshape(x, ev.out, rx, why)
        if name == "__getitem__":
            if rx is None:
                return None
            return self.getitem(x, ev, rx, why)
        if name == "pad":
            if rx is None:
                return None
            pad = list(_arg(ev, 1, "pad"))
            mode = _arg(ev, 2, "mode", "constant")
            j = -rx[0] - 1  # pairs run from the last axis backwards
            lo, hi = (pad[2 * j], pad[2 * j + 1]) if 2 * j + 1 < len(pad) else (0, 0)
            if lo == hi == 0:
                return self.out(ev.out, rx[0], rx[1])
            if mode == "constant" and lo >= 0 and hi >= 0:
                # padded units hold one constant, so any order of them is the same
                layout = ([Seg(G.new(lo, PADDING), lo)] if lo else []) + rx[1]
                layout += [Seg(G.new(hi, PADDING), hi)] if hi else []
                return self.out(ev.out, rx[0], layout)
            return G.fix(rx[1], f"{why} ({mode}) across the units")
        if name in ("cat", "concat", "concatenate"):
            return self.cat(ev, why)
        if name in REDUCTIONS:
            if rx is None:
                return None
            dims = _arg(ev, 1, "dim")
            if dims is None or (isinstance(dims, (list, tuple)) and not dims):
                return None  # a full reduction: invariant under any permutation
            dims = sorted(int(d) % x.ndim for d in ([dims] if isinstance(dims, int) else dims))
            axis = rx[0] + x.ndim
            if axis in dims:
                return None  # summing over the units: invariant
            keepdim = bool(_arg(ev, 2, "keepdim", False))
            new_axis = axis if keepdim else axis - sum(1 for d in dims if d < axis)
            first = next(iter(_tensors(ev.out)))
            return self.out(first, new_axis, rx[1])
        if name in ("transpose", "swapaxes", "t", "permute"):
            if rx is None:
                return None
            order = list(range(x.ndim))
            if name == "t":
                order = order[::-1]
            elif name == "permute":
                dims = ev.args[1] if len(ev.args) == 2 else ev.args[1:]
                order = [int(d) % x.ndim for d in (_arg(ev, 1, "dims") if dims == () else dims)]
            else:
                a = int(_arg(ev, 1, "dim0")) % x.ndim
                b = int(_arg(ev, 2, "dim1")) % x.ndim
                order[a], order[b] = order[b], order[a]
            return self.out(ev.out, order.index(rx[0] + x.ndim), rx[1])
        if name in ("split", "chunk", "unbind"):
            if rx is None:
                return None
            dim = int(_arg(ev, 1 if name == "unbind" else 2, "dim", 0)) % x.ndim
            axis = rx[0] + x.ndim
            if dim == axis:
                return G.fix(rx[1], f"{why} across the units")
            for t in _tensors(ev.out):
                self.out(t, axis - (1 if name == "unbind" and dim < axis else 0), rx[1])
            return None
        return self.fix_all(ev, why)

    def binary(self, ev: Event, why: str) -> None:
        G = self.G
        tensors = [t for t in (ev.args[:2] or ()) if isinstance(t, torch.Tensor)]
        other = _arg(ev, 1, "other")
        if isinstance(other, torch.Tensor) and all(other is not t for t in tensors):
            tensors.append(other)
        recs = [(t, self.rec(t)) for t in tensors]
        axes = {r[0] for _t, r in recs if r is not None}
        if not axes:
            return None  # values only (parameters used this way become opaque)
        if len(axes) > 1:
            return self.fix_all(ev, f"{why} of tensors permuted along different axes")
        axis = axes.pop()
        layout: list[Seg] | None = None
        for _t, r in recs:
            if r is not None:
                layout = r[1] if layout is None else G.unify(layout, r[1], why)
        assert layout is not None
        for t, r in recs:
            if r is not None or t.ndim < -axis or t.shape[axis] == 1:
                continue  # broadcast along the units' axis: the same for every unit
            if not self.bind(t, axis + t.ndim, layout, why):
                return G.fix(layout, f"{why} with a computed per-unit tensor")
        return self.out(ev.out, axis, layout)

    def reshape(self, x: torch.Tensor, out: Any, rx: tuple[int, list[Seg]], why: str) -> None:
        old, new = tuple(x.shape), tuple(out.shape)
        axis = rx[0] + x.ndim
        # Leading axes up to and including the units' axis kept: the units stay put.
        for lead in range(len(new)):
            if new[:lead] == old[:axis] and lead < len(new) and new[lead] == old[axis]:
                if math.prod(new[lead + 1 :]) == math.prod(old[axis + 1 :]):
                    return self.out(out, lead, rx[1])
            if new[:lead] == old[:axis] and lead < len(new) and new[lead] % old[axis] == 0:
                inner = new[lead] // old[axis]
                k, merged = axis + 1, 1
                while merged < inner and k < len(old):
                    merged *= old[k]
                    k += 1
                if merged == inner:  # the units' axis merged with the axes after it
                    return self.out(out, lead, _scaled(rx[1], inner))
        return self.G.fix(rx[1], f"{why} that moves the units")

    def getitem(self, x: torch.Tensor, ev: Event, rx: tuple[int, list[Seg]], why: str) -> None:
        axis = rx[0] + x.ndim
        idx = _arg(ev, 1, "idx")
        idx = idx if isinstance(idx, tuple) else (idx,)
        if not all(isinstance(k, (slice, int)) or k is None or k is Ellipsis for k in idx):
            return self.G.fix(rx[1], f"{why} with a tensor index")
        if Ellipsis in idx:
            pos = idx.index(Ellipsis)
            n = x.ndim - sum(1 for k in idx if k is not None and k is not Ellipsis)
            idx = idx[:pos] + (slice(None),) * n + idx[pos + 1 :]
        dim = out_axis = 0
        for k in idx:
            if k is None:
                out_axis += 1
                continue
            if dim == axis:
                if isinstance(k, slice) and k == slice(None):
                    return self.out(ev.out, out_axis, rx[1])
                return self.G.fix(rx[1], f"{why} that selects units")
            out_axis += isinstance(k, slice)
            dim += 1
        return self.out(ev.out, out_axis + (axis - dim), rx[1])

    def cat(self, ev: Event, why: str) -> None:
        seq = list(_arg(ev, 0, "tensors"))
        nd = ev.out.ndim
        dim = int(_arg(ev, 1, "dim", 0)) % nd
        recs = [self.rec(t) for t in seq]
        axes = {r[0] + nd for r in recs if r is not None}
        if not axes:
            return None
        if axes == {dim}:
            layout: list[Seg] = []
            for t, r in zip(seq, recs, strict=True):
                layout += r[1] if r is not None else [Seg(None, int(t.shape[dim]))]
            return self.out(ev.out, dim, layout)
        if len(axes) == 1 and all(r is not None for r in recs):
            merged = recs[0][1]
            for r in recs[1:]:
                merged = self.G.unify(merged, r[1], why)
            return self.out(ev.out, axes.pop(), merged)
        return self.fix_all(ev, why)


PADDING = "padding"
NORM_ARGS = ("running_mean", "running_var", "weight", "bias")


def _scaled(layout: list[Seg], inner: int) -> list[Seg]:
    return [Seg(s.group, s.size, s.inner * inner) for s in layout]


def trace_permutations(
    model: torch.nn.Module, inputs: torch.Tensor, frozen: Iterable[str] = ()
) -> PermutationSpec:
    """The permutation groups of ``model`` from one forward pass on ``inputs`` (two
    samples suffice; the model runs in its current train/eval mode, unchanged).

    See the module docstring for the rules. Everything not understood is fixed, so
    :func:`apply_permutation` with any permutation of the free groups leaves the
    function unchanged (the tests check this in float64 for MLPs, CNNs, ResNets with
    BatchNorm, and models with weight tying, LayerNorm and unknown ops).

    ``frozen`` names parameters whose values must not move (a frozen parameter is no
    coordinate of the point being permuted, so it cannot carry a permutation): every
    group they would follow is fixed, and they are not in the spec's ``params``.
    """
    rec, out = _trace(model, inputs)
    tr = _Tracer(model, frozen)
    tr.run(rec.events)
    G = tr.G
    for t in _tensors(out):  # the model's outputs are what must not change
        r = tr.rec(t)
        if r is not None:
            G.fix(r[1], OUTPUT)
    for name, layout in tr.frozen_bound:  # after the output: that reason comes first
        G.fix(layout, f"frozen parameter '{name}'")

    roots: dict[int, int] = {}

    def runs(layout: list[Seg]) -> Runs:
        out_runs, pos = [], 0
        for s in G.expand(layout):
            grp = -1 if s.group is None else roots.setdefault(s.group, len(roots))
            out_runs.append((pos, s.size, s.inner, grp))
            pos += s.length
        return out_runs

    params: dict[str, dict[int, Runs]] = {}
    buffers: dict[str, dict[int, Runs]] = {}
    for (kind, pname, axis), layout in sorted(tr.bindings.items()):
        if pname in tr.opaque:
            continue
        r = runs(layout)
        if any(g >= 0 for *_rest, g in r):
            (params if kind == "param" else buffers).setdefault(pname, {})[axis] = r
    activations = []
    for i, axis, layout in tr.acts:
        r = runs(layout)
        if any(g >= 0 for *_rest, g in r):
            activations.append((i, axis, r))
    members: dict[int, list[int]] = {}
    for g in range(len(G.parent)):
        if g not in G.split:  # a split group lives on in its parts
            members.setdefault(G.find(g), []).append(g)
    sizes, labels = [0] * len(roots), [""] * len(roots)
    for root, k in roots.items():
        sizes[k] = G.size[root]
        named = [m for m in members[root] if G.origin[m] != PADDING] or members[root]
        labels[k] = G.label(min(named)) + (f" +{len(named) - 1} tied" if len(named) > 1 else "")
    fixed = []
    for root, group in members.items():
        if G.find(root) != root or root in G.split or not G.fixed[root]:
            continue
        named = [m for m in group if G.origin[m] != PADDING]
        if named and G.fixed[root] != OUTPUT:
            fixed.append((G.label(min(named)), G.size[root], G.fixed[root]))
    return PermutationSpec(sizes, labels, params, buffers, activations, fixed)


OUTPUT = "the model's output"


# ------------------------------------------------------------- applying permutations


def identity_permutation(spec: PermutationSpec) -> list[np.ndarray]:
    return [np.arange(n) for n in spec.sizes]


def random_permutation(spec: PermutationSpec, generator: torch.Generator) -> list[np.ndarray]:
    """A uniformly random permutation of every free group."""
    return [torch.randperm(n, generator=generator).numpy() for n in spec.sizes]


def _axis_index(
    length: int, runs: list[tuple[int, int, int, int]], perm: Sequence[np.ndarray], skip: int
) -> np.ndarray | None:
    """Gather index along one axis: new[i] = old[index[i]]; None if nothing moves."""
    idx = np.arange(length)
    moved = False
    for off, size, inner, g in runs:
        if g < 0 or g == skip:
            continue
        p = np.asarray(perm[g])
        block = (p[:, None] * inner + np.arange(inner)[None, :]).reshape(-1) + off
        idx[off : off + size * inner] = block
        moved = True
    return idx if moved else None


def _permute_tensor(
    t: torch.Tensor,
    axes: dict[int, list[tuple[int, int, int, int]]],
    perm: Sequence[np.ndarray],
    skip: tuple[int, int] | None = None,
) -> torch.Tensor:
    for axis, runs in axes.items():
        idx = _axis_index(t.shape[axis], runs, perm, skip[1] if skip and skip[0] == axis else -2)
        if idx is not None:
            t = t.index_select(axis, torch.as_tensor(idx, device=t.device))
    return t


def apply_permutation(
    spec: PermutationSpec,
    perm: Sequence[np.ndarray],
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Permuted copies of ``params`` (and ``buffers``): for every free group g, unit i of
    the result is unit ``perm[g][i]`` of the input (the peer's convention)."""
    out_p = {
        k: (_permute_tensor(v, spec.params[k], perm) if k in spec.params else v.clone())
        for k, v in params.items()
    }
    out_b = {
        k: (_permute_tensor(v, spec.buffers[k], perm) if k in spec.buffers else v.clone())
        for k, v in (buffers or {}).items()
    }
    return out_p, out_b


# ------------------------------------------------------------------ matching


def _unit_rows(t: torch.Tensor, axis: int, off: int, size: int, inner: int) -> torch.Tensor:
    """The ``size`` units of a run as rows (size, everything else)."""
    m = t.movedim(axis, 0)
    m = m[off : off + size * inner].reshape(size, inner, *m.shape[1:])
    return m.reshape(size, -1)


def _lap(C: np.ndarray) -> np.ndarray:
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(C, maximize=True)
    assert np.array_equal(rows, np.arange(len(rows)))
    return cols


def matching_objective(
    spec: PermutationSpec,
    perm: Sequence[np.ndarray],
    params_a: dict[str, torch.Tensor],
    params_b: dict[str, torch.Tensor],
) -> float:
    """⟨θ_A, π(θ_B)⟩ over the permuted parameters (float64): what weight matching
    maximises (equivalently, it minimises ‖θ_A − π(θ_B)‖)."""
    pb, _ = apply_permutation(spec, perm, {k: params_b[k] for k in spec.params})
    return float(sum((params_a[k].double() * pb[k].double()).sum() for k in spec.params))


def weight_matching(
    spec: PermutationSpec,
    params_a: dict[str, torch.Tensor],
    params_b: dict[str, torch.Tensor],
    generator: torch.Generator,
    max_iter: int = 100,
    init: Sequence[np.ndarray] | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> tuple[list[np.ndarray], int]:
    """Git Re-Basin's weight matching (Algorithm 2): coordinate ascent on
    ⟨θ_A, π(θ_B)⟩, one linear assignment per group with the others held, groups in a
    random order per iteration (from ``generator``), until an iteration improves no
    group by more than 1e-12 (relative) or ``max_iter`` iterations. Products are in
    float64. Returns (permutation, iterations)."""
    perm = [np.asarray(p).copy() for p in (init or identity_permutation(spec))]
    A = {k: params_a[k].detach().double() for k in spec.params}
    B = {k: params_b[k].detach().double() for k in spec.params}
    slots = [spec.slots(g) for g in range(spec.n_groups)]
    it = 0
    for it in range(1, max_iter + 1):
        progress = False
        order = torch.randperm(spec.n_groups, generator=generator).tolist()
        for g in order:
            n = spec.sizes[g]
            C = torch.zeros(n, n, dtype=torch.float64)
            for name, axis, off, inner in slots[g]:
                wb = _permute_tensor(B[name], spec.params[name], perm, skip=(axis, g))
                ra = _unit_rows(A[name], axis, off, n, inner)
                rb = _unit_rows(wb, axis, off, n, inner)
                C += (ra @ rb.T).cpu()
            Cn = C.numpy()
            new = _lap(Cn)
            old_v = Cn[np.arange(n), perm[g]].sum()
            new_v = Cn[np.arange(n), new].sum()
            if new_v > old_v + 1e-12 * max(1.0, abs(old_v)):
                progress = True
                perm[g] = new
        if callback is not None:
            callback(it, matching_objective(spec, perm, params_a, params_b))
        if not progress:
            break
    return perm, it


def activation_matching(
    spec: PermutationSpec,
    model_a: torch.nn.Module,
    model_b: torch.nn.Module,
    batches: Iterable[torch.Tensor],
) -> list[np.ndarray]:
    """Git Re-Basin's activation matching (§3.1): per group, the assignment maximising
    Σ_samples Σ_positions a_i·b_j of the post-activation features of both models (the
    peer's E[A Bᵀ]), summed over every activation tensor the group acts on (each
    residual block's output, for a residual stream). A group no activation reaches
    (no nonlinearity acts on its units) keeps the identity. One forward pass per model
    and batch."""
    keep = {i for i, _axis, _runs in spec.activations}
    C = [torch.zeros(n, n, dtype=torch.float64) for n in spec.sizes]
    for xb in batches:
        ra_, _ = _trace(model_a, xb, keep)
        rb_, _ = _trace(model_b, xb, keep)
        for i, axis, runs in spec.activations:
            ta, tb = ra_.outputs[i].double(), rb_.outputs[i].double()
            ax = axis % ta.ndim
            for off, size, inner, g in runs:
                if g < 0:
                    continue
                a = _unit_rows(ta, ax, off, size, inner)
                b = _unit_rows(tb, ax, off, size, inner)
                C[g] += (a @ b.T).cpu()
    reached = {g for _i, _a, runs in spec.activations for *_x, g in runs if g >= 0}
    return [_lap(C[g].numpy()) if g in reached else np.arange(n) for g, n in enumerate(spec.sizes)]


def model_with(
    model: torch.nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]
) -> torch.nn.Module:
    """A deep copy of ``model`` holding ``params`` and ``buffers`` (same dtype/device);
    frozen parameters missing from ``params`` keep their values
    (:func:`~lossatlas.plugins.probes.module_state.module_at`)."""
    return module_at(model, params, buffers)
