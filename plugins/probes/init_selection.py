"""``init-selection``: do convex-looking initialisations train faster?

Fort & Scherlis 2019 (seed 000), Fig. 6. Draw many Xavier initialisations; at each,
measure on a random d-dim hyperplane the number of positive eigenvalues of H_d,
Tr(H_d), Tr(H_d)/‖H_d‖ and the initial validation loss; then train in the full space
(``engine.training.train``, Adam lr 1e-3 by default) for E epochs, recording the
accuracy per epoch. ``finalize`` gives, per measure and epoch, the Pearson correlation
and the best-fit slope of validation accuracy against the measure (the lines and
slopes of Fig. 6a–c), and the correlation of the initial loss with the number of
positive eigenvalues (Fig. 6d).

One cell per initialisation: d HVPs, then E epochs of training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lossatlas.engine import (
    Cell,
    Plan,
    Probe,
    StepContext,
    Variable,
    figures,
    optimizer_options,
)
from lossatlas.engine.curvature import default_flat_tol
from lossatlas.engine.geometry import draw_init, init_radius

from .goldilocks import _check_dims, _hyperplane, _validate_basis, hessian_stats

__all__ = ["MEASURES", "InitSelection", "InitSelectionOptions"]

MEASURES = {
    "n_positive": "number of positive eigenvalues of H_d (λ > flat_tol·max|λ|)",
    "trace": "Tr(H_d)",
    "ratio": "Tr(H_d)/‖H_d‖",
    "initial_validation_loss": "validation loss at the initialisation",
}


@dataclass
class InitSelectionOptions(
    optimizer_options(optimizer="adam", lr=1e-3, epochs=5, batch_size=64, epochs_min=1)
):
    inits: int = field(default=16, metadata={"doc": "number of Xavier initialisations"})
    init: Literal["xavier", "he"] = field(
        default="xavier",
        metadata={"doc": "initialisation scheme of the draws (at their natural radius)"},
    )
    dim: int = field(default=20, metadata={"doc": "hyperplane dimension d for H_d"})
    basis: Literal["dense", "sparse-fort", "sparse-chang"] = field(
        default="dense", metadata={"doc": "basis recipe of the hyperplane"}
    )
    nnz_min: int = field(default=0, metadata={"doc": "sparse-fort: fewest non-zeros per column"})
    nnz_max: int = field(default=0, metadata={"doc": "sparse-fort: most non-zeros per column"})
    metric: bool = field(default=False, metadata={"doc": "use ηM (η_ii ∝ 1/r_layer)"})
    directions: Literal["all", "weights"] = field(
        default="all", metadata={"doc": "hyperplanes span all coordinates, or weights only"}
    )
    split: Literal["train", "validation"] = field(
        default="train", metadata={"doc": "split the Hessian is taken on"}
    )

    def validate(self) -> None:
        if self.inits < 2:
            raise ValueError(f"option 'inits' must be at least 2 (correlations), got {self.inits}")
        if self.dim < 1:
            raise ValueError(f"option 'dim' must be at least 1, got {self.dim}")
        _validate_basis(self)


def _pad(v: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    v = np.asarray(v, dtype=float)[:n]
    out[: len(v)] = v
    return out


def fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(slope, intercept, Pearson r) of y against x over finite pairs (NaN if < 3)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0:
        return np.nan, np.nan, np.nan
    slope, icpt = np.polyfit(x[ok], y[ok], 1)
    r = np.corrcoef(x[ok], y[ok])[0, 1] if np.ptp(y[ok]) > 0 else np.nan
    return float(slope), float(icpt), float(r)


class InitSelection(Probe[InitSelectionOptions]):
    name = "init-selection"
    points = ()  # no (param,) results for later steps
    summary = "Hessian measures of many inits vs their training speed (seed 000 Fig. 6)"
    Options = InitSelectionOptions

    def check(self, options: InitSelectionOptions, ctx: StepContext) -> None:
        _check_dims([options.dim], options, ctx, f"probe 'init-selection' (step '{ctx.step.name}')")

    def plan(self, options: InitSelectionOptions, ctx: StepContext) -> Plan:
        obj = ctx.objective
        variables = {k: Variable(("init",), v) for k, v in MEASURES.items()}
        variables["frac_positive"] = Variable(
            ("init",), "fraction of positive eigenvalues (λ > flat_tol·max|λ|)"
        )
        variables["n_flat"] = Variable(
            ("init",), "eigenvalues of H_d within flat_tol·max|λ| of 0 (flat)", units="count"
        )
        variables["norm"] = Variable(("init",), "‖H_d‖ (Frobenius)")
        variables["radius"] = Variable(("init",), "radius of the initialisation (weights)")
        for s in ("train", "validation"):
            for m in obj.metric_names():
                variables[f"{s}_{m}"] = Variable(
                    ("init", "epoch"),
                    f"{m} on the {s} split after each epoch of full-space training",
                    finite=False,
                )
        return Plan(
            coords={"init": np.arange(options.inits), "epoch": np.arange(options.epochs + 1)},
            cell_dims=("init",),
            variables=variables,
            static={
                "r_xavier": (
                    (),
                    np.float64(init_radius(obj.layout, "xavier")),
                    {"description": "mean radius of a Xavier init"},
                )
            },
            attrs={
                "dim": options.dim,
                "optimizer": options.optimizer,
                "lr": options.lr,
                "flat_tol": default_flat_tol(obj.dtype),
            },
        )

    def compute(
        self, options: InitSelectionOptions, ctx: StepContext, cell: Cell
    ) -> dict[str, Any]:
        import torch

        from lossatlas.engine.training import train_as

        obj = ctx.objective
        g = cell.generator()
        x = draw_init(obj.layout, g, scheme=options.init, dtype=obj.dtype, device=obj.device)
        M = _hyperplane(options, ctx, x, options.dim, g)
        st = hessian_stats(obj.subspace_hessian(x, M, split=options.split))
        seed = int(torch.randint(0, 2**62, (1,), generator=g))
        res = train_as(
            options,
            obj,
            x,
            seed=seed,
        )
        n = options.epochs + 1
        out = {
            f"{s}_{m}": _pad(res.history[f"{s}_{m}"], n)
            for s in ("train", "validation")
            for m in obj.metric_names()
        }
        keys = ("n_positive", "n_flat", "trace", "ratio", "frac_positive", "norm")
        out.update({k: st[k] for k in keys})
        out["initial_validation_loss"] = float(res.history["validation_loss"][0])
        out["radius"] = float(obj.layout.radius(x))
        return out

    def finalize(self, options: InitSelectionOptions, ctx: StepContext, ds: Any) -> Any:
        import xarray as xr

        target = "validation_accuracy" if "validation_accuracy" in ds else "validation_loss"
        meas = list(MEASURES)
        E = ds.sizes["epoch"]
        slope = np.full((len(meas), E), np.nan)
        icpt = np.full((len(meas), E), np.nan)
        corr = np.full((len(meas), E), np.nan)
        for i, m in enumerate(meas):
            for e in range(E):
                slope[i, e], icpt[i, e], corr[i, e] = fit_line(
                    ds[m].values, ds[target].isel(epoch=e).values
                )
        _s, _i, r_d = fit_line(ds["n_positive"].values, ds["initial_validation_loss"].values)
        out = xr.Dataset()
        for i, m in enumerate(meas):
            out[f"slope_{m}"] = (
                ("epoch",),
                slope[i],
                {"description": f"best-fit slope of {target} against {MEASURES[m]}, per epoch"},
            )
            out[f"intercept_{m}"] = (
                ("epoch",),
                icpt[i],
                {"description": f"best-fit intercept of {target} against {MEASURES[m]}"},
            )
            out[f"correlation_{m}"] = (
                ("epoch",),
                corr[i],
                {"description": f"Pearson correlation of {target} with {MEASURES[m]}"},
            )
        out["loss_npos_correlation"] = (
            (),
            r_d,
            {
                "description": "correlation of the initial validation loss with the number of "
                "positive eigenvalues (Fig. 6d)"
            },
        )
        for m in ("n_positive", "trace", "ratio"):
            out[f"loss_correlation_{m}"] = (
                (),
                fit_line(ds[m].values, ds["initial_validation_loss"].values)[2],
                {
                    "description": f"Pearson correlation of the initial validation loss with "
                    f"{MEASURES[m]} (seed 000 Fig. 6d, §2.6: negative in the zone)"
                },
            )
        return out

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        import matplotlib.pyplot as plt

        target = "validation_accuracy" if "validation_accuracy" in ds else "validation_loss"
        fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
        epochs = ds["epoch"].values[1:]
        cmap = plt.get_cmap("viridis")
        for ax, m, tag in zip(
            axes[:3], ("n_positive", "trace", "initial_validation_loss"), "abc", strict=True
        ):
            x = ds[m].values
            for k, e in enumerate(epochs):
                y = ds[target].sel(epoch=e).values
                c = cmap(k / max(1, len(epochs) - 1))
                ax.scatter(x, y, s=10, color=c)
                if f"slope_{m}" in ds:
                    s = float(ds[f"slope_{m}"].sel(epoch=e))
                    b = float(ds[f"intercept_{m}"].sel(epoch=e))
                    if np.isfinite(s):
                        xs = np.linspace(np.nanmin(x), np.nanmax(x), 2)
                        ax.plot(
                            xs, s * xs + b, color=c, lw=1, label=f"epoch {int(e)}: slope {s:.3g}"
                        )
            ax.set_xlabel(MEASURES[m])
            ax.set_ylabel(target.replace("_", " "))
            ax.set_title(f"({tag}) {target.split('_')[-1]} vs {m.replace('_', ' ')}")
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
        ax = axes[3]
        ax.scatter(ds["n_positive"].values, ds["initial_validation_loss"].values, s=12)
        if "loss_npos_correlation" in ds:
            ax.set_title(
                f"(d) initial loss vs positive eigenvalues, "
                f"r = {float(ds['loss_npos_correlation']):.2f}"
            )
        ax.set_xlabel(MEASURES["n_positive"])
        ax.set_ylabel(figures.quantity(ds, "initial_validation_loss"))
        fig.tight_layout()
        return fig
