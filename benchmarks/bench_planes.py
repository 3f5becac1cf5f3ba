"""A 25 × 25 loss plane on the digits MLP: lossatlas vs loss-landscapes' ``random_plane``.

Side by side in one run, same model (digits MLP 64-100-100-10, float32, CPU), same
training split, same number of grid points. lossatlas evaluates the plane the way the
``hessian-directions`` probe does: one row of 25 points per call of
:meth:`Objective.evaluate` (one vmapped forward pass per row). loss-landscapes copies
each point's weights into the module and runs one forward pass per point. (Its
``normalization="filter"`` divides by zero on this model — a direction filter of norm 0
for a 1-element bias filter — so the peer runs with ``"layer"``; normalisation costs
microseconds either way, the 625 evaluations are what is timed.)

loss-landscapes is never a project dependency; ``bash benchmarks/peers.sh`` installs it
in its own venv, then (from the repository root)::

    benchmarks/.peers/bin/python benchmarks/bench_planes.py

(the peer runs in a subprocess of ``--peer-python``, default: this interpreter when it
imports loss_landscapes, else ``benchmarks/.peers/bin/python``).

Prints a markdown table with times and the ratio (peer / lossatlas; > 1: lossatlas faster).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

PEER = textwrap.dedent(
    """
    import json, sys, time
    import torch
    import loss_landscapes
    import loss_landscapes.metrics
    torch.set_num_threads(int(sys.argv[3]))
    blob = torch.load(sys.argv[1], weights_only=True)
    nn = torch.nn
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 100),
                          nn.ReLU(), nn.Linear(100, 10))
    model.load_state_dict(blob["state"])
    model.eval()
    metric = loss_landscapes.metrics.Loss(torch.nn.CrossEntropyLoss(), blob["X"], blob["y"])
    times = []
    for _ in range(int(sys.argv[2])):
        t0 = time.perf_counter()
        with torch.no_grad():
            Z = loss_landscapes.random_plane(model, metric, distance=1.0, steps=25,
                                             normalization="layer", deepcopy_model=True)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times, "shape": list(Z.shape)}))
    """
)


def ours(points: int, repeats: int, rows: int = 1) -> tuple[list[float], dict]:
    """Time a centred plane, ``rows`` grid rows per :meth:`Objective.evaluate` call
    (1 = one cell of the hessian-directions probe)."""
    from lossatlas.engine import Objective, make_registry, parse_options
    from lossatlas.plugins.subspaces.directions import (
        centred_axis,
        normalized_directions,
        plane_grid,
    )

    reg = make_registry()
    ds_plugin = reg.get("dataset", "digits")
    data = ds_plugin.load(parse_options(ds_plugin.Options, {}, "digits"), 0)
    mp = reg.get("model", "mlp")
    model = mp.build(parse_options(mp.Options, {"hidden": [100, 100]}, "mlp"), data, 0)
    obj = Objective(model, data, dtype=torch.float32)
    x = obj.x0
    axis = centred_axis(0.5, points)
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        V, _ = normalized_directions(x, obj.layout, 2, torch.Generator().manual_seed(r))
        V = V.to(x.dtype)
        Z = np.concatenate(
            [
                obj.evaluate(
                    torch.cat([plane_grid(x, V, a, axis) for a in axis[i : i + rows]]), "train"
                )["loss"]
                for i in range(0, points, rows)
            ]
        ).reshape(points, points)
        times.append(time.perf_counter() - t0)
    assert Z.shape == (points, points) and Z[points // 2, points // 2] == obj.evaluate(x)["loss"][0]
    split = obj.splits["train"]
    return times, {
        "state": model.float().state_dict(),
        "X": split.inputs.float(),
        "y": split.targets,
        "D": obj.D,
        "n": len(split),
    }


def default_peer_python() -> str:
    """This interpreter if it has loss-landscapes, else the venv of benchmarks/peers.sh."""
    import importlib.util

    if importlib.util.find_spec("loss_landscapes") is not None:
        return sys.executable
    return str(Path(__file__).resolve().parent / ".peers" / "bin" / "python")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-python", default=default_peer_python())
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    points = 25
    ours(points, 1)  # warm-up
    t_ours, blob = ours(points, args.repeats)
    t_whole, _ = ours(points, args.repeats, rows=points)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "blob.pt"
        torch.save({k: blob[k] for k in ("state", "X", "y")}, path)
        proc = subprocess.run(
            [args.peer_python, "-c", PEER, str(path), str(args.repeats + 1), str(args.threads)],
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        sys.exit(f"loss-landscapes run failed ({args.peer_python}):\n{proc.stderr[-2000:]}")
    peer = json.loads(proc.stdout.strip().splitlines()[-1])
    t_peer = peer["times"][1:]  # first call is warm-up
    mo, mp = float(np.median(t_ours)), float(np.median(t_peer))
    print(
        f"digits MLP 64-100-100-10 (D = {blob['D']:,}), {blob['n']} training samples, "
        f"{points} × {points} plane, float32, CPU, {args.threads} threads, "
        f"median of {args.repeats}\n"
    )
    print("| implementation | seconds per plane | points / s | time ÷ lossatlas (per row) time |")
    print("|---|---:|---:|---:|")
    print(f"| lossatlas (rows batched with vmap) | {mo:.3f} | {points**2 / mo:,.0f} | 1.00 |")
    mw = float(np.median(t_whole))
    print(
        f"| lossatlas, whole plane per call (not the probe's cell layout) | {mw:.3f} | "
        f"{points**2 / mw:,.0f} | {mw / mo:.2f} |"
    )
    print(
        f"| loss-landscapes `random_plane` (steps = 25) | {mp:.3f} | {points**2 / mp:,.0f} "
        f"| {mp / mo:.2f} |"
    )


if __name__ == "__main__":
    main()
