"""What lossatlas does the moment xarray is imported in its process (called by the import
hook of :mod:`lossatlas`, or at once where xarray was imported first): register the
``.atlas`` accessors and let xarray look for dask only once a dask array can exist."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["find_dask_lazily", "xarray_imported"]


def xarray_imported() -> None:
    """Set xarray up for lossatlas (idempotent)."""
    find_dask_lazily()
    from . import accessor  # noqa: F401  (registers ds.atlas / tree.atlas)


def find_dask_lazily() -> None:
    """Let xarray find dask when a dask array can exist, not on its first Variable.

    xarray asks for ``dask.array``'s Array type the first time it builds a Variable from
    numpy data (to test for masked dask arrays), which imports dask.array and scipy.fft:
    0.3–0.75 s of every run, although no dask array is in sight. Until ``dask.array`` is
    imported no object can be a dask array, so its type tuple is exactly empty until
    then; after, the real entry is made and used. Nothing changes for code that uses dask
    (``xr.open_zarr(chunks={})`` imports dask.array first). Only where xarray keeps this
    cache as it does today (``xarray.namedarray.pycompat``); otherwise nothing is done."""
    try:
        from xarray.namedarray import pycompat
    except ImportError:  # pragma: no cover - another xarray
        return
    cache = getattr(pycompat, "_cached_duck_array_modules", None)
    if not isinstance(cache, dict) or "dask" in cache or "dask.array" in sys.modules:
        return

    class _LazyDask:
        def _real(self) -> Any:
            real = pycompat.DuckArrayModule("dask")
            cache["dask"] = real
            return real

        @property
        def type(self) -> tuple[type, ...]:
            if "dask.array" not in sys.modules:
                return ()
            return self._real().type

        def __getattr__(self, name: str) -> Any:
            return getattr(self._real(), name)

    cache["dask"] = _LazyDask()
