"""``neb``: a minimum energy path between two minima by AutoNEB (Draxler et al. 2018).

Draxler, Veschgini, Salmhofer & Hamprecht, "Essentially No Barriers in Neural Network
Energy Landscape", ICML 2018 (code: github.com/fdraxler/PyTorch-AutoNEB). A chain of
*pivots* joins θ0 and θ1; the nudged elastic band (Jónsson, Mills & Jacobsen 1998)
moves the inner pivots down the loss, each along the gradient with its component along
the path's tangent removed, so the chain settles on a minimum energy path whose
highest point is the *saddle* between the two minima. AutoNEB runs it in **cycles**:

1. insert pivots — the first cycle ``pivots`` equally spaced on the line; later cycles
   up to ``insert`` pivots where the loss between two pivots (evaluated at
   ``sub_pivots`` points per segment in the previous cycle) rises most above the
   straight interpolation of the pivot values, if by more than ``insert_threshold`` of
   the chain's loss range (the peer's ``fill.highest``);
2. optimise the band for ``steps`` mini-batch steps: per step the loss and gradient of
   every pivot on one mini-batch (all pivots in one vmapped pass), the improved
   tangent of Henkelman & Jónsson (2000) (the upwind neighbour; a loss-weighted mix at
   extrema), the gradient projected off it, and either (``spring = inf``, the peer's
   default) the pivots redistributed along the chain to their target spacing before
   every step, or Hookean springs of constant ``spring`` along the tangent;
3. analyse — the train loss at ``sub_pivots`` points between every two pivots (and
   the validation loss, after the last cycle); the saddle is the highest train loss.

DSS (``dss``) answers the same question by growing a string below a loss level; NEB
relaxes a band of fixed size and reports the barrier it finds. Both run on the same
pair, and ``lossatlas plot`` draws them side by side with the line and the curves.

Per pair (one cell): the final pivots, the dense loss along the final chain against
the fraction of its length, the saddle, barrier = saddle − the larger endpoint loss
(also for the chord of the same pair, for comparison), the chain's length over
‖θ1 − θ0‖ and the saddle after each cycle.

BatchNorm: pivots train with the model's fixed running statistics (lossatlas trains in
eval mode); the analysis recomputes them at every evaluated point where the model has
BatchNorm (``recompute_bn``).

Cost per pair: cycles × steps × (pivots) forward+backward passes on a mini-batch (one
vmapped pass per step), plus per cycle (pivots − 1)·(sub_pivots + 1) + 1 forward
passes over the train split (over the validation split too after the last cycle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from lossatlas.engine import (
    Cell,
    ConfigError,
    PathSummary,
    Plan,
    PointRef,
    Probe,
    StepContext,
    Variable,
    figures,
    progress,
)
from lossatlas.engine.training import OptimizerSpec, TrainingLoop

from .interpolation import (
    bn_recompute,
    curve_summary,
    evaluate_points,
    interpolate,
    validate_pairs,
)

__all__ = ["NEB", "NEBOptions", "distribute", "neb_tangent", "run_neb"]


@dataclass
class NEBOptions:
    pairs: list[list[PointRef]] = field(
        default_factory=lambda: [[PointRef("init:1"), PointRef("init:2")]],
        metadata={"doc": "pairs [θ0, θ1] of points to join (trained models: earlier steps)"},
    )
    labels: list[str] = field(
        default_factory=list, metadata={"doc": "one label per pair (default 'θ0 → θ1')"}
    )
    pivots: int = field(
        default=3, metadata={"ge": 1, "doc": "pivots put on the line in the first cycle"}
    )
    cycles: int = field(
        default=4, metadata={"ge": 1, "doc": "AutoNEB cycles (insert, optimise, analyse)"}
    )
    insert: int = field(
        default=2, metadata={"ge": 0, "doc": "most pivots inserted per cycle after the first"}
    )
    insert_threshold: float = field(
        default=0.1,
        metadata={
            "ge": 0,
            "doc": "insert where the loss between pivots rises above their interpolation by "
            "more than this fraction of the chain's loss range",
        },
    )
    steps: int = field(default=200, metadata={"ge": 0, "doc": "optimiser steps per cycle"})
    optimizer: Literal["sgd", "adam"] = field(
        default="sgd", metadata={"doc": "'sgd' (with momentum, the peer's) or 'adam'"}
    )
    lr: float = field(default=0.05, metadata={"gt": 0, "doc": "learning rate"})
    momentum: float = field(default=0.9, metadata={"ge": 0, "lt": 1, "doc": "SGD momentum"})
    batch_size: int = field(
        default=64, metadata={"ge": 0, "doc": "mini-batch size (0: full batch)"}
    )
    spring: float = field(
        default=math.inf,
        metadata={
            "gt": 0,
            "doc": "inf: redistribute the pivots to their target spacing before every step "
            "(the peer's default); a finite k: springs k·(spacing error) along the tangent",
            "allow_inf": True,
        },
    )
    weight_decay: float = field(
        default=0.0, metadata={"ge": 0, "doc": "L2 term wd·θ added to every pivot's gradient"}
    )
    sub_pivots: int = field(
        default=9, metadata={"ge": 0, "doc": "points evaluated between two pivots in the analysis"}
    )
    recompute_bn: bool = field(
        default=True,
        metadata={"doc": "recompute BatchNorm statistics at every evaluated point"},
    )

    def validate(self) -> None:
        validate_pairs(self.pairs, self.labels, "[θ0, θ1]")

    @property
    def max_pivots(self) -> int:
        """Pivots of the longest possible chain (endpoints included)."""
        return 2 + self.pivots + self.insert * (self.cycles - 1)


# ------------------------------------------------------------------ the band


def distribute(path: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The pivots moved along the chain (a polyline) so that consecutive spacings are
    proportional to ``weights`` (len n−1), endpoints unchanged (the peer's
    ``distribute_by_weights``)."""
    seg = torch.linalg.vector_norm(path[1:] - path[:-1], dim=1)
    cum = torch.cat([seg.new_zeros(1), torch.cumsum(seg, 0)])
    target = torch.cumsum(weights / weights.sum(), 0)[:-1] * cum[-1]
    out = path.clone()
    j = 0
    for i, s in enumerate(target.tolist(), start=1):
        while j < len(seg) - 1 and s > float(cum[j + 1]):
            j += 1
        f = (s - float(cum[j])) / float(seg[j]) if float(seg[j]) > 0 else 0.0
        out[i] = (1 - f) * path[j] + f * path[j + 1]
    return out


