"""The ``lossatlas`` command line: a module per command, each parsing its options, calling
the engine and printing; nothing here decides what the engine decides.

=================  ============================================================
``base``           the group, one-line errors, ``--debug``, warnings, registry
``run``            run a pipeline config into a store
``check``          validate a config as ``run`` would; write nothing
``plugins``        the installed plugins, a component's options, JSON Schemas
``inspect``        what a store holds
``rm``             remove a run or a step
``verify``         read every chunk; find and repair damaged cells
``export``         a stored result as netCDF, CSV or VTK
``plot``           draw stored results to an image
``report``         one HTML page of a store
=================  ============================================================
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from . import check, export, inspect, plot, plugins, report, rm, run, verify  # noqa: F401
from .base import EXIT_BROKEN_PIPE, IMAGE_SUFFIXES, _pipe_closed, cli

if TYPE_CHECKING:
    from ..registry import make_registry

__all__ = ["EXIT_BROKEN_PIPE", "IMAGE_SUFFIXES", "cli", "main", "make_registry"]


def __getattr__(name: str) -> Any:
    """``make_registry``, imported when a command first needs plugins (it imports torch:
    ``lossatlas --help``, ``inspect``, ``rm`` and ``verify`` never do)."""
    if name == "make_registry":
        from ..registry import make_registry

        globals()[name] = make_registry
        return make_registry
    raise AttributeError(f"module 'lossatlas.engine.cli' has no attribute {name!r}")


def main() -> None:
    """The ``lossatlas`` console script."""
    try:
        try:
            cli(prog_name="lossatlas")
        finally:
            try:  # a reader that closed the pipe after the last write: exit quietly too
                sys.stdout.flush()
            except BrokenPipeError:
                _pipe_closed()
    except SystemExit as exc:
        _exit(exc.code)


def _exit(code: object) -> None:
    """End the process with ``code`` as ``sys.exit`` would, without tearing down every
    module: the exit handlers run (temporary files, Dask, logging), output is flushed,
    then ``os._exit``. Tearing down an interpreter that imported torch takes 0.4–0.5 s,
    a fifth of a small run (docs/benchmarks.md). Where a thread of ours is still
    running, the ordinary exit waits for it instead."""
    import atexit
    import os
    import threading

    if isinstance(code, bool) or not isinstance(code, int | None):
        print(code, file=sys.stderr)
        code = 1
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if any(not t.daemon and t.is_alive() for t in others):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be written
            pass
    os._exit(code or 0)
