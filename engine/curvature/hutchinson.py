"""Hutchinson's stochastic trace estimator."""

from __future__ import annotations

import time

import torch

from ..errors import ConfigError
from ..progress import task as progress_task
from .operator import HVP, resolve_hvp_target
from .probes import Distribution, TraceEstimate, random_probes, running_mean_and_stderr

__all__ = ["hutchinson_trace"]


def hutchinson_trace(
    hvp: HVP,
    D: int,
    n_probes: int = 100,
    *,
    distribution: Distribution = "rademacher",
    probes: torch.Tensor | None = None,
    batch_size: int = 64,
    seed: int = 0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> TraceEstimate:
    """Tr(H) ≈ (1/N) Σ_i z_iᵀ H z_i over N random probes z_i with E[z zᵀ] = I.

    Hutchinson (1989), "A stochastic estimator of the trace of the influence matrix for
    Laplacian smoothing splines"; eq. (25) of Böttcher & Wheeler (seed 001). Each
    zᵀHz is unbiased; the variance per probe is 2(‖H‖_F² − Σ H_ii²) for Rademacher and
    2‖H‖_F² for Gaussian probes. ``distribution="basis"`` uses √D·e_i without
    replacement: the estimate after all D probes is Tr(H) exactly.

    ``probes`` (N, D) overrides the random draw (e.g. to share directions with
    :func:`~lossatlas.engine.curvature.curvature_trace`, as in Fig. 3 of seed 001).
    Returns the running estimate for n = 1..N and its standard error.

    Cost: N HVPs, in batched calls of ``batch_size``.
    """
    t0 = time.perf_counter()
    torch_dtype, torch_device = resolve_hvp_target(hvp, dtype, device)
    if probes is None:
        if n_probes < 1:
            raise ConfigError(f"hutchinson_trace: n_probes={n_probes}; use at least 1")
        probes = random_probes(
            n_probes,
            D,
            distribution,
            generator=generator,
            seed=seed,
            dtype=torch_dtype,
            device=torch_device,
        )
    else:
        probes = probes.reshape(-1, D).to(torch_device, torch_dtype)
        distribution = "given"  # type: ignore[assignment]
    samples = []
    bar = progress_task("Hutchinson", probes.shape[0], "HVP")
    for i in range(0, probes.shape[0], batch_size):
        Z = probes[i : i + batch_size]
        HZ = hvp(Z)
        samples.append((Z.double() * HZ.double()).sum(dim=1).cpu())
        bar.update(i + Z.shape[0])
    bar.close()
    s = torch.cat(samples).numpy()
    running, stderr = running_mean_and_stderr(s)
    return TraceEstimate(
        estimate=float(running[-1]),
        std_error=float(stderr[-1]),
        samples=s,
        running=running,
        stderr=stderr,
        method=f"hutchinson[{distribution}]",
        n_hvp=int(probes.shape[0]),
        seconds=time.perf_counter() - t0,
    )
