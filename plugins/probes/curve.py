"""``curve``: a low-loss curve between two minima (Garipov et al. 2018).

Garipov, Izmailov, Podoprikhin, Vetrov & Wilson, "Loss Surfaces, Mode Connectivity,
and Fast Ensembling of DNNs", NeurIPS 2018 (code: github.com/timgaripov/
dnn-mode-connectivity). Two independently trained networks w0, w1 are joined by a
parametric curve φ_θ(t), t ∈ [0, 1], φ(0) = w0, φ(1) = w1, whose bends θ are trained
to minimise the expected loss along it, E_{t ~ U(0, 1)} L(φ_θ(t)): each mini-batch step
draws one t uniformly and descends L(φ_θ(t)) on the batch (plus the peer's weight decay
½·wd·‖φ_θ(t)‖²). Two curve families, with ``bends`` = k trainable control points:

- ``bezier``: φ(t) = Σ_{j=0}^{k+1} C(k+1, j) t^j (1−t)^{k+1−j} c_j, c_0 = w0,
  c_{k+1} = w1 (k = 1: the quadratic Bezier curve of the paper);
- ``polychain``: the polygonal chain through w0, c_1 … c_k, w1, bends equally spaced
  in t.

Unlike the peer, which rewrites every layer as a "curve layer" holding all control
points, the curve lives on flat parameter vectors here: φ(t) is a point x ∈ R^D and the
model is any ``nn.Module`` (evaluated by the :class:`~lossatlas.engine.Objective`).
Bends start on the chord (the peer's ``init_linear``); the learning rate follows the
peer's schedule (constant for half the epochs, then linearly down to 1% by 90%) unless
``lr_schedule = "constant"``.

Evaluation, per pair (one cell): train and validation loss and accuracy at ``points``
values of t on the curve **and on the chord** (1−t)·w0 + t·w1 of the same pair, with
BatchNorm statistics recomputed at every t where the model has BatchNorm (as the peer's
``update_bn``); the barriers max_t L − max(L(0), L(1)) of both; the curve's length
∫‖φ'(t)‖dt (exact for a chain; composite Gauss–Legendre for a Bezier curve, to ~1e-12
relative) and the fraction of it reached at each t; the arc-length mean of the loss
(the peer's "int" column); the trained bends. φ(0) and φ(1) are the endpoints bit for
bit.

BatchNorm during training: lossatlas evaluates and trains models in eval mode, so BN
layers normalise with the model's fixed running statistics while the bends train (the
peer uses batch statistics); the evaluation recomputes them at every t.

Cost per pair: epochs × ⌈N/batch_size⌉ forward+backward passes on mini-batches, plus
2 × ``points`` forward passes over both splits (one more over the train split per
point with BatchNorm).
"""

from __future__ import annotations

import itertools
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
    optimizer_options,
    progress,
)

from .interpolation import (
    bn_recompute,
    curve_summary,
    evaluate_points,
    interpolate,
    validate_pairs,
)

__all__ = [
    "Curve",
    "CurveOptions",
    "arc_fraction",
    "curve_coefficients",
    "curve_length",
    "curve_points",
    "garipov_lr",
]

#: Composite Gauss–Legendre rule for the Bezier length: panels × nodes per panel.
PANELS, NODES = 32, 16


@dataclass
class CurveOptions(
    optimizer_options(
        lr=0.05,
        momentum=0.9,
        epochs=20,
        batch_size=64,
        docs={
            "optimizer": "'sgd' (with momentum, the peer's) or 'adam'",
            "lr": "initial learning rate",
            "momentum": "SGD momentum",
        },
    )
):
    pairs: list[list[PointRef]] = field(
        default_factory=lambda: [[PointRef("init:1"), PointRef("init:2")]],
        metadata={"doc": "pairs [w0, w1] of points to join (trained models: earlier steps)"},
    )
    labels: list[str] = field(
        default_factory=list, metadata={"doc": "one label per pair (default 'w0 → w1')"}
    )
    kind: Literal["bezier", "polychain"] = field(
        default="bezier", metadata={"doc": "'bezier' (the paper's) or 'polychain'"}
    )
    bends: int = field(
        default=1,
        metadata={"ge": 1, "doc": "trainable control points (1: the quadratic Bezier curve)"},
    )
    weight_decay: float = field(
        default=0.0, metadata={"ge": 0, "doc": "the peer's ½·wd·‖φ(t)‖² added to each step's loss"}
    )
    lr_schedule: Literal["garipov", "constant"] = field(
        default="garipov",
        metadata={
            "doc": "'garipov': constant for 50% of the epochs, then linear down to 1% by "
            "90%; 'constant'"
        },
    )
    points: int = field(
        default=61, metadata={"ge": 2, "doc": "values of t evaluated on the curve and the chord"}
    )
    recompute_bn: bool = field(
        default=True,
        metadata={
            "doc": "recompute BatchNorm statistics at every evaluated t (where the model "
            "has BatchNorm with running statistics)"
        },
    )

    def validate(self) -> None:
        validate_pairs(self.pairs, self.labels, "[w0, w1]")


