"""Scale-out: a Goldilocks-style sweep in-process vs Dask with 1 and 2 workers.

Run:  python benchmarks/bench_dask.py [--radii 8] [--samples 2] [--dims 10 40]
      python benchmarks/bench_dask.py --soak 20     # the long fault test (below)

The sweep is the ``goldilocks`` probe (seed 000: Tr(H)/‖H‖ on random d-dim hyperplanes
over radius × d × sample), on the digits MLP; each cell forms a d×d subspace Hessian
from d batched HVPs. The Dask runs use a loopback LocalCluster of N single-threaded
worker processes started (and warmed: torch imported) before the clock starts, so the
table compares the sweeps, not process start-up; every run uses one torch thread per
process, the in-process run included. The Dask results are checked equal to the
in-process ones, bit for bit. Target: ≥ 1.7× from 1 to 2 workers on 2 cores.

``--soak N``: SIGKILL ``lossatlas run`` N times at random moments, resume, and compare
every variable with an uninterrupted run bit for bit (tests/engine/test_faults.py does
this 3 times in CI).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def toml(data: dict[str, Any]) -> str:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from conftest import to_toml

    return to_toml(data)


def config(
    args: argparse.Namespace, executor: str = "local", options: dict[str, Any] | None = None
) -> Any:
    from lossatlas.engine.config import parse_config

    data = {
        "name": "goldilocks",
        "seed": 0,
        "dtype": "float32",
        "executor": executor,
        "executor_options": options or {},
        "model": {"plugin": "mlp", "hidden": [args.hidden]},
        "dataset": {"plugin": "digits", "limit": args.limit},
        "steps": [
            {
                "name": "g",
                "probe": "goldilocks",
                "radii": args.radii,
                "samples": args.samples,
                "dims": args.dims,
            }
        ],
    }
    return parse_config(tomllib.loads(toml(data)), source="bench_dask")


def timed_run(cfg: Any, store: Path) -> tuple[float, float]:
    """Seconds of the whole run, and of its cells (first cell sent to last one back)."""
    from lossatlas.engine import make_registry
    from lossatlas.engine.runner import Progress, run_pipeline

    class Clock(Progress):
        start = end = 0.0

        def step_started(self, step: str, total: int, pending: int) -> None:
            self.start = time.perf_counter()

        def cell_done(self, step: str, status: int) -> None:
            self.end = time.perf_counter()

    shutil.rmtree(store, ignore_errors=True)
    clock = Clock()
    t0 = time.perf_counter()
    run_pipeline(cfg, str(store), make_registry(), progress=clock)
    return time.perf_counter() - t0, clock.end - clock.start


def same(a: Path, b: Path) -> bool:
    from lossatlas.engine.store import Store

    x, y = Store(a).open_step("goldilocks", "g").load(), Store(b).open_step("goldilocks", "g")
    y = y.load()
    return all(
        np.asarray(x[v].values).tobytes() == np.asarray(y[v].values).tobytes() for v in y.variables
    )


def _warm() -> int:
    """On each worker before the clock: import what a cell needs (as the driver has)."""
    import sklearn.datasets  # noqa: F401  (the digits)
    import xarray  # noqa: F401
    import zarr  # noqa: F401

    import lossatlas.engine.runner  # noqa: F401
    from lossatlas.engine import DataBundle, Objective, Split, make_registry

    make_registry()
    # torch.func imports much on its first HVP (seconds): pay it here, not in a cell.
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g))
    obj = Objective(
        torch.nn.Sequential(torch.nn.Linear(4, 3)),
        DataBundle(split, split, "classification", 3),
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    obj.hvp_many(obj.x0, torch.randn(2, obj.D, generator=g))
    obj.evaluate(obj.x0.unsqueeze(0), "train")
    return 0


def _burn(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def _two_process_ceiling(n: int = 10_000_000) -> float:
    """Speed-up of 2 processes over 1 on pure arithmetic: what 2 workers can reach here."""
    import multiprocessing as mp

    seconds = []
    for procs in (1, 2):
        with mp.get_context("spawn").Pool(procs) as pool:
            pool.map(_burn, [1000] * procs)  # start-up out of the clock
            t0 = time.perf_counter()
            pool.map(_burn, [n, n], chunksize=1)
            seconds.append(time.perf_counter() - t0)
    return seconds[0] / seconds[1]


def bench(args: argparse.Namespace) -> None:
    import distributed

    from lossatlas.plugins.executors.dask import local_cluster

    torch.set_num_threads(1)
    _warm()  # the driver too, for the in-process run
    tmp = Path(tempfile.mkdtemp(prefix="bench_dask_"))
    rows = []
    local = timed_run(config(args), tmp / "local.zarr")
    cells = args.radii * len(args.dims) * args.samples
    rows.append(("in-process (local executor)", local, True))
    times: dict[int, tuple[float, float]] = {}
    for n in (1, 2):
        with (
            local_cluster(n) as cluster,
            distributed.Client(cluster, set_as_default=False) as client,
        ):
            client.run(_warm)
            cfg = config(args, "dask", {"address": cluster.scheduler_address})
            store = tmp / f"dask{n}.zarr"
            times[n] = timed_run(cfg, store)
            rows.append(
                (
                    f"dask, {n} worker{'s' if n > 1 else ''}",
                    times[n],
                    same(store, tmp / "local.zarr"),
                )
            )
    ceiling = _two_process_ceiling()
    print(
        f"\nGoldilocks sweep: {cells} cells (radii {args.radii} × dims {args.dims} × "
        f"samples {args.samples}), MLP [{args.hidden}] on {args.limit or 1797} digits, "
        f"{os.cpu_count()} cores, torch {torch.__version__}\n"
    )
    print(
        "| run | whole run (s) | cells (s) | cells: speed-up vs dask 1 worker | "
        "whole run: vs in-process | equal to in-process |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, (whole, sweep), ok in rows:
        print(
            f"| {name} | {whole:.2f} | {sweep:.2f} | {times[1][1] / sweep:.2f}× | "
            f"{local[0] / whole:.2f}× | {'bit for bit' if ok else 'NO'} |"
        )
    print(
        f"\n1 → 2 workers, cells: {times[1][1] / times[2][1]:.2f}×, whole run: "
        f"{times[1][0] / times[2][0]:.2f}× (target ≥ 1.7×). Whole run = validation, "
        "plan, template and finalisation in the driver + the cells."
    )
    print(
        f"This machine's own ceiling: 2 processes of pure Python arithmetic run "
        f"{ceiling:.2f}× faster than 1 (the same work, one after the other)."
    )
    shutil.rmtree(tmp, ignore_errors=True)


def soak(n: int) -> None:
    """Kill ``lossatlas run`` ``n`` times at random moments, resume, compare bit for bit."""
    sys.path.insert(0, str(HERE.parent / "tests" / "engine"))
    sys.path.insert(0, str(HERE.parent / "tests"))
    from conftest import cli_command, to_toml
    from test_faults import SLOW, assert_same_store, reference

    tmp = Path(tempfile.mkdtemp(prefix="soak_"))
    want, seconds = reference(tmp / "reference.zarr", SLOW, to_toml)
    cfg = tmp / "slow.toml"
    cfg.write_text(to_toml(SLOW))
    store = tmp / "killed.zarr"
    rng = random.Random()
    kills = 0
    while kills < n:
        if store.exists():  # start over once a run got through
            from lossatlas.engine.store import Store

            if Store(store).run_attrs("slow").get("status") == "complete":
                assert_same_store(str(store), want, "slow", ["line", "line2"])
                shutil.rmtree(store)
        proc = subprocess.Popen(
            cli_command("run", cfg, "--store", store, "-q"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0, 3.0 + 1.2 * seconds))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), proc.returncode
        print(f"kill {kills}/{n}", flush=True)
    done = subprocess.run(
        cli_command("run", cfg, "--store", store, "-q"), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert_same_store(str(store), want, "slow", ["line", "line2"])
    print(f"{n} kills, resumed: every variable equal to an uninterrupted run, bit for bit")
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--radii", type=int, default=8)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--dims", type=int, nargs="+", default=[10, 40])
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--soak", type=int, default=0, help="kill/resume cycles instead")
    args = p.parse_args()
    if args.soak:
        soak(args.soak)
    else:
        bench(args)


if __name__ == "__main__":
    main()
