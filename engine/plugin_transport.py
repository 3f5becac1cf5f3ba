"""Sending a registry's in-process plugins to another process (a Dask worker).

A worker rebuilds everything from text (see :mod:`lossatlas.engine.sweep`). Entry-point
plugins it finds by itself; the plugins a program passed to
:func:`~lossatlas.engine.make_registry` (``plugins=[...]``, ``lossatlas.run(plugins=...)``)
travel with the task: by import path where the worker can import the module (the
driver's ``sys.path`` travels too), otherwise pickled by value with cloudpickle (a module
built in a notebook or a test, a plugin object of a class defined in ``__main__``).
"""

from __future__ import annotations

import base64
import importlib
import json
import pickle
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .registry import Registry

__all__ = ["registry_from_spec", "registry_spec"]


def _dumps(obj: object) -> bytes:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - dask.distributed brings cloudpickle
        return pickle.dumps(obj)
    return cloudpickle.dumps(obj)


def _importable(obj: object) -> str | None:
    """The import path of a module the driver imported from a file, else None."""
    if not isinstance(obj, types.ModuleType):
        return None
    name = obj.__name__
    if name == "__main__" or sys.modules.get(name) is not obj:
        return None
    if getattr(obj, "__file__", None) is None and getattr(obj, "__spec__", None) is None:
        return None
    return name


def registry_spec(registry: Registry) -> str:
    """The text :func:`registry_from_spec` rebuilds ``registry`` from ("" for the
    default registry: every entry point, no in-process plugin)."""
    if not registry.in_process and registry.distributions is None and registry.entry_points:
        return ""
    plugins: list[dict[str, str]] = []
    for name, obj in registry.in_process:
        path = _importable(obj)
        if path is not None:
            plugins.append({"name": name, "module": path})
        else:
            blob = base64.b64encode(_dumps(obj)).decode("ascii")
            plugins.append({"name": name, "pickle": blob})
    return json.dumps(
        {
            "plugins": plugins,
            "distributions": None
            if registry.distributions is None
            else sorted(registry.distributions),
            "entry_points": registry.entry_points,
            "sys_path": [p for p in sys.path if isinstance(p, str)],
        },
        sort_keys=True,
    )


def registry_from_spec(spec: str) -> Registry:
    """The registry :func:`registry_spec` described (in this process)."""
    from .registry import make_registry

    if not spec:
        return make_registry()
    data: dict[str, Any] = json.loads(spec)
    for path in data.get("sys_path", []):
        if path and path not in sys.path:  # after the worker's own: never shadow them
            sys.path.append(path)
    plugins: list[tuple[str, object]] = []
    for entry in data["plugins"]:
        if "module" in entry:
            plugins.append((entry["name"], importlib.import_module(entry["module"])))
        else:
            plugins.append((entry["name"], pickle.loads(base64.b64decode(entry["pickle"]))))
    dists = data.get("distributions")
    return make_registry(
        entry_points=bool(data.get("entry_points", True)),
        plugins=plugins,
        only_distributions=None if dists is None else set(dists),
    )
