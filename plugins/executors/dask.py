"""The Dask executor: the cells of a sweep as tasks on a ``dask.distributed`` cluster.

``--executor dask`` starts a ``LocalCluster`` on this machine (loopback only, one
process per worker, one thread per worker, torch's threads set to match) once per
pipeline (:meth:`DaskExecutor.session`: every step's cells go to the same cluster) and
closes it after the last step; ``--executor dask -E address=tcp://HOST:PORT`` sends the
cells to a cluster that is already running (see docs/scale-out.md).

Nothing but strings travels: a task is a :class:`~lossatlas.engine.sweep.CellJob`
(store path, config JSON, step name, the in-process plugins by import path or by value)
and a block of cell indices. The worker rebuilds
the model, the data and the probe from the config (once per worker, then cached),
computes each cell with the cell's own seed, writes it into the chunks it alone owns and
sets its ``cell_status``. Writing is idempotent, so a task that Dask runs again after a
worker died writes the same bytes again, and the numbers equal an in-process run's.
Cost: one task per ``block`` cells; a worker builds each step's context once.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from lossatlas.engine import ConfigError, Executor, LossAtlasError, PluginError

__all__ = ["DaskExecutor", "DaskOptions", "local_cluster", "run_block"]

_ADDRESS = re.compile(r"^([a-z][a-z0-9+]*://)?[^\s/:]+(:\d+)?$")


@dataclass
class DaskOptions:
    address: str = field(
        default="",
        metadata={
            "doc": "scheduler address tcp://HOST:PORT of a running cluster; empty: start a "
            "LocalCluster on this machine"
        },
    )
    workers: int = field(
        default=0,
        metadata={
            "doc": "LocalCluster worker processes (0: one per CPU core); only without address"
        },
    )
    threads: int = field(
        default=1,
        metadata={"doc": "torch threads in each task (one Dask thread per worker runs the task)"},
    )
    block: int = field(default=1, metadata={"doc": "cells per task (more: fewer, longer tasks)"})
    timeout: float = field(
        default=60.0, metadata={"doc": "seconds to wait for the scheduler and its first worker"}
    )
    resources: dict[str, float] = field(
        default_factory=dict,
        metadata={
            "doc": "worker resources each task needs, e.g. {GPU = 1}: one task per GPU at a "
            "time on workers started with --resources GPU=1 (a LocalCluster gives each "
            "worker these resources; a task on a machine with several GPUs uses the "
            "worker's own, by worker number)"
        },
    )

    def validate(self) -> None:
        if importlib.util.find_spec("distributed") is None:  # checked before the store
            raise ValueError(
                "needs dask.distributed; install it with pip install 'lossatlas[dask]'"
            )
        if self.address and not _ADDRESS.match(self.address):
            raise ValueError(
                f"option 'address' must look like tcp://HOST:PORT, got {self.address!r}"
            )
        if self.workers < 0:
            raise ValueError(
                f"option 'workers' must be 0 (one per core) or more, got {self.workers}"
            )
        if self.address and self.workers:
            raise ValueError(
                "option 'workers' starts a LocalCluster and cannot be combined "
                "with 'address' (the cluster's own workers are used)"
            )
        if self.threads < 1:
            raise ValueError(f"option 'threads' must be at least 1, got {self.threads}")
        if self.block < 1:
            raise ValueError(f"option 'block' must be at least 1, got {self.block}")
        if not self.timeout > 0:
            raise ValueError(f"option 'timeout' must be positive, got {self.timeout}")
        bad = [k for k, v in self.resources.items() if not isinstance(v, int | float) or v <= 0]
        if bad:
            raise ValueError(f"option 'resources': amounts must be positive numbers ({bad})")


def run_block(
    job: Callable[[tuple[int, ...]], int],
    cells: tuple[tuple[int, ...], ...],
    threads: int,
    gpu: bool = False,
) -> list[tuple[tuple[int, ...], int]]:
    """Run on a worker: compute and write ``cells`` with ``job``; return their statuses.

    ``gpu``: the task holds a GPU resource; on a machine with several GPUs the worker
    uses GPU (worker number mod GPUs), so that one worker per GPU shares none."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if gpu and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        torch.cuda.set_device(_worker_number() % torch.cuda.device_count())
    return [(tuple(index), int(job(tuple(index)))) for index in cells]


def _worker_number() -> int:
    """This Dask worker's number (LocalCluster names them 0, 1, …; else a hash)."""
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return 0
    return int(name) if str(name).isdigit() else abs(hash(str(name)))


def _forget(job: Any) -> None:
    """Run on each worker after a step: drop its cached context (model, data)."""
    forget = getattr(job, "forget", None)
    if callable(forget):
        forget()


