"""Testing plugins: run configs with in-process plugins, isolated from installed ones.

A plugin author's tests should exercise the code in their working tree, not a copy
installed earlier. Everything here builds a registry of lossatlas's built-in plugins
plus the plugins you pass (modules, objects or ``(name, plugin)`` pairs) and *no other
installed package*, so neither an old installed copy of your plugin nor someone else's
plugin can stand in::

    import lossatlas.testing
    import my_package.plugin as plugin

    def test_my_probe(tmp_path):
        tree = lossatlas.testing.run(CONFIG, tmp_path / "s.zarr", plugins=[plugin])
        assert float(tree["scaling"].ds.train_loss[0]) > 0

The same as pytest fixtures: put ``pytest_plugins = ["lossatlas.testing"]`` in your
``conftest.py`` and ask for ``lossatlas_run`` (a function like :func:`run` whose store
is a fresh temporary folder), ``lossatlas_registry`` (like :func:`registry`) or
``lossatlas_context`` (like :func:`context`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import xarray as xr

    from lossatlas.engine.context import EngineContext
    from lossatlas.engine.registry import Registry

__all__ = [
    "context",
    "lossatlas_context",
    "lossatlas_registry",
    "lossatlas_run",
    "registry",
    "run",
]


def registry(*plugins: Any, installed: bool = False) -> Registry:
    """A registry of the built-in plugins and ``plugins`` (modules, objects or
    ``(name, plugin)`` pairs, in-process, taking precedence); ``installed=True`` loads
    every installed plugin package too. A plugin that fails to load fails the call,
    with its error, instead of being left out quietly."""
    from lossatlas.engine.api import make_run_registry
    from lossatlas.engine.errors import PluginError

    reg = make_run_registry(plugins, isolated=not installed)
    failed = [r for r in reg.records if r.status == "failed" and r.distribution == "in-process"]
    if failed:
        raise PluginError("; ".join(f"plugin '{r.name}' failed to load: {r.error}" for r in failed))
    return reg


def run(
    config: str | os.PathLike[str] | Mapping[str, Any],
    store: str | os.PathLike[str],
    *,
    plugins: Iterable[Any] = (),
    installed: bool = False,
    **kwargs: Any,
) -> xr.DataTree:
    """:func:`lossatlas.run` with :func:`registry` (built-ins and ``plugins`` only) and
    no progress display; ``kwargs`` as for :func:`lossatlas.run` (``executor``,
    ``workers``, ``steps``, ``device`` ...)."""
    from lossatlas.engine.api import run as run_

    kwargs.setdefault("progress", False)
    return run_(config, store, registry=registry(*plugins, installed=installed), **kwargs)


def context(
    config: str | os.PathLike[str] | Mapping[str, Any],
    step: str | None = None,
    *,
    store: str | os.PathLike[str] | None = None,
    plugins: Iterable[Any] = (),
    installed: bool = False,
) -> EngineContext:
    """The step context a probe sees for ``step`` of ``config`` (default: its first
    step), to call a probe's ``check``/``plan``/``compute`` or a subspace's ``build``
    directly; ``store``: a store whose earlier steps it may read."""
    from lossatlas.engine.api import load_run_config
    from lossatlas.engine.context import EngineContext
    from lossatlas.engine.store import Store

    cfg = load_run_config(config)
    chosen = cfg.steps[0] if step is None else cfg.step(step)
    return EngineContext(
        registry(*plugins, installed=installed),
        cfg,
        chosen,
        Store(str(store)) if store is not None else None,
    )


# ------------------------------------------------------------------- pytest fixtures

try:
    import pytest
except ImportError:  # pragma: no cover - fixtures only where pytest is installed
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def lossatlas_run(tmp_path: Path) -> Callable[..., xr.DataTree]:
        """``lossatlas_run(config, plugins=[...], **kwargs)``: :func:`run` into a fresh
        store in the test's temporary folder (``store=`` to choose another)."""

        def _run(config: Any, store: Any = None, **kwargs: Any) -> xr.DataTree:
            return run(config, store or tmp_path / "lossatlas.zarr", **kwargs)

        return _run

    @pytest.fixture
    def lossatlas_registry() -> Callable[..., Registry]:
        """``lossatlas_registry(*plugins)``: :func:`registry`."""
        return registry

    @pytest.fixture
    def lossatlas_context() -> Callable[..., EngineContext]:
        """``lossatlas_context(config, step=None, plugins=[...])``: :func:`context`."""
        return context
