"""The user's own model and data by import path, as docs/datasets-and-models.md shows.

The page's ``mystuff.py`` and ``run.toml`` are taken from the docs as written and run;
then every probe's tiny config (``TINY`` in tests/test_all_plots.py, which must cover
every registered probe) runs with the ``python`` model and ``python`` data set of that
example in place of the built-in MLP and digits.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import Store

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "datasets-and-models.md"


def _doc_blocks() -> tuple[str, str]:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Bring your own model and data") :]
    code = re.search(r"`mystuff\.py`:\n\n```python\n(.*?)```", section, re.S)
    config = re.search(r"`run\.toml`:\n\n```toml\n(.*?)```", section, re.S)
    assert code and config, "docs/datasets-and-models.md lost its mystuff.py / run.toml example"
    return code.group(1), config.group(1)


def _all_plots() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "_tiny_configs", ROOT / "tests" / "test_all_plots.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = _all_plots().TINY
#: The built-in probes (a third-party plugin installed beside lossatlas is not covered).
_REGISTRY = make_registry()
PROBES = [
    n
    for n in _REGISTRY.names("probe")
    if _REGISTRY.provider("probe", n).distribution == "lossatlas"
]

#: the docs' model and data, small: 160 spirals, a 2-8-8-2 tanh net.
USER_HEADER = """
seed = 0
dtype = "float64"

[dataset]
plugin = "python"
function = "mystuff:spirals"
search_path = ["."]
kwargs = { n = 160 }

[model]
plugin = "python"
factory = "mystuff:make_net"
search_path = ["."]
kwargs = { width = 8 }
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory holding the docs' mystuff.py and run.toml, as the working directory."""
    code, config = _doc_blocks()
    (tmp_path / "mystuff.py").write_text(code, encoding="utf-8")
    (tmp_path / "run.toml").write_text(config, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "mystuff", raising=False)
    yield tmp_path
    sys.modules.pop("mystuff", None)


def test_docs_example_runs_as_written(project: Path, run_cli) -> None:
    text = (project / "run.toml").read_text()
    config = tomllib.loads(text)
    assert config["model"]["plugin"] == "python" and config["dataset"]["plugin"] == "python"
    # as written, but with fewer epochs and grid points to keep the test short
    small = (
        text.replace("epochs = 30", "epochs = 2")
        .replace("points = 41", "points = 5")
        .replace("points = 21", "points = 3")
    )
    assert small != text
    (project / "run.toml").write_text(small)
    result = run_cli("run", "run.toml", "--store", "spirals.zarr", "-q")
    assert result.exit_code == 0, result.output
    st = Store(str(project / "spirals.zarr"))
    names = [s["name"] for s in config["steps"]]
    assert sorted(st.steps("spirals")) == sorted(names)
    for name in names:
        ds = st.open_step("spirals", name)
        assert ds.atlas.completion == 1.0
        assert ds.atlas.config["model"]["factory"] == "mystuff:make_net"
    train = st.open_step("spirals", "train")
    assert np.isfinite(train["train_loss"].values).all()
    report = run_cli("report", "spirals.zarr", "-o", "report.html", "-q")
    assert report.exit_code == 0, report.output
    assert f"{len(names)} figure(s)" in report.output


def test_tiny_configs_cover_every_probe() -> None:
    assert sorted(TINY) == PROBES


@pytest.mark.parametrize("probe", PROBES)
def test_every_probe_takes_the_users_model_and_data(probe: str, project: Path) -> None:
    text = f'name = "{probe}"\n' + USER_HEADER + TINY[probe]
    config = parse_config(tomllib.loads(text), source=f"<user {probe}>")
    store = project / "s.zarr"
    run_pipeline(config, str(store), make_registry(), progress=None)
    st = Store(str(store))
    for step in config.steps:
        ds = st.open_step(probe, step.name)
        assert ds.atlas.completion == 1.0, f"step {step.name} incomplete"
        assert ds.atlas.config["dataset"]["function"] == "mystuff:spirals"
    last = st.open_step(probe, config.steps[-1].name)
    floats = [v for v in last.atlas.results.data_vars.values() if v.dtype.kind == "f"]
    assert floats and any(np.isfinite(v.values).any() for v in floats)
