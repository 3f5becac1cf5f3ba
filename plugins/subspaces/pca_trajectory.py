"""Subspace ``pca-trajectory``: the plane (or d-flat) that a training run moved in.

Li, Xu, Taylor, Studer & Goldstein, "Visualizing the Loss Landscape of Neural Nets",
NeurIPS 2018, §7 (code: github.com/tomgoldstein/loss-landscape, ``projection.py``).
Random directions are nearly orthogonal to an optimisation path in high dimensions, so
a random plane through the solution shows almost nothing of how training got there.
Li et al. take the snapshots θ_0 … θ_n of a run, the matrix M = [θ_i − θ_n] of their
offsets from the final point, and its principal components (``sklearn`` PCA: the
offsets are centred on their mean first): the top directions hold most of the path's
variance (their Fig. 9 reports e.g. 98.6% + 1.0% for the first two), and the path,
projected on them (θ_i − θ_n)·v_j, is drawn on the loss map over the same plane.

The subspace is built through the point the caller gives (``at`` of a map probe: use
the final point, a ``train`` step itself, as Li et al. do); the offsets are taken from
it. Its basis is the top ``dim`` components, exactly orthonormal, with the sign of
scikit-learn's PCA (the largest entry of each left singular vector positive). Its
attrs carry what the map needs: ``explained_variance_ratio`` (of the whole path's
variance), ``explained_variance``, ``singular_values``, the path's coordinates
``path_coords`` (snapshot × direction, in the basis' units), their optimizer steps
``path_steps``, and ``axis_labels`` ("PC1: 96.5%").

``scale = "fit"`` (default) stretches each direction so that the path spans
[−1/(1+margin), 1/(1+margin)] of its axis: a map with ``span = 1`` shows the whole path
with a margin; ``scale = "unit"``: unit directions, coordinates are distances in
parameter space (Li et al.'s axes).

``include_bias_and_norm = false`` zeroes biases and norm-layer scales in the offsets
first (the peer's ``--ignore biasbn``).

Cost: an R × R Gram matrix and its eigendecomposition for R snapshots (O(R²·D)),
instead of an SVD of the R × D matrix; the tests check both give the same directions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from lossatlas.engine import (
    ConfigError,
    StepContext,
    StepRef,
    Subspace,
    SubspacePlugin,
    option,
)

__all__ = ["PCATrajectory", "PCATrajectoryOptions", "trajectory_pca"]


@dataclass
class PCATrajectoryOptions:
    of: StepRef = option(
        StepRef("train"),
        doc="the train step whose recorded trajectory is analysed ('STEP' or 'RUN/STEP')",
        probes=("train",),
    )
    dim: int = field(default=2, metadata={"ge": 1, "doc": "number of principal directions"})
    scale: Literal["fit", "unit"] = field(
        default="fit",
        metadata={
            "doc": "'fit': stretch each direction so the path fills [−1, 1] less the margin; "
            "'unit': unit directions (coordinates are parameter distances)"
        },
    )
    margin: float = field(
        default=0.2, metadata={"ge": 0, "doc": "scale = 'fit': room around the path, as a fraction"}
    )
    include_bias_and_norm: bool = field(
        default=True,
        metadata={"doc": "false: zero biases and norm scales in the offsets (--ignore biasbn)"},
    )


def trajectory_pca(offsets: np.ndarray, dim: int) -> dict[str, np.ndarray]:
    """PCA of the rows of ``offsets`` (R, D), float64, as scikit-learn's ``PCA``: the
    rows are centred, the components are the top right singular vectors (signs: the
    largest |entry| of each left singular vector positive). Computed from the R × R
    Gram matrix (directions whose singular value is below ~1e-7 of the largest count as
    absent). Returns ``components`` (dim, D), ``singular_values`` (dim,),
    ``explained_variance`` (dim,) and ``explained_variance_ratio`` (dim,)."""
    M = np.asarray(offsets, dtype=np.float64)
    R = M.shape[0]
    Mc = M - M.mean(axis=0, keepdims=True)
    K = Mc @ Mc.T
    w, U = np.linalg.eigh(K)
    order = np.argsort(w)[::-1]
    w, U = np.maximum(w[order], 0.0), U[:, order]
    s = np.sqrt(w)
    # The Gram matrix squares the condition: its eigenvalues carry an absolute error of
    # ~eps·w₀, so a singular value below ~1e-7·s₀ cannot be told from rounding.
    keep = w > w[0] * 1e-14 if s.size and s[0] > 0 else np.zeros(len(s), bool)
    if int(keep.sum()) < dim:
        raise ConfigError(
            f"subspace 'pca-trajectory': the trajectory spans {int(keep.sum())} direction(s) "
            f"({R} snapshots); ask for dim ≤ {int(keep.sum())} or record more snapshots"
        )
    U, s = U[:, :dim], s[:dim]
    signs = np.sign(U[np.argmax(np.abs(U), axis=0), np.arange(dim)])
    signs[signs == 0] = 1.0
    U = U * signs
    V = (Mc.T @ U) / s  # (D, dim): right singular vectors
    # One Gram–Schmidt pass removes the rounding of the product (orthonormal to ~1e-16).
    V, _ = np.linalg.qr(V)
    V = V * np.sign(np.sum(V * (Mc.T @ U), axis=0))
    total = float(np.sum(w))
    return {
        "components": V.T,
        "singular_values": s,
        "explained_variance": s**2 / max(R - 1, 1),
        "explained_variance_ratio": s**2 / total if total > 0 else np.zeros(dim),
    }


class PCATrajectory(SubspacePlugin[PCATrajectoryOptions]):
    name = "pca-trajectory"
    summary = "top PCA directions of a recorded training trajectory (Li et al. 2018, Fig. 9)"
    Options = PCATrajectoryOptions

    def build(
        self,
        options: PCATrajectoryOptions,
        ctx: StepContext,
        origin: torch.Tensor,
        generator: torch.Generator,
    ) -> Subspace:
        from lossatlas.engine.context import recorded_steps

        ds = ctx.load_step(options.of)
        where = f"subspace 'pca-trajectory': '{options.of}'"
        if "trajectory" not in ds:
            raise ConfigError(
                f"{where} recorded no trajectory; point 'of' at a step with probe = \"train\""
            )
        traj = np.asarray(ds["trajectory"].values, dtype=np.float64)
        steps = recorded_steps(ds)
        keep = np.all(np.isfinite(traj), axis=1)
        traj, steps = traj[keep], steps[keep]
        D = int(origin.numel())
        if traj.shape[1] != D:
            raise ConfigError(f"{where} has {traj.shape[1]} parameters but the model has D={D}")
        if len(traj) < options.dim + 1:
            raise ConfigError(
                f"{where} recorded {len(traj)} snapshot(s); dim = {options.dim} needs at least "
                f"{options.dim + 1} (lower record_every)"
            )
        x = origin.detach().to("cpu", torch.float64).numpy()
        offsets = traj - x[None, :]
        if not options.include_bias_and_norm:
            mask = ctx.objective.layout.mask("weight").cpu().numpy()
            offsets = offsets * mask[None, :]
        pca = trajectory_pca(offsets, options.dim)
        V = pca["components"]  # (dim, D), orthonormal
        coords = offsets @ V.T  # Li et al.'s 'cos' projection of θ_i − θ_n
        stretch = np.ones(options.dim)
        if options.scale == "fit":
            extent = np.max(np.abs(coords), axis=0)
            stretch = (1.0 + options.margin) * np.where(extent > 0, extent, 1.0)
        basis = torch.as_tensor((V * stretch[:, None]).T.copy())
        ratio = pca["explained_variance_ratio"]
        labels = [
            f"PC{j + 1}, {100 * ratio[j]:.1f}% of the variance"
            + (f", × {stretch[j]:.3g}" if options.scale == "fit" else "")
            for j in range(options.dim)
        ]
        return Subspace(
            origin=origin,
            basis=basis.to(origin.device, origin.dtype),
            attrs={
                "kind": "pca-trajectory",
                "of": str(options.of),
                "explained_variance_ratio": [float(v) for v in ratio],
                "explained_variance": [float(v) for v in pca["explained_variance"]],
                "singular_values": [float(v) for v in pca["singular_values"]],
                "snapshots": len(traj),
                "scale": options.scale,
                "stretch": [float(v) for v in stretch],
                "path_coords": (coords / stretch[None, :]).tolist(),
                "path_steps": [int(s) for s in steps],
                "axis_labels": labels,
            },
        )
