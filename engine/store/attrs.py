"""Encoding details of the store: fill values, compressors with checksums, comparing
stored variables, and attrs made storable (netCDF-safe: flat lists of one kind, tables
and nested lists as JSON text)."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["_encoded_fill_attrs", "_fill", "_jsonable_attrs", "_same", "compressors"]


def _fill(dtype: str) -> Any:
    kind = np.dtype(dtype).kind
    if kind == "f":
        return np.nan
    if kind in "iu":
        return -1 if kind == "i" else 0
    if kind == "b":
        return False
    return None


def compressors() -> tuple[Any, ...]:
    """Zstd, then a crc32c checksum of the compressed chunk (verified on every read)."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return (ZstdCodec(level=0), Crc32cCodec())


def _encoded_fill_attrs(dtype: str) -> dict[str, Any]:
    """The attrs xarray writes for a variable of ``dtype`` with its ``_FillValue``
    (:func:`_fill`), so an array made with zarr directly reads back exactly as xarray's
    own would. Found by writing one such variable to memory, once per dtype."""
    return dict(_fill_attrs_of(str(np.dtype(dtype))))


@functools.cache
def _fill_attrs_of(dtype: str) -> dict[str, Any]:
    import xarray as xr
    from zarr.storage import MemoryStore

    fill = _fill(dtype)
    mem = MemoryStore()
    v = xr.Variable(("x",), np.full((1,), fill, dtype=dtype))
    xr.Dataset({"v": v}).to_zarr(
        mem, mode="w-", consolidated=False, encoding={"v": {"_FillValue": fill}}
    )
    return dict(zarr.open_array(mem, path="v").attrs)


def _same(a: xr.Variable, b: xr.Variable) -> bool:
    """Whether two variables hold the same values (NaN equal to NaN)."""
    if a.dims != b.dims or a.shape != b.shape:
        return False
    name_a = getattr(a.data, "name", None)
    name_b = getattr(b.data, "name", None)
    if name_a is not None and name_a == name_b:  # the same dask array
        return True
    x, y = np.asarray(a.values), np.asarray(b.values)
    if x.dtype.kind in "fc" or y.dtype.kind in "fc":
        try:
            return bool(np.array_equal(x, y, equal_nan=True))
        except TypeError:
            return bool(np.array_equal(x, y))
    return bool(np.array_equal(x, y))


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
        if isinstance(v, bool):
            v = int(v)
        elif isinstance(v, dict) or (isinstance(v, list) and not _flat(v)):
            # netCDF takes strings, numbers and flat arrays of one kind: a table or a
            # nested list is kept as its JSON text (json.loads gives it back)
            v = json.dumps(v, ensure_ascii=False)
        out[k] = v
    return out


def _flat(items: list[Any]) -> bool:
    """A list netCDF stores as an array: all strings, or all numbers (not bools)."""
    if all(isinstance(x, str) for x in items):
        return True
    return all(isinstance(x, int | float) and not isinstance(x, bool) for x in items)
