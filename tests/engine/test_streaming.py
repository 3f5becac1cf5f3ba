"""Streamed splits: losses, gradients and HVPs accumulated over batches weighted by size
equal the in-memory results (float64); a probe runs on a memory-mapped data set larger
than the memory the process may still take."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lossatlas.engine import (
    ArrayRows,
    DataBundle,
    DatasetRows,
    LoaderRows,
    NpyFile,
    Objective,
    Split,
    StreamedSplit,
    sample_rows,
)
from lossatlas.plugins.datasets.digits import digits_arrays
from lossatlas.plugins.models.mlp import MLPModel, MLPOptions


def _arrays(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    X, y = digits_arrays()
    return (X[:n] / 16.0).astype(np.float64), y[:n].astype(np.int64)


def _bundle(train: Split, validation: Split) -> DataBundle:
    return DataBundle(train=train, validation=validation, task="classification", n_outputs=10)


def _sources(tmp_path: Path, X: np.ndarray, y: np.ndarray, kind: str) -> Any:
    if kind == "npy":
        np.save(tmp_path / "x.npy", X)
        return ArrayRows(NpyFile(tmp_path / "x.npy"))
    if kind == "zarr":
        import zarr

        z = zarr.open_array(str(tmp_path / "x.zarr"), mode="w", shape=X.shape, chunks=(50, 64))
        z[...] = X
        return ArrayRows(z)
    if kind == "xarray":
        import xarray as xr

        xr.Dataset({"x": (("sample", "pixel"), X)}).to_zarr(tmp_path / "d.zarr", mode="w")
        return ArrayRows(xr.open_zarr(tmp_path / "d.zarr", chunks=None)["x"])
    ds = torch.utils.data.TensorDataset(torch.as_tensor(X), torch.as_tensor(y))
    if kind == "dataset":
        return DatasetRows(ds)
    return LoaderRows(torch.utils.data.DataLoader(ds, batch_size=41, shuffle=False))


@pytest.mark.parametrize("kind", ["npy", "zarr", "xarray", "dataset", "loader"])
def test_streamed_equals_in_memory_in_float64(tmp_path: Path, kind: str) -> None:
    X, y = _arrays()
    tr, va = np.arange(0, 300, 3), np.setdiff1d(np.arange(300), np.arange(0, 300, 3))
    mem = _bundle(
        Split(torch.as_tensor(X[tr]), torch.as_tensor(y[tr])),
        Split(torch.as_tensor(X[va]), torch.as_tensor(y[va])),
    )
    src = _sources(tmp_path, X, y, kind)
    if kind == "loader":  # a DataLoader is read whole, in its own batches
        whole = torch.as_tensor(y)
        streamed = _bundle(StreamedSplit(src, whole), StreamedSplit(src, whole))
        mem = _bundle(Split(torch.as_tensor(X), whole), Split(torch.as_tensor(X), whole))
    else:
        streamed = _bundle(
            StreamedSplit(src, torch.as_tensor(y[tr]), tr, batch_size=37),
            StreamedSplit(src, torch.as_tensor(y[va]), va, batch_size=37),
        )
    model = MLPModel().build(MLPOptions(hidden=[12], activation="tanh"), mem, 0)
    a = Objective(model, mem, dtype=torch.float64)
    b = Objective(model, streamed, dtype=torch.float64)
    assert b.streamed("train") and not a.streamed("train")
    g = torch.Generator().manual_seed(0)
    P = a.x0 + 0.3 * torch.randn(5, a.D, generator=g, dtype=torch.float64)
    for split in ("train", "validation"):
        ea, eb = a.evaluate(P, split), b.evaluate(P, split)
        for k in ea:
            np.testing.assert_allclose(eb[k], ea[k], rtol=1e-12, atol=0)
    x, v = P[1], torch.randn(a.D, generator=g, dtype=torch.float64)
    torch.testing.assert_close(b.grad(x), a.grad(x), rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(b.hvp(x, v), a.hvp(x, v), rtol=1e-11, atol=1e-13)
    V = torch.randn(3, a.D, generator=g, dtype=torch.float64)
    torch.testing.assert_close(b.hvp_many(x, V), a.hvp_many(x, V), rtol=1e-11, atol=1e-13)
    assert b.hvp_at(x) is None  # one graph of the whole split: not for streamed data


def test_sample_rows_is_a_seeded_subset() -> None:
    a, b, c = sample_rows(1000, 100, 3), sample_rows(1000, 100, 3), sample_rows(1000, 100, 4)
    assert len(a) == 100 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(np.diff(a) > 0) and np.array_equal(sample_rows(50, 0, 1), np.arange(50))


def _run_line(tmp_path: Path, toml: Any, run_cli: Any, name: str, data: dict[str, Any]) -> Any:
    """A float64 random-line run of a 64-8-10 MLP on ``data``, its stored result."""
    from lossatlas.engine.store import Store

    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(
        toml(
            {
                "name": name,
                "dtype": "float64",
                "model": {"plugin": "mlp", "hidden": [8]},
                "dataset": data,
                "steps": [{"name": "line", "probe": "random-line", "points": 5}],
            }
        )
    )
    out = run_cli("run", cfg, "--store", tmp_path / "s.zarr", "-q")
    assert out.exit_code == 0, out.output
    return Store(tmp_path / "s.zarr").open_step(name, "line").load()


def test_on_disk_runs_like_the_same_arrays_in_memory(
    tmp_path: Path, toml: Any, run_cli: Any
) -> None:
    """The ``on-disk`` data set (a .npy file, streamed) and ``tensors`` (the same arrays
    in a .npz, in memory) split by the same seed give the same line, to rounding."""

    X, y = _arrays()
    np.save(tmp_path / "x.npy", X.astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "xy.npz", x=X.astype(np.float32), y=y)
    disk = {"plugin": "on-disk", "inputs": str(tmp_path / "x.npy"),
            "targets": str(tmp_path / "y.npy")}  # fmt: skip
    memory = {"plugin": "tensors", "path": str(tmp_path / "xy.npz")}
    results = {
        "disk": _run_line(tmp_path, toml, run_cli, "disk", disk),
        "memory": _run_line(tmp_path, toml, run_cli, "memory", memory),
    }
    for var in ("train_loss", "validation_loss", "train_accuracy"):
        np.testing.assert_allclose(
            results["disk"][var].values, results["memory"][var].values, rtol=1e-12
        )
    assert json.loads(results["disk"].attrs["dataset_attrs"])["streamed"] == 1


LIMITED = r"""
import json, resource, sys, tomllib
from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
import zarr, xarray  # everything imported before the limit
cfg = parse_config(tomllib.loads(open(sys.argv[1]).read()))
registry = make_registry()
with open("/proc/self/status") as f:
    vm = [int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:")][0]
limit = vm + int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
run_pipeline(cfg, sys.argv[2], registry)
ds = Store(sys.argv[2]).open_step("big", "line").load()
print(json.dumps({"limit_headroom": int(sys.argv[3]), "loss": ds["train_loss"].values.tolist(),
                  "status": ds.attrs["status"]}))
"""


def test_a_probe_runs_on_a_memory_mapped_file_larger_than_its_memory_limit(
    tmp_path: Path, toml: Any
) -> None:
    """1 GiB of inputs (a sparse .npy file: a few real rows, the rest zeros) under an
    address-space limit of what the process holds plus 512 MiB: the data cannot be held,
    nor mapped whole; the run reads it a batch at a time and completes."""
    n, width = 2**18, 1024  # 262,144 samples × 1024 float32 = 1 GiB
    path = tmp_path / "big.npy"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, width), np.float32))
    header["shape"] = (n, width)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        start = f.tell()
        rng = np.random.default_rng(0)
        f.write(rng.standard_normal((1000, width)).astype(np.float32).tobytes())
        f.truncate(start + n * width * 4)  # the rest is a hole: zeros, no disk
    np.save(tmp_path / "y.npy", (np.arange(n) % 2).astype(np.int64))
    assert NpyFile(path).shape == (n, width)
    cfg = tmp_path / "big.toml"
    cfg.write_text(
        toml(
            {
                "name": "big",
                "model": {"plugin": "mlp", "hidden": [2]},
                "dataset": {
                    "plugin": "on-disk",
                    "inputs": str(path),
                    "targets": str(tmp_path / "y.npy"),
                    "validation": 0.5,
                },
                "steps": [{"name": "line", "probe": "random-line", "points": 3, "directions": 1}],
            }
        )
    )
    env = {"MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", LIMITED, str(cfg), str(tmp_path / "s.zarr"), str(512 * 2**20)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["status"] == "complete" and np.all(np.isfinite(got["loss"]))
    assert path.stat().st_size > got["limit_headroom"] * 2


def test_torch_dataset_by_import_path_and_max_samples(
    tmp_path: Path, toml: Any, run_cli: Any
) -> None:
    """``torch-dataset``: a Dataset made by the user's function gives the numbers of the
    same arrays in memory; ``max_samples`` keeps a seeded subset of each split."""

    X, y = _arrays()
    np.savez(tmp_path / "xy.npz", x=X.astype(np.float32), y=y)
    (tmp_path / "mydata.py").write_text(
        "import numpy as np, torch\n"
        "def make(path, loader=False):\n"
        "    d = np.load(path)\n"
        "    ds = torch.utils.data.TensorDataset(torch.as_tensor(d['x']), "
        "torch.as_tensor(d['y']))\n"
        "    return ds\n"
    )
    common = {"function": "mydata:make", "kwargs": {"path": str(tmp_path / "xy.npz")},
              "search_path": [str(tmp_path)]}  # fmt: skip
    runs = {
        "torchds": {"plugin": "torch-dataset", **common},
        "memory": {"plugin": "tensors", "path": str(tmp_path / "xy.npz")},
        "subset": {"plugin": "torch-dataset", **common, "max_samples": 50},
    }
    got = {name: _run_line(tmp_path, toml, run_cli, name, data) for name, data in runs.items()}
    np.testing.assert_allclose(
        got["torchds"]["train_loss"].values, got["memory"]["train_loss"].values, rtol=1e-12
    )
    assert got["subset"].attrs["n_train"] == 50 and got["subset"].attrs["n_validation"] == 50


def test_a_split_too_big_to_load_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Code that needs the whole split as a tensor (training) loads a streamed split
    when it fits in half the available memory, and otherwise says what to do."""
    from lossatlas.engine import DataError, streaming

    X, y = _arrays(100)
    np.save(tmp_path / "x.npy", X)
    split = StreamedSplit(ArrayRows(NpyFile(tmp_path / "x.npy")), torch.as_tensor(y))
    assert torch.equal(split.inputs, torch.as_tensor(X).float())  # fits: loaded once
    small = StreamedSplit(ArrayRows(NpyFile(tmp_path / "x.npy")), torch.as_tensor(y))
    monkeypatch.setattr(streaming, "_available_memory", lambda: 1000)
    with pytest.raises(DataError, match="max_samples"):
        small.inputs  # noqa: B018
