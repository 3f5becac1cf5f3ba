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
from collections.abc import Iterable
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
    status: Literal["ok", "failed", "disabled", "replaced"] = "ok"
    error: str = ""
    registered: dict[str, list[str]] = field(default_factory=dict)
    #: Something to know that is not an error (components left to an in-process
    #: plugin, a hook function not marked with ``@hookimpl``).
    note: str = ""

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
    #: The ``(name, module_or_object)`` plugins given to :func:`make_registry` (a worker
    #: of a distributed executor loads them too: :meth:`worker_spec`).
    in_process: list[tuple[str, object]] = field(default_factory=list)
    #: The distributions whose entry points were loaded (None: all of them).
    distributions: frozenset[str] | None = None
    entry_points: bool = True

    def worker_spec(self) -> str:
        """How another process rebuilds this registry (a JSON text, empty for the default
        one): the in-process plugins by import path where the module can be imported
        there, else pickled by value (cloudpickle), and the driver's ``sys.path``."""
        from .plugin_transport import registry_spec

        return registry_spec(self)

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> Any:
        """The component of ``kind`` called ``name``, or a PluginError that says why not."""
        table = self.components[kind]
        if name in table:
            return table[name][0]
        unavailable = self._unavailable(kind, name)
        if unavailable is not None:
            raise unavailable
        broken = [r for r in self.records if r.status == "failed"]
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
        raise PluginError(msg, kind=kind, name=name)

    def _unavailable(self, kind: str, name: str) -> PluginError | None:
        """Why ``name`` of ``kind`` is not there when a plugin that failed to load or is
        disabled may provide it (None when no plugin is to blame: the name is unknown)."""
        named = [
            r
            for r in self.records
            if r.status == "failed" and (r.name == name or name in _all_names(r))
        ]
        if named:
            r = named[0]
            return PluginError(
                f"{kind} '{name}' is provided by {r.describe()}, which failed to load: {r.error}",
                kind=kind,
                name=name,
            )
        if any(r.status == "disabled" and r.name == name for r in self.records):
            return PluginError(
                f"{kind} '{name}': plugin '{name}' is disabled by {DISABLE_ENV}",
                kind=kind,
                name=name,
            )
        return None

    def provider(self, kind: str, name: str) -> PluginRecord:
        return self.components[kind][name][1]

    def describe(self, name: str) -> list[dict[str, Any]]:
        """Every component called ``name`` (of any kind) as a row: kind, summary, the
        providing plugin, its options (name, type, default, doc) and their JSON Schema;
        a PluginError that says why when there is none."""
        from .options import describe_options, options_schema

        found = [
            (kind, *self.components[kind][name]) for kind in KINDS if name in self.components[kind]
        ]
        if not found:
            for kind in KINDS:  # a component of a plugin that failed to load or is disabled
                unavailable = self._unavailable(kind, name)
                if unavailable is not None:
                    raise unavailable
            every = sorted({n for table in self.components.values() for n in table})
            raise PluginError(
                f"no model, dataset, loss, subspace, probe or executor is named '{name}'"
                f"{suggest(name, every)}; 'lossatlas plugins' lists them"
            )
        rows = []
        for kind, comp, record in found:
            schema = options_schema(comp.Options)
            schema = {"title": f"{kind} '{name}'", "description": comp.summary, **schema}
            rows.append(
                {
                    "kind": kind,
                    "name": name,
                    "summary": comp.summary,
                    "plugin": record.name,
                    "distribution": record.distribution,
                    "version": record.version,
                    "options": [
                        {"name": n, "type": t, "default": d, "doc": doc}
                        for n, t, d, doc in describe_options(comp.Options)
                    ],
                    "schema": schema,
                }
            )
            if kind == "probe":
                from .components import PlotOptions

                rows[-1]["plot_options"] = [
                    {"name": n, "type": t, "default": d, "doc": doc}
                    for n, t, d, doc in describe_options(getattr(comp, "PlotOptions", PlotOptions))
                ]
        return rows


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
    only_distributions: Iterable[str] | None = None,
) -> Registry:
    """Create a plugin manager, load plugins and collect their components.

    ``entry_points`` loads the ``lossatlas`` entry-point group (built-ins included);
    ``only_distributions`` keeps only the entry points of those distributions (e.g.
    ``{"lossatlas"}``: the built-ins, none of the other installed packages). ``plugins``
    adds ``(name, module_or_object)`` pairs directly (tests, notebooks, programs that
    embed lossatlas). An in-process plugin takes precedence over an installed one: an
    entry point that loads the very same module is left out (recorded ``replaced``), and
    a component name both register is the in-process plugin's (the installed plugin
    keeps its other components; its record's ``note`` says which it lost).

    Every hook is called through pluggy (``pm.hook``, one plugin at a time so that a
    failure is that plugin's alone): only functions marked with
    :data:`~lossatlas.engine.hookimpl` are hooks, pluggy's ``tryfirst``/``trylast``,
    wrappers and blocking apply, and a function of a hook's name without the marker is
    reported in the plugin's record instead of being called.
    """
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    disabled = _disabled()
    keep = None if only_distributions is None else set(only_distributions)
    records: list[PluginRecord] = []
    loaded: list[tuple[PluginRecord, object]] = []

    # In-process plugins first: they take precedence over installed ones.
    plugins = list(plugins)
    for name, obj in plugins:
        record = PluginRecord(name=name, distribution="in-process", version="")
        records.append(record)
        if name in disabled:
            record.status = "disabled"
            continue
        _register(pm, record, obj, loaded)
    own = {id(obj) for _r, obj in loaded}
    if entry_points:
        for ep in _entry_points():
            dist = _dist_name(ep)
            if keep is not None and dist not in keep:
                continue
            record = PluginRecord(name=ep.name, distribution=dist, version=_dist_version(ep))
            records.append(record)
            if ep.name in disabled:
                record.status = "disabled"
                pm.set_blocked(f"{dist}:{ep.name}")
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # any import error of a third party must be contained
                record.status = "failed"
                record.error = one_line(exc)
                continue
            if id(obj) in own:
                twin = next(r.name for r, o in loaded if o is obj)
                record.status = "replaced"
                record.note = f"replaced by the in-process plugin '{twin}' (the same module)"
                continue
            _register(pm, record, obj, loaded)

    components: dict[str, dict[str, tuple[Component, PluginRecord]]] = {k: {} for k in KINDS}
    everyone = [obj for _r, obj in loaded]
    for record, obj in loaded:
        found: dict[str, list[Component]] = {}
        lost: list[str] = []
        try:
            for kind, (hook, base, _plural) in KINDS.items():
                for item in _call(pm, hook, obj, everyone):
                    if not isinstance(item, base) or not getattr(item, "name", ""):
                        raise PluginError(
                            f"{hook} returned {item!r}, which is not a named {base.__name__}"
                        )
                    found.setdefault(kind, []).append(item)
            for kind, items in found.items():
                seen: set[str] = set()
                for item in list(items):
                    taken = components[kind].get(item.name)
                    if taken is not None and taken[1].distribution == "in-process" != (
                        record.distribution
                    ):
                        items.remove(item)  # the in-process plugin's wins
                        lost.append(f"{kind} '{item.name}'")
                        continue
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
        record.registered = {k: [i.name for i in v] for k, v in found.items() if v}
        if lost:
            record.note = "left to in-process plugins: " + ", ".join(lost)
        unmarked = _unmarked_hooks(pm, obj)
        if unmarked:
            record.note = "; ".join(
                filter(
                    None,
                    [
                        record.note,
                        f"{', '.join(unmarked)} not called: mark it with "
                        "@lossatlas.engine.hookimpl",
                    ],
                )
            )
    return Registry(
        pm=pm,
        records=records,
        components=components,
        warnings=_unknown_disabled(disabled, records),
        in_process=list(plugins),
        distributions=None if keep is None else frozenset(keep),
        entry_points=entry_points,
    )


