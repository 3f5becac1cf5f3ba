"""Built-in probes: the steps of a pipeline."""

from __future__ import annotations

from lossatlas.engine import Probe, hookimpl

from .align import Align
from .curve import Curve
from .dss import DSS
from .eigenpairs import Eigenpairs
from .goldilocks import Goldilocks
from .hessian_directions import HessianDirectionsProbe
from .init_selection import InitSelection
from .interpolation import Interpolation
from .lmc_instability import LMCInstability
from .neb import NEB
from .permute_units import PermuteUnits
from .projection_curvature import ProjectionCurvatureProbe
from .radial_profile import RadialProfile
from .radius_dynamics import RadiusDynamics
from .random_line import RandomLine
from .subspace_training import SubspaceTraining
from .trace import TraceProbe
from .train import Train
from .trajectory import Trajectory


@hookimpl
def lossatlas_register_probes() -> list[Probe]:
    return [
        RandomLine(),
        Train(),
        Trajectory(),
        Goldilocks(),
        RadialProfile(),
        SubspaceTraining(),
        InitSelection(),
        RadiusDynamics(),
        Interpolation(),
        HessianDirectionsProbe(),
        TraceProbe(),
        ProjectionCurvatureProbe(),
        DSS(),
        PermuteUnits(),
        Align(),
        Curve(),
        NEB(),
        LMCInstability(),
        Eigenpairs(),
    ]
