"""Run configs: a TOML pipeline of a model, a data set and named steps.

.. code-block:: toml

    name = "quickstart"      # the run's group in the store (default: the file's stem)
    seed = 0                 # run seed: every cell's seed is derived from it
    device = "cpu"           # cpu | cuda | cuda:N
    dtype = "float32"        # float32 | float64
    executor = "local"       # local | dask | any registered executor; or a table:
                             # [executor] plugin = "dask", workers = 4
    batch_size = 0           # samples per pass (0: full batch)
    rows_per_cell = 0        # cells per unit of work (0: by the step's estimate)
    autocast = ""            # "bf16" | "fp16": evaluations' forward in lower precision
    compile = false          # torch.compile the batched forward of evaluations
    memory_format = "contiguous"  # or "channels_last" (image batches)
    style = "paper.mplstyle" # matplotlib style of its figures (a name or a file; optional)

    [model]
    plugin = "mlp"
    hidden = [100, 100]

    [dataset]
    plugin = "digits"

    [loss]                   # optional: default cross-entropy (classification) or mse
    plugin = "l1"

    [[steps]]
    name = "line"
    probe = "random-line"
    at = "init"

Errors name the file, the table and the key, and say how to fix them.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .options import suggest

__all__ = [
    "ComponentConfig",
    "RunConfig",
    "StepConfig",
    "load_config",
    "parse_config",
    "parse_executor_option",
]

TOP_KEYS = {
    "name": str,
    "seed": int,
    "device": str,
    "dtype": str,
    "executor": str,
    "batch_size": int,
    "description": str,
    "style": str,
    "model": dict,
    "dataset": dict,
    "loss": dict,
    "steps": list,
    "executor_options": dict,
    "rows_per_cell": int,
    "autocast": str,
    "compile": bool,
    "memory_format": str,
}
COMPONENT_KEYS = {"plugin", "seed", "checkpoint", "include_frozen"}
#: the engine's keys in a [dataset] table and in a [loss] table (the rest are options)
DATA_KEYS = {"plugin", "seed", "checkpoint"}
LOSS_KEYS = {"plugin"}
STEP_KEYS = {"name", "probe", "model", "dataset"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass
class ComponentConfig:
    """``[model]``, ``[dataset]`` or ``[loss]``: the plugin, its seed, a checkpoint,
    its options; for a model also ``include_frozen`` (frozen parameters become
    coordinates of x; default false: they are constants)."""

    plugin: str
    seed: int
    options: dict[str, Any]
    checkpoint: str | None = None
    include_frozen: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"plugin": self.plugin, "seed": self.seed, **self.options}
        if self.checkpoint:
            d["checkpoint"] = self.checkpoint
        if self.include_frozen:
            d["include_frozen"] = True
        return d


@dataclass
class StepConfig:
    """One ``[[steps]]`` entry: its name, probe, options and optional overrides."""

    name: str
    probe: str
    options: dict[str, Any]
    model: ComponentConfig | None = None
    dataset: ComponentConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "probe": self.probe, **self.options}
        if self.model:
            d["model"] = self.model.to_dict()
        if self.dataset:
            d["dataset"] = self.dataset.to_dict()
        return d


@dataclass
class RunConfig:
    """A whole pipeline, validated for structure (plugins are checked by the runner)."""

    name: str
    seed: int
    device: str
    dtype: str
    executor: str
    batch_size: int
    model: ComponentConfig
    dataset: ComponentConfig
    steps: list[StepConfig]
    executor_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = "<config>"
    #: ``[loss]``: None means the default of the data set's task.
    loss: ComponentConfig | None = None
    #: Cells of the last cell dim per unit of work (chunk and task); 0: by the engine's
    #: rule on each step's estimate (:func:`lossatlas.engine.sweep.rows_per_cell`). How,
    #: not what: the numbers do not depend on it, so it is not part of :meth:`science`.
    rows_per_cell: int = 0
    #: ``"bf16"``/``"fp16"``: evaluations of the loss at many points run their forward
    #: under torch.autocast (science: it changes the numbers); ``""``: off.
    autocast: str = ""
    #: torch.compile the batched forward of evaluations (how, not what).
    compile: bool = False
    #: ``"channels_last"`` for image batches (how, not what).
    memory_format: str = "contiguous"
    #: The matplotlib style its figures are drawn in (a name, or an absolute path to an
    #: ``.mplstyle`` file); "" for lossatlas's (see :mod:`lossatlas.engine.style`).
    style: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The full config as plain data (stored as JSON in the provenance)."""
        d = {
            "name": self.name,
            "seed": self.seed,
            "device": self.device,
            "dtype": self.dtype,
            "executor": self.executor,
            "batch_size": self.batch_size,
            "description": self.description,
            "model": self.model.to_dict(),
            "dataset": self.dataset.to_dict(),
            "steps": [s.to_dict() for s in self.steps],
            "executor_options": self.executor_options,
        }
        if self.loss is not None:  # absent, not null: older runs keep their identity
            d["loss"] = {"plugin": self.loss.plugin, **self.loss.options}
        if self.rows_per_cell:  # absent when automatic, likewise
            d["rows_per_cell"] = self.rows_per_cell
        if self.autocast:
            d["autocast"] = self.autocast
        if self.compile:
            d["compile"] = True
        if self.memory_format != "contiguous":
            d["memory_format"] = self.memory_format
        if self.style:  # absent when unset, for the same reason
            d["style"] = self.style
        return d

    def science(self) -> dict[str, Any]:
        """What determines the numbers (not where or how they are computed)."""
        d = self.to_dict()
        for k in ("device", "executor", "executor_options", "description"):
            d.pop(k)
        for k in ("rows_per_cell", "compile", "memory_format"):
            d.pop(k, None)
        d.pop("style", None)  # how figures look is not science
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def step(self, name: str) -> StepConfig:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def with_overrides(self, **overrides: Any) -> RunConfig:
        if overrides.get("name") is not None:
            check_run_name(overrides["name"], "--name: run name")
        new = copy.deepcopy(self)
        for k, v in overrides.items():
            if v is not None:
                setattr(new, k, v)
        return new


