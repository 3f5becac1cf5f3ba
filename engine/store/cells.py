"""Cells of a step: how many are done (one count for every reader: runner, inspect,
plot, the accessor, the report) and where they lie in the arrays — the layout of units
of work that the sweep writes and ``verify --repair`` rewrites, defined once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .layout import STATUS_DONE, STATUS_NONFINITE

__all__ = [
    "CellCounts",
    "array_dims",
    "cell_counts",
    "cell_region",
    "unit_rows",
    "unit_start",
]


@dataclass(frozen=True)
class CellCounts:
    """``done`` cells (computed, NaN/inf included), ``nonfinite`` among them, ``total``."""

    done: int
    nonfinite: int
    total: int

    @property
    def pending(self) -> int:
        return self.total - self.done

    @property
    def complete(self) -> bool:
        return self.done == self.total

    def describe(self) -> str:
        """``12/16`` (``12/16 (2 with NaN/inf)``)."""
        bad = f" ({self.nonfinite} with NaN/inf)" if self.nonfinite else ""
        return f"{self.done}/{self.total}{bad}"


def cell_counts(status: Any) -> CellCounts:
    """The counts of a ``cell_status`` array (numpy, xarray or zarr values)."""
    s = np.asarray(getattr(status, "values", status))
    return CellCounts(
        done=int(np.sum(s >= STATUS_DONE)),
        nonfinite=int(np.sum(s == STATUS_NONFINITE)),
        total=int(s.size),
    )


def array_dims(arr: Any) -> tuple[str, ...]:
    """The dimension names of a stored zarr array (zarr 3 metadata, else xarray's attr)."""
    names = getattr(arr.metadata, "dimension_names", None)
    return tuple(names or arr.attrs.get("_ARRAY_DIMENSIONS", ()) or ())


def unit_rows(status_array: Any, cell_dims: tuple[str, ...]) -> int:
    """How many indices of the last cell dim one unit of work (one chunk) covers: the
    template's ``cell_status`` chunking (1 in stores made before 0.2)."""
    return int(status_array.chunks[-1]) if cell_dims else 1


def unit_start(cell: tuple[int, ...], rows: int) -> tuple[int, ...]:
    """The first cell of the unit of work (chunk) holding ``cell``."""
    if not cell:
        return cell
    return (*cell[:-1], cell[-1] - cell[-1] % rows)


def cell_region(
    dims: tuple[str, ...],
    cell_dims: tuple[str, ...],
    idx: tuple[int, ...],
    stop: int | None = None,
) -> Any:
    """The region of cell ``idx`` in an array of ``dims``; with ``stop``, the cells
    ``idx[-1] … stop − 1`` of the last cell dim (a unit of work)."""
    at: dict[str, Any] = dict(zip(cell_dims, idx, strict=False))
    if stop is not None and cell_dims:
        at[cell_dims[-1]] = slice(idx[-1], stop)
    region = tuple(at[d] if d in at else slice(None) for d in dims)
    return region if region else Ellipsis
