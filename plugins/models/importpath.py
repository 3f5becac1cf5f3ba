"""The user's own model by import path (model ``python``).

``factory = "my_package.models:make_net"`` names a function (or an ``nn.Module``
class); it is called with the ``kwargs`` table as keyword arguments, plus ``data=``
(the :class:`DataBundle`, for input shape and number of outputs) and ``seed=`` if it
declares parameters of those names. The call runs under ``torch.manual_seed(seed)``
(in a forked RNG state, so the caller's random stream is untouched), so a factory
that initialises with torch's global generator is deterministic by the model seed.

BatchNorm: a module whose BN layers never saw data (``num_batches_tracked == 0``) gets
its running statistics from the first ``bn_samples`` training samples (one forward pass
in train mode, :func:`~lossatlas.plugins.models.resnet.calibrate_batchnorm`), because
the engine evaluates in eval mode and BN's defaults (mean 0, variance 1) normalise
nothing. Statistics the factory computed or loaded are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lossatlas.engine import ConfigError, DataBundle, ModelPlugin
from lossatlas.plugins.datasets.importpath import (
    call_with,
    check_import_path,
    load_object,
    source_files,
)

from .resnet import calibrate_batchnorm, uncalibrated_batchnorm

__all__ = ["PythonModel", "PythonModelOptions"]


@dataclass
class PythonModelOptions:
    factory: str = field(
        metadata={
            "doc": "import path 'package.module:factory' of a function or nn.Module "
            "class that returns the model"
        }
    )
    kwargs: dict[str, Any] = field(
        default_factory=dict, metadata={"doc": "keyword arguments for the factory"}
    )
    search_path: list[str] = field(
        default_factory=list,
        metadata={"doc": 'directories to import from first (e.g. ["."]), besides sys.path'},
    )
    bn_samples: int = field(
        default=512,
        metadata={
            "doc": "BatchNorm layers whose running statistics were never computed get "
            "them from the first N training samples, then frozen (0: leave them)"
        },
    )

    def validate(self) -> None:
        check_import_path(self.factory, "factory")
        if self.bn_samples < 0:
            raise ValueError(f"option 'bn_samples' must be ≥ 0, got {self.bn_samples}")


class PythonModel(ModelPlugin[PythonModelOptions]):
    name = "python"
    summary = "your own torch.nn.Module from a factory given by import path 'module:factory'"
    Options = PythonModelOptions

    def build(self, options: PythonModelOptions, data: DataBundle, seed: int) -> nn.Module:
        where = "model 'python'"
        text = options.factory
        factory = load_object(text, where, options.search_path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = call_with(
                factory, text, where, dict(options.kwargs), {"data": data, "seed": seed}
            )
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"{where}: '{text}' returned a {type(model).__name__}, not a torch.nn.Module"
            )
        if options.bn_samples and uncalibrated_batchnorm(model):
            p0 = next(iter(model.parameters()), None)
            inputs = data.train.inputs[: options.bn_samples]
            if p0 is not None:
                inputs = inputs.to(p0.device, p0.dtype)
            with torch.random.fork_rng(devices=[]):  # dropout etc. must not touch the RNG
                calibrate_batchnorm(model, inputs)
        return model

    def sources(self, options: PythonModelOptions) -> list[str]:
        return source_files(options.factory, "model 'python'", options.search_path)
