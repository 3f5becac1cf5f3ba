"""hessian-directions: eigenpairs vs a dense eigh, orthogonal maps, Table 2, plot."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch

from lossatlas.engine import ConfigError, LossAtlasError, make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store

CONFIG = """
name = "hd"
seed = 0
dtype = "float64"
[model]
plugin = "mlp"
hidden = [4]
[dataset]
plugin = "digits"
limit = 150
[[steps]]
name = "train"
probe = "train"
epochs = 5
batch_size = 0
lr = 0.5
record_every = 0
[[steps]]
name = "hd"
probe = "hessian-directions"
at = "train"
points = 5
span = 0.05
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):
    path = str(tmp_path_factory.mktemp("hd") / "s.zarr")
    cfg = parse_config(tomllib.loads(CONFIG))
    run_pipeline(cfg, path, make_registry(), progress=None)
    return cfg, path, Store(path).open_step("hd", "hd").load()


def test_eigenpairs_match_dense_eigh(result) -> None:
    cfg, path, ds = result
    from lossatlas.engine.context import StepContext

    ctx = StepContext(make_registry(), cfg, cfg.step("hd"), Store(path))
    x = ctx.resolve_point("train")
    H = ctx.objective.hessian(x).numpy()
    w, U = np.linalg.eigh(H)
    lam = ds["eigenvalues"].values
    np.testing.assert_allclose(lam, [w[-1], w[0]], rtol=1e-7)
    V = ds["eigenvectors"].values
    assert abs(abs(V[0] @ U[:, -1]) - 1) < 1e-6 and abs(abs(V[1] @ U[:, 0]) - 1) < 1e-6
    a = ds["eigenvalues"].attrs
    assert a["n_hvp"] > 0 and max(a["residuals"]) < 1e-6 and a["tol"] == 1e-9


def test_maps_are_centred_orthogonal_and_summarised(result) -> None:
    ds = result[2]
    assert np.all(np.abs(ds["direction_cosine"].values) < 1e-12)
    assert ds["alpha"].values[2] == 0 and ds["beta"].values[2] == 0
    # the centre of both maps is the trained point itself
    c = ds["train_loss"].values[:, 2, 2]
    assert c[0] == pytest.approx(c[1], rel=1e-12)
    assert float(ds["centre_train_loss"]) == pytest.approx(c[0], rel=1e-12)
    # Hessian map: δ = ‖x‖·v_max
    np.testing.assert_allclose(
        ds["direction_norm"].sel(map="hessian").values, float(ds["point_norm"]), rtol=1e-12
    )
    for k, m in enumerate(ds["map"].values):
        L = ds["train_loss"].sel(map=m).values
        i, j = np.unravel_index(np.argmin(L), L.shape)
        assert float(ds["min_train_loss"].values[k]) == L[i, j]
        assert float(ds["min_train_loss_alpha"].values[k]) == ds["alpha"].values[i]
        assert (
            float(ds["at_min_validation_loss"].values[k])
            == ds["validation_loss"].sel(map=m).values[i, j]
        )
        assert int(ds["min_off_centre"].values[k]) == int((i, j) != (2, 2))


def test_row_values_equal_single_point_evaluations(result) -> None:
    cfg, path, ds = result
    from lossatlas.engine.context import StepContext

    ctx = StepContext(make_registry(), cfg, cfg.step("hd"), Store(path))
    x = ctx.resolve_point("train")
    d = torch.as_tensor(ds["directions"].sel(map="random").values)
    a, b = ds["alpha"].values[0], ds["beta"].values[4]
    want = ctx.objective.evaluate(x + a * d[0] + b * d[1])["loss"][0]
    assert float(ds["train_loss"].sel(map="random").values[0, 4]) == pytest.approx(want, rel=1e-12)


def test_plot(result) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from lossatlas.plugins.probes.hessian_directions import HessianDirectionsProbe

    fig = HessianDirectionsProbe().plot(result[2])
    assert len(fig.axes) >= 4


def test_even_points_is_a_config_error(tmp_path) -> None:
    text = CONFIG.replace("points = 5", "points = 4")
    with pytest.raises(ConfigError, match="odd"):
        run_pipeline(
            parse_config(tomllib.loads(text)),
            str(tmp_path / "s.zarr"),
            make_registry(),
            progress=None,
        )


