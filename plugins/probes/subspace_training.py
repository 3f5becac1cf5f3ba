"""``subspace-training``: train only θ on random hyperplanes and hyperspheres.

Fort & Scherlis 2019 (seed 000), Fig. 2; the intrinsic-dimension experiment of Li et al.
2018 extended to radii r ≠ r_Xavier and to hyperspheres (seed 004's constraint).

For each surface (``hyperplane``: x = P + Mθ, θ0 = 0; ``hypersphere``: x = Qφ with
‖x‖ = r fixed, the radial gradient removed and the radius restored after every step),
each dimension d, radius r and sample: draw a Xavier point rescaled to radius r and a
random surface through it, train θ with Adam (lr 1e-3 by default, cross-entropy,
shuffled mini-batches), and record train/validation loss and accuracy per epoch
(epoch 0 = before training).

One cell per (surface, d): its len(radii) × samples runs are trained together as one
vmapped ensemble (``ensemble = true``): all points X (R, D) are formed by one batched
projection, the loss of every run on its own mini-batch in one ``vmap`` pass, the
gradients pulled back by one batched Mᵀ. Adam is elementwise, so the runs stay
independent; ``ensemble = false`` trains them one after another with identical results.

``finalize`` gives the final accuracies and the intrinsic dimension d_int90 at each
radius: the smallest d (interpolated in log d) whose mean validation accuracy reaches
90% of the reference accuracy. The reference is, by default, Li et al. 2018's: the mean
final validation accuracy of ``samples`` full-space trainings from Xavier points with
the same optimiser and schedule (``reference = "full"``, trained in ``finalize``);
``reference_accuracy`` gives a number instead, and ``reference = "grid-best"`` takes the
best mean accuracy of the grid (a different quantity: 90% of what the grid reached, not
of what the network can reach). Every training is checked for convergence
(:func:`lossatlas.engine.training.loss_still_falling`): a run whose last quarter of
epochs brought more than ``convergence_tol`` (10 %) of its whole decrease of the train
loss is flagged ``still_falling`` and the step warns
(:class:`~lossatlas.engine.training.ConvergenceWarning`) — its accuracy, and any d_int
read from it, belongs to the schedule, not to the landscape.

For audit the result keeps each run's final coordinates θ (``final_theta``) and the norm
‖x‖ of its final point (``final_norm``: r on a hypersphere, as training left it). The
points and surfaces come from the cell's seed, a function of the run seed, the step and
the cell's coordinates (all in the store), so :func:`final_points` rebuilds every final
point x = origin + Mθ from the stored result alone. Cost per run and step:
one forward+backward pass over a mini-batch; per epoch one evaluation of both splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch.func import vmap

from lossatlas.engine import (
    Cell,
    ConfigError,
    Estimate,
    Plan,
    PlotOptions,
    Probe,
    StepContext,
    Subspace,
    Variable,
    figures,
    grid_estimate,
    optimizer_options,
    progress,
)
from lossatlas.engine.geometry import draw_init, init_radius
from lossatlas.engine.training import (
    ConvergenceWarning,
    OptimizerSpec,
    TrainingLoop,
    convergence_window,
    loss_still_falling,
)

from .goldilocks import (
    _basis_kwargs,
    _check_dims,
    _validate_basis,
    _validate_radii,
    mark_reference,
    radius_grid,
    radius_label,
)

__all__ = [
    "SubspaceTraining",
    "SubspaceTrainingOptions",
    "cell_surfaces",
    "final_points",
    "full_space_baseline",
    "intrinsic_dimension",
    "train_ensemble",
]


def train_ensemble(
    objective: Any,
    subspaces: list[Subspace],
    *,
    sphere: bool = False,
    optimizer: str = "adam",
    lr: float = 1e-3,
    momentum: float = 0.0,
    epochs: int = 10,
    batch_size: int | None = 64,
    seeds: list[int] | None = None,
    history: bool = True,
) -> dict[str, np.ndarray]:
    """Train θ_r on each subspace r together (one vmapped pass per step).

    ``sphere``: the subspaces are :class:`SphereSubspace`s; θ starts at their
    ``theta0``, the radial component r̂·∇ℓ is removed from the x-gradient and
    x ← x·r0/‖x‖ restored after each step (seed 004). Run r shuffles its mini-batches
    with ``torch.Generator`` seeded ``seeds[r]``, so results do not depend on which runs
    share an ensemble. Returns per-epoch arrays (R, epochs+1) ``train_loss``,
    ``validation_loss`` (+ ``_accuracy``), the final coordinates ``theta`` (R, d; d + 1
    on a sphere) and the final points ``x`` (R, D) = origin + Mθ as the training left
    them (no rescaling after the last step's).
    """
    from lossatlas.plugins.subspaces.hyperplane import StackedProjection, remove_radial

    obj = objective
    dev, dt = obj.device, obj.dtype
    subs = [Subspace(origin=s.origin.to(dev, dt), basis=s.basis.to(dev, dt)) for s in subspaces]
    stack = StackedProjection(subs)
    R = stack.R
    if sphere:
        theta = torch.stack([s.theta0.to(dev, dt) for s in subspaces])
        r0 = torch.tensor([s.radius for s in subspaces], dtype=dt, device=dev)
    else:
        theta = torch.zeros(R, stack.d, dtype=dt, device=dev)
    # One member per subspace on the shared loop (Adam is elementwise: a member's numbers
    # do not depend on which others share its ensemble).
    spec = OptimizerSpec(optimizer, lr, momentum if optimizer == "sgd" else 0.0)

    def on_sphere(params: list[torch.Tensor]) -> None:
        T = torch.stack([p.detach() for p in params])
        x = stack.embed(T)
        for k, p in enumerate(params):
            p.mul_(r0[k] / x[k].norm())

    loop = TrainingLoop(theta, spec, project=on_sphere if sphere else None)
    split = obj.splits["train"]
    n = len(split)
    bs = min(batch_size or n, n)
    gens = [torch.Generator().manual_seed(int(s)) for s in (seeds or range(R))]

    def f(x: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return obj._sum_loss(obj._forward(x, inputs), targets) / inputs.shape[0]

    batched = vmap(f)
    hist: dict[str, list[np.ndarray]] = {}

    def log() -> None:
        with torch.no_grad():
            X = stack.embed(loop.stacked())
        for k, v in obj.evaluate_both(X).items():
            hist.setdefault(k, []).append(v)

    log()
    bar = progress.task(f"training {R} subspace(s)", epochs * -(-n // bs), "step")
    for epoch in range(epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(dev)
        for b in range(0, n, bs):
            idx = order[:, b : b + bs]
            with torch.no_grad():
                X = stack.embed(loop.stacked())
            X.requires_grad_(True)
            loss = batched(X, split.inputs[idx], split.targets[idx]).sum()
            (gX,) = torch.autograd.grad(loss, X)
            with torch.no_grad():
                if sphere:
                    gX = remove_radial(X.detach(), gX)
                loop.apply(stack.pullback(gX))
            bar.update(advance=1, epoch=f"{epoch + 1}/{epochs}")
        loop.end_epoch(epoch + 1)
        if history or epoch == epochs - 1:
            log()
    bar.close()
    theta = loop.finish()
    out = {k: np.stack(v, axis=1) for k, v in hist.items()}
    with torch.no_grad():
        X = stack.embed(theta)
    out["theta"] = theta.detach().cpu().numpy()
    out["x"] = X.cpu().numpy()
    return out


def intrinsic_dimension(dims: np.ndarray, acc: np.ndarray, threshold: float) -> float:
    """The smallest d with acc ≥ threshold, interpolated linearly in log d between the
    grid points around the first crossing; NaN if never reached."""
    order = np.argsort(dims)
    d, a = np.asarray(dims, float)[order], np.asarray(acc, float)[order]
    for i in range(len(d)):
        if np.isfinite(a[i]) and a[i] >= threshold:
            if i == 0 or not np.isfinite(a[i - 1]) or a[i] == a[i - 1]:
                return float(d[i])
            t = (threshold - a[i - 1]) / (a[i] - a[i - 1])
            return float(np.exp(np.log(d[i - 1]) + t * (np.log(d[i]) - np.log(d[i - 1]))))
    return np.nan


def full_space_baseline(options: Any, ctx: StepContext) -> dict[str, np.ndarray]:
    """Li et al. 2018's d_int90 baseline: ``options.samples`` full-space trainings (all D
    parameters) from ``options.init`` draws at their natural radius, with the probe's
    optimiser, lr, momentum, epochs and batch size. Returns ``validation_accuracy``
    (samples,) at the end and ``train_loss`` (samples, epochs + 1) per epoch. Seeds come
    from the run seed and step name only. Cost: samples × epochs of full-space training."""
    import hashlib
    import json

    from lossatlas.engine.training import train_as

    obj = ctx.objective
    acc = np.full(options.samples, np.nan)
    loss = np.full((options.samples, options.epochs + 1), np.nan)
    for s in range(options.samples):
        key = json.dumps([int(ctx.config.seed), ctx.step.name, "full-space baseline", s])
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1
        g = torch.Generator().manual_seed(seed)
        x = draw_init(obj.layout, g, scheme=options.init, dtype=obj.dtype, device=obj.device)
        res = train_as(
            options,
            obj,
            x,
            seed=int(torch.randint(0, 2**62, (1,), generator=g)),
        )
        acc[s] = float(res.history["validation_accuracy"][-1])
        hist = np.asarray(res.history["train_loss"], float)[: options.epochs + 1]
        loss[s, : len(hist)] = hist
    return {"validation_accuracy": acc, "train_loss": loss}


def cell_surfaces(
    options: Any,
    objective: Any,
    radii: np.ndarray,
    d: int,
    sphere: bool,
    generator: torch.Generator,
) -> tuple[list[Subspace], list[int]]:
    """The start points and surfaces of one (surface, d) cell and the seeds of their
    mini-batch orders, drawn from ``generator`` in the cell's order (radius, then sample).

    ``compute`` draws them from the cell's generator (:func:`final_points` from the
    same seed); run (radius i, sample j) is entry i·samples + j.
    """
    from types import SimpleNamespace

    from lossatlas.plugins.subspaces.hyperplane import make_basis, make_sphere

    bkw = _basis_kwargs(options, SimpleNamespace(objective=objective))
    subs: list[Subspace] = []
    seeds: list[int] = []
    for r in radii:
        for _s in range(options.samples):
            x = draw_init(
                objective.layout,
                generator,
                scheme=options.init,
                radius=float(r),
                dtype=torch.float64,
            )
            if sphere:
                subs.append(make_sphere(x, d, generator, options.basis, **bkw))
            else:
                M = make_basis(objective.D, d, generator, options.basis, **bkw)
                subs.append(Subspace(origin=x, basis=M))
            seeds.append(int(torch.randint(0, 2**62, (1,), generator=generator)))
    return subs, seeds


def final_points(ds: Any, surface: str, dim: int, objective: Any = None) -> torch.Tensor:
    """The final points x (radius, sample, D), float64, of the (surface, dim) cell of a
    stored ``subspace-training`` result, rebuilt from the result alone: the cell's seed
    from the run seed, the step name and the cell's coordinates (as the engine derives
    it), its points and surfaces by :func:`cell_surfaces`, then x = origin + Mθ with
    θ = ``final_theta``. ``objective`` (the step's, to skip rebuilding the model and
    data from the stored config). On a hypersphere ‖x‖ is the radius coordinate.
    """
    from lossatlas.engine import make_registry
    from lossatlas.engine.config import parse_config
    from lossatlas.engine.context import StepContext
    from lossatlas.engine.sweep import cell_seed

    cfg = parse_config(ds.atlas.config)
    ctx = StepContext(make_registry(), cfg, cfg.step(ds.attrs["step"]))
    obj = objective if objective is not None else ctx.objective
    seed = cell_seed(cfg.seed, ctx.step.name, {"surface": str(surface), "dim": int(dim)})
    radii = ds["radius"].values
    subs, _seeds = cell_surfaces(
        ctx.options,
        obj,
        radii,
        int(dim),
        surface == "hypersphere",
        torch.Generator().manual_seed(seed),
    )
    theta = np.asarray(ds["final_theta"].sel(surface=surface, dim=dim).values, np.float64)
    theta = theta.reshape(len(subs), -1)
    xs = []
    for sub, t in zip(subs, theta, strict=True):
        th = torch.as_tensor(t[: sub.dim], dtype=torch.float64)
        basis = sub.basis.to(torch.float64)
        mt = (
            torch.sparse.mm(basis, th[:, None])[:, 0]
            if basis.layout != torch.strided
            else basis @ th
        )
        xs.append(sub.origin.to(torch.float64) + mt)
    return torch.stack(xs).reshape(len(radii), -1, obj.D)


@dataclass
class SubspaceTrainingOptions(optimizer_options(optimizer="adam", lr=1e-3, batch_size=64)):
    radius_min: float = field(default=0.1, metadata={"doc": "smallest radius (radius_unit)"})
    radius_max: float = field(default=10.0, metadata={"doc": "largest radius"})
    radii: int = field(default=5, metadata={"doc": "number of log-spaced radii"})
    radius_unit: Literal["xavier", "he", "absolute"] = field(
        default="xavier", metadata={"doc": "radii are multiples of r_Xavier, of r_He, or absolute"}
    )
    dims: list[int] = field(
        default_factory=lambda: [2, 5, 10, 20, 50], metadata={"doc": "subspace dimensions d"}
    )
    samples: int = field(default=2, metadata={"doc": "random points and surfaces per (r, d)"})
    surfaces: list[str] = field(
        default_factory=lambda: ["hyperplane", "hypersphere"],
        metadata={"doc": "hyperplane and/or hypersphere"},
    )
    init: Literal["xavier", "he"] = field(
        default="xavier", metadata={"doc": "initialisation whose draws are rescaled to radius r"}
    )
    basis: Literal["dense", "sparse-fort", "sparse-chang"] = field(
        default="dense", metadata={"doc": "basis recipe of M"}
    )
    nnz_min: int = field(default=0, metadata={"doc": "sparse-fort: fewest non-zeros per column"})
    nnz_max: int = field(default=0, metadata={"doc": "sparse-fort: most non-zeros per column"})
    metric: bool = field(default=False, metadata={"doc": "use ηM (η_ii ∝ 1/r_layer)"})
    directions: Literal["all", "weights"] = field(
        default="all", metadata={"doc": "surfaces span all coordinates, or weights only"}
    )
    ensemble: bool = field(
        default=True,
        metadata={"doc": "train a cell's runs together as a vmapped ensemble (else one by one)"},
    )
    accuracy_fraction: float = field(
        default=0.9,
        metadata={"doc": "d_int is where accuracy reaches this fraction of the reference"},
    )
    reference_accuracy: float = field(
        default=0.0,
        metadata={"doc": "reference validation accuracy (0: from option 'reference')"},
    )
    reference: Literal["full", "grid-best", "grid"] = field(
        default="full",
        metadata={
            "doc": "d_int's reference when reference_accuracy = 0: 'full', the mean of "
            "`samples` full-space trainings from Xavier points with the same optimiser, "
            "lr, epochs and batches (Li et al. 2018's d_int90); 'grid-best', the best mean "
            "accuracy of the grid (not Li et al.'s); 'grid' is the old name of 'grid-best' "
            "and an error"
        },
    )
    convergence_tol: float = field(
        default=0.1,
        metadata={
            "doc": "flag (still_falling) and warn about runs whose last quarter of epochs "
            "brought more than this share of their whole decrease of the train loss (0: no "
            "check)"
        },
    )

    def validate(self) -> None:
        _validate_radii(self)
        if not self.dims or min(self.dims) < 1:
            raise ValueError(f"option 'dims' must list dimensions ≥ 1, got {self.dims}")
        bad = [s for s in self.surfaces if s not in ("hyperplane", "hypersphere")]
        if bad or not self.surfaces:
            raise ValueError(
                f"option 'surfaces' takes 'hyperplane' and/or 'hypersphere', got {self.surfaces}"
            )
        if self.samples < 1:
            raise ValueError(f"option 'samples' must be at least 1, got {self.samples}")
        if not 0 < self.accuracy_fraction <= 1:
            raise ValueError("option 'accuracy_fraction' must be in (0, 1]")
        if self.reference == "grid":
            raise ConfigError(
                "option 'reference' = 'grid' is now called 'grid-best' (90% of the best "
                "mean accuracy in the grid, which is not Li et al.'s d_int90); the default "
                "'full' is theirs: 90% of the accuracy of full-space training"
            )
        if not 0 <= self.reference_accuracy <= 1:
            raise ValueError(
                f"option 'reference_accuracy' must be in [0, 1] (0: from option 'reference'), "
                f"got {self.reference_accuracy}"
            )
        if not 0 <= self.convergence_tol < 1:
            raise ValueError(
                f"option 'convergence_tol' must be in [0, 1) (0: no check), got "
                f"{self.convergence_tol}"
            )
        _validate_basis(self)


def _dint_label(ds: Any) -> str:
    """The legend of the d_int curve: Li et al.'s d_int90 only with their reference."""
    attrs = ds["d_int"].attrs
    pct = f"{100 * float(attrs.get('fraction', 0.9)):.0f}"
    if attrs.get("reference_kind") == "grid-best":
        return f"d at {pct}% of the grid's best"
    return f"d_int{pct}"


