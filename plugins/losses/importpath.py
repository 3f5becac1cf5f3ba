"""The user's own loss by import path (loss ``python``).

``function = "my_package.losses:loss"`` names a function ``fn(outputs, targets)`` of the
model's outputs on a batch and the batch's targets, written in torch operations
(autograd, ``vmap`` and forward-mode AD run through it). ``reduction`` says what it
returns: ``mean`` (a scalar mean over the batch's samples, what torch's losses return
by default), ``sum``, or ``none`` (one value per sample). ``kwargs`` are bound as
keyword arguments. The objective checks on two samples, before anything runs, that it
returns that shape and depends on the outputs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from lossatlas.engine import ConfigError, DataBundle, Loss, LossPlugin
from lossatlas.plugins.datasets.importpath import check_import_path, load_object, source_files

__all__ = ["PythonLoss", "PythonLossOptions"]


@dataclass
class PythonLossOptions:
    function: str = field(
        metadata={"doc": "import path 'package.module:function' of fn(outputs, targets)"}
    )
    reduction: Literal["mean", "sum", "none"] = field(
        default="mean",
        metadata={
            "doc": "what the function returns: the mean over the batch's samples, their "
            "sum, or one loss per sample"
        },
    )
    kwargs: dict[str, Any] = field(
        default_factory=dict, metadata={"doc": "keyword arguments bound to the function"}
    )
    search_path: list[str] = field(
        default_factory=list,
        metadata={"doc": 'directories to import from first (e.g. ["."]), besides sys.path'},
    )
    task: Literal["any", "classification", "regression"] = field(
        default="any", metadata={"doc": "the task it applies to"}
    )
    units: str = field(default="", metadata={"doc": "what a loss value is measured in"})

    def validate(self) -> None:
        check_import_path(self.function, "function")


class PythonLoss(LossPlugin[PythonLossOptions]):
    name = "python"
    summary = "your own loss fn(outputs, targets) by import path 'module:function'"
    Options = PythonLossOptions

    def build(self, options: PythonLossOptions, data: DataBundle) -> Loss:
        where = "loss 'python'"
        fn = load_object(options.function, where, options.search_path)
        bound = partial(fn, **options.kwargs) if options.kwargs else fn
        if options.kwargs:
            try:
                inspect.signature(fn).bind(None, None, **options.kwargs)
            except TypeError as exc:
                raise ConfigError(
                    f"{where}: '{options.function}' does not take kwargs {options.kwargs!r}: {exc}"
                ) from None
        tasks = ("classification", "regression") if options.task == "any" else (options.task,)
        return Loss(
            name=f"python:{options.function}",
            fn=bound,
            reduction=options.reduction,
            tasks=tasks,
            units=options.units,
            description=f"{options.function}(outputs, targets), reduction {options.reduction}",
            options={"function": options.function, "kwargs": dict(options.kwargs)},
        )

    def sources(self, options: PythonLossOptions) -> list[str]:
        return source_files(options.function, "loss 'python'", options.search_path)
