"""The lossatlas engine: everything a plugin author needs is importable from here."""

from __future__ import annotations

import warnings as _warnings

from . import accessor as _accessor  # noqa: F401  (registers ds.atlas / tree.atlas)
from . import figures, progress
from .components import (
    Cell,
    Component,
    DataBundle,
    DatasetPlugin,
    Estimate,
    Executor,
    LossPlugin,
    ModelPlugin,
    Plan,
    PlotOptions,
    Probe,
    Split,
    StepContext,
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
from .html import html_table
from .losses import Loss, cross_entropy, default_loss, mean_squared_error, per_sample_mean
from .objective import (
    EvaluationPath,
    Objective,
    ParamEntry,
    ParamLayout,
    resolve_device,
    resolve_dtype,
)
from .options import (
    NoOptions,
    OptimizerOptions,
    optimizer_options,
    option,
    options_schema,
    parse_options,
)
from .paths import PathSummary, plot_paths
from .points import (
    Point,
    PointRef,
    RandomPoint,
    StepRef,
    collect_refs,
    parse_point,
    parse_random,
)
from .registry import PluginRecord, Registry, make_registry
from .streaming import (
    ArrayRows,
    DatasetRows,
    LoaderRows,
    NpyFile,
    StreamedSplit,
    sample_rows,
)
from .style import use_style

# Zarr format 3 has no consolidated metadata in its specification yet; zarr-python and
# xarray support it, and lossatlas keeps it up to date under a lock (see store.py).
_warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
# String coordinates (e.g. map = ["hessian", "random"]) are stored as fixed-length UTF-32,
# which zarr 3 flags as not yet in its specification; xarray reads them back fine.
_warnings.filterwarnings("ignore", message="The data type \\(FixedLengthUTF32")

__all__ = [
    "ArrayRows",
    "Cell",
    "Component",
    "ConfigError",
    "DataBundle",
    "DataError",
    "DatasetPlugin",
    "DatasetRows",
    "Estimate",
    "EvaluationPath",
    "Executor",
    "LoaderRows",
    "Loss",
    "LossAtlasError",
    "LossPlugin",
    "ModelPlugin",
    "NoOptions",
    "NpyFile",
    "Objective",
    "OptimizerOptions",
    "ParamEntry",
    "ParamLayout",
    "PathSummary",
    "Plan",
    "PlotOptions",
    "PluginError",
    "PluginRecord",
    "Point",
    "PointRef",
    "Probe",
    "RandomPoint",
    "Registry",
    "ShapeError",
    "Split",
    "StepContext",
    "StepRef",
    "StoreError",
    "StreamedSplit",
    "Subspace",
    "SubspacePlugin",
    "Variable",
    "collect_refs",
    "cross_entropy",
    "default_loss",
    "figures",
    "grid_estimate",
    "hookimpl",
    "hookspec",
    "html_table",
    "make_registry",
    "mean_squared_error",
    "metric_variables",
    "optimizer_options",
    "option",
    "options_schema",
    "parse_options",
    "parse_point",
    "parse_random",
    "per_sample_mean",
    "plot_paths",
    "progress",
    "resolve_device",
    "resolve_dtype",
    "sample_rows",
    "use_style",
]
