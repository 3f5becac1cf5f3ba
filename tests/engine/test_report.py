"""The HTML report: every run and figure, provenance, self-contained, errors in place."""

from __future__ import annotations

import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest
import zarr
from click.testing import CliRunner

from lossatlas.engine import ConfigError, StoreError, make_registry
from lossatlas.engine.cli import cli
from lossatlas.engine.config import parse_config
from lossatlas.engine.report import build_report, config_as_toml, write_report
from lossatlas.engine.runner import run_pipeline
from lossatlas.plugins.probes.random_line import RandomLine

CONFIG = """
name = "{name}"
seed = {seed}
description = "a <b>tiny</b> run & friends"

[model]
plugin = "mlp"
hidden = [8]

[dataset]
plugin = "digits"
limit = 200

[[steps]]
name = "line"
probe = "random-line"
points = 5
directions = 2

[[steps]]
name = "cut"
probe = "random-line"
points = 3
directions = 1
"""

VOID = {"meta", "img", "br", "hr", "input", "link"}


class TagChecker(HTMLParser):
    """Checks that every non-void tag is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()


def parse(text: str) -> TagChecker:
    checker = TagChecker()
    checker.feed(text)
    checker.close()
    assert not checker.errors, checker.errors[:3]
    assert not checker.stack, f"unclosed tags {checker.stack}"
    return checker


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "s.zarr"
    registry = make_registry()
    for name, seed in (("alpha", 0), ("beta", 1)):
        cfg = parse_config(tomllib.loads(CONFIG.format(name=name, seed=seed)))
        run_pipeline(cfg, str(path), registry, progress=None)
    return path


def test_report_has_every_run_step_and_figure(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    summary = write_report(store, out)
    text = out.read_text(encoding="utf-8")
    assert summary.runs == ["beta", "alpha"]  # newest first
    assert summary.figures == 4 and summary.svg == 4 and summary.failed == []
    checker = parse(text)
    figures = [a for t, a in checker.tags if t == "svg" and "aria-label" in a]
    assert [a["aria-label"] for a in figures] == [
        "figure of beta/line",
        "figure of beta/cut",
        "figure of alpha/line",
        "figure of alpha/cut",
    ]
    assert not [t for t, _ in checker.tags if t == "img"]  # small figures: vector only
    ids = [a["id"] for _, a in checker.tags if "id" in a]
    assert len(ids) == len(set(ids)), "two figures share an SVG id"
    for label in ("alpha/line", "alpha/cut", "beta/line", "beta/cut"):
        assert f"figure of {label}" in text
    # steps appear in the config's order, not alphabetically
    assert text.index("figure of alpha/line") < text.index("figure of alpha/cut")
    # provenance and completion
    assert "torch" in text and "2 / 2 computed (100%)" in text
    assert "seed = 1" in text and "random-line" in text


def test_report_is_self_contained_and_escaped(store: Path) -> None:
    text, _ = build_report(store)
    # the SVG namespace names are identifiers, never fetched
    names = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", text))
    assert urls <= names | {u.rstrip(".") for u in names}, urls - names
    scripts = re.findall(r"<script([^>]*)>", text, flags=re.IGNORECASE)
    assert scripts == [""], "one inline script, nothing loaded"
    assert "<link" not in text.lower() and "@import" not in text
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", text)
    # the config description is shown, escaped
    assert "a &lt;b&gt;tiny&lt;/b&gt; run &amp; friends" in text
    assert "<b>tiny</b>" not in text


def test_report_run_option_restricts(store: Path) -> None:
    text, summary = build_report(store, ["beta"])
    assert summary.runs == ["beta"] and summary.figures == 2
    assert "figure of beta/line" in text and "alpha/line" not in text


def test_report_unknown_run_or_store_is_clear(store: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no run 'gamma'.*runs: alpha, beta"):
        build_report(store, ["gamma"])
    with pytest.raises(StoreError, match="does not exist"):
        build_report(tmp_path / "missing.zarr")
    with pytest.raises(ConfigError, match=r"\.html"):
        write_report(store, tmp_path / "r.png")


def test_failing_plot_shows_error_in_place(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = RandomLine.plot

    def plot(self: RandomLine, ds, **kw):  # type: ignore[no-untyped-def]
        if ds.attrs["run"] == "beta" and ds.attrs["step"] == "line":
            raise ValueError("cannot draw <this> & that")
        return original(self, ds, **kw)

    monkeypatch.setattr(RandomLine, "plot", plot)
    text, summary = build_report(store, registry=make_registry())
    assert summary.failed == ["beta/line"]
    assert summary.figures == 3
    assert "ValueError: cannot draw &lt;this&gt; &amp; that" in text
    assert "<this>" not in text
    parse(text)


def test_partial_step_shows_completion(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    cfg = parse_config(tomllib.loads(CONFIG.format(name="gamma", seed=2)))
    run_pipeline(cfg, str(path), make_registry(), progress=None)
    group = zarr.open_group(str(path), path="gamma/line", mode="r+")
    group["cell_status"][0] = 0
    group.attrs["status"] = "running"
    g2 = zarr.open_group(str(path), path="gamma/cut", mode="r+")
    g2.attrs["template_complete"] = 0
    text, summary = build_report(path)
    assert "1 / 2 computed (50%)" in text
    assert "template is incomplete" in text
    assert summary.figures == 1


def test_damaged_cell_status_shows_error_in_place(tmp_path: Path) -> None:
    """A step whose cell_status chunks cannot be decoded is reported in place and left
    out of the run's cell count; the rest of the report is drawn."""
    path = tmp_path / "s.zarr"
    cfg = parse_config(tomllib.loads(CONFIG.format(name="gamma", seed=2)))
    run_pipeline(cfg, str(path), make_registry(), progress=None)
    for chunk in (path / "gamma" / "line" / "cell_status").rglob("*"):
        if chunk.is_file() and chunk.name != "zarr.json":
            chunk.write_bytes(b"not a chunk")
    text, summary = build_report(path)
    assert summary.failed == ["gamma/line"] and summary.figures == 1
    assert "this step cannot be read" in text and "figure of gamma/cut" in text
    assert "<td>1 / 1</td>" in text
    parse(text)


