"""Random Gaussian directions through a point, exactly orthonormal."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lossatlas.engine import Subspace, SubspacePlugin

__all__ = ["RandomDirections", "orthonormal_gaussian"]


def orthonormal_gaussian(
    D: int, d: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """(D, d) with orthonormal columns spanning d Gaussian directions (QR, signs fixed)."""
    G = torch.randn(D, d, generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(G)
    Q = Q * torch.sign(torch.diagonal(R)).unsqueeze(0)
    return Q.to(dtype)


@dataclass
class RandomOptions:
    dim: int = field(default=2, metadata={"ge": 1, "doc": "number of directions d"})


class RandomDirections(SubspacePlugin[RandomOptions]):
    name = "random"
    summary = "d Gaussian directions, exactly orthonormal (QR)"
    Options = RandomOptions

    def build(
        self, options: RandomOptions, ctx, origin: torch.Tensor, generator: torch.Generator
    ) -> Subspace:
        Q = orthonormal_gaussian(origin.shape[0], options.dim, generator, origin.dtype)
        return Subspace(
            origin=origin, basis=Q.to(origin.device), attrs={"kind": "random-orthonormal"}
        )
