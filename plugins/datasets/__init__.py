"""Built-in data sets: bundled, generated, or read from a local path (never downloaded)."""

from __future__ import annotations

from lossatlas.engine import DatasetPlugin, hookimpl

from .cifar10 import CIFAR10
from .deep_linear import DeepLinearData
from .digits import Digits
from .files import Tensors
from .formula import Formula
from .importpath import PythonData
from .mnist import MNIST
from .mnist1d import MNIST1D
from .permutation import Permutation
from .streaming import OnDisk, TorchDataset
from .synthetic import Blobs, Moons


@hookimpl
def lossatlas_register_datasets() -> list[DatasetPlugin]:
    return [
        Digits(),
        Formula(),
        Tensors(),
        PythonData(),
        MNIST(),
        CIFAR10(),
        MNIST1D(),
        Blobs(),
        Moons(),
        Permutation(),
        DeepLinearData(),
        OnDisk(),
        TorchDataset(),
    ]
