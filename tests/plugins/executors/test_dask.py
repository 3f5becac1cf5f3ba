"""The Dask executor: same numbers as in-process, worker deaths survived, clear errors.

One small loopback LocalCluster (2 worker processes, 1 thread each) serves the module;
each test connects to it by address, as a user with a real cluster would.
"""

from __future__ import annotations

import os
import signal
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lossatlas.engine import ConfigError, make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import Progress, run_pipeline
from lossatlas.engine.store import STATUS_DONE, STATUS_VAR, Store

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster() -> Any:
    """A loopback cluster of two single-threaded worker processes for this module."""
    from lossatlas.plugins.executors.dask import local_cluster

    with local_cluster(2) as cl:
        yield cl


def _run(toml: Any, data: dict[str, Any], store: Path, progress: Progress | None = None) -> None:
    config = parse_config(tomllib.loads(toml(data)), source="test.toml")
    run_pipeline(config, str(store), make_registry(), progress=progress)


def _assert_equal_steps(got: Path, want: Path, run: str, steps: list[str]) -> None:
    for step in steps:
        a = Store(got).open_step(run, step).load()
        b = Store(want).open_step(run, step).load()
        assert sorted(a.data_vars) == sorted(b.data_vars)
        for name in b.variables:
            assert np.asarray(a[name].values).tobytes() == np.asarray(b[name].values).tobytes(), (
                f"{step}/{name} differs between executors"
            )
        assert np.all(a[STATUS_VAR].values == STATUS_DONE)
        assert a.attrs["status"] == "complete"


@pytest.mark.parametrize("block", [1, 3])
def test_dask_gives_the_numbers_of_the_in_process_run(
    cluster: Any, tmp_path: Path, tiny_config: Any, toml: Any, device: str, block: int
) -> None:
    data = tiny_config(device=device, step={"directions": 5})
    _run(toml, data, tmp_path / "local.zarr")
    dask = {
        **data,
        "executor": "dask",
        "executor_options": {"address": cluster.scheduler_address, "block": block},
    }
    _run(toml, dask, tmp_path / "dask.zarr")
    _assert_equal_steps(tmp_path / "dask.zarr", tmp_path / "local.zarr", "tiny", ["line"])


