"""Start a Dask cluster on SLURM with dask-jobqueue and print its scheduler address.

    pip install dask-jobqueue          # not a lossatlas dependency
    python examples/slurm/cluster.py --jobs 4 --gpus 1 &
    lossatlas run examples/slurm/resnet-plane.toml --store /shared/atlas.zarr \
        --executor dask --address "$(cat scheduler-address.txt)"

Each SLURM job is one Dask worker: one process, one thread, and (with --gpus 1) one
GPU, advertised as the worker resource GPU=1 so that lossatlas runs one task per GPU
(executor option resources = {GPU = 1}). The cluster lives as long as this script;
stop it with Ctrl-C (its jobs are cancelled).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=4, help="SLURM jobs = Dask workers")
    p.add_argument("--gpus", type=int, default=0, help="GPUs per job (0 or 1)")
    p.add_argument("--queue", default=None, help="SLURM partition")
    p.add_argument("--account", default=None)
    p.add_argument("--memory", default="16GB")
    p.add_argument("--walltime", default="04:00:00")
    p.add_argument("--venv", default=None, help="a venv to activate in each job")
    args = p.parse_args()

    from dask_jobqueue import SLURMCluster

    prologue = [f"source {args.venv}/bin/activate"] if args.venv else []
    extra = ["--resources GPU=1"] if args.gpus else []
    cluster = SLURMCluster(
        queue=args.queue,
        account=args.account,
        cores=1,  # one thread per worker: the cells use torch's threads themselves
        processes=1,
        memory=args.memory,
        walltime=args.walltime,
        job_extra_directives=[f"--gres=gpu:{args.gpus}"] if args.gpus else [],
        worker_extra_args=extra,
        job_script_prologue=prologue,
    )
    cluster.scale(jobs=args.jobs)
    Path("scheduler-address.txt").write_text(cluster.scheduler_address)
    print(cluster.job_script())
    print(f"scheduler: {cluster.scheduler_address} (also in scheduler-address.txt)")
    try:
        while True:
            time.sleep(60)
    except KeyboardInterrupt:
        cluster.close()


if __name__ == "__main__":
    main()
