"""Built-in model families."""

from __future__ import annotations

from lossatlas.engine import ModelPlugin, hookimpl

from .cnn import CNNModel
from .deep_linear import DeepLinearModel
from .importpath import PythonModel
from .mlp import MLPModel
from .permutation import PermutationNet
from .resnet import ResNetModel


@hookimpl
def lossatlas_register_models() -> list[ModelPlugin]:
    return [
        MLPModel(),
        CNNModel(),
        ResNetModel(),
        PythonModel(),
        PermutationNet(),
        DeepLinearModel(),
    ]
