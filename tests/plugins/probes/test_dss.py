"""Tests of the ``dss`` probe (Dynamic String Sampling, Freeman & Bruna 2017) and of
``permute-units`` and the Appendix E permutation task."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lossatlas.engine import Objective, make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.plugins.datasets.formula import Formula, FormulaOptions
from lossatlas.plugins.models.mlp import MLP
from lossatlas.plugins.probes import dss as dss_module
from lossatlas.plugins.probes.dss_string import (
    StringConfig,
    StringState,
    run_string,
    string_measures,
    train_beads,
)
from lossatlas.plugins.probes.permute_units import permute_units

COUNTEREXAMPLE = """
name = "ce"
seed = 0
dtype = "float64"
[model]
plugin = "permutation"
[dataset]
plugin = "permutation"
[[steps]]
name = "swapped"
probe = "permute-units"
at = "init"
[[steps]]
name = "dss"
probe = "dss"
pairs = [["init", "swapped"]]
thresholds = [0.2, 0.02]
bead_steps = 300
max_beads = 6
"""

QUADRATIC = """
name = "quad"
seed = 0
dtype = "float64"
[model]
plugin = "mlp"
hidden = [4, 4]
activation = "sigmoid"
[dataset]
plugin = "formula"
preset = "x-squared"
[[steps]]
name = "dss"
probe = "dss"
pairs = [["init:1", "init:2"]]
thresholds = [0.003]
train_endpoints = true
lr = 0.02
bead_steps = 3000
"""


def run(text: str, store: Path) -> Store:
    run_pipeline(parse_config(tomllib.loads(text)), str(store), make_registry(), progress=None)
    return Store(str(store))


def linear_objective(dtype: torch.dtype = torch.float64) -> Objective:
    """Linear regression of y = x² (a convex loss) on 50 points."""
    data = Formula().load(FormulaOptions(preset="x-squared", n_train=50, n_validation=20), 0)
    torch.manual_seed(0)
    return Objective(MLP(1, [], 1), data, dtype=dtype)


# ------------------------------------------------------------------- the algorithm


@pytest.mark.parametrize("strategy", ["greedy", "breadth-first"])
def test_convex_problem_connects_with_length_one_and_no_bead(strategy: str) -> None:
    obj = linear_objective()
    best = torch.linalg.lstsq(
        torch.cat([obj.splits["train"].inputs, torch.ones(50, 1, dtype=obj.dtype)], 1),
        obj.splits["train"].targets,
    ).solution.reshape(-1)
    L_best = float(obj.evaluate(best)["loss"][0])
    g = torch.Generator().manual_seed(1)
    # Two points of the sublevel set at 1.5·L_best, far apart.
    d = torch.randn(2, 2, generator=g, dtype=obj.dtype)
    pts = []
    for v in d:
        v = v / v.norm()
        lo, hi = 0.0, 10.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if obj.evaluate(best + mid * v)["loss"][0] <= 1.4 * L_best:
                lo = mid
            else:
                hi = mid
        pts.append(best + lo * v)
    cfg = StringConfig(threshold=1.5 * L_best, strategy=strategy)
    state = run_string(obj, pts[0], pts[1], cfg, seed=0)
    m = string_measures(obj, state, cfg)
    assert state.status == 0
    assert state.inserted == 0
    assert m["length_norm"] == pytest.approx(1.0, abs=1e-12)
    assert m["max_loss"] <= 1.5 * L_best


def test_barrier_is_found_and_a_bead_inserted() -> None:
    """Two solutions of the permutation task: connected above the 1/12 barrier, only
    through beads (the straight segment crosses it)."""
    reg = make_registry()
    from lossatlas.engine.context import StepContext

    config = parse_config(tomllib.loads(COUNTEREXAMPLE))
    ctx = StepContext(reg, config, config.step("dss"))
    obj = ctx.objective
    x = obj.x0
    y = permute_units(obj.layout, x, "", [0, 1])
    seg = obj.evaluate(x[None] + torch.linspace(0, 1, 33, dtype=x.dtype)[:, None] * (y - x))
    assert seg["loss"].max() > 1 / 12  # the straight path crosses det H = 0
    state = run_string(obj, x, y, StringConfig(threshold=0.2, bead_steps=300), seed=0)
    assert state.status == 0 and state.inserted >= 1


def test_step_cap_ends_a_bead_that_cannot_train() -> None:
    obj = linear_objective()
    x0 = obj.x0.unsqueeze(0)
    cfg = StringConfig(threshold=1e-9, bead_steps=37, check_every=5)  # below min loss
    _x, reached, steps, loss = train_beads(obj, x0, None, None, cfg, seed=0)
    assert not reached[0]
    assert steps[0] == 37
    assert np.isfinite(loss[0]) and loss[0] > 1e-9
    # In a string: the pair ends with reason 1 (bead failed), it does not loop.
    a = obj.x0.clone()
    b = a + 3.0
    la = float(obj.evaluate(torch.stack([a, b]))["loss"].max())
    state = run_string(
        obj,
        a,
        b,
        StringConfig(threshold=la * 1.01, alpha=0.999, bead_steps=5, check_every=1),
        seed=0,
    )
    assert state.status in (0, 1)


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [("max_beads", 0, 4), ("max_depth", 0, 3), ("min_segment", 2.0, 2)],
)
def test_budgets_end_the_string_with_their_reason(option: str, value: Any, reason: int) -> None:
    reg = make_registry()
    from lossatlas.engine.context import StepContext

    config = parse_config(tomllib.loads(COUNTEREXAMPLE))
    obj = StepContext(reg, config, config.step("dss")).objective
    y = permute_units(obj.layout, obj.x0, "", [0, 1])
    cfg = StringConfig(threshold=0.2, **{option: value})
    state = run_string(obj, obj.x0, y, cfg, seed=0)
    assert state.status == reason
    assert state.inserted == 0


def test_endpoint_above_threshold_is_reported() -> None:
    obj = linear_objective()
    a, b = obj.x0, obj.x0 + 5.0
    state = run_string(obj, a, b, StringConfig(threshold=1e-6), seed=0)
    assert state.status == 5


def test_hyperplane_constraint_and_spring_hold_the_bead_between_its_neighbours() -> None:
    obj = linear_objective()
    a = obj.x0.clone().unsqueeze(0)
    b = (obj.x0 + torch.tensor([1.0, -2.0], dtype=obj.dtype)).unsqueeze(0)
    mid = 0.5 * (a + b)
    n = (b - a) / (b - a).norm()
    start = mid + 0.3 * torch.tensor([[2.0, 1.0]], dtype=obj.dtype)
    cfg = StringConfig(threshold=1e-9, constrain="hyperplane", spring=0.1, bead_steps=50)
    x, *_ = train_beads(obj, start, a, b, cfg, seed=0)
    assert float(((x - mid) * n).sum()) == pytest.approx(0.0, abs=1e-10)
    free, *_ = train_beads(obj, start, a, b, StringConfig(threshold=1e-9, bead_steps=50), seed=0)
    assert abs(float(((free - mid) * n).sum())) > 1e-3  # unconstrained: leaves the plane


def test_string_measures_against_brute_force() -> None:
    obj = linear_objective()
    g = torch.Generator().manual_seed(3)
    beads = [torch.randn(2, generator=g, dtype=obj.dtype) for _ in range(4)]
    state = StringState(
        beads=beads,
        depth=[0, 1, 1, 0],
        bead_loss=[0.0] * 4,
        bead_steps=[0] * 4,
        ok=[True] * 3,
        seg_max=[0.0] * 3,
    )
    cfg = StringConfig(threshold=1.0, points=5)
    m = string_measures(obj, state, cfg)
    B = torch.stack(beads).numpy()
    length = sum(np.linalg.norm(B[i + 1] - B[i]) for i in range(3))
    assert m["length"] == pytest.approx(length, rel=1e-12)
    assert m["length_norm"] == pytest.approx(length / np.linalg.norm(B[3] - B[0]), rel=1e-12)
    # weights only: the first entry (the 1×1 weight), not the bias
    lw = sum(abs(B[i + 1, 0] - B[i, 0]) for i in range(3))
    assert m["length_norm_weights"] == pytest.approx(lw / abs(B[3, 0] - B[0, 0]), rel=1e-12)
    pts = np.concatenate(
        [B[i] + np.linspace(0, 1, 5)[:, None] * (B[i + 1] - B[i]) for i in range(3)]
    )
    want = obj.evaluate(torch.as_tensor(pts))["loss"].reshape(3, 5)
    np.testing.assert_allclose(m["path_loss"], want, rtol=1e-12)


# ------------------------------------------------------------- the probe, end to end


def test_counterexample_does_not_connect(tmp_path: Path) -> None:
    store = run(COUNTEREXAMPLE, tmp_path / "s.zarr")
    sw = store.open_step("ce", "swapped")
    assert float(sw["loss_after"]) == pytest.approx(float(sw["loss_before"]), abs=1e-12)
    assert float(sw["loss_before"]) < 1e-8
    # The stored copy is the source with the first hidden layer's units 0 and 1 swapped.
    # a nested list: stored as JSON text (netCDF takes flat arrays only)
    name, start, stop, shape = json.loads(sw.attrs["permuted_weight"])
    assert name.endswith("weight") and json.loads(sw.attrs["next_weight"])[1] == stop
    before = sw["source"].values[start:stop].reshape(shape)
    after = sw["point"].values[start:stop].reshape(shape)
    np.testing.assert_array_equal(after[[1, 0, *range(2, shape[0])]], before)
    assert not np.array_equal(after, before)
    ds = store.open_step("ce", "dss").load()
    conn = ds["connected"].values[0]
    reason = ds["reason"].values[0]
    # Above the 1/12 barrier of det H = 0 the pair connects; below it never does.
    assert conn.tolist() == [1, 0]
    assert reason[1] in (1, 2, 3, 4)
    assert float(ds["max_loss"].values[0, 1]) > 1 / 12
    assert float(ds["length_norm"].values[0, 0]) >= 1.0
    assert ds["connected_fraction"].values.tolist() == [1.0, 0.0]
    n = int(ds["beads_inserted"].values[0, 0]) + 2
    beads = ds["bead_params"].values[0, 0]
    assert np.isfinite(beads[:n]).all() and np.isnan(beads[n:]).all()
    np.testing.assert_allclose(beads[0], ds["bead_params"].values[0, 1, 0])
    # The figure is drawn from the stored Dataset alone.
    import matplotlib

    matplotlib.use("Agg")
    fig = dss_module.DSS().plot(ds)
    assert len(fig.axes) >= 4
    fig.savefig(tmp_path / "dss.png")
    assert (tmp_path / "dss.png").stat().st_size > 1000


def test_resuming_after_a_kill_gives_the_same_string(tmp_path: Path) -> None:
    whole = run(QUADRATIC, tmp_path / "whole.zarr").open_step("quad", "dss").load()
    n_whole = int(whole["beads_inserted"].values[0, 0])
    assert whole["connected"].values[0, 0] == 1 and n_whole >= 2

    seen: list[int] = []

    def kill_after_two(state: StringState) -> None:
        seen.append(state.inserted)
        if state.inserted == 2:
            raise KeyboardInterrupt("killed")

    path = tmp_path / "part.zarr"
    dss_module.BEAD_CALLBACKS.append(kill_after_two)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(QUADRATIC, path)
    finally:
        dss_module.BEAD_CALLBACKS.remove(kill_after_two)
    # The string is kept in the cell's scratch space, which the store keeps beside itself.
    side = Store(path).sidecar / "scratch" / "quad" / "dss"
    saved = torch.load(side / "pair0-threshold0" / "string.pt", weights_only=True)
    assert saved["beads"].shape[0] == 4  # θ1, two beads, θ2

    resumed_from: list[int] = []
    dss_module.BEAD_CALLBACKS.append(lambda st: resumed_from.append(st.inserted))
    try:
        part = run(QUADRATIC, path).open_step("quad", "dss").load()
    finally:
        dss_module.BEAD_CALLBACKS.pop()
    assert resumed_from and resumed_from[0] == 3  # continued from the third bead
    assert not side.exists()
    for name in ("bead_params", "bead_loss", "path_loss", "length_norm", "beads_inserted"):
        np.testing.assert_array_equal(part[name].values, whole[name].values, err_msg=name)


def test_an_unconnected_cell_says_so_and_keeps_the_failed_bead(tmp_path: Path) -> None:
    """The review: an unconnected cell stored length_norm = 1.0, beads_inserted = 0,
    train_steps = 0 — the numbers of a straight connection — and threw the failed bead
    away. Now its lengths are NaN and the failed bead's loss and steps are stored; bead
    counts include the endpoints (the paper's count) next to beads_inserted."""
    ds = run(COUNTEREXAMPLE, tmp_path / "s.zarr").open_step("ce", "dss").load()
    ok, bad = ds.isel(pair=0, threshold=0), ds.isel(pair=0, threshold=1)
    assert int(ok["connected"]) == 1 and int(bad["connected"]) == 0
    assert int(bad["reason"]) == 1  # bead-failed
    for name in ("length_norm", "length_norm_weights", "length"):
        assert np.isnan(float(bad[name])), name
        assert np.isfinite(float(ok[name])), name
    assert float(bad["failed_bead_loss"]) > 0.9 * 0.02  # it missed alpha·L0
    assert int(bad["failed_bead_steps"]) == 300  # the bead_steps cap
    assert np.isnan(float(ok["failed_bead_loss"]))
    assert int(ok["beads"]) == int(ok["beads_inserted"]) + 2 >= 3
    assert int(bad["beads"]) == int(bad["beads_inserted"]) + 2
    assert float(ds["beads_mean"].sel(threshold=0.2)) == int(ok["beads"])
    assert float(ds["beads_inserted_mean"].sel(threshold=0.2)) == int(ok["beads_inserted"])
    assert "endpoints" in ds["beads"].attrs["description"]
    assert "NaN for an unconnected pair" in ds["length_norm"].attrs["description"]
    assert int(ds["cell_status"].max()) == 1  # NaN lengths are results, not 'nonfinite'


def test_initial_beads_start_the_string_as_the_authors_code_does() -> None:
    """initial_beads = 1: one trained midpoint bead before any segment is checked
    (LaunchScripts/QUADRATICS.py: WeightString(…, numbeads=1)); endpoint_alpha sets
    where trained endpoints stop."""
    obj = linear_objective()
    best = torch.linalg.lstsq(
        torch.cat([obj.splits["train"].inputs, torch.ones(50, 1, dtype=obj.dtype)], 1),
        obj.splits["train"].targets,
    ).solution.reshape(-1)
    L = float(obj.evaluate(best)["loss"][0])
    a, b = (
        best + torch.tensor([0.3, 0.0], dtype=obj.dtype),
        best - torch.tensor([0.3, 0.0], dtype=obj.dtype),
    )
    top = float(obj.evaluate(torch.stack([a, b]))["loss"].max())
    cfg = StringConfig(threshold=1.05 * top, initial_beads=1, bead_steps=500)
    state = run_string(obj, a, b, cfg, seed=0)
    assert state.status == 0 and state.inserted == 1 and len(state.beads) == 3
    assert state.depth[1] == 1 and state.bead_loss[1] <= cfg.target
    none = run_string(obj, a, b, StringConfig(threshold=1.05 * top), seed=0)
    assert len(none.beads) == 2  # convex: no bead needed without the initial one
    far = best + 2.0
    cfg = StringConfig(
        threshold=2 * L, train_endpoints=True, endpoint_alpha=1.0, alpha=0.5, bead_steps=4000
    )
    state = run_string(obj, far, best, cfg, seed=0)
    assert cfg.target < state.bead_loss[0] <= 2 * L  # stopped at 1.0·L0, not at 0.5·L0


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    from lossatlas.engine import ConfigError

    bad = COUNTEREXAMPLE.replace('pairs = [["init", "swapped"]]', 'pairs = [["init", "nope"]]')
    with pytest.raises(ConfigError, match="names no earlier step"):
        run(bad, tmp_path / "a.zarr")
    bad = COUNTEREXAMPLE.replace("thresholds = [0.2, 0.02]", "thresholds = [-1.0]")
    with pytest.raises(ConfigError, match="thresholds"):
        run(bad, tmp_path / "b.zarr")


def test_permute_units_keeps_the_function_of_a_deeper_mlp() -> None:
    data = Formula().load(FormulaOptions(preset="x-cubed"), 0)
    torch.manual_seed(0)
    obj = Objective(MLP(1, [4, 5], 1, "sigmoid"), data, dtype=torch.float64)
    x = obj.x0 + 0.1 * torch.randn(obj.D, dtype=obj.dtype)
    for layer, units in (("1", [0, 3]), ("3", [4, 1, 2])):
        y = permute_units(obj.layout, x, layer, units)
        assert not torch.equal(x, y)
        out_x = obj._forward(x, data.train.inputs.double())
        out_y = obj._forward(y, data.train.inputs.double())
        torch.testing.assert_close(out_x, out_y, rtol=0, atol=1e-14)
    assert math.isfinite(float(obj.loss(x)))
