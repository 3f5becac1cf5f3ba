"""The eigenpairs probe against the full Hessian (torch.func.hessian + eigh, float64)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.context import StepContext
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store


@pytest.mark.parametrize("which", ["LA", "SA", "both"])
def test_eigenpairs_match_the_full_hessian(tmp_path: Path, toml: Any, which: str) -> None:
    data = {
        "name": "e",
        "seed": 2,
        "dtype": "float64",
        "model": {"plugin": "mlp", "hidden": [5], "activation": "tanh"},
        "dataset": {"plugin": "digits", "limit": 150},
        "steps": [
            {"name": "eig", "probe": "eigenpairs", "k": 2, "which": which, "store_vectors": True}
        ],
    }
    cfg = parse_config(tomllib.loads(toml(data)))
    run_pipeline(cfg, str(tmp_path / "s.zarr"), make_registry())
    ds = Store(tmp_path / "s.zarr").open_step("e", "eig").load()
    ctx = StepContext(make_registry(), cfg, cfg.step("eig"))
    obj = ctx.objective
    H = torch.func.hessian(obj.function("train"))(obj.x0)
    ref = np.linalg.eigvalsh(H.numpy())
    want = {"LA": ref[-2:], "SA": ref[:2], "both": ref[[0, -1]]}[which]
    got = ds["eigenvalue"].values
    bounds = ds["error_bound"].values
    assert int(ds["converged"]) == 1 and int(ds["n_hvp"]) > 0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-8 * np.abs(ref).max())
    assert np.all(np.abs(got - want) <= bounds + 1e-12)
    V = ds["eigenvector"].values
    residual = V @ H.numpy() - got[:, None] * V
    np.testing.assert_allclose(np.linalg.norm(residual, axis=1), bounds, rtol=1e-3, atol=1e-12)


def test_eigenpairs_refuses_more_pairs_than_parameters(toml: Any) -> None:
    from lossatlas.engine import ConfigError

    data = {
        "name": "e",
        "model": {"plugin": "mlp", "hidden": [1]},
        "dataset": {"plugin": "digits", "limit": 50},
        "steps": [{"name": "eig", "probe": "eigenpairs", "k": 10_000}],
    }
    cfg = parse_config(tomllib.loads(toml(data)))
    ctx = StepContext(make_registry(), cfg, cfg.step("eig"))
    with pytest.raises(ConfigError, match="k = 10000"):
        ctx.probe.check(ctx.options, ctx)
