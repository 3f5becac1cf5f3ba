"""The JSON Schema of a whole config file, from the installed plugins' options.

Each component's options have a schema (:func:`lossatlas.engine.options_schema`); this
module combines them with the config's own keys: ``[model]``, ``[dataset]`` and
``[loss]`` tables choose their options by ``plugin``, each ``[[steps]]`` table by
``probe``, the executor by its name. ``lossatlas plugins --schema`` prints it; an
editor that reads JSON Schema (Taplo, VS Code's Even Better TOML) then checks a config
as it is typed, and the test suite validates every example config against it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .options import options_schema

if TYPE_CHECKING:
    from .registry import Registry

__all__ = ["config_schema"]

DRAFT = "https://json-schema.org/draft/2020-12/schema"

_SEED = {"type": "integer", "minimum": 0, "description": "seed (default: the run's)"}
_ENGINE_KEYS: dict[str, dict[str, Any]] = {
    "model": {
        "seed": _SEED,
        "checkpoint": {"type": "string", "description": "a state dict saved with torch.save"},
        "include_frozen": {
            "type": "boolean",
            "description": "frozen parameters become coordinates of x",
        },
    },
    "dataset": {
        "seed": {"type": "integer", "minimum": 0, "description": "the split's seed"},
        "checkpoint": {"type": "string"},
    },
    "loss": {},
}


def _chosen_by(
    key: str, choices: dict[str, dict[str, Any]], common: dict[str, Any], what: str
) -> dict[str, Any]:
    """A table whose ``key`` names one of ``choices`` (name -> options schema), whose
    other keys are that choice's options or ``common`` ones."""
    branches = []
    for name, schema in sorted(choices.items()):
        props = {key: {"const": name}, **common, **schema.get("properties", {})}
        then: dict[str, Any] = {"properties": props, "additionalProperties": False}
        if schema.get("required"):
            then["required"] = list(schema["required"])
        branches.append({"if": {"properties": {key: {"const": name}}}, "then": then})
    return {
        "type": "object",
        "description": what,
        "required": [key],
        "properties": {key: {"enum": sorted(choices)}},
        "allOf": branches,
    }


def config_schema(registry: Registry) -> dict[str, Any]:
    """The JSON Schema of a lossatlas config (TOML read as JSON) with every component of
    ``registry`` (see the module docstring)."""

    def options(kind: str) -> dict[str, dict[str, Any]]:
        return {
            name: options_schema(comp.Options)
            for name, (comp, _rec) in registry.components[kind].items()
        }

    model = _chosen_by("plugin", options("model"), _ENGINE_KEYS["model"], "[model]")
    dataset = _chosen_by("plugin", options("dataset"), _ENGINE_KEYS["dataset"], "[dataset]")
    loss = _chosen_by("plugin", options("loss"), {}, "[loss] (default: by the data's task)")
    step_common = {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]*$"},
        "model": model,
        "dataset": dataset,
    }
    step = _chosen_by("probe", options("probe"), step_common, "a [[steps]] table")
    executors = options("executor")
    executor_table = _chosen_by("plugin", executors, {}, "[executor]: the executor and its options")
    by_name = [
        {
            "if": {"properties": {"executor": {"const": name}}, "required": ["executor"]},
            "then": {"properties": {"executor_options": schema}},
        }
        for name, schema in sorted(executors.items())
    ]
    return {
        "$schema": DRAFT,
        "title": "lossatlas config",
        "type": "object",
        "additionalProperties": False,
        "required": ["model", "dataset", "steps"],
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]*$"},
            "description": {"type": "string"},
            "seed": {"type": "integer", "minimum": 0},
            "device": {"type": "string", "pattern": "^(cpu|cuda(:[0-9]+)?|mps)$"},
            "dtype": {"enum": ["float32", "float64"]},
            "batch_size": {"type": "integer", "minimum": 0},
            "executor": {"anyOf": [{"enum": sorted(executors)}, executor_table]},
            "executor_options": {"type": "object"},
            "model": model,
            "dataset": dataset,
            "loss": loss,
            "steps": {"type": "array", "minItems": 1, "items": step},
        },
        "allOf": by_name,
    }