def local_cluster(workers: int, resources: dict[str, float] | None = None) -> Any:
    """A ``LocalCluster`` on loopback: ``workers`` processes of one thread each.

    Dask starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (good for pandas); torch's
    many large, short-lived buffers then cost a page fault storm (cells ~1.4x slower
    here), so lossatlas leaves glibc's default (or the user's own setting) in place.
    """
    distributed = _import_distributed()
    import dask

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            # No dashboard without bokeh; its HTTP server would bind 0.0.0.0:8787 with None.
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address=None,
            silence_logs=logging.ERROR,
            **({"resources": dict(resources)} if resources else {}),
        )


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise PluginError(
            f"executor 'dask' needs dask.distributed ({exc}); install it with "
            "pip install 'lossatlas[dask]'"
        ) from None
    return distributed


def _connect(distributed: Any, options: DaskOptions) -> Any:
    """A client of the scheduler at ``options.address``, or a one-line ConfigError."""
    try:
        return distributed.Client(options.address, timeout=options.timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"executor 'dask': cannot reach the scheduler at {options.address} "
            f"({type(exc).__name__}); start one with 'dask scheduler' or check the address"
        ) from None


class DaskExecutor(Executor[DaskOptions]):
    name = "dask"
    summary = "runs cells as tasks on a Dask cluster (a LocalCluster, or --address)"
    Options = DaskOptions

    @contextmanager
    def client(self, options: DaskOptions) -> Iterator[Any]:
        """A client of the cluster at ``options.address``, or of a new LocalCluster."""
        distributed = _import_distributed()
        if options.address:
            client = _connect(distributed, options)
            try:
                try:
                    client.wait_for_workers(1, timeout=options.timeout)
                except (OSError, TimeoutError):
                    raise ConfigError(
                        f"executor 'dask': the scheduler at {options.address} has no worker "
                        f"after {options.timeout:g} s; start some with 'dask worker "
                        f"{options.address} --nthreads 1'"
                    ) from None
                yield client
            finally:
                client.close()
            return
        cluster = local_cluster(options.workers or (os.cpu_count() or 1), options.resources)
        try:
            client = distributed.Client(cluster, set_as_default=False)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()

    def check(self, options: DaskOptions) -> None:
        """distributed must import, and a given scheduler must answer (store untouched)."""
        distributed = _import_distributed()
        if options.address:
            client = _connect(distributed, options)
            client.close()

    @contextmanager
    def session(self, options: DaskOptions) -> Iterator[Any]:
        """One client (and LocalCluster) for every step of a pipeline."""
        with self.client(options) as client:
            yield client

    def run(
        self,
        options: DaskOptions,
        job: Callable[[tuple[int, ...]], int],
        cells: Iterable[tuple[int, ...]],
        on_done: Callable[[tuple[int, ...], int], None],
        session: Any = None,
    ) -> None:
        cells = [tuple(c) for c in cells]
        if not cells:
            return
        if session is not None:
            self.run_on(session, options, job, cells, on_done)
            return
        with self.client(options) as client:
            self.run_on(client, options, job, cells, on_done)

    def run_on(
        self,
        client: Any,
        options: DaskOptions,
        job: Callable[[tuple[int, ...]], int],
        cells: list[tuple[int, ...]],
        on_done: Callable[[tuple[int, ...], int], None],
    ) -> None:
        """Run ``cells`` as tasks of ``options.block`` cells each through ``client``."""
        distributed = _import_distributed()
        blocks = [tuple(cells[i : i + options.block]) for i in range(0, len(cells), options.block)]
        gpu = any(k.upper() == "GPU" for k in options.resources)
        futures = [
            client.submit(
                run_block,
                job,
                block,
                options.threads,
                gpu,
                pure=False,
                resources=dict(options.resources) or None,
            )
            for block in blocks
        ]
        owner = {f.key: block for f, block in zip(futures, blocks, strict=True)}
        try:
            for fut in distributed.as_completed(futures, loop=client.loop):
                try:
                    done = fut.result()
                except distributed.KilledWorker:
                    first = owner[fut.key][0]
                    raise LossAtlasError(
                        f"executor 'dask': the task of cell {first} killed its worker "
                        "several times (out of memory, or a crash in native code); give "
                        "the workers more memory, then run the same command again to "
                        "resume"
                    ) from None
                for index, status in done:
                    on_done(index, status)
        finally:
            client.cancel([f for f in futures if not f.done()])
            try:
                client.run(_forget, job)
            except Exception:  # a worker gone or busy: its cache dies with it
                pass
