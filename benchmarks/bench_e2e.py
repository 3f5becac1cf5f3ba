"""Whole processes, side by side: what a user times, lossatlas against a peer script.

Each workload is one command per tool, started as a fresh process (``lossatlas run`` of
a config into a new store; the peer's script as a user would write it, saving its
arrays). The two alternate, A B A B …, after one warm-up run each; every figure is the
median over the runs, and the ratio is taken pair by pair (machine drift cancels).
Wall seconds, CPU seconds (user + system) and peak RSS come from the kernel's
accounting of each finished child (``os.wait4``).

Workloads (digits MLP 64-100-100-10, float32, CPU, the 1797 digits split 80/20):

- ``plane``: a 51 × 51 filter-normalised random plane at the initialisation, train and
  validation maps (``hessian-directions`` with ``maps = ["random"]``) vs
  loss-landscapes' ``random_plane(steps=51, normalization="filter")`` on each split;
- ``interpolation``: the 101-point line between two initialisations, both splits
  (``interpolation``) vs ``linear_interpolation(steps=101)`` on each split;
- ``eigen``: the top Hessian eigenpair at the initialisation on the train split
  (``eigenpairs``, tol 1e-5·‖H‖) vs PyHessian's ``eigenvalues(top_n=1)`` at its default
  tol 1e-3, and ``eigen-tight`` against PyHessian at tol 1e-6 (closer to our accuracy);
- ``small``: a 3 × 3 plane vs ``python -c "import torch, xarray, zarr"`` (the start-up
  floor of any run);
- ``help``: ``lossatlas --help`` vs ``python -c "import torch"`` (the CLI's start-up);
- ``units``: the ``plane`` run with units of work sized by the engine's rule vs the same
  run with ``rows_per_cell = 1`` (one row per chunk, as before 0.2): what grouping cheap
  cells saves, as whole processes;
- ``resnet-plane`` (with ``--device cuda``): a 51 × 51 random plane of ResNet-20 on 10k
  CIFAR-10-shaped samples (a generated ``.npy`` file, read by the ``on-disk`` data set)
  vs loss-landscapes' ``random_plane`` on the GPU.

Targets (issue 15): ``plane``, ``interpolation``, ``eigen`` ≤ 1.0× the peer; ``small``
≤ 2.0×; ``help`` ≤ 0.5×. The peers run from ``benchmarks/.peers`` (``bash benchmarks/peers.sh``)::

    python benchmarks/bench_e2e.py [--runs 5] [--only plane,eigen]
    python benchmarks/bench_e2e.py --device cuda --only resnet-plane --runs 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HEAD = """
import sys
import numpy as np
import torch
from torch import nn
from sklearn.datasets import load_digits

X, y = load_digits(return_X_y=True)
X = torch.tensor(X / 16.0, dtype=torch.float32)
y = torch.tensor(y)
order = np.random.default_rng(0).permutation(len(X))
n_val = round(0.2 * len(X))
tr, va = np.sort(order[n_val:]), np.sort(order[:n_val])


def mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10)
    ).eval()
"""

PEERS = {
    "plane": """
import loss_landscapes, loss_landscapes.metrics
model = mlp(0)
maps = {}
for name, idx in (("train", tr), ("validation", va)):
    metric = loss_landscapes.metrics.Loss(nn.CrossEntropyLoss(), X[idx], y[idx])
    torch.manual_seed(1)
    with torch.no_grad():
        maps[name] = loss_landscapes.random_plane(
            model, metric, distance=1.0, steps=51, normalization="filter", deepcopy_model=True
        )
np.savez(sys.argv[1], **maps)
""",
    "interpolation": """
import loss_landscapes, loss_landscapes.metrics
a, b = mlp(0), mlp(1)
lines = {}
for name, idx in (("train", tr), ("validation", va)):
    metric = loss_landscapes.metrics.Loss(nn.CrossEntropyLoss(), X[idx], y[idx])
    with torch.no_grad():
        lines[name] = loss_landscapes.linear_interpolation(
            a, b, metric, steps=101, deepcopy_model=True
        )
np.savez(sys.argv[1], **lines)
""",
    "eigen": """
from pyhessian import hessian
model = mlp(0)
H = hessian(model, nn.CrossEntropyLoss(), data=(X[tr], y[tr]), cuda=False)
values, vectors = H.eigenvalues(top_n=1)
np.savez(sys.argv[1], values=np.asarray(values))
""",
    "resnet-plane": """
