"""examples/dss-quadratic-fb2017.toml is seed 002 §4.1 in the authors' setup, and runs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import torch

from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline, validate
from lossatlas.engine.store import Store

EXAMPLE = Path(__file__).parents[2] / "examples" / "dss-quadratic-fb2017.toml"


def test_the_example_is_the_authors_setup() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    config = parse_config(data, str(EXAMPLE))
    (ctx,) = validate(config, make_registry(), None)
    obj = ctx.objective
    assert obj.D == 1 * 4 + 4 * 4 + 4 * 1  # 1-4-4-1, no biases
    assert obj.loss_fn.name == "l1" and obj.evaluation_path.name == "mlp-fast-path"
    kinds = [type(m).__name__ for m in obj.model]
    assert kinds == ["Flatten", "Linear", "Sigmoid", "Linear", "Sigmoid", "Linear", "Sigmoid"]
    x = ctx.init_point(1)
    assert float(x.abs().max()) <= 1.0 and float(x.abs().max()) > 0.5  # U[−1, 1]
    s = obj.splits["train"]
    assert len(s) == 10_000 and float(s.inputs.min()) >= 0 and float(s.inputs.max()) <= 1
    xs = s.inputs[:, 0].double()
    torch.testing.assert_close(
        s.targets[:, 0].double(), 0.5 * xs**2 + 0.25 * xs + 0.1, rtol=1e-6, atol=1e-7
    )
    o = ctx.options
    assert o.thresholds == [0.1, 0.05, 0.025, 0.01]
    assert (o.alpha, o.tolerance, o.endpoint_alpha, o.initial_beads) == (0.95, 1.1, 1.0, 1)
    assert (o.optimizer, o.lr, o.batch_size, o.strategy, o.insert) == (
        "adam",
        0.001,
        0,
        "breadth-first",
        "mid",
    )


def test_a_small_version_runs_and_counts_beads_with_the_endpoints(tmp_path) -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    data["dataset"].update(n_train=500, n_validation=100)
    data["steps"][0].update(pairs=[["init:1", "init:2"]], thresholds=[0.1])
    config = parse_config(data, "small.toml")
    run_pipeline(config, str(tmp_path / "s.zarr"), make_registry())
    ds = Store(str(tmp_path / "s.zarr")).open_step("dss-quadratic-fb2017", "dss").load()
    cell = ds.isel(pair=0, threshold=0)
    assert int(cell["connected"]) == 1
    assert int(cell["beads"]) >= 3  # θ1, the initial bead, θ2
    assert float(cell["endpoint_loss"].max()) <= 0.1
    assert np.isfinite(float(cell["length_norm"])) and float(cell["length_norm"]) >= 1.0
