"""engine/training.py: SGD/Adam on flat vectors, recording, stopping, subspaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossatlas.engine import DataBundle, Objective, Split, Subspace
from lossatlas.engine.training import minibatch_value_and_grad, train


def regression_objective(n: int = 40, d_in: int = 5, seed: int = 0) -> Objective:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    w = torch.randn(d_in, 1, generator=g, dtype=torch.float64)
    y = (X @ w).squeeze(1) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    data = DataBundle(Split(X, y), Split(X[:10], y[:10]), task="regression", n_outputs=1)
    torch.manual_seed(seed)
    model = torch.nn.Linear(d_in, 1)
    return Objective(model, data, dtype=torch.float64)


def classification_objective(seed: int = 0) -> Objective:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(60, 4, generator=g)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    data = DataBundle(
        Split(X[:45], y[:45]), Split(X[45:], y[45:]), task="classification", n_outputs=3
    )
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    return Objective(model, data, dtype=torch.float64)


def test_full_batch_sgd_is_gradient_descent():
    obj = regression_objective()
    x = obj.x0.clone()
    buf = torch.zeros_like(x)
    for _ in range(7):
        buf = 0.5 * buf + obj.grad(x)
        x = x - 0.05 * buf
    res = train(obj, obj.x0, lr=0.05, momentum=0.5, epochs=7)
    torch.testing.assert_close(res.x_final, x, rtol=1e-12, atol=1e-12)
    assert res.steps == 7 and not res.diverged and res.stopped == "epochs"


def test_minibatch_sgd_follows_seeded_permutations():
    obj = regression_objective()
    res = train(obj, obj.x0, lr=0.02, epochs=3, batch_size=16, seed=5)
    gen = torch.Generator().manual_seed(5)
    s = obj.splits["train"]
    x = obj.x0.clone()
    for _ in range(3):
        order = torch.randperm(len(s), generator=gen)
        for i in range(0, len(s), 16):
            idx = order[i : i + 16]
            _v, g = minibatch_value_and_grad(obj, x, s.inputs[idx], s.targets[idx])
            x = x - 0.02 * g
    torch.testing.assert_close(res.x_final, x, rtol=1e-12, atol=1e-12)
    assert res.steps == 9  # ceil(40/16) = 3 steps per epoch


def test_deterministic_for_a_seed_and_seed_matters():
    obj = classification_objective()
    a = train(obj, obj.x0, optimizer="adam", lr=0.01, epochs=2, batch_size=8, seed=1)
    b = train(obj, obj.x0, optimizer="adam", lr=0.01, epochs=2, batch_size=8, seed=1)
    c = train(obj, obj.x0, optimizer="adam", lr=0.01, epochs=2, batch_size=8, seed=2)
    assert torch.equal(a.x_final, b.x_final)
    assert not torch.equal(a.x_final, c.x_final)


def test_history_and_record():
    obj = classification_objective()
    res = train(obj, obj.x0, lr=0.5, epochs=4, batch_size=10, record_every=3)
    h = res.history
    assert set(h) >= {
        "train_loss",
        "validation_loss",
        "train_accuracy",
        "validation_accuracy",
        "radius",
        "step",
        "epoch",
    }
    assert all(len(v) == 5 for v in h.values())
    ev = obj.evaluate_both(obj.x0.unsqueeze(0))
    assert h["train_loss"][0] == ev["train_loss"][0]
    assert h["validation_accuracy"][0] == ev["validation_accuracy"][0]
    assert h["train_loss"][-1] < h["train_loss"][0]
    w = obj.layout.mask("weight")
    assert h["radius"][0] == pytest.approx(float(obj.x0[w].norm()))
    assert list(h["step"]) == [0, 5, 10, 15, 20]
    # step 0, every 3 steps, and the last step (20)
    assert list(res.record_steps) == [0, 3, 6, 9, 12, 15, 18, 20]
    assert res.trajectory.shape == (8, obj.D) and res.trajectory.dtype == np.float64
    np.testing.assert_array_equal(res.trajectory[0], obj.x0.numpy())
    np.testing.assert_array_equal(res.trajectory[-1], res.x_final.numpy())
    assert train(obj, obj.x0, epochs=1).trajectory is None


def test_divergence_is_a_result():
    obj = regression_objective()
    res = train(obj, obj.x0, lr=1e6, epochs=200)
    assert res.diverged and res.stopped == "diverged"
    assert res.steps < 200
    assert not np.isfinite(res.history["train_loss"][-1])
    # A blow-up on the very last step (finite parameters, loss overflowed) is divergence
    # too, although no later step sees it.
    last = train(obj, obj.x0, lr=1e6, epochs=res.steps)
    assert np.isfinite(last.x_final.numpy()).all()
    assert not np.isfinite(last.history["train_loss"][-1])
    assert last.diverged and last.stopped == "diverged"


def test_max_steps_and_target_loss():
    obj = regression_objective()
    res = train(obj, obj.x0, lr=0.01, epochs=50, batch_size=8, max_steps=7)
    assert res.steps == 7 and res.stopped == "max_steps"
    assert res.history["step"][-1] == 7
    full = train(obj, obj.x0, lr=0.1, epochs=500)
    target = float(full.history["train_loss"][20]) * (1 + 1e-9)
    res = train(obj, obj.x0, lr=0.1, epochs=500, target_loss=target)
    assert res.stopped == "target_loss" and res.steps == 20
    assert res.history["train_loss"][-1] <= target
    res = train(obj, obj.x0, lr=0.1, epochs=500, batch_size=8, target_loss=target, check_every=1)
    assert res.stopped == "target_loss"
    assert float(obj.loss(res.x_final)) <= target


def test_sphere_constraint_keeps_the_radius():
    obj = classification_objective()
    r0 = float(obj.x0.norm())

    def tangent(x, g):
        u = x / x.norm()
        return g - (g @ u) * u

    res = train(
        obj,
        obj.x0,
        lr=0.3,
        epochs=10,
        grad_transform=tangent,
        project=lambda x: x * (r0 / x.norm()),
    )
    assert float(res.x_final.norm()) == pytest.approx(r0, rel=1e-12)
    assert res.history["train_loss"][-1] < res.history["train_loss"][0]


@pytest.mark.parametrize("sparse", [False, True])
def test_subspace_training_is_gradient_descent_in_theta(sparse):
    obj = regression_objective()
    g = torch.Generator().manual_seed(3)
    M = torch.randn(obj.D, 2, generator=g, dtype=torch.float64)
    basis = M.to_sparse() if sparse else M
    sub = Subspace(origin=obj.x0.clone(), basis=basis)
    res = train(obj, None, lr=0.05, epochs=5, params_subspace=sub, record_every=1)
    theta = torch.zeros(2, dtype=torch.float64)
    for _ in range(5):
        theta = theta - 0.05 * (M.T @ obj.grad(obj.x0 + M @ theta))
    torch.testing.assert_close(res.theta_final, theta, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(res.x_final, obj.x0 + M @ theta, rtol=1e-10, atol=1e-12)
    assert res.trajectory.shape == (6, obj.D)


def test_bad_options_are_config_errors():
    from lossatlas.engine import ConfigError

    obj = regression_objective()
    with pytest.raises(ConfigError, match="optimizer"):
        train(obj, obj.x0, optimizer="rmsprop")
    with pytest.raises(ConfigError, match="lr"):
        train(obj, obj.x0, lr=0)


def test_loss_still_falling_is_the_last_quarter_s_share_of_the_decrease():
    from lossatlas.engine.training import loss_still_falling

    t = np.arange(21.0)  # 20 epochs: the last quarter is 5 epochs
    curves = np.stack(
        [
            2.3 - 0.1 * t,  # linear: share 5/20
            np.exp(-t / 5),  # converged early
            np.exp(-t / 10),
            2.3 + 0 * t,  # never moved
            2.3 + 0.1 * t,  # went up
            1e-3 * (2.3 - 0.1 * t),  # the linear one, 1000× smaller: scale-free
        ]
    )
    falling, share = loss_still_falling(curves)
    np.testing.assert_allclose(share[0], 0.25)
    np.testing.assert_allclose(share[1], (np.exp(-3) - np.exp(-4)) / (1 - np.exp(-4)))
    np.testing.assert_allclose(share[2], (np.exp(-1.5) - np.exp(-2)) / (1 - np.exp(-2)))
    assert np.isnan(share[3]) and np.isnan(share[4])
    np.testing.assert_allclose(share[5], 0.25)
    assert falling.tolist() == [True, False, True, False, False, True]
    # a window and a tolerance of one's own; leading dims are kept; no epochs: no flag
    falling, share = loss_still_falling(curves[None, :2], tol=0.3, window=10)
    assert falling.shape == (1, 2) and falling.tolist() == [[True, False]]
    np.testing.assert_allclose(share[0, 0], 0.5)
    falling, share = loss_still_falling(np.ones((3, 1)))
    assert not falling.any() and np.isnan(share).all()
    # a NaN at the end (a diverged run) is not "falling"
    bad = curves[:1].copy()
    bad[0, -1] = np.nan
    assert not loss_still_falling(bad)[0].any()