# --------------------------------------------------------------------- geometry


def curve_coefficients(kind: str, bends: int, t: torch.Tensor) -> torch.Tensor:
    """(len(t), bends + 2) weights of the control points [w0, c_1 … c_k, w1] at ``t``:
    Bernstein polynomials of degree k+1 (``bezier``) or hat functions on k+1 equal
    pieces (``polychain``). Rows sum to one; t = 0 and t = 1 give exactly (1, 0 … 0)
    and (0 … 0, 1)."""
    t = t.reshape(-1, 1)
    n = bends + 1
    j = torch.arange(n + 1, dtype=t.dtype, device=t.device).reshape(1, -1)
    if kind == "bezier":
        binom = torch.tensor([math.comb(n, int(i)) for i in range(n + 1)], dtype=t.dtype)
        return binom.to(t.device) * t**j * (1 - t) ** (n - j)
    return torch.clamp(1 - torch.abs(t * n - j), min=0)


def curve_points(kind: str, control: torch.Tensor, t: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Points φ(t) (len(t), D) of the curve with control points ``control`` (k+2, D)."""
    tt = torch.as_tensor(np.asarray(t, dtype=np.float64)).to(control.device, control.dtype)
    return curve_coefficients(kind, control.shape[0] - 2, tt) @ control


def _speed(control: torch.Tensor, t: np.ndarray) -> np.ndarray:
    """‖φ'(t)‖ of a Bezier curve at ``t`` (float64): φ' is the degree-n−1 Bezier curve of
    n·(c_{j+1} − c_j), so ‖φ'‖² = n² bᵀ Γ b with Γ the Gram matrix of the differences."""
    diffs = torch.diff(control.double(), dim=0)  # (n, D)
    n = diffs.shape[0]
    gram = (diffs @ diffs.T).cpu().numpy()
    b = curve_coefficients("bezier", n - 2, torch.as_tensor(t, dtype=torch.float64)).numpy()
    return n * np.sqrt(np.maximum(np.einsum("ti,ij,tj->t", b, gram, b), 0.0))


def _segment_lengths(kind: str, control: torch.Tensor, edges: np.ndarray) -> np.ndarray:
    """Lengths of the curve between consecutive values of ``edges`` (sorted, in [0, 1])."""
    if kind == "polychain":
        fine = np.unique(np.concatenate([edges, np.linspace(0, 1, control.shape[0])]))
        P = curve_points(kind, control.double(), fine)
        seg = torch.linalg.vector_norm(torch.diff(P, dim=0), dim=1).cpu().numpy()
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        at = np.interp(edges, fine, cum)  # exact: the chain is straight between knots
        return np.diff(at)
    x, w = np.polynomial.legendre.leggauss(NODES)
    out = np.zeros(len(edges) - 1)
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        if b <= a:
            continue
        panels = np.linspace(a, b, max(1, int(np.ceil(PANELS * (b - a)))) + 1)
        for lo, hi in itertools.pairwise(panels):
            t = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)
            out[i] += 0.5 * (hi - lo) * float(np.dot(w, _speed(control, t)))
    return out


def curve_length(kind: str, control: torch.Tensor) -> float:
    """The curve's length ∫₀¹ ‖φ'(t)‖ dt (float64)."""
    return float(_segment_lengths(kind, control, np.array([0.0, 1.0]))[0])


def arc_fraction(kind: str, control: torch.Tensor, t: np.ndarray) -> np.ndarray:
    """The fraction of the curve's length reached at each (sorted) ``t``."""
    t = np.asarray(t, dtype=np.float64)
    edges = np.unique(np.concatenate([[0.0], t, [1.0]]))
    cum = np.concatenate([[0.0], np.cumsum(_segment_lengths(kind, control, edges))])
    total = cum[-1]
    return np.interp(t, edges, cum) / total if total > 0 else t.copy()