class KillAWorker(Progress):
    """Kills one worker process (SIGKILL) as soon as the first cell is reported done."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.killed: list[int] = []

    def cell_done(self, step: str, status: int) -> None:
        if not self.killed:
            pids = self.client.run(os.getpid)
            # A worker with a task in hand (running, or next in its queue).
            busy = [a for a, keys in self.client.processing().items() if keys and a in pids]
            pid = pids[busy[0]] if busy else sorted(pids.values())[0]
            os.kill(pid, signal.SIGKILL)
            self.killed.append(pid)


def test_a_worker_killed_mid_task_loses_nothing(
    cluster: Any, tmp_path: Path, tiny_config: Any, toml: Any
) -> None:
    data = tiny_config(step={"directions": 8, "points": 21})
    data["steps"].append(
        {"name": "line2", "probe": "random-line", "points": 9, "directions": 4, "span": 0.5}
    )
    _run(toml, data, tmp_path / "local.zarr")
    dask = {**data, "executor": "dask", "executor_options": {"address": cluster.scheduler_address}}
    with distributed.Client(cluster, set_as_default=False) as client:
        killer = KillAWorker(client)
        _run(toml, dask, tmp_path / "dask.zarr", progress=killer)
        assert killer.killed, "no worker was killed"
        client.wait_for_workers(2, timeout=120)  # the nanny restarts it for the next test
    _assert_equal_steps(tmp_path / "dask.zarr", tmp_path / "local.zarr", "tiny", ["line", "line2"])


def test_cli_runs_on_a_cluster_by_address(
    cluster: Any,
    tmp_path: Path,
    tiny_config: Any,
    toml: Any,
    write_config: Any,
    run_cli: Any,
) -> None:
    data = tiny_config()
    _run(toml, data, tmp_path / "local.zarr")
    cfg = write_config(data)
    result = run_cli(
        "run",
        cfg,
        "--store",
        tmp_path / "dask.zarr",
        "-q",
        "--executor",
        "dask",
        "--address",
        cluster.scheduler_address,
    )
    assert result.exit_code == 0, result.output
    _assert_equal_steps(tmp_path / "dask.zarr", tmp_path / "local.zarr", "tiny", ["line"])


def test_dask_resumes_what_a_local_run_left(
    cluster: Any, tmp_path: Path, tiny_config: Any, toml: Any
) -> None:
    data = tiny_config(step={"directions": 6})
    _run(toml, data, tmp_path / "local.zarr")
    # An interrupted run: cells 1, 3 and 4 not done, the step not finalised.
    store = tmp_path / "resumed.zarr"
    _run(toml, data, store)
    import zarr

    g = zarr.open_group(str(store), path="tiny/line", mode="r+", use_consolidated=False)
    g.attrs["status"] = "running"
    for i in (1, 3, 4):
        g[STATUS_VAR][i] = 0
        g["train_loss"][i, :] = np.nan
    dask = {**data, "executor": "dask", "executor_options": {"address": cluster.scheduler_address}}
    _run(toml, dask, store)
    _assert_equal_steps(store, tmp_path / "local.zarr", "tiny", ["line"])


def test_own_local_cluster_is_loopback_single_threaded_and_closed() -> None:
    import torch

    from lossatlas.plugins.executors.dask import DaskExecutor, DaskOptions, run_block

    with DaskExecutor().client(DaskOptions(workers=1)) as client:
        cluster = client.cluster
        info = client.scheduler_info()
        assert info["address"].startswith("tcp://127.0.0.1:")
        assert [w["nthreads"] for w in info["workers"].values()] == [1]
        assert all(a.startswith("tcp://127.0.0.1:") for a in info["workers"])
        # A block of cells runs with torch set to the worker's one thread.
        assert client.submit(run_block, len, ((0, 1), (2,)), 1).result() == [((0, 1), 2), ((2,), 1)]
        assert set(client.run(torch.get_num_threads).values()) == {1}
    assert cluster.status.name == "closed"


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"address": "not an address"}, "tcp://HOST:PORT"),
        ({"workers": -1}, "'workers'"),
        ({"address": "tcp://127.0.0.1:8786", "workers": 2}, "cannot be combined"),
        ({"block": 0}, "'block'"),
        ({"threads": 0}, "'threads'"),
        ({"worker": 2}, "did you mean 'workers'"),
    ],
)
def test_bad_dask_options_are_one_clear_line(
    options: dict[str, Any], words: str, tmp_path: Path, tiny_config: Any, toml: Any
) -> None:
    data = {**tiny_config(), "executor": "dask", "executor_options": options}
    with pytest.raises(ConfigError, match=words) as err:
        _run(toml, data, tmp_path / "s.zarr")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "s.zarr").exists()


def test_an_unreachable_scheduler_is_a_clear_error(
    tmp_path: Path, tiny_config: Any, write_config: Any, run_cli: Any
) -> None:
    cfg = write_config({**tiny_config(), "executor_options": {"timeout": 1.0}})
    result = run_cli(
        "run",
        cfg,
        "--store",
        tmp_path / "s.zarr",
        "-q",
        "--executor",
        "dask",
        "--address",
        "tcp://127.0.0.1:9",
    )
    assert result.exit_code != 0
    line = result.stderr.strip()
    assert "\n" not in line and "cannot reach the scheduler at tcp://127.0.0.1:9" in line
    assert not (tmp_path / "s.zarr").exists()  # refused before the store is made
    assert "Traceback" not in result.output


def test_tasks_hold_the_worker_resources_they_ask_for(
    tmp_path: Path, tiny_config: Any, toml: Any
) -> None:
    """``resources = {GPU = 1}``: each task holds one GPU of its worker (one task per GPU
    at a time); a LocalCluster gives each worker the resources. The numbers do not move."""
    data = tiny_config(step={"directions": 4})
    _run(toml, data, tmp_path / "local.zarr")
    opts = {"workers": 2, "resources": {"GPU": 1}}
    _run(toml, {**data, "executor": "dask", "executor_options": opts}, tmp_path / "gpu.zarr")
    _assert_equal_steps(tmp_path / "gpu.zarr", tmp_path / "local.zarr", "tiny", ["line"])
    from lossatlas.plugins.executors.dask import DaskExecutor, DaskOptions

    with DaskExecutor().client(DaskOptions(workers=1, resources={"GPU": 1})) as client:
        info = client.scheduler_info()
        assert [w["resources"] for w in info["workers"].values()] == [{"GPU": 1}]
