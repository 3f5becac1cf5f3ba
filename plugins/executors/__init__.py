"""Built-in executors."""

from __future__ import annotations

from lossatlas.engine import Executor, hookimpl

from .dask import DaskExecutor
from .local import LocalExecutor


@hookimpl
def lossatlas_register_executors() -> list[Executor]:
    return [LocalExecutor(), DaskExecutor()]
