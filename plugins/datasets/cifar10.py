"""CIFAR-10 from its python pickle batches in a local directory (never downloaded).

The batches (``data_batch_1`` … ``data_batch_5``, ``test_batch``) are pickled dicts
with ``b"data"`` (uint8, (N, 3072): 1024 red, then green, then blue values of a 32×32
image, row-major) and ``b"labels"`` (a list of N ints in 0..9). They are read with
:class:`SafeUnpickler`, which only rebuilds numpy arrays and dtypes: a pickle that
refers to anything else (a function, a class of some other module) is refused with a
:class:`DataError` before anything in it runs.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from lossatlas.engine import DataBundle, DataError, DatasetPlugin, Split

from .arrays import expand_path, subsample
from .digits import split_indices
from .mnist import normalize

__all__ = ["CIFAR10", "CIFAR10Options", "SafeUnpickler", "read_batch"]

WHERE_TO_GET = (
    "download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and extract it "
    "there (tar xzf cifar-10-python.tar.gz makes cifar-10-batches-py/)"
)
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds only numpy arrays, dtypes and scalars.

    Everything else a pickle may name (``os.system``, ``builtins.eval``, any class)
    raises :class:`pickle.UnpicklingError`, so a crafted file cannot run code.
    """

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol ≤ 2
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"it refers to '{module}.{name}', which a CIFAR-10 batch never does"
        )


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) of one pickled batch."""
    try:
        with open(path, "rb") as fh:
            obj = SafeUnpickler(fh, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DataError(
            f"refusing to load '{path}': {exc}; is it a genuine CIFAR-10 python batch?"
        ) from None
    except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(
            f"cannot read CIFAR-10 batch '{path}': {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"'{path}' holds a {type(obj).__name__}, not a CIFAR-10 batch dict")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(
            f"'{path}' lacks the b'data' array or the b'labels' list of a CIFAR-10 batch"
        )
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"'{path}': b'data' is {data.dtype} of shape {data.shape}; a "
            "CIFAR-10 batch holds uint8 of shape (N, 3072)"
        )
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"'{path}': b'labels' are not integers: {exc}") from None
    if y.shape != (data.shape[0],):
        raise DataError(f"'{path}': {y.shape} labels for {data.shape[0]} images")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"'{path}': labels must be in 0..9, found {int(y.min())}..{int(y.max())}")
    return data.reshape(-1, 3, 32, 32), y


def batch_dir(root: Path) -> Path:
    """``root/cifar-10-batches-py`` if it exists, else ``root`` itself."""
    sub = root / "cifar-10-batches-py"
    return sub if sub.is_dir() else root


@dataclass
class CIFAR10Options:
    path: str = field(
        metadata={"doc": "directory holding cifar-10-batches-py/ (or the batches themselves)"}
    )
    validation: float = field(
        default=0.0,
        metadata={
            "doc": "0: test_batch is the validation split; in (0, 1): hold out this "
            "fraction of the training batches (by seed) instead"
        },
    )
    limit: int = field(
        default=0,
        metadata={"doc": "use a random subset of N training samples, fixed by the seed (0: all)"},
    )
    validation_limit: int = field(
        default=0, metadata={"doc": "use a random subset of N validation samples (0: all)"}
    )
    batches: list[int] = field(
        default_factory=lambda: [1, 2, 3, 4, 5],
        metadata={"doc": "which data_batch_N files make the training set"},
    )
    normalize: Literal["mean-std", "unit", "none"] = field(
        default="mean-std",
        metadata={
            "doc": "mean-std: pixels/255 standardised per channel with the training "
            "split's mean and std; unit: 0..1; none: raw 0..255"
        },
    )

    def validate(self) -> None:
        if not 0 <= self.validation < 1:
            raise ValueError(
                f"option 'validation' must be 0 (test_batch) or in (0, 1), got {self.validation}"
            )
        if self.limit < 0 or self.validation_limit < 0:
            raise ValueError("options 'limit' and 'validation_limit' must be ≥ 0")
        if not self.batches or any(b not in range(1, 6) for b in self.batches):
            raise ValueError(f"option 'batches' must list numbers in 1..5, got {self.batches}")


class CIFAR10(DatasetPlugin[CIFAR10Options]):
    name = "cifar10"
    summary = "CIFAR-10 from the local python batches; (N, 3, 32, 32) images, 10 classes"
    Options = CIFAR10Options

    def load(self, options: CIFAR10Options, seed: int) -> DataBundle:
        where = "dataset 'cifar10'"
        root = expand_path(options.path)
        if not root.is_dir():
            raise DataError(f"{where}: directory '{root}' not found; {WHERE_TO_GET}")
        d = batch_dir(root)

        def read(name: str) -> tuple[np.ndarray, np.ndarray]:
            p = d / name
            if not p.is_file():
                raise DataError(f"{where}: file '{name}' not found in {d}; {WHERE_TO_GET}")
            try:
                return read_batch(p)
            except DataError as exc:
                raise DataError(f"{where}: {exc}") from None

        parts = [read(f"data_batch_{i}") for i in options.batches]
        x_tr = np.concatenate([p[0] for p in parts])
        y_tr = np.concatenate([p[1] for p in parts])
        if options.validation > 0:
            tr, va = split_indices(len(x_tr), options.validation, seed)
            x_va, y_va, x_tr, y_tr = x_tr[va], y_tr[va], x_tr[tr], y_tr[tr]
            val_source = f"{options.validation:g} of train"
        else:
            x_va, y_va = read(TEST_BATCH)
            val_source = TEST_BATCH
        keep = subsample(len(x_tr), options.limit, seed)
        x_tr, y_tr = x_tr[keep], y_tr[keep]
        keep = subsample(len(x_va), options.validation_limit, seed + 1)
        x_va, y_va = x_va[keep], y_va[keep]

        x_tr_f, (x_va_f,), stats = normalize(x_tr, [x_va], options.normalize, 255.0, axes=(0, 2, 3))
        return DataBundle(
            train=Split(torch.from_numpy(x_tr_f), torch.from_numpy(y_tr)),
            validation=Split(torch.from_numpy(x_va_f), torch.from_numpy(y_va)),
            task="classification",
            n_outputs=10,
            description=f"CIFAR-10 {len(x_tr)} train / {len(x_va)} validation ({val_source})",
            attrs={
                "source": str(d),
                "split_seed": seed,
                "validation": val_source,
                "normalize": options.normalize,
                **stats,
            },
        )
