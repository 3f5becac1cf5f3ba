"""Built-in probes: the steps of a pipeline."""

from __future__ import annotations

from lossatlas.engine import Probe, hookimpl

from .random_line import RandomLine
from .train import Train


@hookimpl
def lossatlas_register_probes() -> list[Probe]:
    return [RandomLine(), Train()]