@pytest.mark.parametrize(
    ("lr", "match"),
    [
        ("1e12", "Hessian is zero here .*ReLU units dead"),  # a huge step kills every unit
        ("1e300", "the point 'train' has .*did its training diverge"),  # NaN/inf
    ],
)
def test_a_diverged_point_is_one_config_error_not_an_arpack_failure(
    tmp_path, lr: str, match: str
) -> None:
    text = CONFIG.replace("lr = 0.5", f"lr = {lr}")
    with pytest.raises(ConfigError, match=match):
        run_pipeline(
            parse_config(tomllib.loads(text)),
            str(tmp_path / "s.zarr"),
            make_registry(),
            progress=None,
        )
    train = Store(str(tmp_path / "s.zarr")).open_step("hd", "train")
    assert int(train["diverged"]) == (lr == "1e300")


PLANES = """
name = "pl"
seed = 0
dtype = "float64"
[model]
plugin = "mlp"
hidden = [4]
[dataset]
plugin = "digits"
limit = 120
[[steps]]
name = "a"
probe = "train"
epochs = 3
batch_size = 0
lr = 0.5
record_every = 0
[[steps]]
name = "b"
probe = "train"
from = "init:1"
epochs = 3
batch_size = 0
lr = 0.5
record_every = 0
[[steps]]
name = "c"
probe = "train"
from = "init:2"
epochs = 3
batch_size = 0
lr = 0.5
record_every = 0
[[steps]]
name = "maps"
probe = "hessian-directions"
at = "b"
points = 7
span = 1.5
maps = ["random"]
[steps.planes.models]
plugin = "three-points"
points = ["a", "b", "c"]
[steps.planes.mine]
plugin = "user-directions"
vectors = ["b.point", "c.point"]
normalize = "unit"
orthogonalize = true
"""


@pytest.fixture(scope="module")
def planes(tmp_path_factory: pytest.TempPathFactory):
    path = str(tmp_path_factory.mktemp("pl") / "s.zarr")
    cfg = parse_config(tomllib.loads(PLANES))
    run_pipeline(cfg, path, make_registry(), progress=None)
    return cfg, path, Store(path).open_step("pl", "maps").load()


def test_three_points_plane_passes_through_the_models(planes) -> None:
    _cfg, path, ds = planes
    store = Store(path)
    # raw basis: a at (0, 0), b at (1, 0), c at (0, 1); the axis is −1.5, −1, …, 1.5
    L = ds["train_loss"].sel(map="models").values
    for step, (i, j) in {"a": (3, 3), "b": (5, 3), "c": (3, 5)}.items():
        trained = float(store.open_step("pl", step).load()["train_loss"].values[-1])
        assert L[i, j] == pytest.approx(trained, rel=1e-10)
    # the plane is centred on a, not on x* = b; the other maps are centred on x*
    assert list(ds["origin_is_point"].values) == [1, 0, 1]
    assert ds.attrs["plane_models_model_coords"] == [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert ds.attrs["map_kinds"] == ["random-filter-normalized", "three-points", "user"]
    centre = ds["train_loss"].sel(map="random").values[3, 3]
    assert float(ds["centre_train_loss"]) == centre
    assert float(ds["train_loss"].sel(map="mine").values[3, 3]) == centre


def test_user_directions_plane_is_the_orthonormalised_vectors(planes) -> None:
    cfg, path, ds = planes
    from lossatlas.engine.context import StepContext

    ctx = StepContext(make_registry(), cfg, cfg.step("maps"), Store(path))
    x, b, c = (ctx.resolve_point(r).double() for r in ("b", "b.point", "c.point"))
    d = torch.as_tensor(ds["directions"].sel(map="mine").values)
    u = b / b.norm()
    w = c - (c @ u) * u
    w = w / w.norm()
    torch.testing.assert_close(d, torch.stack([u, w]) * x.norm(), rtol=1e-10, atol=1e-12)
    assert abs(float(ds["direction_cosine"].sel(map="mine"))) < 1e-12
    a, be = ds["alpha"].values[1], ds["beta"].values[6]
    want = ctx.objective.evaluate(x + a * d[0] + be * d[1])["loss"][0]
    assert float(ds["train_loss"].sel(map="mine").values[1, 6]) == pytest.approx(want, rel=1e-12)


def test_planes_plot_marks_the_models(planes) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from lossatlas.plugins.probes.hessian_directions import HessianDirectionsProbe

    fig = HessianDirectionsProbe().plot(planes[2])
    assert len(fig.axes) == 2 * 3 * 2  # 2 splits × 3 maps, each with a colour bar
    labels = [line.get_label() for ax in fig.axes for line in ax.get_lines()]
    assert labels.count("models") == 2 and labels.count("origin") == 2


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ('"c.point"]', '"c.point", "a.point"]', "has 3 directions; a 2-D map needs exactly 2"),
        ('plugin = "three-points"', 'plugin = "three-pts"', "three-pts"),
        ('points = ["a", "b", "c"]', 'points = ["a", "b", "zz"]', "'zz' names no earlier step"),
        ("[steps.planes.mine]", "[steps.planes.random]", "taken by a built-in map"),
        ('maps = ["random"]', "maps = []\nplanes = {}", "no map to draw"),
    ],
    ids=["three-directions", "unknown-plugin", "unknown-point", "name-clash", "no-maps"],
)
def test_bad_planes_are_one_config_error(tmp_path, old: str, new: str, match: str) -> None:
    text = PLANES.replace(old, new)
    if "planes = {}" in text:
        text = text[: text.index("[steps.planes.models]")]
    with pytest.raises(LossAtlasError, match=match):
        run_pipeline(
            parse_config(tomllib.loads(text)),
            str(tmp_path / "s.zarr"),
            make_registry(),
            progress=None,
        )


