"""The Zarr store: one group per run, one sub-group per step, resumable cell by cell.

Layout::

    STORE/                      root attrs: {"lossatlas_store": 1}
      RUN/                      attrs: config (JSON), provenance, status
        STEP/                   an xarray Dataset: variables, coords, ``cell_status``
                                attrs: probe, options, provenance, status
    .STORE.lossatlas/           beside the store, never inside it (Zarr would warn
      leases/RUN.lease          about files it does not know): the run leases
      scratch/RUN/STEP/CELL/    and the probes' scratch space per cell

Each variable is chunked one cell per chunk along the cell dims, so every cell owns its
chunks (no two writers share one) and a cell written twice is harmless.
``cell_status`` (uint8 over the cell dims) is written after the cell's values:
0 = not run, 1 = done, 2 = done but some value is NaN or inf. A cell killed mid-write
keeps status 0 and is recomputed (its chunks overwritten) on resume.

Arrays carry a crc32c checksum after their compression, so a chunk changed on disk is an
error wherever it is read (``lossatlas verify`` finds every such chunk).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from ..errors import PluginError, StoreError
from .attrs import _encoded_fill_attrs, _fill, _jsonable_attrs, _same, compressors
from .cf import CONVENTIONS, cf_attrs

if TYPE_CHECKING:
    import xarray as xr

    from ..components import Plan

__all__ = [
    "MARKER",
    "STATUS_DONE",
    "STATUS_NONFINITE",
    "STATUS_PENDING",
    "STATUS_VAR",
    "Store",
]

STATUS_PENDING, STATUS_DONE, STATUS_NONFINITE = 0, 1, 2
MARKER = "lossatlas_store"
STATUS_VAR = "cell_status"
#: the tail of zarr's temporary file names (LocalStore writes NAME.<uuid hex>.partial)
_PARTIAL = re.compile(r".+\.[0-9a-f]{32}\.partial")


STATUS_ATTRS = {
    "long_name": "cell status",
    "units": "1",
    "description": "0 = not run, 1 = done, 2 = done with NaN or inf values",
    "flag_values": [STATUS_PENDING, STATUS_DONE, STATUS_NONFINITE],
    "flag_meanings": "not_run done done_with_nonfinite_values",
}


class Store:
    """A lossatlas Zarr store on the local file system: the one place that knows the
    layout, the statuses, the leases and the scratch space (runner, CLI, report and
    accessor ask it instead of reading Zarr themselves)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ------------------------------------------------------------- opening

    @property
    def sidecar(self) -> Path:
        """The folder beside the store for leases and scratch space (never inside it)."""
        p = self.path.absolute()
        return p.parent / f".{p.name}.lossatlas"

    def exists(self) -> bool:
        return self.path.exists()

    def check_writable(self) -> None:
        """Refuse a foreign or read-only store, or one that cannot be created (nothing written)."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise StoreError(f"store '{p}' is a file, not a Zarr store; choose another --store")
        if p.exists() and any(p.iterdir()):
            self._check_ours()
            if not os.access(p, os.W_OK):
                raise StoreError(f"store '{p}' is read-only; choose a writable --store")
            return
        parent = p.parent if not p.exists() else p
        if not parent.exists():
            raise StoreError(f"store '{p}': folder '{parent}' does not exist")
        if not os.access(parent, os.W_OK):
            raise StoreError(f"store '{p}' cannot be created: '{parent}' is read-only")

    def _check_ours(self) -> None:
        p = self.path
        meta = p / "zarr.json"
        meta2 = p / ".zgroup"
        if not meta.exists() and not meta2.exists():
            raise StoreError(
                f"'{p}' is not empty and is not a Zarr store; lossatlas will not write into "
                "it; choose another --store"
            )
        try:
            root = zarr.open_group(str(p), mode="r")
            attrs = dict(root.attrs)
        except Exception as exc:
            raise StoreError(f"store '{p}' is corrupted or unreadable ({exc})") from None
        if attrs.get(MARKER) != 1:
            raise StoreError(
                f"'{p}' is a Zarr store that lossatlas did not make; it will not write into "
                "it; choose another --store"
            )
        # Runs, steps and variables: their metadata must parse (a few small files).
        for depth in ("*", "*/*", "*/*/*"):
            for meta in p.glob(f"{depth}/zarr.json"):
                try:
                    json.loads(meta.read_bytes())
                except (OSError, ValueError) as exc:
                    raise StoreError(
                        f"store '{p}' is corrupted: '{meta.relative_to(p)}' is not valid "
                        f"metadata ({type(exc).__name__}); restore it or use another --store"
                    ) from None

    def open_for_reading(self) -> zarr.Group:
        if not self.path.exists():
            raise StoreError(f"store '{self.path}' does not exist")
        self._check_ours()
        # Not the consolidated view: it may lag behind a run that is writing right now.
        return zarr.open_group(str(self.path), mode="r", use_consolidated=False)

    def root(self) -> zarr.Group:
        """The root group, created (with its marker) if needed."""
        if not (self.path / "zarr.json").exists() and not (self.path / ".zgroup").exists():
            self.path.mkdir(parents=True, exist_ok=True)
            # One write: a kill cannot leave a root without its marker.
            return zarr.open_group(
                str(self.path), mode="a", attributes={MARKER: 1}, use_consolidated=False
            )
        return zarr.open_group(str(self.path), mode="a", use_consolidated=False)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive lock for metadata changes (runs sharing a store take turns).

        The lock is taken on the store's directory itself (``flock``), so the store
        holds no file that Zarr does not know.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def consolidate(self) -> None:
        """Rewrite the root's consolidated metadata (under the lock)."""
        with self.lock():
            zarr.consolidate_metadata(str(self.path))

    # ---------------------------------------------------------------- runs

    def runs(self) -> list[str]:
        root = self.open_for_reading()
        return sorted(name for name, _ in root.groups())

    def steps(self, run: str) -> list[str]:
        root = self.open_for_reading()
        if run not in root:
            return []
        return sorted(name for name, _ in root[run].groups())

    def has_run(self, run: str) -> bool:
        return self.exists() and (self.path / run / "zarr.json").exists()

    def run_attrs(self, run: str) -> dict[str, Any]:
        root = self.open_for_reading()
        if run not in root:
            raise StoreError(f"store '{self.path}' has no run '{run}'")
        return dict(root[run].attrs)

    def ensure_run(self, run: str, attrs: dict[str, Any]) -> dict[str, Any] | None:
        """Create the run group with ``attrs`` or return the existing group's attrs."""
        with self.lock():
            root = self.root()
            if run in root:
                return dict(root[run].attrs)
            root.create_group(run, attributes=attrs)  # one write, attrs included
            zarr.consolidate_metadata(str(self.path))
        return None

    def set_run_attrs(self, run: str, attrs: dict[str, Any], consolidate: bool = True) -> None:
        # Consolidated too: xr.open_datatree reads the consolidated metadata, and a run
        # that failed must not show "running" there. ``consolidate=False`` where another
        # change follows at once and consolidates (each consolidation reads the metadata
        # of the whole store: its cost grows with the store, not with the work).
        with self.lock():
            zarr.open_group(str(self.path), path=run, mode="r+").attrs.update(attrs)
            if consolidate:
                zarr.consolidate_metadata(str(self.path))

    def remove_leftovers(self, run: str) -> list[Path]:
        """Delete the temporary files of writes killed midway (zarr writes
        ``NAME.<uuid>.partial`` and renames it): at the root, whose metadata is only
        written under the lock, and in this run's folder, which only this run writes.
        Left in place, every later open warns about them."""
        removed: list[Path] = []
        if not self.path.is_dir():
            return removed
        with self.lock():
            candidates = list(self.path.glob("*.partial"))
            if (self.path / run).is_dir():
                candidates += (self.path / run).rglob("*.partial")
            for f in candidates:
                if _PARTIAL.fullmatch(f.name) and f.is_file():
                    f.unlink(missing_ok=True)
                    removed.append(f)
            tmp = self.sidecar / "tmp"
            if tmp.is_dir():  # templates of a killed run that were never moved in
                for d in tmp.glob(f"{run}--*"):
                    shutil.rmtree(d, ignore_errors=True)
        return removed

    def remove(self, run: str, step: str | None = None) -> None:
        """Delete a run (or one of its steps), its scratch space and its lease file;
        the consolidated metadata is rewritten to match."""
        target = self.path / run if step is None else self.path / run / step
        if not (target / "zarr.json").exists():
            what = f"run '{run}'" if step is None else f"step '{step}' of run '{run}'"
            raise StoreError(f"store '{self.path}' has no {what}")
        with self.lock():
            self._discard(target)
            zarr.consolidate_metadata(str(self.path))
        scratch = self.sidecar / "scratch" / run
        shutil.rmtree(scratch if step is None else scratch / step, ignore_errors=True)
        if step is None:
            (self.sidecar / "leases" / f"{run}.lease").unlink(missing_ok=True)

    def _discard(self, folder: Path) -> None:
        """Remove ``folder`` so that no reader ever sees half of it: it is renamed out of
        the store first (one atomic step), then deleted."""
        if not folder.exists():
            return
        trash = self.sidecar / "trash" / uuid.uuid4().hex
        trash.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(folder, trash)
        except OSError:  # another file system: delete in place
            shutil.rmtree(folder, ignore_errors=True)
            return
        shutil.rmtree(trash, ignore_errors=True)

    # --------------------------------------------------------------- steps

    def group_path(self, run: str, step: str) -> str:
        return f"{run}/{step}"

    def step_group(self, run: str, step: str, mode: str = "r") -> zarr.Group | None:
        path = self.path / run / step
        if not path.exists():
            return None
        try:
            return zarr.open_group(str(self.path), path=f"{run}/{step}", mode=mode)
        except Exception as exc:
            if (path / "zarr.json").exists() or (path / ".zgroup").exists():
                raise StoreError(
                    f"store '{self.path}': step '{step}' of run '{run}' is corrupted "
                    f"({type(exc).__name__}); remove it with 'lossatlas rm {self.path} "
                    f"{run}/{step}' to recompute that step, or use another --store"
                ) from None
            return None

    def step_attrs(self, run: str, step: str) -> dict[str, Any]:
        """The step's attrs ({} if the step has no group)."""
        g = self.step_group(run, step)
        return dict(g.attrs) if g is not None else {}

    def step_status(self, run: str, step: str) -> str | None:
        """``complete``, ``running``, ``failed``, ``interrupted``, ``partial`` (repaired
        cells to recompute), or None when the step has no result yet."""
        g = self.step_group(run, step)
        if g is None or not g.attrs.get("template_complete"):
            return None
        return str(g.attrs.get("status", "running"))

    def cell_status(self, run: str, step: str, fix: str = "") -> np.ndarray:
        """The step's ``cell_status`` array (0 not run, 1 done, 2 done with NaN/inf).
        ``fix``: what the error for an unreadable array advises (default: repair)."""
        g = self.step_group(run, step)
        if g is None or not g.attrs.get("template_complete"):
            raise StoreError(f"store '{self.path}' has no result for step '{step}' of run '{run}'")
        try:
            return np.asarray(g[STATUS_VAR][...])
        except Exception as exc:
            fix = fix or (
                f"run 'lossatlas verify {self.path} --repair' to mark the damaged cells "
                "for recomputing"
            )
            raise StoreError(
                f"store '{self.path}': the cell status of step '{step}' of run '{run}' is "
                f"corrupted ({type(exc).__name__}); {fix}"
            ) from None

    def pending_cells(
        self, run: str, step: str, status: np.ndarray | None = None
    ) -> list[tuple[int, ...]]:
        """Indices of the cells not run yet (status 0); ``status``: the step's
        :meth:`cell_status` where the caller has just read it (each read reads every chunk)."""
        if status is None:
            status = self.cell_status(run, step)
        if not status.shape:
            return [()] if int(status) == STATUS_PENDING else []
        return [tuple(int(i) for i in idx) for idx in np.argwhere(status == STATUS_PENDING)]

    def cell_total(self, run: str, step: str) -> int:
        """How many cells the step has, from its metadata alone (no chunk is read)."""
        g = self.step_group(run, step)
        if g is None or not g.attrs.get("template_complete"):
            raise StoreError(f"store '{self.path}' has no result for step '{step}' of run '{run}'")
        return int(np.prod(g[STATUS_VAR].shape))

    def check_step(self, run: str, step: str) -> None:
        """Refuse a step whose metadata or ``cell_status`` cannot be read (before writing)."""
        if self.step_ready(run, step):
            self.cell_status(
                run,
                step,
                fix=f"run 'lossatlas verify {self.path} --repair' or remove the step with "
                f"'lossatlas rm {self.path} {run}/{step}'",
            )

    def step_ready(self, run: str, step: str) -> bool:
        g = self.step_group(run, step)
        return g is not None and bool(g.attrs.get("template_complete"))

    def rows_per_cell(self, run: str, step: str) -> int:
        """How many indices of the last cell dim one chunk (one unit of work) covers: the
        template's ``cell_status`` chunking (1 for stores made before 0.2)."""
        g = self.step_group(run, step)
        if g is None or not g.attrs.get("template_complete") or not g.attrs.get("cell_dims"):
            return 1
        return int(g[STATUS_VAR].chunks[-1])

    def engine_vars(self, run: str, step: str) -> set[str]:
        """The arrays the engine owns in a step (planned and static variables, coords,
        ``cell_status``): a probe's ``finalize`` may not replace them."""
        g = self.step_group(run, step)
        if g is None:
            return set()
        owned = g.attrs.get("engine_vars")
        if owned is not None:
            return set(owned)
        # Stores written before engine_vars was recorded: everything but the summary.
        summary = set(g.attrs.get("summary_vars", []))
        return {name for name, _ in g.arrays()} - summary

    def drop_step(self, run: str, step: str) -> None:
        with self.lock():
            self._discard(self.path / run / step)

    def write_template(
        self, run: str, step: str, plan: Plan, attrs: dict[str, Any], rows_per_cell: int = 1
    ) -> None:
        """Write the step's empty, labelled template (values NaN, cell_status 0).

        Nothing the size of the result is allocated: coordinates and static arrays are
        written, every variable and ``cell_status`` is an array of its fill value with no
        chunk on disk yet. The template is built outside the store and moved into place
        in one rename, so a reader sees no step or a whole template, never half of one.

        ``rows_per_cell``: how many consecutive indices of the last cell dim one unit of
        work (one chunk of every variable and of ``cell_status``) covers; 1 is one
        chunk per probe cell. The layout is fixed here: a resumed step keeps it
        (:func:`rows_per_chunk` reads it back).
        """
        import xarray as xr

        cell_dims = plan.cell_dims
        rows = max(1, int(rows_per_cell)) if cell_dims else 1
        if cell_dims:
            rows = min(rows, max(1, len(plan.coords[cell_dims[-1]])))
        for name, var in plan.variables.items():
            missing = [d for d in cell_dims if d not in var.dims]
            if missing:
                raise StoreError(f"variable '{name}' lacks cell dims {missing} (a probe bug)")
            unknown = [d for d in var.dims if d not in plan.coords]
            if unknown:
                raise PluginError(
                    f"variable '{name}' has dims {unknown} without coordinates in the plan "
                    "(a bug in the probe)"
                )
        coords: dict[str, Any] = {
            d: xr.Variable((d,), np.asarray(v), attrs=cf_attrs(d, plan.coord_attrs.get(d, {})))
            for d, v in plan.coords.items()
        }
        for name, (dim, values, vattrs) in getattr(plan, "aux_coords", {}).items():
            coords[name] = xr.Variable((dim,), np.asarray(values), attrs=cf_attrs(name, vattrs))
        data_vars: dict[str, Any] = {}
        for name, (dims, values, vattrs) in plan.static.items():
            data_vars[name] = xr.Variable(dims, np.asarray(values), attrs=cf_attrs(name, vattrs))
        ds = xr.Dataset(data_vars, coords=coords)
        ds.attrs.update(_jsonable_attrs(attrs))
        ds.attrs.update(_jsonable_attrs(plan.attrs))
        ds.attrs["Conventions"] = CONVENTIONS
        ds.attrs.setdefault("title", f"{attrs.get('probe', 'lossatlas')} result {run}/{step}")
        ds.attrs["cell_dims"] = list(cell_dims)
        ds.attrs["static_vars"] = list(plan.static)
        ds.attrs["engine_vars"] = sorted(
            {*plan.variables, *plan.static, *coords, *plan.coords, STATUS_VAR}
        )
        ds.attrs["summary_vars"] = []
        ds.attrs["rows_per_cell"] = rows
        ds.attrs["template_complete"] = 0
        encoding = {name: {"compressors": compressors()} for name in ds.variables}

        tmp = self.sidecar / "tmp" / f"{run}--{step}--{uuid.uuid4().hex}"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            ds.to_zarr(str(tmp), mode="w-", encoding=encoding, consolidated=False, compute=True)
            g = zarr.open_group(str(tmp), mode="r+", use_consolidated=False)
            for name, var in plan.variables.items():
                shape = tuple(len(plan.coords[d]) for d in var.dims)
                chunks = tuple(
                    (rows if d == cell_dims[-1] else 1)
                    if d in cell_dims
                    else max(1, len(plan.coords[d]))
                    for d in var.dims
                )
                fill = _fill(var.dtype)
                vattrs = {
                    "description": var.description,
                    "units": var.units,
                    "finite": int(var.finite),
                }
                if getattr(var, "long_name", ""):
                    vattrs["long_name"] = var.long_name
                vattrs = cf_attrs(name, vattrs)
                if fill is not None:
                    vattrs.update(_encoded_fill_attrs(var.dtype))
                g.create_array(
                    name,
                    shape=shape,
                    chunks=chunks,
                    dtype=var.dtype,
                    fill_value=fill if fill is not None else 0,
                    compressors=compressors(),
                    dimension_names=var.dims,
                    attributes=vattrs,
                )
            g.create_array(
                STATUS_VAR,
                shape=plan.cell_shape(),
                chunks=tuple(rows if k == len(cell_dims) - 1 else 1 for k in range(len(cell_dims))),
                dtype="uint8",
                fill_value=STATUS_PENDING,
                compressors=compressors(),
                dimension_names=cell_dims,
                attributes=dict(STATUS_ATTRS),
            )
            g.attrs["template_complete"] = 1
            with self.lock():
                self.root()
                if run not in zarr.open_group(str(self.path), mode="r", use_consolidated=False):
                    raise StoreError(f"store '{self.path}' has no run '{run}' (removed?)")
                self._discard(self.path / run / step)
                os.rename(tmp, self.path / run / step)
                zarr.consolidate_metadata(str(self.path))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def set_step_attrs(
        self, run: str, step: str, attrs: dict[str, Any], consolidate: bool = True
    ) -> None:
        with self.lock():
            g = zarr.open_group(str(self.path), path=f"{run}/{step}", mode="r+")
            g.attrs.update(_jsonable_attrs(attrs))
            if consolidate:
                zarr.consolidate_metadata(str(self.path))

    @staticmethod
    def write_regions(writes: list[tuple[zarr.Array, Any, np.ndarray]]) -> None:
        """Write each ``(array, region, values)`` of a unit of work, all at once.

        zarr-python's synchronous ``array[region] = values`` is a round trip through its
        event-loop thread per call; a cell's variables go in one round trip (one
        ``asyncio.gather``), which is what a cell costs the store besides encoding. The
        caller writes ``cell_status`` afterwards, in a call of its own, so a status is
        never on disk before its data."""
        if not writes:
            return
        try:
            import asyncio

            from zarr.core.sync import sync

            coros = [arr._async_array.setitem(region, value) for arr, region, value in writes]
        except (ImportError, AttributeError):  # another zarr-python: one write at a time
            for arr, region, value in writes:
                arr[region] = value
            return

        async def _all() -> None:
            await asyncio.gather(*coros)

        sync(_all())

    def open_arrays(self, run: str, step: str) -> zarr.Group:
        """The step's group for writing cells (the sweep's runtime)."""
        return zarr.open_group(str(self.path), path=self.group_path(run, step), mode="r+")

    def write_summary(
        self, run: str, step: str, ds: xr.Dataset, consolidate: bool = True
    ) -> list[str]:
        """Add a probe's summary (what ``finalize`` returned) to a step; return the
        names written.

        The contract: a returned Dataset is reduced to its *new* variables. Variables
        the engine owns (planned, static, coordinates, ``cell_status``) that come back
        unchanged — ``ds.assign(mean=ds.x.mean("sample"))`` returns them all — are
        dropped; one that comes back changed is a :class:`PluginError` and nothing is
        written. New dims need their coordinates; a coordinate that exists must come
        back with the same values. Summary variables of an earlier attempt are replaced.
        """
        import xarray as xr

        g = self.step_group(run, step)
        if g is None:
            raise StoreError(f"store '{self.path}' has no step '{step}' of run '{run}'")
        owned = self.engine_vars(run, step)
        stored = self.open_step(run, step)
        probe = g.attrs.get("probe", "?")
        new: dict[str, xr.Variable] = {}
        for name in ds.data_vars:
            key = str(name)
            var = ds[name].variable
            if key in owned:
                if key in stored.variables and _same(var, stored[key].variable):
                    continue
                raise PluginError(
                    f"probe '{probe}': finalize returned variable '{key}' with values "
                    f"that differ from the stored ones; '{key}' belongs to the engine "
                    "(planned, static, coordinate or cell_status) and is never replaced; "
                    "return summary variables under new names"
                )
            new[key] = var
        new_coords: dict[str, xr.Variable] = {}
        for name in ds.coords:
            key = str(name)
            var = ds.coords[name].variable
            needed = any(key in v.dims for v in new.values()) or any(
                key in ds[n].coords for n in new
            )
            if key in stored.variables:
                if needed and not _same(var, stored[key].variable):
                    raise PluginError(
                        f"probe '{probe}': finalize returned coordinate '{key}' with other "
                        "values than the stored ones; use a new dim name for a new axis"
                    )
                continue
            if needed:
                new_coords[key] = var
        if not new:
            return []
        out = xr.Dataset(
            {k: xr.Variable(v.dims, np.asarray(v.values), attrs=v.attrs) for k, v in new.items()},
            coords={
                k: xr.Variable(v.dims, np.asarray(v.values), attrs=v.attrs)
                for k, v in new_coords.items()
            },
        )
        for name in list(out.variables):
            attrs = {k: v for k, v in out[name].attrs.items() if k != "finite"}
            out[name].attrs = cf_attrs(str(name), attrs)
            out[name].encoding = {}
        encoding = {str(name): {"compressors": compressors()} for name in out.variables}
        with self.lock():
            kept = dict(g.attrs)
            previous = set(kept.get("summary_vars", []))
            for name in out.variables:
                if str(name) in previous or (
                    str(name) not in owned and (self.path / run / step / str(name)).exists()
                ):
                    shutil.rmtree(self.path / run / step / str(name), ignore_errors=True)
            out.to_zarr(
                str(self.path),
                group=f"{run}/{step}",
                mode="a",
                consolidated=False,
                encoding=encoding,
            )
            # to_zarr(mode="a") rewrites the group's attrs; keep the step's own.
            names = sorted(previous | {str(n) for n in out.variables})
            kept["summary_vars"] = names
            zarr.open_group(str(self.path), path=f"{run}/{step}", mode="r+").attrs.update(kept)
            if consolidate:
                zarr.consolidate_metadata(str(self.path))
        return sorted(str(n) for n in out.data_vars)

    # Version 0.1's name for it.
    write_variables = write_summary

    def open_step(self, run: str, step: str, chunks: Any = None) -> xr.Dataset:
        """The step's result as an xarray Dataset (lazily loaded).

        ``chunks=None`` (the default) gives xarray's lazily indexed numpy arrays: values
        are read when used. Dask arrays (``chunks={}``, one per stored chunk) are for
        results larger than memory; importing ``dask.array`` costs 1.3 s, which the
        engine's own reads (finalize, point references, summaries) do not pay."""
        import xarray as xr

        if not self.step_ready(run, step):
            raise StoreError(
                f"store '{self.path}' has no result for step '{step}' of run '{run}'",
                run=run,
                step=step,
                missing="result",
            )
        return xr.open_dataset(
            str(self.path),
            engine="zarr",
            group=f"{run}/{step}",
            consolidated=False,
            chunks=chunks,
        )

    # ------------------------------------------------------------- scratch

    def cell_scratch(self, run: str, step: str, index: dict[str, int]) -> Path:
        """A folder for a probe's intermediate files of one cell (created; kept until the
        step completes, so a killed cell can continue from it). It lives beside the
        store, never inside it."""
        key = "-".join(f"{d}{int(i)}" for d, i in index.items()) or "cell"
        folder = self.sidecar / "scratch" / run / step / key
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def clear_scratch(self, run: str, step: str) -> None:
        """Remove a step's scratch space (when the step is complete)."""
        folder = self.sidecar / "scratch" / run / step
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        for parent in (folder.parent, folder.parent.parent):
            with contextlib.suppress(OSError):
                parent.rmdir()  # only if empty
