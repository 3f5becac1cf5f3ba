"""Running a pipeline: validate everything, then run each step's cells into the store.

Everything that can be checked is checked before the store is touched: the plugins
exist, every option parses, point references name earlier steps, the model fits the
data, and each probe's own ``check`` passes. Steps already complete in the store are
skipped; a step with unfinished cells computes only those.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import xarray as xr

from .components import Estimate, human_bytes
from .config import RunConfig
from .context import StepContext, blame
from .errors import (
    ConfigError,
    LossAtlasError,
    PluginError,
    RunInterrupted,
    StoreError,
)
from .options import parse_options, suggest
from .progress import Progress, reporting
from .provenance import problem_facts, provenance, step_facts
from .registry import Registry
from .selection import check_earlier_steps, left_out
from .session import ExecutorSession
from .sizes import Limits, check_estimate, plan_bytes
from .store import STATUS_NONFINITE, RunLease, Store
from .store.cells import cell_counts
from .sweep import CellJob, StepRuntime, rows_per_cell

__all__ = [
    "ExecutorSession",
    "Progress",
    "RunReport",
    "StepReport",
    "check_earlier_steps",
    "estimate_steps",
    "provenance",
    "run_pipeline",
    "signals_as_interrupts",
    "validate",
]


@dataclass
class StepReport:
    name: str
    probe: str
    cells: int = 0
    computed: int = 0
    nonfinite: int = 0
    skipped: bool = False
    seconds: float = 0.0


@dataclass
class RunReport:
    run: str
    store: str
    steps: list[StepReport] = field(default_factory=list)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def validate(config: RunConfig, registry: Registry, store: Store | None) -> list[StepContext]:
    """Check the whole pipeline without writing; return each step's context."""
    executor = registry.get("executor", config.executor)
    exec_opts = parse_options(
        executor.Options, config.executor_options, f"executor '{config.executor}'"
    )
    contexts = [StepContext(registry, config, step, store) for step in config.steps]
    # Build the model and data once per distinct pair (catches shape mismatches).
    built: dict[str, Any] = {}
    for ctx in contexts:
        key = json.dumps([ctx.model_config.to_dict(), ctx.dataset_config.to_dict()], sort_keys=True)
        if key in built:
            ctx.__dict__["data"] = built[key].data
            ctx.__dict__["objective"] = built[key].objective
        else:
            _ = ctx.objective
            built[key] = ctx
        # Every point and step reference, nested ones included, before the probe's
        # own check: a probe may rely on its references being sound.
        ctx.check_references()
        with blame(f"step '{ctx.step.name}': probe '{ctx.probe.name}' (check)"):
            ctx.probe.check(ctx.options, ctx)
    # Last, as it may connect to a cluster: everything cheap is refused first.
    executor.check(exec_opts)
    return contexts


def estimate_steps(contexts: list[StepContext]) -> dict[str, Estimate | None]:
    """Each step's :class:`Estimate` (None where its probe gives none)."""
    out: dict[str, Estimate | None] = {}
    for ctx in contexts:
        with blame(f"step '{ctx.step.name}': probe '{ctx.probe.name}' (estimate)"):
            out[ctx.step.name] = ctx.probe.estimate(ctx.options, ctx)
    return out


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`RunInterrupted` (a KeyboardInterrupt), so a run
    stopped by a batch system ends as Ctrl-C ends it: status ``interrupted``, the cells
    written kept. Only in the main thread (elsewhere signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if fired:  # a second signal while stopping: stopping already
            return
        fired.append(signum)
        raise RunInterrupted(signum)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, old)


