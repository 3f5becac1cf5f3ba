"""Splits read batch by batch: data that does not fit in memory.

A :class:`StreamedSplit` is a :class:`~lossatlas.engine.Split` whose inputs stay where
they are — a ``.npy`` file (memory-mapped one batch at a time), a Zarr array, an xarray
variable, a torch ``Dataset`` or ``DataLoader`` — and are read a batch at a time when
the objective evaluates, differentiates or multiplies by the Hessian. The objective
already accumulates every quantity over mini-batches weighted by their size (sums over
samples, divided by the split's size), so a streamed split gives the in-memory result
up to the order of the sums.

The targets are held in memory (one number or vector per sample: 8 bytes a sample for
classes). ``rows`` selects a subset (a train/validation split by seed, or a seeded
``max_samples`` subset, :func:`sample_rows`), read in increasing order.

Code that needs the whole split as one tensor (training, some probes) reads
:attr:`StreamedSplit.inputs`: the split is loaded once and kept, if it fits in the
memory available (half of it); otherwise a :class:`~lossatlas.engine.DataError` says
so and what to do (``max_samples``, or a probe that streams).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .components import Split
from .errors import DataError

__all__ = [
    "STREAM_BATCH_BYTES",
    "ArrayRows",
    "DatasetRows",
    "LoaderRows",
    "NpyFile",
    "StreamedSplit",
    "sample_rows",
]

#: Bytes of inputs one streamed batch holds when the run sets no ``batch_size``.
STREAM_BATCH_BYTES = 64 * 2**20


def sample_rows(n: int, max_samples: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``max_samples`` of ``n`` rows (all
    rows when ``max_samples`` is 0 or ≥ n): Li et al.'s fixed subset for big data."""
    if max_samples <= 0 or max_samples >= n:
        return np.arange(n)
    rng = np.random.default_rng([seed, 0x5A3B1E])
    return np.sort(rng.choice(n, size=max_samples, replace=False))


