"""Cells of a sweep: computing one and writing it into its region of the store.

A :class:`CellJob` is what an executor runs. It holds only strings (store path, config
JSON, step name), so it pickles to any Dask worker; the worker rebuilds the step's
context from them once and caches it. Writing a cell is idempotent: its values go to
chunks only it owns, then its ``cell_status`` is set.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from .components import Cell
from .config import RunConfig, parse_config
from .context import StepContext, blame, derive_seed
from .errors import PluginError
from .registry import Registry
from .store import STATUS_DONE, STATUS_NONFINITE, STATUS_VAR, Store
from .store.cells import array_dims, cell_region, unit_rows, unit_start

__all__ = ["CellJob", "StepRuntime", "cell_seed", "rows_per_cell"]


def cell_seed(run_seed: int, step: str, coords: dict[str, Any]) -> int:
    """The seed of a cell: a function of the run seed, step name and coordinates only."""
    return derive_seed(run_seed, step, coords)


#: Work (multiply-adds: points × D × samples) a unit of work should hold at least, so
#: that the store's cost per unit (its chunk writes, ≈ 1 ms per variable here) stays
#: under ~5 % of it. From benchmarks/bench_e2e.py on a 2-core CPU: the batched MLP
#: evaluation runs ≈ 65 G multiply-adds/s, a unit's writes cost 3–7 ms.
UNIT_WORK_CPU = 8e9
#: The same on a GPU, where the work runs ~50× faster and the writes do not.
UNIT_WORK_CUDA = 4e11
#: A unit holds at most this many times the minimum (a killed unit loses seconds).
UNIT_WORK_MAX = 50
#: Points the batched evaluator should see together (where the memory allows).
UNIT_POINTS = 256
#: Units a step keeps at least, where it has that many cells (work for parallel workers).
MIN_UNITS = 4


def rows_per_cell(
    ctx: StepContext,
    estimate: Any,
    cell_shape: tuple[int, ...],
    requested: int = 0,
) -> int:
    """How many indices of the last cell dim one unit of work covers (chunk and task).

    ``requested`` > 0 is taken as given (the config's ``rows_per_cell``). Otherwise a
    rule on the step's :class:`Estimate` — never a timing, so a run and its resumption,
    or two machines, agree — for probes that declare ``blockable``: enough rows that a
    unit holds :data:`UNIT_WORK_CPU` multiply-adds (points × D × samples; the points
    are evaluated on both splits) and the batched evaluator sees :data:`UNIT_POINTS`
    points; at most :data:`UNIT_WORK_MAX` times that work, the points of half the
    objective's memory budget (built as float64), and a quarter of the step's cells.
    Probes that do not declare ``blockable``, or give no point count, get 1 (one chunk
    per cell, as before 0.2). The numbers never depend on it: each cell keeps its seed.
    """
    if not cell_shape:
        return 1
    n_last = int(cell_shape[-1])
    if requested and requested > 0:
        return max(1, min(int(requested), n_last))
    probe = ctx.probe
    if not getattr(probe, "blockable", False) or estimate is None:
        return 1
    points, cells = getattr(estimate, "points", None), int(getattr(estimate, "cells", 0) or 0)
    if not points or cells <= 0:
        return 1
    per_cell = max(1.0, points / cells)
    obj = ctx.objective
    samples = len(ctx.data.train) + len(ctx.data.validation)
    work = per_cell * obj.D * samples
    target = UNIT_WORK_CUDA if ctx.device.type == "cuda" else UNIT_WORK_CPU
    rows = max(int(np.ceil(target / max(work, 1.0))), int(np.ceil(UNIT_POINTS / per_cell)))
    total = int(np.prod(cell_shape))
    cap = min(
        n_last,
        max(1, int(UNIT_WORK_MAX * target // max(work, 1.0))),
        max(1, int(obj.memory_budget // 2 // max(1, int(per_cell * obj.D * 8)))),
        max(1, -(-total // MIN_UNITS)),
    )
    return max(1, min(rows, cap))


class StepRuntime:
    """A step's context, its store group and its cell layout, ready to run cells.

    A unit of work covers ``rows`` consecutive indices of the last cell dim (the
    template's chunking, :meth:`Store.rows_per_cell`; 1 in stores made before 0.2):
    its cells are computed together (:meth:`Probe.compute_block`), each variable is
    written as one chunk, then the unit's ``cell_status`` chunk. Cells keep their own
    seeds, so the numbers do not depend on how many share a unit."""

    def __init__(self, ctx: StepContext, store: Store) -> None:
        self.ctx = ctx
        self.store = store
        self.group = store.open_arrays(ctx.config.name, ctx.step.name)
        self.cell_dims: tuple[str, ...] = tuple(self.group.attrs["cell_dims"])
        self.coords = {d: np.asarray(self.group[d][:]) for d in self.cell_dims}
        self.status_array = self.group[STATUS_VAR]
        self.rows = unit_rows(self.status_array, self.cell_dims)
        self.variables: dict[str, tuple[tuple[str, ...], bool]] = {}
        self.arrays: dict[str, zarr.Array] = {}
        skip = {*self.group.attrs.get("static_vars", []), *self.group.attrs.get("summary_vars", [])}
        for name, arr in self.group.arrays():
            if name == STATUS_VAR or name in skip:
                continue
            dims = array_dims(arr)
            if all(d in dims for d in self.cell_dims) and "finite" in arr.attrs:
                self.variables[name] = (dims, bool(arr.attrs.get("finite", 1)))
                self.arrays[name] = arr

    def cell(self, index: tuple[int, ...]) -> Cell:
        idx = dict(zip(self.cell_dims, (int(i) for i in index), strict=True))
        coords = {d: self.coords[d][i].item() for d, i in idx.items()}
        return Cell(
            index=idx, coords=coords, seed=cell_seed(self.ctx.seed, self.ctx.step.name, coords)
        )

    # ------------------------------------------------------------ units of work

    def unit_of(self, index: tuple[int, ...]) -> tuple[int, ...]:
        """The unit of work holding the cell at ``index``: its first cell's index."""
        return unit_start(tuple(int(i) for i in index), self.rows)

    def unit_cells(self, unit: tuple[int, ...]) -> list[tuple[int, ...]]:
        """The cell indices of the unit of work starting at ``unit``."""
        if not self.cell_dims:
            return [()]
        n = len(self.coords[self.cell_dims[-1]])
        start = int(unit[-1])
        return [(*unit[:-1], i) for i in range(start, min(n, start + self.rows))]

    def units(self, cells: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """The units of work holding ``cells`` (each once, in the order first met)."""
        return list(dict.fromkeys(self.unit_of(c) for c in cells))

    def run_cell(self, index: tuple[int, ...]) -> int:
        """Compute the unit of work holding the cell at ``index``, write it, and return
        its status (the worst of its cells': nonfinite over done)."""
        cells = [self.cell(i) for i in self.unit_cells(self.unit_of(index))]
        probe = self.ctx.probe
        first, last = cells[0], cells[-1]
        where = ", ".join(f"{d}={v}" for d, v in first.coords.items()) or "the only cell"
        if len(cells) > 1:
            d = self.cell_dims[-1]
            where += f" … {d}={last.coords[d]}"
        with blame(f"step '{self.ctx.step.name}': probe '{probe.name}' in cell {where}"):
            if len(cells) == 1:
                results = [probe.compute(self.ctx.options, self.ctx, first)]
            else:
                results = list(probe.compute_block(self.ctx.options, self.ctx, cells))
        if len(results) != len(cells):
            raise PluginError(
                f"probe '{probe.name}': compute_block returned {len(results)} results for "
                f"{len(cells)} cells (a bug in the probe)"
            )
        statuses = np.full(len(cells), STATUS_DONE, dtype="uint8")
        stacked: dict[str, list[np.ndarray]] = {name: [] for name in self.variables}
        for k, values in enumerate(results):
            missing = set(self.variables) - set(values)
            extra = set(values) - set(self.variables)
            if missing or extra:
                raise PluginError(
                    f"probe '{probe.name}' returned variables {sorted(values)} for a cell but "
                    f"planned {sorted(self.variables)} (a bug in the probe)"
                )
            for name, value in values.items():
                dims, finite = self.variables[name]
                arr = self.arrays[name]
                inner = tuple(arr.shape[j] for j, d in enumerate(dims) if d not in self.cell_dims)
                value = np.asarray(_to_numpy(value), dtype=arr.dtype)
                if value.shape != inner:
                    try:
                        value = np.broadcast_to(value, inner)
                    except ValueError:
                        raise PluginError(
                            f"probe '{probe.name}': variable '{name}' has shape {value.shape} "
                            f"in a cell; planned {inner} (a bug in the probe)"
                        ) from None
                if finite and value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                    statuses[k] = STATUS_NONFINITE
                stacked[name].append(value)
        writes = []
        for name, parts in stacked.items():
            dims, _ = self.variables[name]
            writes.append(self._unit_write(name, dims, first, len(cells), parts))
        self.store.write_regions(writes)
        # The status last, in a write of its own: it never reaches the disk before the
        # data it vouches for.
        if self.cell_dims:
            region = self._status_region(first, len(cells))
            self.status_array[region] = statuses
        else:
            self.status_array[...] = statuses[0]
        return int(statuses.max())

    def _status_region(self, first: Cell, n: int) -> tuple[Any, ...]:
        return self._region(self.cell_dims, first, n)

    def _region(self, dims: tuple[str, ...], first: Cell, n: int) -> Any:
        """The region of the ``n`` cells from ``first`` on in an array of ``dims``."""
        start = tuple(first.index[d] for d in self.cell_dims)
        return cell_region(dims, self.cell_dims, start, start[-1] + n)

    def _unit_write(
        self,
        name: str,
        dims: tuple[str, ...],
        first: Cell,
        n: int,
        parts: list[np.ndarray],
    ) -> tuple[zarr.Array, Any, np.ndarray]:
        """(array, region, values) writing a unit's cells of one variable as one block."""
        arr = self.arrays[name]
        if not self.cell_dims:
            return arr, Ellipsis, parts[0]
        last = self.cell_dims[-1]
        region = self._region(dims, first, n)
        # Each part has the variable's non-cell dims in order; the unit's axis goes where
        # the last cell dim sits among the dims that stay in the region.
        kept = [d for d in dims if d not in self.cell_dims or d == last]
        block = np.stack(parts, axis=kept.index(last))
        return arr, region, block


def _to_numpy(value: Any) -> Any:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


_RUNTIMES: dict[tuple[str, str, str], StepRuntime] = {}
_REGISTRIES: dict[str, Registry] = {}
_LOCK = threading.Lock()


def _registry(spec: str) -> Registry:
    """The registry a job's ``plugins`` spec describes, built once per process."""
    if spec not in _REGISTRIES:
        from .plugin_transport import registry_from_spec

        _REGISTRIES[spec] = registry_from_spec(spec)
    return _REGISTRIES[spec]


@dataclass(frozen=True)
class CellJob:
    """A picklable handle that computes and writes cells of one step.

    ``plugins`` says how a worker rebuilds the driver's registry
    (:meth:`Registry.worker_spec`: the in-process plugins by import path or by value);
    empty for the default registry of installed plugins.
    """

    store_path: str
    config_json: str
    step: str
    plugins: str = ""

    def key(self) -> tuple[str, str, str]:
        return (self.store_path, self.config_json, self.step)

    def runtime(self) -> StepRuntime:
        with _LOCK:
            rt = _RUNTIMES.get(self.key())
            if rt is None:
                data = json.loads(self.config_json)
                config = parse_config(data["config"], source=data["source"])
                store = Store(self.store_path)
                ctx = StepContext(_registry(self.plugins), config, config.step(self.step), store)
                rt = StepRuntime(ctx, store)
                _RUNTIMES[self.key()] = rt
            return rt

    def __call__(self, index: tuple[int, ...]) -> int:
        return self.runtime().run_cell(index)

    @staticmethod
    def make(
        store: Store, config: RunConfig, step: str, registry: Registry | None = None
    ) -> CellJob:
        payload = json.dumps({"config": config.to_dict(), "source": config.source}, sort_keys=True)
        plugins = registry.worker_spec() if registry is not None else ""
        # An absolute path: a worker may run in another directory.
        return CellJob(str(store.path.absolute()), payload, step, plugins)

    def install(self, runtime: StepRuntime) -> None:
        """Give this process's cache a runtime built already (the driver's own)."""
        with _LOCK:
            _RUNTIMES[self.key()] = runtime

    def forget(self) -> None:
        with _LOCK:
            _RUNTIMES.pop(self.key(), None)
