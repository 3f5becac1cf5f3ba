"""Benchmark of the curvature layer on the digits MLP 64-100-100-10 (float32, CPU).

(a) Dominant Hessian directions: our ``hessian_directions`` / ``extreme_eigenpairs``
    (thick-restart Lanczos) vs PyHessian's power iteration (``hessian.eigenvalues``,
    tol=1e-3, maxIter=100; the real package when importable, else a faithful copy of its
    loop), HVP counts, seconds and the accuracy each reaches against a float64 reference.
(b) The time of one HVP relative to one gradient.
(c) The d = 500 subspace Hessian MᵀHM: ``Objective.subspace_hessian`` (batched HVPs) vs
    d sequential ``Objective.hvp`` calls.
(d) Near-null clusters, before and after: the HVPs ``hessian_directions`` of lossatlas
    0.1 (ARPACK ``eigsh``, stopping rule ‖r‖ ≤ tol·|θ|, restarts up to 10·D; copied
    below as ``arpack_directions``) and of today's solver make on the review's spectrum
    (D = 910, PSD, 600 eigenvalues in (0, 1e-7], 250 zero) and on an MLP fitting x² to
    a near-zero mean squared error (float64; hundreds of eigenvalues below 1e-6·λ_max).
(e) float32 accuracy at the initialisation and at trained points: the float32
    eigenpairs' true error against a float64 reference, the error bound they report
    (float64 re-check) and the residual a float32 HVP alone would report.

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


def train_briefly(
    model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, steps: int, lr: float = 1e-3
) -> float:
    """Full-batch Adam (lr 1e-3): a point partway down, where H is still indefinite."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
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


# ------------------------------------------------------ (d) before/after: ARPACK


def arpack_directions(hvp, D: int, tol: float, max_hvp: int) -> tuple[np.ndarray, int, str]:
    """lossatlas 0.1's ``hessian_directions``: ARPACK eigsh "LM", then "LM" on H − λ1·I,
    default maxiter (10·D restarts), stopping rule ‖r‖ ≤ tol·|θ|. Returns (eigenvalues
    found, HVPs, outcome); stops the run at ``max_hvp`` HVPs (reported as such)."""
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    class Budget(Exception):
        pass

    count = {"n": 0}

    def counted(shift: float) -> HessianOperator:
        op = HessianOperator(hvp, D, shift=shift)
        inner = op._matmat

        def matmat(X: np.ndarray) -> np.ndarray:
            count["n"] += X.reshape(D, -1).shape[1]
            if count["n"] > max_hvp:
                raise Budget
            return inner(X)

        op._matmat = matmat  # type: ignore[method-assign]
        return op

    v0 = np.random.default_rng(0).standard_normal(D)
    found = []
    try:
        for shift in (0.0, None):
            s = 0.0 if shift == 0.0 else found[0]
            w, _ = eigsh(counted(s), k=1, which="LM", tol=tol, v0=v0)
            found.append(float(w[0]) + s)
    except ArpackNoConvergence:
        return np.asarray(found), count["n"], "no eigenpair: ConfigError raised (0.1)"
    except Budget:
        return np.asarray(found), count["n"], f"stopped by this benchmark at {max_hvp:,} HVPs"
    return np.asarray(found), count["n"], "converged"


def near_null_rows(args: argparse.Namespace) -> None:
    """(d): HVPs of 0.1's ARPACK annihilation vs today's solver at near-null clusters."""
    print("\n## (d) Near-null clusters: HVPs before (0.1, ARPACK) and after\n")
    print("| problem | D | solver | HVPs | λ_max, λ_min | outcome |")
    print("|---|---:|---|---:|---|---|")
    rng = np.random.default_rng(0)
    D = 910
    lam = np.r_[np.linspace(0.5, 3.0, 60), rng.uniform(0, 1e-7, 600), np.zeros(D - 660)]
    Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    A = torch.tensor((Q * lam) @ Q.T)

    def matrix_hvp(V: torch.Tensor) -> torch.Tensor:
        return V.double() @ A

    matrix_hvp.dtype = torch.float64  # type: ignore[attr-defined]
    problems = [("review's spectrum (PSD, 600 eigenvalues ≤ 1e-7, 250 zero)", matrix_hvp, D)]
    from lossatlas.engine.training import train
    from lossatlas.plugins.datasets.formula import Formula, FormulaOptions

    data = Formula().load(
        FormulaOptions(preset="x-squared", n_train=args.null_samples, n_validation=20), 0
    )
    width = args.null_width
    model = MLPModel().build(MLPOptions(hidden=[width, width], activation="tanh"), data, 0)
    obj = Objective(model, data, dtype=torch.float64)
    res = train(obj, obj.x0, optimizer="adam", lr=3e-3, epochs=args.null_epochs, history=False)
    loss = float(obj.evaluate(res.x_final)["loss"][0])
    w = np.linalg.eigvalsh(obj.hessian(res.x_final).numpy())
    small = int(np.sum(np.abs(w) < 1e-6 * np.abs(w).max()))
    problems.append(
        (
            f"MLP 1-{width}-{width}-1 tanh fitting x² on {args.null_samples} points, MSE "
            f"{loss:.1e} ({small} of {obj.D} eigenvalues below 1e-6·λ_max)",
            hvp_operator(obj, res.x_final),
            obj.D,
        )
    )
    for name, hvp, dim in problems:
        cap = 200 * dim
        t0 = time.perf_counter()
        w, n, outcome = arpack_directions(hvp, dim, 1e-9, cap)
        sec = time.perf_counter() - t0
        vals = ", ".join(f"{v:.3g}" for v in w) or "—"
        print(
            f"| {name} | {dim:,} | 0.1: ARPACK eigsh ({sec:.1f} s) | {n:,} | {vals} | {outcome} |"
        )
        t0 = time.perf_counter()
        ours = hessian_directions(hvp, dim)
        sec = time.perf_counter() - t0
        vals = ", ".join(
            f"{v:.3g} ± {b:.1e}" for v, b in zip(ours.eigenvalues, ours.error_bounds, strict=True)
        )
        print(
            f"| {name} | {dim:,} | now: hessian_directions ({sec:.1f} s) | {ours.n_hvp:,} | "
            f"{vals} | {ours.method}, converged={ours.converged}, shape {ours.shape} |"
        )
        if dim <= 5000:
            t0 = time.perf_counter()
            lanczos = hessian_directions(hvp, dim, method="lanczos")
            sec = time.perf_counter() - t0
            vals = ", ".join(
                f"{v:.3g} ± {b:.1e}"
                for v, b in zip(lanczos.eigenvalues, lanczos.error_bounds, strict=True)
            )
            print(
                f"| {name} | {dim:,} | now, method=lanczos (no dense) ({sec:.1f} s) | "
                f"{lanczos.n_hvp:,} | {vals} | "
                f"converged={lanczos.converged}, shape {lanczos.shape} |"
            )


