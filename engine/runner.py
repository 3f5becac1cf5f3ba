"""Running a pipeline: validate everything, then run each step's cells into the store.

Everything that can be checked is checked before the store is touched: the plugins
exist, every option parses, point references name earlier steps, the model fits the
data, and each probe's own ``check`` passes. Steps already complete in the store are
skipped; a step with unfinished cells computes only those.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import lossatlas

from .config import RunConfig
from .context import StepContext, blame
from .errors import ConfigError, LossAtlasError, StoreError
from .options import parse_options
from .provenance import checkout_commit, step_facts
from .registry import Registry
from .store import STATUS_NONFINITE, STATUS_PENDING, STATUS_VAR, Store
from .sweep import CellJob, StepRuntime

__all__ = ["Progress", "RunReport", "StepReport", "provenance", "run_pipeline", "validate"]


class Progress:
    """Callbacks for progress display (the CLI passes a rich progress bar)."""

    def step_started(self, step: str, total: int, pending: int) -> None:
        """A step starts with ``pending`` of ``total`` cells left to compute."""

    def cell_done(self, step: str, status: int) -> None:
        """One cell finished with ``status``."""

    def step_finished(self, step: str, report: StepReport) -> None:
        """A step finished."""


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


def problem_facts(ctx: StepContext) -> dict[str, Any]:
    """What the step computed on: model size and kind, data, splits and BatchNorm."""
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
    import xarray
    import zarr

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


def validate(config: RunConfig, registry: Registry, store: Store | None) -> list[StepContext]:
    """Check the whole pipeline without writing; return each step's context."""
    executor = registry.get("executor", config.executor)
    exec_opts = parse_options(
        executor.Options, config.executor_options, f"executor '{config.executor}'"
    )
    contexts = [StepContext(registry, config, step, store) for step in config.steps]
    # Build the model and data once per distinct pair (catches shape mismatches).
    built: dict[str, Any] = {}
    for i, ctx in enumerate(contexts):
        key = json.dumps([ctx.model_config.to_dict(), ctx.dataset_config.to_dict()], sort_keys=True)
        if key in built:
            ctx.__dict__["data"] = built[key].data
            ctx.__dict__["objective"] = built[key].objective
        else:
            _ = ctx.objective
            built[key] = ctx
        with blame(f"step '{ctx.step.name}': probe '{ctx.probe.name}' (check)"):
            ctx.probe.check(ctx.options, ctx)
        # After the probe's own check, which knows better what its options name.
        earlier = [c.step.name for c in contexts[:i]]
        for ref in ctx.point_refs():
            ctx.check_ref(ref, earlier)
    # Last, as it may connect to a cluster: everything cheap is refused first.
    executor.check(exec_opts)
    return contexts


def run_pipeline(
    config: RunConfig,
    store_path: str,
    registry: Registry,
    *,
    progress: Progress | None = None,
    steps: list[str] | None = None,
) -> RunReport:
    """Run ``config`` into the store at ``store_path``; resume whatever is unfinished."""
    progress = progress or Progress()
    store = Store(store_path)
    store.check_writable()
    contexts = validate(config, registry, store)
    if steps:
        unknown = [s for s in steps if s not in {c.step.name for c in contexts}]
        if unknown:
            raise ConfigError(f"--step: no step named {', '.join(unknown)} in the config")
    executor = registry.get("executor", config.executor)
    exec_opts = parse_options(
        executor.Options, config.executor_options, f"executor '{config.executor}'"
    )
    for ctx in contexts:  # refuse a corrupted step before anything is written
        store.check_step(config.name, ctx.step.name)

    science = json.dumps(config.science(), sort_keys=True)
    run_attrs = {
        "config": config.to_json(),
        "config_science": science,
        "config_source": config.source,
        "provenance": json.dumps(provenance(config)),
        "status": "running",
        "started": _now(),
    }
    store.remove_leftovers(config.name)
    existing = store.ensure_run(config.name, run_attrs)
    if existing is not None:
        if existing.get("config_science") != science:
            old = json.loads(existing.get("config_science", "{}"))
            diff = _diff(old, config.science())
            raise StoreError(
                f"run '{config.name}' already exists in '{store.path}' with a different config "
                f"(differs at {diff}); give this run another name (--name) or use a new store"
            )
        store.set_run_attrs(config.name, {"status": "running", "resumed": _now()})

    report = RunReport(run=config.name, store=str(store.path))
    for ctx in contexts:
        if steps and ctx.step.name not in steps:
            continue
        try:
            report.steps.append(_run_step(ctx, store, executor, exec_opts, progress))
        except BaseException as exc:
            # Say in the store why the run stopped ("running" would claim it still runs);
            # the cells already written stay, and the same command resumes them.
            with contextlib.suppress(Exception):  # never mask the error itself
                store.set_run_attrs(
                    config.name,
                    {"status": _stopped_status(exc), "stopped": _now(), "error": _one_line(exc)},
                )
            raise
    all_done = all(
        store.step_ready(config.name, c.step.name)
        and store.step_group(config.name, c.step.name).attrs.get("status") == "complete"
        for c in contexts
    )
    store.set_run_attrs(
        config.name,
        {"status": "complete" if all_done else "partial", "finished": _now(), "error": ""},
    )
    store.consolidate()
    return report


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


