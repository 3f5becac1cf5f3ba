"""MNIST from its IDX files in a local directory (never downloaded).

The IDX format (LeCun et al.): a big-endian header of two zero bytes, a type code
(0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64) and the number of dimensions, then one uint32 size per dimension,
then the values in C order. Files may be gzipped (detected by their magic bytes).
Fashion-MNIST and KMNIST ship in the same format and load the same way.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from lossatlas.engine import DataBundle, DataError, DatasetPlugin, Split

from .arrays import expand_path, subsample
from .digits import split_indices

__all__ = ["IDX_TYPES", "MNIST", "MNISTOptions", "find_file", "normalize", "read_idx"]

#: IDX type code -> big-endian numpy dtype.
IDX_TYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
WHERE_TO_GET = (
    "download the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz from "
    "https://yann.lecun.com/exdb/mnist/ (mirror: "
    "https://ossci-datasets.s3.amazonaws.com/mnist/) into that directory"
)


def read_idx(path: Path) -> np.ndarray:
    """The array in an IDX file (gzipped or not), in native byte order."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read IDX file '{path}': {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DataError(
            f"'{path}' is not an IDX file (its magic number is {raw[:4].hex() or 'missing'}; "
            "an IDX file starts 0000 then a type code such as 08 and the number of dims)"
        )
    dtype = np.dtype(IDX_TYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file '{path}' is truncated in its header")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"IDX file '{path}' declares shape {shape} ({expected} bytes of data) but holds "
            f"{len(raw) - header} bytes; the file is truncated or corrupted"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def find_file(root: Path, stem: str, where: str, hint: str) -> Path:
    """``root/stem`` with or without ``.gz`` (or ``.idx`` spelled with a dot, as some
    mirrors do), also under ``raw/`` and ``MNIST/raw/``; DataError naming it if absent."""
    dirs = [root, root / "raw", root / "MNIST" / "raw"]
    dotted = stem.replace("-idx", ".idx")
    for d in dirs:
        for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
            p = d / name
            if p.is_file():
                return p
    raise DataError(
        f"{where}: file '{stem}' (or '{stem}.gz') not found in {root} (also looked in "
        f"{root / 'raw'} and {root / 'MNIST' / 'raw'}); {hint}"
    )


def normalize(
    train: np.ndarray, others: list[np.ndarray], how: str, scale: float, axes: tuple[int, ...]
) -> tuple[np.ndarray, list[np.ndarray], dict[str, list[float]]]:
    """Scale to 0..1 (``unit``), then optionally standardise (``mean-std``) with the
    training split's mean and std over ``axes`` (per channel: all axes but 1)."""
    if how == "none":
        return train.astype(np.float32), [o.astype(np.float32) for o in others], {}
    tr = train.astype(np.float32) / scale
    rest = [o.astype(np.float32) / scale for o in others]
    if how == "unit":
        return tr, rest, {}
    mean = tr.mean(axis=axes, keepdims=True, dtype=np.float64).astype(np.float32)
    std = tr.std(axis=axes, keepdims=True, dtype=np.float64).astype(np.float32)
    std = np.where(std > 0, std, np.float32(1.0))
    stats = {"mean": mean.ravel().tolist(), "std": std.ravel().tolist()}
    return (tr - mean) / std, [(o - mean) / std for o in rest], stats


@dataclass
class MNISTOptions:
    path: str = field(metadata={"doc": "directory holding the IDX files (gzipped or not)"})
    validation: float = field(
        default=0.0,
        metadata={
            "doc": "0: the official t10k test set is the validation split; in (0, 1): "
            "hold out this fraction of the training set (by seed) instead"
        },
    )
    limit: int = field(
        default=0,
        metadata={"doc": "use a random subset of N training samples, fixed by the seed (0: all)"},
    )
    validation_limit: int = field(
        default=0, metadata={"doc": "use a random subset of N validation samples (0: all)"}
    )
    normalize: Literal["mean-std", "unit", "none"] = field(
        default="mean-std",
        metadata={
            "doc": "mean-std: pixels/255 standardised with the training split's mean "
            "and std; unit: pixels/255 in 0..1; none: raw 0..255"
        },
    )
    flatten: bool = field(
        default=False, metadata={"doc": "inputs (N, 784) instead of images (N, 1, 28, 28)"}
    )

    def validate(self) -> None:
        if not 0 <= self.validation < 1:
            raise ValueError(
                f"option 'validation' must be 0 (the test set) or in (0, 1), got {self.validation}"
            )
        if self.limit < 0 or self.validation_limit < 0:
            raise ValueError("options 'limit' and 'validation_limit' must be ≥ 0")


def _images_and_labels(root: Path, split: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    img_path = find_file(root, FILES[f"{split}_images"], where, WHERE_TO_GET)
    lab_path = find_file(root, FILES[f"{split}_labels"], where, WHERE_TO_GET)
    try:
        images, labels = read_idx(img_path), read_idx(lab_path)
    except DataError as exc:  # read_idx is public and says nothing of which data set
        raise DataError(f"{where}: {exc}") from None
    if images.ndim != 3:
        raise DataError(
            f"{where}: '{img_path}' holds an array of shape {images.shape}; "
            "MNIST images are (N, rows, cols)"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{where}: '{lab_path}' holds labels of shape {labels.shape} for "
            f"{images.shape[0]} images in '{img_path}'"
        )
    return images, labels.astype(np.int64)


class MNIST(DatasetPlugin[MNISTOptions]):
    name = "mnist"
    summary = "MNIST (or Fashion-MNIST) from local IDX files; 28x28 images, 10 classes"
    Options = MNISTOptions

    def load(self, options: MNISTOptions, seed: int) -> DataBundle:
        where = "dataset 'mnist'"
        root = expand_path(options.path)
        if not root.is_dir():
            raise DataError(f"{where}: directory '{root}' not found; {WHERE_TO_GET}")
        x_tr, y_tr = _images_and_labels(root, "train", where)
        if options.validation > 0:
            tr, va = split_indices(len(x_tr), options.validation, seed)
            x_va, y_va = x_tr[va], y_tr[va]
            x_tr, y_tr = x_tr[tr], y_tr[tr]
            val_source = f"{options.validation:g} of train"
        else:
            x_va, y_va = _images_and_labels(root, "test", where)
            val_source = "t10k"
        keep = subsample(len(x_tr), options.limit, seed)
        x_tr, y_tr = x_tr[keep], y_tr[keep]
        keep = subsample(len(x_va), options.validation_limit, seed + 1)
        x_va, y_va = x_va[keep], y_va[keep]
        if x_tr.shape[1:] != x_va.shape[1:]:
            raise DataError(
                f"{where}: training images are {x_tr.shape[1:]} but test images "
                f"are {x_va.shape[1:]}"
            )

        x_tr_f, (x_va_f,), stats = normalize(x_tr, [x_va], options.normalize, 255.0, axes=(0, 1, 2))
        shape = (-1, int(np.prod(x_tr.shape[1:]))) if options.flatten else (-1, 1, *x_tr.shape[1:])
        n_classes = max(10, int(max(y_tr.max(initial=0), y_va.max(initial=0))) + 1)
        return DataBundle(
            train=Split(torch.from_numpy(x_tr_f.reshape(shape)), torch.from_numpy(y_tr)),
            validation=Split(torch.from_numpy(x_va_f.reshape(shape)), torch.from_numpy(y_va)),
            task="classification",
            n_outputs=n_classes,
            description=f"MNIST {len(x_tr)} train / {len(x_va)} validation ({val_source})",
            attrs={
                "source": str(root),
                "split_seed": seed,
                "validation": val_source,
                "normalize": options.normalize,
                **stats,
            },
        )
