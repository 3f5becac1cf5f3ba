"""Built-in model families."""

from __future__ import annotations

from lossatlas.engine import ModelPlugin, hookimpl

from .mlp import MLPModel


@hookimpl
def lossatlas_register_models() -> list[ModelPlugin]:
    return [MLPModel()]
