"""The example third-party package registers a model, a data set and a probe through
the entry-point group, and a config that uses all three runs."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

import lossatlas.testing
from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store

PACKAGE = Path(__file__).parents[2] / "examples" / "plugin-package"


def fake_install(site: Path) -> None:
    """What ``pip install`` leaves behind for importlib.metadata: a dist-info folder."""
    info = site / "lossatlas_spirals-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lossatlas-spirals\nVersion: 0.1.0\n"
    )
    ep = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]["entry-points"]
    lines = ["[lossatlas]"] + [f"{k} = {v}" for k, v in ep["lossatlas"].items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    fake_install(site)
    monkeypatch.syspath_prepend(str(PACKAGE / "src"))
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return site


def test_the_entry_point_registers_all_three(installed: Path) -> None:
    reg = make_registry()
    rec = next(r for r in reg.records if r.name == "spirals")
    assert (rec.distribution, rec.version, rec.status) == ("lossatlas-spirals", "0.1.0", "ok")
    assert rec.registered == {
        "model": ["softmax-regression"],
        "dataset": ["spirals"],
        "probe": ["weight-scaling"],
    }


def test_a_config_using_all_three_runs(installed: Path, tmp_path: Path) -> None:
    text = (PACKAGE / "example.toml").read_text()
    store = tmp_path / "s.zarr"
    run_pipeline(parse_config(tomllib.loads(text), "example.toml"), str(store), make_registry())
    ds = Store(store).open_step("spirals-scaling", "scaling").load()
    assert ds.attrs["probe_plugin"].startswith("spirals (lossatlas-spirals 0.1.0)")
    loss = ds["train_loss"].values
    # at c = 0 every logit is 0: the loss is exactly log(3) for three classes
    assert loss[0] == pytest.approx(np.log(3), rel=1e-6)
    assert np.all(np.isfinite(loss))


def test_the_cli_sees_the_plugin(installed: Path, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(installed), str(PACKAGE / "src"), env.get("PYTHONPATH", "")]
    )
    cli = [sys.executable, "-c", "from lossatlas.engine.cli import main; main()"]
    out = subprocess.run([*cli, "plugins"], env=env, capture_output=True, text=True, check=True)
    assert "spirals  (lossatlas-spirals 0.1.0)" in out.stdout
    assert "weight-scaling" in out.stdout
    store = tmp_path / "cli.zarr"
    subprocess.run(
        [*cli, "run", str(PACKAGE / "example.toml"), "--store", str(store), "-q"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    png = tmp_path / "p.png"
    subprocess.run(
        [*cli, "plot", str(store), "spirals-scaling/scaling", "-o", str(png)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert png.stat().st_size > 1000


def test_the_documented_recipe_tests_the_working_tree(installed: Path) -> None:
    """With the package installed, make_registry(plugins=[...]) of the same module uses
    it in-process (the installed entry point is 'replaced', not failed), and the
    package's own tests (lossatlas.testing) pass."""
    import lossatlas_spirals.plugin as plugin

    reg = make_registry(plugins=[("mine", plugin)])
    recs = {r.name: r for r in reg.records}
    assert recs["mine"].status == "ok" and recs["spirals"].status == "replaced"
    assert reg.provider("probe", "weight-scaling").name == "mine"
    # The package's own tests, as its author runs them (called here, not in a child
    # pytest: the same code, without a second interpreter's start-up).
    spec = importlib.util.spec_from_file_location(
        "spirals_tests", PACKAGE / "tests" / "test_plugin.py"
    )
    assert spec is not None and spec.loader is not None
    tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tests)
    tests.test_the_probe_runs_on_the_plugins_data_and_model(installed.parent)
    tests.test_the_context_a_probe_sees(lossatlas.testing.context)
