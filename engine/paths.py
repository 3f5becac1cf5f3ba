"""Paths between two points, compared side by side whatever probe found them.

A probe whose result holds paths between pairs of points (a straight line, an aligned
line, a Bezier curve, a nudged elastic band, a string of beads) declares them through
:meth:`Probe.paths <lossatlas.engine.Probe.paths>`: one :class:`PathSummary` per path,
read from the stored result alone. ``lossatlas plot STORE a/b c/d …`` of steps from
*different* probes (or of several steps of a probe that draws one result at a time)
then draws :func:`plot_paths`: the train loss along every path against the fraction of
its length, and each path's barrier and normalised length.

Definitions, the same for every probe (so the numbers compare):

- ``barrier`` = max over the path of the train loss − the larger endpoint loss (≥ 0;
  the definition of the ``interpolation`` probe; Frankle et al.'s instability uses the
  mean of the endpoints instead, see ``lmc-instability``);
- ``length`` = the path's Euclidean length in parameter space, ``length_norm`` =
  length / ‖θ1 − θ0‖ (1 for a straight line; Freeman & Bruna's normalised geodesic
  length).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PathSummary", "plot_paths"]


@dataclass
class PathSummary:
    """One path between two points, as :func:`plot_paths` compares it.

    - ``label``: what the path is ("linear", "Bezier (1 bend)", "NEB, 9 pivots" ...).
    - ``position`` (n,): where along the path each loss was measured, as the fraction
      of the path's length from θ0 (0 … 1, increasing; 0 and 1 are the endpoints).
    - ``loss`` (n,): the train loss there.
    - ``length``: the path's length in parameter space; ``distance``: ‖θ1 − θ0‖.
    - ``kind``: the family (``linear``, ``aligned-linear``, ``bezier``, ``polychain``,
      ``neb``, ``dss`` …), for the legend and colours.
    - ``validation_loss`` (n,) or None: the validation loss at the same positions.
    """

    label: str
    position: np.ndarray
    loss: np.ndarray
    length: float
    distance: float
    kind: str = ""
    validation_loss: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.position = np.asarray(self.position, dtype=np.float64)
        self.loss = np.asarray(self.loss, dtype=np.float64)
        if self.position.shape != self.loss.shape or self.position.ndim != 1:
            raise ValueError(
                f"path '{self.label}': position {self.position.shape} and loss "
                f"{self.loss.shape} must be 1-D of one length"
            )
        if self.validation_loss is not None:
            self.validation_loss = np.asarray(self.validation_loss, dtype=np.float64)

    @property
    def barrier(self) -> float:
        """max train loss along the path − max(endpoint losses), ≥ 0 (NaN if unknown)."""
        L = self.loss
        if L.size < 2 or not np.all(np.isfinite(L)):
            return float("nan")
        return float(max(np.max(L) - max(L[0], L[-1]), 0.0))

    @property
    def length_norm(self) -> float:
        """length / ‖θ1 − θ0‖ (1 for a straight line)."""
        return float(self.length / self.distance) if self.distance > 0 else float("nan")


def plot_paths(
    paths: Mapping[str, Sequence[PathSummary]] | Sequence[PathSummary],
    logy: bool = False,
    loss_units: str = "",
) -> Figure:
    """The comparison figure: the train loss along each path against the fraction of
    its length (validation dashed where known), and bars of each path's barrier and
    normalised length, labelled with their values. ``paths`` is a list, or
    ``{source label: list}`` (the label is put before each path's own); ``loss_units``
    labels the loss axis (``nats``)."""
    import matplotlib.pyplot as plt

    from .figures import log_axis

    if isinstance(paths, Mapping):
        items = [
            PathSummary(
                f"{src}: {p.label}" if src else p.label,
                p.position,
                p.loss,
                p.length,
                p.distance,
                p.kind,
                p.validation_loss,
            )
            for src, group in paths.items()
            for p in group
        ]
    else:
        items = list(paths)
    if not items:
        raise ConfigError("there is no path to compare")
    fig, axes = plt.subplots(
        1, 3, figsize=(15, 4.2 + 0.12 * len(items)), gridspec_kw={"width_ratios": [1.6, 1, 1]}
    )
    ax = axes[0]
    for k, p in enumerate(items):
        ax.plot(p.position, p.loss, color=f"C{k % 10}", lw=1.6, label=p.label)
        if p.validation_loss is not None:
            ax.plot(p.position, p.validation_loss, color=f"C{k % 10}", lw=1, ls="--", alpha=0.7)
    ax.set_xlabel("fraction of the path's length from θ0")
    unit = f" [{loss_units}]" if loss_units else ""
    ax.set_ylabel(f"loss{unit} (solid: train, dashed: validation)")
    if logy:
        log_axis(ax, "y")
    ax.set_title("loss along each path")
    ax.legend(loc="best")
    names = [p.label for p in items]
    y = np.arange(len(items))
    for ax, values, title, fmt in (
        (axes[1], [p.barrier for p in items], "train-loss barrier (max − max of ends)", "{:.3g}"),
        (
            axes[2],
            [p.length_norm for p in items],
            "normalised length (length / ‖θ1 − θ0‖)",
            "{:.3f}",
        ),
    ):
        vals = np.asarray(values, dtype=float)
        shown = np.where(np.isfinite(vals), vals, 0.0)
        ax.barh(y, shown, color=[f"C{k % 10}" for k in range(len(items))])
        for k, v in enumerate(vals):
            ax.text(
                shown[k],
                k,
                " " + (fmt.format(v) if np.isfinite(v) else "n/a"),
                va="center",
            )
        ax.set_yticks(y)
        ax.set_yticklabels(names if ax is axes[1] else [])
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.margins(x=0.25)
    axes[2].axvline(1.0, color="k", lw=0.5, ls=":")
    fig.tight_layout()
    return fig
