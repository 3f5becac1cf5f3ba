"""The lossatlas matplotlib style: TrueType fonts in PDF, styles stacked on it, style
files checked line by line, the config's ``style`` key."""

from __future__ import annotations

import io
import tomllib
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pytest

from lossatlas.engine import ConfigError
from lossatlas.engine.config import load_config, parse_config
from lossatlas.engine.style import check_style, style_names, style_rc, use_style

matplotlib.use("Agg")


def _pdf(style: str | None) -> bytes:
    with use_style(style):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 2], label="loss")
        ax.set_xlabel("α")
        ax.legend()
        buf = io.BytesIO()
        fig.savefig(buf, format="pdf")
        plt.close(fig)
    return buf.getvalue()


def test_the_lossatlas_style_embeds_truetype_fonts_not_type3() -> None:
    pdf = _pdf(None)
    assert b"/Type3" not in pdf and b"/FontFile2" in pdf
    # matplotlib's own defaults do write Type 3: the check can fail
    assert b"/Type3" in _pdf("default")


def test_a_named_style_goes_on_top_of_lossatlas() -> None:
    rc = style_rc("ggplot")
    assert rc["axes.facecolor"] == "#E5E5E5"  # ggplot's
    assert rc["pdf.fonttype"] == 42 and rc["ps.fonttype"] == 42  # still lossatlas's
    assert b"/Type3" not in _pdf("ggplot")
    assert "lossatlas" in style_names() and "ggplot" in style_names()


def test_use_style_restores_the_rcparams() -> None:
    before = dict(matplotlib.rcParams)
    with use_style():
        assert matplotlib.rcParams["pdf.fonttype"] == 42
        assert matplotlib.rcParams["legend.fontsize"] >= 8
        colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        assert colors[:4] == ["#0072B2", "#E69F00", "#009E73", "#D55E00"]  # Okabe-Ito
    assert matplotlib.rcParams["pdf.fonttype"] == before["pdf.fonttype"]


def test_a_style_file_is_applied_and_checked_line_by_line(tmp_path: Path) -> None:
    good = tmp_path / "paper.mplstyle"
    good.write_text('# a journal\nfont.size: 7\naxes.edgecolor: "#ff0000"  # red\nbackend: pdf\n')
    rc = style_rc(str(good))
    assert rc["font.size"] == 7 and rc["axes.edgecolor"] == "#ff0000"
    assert rc["pdf.fonttype"] == 42 and "backend" not in rc  # never switches backends
    cases = {
        "font.sizee: 7\n": "line 1: 'font.sizee' is not a matplotlib rcParam (did you mean "
        "'font.size'?)",
        "\nfont.size: big\n": "line 2: Key font.size: Could not convert 'big' to float",
        "hello\n": "line 1: expected 'key: value', got 'hello'",
    }
    for text, words in cases.items():
        bad = tmp_path / "bad.mplstyle"
        bad.write_text(text)
        with pytest.raises(ConfigError, match="style file") as info:
            check_style(str(bad))
        assert words in str(info.value)
    with pytest.raises(ConfigError, match="style file 'nope.mplstyle' does not exist"):
        check_style("nope.mplstyle")
    with pytest.raises(ConfigError, match=r"no style is named 'ggplt' \(did you mean 'ggplot'"):
        check_style("ggplt")


CONFIG = """
name = "s"
{style}
[model]
plugin = "mlp"
[dataset]
plugin = "digits"
[[steps]]
probe = "random-line"
"""


def test_config_style_key_is_checked_and_resolved_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "styles").mkdir()
    (tmp_path / "styles" / "p.mplstyle").write_text("font.size: 8\n")
    path = tmp_path / "run.toml"
    path.write_text(CONFIG.format(style='style = "styles/p.mplstyle"'))
    config = load_config(path)
    assert config.style == str((tmp_path / "styles" / "p.mplstyle").resolve())
    assert config.to_dict()["style"] == config.style
    assert "style" not in config.science()  # how figures look is not the run's identity
    plain = parse_config(tomllib.loads(CONFIG.format(style="")))
    assert plain.style == "" and "style" not in plain.to_dict()
    # a worker re-parsing the stored config does not need the driver's style file
    stored = parse_config(tomllib.loads(CONFIG.format(style='style = "/elsewhere/p.mplstyle"')))
    assert stored.style == "/elsewhere/p.mplstyle"
    path.write_text(CONFIG.format(style='style = "ggplt"'))
    with pytest.raises(ConfigError, match=r"run.toml: key 'style': no style is named 'ggplt'"):
        load_config(path)
