"""The fast paths of the mode-connectivity probes, each against its plain baseline.

- ``neb``: the loss and gradient of every pivot on a mini-batch in one vmapped pass vs a
  loop over the pivots (the peer, PyTorch-AutoNEB, loops), 10 pivots of the digits MLP;
- ``pca-trajectory``: the principal directions of R snapshots from the R × R Gram matrix
  vs ``numpy.linalg.svd`` of the R × D offsets (what scikit-learn's PCA, used by the
  peer loss-landscape, runs), R = 70, D = 4,810 (the digits MLP) and D = 270,410
  (ResNet-20's size);
- ``curve``: a Bezier curve's length by Gauss–Legendre on ‖φ'(t)‖ from the Gram matrix
  of its control points vs summing a 10,001-point polyline of φ(t) in R^D (the peer's
  ``eval_curve.py`` sums 61 points).

Each pair computes the same numbers (checked before timing). Prints a markdown table of
median seconds and ratios.

    python benchmarks/bench_paths.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.func import vmap

from lossatlas.engine import Objective
from lossatlas.engine.training import minibatch_loss
from lossatlas.plugins.datasets.digits import Digits
from lossatlas.plugins.models.mlp import MLPModel, MLPOptions
from lossatlas.plugins.probes.curve import curve_length, curve_points
from lossatlas.plugins.subspaces.pca_trajectory import trajectory_pca


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_neb(repeats: int) -> list[tuple[str, float, float]]:
    data = Digits().load(Digits.Options(), 0)
    model = MLPModel().build(MLPOptions(hidden=[64, 64]), data, 0)
    obj = Objective(model, data)
    g = torch.Generator().manual_seed(0)
    P = obj.x0 + 0.1 * torch.randn(10, obj.D, generator=g)
    xb, yb = data.train.inputs[:64], data.train.targets[:64]
    batched = vmap(lambda x, a, b: minibatch_loss(obj, x, a, b), in_dims=(0, None, None))

    def one_pass() -> torch.Tensor:
        X = P.clone().requires_grad_(True)
        (G,) = torch.autograd.grad(batched(X, xb, yb).sum(), X)
        return G

    def loop() -> torch.Tensor:
        out = []
        for x in P:
            xi = x.clone().requires_grad_(True)
            (gi,) = torch.autograd.grad(minibatch_loss(obj, xi, xb, yb), xi)
            out.append(gi)
        return torch.stack(out)

    assert torch.allclose(one_pass(), loop(), atol=1e-6)
    return [
        (
            "neb: 10 pivots' gradients, one vmapped pass vs a loop",
            median_time(one_pass, repeats),
            median_time(loop, repeats),
        )
    ]


def bench_pca(repeats: int) -> list[tuple[str, float, float]]:
    rows = []
    for D in (4_810, 270_410):
        rng = np.random.default_rng(0)
        M = np.cumsum(rng.normal(size=(70, D)), axis=0)

        def svd(M: np.ndarray = M) -> np.ndarray:
            Mc = M - M.mean(0)
            return np.linalg.svd(Mc, full_matrices=False)[2][:2]

        ours = trajectory_pca(M, 2)["components"]
        ref = svd()
        assert np.allclose(np.abs(np.sum(ours * ref, axis=1)), 1.0, atol=1e-9)
        rows.append(
            (
                f"pca-trajectory: 2 directions of 70 snapshots, D = {D:,}, Gram vs SVD",
                median_time(lambda M=M: trajectory_pca(M, 2), repeats),
                median_time(svd, repeats),
            )
        )
    return rows


def bench_curve(repeats: int) -> list[tuple[str, float, float]]:
    g = torch.Generator().manual_seed(0)
    control = torch.randn(3, 270_410, generator=g, dtype=torch.float64)
    t = np.linspace(0, 1, 10_001)

    def polyline() -> float:
        total = 0.0
        for i in range(0, len(t) - 1, 1000):  # in blocks: 10,001 × D does not fit
            P = curve_points("bezier", control, t[i : i + 1001])
            total += float(torch.linalg.vector_norm(torch.diff(P, dim=0), dim=1).sum())
        return total

    assert abs(curve_length("bezier", control) - polyline()) < 1e-6 * polyline()
    return [
        (
            "curve: Bezier length, D = 270,410, quadrature vs a 10,001-point polyline",
            median_time(lambda: curve_length("bezier", control), repeats),
            median_time(polyline, max(1, repeats // 2)),
        )
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rows = bench_neb(args.repeats) + bench_pca(args.repeats) + bench_curve(args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32 (neb) / float64")
    print()
    print("| what | lossatlas (s) | baseline (s) | ratio |")
    print("|---|---:|---:|---:|")
    for what, ours, base in rows:
        print(f"| {what} | {ours:.4f} | {base:.4f} | {base / ours:.1f}× faster |")


if __name__ == "__main__":
    main()