def neb_tangent(path: torch.Tensor, losses: torch.Tensor, i: int) -> torch.Tensor:
    """The improved tangent at inner pivot i (Henkelman & Jónsson 2000, as the peer's
    ``compute_tangent``): towards the higher neighbour, a loss-weighted mix of both
    directions where the pivot is a local extremum; a unit vector."""
    prev, here, nxt = float(losses[i - 1]), float(losses[i]), float(losses[i + 1])
    t_prev = path[i] - path[i - 1]
    t_next = path[i + 1] - path[i]
    if (prev < here > nxt) or (prev > here < nxt):
        d_max = max(abs(here - prev), abs(here - nxt))
        d_min = min(abs(here - prev), abs(here - nxt))
        n_prev = t_prev / t_prev.norm().clamp_min(1e-300)
        n_next = t_next / t_next.norm().clamp_min(1e-300)
        tau = d_min * n_prev + d_max * n_next if prev > nxt else d_max * n_prev + d_min * n_next
    elif prev > nxt:
        tau = t_prev
    else:
        tau = t_next
    return tau / tau.norm().clamp_min(1e-300)


def _fill(
    path: torch.Tensor, weights: torch.Tensor, alphas: list[list[float]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Insert points at fractions ``alphas[i]`` of segment i (the peer's ``fill_chain``);
    the target spacing of the segment is split in proportion."""
    rows, new_w = [path[0]], []
    for i, inserts in enumerate(alphas):
        last = 0.0
        for a in [*sorted(inserts), 1.0]:
            rows.append((1 - a) * path[i] + a * path[i + 1])
            new_w.append((a - last) * float(weights[i]))
            last = a
    w = torch.as_tensor(new_w, dtype=weights.dtype)
    return torch.stack(rows), w / w.sum()


def _dense(path: torch.Tensor, sub: int) -> tuple[torch.Tensor, np.ndarray]:
    """``sub`` points between every two pivots (pivots included) and their fractions
    of the chain's length."""
    a = torch.linspace(0, 1, sub + 2, dtype=path.dtype, device=path.device)[:-1]
    rows = [((1 - a)[:, None] * path[i] + a[:, None] * path[i + 1]) for i in range(len(path) - 1)]
    X = torch.cat([*rows, path[-1:]])
    seg = torch.linalg.vector_norm(path[1:] - path[:-1], dim=1).double().cpu().numpy()
    total = seg.sum()
    starts = np.concatenate([[0.0], np.cumsum(seg)])
    pos = np.concatenate(
        [starts[i] + a.double().cpu().numpy() * seg[i] for i in range(len(seg))] + [[total]]
    )
    return X, pos / total if total > 0 else pos


def _highest(
    dense: np.ndarray, pivot_loss: np.ndarray, sub: int, count: int, threshold: float
) -> list[list[float]]:
    """Where to insert (the peer's ``fill.highest``): per segment, the largest rise of
    the dense loss above the straight interpolation of its two pivots' losses, over the
    chain's loss range; up to ``count`` segments whose rise exceeds ``threshold``."""
    n = len(pivot_loss) - 1
    alphas = np.linspace(0, 1, sub + 2)[1:-1]
    span = float(np.max(pivot_loss) - np.min(pivot_loss)) + 1e-12
    best = np.full(n, -np.inf)
    where = np.zeros(n)
    for i in range(n):
        inner = dense[i * (sub + 1) + 1 : (i + 1) * (sub + 1)]
        rise = (inner - ((1 - alphas) * pivot_loss[i] + alphas * pivot_loss[i + 1])) / span
        if rise.size:
            k = int(np.argmax(rise))
            best[i], where[i] = rise[k], alphas[k]
    out: list[list[float]] = [[] for _ in range(n)]
    for i in np.argsort(-best)[:count]:
        if best[i] > threshold:
            out[i] = [float(where[i])]
    return out


@dataclass
class NEBResult:
    path: torch.Tensor  # (pivots, D)
    cycle_saddle: list[float]
    cycle_pivots: list[int]
    dense_x: torch.Tensor
    dense_pos: np.ndarray
    dense: dict[str, np.ndarray]
    diverged: bool


def run_neb(
    obj: Any, w0: torch.Tensor, w1: torch.Tensor, o: NEBOptions, generator: torch.Generator
) -> NEBResult:
    """AutoNEB between ``w0`` and ``w1`` (see the module docstring); mini-batch order
    from ``generator``."""
    from torch.func import vmap

    from lossatlas.engine.training import minibatch_loss

    split = obj.splits["train"]
    n = len(split)
    size = n if o.batch_size in (0, None) else min(o.batch_size, n)
    path = torch.stack([w0, w1])
    weights = torch.ones(1, dtype=torch.float64)
    cycle_saddle: list[float] = []
    cycle_pivots: list[int] = []
    dense_loss: np.ndarray | None = None
    pivot_loss: np.ndarray | None = None
    diverged = False
    batched = vmap(lambda x, xb, yb: minibatch_loss(obj, x, xb, yb), in_dims=(0, None, None))
    use_vmap = True  # until vmap fails once: then pivot by pivot for the rest of the run

    def losses_and_grads(P: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor):
        nonlocal use_vmap
        if use_vmap:
            X = P.detach().requires_grad_(True)
            try:
                with torch.enable_grad():
                    L = batched(X, xb, yb)
                    (G,) = torch.autograd.grad(L.sum(), X)
                return L.detach(), G
            except (RuntimeError, NotImplementedError):  # a model vmap cannot batch
                use_vmap = False
        Ls, Gs = [], []
        for x in P:
            xi = x.detach().requires_grad_(True)
            with torch.enable_grad():
                li = minibatch_loss(obj, xi, xb, yb)
                (gi,) = torch.autograd.grad(li, xi)
            Ls.append(li.detach())
            Gs.append(gi)
        return torch.stack(Ls), torch.stack(Gs)

    order = torch.arange(n)
    pos = n
    bar = progress.task("AutoNEB", o.cycles * o.steps, "step")
    for cycle in range(o.cycles):
        if cycle == 0:
            path, weights = _fill(path, weights, [list(np.linspace(0, 1, o.pivots + 2)[1:-1])])
        elif o.insert and dense_loss is not None and pivot_loss is not None:
            where = _highest(dense_loss, pivot_loss, o.sub_pivots, o.insert, o.insert_threshold)
            if any(where):
                path, weights = _fill(path, weights, where)
        X = path.clone()
        # The inner pivots are one member of the shared loop (a fresh optimizer state
        # each cycle, as the chain changes between cycles).
        loop = TrainingLoop(
            [X[1:-1]], OptimizerSpec(o.optimizer, o.lr, o.momentum if o.optimizer == "sgd" else 0)
        )
        inner = loop.params[0]
        for _step in range(o.steps):
            X = torch.cat([X[:1], inner.detach(), X[-1:]])
            if math.isinf(o.spring):
                X = distribute(X, weights.to(X.dtype))
                with torch.no_grad():
                    inner.copy_(X[1:-1])
            if pos + size > n:
                order = torch.randperm(n, generator=generator) if size < n else torch.arange(n)
                pos = 0
            idx = order[pos : pos + size].to(split.inputs.device)
            pos += size
            L, G = losses_and_grads(X, split.inputs[idx], split.targets[idx])
            if not bool(torch.isfinite(L).all()) or not bool(torch.isfinite(G).all()):
                diverged = True
                break
            g = G[1:-1].clone()
            if o.weight_decay:
                g += o.weight_decay * X[1:-1]
            dist = torch.linalg.vector_norm(X[1:] - X[:-1], dim=1)
            total = dist.sum()
            target = weights.to(X.dtype) * total
            for i in range(1, len(X) - 1):
                tau = neb_tangent(X, L, i)
                g[i - 1] -= (g[i - 1] @ tau) * tau
                if not math.isinf(o.spring):
                    err = (dist[i - 1] - target[i - 1]) - (dist[i] - target[i])
                    g[i - 1] += o.spring * err * tau
            loop.apply([g])
            bar.update(advance=1, cycle=f"{cycle + 1}/{o.cycles}", pivots=len(X) - 2)
        X = torch.cat([X[:1], loop.finish()[0], X[-1:]])
        if math.isinf(o.spring) and not diverged:
            X = distribute(X, weights.to(X.dtype))
        path = X.detach()
        if diverged or not bool(torch.isfinite(path).all()):
            diverged = True
            break
        dense_x, dense_pos = _dense(path, o.sub_pivots)
        # the validation split only for the final chain (the one stored)
        last = cycle == o.cycles - 1
        values = evaluate_points(
            obj, dense_x, o.recompute_bn, ("train", "validation") if last else ("train",)
        )
        dense_loss = values["train_loss"]
        pivot_loss = dense_loss[:: o.sub_pivots + 1]
        cycle_saddle.append(float(np.max(dense_loss)))
        cycle_pivots.append(len(path))
    bar.close()
    if diverged:
        dense_x, dense_pos = _dense(path, o.sub_pivots)
        values = {k: np.full(len(dense_x), np.nan) for k in obj.evaluate_both(w0[None])}
    return NEBResult(path, cycle_saddle, cycle_pivots, dense_x, dense_pos, values, diverged)


# ------------------------------------------------------------------ the probe


class NEB(Probe[NEBOptions]):
    name = "neb"
    points = ()
    summary = (
        "AutoNEB (Draxler et al. 2018): nudged elastic band, saddle and length between two minima"
    )
    Options = NEBOptions

    def check(self, options: NEBOptions, ctx: StepContext) -> None:
        if options.max_pivots > 10_000:
            raise ConfigError(
                f"step '{ctx.step.name}': the chain could grow to {options.max_pivots} pivots; "
                "lower 'insert' or 'cycles'"
            )

    def labels(self, options: NEBOptions) -> list[str]:
        return list(options.labels) or [f"{a} → {b}" for a, b in options.pairs]

    def plan(self, options: NEBOptions, ctx: StepContext) -> Plan:
        obj = ctx.objective
        npiv = options.max_pivots
        ndense = (npiv - 1) * (options.sub_pivots + 1) + 1
        variables: dict[str, Variable] = {
            "pivots": Variable(
                ("pair", "pivot", "param"),
                "the final chain, θ0 first (NaN padding)",
                dtype="float64" if obj.dtype == torch.float64 else "float32",
                finite=False,
            ),
            "pivot_count": Variable(
                ("pair",), "pivots of the final chain (ends included)", "1", "int32"
            ),
            "position": Variable(
                ("pair", "dense"),
                "fraction of the chain's length from θ0 of each evaluated point (NaN padding)",
                units="1",
                finite=False,
            ),
            "saddle": Variable(("pair",), "highest train loss along the final chain", units="1"),
            "length": Variable(("pair",), "length of the final chain", units="1"),
            "distance": Variable(("pair",), "‖θ1 − θ0‖", units="1"),
            "length_norm": Variable(("pair",), "length / ‖θ1 − θ0‖", units="1"),
            "cycle_saddle": Variable(
                ("pair", "cycle"), "the saddle after each cycle", units="1", finite=False
            ),
            "cycle_pivots": Variable(
                ("pair", "cycle"), "pivots after each cycle", "1", finite=False
            ),
            "diverged": Variable(("pair",), "1 if a loss became NaN/inf", "1", "int8"),
        }
        for split in ("train", "validation"):
            for m in obj.metric_names():
                variables[f"{split}_{m}"] = Variable(
                    ("pair", "dense"),
                    f"{m} on the {split} split along the final chain (NaN padding)",
                    units="1",
                    finite=False,
                )
            for prefix, where in (("", "the final chain"), ("linear_", "the chord")):
                variables[f"{prefix}{split}_loss_barrier"] = Variable(
                    ("pair",),
                    f"max of the {split} loss along {where} − the larger endpoint loss",
                    units="1",
                )
        return Plan(
            coords={
                "pair": np.arange(len(options.pairs)),
                "pivot": np.arange(npiv),
                "dense": np.arange(ndense),
                "cycle": np.arange(1, options.cycles + 1),
                "param": np.arange(obj.D),
            },
            variables=variables,
            cell_dims=("pair",),
            coord_attrs={
                "pair": {"description": "index of the pair of points", "units": "1"},
                "pivot": {"description": "position on the chain (0 = θ0)", "units": "1"},
                "dense": {"description": "evaluated point along the chain", "units": "1"},
                "cycle": {"description": "AutoNEB cycle", "units": "1"},
                "param": {"description": "index into the flat parameter vector", "units": "1"},
            },
            attrs={
                "labels": self.labels(options),
                "theta0": [str(p[0]) for p in options.pairs],
                "theta1": [str(p[1]) for p in options.pairs],
                "sub_pivots": options.sub_pivots,
                "recompute_bn": int(bn_recompute(obj, options.recompute_bn)),
                "paper": "Draxler et al., ICML 2018",
            },
        )

    def compute(self, options: NEBOptions, ctx: StepContext, cell: Cell) -> dict[str, Any]:
        obj = ctx.objective
        a, b = (str(r) for r in options.pairs[cell.index["pair"]])
        w0, w1 = ctx.resolve_point(a), ctx.resolve_point(b)
        res = run_neb(obj, w0, w1, options, cell.generator())
        npiv = options.max_pivots
        ndense = (npiv - 1) * (options.sub_pivots + 1) + 1
        k, m = len(res.path), len(res.dense_pos)

        def pad(values: np.ndarray, size: int) -> np.ndarray:
            out = np.full(size, np.nan)
            out[: len(values)] = values
            return out

        pivots = np.full((npiv, obj.D), np.nan)
        pivots[:k] = res.path.double().cpu().numpy()
        seg = torch.linalg.vector_norm(res.path[1:] - res.path[:-1], dim=1).double()
        length = float(seg.sum())
        dist = float((w1 - w0).double().norm())
        out: dict[str, Any] = {
            "pivots": pivots,
            "pivot_count": np.int32(k),
            "position": pad(res.dense_pos, ndense),
            "length": length,
            "distance": dist,
            "length_norm": length / dist if dist > 0 else np.nan,
            "cycle_saddle": pad(np.asarray(res.cycle_saddle), options.cycles),
            "cycle_pivots": pad(np.asarray(res.cycle_pivots, dtype=float), options.cycles),
            "diverged": np.int8(res.diverged),
        }
        for key, v in res.dense.items():
            out[key] = pad(v, ndense)
        out["saddle"] = float(np.max(res.dense["train_loss"])) if m else np.nan
        t = np.linspace(0.0, 1.0, 41)
        chord = evaluate_points(obj, interpolate(w0, w1, t), options.recompute_bn)
        for split in ("train", "validation"):
            out[f"{split}_loss_barrier"] = curve_summary(res.dense_pos, res.dense[f"{split}_loss"])[
                "barrier"
            ]
            out[f"linear_{split}_loss_barrier"] = curve_summary(t, chord[f"{split}_loss"])[
                "barrier"
            ]
        return out

    def paths(self, ds: Any) -> list[PathSummary]:
        labels = list(ds.attrs.get("labels") or [str(p) for p in ds["pair"].values])
        out = []
        for p in range(ds.sizes["pair"]):
            sel = {"pair": p}
            pos = np.asarray(ds["position"].isel(sel).values, dtype=float)
            keep = np.isfinite(pos)
            k = int(ds["pivot_count"].isel(sel))
            label = f"NEB ({k} pivots)" + (f", {labels[p]}" if ds.sizes["pair"] > 1 else "")
            out.append(
                PathSummary(
                    label,
                    pos[keep],
                    np.asarray(ds["train_loss"].isel(sel).values)[keep],
                    float(ds["length"].isel(sel)),
                    float(ds["distance"].isel(sel)),
                    "neb",
                    np.asarray(ds["validation_loss"].isel(sel).values)[keep],
                )
            )
        return out

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        """Left: the loss along the final chain against the fraction of its length,
        pivots marked (the peer's saddle analysis); right: the saddle after each cycle,
        with the chord's barrier for reference."""
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2))
        labels = list(ds.attrs.get("labels") or [str(p) for p in ds["pair"].values])
        sub = int(ds.attrs.get("sub_pivots", 9))
        for p in range(ds.sizes["pair"]):
            sel = {"pair": p}
            c = f"C{p}"
            pos = np.asarray(ds["position"].isel(sel).values, dtype=float)
            keep = np.isfinite(pos)
            L = np.asarray(ds["train_loss"].isel(sel).values)[keep]
            V = np.asarray(ds["validation_loss"].isel(sel).values)[keep]
            bar = float(ds["train_loss_barrier"].isel(sel))
            lin = float(ds["linear_train_loss_barrier"].isel(sel))
            tag = f"{labels[p]}: " if ds.sizes["pair"] > 1 else ""
            axes[0].plot(
                pos[keep], L, color=c, label=f"{tag}train (barrier {bar:.3g}; chord {lin:.3g})"
            )
            axes[0].plot(pos[keep], V, color=c, ls="--", alpha=0.7, label=f"{tag}validation")
            axes[0].plot(pos[keep][:: sub + 1], L[:: sub + 1], "o", color=c, ms=4)
            cyc = ds["cycle"].values
            axes[1].plot(cyc, ds["cycle_saddle"].isel(sel), "o-", color=c, label=f"{tag}saddle")
            axes[1].axhline(
                float(np.nanmax(L[[0, -1]])) + lin, color=c, ls=":", label=f"{tag}chord's maximum"
            )
        axes[0].set_xlabel("fraction of the chain's length from θ0 (dots: pivots)")
        axes[0].set_ylabel(figures.quantity(ds, "train_loss", "loss"))
        if kwargs.get("logy"):
            figures.log_axis(axes[0], "y")
            figures.log_axis(axes[1], "y")
        axes[0].legend()
        axes[0].set_title(
            "loss along the final chain; length / ‖θ1 − θ0‖ = "
            + ", ".join(f"{v:.3f}" for v in np.atleast_1d(ds["length_norm"].values)),
            fontsize=9,
        )
        axes[1].set_xlabel("AutoNEB cycle")
        axes[1].set_ylabel(figures.quantity(ds, "train_loss", "highest train loss on the chain"))
        axes[1].legend()
        axes[1].set_title("saddle per cycle")
        fig.tight_layout()
        return fig
