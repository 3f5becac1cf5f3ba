"""Data sets that stream: read batch by batch, never held whole (issue 15).

- ``on-disk``: inputs in a ``.npy`` file (memory-mapped one batch at a time), a Zarr
  array (``store.zarr:array``) or a variable of any file xarray opens
  (``data.nc:variable``; Zarr groups too); targets from the same kinds of files, held
  in memory;
- ``torch-dataset``: a torch ``Dataset`` (map-style) or a ``DataLoader`` that does not
  shuffle, made by a function given by import path.

Both take ``max_samples``: a seeded random subset of each split (Li et al. evaluate big
data sets on a fixed subset), and hold out a ``validation`` fraction by seed when no
validation data are named. The objective accumulates every loss, gradient and HVP over
the batches weighted by their size (:mod:`lossatlas.engine.streaming`), so the numbers
are those of the whole split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from lossatlas.engine import (
    ArrayRows,
    DataBundle,
    DataError,
    DatasetPlugin,
    DatasetRows,
    LoaderRows,
    NpyFile,
    StreamedSplit,
    sample_rows,
)

from .arrays import MAX_CLASSES, TaskOption, expand_path, infer_task
from .digits import split_indices
from .importpath import call_with, check_import_path, load_object, source_files

__all__ = ["OnDisk", "OnDiskOptions", "TorchDataset", "TorchDatasetOptions", "open_array"]


def open_array(spec: str, where: str) -> Any:
    """An array read lazily from ``spec``: ``x.npy`` (a :class:`NpyFile`),
    ``store.zarr:name`` (a Zarr array), or ``file:variable`` (an xarray variable)."""
    path_text, _, name = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    path = expand_path(path_text)
    if not path.exists():
        raise DataError(f"{where}: '{path}' does not exist")
    if path.suffix == ".npy":
        if name:
            raise DataError(f"{where}: a .npy file holds one array; drop ':{name}'")
        return NpyFile(path, where)
    if not name:
        raise DataError(
            f"{where}: name the array inside '{path.name}' as '{path.name}:NAME' "
            "(a Zarr array's path, or a variable xarray can open)"
        )
    if path.suffix == ".zarr" or (path / "zarr.json").exists() or (path / ".zarray").exists():
        import zarr

        try:
            node = zarr.open(str(path), mode="r", path=name)
        except Exception as exc:
            raise DataError(f"{where}: no Zarr array '{name}' in '{path}' ({exc})") from None
        if not hasattr(node, "shape"):
            raise DataError(f"{where}: '{name}' in '{path}' is a group, not an array")
        return node
    import xarray as xr

    try:
        ds = xr.open_dataset(str(path), chunks=None)
    except Exception as exc:
        raise DataError(f"{where}: xarray cannot open '{path}' ({exc})") from None
    if name not in ds:
        have = ", ".join(map(str, ds.data_vars)) or "none"
        raise DataError(f"{where}: '{path}' has no variable '{name}' (it has: {have})")
    return ds[name]


def _in_memory(array: Any) -> np.ndarray:
    if isinstance(array, NpyFile):
        return array.load()
    return np.asarray(array[...] if not hasattr(array, "values") else array.values)


def _targets(y: np.ndarray, task: str, where: str) -> torch.Tensor:
    if task == "classification":
        y = y.reshape(len(y), -1)[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
        if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
            raise DataError(f"{where}: classification targets must be one integer per sample")
        if y.size and (y.min() < 0 or y.max() >= MAX_CLASSES):
            raise DataError(f"{where}: class labels must lie in 0 … {MAX_CLASSES - 1}")
        return torch.as_tensor(y.astype(np.int64))
    yf = y.astype(np.float32)
    if not np.all(np.isfinite(yf)):
        raise DataError(f"{where}: regression targets contain NaN or infinite values")
    return torch.as_tensor(yf.reshape(len(yf), -1))


def _bundle(
    train: StreamedSplit,
    validation: StreamedSplit,
    task: str,
    n_outputs: int,
    description: str,
    attrs: dict[str, Any],
) -> DataBundle:
    if task == "classification" and not n_outputs:
        n_outputs = int(max(int(train.targets.max()), int(validation.targets.max()))) + 1
    elif not n_outputs:
        n_outputs = int(np.prod(train.targets.shape[1:]))
    return DataBundle(
        train=train,
        validation=validation,
        task=task,  # type: ignore[arg-type]
        n_outputs=n_outputs,
        description=description,
        attrs={**attrs, "streamed": 1, "stream_batch": train.batch_size},
    )


def _split_rows(n: int, validation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    tr, va = split_indices(n, validation, seed)
    return tr, va


@dataclass
class OnDiskOptions:
    inputs: str = field(
        metadata={"doc": "x.npy, store.zarr:ARRAY, or FILE:VARIABLE (xarray); rows = samples"}
    )
    targets: str = field(metadata={"doc": "the targets, in the same forms (read into memory)"})
    validation_inputs: str = field(
        default="", metadata={"doc": "validation inputs (empty: hold out a fraction)"}
    )
    validation_targets: str = field(default="", metadata={"doc": "validation targets"})
    validation: float = field(
        default=0.2, metadata={"doc": "fraction held out by seed when no validation is named"}
    )
    task: TaskOption = field(
        default="auto", metadata={"doc": "classification, regression, or auto (by dtype)"}
    )
    n_outputs: int = field(default=0, metadata={"doc": "classes or outputs (0: from targets)"})
    max_samples: int = field(
        default=0,
        metadata={"doc": "a seeded random subset of N samples per split (0: all)"},
    )
    scale: float = field(default=1.0, metadata={"doc": "inputs are multiplied by it (1/255 …)"})

    def validate(self) -> None:
        if bool(self.validation_inputs) != bool(self.validation_targets):
            raise ValueError("options 'validation_inputs' and 'validation_targets' go together")
        if not self.validation_inputs and not 0 < self.validation < 1:
            raise ValueError(f"option 'validation' must be in (0, 1), got {self.validation}")
        if self.max_samples < 0 or self.n_outputs < 0:
            raise ValueError("options 'max_samples' and 'n_outputs' must be ≥ 0")


class OnDisk(DatasetPlugin):
    name = "on-disk"
    summary = "arrays on disk (.npy memory-mapped, Zarr, xarray), streamed batch by batch"
    Options = OnDiskOptions

    def load(self, options: OnDiskOptions, seed: int) -> DataBundle:
        where = "dataset 'on-disk'"
        x = open_array(options.inputs, f"{where}: inputs")
        y = _in_memory(open_array(options.targets, f"{where}: targets"))
        if len(y) != x.shape[0]:
            raise DataError(
                f"{where}: {x.shape[0]} input rows but {len(y)} targets; one target per row"
            )
        if np.dtype(x.dtype).kind not in "biuf":
            raise DataError(f"{where}: inputs of dtype {x.dtype} are not real numbers")
        task = infer_task(y) if options.task == "auto" else options.task
        scale = float(options.scale)
        transform = (lambda t: t.float() * scale) if scale != 1.0 else (lambda t: t.float())
        if options.validation_inputs:
            xv = open_array(options.validation_inputs, f"{where}: validation inputs")
            yv = _in_memory(open_array(options.validation_targets, f"{where}: validation targets"))
            if len(yv) != xv.shape[0] or tuple(xv.shape[1:]) != tuple(x.shape[1:]):
                raise DataError(f"{where}: validation inputs and targets do not fit the train data")
            tr, va = np.arange(len(y)), np.arange(len(yv))
            sources = (ArrayRows(x, options.inputs), ArrayRows(xv, options.validation_inputs))
            ys = (y, yv)
        else:
            tr, va = _split_rows(len(y), options.validation, seed)
            sources = (ArrayRows(x, options.inputs), ArrayRows(x, options.inputs))
            ys = (y, y)
        splits = []
        for src, rows, yy, k in zip(sources, (tr, va), ys, (0, 1), strict=True):
            keep = rows[sample_rows(len(rows), options.max_samples, seed + k)]
            t = _targets(np.asarray(yy)[keep], task, where)
            splits.append(StreamedSplit(src, t, keep, transform=transform))
        return _bundle(
            splits[0],
            splits[1],
            task,
            options.n_outputs,
            Path(options.inputs).name,
            {
                "inputs": options.inputs,
                "targets": options.targets,
                "max_samples": options.max_samples,
                "split_seed": seed,
            },
        )


@dataclass
class TorchDatasetOptions:
    function: str = field(
        metadata={
            "doc": "import path 'package.module:function' returning a torch Dataset or a "
            "DataLoader (no shuffling), or a (train, validation) pair of them"
        }
    )
    kwargs: dict[str, Any] = field(default_factory=dict, metadata={"doc": "its keyword arguments"})
    search_path: list[str] = field(
        default_factory=list, metadata={"doc": "directories to import from first"}
    )
    validation: float = field(
        default=0.2, metadata={"doc": "fraction held out by seed from a single Dataset"}
    )
    task: Literal["classification", "regression"] = field(
        default="classification", metadata={"doc": "classification or regression"}
    )
    n_outputs: int = field(default=0, metadata={"doc": "classes or outputs (0: from targets)"})
    max_samples: int = field(
        default=0,
        metadata={"doc": "a seeded random subset of N samples per split (0: all)"},
    )

    def validate(self) -> None:
        check_import_path(self.function, "function")
        if not 0 < self.validation < 1:
            raise ValueError(f"option 'validation' must be in (0, 1), got {self.validation}")
        if self.max_samples < 0 or self.n_outputs < 0:
            raise ValueError("options 'max_samples' and 'n_outputs' must be ≥ 0")


def _all_targets(source: DatasetRows | LoaderRows, rows: np.ndarray) -> np.ndarray:
    """The targets of ``rows``: the data set's ``targets`` attribute when it has one (as
    torchvision's do), else one pass over the data (its cost is one epoch's reading)."""
    ds = source.dataset
    own = getattr(ds, "targets", None)
    if own is not None and len(own) == len(ds):
        return np.asarray(torch.as_tensor(own))[rows]
    if isinstance(source, LoaderRows):
        return np.concatenate([np.asarray(t) for _, t in source.batches()])
    out = []
    for i in range(0, len(rows), 1024):
        out.append(np.asarray(source.pairs(rows[i : i + 1024])[1]))
    return np.concatenate(out) if out else np.zeros(0)


class TorchDataset(DatasetPlugin):
    name = "torch-dataset"
    summary = "a torch Dataset or DataLoader by import path, streamed batch by batch"
    Options = TorchDatasetOptions

    def load(self, options: TorchDatasetOptions, seed: int) -> DataBundle:
        from torch.utils.data import DataLoader, Subset

        where = "dataset 'torch-dataset'"
        fn = load_object(options.function, where, options.search_path)
        made = call_with(fn, options.function, where, dict(options.kwargs), {"seed": seed})
        pair = isinstance(made, tuple | list) and len(made) == 2
        objs = list(made) if pair else [made]
        for obj in objs:
            if not hasattr(obj, "__getitem__") and not isinstance(obj, DataLoader):
                raise DataError(
                    f"{where}: '{options.function}' returned a {type(obj).__name__}; return "
                    "a torch Dataset, a DataLoader or a (train, validation) pair of them"
                )

        def source(obj: Any, rows: np.ndarray | None, label: str) -> tuple[Any, np.ndarray]:
            if isinstance(obj, DataLoader):
                if rows is not None and len(rows) != len(obj.dataset):
                    sub = Subset(obj.dataset, [int(i) for i in rows])
                    obj = DataLoader(
                        sub,
                        batch_size=obj.batch_size,
                        num_workers=obj.num_workers,
                        collate_fn=obj.collate_fn,
                    )
                src = LoaderRows(obj, f"{where}: {label}")
                return src, np.arange(len(src))
            src = DatasetRows(obj, f"{where}: {label}")
            return src, np.arange(len(src)) if rows is None else rows

        if pair:
            base = [
                (objs[0], np.arange(len(_dataset(objs[0])))),
                (objs[1], np.arange(len(_dataset(objs[1])))),
            ]
        else:
            n = len(_dataset(objs[0]))
            tr, va = _split_rows(n, options.validation, seed)
            base = [(objs[0], tr), (objs[0], va)]
        splits = []
        for k, ((obj, rows), label) in enumerate(zip(base, ("train", "validation"), strict=True)):
            keep = rows[sample_rows(len(rows), options.max_samples, seed + k)]
            src, local = source(obj, keep, label)
            ds_rows = keep if isinstance(src, DatasetRows) else local
            if isinstance(src, LoaderRows):
                y = _all_targets(src, np.arange(len(src)))
            else:
                y = _all_targets(src, ds_rows)
            t = _targets(np.asarray(y), options.task, where)
            splits.append(
                StreamedSplit(
                    src,
                    t,
                    ds_rows if isinstance(src, DatasetRows) else None,
                    getattr(obj, "batch_size", 0) or 0,
                )
            )
        return _bundle(
            splits[0],
            splits[1],
            options.task,
            options.n_outputs,
            options.function,
            {"function": options.function, "max_samples": options.max_samples, "split_seed": seed},
        )

    def sources(self, options: TorchDatasetOptions) -> list[str]:
        return source_files(options.function, "dataset 'torch-dataset'", options.search_path)


def _dataset(obj: Any) -> Any:
    return getattr(obj, "dataset", obj) if hasattr(obj, "batch_size") else obj
