"""``dss``: Dynamic String Sampling geodesics between two models (Freeman & Bruna 2017).

Are two models θ1, θ2 with loss ≤ L0 connected inside the level set {L ≤ L0}, and how
curved is the connection? The probe grows a string of beads from θ1 to θ2 (see
:mod:`lossatlas.plugins.probes.dss_string` for the algorithm: greedy §3.1 or
breadth-first Appendix A, optionally constrained to the equidistant hyperplane with a
spring) and reports, per (pair, threshold) cell:

- ``connected`` and ``reason`` (connected / bead failed / barrier remained / depth or
  bead budget exhausted / endpoint above threshold / diverged) — never an endless loop;
- for connected pairs, the normalised geodesic length Σ‖S[i+1]−S[i]‖ / ‖θ1−θ2‖ over
  all parameters and over weight matrices only (1 for a convex level set); NaN for an
  unconnected pair (its string is no connection), which stores instead the loss the
  failed bead reached and the steps it took (``failed_bead_loss``,
  ``failed_bead_steps``);
- ``beads``, the models of the final string *counting both endpoints* (the paper's
  count: Table 1's 4.9 beads at L0 = 0.1 include θ1 and θ2), and ``beads_inserted``,
  the beads the algorithm added between them; the maximum loss along the final string
  and per segment, the loss along the string on a t grid;
- the beads themselves, padded to (pair, threshold, bead, param), so the path can be
  redrawn (e.g. its top-3 principal components, Appendix D).

Cells are (pair, threshold), so a sweep over L0 × pairs (Table 1) resumes cell by cell;
inside a cell the string is saved after each finished bead (or breadth-first round) to
``string.pt`` in the cell's scratch folder (``ctx.cell_scratch(cell)``, which the store
keeps beside itself) and a killed run continues from there. The file is removed when the
cell completes, the folder when the step does.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from lossatlas.engine import (
    Cell,
    ConfigError,
    Estimate,
    Plan,
    PlotOptions,
    PointRef,
    Probe,
    StepContext,
    Variable,
    figures,
    grid_estimate,
    html_table,
    progress,
)

from .dss_string import (
    REASONS,
    StringConfig,
    StringState,
    bead_steps_taken,
    run_string,
    string_measures,
)

__all__ = ["BEAD_CALLBACKS", "DSS", "DSSOptions", "checkpoint_path"]

#: Functions called with the string state after each finished bead (after it is saved).
#: For tests and progress displays; an exception raised here interrupts the cell.
BEAD_CALLBACKS: list[Callable[[StringState], None]] = []

_STRING_FIELDS = [f for f in StringConfig.__dataclass_fields__ if f != "threshold"]


@dataclass
class DSSOptions:
    pairs: list[list[PointRef]] = field(
        default_factory=lambda: [[PointRef("init:1"), PointRef("init:2")]],
        metadata={
            "doc": "model pairs [[θ1, θ2], ...] as point references (earlier steps "
            "such as 'train_a', 'checkpoint:PATH', 'init:SEED')"
        },
    )
    thresholds: list[float] = field(
        default_factory=lambda: [0.1],
        metadata={
            "gt": 0,
            "min_items": 1,
            "doc": "loss levels L0 (absolute, in the loss's units); one cell each",
        },
    )
    tolerance: float = field(
        default=1.0, metadata={"doc": "a segment passes when its maximum loss is ≤ tolerance·L0"}
    )
    alpha: float = field(
        default=0.9,
        metadata={
            "gt": 0,
            "le": 1,
            "doc": "beads are trained until their loss is ≤ alpha·L0 (alpha ≤ 1; the paper "
            "trains a bit below L0)",
        },
    )
    points: int = field(
        default=17,
        metadata={"ge": 3, "doc": "values of t on each straight segment (ends included)"},
    )
    insert: Literal["mid", "max"] = field(
        default="mid",
        metadata={"doc": "new bead at the segment's midpoint (stable) or at its loss maximiser"},
    )
    strategy: Literal["greedy", "breadth-first"] = field(
        default="greedy",
        metadata={
            "doc": "greedy: recurse on the leftmost failing segment (§3.1); breadth-first: "
            "a bead in every failing segment per round, trained as one vmapped "
            "ensemble (Appendix A)"
        },
    )
    constrain: Literal["none", "hyperplane", "penalty"] = field(
        default="none",
        metadata={
            "doc": "hold new beads on the hyperplane equidistant from their neighbours: "
            "exactly (projection) or by the penalty kappa·|(x−m)·n| (Appendix A)"
        },
    )
    spring: float = field(
        default=0.0,
        metadata={
            "ge": 0,
            "doc": "spring term ζ·(‖x−a‖ + ‖x−b‖) added to a bead's loss (Appendix A)",
        },
    )
    kappa: float = field(default=1.0, metadata={"ge": 0, "doc": "weight of the hyperplane penalty"})
    optimizer: Literal["adam", "sgd"] = field(
        default="adam", metadata={"doc": "bead optimizer (SGD uses 'momentum')"}
    )
    lr: float = field(default=0.01, metadata={"gt": 0, "doc": "bead learning rate"})
    momentum: float = field(default=0.9, metadata={"doc": "SGD momentum"})
    batch_size: int = field(
        default=0, metadata={"ge": 0, "doc": "mini-batch size for bead training (0: full batch)"}
    )
    bead_steps: int = field(
        default=2000,
        metadata={
            "ge": 1,
            "doc": "step cap per bead: a bead not at alpha·L0 by then fails the pair",
        },
    )
    check_every: int = field(
        default=25,
        metadata={"ge": 1, "doc": "full-split loss check of a training bead every N steps"},
    )
    max_beads: int = field(default=16, metadata={"ge": 0, "doc": "bead budget per pair"})
    max_depth: int = field(
        default=8, metadata={"ge": 0, "doc": "recursion depth budget (breadth-first: rounds)"}
    )
    min_segment: float = field(
        default=1e-3,
        metadata={
            "ge": 0,
            "doc": "a barrier on a segment shorter than this × ‖θ1−θ2‖ ends the pair "
            "(barrier remained)",
        },
    )
    split: Literal["train", "validation"] = field(
        default="train", metadata={"doc": "the split whose loss defines the level set"}
    )
    train_endpoints: bool = field(
        default=False,
        metadata={
            "doc": "train endpoints above L0 down to endpoint_alpha·L0 first (the paper's "
            "protocol: two random models trained to each loss level); false: such a pair "
            "is reported 'endpoint-above-threshold'"
        },
    )
    endpoint_alpha: float = field(
        default=0.0,
        metadata={
            "ge": 0,
            "le": 1,
            "doc": "trained endpoints stop at endpoint_alpha·L0 (0: alpha, as beads; the "
            "authors' code trains endpoints to 1.0·L0 and beads to 0.95·L0)",
        },
    )
    initial_beads: int = field(
        default=0,
        metadata={
            "doc": "beads put evenly on the straight segment and trained before any "
            "segment is checked (the authors' code starts every string with 1)"
        },
    )
    store_beads: bool = field(
        default=True,
        metadata={
            "doc": "store the beads' parameters, bead_params (pair, threshold, bead, param), "
            "to redraw the path"
        },
    )

    def validate(self) -> None:
        if not self.pairs:
            raise ValueError("option 'pairs' needs at least one pair [θ1, θ2]")
        for i, p in enumerate(self.pairs):
            if len(p) != 2:
                raise ValueError(
                    f"option 'pairs'[{i}] must be two point references [θ1, θ2], got {len(p)}"
                )
        if len(set(self.thresholds)) != len(self.thresholds):
            raise ValueError(f"option 'thresholds' has repeated values: {self.thresholds}")
        if self.tolerance < self.alpha:
            raise ValueError(
                f"option 'tolerance' ({self.tolerance}) must be ≥ alpha "
                f"({self.alpha}): beads must pass the segment test themselves"
            )
        if self.initial_beads < 0 or self.initial_beads > self.max_beads:
            raise ValueError(
                f"option 'initial_beads' must be in 0 … max_beads ({self.max_beads}), "
                f"got {self.initial_beads}"
            )

    def string_config(self, threshold: float) -> StringConfig:
        return StringConfig(
            threshold=float(threshold), **{k: getattr(self, k) for k in _STRING_FIELDS}
        )


def checkpoint_path(ctx: StepContext, cell: Cell) -> Path | None:
    """Where the string of ``cell`` is saved between beads (the cell's scratch space)."""
    if ctx.store is None:
        return None
    return ctx.cell_scratch(cell) / "string.pt"


def _fingerprint(options: DSSOptions, cell: Cell, D: int) -> int:
    from lossatlas.engine.context import derive_seed

    return derive_seed(asdict(options), dict(cell.coords), D) >> 2


@dataclass
class DSSPlotOptions(PlotOptions):
    """``lossatlas plot ... -O pair=1 -O threshold=0``."""

    pair: int = field(default=0, metadata={"doc": "the pair whose final string is drawn"})
    threshold: int | None = field(
        default=None,
        metadata={
            "doc": "index of the loss level L0 whose string is drawn (default: the lowest "
            "level at which that pair connected)"
        },
    )


class DSS(Probe[DSSOptions]):
    name = "dss"
    points = ()  # no (param,) results for later steps
    summary = (
        "Dynamic String Sampling (Freeman & Bruna 2017): are two models connected "
        "below L0, normalised geodesic length and beads"
    )
    Options = DSSOptions
    PlotOptions = DSSPlotOptions

    # -------------------------------------------------------------- checks

    def check(self, options: DSSOptions, ctx: StepContext) -> None:
        if options.max_beads + 2 > 10_000:
            raise ConfigError(
                f"step '{ctx.step.name}': max_beads={options.max_beads} is "
                "too large; use at most 9998"
            )

    # ---------------------------------------------------------------- plan

    def estimate(self, options: DSSOptions, ctx: StepContext) -> Estimate:
        """Cells, evaluations and bytes from the options (see :class:`Estimate`)."""
        nb = options.max_beads + 2
        D = ctx.objective.D
        per = nb * (6 + options.points) + 16 + (nb * D if options.store_beads else 0)
        return grid_estimate(
            ctx,
            len(options.pairs) * len(options.thresholds),
            per,
            points_per_cell=options.points,
            cell_bytes=3 * nb * D * 8,
            drivers=("pairs", "thresholds", "max_beads", "points"),
        )

    def plan(self, options: DSSOptions, ctx: StepContext) -> Plan:
        obj = ctx.objective
        nb = options.max_beads + 2
        pt = ("pair", "threshold")
        dtype = "float64" if obj.dtype == torch.float64 else "float32"
        legend = ", ".join(f"{k} {v}" for k, v in REASONS.items())
        variables = {
            "connected": Variable(
                pt,
                "1 if every segment of the final string is below tolerance·L0, else 0",
                dtype="int8",
            ),
            "reason": Variable(pt, f"why the string stopped: {legend}", dtype="int8"),
            "beads": Variable(
                pt,
                "models on the final string counting both endpoints θ1 and θ2 (the paper's "
                "bead count, Table 1)",
                units="count",
                dtype="int32",
            ),
            "beads_inserted": Variable(
                pt,
                "beads the algorithm inserted between θ1 and θ2 (beads − 2)",
                units="count",
                dtype="int32",
            ),
            "rounds": Variable(pt, "breadth-first rounds (0 for greedy)", dtype="int32"),
            "max_depth_reached": Variable(pt, "deepest recursion level of a bead", dtype="int32"),
            "train_steps": Variable(
                pt,
                "optimizer steps spent on accepted beads and endpoints (a failed bead's "
                "steps are in failed_bead_steps)",
                dtype="int64",
            ),
            "failed_bead_loss": Variable(
                pt,
                "loss the bead that missed alpha·L0 reached when its step cap ended it "
                "(reason bead-failed; NaN: no bead failed, or it diverged)",
                units="loss",
                finite=False,
            ),
            "failed_bead_steps": Variable(
                pt,
                "optimizer steps the failed bead took (-1: no bead failed)",
                dtype="int64",
            ),
            "length_norm": Variable(
                pt,
                "normalised geodesic length: path length / ‖θ1−θ2‖ over all parameters "
                "of the connecting string (NaN for an unconnected pair)",
                finite=False,
            ),
            "length_norm_weights": Variable(
                pt,
                "path length / ‖θ1−θ2‖ over weight matrices only (biases excluded); NaN "
                "for an unconnected pair",
                finite=False,
            ),
            "length": Variable(
                pt,
                "path length Σ‖S[i+1]−S[i]‖ of the connecting string (NaN unconnected)",
                units="parameter norm",
                finite=False,
            ),
            "distance": Variable(
                pt, "‖θ1−θ2‖ (after endpoint training, if any)", units="parameter norm"
            ),
            "max_loss": Variable(
                pt,
                "maximum loss along the final string (for an unconnected pair, the string "
                "where it stopped: with no bead inserted, the straight segment)",
                units="loss",
            ),
            "endpoint_loss": Variable(
                (*pt, "end"),
                "loss of θ1 and θ2 (after endpoint training, if any)",
                units="loss",
                finite=False,
            ),
            "bead_loss": Variable(
                (*pt, "bead"),
                "loss of each bead of the final string (NaN padding)",
                units="loss",
                finite=False,
            ),
            "bead_depth": Variable(
                (*pt, "bead"),
                "recursion depth (greedy) or round "
                "(breadth-first) of each bead; 0 for endpoints, -1 "
                "padding",
                dtype="int16",
            ),
            "bead_train_steps": Variable(
                (*pt, "bead"), "optimizer steps each bead took (-1 padding)", dtype="int32"
            ),
            "segment_max": Variable(
                (*pt, "bead"),
                "maximum loss on the segment from bead i to bead i+1 (NaN padding)",
                units="loss",
                finite=False,
            ),
            "path_loss": Variable(
                (*pt, "bead", "t"),
                "loss along the segment from bead i to bead i+1 at t (NaN padding)",
                units="loss",
                finite=False,
            ),
        }
        coords: dict[str, np.ndarray] = {
            "pair": np.arange(len(options.pairs)),
            "threshold": np.asarray(options.thresholds, dtype=np.float64),
            "end": np.arange(2),
            "bead": np.arange(nb),
            "t": np.linspace(0.0, 1.0, options.points),
        }
        if options.store_beads:
            coords["param"] = np.arange(obj.D)
            variables["bead_params"] = Variable(
                (*pt, "bead", "param"),
                "the parameters of each bead of the final string, θ1 first and θ2 last "
                "(NaN padding)",
                dtype=dtype,
                finite=False,
            )
        return Plan(
            coords=coords,
            cell_dims=pt,
            variables=variables,
            coord_attrs={
                "pair": {
                    "description": "model pair",
                    "refs": json.dumps([[str(r) for r in p] for p in options.pairs]),
                },
                "threshold": {"description": "loss level L0", "units": "loss"},
                "bead": {"description": "position along the string (0 = θ1)"},
                "t": {"description": "fraction along a segment"},
                "end": {"description": "0 = θ1, 1 = θ2"},
            },
            attrs={
                "reasons": json.dumps(REASONS),
                "pairs": json.dumps([[str(r) for r in p] for p in options.pairs]),
                "strategy": options.strategy,
                "tolerance": options.tolerance,
                "alpha": options.alpha,
                "paper": "Freeman & Bruna, ICLR 2017",
            },
        )

    # ------------------------------------------------------------- compute

    def compute(self, options: DSSOptions, ctx: StepContext, cell: Cell) -> dict[str, Any]:
        obj = ctx.objective
        refs = options.pairs[cell.index["pair"]]
        theta1 = ctx.resolve_point(refs[0])
        theta2 = ctx.resolve_point(refs[1])
        cfg = options.string_config(cell.coords["threshold"])
        fp = _fingerprint(options, cell, obj.D)
        state = None
        path = checkpoint_path(ctx, cell)
        if path is not None:
            state = _load(path, fp, obj.device, obj.dtype)

        beads = progress.task("DSS beads", options.max_beads, "bead", bound=True)

        def on_bead(st: StringState) -> None:
            if path is not None:
                _save(path, st, fp)
            beads.update(st.inserted, segments=f"{sum(st.ok)}/{len(st.ok)} below L0")
            for cb in BEAD_CALLBACKS:
                cb(st)

        state = run_string(obj, theta1, theta2, cfg, cell.seed, state=state, on_bead=on_bead)
        beads.close()
        out = self._pack(options, obj, state, cfg)
        if path is not None:
            path.unlink(missing_ok=True)
        return out

    def _pack(
        self, options: DSSOptions, obj: Any, state: StringState, cfg: StringConfig
    ) -> dict[str, Any]:
        nb = options.max_beads + 2
        n = len(state.beads)
        m = string_measures(obj, state, cfg)

        def pad(values: Any, fill: float, dtype: Any) -> np.ndarray:
            arr = np.full(nb, fill, dtype=dtype)
            arr[: len(values)] = values
            return arr

        path_loss = np.full((nb, cfg.points), np.nan)
        path_loss[: n - 1] = m["path_loss"]
        connected = state.status == 0
        out: dict[str, Any] = {
            "connected": np.int8(connected),
            "reason": np.int8(state.status),
            "beads": np.int32(n),
            "beads_inserted": np.int32(state.inserted),
            "rounds": np.int32(state.rounds),
            "max_depth_reached": np.int32(max(state.depth)),
            "train_steps": np.int64(bead_steps_taken(state)),
            "failed_bead_loss": np.float64(state.failed_loss),
            "failed_bead_steps": np.int64(state.failed_steps),
            "length_norm": m["length_norm"] if connected else np.nan,
            "length_norm_weights": m["length_norm_weights"] if connected else np.nan,
            "length": m["length"] if connected else np.nan,
            "distance": m["distance"],
            "max_loss": m["max_loss"],
            "endpoint_loss": np.asarray([state.bead_loss[0], state.bead_loss[-1]]),
            "bead_loss": pad(state.bead_loss, np.nan, np.float64),
            "bead_depth": pad(state.depth, -1, np.int16),
            "bead_train_steps": pad(
                [state.endpoint_steps[0], *state.bead_steps[1:-1], state.endpoint_steps[1]],
                -1,
                np.int32,
            ),
            "segment_max": pad(m["segment_max"], np.nan, np.float64),
            "path_loss": path_loss,
        }
        if options.store_beads:
            beads = np.full((nb, obj.D), np.nan)
            beads[:n] = torch.stack(state.beads).double().cpu().numpy()
            out["bead_params"] = beads
        return out

    # ------------------------------------------------------------ finalize

    def finalize(self, options: DSSOptions, ctx: StepContext, ds: Any) -> Any:
        import xarray as xr

        conn = np.asarray(ds["connected"].values, dtype=float) == 1  # (pair, threshold)
        length = np.where(conn, np.asarray(ds["length_norm"].values, dtype=float), np.nan)
        beads = np.where(conn, _bead_counts(ds), np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # no connected pair: NaN
            stats = {
                "connected_fraction": conn.mean(0),
                "length_norm_mean": np.nanmean(length, 0),
                "length_norm_std": np.nanstd(length, 0),
                "beads_mean": np.nanmean(beads, 0),
                "beads_std": np.nanstd(beads, 0),
                "beads_inserted_mean": np.nanmean(beads - 2, 0),
            }
        out = xr.Dataset(
            {k: (("threshold",), v) for k, v in stats.items()},
            coords={"threshold": ds["threshold"].values},
        )
        desc = {
            "connected_fraction": "fraction of pairs connected below L0",
            "length_norm_mean": "mean normalised geodesic length over connected pairs",
            "length_norm_std": "std of the normalised geodesic length over connected pairs",
            "beads_mean": "mean number of beads over connected pairs, endpoints included "
            "(the paper's count)",
            "beads_std": "std of the number of beads (endpoints included) over connected pairs",
            "beads_inserted_mean": "mean number of inserted beads (endpoints excluded) over "
            "connected pairs",
        }
        for k, v in desc.items():
            out[k].attrs = {"description": v, "units": "", "finite": 0}
        return out

    # ---------------------------------------------------------------- paths

    def paths(self, ds: Any) -> list[Any]:
        """Each computed (pair, L0) cell's final string, for the path comparison figure
        (positions along it from the stored beads; equal segments where the beads were
        not stored)."""
        from lossatlas.engine import PathSummary

        out = []
        t = np.asarray(ds["t"].values, dtype=float)
        status = np.asarray(ds["cell_status"].values) if "cell_status" in ds else None
        for p in range(ds.sizes["pair"]):
            for ti, thr in enumerate(np.asarray(ds["threshold"].values, dtype=float)):
                if status is not None and status[p, ti] == 0:
                    continue
                st = _cell_string(ds, p, ti)
                if st["beads"] is not None:
                    seg = np.linalg.norm(np.diff(st["beads"], axis=0), axis=1)
                else:
                    seg = np.ones(st["n"] - 1)
                starts = np.concatenate([[0.0], np.cumsum(seg)]) / max(seg.sum(), 1e-300)
                pos = np.concatenate(
                    [
                        starts[i]
                        + t[: -1 if i < st["n"] - 2 else None] * seg[i] / max(seg.sum(), 1e-300)
                        for i in range(st["n"] - 1)
                    ]
                )
                loss = np.concatenate(
                    [st["path"][i][: -1 if i < st["n"] - 2 else None] for i in range(st["n"] - 1)]
                )
                sel = {"pair": p, "threshold": ti}
                connected = int(np.asarray(ds["connected"].isel(sel).values)) == 1
                nb = st["n"] - 2
                label = f"DSS, L0 = {thr:g}, {nb} bead{'' if nb == 1 else 's'}" + (
                    "" if connected else " (not connected)"
                )
                if ds.sizes["pair"] > 1:
                    label += f", pair {p}"
                out.append(
                    PathSummary(
                        label,
                        pos,
                        loss,
                        float(np.asarray(ds["length"].isel(sel).values)),
                        float(np.asarray(ds["distance"].isel(sel).values)),
                        "dss",
                    )
                )
        return out

    # -------------------------------------------------------------- report

    def report_html(self, ds: Any) -> str | None:
        """Table 1 of Freeman & Bruna: per loss level L0, the fraction of pairs
        connected, the normalised geodesic length and the beads (mean ± std over the
        connected pairs)."""
        if "connected" not in ds or "length_norm" not in ds:
            return None
        thr = np.asarray(ds["threshold"].values, dtype=float)
        conn = np.asarray(ds["connected"].values, dtype=float) == 1
        length = np.where(conn, np.asarray(ds["length_norm"].values, dtype=float), np.nan)
        beads = np.where(conn, _bead_counts(ds), np.nan)
        rows = []
        for j in np.argsort(-thr):
            c = conn[:, j]
            if c.any():
                lm, ls = np.nanmean(length[:, j]), np.nanstd(length[:, j])
                bm, bs = np.nanmean(beads[:, j]), np.nanstd(beads[:, j])
                length_text, beads_text = f"{lm:.3f} ± {ls:.3f}", f"{bm:.2f} ± {bs:.2f}"
                rows.append((f"{thr[j]:g}", f"{c.mean():.0%}", length_text, beads_text))
            else:
                rows.append((f"{thr[j]:g}", "0%", "—", "—"))
        return html_table(
            rows,
            ["L0", "pairs connected", "normalised length", "beads (ends included)"],
            caption="Table 1 (Freeman & Bruna 2017): mean ± std over the connected pairs",
        )

    # ---------------------------------------------------------------- plot

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        return plot_dss(ds, **kwargs)


# ---------------------------------------------------------------- checkpoints


def _save(path: Path, state: StringState, fingerprint: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = state.to_tensors()
    data["fingerprint"] = torch.tensor([fingerprint], dtype=torch.int64)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(data, tmp)
    os.replace(tmp, path)


def _load(
    path: Path, fingerprint: int, device: torch.device, dtype: torch.dtype
) -> StringState | None:
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if int(data["fingerprint"][0]) != fingerprint:
            return None
        return StringState.from_tensors(data, device, dtype)
    except Exception:  # a torn or foreign file: start the cell afresh
        return None


# ----------------------------------------------------------------------- plot


def _bead_counts(ds: Any) -> np.ndarray:
    """Beads per cell counting both endpoints, from ``beads`` (or, in a result stored
    before that variable existed, from ``beads_inserted`` + 2)."""
    if "beads" in ds and ds["beads"].dims == ds["connected"].dims:
        return np.asarray(ds["beads"].values, dtype=float)
    return np.asarray(ds["beads_inserted"].values, dtype=float) + 2


def _cell_string(ds: Any, pair: int, ti: int) -> dict[str, Any]:
    """The final string of one (pair, threshold) cell, read back from the Dataset."""
    sel = {"pair": pair, "threshold": ti}
    loss = np.asarray(ds["bead_loss"].isel(sel).values, dtype=float)
    n = int(np.sum(np.isfinite(loss)))
    n = max(n, 2)
    path = np.asarray(ds["path_loss"].isel(sel).values, dtype=float)[: n - 1]
    beads = None
    # 'bead_params'; results stored before 0.2 named them 'beads' (with a param dim)
    name = "bead_params" if "bead_params" in ds else "beads"
    if name in ds and "param" in ds[name].dims:
        beads = np.asarray(ds[name].isel(sel).values, dtype=float)[:n]
    return {"n": n, "path": path, "beads": beads, "bead_loss": loss[:n]}


def plot_dss(
    ds: Any, pair: int = 0, threshold: int | None = None, logy: bool = False, **_: Any
) -> Any:
    """Four panels from the stored result alone: normalised length and beads vs L0
    (mean ± std over connected pairs, Table 1; a red × marks levels where no pair
    connected), the loss along one final string (``pair``, threshold index
    ``threshold``; default: the lowest level at which that pair connected), and that
    string's beads on their top-3 principal components, coloured by the log loss
    along the string (Appendix D)."""
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    thr = np.asarray(ds["threshold"].values, dtype=float)
    if not 0 <= pair < ds.sizes["pair"]:
        raise ConfigError(
            f"dss plot: pair {pair} is not in the result; it holds pairs 0..{ds.sizes['pair'] - 1}"
        )
    if threshold is not None and not 0 <= threshold < thr.size:
        raise ConfigError(
            f"dss plot: threshold index {threshold} is not in the result; it holds levels "
            f"0..{thr.size - 1} (L0 = {', '.join(f'{t:g}' for t in thr)})"
        )
    conn = np.asarray(ds["connected"].values, dtype=float) == 1  # (pair, threshold)
    length = np.where(conn, np.asarray(ds["length_norm"].values, dtype=float), np.nan)
    beads = np.where(conn, _bead_counts(ds), np.nan)
    reasons = json.loads(ds.attrs.get("reasons", "{}")) or {str(k): v for k, v in REASONS.items()}
    fig = plt.figure(figsize=(13, 9))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no connected pair: NaN
        lm, ls = np.nanmean(length, 0), np.nanstd(length, 0)
        bm, bs = np.nanmean(beads, 0), np.nanstd(beads, 0)
    frac = conn.mean(0)
    order = np.argsort(thr)
    for k, (mean, std, label) in enumerate(
        [(lm, ls, "normalised geodesic length"), (bm, bs, "beads (endpoints included)")]
    ):
        ax = fig.add_subplot(2, 2, 1 + k)
        ax.errorbar(thr[order], mean[order], yerr=std[order], marker="o", capsize=3)
        none = frac == 0
        if none.any():
            ax.plot(
                thr[none],
                np.zeros(int(none.sum())),
                "x",
                color="C3",
                ms=8,
                transform=ax.get_xaxis_transform(),
                clip_on=False,
                label="no pair connected",
            )
            ax.legend()
        for j in order:
            if 0 < frac[j] < 1:
                ax.annotate(
                    f"{frac[j]:.0%} conn.",
                    (thr[j], mean[j]),
                    fontsize=8,
                    color="C3",
                    textcoords="offset points",
                    xytext=(3, 6),
                )
        figures.log_axis(ax, "x")
        ax.invert_xaxis()
        ax.set_xlabel(figures.quantity(ds, "threshold", "loss level L0") + " (decreasing →)")
        ax.set_ylabel(label)
        ax.set_title(
            f"{label} vs L0 (mean ± std over connected pairs, {conn.shape[0]} pair(s))", fontsize=9
        )
        if k == 0:
            ax.axhline(1.0, color="k", lw=0.5, ls=":")

    if threshold is None:  # the lowest level where the pair connected, else the lowest
        ok = np.flatnonzero(conn[pair])
        ti = int(ok[np.argmin(thr[ok])]) if ok.size else int(np.argmin(thr))
    else:
        ti = int(threshold)
    st = _cell_string(ds, pair, ti)
    L0 = thr[ti]
    ax = fig.add_subplot(2, 2, 3)
    t = np.asarray(ds["t"].values, dtype=float)
    if st["beads"] is not None:
        seg = np.linalg.norm(np.diff(st["beads"], axis=0), axis=1)
        dist = np.linalg.norm(st["beads"][-1] - st["beads"][0]) or 1.0
        starts = np.concatenate([[0.0], np.cumsum(seg)]) / dist
        xlabel = "distance along the string / ‖θ1−θ2‖"
    else:
        seg = np.ones(st["n"] - 1)
        starts = np.arange(st["n"], dtype=float)
        dist = 1.0
        xlabel = "segment"
    for i in range(st["n"] - 1):
        x = starts[i] + t * seg[i] / dist
        ax.plot(x, st["path"][i], color="C0")
    figures.mark(ax, starts, st["bead_loss"], "point", label="beads", ms=5)
    ax.axhline(L0, color="C3", ls="--", lw=1, label="L0")
    tol = float(ds.attrs.get("tolerance", 1.0))
    if tol != 1.0:
        ax.axhline(tol * L0, color="C3", ls=":", lw=1, label=f"{tol:g}·L0 (a segment passes below)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(figures.quantity(ds, "bead_loss", "loss"))
    if logy:
        figures.log_axis(ax, "y")
    code = int(np.asarray(ds["reason"].isel(pair=pair, threshold=ti).values))
    ax.set_title(
        f"loss along the final string (pair {pair}, L0 = {L0:g}): {reasons.get(str(code), code)}",
        fontsize=9,
    )
    ax.legend()

    ax = fig.add_subplot(2, 2, 4, projection="3d")
    if st["beads"] is not None and st["n"] >= 2:
        B = st["beads"]
        centre = B.mean(0)
        _, sv, vt = np.linalg.svd(B - centre, full_matrices=False)
        keep = int(min(3, np.sum(sv > 1e-9 * max(sv.max(), 1e-300))))
        comps = np.zeros((3, B.shape[1]))  # fewer beads than 3 PCs: flat axes
        comps[:keep] = vt[:keep]
        # Segments are straight in parameter space, so their projections are too.
        lo = max(np.nanmin(st["path"]), 1e-12)
        hi = max(np.nanmax(st["path"]), lo * 1.0001)
        norm = colors.LogNorm(vmin=lo, vmax=hi)
        cmap = matplotlib.colormaps["coolwarm"]
        for i in range(st["n"] - 1):
            pts = B[i][None] + t[:, None] * (B[i + 1] - B[i])[None]
            P = (pts - centre) @ comps.T
            for j in range(len(t) - 1):
                c = cmap(norm(max(st["path"][i, j : j + 2].max(), lo)))
                ax.plot(P[j : j + 2, 0], P[j : j + 2, 1], P[j : j + 2, 2], color=c, lw=2)
        Pb = (B - centre) @ comps.T
        zmin = Pb[:, 2].min() - 0.1 * (np.ptp(Pb[:, 2]) + 1e-12)
        ax.plot(Pb[:, 0], Pb[:, 1], np.full(len(Pb), zmin), color="k", lw=0.8)
        ax.scatter(Pb[:, 0], Pb[:, 1], Pb[:, 2], color="k", s=12)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
        ax.set_zlabel("PC3")
        figures.colorbar(
            fig,
            cm.ScalarMappable(norm=norm, cmap=cmap),
            ax,
            figures.quantity(ds, "path_loss", "loss along the string") + " (log scale)",
            shrink=0.6,
            pad=0.1,
        )
        ax.set_title("beads on their top-3 principal components", fontsize=9)
    else:
        ax.set_title("beads not stored (store_beads = false)", fontsize=9)
    fig.tight_layout()
    return fig