def run_pipeline(
    config: RunConfig,
    store_path: str,
    registry: Registry,
    *,
    progress: Progress | None = None,
    steps: list[str] | None = None,
    rerun: str | None = None,
    wait: bool = False,
    allow_plugin_change: bool = False,
    limits: Limits | None = None,
) -> RunReport:
    """Run ``config`` into the store at ``store_path``; resume whatever is unfinished.

    ``steps``: only these steps. ``rerun``: recompute this step and every step after it
    (their stored results are removed first). ``wait``: wait for another process that
    holds the run instead of refusing. ``allow_plugin_change``: resume a step although a
    plugin it uses changed distribution or version (recorded in its provenance).
    ``limits``: the memory and disk limits each step's estimate must fit (default: the
    machine's available memory and free disk).
    """
    progress = progress or Progress()
    store = Store(store_path)
    if steps:
        names = [s.name for s in config.steps]
        unknown = [s for s in steps if s not in names]
        if unknown:
            raise ConfigError(f"--step: no step named {', '.join(unknown)} in the config")
        check_earlier_steps(config, registry, store, steps)
    store.check_writable()
    contexts = validate(config, registry, store)
    names = [c.step.name for c in contexts]
    if rerun is not None and rerun not in names:
        raise ConfigError(
            f"--rerun: no step named '{rerun}' in the config{suggest(rerun, names)}; "
            f"steps: {', '.join(names)}"
        )
    limits = limits if limits is not None else Limits.machine(store.path)
    estimates = estimate_steps(contexts)
    for name, est in estimates.items():
        if est is not None and (not steps or name in steps):
            check_estimate(name, est, limits)
    executor = registry.get("executor", config.executor)
    exec_opts = parse_options(
        executor.Options, config.executor_options, f"executor '{config.executor}'"
    )
    with signals_as_interrupts(), reporting(progress):
        lease = RunLease(store, config.name).acquire(wait=wait, notice=progress.notice)
        try:
            with ExecutorSession(executor, exec_opts) as session:
                return _run_leased(
                    config,
                    store,
                    contexts,
                    session,
                    progress,
                    lease,
                    steps=steps,
                    rerun=rerun,
                    allow_plugin_change=allow_plugin_change,
                    limits=limits,
                    estimates=estimates,
                )
        except StoreError as exc:
            if steps and exc.context.get("missing") == "result":
                raise left_out(exc, config, store, steps) from None
            raise
        finally:
            lease.release()


#: errno values of OS errors that end a run with one line naming the path.
_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO}


def _os_error(exc: OSError, store: Store) -> StoreError:
    path = exc.filename or store.path
    what = exc.strerror or str(exc)
    fix = (
        "free some space"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT)
        else "make it writable"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
        else "check the disk"
    )
    return StoreError(
        f"cannot write '{path}': {what}; the run is marked failed and the cells written "
        f"are kept: {fix}, then run the same command again to resume"
    )


def _run_leased(
    config: RunConfig,
    store: Store,
    contexts: list[StepContext],
    session: ExecutorSession,
    progress: Progress,
    lease: RunLease,
    *,
    steps: list[str] | None,
    rerun: str | None,
    allow_plugin_change: bool,
    limits: Limits,
    estimates: dict[str, Estimate | None],
) -> RunReport:
    run = config.name
    names = [c.step.name for c in contexts]
    store.remove_leftovers(run)
    for ctx in contexts:  # refuse a corrupted step before anything is written
        store.check_step(run, ctx.step.name)

    science = json.dumps(config.science(), sort_keys=True)
    existing = store.run_attrs(run) if store.has_run(run) else None
    if existing is not None and existing.get("config_science") != science:
        old = json.loads(existing.get("config_science", "{}"))
        diff = _diff(old, config.science())
        raise StoreError(
            f"run '{run}' already exists in '{store.path}' with a different config "
            f"(differs at {diff}); give this run another name (--name) or use a new store"
        )
    chosen = [c for c in contexts if not steps or c.step.name in steps]
    report = RunReport(run=run, store=str(store.path))
    if (
        existing is not None
        and rerun is None
        and all(store.step_status(run, c.step.name) == "complete" for c in chosen)
    ):
        # Nothing to do: say so, and write nothing (not even a timestamp).
        for ctx in chosen:
            rep = StepReport(name=ctx.step.name, probe=ctx.probe.name, skipped=True)
            rep.cells = store.cell_total(run, ctx.step.name)
            progress.step_finished(ctx.step.name, rep)
            report.steps.append(rep)
        return report
    if rerun is not None and existing is not None:
        for name in names[names.index(rerun) :]:
            if store.step_group(run, name) is not None:
                store.drop_step(run, name)
                store.clear_scratch(run, name)
    run_attrs = {
        "config": config.to_json(),
        "config_science": science,
        "config_source": config.source,
        "provenance": json.dumps(provenance(config)),
        "status": "running",
        "started": _now(),
    }
    if store.ensure_run(run, run_attrs) is not None:
        store.set_run_attrs(run, {"status": "running", "resumed": _now()})

    for ctx in chosen:
        try:
            report.steps.append(
                _run_step(
                    ctx,
                    store,
                    session,
                    progress,
                    lease=lease,
                    allow_plugin_change=allow_plugin_change,
                    limits=limits,
                    estimate=estimates.get(ctx.step.name),
                )
            )
        except BaseException as exc:
            # Say in the store why the run stopped ("running" would claim it still runs);
            # the cells already written stay, and the same command resumes them.
            with contextlib.suppress(Exception):  # never mask the error itself
                store.set_run_attrs(
                    run,
                    {"status": _stopped_status(exc), "stopped": _now(), "error": _one_line(exc)},
                )
            if isinstance(exc, OSError) and exc.errno in _OS_ERRORS:
                raise _os_error(exc, store) from exc
            raise
    all_done = all(store.step_status(run, c.step.name) == "complete" for c in contexts)
    store.set_run_attrs(  # consolidates the store's metadata, under its lock
        run,
        {"status": "complete" if all_done else "partial", "finished": _now(), "error": ""},
    )
    return report


