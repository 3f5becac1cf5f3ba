"""The user's own data from a ``.npz`` or ``.pt`` file (data set ``tensors``).

A ``.npz`` file is read with ``numpy.load(allow_pickle=False)``; a ``.pt``/``.pth``
file must hold a dict of tensors (or arrays) and is read with
``torch.load(path, weights_only=True)``, so neither can run code. The arrays are
selected by name; the task is inferred from the targets' dtype unless given.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lossatlas.engine import DataBundle, DataError, DatasetPlugin

from .arrays import TaskOption, bundle_from_arrays, expand_path

__all__ = ["Tensors", "TensorsOptions", "read_arrays"]

SUFFIXES = (".npz", ".pt", ".pth")
HOW_TO_MAKE = (
    "write it with numpy.savez(path, x=inputs, y=targets) or "
    "torch.save({'x': inputs, 'y': targets}, path)"
)


def read_arrays(path: Path, where: str) -> dict[str, Any]:
    """The named arrays of a ``.npz`` or ``.pt`` file, or a DataError that says why not."""
    if path.suffix not in SUFFIXES:
        raise DataError(
            f"{where}: file '{path}' has suffix '{path.suffix}'; use a .npz file "
            f"(numpy.savez) or a .pt file holding a dict of tensors (torch.save)"
        )
    if not path.is_file():
        raise DataError(f"{where}: file '{path.name}' not found (looked for {path}); {HOW_TO_MAKE}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise DataError(f"{where}: cannot read '{path}' as a .npz file: {exc}") from None
    import pickle

    import torch

    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{where}: cannot read '{path}' with torch.load(weights_only=True): {first}"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(
            f"{where}: '{path}' holds a {type(obj).__name__}, not a dict of tensors; {HOW_TO_MAKE}"
        )
    return {str(k): v for k, v in obj.items()}


@dataclass
class TensorsOptions:
    path: str = field(metadata={"doc": "the .npz or .pt file (~ is expanded)"})
    inputs: str = field(default="x", metadata={"doc": "name of the inputs array"})
    targets: str = field(default="y", metadata={"doc": "name of the targets array"})
    validation_inputs: str = field(
        default="",
        metadata={
            "doc": 'name of an array of validation inputs (e.g. "x_test"); empty: '
            "hold out a fraction of the samples instead"
        },
    )
    validation_targets: str = field(
        default="", metadata={"doc": "name of the validation targets array"}
    )
    validation: float = field(
        default=0.2,
        metadata={
            "doc": "fraction held out for validation, fixed by the seed (when no "
            "validation arrays are named)"
        },
    )
    task: TaskOption = field(
        default="auto",
        metadata={
            "doc": "classification (integer targets, n classes = max+1), regression, "
            "or auto: inferred from the targets' dtype"
        },
    )
    limit: int = field(
        default=0,
        metadata={"doc": "use a random subset of N training samples, fixed by the seed (0: all)"},
    )

    def validate(self) -> None:
        if bool(self.validation_inputs) != bool(self.validation_targets):
            raise ValueError(
                "options 'validation_inputs' and 'validation_targets' must be given together"
            )
        if not self.validation_inputs and not 0 < self.validation < 1:
            raise ValueError(f"option 'validation' must be in (0, 1), got {self.validation}")
        if self.limit < 0:
            raise ValueError(f"option 'limit' must be ≥ 0, got {self.limit}")


class Tensors(DatasetPlugin[TensorsOptions]):
    name = "tensors"
    summary = "your own arrays from a .npz or .pt file (inputs/targets by name)"
    Options = TensorsOptions

    def load(self, options: TensorsOptions, seed: int) -> DataBundle:
        where = "dataset 'tensors'"
        path = expand_path(options.path)
        arrays = read_arrays(path, where)
        names = [options.inputs, options.targets]
        if options.validation_inputs:
            names += [options.validation_inputs, options.validation_targets]
        for n in names:
            if n not in arrays:
                have = ", ".join(sorted(arrays)) or "none"
                raise DataError(
                    f"{where}: '{path}' has no array named '{n}' (it has: {have}); set the "
                    "options inputs/targets (and validation_inputs/validation_targets)"
                )
        val = (
            (arrays[options.validation_inputs], arrays[options.validation_targets])
            if options.validation_inputs
            else (None, None)
        )
        bundle = bundle_from_arrays(
            arrays[options.inputs],
            arrays[options.targets],
            *val,
            task=options.task,
            validation=options.validation,
            seed=seed,
            limit=options.limit,
            source=f"{where} from {path}",
            description=path.name,
        )
        bundle.attrs.update(path=str(path), arrays=names)
        return bundle
