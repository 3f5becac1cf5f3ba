"""Random probe vectors and the running result of a probe-averaged estimator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["Distribution", "TraceEstimate", "random_probes", "running_mean_and_stderr"]

Distribution = Literal["rademacher", "gaussian", "basis"]


def random_probes(
    n: int,
    D: int,
    distribution: Distribution = "rademacher",
    *,
    generator: torch.Generator | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(n, D) probe vectors z with E[z zᵀ] = I.

    ``rademacher``: entries ±1; ``gaussian``: entries N(0, 1); ``basis``: √D·e_i for the
    first n indices of a random permutation of 0..D−1 (n ≤ D, without replacement), so
    that the mean of zᵀHz over all D of them is exactly Tr(H).
    Drawn on the CPU from ``generator`` (or ``seed``), so results do not depend on the
    device.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    if distribution == "rademacher":
        Z = torch.randint(0, 2, (n, D), generator=g, dtype=torch.float64) * 2 - 1
    elif distribution == "gaussian":
        Z = torch.randn(n, D, generator=g, dtype=torch.float64)
    elif distribution == "basis":
        if n > D:
            raise ConfigError(f"basis probes: n={n} probes asked but there are only D={D}")
        idx = torch.randperm(D, generator=g)[:n]
        Z = torch.zeros(n, D, dtype=torch.float64)
        Z[torch.arange(n), idx] = float(np.sqrt(D))
    else:
        raise ConfigError(f"probe distribution '{distribution}'; use rademacher, gaussian or basis")
    return Z.to(device, dtype)


def running_mean_and_stderr(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running mean of the first n samples and its standard error s_n/√n (NaN at n=1)."""
    x = np.asarray(samples, dtype=np.float64)
    n = np.arange(1, len(x) + 1)
    mean = np.cumsum(x) / n
    sq = np.cumsum(x * x)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (sq - n * mean**2) / (n - 1)
        stderr = np.sqrt(np.clip(var, 0.0, None) / n)
    stderr[0] = np.nan
    return mean, stderr


@dataclass
class TraceEstimate:
    """A trace estimate and how it converges with the number of probes.

    ``samples[i]`` is the i-th probe's unbiased estimate of Tr(H) (e.g. zᵢᵀHzᵢ);
    ``running[n-1]`` the estimate from the first n probes and ``stderr[n-1]`` its
    standard error (sample standard deviation / √n; NaN for n = 1). ``estimate`` and
    ``std_error`` are the last entries. ``n_hvp`` and ``n_forward`` count the HVPs and
    loss evaluations (points) it cost. ``extra`` holds method-specific diagnostics.
    """

    estimate: float
    std_error: float
    samples: np.ndarray
    running: np.ndarray
    stderr: np.ndarray
    method: str
    n_hvp: int = 0
    n_forward: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_probes(self) -> np.ndarray:
        """1..N, the x axis of a convergence plot."""
        return np.arange(1, len(self.running) + 1)
