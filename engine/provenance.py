"""Provenance of what actually ran: the facts a step's attrs record beyond its config.

The config says what was asked for; these say what ran:

- :func:`step_facts` — the resolved options of the model, data set, loss and probe
  (every default filled in), the loss, which forward :meth:`Objective.evaluate` uses
  and why, which parameters are coordinates (frozen ones left out, tied ones counted
  once), and the SHA-256 of every source file of the user's own code the step imports
  (an import-path model, data set or loss);
- :func:`checkout_commit` — the lossatlas git commit when lossatlas is installed from
  a git checkout (``-dirty`` when it has uncommitted changes), else ``""``.

The runner calls them when it writes a step's template, after the whole pipeline has
been validated.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .options import parse_options, to_table

if TYPE_CHECKING:
    from .config import RunConfig

if TYPE_CHECKING:
    from .context import StepContext

__all__ = [
    "checkout_commit",
    "file_sha256",
    "problem_facts",
    "provenance",
    "resolved_options",
    "step_facts",
]


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.cache
def checkout_commit() -> str:
    """``git rev-parse HEAD`` of the checkout lossatlas is imported from (with
    ``-dirty`` if tracked files changed), or ``""`` when it is not a git checkout (an
    installed wheel) or git is not available."""
    import lossatlas

    root = Path(lossatlas.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file() or not (root / ".git").exists():
        return ""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head}-dirty" if dirty else head


def _parsed(ctx: StepContext) -> list[tuple[str, Any, Any, Any]]:
    """``(kind, config table, plugin, parsed options)`` of the step's model, data set
    and (when the config names one) loss: each parsed once, for the resolved options
    and the source hashes both."""
    tables: list[tuple[str, Any]] = [("model", ctx.model_config), ("dataset", ctx.dataset_config)]
    if ctx.config.loss is not None:
        tables.append(("loss", ctx.config.loss))
    out = []
    for kind, cfg in tables:
        plugin = ctx.registry.get(kind, cfg.plugin)
        opts = parse_options(plugin.Options, cfg.options, f"[{kind}] '{cfg.plugin}'")
        out.append((kind, cfg, plugin, opts))
    return out


def resolved_options(ctx: StepContext) -> dict[str, Any]:
    """The options of the step's model, data set, loss and probe with every default
    filled in, as plain data under the keys a config writes
    (:func:`lossatlas.engine.options.to_table`: train's ``from``, not its field name)."""
    return _resolved(ctx, _parsed(ctx))


def _resolved(ctx: StepContext, parsed: list[tuple[str, Any, Any, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, cfg, _plugin, opts in parsed:
        if kind == "loss":
            out[kind] = {"plugin": cfg.plugin, **to_table(opts)}
            continue
        out[kind] = {"plugin": cfg.plugin, "seed": cfg.seed, **to_table(opts)}
        if kind == "model":
            out[kind]["include_frozen"] = cfg.include_frozen
    if ctx.config.loss is None:
        out["loss"] = {"plugin": ctx.loss_plugin_name(), "default_for_task": ctx.data.task}
    out["probe"] = {"probe": ctx.probe.name, **to_table(ctx.options)}
    return out


def _sources(parsed: list[tuple[str, Any, Any, Any]]) -> dict[str, str]:
    """path -> SHA-256 of the user's source files the step's components import."""
    found: dict[str, str] = {}
    for _kind, _cfg, plugin, opts in parsed:
        for path in plugin.sources(opts):
            p = Path(path)
            if p.is_file():
                found[str(p.resolve())] = file_sha256(p)
    return found


def step_facts(ctx: StepContext) -> dict[str, Any]:
    """Attrs of a step's result that record what ran (see the module docstring)."""
    obj = ctx.objective
    layout = obj.layout
    parsed = _parsed(ctx)
    loss = obj.loss_fn
    cfg = ctx.config.loss
    if cfg is not None:
        record = ctx.registry.provider("loss", cfg.plugin)
        loss_plugin = f"{record.name} ({record.distribution} {record.version})"
    else:
        loss_plugin = f"engine default for {ctx.data.task}"
    return {
        "loss": loss.name,
        "loss_plugin": loss_plugin,
        "loss_description": loss.description,
        "loss_units": loss.units,
        "loss_options": json.dumps(dict(loss.options), sort_keys=True, default=str),
        **obj.evaluation_path.attrs(),
        "parameters": layout.describe(),
        "include_frozen": int(layout.include_frozen),
        "frozen_parameters": json.dumps(layout.frozen),
        "n_frozen": int(layout.frozen_size),
        "tied_parameters": json.dumps(layout.tied, sort_keys=True),
        "resolved_options": json.dumps(_resolved(ctx, parsed), sort_keys=True, default=str),
        "source_sha256": json.dumps(_sources(parsed), sort_keys=True),
    }


def problem_facts(ctx: StepContext) -> dict[str, Any]:
    """What the step computed on: model size and kind, data, splits and BatchNorm."""
    import torch

    obj, data = ctx.objective, ctx.data
    bn = [
        m
        for m in obj.model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    facts: dict[str, Any] = {
        "model_class": type(obj.model).__name__,
        "n_params": int(obj.D),
        "task": data.task,
        "n_outputs": int(data.n_outputs),
        "input_shape": list(data.input_shape),
        "n_train": len(data.train),
        "n_validation": len(data.validation),
        "dataset_description": data.description,
        "dataset_attrs": json.dumps(data.attrs, sort_keys=True, default=str),
        "batchnorm": (
            f"{len(bn)} layer(s); running statistics are buffers, set when the model was "
            "built (or loaded) and fixed during this step: points and directions move "
            "the parameters only (the interpolation probe can recompute them per α)"
            if bn
            else "none"
        ),
    }
    return facts


def provenance(config: RunConfig) -> dict[str, Any]:
    """Versions and settings that make a result reproducible."""
    import platform
    import sys

    import numpy as np
    import torch
    import xarray
    import zarr

    import lossatlas

    dev = torch.device(config.device)
    device_name = (
        torch.cuda.get_device_name(dev)
        if dev.type == "cuda" and torch.cuda.is_available()
        else platform.processor() or platform.machine()
    )
    return {
        "lossatlas_version": lossatlas.__version__,
        "lossatlas_commit": checkout_commit(),
        "torch_version": torch.__version__,
        "python_version": sys.version.split()[0],
        "numpy_version": np.__version__,
        "xarray_version": xarray.__version__,
        "zarr_version": zarr.__version__,
        "platform": platform.platform(),
        "device": config.device,
        "device_name": device_name,
        "dtype": config.dtype,
        "seed": config.seed,
    }
