"""``lossatlas export``: a stored step as a file other tools read.

Formats are rows of one table, :data:`EXPORTERS` (name → :class:`Exporter`): a new
format (VTK, say) is one function and one row here, and the CLI's ``--format`` choices
and docs come from the table. Every exporter gets the step's Dataset with
netCDF-safe attributes (:func:`safe_attrs`) and writes one file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["EXPORTERS", "Exporter", "export", "for_netcdf", "safe_attrs"]


@dataclass(frozen=True)
class Exporter:
    """A file format: its name, its file suffixes, what it needs and how to write."""

    name: str
    suffixes: tuple[str, ...]
    summary: str
    write: Callable[..., None]
    #: the Python package it needs, and the install hint
    requires: str = ""
    install: str = ""
    #: the format's own options (keyword arguments of ``write``; ``--axes`` ...)
    options: tuple[str, ...] = ()


def safe_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes any netCDF writer takes: str, int, float or 1-D arrays of numbers;
    booleans become 0/1, None "", lists and tables JSON text."""
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if isinstance(v, bool | np.bool_):
            v = int(v)
        elif v is None:
            v = ""
        elif isinstance(v, np.generic):
            v = v.item()
        elif isinstance(v, list | tuple | np.ndarray):
            items = list(np.asarray(v).tolist()) if isinstance(v, np.ndarray) else list(v)
            if items and all(isinstance(x, int | float) and not isinstance(x, bool) for x in items):
                v = np.asarray(items)
            else:
                v = json.dumps(items, ensure_ascii=False, default=str)
        elif isinstance(v, dict):
            v = json.dumps(v, ensure_ascii=False, default=str)
        out[str(k)] = v
    return out


def for_netcdf(ds: Any) -> Any:
    """``ds`` with netCDF-safe attrs and no Zarr encodings (so ``to_netcdf`` works)."""
    ds = ds.copy()
    ds.attrs = safe_attrs(dict(ds.attrs))
    for name in ds.variables:
        ds[name].attrs = safe_attrs(dict(ds[name].attrs))
        ds[name].encoding = {}
    return ds


def _write_netcdf(ds: Any, path: Path) -> None:
    for_netcdf(ds).load().to_netcdf(path, engine="h5netcdf")


def _write_csv(ds: Any, path: Path) -> None:
    """One tidy table: a row per value, columns ``variable``, every dim, ``value``
    (a dim a variable does not have is left empty), then ``units``."""
    import csv

    dims = list(ds.dims)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["variable", *dims, "value", "units"])
        for name in ds.data_vars:
            var = ds[name].load()
            units = var.attrs.get("units", "")
            coords = [np.asarray(ds[d].values) if d in ds.coords else None for d in var.dims]
            values = np.asarray(var.values)
            for idx in np.ndindex(values.shape) if values.shape else [()]:
                at = {
                    d: (coords[k][i].item() if coords[k] is not None else i)
                    for k, (d, i) in enumerate(zip(var.dims, idx, strict=True))
                }
                value = values[idx].item() if values.shape else values.item()
                w.writerow([name, *(at.get(d, "") for d in dims), value, units])


def _write_vtk(ds: Any, path: Path, axes: str | None = None, height: str | None = None) -> None:
    from ..maps import export_vts

    pair = None if axes is None else [a.strip() for a in axes.split(",")]
    export_vts(ds.load(), path, pair, height)


EXPORTERS: dict[str, Exporter] = {
    "netcdf": Exporter(
        "netcdf",
        (".nc", ".nc4", ".netcdf"),
        "netCDF-4 (HDF5) through h5netcdf, CF-1.11 attributes",
        _write_netcdf,
        requires="h5netcdf",
        install="pip install 'lossatlas[netcdf]'",
    ),
    "csv": Exporter(
        "csv",
        (".csv",),
        "one tidy table: variable, each dim, value, units",
        _write_csv,
    ),
    "vtk": Exporter(
        "vtk",
        (".vts",),
        "a VTK XML structured grid of the step's 2-D maps (ParaView)",
        _write_vtk,
        options=("axes", "height"),
    ),
}


def export(
    ds: Any,
    fmt: str,
    output: str | Path,
    variables: list[str] | None = None,
    **options: Any,
) -> Path:
    """Write ``ds`` (a step's Dataset) to ``output`` in format ``fmt``; ``options`` are
    the format's own (:attr:`Exporter.options`, e.g. vtk's ``axes`` and ``height``)."""
    import importlib.util

    if fmt not in EXPORTERS:
        raise ConfigError(f"--format: '{fmt}' is not one of {', '.join(EXPORTERS)}")
    exp = EXPORTERS[fmt]
    path = Path(output)
    if path.suffix.lower() not in exp.suffixes:
        raise ConfigError(f"output '{output}': a {fmt} file ends in {' or '.join(exp.suffixes)}")
    if not path.resolve().parent.is_dir():
        raise ConfigError(f"output '{output}': folder '{path.resolve().parent}' does not exist")
    if exp.requires and importlib.util.find_spec(exp.requires) is None:
        raise ConfigError(
            f"--format {fmt} needs the package '{exp.requires}', which is not installed; "
            f"{exp.install}"
        )
    foreign = [k for k in options if k not in exp.options]
    if foreign:
        owners = [f"--format {e.name}" for e in EXPORTERS.values() if foreign[0] in e.options]
        raise ConfigError(
            f"--{foreign[0]} applies to {' and '.join(owners)} only, not to --format {fmt}"
        )
    if variables:
        missing = [v for v in variables if v not in ds.data_vars]
        if missing:
            raise ConfigError(
                f"--var: the step has no variable {', '.join(map(repr, missing))}; its "
                f"variables: {', '.join(map(str, ds.data_vars))}"
            )
        ds = ds[variables]
    exp.write(ds, path, **options)
    return path
