"""trajectory probe: the α/β projection against brute force, the deep-linear toy's
real surface, the control plane, plot."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.plugins.probes.trajectory import Trajectory, project_trajectory


def test_projection_against_brute_force():
    rng = np.random.default_rng(0)
    T = np.cumsum(rng.normal(size=(30, 50)), axis=0)
    start, end = T[0], T[-1]
    alpha, beta, V, u = project_trajectory(T, start, end)
    for t in range(len(T)):
        d = T[t] - start
        # α: the coordinate along u; β: the distance from the line, by least squares
        c = np.linalg.lstsq((end - start)[:, None], d, rcond=None)[0][0]
        assert alpha[t] == pytest.approx(c * np.linalg.norm(end - start), rel=1e-10)
        assert beta[t] == pytest.approx(np.linalg.norm(d - c * (end - start)), abs=1e-9)
        np.testing.assert_allclose(start + alpha[t] * u + beta[t] * V[t], T[t], atol=1e-9)
    assert alpha[0] == 0 and beta[0] == 0 and beta[-1] == pytest.approx(0, abs=1e-9)
    assert np.abs(V[1:-1] @ u).max() < 1e-10


TOY = """
name = "toy"
seed = 0
dtype = "float64"
[model]
plugin = "deep-linear"
init = [0.1, 0.05]
[dataset]
plugin = "deep-linear"
[[steps]]
name = "train"
probe = "train"
lr = 0.1
epochs = 40
batch_size = 0
record_every = 2
[[steps]]
name = "traj"
probe = "trajectory"
grid = 9
control_grid = 7
surface = "{surface}"
"""


@pytest.mark.parametrize("surface", ["paper", "plane"])
def test_deep_linear_toy(tmp_path, surface):
    cfg = parse_config(tomllib.loads(TOY.format(surface=surface)))
    path = tmp_path / "s.zarr"
    run_pipeline(cfg, str(path), make_registry(), progress=None)
    store = Store(path)
    ds = store.open_step("toy", "traj").load()
    tr = store.open_step("toy", "train").load()
    # the start is exactly the configured one (not float32-rounded), and training is
    # plain gradient descent on (1 − w1·w2)², by hand
    assert tr["initial"].values.tolist() == [0.1, 0.05]
    hand = [np.array([0.1, 0.05])]
    for _ in range(40):
        w1, w2 = hand[-1]
        r = 1 - w1 * w2
        hand.append(hand[-1] - 0.1 * np.array([-2 * r * w2, -2 * r * w1]))
    np.testing.assert_allclose(tr["trajectory"].values, np.stack(hand[::2]), rtol=1e-12)
    # trained to the hyperbola w1·w2 = 1
    w = tr["point"].values
    assert w[0] * w[1] == pytest.approx(1.0, abs=1e-3)
    # the real surface over (w1, w2) is (1 − w1·w2)²
    W1, W2 = np.meshgrid(ds["w1"].values, ds["w2"].values, indexing="ij")
    np.testing.assert_allclose(
        ds["weights_train_loss"].values, (1 - W1 * W2) ** 2, rtol=1e-12, atol=1e-14
    )
    np.testing.assert_array_equal(ds["traj_w1"].values, tr["trajectory"].values[:, 0])
    # α runs from 0 to ‖θ_f − θ_i‖, β starts and ends at 0
    assert ds["traj_alpha"].values[0] == 0
    assert ds["traj_alpha"].values[-1] == pytest.approx(float(ds["distance"]), rel=1e-12)
    assert ds["traj_beta"].values[-1] == pytest.approx(0, abs=1e-12)
    assert float(ds["max_residual"]) == ds["traj_beta"].values.max()
    assert 0 < float(ds["max_residual"]) < float(ds["max_norm"])
    np.testing.assert_allclose(
        ds["traj_train_loss"].values, (1 - tr["trajectory"].values.prod(axis=1)) ** 2, rtol=1e-12
    )
    # the surface on the β = 0 line is the interpolation init → solution
    a = ds["alpha"].values
    u = (w - tr["initial"].values) / float(ds["distance"])
    on_line = tr["initial"].values[None, :] + a[:, None] * u[None, :]
    b0 = np.argmin(np.abs(ds["beta"].values))
    if ds["beta"].values[b0] == 0:
        np.testing.assert_allclose(
            ds["surface_train_loss"].values[:, b0], (1 - on_line.prod(axis=1)) ** 2, rtol=1e-10
        )
    # the control plane passes through the solution
    assert ds["control_a"].values[-1] == 0 and ds["control_b"].values[-1] == 0
    assert ds["control_train_loss"].shape == (7, 7)
    fig = Trajectory().plot(ds, logy=True)
    assert len([ax for ax in fig.axes if ax.get_visible()]) >= 4
    fig.savefig(tmp_path / "t.png")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("surface", ["paper", "plane"])
def test_surface_against_brute_force(tmp_path, surface, dtype):
    text = TOY.format(surface=surface).replace('"float64"', f'"{dtype}"')
    cfg = parse_config(tomllib.loads(text))
    path = tmp_path / "s.zarr"
    run_pipeline(cfg, str(path), make_registry(), progress=None)
    store = Store(path)
    ds = store.open_step("toy", "traj").load()
    tr = store.open_step("toy", "train").load()
    T, start, end = (tr[k].values.astype(np.float64) for k in ("trajectory", "initial", "point"))
    dist = np.linalg.norm(end - start)
    u = (end - start) / dist
    alpha = [(t - start) @ u for t in T]
    resid = [t - start - a * u for t, a in zip(T, alpha, strict=True)]
    beta = [np.linalg.norm(r) for r in resid]
    # points off the line, beyond rounding (the ends, and the last steps of gradient
    # descent whose residual is ~1e-12, have no trustworthy direction); the directions
    # of the others agree to ~1e-16/(1e-7) between two ways of computing them
    size = max(dist, np.linalg.norm(start), np.linalg.norm(end))
    off = [j for j in range(len(T)) if beta[j] > 1e-7 * size]
    assert off and 0 not in off and len(T) - 1 not in off
    A, B = ds["alpha"].values, ds["beta"].values
    expected = np.empty((len(A), len(B)))
    for k, a in enumerate(A):
        if surface == "paper":  # the residual direction of the nearest point in α
            j = min(off, key=lambda j: abs(alpha[j] - a))
        else:  # one plane: the direction of the largest residual
            j = max(off, key=lambda j: beta[j])
        v = resid[j] / beta[j]
        for m, b in enumerate(B):
            w = start + a * u + b * v
            expected[k, m] = (1 - w[0] * w[1]) ** 2
    tol = {"float64": 1e-8, "float32": 1e-5}[dtype]
    np.testing.assert_allclose(ds["surface_train_loss"].values, expected, rtol=tol, atol=tol**1.5)
    # every α column is a line in a real direction: the loss changes along β
    assert np.all(np.ptp(ds["surface_train_loss"].values, axis=1) > 0)


def test_bad_trajectory_sources(tmp_path):
    from lossatlas.engine import ConfigError

    def go(text, sub):
        (tmp_path / sub).mkdir()
        cfg = parse_config(tomllib.loads(text))
        run_pipeline(cfg, str(tmp_path / sub / "s.zarr"), make_registry(), progress=None)

    text = TOY.format(surface="paper")
    with pytest.raises(ConfigError, match="took no optimizer steps"):
        go(text.replace("epochs = 40", "epochs = 0"), "a")
    with pytest.raises(ConfigError, match="names a variable"):
        go(text.replace('probe = "trajectory"', 'probe = "trajectory"\nof = "train.point"'), "b")
    with pytest.raises(ConfigError, match="not a train step"):
        go(
            text.replace(
                'probe = "trajectory"',
                'probe = "interpolation"\nzoom_points = 0\n[[steps]]\nname = "t2"\n'
                'probe = "trajectory"\nof = "traj"',
            ).replace('grid = 9\ncontrol_grid = 7\nsurface = "paper"\n', ""),
            "c",
        )


def test_a_run_that_stopped_early_ends_at_its_solution(tmp_path):
    text = TOY.format(surface="paper").replace(
        "record_every = 2", "record_every = 4\ntarget_loss = 1e-5"
    )
    cfg = parse_config(tomllib.loads(text))
    run_pipeline(cfg, str(tmp_path / "s.zarr"), make_registry(), progress=None)
    store = Store(tmp_path / "s.zarr")
    tr = store.open_step("toy", "train").load()
    ds = store.open_step("toy", "traj").load()
    steps = int(tr["steps"])
    assert steps < 40 and steps % 4  # stopped between two planned snapshots
    assert int(ds["record"].values[-1]) == steps
    np.testing.assert_array_equal(ds["traj_w1"].values[-1], tr["point"].values[0])
    assert ds["traj_alpha"].values[-1] == pytest.approx(float(ds["distance"]), rel=1e-12)
    assert ds["traj_beta"].values[-1] == pytest.approx(0, abs=1e-12)


MLP_PATH = """
name = "mlp"
seed = 0
dtype = "float64"
[model]
plugin = "mlp"
hidden = [4]
[dataset]
plugin = "digits"
limit = 120
[[steps]]
name = "train"
probe = "train"
lr = 0.2
momentum = 0.9
epochs = 3
batch_size = 32
record_every = 1
[[steps]]
name = "traj"
probe = "trajectory"
grid = 7
control = false
surface = "{surface}"
"""


@pytest.mark.parametrize("surface", ["paper", "plane"])
def test_the_path_is_on_the_surface_grid(tmp_path, surface):
    """Every recorded (α(t), β(t)) is a node of the (α, β) grid. On the paper's surface
    that node is θ(t) itself: its loss is the path's own; on a plane it is θ(t)'s
    projection θ_i + α(t)u + ((θ(t) − θ_i)·v)v, by hand."""
    cfg = parse_config(tomllib.loads(MLP_PATH.format(surface=surface)))
    path = tmp_path / "s.zarr"
    run_pipeline(cfg, str(path), make_registry(), progress=None)
    store = Store(path)
    ds = store.open_step("mlp", "traj").load()
    tr = store.open_step("mlp", "train").load()
    a, b = ds["traj_alpha"].values, ds["traj_surface_beta"].values
    assert len(a) == 3 * 3 + 1  # 3 epochs of 3 steps, every step recorded
    node = ds["surface_train_loss"].sel(alpha=xr_points(a), beta=xr_points(b)).values
    np.testing.assert_array_equal(node, ds["surface_path_train_loss"].values)
    np.testing.assert_array_equal(
        ds["surface_validation_loss"].sel(alpha=xr_points(a), beta=xr_points(b)).values,
        ds["surface_path_validation_loss"].values,
    )
    if surface == "paper":
        assert ds["on_surface"].values.all()
        np.testing.assert_allclose(node, ds["traj_train_loss"].values, rtol=1e-10)
        np.testing.assert_array_equal(b, ds["traj_beta"].values)
        return
    from lossatlas.engine.context import StepContext

    T, start, end = (tr[k].values for k in ("trajectory", "initial", "point"))
    u = (end - start) / np.linalg.norm(end - start)
    R = T - start - ((T - start) @ u)[:, None] * u
    v = R[np.argmax(np.linalg.norm(R, axis=1))]
    v /= np.linalg.norm(v)
    np.testing.assert_allclose(b, (T - start) @ v, rtol=1e-10, atol=1e-12)
    proj = start + a[:, None] * u + b[:, None] * v
    obj = StepContext(make_registry(), cfg, cfg.step("traj")).objective
    np.testing.assert_allclose(node, obj.evaluate_both(proj)["train_loss"], rtol=1e-10)
    on = np.linalg.norm(R - ((R @ v)[:, None] * v), axis=1) < 1e-7 * np.linalg.norm(end)
    np.testing.assert_array_equal(ds["on_surface"].values, on)
    assert 0 < on.sum() < len(on)  # the ends and the largest residual's point, not the rest


def xr_points(values):
    import xarray as xr

    return xr.DataArray(values, dims="record")


def test_path_nodes_off_keeps_the_regular_grid(tmp_path):
    text = MLP_PATH.format(surface="paper") + "path_nodes = false\n"
    cfg = parse_config(tomllib.loads(text))
    run_pipeline(cfg, str(tmp_path / "s.zarr"), make_registry(), progress=None)
    ds = Store(tmp_path / "s.zarr").open_step("mlp", "traj")
    assert ds.sizes["alpha"] == ds.sizes["beta"] == 7
    assert "on_surface" not in ds and "surface_path_train_loss" not in ds
    Trajectory().plot(ds.load())
