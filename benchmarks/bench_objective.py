"""Loss at many points: the objective's batched evaluation vs a per-point loop.

Side by side in one run, on the digits MLP 64-100-100-10 (the 1438-sample train split):

1. ``Objective.evaluate`` on the 625 points of a 25 × 25 grid (vmapped, chunked);
2. the usual loop: for each point, copy the weights into the module
   (``vector_to_parameters``) and run a forward pass with the loss;
3. the FLOP limit: the same forward matmuls as plain ``mm``/``bmm`` calls of the same
   shapes (no bias, activation or loss), i.e. the fastest the matrix work can go here;
   and a strict limit that lets each layer take its fastest layout (see
   :func:`matmul_floors`).

Reports points/second and the ratios; then the memory evaluation adds on top of the
points themselves (peak resident-memory growth of a fresh process) for 625 vs 10,000
points, to show that it does not grow with the number of points.

The guard of the fast path (0.2: the structural rule and the numerical confirmation
at build time) is timed too: ``Objective.evaluate`` as built (confirmed fast path) vs
the same ``MLPFastPath`` called directly without the objective around it, and the
time the confirmation adds to building the objective.

With ``--baseline-ref REF`` (a git commit whose objective is the single file
``engine/objective.py``, e.g. lossatlas 0.1's ``c49d8da``) that code's
``Objective.evaluate`` is timed side by side with today's on the same points.

Run:  python benchmarks/bench_objective.py [--device cuda] [--repeat 7] [--baseline-ref REF]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable

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


def matmul_floors(obj: Objective, B: int, chunk: int, device: str) -> dict[str, Callable]:
    """The forward matmuls alone (no bias, activation or loss), as plain calls.

    ``same shapes``: h·Wᵀ for every layer, the faster of one ``mm`` per point and
    layer or one contiguous ``bmm`` per chunk and layer (the issue's FLOP limit).
    Per layer also W·hᵀ (the same product, transposed), per point and per chunk:
    ``strict`` takes each layer's fastest of the four, a lower bound on the time of
    the matrix work here, for a forward that lays out each layer as it likes (the
    fast path computes its last layer as W·hᵀ).
    """
    s = obj.splits["train"]
    n = s.inputs.shape[0]
    dev, dt = obj.device, obj.dtype
    fns: dict[str, Callable] = {}
    for layer, (i, o) in enumerate(itertools.pairwise(WIDTHS)):
        h = torch.randn(n, i, device=dev, dtype=dt)
        W = torch.randn(o, i, device=dev, dtype=dt)
        hb = torch.randn(chunk, n, i, device=dev, dtype=dt)
        Wb = torch.randn(chunk, i, o, device=dev, dtype=dt)
        Wt = torch.randn(chunk, o, i, device=dev, dtype=dt)

        def mm(h=h, W=W) -> None:
            for _ in range(B):
                h @ W.T

        def mm_t(h=h, W=W) -> None:
            for _ in range(B):
                W @ h.T

        def bmm(hb=hb, Wb=Wb) -> None:
            for _ in range(0, B, chunk):
                torch.bmm(hb, Wb)

        def bmm_t(hb=hb, Wt=Wt) -> None:
            for _ in range(0, B, chunk):
                torch.bmm(Wt, hb.transpose(1, 2))

        for name, fn in (("mm", mm), ("mm_t", mm_t), ("bmm", bmm), ("bmm_t", bmm_t)):
            fns[f"{layer}:{name}"] = fn
    return fns


def floors(t: dict[str, float]) -> tuple[float, float]:
    """(same shapes, strict) floor seconds from the best time of each layer's variant."""
    layers = sorted({k.split(":")[0] for k in t})
    same = min(sum(t[f"{layer}:{v}"] for layer in layers) for v in ("mm", "bmm"))
    strict = sum(min(t[k] for k in t if k.startswith(f"{layer}:")) for layer in layers)
    return same, strict


def peak_rss(points: int, device: str) -> float:
    """MiB that one ``evaluate`` of ``points`` points adds at its peak to the resident
    memory of a fresh process that already holds the points (Linux: the peak is reset
    through /proc/self/clear_refs just before the call and read from VmHWM)."""
    code = f"""
import sys
sys.path.insert(0, "benchmarks")
from bench_objective import setup
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
obj, X = setup({device!r})
X = X.repeat({points} // 625 + 1, 1)[:{points}].clone()
open("/proc/self/clear_refs", "w").write("5")
now = status("VmRSS")
obj.evaluate(X)
print(status("VmHWM") - now)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--baseline-ref", default="", help="git ref of an older objective.py")
    args = ap.parse_args()
    obj, X = setup(args.device)
    B = X.shape[0]
    n = len(obj.splits["train"])
    chunk = min(B, obj.point_chunk())
    flops = 2 * B * n * sum(WIDTHS[i] * WIDTHS[i + 1] for i in range(len(WIDTHS) - 1))

    # Side by side: each round times every method once, and each keeps its best
    # round, so that a noisy spell of a shared machine hits all of them alike.
    methods: dict[str, Callable] = {
        "ours": lambda: obj.evaluate(X),
        "loop": lambda: loop(obj, X),
        **matmul_floors(obj, B, chunk, args.device),
    }
    best = {k: float("inf") for k in methods}
    for _ in range(args.repeat):
        for k, fn in methods.items():
            best[k] = min(best[k], best_of(fn, 1, args.device))
    ours, base = best.pop("ours"), best.pop("loop")
    floor, strict = floors(best)
    check = obj.evaluate(X[:5])["loss"]
    ref = loop(obj, X[:5]).numpy()
    assert abs(check - ref).max() < 1e-4, "batched and looped losses disagree"
    rss = {p: peak_rss(p, args.device) for p in (625, 10_000)}
    guard = guard_rows(obj, X, max(15, 2 * args.repeat + 1), args.device)

    rows = [
        ("lossatlas `Objective.evaluate` (batched, chunked)", ours),
        ("per-point loop (`vector_to_parameters` + forward)", base),
        ("the forward matmuls alone, h·Wᵀ, best of mm/bmm (FLOP floor)", floor),
        ("the forward matmuls alone, each layer's fastest layout (strict floor)", strict),
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
    print(f"- fraction of the strict floor's rate: **{strict / ours:.2f}×**")
    print(
        f"- memory evaluate() adds on top of the points themselves (peak RSS growth): "
        f"{rss[625]:.0f} MiB for 625 points, {rss[10_000]:.0f} MiB for 10,000 points "
        "(bounded by the chunk, not by the number of points)"
    )
    if args.baseline_ref:
        baseline_rows(obj, X, args.baseline_ref, max(15, 2 * args.repeat + 1), args.device)
    print("\n### The fast path's guard\n")
    print("| what | seconds | ratio |")
    print("|---|---:|---:|")
    for name, t, ratio in guard:
        print(f"| {name} | {t:.4f} | {ratio} |")
    print(
        json.dumps(
            {"ours_s": ours, "loop_s": base, "floor_s": floor, "strict_s": strict, "rss": rss}
        )
    )


def baseline_rows(obj: Objective, X: torch.Tensor, ref: str, repeat: int, device: str) -> None:
    """Today's ``evaluate`` vs the one of ``engine/objective.py`` at git ``ref``, on the same
    model, data and points, rounds interleaved, best of ``repeat``."""
    import importlib.util
    import re
    import tempfile
    from pathlib import Path

    src = subprocess.run(
        ["git", "show", f"{ref}:engine/objective.py"], capture_output=True, text=True, check=True
    ).stdout
    src = re.sub(r"from \.(components|errors) import", r"from lossatlas.engine.\1 import", src)
    path = Path(tempfile.mkdtemp()) / "baseline_objective.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("baseline_objective", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_objective"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    data = Digits().load(DigitsOptions(), seed=0)
    old = module.Objective(obj.model, data, device=device)
    diff = float(abs(old.evaluate(X)["loss"] - obj.evaluate(X)["loss"]).max())
    best = {"old": float("inf"), "new": float("inf")}
    for _ in range(repeat):
        best["old"] = min(best["old"], best_of(lambda: old.evaluate(X), 1, device))
        best["new"] = min(best["new"], best_of(lambda: obj.evaluate(X), 1, device))
    print(f"\n### Today's evaluate vs {ref}'s (the fast path before the guard)\n")
    print("| code | seconds | ratio |")
    print("|---|---:|---:|")
    print(f"| `Objective.evaluate` at {ref} | {best['old']:.4f} | 1.00 |")
    print(f"| `Objective.evaluate` today | {best['new']:.4f} | {best['new'] / best['old']:.2f} |")
    print(f"\nlargest difference of the 625 losses: {diff:.1e}")


def guard_rows(
    obj: Objective, X: torch.Tensor, repeat: int, device: str
) -> list[tuple[str, float, str]]:
    """evaluate() through the confirmed fast path vs the bare fast path, and the build
    time of the objective with and without the confirmation (side by side, best of
    ``repeat`` rounds)."""
    import copy

    import lossatlas.engine.objective.objective as core

    assert obj.fast_path is not None, obj.evaluation_path
    fast = obj.fast_path
    inputs, targets = obj._split_tensors("train")
    chunk = obj.point_chunk()
    n = len(obj.splits["train"])
    data = Digits().load(DigitsOptions(), seed=0)
    model = copy.deepcopy(obj.model)

    def build(check: bool) -> None:
        if check:
            Objective(copy.deepcopy(model), data, device=device)
            return
        saved = core.confirm
        core.confirm = lambda *a, **k: (True, 0.0)  # the structural rule alone
        try:
            Objective(copy.deepcopy(model), data, device=device)
        finally:
            core.confirm = saved

    best: dict[str, float] = {}
    # Evaluations first, then builds: a build allocates (the data, a model copy), which
    # would time the page faults of the next evaluation, not the evaluation.
    for group in (
        {
            "evaluate": lambda: obj.evaluate(X),
            "bare": lambda: fast.evaluate(X, inputs, targets, chunk, True)[0].div_(n),
        },
        {"build": lambda: build(True), "build_nocheck": lambda: build(False)},
    ):
        for k in group:
            best[k] = float("inf")
        for _ in range(repeat):
            for k, fn in group.items():
                best[k] = min(best[k], best_of(fn, 1, device))
    return [
        ("`Objective.evaluate`, 625 points (the confirmed fast path)", best["evaluate"], "1.00"),
        (
            "the same `MLPFastPath.evaluate` called bare (no guard, no objective)",
            best["bare"],
            f"{best['bare'] / best['evaluate']:.2f}",
        ),
        ("building the objective, with the confirmation", best["build"], "1.00"),
        (
            "building the objective, confirmation skipped",
            best["build_nocheck"],
            f"{best['build_nocheck'] / best['build']:.2f}",
        ),
    ]


if __name__ == "__main__":
    main()
