"""The lossatlas engine: everything a plugin author needs is importable from here.

The names below are loaded when first used (PEP 562), so that ``import lossatlas`` and
the command line's start-up (``lossatlas --help``, ``inspect``, ``rm`` ...) do not import
torch, xarray and zarr before they need them; ``from lossatlas.engine import Probe`` works
as an ordinary import. The xarray accessors (``ds.atlas``) are registered as soon as
xarray is imported (see :mod:`lossatlas`).
"""

from __future__ import annotations

import importlib
import warnings as _warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from .hookspecs import (
        hookimpl,
        hookspec,
    )
    from .html import html_table
    from .losses import (
        Loss,
        cross_entropy,
        default_loss,
        mean_squared_error,
        per_sample_mean,
    )
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
    from .paths import (
        PathSummary,
        plot_paths,
    )
    from .points import (
        Point,
        PointRef,
        RandomPoint,
        StepRef,
        collect_refs,
        parse_point,
        parse_random,
    )
    from .registry import (
        PluginRecord,
        Registry,
        make_registry,
    )
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

#: The submodule each public name is defined in (and the public submodules themselves).
_MODULES: dict[str, tuple[str, ...]] = {
    "components": (
        "Cell",
        "Component",
        "DataBundle",
        "DatasetPlugin",
        "Estimate",
        "Executor",
        "LossPlugin",
        "ModelPlugin",
        "Plan",
        "PlotOptions",
        "Probe",
        "Split",
        "StepContext",
        "Subspace",
        "SubspacePlugin",
        "Variable",
        "grid_estimate",
        "metric_variables",
    ),
    "errors": (
        "ConfigError",
        "DataError",
        "LossAtlasError",
        "PluginError",
        "ShapeError",
        "StoreError",
    ),
    "hookspecs": ("hookimpl", "hookspec"),
    "html": ("html_table",),
    "losses": ("Loss", "cross_entropy", "default_loss", "mean_squared_error", "per_sample_mean"),
    "objective": (
        "EvaluationPath",
        "Objective",
        "ParamEntry",
        "ParamLayout",
        "resolve_device",
        "resolve_dtype",
    ),
    "options": (
        "NoOptions",
        "OptimizerOptions",
        "optimizer_options",
        "option",
        "options_schema",
        "parse_options",
    ),
    "paths": ("PathSummary", "plot_paths"),
    "points": (
        "Point",
        "PointRef",
        "RandomPoint",
        "StepRef",
        "collect_refs",
        "parse_point",
        "parse_random",
    ),
    "registry": ("PluginRecord", "Registry", "make_registry"),
    "streaming": (
        "ArrayRows",
        "DatasetRows",
        "LoaderRows",
        "NpyFile",
        "StreamedSplit",
        "sample_rows",
    ),
    "style": ("use_style",),
}
_EXPORTS: dict[str, str] = {name: module for module, names in _MODULES.items() for name in names}
_SUBMODULES = frozenset({"figures", "progress"})


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first use and keep the name here."""
    if name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    else:
        raise AttributeError(f"module 'lossatlas.engine' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})


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
