"""The permutation task of Freeman & Bruna (2017), Appendix E: three points in R²,
each to be mapped onto another one (x_i ↦ x_σ(i)).

Together with a 2-3-2 ReLU network (model ``permutation``) and a copy of a trained net
with two hidden units swapped (probe ``permute-units``) it is the paper's sanity check
of Dynamic String Sampling: the two equally good models are not connected below a
low loss level, and DSS must say so. The train and validation splits are the same three
points (the task has no held-out data).

The default points are the vertices of an equilateral triangle centred at the origin,
x_j = (cos 2πj/3, sin 2πj/3), with the cyclic permutation σ = (1, 2, 0). With the
bias-free 2-3-2 net of the paper (12 parameters), the 3×3 matrix H of hidden activations
(unit × point) must be invertible for a perfect fit (the targets' rows are orthogonal to
(1, 1, 1), which no non-negative rank-2 row space reaches), so any path from θ to the
copy with two hidden units swapped — which flips the sign of det H — crosses a singular
H, where the mean squared error is at least 1/12 ≈ 0.083. Below that level the two
models are provably disconnected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lossatlas.engine import DataBundle, DatasetPlugin, Split

__all__ = ["Permutation", "PermutationOptions"]


@dataclass
class PermutationOptions:
    points: list[list[float]] = field(
        default_factory=lambda: [
            [1.0, 0.0],
            [-0.5, 0.8660254037844386],
            [-0.5, -0.8660254037844386],
        ],
        metadata={"doc": "the input points [[x, y], ...] (two coordinates each)"},
    )
    permutation: list[int] = field(
        default_factory=lambda: [1, 2, 0],
        metadata={"doc": "σ: point i is mapped onto point permutation[i]"},
    )

    def validate(self) -> None:
        n = len(self.points)
        if n < 2 or any(len(p) != 2 for p in self.points):
            raise ValueError(
                f"option 'points' must be at least two [x, y] pairs, got {self.points}"
            )
        if sorted(self.permutation) != list(range(n)):
            raise ValueError(
                f"option 'permutation' must be a permutation of 0..{n - 1}, got {self.permutation}"
            )


class Permutation(DatasetPlugin[PermutationOptions]):
    name = "permutation"
    summary = "three points in R² mapped onto each other (Freeman & Bruna App. E)"
    Options = PermutationOptions

    def load(self, options: PermutationOptions, seed: int) -> DataBundle:
        x = np.asarray(options.points, dtype=np.float64)
        y = x[np.asarray(options.permutation)]
        split = Split(
            torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
        )
        return DataBundle(
            train=split,
            validation=split,
            task="regression",
            n_outputs=2,
            description=f"permute {len(x)} points by {options.permutation}",
            attrs={
                "source": "Freeman & Bruna 2017, Appendix E",
                "points": x.tolist(),
                "permutation": list(options.permutation),
            },
        )