def test_unreadable_run_shows_error_in_place(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    registry = make_registry()
    for name in ("good", "bad"):
        cfg = parse_config(tomllib.loads(CONFIG.format(name=name, seed=0)))
        run_pipeline(cfg, str(path), registry, progress=None)
    zarr.open_group(str(path), path="bad", mode="r+").attrs["provenance"] = "{not json <x>"
    text, summary = build_report(path)
    assert summary.failed == ["bad"] and summary.figures == 2
    assert "this run cannot be read" in text and "figure of good/line" in text
    parse(text)


def test_config_as_toml_round_trips() -> None:
    config = {
        "name": "r",
        "seed": 3,
        "device": "cpu",
        "dtype": "float64",
        "executor": "local",
        "batch_size": 0,
        "description": 'quote " and \\ back',
        "model": {"plugin": "mlp", "hidden": [4, 4], "seed": 3},
        "dataset": {"plugin": "digits", "seed": 0, "limit": 10, "normalize": True},
        "steps": [
            {"name": "t", "probe": "train", "lr": 0.1},
            {
                "name": "l",
                "probe": "random-line",
                "at": "t",
                "span": 0.5,
                "subspace": {"plugin": "random", "dim": 2},
                "model": {"plugin": "mlp", "seed": 1, "hidden": [2]},
            },
        ],
    }
    assert tomllib.loads(config_as_toml(config)) == config


def test_cli_report(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cli.html"
    runner = CliRunner()
    result = runner.invoke(cli, ["report", str(store), "-o", str(out), "--run", "alpha", "-q"])
    assert result.exit_code == 0, result.output
    assert "2 figure(s)" in result.output
    assert "figure of alpha/cut" in out.read_text(encoding="utf-8")
    # with the progress bar (not quiet, someone watching)
    monkeypatch.setattr("lossatlas.engine.progress._interactive", lambda: True)
    shown = runner.invoke(
        cli, ["report", str(store), "-o", str(out), "--run", "beta"], env={"CI": ""}
    )
    assert shown.exit_code == 0, shown.output
    assert "figure of beta/cut" in out.read_text(encoding="utf-8")
    bad = runner.invoke(cli, ["report", str(store), "-o", str(out), "--run", "nope"])
    assert bad.exit_code != 0
    assert "no run 'nope'" in bad.output and "Traceback" not in bad.output


def test_steps_not_run_are_listed_as_not_started(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    cfg = parse_config(tomllib.loads(CONFIG.format(name="delta", seed=0)))
    run_pipeline(cfg, str(path), make_registry(), progress=None, steps=["line"])
    text, summary = build_report(path)
    parse(text)
    assert summary.figures == 1
    section = text[text.index('id="delta/cut"') :]
    assert "delta/cut" in section[:200] and "not started" in section[:400]
    assert "1 step(s) not started" in text
    # a complete run says nothing of the kind
    run_pipeline(cfg, str(path), make_registry(), progress=None)
    text, summary = build_report(path)
    assert summary.figures == 2 and "not started" not in text


def test_diverged_training_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    table = tomllib.loads(CONFIG.format(name="eps", seed=0))
    table["steps"] = [
        {"name": "ok", "probe": "train", "epochs": 1, "lr": 0.01},
        {"name": "boom", "probe": "train", "epochs": 3, "lr": 1e30, "batch_size": 0},
    ]
    run_pipeline(parse_config(table), str(path), make_registry(), progress=None)
    text, _ = build_report(path)
    boom = text[text.index('id="eps/boom"') :]
    ok = text[text.index('id="eps/ok"') : text.index('id="eps/boom"')]
    assert "1 of 1 trainings diverged" in boom
    assert "diverged</th>" not in ok and "trainings diverged" not in ok


@pytest.mark.filterwarnings("ignore::lossatlas.engine.training.ConvergenceWarning")
def test_trainings_still_falling_are_flagged(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    table = tomllib.loads(CONFIG.format(name="slow", seed=0))
    table["steps"] = [
        {
            "name": "sub",
            "probe": "subspace-training",
            "radii": 1,
            "dims": [2],
            "samples": 1,
            "surfaces": ["hyperplane"],
            "epochs": 4,
            "lr": 0.01,
            "reference": "grid-best",
        }
    ]
    run_pipeline(parse_config(table), str(path), make_registry(), progress=None)
    text, _ = build_report(path)
    assert "not converged" in text and "1 of 1 trainings" in text


# ---------------------------------------------------------------- 0.2: the page


def test_times_are_machine_readable_and_shown_in_utc_without_script(store: Path) -> None:
    text, _ = build_report(store)
    times = re.findall(r'<time datetime="([^"]+)" title="[^"]+">([^<]+)</time>', text)
    assert times, "no <time> elements"
    for iso, shown in times:
        assert iso.endswith("+00:00") and shown.endswith(" UTC")


def test_a_figure_too_large_for_svg_is_a_png(store: Path) -> None:
    text, summary = build_report(store, ["alpha"], svg_limit=1_000, dpi=40)
    assert summary.figures == 2 and summary.svg == 0
    checker = parse(text)
    images = [a["src"] for t, a in checker.tags if t == "img"]
    assert len(images) == 2 and all(s.startswith("data:image/png;base64,iVBOR") for s in images)
    assert "drawn as PNG at 40 dpi" in text


def test_a_probe_adds_its_own_section(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lossatlas.engine import html_table

    def own(self: RandomLine, ds):  # type: ignore[no-untyped-def]
        rows = [(d, float(ds["train_loss"].sel(direction=d).min())) for d in ds["direction"].values]
        return html_table(rows, ["direction", "min train loss <nats>"], caption="minima")

    monkeypatch.setattr(RandomLine, "report_html", own, raising=False)
    text, summary = build_report(store, ["alpha"])
    assert summary.failed == []
    parse(text)
    assert text.count('<table class="probe-table"><caption>minima</caption>') == 2
    assert "min train loss &lt;nats&gt;" in text


@pytest.mark.parametrize(
    ("fragment", "problem"),
    [
        ("<script>alert(1)</script>", "<script> is not allowed"),
        ('<img src="https://example.org/x.png">', "points outside the page"),
        ("<div><b>unclosed</div>", "closes nothing open"),
        ('<p onclick="x()">hi</p>', "event handler"),
    ],
)
def test_a_probe_section_that_would_break_the_page_is_refused(
    store: Path, monkeypatch: pytest.MonkeyPatch, fragment: str, problem: str
) -> None:
    monkeypatch.setattr(RandomLine, "report_html", lambda self, ds: fragment, raising=False)
    text, summary = build_report(store, ["alpha"])
    assert summary.failed == ["alpha/line (probe section)", "alpha/cut (probe section)"]
    assert "the probe&#x27;s own section could not be made" in text
    assert problem.replace("<", "&lt;").replace(">", "&gt;") in text
    assert fragment not in text
    parse(text)


def test_a_failing_plot_names_the_probe_and_its_plugin(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def plot(self: RandomLine, ds, **kw):  # type: ignore[no-untyped-def]
        raise KeyError("no such variable")

    monkeypatch.setattr(RandomLine, "plot", plot)
    text, summary = build_report(store, ["alpha"])
    assert summary.failed == ["alpha/line", "alpha/cut"]
    assert "probe &#x27;random-line&#x27; (plugin probes, lossatlas" in text
    assert "plot raised it" in text


def test_cli_report_strict_exits_1_when_a_figure_fails(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "r.html"
    ok = CliRunner().invoke(cli, ["report", str(store), "-o", str(out), "-q", "--strict"])
    assert ok.exit_code == 0, ok.output

    def plot(self: RandomLine, ds, **kw):  # type: ignore[no-untyped-def]
        raise ValueError("boom")

    monkeypatch.setattr(RandomLine, "plot", plot)
    loose = CliRunner().invoke(cli, ["report", str(store), "-o", str(out), "-q"])
    assert loose.exit_code == 0 and "4 could not be drawn" in loose.output
    strict = CliRunner().invoke(cli, ["report", str(store), "-o", str(out), "-q", "--strict"])
    assert strict.exit_code == 1
    assert "--strict: 4 part(s) of the report could not be drawn" in strict.output
    assert out.exists(), "the report is still written"


# ------------------------------------------------------------ in a real browser


def test_report_in_headless_chromium(store: Path, tmp_path: Path) -> None:
    """The page as a reader sees it: no console error, every figure drawn and visible
    once its section is open, every link of the contents resolving (and opening the
    collapsed run it points into), times in the reader's zone, and shorter than the
    sum of its parts while older runs are folded."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from browser import Chromium, find_chromium

    binary = find_chromium()
    if binary is None:
        pytest.skip(
            "headless Chromium is not installed (Debian: apt-get install chromium; "
            ".ci/run installs it), so the report is not checked in a browser here"
        )
    out = tmp_path / "r.html"
    write_report(store, out)
    with Chromium(binary) as page:
        page.open(out, timezone="Asia/Tokyo")
        folded = page.evaluate("document.documentElement.scrollHeight")
        # a link into the older, folded run opens it
        visible = "document.getElementById('alpha/cut').checkVisibility()"
        assert page.evaluate(visible) is False
        page.evaluate("document.querySelector('nav a[href=\"#alpha/cut\"]').click()")
        assert page.evaluate(visible) is True
        broken = page.evaluate(
            """Array.from(document.querySelectorAll('a[href^="#"]'))
                .map(a => decodeURIComponent(a.getAttribute('href').slice(1)))
                .filter(id => !document.getElementById(id))"""
        )
        assert broken == []
        page.evaluate("document.getElementById('la:expand').click()")
        figures = page.evaluate(
            """Array.from(document.querySelectorAll('figure.fig')).map(f => {
                const r = f.getBoundingClientRect();
                const svg = f.querySelector('svg'), img = f.querySelector('img');
                const drawn = svg
                    ? svg.getBBox().width > 0 && svg.querySelectorAll('path').length > 20
                    : img.complete && img.naturalWidth > 0;
                return {w: r.width, h: r.height, visible: f.checkVisibility(), drawn: drawn,
                        label: (svg || img).getAttribute(svg ? 'aria-label' : 'alt')};
            })"""
        )
        assert len(figures) == 4
        for f in figures:
            assert f["visible"] and f["drawn"] and f["w"] > 300 and f["h"] > 150, f
        expanded = page.evaluate("document.documentElement.scrollHeight")
        assert folded < expanded
        local = page.evaluate("document.querySelector('header time').textContent")
        assert "GMT+9" in local or "JST" in local, local
        assert page.errors() == []
