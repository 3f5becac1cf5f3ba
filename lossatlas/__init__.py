"""lossatlas: the experiments of the loss-landscape literature on your own models and data.

The engine (hook specs, objective, sweeps, store, CLI) is :mod:`lossatlas.engine`; the
built-in models, data sets, subspaces and probes are :mod:`lossatlas.plugins`.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]

# `import lossatlas` is enough for `ds.atlas` / `tree.atlas` on datasets opened with
# plain xarray: importing the engine registers the accessors.
from . import engine as _engine  # noqa: F401
