"""Time per connected pair of Dynamic String Sampling on the quadratic regression task.

Freeman & Bruna (2017) §4.1: a 1-4-4-1 sigmoid MLP fitting y = x² on [-1, 1]. Pairs of
random models are trained to 0.9·L0 once (not timed), then connected at L0 by

- ``greedy``: one bead at a time (§3.1),
- ``breadth-first``: every failing segment gets a bead per round, and the round's beads
  train together as one vmapped ensemble (Appendix A),

on the CPU and, where torch sees one, on the GPU. Prints a markdown table with the
median seconds per connected pair and the ratio to greedy on the CPU.

    python benchmarks/bench_dss.py [--pairs 4] [--thresholds 0.01 0.003 0.001]

No peer is run: the only public DSS implementation is the authors' 2017 TensorFlow
code, which needs TensorFlow 1.x; the comparison is between lossatlas's two variants
and devices.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lossatlas.engine import Objective
from lossatlas.plugins.datasets.formula import Formula, FormulaOptions
from lossatlas.plugins.models.mlp import MLPModel, MLPOptions
from lossatlas.plugins.probes.dss_string import StringConfig, run_string, train_beads


def endpoints(obj: Objective, data, seeds: tuple[int, int], level: float) -> torch.Tensor:
    x = []
    for s in seeds:
        m = MLPModel().build(MLPOptions(hidden=[4, 4], activation="sigmoid"), data, s)
        x.append(torch.cat([p.detach().reshape(-1) for p in m.parameters()]))
    X = torch.stack(x).to(obj.device, obj.dtype)
    cfg = StringConfig(threshold=level, alpha=1.0, lr=0.02, bead_steps=20_000)
    E, reached, _, _ = train_beads(obj, X, None, None, cfg, seed=0)
    return E if reached.all() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.01, 0.003, 0.001])
    ap.add_argument("--dtype", default="float64")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    data = Formula().load(FormulaOptions(preset="x-squared"), 0)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    base: dict[float, float] = {}
    for device in devices:
        model = MLPModel().build(MLPOptions(hidden=[4, 4], activation="sigmoid"), data, 0)
        obj = Objective(model, data, device=device, dtype=dtype)
        for L0 in args.thresholds:
            pairs = []
            for p in range(args.pairs):
                E = endpoints(obj, data, (2 * p + 1, 2 * p + 2), 0.9 * L0)
                if E is not None:
                    pairs.append(E)
            for strategy in ("greedy", "breadth-first"):
                cfg = StringConfig(
                    threshold=L0,
                    lr=0.02,
                    bead_steps=5000,
                    max_beads=32,
                    max_depth=10,
                    strategy=strategy,
                )
                times, beads, connected = [], [], 0
                for i, E in enumerate(pairs):
                    if device == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    st = run_string(obj, E[0], E[1], cfg, seed=i)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    dt = time.perf_counter() - t0
                    if st.status == 0:
                        connected += 1
                        times.append(dt)
                        beads.append(st.inserted)
                med = statistics.median(times) if times else float("nan")
                if device == "cpu" and strategy == "greedy":
                    base[L0] = med
                rows.append(
                    (
                        device,
                        L0,
                        strategy,
                        connected,
                        len(pairs),
                        statistics.mean(beads) if beads else float("nan"),
                        med,
                        med / base[L0] if base.get(L0) else float("nan"),
                    )
                )
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(
        f"\nDSS, quadratic task (1-4-4-1 sigmoid, {args.dtype}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads, {name}\n"
    )
    print(
        "| device | L0 | variant | connected | mean beads | s / connected pair "
        "| ratio to greedy CPU |"
    )
    print("|---|---|---|---|---|---|---|")
    for dev, L0, strat, c, n, b, med, ratio in rows:
        print(f"| {dev} | {L0:g} | {strat} | {c}/{n} | {b:.1f} | {med:.3f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
