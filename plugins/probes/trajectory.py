"""``trajectory``: how far training strays from the straight init → solution line.

Goodfellow, Vinyals & Saxe (ICLR 2015, seed 003), Appendices B–D, on the trajectory a
``train`` step recorded (θ(t), t = the recorded steps; θ_i its start, θ_f its end):

- Appendix B (Fig. 13): with u = (θ_f − θ_i)/‖θ_f − θ_i‖, α(t) = (θ(t) − θ_i)·u and
  β(t) = ‖θ(t) − θ_i − α(t)u‖ (the residual's norm); the largest residual against
  ‖θ(t)‖ says how much of the parameter vector the 1-D line misses.
- Appendix C (Fig. 15–20): the loss over (α, β). As in the paper the picture is a stack
  of 1-D lines rotated to be parallel, not a plane (``surface = "paper"``): the row at α
  is the line θ_i + αu + βv along the residual direction v(t) = residual/β(t) of the
  recorded point off the line (β(t) > 0) whose α(t) is nearest. The grid holds every
  recorded (α(t), β(t)) as a node — the α axis is a regular grid plus every α(t), the β
  axis a regular grid plus every β(t) — so row α(t) is the line through θ(t) itself and
  the surface's value at the path's node is L(θ(t)) (``surface_path_train_loss``,
  ``on_surface``). Between rows the direction changes: the surface is not a smooth
  sheet through the path, and a value read off between two rows belongs to a
  neighbouring point's line. ``surface = "plane"`` uses one fixed v (of the point with
  the largest residual): a true 2-D plane θ_i + αu + βv, on which the path is drawn
  projected, at (α(t), (θ(t) − θ_i)·v), the nodes' values being the losses of those
  projections.
- Appendix D (Fig. 21): the control — a random 2-D plane through θ_f (two orthonormal
  Gaussian directions, from the cell's seed), the trajectory projected on it and the
  loss over a square that just holds the projection.
- For a model with exactly two parameters (the ``deep-linear`` toy, loss (1 − w1·w2)²,
  Fig. 14) the real surface over (w1, w2) with the trajectory on it.

Cost: R recorded points, (grid + R)² points at most on the (α, β) surface (its axes hold
the path's R coordinates besides the regular grid), control_grid² points on the control
plane (and (4·grid + 1)² on the (w1, w2) plane for D = 2), each one batched forward pass
per chunk of points over the train and the validation split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from lossatlas.engine import (
    Cell,
    ConfigError,
    Estimate,
    Plan,
    Probe,
    StepContext,
    StepRef,
    Variable,
    figures,
    grid_estimate,
    option,
)

__all__ = ["Trajectory", "project_trajectory"]


@dataclass
class TrajectoryOptions:
    of: StepRef = option(
        StepRef("train"),
        doc="the train step whose recorded trajectory to project ('STEP' or 'RUN/STEP')",
        probes=("train",),
    )
    grid: int = field(default=25, metadata={"doc": "points per axis of the (α, β) surface"})
    margin: float = field(
        default=0.25,
        metadata={"doc": "the surface extends this fraction beyond the trajectory on each side"},
    )
    surface: Literal["paper", "plane", "none"] = field(
        default="paper",
        metadata={
            "doc": "'paper': parallel 1-D lines through each point (Appendix C); 'plane': one "
            "fixed residual direction; 'none': no surface"
        },
    )
    path_nodes: bool = field(
        default=True,
        metadata={
            "doc": "the surface's axes also hold every recorded α(t) and β(t), so the path "
            "lies on grid nodes ((grid + R)² points for R records); false: the regular "
            "grid only (grid² points), the path between nodes"
        },
    )
    control: bool = field(
        default=True,
        metadata={"doc": "also the random 2-D plane through the solution (Appendix D)"},
    )
    control_grid: int = field(default=21, metadata={"doc": "points per axis of the control"})

    def validate(self) -> None:
        if self.grid < 2 or self.control_grid < 2:
            raise ValueError("options 'grid' and 'control_grid' must be at least 2")
        if self.margin < 0:
            raise ValueError(f"option 'margin' must be ≥ 0, got {self.margin}")


def project_trajectory(
    traj: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(α(t), β(t), V, u) of seed 003 Appendix B, in float64: α(t) = (θ(t) − θ_i)·u,
    β(t) = ‖θ(t) − θ_i − α(t)u‖, rows of V the unit residual directions,
    u = (θ_f − θ_i)/‖θ_f − θ_i‖. A row of V is 0 where the point is on the line to
    rounding, β ≤ 1e-7·max(‖θ_f − θ_i‖, ‖θ_i‖, ‖θ_f‖) (its residual is then mostly
    rounding error and has no trustworthy direction) — always at θ_i and θ_f."""
    T = np.asarray(traj, dtype=np.float64) - np.asarray(start, dtype=np.float64)
    delta = np.asarray(end, dtype=np.float64) - np.asarray(start, dtype=np.float64)
    dist = float(np.linalg.norm(delta))
    if dist == 0:
        raise ConfigError("trajectory: the start and the end of training are the same point")
    u = delta / dist
    alpha = T @ u
    R = T - alpha[:, None] * u[None, :]
    beta = np.linalg.norm(R, axis=1)
    size = max(dist, float(np.linalg.norm(start)), float(np.linalg.norm(end)))
    scale = np.where(beta > 1e-7 * size, beta, np.inf)
    V = R / scale[:, None]
    return alpha, beta, V, u