class NpyFile:
    """A ``.npy`` file read a window at a time: each read maps only the rows it needs
    (``numpy.memmap`` with an offset), so neither memory nor address space grows with
    the file. C order only (numpy's default)."""

    def __init__(self, path: str | os.PathLike[str], where: str = "data") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{where}: file '{self.path}' not found")
        try:
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                reader = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = reader(f)
                self.offset = f.tell()
        except (OSError, ValueError) as exc:
            raise DataError(f"{where}: '{self.path}' is not a .npy file ({exc})") from None
        if fortran and len(shape) > 1:
            raise DataError(
                f"{where}: '{self.path}' is stored in Fortran order; save it in C order "
                "(numpy.save(path, numpy.ascontiguousarray(a)))"
            )
        if dtype.hasobject:
            raise DataError(f"{where}: '{self.path}' holds Python objects, not numbers")
        if not shape:
            raise DataError(f"{where}: '{self.path}' holds a scalar, not one row per sample")
        self.shape: tuple[int, ...] = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        """A copy of the given sorted rows, mapping only the range they span."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.zeros((0, *self.shape[1:]), self.dtype)
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        window = np.memmap(
            self.path,
            dtype=self.dtype,
            mode="r",
            offset=self.offset + lo * self.row_bytes,
            shape=(hi - lo, *self.shape[1:]),
        )
        try:
            if hi - lo == rows.size:
                return np.array(window)
            return window[rows - lo]
        finally:
            del window

    def load(self) -> np.ndarray:
        return np.load(self.path, mmap_mode="r")[...]


class ArrayRows:
    """Rows of an array-like that reads by index: a :class:`NpyFile`, a Zarr array, an
    xarray ``DataArray`` (rows along its first dim), or a numpy array."""

    def __init__(self, array: Any, description: str = "") -> None:
        self.array = array
        self.description = description
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, rows: np.ndarray) -> np.ndarray:
        a = self.array
        rows = np.asarray(rows, dtype=np.int64)
        if isinstance(a, NpyFile | np.ndarray):
            return np.asarray(a[rows])
        if hasattr(a, "isel") and hasattr(a, "dims"):  # xarray
            return np.asarray(a.isel({a.dims[0]: rows}).values)
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        if hi - lo == rows.size:
            return np.asarray(a[lo:hi])
        if hasattr(a, "get_orthogonal_selection"):  # zarr
            return np.asarray(a.get_orthogonal_selection((rows,)))
        return np.asarray(a[lo:hi])[rows - lo]


class DatasetRows:
    """Rows of a map-style torch ``Dataset`` (``dataset[i]`` gives (input, target)),
    collated with torch's ``default_collate``."""

    def __init__(self, dataset: Any, description: str = "") -> None:
        self.dataset = dataset
        self.description = description
        first = dataset[0]
        if not isinstance(first, tuple | list) or len(first) < 2:
            raise DataError(
                f"{description or 'the dataset'}: dataset[i] must give (input, target), got "
                f"{type(first).__name__}"
            )
        x = torch.as_tensor(first[0])
        self.shape = (len(dataset), *x.shape)
        self.dtype = np.dtype(str(x.dtype).removeprefix("torch."))

    def __len__(self) -> int:
        return len(self.dataset)

    def pairs(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        from torch.utils.data import default_collate

        batch = default_collate([tuple(self.dataset[int(i)])[:2] for i in rows])
        return torch.as_tensor(batch[0]), torch.as_tensor(batch[1])

    def read(self, rows: np.ndarray) -> torch.Tensor:
        return self.pairs(rows)[0]


class LoaderRows:
    """A torch ``DataLoader`` read in its own order and batches (its workers, its
    collate); it must not shuffle, so that every pass sees the same samples."""

    def __init__(self, loader: Any, description: str = "") -> None:
        from torch.utils.data import SequentialSampler

        sampler = getattr(loader, "sampler", None)
        if getattr(loader, "batch_sampler", None) is not None and not isinstance(
            sampler, SequentialSampler
        ):
            raise DataError(
                f"{description or 'the DataLoader'}: it shuffles (or samples) its data; "
                "every pass over a split must see the same samples: give "
                "DataLoader(..., shuffle=False) or the Dataset itself"
            )
        self.loader = loader
        self.description = description
        self.dataset = loader.dataset
        self._n = len(loader.dataset)
        x, _ = next(iter(loader))[:2]
        x = torch.as_tensor(x)
        self.shape = (self._n, *x.shape[1:])
        self.dtype = np.dtype(str(x.dtype).removeprefix("torch."))

    def __len__(self) -> int:
        return self._n

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            yield torch.as_tensor(batch[0]), torch.as_tensor(batch[1])


class StreamedSplit(Split):
    """A :class:`Split` read batch by batch from ``source`` (see the module docstring).

    ``targets``: the targets of the selected rows, in memory (for a torch data set
    without them, :func:`collect_targets` reads them in one pass). ``rows``: the
    selected rows of the source in increasing order (None: all). ``batch_size``:
    samples per read (0: :data:`STREAM_BATCH_BYTES` of inputs)."""

    def __init__(
        self,
        source: ArrayRows | DatasetRows | LoaderRows,
        targets: torch.Tensor,
        rows: np.ndarray | None = None,
        batch_size: int = 0,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.source = source
        self.rows = np.arange(len(source)) if rows is None else np.asarray(rows, np.int64)
        if isinstance(source, LoaderRows) and len(self.rows) != len(source):
            raise DataError("a DataLoader is read whole; select rows on its Dataset instead")
        self.targets = targets
        if len(targets) != len(self.rows):
            raise DataError(
                f"{source.description or 'streamed data'}: {len(targets)} targets for "
                f"{len(self.rows)} samples"
            )
        per = max(1, int(np.prod(source.shape[1:], dtype=np.int64)) * 4)
        self.batch_size = int(batch_size) or max(1, STREAM_BATCH_BYTES // per)
        self.device = torch.device(device)
        self.dtype = dtype
        self.transform = transform
        self._inputs: torch.Tensor | None = None

    # ------------------------------------------------------------------ shape

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.source.shape[1:])

    @property
    def streamed(self) -> bool:
        return True

    def __repr__(self) -> str:
        what = self.source.description or type(self.source).__name__
        return f"StreamedSplit({what}, {len(self)} samples, batches of {self.batch_size})"

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def batch_bytes(self) -> int:
        """Bytes of one batch of inputs as the objective holds it (float32)."""
        return self.batch_size * int(np.prod(self.sample_shape, dtype=np.int64)) * 4

    def to(self, device: torch.device | str, dtype: torch.dtype) -> StreamedSplit:
        """The same split, its batches delivered on ``device`` in ``dtype``."""
        out = StreamedSplit(
            self.source,
            self._targets_to(device, dtype),
            self.rows,
            self.batch_size,
            device=device,
            dtype=dtype,
            transform=self.transform,
        )
        out._inputs = self._inputs
        return out

    def _targets_to(self, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
        t = self.targets
        return t.to(device, dtype) if t.is_floating_point() else t.to(device)

    # ---------------------------------------------------------------- reading

    def _deliver(self, x: Any) -> torch.Tensor:
        t = torch.as_tensor(x)
        if self.transform is not None:
            t = self.transform(t)
        return t.to(self.device, self.dtype or torch.float32)

    def head(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` samples (inputs, targets), for shape checks."""
        n = min(n, len(self))
        if isinstance(self.source, LoaderRows):
            xs, got = [], 0
            for x, _ in self.source.batches():
                xs.append(x)
                got += len(x)
                if got >= n:
                    break
            return self._deliver(torch.cat(xs)[:n]), self.targets[:n]
        return self._deliver(self.source.read(self.rows[:n])), self.targets[:n]

    def batches(self, size: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(inputs, targets) of consecutive batches covering the split once, in order."""
        if isinstance(self.source, LoaderRows):
            start = 0
            for x, _ in self.source.batches():
                k = len(x)
                yield self._deliver(x), self.targets[start : start + k]
                start += k
            return
        size = int(size or self.batch_size)
        for i in range(0, len(self.rows), size):
            rows = self.rows[i : i + size]
            yield self._deliver(self.source.read(rows)), self.targets[i : i + size]

    @property
    def inputs(self) -> torch.Tensor:  # type: ignore[override]
        """The whole split as one tensor: loaded once and kept, if it fits in half the
        memory available; else a DataError (a probe that needs the data in memory)."""
        if self._inputs is None:
            need = len(self) * int(np.prod(self.sample_shape, dtype=np.int64)) * 4
            avail = _available_memory()
            if avail is not None and need > avail // 2:
                raise DataError(
                    f"{self.source.description or 'a streamed data set'}: this step needs "
                    f"the whole split in memory ({need / 2**30:.1f} GiB as float32) but "
                    f"only {avail / 2**30:.1f} GiB are available; use a seeded subset "
                    "(the data set's max_samples option), or a probe that streams "
                    "(maps, lines, eigenpairs, traces)"
                )
            parts = [x for x, _ in self.batches()]
            self._inputs = torch.cat(parts) if parts else torch.zeros(0, *self.sample_shape)
        return self._inputs

    @inputs.setter
    def inputs(self, value: torch.Tensor) -> None:
        self._inputs = value


def _available_memory() -> int | None:
    from .sizes import available_memory

    return available_memory()
