"""MNIST from IDX files written here in exactly the standard format."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lossatlas.engine import ConfigError, DataError, parse_options
from lossatlas.plugins.datasets.mnist import MNIST, MNISTOptions, read_idx

N_TRAIN, N_TEST = 30, 12


def write_idx(path: Path, array: np.ndarray, code: int = 0x08, gz: bool = False) -> None:
    """Magic 0x0000 <type code> <ndim>, big-endian uint32 dims, big-endian values."""
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(dtype).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def make_mnist(root: Path, gz: bool, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        write_idx(root / name, arr, gz=gz)
    return arrays


def load(path: Path, seed: int = 0, **table):
    opts = parse_options(MNISTOptions, {"path": str(path), **table}, "dataset 'mnist'")
    return MNIST().load(opts, seed)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_reads_standard_idx_files(tmp_path: Path, gz: bool) -> None:
    arrays = make_mnist(tmp_path, gz)
    data = load(tmp_path, normalize="unit")
    assert data.task == "classification" and data.n_outputs == 10
    assert data.train.inputs.shape == (N_TRAIN, 1, 28, 28)
    assert data.validation.inputs.shape == (N_TEST, 1, 28, 28)
    assert data.train.inputs.dtype == torch.float32
    assert data.train.targets.dtype == torch.int64
    np.testing.assert_array_equal(data.train.targets.numpy(), arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(data.validation.targets.numpy(), arrays["t10k-labels-idx1-ubyte"])
    expected = arrays["train-images-idx3-ubyte"].astype(np.float32) / 255
    np.testing.assert_allclose(data.train.inputs[:, 0].numpy(), expected, rtol=1e-6)


def test_normalisation_and_flatten(tmp_path: Path) -> None:
    arrays = make_mnist(tmp_path, gz=True)
    std = load(tmp_path, normalize="mean-std", flatten=True)
    assert std.train.inputs.shape == (N_TRAIN, 784)
    assert abs(float(std.train.inputs.mean())) < 1e-4
    assert abs(float(std.train.inputs.std()) - 1) < 1e-3
    raw = load(tmp_path, normalize="none")
    np.testing.assert_array_equal(
        raw.validation.inputs[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"].astype(np.float32)
    )


def test_split_of_train_and_limits(tmp_path: Path) -> None:
    make_mnist(tmp_path, gz=False)
    # Without the test files: validation = 0.25 of train needs only the train files.
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).unlink()
    a = load(tmp_path, seed=3, validation=0.25)
    assert len(a.train) + len(a.validation) == N_TRAIN and len(a.validation) == 8
    b = load(tmp_path, seed=3, validation=0.25)
    assert torch.equal(a.train.inputs, b.train.inputs)
    c = load(tmp_path, seed=4, validation=0.25)
    assert not torch.equal(a.validation.targets, c.validation.targets) or not torch.equal(
        a.validation.inputs, c.validation.inputs
    )
    small = load(tmp_path, validation=0.25, limit=5, validation_limit=3)
    assert len(small.train) == 5 and len(small.validation) == 3


def test_missing_file_names_it(tmp_path: Path) -> None:
    make_mnist(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        load(tmp_path)
    msg = str(info.value)
    assert "t10k-labels-idx1-ubyte" in msg and str(tmp_path) in msg
    assert "yann.lecun.com" in msg and "\n" not in msg


def test_missing_directory_and_required_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not found"):
        load(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"'path'.*required"):
        parse_options(MNISTOptions, {}, "dataset 'mnist'")


def test_corrupt_files_are_data_errors(tmp_path: Path) -> None:
    arrays = make_mnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"^dataset 'mnist': .*truncated"):
        load(tmp_path)
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match=r"^dataset 'mnist': .*train-images"):
        load(tmp_path)
    path.write_bytes(b"PK\x03\x04" + arrays["train-images-idx3-ubyte"].tobytes())
    with pytest.raises(DataError, match=r"^dataset 'mnist': .*not an IDX file"):
        load(tmp_path)
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))  # cut inside the header
    with pytest.raises(DataError, match=r"^dataset 'mnist': .*truncated in its header"):
        load(tmp_path)


def test_every_reader_error_names_the_data_set(tmp_path: Path) -> None:
    """Each way a file can be wrong gives one line starting "dataset 'mnist':"."""
    bad = {
        "unreadable": lambda p: p.write_bytes(b"\x1f\x8b\x08 broken gzip"),
        "magic": lambda p: p.write_bytes(b"\x01\x02\x03\x04"),
        "header": lambda p: p.write_bytes(bytes([0, 0, 8, 3, 0, 0])),
        "size": lambda p: p.write_bytes(p.read_bytes()[:-1]),
        "labels-shape": lambda p: write_idx(p, np.zeros((N_TRAIN, 2), np.uint8)),
    }
    for name, spoil in bad.items():
        root = tmp_path / name
        make_mnist(root, gz=False)
        target = "train-labels-idx1-ubyte" if name == "labels-shape" else "train-images-idx3-ubyte"
        spoil(root / target)
        with pytest.raises(DataError) as info:
            load(root)
        msg = str(info.value)
        assert msg.startswith("dataset 'mnist': "), (name, msg)
        assert "\n" not in msg and target in msg, (name, msg)


def test_read_idx_other_types(tmp_path: Path) -> None:
    ints = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    write_idx(tmp_path / "ints", ints, code=0x0C)
    out = read_idx(tmp_path / "ints")
    np.testing.assert_array_equal(out, ints)
    assert out.dtype.isnative
    floats = np.linspace(0, 1, 5, dtype=np.float32)
    write_idx(tmp_path / "floats", floats, code=0x0D, gz=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "floats.gz"), floats)