# --------------------------------------------------------- (e) float32 accuracy


def float32_accuracy(args: argparse.Namespace, data, model: torch.nn.Module) -> None:
    """(e): float32 eigenpairs against float64 at several training stages."""
    print("\n## (e) float32 accuracy of (λ_max, λ_min), digits MLP 64-100-100-10\n")
    print(
        "| point | train loss | λ (float64 reference) | float32: |error| | reported bound "
        "(float64 re-check) | bound covers | float32 HVP residual (what 0.1 reported) | "
        "max ‖(H₃₂ − H₆₄)v‖ / ‖H‖ |"
    )
    print("|---|---:|---|---|---|---|---|---:|")
    X, y = data.train.inputs, data.train.targets
    m = copy.deepcopy(model)
    done = 0
    for steps in sorted(args.accuracy_steps):
        loss = train_briefly(m, X, y, steps - done, lr=args.accuracy_lr)
        done = steps
        o32 = Objective(copy.deepcopy(m), data, dtype=torch.float32)
        o64 = Objective(copy.deepcopy(m), data, dtype=torch.float64)
        ref = hessian_directions(hvp_operator(o64, o64.x0), o64.D, tol=1e-12)
        h32 = hvp_operator(o32, o32.x0)
        got = hessian_directions(h32, o32.D)
        err = np.abs(got.eigenvalues - ref.eigenvalues)
        V = got.eigenvectors
        HV32 = h32(V).double()
        lam32 = (HV32 * V.double()).sum(1)
        r32 = torch.linalg.vector_norm(HV32 - lam32[:, None] * V.double(), dim=1).numpy()
        HV64 = hvp_operator(o64, o64.x0)(V.double())
        scale = float(np.max(np.abs(ref.eigenvalues)))
        dev = float(torch.linalg.vector_norm(HV32 - HV64, dim=1).max()) / scale
        covers = all(err <= got.error_bounds * (1 + 1e-9))
        print(
            f"| {'init' if steps == 0 else f'{steps} Adam steps'} | {loss:.3g} | "
            f"{ref.eigenvalues[0]:.6g}, {ref.eigenvalues[1]:.4g} | "
            f"{err[0]:.1e}, {err[1]:.1e} | {got.error_bounds[0]:.1e}, {got.error_bounds[1]:.1e} | "
            f"{'yes' if covers else 'NO'} | {r32[0]:.1e}, {r32[1]:.1e} | {dev:.1e} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pyhessian-path", default="/tmp/pyhessian_pkg")
    ap.add_argument("--steps", type=int, default=0, help="Adam steps before measuring")
    ap.add_argument("--subspace-dim", type=int, default=500)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--accuracy-steps", type=int, nargs="*", default=[0, 300, 3000])
    ap.add_argument("--accuracy-lr", type=float, default=3e-3)
    ap.add_argument("--null-width", type=int, default=24)
    ap.add_argument("--null-samples", type=int, default=40)
    ap.add_argument("--null-epochs", type=int, default=6000)
    ap.add_argument("--only", default="abcde", help="sections to run, e.g. 'de'")
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
    if "e" in args.only:
        float32_accuracy(args, data, model)
    if "d" in args.only:
        near_null_rows(args)
    if not set("abc") & set(args.only):
        return
    print()
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
        f"{ref.n_hvp} HVPs, error bounds {ref.error_bounds[0]:.1e}, {ref.error_bounds[1]:.1e}\n"
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
            "λ_max: ours, Lanczos LM (default tol 1e-5)",
            top.n_hvp,
            top.seconds,
            err(top.eigenvalues[0], top.eigenvectors[0], lam_max, v_max),
        )
    )
    top6 = extreme_eigenpairs(hvp, D, k=1, which="LM", tol=1e-3)
    rows.append(
        (
            "λ_max: ours, Lanczos LM, tol 1e-3",
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
