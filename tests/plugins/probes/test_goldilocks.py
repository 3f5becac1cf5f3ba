"""goldilocks probe: end to end on digits, each stored number checked by brute force."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch
from torch.func import hessian

from lossatlas.engine import ConfigError, LossAtlasError, make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.geometry import draw_init, init_radius, layer_metric
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.engine.sweep import cell_seed
from lossatlas.plugins.probes.goldilocks import hessian_stats
from lossatlas.plugins.subspaces.hyperplane import make_basis

CONFIG = """
name = "g"
seed = 3
dtype = "float64"
[model]
plugin = "mlp"
hidden = [8]
[dataset]
plugin = "digits"
limit = 200
[[steps]]
name = "zone"
probe = "goldilocks"
radius_min = 0.1
radius_max = 10.0
radii = 3
dims = [3, 6]
samples = 2
basis = "{basis}"
eigenvalues = true
directions = "{directions}"
"""


def _run(tmp_path, text):
    cfg = parse_config(tomllib.loads(text))
    path = str(tmp_path / "s.zarr")
    run_pipeline(cfg, path, make_registry(), progress=None)
    return cfg, Store(path).open_step(cfg.name, cfg.steps[0].name)


@pytest.mark.parametrize(
    ("basis", "directions", "metric", "init"),
    [
        ("dense", "all", False, "xavier"),
        ("sparse-fort", "weights", False, "xavier"),
        ("sparse-chang", "all", True, "he"),
    ],
)
def test_goldilocks_cells_match_brute_force(tmp_path, basis, directions, metric, init):
    text = CONFIG.format(basis=basis, directions=directions)
    text += f'metric = {str(metric).lower()}\ninit = "{init}"\n'
    cfg, ds = _run(tmp_path, text)
    from lossatlas.engine.context import StepContext

    ctx = StepContext(make_registry(), cfg, cfg.steps[0])
    obj = ctx.objective
    rx = init_radius(obj.layout)
    assert float(ds["r_xavier"]) == pytest.approx(rx)
    np.testing.assert_allclose(ds["radius"].values, np.geomspace(0.1, 10, 3) * rx)
    # recompute one cell from its seed: the point and plane come from cell.generator()
    ir, idim, isample = 2, 1, 1
    coords = {
        "radius": ds["radius"].values[ir].item(),
        "dim": int(ds["dim"].values[idim]),
        "sample": isample,
    }
    g = torch.Generator().manual_seed(cell_seed(cfg.seed, "zone", coords))
    x = draw_init(obj.layout, g, scheme=init, radius=coords["radius"])
    assert float(obj.layout.radius(x)) == pytest.approx(coords["radius"])
    support = obj.layout.mask("weight") if directions == "weights" else None
    eta = layer_metric(obj.layout, init) if metric else None
    M = make_basis(obj.D, 6, g, basis, eta=eta, support=support)
    Md = M.to_dense() if M.layout != torch.strided else M
    if support is not None:
        assert float(Md[~support].abs().max()) == 0.0
    f = obj.function()
    H = hessian(lambda t: f(x + Md @ t))(torch.zeros(6, dtype=torch.float64))
    eig = torch.linalg.eigvalsh(H)
    cell = ds.isel(radius=ir, dim=idim, sample=isample)
    assert float(cell["trace"]) == pytest.approx(float(eig.sum()), rel=1e-8)
    assert float(cell["norm"]) == pytest.approx(float(H.norm()), rel=1e-8)
    t = float(ds.attrs["flat_tol"]) * float(eig.abs().max())
    assert float(ds.attrs["flat_tol"]) == 1e-9  # float64
    assert float(cell["frac_positive"]) == pytest.approx(float((eig > t).double().mean()))
    assert float(cell["frac_negative"]) == pytest.approx(float((eig < -t).double().mean()))
    assert float(cell["frac_flat"]) == pytest.approx(float((eig.abs() <= t).double().mean()))
    assert float(cell["ratio"]) == pytest.approx(float(eig.sum() / H.norm()), rel=1e-8)
    np.testing.assert_allclose(cell["eigenvalues"].values[:6], eig.numpy(), rtol=1e-7, atol=1e-12)
    assert np.isnan(ds["eigenvalues"].isel(dim=0).values[..., 3:]).all()
    assert float(cell["train_loss"]) == pytest.approx(float(f(x)), rel=1e-10)
    # summaries
    np.testing.assert_allclose(ds["ratio_mean"].values, ds["ratio"].mean("sample").values)
    assert ds["peak_radius"].dims == ("dim",)
    assert ds.attrs["radius_over"] == "weights"


def test_hessian_stats_counts():
    st = hessian_stats(torch.diag(torch.tensor([3.0, -1.0, 2.0, 0.5])))
    assert st["trace"] == pytest.approx(4.5)
    assert st["n_positive"] == 3 and st["frac_positive"] == 0.75
    assert st["n_negative"] == 1 and st["n_flat"] == 0
    assert st["ratio"] == pytest.approx(4.5 / np.sqrt(9 + 1 + 4 + 0.25))


def test_a_null_space_is_flat_not_positive_or_negative():
    """A PSD H_d with an exact null space, rotated so rounding gives its zero eigenvalues
    either sign (±1e-17): they are flat, not a fraction of them positive (float64)."""
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    lam = torch.tensor([0.0] * 5 + [0.5, 1, 2, 3, 4, 5, 6], dtype=torch.float64)
    H = (Q * lam) @ Q.T
    raw = torch.linalg.eigvalsh(0.5 * (H + H.T))[:5]
    assert (raw != 0).any()  # rounding really does give them signs
    st = hessian_stats(H)
    assert (st["n_positive"], st["n_negative"], st["n_flat"]) == (7, 0, 5)
    assert st["flat_tol"] == 1e-9
    st32 = hessian_stats(H.float())
    assert st32["flat_tol"] == 1e-5 and st32["n_flat"] == 5


def test_dim_larger_than_model_is_refused(tmp_path):
    text = CONFIG.format(basis="dense", directions="all").replace(
        "dims = [3, 6]", "dims = [100000]"
    )
    with pytest.raises(LossAtlasError, match="dim=100000 > D"):
        _run(tmp_path, text)


def test_dim_larger_than_the_weights_is_refused_before_writing(tmp_path):
    # hidden = [8]: 64·8 + 8·10 = 592 weights of D = 610 parameters
    text = CONFIG.format(basis="dense", directions="weights").replace(
        "dims = [3, 6]", "dims = [3, 600]"
    )
    with pytest.raises(
        LossAtlasError, match=r"dim=600 > 592, the model's weight coordinates \(of D=610"
    ):
        _run(tmp_path, text)
    assert not (tmp_path / "s.zarr").exists()


def test_inverted_nnz_range_is_a_config_error(tmp_path):
    text = CONFIG.format(basis="sparse-fort", directions="all") + "nnz_min = 50\nnnz_max = 10\n"
    with pytest.raises(ConfigError, match="nnz_min=50 > nnz_max=10"):
        _run(tmp_path, text)
    assert not (tmp_path / "s.zarr").exists()


def test_bad_radii_are_config_errors(tmp_path):
    text = CONFIG.format(basis="dense", directions="all").replace(
        "radius_min = 0.1", "radius_min = 20.0"
    )
    with pytest.raises(ConfigError, match="radius_min"):
        _run(tmp_path, text)


def test_plot(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from lossatlas.plugins.probes.goldilocks import Goldilocks, plot_compare

    text = CONFIG.format(basis="sparse-chang", directions="all").replace(
        "dims = [3, 6]", "dims = [3]"
    )
    _, ds = _run(tmp_path, text)  # a single d: finalize must still find the peak
    assert ds["peak_radius"].shape == (1,) and np.isfinite(ds["peak_radius"]).all()
    fig = Goldilocks().plot(ds)
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
    fig = plot_compare({"a": ds, "b": ds})
    np.testing.assert_allclose(fig.axes[1].lines[0].get_xdata(), ds["radius_relative"].values)


def test_cli_plots_several_results_on_one_figure(tmp_path):
    """``lossatlas plot STORE A B`` draws seed 000 Fig. 4 from two architectures."""
    from click.testing import CliRunner

    from lossatlas.engine.cli import cli

    text = CONFIG.format(basis="dense", directions="all").replace("dims = [3, 6]", "dims = [3]")
    store = tmp_path / "s.zarr"
    for name, hidden in (("narrow", "[8]"), ("deep", "[8, 8]")):
        t = text.replace('name = "g"', f'name = "{name}"').replace(
            "hidden = [8]", f"hidden = {hidden}"
        )
        run_pipeline(parse_config(tomllib.loads(t)), str(store), make_registry(), progress=None)
    out = tmp_path / "fig4.png"
    result = CliRunner().invoke(
        cli, ["plot", str(store), "narrow/zone", "deep/zone", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000
    # A probe that draws one result at a time says so in one line.
    for name in ("line", "line2"):
        header = text.split("[[steps]]")[0].replace('"g"', f'"{name}"')
        t = header + '[[steps]]\nname = "l"\nprobe = "random-line"\n'
        run_pipeline(parse_config(tomllib.loads(t)), str(store), make_registry(), progress=None)
    result = CliRunner().invoke(cli, ["plot", str(store), "line/l", "line2/l", "-o", str(out)])
    assert result.exit_code == 2 and "draws one result at a time" in result.output
    result = CliRunner().invoke(cli, ["plot", str(store), "line/l", "deep/zone", "-o", str(out)])
    assert result.exit_code == 2 and "results of different probes" in result.output