def _summary_attrs(
    ctx: StepContext, before: dict[str, Any], attrs: dict[str, Any]
) -> dict[str, Any]:
    """The attrs a probe's ``finalize`` returned that are new or changed, to add to its
    step's (``ds.assign(...)`` returns every stored attr: unchanged ones are ignored);
    changing a key the engine wrote (status, provenance, config ...) is refused."""
    from .store.layout import _jsonable_attrs

    stored = _jsonable_attrs(dict(before))
    given = _jsonable_attrs(dict(attrs))
    attrs = {k: v for k, v in given.items() if k not in stored or stored[k] != v}
    owned = {
        "probe",
        "step",
        "run",
        "status",
        "step_config",
        "config",
        "started",
        "finished",
        "cell_dims",
        "static_vars",
        "summary_vars",
    }
    clash = sorted(set(attrs) & owned)
    if clash:
        raise PluginError(
            f"probe '{ctx.probe.name}': finalize returned attrs {clash}, which belong to the "
            "engine; return the probe's own facts under other names"
        )
    return dict(attrs)


def _stopped_status(exc: BaseException) -> str:
    """``interrupted`` (Ctrl-C, a signal) or ``failed`` (an error): a stopped run's status."""
    return "interrupted" if isinstance(exc, KeyboardInterrupt | SystemExit) else "failed"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _diff(old: Any, new: Any, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                return _diff(old.get(k), new.get(k), f"{path}.{k}" if path else k)
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            if a != b:
                return _diff(a, b, f"{path}[{i}]")
    return f"{path or 'top level'}: {old!r} -> {new!r}"


def _plugin_of(ctx: StepContext, kind: str, component: str) -> str:
    record = ctx.registry.provider(kind, component)
    return f"{record.name} ({record.distribution} {record.version})"


def _plugins(ctx: StepContext) -> dict[str, str]:
    """The plugin (distribution and version) of the step's probe, model and data set."""
    return {
        "probe_plugin": _plugin_of(ctx, "probe", ctx.probe.name),
        "model_plugin": _plugin_of(ctx, "model", ctx.model_config.plugin),
        "dataset_plugin": _plugin_of(ctx, "dataset", ctx.dataset_config.plugin),
    }


def _check_plugins(
    ctx: StepContext, store: Store, attrs: dict[str, Any], allow: bool
) -> dict[str, Any]:
    """Refuse to resume a step whose plugins changed since it started (cells of two
    implementations would mix), unless ``allow``: then the change is recorded."""
    run, name = ctx.config.name, ctx.step.name
    now = _plugins(ctx)
    changed = {k: (attrs.get(k), v) for k, v in now.items() if attrs.get(k) not in (None, v)}
    if not changed:
        return {}
    what = "; ".join(
        f"{k.removesuffix('_plugin')} was {old} and is now {new}"
        for k, (old, new) in changed.items()
    )
    if not allow:
        raise StoreError(
            f"step '{name}' of run '{run}' was started with other plugins ({what}); its "
            "cells would mix two implementations: recompute it with --rerun "
            f"{name}, or resume anyway with --allow-plugin-change (recorded in the step's "
            "provenance)"
        )
    log = list(json.loads(attrs.get("plugin_changes", "[]") or "[]"))
    log.append({"resumed": _now(), **{k: {"was": o, "now": n} for k, (o, n) in changed.items()}})
    return {"plugin_changes": json.dumps(log)}


def _run_step(
    ctx: StepContext,
    store: Store,
    session: ExecutorSession,
    progress: Progress,
    *,
    lease: RunLease | None = None,
    allow_plugin_change: bool = False,
    limits: Limits | None = None,
    estimate: Estimate | None = None,
) -> StepReport:
    run, name = ctx.config.name, ctx.step.name
    rep = StepReport(name=name, probe=ctx.probe.name)
    t0 = time.perf_counter()
    options_json = json.dumps(
        {k: v for k, v in ctx.step.to_dict().items()}, sort_keys=True, default=str
    )
    status_word = store.step_status(run, name)
    if status_word is not None:
        attrs = store.step_attrs(run, name)
        if status_word == "complete":
            rep.skipped = True
            rep.cells = store.cell_total(run, name)
            progress.step_finished(name, rep)
            return rep
        if attrs.get("step_config") != options_json:
            raise StoreError(
                f"step '{name}' of run '{run}' in '{store.path}' was started with other options; "
                f"recompute it with --rerun {name}, or use another run name or a new store"
            )
        changes = _check_plugins(ctx, store, attrs, allow_plugin_change)
        if changes:
            store.set_step_attrs(run, name, changes)
    else:
        with blame(f"step '{name}': probe '{ctx.probe.name}' (plan)"):
            plan = ctx.probe.plan(ctx.options, ctx)
        if limits is not None and limits.store is not None:
            size = plan_bytes(plan)
            if size > limits.store:
                raise ConfigError(
                    f"step '{name}': its result would take {human_bytes(size)} in the store, "
                    f"more than {human_bytes(limits.store)} ({limits.store_source}); make the "
                    "step smaller, or raise the limit with --max-store SIZE"
                )
        attrs = {
            "probe": ctx.probe.name,
            **_plugins(ctx),
            "step": name,
            "run": run,
            "step_config": options_json,
            "config": ctx.config.to_json(),
            **provenance(ctx.config),
            **problem_facts(ctx),
            **step_facts(ctx),
            "started": _now(),
            "status": "running",
        }
        # the step's estimate, made once before the run (it fixes the chunk layout)
        rows = rows_per_cell(ctx, estimate, plan.cell_shape(), ctx.config.rows_per_cell)
        try:
            store.write_template(run, name, plan, attrs, rows_per_cell=rows)
        except BaseException as exc:  # a signal right after the template moved in
            with contextlib.suppress(Exception):
                if store.step_ready(run, name):
                    store.set_step_attrs(
                        run,
                        name,
                        {
                            "status": _stopped_status(exc),
                            "stopped": _now(),
                            "error": _one_line(exc),
                        },
                    )
            raise

    try:
        runtime = StepRuntime(ctx, store)
        job = CellJob.make(store, ctx.config, name, ctx.registry)
        job.install(runtime)
        status = store.cell_status(run, name)
        pending = store.pending_cells(run, name, status)
        rep.cells = int(status.size)
        progress.step_started(name, rep.cells, len(pending))
        # A job computes a unit of work: the cells that share a chunk (one, or several
        # rows of the last cell dim, as the template was written).
        units = runtime.units(pending)

        def on_done(index: tuple[int, ...], st: int) -> None:
            for _ in runtime.unit_cells(index):
                rep.computed += 1
                progress.cell_done(name, st)
            if st == STATUS_NONFINITE:
                rep.nonfinite += 1
            if lease is not None:
                lease.check()

        try:
            session.run(job, units, on_done)
        finally:
            job.forget()
        counts = cell_counts(store.cell_status(run, name))
        left = counts.pending
        if left:
            raise LossAtlasError(
                f"step '{name}': {left} cell(s) did not finish; run the same command again "
                "to resume them"
            )
        rep.nonfinite = counts.nonfinite
        ds = store.open_step(run, name)
        with blame(f"step '{name}': probe '{ctx.probe.name}' (finalize)"):
            extra = ctx.probe.finalize(ctx.options, ctx, ds)
        if extra is not None:
            if not isinstance(extra, xr.Dataset):
                raise PluginError(
                    f"probe '{ctx.probe.name}': finalize returned {type(extra).__name__}, "
                    "not an xarray Dataset or None (a bug in the probe)"
                )
            if len(extra.data_vars):
                # consolidated by the step's last attrs, just below
                store.write_summary(run, name, extra, consolidate=False)
            changed = _summary_attrs(ctx, ds.attrs, extra.attrs) if extra.attrs else {}
            if changed:
                store.set_step_attrs(run, name, changed, consolidate=False)
    except BaseException as exc:
        with contextlib.suppress(Exception):  # never mask the error itself
            store.set_step_attrs(
                run,
                name,
                {"status": _stopped_status(exc), "stopped": _now(), "error": _one_line(exc)},
            )
        raise
    store.set_step_attrs(
        run,
        name,
        {
            "status": "complete",
            "finished": _now(),
            "error": "",
            "cells_nonfinite": rep.nonfinite,
            "seconds": round(time.perf_counter() - t0, 3),
        },
    )
    store.clear_scratch(run, name)
    rep.seconds = time.perf_counter() - t0
    progress.step_finished(name, rep)
    return rep