def _register(
    pm: pluggy.PluginManager,
    record: PluginRecord,
    obj: object,
    loaded: list[tuple[PluginRecord, object]],
) -> None:
    try:
        pm.register(obj, name=f"{record.distribution}:{record.name}")
    except Exception as exc:  # pluggy refuses a hook's signature, a name twice ...
        record.status = "failed"
        record.error = one_line(exc)
        return
    loaded.append((record, obj))


def _call(pm: pluggy.PluginManager, hook: str, obj: object, everyone: list[object]) -> list[Any]:
    """``hook`` of ``obj`` alone, called through pluggy (its ordering and wrappers):
    the answers of its implementations, flattened (``None`` counts as none)."""
    caller = pm.subset_hook_caller(hook, [o for o in everyone if o is not obj])
    out: list[Any] = []
    for answer in caller():
        if answer is None:
            continue
        if not isinstance(answer, list | tuple):
            raise PluginError(f"{hook} returned {answer!r}, not a list of components")
        out.extend(answer)
    return out


def _unmarked_hooks(pm: pluggy.PluginManager, obj: object) -> list[str]:
    """Functions of ``obj`` named like a hook but not marked as one (pluggy skips them)."""
    marked = {
        impl.function.__name__
        for caller in pm.get_hookcallers(obj) or []
        for impl in caller.get_hookimpls()
        if impl.plugin is obj
    }
    return [
        hook
        for hook, *_ in KINDS.values()
        if callable(getattr(obj, hook, None)) and hook not in marked
    ]


def _unknown_disabled(disabled: set[str], records: list[PluginRecord]) -> list[str]:
    """A warning for each name in ``LOSSATLAS_DISABLE_PLUGINS`` that no plugin has."""
    names = sorted({r.name for r in records})
    return [
        f"{DISABLE_ENV} names no plugin '{name}'{suggest(name, names)}; "
        f"the plugins are: {', '.join(names) or 'none'}"
        for name in sorted(disabled - set(names))
    ]
