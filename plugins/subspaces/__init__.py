"""Built-in subspaces: random planes, hyperplanes, Hessian directions ..."""

from __future__ import annotations

from lossatlas.engine import SubspacePlugin, hookimpl

from .directions import FilterNormalized, HessianPlane, ThreePoints, UserDirections
from .hyperplane import Hyperplane, Hypersphere
from .pca_trajectory import PCATrajectory
from .random import RandomDirections


@hookimpl
def lossatlas_register_subspaces() -> list[SubspacePlugin]:
    return [
        RandomDirections(),
        Hyperplane(),
        Hypersphere(),
        FilterNormalized(),
        HessianPlane(),
        UserDirections(),
        ThreePoints(),
        PCATrajectory(),
    ]
