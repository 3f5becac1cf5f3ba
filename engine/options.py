"""Typed options for components, parsed from TOML tables with clear errors.

Every component (model, data set, subspace, probe, executor) declares its options as a
dataclass. :func:`parse_options` turns a TOML table into an instance of it, checking
each key and each type, and says where a problem is and what would fix it::

    step 'line' (probe 'random-line'): unknown option 'step' (did you mean 'steps'?)
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError
from .points import PointRef, RandomPoint, StepRef, parse_point, parse_random, parse_step_ref

__all__ = [
    "NoOptions",
    "OptimizerOptions",
    "PointRef",
    "StepRef",
    "describe_options",
    "optimizer_options",
    "option",
    "options_schema",
    "parse_options",
    "suggest",
    "to_table",
]

T = TypeVar("T")

#: The constraint keywords of :func:`option`, checked by :func:`parse_options`.
CONSTRAINTS = ("ge", "gt", "le", "lt", "odd", "min_items", "max_items", "choices")


def option(
    default: Any = dataclasses.MISSING,
    *,
    doc: str = "",
    default_factory: Any = dataclasses.MISSING,
    key: str | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    odd: bool = False,
    min_items: int | None = None,
    max_items: int | None = None,
    choices: tuple[Any, ...] | None = None,
    allow_inf: bool = False,
    probes: tuple[str, ...] | None = None,
) -> Any:
    """A field of an options dataclass, declared with its doc, default and constraints.

    ``ge``/``gt``/``le``/``lt`` bound a number (for a list of numbers: every item),
    ``odd`` asks for an odd integer, ``min_items``/``max_items`` bound a list's length,
    ``choices`` restricts the items of a list (a single value: use ``Literal``).
    :func:`parse_options` checks them and says what is wrong in one line ("option
    'points' must be odd and at least 3, got 4"); :func:`options_schema` writes them
    into the JSON Schema, and ``lossatlas plugins NAME`` prints them. ``key`` is the
    TOML key when it is not the field's name (``from``, a Python keyword);
    ``allow_inf`` lets a float be ``inf``; ``probes``: the probes a :class:`StepRef`
    must name. Use it as ``lr: float = option(0.1, doc="learning rate", gt=0)``.
    """
    meta: dict[str, Any] = {"doc": doc}
    for name, value in (
        ("key", key),
        ("ge", ge),
        ("gt", gt),
        ("le", le),
        ("lt", lt),
        ("min_items", min_items),
        ("max_items", max_items),
        ("choices", tuple(choices) if choices is not None else None),
        ("probes", tuple(probes) if probes is not None else None),
    ):
        if value is not None:
            meta[name] = value
    if odd:
        meta["odd"] = True
    if allow_inf:
        meta["allow_inf"] = True
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    if isinstance(default, list | dict | set):
        value = default
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _number_words(meta: typing.Mapping[str, Any]) -> list[str]:
    """The bounds of ``meta`` in words: ``positive``, ``at least 3``, ``below 1``."""
    words = []
    if meta.get("odd"):
        words.append("odd")
    ge, gt, le, lt = (meta.get(k) for k in ("ge", "gt", "le", "lt"))
    if gt == 0 and ge is None:
        words.append("positive")
    elif ge == 0 and gt is None:
        words.append("≥ 0")
    elif ge is not None:
        words.append(f"at least {ge:g}")
    elif gt is not None:
        words.append(f"greater than {gt:g}")
    if le is not None:
        words.append(f"at most {le:g}")
    elif lt is not None:
        words.append(f"below {lt:g}")
    return words


def describe_constraints(meta: typing.Mapping[str, Any]) -> str:
    """The constraints of a field's metadata in words (empty when it has none)."""
    words = _number_words(meta)
    if meta.get("min_items") is not None:
        words.append(f"at least {meta['min_items']} item(s)")
    if meta.get("max_items") is not None:
        words.append(f"at most {meta['max_items']} item(s)")
    if meta.get("choices") is not None:
        words.append("items from " + ", ".join(repr(c) for c in meta["choices"]))
    return " and ".join(words)


def _check_number(value: Any, meta: typing.Mapping[str, Any]) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    ge, gt, le, lt = (meta.get(k) for k in ("ge", "gt", "le", "lt"))
    if ge is not None and not value >= ge:
        return False
    if gt is not None and not value > gt:
        return False
    if le is not None and not value <= le:
        return False
    if lt is not None and not value < lt:
        return False
    return not (meta.get("odd") and isinstance(value, int) and value % 2 == 0)


def check_constraints(value: Any, meta: typing.Mapping[str, Any], where: str) -> None:
    """Raise a one-line ConfigError if ``value`` breaks the constraints in ``meta``."""
    if not any(k in meta for k in CONSTRAINTS):
        return
    items = value if isinstance(value, list | tuple) else None
    if items is not None:
        n = len(items)
        lo, hi = meta.get("min_items"), meta.get("max_items")
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise ConfigError(
                f"{where} needs {describe_constraints({'min_items': lo, 'max_items': hi})}, got {n}"
            )
        choices = meta.get("choices")
        if choices is not None:
            bad = [v for v in items if v not in choices]
            if bad or len(set(map(repr, items))) != n:
                raise ConfigError(
                    f"{where} must list distinct entries of {list(choices)}, got {list(items)}"
                )
        values = list(items)
    else:
        values = [value]
    for v in values:
        if not _check_number(v, meta):
            raise ConfigError(f"{where} must be {' and '.join(_number_words(meta))}, got {v!r}")


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """For components that take no options."""


def suggest(name: str, choices: typing.Iterable[str]) -> str:
    """Return " (did you mean 'x'?)" for the closest choice, or ""."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is PointRef:
        return "point reference"
    if tp is StepRef:
        return "step reference"
    if tp is RandomPoint:
        return "'random' or 'random:R'"
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        inner = _type_name(args[0]) if args else "value"
        return f"list of {inner}"
    if origin is dict:
        return "table"
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str, allow_inf: bool = False) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted. Floats must be
    finite unless ``allow_inf`` (a field's ``metadata={"allow_inf": True}``: inf means
    something there, e.g. NEB's ``spring = inf``)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, allow_inf)
            except ConfigError as exc:
                if getattr(exc, "decisive", False):  # the value is surely meant as this
                    raise
                errors.append(exc)
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            hint = suggest(str(value), [str(c) for c in choices])
            raise ConfigError(
                f"{where}: {value!r} is not one of {', '.join(repr(c) for c in choices)}{hint}"
            )
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a {_type_name(tp)}, got {value!r}")
        args = get_args(tp)
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]", allow_inf) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if tp is PointRef:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a point reference such as 'init' or 'train'")
        try:
            parse_point(value)
        except ConfigError as exc:
            raise _decisive(ConfigError(f"{where}: {exc}")) from None
        return PointRef(value)
    if tp is RandomPoint:
        if not isinstance(value, str) or not (value == "random" or value.startswith("random:")):
            raise ConfigError(f"{where}: expected 'random' or 'random:R', got {value!r}")
        try:
            parse_random(value)
        except ConfigError as exc:
            raise _decisive(ConfigError(f"{where}: {exc}")) from None
        return RandomPoint(value)
    if tp is StepRef:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected the name of a step such as 'train'")
        try:
            parse_step_ref(value)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return StepRef(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        value = float(value)
        if math.isnan(value) or (math.isinf(value) and not allow_inf):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: options of type {tp!r} are not supported")  # pragma: no cover


def _decisive(exc: ConfigError) -> ConfigError:
    """Mark ``exc`` as the answer for a union type (no other member is tried)."""
    exc.decisive = True  # type: ignore[attr-defined]
    return exc


def parse_options(cls: type[T], table: dict[str, Any] | None, where: str) -> T:
    """Build the options dataclass ``cls`` from a TOML ``table``.

    Unknown keys, missing required keys and wrong types raise :class:`ConfigError`
    naming ``where`` (e.g. ``"model 'mlp'"``). After construction, a ``validate()``
    method on the dataclass, if any, is called and may raise ``ConfigError`` or
    ``ValueError`` (turned into a ``ConfigError`` naming ``where``).
    """
    table = dict(table or {})
    if not dataclasses.is_dataclass(cls):  # pragma: no cover - a plugin bug
        raise ConfigError(f"{where}: its Options is not a dataclass")
    hints = get_type_hints(cls)
    # A field may take its TOML key from metadata "key" (e.g. "from", a Python keyword).
    known = {f.metadata.get("key", f.name): f for f in dataclasses.fields(cls) if f.init}
    for key in table:
        if key not in known:
            opts = ", ".join(sorted(known)) or "none"
            raise ConfigError(
                f"{where}: unknown option '{key}'{suggest(key, known)}; options are: {opts}",
                component=where,
                option=key,
            )
    kwargs = {}
    for name, f in known.items():
        if name in table:
            try:
                kwargs[f.name] = _coerce(
                    table[name],
                    hints[f.name],
                    f"{where}: option '{name}'",
                    bool(f.metadata.get("allow_inf", False)),
                )
                check_constraints(kwargs[f.name], f.metadata, f"{where}: option '{name}'")
            except ConfigError as exc:  # structured: which component, which option
                exc.context.setdefault("component", where)
                exc.context.setdefault("option", name)
                raise
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: option '{name}' ({_type_name(hints[f.name])}) is required")
    for name, f in known.items():  # a default is held to the constraints too (an empty list)
        if name not in table and f.metadata.get("min_items"):
            value = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
            if value is not None:
                check_constraints(value, f.metadata, f"{where}: option '{name}'")
    try:
        obj = cls(**kwargs)
        validate = getattr(obj, "validate", None)
        if callable(validate):
            validate()
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return obj


def describe_options(cls: type) -> list[tuple[str, str, str, str]]:
    """(name, type, default, doc) for each option of ``cls``, for help and docs."""
    hints = get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        doc = f.metadata.get("doc", "")
        limits = describe_constraints(f.metadata)
        if limits:
            doc = f"{doc} ({limits})" if doc else limits
        rows.append((f.metadata.get("key", f.name), _type_name(hints[f.name]), default, doc))
    return rows


def to_table(options: Any) -> dict[str, Any]:
    """Parsed options back as the table a config would hold: plain data (dicts, lists,
    ``str`` for :class:`PointRef` and the like), each field under the key a user writes
    (``metadata["key"]``, e.g. train's ``from``), nested options dataclasses the same
    way; options with a ``resolved()`` method give its table instead (every value as it
    will be used, presets applied: the formula data set). ``lossatlas check`` and the
    ``resolved_options`` a step records both read it."""
    table = _plain(options)
    return table if isinstance(table, dict) else {}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        resolve = getattr(value, "resolved", None)
        if callable(resolve):
            return _plain(resolve())
        return {
            f.metadata.get("key", f.name): _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
        }
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


# --------------------------------------------------------------------- JSON Schema


def _type_schema(tp: Any) -> dict[str, Any]:
    origin = get_origin(tp)
    if tp is Any:
        return {}
    if origin in (Union, types.UnionType):
        return {"anyOf": [_type_schema(a) for a in get_args(tp)]}
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin in (list, tuple):
        args = get_args(tp)
        inner = _type_schema(args[0]) if args and args[0] is not Ellipsis else {}
        return {"type": "array", "items": inner}
    if origin is dict or tp is dict:
        return {"type": "object"}
    if tp is PointRef:
        return {
            "type": "string",
            "minLength": 1,
            "description": "point reference: init, init:SEED, STEP, STEP.VAR, STEP@N, "
            "RUN/STEP or checkpoint:PATH",
        }
    if tp is StepRef:
        return {"type": "string", "minLength": 1, "description": "step reference: STEP or RUN/STEP"}
    if tp is RandomPoint:
        return {"type": "string", "pattern": "^random(:.+)?$"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if tp is type(None):
        return {"type": "null"}
    if dataclasses.is_dataclass(tp):
        return options_schema(tp)
    return {}


def _with_bounds(schema: dict[str, Any], meta: typing.Mapping[str, Any]) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    for k, name in (("ge", "minimum"), ("gt", "exclusiveMinimum"), ("le", "maximum")):
        if meta.get(k) is not None:
            bounds[name] = meta[k]
    if meta.get("lt") is not None:
        bounds["exclusiveMaximum"] = meta["lt"]
    if meta.get("odd"):
        bounds["not"] = {"multipleOf": 2}
    if not bounds and meta.get("choices") is None:
        return schema
    if schema.get("type") == "array":
        items = dict(schema.get("items", {}))
        items.update(bounds)
        if meta.get("choices") is not None:
            items["enum"] = list(meta["choices"])
        return {**schema, "items": items}
    return {**schema, **bounds}


def options_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the TOML table ``cls`` parses: each option's
    type, default, description and constraints; unknown keys refused. Editors that read
    JSON Schema (Taplo, VS Code's Even Better TOML) check a config as it is typed with
    it; ``lossatlas plugins NAME --schema`` prints it."""
    hints = get_type_hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = f.metadata.get("key", f.name)
        schema = _with_bounds(_type_schema(hints[f.name]), f.metadata)
        if f.metadata.get("min_items") is not None:
            schema["minItems"] = f.metadata["min_items"]
        if f.metadata.get("max_items") is not None:
            schema["maxItems"] = f.metadata["max_items"]
        doc = f.metadata.get("doc", "")
        limits = describe_constraints(f.metadata)
        if doc or limits:
            schema["description"] = f"{doc} ({limits})" if doc and limits else doc or limits
        if f.default is not dataclasses.MISSING:
            default = _json_default(f.default)
            if default is not None or f.default is None:
                schema["default"] = default
        elif f.default_factory is not dataclasses.MISSING:
            schema["default"] = _json_default(f.default_factory())
        else:
            required.append(key)
        props[key] = schema
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no inf; the description says what the default means
    if isinstance(value, tuple):
        return [_json_default(v) for v in value]
    if isinstance(value, list):
        return [_json_default(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_default(v) for k, v in value.items()}
    if isinstance(value, str | int | float | bool) or value is None:
        return value if not isinstance(value, str) else str(value)
    return None


# ----------------------------------------------------------------- shared options


@dataclasses.dataclass
class OptimizerOptions:
    """The optimiser options every training probe shares (TOML keys ``optimizer``,
    ``lr``, ``momentum``, ``epochs``, ``batch_size``); a probe subclasses it and may
    redeclare a field to change its default (``lr: float = option(1e-3, ...)``).
    :func:`lossatlas.engine.training.train_as` trains with them."""

    optimizer: Literal["sgd", "adam"] = option("sgd", doc="'sgd' (with momentum) or 'adam'")
    lr: float = option(0.1, doc="learning rate", gt=0)
    momentum: float = option(0.0, doc="SGD momentum (0: plain SGD; Adam ignores it)", ge=0, lt=1)
    epochs: int = option(10, doc="passes over the train split", ge=0)
    batch_size: int = option(0, doc="mini-batch size (0: full batch)", ge=0)


def optimizer_options(**defaults: Any) -> type[OptimizerOptions]:
    """:class:`OptimizerOptions` with other defaults (and, by ``docs={name: text}``,
    other help), to subclass: ``class MyOptions(optimizer_options(optimizer="adam",
    lr=1e-3, batch_size=64)): ...``. ``epochs_min=1`` requires at least one epoch."""
    docs = defaults.pop("docs", {})
    epochs_min = defaults.pop("epochs_min", 0)
    unknown = set(defaults) - {f.name for f in dataclasses.fields(OptimizerOptions)}
    if unknown:
        raise TypeError(f"optimizer_options: no option {sorted(unknown)}")
    fields = []
    hints = get_type_hints(OptimizerOptions)
    for f in dataclasses.fields(OptimizerOptions):
        meta = dict(f.metadata)
        if f.name in docs:
            meta["doc"] = docs[f.name]
        if f.name == "epochs" and epochs_min:
            meta["ge"] = epochs_min
        default = defaults.get(f.name, f.default)
        fields.append((f.name, hints[f.name], dataclasses.field(default=default, metadata=meta)))
    cls = dataclasses.make_dataclass("OptimizerOptions", fields, bases=(OptimizerOptions,))
    cls.__module__ = __name__
    return cls
