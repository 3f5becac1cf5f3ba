"""Built-in executors."""

from __future__ import annotations

from lossatlas.engine import hookimpl


@hookimpl
def lossatlas_register_executors() -> list:
    return []
