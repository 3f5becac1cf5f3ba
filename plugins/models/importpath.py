"""The user's own model by import path (model ``python``).

``factory = "my_package.models:make_net"`` names a function (or an ``nn.Module``
class); it is called with the ``kwargs`` table as keyword arguments, plus ``data=``
(the :class:`DataBundle`, for input shape and number of outputs) and ``seed=`` if it
declares parameters of those names. The call runs under ``torch.manual_seed(seed)``
(in a forked RNG state, so the caller's random stream is untouched), so a factory
that initialises with torch's global generator is deterministic by the model seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lossatlas.engine import ConfigError, DataBundle, ModelPlugin
from lossatlas.plugins.datasets.importpath import call_with, check_import_path, load_object

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

    def validate(self) -> None:
        check_import_path(self.factory, "factory")


class PythonModel(ModelPlugin):
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
        return model
