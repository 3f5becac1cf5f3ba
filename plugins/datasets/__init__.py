"""Built-in data sets: bundled, generated, or read from a local path (never downloaded)."""

from __future__ import annotations

from lossatlas.engine import DatasetPlugin, hookimpl

from .digits import Digits


@hookimpl
def lossatlas_register_datasets() -> list[DatasetPlugin]:
    return [Digits()]
