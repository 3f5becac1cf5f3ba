"""The lossatlas engine: everything a plugin author needs is importable from here."""

from __future__ import annotations

import warnings as _warnings

from . import accessor as _accessor  # noqa: F401  (registers ds.atlas / tree.atlas)
from .components import (
    Cell,
    Component,
    DataBundle,
    DatasetPlugin,
    Estimate,
    Executor,
    ModelPlugin,
    Plan,
    Probe,
    Split,
    Subspace,
    SubspacePlugin,
    Variable,
    grid_estimate,
    metric_variables,
)
from .errors import (
    ConfigError,
    DataError,
    LossAtlasError,
    PluginError,
    ShapeError,
    StoreError,
)
from .hookspecs import hookimpl, hookspec
from .objective import Objective, ParamEntry, ParamLayout, resolve_device, resolve_dtype
from .options import NoOptions, PointRef, parse_options
from .paths import PathSummary, plot_paths
from .registry import PluginRecord, Registry, make_registry

# Zarr format 3 has no consolidated metadata in its specification yet; zarr-python and
# xarray support it, and lossatlas keeps it up to date under a lock (see store.py).
_warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
# String coordinates (e.g. map = ["hessian", "random"]) are stored as fixed-length UTF-32,
# which zarr 3 flags as not yet in its specification; xarray reads them back fine.
_warnings.filterwarnings("ignore", message="The data type \\(FixedLengthUTF32")

__all__ = [
    "Cell",
    "Component",
    "ConfigError",
    "DataBundle",
    "DataError",
    "DatasetPlugin",
    "Estimate",
    "Executor",
    "LossAtlasError",
    "ModelPlugin",
    "NoOptions",
    "Objective",
    "ParamEntry",
    "ParamLayout",
    "PathSummary",
    "Plan",
    "PluginError",
    "PluginRecord",
    "PointRef",
    "Probe",
    "Registry",
    "ShapeError",
    "Split",
    "StoreError",
    "Subspace",
    "SubspacePlugin",
    "Variable",
    "grid_estimate",
    "hookimpl",
    "hookspec",
    "make_registry",
    "metric_variables",
    "parse_options",
    "plot_paths",
    "resolve_device",
    "resolve_dtype",
]
