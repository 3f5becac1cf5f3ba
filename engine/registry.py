"""The plugin manager: loads the ``lossatlas`` entry points and collects components.

Each entry point is loaded on its own. One that fails to import, registers something
that is not a component, raises in a hook, or registers a name that another plugin
already took, is recorded with its name, distribution and error, and the other
plugins load as usual; each error is kept as one line. ``LOSSATLAS_DISABLE_PLUGINS=a,b``
blocks plugins by name; a name there that no plugin has is a warning in
:attr:`Registry.warnings` (the CLI prints them), not an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, Literal

import pluggy

from . import hookspecs
from .components import (
    Component,
    DatasetPlugin,
    Executor,
    LossPlugin,
    ModelPlugin,
    Probe,
    SubspacePlugin,
)
from .errors import PluginError
from .options import suggest

__all__ = ["KINDS", "PluginRecord", "Registry", "make_registry"]

GROUP = "lossatlas"
DISABLE_ENV = "LOSSATLAS_DISABLE_PLUGINS"

Kind = Literal["model", "dataset", "loss", "subspace", "probe", "executor"]

#: kind -> (hook name, base class, plural)
KINDS: dict[str, tuple[str, type, str]] = {
    "model": ("lossatlas_register_models", ModelPlugin, "models"),
    "dataset": ("lossatlas_register_datasets", DatasetPlugin, "datasets"),
    "loss": ("lossatlas_register_losses", LossPlugin, "losses"),
    "subspace": ("lossatlas_register_subspaces", SubspacePlugin, "subspaces"),
    "probe": ("lossatlas_register_probes", Probe, "probes"),
    "executor": ("lossatlas_register_executors", Executor, "executors"),
}


@dataclass
class PluginRecord:
    """What ``lossatlas plugins`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    status: Literal["ok", "failed", "disabled"] = "ok"
    error: str = ""
    registered: dict[str, list[str]] = field(default_factory=dict)

    def describe(self) -> str:
        return f"plugin '{self.name}' (distribution {self.short()})"

    def short(self) -> str:
        """The distribution and version, e.g. ``lossatlas-spirals 0.1.0``."""
        return f"{self.distribution} {self.version}".strip()


@dataclass
class Registry:
    """The loaded plugins and the components they registered, by kind and name."""

    pm: pluggy.PluginManager
    records: list[PluginRecord]
    components: dict[str, dict[str, tuple[Component, PluginRecord]]]
    #: One line each, about the environment rather than a plugin (an unknown name in
    #: ``LOSSATLAS_DISABLE_PLUGINS``); the CLI prints them as ``lossatlas: warning: ...``.
    warnings: list[str] = field(default_factory=list)

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> Any:
        """The component of ``kind`` called ``name``, or a PluginError that says why not."""
        table = self.components[kind]
        if name in table:
            return table[name][0]
        broken = [r for r in self.records if r.status == "failed"]
        named = [r for r in broken if r.name == name or name in _all_names(r)]
        if named:
            r = named[0]
            raise PluginError(
                f"{kind} '{name}' is provided by {r.describe()}, which failed to load: {r.error}"
            )
        disabled = [r for r in self.records if r.status == "disabled" and r.name == name]
        if disabled:
            raise PluginError(f"{kind} '{name}': plugin '{name}' is disabled by {DISABLE_ENV}")
        known = ", ".join(sorted(table)) or "none"
        msg = f"unknown {kind} '{name}'{suggest(name, table)}; known {KINDS[kind][2]}: {known}"
        if broken:
            # Only their names: the errors are one line each in 'lossatlas plugins', and
            # are about those plugins, not about the name asked for.
            failed = ", ".join(f"'{r.name}' ({r.short()})" for r in broken)
            msg += f"; plugins that failed to load (they may provide it): {failed}"
            msg += " ('lossatlas plugins' shows why)"
        off = [r.name for r in self.records if r.status == "disabled"]
        if off:
            msg += f"; plugins disabled by {DISABLE_ENV} (they may provide it): " + ", ".join(off)
        raise PluginError(msg)

    def provider(self, kind: str, name: str) -> PluginRecord:
        return self.components[kind][name][1]


def _all_names(record: PluginRecord) -> list[str]:
    return [n for names in record.registered.values() for n in names]


def _disabled() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {p.strip() for p in raw.split(",") if p.strip()}


def one_line(exc: BaseException) -> str:
    """``exc`` as one line: its type (not for a :class:`PluginError`, whose message says
    it all) and its message with line breaks joined by ``"; "``.

    pluggy's ``PluginValidationError``, for one, is three lines (plugin and hook, the
    hookimpl's signature, the arguments the hookspec lacks).
    """
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if isinstance(exc, PluginError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _entry_points() -> list[Any]:
    eps = list(metadata.entry_points(group=GROUP))
    # Built-ins first, so that a clash is blamed on the newcomer; then a stable order.
    return sorted(eps, key=lambda ep: (_dist_name(ep) != "lossatlas", _dist_name(ep), ep.name))


def _dist_name(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else "unknown"


def _dist_version(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else "?"


def make_registry(
    *,
    entry_points: bool = True,
    plugins: Iterable[tuple[str, ModuleType | object]] = (),
) -> Registry:
    """Create a plugin manager, load plugins and collect their components.

    ``entry_points`` loads the ``lossatlas`` entry-point group (built-ins included);
    ``plugins`` adds ``(name, module_or_object)`` pairs directly (used by tests and by
    programs that embed lossatlas).
    """
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    disabled = _disabled()
    records: list[PluginRecord] = []
    loaded: list[tuple[PluginRecord, object]] = []

    # (name, distribution, version, loader): entry points are loaded one by one below.
    candidates: list[tuple[str, str, str, Callable[[], object]]] = []
    if entry_points:
        for ep in _entry_points():
            candidates.append((ep.name, _dist_name(ep), _dist_version(ep), ep.load))
    for name, obj in plugins:
        candidates.append((name, "in-process", "", lambda obj=obj: obj))

    for name, dist, version, load in candidates:
        record = PluginRecord(name=name, distribution=dist, version=version)
        records.append(record)
        if name in disabled:
            record.status = "disabled"
            continue
        try:
            obj = load()
            pm.register(obj, name=f"{dist}:{name}")
        except Exception as exc:  # any import error of a third party must be contained
            record.status = "failed"
            record.error = one_line(exc)
            continue
        loaded.append((record, obj))

    components: dict[str, dict[str, tuple[Component, PluginRecord]]] = {k: {} for k in KINDS}
    for record, obj in loaded:
        found: dict[str, list[Component]] = {}
        try:
            for kind, (hook, base, _plural) in KINDS.items():
                impl = getattr(obj, hook, None)
                if impl is None:
                    continue
                items = impl() or []
                for item in items:
                    if not isinstance(item, base) or not getattr(item, "name", ""):
                        raise PluginError(
                            f"{hook} returned {item!r}, which is not a named {base.__name__}"
                        )
                    found.setdefault(kind, []).append(item)
            for kind, items in found.items():
                seen: set[str] = set()
                for item in items:
                    taken = components[kind].get(item.name)
                    if taken is not None or item.name in seen:
                        owner = taken[1].describe() if taken else "itself"
                        raise PluginError(
                            f"registers {kind} '{item.name}', which {owner} already registers"
                        )
                    seen.add(item.name)
        except Exception as exc:
            record.status = "failed"
            record.error = one_line(exc)
            record.registered = {k: [i.name for i in v] for k, v in found.items()}
            pm.unregister(obj)
            continue
        for kind, items in found.items():
            for item in items:
                components[kind][item.name] = (item, record)
        record.registered = {k: [i.name for i in v] for k, v in found.items()}
    return Registry(
        pm=pm, records=records, components=components, warnings=_unknown_disabled(disabled, records)
    )


def _unknown_disabled(disabled: set[str], records: list[PluginRecord]) -> list[str]:
    """A warning for each name in ``LOSSATLAS_DISABLE_PLUGINS`` that no plugin has."""
    names = sorted({r.name for r in records})
    return [
        f"{DISABLE_ENV} names no plugin '{name}'{suggest(name, names)}; "
        f"the plugins are: {', '.join(names) or 'none'}"
        for name in sorted(disabled - set(names))
    ]
