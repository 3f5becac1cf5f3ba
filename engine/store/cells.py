"""How many cells of a step are done: one count for every reader (runner, inspect,
plot, the accessor, the report) from the step's ``cell_status`` array."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .layout import STATUS_DONE, STATUS_NONFINITE

__all__ = ["CellCounts", "cell_counts"]


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
