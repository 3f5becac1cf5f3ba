"""The component contracts: what a model, data set, subspace, probe or executor is.

Plugins subclass these and return instances from the ``lossatlas_register_*`` hooks.
A component has a ``name`` (its key in configs), a one-line ``summary`` and an
``Options`` dataclass (see :mod:`lossatlas.engine.options`); it is generic in that
type (``class MyProbe(Probe[MyOptions])``), so its methods are typed with it.

:class:`StepContext` is the *protocol* of what a probe or subspace sees while it runs
(the engine's implementation lives in :mod:`lossatlas.engine.context`); declaring it
here keeps this module free of the engine's upper floors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    Literal,
    Protocol,
    TypeVar,
    runtime_checkable,
)

import numpy as np
import torch

from .estimates import Estimate, grid_estimate, human_bytes
from .options import NoOptions

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

    from .config import ComponentConfig, RunConfig, StepConfig
    from .losses import Loss
    from .objective import Objective
    from .paths import PathSummary
    from .points import PointRef, StepRef

__all__ = [
    "Cell",
    "Component",
    "DataBundle",
    "DatasetPlugin",
    "Estimate",
    "Executor",
    "LossPlugin",
    "ModelPlugin",
    "Plan",
    "PlotOptions",
    "Probe",
    "Split",
    "StepContext",
    "Subspace",
    "SubspacePlugin",
    "Variable",
    "grid_estimate",
    "human_bytes",
    "metric_variables",
]

Task = Literal["classification", "regression"]

#: A component's options type (its ``Options`` dataclass).
O = TypeVar("O")


class Component(Generic[O]):
    """Base of every pluggable component, generic in its options type ``O``.

    Subclass one of the kinds below, set ``name``, ``summary`` and ``Options``, and
    type the methods with ``O``: ``class Line(Probe[LineOptions])``.
    """

    #: The key that selects this component in a config (``plugin = "mlp"``).
    name: ClassVar[str] = ""
    #: One line for ``lossatlas plugins`` and the docs.
    summary: ClassVar[str] = ""
    #: The dataclass of this component's options (``O``); :class:`NoOptions` if none.
    Options: ClassVar[type[Any]] = NoOptions

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def sources(self, options: O) -> list[str]:
        """Files of the user's own code this component runs with ``options`` (an
        import-path model, data set or loss); the engine stores their SHA-256 in the
        provenance. Default: none (the component's code is the installed package's)."""
        return []


# --------------------------------------------------------------------------- data


@dataclass
class Split:
    """Inputs and targets of one split, as tensors (targets: int64 classes or floats)."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample's input."""
        return tuple(self.inputs.shape[1:])

    @property
    def streamed(self) -> bool:
        """False: the inputs are in memory (a :class:`~lossatlas.engine.streaming.
        StreamedSplit` reads them batch by batch)."""
        return False

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Split:
        targets = self.targets
        targets = (
            targets.to(device) if not targets.is_floating_point() else targets.to(device, dtype)
        )
        return Split(self.inputs.to(device, dtype), targets)


@dataclass
class DataBundle:
    """A data set as the objective sees it: a train and a validation split.

    ``task`` selects the loss (cross-entropy for classification, mean squared error for
    regression); ``n_outputs`` is the number of classes or of regression outputs.
    """

    train: Split
    validation: Split
    task: Task
    n_outputs: int
    description: str = ""
    #: Extra facts for provenance (source file, normalisation, split seed ...).
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.sample_shape

    def split(self, name: str) -> Split:
        if name == "train":
            return self.train
        if name in ("validation", "val", "test"):
            return self.validation
        raise KeyError(name)


class DatasetPlugin(Component[O]):
    """A data set. ``load`` returns the same bundle for the same options and seed."""

    def load(self, options: O, seed: int) -> DataBundle:
        """Load or generate the data; ``seed`` fixes the train/validation split."""
        raise NotImplementedError


class ModelPlugin(Component[O]):
    """A model family. ``build`` returns a freshly initialised ``torch.nn.Module``."""

    def build(self, options: O, data: DataBundle, seed: int) -> torch.nn.Module:
        """Build the module for ``data`` (input shape, outputs), initialised from ``seed``."""
        raise NotImplementedError


# -------------------------------------------------------------------------- losses


