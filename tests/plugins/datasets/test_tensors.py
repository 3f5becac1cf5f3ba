"""The tensors data set: the user's arrays from .npz and .pt files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lossatlas.engine import ConfigError, DataError, parse_options
from lossatlas.plugins.datasets.files import Tensors, TensorsOptions

WHERE = "dataset 'tensors'"


def load(seed: int = 0, **table):
    return Tensors().load(parse_options(TensorsOptions, table, WHERE), seed)


def test_npz_classification_split_by_seed(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3, 4)), rng.integers(0, 4, 50)
    y[0] = 6  # n classes = max + 1
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load(path=str(tmp_path / "d.npz"), validation=0.2, seed=5)
    assert data.task == "classification" and data.n_outputs == 7
    assert data.train.inputs.shape == (40, 3, 4) and len(data.validation) == 10
    assert data.train.inputs.dtype == torch.float32 and data.train.targets.dtype == torch.int64
    again = load(path=str(tmp_path / "d.npz"), validation=0.2, seed=5)
    assert torch.equal(data.validation.inputs, again.validation.inputs)
    # Every sample lands in exactly one split.
    both = torch.cat([data.train.inputs, data.validation.inputs]).reshape(50, -1)
    assert torch.allclose(
        both.sum(0), torch.as_tensor(x, dtype=torch.float32).reshape(50, -1).sum(0), atol=1e-4
    )


def test_npz_regression_with_named_validation_arrays(tmp_path: Path) -> None:
    x = np.linspace(0, 1, 20)
    np.savez(tmp_path / "r.npz", X_train=x, y_train=x**2, X_test=x[:5], y_test=x[:5] ** 2)
    data = load(
        path=str(tmp_path / "r.npz"),
        inputs="X_train",
        targets="y_train",
        validation_inputs="X_test",
        validation_targets="y_test",
    )
    assert data.task == "regression" and data.n_outputs == 1
    assert data.train.inputs.shape == (20, 1) and data.train.targets.shape == (20, 1)
    assert len(data.validation) == 5
    forced = load(
        path=str(tmp_path / "r.npz"),
        inputs="X_train",
        targets="y_train",
        task="regression",
        limit=8,
    )
    assert len(forced.train) == 8


def test_pt_dict_of_tensors(tmp_path: Path) -> None:
    x, y = torch.randn(30, 5), torch.randint(0, 3, (30,))
    torch.save({"x": x, "y": y, "x_val": x[:6], "y_val": y[:6]}, tmp_path / "d.pt")
    data = load(path=str(tmp_path / "d.pt"), validation_inputs="x_val", validation_targets="y_val")
    assert torch.equal(data.train.inputs, x) and torch.equal(data.train.targets, y)
    assert torch.equal(data.validation.targets, y[:6])
    assert data.task == "classification" and data.n_outputs == 3


class NotATensor:
    pass


def test_pt_with_code_or_non_dict_is_refused(tmp_path: Path) -> None:
    torch.save({"x": NotATensor(), "y": torch.zeros(2)}, tmp_path / "evil.pt")
    with pytest.raises(DataError, match=r"weights_only=True"):
        load(path=str(tmp_path / "evil.pt"))
    torch.save(torch.zeros(3), tmp_path / "t.pt")
    with pytest.raises(DataError, match=r"not a dict"):
        load(path=str(tmp_path / "t.pt"))


def test_errors_name_the_file_and_arrays(tmp_path: Path) -> None:
    missing = tmp_path / "nope.npz"
    with pytest.raises(DataError) as info:
        load(path=str(missing))
    assert "nope.npz" in str(info.value) and str(tmp_path) in str(info.value)
    np.savez(tmp_path / "a.npz", inputs=np.zeros((4, 2)), labels=np.zeros(4, dtype=int))
    with pytest.raises(DataError, match=r"no array named 'x'.*inputs, labels"):
        load(path=str(tmp_path / "a.npz"))
    np.savez(tmp_path / "b.npz", x=np.zeros((4, 2)), y=np.zeros(3))
    with pytest.raises(DataError, match=r"same number of samples"):
        load(path=str(tmp_path / "b.npz"))
    with pytest.raises(DataError, match=r"suffix"):
        load(path=str(tmp_path / "data.csv"))
    with pytest.raises(ConfigError, match=r"together"):
        parse_options(TensorsOptions, {"path": "a.npz", "validation_inputs": "xv"}, WHERE)
