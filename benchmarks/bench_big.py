"""Big models: seconds per grid point of ResNet-20 / ResNet-56 on CIFAR-10-shaped data.

Side by side in one process, the same model (lossatlas' ``resnet`` plugin, BatchNorm in
eval mode, its running statistics set from the data once), the same generated
CIFAR-10-shaped data (3 × 32 × 32 Gaussian images, 10 random classes; nothing is
downloaded), the same random points around the initialisation:

- ``lossatlas``: :meth:`Objective.evaluate` on all points at once (the batched
  ``functional_call`` + vmap path, chunked by the memory budget);
- ``loop``: a per-point loop (``vector_to_parameters`` into the module, one forward
  pass over the data per point) — what a hand-written script does;
- ``loss-landscapes``: ``linear_interpolation`` between two points (one forward per
  point, its way of setting weights), per point;
- variants of ours: ``channels_last`` (image batches channels-last), ``compile``
  (``torch.compile`` of the batched forward; its first call, the compilation, is
  timed separately), ``autocast bf16`` (with its accuracy cost: the largest relative
  difference of the loss from float32).

Every method evaluates the points on the whole data set in mini-batches of
``--batch`` samples. Each row is the best of ``--rounds`` rounds. With ``--eigen``, the
top Hessian eigenpair at the initialisation too: ours (thick-restart Lanczos, tol
1e-5·‖H‖) vs PyHessian's power iteration (tol 1e-3, its default), on ``--eigen-samples``
samples.

The issue asks for 10k samples; on a 2-core CPU a point of ResNet-56 on 10k images
takes about a minute, so the CPU run uses ``--samples 1000`` and 3 points (the time per
point is linear in the samples: the table says what ran). On a GPU::

    benchmarks/.peers/bin/python benchmarks/bench_big.py --device cuda --samples 10000 \\
        --points 8 --eigen
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import time

import numpy as np
import torch

from lossatlas.engine import DataBundle, Objective, Split
from lossatlas.plugins.models.resnet import ResNetModel, ResNetOptions


def cifar_like(n: int, seed: int = 0) -> DataBundle:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    split = Split(X, y)
    return DataBundle(train=split, validation=split, task="classification", n_outputs=10)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best(fn, rounds: int, device: str) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(rounds):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times), out


def loop_losses(model: torch.nn.Module, obj: Objective, P: torch.Tensor, batch: int) -> np.ndarray:
    """A per-point loop: the weights copied into the module, one pass per point."""
    m = copy.deepcopy(model).eval()
    params = [p for p in m.parameters() if p.requires_grad]
    X, y = obj.splits["train"].inputs, obj.splits["train"].targets
    out = []
    with torch.no_grad():
        for p in P:
            torch.nn.utils.vector_to_parameters(p, params)
            total = 0.0
            for i in range(0, len(X), batch):
                total += float(
                    torch.nn.functional.cross_entropy(
                        m(X[i : i + batch]), y[i : i + batch], reduction="sum"
                    )
                )
            out.append(total / len(X))
    return np.asarray(out)


def peer_losses(
    model: torch.nn.Module, obj: Objective, P: torch.Tensor, batch: int
) -> np.ndarray | None:
    """loss-landscapes' linear_interpolation from P[0] to P[-1] with len(P) steps."""
    try:
        import loss_landscapes
        import loss_landscapes.metrics
    except ImportError:
        return None
    X, y = obj.splits["train"].inputs, obj.splits["train"].targets

    class BatchedLoss(loss_landscapes.metrics.Metric):  # the peer's Metric, batched
        def __call__(self, model_wrapper):  # type: ignore[no-untyped-def]
            total = 0.0
            for i in range(0, len(X), batch):
                out = model_wrapper.forward(X[i : i + batch])
                total += float(
                    torch.nn.functional.cross_entropy(out, y[i : i + batch], reduction="sum")
                )
            return total / len(X)

    a, b = copy.deepcopy(model).eval(), copy.deepcopy(model).eval()
    params_a = [p for p in a.parameters() if p.requires_grad]
    params_b = [p for p in b.parameters() if p.requires_grad]
    torch.nn.utils.vector_to_parameters(P[0], params_a)
    torch.nn.utils.vector_to_parameters(P[-1], params_b)
    with torch.no_grad():
        return np.asarray(
            loss_landscapes.linear_interpolation(
                a, b, BatchedLoss(), steps=len(P), deepcopy_model=True
            )
        )


