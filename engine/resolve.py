"""``lossatlas check``: a config validated as ``run`` validates it, with every default
filled in and each step's estimate — and nothing written."""

from __future__ import annotations

import dataclasses
from typing import Any

from .components import human_bytes
from .config import RunConfig
from .options import parse_options, to_table
from .registry import Registry
from .runner import estimate_steps, validate
from .sizes import Limits, check_estimate
from .store import Store

__all__ = ["resolve_config"]


def _component(registry: Registry, kind: str, cfg: Any, where: str) -> dict[str, Any]:
    plugin = registry.get(kind, cfg.plugin)
    opts = parse_options(plugin.Options, cfg.options, where)
    table: dict[str, Any] = {"plugin": cfg.plugin, "seed": cfg.seed, **to_table(opts)}
    if cfg.checkpoint:
        table["checkpoint"] = cfg.checkpoint
    return table


def resolve_config(
    config: RunConfig, registry: Registry, store_path: str | None = None
) -> dict[str, Any]:
    """Validate ``config`` (nothing written) and return it resolved: ``config`` (every
    option with its default), ``toml`` (the same as TOML), ``estimates`` per step and
    the machine's ``limits``; a step over a limit raises as ``run`` would."""
    from .report import config_as_toml

    store = Store(store_path) if store_path else None
    if store is not None and not store.exists():
        store = None
    contexts = validate(config, registry, store)
    executor = registry.get("executor", config.executor)
    exec_opts = parse_options(
        executor.Options, config.executor_options, f"executor '{config.executor}'"
    )
    resolved: dict[str, Any] = {
        "name": config.name,
        "description": config.description,
        "seed": config.seed,
        "device": config.device,
        "dtype": config.dtype,
        "executor": config.executor,
        "batch_size": config.batch_size,
        "executor_options": to_table(exec_opts),
        "model": _component(registry, "model", config.model, f"[model] '{config.model.plugin}'"),
        "dataset": _component(
            registry, "dataset", config.dataset, f"[dataset] '{config.dataset.plugin}'"
        ),
        "steps": [],
    }
    if config.style:
        resolved["style"] = config.style
    for ctx in contexts:
        step: dict[str, Any] = {
            "name": ctx.step.name,
            "probe": ctx.step.probe,
            **to_table(ctx.options),
        }
        if ctx.step.model:
            step["model"] = _component(registry, "model", ctx.step.model, "[steps.model]")
        if ctx.step.dataset:
            step["dataset"] = _component(registry, "dataset", ctx.step.dataset, "[steps.dataset]")
        resolved["steps"].append(step)
    limits = Limits.machine(store_path or ".")
    estimates: dict[str, Any] = {}
    for name, est in estimate_steps(contexts).items():
        if est is None:
            estimates[name] = {"text": "no estimate (its probe gives none; checked when planned)"}
            continue
        check_estimate(name, est, limits)
        estimates[name] = {**dataclasses.asdict(est), "text": est.describe()}
    return {
        "config": resolved,
        "toml": config_as_toml(resolved),
        "estimates": estimates,
        "limits": {
            "memory": human_bytes(limits.memory) if limits.memory else "unchecked",
            "store": human_bytes(limits.store) if limits.store else "unchecked",
        },
    }
