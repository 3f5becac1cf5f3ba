"""The Python API: lossatlas.run and lossatlas.open, with in-process plugins, on the local
and Dask executors (the same numbers), and lossatlas.testing's isolation."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lossatlas
import lossatlas.testing
from lossatlas.engine import ConfigError, Probe, StoreError, hookimpl

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def moons() -> types.ModuleType:
    sys.path.insert(0, str(HERE))
    try:
        return importlib.import_module("inprocess.twomoons")
    finally:
        sys.path.remove(str(HERE))


def config() -> dict[str, Any]:
    return {
        "name": "moons",
        "seed": 3,
        "dtype": "float64",
        "model": {"plugin": "test-tinynet", "width": 5},
        "dataset": {"plugin": "test-moons", "n": 60},
        "steps": [
            {"name": "ray", "probe": "test-radial", "at": "init:7"},
            {"name": "spin", "probe": "test-spin", "scales": [1.0, -1.0, 3.0]},
        ],
    }


def dynamic_plugin() -> types.ModuleType:
    """A plugin module made in this process (no file: it travels to workers by value)."""
    from inprocess.twomoons import Radial

    mod = types.ModuleType("made_here")

    class Spin(Radial):
        name = "test-spin"

    @hookimpl
    def lossatlas_register_probes() -> list[Probe]:
        return [Spin()]

    mod.lossatlas_register_probes = lossatlas_register_probes  # type: ignore[attr-defined]
    return mod


@pytest.fixture(scope="module")
def plugins(moons: types.ModuleType) -> list[Any]:
    sys.path.insert(0, str(HERE))
    try:
        return [moons, ("made-here", dynamic_plugin())]
    finally:
        sys.path.remove(str(HERE))


def test_run_returns_the_runs_tree_and_open_reads_it(tmp_path: Path, plugins: Any) -> None:
    tree = lossatlas.testing.run(config(), tmp_path / "s.zarr", plugins=plugins)
    assert sorted(tree.children) == ["ray", "spin"]
    loss = tree["ray"].ds["train_loss"].values
    assert np.all(np.isfinite(loss)) and loss[0] == pytest.approx(np.log(2), rel=1e-12)
    again = lossatlas.open(tmp_path / "s.zarr", "moons")
    assert again.name == "moons" and again.is_root  # the run's group alone
    assert tree.name == "moons" and tree.is_root
    np.testing.assert_array_equal(
        again["spin"].ds["train_loss"].values, tree["spin"].ds["train_loss"].values
    )
    with pytest.raises(StoreError, match="no run 'moon' \\(did you mean 'moons'\\?\\)"):
        lossatlas.open(tmp_path / "s.zarr", "moon")
    with pytest.raises(StoreError, match="nothing there"):
        lossatlas.open(tmp_path / "none.zarr", "moons")
    with pytest.raises(StoreError, match="is a file, not a lossatlas store"):
        lossatlas.open(tmp_path / "s.zarr" / "zarr.json")


def test_local_and_dask_give_identical_results(
    tmp_path: Path, plugins: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process plugins (one imported from a file, one made here) reach the workers,
    and one LocalCluster serves both steps of the pipeline (Executor.session)."""
    pytest.importorskip("distributed")
    import lossatlas.plugins.executors.dask as dask_executor

    clusters = []
    real = dask_executor.local_cluster
    monkeypatch.setattr(
        dask_executor, "local_cluster", lambda n, *rest: clusters.append(n) or real(n, *rest)
    )
    local = lossatlas.testing.run(config(), tmp_path / "local.zarr", plugins=plugins)
    dask = lossatlas.testing.run(
        config(), tmp_path / "dask.zarr", plugins=plugins, executor="dask", workers=1
    )
    assert clusters == [1]  # one cluster for the two steps
    for step in ("ray", "spin"):
        a, b = local[step].ds, dask[step].ds
        for var in ("train_loss", "cell_seed"):
            np.testing.assert_array_equal(a[var].values, b[var].values)
        assert b.attrs["status"] == "complete"
    assert dask["ray"].ds.attrs["probe_plugin"].startswith("twomoons (in-process")


def test_overrides_and_bad_keywords(tmp_path: Path, plugins: Any) -> None:
    tree = lossatlas.testing.run(
        config(), tmp_path / "s.zarr", plugins=plugins, name="other", seed=4, steps=["ray"]
    )
    assert tree.name == "other" and list(tree.children) == ["ray"]
    with pytest.raises(ConfigError, match="unknown keyword 'sed' \\(did you mean 'seed'\\?\\)"):
        lossatlas.testing.run(config(), tmp_path / "t.zarr", plugins=plugins, sed=1)


def test_testing_isolates_from_installed_plugins(plugins: Any) -> None:
    reg = lossatlas.testing.registry(*plugins)
    assert {r.distribution for r in reg.records} == {"lossatlas", "in-process"}
    assert reg.provider("probe", "test-radial").distribution == "in-process"
    every = lossatlas.testing.registry(*plugins, installed=True)
    assert "test-spin" in every.names("probe")


def test_fixtures(lossatlas_run: Any, lossatlas_context: Any, plugins: Any) -> None:
    tree = lossatlas_run(config(), plugins=plugins, steps=["ray"])
    assert tree["ray"].ds.sizes["scale"] == 4
    ctx = lossatlas_context(config(), plugins=plugins)
    assert ctx.step.name == "ray" and ctx.objective.D == 2 * 5 + 5 + 5 * 2 + 2


def test_executor_table_and_options(tmp_path: Path, plugins: Any) -> None:
    from lossatlas.engine.config import parse_config, parse_executor_option

    cfg = parse_config({**config(), "executor": {"plugin": "dask", "workers": 3, "block": 2}})
    assert (cfg.executor, cfg.executor_options) == ("dask", {"workers": 3, "block": 2})
    assert parse_executor_option("address=tcp://h:1") == ("address", "tcp://h:1")
    assert parse_executor_option("timeout=2.5") == ("timeout", 2.5)
    with pytest.raises(ConfigError, match="executor options are given twice"):
        parse_config(
            {**config(), "executor": {"plugin": "dask", "workers": 1}, "executor_options": {"a": 1}}
        )
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        parse_executor_option("workers")
    with pytest.raises(ConfigError, match="executor 'local': unknown option 'workers'"):
        lossatlas.testing.run(
            config(), tmp_path / "s.zarr", plugins=plugins, executor_options={"workers": 2}
        )
