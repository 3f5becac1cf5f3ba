"""Checkpoints: plain weights only, in the wrappers training scripts commonly save."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lossatlas.engine.context import load_checkpoint
from lossatlas.engine.errors import DataError


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model_state_dict": sd, "optimizer_state_dict": {}},
        lambda sd: {"model": sd},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},  # DataParallel
        lambda sd: {"state_dict": {f"_orig_mod.{k}": v for k, v in sd.items()}},  # compile
    ],
    ids=["plain", "state_dict", "model_state_dict", "model", "module-prefix", "compiled"],
)
def test_common_checkpoint_layouts_load_as_the_state_dict(tmp_path: Path, wrap) -> None:
    sd = _model().state_dict()
    path = tmp_path / "ck.pt"
    torch.save(wrap(sd), path)
    loaded = load_checkpoint(path)
    assert loaded.keys() == sd.keys()
    for k in sd:
        torch.testing.assert_close(loaded[k], sd[k], rtol=0, atol=0)
    model = _model()
    model.load_state_dict(loaded)


def test_pickled_code_is_refused_in_one_message(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save(_model(), path)  # a whole module: unpickling would run its code
    with pytest.raises(DataError, match="refuses to load .*weights_only=True"):
        load_checkpoint(path)


def test_non_tensor_content_names_what_it_found(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    torch.save({"lr": 0.1, "epochs": 3}, path)
    with pytest.raises(DataError, match="not a state dict of tensors .*'lr'"):
        load_checkpoint(path)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError):
        load_checkpoint(raw)


@pytest.mark.parametrize("kind", ["npz", "text"])
def test_a_file_torch_did_not_write_is_named_as_such(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"weights.{kind}"
    if kind == "npz":
        np.savez(path, w=np.zeros(3))
    else:
        path.write_text("hello")
    with pytest.raises(DataError, match="is not a file written by torch.save") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value) and "enforce" not in str(err.value)
