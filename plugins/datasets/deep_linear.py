"""The data of seed 003's deep linear toy: learn the identity map x ↦ x.

With the defaults (``dim = 1``, ``samples = 1``) the one sample is x = y = 1, so the
``deep-linear`` model with two scalar factors has exactly the loss (1 − w1·w2)² of
Goodfellow, Vinyals & Saxe (2015), Fig. 14. Larger ``dim`` draws Gaussian inputs
(regression targets y = x), Saxe et al.'s deep linear regression.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lossatlas.engine import DataBundle, DatasetPlugin, Split

__all__ = ["DeepLinearData"]


@dataclass
class DeepLinearDataOptions:
    dim: int = field(default=1, metadata={"doc": "input = output dimension"})
    samples: int = field(
        default=1,
        metadata={"doc": "samples per split (dim 1, samples 1: the single sample x = y = 1)"},
    )

    def validate(self) -> None:
        if self.dim < 1 or self.samples < 1:
            raise ValueError("options 'dim' and 'samples' must be at least 1")


class DeepLinearData(DatasetPlugin[DeepLinearDataOptions]):
    name = "deep-linear"
    summary = "identity-map regression for the deep linear toy (x = y = 1 by default)"
    Options = DeepLinearDataOptions

    def load(self, options: DeepLinearDataOptions, seed: int) -> DataBundle:
        if options.dim == 1 and options.samples == 1:
            X = torch.ones(1, 1)
            train = Split(X, X[:, 0].clone())
            val = Split(X.clone(), X[:, 0].clone())
        else:
            g = torch.Generator().manual_seed(seed)
            Xt = torch.randn(options.samples, options.dim, generator=g)
            Xv = torch.randn(options.samples, options.dim, generator=g)
            squeeze = options.dim == 1
            train = Split(Xt, Xt[:, 0].clone() if squeeze else Xt.clone())
            val = Split(Xv, Xv[:, 0].clone() if squeeze else Xv.clone())
        return DataBundle(
            train=train,
            validation=val,
            task="regression",
            n_outputs=options.dim,
            description=f"identity map in {options.dim}-d",
            attrs={"seed": seed},
        )
