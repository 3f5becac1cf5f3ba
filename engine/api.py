"""The Python API: run a pipeline and open its results from a notebook or a script.

.. code-block:: python

    import lossatlas

    tree = lossatlas.run("examples/quickstart.toml", "atlas.zarr", device="cpu")
    tree["line"].ds.train_loss.plot()

    tree = lossatlas.open("atlas.zarr")          # every run in the store

:func:`run` does what ``lossatlas run`` does (everything checked before the store is
touched, complete steps skipped, interrupted ones resumed) and raises the same
:class:`~lossatlas.engine.LossAtlasError`\\ s instead of printing them. Plugins defined
in the notebook or the script are passed as ``plugins=[...]``; they reach Dask workers
too (by import path where the workers can import them, otherwise by value).
"""

from __future__ import annotations

import os
import types
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import xarray as xr

    from .config import RunConfig
    from .registry import Registry
    from .runner import Progress

__all__ = ["open", "run"]

#: Keyword overrides :func:`run` applies to the config, as ``lossatlas run``'s options do.
OVERRIDES = ("name", "device", "dtype", "seed", "batch_size")


def _plugin_pairs(plugins: Iterable[Any]) -> list[tuple[str, object]]:
    """``plugins`` as ``(name, module_or_object)``: a pair is kept, a module is named by
    its ``__name__``, another object by its class's name."""
    out: list[tuple[str, object]] = []
    for p in plugins:
        if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str):
            out.append((p[0], p[1]))
        elif isinstance(p, types.ModuleType):
            out.append((p.__name__.rsplit(".", 1)[-1], p))
        else:
            out.append((type(p).__name__, p))
    return out


def make_run_registry(plugins: Iterable[Any] = (), *, isolated: bool = False) -> Registry:
    """The registry :func:`run` uses: the installed plugins (only the built-ins when
    ``isolated``) and ``plugins`` in-process, taking precedence."""
    from .registry import make_registry

    return make_registry(
        plugins=_plugin_pairs(plugins),
        only_distributions={"lossatlas"} if isolated else None,
    )


def load_run_config(config: str | os.PathLike[str] | Mapping[str, Any] | RunConfig) -> RunConfig:
    """A :class:`~lossatlas.engine.config.RunConfig` from a TOML path, a dict (the
    TOML document as Python data) or a RunConfig."""
    from .config import RunConfig, load_config, parse_config

    if isinstance(config, RunConfig):
        return config
    if isinstance(config, Mapping):
        return parse_config(dict(config), source="<dict>", name="run")
    return load_config(config)


def run(
    config: str | os.PathLike[str] | Mapping[str, Any] | RunConfig,
    store: str | os.PathLike[str] = "atlas.zarr",
    *,
    executor: str | None = None,
    workers: int | None = None,
    executor_options: Mapping[str, Any] | None = None,
    plugins: Iterable[Any] = (),
    isolated: bool = False,
    steps: Iterable[str] | None = None,
    rerun: str | None = None,
    wait: bool = False,
    progress: bool | Progress | None = None,
    registry: Registry | None = None,
    **overrides: Any,
) -> xr.DataTree:
    """Run a pipeline into ``store`` and return the run's results as a DataTree.

    Args:
        config: a TOML file, the same document as a dict, or a RunConfig.
        store: the Zarr store (created if missing; shared by many runs).
        executor: an executor plugin by name (``"local"``, ``"dask"`` ...); default
            the config's.
        workers: the executor's ``workers`` option (Dask: LocalCluster processes).
        executor_options: any other executor options (``{"address": "tcp://..."}``).
        plugins: plugins defined here, as modules, objects or ``(name, plugin)`` pairs;
            they take precedence over installed ones and reach Dask workers too.
        isolated: use only the built-in plugins and ``plugins`` (not other installed
            packages): what :mod:`lossatlas.testing` does.
        steps: run only these steps (the earlier steps they use must be stored).
        rerun: recompute this step and every step after it.
        wait: wait for another process that holds the run instead of refusing.
        progress: True: a progress bar per step (in a terminal or Jupyter) and a line
            when each ends; False: nothing; a :class:`~lossatlas.engine.runner.Progress`
            of your own; None (default): the bar where a person watches (a terminal or
            a notebook).
        registry: a registry built already (``plugins``/``isolated`` are then ignored).
        **overrides: config values to override: ``name``, ``device``, ``dtype``,
            ``seed``, ``batch_size``.

    Returns:
        The run's DataTree (``tree[STEP].ds`` is a step's result), opened lazily:
        ``open(store, run)``, the run's group alone.

    Raises:
        LossAtlasError: the config, a plugin, the data or the store is wrong (one line
            that says what and how to fix it); nothing is written in that case.
    """
    from .progress import ConsoleProgress
    from .runner import Progress, run_pipeline

    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        from .errors import ConfigError
        from .options import suggest

        raise ConfigError(
            f"lossatlas.run: unknown keyword '{unknown[0]}'{suggest(unknown[0], OVERRIDES)}; "
            f"config overrides are: {', '.join(OVERRIDES)}"
        )
    cfg = load_run_config(config).with_overrides(executor=executor, **overrides)
    opts = dict(cfg.executor_options)
    opts.update(executor_options or {})
    if workers is not None:
        opts["workers"] = int(workers)
    cfg.executor_options = opts
    reg = registry if registry is not None else make_run_registry(plugins, isolated=isolated)
    if progress is None:
        progress = _watched()
    shown: Progress = (
        progress
        if isinstance(progress, Progress)
        else ConsoleProgress()
        if progress
        else Progress()
    )
    report = run_pipeline(
        cfg,
        str(store),
        reg,
        progress=shown,
        steps=list(steps) if steps else None,
        rerun=rerun,
        wait=wait,
    )
    return open(report.store, report.run)


def _watched() -> bool:
    """Whether a person watches: a notebook, or a terminal on stderr outside CI."""
    import sys

    if "ipykernel" in sys.modules:
        return True
    return sys.stderr.isatty() and not os.environ.get("CI")


def open(store: str | os.PathLike[str], run: str | None = None) -> xr.DataTree:
    """The results in ``store`` as an xarray DataTree (lazily; ``tree.atlas`` lists and
    plots them); ``run``: only that run's node (only its group is opened, not the
    store's other runs). A path that is not a lossatlas store, or a run it does not
    hold, is a :class:`~lossatlas.engine.StoreError`."""
    import xarray as xr

    from .store.reading import check_run, store_to_read

    st = store_to_read(str(store))
    if not st.exists():
        from .errors import StoreError

        raise StoreError(f"'{store}' is not a lossatlas store (nothing there); run one first")
    if run is None:
        return xr.open_datatree(str(st.path), engine="zarr")
    check_run(st, str(store), run)
    tree = xr.open_datatree(str(st.path), engine="zarr", group=run)
    tree.name = run
    return tree
