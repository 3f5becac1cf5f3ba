"""``trace``: Hessian trace estimates as the number of random directions grows
(Böttcher & Wheeler, seed 001, §II.4, §III.2 and Fig. 3).

For the same N random directions z_1..z_N (Gaussian, as in the paper, or Rademacher):

- **Hutchinson** (1989; seed 001 eq. 25): Tr H ≈ mean zᵀHz, one HVP per direction
  (:func:`lossatlas.engine.curvature.hutchinson_trace`);
- **curvature-based** (seed 001 eq. 23, §III.2): no HVP — the loss is evaluated at
  ``n_points`` (50 in the paper) equidistant t ∈ [−ε, ε] along each direction, a
  quadratic is fitted by least squares, and the curvatures are averaged
  (:func:`lossatlas.engine.curvature.curvature_trace`; ``normalize``: unit directions
  scaled by D, or the paper's raw Gaussian ones);
- **Hutch++** (Meyer et al. 2021) with the same budget of N HVPs, for reference;
- **exact**: the trace of the dense Hessian where D is small enough (``exact``), or
  the analytic value on the synthetic landscapes of eq. 26 (Tr = 0) and eq. 31
  (Tr = N − 2k, 600 for N = 1000, k = 200);
- optionally the **spectral density** of H by stochastic Lanczos quadrature, and the
  exact spectrum when the dense Hessian was formed.

The running estimates after n = 1..N directions are stored per ``repeat`` (independent
draws), which gives the convergence plot of Fig. 3 and its spread.

Cost per repeat: N HVPs (Hutchinson) + N HVPs (Hutch++) + N × ``n_points`` loss
evaluations (curvature-based, batched); in plan: D HVPs for the dense Hessian (if
``exact``) and ``density_probes`` × ``density_steps`` HVPs for the density.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr

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
)
from lossatlas.plugins.models.quadratic import make_landscape

__all__ = ["TraceOptions", "TraceProbe", "landscape_for"]

#: ``exact = "auto"`` forms the dense Hessian up to this many parameters.
DENSE_LIMIT = 3000


@dataclass
class TraceOptions:
    at: PointRef = field(
        default=PointRef("init"), metadata={"doc": "the point (landscape = 'model')"}
    )
    landscape: Literal["model", "eq26", "eq31"] = field(
        default="model",
        metadata={
            "doc": "'model': the run's model and data; 'eq26'/'eq31': seed 001's quadratic "
            "saddles at their critical point"
        },
    )
    n_params: int = field(default=1000, metadata={"doc": "N of the quadratic landscapes"})
    n_negative: int = field(
        default=200, metadata={"doc": "k, negative curvatures of eq31 (eq26: N/2)"}
    )
    directions: int = field(default=100, metadata={"ge": 1, "doc": "N random directions"})
    repeats: int = field(
        default=1,
        metadata={
            "ge": 1,
            "doc": "independent draws of the N directions",
        },
    )
    distribution: Literal["gaussian", "rademacher"] = field(
        default="gaussian", metadata={"doc": "entries of the directions (the paper: gaussian)"}
    )
    epsilon: float = field(
        default=0.01,
        metadata={
            "gt": 0,
            "doc": "curvature fit: t ∈ [−ε, ε] (a distance along unit directions if normalize)",
        },
    )
    n_points: int = field(
        default=50,
        metadata={
            "ge": 3,
            "doc": "curvature fit: loss values per direction",
        },
    )
    normalize: bool = field(
        default=True,
        metadata={
            "doc": "curvature fit along unit directions (estimate D·uᵀHu); false: the raw "
            "directions of the paper"
        },
    )
    hutchpp: bool = field(default=True, metadata={"doc": "also Hutch++ with N HVPs"})
    exact: Literal["auto", "dense", "none"] = field(
        default="auto",
        metadata={
            "doc": f"exact trace from the dense Hessian: 'auto' (D ≤ {DENSE_LIMIT}), "
            "'dense', 'none'"
        },
    )
    density_steps: int = field(
        default=40, metadata={"ge": 0, "doc": "Lanczos steps of the SLQ spectral density (0: none)"}
    )
    density_probes: int = field(default=4, metadata={"ge": 1, "doc": "SLQ start vectors"})
    split: Literal["train", "validation"] = field(
        default="train", metadata={"doc": "the loss whose Hessian is estimated"}
    )

    def validate(self) -> None:
        if self.hutchpp and self.directions < 3:
            raise ValueError("Hutch++ needs directions ≥ 3 (or set hutchpp = false)")


def landscape_for(options: Any, ctx: StepContext) -> tuple[Any, Any, torch.Tensor, int, str]:
    """(hvp, loss_at, x, D, description) of the run's model or of a quadratic saddle.

    Cached on the context, so each process builds it once.
    """
    key = ("landscape", ctx.step.name)
    cache = ctx.cache
    if key in cache:
        return cache[key]
    if options.landscape == "model":
        from lossatlas.engine.curvature import hvp_operator

        obj = ctx.objective
        x = ctx.resolve_point(options.at)
        split = options.split

        def loss_at(P: torch.Tensor) -> np.ndarray:
            return obj.evaluate(P, split)["loss"]

        out = (
            hvp_operator(obj, x, split),
            loss_at,
            x,
            obj.D,
            f"model at '{options.at}' ({split} loss)",
        )
    else:
        land = make_landscape(options.landscape, options.n_params, options.n_negative)
        out = (land, land.loss_at, land.x0, land.D, f"{options.landscape}: {land.describe()}")
    cache[key] = out
    return out


def check_landscape(options: Any, ctx: StepContext) -> None:
    """Build the quadratic landscape once to check its options; errors name the step."""
    try:
        make_landscape(options.landscape, options.n_params, options.n_negative)
    except ConfigError as exc:
        raise ConfigError(f"step '{ctx.step.name}': {exc}") from None


@dataclass
class TracePlotOptions(PlotOptions):
    """``lossatlas plot ... -O density=linear``."""

    density: Literal["log", "linear"] = field(
        default="log",
        metadata={
            "doc": "the spectrum's density axis: 'log' shows the outlying eigenvalues "
            "beside the bulk, 'linear' the bulk's shape"
        },
    )


class TraceProbe(Probe[TraceOptions]):
    name = "trace"
    points = ()  # no (param,) results for later steps
    summary = "Hutchinson vs curvature-based (HVP-free) vs exact trace of H, and its density"
    Options = TraceOptions
    PlotOptions = TracePlotOptions

    def check(self, options: TraceOptions, ctx: StepContext) -> None:
        if options.landscape != "model":
            check_landscape(options, ctx)
        elif options.exact == "dense" and ctx.objective.D > 20000:
            raise ConfigError(
                f"step '{ctx.step.name}': exact = 'dense' with D="
                f"{ctx.objective.D:,} would form a {ctx.objective.D:,}² Hessian; "
                "use exact = 'none'"
            )

    def estimate(self, options: TraceOptions, ctx: StepContext) -> Estimate:
        """Cells, evaluations and bytes from the options (see :class:`Estimate`)."""
        n = ctx.objective.D if options.landscape == "model" else options.n_params
        per = 4 * options.directions + options.n_points + options.density_steps
        return grid_estimate(
            ctx,
            options.repeats,
            per,
            hvps=options.repeats * options.directions * 3,
            cell_bytes=options.directions * n * 8,
            drivers=("directions", "repeats", "n_points"),
        )

    def plan(self, options: TraceOptions, ctx: StepContext) -> Plan:
        from lossatlas.engine.curvature import spectral_density

        hvp, _loss_at, x, D, desc = landscape_for(options, ctx)
        static: dict[str, Any] = {}
        coords: dict[str, np.ndarray] = {
            "repeat": np.arange(options.repeats),
            "n": np.arange(1, options.directions + 1),
        }
        exact, method = np.nan, "none"
        if options.landscape != "model":
            exact, method = hvp.trace, "analytic"
            w = hvp.eigenvalues
        elif options.exact == "dense" or (options.exact == "auto" and D <= DENSE_LIMIT):
            H = ctx.objective.hessian(x, options.split).detach().to("cpu", torch.float64)
            w = np.linalg.eigvalsh(H.numpy())
            exact, method = float(torch.trace(H)), f"dense Hessian ({D} HVPs)"
        else:
            w = None
        if w is not None:
            coords["eig"] = np.arange(len(w))
            static["eigenvalues"] = (
                ("eig",),
                np.asarray(w, float),
                {"description": "the exact spectrum of H", "units": "loss / parameter²"},
            )
        static["exact_trace"] = (
            (),
            np.float64(exact),
            {
                "description": "Tr H, exactly (NaN: not computed)",
                "units": "loss / parameter²",
                "method": method,
            },
        )
        if options.density_steps > 0:
            sd = spectral_density(
                hvp,
                D,
                n_probes=options.density_probes,
                n_steps=min(options.density_steps, D),
                generator=ctx.generator("density"),
            )
            coords["grid"] = np.asarray(sd.grid, float)
            static["density"] = (
                ("grid",),
                np.asarray(sd.density, float),
                {
                    "description": "SLQ estimate of the eigenvalue density of H (∫ = 1)",
                    "units": "1 / eigenvalue",
                    "n_hvp": int(sd.n_hvp),
                    "sigma": float(sd.sigma),
                    "probes": options.density_probes,
                    "steps": options.density_steps,
                    "slq_trace": float(sd.trace()),
                },
            )
        dims = ("repeat", "n")
        variables = {
            "hutchinson": Variable(
                dims, "Hutchinson estimate of Tr H from the first n directions", "loss / parameter²"
            ),
            "hutchinson_stderr": Variable(
                dims, "its standard error (NaN at n = 1)", "loss / parameter²", finite=False
            ),
            "curvature": Variable(
                dims,
                "curvature-based (HVP-free) estimate from the first n directions",
                "loss / parameter²",
            ),
            "curvature_stderr": Variable(
                dims, "its standard error (NaN at n = 1)", "loss / parameter²", finite=False
            ),
            "hutchinson_sample": Variable(dims, "zᵀHz of direction n", "loss / parameter²"),
            "curvature_sample": Variable(
                dims,
                "the fitted curvature of direction n, scaled to estimate Tr H",
                "loss / parameter²",
            ),
            "fit_rms": Variable(
                dims,
                "rms residual of the quadratic fit along direction n "
                "(large: ε is outside the quadratic regime)",
                "loss",
            ),
        }
        if options.hutchpp:
            variables["hutchpp"] = Variable(
                ("repeat",), "Hutch++ estimate with N HVPs", "loss / parameter²"
            )
        return Plan(
            coords=coords,
            cell_dims=("repeat",),
            variables=variables,
            static=static,
            attrs={
                "landscape": desc,
                "D": int(D),
                "hutchinson_n_hvp": int(options.directions),
                "hutchpp_n_hvp": int(options.directions) if options.hutchpp else 0,
                "curvature_n_forward": int(options.directions * options.n_points),
                "curvature_n_hvp": 0,
                "exact_n_hvp": int(D) if method.startswith("dense") else 0,
                "exact_trace": float(exact),
                "distribution": options.distribution,
                "epsilon": options.epsilon,
                "normalize": int(options.normalize),
            },
            coord_attrs={"n": {"description": "number of directions averaged"}},
        )

    def compute(self, options: TraceOptions, ctx: StepContext, cell: Cell) -> dict[str, Any]:
        from lossatlas.engine.curvature import (
            curvature_trace,
            hutchinson_trace,
            hutchpp_trace,
            random_probes,
        )

        hvp, loss_at, x, D, _desc = landscape_for(options, ctx)
        g = cell.generator()
        Z = random_probes(
            options.directions, D, options.distribution, generator=g, dtype=torch.float64
        )
        hut = hutchinson_trace(hvp, D, probes=Z)
        cur = curvature_trace(
            loss_at,
            x,
            directions=Z.to(x.device),
            epsilon=options.epsilon,
            n_points=options.n_points,
            normalize=options.normalize,
        )
        out = {
            "hutchinson": hut.running,
            "hutchinson_stderr": hut.stderr,
            "curvature": cur.running,
            "curvature_stderr": cur.stderr,
            "hutchinson_sample": hut.samples,
            "curvature_sample": cur.samples,
            "fit_rms": cur.extra["fit_rms"],
        }
        if options.hutchpp:
            out["hutchpp"] = hutchpp_trace(
                hvp, D, options.directions, distribution=(options.distribution), generator=g
            ).estimate
        return out

    def finalize(
        self, options: TraceOptions, ctx: StepContext, ds: xr.Dataset
    ) -> xr.Dataset | None:
        return agreement(ds)

    def report_html(self, ds: Any) -> str | None:
        """Each estimate of Tr H with all directions used, its standard error, and its
        error against the exact trace (where known)."""
        exact = float(ds["exact_trace"].values) if "exact_trace" in ds else float("nan")
        rows = []
        for r in ds["repeat"].values:
            for name, what in (("hutchinson", "Hutchinson"), ("curvature", "curvature-based")):
                est = float(ds[name].sel(repeat=r).values[-1])
                se = float(ds[f"{name}_stderr"].sel(repeat=r).values[-1])
                rel = (est - exact) / abs(exact) if np.isfinite(exact) and exact else np.nan
                rows.append((int(r), what, est, se, f"{rel:+.2%}" if np.isfinite(rel) else "—"))
            if "hutchpp" in ds:
                est = float(ds["hutchpp"].sel(repeat=r))
                rel = (est - exact) / abs(exact) if np.isfinite(exact) and exact else np.nan
                off = f"{rel:+.2%}" if np.isfinite(rel) else "—"
                rows.append((int(r), "Hutch++", est, "—", off))
        n = int(ds["n"].values[-1])
        return html_table(
            rows,
            ["repeat", "estimator", f"Tr H from {n} directions", "standard error", "vs exact"],
            caption=f"exact Tr H = {exact:.6g}" if np.isfinite(exact) else "no exact trace",
        )

    def plot(self, ds: Any, logy: bool = False, density: str = "log", **_: Any) -> Any:
        return plot_trace(ds, logy=logy, density=density)


def agreement(ds: xr.Dataset) -> xr.Dataset:
    """How far the HVP-free curvatures are from zᵀHz on the same directions, per repeat.

    ``curvature_rel_diff_median``: the median over directions of
    |curvature_sample − hutchinson_sample| / |hutchinson_sample|. On a quadratic it is
    rounding (< 1e-8); on a ReLU network it shows the activation kinks inside [−ε, ε],
    which the fit's rms residual does not (a kinked parabola is fitted well by a
    parabola with another curvature). ``curvature_bias``: the mean of the difference,
    with ``curvature_bias_stderr``.
    """
    c = np.asarray(ds["curvature_sample"].values, float)
    h = np.asarray(ds["hutchinson_sample"].values, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(c - h) / np.abs(h)
    diff = c - h
    n = diff.shape[1]
    se = diff.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.full(diff.shape[0], np.nan)
    u = "loss / parameter²"
    return xr.Dataset(
        {
            "curvature_rel_diff_median": xr.Variable(
                ("repeat",),
                np.nanmedian(rel, axis=1),
                {
                    "description": "median |curvature − zᵀHz| / |zᵀHz| over the directions "
                    "(large: ReLU kinks or higher-order terms within ±ε)",
                    "units": "",
                },
            ),
            "curvature_bias": xr.Variable(
                ("repeat",),
                diff.mean(axis=1),
                {"description": "mean of curvature_sample − hutchinson_sample", "units": u},
            ),
            "curvature_bias_stderr": xr.Variable(
                ("repeat",), se, {"description": "its standard error", "units": u}
            ),
        }
    )


def plot_trace(ds: Any, logy: bool = False, density: str = "log") -> Any:
    """Fig. 3 of seed 001 (running estimates vs n, ± one standard error) and the
    spectral density of H — on a logarithmic density axis by default, where the few
    outlying eigenvalues (the interesting part) show next to the bulk."""
    import matplotlib.pyplot as plt

    spectral = "density" in ds or "eigenvalues" in ds
    fig, axes = plt.subplots(
        1, 2 if spectral else 1, figsize=(11.5 if spectral else 6, 4.4), squeeze=False
    )
    ax = axes[0, 0]
    n = ds["n"].values
    units = figures.units_of(ds, "hutchinson")
    for r in ds["repeat"].values:
        lab = r == ds["repeat"].values[0]
        # On a quadratic landscape the two estimates coincide to rounding: Hutchinson is
        # drawn wide and pale underneath, the curvature-based one thin and dashed on top.
        for name, color, style, width, alpha, marker, what in (
            ("hutchinson", "C0", "-", 3.2, 0.55, None, "Hutchinson, zᵀHz (HVPs) ± 1 s.e."),
            ("curvature", "C1", "--", 1.3, 1.0, "s", "curvature-based fits (no HVP)"),
        ):
            mean = np.asarray(ds[name].sel(repeat=r).values, dtype=float)
            ax.plot(
                n,
                mean,
                color=color,
                ls=style,
                lw=width,
                alpha=alpha,
                marker=marker,
                ms=3.5,
                markevery=0.1,
                label=what if lab else None,
                zorder=3 if name == "hutchinson" else 4,
            )
            se = f"{name}_stderr"
            if se in ds and name == "hutchinson":
                err = np.asarray(ds[se].sel(repeat=r).values, dtype=float)
                ok = np.isfinite(err)
                ax.fill_between(
                    n[ok], (mean - err)[ok], (mean + err)[ok], color=color, alpha=0.1, lw=0
                )
        if "hutchpp" in ds:
            figures.mark(
                ax,
                n[-1],
                float(ds["hutchpp"].sel(repeat=r)),
                "point",
                label=f"Hutch++ ({n[-1]} HVPs)" if lab else None,
                ms=7,
                mfc="C2",
            )
    exact = float(ds["exact_trace"].values)
    if np.isfinite(exact):
        ax.axhline(exact, color="k", lw=1.2, label=f"exact Tr H = {exact:.4g}")
    figures.log_axis(ax, "x")
    ax.set_xlabel("number of random directions n")
    ax.set_ylabel("estimate of Tr H" + (f" [{units}]" if units else ""))
    ax.set_title(f"trace estimates — {ds.attrs.get('landscape', '')}", fontsize=9)
    ax.legend()
    if spectral:
        ax = axes[0, 1]
        log_density = density == "log" or logy
        tops = []
        if "eigenvalues" in ds:
            w = np.asarray(ds["eigenvalues"].values, dtype=float)
            heights, _, _ = ax.hist(
                w,
                bins=min(80, max(10, len(w) // 10)),
                density=True,
                histtype="stepfilled",
                color="0.82",
                edgecolor="0.45",
                label=f"exact spectrum ({len(w)} eigenvalues)",
            )
            tops.append(float(np.max(heights)))
        if "density" in ds:
            phi = np.asarray(ds["density"].values, dtype=float)
            ax.plot(ds["grid"], phi, color="C3", lw=1.4, label="SLQ density")
            tops.append(float(np.nanmax(phi)))
        if log_density and tops:
            figures.log_axis(ax, "y")
            top = max(tops)
            ax.set_ylim(top * 1e-6, top * 2)
        ax.set_xlabel("eigenvalue of H" + (f" [{units}]" if units else ""))
        ax.set_ylabel("density" + (" (log scale)" if log_density else ""))
        ax.set_title("spectrum of H")
        ax.legend()
    fig.tight_layout()
    return fig