def test_an_unconverged_eigensolver_still_answers_with_its_bounds(tmp_path) -> None:
    """Capped at 30 HVPs per eigenpair with an unreachable tolerance, the step completes
    with the best Ritz pairs, converged = 0, and eigenvalues within their float64 error
    bounds of a dense eigh (the old solver raised after its restarts)."""
    text = CONFIG.replace("hidden = [4]", "hidden = [10]").replace(
        "span = 0.05", "span = 0.05\nmaxiter = 1\nmax_hvp = 30\ntol = 1e-14\nmaps = ['hessian']"
    )
    cfg = parse_config(tomllib.loads(text))
    path = str(tmp_path / "s.zarr")
    run_pipeline(cfg, path, make_registry(), progress=None)
    ds = Store(path).open_step("hd", "hd").load()
    a = ds["eigenvalues"].attrs
    assert a["converged"] == 0 and a["method"] == "lanczos"
    from lossatlas.engine.context import StepContext

    ctx = StepContext(make_registry(), cfg, cfg.step("hd"), Store(path))
    w = np.linalg.eigvalsh(ctx.objective.hessian(ctx.resolve_point("train")).numpy())
    bounds = np.asarray(a["error_bounds"])
    assert np.all(np.abs(ds["eigenvalues"].values - [w[-1], w[0]]) <= bounds + 1e-12)
    assert ds.attrs["shape"] in ("saddle", "minimum", "maximum", "degenerate")


def test_the_eigen_solve_runs_in_a_cell_once_and_is_stored(result, monkeypatch) -> None:
    """plan() solves nothing; the first cell that needs the Hessian plane solves and
    stores it in the step's scratch space; another process (a fresh context on the same
    store: a resumed run, a Dask worker) reads it back instead of solving again."""
    import lossatlas.engine.curvature as curvature
    from lossatlas.engine.context import StepContext
    from lossatlas.plugins.probes.hessian_directions import HessianDirectionsProbe

    cfg, path, ds = result
    calls = []
    real = curvature.hessian_directions
    monkeypatch.setattr(
        curvature, "hessian_directions", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    probe = HessianDirectionsProbe()

    def fresh() -> StepContext:
        return StepContext(make_registry(), cfg, cfg.step("hd"), Store(path))

    ctx = fresh()
    probe.plan(ctx.options, ctx)
    assert calls == []
    first = probe.plane(ctx.options, ctx, "hessian")
    second = probe.plane(ctx.options, fresh(), "hessian")
    assert len(calls) == 1
    np.testing.assert_array_equal(first["directions"], second["directions"])
    # the stored run's directions are these (the solve is deterministic)
    np.testing.assert_array_equal(second["directions"], ds["directions"].sel(map="hessian").values)
    Store(path).clear_scratch("hd", "hd")
