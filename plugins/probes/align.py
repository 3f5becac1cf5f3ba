"""``align``: permute model B's hidden units to match model A (Git Re-Basin).

Ainsworth, Hayase & Srinivasa, "Git Re-Basin: Merging Models modulo Permutation
Symmetries", ICLR 2023 (code: github.com/samuela/git-re-basin). Two networks trained
from different seeds are usually separated by a loss barrier on the straight line
between them; permuting B's units into A's order (which leaves B's function unchanged)
often removes it. The probe

1. finds the model's permutation symmetries by tracing one forward pass (any
   ``nn.Module``: MLPs, CNNs, ResNets with the units of each residual stream tied and
   BatchNorm's scale, shift and running statistics permuted with them; see
   :mod:`lossatlas.plugins.probes.git_rebasin`);
2. matches B to A by **weight matching** (Algorithm 2: per permutation group a
   ``scipy.optimize.linear_sum_assignment``, iterated to a fixed point) or
   **activation matching** (§3.1: one assignment per group on E[a bᵀ] of the
   post-activation features over ``samples`` training inputs);
3. checks that π(θ_B) computes B's function: ``max_abs_output_diff`` = max |f(π(θ_B))
   − f(θ_B)| over the outputs of ``check_samples`` validation inputs, with B's buffers
   permuted too, next to ``max_abs_output`` = max |f(θ_B)| (the relative difference is
   ~1e-15 in float64, ~1e-7 in float32: the sums run in another order);
4. draws the straight lines A → B (naive) and A → π(B) (aligned) on ``points`` values
   of α ∈ [0, 1] (train and validation loss and accuracy) and their barriers, the
   paper's Fig. 2 / Fig. 3 comparison.

Its result is a **point**: ``point`` = π(θ_B) (later steps say ``"STEP"``, e.g. an
``interpolation`` with ``pairs = [["a", "b"], ["a", "align"]]``), ``source`` = θ_B.
BatchNorm: lossatlas keeps running statistics outside the parameter vector, so a
later step evaluating π(θ_B) must recompute them (``recompute_bn = true`` on
``interpolation``; ``curve`` does it by default). The permuted statistics are stored
as ``point_buffers`` for anyone rebuilding the module.

Cost: a forward pass of two samples (tracing); weight matching: per iteration one
n × n assignment and the products of the group's weights, per group; activation
matching: one forward pass of both models over ``samples`` inputs; then
2 × ``points`` forward passes over both splits (with BatchNorm recomputation: one more
pass over the train split per point).
"""

from __future__ import annotations

import json
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
)

from .git_rebasin import (
    PermutationSpec,
    activation_matching,
    apply_permutation,
    identity_permutation,
    model_with,
    trace_permutations,
    weight_matching,
)
from .interpolation import (
    bn_recompute,
    curve_summary,
    evaluate_points,
    interpolate,
    line_paths,
)

__all__ = ["Align", "AlignOptions"]


@dataclass
class AlignOptions:
    a: PointRef = field(
        default=PointRef("init:1"),
        metadata={"doc": "the reference model A (a point reference, e.g. a train step)"},
    )
    b: PointRef = field(
        default=PointRef("init:2"),
        metadata={"doc": "the model B whose units are permuted to match A"},
    )
    method: Literal["weight", "activation"] = field(
        default="weight",
        metadata={
            "doc": "'weight': weight matching (Algorithm 2); 'activation': activation "
            "matching on training inputs (§3.1)"
        },
    )
    max_iter: int = field(
        default=100, metadata={"ge": 1, "doc": "weight matching: most passes over the groups"}
    )
    samples: int = field(
        default=1024,
        metadata={"ge": 1, "doc": "activation matching: training inputs compared (all if fewer)"},
    )
    check_samples: int = field(
        default=256,
        metadata={"ge": 1, "doc": "validation inputs on which π(θ_B) is checked against θ_B"},
    )
    points: int = field(
        default=25,
        metadata={"doc": "α values of the naive and aligned lines drawn (0: no lines)"},
    )
    recompute_bn: bool = field(
        default=True,
        metadata={
            "doc": "recompute BatchNorm statistics at every α of the lines (required where "
            "the model has BatchNorm with running statistics)"
        },
    )

    def validate(self) -> None:
        if self.points < 0 or self.points == 1:
            raise ValueError(f"option 'points' must be 0 or at least 2, got {self.points}")


