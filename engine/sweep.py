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

__all__ = ["CellJob", "StepRuntime", "cell_seed"]


def cell_seed(run_seed: int, step: str, coords: dict[str, Any]) -> int:
    """The seed of a cell: a function of the run seed, step name and coordinates only."""
    return derive_seed(run_seed, step, coords)


def _dims(arr: zarr.Array) -> tuple[str, ...]:
    names = getattr(arr.metadata, "dimension_names", None)
    if names is None:
        names = arr.attrs.get("_ARRAY_DIMENSIONS", ())
    return tuple(names or ())


class StepRuntime:
    """A step's context, its store group and its cell layout, ready to run cells."""

    def __init__(self, ctx: StepContext, store: Store) -> None:
        self.ctx = ctx
        self.store = store
        self.group = store.open_arrays(ctx.config.name, ctx.step.name)
        self.cell_dims: tuple[str, ...] = tuple(self.group.attrs["cell_dims"])
        self.coords = {d: np.asarray(self.group[d][:]) for d in self.cell_dims}
        self.variables: dict[str, tuple[tuple[str, ...], bool]] = {}
        skip = {*self.group.attrs.get("static_vars", []), *self.group.attrs.get("summary_vars", [])}
        for name, arr in self.group.arrays():
            if name == STATUS_VAR or name in skip:
                continue
            dims = _dims(arr)
            if all(d in dims for d in self.cell_dims) and "finite" in arr.attrs:
                self.variables[name] = (dims, bool(arr.attrs.get("finite", 1)))

    def cell(self, index: tuple[int, ...]) -> Cell:
        idx = dict(zip(self.cell_dims, (int(i) for i in index), strict=True))
        coords = {d: self.coords[d][i].item() for d, i in idx.items()}
        return Cell(
            index=idx, coords=coords, seed=cell_seed(self.ctx.seed, self.ctx.step.name, coords)
        )

    def run_cell(self, index: tuple[int, ...]) -> int:
        """Compute the cell at ``index``, write it, and return its status."""
        cell = self.cell(index)
        probe = self.ctx.probe
        where = ", ".join(f"{d}={v}" for d, v in cell.coords.items()) or "the only cell"
        with blame(f"step '{self.ctx.step.name}': probe '{probe.name}' in cell {where}"):
            values = probe.compute(self.ctx.options, self.ctx, cell)
        missing = set(self.variables) - set(values)
        extra = set(values) - set(self.variables)
        if missing or extra:
            raise PluginError(
                f"probe '{probe.name}' returned variables {sorted(values)} for a cell but "
                f"planned {sorted(self.variables)} (a bug in the probe)"
            )
        status = STATUS_DONE
        for name, value in values.items():
            dims, finite = self.variables[name]
            arr = self.group[name]
            region = tuple(cell.index[d] if d in cell.index else slice(None) for d in dims)
            inner = tuple(arr.shape[k] for k, d in enumerate(dims) if d not in cell.index)
            value = np.asarray(_to_numpy(value), dtype=arr.dtype)
            if value.shape != inner:
                try:
                    value = np.broadcast_to(value, inner)
                except ValueError:
                    raise PluginError(
                        f"probe '{probe.name}': variable '{name}' has shape {value.shape} in a "
                        f"cell; planned {inner} (a bug in the probe)"
                    ) from None
            if finite and value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                status = STATUS_NONFINITE
            arr[region] = value
        if self.cell_dims:
            self.group[STATUS_VAR][tuple(cell.index[d] for d in self.cell_dims)] = status
        else:
            self.group[STATUS_VAR][...] = status
        return status


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
