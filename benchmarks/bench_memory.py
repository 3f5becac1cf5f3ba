"""Peak memory of a sweep does not grow with its grid: 101 × 101 vs 11 × 11.

Run:  python benchmarks/bench_memory.py [--hidden 32] [--points 11 101]

Each grid is a ``hessian-directions`` random-direction loss map (Li et al. 2018 style:
filter-normalised directions, cell = one row of the grid) of the digits MLP, run by
``lossatlas run`` in a fresh process; the peak resident memory of that process
(``ru_maxrss``) is read when it exits. Results go to the store one cell (row) at a
time, so memory should hold one row, not the map: target ≤ 1.2× from 11 × 11 to
101 × 101 (84× more points).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import resource, sys, tomllib
from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
config = parse_config(tomllib.loads(open(sys.argv[1]).read()), source=sys.argv[1])
run_pipeline(config, sys.argv[2], make_registry())
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

CONFIG = """
name = "memory"
seed = 0
dtype = "float32"
[model]
plugin = "mlp"
hidden = [{hidden}]
[dataset]
plugin = "digits"
[[steps]]
name = "map"
probe = "hessian-directions"
points = {points}
span = 1.0
maps = ["random"]
"""


def peak(points: int, hidden: int, tmp: Path) -> tuple[float, float]:
    """Peak RSS (MiB) and seconds of a fresh process running a points × points map."""
    cfg = tmp / f"map{points}.toml"
    cfg.write_text(CONFIG.format(points=points, hidden=hidden))
    store = tmp / f"map{points}.zarr"
    shutil.rmtree(store, ignore_errors=True)
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(cfg), str(store)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    seconds = time.perf_counter() - t0
    return int(out.stdout.strip().splitlines()[-1]) / 1024, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", type=int, nargs=2, default=[11, 101])
    p.add_argument("--hidden", type=int, default=32)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    small, large = args.points
    rows = [(n, *peak(n, args.hidden, tmp)) for n in (small, large)]
    base = rows[0][1]
    print(
        f"\nPeak resident memory of `lossatlas run` (a random-direction loss map of an "
        f"MLP [{args.hidden}] on 1797 digits), ru_maxrss, python {sys.version.split()[0]}\n"
    )
    print("| grid | points | peak RSS (MiB) | ratio to the small grid | seconds |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for n, mib, sec in rows:
        print(f"| {n} × {n} | {n * n:,} | {mib:.0f} | {mib / base:.2f}× | {sec:.1f} |")
    print(f"\n{large} × {large} vs {small} × {small}: {rows[1][1] / base:.2f}× (target ≤ 1.2×)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
