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
    assert summary.runs == ["alpha", "beta"]
    assert summary.figures == 4 and summary.failed == []
    checker = parse(text)
    images = [a["src"] for t, a in checker.tags if t == "img"]
    assert len(images) == 4
    assert all(src.startswith("data:image/png;base64,iVBOR") for src in images)
    for label in ("alpha/line", "alpha/cut", "beta/line", "beta/cut"):
        assert f"figure of {label}" in text
    # steps appear in the config's order, not alphabetically
    assert text.index("figure of alpha/line") < text.index("figure of alpha/cut")
    # provenance and completion
    assert "torch" in text and "2 / 2 computed (100%)" in text
    assert "seed = 1" in text and "random-line" in text


def test_report_is_self_contained_and_escaped(store: Path) -> None:
    text, _ = build_report(store)
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower() and "<link" not in text.lower()
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


def test_cli_report(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.html"
    runner = CliRunner()
    result = runner.invoke(cli, ["report", str(store), "-o", str(out), "--run", "alpha", "-q"])
    assert result.exit_code == 0, result.output
    assert "2 figure(s)" in result.output
    assert "figure of alpha/cut" in out.read_text(encoding="utf-8")
    # with the progress bar (not quiet, not CI)
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
    section = text[text.index('id="delta-cut"') :]
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
    boom = text[text.index('id="eps-boom"') :]
    ok = text[text.index('id="eps-ok"') : text.index('id="eps-boom"')]
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
