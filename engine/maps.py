"""The 2-D maps of a stored result: found, drawn as 3-D surfaces, exported to VTK.

A *2-D map* is any float variable of a result over two numeric coordinate dims — the
(α, β) grids of ``hessian-directions``, the surfaces of ``trajectory``, a third-party
probe's plane. :func:`find_map` finds them without knowing the probe: the pair of dims
shared by the most variables (or the pair given), every other dim of a variable
unrolled into one map per index (``train_loss[map=hessian]``).

- :func:`plot_surfaces`: each map as a 3-D surface (``lossatlas plot --surface``,
  ``ds.atlas.plot(surface=True)``), the picture Li et al. (2018) made popular;
- :func:`export_vts`: every map of a step on one VTK structured grid
  (``lossatlas export STORE RUN/STEP --format vtk -o FILE``), for ParaView.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError
from .options import suggest

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

__all__ = ["MapGrid", "export_vts", "find_map", "find_maps", "plot_surfaces"]

#: Dims that are never a map's axis (the flat parameter index).
NOT_AXES = {"param"}


@dataclass
class MapGrid:
    """The maps of a result over one pair of axes: ``fields[name][i, j]`` is at
    (``x[i]``, ``y[j]``); ``info[name]`` is its description and units."""

    x_name: str
    y_name: str
    x: np.ndarray
    y: np.ndarray
    fields: dict[str, np.ndarray]
    info: dict[str, str] = field(default_factory=dict)
    x_units: str = ""
    y_units: str = ""


def _numeric_axes(ds: xr.Dataset) -> list[str]:
    out = []
    for d in ds.dims:
        if d in NOT_AXES or d not in ds.coords or ds.sizes[d] < 2:
            continue
        if np.issubdtype(ds[d].dtype, np.number):
            out.append(str(d))
    return out


def _map_vars(ds: xr.Dataset, a: str, b: str) -> list[str]:
    return [
        str(v)
        for v in ds.data_vars
        if a in ds[v].dims and b in ds[v].dims and np.issubdtype(ds[v].dtype, np.floating)
    ]


def find_maps(ds: xr.Dataset) -> list[MapGrid]:
    """Every pair of numeric dims that float variables share, as one :class:`MapGrid`
    each (most variables first); a clear error if there is none."""
    numeric = _numeric_axes(ds)
    pairs = [p for p in itertools.combinations(numeric, 2) if _map_vars(ds, *p)]
    if not pairs:
        find_map(ds)  # raises the error that says there is no map
    pairs.sort(key=lambda p: -len(_map_vars(ds, *p)))
    return [find_map(ds, list(p)) for p in pairs]


def find_map(ds: xr.Dataset, axes: Sequence[str] | None = None) -> MapGrid:
    """The 2-D maps of ``ds`` over ``axes`` (two dim names) or, if None, over the pair of
    numeric dims that the most float variables share; a clear error if there is none or
    the choice is ambiguous."""
    numeric = _numeric_axes(ds)
    if axes is not None:
        if len(axes) != 2:
            raise ConfigError(f"a map has two axes; got {list(axes)}")
        for d in axes:
            if d not in numeric:
                raise ConfigError(
                    f"'{d}' is not a numeric dim of this result{suggest(d, numeric)}; its "
                    f"numeric dims: {', '.join(numeric) or 'none'}"
                )
        pair = (str(axes[0]), str(axes[1]))
        if not _map_vars(ds, *pair):
            raise ConfigError(f"no float variable of this result has both dims {pair}")
    else:
        counts = {
            p: len(_map_vars(ds, *p))
            for p in itertools.combinations(numeric, 2)
            if _map_vars(ds, *p)
        }
        if not counts:
            probe = ds.attrs.get("probe", "this probe")
            raise ConfigError(
                f"the result of '{probe}' has no 2-D map (no float variable over two numeric "
                f"dims; numeric dims: {', '.join(numeric) or 'none'})"
            )
        best = max(counts.values())
        top = [p for p, c in counts.items() if c == best]
        if len(top) > 1:
            choices = "; ".join(f"{a},{b}" for a, b in top)
            raise ConfigError(
                f"this result has maps over several pairs of dims ({choices}); choose one "
                "with --axes A,B"
            )
        pair = top[0]
    names = _map_vars(ds, *pair)
    # Orient each map as the first variable orders the axes.
    first = ds[names[0]]
    a, b = pair if first.dims.index(pair[0]) < first.dims.index(pair[1]) else pair[::-1]
    fields: dict[str, np.ndarray] = {}
    info: dict[str, str] = {}
    for v in names:
        var = ds[v]
        rest = [d for d in var.dims if d not in (a, b)]
        desc = str(var.attrs.get("description", var.attrs.get("long_name", "")))
        units = str(var.attrs.get("units", ""))
        for combo in itertools.product(*(range(ds.sizes[d]) for d in rest)):
            sel = dict(zip(rest, combo, strict=True))
            label = v
            if rest:
                parts = [f"{d}={_coord_text(ds, d, i)}" for d, i in sel.items()]
                label += "[" + ",".join(parts) + "]"
            fields[label] = np.asarray(var.isel(sel).transpose(a, b).values, dtype=np.float64)
            info[label] = desc + (f" [{units}]" if units else "")
    return MapGrid(
        a,
        b,
        np.asarray(ds[a].values, dtype=np.float64),
        np.asarray(ds[b].values, dtype=np.float64),
        fields,
        info,
        str(ds[a].attrs.get("units", "")),
        str(ds[b].attrs.get("units", "")),
    )


def _coord_text(ds: xr.Dataset, dim: str, i: int) -> str:
    if dim in ds.coords:
        v = ds[dim].values[i]
        return str(v.item() if hasattr(v, "item") else v)
    return str(i)


def plot_surfaces(
    ds: xr.Dataset,
    axes: Sequence[str] | None = None,
    variables: Sequence[str] | None = None,
    logz: bool = False,
    max_panels: int = 8,
    **_: Any,
) -> Figure:
    """Each 2-D map of ``ds`` as a 3-D surface (up to ``max_panels``; over every pair of
    axes that has maps, or over ``axes``): the loss maps (train first; every map if
    there is no loss), or the maps named in ``variables`` (a variable or one unrolled
    map). ``logz`` draws log10 of positive maps."""
    import matplotlib.pyplot as plt

    from .figures import colorbar, quantity

    grids = [find_map(ds, axes)] if axes is not None else find_maps(ds)
    where = {name: g for g in grids for name in g.fields}
    names = list(where)
    if variables:
        chosen = [n for n in names if n in variables or n.split("[")[0] in variables]
        if not chosen:
            hint = suggest(variables[0], names)
            raise ConfigError(f"no map named {list(variables)}{hint}; maps: {', '.join(names)}")
        names = chosen
    else:  # the losses (train first), or every map where there is no loss
        losses = [n for n in names if "loss" in n.split("[")[0]]
        names = sorted(losses, key=lambda n: (0 if n.startswith("train") else 1, names.index(n)))
        names = names or list(where)
    names = names[:max_panels]
    cols = min(len(names), 2)
    rows = (len(names) + cols - 1) // cols
    fig = plt.figure(figsize=(6.2 * cols, 4.8 * rows))
    for k, name in enumerate(names):
        grid = where[name]
        X, Y = np.meshgrid(grid.x, grid.y, indexing="ij")
        ax = fig.add_subplot(rows, cols, k + 1, projection="3d")
        Z = grid.fields[name].copy()
        zlabel = quantity(ds, name.split("[")[0])
        if logz and np.nanmin(Z) > 0:
            Z = np.log10(Z)
            zlabel = f"log10 {zlabel}"
        Zm = np.ma.masked_invalid(Z)
        surf = ax.plot_surface(
            X, Y, Zm, cmap="viridis", linewidth=0, antialiased=True, alpha=0.95, rasterized=True
        )
        finite = Z[np.isfinite(Z)]
        if finite.size:
            ax.contour(
                X, Y, Zm, levels=12, offset=float(finite.min()), cmap="viridis", linewidths=0.6
            )
        ax.set_xlabel(quantity(ds, grid.x_name, grid.x_name))
        ax.set_ylabel(quantity(ds, grid.y_name, grid.y_name))
        ax.set_zlabel(zlabel)
        ax.set_title(name, fontsize=9)
        colorbar(fig, surf, ax, zlabel, shrink=0.55, pad=0.12)
    fig.tight_layout()
    return fig


def export_vts(
    ds: xr.Dataset,
    path: str | Path,
    axes: Sequence[str] | None = None,
    height: str | None = None,
) -> Path:
    """Write every 2-D map of ``ds`` (see :func:`find_map`) to one VTK structured grid
    (:func:`lossatlas.engine.vtk.write_vts`); ``height`` names a map to lift the grid by
    (default: flat). The file's header comment says where the maps come from and each
    map's description and units."""
    from .vtk import write_vts

    grid = find_map(ds, axes)
    if height is not None and height not in grid.fields:
        raise ConfigError(
            f"--height '{height}' is not a map of this result{suggest(height, grid.fields)}; "
            f"maps: {', '.join(grid.fields)}"
        )
    comments = {
        "written by": "lossatlas export",
        "result": f"{ds.attrs.get('run', '?')}/{ds.attrs.get('step', '?')} (probe "
        f"{ds.attrs.get('probe', '?')})",
        "x": grid.x_name + (f" [{grid.x_units}]" if grid.x_units else ""),
        "y": grid.y_name + (f" [{grid.y_units}]" if grid.y_units else ""),
        "z": height or "0 (flat; use Warp By Scalar)",
        **grid.info,
    }
    return write_vts(path, grid.x, grid.y, grid.fields, z=height, comments=comments)
