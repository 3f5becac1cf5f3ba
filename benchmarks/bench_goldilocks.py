"""Benchmarks of the Goldilocks suite, side by side, as markdown tables with ratios.

1. Subspace Hessians H_d = MᵀHM per second for d ∈ {10, 100, 500}: the batched
   ``Objective.subspace_hessian`` (d HVPs in vmapped chunks) against d sequential
   double-backward HVPs (the floor a naive loop reaches). Target: ≤ 1.1× the sequential
   time on CPU, faster on GPU.
2. Sparse (seed 000 / seed 004 recipes) against dense orthonormal projections at large
   D: memory, construction time, and the products Mθ and Mᵀg.
3. Subspace training of 16 runs: one vmapped ensemble against the same runs one after
   another (``train_ensemble`` with one run, and ``engine.training.train``).

Run:  python benchmarks/bench_goldilocks.py [--device cuda] [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch

from lossatlas.engine import Objective, Subspace
from lossatlas.engine.geometry import draw_init, init_radius
from lossatlas.engine.training import train
from lossatlas.plugins.datasets.digits import Digits, DigitsOptions
from lossatlas.plugins.models.mlp import MLP
from lossatlas.plugins.probes.subspace_training import train_ensemble
from lossatlas.plugins.subspaces.hyperplane import StackedProjection, make_basis


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device: torch.device, repeat: int = 3) -> float:
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def bench_hessians(device: torch.device, quick: bool) -> None:
    data = Digits().load(DigitsOptions(limit=600 if quick else 0), 0)
    obj = Objective(MLP(64, [100, 100], 10), data, device=device)
    g = torch.Generator().manual_seed(0)
    x = draw_init(obj.layout, g, radius=init_radius(obj.layout), dtype=obj.dtype, device=device)
    print(
        f"\n### Subspace Hessians (digits MLP 64-100-100-10, D = {obj.D:,}, "
        f"{len(obj.splits['train'])} samples, {device.type}, float32)\n"
    )
    print(
        "| d | basis | batched (s) | sequential HVPs (s) | batched / sequential | "
        "Hessians per s (batched) |"
    )
    print("|---|---|---|---|---|---|")
    for d in [10, 100] if quick else [10, 100, 500]:
        for kind in ("dense", "sparse-fort"):
            M = make_basis(obj.D, d, g, kind, dtype=obj.dtype).to(device)
            cols = M.to_dense() if M.layout != torch.strided else M

            def batched(M=M) -> None:
                obj.subspace_hessian(x, M)

            k = min(d, 50)  # sequential HVPs are timed on k columns and scaled by d/k

            def sequential(cols=cols, k=k) -> None:
                HM = torch.stack([obj.hvp(x, cols[:, i]) for i in range(k)])
                _ = HM @ cols[:, :k]

            rep = 1 if d >= 100 else 3
            tb = timeit(batched, device, rep)
            ts = timeit(sequential, device, rep) * d / k
            mark = "" if k == d else f" ({k} timed, × {d / k:g})"
            print(f"| {d} | {kind} | {tb:.3f} | {ts:.3f}{mark} | {tb / ts:.2f}× | {1 / tb:.2f} |")


def bench_sparse(device: torch.device, quick: bool) -> None:
    D = 200_000 if quick else 2_000_000
    d = 100
    print(f"\n### Projections at D = {D:,}, d = {d} ({device.type}, float32)\n")
    print(
        "| basis | memory (MB) | build (s) | Mθ (ms) | Mᵀg (ms) | Mθ / Mᵀg by gather + "
        "index_add (ms) | memory vs dense |"
    )
    print("|---|---|---|---|---|---|---|")
    theta = torch.randn(d, device=device)
    gvec = torch.randn(D, device=device)
    dense_mb = None
    for kind in ("dense", "sparse-fort", "sparse-chang"):
        g = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        M = make_basis(D, d, g, kind, dtype=torch.float32).to(device)
        build = time.perf_counter() - t
        if M.layout == torch.strided:
            mb = M.numel() * 4 / 2**20
            dense_mb = mb
            sub = Subspace(origin=torch.zeros(D, device=device), basis=M)
            mt = M.T.contiguous()

            def pull(mt=mt) -> torch.Tensor:
                return mt @ gvec
        else:
            mb = M.values().numel() * (4 + 16) / 2**20
            sub = Subspace(origin=torch.zeros(D, device=device), basis=M)
            mt = M.t().coalesce()

            def pull(mt=mt) -> torch.Tensor:
                return torch.sparse.mm(mt, gvec.unsqueeze(1))

        te = timeit(lambda sub=sub: sub.embed(theta), device, 5) * 1e3
        tp = timeit(pull, device, 5) * 1e3
        ratio = f"{mb / dense_mb:.4f}×" if dense_mb else "1×"
        if M.layout != torch.strided:
            st = StackedProjection([sub])
            th, gg = theta.unsqueeze(0), gvec.unsqueeze(0)
            ti = timeit(lambda st=st, th=th: st.embed(th), device, 5) * 1e3
            tq = timeit(lambda st=st, gg=gg: st.pullback(gg), device, 5) * 1e3
            extra = f"{ti:.2f} / {tq:.2f}"
        else:
            extra = "–"
        print(f"| {kind} | {mb:.1f} | {build:.2f} | {te:.2f} | {tp:.2f} | {extra} | {ratio} |")
        del M, sub, mt


def bench_training(device: torch.device, quick: bool) -> None:
    data = Digits().load(DigitsOptions(), 0)
    obj = Objective(MLP(64, [32], 10), data, device=device)
    R, d = 16, 20
    epochs = 1 if quick else 3
    g = torch.Generator().manual_seed(0)
    rx = init_radius(obj.layout)
    subs = [
        Subspace(
            origin=draw_init(obj.layout, g, radius=rx, dtype=obj.dtype, device=device),
            basis=make_basis(obj.D, d, g, "dense", dtype=obj.dtype).to(device),
        )
        for _ in range(R)
    ]
    kw = dict(lr=1e-2, epochs=epochs, batch_size=64)
    t_ens = timeit(lambda: train_ensemble(obj, subs, seeds=list(range(R)), **kw), device, 1)
    t_seq = timeit(
        lambda: [train_ensemble(obj, [s], seeds=[i], **kw) for i, s in enumerate(subs)], device, 1
    )
    t_eng = timeit(
        lambda: [
            train(
                obj,
                None,
                optimizer="adam",
                lr=1e-2,
                epochs=epochs,
                batch_size=64,
                seed=i,
                params_subspace=s,
            )
            for i, s in enumerate(subs)
        ],
        device,
        1,
    )
    print(
        f"\n### Subspace training, {R} runs (digits MLP 64-32-10, D = {obj.D:,}, d = {d}, "
        f"{epochs} epochs, batch 64, {device.type})\n"
    )
    print("| mode | seconds | vs ensemble |")
    print("|---|---|---|")
    print(f"| vmapped ensemble (train_ensemble, R = {R}) | {t_ens:.2f} | 1× |")
    print(f"| one after another (train_ensemble, R = 1) | {t_seq:.2f} | {t_seq / t_ens:.2f}× |")
    print(f"| one after another (engine.training.train) | {t_eng:.2f} | {t_eng / t_ens:.2f}× |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    ap.add_argument("--only", choices=["hessian", "sparse", "training"], default=None)
    a = ap.parse_args()
    dev = torch.device(a.device)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    if a.only in (None, "hessian"):
        bench_hessians(dev, a.quick)
    if a.only in (None, "sparse"):
        bench_sparse(dev, a.quick)
    if a.only in (None, "training"):
        bench_training(dev, a.quick)


if __name__ == "__main__":
    main()
