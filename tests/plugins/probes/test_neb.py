"""neb probe: the band's geometry (redistribution, tangents, insertion), the deep-linear
hyperbola (the band finds the valley the chord cuts across), a digits pipeline, the
plot and the paths."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch
from pairs import two_minima

from lossatlas.engine import DataBundle, Objective, Split, make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.plugins.probes.neb import (
    NEBOptions,
    _fill,
    _highest,
    distribute,
    neb_tangent,
    run_neb,
)


def run(tmp_path, text):
    cfg = parse_config(tomllib.loads(text))
    path = str(tmp_path / "s.zarr")
    run_pipeline(cfg, path, make_registry(), progress=None)
    return cfg, Store(path)


def test_distribute_spaces_pivots_by_their_weights_along_the_chain() -> None:
    path = torch.tensor([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0], [3.0, 1.0]], dtype=torch.float64)
    # the chain is 4 long: equal weights put the pivots 4/3 and 8/3 along it
    out = distribute(path, torch.ones(3, dtype=torch.float64))
    assert torch.equal(out[0], path[0]) and torch.equal(out[-1], path[-1])
    expect = torch.tensor([[4 / 3, 0.0], [8 / 3, 0.0]], dtype=torch.float64)
    assert torch.allclose(out[1:-1], expect, atol=1e-12)
    out = distribute(path, torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64))
    expect = torch.tensor([[1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(out[1:-1], expect, atol=1e-12)


def test_the_tangent_points_to_the_higher_neighbour_and_is_a_unit_vector() -> None:
    path = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    up = neb_tangent(path, torch.tensor([0.0, 1.0, 2.0]), 1)
    assert torch.allclose(up, torch.tensor([0.0, 1.0], dtype=torch.float64))
    down = neb_tangent(path, torch.tensor([2.0, 1.0, 0.0]), 1)
    assert torch.allclose(down, torch.tensor([1.0, 0.0], dtype=torch.float64))
    peak = neb_tangent(path, torch.tensor([0.0, 3.0, 1.0]), 1)  # a maximum: a mix
    assert peak.norm() == pytest.approx(1.0) and peak[0] > 0 and peak[1] > 0


def test_insertion_where_the_loss_rises_above_the_pivots() -> None:
    path = torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64)
    weights = torch.tensor([0.5, 0.5], dtype=torch.float64)
    # 3 sub-points per segment: a bump in the second segment only
    dense = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0])
    where = _highest(dense, np.array([0.0, 0.0, 1.0]), 3, 2, 0.1)
    assert where[0] == [] and where[1] == [0.5]
    new, w = _fill(path, weights, where)
    assert torch.allclose(new[:, 0], torch.tensor([0.0, 1.0, 1.5, 2.0], dtype=torch.float64))
    assert torch.allclose(w, torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64))


HYPERBOLA = """
name = "h"
seed = 0
dtype = "float64"
[model]
plugin = "deep-linear"
[dataset]
plugin = "deep-linear"
[[steps]]
name = "neb"
probe = "neb"
pairs = [["checkpoint:{a}", "checkpoint:{b}"]]
pivots = 5
cycles = 3
steps = 300
lr = 0.01
momentum = 0.0
batch_size = 0
"""


def test_on_the_deep_linear_hyperbola_the_band_finds_the_valley(tmp_path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    for path, (w1, w2) in ((a, (4.0, 0.25)), (b, (0.25, 4.0))):
        torch.save(
            {"layers.0.weight": torch.tensor([[w1]]), "layers.1.weight": torch.tensor([[w2]])},
            path,
        )
    _cfg, store = run(tmp_path, HYPERBOLA.format(a=a, b=b))
    ds = store.open_step("h", "neb").load()
    chord = float(ds["linear_train_loss_barrier"][0])
    band = float(ds["train_loss_barrier"][0])
    assert chord == pytest.approx(12.36, abs=0.05)
    assert band < 0.01 * chord
    # the pivots lie near the hyperbola w1·w2 = 1
    k = int(ds["pivot_count"][0])
    piv = ds["pivots"].values[0, :k]
    assert k == 11 and np.all(np.abs(piv[:, 0] * piv[:, 1] - 1) < 1e-6)
    assert np.all(np.diff(ds["cycle_saddle"].values[0]) <= 1e-12)  # never worse


DIGITS = (
    two_minima("r")
    + """
