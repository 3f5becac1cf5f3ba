"""Built-in subspaces."""

from __future__ import annotations

from lossatlas.engine import hookimpl


@hookimpl
def lossatlas_register_subspaces() -> list:
    return []