def garipov_lr(base: float, epoch: int, epochs: int) -> float:
    """The peer's schedule: base for the first half, then linearly to 1% of it by 90%
    of the epochs, then 1% (``learning_rate_schedule`` of its train.py)."""
    alpha = epoch / max(epochs, 1)
    if alpha <= 0.5:
        factor = 1.0
    elif alpha <= 0.9:
        factor = 1.0 - (alpha - 0.5) / 0.4 * 0.99
    else:
        factor = 0.01
    return factor * base


# --------------------------------------------------------------------- training


def train_curve(
    obj: Any,
    w0: torch.Tensor,
    w1: torch.Tensor,
    options: CurveOptions,
    generator: torch.Generator,
) -> tuple[torch.Tensor, np.ndarray, bool]:
    """Train the bends: each step draws t ~ U(0, 1) and a mini-batch (both from
    ``generator``) and descends L_batch(φ(t)) + ½·wd·‖φ(t)‖². Returns (control points
    (k+2, D), mean step loss per epoch, diverged)."""
    from lossatlas.engine.training import OptimizerSpec, TrainingLoop, minibatch_loss

    k = options.bends
    frac = torch.arange(1, k + 1, dtype=w0.dtype, device=w0.device) / (k + 1)
    start = w0.unsqueeze(0) + frac.unsqueeze(1) * (w1 - w0).unsqueeze(0)
    # The bends are one member of the shared loop (their loss is a function of all).
    momentum = options.momentum if options.optimizer == "sgd" else 0.0
    # No weight decay in the optimiser: the loss below carries ½·wd·‖φ(t)‖² itself.
    loop = TrainingLoop([start], OptimizerSpec(options.optimizer, options.lr, momentum))
    bends, opt = loop.params[0], loop.optimizer
    split = obj.splits["train"]
    n = len(split)
    size = n if options.batch_size in (0, None) else min(options.batch_size, n)
    history = np.full(options.epochs, np.nan)
    per_epoch = -(-n // size)
    bar = progress.task("curve training", options.epochs * per_epoch, "step")
    for epoch in range(options.epochs):
        lr = (
            garipov_lr(options.lr, epoch, options.epochs)
            if options.lr_schedule == "garipov"
            else options.lr
        )
        for group in opt.param_groups:
            group["lr"] = lr
        order = torch.randperm(n, generator=generator) if size < n else torch.arange(n)
        total, count = 0.0, 0
        for start in range(0, n, size):
            idx = order[start : start + size].to(split.inputs.device)
            t = torch.rand(1, generator=generator, dtype=torch.float64)
            coeff = curve_coefficients(options.kind, k, t).to(w0.device, w0.dtype)[0]
            x = coeff[0] * w0 + coeff[-1] * w1 + (coeff[1:-1].unsqueeze(1) * bends).sum(0)
            loss = minibatch_loss(obj, x, split.inputs[idx], split.targets[idx])
            if options.weight_decay:
                loss = loss + 0.5 * options.weight_decay * (x * x).sum()
            if not torch.isfinite(loss):
                return torch.cat([w0[None], bends.detach(), w1[None]]), history, True
            loop.zero_grad()
            loss.backward()
            loop.apply()
            total += float(loss.detach()) * int(idx.numel())
            count += int(idx.numel())
            bar.update(advance=1, epoch=f"{epoch + 1}/{options.epochs}")
        history[epoch] = total / max(count, 1)
    bar.close()
    control = torch.cat([w0[None], bends.detach(), w1[None]])
    return control, history, not bool(torch.isfinite(control).all())


# --------------------------------------------------------------------- the probe


class Curve(Probe[CurveOptions]):
    name = "curve"
    points = ()
    summary = "Garipov et al.: train a Bezier curve / polychain of low loss between two minima"
    Options = CurveOptions

    def check(self, options: CurveOptions, ctx: StepContext) -> None:
        if options.epochs == 0:
            raise ConfigError(
                f"step '{ctx.step.name}': epochs = 0 trains no curve (its bends stay on "
                "the chord); give epochs ≥ 1"
            )

    def labels(self, options: CurveOptions) -> list[str]:
        return list(options.labels) or [f"{a} → {b}" for a, b in options.pairs]

    def plan(self, options: CurveOptions, ctx: StepContext) -> Plan:
        obj = ctx.objective
        t = np.linspace(0.0, 1.0, options.points)
        pt = ("pair", "t")
        variables: dict[str, Variable] = {}
        for prefix, where in (("", "on the curve φ(t)"), ("linear_", "on the chord")):
            for split in ("train", "validation"):
                for m in obj.metric_names():
                    variables[f"{prefix}{split}_{m}"] = Variable(
                        pt,
                        f"{m} on the {split} split {where}",
                        units="1",
                    )
                variables[f"{prefix}{split}_loss_barrier"] = Variable(
                    ("pair",),
                    f"max over t of the {split} loss {where} − the larger endpoint loss",
                    units="1",
                )
        for split in ("train", "validation"):
            variables[f"{split}_loss_mean"] = Variable(
                ("pair",),
                f"arc-length mean of the {split} loss along the curve (the peer's 'int')",
                units="1",
            )
        variables["arc"] = Variable(
            pt, "fraction of the curve's length from w0 reached at t", units="1"
        )
        variables["length"] = Variable(("pair",), "the curve's length ∫‖φ'(t)‖dt", units="1")
        variables["distance"] = Variable(("pair",), "‖w1 − w0‖", units="1")
        variables["length_norm"] = Variable(("pair",), "length / ‖w1 − w0‖", units="1")
        variables["epoch_loss"] = Variable(
            ("pair", "epoch"),
            "mean training-step loss of each epoch (at random t, with weight decay)",
            units="1",
            finite=False,
        )
        variables["diverged"] = Variable(
            ("pair",), "1 if the loss became NaN/inf while training", "1", "int8"
        )
        variables["bends"] = Variable(
            ("pair", "bend", "param"),
            "the trained control points c_1 … c_k",
            dtype="float64" if obj.dtype == torch.float64 else "float32",
            finite=False,
        )
        return Plan(
            coords={
                "pair": np.arange(len(options.pairs)),
                "t": t,
                "epoch": np.arange(1, options.epochs + 1),
                "bend": np.arange(1, options.bends + 1),
                "param": np.arange(obj.D),
            },
            variables=variables,
            cell_dims=("pair",),
            coord_attrs={
                "pair": {"description": "index of the pair of points", "units": "1"},
                "t": {"description": "curve parameter: φ(0) = w0, φ(1) = w1", "units": "1"},
                "epoch": {"description": "epoch of the curve's training", "units": "1"},
                "bend": {"description": "index of the trainable control point", "units": "1"},
                "param": {"description": "index into the flat parameter vector", "units": "1"},
            },
            attrs={
                "kind": options.kind,
                "bend_count": options.bends,
                "labels": self.labels(options),
                "w0": [str(p[0]) for p in options.pairs],
                "w1": [str(p[1]) for p in options.pairs],
                "recompute_bn": int(bn_recompute(obj, options.recompute_bn)),
                "paper": "Garipov et al., NeurIPS 2018",
            },
        )

    def compute(self, options: CurveOptions, ctx: StepContext, cell: Cell) -> dict[str, Any]:
        obj = ctx.objective
        a, b = (str(r) for r in options.pairs[cell.index["pair"]])
        w0, w1 = ctx.resolve_point(a), ctx.resolve_point(b)
        control, history, diverged = train_curve(obj, w0, w1, options, cell.generator())
        t = np.linspace(0.0, 1.0, options.points)
        out: dict[str, Any] = {"epoch_loss": history, "diverged": np.int8(diverged)}
        for prefix, X in (
            ("", curve_points(options.kind, control, t)),
            ("linear_", interpolate(w0, w1, t)),
        ):
            for k, v in evaluate_points(obj, X, options.recompute_bn).items():
                out[prefix + k] = v
            for split in ("train", "validation"):
                out[f"{prefix}{split}_loss_barrier"] = curve_summary(
                    t, out[f"{prefix}{split}_loss"]
                )["barrier"]
        length = curve_length(options.kind, control) if not diverged else np.nan
        dist = float((w1 - w0).double().norm())
        arc = arc_fraction(options.kind, control, t) if not diverged else np.full(len(t), np.nan)
        out.update(
            arc=arc,
            length=length,
            distance=dist,
            length_norm=length / dist if dist > 0 else np.nan,
        )
        for split in ("train", "validation"):
            L = out[f"{split}_loss"]
            out[f"{split}_loss_mean"] = (
                float(np.trapezoid(L, arc)) if np.all(np.isfinite(arc)) else np.nan
            )
        out["bends"] = control[1:-1]
        return out

    def paths(self, ds: Any) -> list[PathSummary]:
        """Each pair's trained curve, positions by arc length."""
        labels = list(ds.attrs.get("labels") or [str(p) for p in ds["pair"].values])
        kind = str(ds.attrs.get("kind", "bezier"))
        k = int(ds.attrs.get("bend_count", ds.sizes.get("bend", 1)))
        name = "Bezier" if kind == "bezier" else "polychain"
        out = []
        for p in range(ds.sizes["pair"]):
            sel = {"pair": p}
            label = f"{name} curve ({k} bend{'s' if k > 1 else ''})"
            if ds.sizes["pair"] > 1:
                label += f", {labels[p]}"
            out.append(
                PathSummary(
                    label,
                    np.asarray(ds["arc"].isel(sel).values),
                    np.asarray(ds["train_loss"].isel(sel).values),
                    float(ds["length"].isel(sel)),
                    float(ds["distance"].isel(sel)),
                    kind,
                    np.asarray(ds["validation_loss"].isel(sel).values),
                )
            )
        return out

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        """The paper's Fig. 2 as curves: train loss (and accuracy) along the curve and
        along the chord of each pair against t, with the barriers; and the curve's
        training loss per epoch."""
        import matplotlib.pyplot as plt

        has_acc = "train_accuracy" in ds
        n = 3 if has_acc else 2
        fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.2))
        t = ds["t"].values
        labels = list(ds.attrs.get("labels") or [str(p) for p in ds["pair"].values])
        kind = "Bezier" if ds.attrs.get("kind", "bezier") == "bezier" else "polychain"
        for p in range(ds.sizes["pair"]):
            sel = {"pair": p}
            c = f"C{p}"
            tag = f" ({labels[p]})" if ds.sizes["pair"] > 1 else ""
            cb = float(ds["train_loss_barrier"].isel(sel))
            lb = float(ds["linear_train_loss_barrier"].isel(sel))
            ax = axes[0]
            ax.plot(t, ds["train_loss"].isel(sel), color=c, label=f"{kind}{tag}: barrier {cb:.3g}")
            ax.plot(t, ds["validation_loss"].isel(sel), color=c, ls="--", alpha=0.7)
            ax.plot(
                t,
                ds["linear_train_loss"].isel(sel),
                color=c,
                ls=":",
                label=f"chord{tag}: barrier {lb:.3g}",
            )
            if has_acc:
                ax = axes[1]
                ax.plot(t, 1 - ds["train_accuracy"].isel(sel), color=c, label=f"{kind}{tag}, train")
                ax.plot(
                    t,
                    1 - ds["validation_accuracy"].isel(sel),
                    color=c,
                    ls="--",
                    label=f"{kind}{tag}, validation",
                )
                ax.plot(
                    t,
                    1 - ds["linear_validation_accuracy"].isel(sel),
                    color=c,
                    ls=":",
                    label=f"chord{tag}, validation",
                )
            axes[-1].plot(ds["epoch"].values, ds["epoch_loss"].isel(sel), "o-", ms=3, color=c)
        axes[0].set_xlabel("t")
        axes[0].set_ylabel(figures.quantity(ds, "train_loss", "loss"))
        axes[0].set_title("loss (solid: train, dashed: validation, dotted: chord)")
        if kwargs.get("logy"):
            figures.log_axis(axes[0], "y")
        axes[0].legend()
        if has_acc:
            axes[1].set_xlabel("t")
            axes[1].set_ylabel("error")
            axes[1].set_title("error along the curve and the chord")
            axes[1].legend()
        axes[-1].set_xlabel("epoch")
        axes[-1].set_ylabel(figures.quantity(ds, "train_loss", "mean step loss at random t"))
        axes[-1].set_title(
            "training of the bends; length / ‖w1 − w0‖ = "
            + ", ".join(f"{v:.3f}" for v in np.atleast_1d(ds["length_norm"].values)),
            fontsize=9,
        )
        fig.tight_layout()
        return fig