def _span(lo: float, hi: float, margin: float, n: int) -> np.ndarray:
    width = hi - lo if hi > lo else max(abs(hi), 1.0)
    return np.linspace(lo - margin * width, hi + margin * width, n)


class Trajectory(Probe[TrajectoryOptions]):
    name = "trajectory"
    points = ()  # no (param,) results for later steps
    summary = "SGD trajectory vs the init→solution line: α(t), β(t), (α, β) surface, control"
    Options = TrajectoryOptions

    # -------------------------------------------------------------- loading

    def _load(self, options: TrajectoryOptions, ctx: StepContext) -> dict[str, np.ndarray]:
        from lossatlas.engine.context import recorded_steps

        ds = ctx.load_step(options.of)
        missing = [v for v in ("trajectory", "initial", "point") if v not in ds]
        if missing:
            raise ConfigError(
                f"step '{ctx.step.name}': '{options.of}' is not a train step (it has no "
                f"{', '.join(missing)}); point 'of' at a step with probe = \"train\""
            )
        traj = np.asarray(ds["trajectory"].values, dtype=np.float64)
        # the step each row holds (a run that stopped early ends between planned steps)
        steps = recorded_steps(ds)
        keep = np.all(np.isfinite(traj), axis=1)
        if "steps" in ds and int(ds["steps"]) == 0:
            raise ConfigError(
                f"step '{ctx.step.name}': '{options.of}' took no optimizer steps (epochs = 0 "
                "or max_steps = 0?): there is no trajectory to project"
            )
        if keep.sum() < 2:
            raise ConfigError(
                f"step '{ctx.step.name}': '{options.of}' recorded fewer than two "
                "finite snapshots; train with a smaller record_every"
            )
        return {
            "traj": traj[keep],
            "steps": steps[keep],
            "start": np.asarray(ds["initial"].values, dtype=np.float64),
            "end": np.asarray(ds["point"].values, dtype=np.float64),
        }

    @staticmethod
    def _surface_geometry(
        options: TrajectoryOptions, alpha: np.ndarray, beta: np.ndarray, V: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, b): for each record, the record whose residual direction its surface row
        uses (``paper``: itself when it is off the line; ``plane``: the largest residual),
        and its β coordinate on the surface (β(t); ``plane``: the projection on v).
        Rows of points without a direction are resolved later, per grid row."""
        has = np.any(V != 0, axis=1)
        if options.surface == "plane" and has.any():
            j = int(np.argmax(np.where(has, beta, -np.inf)))
            return np.full(len(beta), j), beta * (V @ V[j])  # V·v = cos of the residuals
        return np.arange(len(beta)), beta

    def _grids(
        self,
        options: TrajectoryOptions,
        alpha: np.ndarray,
        beta: np.ndarray,
        traj: np.ndarray,
        V: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        grids: dict[str, np.ndarray] = {}
        if options.surface != "none":
            b = beta if V is None else self._surface_geometry(options, alpha, beta, V)[1]
            regular = _span(float(alpha.min()), float(alpha.max()), options.margin, options.grid)
            path_a = alpha if options.path_nodes else alpha[:0]
            grids["alpha"] = np.unique(np.concatenate([regular, path_a]))
            lo, hi = min(0.0, float(b.min())), float(b.max()) or 1.0
            width = hi - lo
            regular = np.linspace(
                lo - options.margin * width, hi + options.margin * width, options.grid
            )
            grids["beta"] = np.unique(np.concatenate([regular, b if options.path_nodes else b[:0]]))
        if options.control:
            grids["c1"] = np.linspace(-1.0, 1.0, options.control_grid)
            grids["c2"] = np.linspace(-1.0, 1.0, options.control_grid)
        if traj.shape[1] == 2:
            ext = max(1.5, float(np.abs(traj).max()) * (1 + options.margin))
            grids["w1"] = np.linspace(-ext, ext, 4 * options.grid + 1)
            grids["w2"] = np.linspace(-ext, ext, 4 * options.grid + 1)
        return grids

    # ------------------------------------------------------------- planning

    def estimate(self, options: TrajectoryOptions, ctx: StepContext) -> Estimate:
        """Cells, evaluations and bytes from the options (see :class:`Estimate`)."""
        nm = 2 * len(ctx.objective.metric_names())
        points = options.grid**2 + (options.control_grid**2 if options.control else 0)
        return grid_estimate(
            ctx, 1, points * nm, points_per_cell=points, drivers=("grid", "control_grid")
        )

    def plan(self, options: TrajectoryOptions, ctx: StepContext) -> Plan:
        obj = ctx.objective
        data = self._load(options, ctx)
        if data["traj"].shape[1] != obj.D:
            raise ConfigError(
                f"step '{ctx.step.name}': '{options.of}' has "
                f"{data['traj'].shape[1]} parameters but the model has D={obj.D}"
            )
        alpha, beta, V, _u = project_trajectory(data["traj"], data["start"], data["end"])
        grids = self._grids(options, alpha, beta, data["traj"], V)
        rec = ("record",)
        v: dict[str, Variable] = {
            "traj_alpha": Variable(
                rec,
                "α(t) = (θ(t) − θ_i)·u, u the unit init→solution direction",
                units="parameter norm",
            ),
            "traj_beta": Variable(
                rec, "β(t): norm of the residual of θ(t) off the line", units="parameter norm"
            ),
            "traj_norm": Variable(rec, "‖θ(t)‖", units="parameter norm"),
            "traj_train_loss": Variable(rec, "train loss at θ(t)"),
            "traj_validation_loss": Variable(rec, "validation loss at θ(t)"),
            "distance": Variable((), "‖θ_f − θ_i‖", units="parameter norm"),
            "max_residual": Variable((), "max_t β(t)", units="parameter norm"),
            "max_norm": Variable((), "max_t ‖θ(t)‖", units="parameter norm"),
        }
        if "alpha" in grids:
            for s in ("train", "validation"):
                v[f"surface_{s}_loss"] = Variable(
                    ("alpha", "beta"), f"{s} loss at θ_i + αu + βv ({options.surface})"
                )
                if not options.path_nodes:
                    continue
                v[f"surface_path_{s}_loss"] = Variable(
                    rec,
                    f"{s} loss of the surface at the record's own node (α(t), traj_surface_beta"
                    "); paper: L(θ(t)) wherever on_surface",
                )
            v["traj_surface_beta"] = Variable(
                rec,
                "β of the record on the surface: β(t) (paper), (θ(t) − θ_i)·v (plane)",
                units="parameter norm",
            )
            if options.path_nodes:
                v["on_surface"] = Variable(
                    rec,
                    "1: the surface's node at (α(t), traj_surface_beta) is θ(t) itself (to "
                    "rounding); 0: another point (plane: the projection; paper: a record sharing "
                    "its α(t), or on the line)",
                    dtype="int8",
                )
        if "c1" in grids:
            v["control_a"] = Variable(
                rec, "(θ(t) − θ_f)·d1, d1 the first random direction", units="parameter norm"
            )
            v["control_b"] = Variable(rec, "(θ(t) − θ_f)·d2", units="parameter norm")
            v["control_extent"] = Variable(
                (),
                "half-width e of the control square: coords c1, c2 are in units of e",
                units="parameter norm",
            )
            for s in ("train", "validation"):
                v[f"control_{s}_loss"] = Variable(
                    ("c1", "c2"), f"{s} loss at θ_f + e·(c1·d1 + c2·d2)"
                )
        if "w1" in grids:
            v["traj_w1"] = Variable(rec, "first parameter along the trajectory")
            v["traj_w2"] = Variable(rec, "second parameter along the trajectory")
            for s in ("train", "validation"):
                v[f"weights_{s}_loss"] = Variable(("w1", "w2"), f"{s} loss over the two parameters")
        return Plan(
            coords={"record": data["steps"], **grids},
            variables=v,
            cell_dims=(),
            coord_attrs={
                "record": {"description": "optimizer step of the snapshot", "units": "steps"},
                "alpha": {
                    "description": "coordinate along the init→solution line",
                    "units": "parameter norm",
                },
                "beta": {
                    "description": "coordinate along the residual direction",
                    "units": "parameter norm",
                },
                "c1": {"description": "first random direction, × control_extent"},
                "c2": {"description": "second random direction, × control_extent"},
            },
            attrs={"of": str(options.of), "surface": options.surface},
        )

    # ------------------------------------------------------------ computing

    def compute(self, options: TrajectoryOptions, ctx: StepContext, cell: Cell) -> dict[str, Any]:
        obj = ctx.objective
        data = self._load(options, ctx)
        traj, start, end = data["traj"], data["start"], data["end"]
        alpha, beta, V, u = project_trajectory(traj, start, end)
        grids = self._grids(options, alpha, beta, traj, V)
        dev, dt = obj.device, obj.dtype

        def ev(X: np.ndarray) -> dict[str, np.ndarray]:
            return obj.evaluate_both(torch.as_tensor(X).to(dev, dt))

        at = ev(traj)
        out: dict[str, Any] = {
            "traj_alpha": alpha,
            "traj_beta": beta,
            "traj_norm": np.linalg.norm(traj, axis=1),
            "traj_train_loss": at["train_loss"],
            "traj_validation_loss": at["validation_loss"],
            "distance": float(np.linalg.norm(end - start)),
            "max_residual": float(beta.max()),
            "max_norm": float(np.linalg.norm(traj, axis=1).max()),
        }
        g = cell.generator()
        if "alpha" in grids:
            # points with a residual direction (V ≠ 0; the ends have β ≈ 0 and V = 0)
            has = np.any(V != 0, axis=1)
            if not has.any():  # a straight trajectory: any direction orthogonal to u
                r = torch.randn(obj.D, generator=g, dtype=torch.float64).numpy()
                r -= (r @ u) * u
                V = np.tile(r / np.linalg.norm(r), (len(beta), 1))
                has = np.ones_like(has)
            A, B = grids["alpha"], grids["beta"]
            own, b_path = self._surface_geometry(options, alpha, beta, V)
            cand = np.flatnonzero(has)
            # each row: the nearest point in α that has a direction; a row at a record's
            # own α(t) is that record's line (paper) when it has a direction
            idx = cand[np.argmin(np.abs(alpha[cand][None, :] - A[:, None]), axis=1)]
            if options.surface == "plane":
                idx[:] = own[0]
            else:
                for t in cand[::-1]:  # the first record wins where two share an α
                    idx[A == alpha[t]] = t
            X = (
                start[None, None, :]
                + A[:, None, None] * u[None, None, :]
                + B[None, :, None] * V[idx][:, None, :]
            )
            res = ev(X.reshape(-1, obj.D))
            out["traj_surface_beta"] = b_path
            for s in ("train", "validation"):
                out[f"surface_{s}_loss"] = res[f"{s}_loss"].reshape(len(A), len(B))
            if options.path_nodes:
                ia, ib = np.searchsorted(A, alpha), np.searchsorted(B, b_path)
                size = max(
                    out["distance"], float(np.linalg.norm(start)), float(np.linalg.norm(end))
                )
                on = np.linalg.norm(X[ia, ib] - traj, axis=1) <= 1e-7 * size
                out["on_surface"] = on.astype(np.int8)
                for s in ("train", "validation"):
                    out[f"surface_path_{s}_loss"] = out[f"surface_{s}_loss"][ia, ib]
        if "c1" in grids:
            d = torch.randn(2, obj.D, generator=g, dtype=torch.float64).numpy()
            d1 = d[0] / np.linalg.norm(d[0])
            d2 = d[1] - (d[1] @ d1) * d1
            d2 /= np.linalg.norm(d2)
            a, b = (traj - end) @ d1, (traj - end) @ d2
            e = float(max(np.abs(a).max(), np.abs(b).max()) * (1 + options.margin)) or 1.0
            C1, C2 = grids["c1"] * e, grids["c2"] * e
            X = (
                end[None, None, :]
                + C1[:, None, None] * d1[None, None, :]
                + C2[None, :, None] * d2[None, None, :]
            )
            res = ev(X.reshape(-1, obj.D))
            out.update(control_a=a, control_b=b, control_extent=e)
            for s in ("train", "validation"):
                out[f"control_{s}_loss"] = res[f"{s}_loss"].reshape(len(C1), len(C2))
        if "w1" in grids:
            W1, W2 = np.meshgrid(grids["w1"], grids["w2"], indexing="ij")
            res = ev(np.stack([W1.ravel(), W2.ravel()], axis=1))
            out["traj_w1"], out["traj_w2"] = traj[:, 0], traj[:, 1]
            for s in ("train", "validation"):
                out[f"weights_{s}_loss"] = res[f"{s}_loss"].reshape(W1.shape)
        return out

    # ----------------------------------------------------------------- plot

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        """Fig. 13 (β vs α), Fig. 15-style (α, β) surface with the trajectory, Fig. 21
        control plane, and Fig. 14 (the two-parameter surface) when D = 2."""
        import matplotlib.pyplot as plt

        panels = ["path"]
        if "surface_train_loss" in ds:
            panels.append("surface")
        if "control_train_loss" in ds:
            panels.append("control")
        if "weights_train_loss" in ds:
            panels.append("weights")
        n = len(panels)
        cols = 2 if n > 1 else 1
        rows = (n + 1) // 2
        fig, axes = plt.subplots(rows, cols, figsize=(5.4 * cols, 4.4 * rows), squeeze=False)
        flat = list(axes.ravel())
        a, b = ds["traj_alpha"].values, ds["traj_beta"].values
        logc = bool(kwargs.get("logy"))

        def heat(ax: Any, x: np.ndarray, y: np.ndarray, z: np.ndarray, name: str) -> None:
            z = np.asarray(z, dtype=np.float64)
            finite = z[np.isfinite(z)]
            norm, _ = figures.map_norm(z, logc)
            m = ax.pcolormesh(x, y, z.T, shading="auto", cmap="viridis", norm=norm, rasterized=True)
            label = figures.quantity(ds, name, "train loss")
            figures.colorbar(fig, m, ax, label + (" (log scale)" if norm is not None else ""))
            if finite.size and finite.max() > finite.min():
                ax.contour(x, y, z.T, levels=12, colors="w", linewidths=0.4, alpha=0.6)

        for name in panels:
            ax = flat.pop(0)
            if name == "path":
                ax.plot(a, b, "o-", ms=2.5, color="C0", label="β(t): residual norm")
                ax.plot(a, ds["traj_norm"].values, "--", color="C1", label="‖θ(t)‖")
                ax.set_xlabel("α(t): projection on the init → solution line")
                ax.set_ylabel("norm")
                ratio = float(ds["max_residual"]) / float(ds["max_norm"])
                ax.set_title(
                    f"max residual {float(ds['max_residual']):.3g} = {ratio:.2f} × max ‖θ‖"
                )
                ax.legend()
            elif name == "surface":
                heat(
                    ax,
                    ds["alpha"].values,
                    ds["beta"].values,
                    ds["surface_train_loss"].values,
                    "surface_train_loss",
                )
                bs = ds["traj_surface_beta"].values if "traj_surface_beta" in ds else b
                ax.plot(a, bs, "-", color="white", lw=1.2, path_effects=figures.halo())
                figures.mark(ax, a, bs, "point", label="SGD trajectory")
                figures.mark(ax, a[:1], bs[:1], "start", label="start")
                figures.mark(ax, a[-1:], bs[-1:], "end", label="solution")
                ax.legend(loc="best")
                ax.set_xlabel("α")
                ax.set_ylabel("β")
                ax.set_title(f"loss over (α, β) ({ds.attrs.get('surface', 'paper')})")
            elif name == "control":
                e = float(ds["control_extent"])
                heat(
                    ax,
                    ds["c1"].values * e,
                    ds["c2"].values * e,
                    ds["control_train_loss"].values,
                    "control_train_loss",
                )
                ca, cb = ds["control_a"].values, ds["control_b"].values
                ax.plot(ca, cb, "-", color="white", lw=1.2, path_effects=figures.halo())
                figures.mark(ax, ca, cb, "point")
                figures.mark(ax, [0], [0], "end", label="solution")
                ax.set_xlabel("random direction 1")
                ax.set_ylabel("random direction 2")
                ax.set_title("control: random plane through the solution")
            else:
                w1, w2 = ds["w1"].values, ds["w2"].values
                heat(ax, w1, w2, ds["weights_train_loss"].values, "weights_train_loss")
                ax.set_xlim(w1.min(), w1.max())
                ax.set_ylim(w2.min(), w2.max())
                for sgn in (1, -1):
                    xs = np.linspace(0.05, w1.max(), 200) * sgn
                    ax.plot(xs, 1 / xs, "w:", lw=1)
                t1, t2 = ds["traj_w1"].values, ds["traj_w2"].values
                ax.plot(t1, t2, "-", color="white", lw=1.2, path_effects=figures.halo())
                figures.mark(ax, t1, t2, "point")
                figures.mark(ax, t1[-1:], t2[-1:], "end", label="solution")
                ax.set_xlabel("w1")
                ax.set_ylabel("w2")
                ax.set_title("loss over the two parameters")
                ax.set_autoscale_on(False)
        for ax in flat:
            ax.set_visible(False)
        fig.tight_layout()
        return fig
