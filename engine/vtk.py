"""VTK XML structured grids (``.vts``): 2-D loss maps for ParaView and VTK.

:func:`write_vts` writes one grid with any number of point arrays; the grid is flat
(z = 0) unless ``z`` names an array (or gives values) to lift it into a surface — or
apply ParaView's *Warp By Scalar* to any array afterwards. The file follows the VTK
XML format (``VTKFile type="StructuredGrid" version="1.0"``): arrays are written
inline as base64 of little-endian float64 preceded by a UInt64 byte count, so NaN and
inf survive (VTK's ASCII reader cannot parse them) and values round-trip exactly.

Li et al.'s loss-landscape code converts its maps to ``.vtp`` polygon files
(``h52vtp.py``) for the same purpose; a structured grid keeps the map's (i, j)
layout, which ParaView can contour, slice and warp directly.

Point order is VTK's: i (the first axis, ``x``) fastest, then j. A map ``F`` with
``F[i, j]`` at (x[i], y[j]) is written as ``F.T.ravel()``.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from .errors import ConfigError

__all__ = ["write_vts"]


def _binary(values: np.ndarray) -> str:
    data = np.ascontiguousarray(values, dtype="<f8").tobytes()
    return base64.b64encode(struct.pack("<Q", len(data)) + data).decode("ascii")


def write_vts(
    path: str | Path,
    x: np.ndarray,
    y: np.ndarray,
    point_data: Mapping[str, np.ndarray],
    z: str | np.ndarray | None = None,
    comments: Mapping[str, str] | None = None,
) -> Path:
    """Write a 2-D map as a VTK XML structured grid; return the path.

    Parameters
    ----------
    path:
        The file to write (``.vts`` by convention).
    x, y:
        The map's axes, (nx,) and (ny,), each at least 2 values.
    point_data:
        Arrays of shape (nx, ny), value ``[i, j]`` at (x[i], y[j]), by name.
    z:
        None: a flat grid at z = 0; the name of one of ``point_data`` or an (nx, ny)
        array: the grid's height (non-finite heights are written as 0; the array
        itself keeps them).
    comments:
        Lines written as an XML comment at the top (what each array is, its units).
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    nx, ny = len(x), len(y)
    if nx < 2 or ny < 2:
        raise ConfigError(f"a structured grid needs at least 2 × 2 points, got {nx} × {ny}")
    arrays = {}
    for name, values in point_data.items():
        a = np.asarray(values, dtype=np.float64)
        if a.shape != (nx, ny):
            raise ConfigError(f"array '{name}' has shape {a.shape}, the grid is ({nx}, {ny})")
        arrays[str(name)] = a
    if z is None:
        height = np.zeros((nx, ny))
    elif isinstance(z, str):
        if z not in arrays:
            raise ConfigError(f"height '{z}' is not one of the arrays: {', '.join(arrays)}")
        height = arrays[z]
    else:
        height = np.asarray(z, dtype=np.float64)
        if height.shape != (nx, ny):
            raise ConfigError(f"height has shape {height.shape}, the grid is ({nx}, {ny})")
    height = np.where(np.isfinite(height), height, 0.0)
    X, Y = np.meshgrid(x, y, indexing="ij")
    points = np.stack([X.T.ravel(), Y.T.ravel(), height.T.ravel()], axis=1)
    extent = f"0 {nx - 1} 0 {ny - 1} 0 0"
    lines = ['<?xml version="1.0"?>']
    if comments:
        text = "\n".join(f"  {k}: {v}" for k, v in comments.items()).replace("--", "- -")
        lines.append(f"<!--\n{text}\n-->")
    lines += [
        '<VTKFile type="StructuredGrid" version="1.0" byte_order="LittleEndian" '
        'header_type="UInt64">',
        f'  <StructuredGrid WholeExtent="{extent}">',
        f'    <Piece Extent="{extent}">',
    ]
    first = next(iter(arrays), None)
    lines.append(f"      <PointData Scalars={quoteattr(first)}>" if first else "      <PointData>")
    for name, a in arrays.items():
        lines.append(
            f'        <DataArray type="Float64" Name={quoteattr(name)} format="binary">'
            f"{_binary(a.T.ravel())}</DataArray>"
        )
    lines += [
        "      </PointData>",
        "      <Points>",
        '        <DataArray type="Float64" NumberOfComponents="3" format="binary">'
        f"{_binary(points.ravel())}</DataArray>",
        "      </Points>",
        "    </Piece>",
        "  </StructuredGrid>",
        "</VTKFile>",
    ]
    out = Path(path)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
