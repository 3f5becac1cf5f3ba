"""What a step will cost, from its options alone: :class:`Estimate` (a probe's
``estimate`` returns one; the engine refuses a step over the machine's limits before
anything is written) and :func:`grid_estimate` for sweeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .components import StepContext

__all__ = ["Estimate", "grid_estimate", "human_bytes"]


@dataclass
class Estimate:
    """What a step will cost, from its options alone (before anything is allocated).

    ``cells``: cells of the sweep; ``points``: loss evaluations at parameter points
    (each a pass over the data), None if not known; ``hvps``: Hessian-vector products,
    None if not known; ``store_bytes``: the size of the result in the store
    (uncompressed); ``cell_bytes``: peak memory of one cell (rough: the cell's values,
    the points evaluated together and the data); ``drivers``: the options that make it
    large (named in a refusal, so the user knows what to lower).
    """

    cells: int
    store_bytes: int
    cell_bytes: int | None = None
    points: int | None = None
    hvps: int | None = None
    drivers: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"{self.cells:,} cell(s)"]
        if self.points is not None:
            parts.append(f"{self.points:,} loss evaluations")
        if self.hvps is not None:
            parts.append(f"{self.hvps:,} Hessian-vector products")
        parts.append(f"{human_bytes(self.store_bytes)} in the store")
        if self.cell_bytes is not None:
            parts.append(f"~{human_bytes(self.cell_bytes)} of memory per cell")
        return ", ".join(parts)


def grid_estimate(
    ctx: StepContext,
    cells: int,
    values_per_cell: int,
    *,
    points_per_cell: int = 0,
    hvps: int | None = None,
    cell_bytes: int = 0,
    drivers: tuple[str, ...] = (),
) -> Estimate:
    """An :class:`Estimate` for a sweep of ``cells`` cells, each storing
    ``values_per_cell`` numbers (8 bytes each) and evaluating the loss at
    ``points_per_cell`` parameter points (held together: points × D numbers), plus
    ``cell_bytes`` of the probe's own per-cell memory (a basis, a Hessian ...)."""
    D = int(ctx.objective.D)
    item = torch.finfo(ctx.dtype).bits // 8
    data = ctx.data
    data_bytes = sum(
        int(s.batch_bytes()) if s.streamed else int(s.inputs.numel()) * s.inputs.element_size()
        for s in (data.train, data.validation)
    )
    cells = int(cells)
    return Estimate(
        cells=cells,
        store_bytes=cells * int(values_per_cell) * 8,
        cell_bytes=int(values_per_cell) * 8
        + int(points_per_cell) * D * item
        + int(cell_bytes)
        + data_bytes,
        points=cells * int(points_per_cell) if points_per_cell else None,
        hvps=None if hvps is None else int(hvps),
        drivers=drivers,
    )


def human_bytes(n: float) -> str:
    """``1536`` → ``1.5 KiB``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover
