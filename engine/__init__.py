"""The lossatlas engine: everything a plugin author needs is importable from here."""

from __future__ import annotations

from .components import (
    Cell,
    Component,
    DataBundle,
    DatasetPlugin,
    Executor,
    ModelPlugin,
    Plan,
    Probe,
    Split,
    Subspace,
    SubspacePlugin,
    Variable,
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
from .registry import PluginRecord, Registry, make_registry

__all__ = [
    "Cell",
    "Component",
    "ConfigError",
    "DataBundle",
    "DataError",
    "DatasetPlugin",
    "Executor",
    "LossAtlasError",
    "ModelPlugin",
    "NoOptions",
    "Objective",
    "ParamEntry",
    "ParamLayout",
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
    "hookimpl",
    "hookspec",
    "make_registry",
    "parse_options",
    "resolve_device",
    "resolve_dtype",
]
