"""101-point linear interpolation: lossatlas vs loss-landscapes' ``linear_interpolation``.

Same model, same data, same two endpoints (a fresh init θ0 and a second init θ1 — the
timing does not depend on training), train loss on the whole train split at 101 points
of the line. lossatlas forms the points (1−α)θ0 + αθ1 and evaluates them in batched
(vmapped) passes; loss-landscapes copies each point into the module and runs one
forward pass per point. Also reported: which of the two evaluates α = 0 and α = 1
exactly (loss-landscapes adds (θ1−θ0)/steps before its first evaluation, so it never
evaluates α = 0, and reaches α = 1 by repeated addition).

Run it in the peers' environment (the peer is not a lossatlas dependency;
``bash benchmarks/peers.sh`` makes it)::

    benchmarks/.peers/bin/python benchmarks/bench_interpolation.py [--device cuda]

Prints a markdown table; ratio = loss-landscapes time / lossatlas time (> 1: lossatlas
is faster).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import numpy as np
import torch


def build(hidden: list[int], device: str, dtype: torch.dtype):
    from lossatlas.engine import Objective
    from lossatlas.plugins.datasets.digits import Digits, DigitsOptions
    from lossatlas.plugins.models.mlp import MLPModel, MLPOptions

    data = Digits().load(DigitsOptions(), 0)
    m0 = MLPModel().build(MLPOptions(hidden=hidden), data, 0)
    m1 = MLPModel().build(MLPOptions(hidden=hidden), data, 1)
    obj = Objective(copy.deepcopy(m0), data, device=device, dtype=dtype)
    theta1 = torch.cat([p.detach().reshape(-1) for p in m1.parameters()]).to(device, dtype)
    return obj, m0.to(device, dtype), m1.to(device, dtype), theta1


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_lossatlas(obj, theta1, points: int, device: str):
    from lossatlas.plugins.probes.interpolation import interpolate

    alpha = np.linspace(0.0, 1.0, points)
    sync(device)
    t = time.perf_counter()
    X = interpolate(obj.x0, theta1, alpha)
    loss = obj.evaluate(X, "train")["loss"]
    sync(device)
    return time.perf_counter() - t, loss


def bench_peer(obj, m0, m1, points: int, device: str):
    import loss_landscapes
    import loss_landscapes.metrics

    split = obj.splits["train"]
    metric = loss_landscapes.metrics.Loss(torch.nn.CrossEntropyLoss(), split.inputs, split.targets)
    start = copy.deepcopy(m0)
    sync(device)
    t = time.perf_counter()
    with torch.no_grad():
        loss = loss_landscapes.linear_interpolation(start, m1, metric, steps=points)
    sync(device)
    return time.perf_counter() - t, np.asarray(loss, dtype=np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--points", type=int, default=101)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    try:
        import loss_landscapes  # noqa: F401
    except ImportError:
        sys.exit("loss-landscapes is not installed here; see this script's docstring")
    torch.manual_seed(0)
    rows = []
    for hidden in ([100, 100], [512, 512]):
        obj, m0, m1, theta1 = build(hidden, args.device, torch.float32)
        n = len(obj.splits["train"])
        ours, theirs = [], []
        for _ in range(args.repeats):
            t, ours_loss = bench_lossatlas(obj, theta1, args.points, args.device)
            ours.append(t)
            t, peer_loss = bench_peer(obj, m0, m1, args.points, args.device)
            theirs.append(t)
        own0 = obj.evaluate(obj.x0.unsqueeze(0), "train")["loss"][0]
        own1 = obj.evaluate(theta1.unsqueeze(0), "train")["loss"][0]
        a, b = statistics.median(ours), statistics.median(theirs)
        rows.append(
            (
                f"MLP 64-{'-'.join(map(str, hidden))}-10 (D={obj.D:,}), digits N={n}",
                a,
                b,
                b / a,
                f"{abs(ours_loss[0] - own0):.1e} / {abs(ours_loss[-1] - own1):.1e}",
                f"not evaluated / {abs(peer_loss[-1] - own1):.1e}",
            )
        )
    print(
        f"\n{args.points}-point interpolation, train loss, {args.device}, float32, "
        f"median of {args.repeats}\n"
    )
    print(
        "| model, data | lossatlas (s) | loss-landscapes (s) | ratio | lossatlas "
        "\\|L(α=0)−L(θ0)\\| / \\|L(α=1)−L(θ1)\\| | loss-landscapes, same |"
    )
    print("|---|---|---|---|---|---|")
    for name, a, b, r, e1, e2 in rows:
        print(f"| {name} | {a:.4f} | {b:.4f} | {r:.2f} | {e1} | {e2} |")


if __name__ == "__main__":
    main()