class LossPlugin(Component[O]):
    """A loss function, selected by ``[loss] plugin = "..."`` in a config.

    ``build`` returns a :class:`~lossatlas.engine.losses.Loss`: the function of the
    model's outputs and the targets on a batch, what it returns (one value per sample,
    or their mean or sum), the tasks it applies to and its units. The objective, every
    probe, the HVPs and the trainers go through it.
    """

    def build(self, options: O, data: DataBundle) -> Loss:
        """The loss for ``data`` (its task, number of outputs) with ``options``."""
        raise NotImplementedError


# --------------------------------------------------------------------- subspaces


@dataclass
class Subspace:
    """An affine subspace x(θ) = origin + basis·θ of the D-dim parameter space.

    ``basis`` is a dense (D, d) tensor or a sparse one (``torch.sparse_coo`` or CSR);
    it stays sparse in products. ``attrs`` describes how it was made (for provenance).
    """

    origin: torch.Tensor
    basis: torch.Tensor
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.basis.shape[1])

    def embed(self, theta: torch.Tensor) -> torch.Tensor:
        """Points x = origin + basis·θ for θ of shape (d,) or (B, d)."""
        single = theta.ndim == 1
        t = theta.reshape(-1, self.dim).to(self.origin.dtype)
        if self.basis.is_sparse or self.basis.layout != torch.strided:
            moved = torch.sparse.mm(self.basis, t.T).T
        else:
            moved = t @ self.basis.T
        x = self.origin.unsqueeze(0) + moved
        return x[0] if single else x

    def columns(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Dense (k, D) block of basis columns, transposed (for batched HVPs)."""
        stop = self.dim if stop is None else stop
        if self.basis.layout != torch.strided:
            eye = torch.zeros(
                self.dim, stop - start, dtype=self.origin.dtype, device=self.origin.device
            )
            eye[torch.arange(start, stop), torch.arange(stop - start)] = 1
            return torch.sparse.mm(self.basis, eye).T.contiguous()
        return self.basis[:, start:stop].T.contiguous()


class SubspacePlugin(Component[O]):
    """Makes subspaces through a point (random planes, Hessian directions, ...)."""

    def build(
        self,
        options: O,
        ctx: StepContext,
        origin: torch.Tensor,
        generator: torch.Generator,
    ) -> Subspace:
        """Build a subspace through ``origin``; draw random numbers from ``generator``."""
        raise NotImplementedError


# -------------------------------------------------------------------------- probes


@dataclass
class Variable:
    """A result variable of a probe: its dims, dtype, units and one-line description.

    ``finite=True`` means a non-finite value marks its cell with status ``nonfinite``;
    set it False for variables that are legitimately NaN (padding).
    """

    dims: tuple[str, ...]
    description: str
    units: str = ""
    dtype: str = "float64"
    finite: bool = True
    #: CF ``long_name`` (what xarray's plots label axes with); default: the name in words.
    long_name: str = ""


@dataclass
class Plan:
    """What a probe will compute, declared before any cell runs.

    - ``coords``: every dim's coordinate values (1-D arrays).
    - ``cell_dims``: the dims swept one cell at a time; a cell fills every variable
      at one index of each cell dim (the other dims are computed inside the cell).
      Empty means one cell.
    - ``variables``: the per-cell results; each must have all ``cell_dims``.
    - ``static``: arrays known at planning time, stored with the template,
      as ``name -> (dims, values, attrs)``.
    - ``attrs``: extra dataset attrs (e.g. the accuracy the probe reached).
    - ``coord_attrs``: attrs of the coordinates (``long_name``, ``units``, ``description``).
    - ``aux_coords``: labels along a dim, stored as (non-index) coordinates, as
      ``name -> (dim, values, attrs)`` (e.g. interpolation's ``pair_label``).
    """

    coords: dict[str, np.ndarray]
    variables: dict[str, Variable]
    cell_dims: tuple[str, ...] = ()
    static: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, Any]]] = field(
        default_factory=dict
    )
    attrs: dict[str, Any] = field(default_factory=dict)
    coord_attrs: dict[str, dict[str, Any]] = field(default_factory=dict)
    aux_coords: dict[str, tuple[str, Any, dict[str, Any]]] = field(default_factory=dict)

    def cell_shape(self) -> tuple[int, ...]:
        return tuple(len(self.coords[d]) for d in self.cell_dims)


@dataclass(frozen=True)
class Cell:
    """One cell of a sweep: its integer index and coordinate value along each cell dim,
    and a seed derived from the run seed, the step and those coordinates only."""

    index: Mapping[str, int]
    coords: Mapping[str, Any]
    seed: int

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        g = torch.Generator(device=device)
        g.manual_seed(self.seed)
        return g


@runtime_checkable
class StepContext(Protocol):
    """What a probe (and a subspace plugin) sees while it checks, plans and computes a
    step: the run, the step, the model, data and objective, and the engine's services.

    The engine builds one per step and process (a Dask worker rebuilds its own from the
    config: nothing but the config travels). Everything below is public and stable;
    a probe needs nothing else (never read the store or the registry directly).

    Attributes:
        config: the whole run config (:class:`~lossatlas.engine.config.RunConfig`).
        step: this step's config (name, probe, raw options).
        options: this step's options, parsed into the probe's ``Options`` dataclass.
        device: the torch device every tensor of the step lives on.
        dtype: the floating-point dtype (``torch.float32`` or ``torch.float64``).
        seed: the run seed (derive others with :meth:`seed_for`, never reuse it).
        cache: a dict a probe may keep per-process values in (a basis read once,
            a solve done once); it lives as long as the context, never in the store.
    """

    config: RunConfig
    step: StepConfig
    options: Any
    device: torch.device
    dtype: torch.dtype
    seed: int
    cache: dict[Any, Any]

    @property
    def data(self) -> DataBundle:
        """The step's data set (its ``[steps.dataset]`` or the run's), loaded once."""
        ...

    @property
    def objective(self) -> Objective:
        """The step's :class:`~lossatlas.engine.Objective` (model, data, loss), built once."""
        ...

    @property
    def loss(self) -> Loss:
        """The run's loss (its ``[loss]`` plugin, or the task's default)."""
        ...

    @property
    def model_config(self) -> ComponentConfig:
        """The ``[model]`` table this step uses (its own or the run's)."""
        ...

    @property
    def dataset_config(self) -> ComponentConfig:
        """The ``[dataset]`` table this step uses (its own or the run's)."""
        ...

    def build_model(self, seed: int | None = None) -> torch.nn.Module:
        """A fresh module of the step's model, initialised from ``seed`` (default: the
        model's own, with its checkpoint loaded if the config names one)."""
        ...

    def init_point(self, seed: int | None = None) -> torch.Tensor:
        """The flat parameters (D,) of an initialisation (``seed`` None: the model's)."""
        ...

    def resolve_point(self, ref: str | PointRef) -> torch.Tensor:
        """The parameter vector (D,) a point reference names (any form of
        :mod:`lossatlas.engine.points`), on :attr:`device` in :attr:`dtype`. References
        are checked before the run starts; a probe only resolves them."""
        ...

    def load_step(self, step: str | StepRef, run: str | None = None) -> xr.Dataset:
        """The stored result of a step: ``STEP`` of this run, ``RUN/STEP``, or ``step``
        of ``run``."""
        ...

    def step_options(self, ref: str | StepRef) -> dict[str, Any]:
        """The raw options table of the step ``ref`` names (this run's config, or the
        stored step's config for ``RUN/STEP``)."""
        ...

    def earlier_steps(self) -> list[str]:
        """The names of this run's steps before this one, in order."""
        ...

    def subspace(self, spec: dict[str, Any] | str, origin: torch.Tensor, seed: int) -> Subspace:
        """Build a subspace through ``origin`` from a table ``{plugin = "...", ...}``
        (options of that subspace plugin), drawing random numbers from ``seed``."""
        ...

    def check_subspace(self, spec: dict[str, Any] | str) -> Any:
        """Parse a subspace table without building it; return its parsed options."""
        ...

    def seed_for(self, *keys: Any) -> int:
        """A seed derived from the run seed, this step's name and ``keys`` (any JSON-able
        values): the same in every process."""
        ...

    def generator(self, *keys: Any) -> torch.Generator:
        """A CPU ``torch.Generator`` seeded with :meth:`seed_for` of ``keys``. Draw random
        numbers from generators like this one or :meth:`Cell.generator`; never seed or
        draw from torch's global generator (a resumed or distributed run would differ)."""
        ...

    def cell_scratch(self, cell: Cell) -> Path:
        """A folder for ``cell``'s intermediate files, kept until the step completes, so
        a killed cell continues from them; never part of the result."""
        ...

    def artifact(
        self, name: str, compute: Callable[[], dict[str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """A step-level result computed once (``compute()``, a dict of arrays), stored
        in the step's scratch space and read back by every later caller, in any process:
        a solve that cells share (hessian-directions' eigenvectors) runs in the first
        cell that needs it, on a worker, and survives an interruption."""
        ...

    def static(self, name: str) -> np.ndarray:
        """A static array of this step's plan, read back from the store."""
        ...


@dataclass
class PlotOptions:
    """The options of a probe's figure: ``lossatlas plot ... -O KEY=VALUE`` (repeatable),
    ``ds.atlas.plot(KEY=VALUE)``, checked like a config's options (an unknown key or a
    wrong type is a one-line error) and shown by ``lossatlas plugins NAME``.

    A probe with options of its own subclasses this dataclass (``field(default=...,
    metadata={"doc": ...})`` per option) and names it in ``Probe.PlotOptions``; its
    ``plot`` and ``plot_many`` receive every option as a keyword argument.
    """

    logy: bool = field(
        default=False,
        metadata={
            "doc": "logarithmic loss axis where the figure has one; on a map, a "
            "logarithmic colour scale (also: lossatlas plot --logy)"
        },
    )


class Probe(Component[O]):
    """A measurement (or a training run) that fills a labelled result.

    The engine calls ``check`` before touching the store, ``plan`` once, ``compute``
    per cell (possibly in another process: it must depend only on its arguments),
    ``finalize`` once every cell is done, and ``plot`` to draw a stored result.
    """

    #: The dataclass of this probe's plot options (:class:`PlotOptions` or a subclass):
    #: what ``plot`` and ``plot_many`` accept as keywords.
    PlotOptions: ClassVar[type] = PlotOptions

    #: Names of the (param,) variables a result holds that later steps may reference
    #: as points (``STEP`` means ``STEP.point``). Declared, references to them are
    #: checked before anything runs; None: not declared, checked when resolved.
    points: ClassVar[tuple[str, ...] | None] = None
    #: True: a unit of work may cover several consecutive cells of the last cell dim,
    #: as many as the engine's rule on :meth:`estimate` gives
    #: (:func:`lossatlas.engine.sweep.rows_per_cell`), computed together by
    #: :meth:`compute_block` and written as one chunk. For probes whose cells are cheap
    #: evaluations (a row of a grid); cells that train or keep scratch leave it False.
    blockable: ClassVar[bool] = False

    def check(self, options: O, ctx: StepContext) -> None:
        """Raise ConfigError/ShapeError for impossible options (cheap; store untouched)."""

    def estimate(self, options: O, ctx: StepContext) -> Estimate | None:
        """What the step will cost (:class:`Estimate`), from the options, the model size
        ``ctx.objective.D`` and the data alone: no earlier result, nothing allocated.
        The engine refuses a step over the memory or disk limit before anything is
        written. None: unknown (the engine then checks the plan's size before writing)."""
        return None

    def plan(self, options: O, ctx: StepContext) -> Plan:
        """Declare the result (:class:`Plan`): dims, coords, variables and cell dims.
        Called once per step, before any cell; keep it cheap (it runs in the driver
        before the store's template is written): heavy set-up work belongs in cells or
        in :meth:`StepContext.artifact`."""
        raise NotImplementedError

    def compute(self, options: O, ctx: StepContext, cell: Cell) -> dict[str, Any]:
        """Return each variable's values at ``cell`` (shape: its non-cell dims)."""
        raise NotImplementedError

    def compute_block(
        self, options: O, ctx: StepContext, cells: Sequence[Cell]
    ) -> list[dict[str, Any]]:
        """:meth:`compute` for several consecutive cells of one unit of work (only for
        probes that declare :attr:`blockable`), one result per cell in order. Override it
        to batch their work (one batched evaluation of every cell's points); each cell's
        values must equal what :meth:`compute` gives it alone. Default: one by one."""
        return [self.compute(options, ctx, cell) for cell in cells]

    def finalize(self, options: O, ctx: StepContext, ds: xr.Dataset) -> xr.Dataset | None:
        """Optionally add summary variables computed from the complete result.

        Return a Dataset of the summary variables, or ``ds`` with them assigned
        (``ds.assign(mean=ds.x.mean("sample"))``): the engine keeps only the *new*
        variables (and the coordinates of new dims). The planned and static variables,
        the coordinates and ``cell_status`` belong to the engine: returned unchanged they
        are ignored, returned changed they are an error, never overwritten."""
        return None

    def plot(self, ds: xr.Dataset, **kwargs: Any) -> Figure:
        """Draw the stored result as the paper does; return the figure.

        ``kwargs`` are this probe's plot options (:attr:`PlotOptions`), already checked.
        Label every colour bar with its quantity and units and mark points so they show
        on any map (:mod:`lossatlas.engine.figures`); the engine draws inside the
        chosen style (:mod:`lossatlas.engine.style`) and adds the RUN/STEP title."""
        raise NotImplementedError(f"probe '{self.name}' has no plot")

    def report_html(self, ds: xr.Dataset) -> str | None:
        """An HTML fragment of this probe's own for ``lossatlas report`` (a table of
        the paper's numbers, a verdict ...), shown under the step's figure; None (the
        default): nothing. It must stand alone: no script, no external link or image
        (``data:`` URIs and ``#`` anchors are fine), every tag closed — the report
        shows an error in its place otherwise. :func:`lossatlas.engine.html_table`
        writes an escaped table."""
        return None

    def paths(self, ds: xr.Dataset) -> list[PathSummary]:
        """The paths between pairs of points this stored result holds (lines, curves,
        elastic bands, strings), for the comparison figure
        (:func:`lossatlas.engine.paths.plot_paths`, ``lossatlas plot`` of steps from
        several probes). Optional: the default declares none."""
        return []

    def plot_many(self, datasets: Mapping[str, xr.Dataset], **kwargs: Any) -> Figure:
        """Draw several stored results of this probe on one figure (``{label: ds}``;
        e.g. several architectures, as in seed 000 Fig. 4). Optional: the default
        refuses with a ConfigError, so ``lossatlas plot`` says to draw them one by one."""
        from .errors import ConfigError

        raise ConfigError(
            f"probe '{self.name}' draws one result at a time; plot its steps one by one"
        )


# ----------------------------------------------------------------------- executors


class Executor(Component[O]):
    """Runs the cells of a sweep. ``run`` calls ``job(cell_index)`` for each index
    (a picklable callable that computes the cell and writes it into the store itself)
    and ``on_done(cell_index, status)`` in the driver as each one finishes.

    Lifecycle: the runner opens one :meth:`session` per pipeline and passes what it
    yields to every step's :meth:`run` as ``session`` (a Dask client of one cluster,
    a Ray connection ...); ``job`` carries the plugins a worker must load
    (:attr:`lossatlas.engine.sweep.CellJob.plugins`)."""

    def check(self, options: O) -> None:
        """Raise ConfigError if the executor cannot run with ``options`` (its cluster is
        unreachable, a package is missing). Called before the store is touched."""

    @contextmanager
    def session(self, options: O) -> Iterator[Any]:
        """Set up what every step of a pipeline shares (start or connect to a cluster)
        and tear it down after the last step, also on an error or Ctrl-C. Yields the
        object :meth:`run` receives as ``session``; the default yields None."""
        yield None

    def run(
        self,
        options: O,
        job: Callable[[tuple[int, ...]], int],
        cells: Iterable[tuple[int, ...]],
        on_done: Callable[[tuple[int, ...], int], None],
        session: Any = None,
    ) -> None:
        """Run ``job`` on every index of ``cells`` (in any order, anywhere) and call
        ``on_done(index, status)`` here as each finishes; an exception in a job stops
        the step (cells already written stay). ``session``: what :meth:`session`
        yielded (None when called outside one)."""
        raise NotImplementedError


METRIC_UNITS = {
    "loss": "the run's loss (nats for cross-entropy; the step attr loss_units says)",
    "accuracy": "fraction",
}


def metric_variables(metrics: Iterable[str], dims: tuple[str, ...]) -> dict[str, Variable]:
    """``train_``/``validation_`` variables for each metric (``loss``, ``accuracy``),
    matching the keys of :meth:`Objective.evaluate_both`."""
    out = {}
    for split in ("train", "validation"):
        for m in metrics:
            out[f"{split}_{m}"] = Variable(
                dims, f"{m} on the {split} split", units=METRIC_UNITS.get(m, "")
            )
    return out


def options_dict(options: Any) -> dict[str, Any]:
    return dataclasses.asdict(options) if dataclasses.is_dataclass(options) else {}
