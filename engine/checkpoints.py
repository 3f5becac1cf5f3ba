"""Reading what a user hands over: checkpoints (state dicts loaded with
``weights_only=True``, one line for what does not fit) and the numbers a data set gives
(no complex values, integer class labels within n_outputs)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from .components import DataBundle
from .errors import DataError

__all__ = ["check_bundle", "load_checkpoint"]


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``torch.save``, loaded with ``weights_only=True`` (no code runs)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"checkpoint '{p}' does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr
            warnings.simplefilter("ignore")
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "Weights only load failed" in text:
            # torch's message is many lines on how to run the code anyway; only the
            # object it refused is useful here.
            blocked = [ln.strip() for ln in text.splitlines() if "Unsupported" in ln]
            first = blocked[0] if blocked else "it holds objects other than tensors"
            raise DataError(
                f"checkpoint '{p}' holds pickled code or objects, which lossatlas refuses "
                f"to load (weights_only=True; {first}); save a state dict instead: "
                "torch.save(model.state_dict(), path)"
            ) from None
        if (
            "enforce fail" in text
            or isinstance(exc, KeyError | EOFError | ValueError)
            or ("invalid load key" in text or "PytorchStreamReader" in text)
        ):
            raise DataError(
                f"checkpoint '{p}' is not a file written by torch.save; save the weights "
                "with torch.save(model.state_dict(), path)"
            ) from None
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise DataError(f"checkpoint '{p}' cannot be loaded as plain weights: {first}") from None
    # Training scripts often save {"state_dict": ..., "epoch": ...} or {"model": ...}.
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = ", ".join(map(repr, list(obj)[:6])) if isinstance(obj, dict) else type(obj).__name__
        raise DataError(
            f"checkpoint '{p}' is not a state dict of tensors (found {keys}); save "
            "torch.save(model.state_dict(), path)"
        )
    # DataParallel saves 'module.' before every name, torch.compile '_orig_mod.'.
    for prefix in ("module.", "_orig_mod."):
        if obj and all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj


def _state_dict_problem(exc: Exception) -> str:
    """torch's load_state_dict error in one short line: how many names are missing or
    unexpected (the first few of each) and the first shape mismatches."""
    text = str(exc)
    parts = []
    for label, pattern in (("missing", "Missing key(s)"), ("unexpected", "Unexpected key(s)")):
        m = re.search(re.escape(pattern) + r" in state_dict: (.*?)\.\s*(?:\n|$)", text)
        if m:
            names = re.findall(r'"([^"]+)"', m.group(1))
            more = f", … ({len(names)} in all)" if len(names) > 3 else ""
            parts.append(f"{label} {', '.join(names[:3])}{more}")
    sizes = re.findall(
        r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[.*?\])\) "
        r"from checkpoint, the shape in current model is torch\.Size\((\[.*?\])\)",
        text,
    )
    for name, theirs, ours in sizes[:2]:
        parts.append(f"{name} is {theirs} in the checkpoint but {ours} in the model")
    if len(sizes) > 2:
        parts.append(f"{len(sizes) - 2} more shape mismatch(es)")
    if parts:
        return "; ".join(parts)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = "; ".join(lines[1:] or lines)
    return line if len(line) <= 300 else line[:297] + "..."


def check_bundle(bundle: DataBundle, where: str) -> None:
    """Refuse numbers a data set should never hand over: complex or non-numeric inputs,
    class labels outside [0, n_outputs), non-integer labels (one line each)."""
    if bundle.n_outputs < 1:
        raise DataError(f"{where}: n_outputs must be at least 1, got {bundle.n_outputs}")
    for split_name, split in (("train", bundle.train), ("validation", bundle.validation)):
        # a streamed split's inputs stay on disk: their dtype is checked by its source
        x = split.targets if split.streamed else split.inputs
        t = split.targets
        if x.is_complex() or t.is_complex():
            raise DataError(
                f"{where}: the {split_name} split holds complex numbers; lossatlas works on "
                "real inputs and targets (take .real or .abs() yourself if that is meant)"
            )
        if bundle.task != "classification" or len(t) == 0:
            continue
        if t.is_floating_point():
            raise DataError(
                f"{where}: classification targets of the {split_name} split are floats "
                f"({t.dtype}); give integer class indices"
            )
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= bundle.n_outputs:
            bad = lo if lo < 0 else hi
            raise DataError(
                f"{where}: the {split_name} split has class label {bad}, outside [0, "
                f"{bundle.n_outputs}) (n_outputs = {bundle.n_outputs}); relabel the classes "
                "0 … n-1"
            )
