"""Fault tolerance: nothing is lost when the run is killed, shared, or pointed at junk.

- ``lossatlas run`` is SIGKILLed at random moments, several times, then resumed: the
  store equals an uninterrupted run's bit for bit, every cell done, none half-written.
- Two runs write different groups of one store at the same time: both complete intact.
- A corrupted or foreign store path: one clear line, a non-zero exit, nothing changed.

(A Dask worker killed mid-task is tested in tests/plugins/executors/test_dask.py, next
to the cluster fixture; the long soak version is ``benchmarks/bench_dask.py --soak``.)
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr

from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import STATUS_DONE, STATUS_VAR, Store

# Cells slow enough to be killed in the middle of a sweep, two steps so that a kill can
# also land between steps, in a template write or in a step's finalisation.
SLOW: dict[str, Any] = {
    "name": "slow",
    "seed": 3,
    "dtype": "float64",
    "model": {"plugin": "mlp", "hidden": [16]},
    "dataset": {"plugin": "digits", "limit": 300},
    "steps": [
        {"name": "line", "probe": "random-line", "points": 31, "directions": 12},
        {"name": "line2", "probe": "random-line", "points": 21, "directions": 8, "span": 0.5},
    ],
}


def reference(path: Path, data: dict[str, Any], to_toml: Any) -> tuple[str, float]:
    """An uninterrupted in-process run of ``data`` into ``path``; the path and duration."""
    config = parse_config(tomllib.loads(to_toml(data)), source="reference.toml")
    t0 = time.perf_counter()
    run_pipeline(config, str(path), make_registry(), progress=None)
    return str(path), time.perf_counter() - t0


def assert_same_store(got: str, want: str, run: str, steps: list[str]) -> None:
    """Every variable and coordinate of every step equal bit for bit; all cells done."""
    for step in steps:
        a = Store(got).open_step(run, step).load()
        b = Store(want).open_step(run, step).load()
        assert sorted(a.variables) == sorted(b.variables), step
        for name in b.variables:
            x, y = np.asarray(a[name].values), np.asarray(b[name].values)
            assert x.dtype == y.dtype and x.shape == y.shape, (step, name)
            assert x.tobytes() == y.tobytes(), f"{step}/{name} differs"
        assert np.all(a[STATUS_VAR].values == STATUS_DONE), step
        assert a.attrs["status"] == "complete", step
    assert Store(got).run_attrs(run)["status"] == "complete"
    # Every chunk reads back (checksums) and every status agrees with its data.
    from lossatlas.engine.store.verify import verify

    problems, checked = verify(Store(got), [run])
    assert checked == len(steps) and problems == [], [p.describe() for p in problems]


def test_sigkill_at_random_moments_then_resume_is_bit_identical(
    tmp_path: Path,
    write_config: Any,
    run_cli_subprocess: Any,
    toml: Any,
    lossatlas_command: Any,
) -> None:
    want, seconds = reference(tmp_path / "reference.zarr", SLOW, toml)
    config = write_config(SLOW)
    store = tmp_path / "killed.zarr"
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    kills: list[float] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(3):
        proc = subprocess.Popen(
            lossatlas_command("run", config, "--store", store, "-q"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        # Wait until this run has touched the store, then kill it at a random moment
        # of what an uninterrupted run takes.
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if (store / "slow").exists():
                break
            time.sleep(0.02)
        delay = rng.uniform(0, 1.2 * seconds)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills.append(round(delay, 3))
        proc.wait(timeout=120)
        if proc.returncode not in (0, -signal.SIGKILL):
            pytest.fail(
                f"run exited {proc.returncode} after kills at {kills}: "
                f"{proc.stderr.read().decode() if proc.stderr else ''}"
            )
        if proc.stderr:
            proc.stderr.close()
    done = run_cli_subprocess("run", config, "--store", store, "-q", timeout=300)
    assert done.returncode == 0, f"resume after kills at {kills} s failed: {done.stderr}"
    assert_same_store(str(store), want, "slow", ["line", "line2"])


def test_two_runs_writing_one_store_at_once_both_complete(
    tmp_path: Path, write_config: Any, toml: Any, lossatlas_command: Any
) -> None:
    small = json.loads(json.dumps(SLOW))
    small["steps"] = [dict(small["steps"][0], points=21, directions=6)]
    store = tmp_path / "shared.zarr"
    procs, wants = [], {}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, seed in (("first", 1), ("second", 2)):
        data = {**small, "name": name, "seed": seed}
        wants[name] = reference(tmp_path / f"{name}-reference.zarr", data, toml)[0]
        cfg = write_config(data, name=f"{name}.toml")
        procs.append(
            subprocess.Popen(
                lossatlas_command("run", cfg, "--store", store, "-q"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    for name, want in wants.items():
        assert_same_store(str(store), want, name, ["line"])
    assert Store(store).runs() == ["first", "second"]
    # The consolidated metadata sees both runs too.
    root = zarr.open_group(str(store), mode="r", use_consolidated=True)
    assert sorted(n for n, _ in root.groups()) == ["first", "second"]
    tree = xr.open_datatree(str(store), engine="zarr")
    assert tree["first/line"].to_dataset()["train_loss"].shape == (6, 21)


# ----------------------------------------------------------- foreign or corrupted stores


def _snapshot(path: Path) -> dict[str, str]:
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def _make_file(p: Path) -> None:
    p.write_text("not a store\n")


def _make_foreign_folder(p: Path) -> None:
    p.mkdir()
    (p / "thesis.tex").write_text("\\documentclass{article}\n")


def _make_foreign_zarr(p: Path) -> None:
    g = zarr.open_group(str(p), mode="w")
    g.create_array("x", shape=(3,), dtype="f8")[:] = [1.0, 2.0, 3.0]


def _make_garbled_root(p: Path) -> None:
    p.mkdir()
    (p / "zarr.json").write_text('{"zarr_format": 3, "node_ty')


def _make_garbled_run(p: Path, tiny: dict[str, Any], toml: Any) -> None:
    run_pipeline(parse_config(tomllib.loads(toml(tiny))), str(p), make_registry())
    (p / "tiny" / "line" / "zarr.json").write_text("\x00garbage")


def _make_garbled_run_group(p: Path, tiny: dict[str, Any], toml: Any) -> None:
    run_pipeline(parse_config(tomllib.loads(toml(tiny))), str(p), make_registry())
    (p / "tiny" / "zarr.json").write_text("{")


def _make_garbled_status(p: Path, tiny: dict[str, Any], toml: Any) -> None:
    run_pipeline(parse_config(tomllib.loads(toml(tiny))), str(p), make_registry())
    # The step is not complete yet: its status must be read to resume it.
    g = zarr.open_group(str(p), path="tiny/line", mode="r+", use_consolidated=False)
    g.attrs["status"] = "running"
    g[STATUS_VAR][1] = 0
    chunk = next(
        q
        for q in (p / "tiny" / "line" / STATUS_VAR).rglob("*")
        if q.is_file() and q.name != "zarr.json"
    )
    chunk.write_bytes(b"\xff" * 3)


STORES = {
    "a file": (_make_file, "is a file"),
    "a folder of other files": (_make_foreign_folder, "not a Zarr store"),
    "a Zarr store of another program": (_make_foreign_zarr, "did not make"),
    "garbled root metadata": (_make_garbled_root, "corrupted"),
    "garbled step metadata": (_make_garbled_run, "corrupted"),
    "garbled run metadata": (_make_garbled_run_group, "corrupted"),
    "garbled cell status": (_make_garbled_status, "corrupted"),
}


@pytest.mark.parametrize("case", list(STORES))
def test_foreign_or_corrupted_store_is_refused_untouched(
    case: str, tmp_path: Path, tiny_config: Any, write_config: Any, run_cli: Any, toml: Any
) -> None:
    make, words = STORES[case]
    store = tmp_path / "store.zarr"
    if make in (_make_garbled_run, _make_garbled_run_group, _make_garbled_status):
        make(store, tiny_config(), toml)
    else:
        make(store)
    before = _snapshot(store)
    cfg = write_config(tiny_config())
    result = run_cli("run", cfg, "--store", store, "-q")
    assert result.exit_code != 0
    line = result.stderr.strip()
    assert "\n" not in line and words in line, line
    assert "Traceback" not in result.output
    assert _snapshot(store) == before
