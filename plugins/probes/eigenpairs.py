"""``eigenpairs``: the top (or bottom, or both ends') Hessian eigenpairs at a point.

What PyHessian's ``hessian.eigenvalues(top_n=k)`` answers (Yao et al. 2020; the Hessian
spectra of seed 001, §IV), by thick-restart Lanczos
(:func:`lossatlas.engine.curvature.extreme_eigenpairs`) instead of power iteration:
the k eigenvalues with float64 error bounds ‖Hv − λv‖ (an eigenvalue of H lies within
its bound of λ), the HVP count, whether every pair converged to ‖Hv − λv‖ ≤ tol·‖H‖,
and optionally the unit eigenvectors (``store_vectors``, k × D numbers).

Cost: the Lanczos HVPs (tens for the top few; capped by ``max_hvp``) plus k float64
re-check HVPs; one cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from lossatlas.engine import Cell, ConfigError, Estimate, Plan, PointRef, Probe, Variable

__all__ = ["Eigenpairs", "EigenpairsOptions"]


@dataclass
class EigenpairsOptions:
    at: PointRef = field(default=PointRef("init"), metadata={"doc": "the point x (e.g. 'train')"})
    k: int = field(default=1, metadata={"doc": "how many eigenpairs"})
    which: Literal["LA", "SA", "LM", "both"] = field(
        default="LA",
        metadata={
            "doc": "'LA': the k largest, 'SA': the k smallest, 'LM': largest magnitude, "
            "'both': k/2 from each end"
        },
    )
    split: Literal["train", "validation"] = field(
        default="train", metadata={"doc": "the loss whose Hessian is taken"}
    )
    tol: float = field(
        default=0.0,
        metadata={"doc": "‖Hv − λv‖ ≤ tol·‖H‖ (0: 1e-9 in float64, 1e-5 in float32)"},
    )
    max_hvp: int = field(default=0, metadata={"doc": "HVPs at most (0: the solver's default cap)"})
    store_vectors: bool = field(
        default=False, metadata={"doc": "store the unit eigenvectors too (k × D numbers)"}
    )

    def validate(self) -> None:
        if self.k < 1:
            raise ValueError(f"option 'k' must be at least 1, got {self.k}")
        if self.which == "both" and self.k % 2:
            raise ValueError(f"option 'k' must be even with which = 'both', got {self.k}")
        if self.tol < 0 or self.max_hvp < 0:
            raise ValueError("options 'tol' and 'max_hvp' must be ≥ 0")


class Eigenpairs(Probe):
    name = "eigenpairs"
    points = ()
    summary = "top (or bottom) Hessian eigenvalues with error bounds, by Lanczos"
    Options = EigenpairsOptions

    def check(self, options: EigenpairsOptions, ctx: Any) -> None:
        if options.k > ctx.objective.D:
            raise ConfigError(
                f"step '{ctx.step.name}': k = {options.k} eigenpairs of a model with "
                f"D = {ctx.objective.D} parameters; k must be at most D"
            )

    def estimate(self, options: EigenpairsOptions, ctx: Any) -> Estimate:
        D = int(ctx.objective.D)
        values = options.k * 3 + (options.k * D if options.store_vectors else 0)
        return Estimate(cells=1, store_bytes=8 * values, cell_bytes=8 * D * (options.k + 40))

    def plan(self, options: EigenpairsOptions, ctx: Any) -> Plan:
        k = options.k
        coords: dict[str, np.ndarray] = {"eigen": np.arange(k)}
        variables = {
            "eigenvalue": Variable(("eigen",), "Hessian eigenvalue (float64 Rayleigh quotient)"),
            "error_bound": Variable(
                ("eigen",), "‖Hv − λv‖ in float64: an eigenvalue of H lies within it of λ"
            ),
            "n_hvp": Variable((), "Hessian-vector products made", dtype="int64"),
            "converged": Variable((), "1 if every pair met the tolerance", dtype="int8"),
        }
        if options.store_vectors:
            coords["param"] = np.arange(ctx.objective.D)
            variables["eigenvector"] = Variable(("eigen", "param"), "unit eigenvector (rows)")
        return Plan(
            coords=coords,
            variables=variables,
            attrs={"at": str(options.at), "which": options.which, "split": options.split},
            coord_attrs={"eigen": {"description": "index, eigenvalues ascending"}},
        )

    def compute(self, options: EigenpairsOptions, ctx: Any, cell: Cell) -> dict[str, Any]:
        from lossatlas.engine.curvature import extreme_eigenpairs, hvp_operator

        obj = ctx.objective
        x = ctx.resolve_point(options.at)
        if not bool(torch.isfinite(x).all()):
            raise ConfigError(f"step '{ctx.step.name}': the point '{options.at}' has NaN/inf")
        res = extreme_eigenpairs(
            hvp_operator(obj, x, options.split),
            obj.D,
            k=options.k,
            which=options.which,
            tol=options.tol or None,
            max_hvp=options.max_hvp or None,
            generator=cell.generator(),
        )
        out: dict[str, Any] = {
            "eigenvalue": np.asarray(res.eigenvalues, dtype=float),
            "error_bound": np.asarray(res.error_bounds, dtype=float),
            "n_hvp": np.int64(res.n_hvp),
            "converged": np.int8(res.converged),
        }
        if options.store_vectors:
            out["eigenvector"] = res.eigenvectors.detach().to("cpu", torch.float64).numpy()
        return out

    def plot(self, ds: Any, **kwargs: Any) -> Any:
        """The eigenvalues with their error bounds (bars), ascending."""
        import matplotlib.pyplot as plt

        lam = np.asarray(ds["eigenvalue"].values, dtype=float)
        err = np.asarray(ds["error_bound"].values, dtype=float)
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ax.errorbar(np.arange(lam.size), lam, yerr=err, fmt="o", capsize=4)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("eigenpair (ascending)")
        ax.set_ylabel("Hessian eigenvalue")
        ok = "converged" if int(ds["converged"].values) else "NOT converged (best Ritz pairs)"
        ax.set_title(
            f"{ds.attrs.get('which', '')} eigenvalues at {ds.attrs.get('at', '')}: "
            f"{int(ds['n_hvp'].values)} HVPs, {ok}",
            fontsize=9,
        )
        fig.tight_layout()
        return fig
