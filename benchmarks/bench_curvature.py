"""Benchmark of the curvature layer on the digits MLP 64-100-100-10 (float32, CPU).

(a) Dominant Hessian directions: our ``hessian_directions`` / ``extreme_eigenpairs``
    (ARPACK Lanczos) vs PyHessian's power iteration (``hessian.eigenvalues``, tol=1e-3,
    maxIter=100; the real package when importable, else a faithful copy of its loop),
    HVP counts, seconds and the accuracy each reaches against a float64 reference.
(b) The time of one HVP relative to one gradient.
(c) The d = 500 subspace Hessian MᵀHM: ``Objective.subspace_hessian`` (batched HVPs) vs
    d sequential ``Objective.hvp`` calls.

Run: ``benchmarks/.peers/bin/python benchmarks/bench_curvature.py [--steps 200]``.
PyHessian is GPL and not a dependency: ``bash benchmarks/peers.sh`` installs it in the
benchmarks' own venv (or point ``--pyhessian-path DIR`` at a ``pip install --target``).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from lossatlas.engine import Objective
from lossatlas.engine.curvature import (
    HessianOperator,
    extreme_eigenpairs,
    hessian_directions,
    hvp_operator,
)
from lossatlas.plugins.datasets.digits import Digits, DigitsOptions
from lossatlas.plugins.models.mlp import MLPModel, MLPOptions


def timed(fn: Callable[[], object], reps: int = 5) -> float:
    """Median wall time of ``reps`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_briefly(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Full-batch Adam, lr 1e-3: a point partway down, where H is still indefinite."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    with torch.no_grad():
        loss = loss_fn(model(X), y)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
    return float(loss.detach())


def power_iteration(
    hvp_one: Callable[[torch.Tensor], torch.Tensor],
    D: int,
    tol: float = 1e-3,
    max_iter: int = 100,
    shift: float = 0.0,
    seed: int = 0,
) -> tuple[float, torch.Tensor, int]:
    """PyHessian's ``eigenvalues()`` loop for top_n=1, on H − shift·I: v ← Hv/‖Hv‖,
    λ = vᵀHv, stop when |Δλ|/(|λ|+1e-6) < tol. Returns (λ + shift, v, HVPs)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(D, generator=g)
    v = v / v.norm()
    eigenvalue = None
    n = 0
    for _ in range(max_iter):
        Hv = hvp_one(v) - shift * v
        n += 1
        tmp = float(Hv @ v)
        v = Hv / Hv.norm()
        if eigenvalue is not None and abs(eigenvalue - tmp) / (abs(eigenvalue) + 1e-6) < tol:
            break
        eigenvalue = tmp
    return tmp + shift, v, n


def pyhessian_top(model, X, y, tol: float, max_iter: int, seed: int):
    """The real PyHessian ``eigenvalues(maxIter, tol)``, counting its HVPs."""
    import pyhessian.hessian  # noqa: F401  (the package re-exports the class as .hessian)

    ph = sys.modules["pyhessian.hessian"]

    count = {"n": 0}
    original = ph.hessian_vector_product

    def counting(gradsH, params, v):
        count["n"] += 1
        return original(gradsH, params, v)

    ph.hessian_vector_product = counting
    try:
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        h = ph.hessian(model, torch.nn.CrossEntropyLoss(), data=(X, y), cuda=False)
        values, vectors = h.eigenvalues(maxIter=max_iter, tol=tol, top_n=1)
        seconds = time.perf_counter() - t0
    finally:
        ph.hessian_vector_product = original
    v = torch.cat([t.reshape(-1) for t in vectors[0]]).detach()
    return float(values[0]), v, count["n"], seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pyhessian-path", default="/tmp/pyhessian_pkg")
    ap.add_argument("--steps", type=int, default=0, help="Adam steps before measuring")
    ap.add_argument("--subspace-dim", type=int, default=500)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, args.pyhessian_path)
    try:
        import pyhessian  # noqa: F401

        have_pyhessian = True
    except ImportError:
        have_pyhessian = False

    torch.manual_seed(0)
    data = Digits().load(DigitsOptions(), seed=0)
    model = MLPModel().build(MLPOptions(hidden=[100, 100]), data, seed=0)
    X, y = data.train.inputs, data.train.targets
    final_loss = train_briefly(model, X, y, args.steps)
    obj = Objective(copy.deepcopy(model), data, dtype=torch.float32)
    obj64 = Objective(copy.deepcopy(model), data, dtype=torch.float64)
    x, x64 = obj.x0, obj64.x0
    D = obj.D
    print(
        f"# digits MLP 64-100-100-10, D = {D:,}, train split N = {len(X)}, float32, "
        f"{torch.get_num_threads()} threads; after {args.steps} Adam steps, loss "
        f"{final_loss:.4f}\n"
    )

    # ---- reference: float64, tight tolerance
    ref = hessian_directions(hvp_operator(obj64, x64), D, tol=1e-10)
    lam_max, lam_min = ref.eigenvalues
    v_max, v_min = ref.eigenvectors
    print(
        f"reference (float64, tol 1e-10): λ_max = {lam_max:.8g}, λ_min = {lam_min:.8g}, "
        f"{ref.n_hvp} HVPs, residuals {ref.residuals[0]:.1e}, {ref.residuals[1]:.1e}\n"
    )

    def err(lam: float, v: torch.Tensor, lam_ref: float, v_ref: torch.Tensor) -> str:
        v64, r64 = v.double(), v_ref.double()
        cos = float(abs(v64 @ r64) / (v64.norm() * r64.norm()))
        gap = 1 - cos
        shown = f"{gap:.1e}" if gap > 1e-6 else "< 1e-6 (float32 rounding)"
        return f"{abs(lam - lam_ref) / abs(lam_ref):.1e} | {shown}"

    rows = []
    hvp = hvp_operator(obj, x)

    def hvp_one(v: torch.Tensor) -> torch.Tensor:
        return obj.hvp(x, v)

    # (a1) top eigenpair
    top = extreme_eigenpairs(hvp, D, k=1, which="LM")
    rows.append(
        (
            "λ_max: ours, eigsh LM (default tol 1e-5)",
            top.n_hvp,
            top.seconds,
            err(top.eigenvalues[0], top.eigenvectors[0], lam_max, v_max),
        )
    )
    top6 = extreme_eigenpairs(hvp, D, k=1, which="LM", tol=1e-3)
    rows.append(
        (
            "λ_max: ours, eigsh LM, tol 1e-3",
            top6.n_hvp,
            top6.seconds,
            err(top6.eigenvalues[0], top6.eigenvectors[0], lam_max, v_max),
        )
    )
    label = "PyHessian eigenvalues()" if have_pyhessian else "PyHessian loop (reimplemented)"
    for tol, it in ((1e-3, 100), (1e-6, 1000)):
        if have_pyhessian:
            lam, v, n, sec = pyhessian_top(copy.deepcopy(model), X, y, tol, it, seed=0)
        else:
            t0 = time.perf_counter()
            lam, v, n = power_iteration(hvp_one, D, tol, it)
            sec = time.perf_counter() - t0
        rows.append(
            (f"λ_max: {label}, tol {tol:g}, maxIter {it}", n, sec, err(lam, v, lam_max, v_max))
        )

    # (a2) both directions
    both = hessian_directions(hvp, D)
    rows.append(
        (
            "(λ_max, λ_min): ours, hessian_directions",
            both.n_hvp,
            both.seconds,
            err(both.eigenvalues[1], both.eigenvectors[1], lam_min, v_min),
        )
    )
    t0 = time.perf_counter()
    l1, _, n1 = power_iteration(hvp_one, D, 1e-3, 100)
    l2, v2, n2 = power_iteration(hvp_one, D, 1e-3, 100, shift=l1, seed=1)
    sec = time.perf_counter() - t0
    rows.append(
        (
            "(λ_max, λ_min): power iteration + annihilation, tol 1e-3",
            n1 + n2,
            sec,
            err(l2, v2, lam_min, v_min),
        )
    )
    t0 = time.perf_counter()
    l2, v2, n2b = power_iteration(hvp_one, D, 1e-6, 1000, shift=l1, seed=1)
    sec = time.perf_counter() - t0
    rows.append(
        (
            "(λ_max, λ_min): power iteration + annihilation, tol 1e-6",
            n1 + n2b,
            sec,
            err(l2, v2, lam_min, v_min),
        )
    )

    print("## (a) Dominant Hessian directions\n")
    print("| method | HVPs | seconds | rel. error of λ | 1 − cos(v, v_ref) |")
    print("|---|---:|---:|---|---|")
    for name, n, sec, e in rows:
        print(f"| {name} | {n} | {sec:.2f} | {e} |")
    print("\n(rows with λ_min: the errors are those of λ_min, the annihilation step)\n")

    # (b) HVP vs gradient
    g = torch.Generator().manual_seed(0)
    v = torch.randn(D, generator=g)
    V32 = torch.randn(32, D, generator=g)
    t_grad = timed(lambda: obj.grad(x))
    t_hvp = timed(lambda: obj.hvp(x, v))
    at = obj.hvp_at(x)
    t_at = timed(lambda: at(v))
    t_many = timed(lambda: obj.hvp_many(x, V32), reps=3) / 32
    op = HessianOperator(hvp, D)
    vn = v.double().numpy()
    t_op = timed(lambda: op.matvec(vn))
    print("## (b) One HVP vs one gradient\n")
    print("| operation | ms | ratio to gradient |")
    print("|---|---:|---:|")
    for name, t in (
        ("gradient (forward + backward)", t_grad),
        ("HVP, double backward (Objective.hvp)", t_hvp),
        ("HVP at a fixed point, gradient graph kept (Objective.hvp_at)", t_at),
        ("HVP through HessianOperator.matvec", t_op),
        ("HVP, batched 32 (hvp_many) per vector", t_many),
    ):
        print(f"| {name} | {1e3 * t:.2f} | {t / t_grad:.2f} |")

    # (c) subspace Hessian
    d = args.subspace_dim
    M = torch.randn(D, d, generator=g) / np.sqrt(D)
    t0 = time.perf_counter()
    Hs = obj.subspace_hessian(x, M)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    HM = torch.stack([obj.hvp(x, M[:, i]) for i in range(d)], dim=1)
    Hs_seq = M.T @ HM
    Hs_seq = 0.5 * (Hs_seq + Hs_seq.T)
    t_seq = time.perf_counter() - t0
    diff = float((Hs - Hs_seq).norm() / Hs_seq.norm())
    print(f"\n## (c) Subspace Hessian MᵀHM, d = {d}\n")
    print("| method | seconds | speed-up |")
    print("|---|---:|---:|")
    print(f"| {d} sequential Objective.hvp | {t_seq:.2f} | 1.00 |")
    print(f"| Objective.subspace_hessian (batched) | {t_batched:.2f} | {t_seq / t_batched:.2f} |")
    print(f"\nrelative difference between the two: {diff:.1e}")


if __name__ == "__main__":
    main()