import loss_landscapes, loss_landscapes.metrics
sys.path.insert(0, sys.argv[2])
from lossatlas.plugins.models.resnet import ResNet
X = torch.as_tensor(np.load(sys.argv[3])).cuda()
y = torch.as_tensor(np.load(sys.argv[4])).cuda()
torch.manual_seed(0)
model = ResNet((3, 32, 32), 10, depth=20).cuda().eval()


class Loss(loss_landscapes.metrics.Metric):
    def __call__(self, wrapper):
        total = 0.0
        for i in range(0, len(X), 1000):
            total += float(nn.functional.cross_entropy(wrapper.forward(X[i:i + 1000]),
                                                       y[i:i + 1000], reduction="sum"))
        return total / len(X)


with torch.no_grad():
    Z = loss_landscapes.random_plane(model, Loss(), distance=1.0, steps=51,
                                     normalization="filter", deepcopy_model=True)
np.save(sys.argv[1], Z)
""",
    "eigen-tight": """
from pyhessian import hessian
model = mlp(0)
H = hessian(model, nn.CrossEntropyLoss(), data=(X[tr], y[tr]), cuda=False)
values, vectors = H.eigenvalues(top_n=1, tol=1e-6, maxIter=1000)
np.savez(sys.argv[1], values=np.asarray(values))
""",
}

CONFIG_HEAD = """
seed = 0
dtype = "float32"
[model]
plugin = "mlp"
hidden = [100, 100]
[dataset]
plugin = "digits"
"""

CONFIGS = {
    "plane": """
[[steps]]
name = "plane"
probe = "hessian-directions"
maps = ["random"]
points = 51
span = 1.0
""",
    "interpolation": """
[[steps]]
name = "line"
probe = "interpolation"
pairs = [["init", "init:1"]]
alpha_min = 0.0
alpha_max = 1.0
points = 101
zoom_points = 0
""",
    "eigen": """
[[steps]]
name = "eig"
probe = "eigenpairs"
k = 1
""",
    "small": """
