"""Typed options for components, parsed from TOML tables with clear errors.

Every component (model, data set, subspace, probe, executor) declares its options as a
dataclass. :func:`parse_options` turns a TOML table into an instance of it, checking
each key and each type, and says where a problem is and what would fix it::

    step 'line' (probe 'random-line'): unknown option 'step' (did you mean 'steps'?)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError

__all__ = ["NoOptions", "PointRef", "describe_options", "parse_options", "suggest"]

T = TypeVar("T")


class PointRef(str):
    """A reference to a parameter vector, resolved by the engine.

    Forms: ``"init"`` (the model's initialisation), ``"STEP"`` (the point an earlier
    step produced, its ``point`` variable), ``"STEP.VAR"`` (another variable with a
    ``param`` dim), ``"RUN/STEP[.VAR]"`` (a step of another run in the same store),
    ``"checkpoint:PATH"`` (a state dict saved with ``torch.save``; loaded weights only).
    """


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
        return PointRef(value)
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
                f"{where}: unknown option '{key}'{suggest(key, known)}; options are: {opts}"
            )
    kwargs = {}
    for name, f in known.items():
        if name in table:
            kwargs[f.name] = _coerce(
                table[name],
                hints[f.name],
                f"{where}: option '{name}'",
                bool(f.metadata.get("allow_inf", False)),
            )
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: option '{name}' ({_type_name(hints[f.name])}) is required")
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
        rows.append(
            (
                f.metadata.get("key", f.name),
                _type_name(hints[f.name]),
                default,
                f.metadata.get("doc", ""),
            )
        )
    return rows


def to_table(options: Any) -> dict[str, Any]:
    """The options dataclass back as a plain dict (for provenance)."""
    return dataclasses.asdict(options)
