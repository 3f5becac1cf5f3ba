"""The hook specifications of lossatlas (marker name ``lossatlas``).

A plugin is a module or object with functions named like the specs below, decorated
with :data:`lossatlas.engine.hookimpl`, and declared in the ``lossatlas`` entry-point
group of its distribution::

    [project.entry-points.lossatlas]
    my_models = "my_package.lossatlas_plugin"

Every ``lossatlas_register_*`` hook is called once per plugin manager and returns a
list of component instances; the engine gathers the answers of all plugins, and two
plugins registering the same name is reported as a conflict naming both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .components import (
        DatasetPlugin,
        Executor,
        LossPlugin,
        ModelPlugin,
        Probe,
        SubspacePlugin,
    )

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("lossatlas")
hookimpl = pluggy.HookimplMarker("lossatlas")

# --------------------------------------------------------------------- models & data


@hookspec
def lossatlas_register_models() -> list[ModelPlugin]:
    """Register model families.

    Return a list of :class:`~lossatlas.engine.ModelPlugin` instances, each with a
    unique ``name`` (the key a config's ``[model] plugin = "..."`` selects). Return an
    empty list (or ``None``) to register none. All plugins' answers are collected.
    """


@hookspec
def lossatlas_register_datasets() -> list[DatasetPlugin]:
    """Register data sets.

    Return a list of :class:`~lossatlas.engine.DatasetPlugin` instances, each with a
    unique ``name`` (selected by ``[dataset] plugin = "..."``). A data set is read from
    bundled files, generated, or read from a local path given in its options; it must
    never download. All plugins' answers are collected.
    """


# --------------------------------------------------------------------------- losses


@hookspec
def lossatlas_register_losses() -> list[LossPlugin]:
    """Register loss functions.

    Return a list of :class:`~lossatlas.engine.LossPlugin` instances, each with a
    unique ``name`` (selected by ``[loss] plugin = "..."``; without a ``[loss]`` table
    a run uses ``cross-entropy`` for classification and ``mse`` for regression). A
    plugin's ``build(options, data)`` returns a :class:`~lossatlas.engine.Loss`; it
    must be written in torch operations, as autograd, ``vmap`` and forward-mode AD
    run through it. All plugins' answers are collected.
    """


# ------------------------------------------------------------------------ subspaces


@hookspec
def lossatlas_register_subspaces() -> list[SubspacePlugin]:
    """Register subspace makers (random planes, Hessian directions, hyperplanes ...).

    Return a list of :class:`~lossatlas.engine.SubspacePlugin` instances, each with a
    unique ``name`` (selected in a probe's ``subspace = {plugin = "..."}`` table). All
    plugins' answers are collected.
    """


# --------------------------------------------------------------------------- probes


@hookspec
def lossatlas_register_probes() -> list[Probe]:
    """Register probes: the steps of a pipeline (training runs and measurements).

    Return a list of :class:`~lossatlas.engine.Probe` instances, each with a unique
    ``name`` (selected by ``probe = "..."`` in a ``[[steps]]`` table). All plugins'
    answers are collected.
    """


# ------------------------------------------------------------------------ executors


@hookspec
def lossatlas_register_executors() -> list[Executor]:
    """Register executors that run the cells of a sweep (in-process, Dask ...).

    Return a list of :class:`~lossatlas.engine.Executor` instances, each with a unique
    ``name`` (selected by ``--executor NAME`` or ``executor = "..."`` in a config). All
    plugins' answers are collected.
    """