def check_run_name(name: Any, where: str = "run name") -> str:
    """Refuse a run name that is not letters, digits, '-' and '_' (it names a group of
    the store: '/' would nest groups, '..' leave the store). The same rule for a
    config's ``name`` and for ``--name``."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(
            f"{where} {name!r} must be letters, digits, '-' or '_', starting with a letter "
            "or digit (it names a group in the store)"
        )
    return name


def _component(
    table: Any, where: str, default_seed: int, engine_keys: set[str] = COMPONENT_KEYS
) -> ComponentConfig:
    if not isinstance(table, dict):
        raise ConfigError(f'{where}: expected a table such as {{plugin = "..."}}')
    if "plugin" not in table:
        raise ConfigError(f"{where}: key 'plugin' is required (the name of a registered plugin)")
    plugin = table["plugin"]
    if not isinstance(plugin, str):
        raise ConfigError(f"{where}: key 'plugin' must be a string, got {plugin!r}")
    own = {k: table[k] for k in engine_keys if k in table}
    seed = own.get("seed", default_seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{where}: key 'seed' must be a non-negative integer, got {seed!r}")
    checkpoint = own.get("checkpoint")
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise ConfigError(f"{where}: key 'checkpoint' must be a file path string")
    include_frozen = own.get("include_frozen", False)
    if not isinstance(include_frozen, bool):
        raise ConfigError(
            f"{where}: key 'include_frozen' must be true or false (frozen parameters "
            "become coordinates of the landscape when true)"
        )
    options = {k: v for k, v in table.items() if k not in engine_keys}
    return ComponentConfig(
        plugin=plugin,
        seed=seed,
        options=options,
        checkpoint=checkpoint,
        include_frozen=include_frozen,
    )


def parse_config(
    data: dict[str, Any], source: str = "<config>", name: str | None = None
) -> RunConfig:
    """Validate the structure of a parsed TOML document and build a :class:`RunConfig`."""
    for key, value in data.items():
        if key not in TOP_KEYS:
            raise ConfigError(
                f"{source}: unknown key '{key}'{suggest(key, TOP_KEYS)}; "
                f"top-level keys are: {', '.join(sorted(TOP_KEYS))}"
            )
        want = TOP_KEYS[key]
        if key == "executor" and isinstance(value, dict):
            continue  # the [executor] table, checked below
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if not ok:
            kind = {
                str: "a string",
                int: "an integer",
                dict: "a table",
                list: "a list",
                bool: "true or false",
            }[want]
            raise ConfigError(f"{source}: key '{key}' must be {kind}, got {value!r}")
    run_name = data.get("name") or name or Path(source).stem
    check_run_name(run_name, f"{source}: run name")
    seed = data.get("seed", 0)
    if seed < 0:
        raise ConfigError(f"{source}: key 'seed' must be non-negative, got {seed}")
    batch_size = data.get("batch_size", 0)
    if batch_size < 0:
        raise ConfigError(f"{source}: key 'batch_size' must be 0 (full batch) or positive")
    autocast = data.get("autocast", "")
    if autocast not in ("", "bf16", "fp16"):
        raise ConfigError(
            f'{source}: key \'autocast\' must be "bf16", "fp16" or "" (off), got {autocast!r}'
        )
    memory_format = data.get("memory_format", "contiguous")
    if memory_format not in ("contiguous", "channels_last"):
        raise ConfigError(
            f'{source}: key \'memory_format\' must be "contiguous" or "channels_last", '
            f"got {memory_format!r}"
        )
    rows_per_cell = data.get("rows_per_cell", 0)
    if rows_per_cell < 0:
        raise ConfigError(
            f"{source}: key 'rows_per_cell' must be 0 (chosen by the engine) or positive, "
            f"got {rows_per_cell}"
        )
    if "model" not in data:
        raise ConfigError(f'{source}: a [model] table is required, e.g. [model] plugin = "mlp"')
    if "dataset" not in data:
        raise ConfigError(
            f'{source}: a [dataset] table is required, e.g. [dataset] plugin = "digits"'
        )
    model = _component(data["model"], f"{source}: [model]", seed)
    dataset = _component(data["dataset"], f"{source}: [dataset]", 0, DATA_KEYS)
    loss = _component(data["loss"], f"{source}: [loss]", 0, LOSS_KEYS) if "loss" in data else None
    executor, executor_options = _executor(data, source)
    raw_steps = data.get("steps", [])
    if not raw_steps:
        raise ConfigError(f'{source}: no [[steps]]; add at least one, e.g. probe = "random-line"')
    steps: list[StepConfig] = []
    seen: set[str] = set()
    for i, st in enumerate(raw_steps):
        where = f"{source}: steps[{i}]"
        if not isinstance(st, dict):
            raise ConfigError(f"{where}: each [[steps]] entry must be a table")
        if "probe" not in st or not isinstance(st["probe"], str):
            raise ConfigError(f"{where}: key 'probe' (the probe's name) is required")
        step_name = st.get("name", st["probe"])
        if not isinstance(step_name, str) or not NAME_RE.match(step_name):
            raise ConfigError(f"{where}: step name {step_name!r} must be letters, digits, - or _")
        if step_name in seen:
            raise ConfigError(f"{where}: step name '{step_name}' is used twice; names are unique")
        seen.add(step_name)
        where = f"{source}: step '{step_name}'"
        options = {k: v for k, v in st.items() if k not in STEP_KEYS}
        steps.append(
            StepConfig(
                name=step_name,
                probe=st["probe"],
                options=options,
                model=_component(st["model"], f"{where}: [model]", seed) if "model" in st else None,
                dataset=_component(st["dataset"], f"{where}: [dataset]", 0, DATA_KEYS)
                if "dataset" in st
                else None,
            )
        )
    return RunConfig(
        name=run_name,
        seed=seed,
        device=data.get("device", "cpu"),
        dtype=data.get("dtype", "float32"),
        executor=executor,
        batch_size=batch_size,
        model=model,
        dataset=dataset,
        steps=steps,
        executor_options=executor_options,
        description=data.get("description", ""),
        source=source,
        loss=loss,
        rows_per_cell=rows_per_cell,
        autocast=autocast,
        compile=data.get("compile", False),
        memory_format=memory_format,
        style=data.get("style", ""),
    )


def _executor(data: dict[str, Any], source: str) -> tuple[str, dict[str, Any]]:
    """The executor's name and options: ``executor = "dask"`` with an optional
    ``[executor_options]`` table, or one ``[executor]`` table ``{plugin = "dask", ...}``
    whose other keys are the options (the generic form: any executor, no CLI change)."""
    value = data.get("executor", "local")
    options = dict(data.get("executor_options", {}))
    if isinstance(value, str):
        return value, options
    table = dict(value)
    name = table.pop("plugin", None)
    if not isinstance(name, str):
        raise ConfigError(f"{source}: [executor]: key 'plugin' is required, e.g. plugin = \"dask\"")
    if options and table:
        raise ConfigError(
            f"{source}: executor options are given twice ([executor] and "
            "[executor_options]); keep them in [executor]"
        )
    return name, {**options, **table}


def parse_executor_option(text: str, where: str = "-E") -> tuple[str, Any]:
    """``KEY=VALUE`` of ``-E``/``--executor-option`` as (key, value): VALUE read as a TOML
    value (``4``, ``1.5``, ``true``, ``"text"``), else as a plain string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{where}: '{text}' is not KEY=VALUE (e.g. -E workers=4)")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def _style(value: str, source: Path) -> str:
    """The config file's ``style`` checked (a known name, or an .mplstyle file found
    relative to the config's folder, kept as an absolute path). Checked here, where a
    user's file is read, not in :func:`parse_config`: a Dask worker re-parses the stored
    config, and the style is the driver's business (only ``plot``/``report`` use it)."""
    if not value:
        return ""
    from .style import check_style

    return check_style(value, f"{source}: key 'style'", base=source.parent)


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML config file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file '{p}' cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    config = parse_config(data, source=str(p), name=p.stem)
    config.style = _style(config.style, p)
    return config