def _spec(ctx: StepContext) -> PermutationSpec:
    """The model's permutation spec, traced once per context. Frozen parameters are no
    coordinates of π(θ_B), so the groups they follow stay fixed."""
    cache = ctx.cache
    key = ("align-spec", ctx.step.name)
    if key not in cache:
        obj = ctx.objective
        cache[key] = trace_permutations(
            obj.model, obj.splits["train"].inputs[:2], frozen=obj.layout.frozen
        )
    return cache[key]


def _unit_cosines(
    spec: PermutationSpec, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]
) -> np.ndarray:
    """Per group, the mean over its units of the cosine between unit i of A and unit i
    of B (every weight row/column of the unit, concatenated)."""
    out = np.full(spec.n_groups, np.nan)
    for g in range(spec.n_groups):
        n = spec.sizes[g]
        ra, rb = [], []
        for name, axis, off, inner in spec.slots(g):
            for src, dst in ((a, ra), (b, rb)):
                m = src[name].detach().double().movedim(axis, 0)
                dst.append(m[off : off + n * inner].reshape(n, -1))
        A, B = torch.cat(ra, 1), torch.cat(rb, 1)
        den = A.norm(dim=1) * B.norm(dim=1)
        cos = torch.where(den > 0, (A * B).sum(1) / den.clamp_min(1e-300), torch.nan)
        out[g] = float(torch.nanmean(cos))
    return out