def _run_step(
    ctx: StepContext, store: Store, executor: Any, exec_opts: Any, progress: Progress
) -> StepReport:
    run, name = ctx.config.name, ctx.step.name
    rep = StepReport(name=name, probe=ctx.probe.name)
    t0 = time.perf_counter()
    options_json = json.dumps(
        {k: v for k, v in ctx.step.to_dict().items()}, sort_keys=True, default=str
    )
    group = store.step_group(run, name)
    if group is not None and group.attrs.get("template_complete"):
        if group.attrs.get("status") == "complete":
            rep.skipped = True
            rep.cells = int(np.prod(group[STATUS_VAR].shape)) if group[STATUS_VAR].shape else 1
            progress.step_finished(name, rep)
            return rep
        if group.attrs.get("step_config") != options_json:
            raise StoreError(
                f"step '{name}' of run '{run}' in '{store.path}' was started with other options; "
                "use another run name or a new store"
            )
    else:
        with blame(f"step '{name}': probe '{ctx.probe.name}' (plan)"):
            plan = ctx.probe.plan(ctx.options, ctx)

        def plugin_of(kind: str, component: str) -> str:
            record = ctx.registry.provider(kind, component)
            return f"{record.name} ({record.distribution} {record.version})"

        attrs = {
            "probe": ctx.probe.name,
            "probe_plugin": plugin_of("probe", ctx.probe.name),
            "model_plugin": plugin_of("model", ctx.model_config.plugin),
            "dataset_plugin": plugin_of("dataset", ctx.dataset_config.plugin),
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
        store.write_template(run, name, plan, attrs)

    runtime = StepRuntime(ctx, store)
    job = CellJob.make(store, ctx.config, name)
    job.install(runtime)
    status = np.asarray(runtime.group[STATUS_VAR][...])
    shape = status.shape
    pending = [tuple(int(i) for i in idx) for idx in np.argwhere(status == STATUS_PENDING)]
    if not shape:
        pending = [()] if int(status) == STATUS_PENDING else []
    rep.cells = int(np.prod(shape)) if shape else 1
    progress.step_started(name, rep.cells, len(pending))

    def on_done(_index: tuple[int, ...], st: int) -> None:
        rep.computed += 1
        if st == STATUS_NONFINITE:
            rep.nonfinite += 1
        progress.cell_done(name, st)

    try:
        try:
            executor.run(exec_opts, job, pending, on_done)
        finally:
            job.forget()
        status = np.asarray(runtime.group[STATUS_VAR][...])
        left = int(np.sum(status == STATUS_PENDING))
        if left:
            raise LossAtlasError(
                f"step '{name}': {left} cell(s) did not finish; run the same command again "
                "to resume them"
            )
        rep.nonfinite = int(np.sum(status == STATUS_NONFINITE))
        ds = store.open_step(run, name)
        with blame(f"step '{name}': probe '{ctx.probe.name}' (finalize)"):
            extra = ctx.probe.finalize(ctx.options, ctx, ds)
        if extra is not None and len(extra.data_vars):
            store.write_variables(run, name, extra)
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
    rep.seconds = time.perf_counter() - t0
    progress.step_finished(name, rep)
    return rep