[[steps]]
name = "neb"
probe = "neb"
pairs = [["a", "b"]]
pivots = 2
cycles = 2
insert = 1
steps = 20
sub_pivots = 3
spring = {spring}
"""
)


@pytest.mark.parametrize("spring", ["inf", "5.0"])
def test_a_digits_band_lowers_the_barrier_and_draws(tmp_path, spring: str) -> None:
    import matplotlib.pyplot as plt

    _cfg, store = run(tmp_path, DIGITS.format(spring=spring))
    ds = store.open_step("r", "neb").load()
    assert int(ds["diverged"][0]) == 0
    k = int(ds["pivot_count"][0])
    assert 4 <= k <= 5
    assert np.all(np.isnan(ds["pivots"].values[0, k:]))
    assert float(ds["train_loss_barrier"][0]) < float(ds["linear_train_loss_barrier"][0])
    assert float(ds["length_norm"][0]) >= 1.0
    pos = ds["position"].values[0]
    n = (k - 1) * 4 + 1
    assert pos[0] == 0.0 and pos[n - 1] == pytest.approx(1.0) and np.all(np.isnan(pos[n:]))
    probe = make_registry().get("probe", "neb")
    fig = probe.plot(ds)
    plt.close(fig)
    (path,) = probe.paths(ds)
    assert len(path.position) == n and path.kind == "neb"
    assert path.barrier == pytest.approx(float(ds["train_loss_barrier"][0]))


def _small_band() -> tuple[Objective, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    X = torch.randn(40, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    data = DataBundle(Split(X, y), Split(X[:12], y[:12]), "classification", 3)
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    obj = Objective(model, data, dtype=torch.float64)
    w0 = obj.x0.clone()
    return obj, w0, w0 + 0.5 * torch.randn(obj.D, dtype=torch.float64)


def test_a_model_vmap_cannot_batch_is_tried_once_then_looped(monkeypatch) -> None:
    """Where vmap fails, the band falls back to one pivot at a time for the rest of the
    run (not a failing vmap on every step), and finds the same chain."""
    obj, w0, w1 = _small_band()
    o = NEBOptions(pivots=2, cycles=2, insert=1, steps=6, batch_size=16, sub_pivots=2)
    fast = run_neb(obj, w0, w1, o, torch.Generator().manual_seed(0))
    tries = []

    def failing(f, *args, **kwargs):
        def batched(*a, **k):
            tries.append(1)
            raise RuntimeError("vmap: no batching rule")

        return batched

    monkeypatch.setattr(torch.func, "vmap", failing)
    slow = run_neb(obj, w0, w1, o, torch.Generator().manual_seed(0))
    assert len(tries) == 1  # 12 steps, one attempt
    torch.testing.assert_close(slow.path, fast.path, rtol=0, atol=1e-12)
    for k, v in fast.dense.items():
        np.testing.assert_allclose(slow.dense[k], v, rtol=1e-12, atol=0)


def test_the_validation_split_is_evaluated_for_the_final_chain_only() -> None:
    obj, w0, w1 = _small_band()
    o = NEBOptions(pivots=2, cycles=3, insert=1, steps=4, batch_size=16, sub_pivots=2)
    splits = []
    evaluate = obj.evaluate

    def counting(points, split="train", chunk=None):
        splits.append(split)
        return evaluate(points, split, chunk)

    obj.evaluate = counting
    res = run_neb(obj, w0, w1, o, torch.Generator().manual_seed(0))
    assert splits == ["train", "train", "train", "validation"]
    obj.evaluate = evaluate
    ref = obj.evaluate_both(res.dense_x)
    assert set(res.dense) == set(ref)
    for k, v in ref.items():
        assert np.array_equal(res.dense[k], v), k
    assert res.cycle_saddle[-1] == np.max(ref["train_loss"])