[[steps]]
name = "plane"
probe = "hessian-directions"
maps = ["random"]
points = 3
""",
}
CONFIGS["eigen-tight"] = CONFIGS["eigen"]
CONFIGS["units"] = CONFIGS["plane"]
RESNET_CONFIG = """
seed = 0
device = "cuda"
batch_size = 1000
[model]
plugin = "resnet"
depth = 20
[dataset]
plugin = "on-disk"
inputs = "{x}"
targets = "{y}"
validation_inputs = "{x}"
validation_targets = "{y}"
[[steps]]
name = "plane"
probe = "hessian-directions"
maps = ["random"]
points = 51
span = 1.0
"""

TARGETS = {
    "units": 1.0,
    "resnet-plane": 1.0,
    "plane": 1.0,
    "interpolation": 1.0,
    "eigen": 1.0,
    "eigen-tight": 1.0,
    "small": 2.0,
    "help": 0.5,
}


#: the children's environment (``--threads`` sets OMP_NUM_THREADS for both tools)
ENV = dict(os.environ)


def timed(cmd: list[str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one run of ``cmd`` to completion."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def commands(
    work: str, tmp: Path, peer_python: str, counter: list[int]
) -> tuple[list[str], list[str]]:
    """(lossatlas command, peer command); each call gets fresh output paths."""
    counter[0] += 1
    n = counter[0]
    cfg = tmp / f"{work}.toml"
    x, y = tmp / "x.npy", tmp / "y.npy"
    if work == "resnet-plane" and not x.exists():
        import numpy as np

        g = np.random.default_rng(0)
        np.save(x, g.standard_normal((10_000, 3, 32, 32), dtype=np.float32))
        np.save(y, g.integers(0, 10, 10_000))
    if work == "help":
        lossatlas = str(Path(sys.executable).with_name("lossatlas"))
        return [lossatlas, "--help"], [sys.executable, "-c", "import torch"]
    if not cfg.exists():
        body = (
            RESNET_CONFIG.format(x=x, y=y)
            if work == "resnet-plane"
            else CONFIG_HEAD + CONFIGS[work]
        )
        cfg.write_text(f'name = "{work}"\n' + body)
    ours = [
        str(Path(sys.executable).with_name("lossatlas")),
        "run",
        str(cfg),
        "--store",
        str(tmp / f"s{n}.zarr"),
        "-q",
    ]
    if work == "small":
        peer = [sys.executable, "-c", "import torch, xarray, zarr"]
    elif work == "units":
        rows1 = tmp / "units-rows1.toml"
        if not rows1.exists():
            rows1.write_text('name = "units"\nrows_per_cell = 1\n' + CONFIG_HEAD + CONFIGS[work])
        peer = [*ours[:2], str(rows1), "--store", str(tmp / f"r{n}.zarr"), "-q"]
    else:
        script = tmp / f"peer_{work}.py"
        if not script.exists():
            script.write_text(textwrap.dedent(HEAD) + textwrap.dedent(PEERS[work]))
        peer = [peer_python, str(script), str(tmp / f"peer{n}.npz")]
        if work == "resnet-plane":
            peer += [str(ROOT), str(x), str(y)]
    return ours, peer


def bench(work: str, runs: int, peer_python: str) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix=f"e2e-{work}-"))
    counter = [0]
    try:
        a, b = commands(work, tmp, peer_python, counter)
        timed(a), timed(b)  # warm-up: caches, .pyc files
        rows: list[tuple[tuple[float, float, float], tuple[float, float, float]]] = []
        for _ in range(runs):
            a, b = commands(work, tmp, peer_python, counter)
            rows.append((timed(a), timed(b)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median
    return {
        "ours_wall": med(r[0][0] for r in rows),
        "peer_wall": med(r[1][0] for r in rows),
        "ratio_wall": med(r[0][0] / r[1][0] for r in rows),
        "ratio_cpu": med(r[0][1] / r[1][1] for r in rows),
        "ours_mib": med(r[0][2] for r in rows),
        "peer_mib": med(r[1][2] for r in rows),
        "min_ratio": min(r[0][0] / r[1][0] for r in rows),
        "max_ratio": max(r[0][0] / r[1][0] for r in rows),
    }


PEER_NAME = {
    "plane": "loss-landscapes `random_plane` ×2",
    "interpolation": "loss-landscapes `linear_interpolation` ×2",
    "eigen": "PyHessian `eigenvalues(top_n=1)`, tol 1e-3",
    "eigen-tight": "PyHessian `eigenvalues(top_n=1)`, tol 1e-6",
    "small": '`python -c "import torch, xarray, zarr"`',
    "help": '`python -c "import torch"`',
    "resnet-plane": "loss-landscapes `random_plane` on the GPU",
    "units": "lossatlas, `rows_per_cell = 1`",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--only", default="")
    p.add_argument("--device", default="cpu", help="cuda: the resnet-plane workload")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="OMP_NUM_THREADS for both tools (0: their default); 1 is the steadiest on a "
        "machine shared with other work",
    )
    default_peer = ROOT / "benchmarks" / ".peers" / "bin" / "python"
    p.add_argument("--peer-python", default=str(default_peer))
    args = p.parse_args()
    default = (
        "resnet-plane"
        if args.device == "cuda"
        else "help,small,plane,interpolation,eigen,eigen-tight"
    )
    works = [w for w in (args.only or default).split(",") if w]
    if args.threads:
        ENV.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    threads = args.threads or "default"
    print(
        f"{os.cpu_count()} cores, threads per process: {threads}, load average before: "
        f"{' '.join(load)}; {args.runs} pairs"
    )
    print()
    print(
        "| workload | lossatlas wall (s) | peer | peer wall (s) | wall ratio (range) | "
        "CPU ratio | peak MiB ours / peer | target | met |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---|")
    for work in works:
        r = bench(work, args.runs, args.peer_python)
        target = TARGETS[work]
        met = "yes" if r["ratio_wall"] <= target else "no"
        print(
            f"| {work} | {r['ours_wall']:.2f} | {PEER_NAME[work]} | {r['peer_wall']:.2f} | "
            f"{r['ratio_wall']:.2f} ({r['min_ratio']:.2f}–{r['max_ratio']:.2f}) | "
            f"{r['ratio_cpu']:.2f} | {r['ours_mib']:.0f} / {r['peer_mib']:.0f} | "
            f"≤ {target:.1f} | {met} |",
            flush=True,
        )
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"\nload average after: {' '.join(load)}")


if __name__ == "__main__":
    main()
