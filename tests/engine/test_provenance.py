"""Provenance of what ran: resolved options, source hashes, the checkout's commit."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import lossatlas
from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.context import StepContext
from lossatlas.engine.provenance import checkout_commit, file_sha256, resolved_options


def test_checkout_commit_names_the_checkout_or_nothing() -> None:
    root = Path(lossatlas.__file__).resolve().parent.parent
    commit = checkout_commit()
    if (root / ".git").exists() and (root / "pyproject.toml").is_file():
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit), commit
    else:
        assert commit == ""


def test_step_attrs_record_what_ran(tmp_path, write_config, run_cli) -> None:
    """An import-path model and data set: their source files' SHA-256, the resolved
    options with defaults filled in, the evaluation path, the loss, the parameters."""
    net = tmp_path / "my_net.py"
    net.write_text(
        "import torch\nfrom torch import nn\n"
        "def make(data, seed):\n"
        "    torch.manual_seed(seed)\n"
        "    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 4))\n"
        "    m[1].requires_grad_(False)\n"
        "    return m\n"
    )
    data = tmp_path / "my_data.py"
    data.write_text(
        "import numpy as np\n"
        "def load(seed):\n"
        "    rng = np.random.default_rng(seed)\n"
        "    X = rng.standard_normal((60, 64)).astype('float32')\n"
        "    return X, (X[:, 0] > 0).astype('int64') + 2 * (X[:, 1] > 0)\n"
    )
    cfg = {
        "name": "prov",
        "dtype": "float64",
        "model": {"plugin": "python", "factory": "my_net:make", "search_path": [str(tmp_path)]},
        "dataset": {
            "plugin": "python",
            "function": "my_data:load",
            "search_path": [str(tmp_path)],
            "task": "classification",
        },
        "steps": [{"name": "line", "probe": "random-line", "points": 3, "directions": 1}],
    }
    store = tmp_path / "s.zarr"
    res = run_cli("run", write_config(cfg), "--store", store, "--quiet")
    assert res.exit_code == 0, res.output
    import xarray as xr

    a = xr.open_zarr(store, group="prov/line").attrs
    hashes = json.loads(a["source_sha256"])
    for f in (net, data):
        assert hashes[str(f.resolve())] == hashlib.sha256(f.read_bytes()).hexdigest()
        assert file_sha256(f) == hashes[str(f.resolve())]
    resolved = json.loads(a["resolved_options"])
    assert resolved["model"]["bn_samples"] == 512  # a default, filled in
    assert resolved["dataset"]["validation"] == 0.2
    assert resolved["loss"] == {"plugin": "cross-entropy", "default_for_task": "classification"}
    assert resolved["probe"]["points"] == 3 and "span" in resolved["probe"]
    assert a["loss"] == "cross-entropy" and a["loss_plugin"].startswith("engine default")
    assert a["evaluation_path"] == "generic" and "frozen" in a["evaluation_path_reason"]
    assert json.loads(a["frozen_parameters"]) == ["1.weight", "1.bias"]
    assert a["n_frozen"] == 64 * 8 + 8 and a["n_params"] == 8 * 4 + 4
    assert a["include_frozen"] == 0
    prov = json.loads(xr.open_zarr(store, group="prov").attrs["provenance"])
    assert prov["lossatlas_commit"] == checkout_commit()


def test_resolved_options_use_the_keys_a_config_writes() -> None:
    """Train's start point is recorded as 'from' (what the user wrote, what ``lossatlas
    check`` prints), and a formula preset as the values it stands for."""
    config = parse_config(
        {
            "name": "keys",
            "model": {"plugin": "mlp", "hidden": [4]},
            "dataset": {"plugin": "formula", "preset": "x-squared", "n_train": 20},
            "steps": [{"name": "fit", "probe": "train", "from": "init:3", "epochs": 1}],
        }
    )
    ctx = StepContext(make_registry(), config, config.steps[0])
    resolved = resolved_options(ctx)
    assert resolved["probe"]["from"] == "init:3" and "start" not in resolved["probe"]
    assert resolved["probe"]["epochs"] == 1 and "lr" in resolved["probe"]  # defaults too
    dataset = resolved["dataset"]
    assert dataset["expression"] == "x**2" and dataset["n_train"] == 20
    assert dataset["n_validation"] == 100 and dataset["plugin"] == "formula"
    assert json.loads(json.dumps(resolved)) == resolved
