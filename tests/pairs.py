"""A config head shared by the path tests: two minima of a small digits MLP (float64),
trained from different initialisations and data orders as steps ``a`` and ``b``."""

from __future__ import annotations


def two_minima(name: str) -> str:
    """The TOML of run ``name`` up to and including steps ``a`` and ``b``; append the
    steps that connect them."""
    return TWO_MINIMA.replace("{name}", name)


TWO_MINIMA = """
name = "{name}"
seed = 0
dtype = "float64"
[model]
plugin = "mlp"
hidden = [16]
[dataset]
plugin = "digits"
limit = 300
[[steps]]
name = "a"
probe = "train"
from = "init:1"
lr = 0.1
momentum = 0.9
epochs = 4
batch_size = 32
record_every = 0
[[steps]]
name = "b"
probe = "train"
from = "init:2"
lr = 0.1
momentum = 0.9
epochs = 4
batch_size = 32
seed = 1
record_every = 0
"""
