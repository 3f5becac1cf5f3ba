"""CIFAR-10 from pickle batches written here in exactly the standard format."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lossatlas.engine import DataError, parse_options
from lossatlas.plugins.datasets.cifar10 import CIFAR10, CIFAR10Options

PER_BATCH, N_TEST = 6, 5


def write_batch(path: Path, data: np.ndarray, labels: list[int], protocol: int) -> None:
    batch = {
        b"batch_label": path.name.encode(),
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    with open(path, "wb") as fh:
        pickle.dump(batch, fh, protocol=protocol)


def make_cifar(root: Path, protocol: int = 2, seed: int = 0) -> dict[str, tuple]:
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in [*((f"data_batch_{i}", PER_BATCH) for i in range(1, 6)), ("test_batch", N_TEST)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        write_batch(d / name, data, labels, protocol)
        out[name] = (data, labels)
    return out


def load(path: Path, seed: int = 0, **table):
    opts = parse_options(CIFAR10Options, {"path": str(path), **table}, "dataset 'cifar10'")
    return CIFAR10().load(opts, seed)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_reads_standard_batches(tmp_path: Path, protocol: int) -> None:
    batches = make_cifar(tmp_path, protocol)
    data = load(tmp_path, normalize="unit")
    assert data.train.inputs.shape == (5 * PER_BATCH, 3, 32, 32)
    assert data.validation.inputs.shape == (N_TEST, 3, 32, 32)
    assert data.n_outputs == 10 and data.task == "classification"
    first, labels = batches["data_batch_1"]
    assert data.train.targets[:PER_BATCH].tolist() == labels
    # Row layout: 1024 red, 1024 green, 1024 blue values, each 32×32 row-major.
    img = data.train.inputs[0].numpy()
    np.testing.assert_allclose(img[1, 2, 5], first[0, 1024 + 2 * 32 + 5] / 255, rtol=1e-6)
    assert data.validation.targets.tolist() == batches["test_batch"][1]


def test_per_channel_normalisation_and_dir_itself(tmp_path: Path) -> None:
    make_cifar(tmp_path)
    data = load(tmp_path / "cifar-10-batches-py")  # the batch directory itself works too
    x = data.train.inputs
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(mean, torch.zeros(3), atol=1e-4)
    assert torch.allclose(std, torch.ones(3), atol=1e-3)
    assert len(data.attrs["mean"]) == 3


def test_limit_split_and_batches(tmp_path: Path) -> None:
    make_cifar(tmp_path)
    a = load(tmp_path, limit=7, validation_limit=2, seed=1)
    assert len(a.train) == 7 and len(a.validation) == 2
    b = load(tmp_path, limit=7, validation_limit=2, seed=1)
    assert torch.equal(a.train.inputs, b.train.inputs)
    c = load(tmp_path, validation=0.5, batches=[1, 2])
    assert len(c.train) == PER_BATCH and len(c.validation) == PER_BATCH


def test_missing_batch_names_it(tmp_path: Path) -> None:
    make_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError) as info:
        load(tmp_path)
    msg = str(info.value)
    assert "data_batch_3" in msg and "cifar-10-python.tar.gz" in msg and "\n" not in msg


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_carrying_code_is_refused(tmp_path: Path) -> None:
    make_cifar(tmp_path)
    marker = tmp_path / "pwned"
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    with open(path, "wb") as fh:
        pickle.dump({b"data": Evil(marker), b"labels": [0]}, fh, protocol=2)
    with pytest.raises(DataError, match=r"refusing to load .*data_batch_2.*system"):
        load(tmp_path)
    assert not marker.exists()


def test_wrong_contents_are_data_errors(tmp_path: Path) -> None:
    make_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    write_batch(path, np.zeros((2, 100), dtype=np.uint8), [0, 1], 2)
    with pytest.raises(DataError, match=r"\(N, 3072\)"):
        load(tmp_path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"test_batch"):
        load(tmp_path)
