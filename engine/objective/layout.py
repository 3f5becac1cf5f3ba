"""The layout of a model's parameters in the flat vector x ∈ R^D.

Parameters are laid out as ``model.named_parameters()`` lists them: each tensor once,
under the first name that reaches it, so a module applied twice or a weight tied
between two layers is one block of x (changing it changes every use, as in the
module). Frozen parameters (``requires_grad=False``) are left out by default — they
are constants of the objective, not coordinates of the landscape — and kept when
``include_frozen=True``; :attr:`ParamLayout.frozen` names what was left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

__all__ = ["ParamEntry", "ParamLayout", "tensor_aliases"]


def tensor_aliases(
    model: torch.nn.Module, named: Iterable[tuple[str, torch.Tensor]]
) -> dict[str, list[str]]:
    """First name -> the other *slots* that hold the same tensor.

    ``named`` lists tensors with duplicates (``named_parameters(remove_duplicate=
    False)``). A slot is a (module object, attribute) pair: a module applied twice is
    one slot reached by two names (nothing to add), a weight tied between two modules
    is two slots. ``torch.func.functional_call`` must be given every slot of a tensor
    once — a slot given twice is restored in the wrong order and the module is left
    holding the substituted tensor (torch 2.x) — so the objective passes each
    parameter under its first name and its aliases here, with ``tie_weights=False``.
    """
    first: dict[int, str] = {}
    slots: dict[int, set[tuple[int, str]]] = {}
    out: dict[str, list[str]] = {}
    for name, t in named:
        prefix, _, leaf = name.rpartition(".")
        owner = model.get_submodule(prefix) if prefix else model
        slot = (id(owner), leaf)
        key = id(t)
        if key not in first:
            first[key] = name
            slots[key] = {slot}
            continue
        if slot in slots[key]:
            continue
        slots[key].add(slot)
        out.setdefault(first[key], []).append(name)
    return out


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
    """The layout of a model's parameters in the flat vector x ∈ R^D.

    - :attr:`entries`: one :class:`ParamEntry` per parameter tensor in x, in the order
      of ``named_parameters()`` (deduplicated: a shared tensor once, under its first
      name);
    - :attr:`tied`: first name -> the other names of a tensor shared by several
      modules (tied weights, a module applied twice);
    - :attr:`aliases`: first name -> the other module slots of a tied tensor (what a
      ``functional_call`` must also be given; see :func:`tensor_aliases`);
    - :attr:`frozen`: the names of frozen parameters left out of x (empty with
      ``include_frozen=True``), :attr:`frozen_size` their number of entries.
    """

    def __init__(self, model: torch.nn.Module, include_frozen: bool = False) -> None:
        entries = []
        start = 0
        module_index: dict[str, int] = {}
        self.include_frozen = bool(include_frozen)
        self.frozen: list[str] = []
        self.frozen_size = 0
        first_name: dict[int, str] = {}
        self.tied: dict[str, list[str]] = {}
        for name, p in model.named_parameters(remove_duplicate=False):
            first = first_name.setdefault(id(p), name)
            if first != name:
                self.tied.setdefault(first, []).append(name)
        self.aliases = tensor_aliases(model, model.named_parameters(remove_duplicate=False))
        for name, p in model.named_parameters():
            if not p.requires_grad and not include_frozen:
                self.frozen.append(name)
                self.frozen_size += p.numel()
                continue
            module = name.rsplit(".", 1)[0] if "." in name else ""
            layer = module_index.setdefault(module, len(module_index))
            leaf = name.rsplit(".", 1)[-1]
            if p.ndim >= 2:
                kind = "weight"
                fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(p)
            elif leaf == "bias":
                kind, fan_in, fan_out = "bias", 0, int(p.shape[0]) if p.ndim else 1
            else:
                kind, fan_in, fan_out = "norm", 0, int(p.shape[0]) if p.ndim else 1
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

    def describe(self) -> str:
        """One line: D, and what was left out or shared (for attrs and messages)."""
        text = f"D={self.D:,} over {len(self.entries)} parameter tensor(s)"
        if self.frozen:
            text += (
                f"; {len(self.frozen)} frozen tensor(s) ({self.frozen_size:,} entries) "
                f"excluded: {', '.join(self.frozen[:4])}{', …' if len(self.frozen) > 4 else ''}"
            )
        elif self.include_frozen:
            text += "; frozen parameters included"
        if self.tied:
            pairs = [f"{k} = {', '.join(v)}" for k, v in self.tied.items()]
            text += f"; shared tensors counted once: {'; '.join(pairs[:4])}"
        return text

    def unflatten(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``x`` (shape (..., D)) as the model's parameter tensors."""
        lead = x.shape[:-1]
        return {e.name: x[..., e.start : e.stop].reshape(*lead, *e.shape) for e in self.entries}

    def bind(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``tensors`` with every tied tensor also under its aliases (for
        ``functional_call(..., tie_weights=False)``)."""
        out = dict(tensors)
        for name, others in self.aliases.items():
            if name in out:
                for other in others:
                    out[other] = out[name]
        return out

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The flat vector of the tensors named by the entries (other names ignored)."""
        if not self.entries:
            return torch.zeros(0)
        return torch.cat([tensors[e.name].reshape(-1) for e in self.entries])

    def vector(self, model: torch.nn.Module) -> torch.Tensor:
        """The flat parameters of ``model`` (a module of the same architecture), detached.

        Read by name from ``named_parameters()``, so tied weights and frozen
        parameters are handled exactly as in this layout.
        """
        params = dict(model.named_parameters())
        missing = [e.name for e in self.entries if e.name not in params]
        if missing:
            raise KeyError(f"the model has no parameter {missing[0]!r}")
        return self.flatten({k: v.detach() for k, v in params.items()})

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
