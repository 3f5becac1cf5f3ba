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

from ..registry import make_registry
from . import check, export, inspect, plot, plugins, report, rm, run, verify  # noqa: F401
from .base import EXIT_BROKEN_PIPE, IMAGE_SUFFIXES, _pipe_closed, cli

__all__ = ["EXIT_BROKEN_PIPE", "IMAGE_SUFFIXES", "cli", "main", "make_registry"]


def main() -> None:
    """The ``lossatlas`` console script."""
    try:
        cli(prog_name="lossatlas")
    finally:
        try:  # a reader that closed the pipe after the last write: exit quietly too
            sys.stdout.flush()
        except BrokenPipeError:
            _pipe_closed()
