"""Built-in probes: the steps of a pipeline."""

from __future__ import annotations

from lossatlas.engine import Probe, hookimpl

from .dss import DSS
from .goldilocks import Goldilocks
from .hessian_directions import HessianDirectionsProbe
from .interpolation import Interpolation
from .permute_units import PermuteUnits
from .random_line import RandomLine
from .train import Train


@hookimpl
def lossatlas_register_probes() -> list[Probe]:
    return [RandomLine(), Train(), Goldilocks(), Interpolation(), HessianDirectionsProbe(), DSS(), PermuteUnits()]