@dataclass
class SubspaceTrainingPlotOptions(PlotOptions):
    """``lossatlas plot ... -O metric=loss``."""

    metric: Literal["accuracy", "loss"] = field(
        default="accuracy",
        metadata={
            "doc": "what the maps show: the final validation 'accuracy' (the paper's; "
            "the loss for a regression task) or 'loss'"
        },
    )


class SubspaceTraining(Probe[SubspaceTrainingOptions]):
    name = "subspace-training"
    points = ()  # no (param,) results for later steps
    summary = "train on random hyperplanes/hyperspheres over (radius, d): d_int90 per radius"
    Options = SubspaceTrainingOptions
    PlotOptions = SubspaceTrainingPlotOptions

    def check(self, options: SubspaceTrainingOptions, ctx: StepContext) -> None:
        extra = 1 if "hypersphere" in options.surfaces else 0
        _check_dims(
            options.dims,
            options,
            ctx,
            f"probe 'subspace-training' (step '{ctx.step.name}')",
            extra=extra,
        )

    def estimate(self, options: SubspaceTrainingOptions, ctx: StepContext) -> Estimate:
        """Cells, evaluations and bytes from the options (see :class:`Estimate`)."""
        surfaces = max(1, len(options.surfaces))
        d = max(options.dims)
        per = options.radii * options.samples * (8 + 2 * options.epochs)
        return grid_estimate(
            ctx,
            surfaces * len(options.dims),
            per,
            points_per_cell=options.radii * options.samples,
            cell_bytes=ctx.objective.D * d * 8,
            drivers=("radii", "dims", "samples", "epochs"),
        )

    def plan(self, options: SubspaceTrainingOptions, ctx: StepContext) -> Plan:
        obj = ctx.objective
        radii, rel, ref = radius_grid(options, ctx)
        dims = ("surface", "dim", "radius", "sample", "epoch")
        variables = {
            f"{s}_{m}": Variable(
                dims,
                f"{m} on the {s} split after each epoch",
                units="fraction" if m == "accuracy" else "nats",
            )
            for s in ("train", "validation")
            for m in obj.metric_names()
        }
        run = ("surface", "dim", "radius", "sample")
        variables["final_theta"] = Variable(
            (*run, "coordinate"),
            "coordinates θ of the final point, x = origin + Mθ (hypersphere: x = Qφ, d + 1 "
            "coordinates; NaN beyond a run's own); subspace_training.final_points rebuilds x",
            units="parameter norm",
            finite=False,
        )
        variables["final_norm"] = Variable(
            run,
            "‖x‖ over all parameters of the final point as training left it (a hypersphere "
            "holds it at the radius coordinate; nothing rescales it afterwards)",
            units="parameter norm",
        )
        sphere = "hypersphere" in options.surfaces
        return Plan(
            coords={
                "surface": np.asarray(options.surfaces),
                "dim": np.asarray(options.dims, dtype=np.int64),
                "radius": radii,
                "sample": np.arange(options.samples),
                "epoch": np.arange(options.epochs + 1),
                "coordinate": np.arange(max(options.dims) + (1 if sphere else 0)),
            },
            cell_dims=("surface", "dim"),
            variables=variables,
            static={
                "radius_relative": (("radius",), rel, {"description": "r / reference radius"}),
                "r_xavier": (
                    (),
                    np.float64(init_radius(obj.layout, "xavier")),
                    {"description": "mean radius of a Xavier init (weights)"},
                ),
                "r_he": (
                    (),
                    np.float64(init_radius(obj.layout, "he")),
                    {"description": "mean radius of a He init (weights)"},
                ),
            },
            coord_attrs={
                "radius": {
                    "description": "radius of the start point (and of the hypersphere)",
                    "units": "‖x‖",
                },
                "epoch": {"description": "epochs trained (0: start)"},
                "coordinate": {"description": "index of a subspace coordinate θ_i"},
            },
            attrs={
                "optimizer": options.optimizer,
                "lr": options.lr,
                "epochs": options.epochs,
                "r_reference": ref,
                "n_params": obj.D,
                "basis": options.basis,
            },
        )

    def compute(
        self, options: SubspaceTrainingOptions, ctx: StepContext, cell: Cell
    ) -> dict[str, Any]:
        obj = ctx.objective
        sphere = cell.coords["surface"] == "hypersphere"
        d = int(cell.coords["dim"])
        radii, _rel, _ref = radius_grid(options, ctx)
        subs, seeds = cell_surfaces(options, obj, radii, d, sphere, cell.generator())
        kw = dict(
            sphere=sphere,
            optimizer=options.optimizer,
            lr=options.lr,
            momentum=options.momentum,
            epochs=options.epochs,
            batch_size=options.batch_size or None,
        )
        if options.ensemble:
            res = train_ensemble(obj, subs, seeds=seeds, **kw)
        else:
            parts = [
                train_ensemble(obj, [s], seeds=[sd], **kw)
                for s, sd in zip(subs, seeds, strict=True)
            ]
            res = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        shape = (len(radii), options.samples)
        out = {
            k: v.reshape((*shape, options.epochs + 1))
            for k, v in res.items()
            if k not in ("x", "theta")
        }
        n_coord = max(options.dims) + (1 if "hypersphere" in options.surfaces else 0)
        theta = np.full((len(subs), n_coord), np.nan)
        theta[:, : res["theta"].shape[1]] = res["theta"]
        out["final_theta"] = theta.reshape((*shape, n_coord))
        out["final_norm"] = np.linalg.norm(np.asarray(res["x"], np.float64), axis=1).reshape(shape)
        return out

    def finalize(self, options: SubspaceTrainingOptions, ctx: StepContext, ds: Any) -> Any:
        import warnings

        import xarray as xr

        out = xr.Dataset()
        where = f"probe 'subspace-training' (step '{ctx.step.name}')"
        metric = "validation_accuracy" if "validation_accuracy" in ds else "validation_loss"
        for k in [
            v
            for v in ds.data_vars
            if v.startswith(("train_", "validation_")) and "epoch" in ds[v].dims
        ]:
            out[f"final_{k}"] = ds[k].isel(epoch=-1, drop=True)
        mean = out[f"final_{metric}"].mean("sample")
        out["final_mean"] = mean
        out["final_mean"].attrs = {"description": f"mean over samples of the final {metric}"}
        window = convergence_window(options.epochs)
        check = (
            f"the last {window} of {options.epochs} epoch(s) brought more than "
            f"{options.convergence_tol:.0%} of the train loss's whole decrease"
        )
        falling, share = loss_still_falling(
            ds["train_loss"].values, tol=options.convergence_tol, window=window
        )
        if not options.convergence_tol:
            falling[...] = False
        run = ("surface", "dim", "radius", "sample")
        out["still_falling"] = (
            run,
            falling.astype(np.int8),
            {
                "description": f"1: the train loss was still falling at the end ({check})",
                "tolerance": options.convergence_tol,
            },
        )
        out["loss_decrease_share"] = (
            run,
            share,
            {
                "description": f"share of the train loss's whole decrease that came in the "
                f"last {window} epoch(s) (NaN: it did not decrease)",
                "units": "fraction",
            },
        )
        notes, flags = [], []
        if options.convergence_tol and falling.any():
            notes.append(f"{int(falling.sum())} of {falling.size} subspace trainings")
            flags.append("still_falling")
        if metric == "validation_accuracy":
            kind = "given"
            if options.reference_accuracy:
                ref = options.reference_accuracy
            elif options.reference == "full":
                kind = "full"
                base = full_space_baseline(options, ctx)
                out["baseline_validation_accuracy"] = (
                    ("baseline",),
                    base["validation_accuracy"],
                    {
                        "description": "final validation accuracy of full-space training from "
                        f"a {options.init} point (the d_int reference)",
                        "units": "fraction",
                    },
                )
                bfall, _rate = loss_still_falling(
                    base["train_loss"], tol=options.convergence_tol, window=window
                )
                if not options.convergence_tol:
                    bfall[...] = False
                out["baseline_still_falling"] = (
                    ("baseline",),
                    bfall.astype(np.int8),
                    {"description": f"1: still falling at the end ({check})"},
                )
                if bfall.any():
                    flags.append("baseline_still_falling")
                    notes.append(
                        f"{int(bfall.sum())} of {bfall.size} full-space baseline trainings "
                        "(the reference accuracy is then too low, and d_int too small)"
                    )
                ref = float(np.nanmean(base["validation_accuracy"]))
            else:
                kind = "grid-best"
                ref = float(mean.max())
            thr = options.accuracy_fraction * ref
            dint = np.full((ds.sizes["surface"], ds.sizes["radius"]), np.nan)
            for i in range(ds.sizes["surface"]):
                for j in range(ds.sizes["radius"]):
                    dint[i, j] = intrinsic_dimension(
                        ds["dim"].values, mean.isel(surface=i, radius=j).values, thr
                    )
            of = {
                "full": "the mean accuracy of full-space training (Li et al. 2018's d_int)",
                "grid-best": "the best mean accuracy in the grid (NOT Li et al.'s d_int)",
                "given": "reference_accuracy",
            }[kind]
            out["d_int"] = (
                ("surface", "radius"),
                dint,
                {
                    "description": f"intrinsic dimension: smallest d (log-interpolated) whose "
                    f"mean final validation accuracy reaches {options.accuracy_fraction:g} × "
                    f"{of}, {ref:.4f}; NaN if never",
                    "threshold": thr,
                    "reference": ref,
                    "reference_kind": kind,
                    "fraction": options.accuracy_fraction,
                },
            )
        if notes:
            warnings.warn(
                f"{where}: the train loss was still falling at the end ({check}) in "
                f"{' and in '.join(notes)}; their accuracies (and d_int) belong to this "
                f"schedule, not to the landscape: raise epochs or lr (flags: "
                f"{', '.join(flags)})",
                ConvergenceWarning,
                stacklevel=2,
            )
        return out

    def plot(self, ds: Any, metric: str = "accuracy", **_: Any) -> Any:
        """Seed 000 Fig. 2: the final validation accuracy (``metric``) over (radius, d)
        per surface, with d_int; and accuracy vs d per radius."""
        import matplotlib.pyplot as plt

        surfaces = list(ds["surface"].values)
        fig, axes = plt.subplots(1, len(surfaces) + 1, figsize=(5.2 * (len(surfaces) + 1), 4.4))
        r = ds["radius"].values
        dims = ds["dim"].values
        name = f"validation_{metric}"
        if name not in ds:
            name = "validation_loss"  # a regression task has no accuracy
        final = ds[name].isel(epoch=-1).mean("sample")
        vmin, vmax = float(final.min()), float(final.max())
        label = figures.quantity(ds, name, f"final {name.replace('_', ' ')}")
        for ax, s in zip(axes, surfaces, strict=False):
            z = final.sel(surface=s).values  # (dim, radius)
            if len(r) > 1 and len(dims) > 1 and vmax > vmin:
                cs = ax.contourf(r, dims, z, levels=np.linspace(vmin, vmax, 12), cmap="viridis")
            else:
                cs = ax.scatter(
                    np.repeat(r[None], len(dims), 0),
                    np.repeat(dims[:, None], len(r), 1),
                    c=z,
                    cmap="viridis",
                    vmin=vmin,
                    vmax=vmax,
                    s=60,
                    edgecolors="k",
                    linewidths=0.5,
                )
            figures.colorbar(fig, cs, ax, label)
            if "d_int" in ds:
                ax.plot(
                    r,
                    ds["d_int"].sel(surface=s).values,
                    "-o",
                    color="white",
                    mec="black",
                    ms=4,
                    lw=1.5,
                    path_effects=figures.halo(1.5),
                    label=_dint_label(ds),
                )
            if "still_falling" in ds:  # (r, d) where some run had not converged
                falling = ds["still_falling"].sel(surface=s).any("sample").values  # (dim, r)
                jj, ii = np.nonzero(falling)
                if len(ii):
                    figures.mark(ax, r[ii], dims[jj], "minimum", label="loss still falling", ms=7)
            mark_reference(ax, ds, label=False)
            figures.log_axis(ax, "x")
            figures.log_axis(ax, "y")
            ax.set_xlabel(radius_label(ds) + " at the start")
            ax.set_ylabel("dimension d")
            ax.set_title(f"({'ab'[surfaces.index(s)]}) random {s}s")
            if "d_int" in ds or "still_falling" in ds:
                ax.legend(loc="lower right")
        ax = axes[-1]
        sel = final.sel(surface=surfaces[0])
        std = ds[name].isel(epoch=-1).std("sample").sel(surface=surfaces[0])
        for j, rv in enumerate(r):
            m, sd = sel.isel(radius=j).values, std.isel(radius=j).values
            rel = float(ds["radius_relative"].values[j]) if "radius_relative" in ds else rv
            ax.plot(dims, m, "o-", ms=3, color=f"C{j % 10}", label=f"r = {rel:.3g} r_ref")
            ax.fill_between(dims, m - sd, m + sd, color=f"C{j % 10}", alpha=0.2, lw=0)
        figures.log_axis(ax, "x")
        ax.set_xlabel("dimension d")
        ax.set_ylabel(label)
        ax.set_title(f"{surfaces[0]}s: {name.split('_')[-1]} vs d per radius")
        ax.legend()
        fig.tight_layout()
        return fig
