"""Drawing stored results: plot options (-O) checked and delivered, --dpi checked,
titles clear of the panels (or none), styles from --style and the config, errors in a
probe's plot naming the probe."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import pytest

from lossatlas.engine import ConfigError, make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.plotting import (
    check_dpi,
    parse_option_pairs,
    plot_options,
    remove_titles,
    result_figure,
    title_figure,
)
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store
from lossatlas.plugins.probes.random_line import RandomLine

matplotlib.use("Agg")

CONFIG = """
name = "p"
seed = 0
dtype = "float64"
{style}
[model]
plugin = "mlp"
hidden = [6]

[dataset]
plugin = "digits"
limit = 120

[[steps]]
name = "maps"
probe = "hessian-directions"
points = 3

[[steps]]
name = "line"
probe = "random-line"
points = 5
directions = 2
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plotting") / "s.zarr"
    config = parse_config(tomllib.loads(CONFIG.format(style='style = "ggplot"')))
    run_pipeline(config, str(path), make_registry(), progress=None)
    return path


def test_option_pairs_are_read_as_toml_values() -> None:
    assert parse_option_pairs(["metric=accuracy", "pair=1", "logy=true", "x=0.5", "s='a b'"]) == {
        "metric": "accuracy",
        "pair": 1,
        "logy": True,
        "x": 0.5,
        "s": "a b",
    }
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_option_pairs(["metric"])


def test_plot_options_are_checked_like_config_options() -> None:
    probe = make_registry().get("probe", "hessian-directions")
    assert plot_options(probe, {"metric": "accuracy"}) == {
        "logy": False,
        "metric": "accuracy",
        "levels": 30,
    }
    with pytest.raises(ConfigError, match=r"unknown option 'metrc' \(did you mean 'metric'\?\)"):
        plot_options(probe, {"metrc": "accuracy"})
    with pytest.raises(ConfigError, match="'metric': 'error' is not one of 'loss', 'accuracy'"):
        plot_options(probe, {"metric": "error"})
    with pytest.raises(ConfigError, match="needs 2 levels or more"):
        plot_options(probe, {"levels": 1})
    with pytest.raises(ConfigError, match="plot options of probe 'random-line': unknown option"):
        plot_options(make_registry().get("probe", "random-line"), {"metric": "accuracy"})


def test_dpi_is_checked() -> None:
    assert check_dpi(300) == 300
    for bad in (0, -5, 5000, 2.5, True):
        with pytest.raises(ConfigError, match="--dpi"):
            check_dpi(bad)


def test_o_reaches_the_probe_and_unknown_keys_are_refused(
    store: Path, tmp_path: Path, run_cli: Any
) -> None:
    ds = Store(str(store)).open_step("p", "maps").load()
    registry = make_registry()
    for metric in ("loss", "accuracy"):
        fig = result_figure({"p/maps": ds}, registry, {"metric": metric})
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        plt.close(fig)
        assert titles and all(metric in t for t in titles), titles
    out = tmp_path / "maps.png"
    ok = run_cli("plot", store, "p/maps", "-o", out, "-O", "metric=accuracy", "-O", "levels=8")
    assert ok.exit_code == 0, ok.output
    bad = run_cli("plot", store, "p/maps", "-o", out, "-O", "metrc=accuracy")
    assert bad.exit_code == 2
    assert bad.stderr.strip() == (
        "lossatlas: error: plot options of probe 'hessian-directions': unknown option "
        "'metrc' (did you mean 'metric'?); options are: levels, logy, metric"
    )
    line = run_cli("plot", store, "p/line", "-o", out, "-O", "metric=accuracy")
    assert line.exit_code == 2 and "probe 'random-line': unknown option 'metric'" in line.stderr


def test_plugins_name_lists_a_probes_plot_options(run_cli: Any) -> None:
    out = run_cli("plugins", "hessian-directions").output
    assert "plot options (lossatlas plot -O KEY=VALUE):" in out
    assert "metric  ('loss' | 'accuracy'; default 'loss')" in out


def test_bad_dpi_is_one_line(store: Path, tmp_path: Path, run_cli: Any) -> None:
    result = run_cli("plot", store, "p/line", "-o", tmp_path / "x.png", "--dpi", "0")
    assert result.exit_code == 2
    assert result.stderr.startswith("lossatlas: error: --dpi: 0 dots per inch is outside 10..1200")
    assert not (tmp_path / "x.png").exists()


def test_pdf_from_plot_embeds_truetype_fonts(store: Path, tmp_path: Path, run_cli: Any) -> None:
    out = tmp_path / "line.pdf"
    assert run_cli("plot", store, "p/line", "-o", out).exit_code == 0
    assert b"/Type3" not in out.read_bytes() and b"/FontFile2" in out.read_bytes()
    assert run_cli("plot", store, "p/line", "-o", out, "--style", "default").exit_code == 0
    assert b"/Type3" in out.read_bytes()  # matplotlib's defaults: the check can fail


def test_the_config_style_and_style_override_it(store: Path, tmp_path: Path, run_cli: Any) -> None:
    out = tmp_path / "line.svg"
    assert run_cli("plot", store, "p/line", "-o", out).exit_code == 0
    assert "#e5e5e5" in out.read_text().lower()  # the config's ggplot: grey panels
    mine = tmp_path / "white.mplstyle"
    mine.write_text("axes.facecolor: white\n")
    assert run_cli("plot", store, "p/line", "-o", out, "--style", mine).exit_code == 0
    assert "#e5e5e5" not in out.read_text().lower()
    bad = run_cli("plot", store, "p/line", "-o", out, "--style", "ggplt")
    assert bad.exit_code == 2 and "(did you mean 'ggplot'?)" in bad.stderr


def test_the_title_sits_above_every_panel_title_or_is_left_out(store: Path) -> None:
    ds = Store(str(store)).open_step("p", "maps").load()
    fig = result_figure({"p/maps": ds}, make_registry(), {})
    assert fig._suptitle is not None  # the probe's own title
    title_figure(fig, "p/maps")
    text = fig._suptitle.get_text()
    assert text.startswith("p/maps — seed 001")
    renderer = fig.canvas.get_renderer()
    bottom = fig._suptitle.get_window_extent(renderer).y0
    tops = [ax.title.get_window_extent(renderer).y1 for ax in fig.axes if ax.get_title()]
    assert tops and bottom >= max(tops)
    remove_titles(fig)
    assert fig._suptitle is None
    plt.close(fig)


def test_no_title_draws_no_figure_title(
    store: Path, tmp_path: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lossatlas.engine import plotting

    seen: list[str] = []
    original = plotting.remove_titles

    def spy(fig: Any) -> None:
        original(fig)
        seen.append("none" if fig._suptitle is None else fig._suptitle.get_text())

    monkeypatch.setattr(plotting, "remove_titles", spy)
    result = run_cli("plot", store, "p/maps", "-o", tmp_path / "x.png", "--no-title")
    assert result.exit_code == 0, result.output
    assert seen == ["none"]


def test_an_error_in_a_plugins_plot_names_the_plugin(
    store: Path, tmp_path: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def plot(self: RandomLine, ds: Any, **kw: Any) -> Any:
        raise IndexError("index 7 is out of bounds")

    monkeypatch.setattr(RandomLine, "plot", plot)
    result = run_cli("plot", store, "p/line", "-o", tmp_path / "x.png")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith("lossatlas: error: probe 'random-line' (plugin probes, lossatlas "), line
    assert "): plot failed: IndexError: index 7 is out of bounds (a bug in that plugin" in line
    assert "internal error" not in line