class Align(Probe[AlignOptions]):
    name = "align"
    summary = "Git Re-Basin: permute B's units to match A (weight or activation matching)"
    Options = AlignOptions
    points = ("point", "source")

    # --------------------------------------------------------------- checking

    def check(self, options: AlignOptions, ctx: StepContext) -> None:
        spec = _spec(ctx)
        if spec.n_groups == 0:
            why = "; ".join(f"{lab}: {reason}" for lab, _n, reason in spec.fixed[:3])
            raise ConfigError(
                f"step '{ctx.step.name}': model '{ctx.model_config.plugin}' has no hidden "
                "units that can be permuted without changing its function"
                + (f" (fixed: {why})" if why else " (no hidden layers)")
            )
        if spec.buffers and options.points and not options.recompute_bn:
            raise ConfigError(
                f"step '{ctx.step.name}': the model has BatchNorm running statistics, which "
                "the permutation moves; the aligned line needs recompute_bn = true"
            )

    # --------------------------------------------------------------- planning

    def plan(self, options: AlignOptions, ctx: StepContext) -> Plan:
        obj = ctx.objective
        spec = _spec(ctx)
        G = spec.n_groups
        width = max(spec.sizes)
        coords: dict[str, np.ndarray] = {
            "param": np.arange(obj.D),
            "group": np.arange(G),
            "unit": np.arange(width),
        }
        coord_attrs: dict[str, dict[str, Any]] = {
            "param": {"description": "index into the flat parameter vector", "units": "1"},
            "group": {
                "description": "permutation group (hidden units permuted together)",
                "units": "1",
            },
            "unit": {"description": "unit index within a group", "units": "1"},
        }
        variables: dict[str, Variable] = {
            "point": Variable(("param",), "π(θ_B): model B with its units in A's order"),
            "source": Variable(("param",), "θ_B, the model that was permuted"),
            "permutation": Variable(
                ("group", "unit"),
                "unit of B placed at each unit of A's order (missing beyond the group's size)",
                units="1",
                dtype="int32",
            ),
            "units_moved": Variable(
                ("group",), "units of the group that the permutation moved", "1", "int32"
            ),
            "cosine_before": Variable(
                ("group",),
                "mean cosine similarity of unit i of A and unit i of B (weights of the unit)",
                units="1",
            ),
            "cosine_after": Variable(
                ("group",), "mean cosine similarity of unit i of A and unit i of π(B)", units="1"
            ),
            "distance_before": Variable((), "‖θ_A − θ_B‖", units="1"),
            "distance_after": Variable((), "‖θ_A − π(θ_B)‖", units="1"),
            "max_abs_output_diff": Variable(
                (),
                "max |f(π(θ_B)) − f(θ_B)| over the outputs of check_samples validation "
                "inputs (B's buffers permuted too): 0 up to rounding",
                units="1",
            ),
            "max_abs_output": Variable(
                (), "max |f(θ_B)| over the same outputs (the scale of the difference)", "1"
            ),
            "iterations": Variable((), "weight-matching passes over the groups", "1", "int32"),
        }
        names = sorted(n for n in obj.buffers if n in spec.buffers)
        if names:
            size = sum(obj.buffers[n].numel() for n in names)
            coords["buffer"] = np.arange(size)
            coord_attrs["buffer"] = {
                "description": "index into the flat vector of the permuted buffers",
                "units": "1",
            }
            variables["point_buffers"] = Variable(
                ("buffer",),
                "B's buffers (BatchNorm running statistics) permuted with its units, "
                "concatenated in the order of the attribute 'buffer_names'",
            )
        if options.points:
            coords["alpha"] = np.linspace(0.0, 1.0, options.points)
            coord_attrs["alpha"] = {"description": "(1−α)·θ_A + α·θ_B", "units": "1"}
            coords["pair"] = np.arange(2)
            coord_attrs["pair"] = {
                "description": "0: A → B (naive), 1: A → π(B) (aligned)",
                "units": "1",
            }
            for split in ("train", "validation"):
                for m in obj.metric_names():
                    variables[f"{split}_{m}"] = Variable(
                        ("pair", "alpha"),
                        f"{m} on the {split} split along the line",
                        units="1",
                    )
                variables[f"{split}_loss_barrier"] = Variable(
                    ("pair",),
                    f"max of the {split} loss along the line − the larger endpoint loss",
                    units="1",
                )
            variables["distance"] = Variable(("pair",), "length of the line", units="1")
        return Plan(
            coords=coords,
            variables=variables,
            cell_dims=(),
            coord_attrs=coord_attrs,
            attrs={
                "a": str(options.a),
                "b": str(options.b),
                "method": options.method,
                "group_labels": spec.labels,
                "group_sizes": spec.sizes,
                "fixed_groups": json.dumps(spec.fixed),
                "fixed_units": spec.fixed_units,
                "buffer_names": names,
                "labels": ["A → B (naive)", "A → π(B) (aligned)"],
                "recompute_bn": int(bn_recompute(obj, options.recompute_bn)),
                "paper": "Ainsworth, Hayase & Srinivasa, ICLR 2023",
            },
        )

    # -------------------------------------------------------------- computing

    def compute(self, options: AlignOptions, ctx: StepContext, cell: Cell) -> dict[str, Any]:
        obj = ctx.objective
        spec = _spec(ctx)
        xa = ctx.resolve_point(options.a)
        xb = ctx.resolve_point(options.b)
        pa = {k: v.clone() for k, v in obj.layout.unflatten(xa).items()}
        pb = {k: v.clone() for k, v in obj.layout.unflatten(xb).items()}
        bufs = {k: v.detach().clone() for k, v in obj.buffers.items()}
        iterations = 0
        if options.method == "weight":
            perm, iterations = weight_matching(
                spec, pa, pb, cell.generator(), max_iter=options.max_iter
            )
        else:
            train = obj.splits["train"].inputs
            n = min(options.samples, len(train))
            order = torch.randperm(len(train), generator=cell.generator())[:n]
            inputs = train[order.to(train.device)]
            batches = [inputs[i : i + 256] for i in range(0, n, 256)]
            perm = activation_matching(
                spec, model_with(obj.model, pa, bufs), model_with(obj.model, pb, bufs), batches
            )
        qb, qbufs = apply_permutation(spec, perm, pb, bufs)
        xq = obj.layout.flatten(qb)
        # The function check: B and π(B), each with its own buffers.
        val = obj.splits["validation"].inputs[: options.check_samples]
        with torch.no_grad():
            out_b = model_with(obj.model, pb, bufs)(val)
            out_q = model_with(obj.model, qb, qbufs)(val)
        diff = float((out_b - out_q).abs().max()) if out_b.numel() else 0.0
        scale = float(out_b.abs().max()) if out_b.numel() else 0.0
        ident = identity_permutation(spec)
        P = np.full((spec.n_groups, max(spec.sizes)), -1, dtype=np.int32)
        for g, p in enumerate(perm):
            P[g, : len(p)] = p
        out: dict[str, Any] = {
            "point": xq,
            "source": xb,
            "permutation": P,
            "units_moved": np.asarray(
                [int(np.sum(p != i)) for p, i in zip(perm, ident, strict=True)], dtype=np.int32
            ),
            "cosine_before": _unit_cosines(spec, pa, pb),
            "cosine_after": _unit_cosines(spec, pa, qb),
            "distance_before": float((xa - xb).double().norm()),
            "distance_after": float((xa - xq).double().norm()),
            "max_abs_output_diff": diff,
            "max_abs_output": scale,
            "iterations": np.int32(iterations),
        }
        names = sorted(n for n in obj.buffers if n in spec.buffers)
        if names:
            out["point_buffers"] = torch.cat([qbufs[n].reshape(-1) for n in names]).double()
        if options.points:
            alpha = np.linspace(0.0, 1.0, options.points)
            rows: dict[str, list[np.ndarray]] = {}
            for x1 in (xb, xq):
                X = interpolate(xa, x1, alpha)
                values = evaluate_points(obj, X, options.recompute_bn)
                for k, v in values.items():
                    rows.setdefault(k, []).append(v)
            for k, v in rows.items():
                out[k] = np.stack(v)
            for split in ("train", "validation"):
                out[f"{split}_loss_barrier"] = np.asarray(
                    [curve_summary(alpha, L)["barrier"] for L in out[f"{split}_loss"]]
                )
            out["distance"] = np.asarray([out["distance_before"], out["distance_after"]])
        return out

    # ------------------------------------------------------------------ paths

    def paths(self, ds: Any) -> list[PathSummary]:
        """The naive line A → B and the aligned line A → π(B)."""
        if "alpha" not in ds.dims:
            return []
        naive, aligned = line_paths(ds, kind="linear")
        aligned.kind = "aligned-linear"
        naive.label, aligned.label = "linear (naive)", "aligned linear (Git Re-Basin)"
        return [naive, aligned]

    # ------------------------------------------------------------------- plot

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        """Left: the loss along the naive and the aligned line (train solid, validation
        dashed; the paper's Fig. 2). Right: per permutation group, the mean cosine
        similarity of matched units before and after alignment."""
        import matplotlib.pyplot as plt

        lines = "alpha" in ds.dims
        fig, axes = plt.subplots(1, 2 if lines else 1, figsize=(12 if lines else 6.5, 4.4))
        axes = np.atleast_1d(axes)
        if lines:
            ax = axes[0]
            a = ds["alpha"].values
            for k, label in enumerate(ds.attrs.get("labels", ["naive", "aligned"])):
                bar = float(ds["train_loss_barrier"].values[k])
                ax.plot(
                    a,
                    ds["train_loss"].values[k],
                    color=f"C{k}",
                    label=f"{label}, train (barrier {bar:.3g})",
                )
                ax.plot(
                    a,
                    ds["validation_loss"].values[k],
                    color=f"C{k}",
                    ls="--",
                    label=f"{label}, validation",
                )
            ax.set_xticks([0, 1])
            ax.set_xticklabels(["model A", "model B / π(B)"])
            ax.set_ylabel(figures.quantity(ds, "train_loss", "loss"))
            if kwargs.get("logy"):
                figures.log_axis(ax, "y")
            ax.legend()
            ax.set_title("loss on the line between the models")
        ax = axes[-1]
        G = ds.sizes["group"]
        y = np.arange(G)
        ax.barh(
            y - 0.2, ds["cosine_before"].values, height=0.4, label="before (identity)", color="C0"
        )
        ax.barh(y + 0.2, ds["cosine_after"].values, height=0.4, label="after (π)", color="C1")
        labels = list(ds.attrs.get("group_labels", [str(g) for g in range(G)]))
        sizes = list(ds.attrs.get("group_sizes", [0] * G))
        ax.set_yticks(y)
        ax.set_yticklabels(
            [f"{lab} ({n})" for lab, n in zip(labels, sizes, strict=False)],
            fontsize=7 if G > 12 else None,
        )
        ax.invert_yaxis()
        ax.set_xlabel("mean cosine similarity of matched units (A vs B)")
        ax.legend()
        ax.set_title(
            f"{ds.attrs.get('method', 'weight')} matching: ‖θA − θB‖ "
            f"{float(ds['distance_before']):.4g} → {float(ds['distance_after']):.4g}; "
            f"max|Δf| {float(ds['max_abs_output_diff']):.1e} of max|f| "
            f"{float(ds['max_abs_output']):.3g}",
            fontsize=9,
        )
        fig.tight_layout()
        return fig
