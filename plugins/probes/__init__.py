"""Built-in probes."""

from __future__ import annotations

from lossatlas.engine import hookimpl


@hookimpl
def lossatlas_register_probes() -> list:
    return []
