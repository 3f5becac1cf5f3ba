"""The engine's step context: what a probe sees while it plans and computes.

:class:`EngineContext` implements the :class:`~lossatlas.engine.StepContext` protocol
(declared with the contracts in :mod:`lossatlas.engine.components`). A context is built
from a run config, a step name and a store path alone, so a Dask worker can rebuild it
(nothing is pickled but the config). Models, data and the objective are built lazily
and cached. Point references are parsed by :mod:`lossatlas.engine.points` and checked
and resolved here, once for every probe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .checkpoints import _state_dict_problem, check_bundle, load_checkpoint
from .components import Cell, DataBundle, Subspace
from .config import ComponentConfig, RunConfig, StepConfig
from .errors import ConfigError, DataError, LossAtlasError, ShapeError, StoreError
from .losses import Loss, default_loss, default_loss_name
from .objective import Objective, resolve_device, resolve_dtype
from .options import parse_options, suggest
from .points import FORMS, Point, PointRef, RefUse, StepRef, collect_refs, parse_point

if TYPE_CHECKING:
    import xarray as xr

    from .registry import Registry
    from .store import Store

__all__ = ["EngineContext", "StepContext", "blame", "derive_seed", "load_checkpoint"]


@contextlib.contextmanager
def blame(what: str) -> Iterator[None]:
    """Name the plugin call ``what`` on an unexpected exception raised inside it.

    The exception propagates unchanged (callers may catch their own types), carrying
    ``lossatlas_where = what`` (the innermost call wins; it survives pickling from a
    Dask worker); the CLI prints it as one line naming the plugin. Errors lossatlas
    raises on purpose pass through untouched.
    """
    try:
        yield
    except LossAtlasError:
        raise
    except Exception as exc:
        if getattr(exc, "lossatlas_where", None) is None:
            with contextlib.suppress(AttributeError, TypeError):
                exc.lossatlas_where = what  # type: ignore[attr-defined]
        raise


def derive_seed(*keys: Any) -> int:
    """A 63-bit seed from any JSON-able keys (run seed, step name, coordinates ...).

    The same keys give the same seed in any process and in any order of evaluation.
    """
    text = json.dumps([_plain(k) for k in keys], sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


class EngineContext:
    """The engine's :class:`~lossatlas.engine.StepContext`: the run and step a probe
    works in, and the engine services it may use (see the protocol for each)."""

    def __init__(
        self,
        registry: Registry,
        config: RunConfig,
        step: StepConfig,
        store: Store | None = None,
    ) -> None:
        self.registry = registry
        self.config = config
        self.step = step
        self.store = store
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype)
        self.seed = config.seed
        self.probe = registry.get("probe", step.probe)
        self.options = parse_options(
            self.probe.Options, step.options, f"step '{step.name}' (probe '{step.probe}')"
        )
        self.cache: dict[Any, Any] = {}
        self._points: dict[str, torch.Tensor] = {}

    # ---------------------------------------------------------- components

    @property
    def model_config(self) -> ComponentConfig:
        return self.step.model or self.config.model

    @property
    def dataset_config(self) -> ComponentConfig:
        return self.step.dataset or self.config.dataset

    @cached_property
    def data(self) -> DataBundle:
        """The data set of this step (its own ``[steps.dataset]`` or the run's)."""
        return self.load_data(self.dataset_config)

    def load_data(self, cfg: ComponentConfig) -> DataBundle:
        plugin = self.registry.get("dataset", cfg.plugin)
        opts = parse_options(plugin.Options, cfg.options, f"[dataset] '{cfg.plugin}'")
        with blame(f"dataset '{cfg.plugin}'"):
            bundle = plugin.load(opts, cfg.seed)
        if len(bundle.train) < 1 or len(bundle.validation) < 1:
            raise DataError(f"dataset '{cfg.plugin}' gave an empty train or validation split")
        check_bundle(bundle, f"dataset '{cfg.plugin}'")
        return bundle

    def build_model(self, seed: int | None = None) -> torch.nn.Module:
        """A fresh model of this step, initialised from ``seed`` (default: the model's)."""
        cfg = self.model_config
        plugin = self.registry.get("model", cfg.plugin)
        opts = parse_options(plugin.Options, cfg.options, f"[model] '{cfg.plugin}'")
        data = self.data
        with blame(f"model '{cfg.plugin}'"):
            model = plugin.build(opts, data, cfg.seed if seed is None else seed)
        if cfg.checkpoint and seed is None:
            state = load_checkpoint(cfg.checkpoint)
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                first = _state_dict_problem(exc)
                raise ShapeError(
                    f"checkpoint '{cfg.checkpoint}' does not fit model '{cfg.plugin}': {first}"
                ) from None
        return model

    @cached_property
    def loss(self) -> Loss:
        """The run's loss: its ``[loss]`` plugin, or the default of the data's task."""
        cfg = self.config.loss
        if cfg is None:
            return default_loss(self.data.task)
        plugin = self.registry.get("loss", cfg.plugin)
        opts = parse_options(plugin.Options, cfg.options, f"[loss] '{cfg.plugin}'")
        with blame(f"loss '{cfg.plugin}'"):
            loss = plugin.build(opts, self.data)
        if not isinstance(loss, Loss):
            raise ShapeError(
                f"loss '{cfg.plugin}': build() returned a {type(loss).__name__}, not a "
                "lossatlas.engine.Loss"
            )
        return loss

    def loss_plugin_name(self) -> str:
        """The ``[loss]`` plugin's name, or the task's default (``cross-entropy``/``mse``)."""
        cfg = self.config.loss
        return cfg.plugin if cfg is not None else default_loss_name(self.data.task)

    @cached_property
    def objective(self) -> Objective:
        """The objective of this step's model, data and loss on the run's device and
        dtype (frozen parameters excluded unless ``[model] include_frozen = true``)."""
        bs = self.config.batch_size or None
        return Objective(
            self.build_model(),
            self.data,
            device=self.device,
            dtype=self.dtype,
            batch_size=bs,
            loss=self.loss,
            include_frozen=self.model_config.include_frozen,
            autocast=self.config.autocast or None,
            compile=self.config.compile,
            memory_format=self.config.memory_format,
        )

    # ----------------------------------------------------------------- steps

    def earlier_steps(self) -> list[str]:
        """This run's steps before this one (all of them if this step is not listed)."""
        names = [s.name for s in self.config.steps]
        return names[: names.index(self.step.name)] if self.step.name in names else names

    def step_options(self, ref: str | StepRef) -> dict[str, Any]:
        """The raw options table of the step ``ref`` names: an earlier step of this run
        (its config), or ``RUN/STEP`` (the stored step's config)."""
        p = parse_point(str(ref))
        if p.kind != "step" or p.step is None:
            raise ConfigError(f"'{ref}' names no step")
        if p.run is None:
            return dict(self.config.step(p.step).options)
        attrs = self.load_step(p.step, run=p.run).attrs
        table = json.loads(attrs.get("step_config", "{}"))
        return {k: v for k, v in table.items() if k not in ("name", "probe", "model", "dataset")}

    def step_probe(self, ref: str | StepRef) -> str:
        """The probe of the step ``ref`` names (this run's config, or the store)."""
        p = parse_point(str(ref))
        assert p.step is not None
        if p.run is None:
            return self.config.step(p.step).probe
        return str(self.load_step(p.step, run=p.run).attrs.get("probe", "?"))

    def load_step(self, step: str | StepRef, run: str | None = None) -> xr.Dataset:
        """An earlier step's stored result (of this run, or of ``run``); ``step`` may be
        a reference ``RUN/STEP``."""
        if self.store is None:
            raise StoreError("this context has no store to read earlier steps from")
        if run is None and "/" in str(step):
            run, step = str(step).split("/", 1)
        return self.store.open_step(run or self.config.name, str(step))

    # --------------------------------------------------------------- points

    def init_point(self, seed: int | None = None) -> torch.Tensor:
        """The flat parameters of a fresh initialisation (``seed`` None: the model's)."""
        if seed is None:
            return self.objective.x0.clone()
        model = self.build_model(seed)
        return self.objective.layout.vector(model).to(self.device, self.dtype)

    def resolve_point(self, ref: str | PointRef) -> torch.Tensor:
        """A point x ∈ R^D named by a :class:`~lossatlas.engine.PointRef`."""
        ref = str(ref)
        if ref not in self._points:
            self._points[ref] = self._resolve(parse_point(ref))
        return self._points[ref].clone()

    def _resolve(self, p: Point) -> torch.Tensor:
        ref = p.text
        if p.kind == "init":
            return self.init_point(p.seed)
        if p.kind == "checkpoint":
            assert p.path is not None
            state = load_checkpoint(p.path)
            model = self.build_model()
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                first = _state_dict_problem(exc)
                raise ShapeError(
                    f"step '{self.step.name}': point '{ref}' does not fit the model: {first}"
                ) from None
            return self.objective.layout.vector(model).to(self.device, self.dtype)
        assert p.step is not None
        ds = self.load_step(p.step, run=p.run)
        if p.snapshot is not None:
            row = self._snapshot(p, ds)
        else:
            name = p.variable
            if name not in ds:
                vars_ = [v for v in ds.data_vars if ds[v].dims == ("param",)]
                raise ConfigError(
                    f"point '{ref}': step '{p.step}' has no variable '{name}'"
                    f"{suggest(name, vars_)}; its points are: {', '.join(vars_) or 'none'}"
                )
            arr = ds[name]
            if arr.dims != ("param",):
                raise ConfigError(
                    f"point '{ref}': variable '{name}' has dims {arr.dims}, not (param,)"
                )
            row = np.asarray(arr.values)
        x = torch.as_tensor(row, dtype=self.dtype, device=self.device)
        D = self.objective.D
        if x.shape[0] != D:
            raise ShapeError(f"point '{ref}' has {x.shape[0]} parameters but the model has D={D}")
        return x

    @staticmethod
    def _snapshot(p: Point, ds: xr.Dataset) -> np.ndarray:
        """The snapshot θ(t = N) a train step recorded in its ``trajectory``."""
        ref, base = p.text, p.text.rpartition("@")[0]
        if "trajectory" not in ds or "record" not in ds.coords:
            raise ConfigError(
                f"point '{ref}': step '{base}' recorded no trajectory; 'STEP@N' needs a "
                'step with probe = "train"'
            )
        steps = recorded_steps(ds)
        hit = np.flatnonzero(steps == int(p.snapshot or 0))
        row = None if not len(hit) else np.asarray(ds["trajectory"].values[hit[0]])
        if row is None or not np.all(np.isfinite(row)):
            finite = np.all(np.isfinite(np.asarray(ds["trajectory"].values)), axis=1)
            have = steps[finite]
            near = have[np.argsort(np.abs(have - int(p.snapshot or 0)), kind="stable")[:3]]
            raise ConfigError(
                f"point '{ref}': step '{base}' has no snapshot at optimizer step {p.snapshot}; "
                f"the nearest recorded steps are {', '.join(str(int(k)) for k in sorted(near))} "
                f"({len(have)} snapshots, steps {int(have.min())}…{int(have.max())})"
            )
        return row

    @staticmethod
    def parse_ref(ref: str) -> tuple[str | None, str, str | None]:
        """``[RUN/]STEP[.VAR]`` as (run, step, var). Prefer :func:`lossatlas.engine.points.
        parse_point`, which knows every form."""
        run = None
        if "/" in ref:
            run, ref = ref.split("/", 1)
        step, _, var = ref.partition(".")
        return run, step.split("@", 1)[0], var or None

    def check_ref(
        self,
        ref: str,
        earlier: list[str] | None = None,
        point: bool = True,
        probes: tuple[str, ...] | None = None,
        option: str = "",
    ) -> None:
        """Fail before anything runs if a reference cannot resolve: an earlier step of
        this run that does not exist or (by its probe's :attr:`Probe.points`) has no such
        point, a stored step of another run without it, a malformed ``init:N``, a
        missing checkpoint or one that does not fit the model. ``point=False``: the
        reference names a step, not a point (no variable is checked); ``probes``: the
        probes that step must run. ``earlier`` defaults to :meth:`earlier_steps`."""
        ref = str(ref)
        earlier = self.earlier_steps() if earlier is None else earlier
        where = f"step '{self.step.name}': point '{ref}'"
        try:
            p = parse_point(ref)
        except ConfigError as exc:
            raise ConfigError(f"step '{self.step.name}': {exc}") from None
        if p.kind == "init":
            return
        if p.kind == "checkpoint":
            path = Path(p.path or "").expanduser()
            if not path.is_file():
                raise DataError(f"step '{self.step.name}': checkpoint '{path}' does not exist")
            self.resolve_point(ref)  # loads it into the model; kept for the step's use
            return
        step, run = p.step or "", p.run
        if run is None and step not in earlier:
            raise ConfigError(
                f"step '{self.step.name}': point '{ref}' names no earlier step"
                f"{suggest(step, earlier)}; earlier steps: {', '.join(earlier) or 'none'}; "
                f"other forms: {FORMS}"
            )
        if run is not None and (self.store is None or not self.store.step_ready(run, step)):
            raise ConfigError(
                f"step '{self.step.name}': point '{ref}': the store has no step '{step}' "
                f"of run '{run}'"
            )
        if probes:
            probe = self.step_probe(ref)
            if probe not in probes:
                what = " or ".join(probes)
                name = f"option '{option}'" if option else "it"
                raise ConfigError(
                    f"step '{self.step.name}': '{ref}' is not a {what} step (its probe is "
                    f"'{probe}'); point {name} at a step with probe = \"{probes[0]}\""
                )
        if not point or p.snapshot is not None:
            return
        name = p.variable
        if run is None:
            source = self.config.step(step)
            probe_ = self.registry.get("probe", source.probe)
            if probe_.points is None:  # a probe that does not declare its points
                return
            points = list(probe_.points)
            what = f"step '{step}' (probe '{source.probe}')"
        else:
            assert self.store is not None
            ds = self.store.open_step(run, step)
            points = [v for v in ds.data_vars if ds[v].dims == ("param",)]
            what = f"step '{step}' of run '{run}'"
        if name not in points:
            raise ConfigError(
                f"{where}: {what} has no point '{name}'{suggest(name, points)}; "
                f"its points are: {', '.join(points) or 'none'}"
                + ("" if points else "; points come from steps like train")
            )

    def references(self) -> list[RefUse]:
        """Every point and step reference in this step's options, subspace tables
        included (parsed with their plugins' options), with where each one sits."""
        return collect_refs(self.options, expand=self._expand_table)

    def _expand_table(self, table: dict[str, Any], where: str) -> Any:
        """A subspace table's parsed options (so its references are found), or None."""
        name = table.get("plugin")
        if not isinstance(name, str) or name not in self.registry.components["subspace"]:
            return None
        return self.check_subspace(table)

    def check_references(self) -> None:
        """Check every reference of :meth:`references` (see :meth:`check_ref`)."""
        earlier = self.earlier_steps()
        for use in self.references():
            probes = use.metadata.get("probes")
            self.check_ref(
                str(use.ref),
                earlier,
                point=not use.is_step,
                probes=tuple(probes) if probes else None,
                option=use.where,
            )

    def point_refs(self) -> list[str]:
        """The point references among this step's options (nested ones included)."""
        return [str(u.ref) for u in self.references() if not u.is_step]

    # ------------------------------------------------------------ subspaces

    def subspace(self, spec: dict[str, Any] | str, origin: torch.Tensor, seed: int) -> Subspace:
        """Build a subspace through ``origin`` from ``{plugin = "...", ...options}``."""
        table = {"plugin": spec} if isinstance(spec, str) else dict(spec)
        name = table.pop("plugin", None)
        if not isinstance(name, str):
            raise ConfigError(f"step '{self.step.name}': a subspace table needs plugin = \"...\"")
        plugin = self.registry.get("subspace", name)
        opts = parse_options(plugin.Options, table, f"step '{self.step.name}': subspace '{name}'")
        g = torch.Generator(device="cpu").manual_seed(seed)
        with blame(f"step '{self.step.name}': subspace '{name}'"):
            sub = plugin.build(opts, self, origin, g)
        sub.attrs.setdefault("plugin", name)
        return sub

    def check_subspace(self, spec: dict[str, Any] | str) -> Any:
        """Validate a subspace table without building it; return its parsed options."""
        table = {"plugin": spec} if isinstance(spec, str) else dict(spec)
        name = table.pop("plugin", None)
        if not isinstance(name, str):
            raise ConfigError(f"step '{self.step.name}': a subspace table needs plugin = \"...\"")
        plugin = self.registry.get("subspace", name)
        return parse_options(plugin.Options, table, f"step '{self.step.name}': subspace '{name}'")

    # ---------------------------------------------------------------- seeds

    def seed_for(self, *keys: Any) -> int:
        """A seed derived from the run seed, this step's name and ``keys``."""
        return derive_seed(self.seed, self.step.name, *keys)

    def generator(self, *keys: Any) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(self.seed_for(*keys))

    # -------------------------------------------------------------- scratch

    def cell_scratch(self, cell: Cell) -> Path:
        """A folder of this step's store for ``cell``'s intermediate files (checkpoints a
        killed cell continues from). It is kept until the step completes, then removed;
        it lives beside the store, never in the results. Without a store (a probe called
        outside a run), a temporary folder of this process."""
        if self.store is None:
            import tempfile

            key = "-".join(f"{d}{i}" for d, i in cell.index.items()) or "cell"
            folder = Path(tempfile.gettempdir()) / f"lossatlas-scratch-{os.getpid()}" / key
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        return self.store.cell_scratch(self.config.name, self.step.name, dict(cell.index))

    def artifact(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A step-level result computed once and shared by every cell (see the
        protocol). Arrays are stored as ``.npz``, other values as JSON, in the step's
        scratch space (removed when the step completes); a file lock makes concurrent
        workers wait for the first one instead of computing it again."""
        key = ("artifact", name)
        if key in self.cache:
            return self.cache[key]
        if self.store is None:
            self.cache[key] = compute()
            return self.cache[key]
        from .store.scratch import load_or_compute

        folder = self.store.cell_scratch(self.config.name, self.step.name, {"artifact": 0})
        self.cache[key] = load_or_compute(folder, name, compute)
        return self.cache[key]

    def static(self, name: str) -> np.ndarray:
        """A static array of this step's plan, read back from the store."""
        ds = self.load_step(self.step.name)
        return np.asarray(ds[name].values)


#: The name tests and version 0.1's code use for the engine's context.
StepContext = EngineContext


def recorded_steps(ds: xr.Dataset) -> np.ndarray:
    """The optimizer step of each row of a train step's ``trajectory`` (a run that
    stopped early ends between planned steps: its ``recorded_step`` says where)."""
    steps = np.asarray(ds["record"].values)
    if "recorded_step" in ds:
        actual = np.asarray(ds["recorded_step"].values, dtype=np.float64)
        steps = np.where(np.isfinite(actual), actual, steps).astype(np.int64)
    return steps
