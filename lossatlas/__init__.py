"""lossatlas: the experiments of the loss-landscape literature on your own models and data.

:func:`run` runs a pipeline config (a TOML file or a dict) into a Zarr store and returns
its results as an xarray DataTree; :func:`open` opens a store. The engine (hook specs,
objective, sweeps, store, CLI) is :mod:`lossatlas.engine`; the built-in models, data
sets, subspaces and probes are :mod:`lossatlas.plugins`; :mod:`lossatlas.testing` helps
plugin authors test their plugins.

Importing lossatlas imports neither torch nor xarray: :func:`run` and :func:`open` load
the engine when first used, and the ``.atlas`` accessors of xarray Datasets and DataTrees
are registered the moment xarray is imported (now, if it already is), so ``import
lossatlas`` is enough for ``ds.atlas`` on a result opened with plain xarray.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine.api import open, run

__version__ = "0.1.0"
__all__ = ["__version__", "open", "run"]

_ON_XARRAY = "lossatlas.engine.xarray_setup"


def __getattr__(name: str) -> Any:
    """``run`` and ``open``, imported from :mod:`lossatlas.engine.api` on first use."""
    if name in ("open", "run"):
        value = getattr(importlib.import_module("lossatlas.engine.api"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lossatlas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def _xarray_imported() -> None:
    """Register ``.atlas`` (and xarray's lazy look-up of dask); never break xarray's import."""
    try:
        importlib.import_module(_ON_XARRAY).xarray_imported()
    except Exception as exc:  # pragma: no cover - a broken install
        warnings.warn(f"lossatlas could not set up xarray (ds.atlas): {exc}", stacklevel=2)


class _AfterXarray(importlib.abc.MetaPathFinder):
    """Sets xarray up for lossatlas right after ``xarray`` has been imported.

    It finds nothing itself: the first time xarray is looked up it takes itself off
    ``sys.meta_path``, asks the other finders for xarray's spec and wraps that spec's
    loader so lossatlas's set-up runs once xarray's module has run."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "xarray":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = None
        for finder in sys.meta_path:  # as the import system would, without this finder
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run_module = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            _xarray_imported()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if "xarray" in sys.modules:
    _xarray_imported()
elif not any(isinstance(f, _AfterXarray) for f in sys.meta_path):
    sys.meta_path.insert(0, _AfterXarray())
