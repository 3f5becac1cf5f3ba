"""Loss at many points: the objective's batched evaluation vs a per-point loop.

Side by side in one run, on the digits MLP 64-100-100-10 (the 1438-sample train split):

1. ``Objective.evaluate`` on the 625 points of a 25 × 25 grid (vmapped, chunked);
2. the usual loop: for each point, copy the weights into the module
   (``vector_to_parameters``) and run a forward pass with the loss;
3. the FLOP limit: the same forward matmuls as plain batched ``bmm`` calls of the same
   shapes (no bias, activation or loss), i.e. the fastest the matrix work can go here.

Reports points/second and the ratios; then the memory evaluation adds on top of the
points themselves (peak RSS growth of a fresh process) for 625 vs 10,000 points, to
show that it does not grow with the number of points.

Run:  python benchmarks/bench_objective.py [--device cuda] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

from lossatlas.engine import Objective
from lossatlas.plugins.datasets.digits import Digits, DigitsOptions
from lossatlas.plugins.models.mlp import MLPModel, MLPOptions

WIDTHS = [64, 100, 100, 10]


def setup(device: str) -> tuple[Objective, torch.Tensor]:
    data = Digits().load(DigitsOptions(), seed=0)
    model = MLPModel().build(MLPOptions(hidden=WIDTHS[1:-1]), data, seed=0)
    obj = Objective(model, data, device=device)
    g = torch.Generator().manual_seed(0)
    d1, d2 = (torch.randn(obj.D, generator=g) for _ in range(2))
    a = torch.linspace(-1, 1, 25)
    aa, bb = torch.meshgrid(a, a, indexing="ij")
    X = obj.x0 + 0.5 * (aa.reshape(-1, 1) * d1 + bb.reshape(-1, 1) * d2).to(device)
    return obj, X


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_of(fn, repeat: int, device: str) -> float:
    times = []
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def loop(obj: Objective, X: torch.Tensor) -> torch.Tensor:
    model = obj.model
    s = obj.splits["train"]
    out = torch.empty(X.shape[0])
    with torch.no_grad():
        for i, x in enumerate(X):
            torch.nn.utils.vector_to_parameters(x, model.parameters())
            out[i] = torch.nn.functional.cross_entropy(model(s.inputs), s.targets)
    return out


def matmul_floor(obj: Objective, B: int, chunk: int, repeat: int, device: str) -> float:
    """Seconds for the forward matmuls alone, the faster of two plain formulations:
    one ``mm`` per point and layer, or one contiguous ``bmm`` per chunk and layer."""
    s = obj.splits["train"]
    n = s.inputs.shape[0]
    dev, dt = obj.device, obj.dtype
    shapes = [(WIDTHS[i + 1], WIDTHS[i]) for i in range(len(WIDTHS) - 1)]
    single = [torch.randn(o, i, device=dev, dtype=dt) for o, i in shapes]
    batched = [torch.randn(chunk, i, o, device=dev, dtype=dt) for o, i in shapes]
    h0 = s.inputs.unsqueeze(0).repeat(chunk, 1, 1).reshape(chunk, n, WIDTHS[0])

    def per_point() -> None:
        with torch.no_grad():
            for _ in range(B):
                h = s.inputs
                for W in single:
                    h = h @ W.T

    def per_chunk() -> None:
        with torch.no_grad():
            for _ in range(0, B, chunk):
                h = h0
                for W in batched:
                    h = torch.bmm(h, W)

    return min(best_of(per_point, repeat, device), best_of(per_chunk, repeat, device))


def peak_rss(points: int, device: str) -> float:
    code = (
        "import resource, torch, sys; sys.path.insert(0, 'benchmarks');"
        "from bench_objective import setup;"
        f"obj, X = setup({device!r});"
        f"X = X.repeat({points} // 625 + 1, 1)[:{points}];"
        "import os; page = os.sysconf('SC_PAGE_SIZE');"
        "now = int(open('/proc/self/statm').read().split()[1]) * page / 2**20;"
        "obj.evaluate(X);"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024;"
        "print(max(peak - now, 0.0))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    obj, X = setup(args.device)
    B = X.shape[0]
    n = len(obj.splits["train"])
    chunk = min(B, obj.point_chunk())
    flops = 2 * B * n * sum(WIDTHS[i] * WIDTHS[i + 1] for i in range(len(WIDTHS) - 1))

    ours = best_of(lambda: obj.evaluate(X), args.repeat, args.device)
    base = best_of(lambda: loop(obj, X), args.repeat, args.device)
    floor = matmul_floor(obj, B, chunk, args.repeat, args.device)
    check = obj.evaluate(X[:5])["loss"]
    ref = loop(obj, X[:5]).numpy()
    assert abs(check - ref).max() < 1e-4, "batched and looped losses disagree"
    rss = {p: peak_rss(p, args.device) for p in (625, 10_000)}

    rows = [
        ("lossatlas `Objective.evaluate` (batched, chunked)", ours),
        ("per-point loop (`vector_to_parameters` + forward)", base),
        ("the forward matmuls alone, best of mm/bmm (FLOP floor)", floor),
    ]
    print(
        f"digits MLP {'-'.join(map(str, WIDTHS))}, {B} points x {n} samples, "
        f"device {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, chunk {chunk} points\n"
    )
    print("| method | seconds | points/s | GFLOP/s |")
    print("|---|---:|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {t:.3f} | {B / t:,.0f} | {flops / t / 1e9:.1f} |")
    print()
    print(f"- speed-up over the loop: **{base / ours:.2f}×** (target ≥ 1.0×)")
    print(f"- fraction of the matmul FLOP rate: **{floor / ours:.2f}×** (target ≥ 0.8×)")
    print(
        f"- memory evaluate() adds on top of the points themselves (peak RSS growth): "
        f"{rss[625]:.0f} MiB for 625 points, {rss[10_000]:.0f} MiB for 10,000 points "
        "(bounded by the chunk, not by the number of points)"
    )
    print(json.dumps({"ours_s": ours, "loop_s": base, "floor_s": floor, "rss": rss}))


if __name__ == "__main__":
    main()