def bench_depth(depth: int, args: argparse.Namespace, data: DataBundle) -> list[tuple]:
    """The rows of one ResNet depth."""
    dev = args.device
    rows: list[tuple] = []
    model = ResNetModel().build(ResNetOptions(depth=depth, bn_samples=256), data, 0)

    def objective(**kw: object) -> Objective:
        return Objective(model, data, device=dev, batch_size=args.batch, **kw)

    base = objective()
    g = torch.Generator().manual_seed(1)
    P = base.x0 + 0.05 * base.x0.norm() / base.D**0.5 * torch.randn(
        args.points, base.D, generator=g
    ).to(base.x0)
    per = args.points
    t_ours, ref = best(lambda: base.evaluate(P)["loss"], args.rounds, dev)
    rows.append((depth, base.D, "lossatlas `evaluate` (vmap, chunked)", t_ours / per, 0.0))
    t_loop, loop = best(lambda: loop_losses(base.model, base, P, args.batch), args.rounds, dev)
    rows.append(
        (depth, base.D, "per-point loop", t_loop / per, float(np.max(np.abs(loop - ref) / ref)))
    )
    t_peer, peer = best(lambda: peer_losses(base.model, base, P, args.batch), 1, dev)
    if peer is not None:
        rows.append(
            (
                depth,
                base.D,
                "loss-landscapes `linear_interpolation`",
                t_peer / per,
                float("nan"),
            )
        )
    cl = objective(memory_format="channels_last")
    t_cl, got = best(lambda: cl.evaluate(P)["loss"], args.rounds, dev)
    rows.append(
        (
            depth,
            base.D,
            "lossatlas, channels_last",
            t_cl / per,
            float(np.max(np.abs(got - ref) / ref)),
        )
    )
    low = "bf16"
    ac = objective(autocast=low)
    t_ac, got = best(lambda: ac.evaluate(P)["loss"], args.rounds, dev)
    rows.append(
        (
            depth,
            base.D,
            f"lossatlas, autocast {low}",
            t_ac / per,
            float(np.max(np.abs(got - ref) / ref)),
        )
    )
    if not args.no_compile:
        co = objective(compile=True)
        t0 = time.perf_counter()
        try:
            first = co.evaluate(P)["loss"]
            sync(dev)
            t_first = time.perf_counter() - t0
            t_co, got = best(lambda: co.evaluate(P)["loss"], args.rounds, dev)
            rows.append(
                (
                    depth,
                    base.D,
                    f"lossatlas, compile (first call {t_first:.0f} s)",
                    t_co / per,
                    float(np.max(np.abs(got - ref) / ref)),
                )
            )
            del first
        except Exception as exc:  # compilation can fail on a machine without a compiler
            rows.append(
                (
                    depth,
                    base.D,
                    f"lossatlas, compile: failed ({type(exc).__name__})",
                    float("nan"),
                    float("nan"),
                )
            )
    print(f"ResNet-{depth} done", flush=True, file=sys.stderr)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--depths", type=int, nargs="+", default=[20, 56])
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--points", type=int, default=3)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    p.add_argument("--eigen", action="store_true", help="top eigenpair vs PyHessian too")
    p.add_argument("--eigen-samples", type=int, default=500)
    args = p.parse_args()
    dev = args.device
    print(
        f"device {dev} ({torch.cuda.get_device_name(0) if dev.startswith('cuda') else 'CPU'}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.samples} "
        f"CIFAR-10-shaped samples, {args.points} points, batches of {args.batch}, best of "
        f"{args.rounds}"
    )
    data = cifar_like(args.samples)
    rows = []
    for depth in args.depths:
        rows += bench_depth(depth, args, data)
    print()
    print("| model | D | method | s per point | ratio to lossatlas | max rel. loss difference |")
    print("|---|---:|---|---:|---:|---:|")
    ours = {d: s for d, _D, m, s, _e in rows if m.startswith("lossatlas `evaluate`")}
    for depth, D, method, sec, err in rows:
        ratio = sec / ours[depth] if np.isfinite(sec) else float("nan")
        err_s = "—" if not np.isfinite(err) else f"{err:.1e}"
        print(f"| ResNet-{depth} | {D:,} | {method} | {sec:.3f} | {ratio:.2f} | {err_s} |")
    if args.eigen:
        eigen(args)


def eigen(args: argparse.Namespace) -> None:
    """Top eigenpair of ResNet-20 at its initialisation: ours vs PyHessian, in-process."""
    from lossatlas.engine.curvature import extreme_eigenpairs, hvp_operator

    dev = args.device
    data = cifar_like(args.eigen_samples, seed=2)
    model = ResNetModel().build(ResNetOptions(depth=20, bn_samples=256), data, 0)
    obj = Objective(model, data, device=dev)
    t0 = time.perf_counter()
    res = extreme_eigenpairs(hvp_operator(obj, obj.x0), obj.D, k=1, which="LA", seed=0)
    sync(dev)
    t_ours = time.perf_counter() - t0
    print()
    print(f"Top Hessian eigenpair, ResNet-20 at init, {args.eigen_samples} samples, {dev}:")
    print()
    print("| method | seconds | HVPs | λ_max | bound / rel. change |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| lossatlas `extreme_eigenpairs` (tol 1e-5·‖H‖) | {t_ours:.1f} | {res.n_hvp} | "
        f"{res.eigenvalues[-1]:.6g} | bound {res.error_bounds[-1]:.1e} |"
    )
    code = (
        "import sys, time, torch\n"
        "sys.path.insert(0, '.')\n"
        "from benchmarks.bench_big import cifar_like\n"
        "from lossatlas.plugins.models.resnet import ResNetModel, ResNetOptions\n"
        "from pyhessian import hessian\n"
        f"data = cifar_like({args.eigen_samples}, seed=2)\n"
        "model = ResNetModel().build(ResNetOptions(depth=20, bn_samples=256), data, 0).eval()\n"
        f"cuda = {dev.startswith('cuda')!r}\n"
        "X, y = data.train.inputs, data.train.targets\n"
        "if cuda: model, X, y = model.cuda(), X.cuda(), y.cuda()\n"
        "torch.manual_seed(0)\n"
        "t0 = time.perf_counter()\n"
        "H = hessian(model, torch.nn.CrossEntropyLoss(), data=(X, y), cuda=cuda)\n"
        "vals, _ = H.eigenvalues(top_n=1)\n"
        "print(time.perf_counter() - t0, vals[0])\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=3600
        )
        sec, lam = (float(v) for v in out.stdout.split()[-2:])
        print(
            f"| PyHessian `eigenvalues(top_n=1)` (tol 1e-3) | {sec:.1f} | — | {lam:.6g} | "
            f"{abs(lam - res.eigenvalues[-1]) / abs(res.eigenvalues[-1]):.1e} from ours |"
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        err = getattr(exc, "stderr", "") or ""
        print(
            f"| PyHessian | failed: {err.strip().splitlines()[-1] if err.strip() else exc} | | | |"
        )


if __name__ == "__main__":
    main()
