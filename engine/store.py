"""The Zarr store: one group per run, one sub-group per step, resumable cell by cell.

Layout::

    STORE/                      root attrs: {"lossatlas_store": 1}
      RUN/                      attrs: config (JSON), provenance, status
        STEP/                   an xarray Dataset: variables, coords, ``cell_status``
                                attrs: probe, options, provenance, status

Each variable is chunked one cell per chunk along the cell dims, so every cell owns its
chunks (no two writers share one) and a cell written twice is harmless.
``cell_status`` (uint8 over the cell dims) is written after the cell's values:
0 = not run, 1 = done, 2 = done but some value is NaN or inf. A cell killed mid-write
keeps status 0 and is recomputed (its chunks overwritten) on resume.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from .components import Plan
from .errors import StoreError

__all__ = [
    "STATUS_DONE",
    "STATUS_NONFINITE",
    "STATUS_PENDING",
    "Store",
]

STATUS_PENDING, STATUS_DONE, STATUS_NONFINITE = 0, 1, 2
MARKER = "lossatlas_store"
STATUS_VAR = "cell_status"
#: the tail of zarr's temporary file names (LocalStore writes NAME.<uuid hex>.partial)
_PARTIAL = re.compile(r".+\.[0-9a-f]{32}\.partial")


def _fill(dtype: str) -> Any:
    kind = np.dtype(dtype).kind
    if kind == "f":
        return np.nan
    if kind in "iu":
        return -1 if kind == "i" else 0
    if kind == "b":
        return False
    return None


class Store:
    """A lossatlas Zarr store on the local file system."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()

    # ------------------------------------------------------------- opening

    def exists(self) -> bool:
        return self.path.exists()

    def check_writable(self) -> None:
        """Create the store if needed; refuse a foreign or read-only one (nothing written)."""
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
        return sorted(name for name, _ in root[run].groups())

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

    def set_run_attrs(self, run: str, attrs: dict[str, Any]) -> None:
        # Consolidated too: xr.open_datatree reads the consolidated metadata, and a run
        # that failed must not show "running" there.
        with self.lock():
            zarr.open_group(str(self.path), path=run, mode="r+").attrs.update(attrs)
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
        return removed

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
                    f"({type(exc).__name__}); remove the folder '{path}' to recompute that "
                    "step, or use another --store"
                ) from None
            return None

    def check_step(self, run: str, step: str) -> None:
        """Refuse a step whose metadata or ``cell_status`` cannot be read (before writing)."""
        g = self.step_group(run, step)
        if g is None or not g.attrs.get("template_complete"):
            return
        try:
            np.asarray(g[STATUS_VAR][...])
        except Exception as exc:
            raise StoreError(
                f"store '{self.path}': the cell status of step '{step}' of run '{run}' is "
                f"corrupted ({type(exc).__name__}); remove the folder "
                f"'{self.path / run / step}' to recompute that step, or use another --store"
            ) from None

    def step_ready(self, run: str, step: str) -> bool:
        g = self.step_group(run, step)
        return g is not None and bool(g.attrs.get("template_complete"))

    def drop_step(self, run: str, step: str) -> None:
        with self.lock():
            shutil.rmtree(self.path / run / step, ignore_errors=True)

    def write_template(self, run: str, step: str, plan: Plan, attrs: dict[str, Any]) -> None:
        """Write the step's empty, labelled template (values NaN, cell_status 0)."""
        cell_dims = plan.cell_dims
        data_vars: dict[str, Any] = {}
        encoding: dict[str, Any] = {}
        for name, var in plan.variables.items():
            missing = [d for d in cell_dims if d not in var.dims]
            if missing:
                raise StoreError(f"variable '{name}' lacks cell dims {missing} (a probe bug)")
            shape = tuple(len(plan.coords[d]) for d in var.dims)
            fill = _fill(var.dtype)
            values = np.full(shape, fill, dtype=var.dtype)
            chunks = tuple(1 if d in cell_dims else len(plan.coords[d]) for d in var.dims)
            data_vars[name] = xr.Variable(
                var.dims,
                values,
                attrs={
                    "description": var.description,
                    "units": var.units,
                    "finite": int(var.finite),
                },
            )
            encoding[name] = {"chunks": chunks or None}
            if fill is not None:
                encoding[name]["_FillValue"] = fill
        status_shape = plan.cell_shape()
        data_vars[STATUS_VAR] = xr.Variable(
            cell_dims,
            np.zeros(status_shape, dtype="uint8"),
            attrs={
                "description": "0 = not run, 1 = done, 2 = done with NaN or inf values",
                "units": "",
            },
        )
        encoding[STATUS_VAR] = {"chunks": tuple(1 for _ in cell_dims) or None, "_FillValue": None}
        for name, (dims, values, vattrs) in plan.static.items():
            data_vars[name] = xr.Variable(dims, np.asarray(values), attrs=dict(vattrs))
        coords = {
            d: xr.Variable((d,), np.asarray(v), attrs=plan.coord_attrs.get(d, {}))
            for d, v in plan.coords.items()
        }
        ds = xr.Dataset(data_vars, coords=coords)
        ds.attrs.update(_jsonable_attrs(attrs))
        ds.attrs.update(_jsonable_attrs(plan.attrs))
        ds.attrs["cell_dims"] = list(cell_dims)
        ds.attrs["static_vars"] = list(plan.static)
        ds.attrs["template_complete"] = 0
        with self.lock():
            self.root()
            shutil.rmtree(self.path / run / step, ignore_errors=True)
            ds.to_zarr(
                str(self.path),
                group=f"{run}/{step}",
                mode="w-",
                encoding=encoding,
                consolidated=False,
                compute=True,
            )
            g = zarr.open_group(str(self.path), path=f"{run}/{step}", mode="r+")
            g.attrs["template_complete"] = 1
            zarr.consolidate_metadata(str(self.path))

    def set_step_attrs(self, run: str, step: str, attrs: dict[str, Any]) -> None:
        with self.lock():
            g = zarr.open_group(str(self.path), path=f"{run}/{step}", mode="r+")
            g.attrs.update(_jsonable_attrs(attrs))
            zarr.consolidate_metadata(str(self.path))

    def write_variables(self, run: str, step: str, ds: xr.Dataset) -> None:
        """Add or replace whole variables (a probe's summary) in a step's group."""
        with self.lock():
            for name in ds.data_vars:
                shutil.rmtree(self.path / run / step / str(name), ignore_errors=True)
            ds = ds.drop_vars([c for c in ds.coords if c in ds.dims], errors="ignore")
            for name in list(ds.data_vars):
                ds[name].encoding = {}
            ds.attrs = {}
            # to_zarr(mode="a") rewrites the group's attrs; keep the step's own.
            g = zarr.open_group(str(self.path), path=f"{run}/{step}", mode="r")
            kept = dict(g.attrs)
            ds.to_zarr(str(self.path), group=f"{run}/{step}", mode="a", consolidated=False)
            zarr.open_group(str(self.path), path=f"{run}/{step}", mode="r+").attrs.update(kept)
            zarr.consolidate_metadata(str(self.path))

    def open_step(self, run: str, step: str) -> xr.Dataset:
        """The step's result as an xarray Dataset (lazily loaded)."""
        if not self.step_ready(run, step):
            raise StoreError(f"store '{self.path}' has no result for step '{step}' of run '{run}'")
        return xr.open_zarr(str(self.path), group=f"{run}/{step}", consolidated=False)


def _jsonable_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in attrs.items():
        if isinstance(v, (np.integer,)):
            v = int(v)
        elif isinstance(v, (np.floating,)):
            v = float(v)
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        try:
            json.dumps(v)
        except TypeError:
            v = str(v)
        out[k] = v
    return out
