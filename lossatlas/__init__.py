"""lossatlas: the experiments of the loss-landscape literature on your own models and data.

:func:`run` runs a pipeline config (a TOML file or a dict) into a Zarr store and returns
its results as an xarray DataTree; :func:`open` opens a store. The engine (hook specs,
objective, sweeps, store, CLI) is :mod:`lossatlas.engine`; the built-in models, data
sets, subspaces and probes are :mod:`lossatlas.plugins`; :mod:`lossatlas.testing` helps
plugin authors test their plugins.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "open", "run"]

# `import lossatlas` is enough for `ds.atlas` / `tree.atlas` on datasets opened with
# plain xarray: importing the engine registers the accessors.
from . import engine as _engine  # noqa: F401
from .engine.api import open, run
