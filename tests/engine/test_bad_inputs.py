"""Bad input, systematically: one table row per mistake a user (or a plugin) can make.

Every row runs ``lossatlas run`` (in-process, through click) against a store that already
holds a complete run, and checks:

- an error row: a non-zero exit, ONE line on stderr naming the problem (``words``), no
  traceback, and the store byte for byte as it was (``untouched``) — or, for failures
  that can only happen once cells run, the earlier run's files unchanged;
- a recorded row (NaN/inf losses, a diverging training run): exit 0, a finished run,
  and the bad cells marked in ``cell_status`` / the probe's own variables.

docs/errors.md is this table as user documentation; keep the two in step.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lossatlas.engine import (
    Cell,
    DatasetPlugin,
    ModelPlugin,
    hookimpl,
    make_registry,
)
from lossatlas.engine.store import STATUS_NONFINITE, STATUS_VAR, Store
from lossatlas.plugins.probes.random_line import RandomLine

# ------------------------------------------------------------ in-process test plugins


class RaisesInCompute(RandomLine):
    name = "test-raises-in-compute"

    def compute(self, options: Any, ctx: Any, cell: Cell) -> dict[str, Any]:
        if cell.index["direction"] == 2:
            raise RuntimeError("boom in direction 2")
        return super().compute(options, ctx, cell)


class RaisesInPlan(RandomLine):
    name = "test-raises-in-plan"

    def plan(self, options: Any, ctx: Any) -> Any:
        raise KeyError("no such thing")


class WrongShape(RandomLine):
    name = "test-wrong-shape"

    def compute(self, options: Any, ctx: Any, cell: Cell) -> dict[str, Any]:
        out = super().compute(options, ctx, cell)
        return {k: np.zeros(3) for k in out}


class NaNMidSweep(RandomLine):
    """Random lines whose direction 1 has a NaN loss and direction 2 an infinite one."""

    name = "test-nan-mid-sweep"

    def compute(self, options: Any, ctx: Any, cell: Cell) -> dict[str, Any]:
        out = {k: np.array(v, dtype=float) for k, v in super().compute(options, ctx, cell).items()}
        if cell.index["direction"] == 1:
            out["train_loss"][0] = np.nan
        if cell.index["direction"] == 2:
            out["validation_loss"][-1] = np.inf
        return out


class RaisesOnBuild(ModelPlugin):
    name = "test-raises-on-build"
    summary = "a model plugin with a bug"

    def build(self, options: Any, data: Any, seed: int) -> torch.nn.Module:
        raise ZeroDivisionError("division by zero in the model factory")


class RaisesOnLoad(DatasetPlugin):
    name = "test-raises-on-load"
    summary = "a data set plugin with a bug"

    def load(self, options: Any, seed: int) -> Any:
        raise IndexError("list index out of range in the loader")


class TestPlugins:
    @hookimpl
    def lossatlas_register_probes(self) -> list[Any]:
        return [RaisesInCompute(), RaisesInPlan(), WrongShape(), NaNMidSweep()]

    @hookimpl
    def lossatlas_register_models(self) -> list[Any]:
        return [RaisesOnBuild()]

    @hookimpl
    def lossatlas_register_datasets(self) -> list[Any]:
        return [RaisesOnLoad()]


class BrokenOnImport:
    """A plugin whose registration hook raises (as a broken third-party package would)."""

    @hookimpl
    def lossatlas_register_probes(self) -> list[Any]:
        raise ImportError("No module named 'fancy_dependency'")


class Evil:
    """Unpickling this runs code (it would touch a file): a checkpoint must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (self.marker,))


# ------------------------------------------------------------------------- the table

BASE: dict[str, Any] = {
    "name": "bad",
    "seed": 0,
    "model": {"plugin": "mlp", "hidden": [8]},
    "dataset": {"plugin": "digits", "limit": 200},
    "steps": [{"name": "line", "probe": "random-line", "points": 5, "directions": 3}],
}


def cfg(
    step: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    dataset: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    **top: Any,
) -> dict[str, Any]:
    """BASE with top-level keys replaced, and the model, dataset, first step updated."""
    import copy

    data = copy.deepcopy(BASE)
    data.update(top)
    if model is not None:
        data["model"].update(model)
    if dataset is not None:
        data["dataset"].update(dataset)
    if step is not None:
        data["steps"][0].update(step)
    for key in drop:
        data.pop(key)
    return data


@dataclass
class Row:
    """One bad input: the config (or a function of the test folder making it), extra CLI
    arguments, the words the error line must contain, and what the store must show."""

    config: dict[str, Any] | str | Callable[[Path], dict[str, Any] | str]
    words: str
    args: tuple[str, ...] = ()
    #: "untouched": the whole store as it was; "earlier": the earlier run unchanged;
    #: "recorded": exit 0, bad values recorded.
    store: str = "untouched"
    extra: dict[str, Any] = field(default_factory=dict)


def _pickle_with_code(tmp: Path) -> dict[str, Any]:
    path = tmp / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"weight": Evil(tmp / "pwned")}, f)
    return cfg(model={"checkpoint": str(path)})


def _checkpoint_other_model(tmp: Path) -> dict[str, Any]:
    path = tmp / "other.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    return cfg(model={"checkpoint": str(path)})


def _parameterless_model(tmp: Path) -> dict[str, Any]:
    (tmp / "no_params.py").write_text(
        "import torch\n"
        "class Zeros(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return torch.zeros(x.shape[0], 10)\n"
    )
    return cfg(
        model={
            "plugin": "python",
            "factory": "no_params:Zeros",
            "search_path": [str(tmp)],
            "hidden": None,
        }
    )


def _labels_out_of_range(tmp: Path) -> dict[str, Any]:
    (tmp / "bad_labels.py").write_text(
        "import torch\n"
        "from lossatlas.engine import DataBundle, Split\n"
        "def load():\n"
        "    x = torch.randn(20, 64)\n"
        "    y = torch.arange(20) % 12\n"
        "    return DataBundle(Split(x, y), Split(x, y), 'classification', 10)\n"
    )
    return cfg(
        dataset={
            "plugin": "python",
            "function": "bad_labels:load",
            "search_path": [str(tmp)],
            "limit": None,
        }
    )


def _ragged_arrays(tmp: Path) -> dict[str, Any]:
    path = tmp / "ragged.npz"
    np.savez(path, x=np.zeros((20, 4), dtype=np.float32), y=np.zeros(15, dtype=np.int64))
    return cfg(dataset={"plugin": "tensors", "path": str(path)})


ROWS: dict[str, Row] = {
    # -- the file itself
    "malformed TOML": Row('name = "bad"\n[model\nplugin = "mlp"\n', "not valid TOML"),
    "a missing config file": Row(
        lambda tmp: "", "does not exist", extra={"config_path": "nowhere.toml"}
    ),
    "no steps": Row(cfg(steps=[]), "no [[steps]]"),
    "no [model] table": Row(cfg(drop=("model",)), "a [model] table is required"),
    # -- unknown keys, with a "did you mean"
    "unknown top-level key": Row(cfg(sed=1), "unknown key 'sed' (did you mean 'seed'?)"),
    "unknown style": Row(cfg(style="ggplt"), "key 'style': no style is named 'ggplt'"),
    "a style file that is not there": Row(
        cfg(style="paper.mplstyle"), "key 'style': style file 'paper.mplstyle' does not exist"
    ),
    "unknown probe option": Row(
        cfg(step={"direction": 2}), "unknown option 'direction' (did you mean 'directions'?)"
    ),
    "unknown model option": Row(
        cfg(model={"hiden": [4]}), "unknown option 'hiden' (did you mean 'hidden'?)"
    ),
    "unknown plugin": Row(cfg(model={"plugin": "mlpp"}), "unknown model 'mlpp' (did you mean"),
    "unknown probe": Row(
        cfg(step={"probe": "random-lin"}),
        "unknown probe 'random-lin' (did you mean 'random-line'?)",
    ),
    "unknown executor": Row(cfg(executor="daks"), "unknown executor 'daks' (did you mean"),
    "point naming no earlier step": Row(cfg(step={"at": "trian"}), "names no earlier step"),
    # -- wrong types
    "seed of the wrong type": Row(cfg(seed="zero"), "key 'seed' must be an integer"),
    "option of the wrong type": Row(
        cfg(step={"points": "many"}), "option 'points': expected an integer"
    ),
    "list of the wrong type": Row(cfg(model={"hidden": 8}), "option 'hidden': expected a list"),
    "bad literal": Row(cfg(model={"activation": "relu6"}), "'relu6' is not one of"),
    "unsupported dtype": Row(cfg(dtype="float16"), "dtype 'float16' is not supported"),
    # -- negative or zero sizes
    "zero directions": Row(cfg(step={"directions": 0}), "'directions' must be at least 1"),
    "negative directions": Row(cfg(step={"directions": -3}), "'directions' must be at least 1"),
    "even grid": Row(cfg(step={"points": 4}), "'points' must be odd"),
    "negative span": Row(cfg(step={"span": -1.0}), "'span' must be positive"),
    "negative batch size": Row(cfg(batch_size=-1), "'batch_size' must be 0"),
    "zero-width layer": Row(cfg(model={"hidden": [0]}), "hidden"),
    "negative dask workers": Row(
        cfg(executor="dask", executor_options={"workers": -2}), "'workers' must be 0"
    ),
    # -- plugins that break
    "a model plugin that raises": Row(
        {**BASE, "model": {"plugin": "test-raises-on-build"}}, "model 'test-raises-on-build'"
    ),
    "a data set plugin that raises": Row(
        {**BASE, "dataset": {"plugin": "test-raises-on-load"}}, "dataset 'test-raises-on-load'"
    ),
    "a probe that raises in plan": Row(
        cfg(step={"probe": "test-raises-in-plan"}), "probe 'test-raises-in-plan'", store="earlier"
    ),
    "a probe that raises in a cell": Row(
        cfg(step={"probe": "test-raises-in-compute"}), "boom in direction 2", store="earlier"
    ),
    "a probe returning the wrong shape": Row(
        cfg(step={"probe": "test-wrong-shape"}), "a bug in the probe", store="earlier"
    ),
    "a plugin that fails to load": Row(cfg(step={"probe": "fancy"}), "failed to load: ImportError"),
    # -- shapes
    "checkpoint of another model": Row(
        _checkpoint_other_model, "does not fit model 'mlp': missing "
    ),
    "inputs and targets of different lengths": Row(_ragged_arrays, "tensors"),
    "subspace dim larger than D": Row(
        cfg(
            step={
                "probe": "goldilocks",
                "dims": [100000],
                "radii": 1,
                "samples": 1,
                "points": None,
                "directions": None,
            }
        ),
        "> D=",
    ),
    "a model with no parameters": Row(_parameterless_model, "has no coordinates to study"),
    "labels beyond the number of classes": Row(
        _labels_out_of_range, "has class label 11, outside [0, 10) (n_outputs = 10)"
    ),
    "a loss for another task": Row(
        cfg(loss={"plugin": "l1"}), "loss 'l1' is for regression but the data set is a"
    ),
    "a renamed formula preset": Row(
        cfg(
            dataset={"plugin": "formula", "preset": "quadratic", "limit": None},
            model={"hidden": [4]},
        ),
        "'quadratic' was renamed 'x-squared'",
    ),
    # -- files
    "a checkpoint that is a pickle with code": Row(_pickle_with_code, "refuses to load"),
    "a missing checkpoint": Row(
        cfg(model={"checkpoint": "/nonexistent/model.pt"}), "does not exist"
    ),
    "a missing data file": Row(
        cfg(dataset={"plugin": "tensors", "path": "/nonexistent.npz"}), "/nonexistent.npz"
    ),
    # -- the store
    "a read-only store": Row(cfg(), "read-only", extra={"read_only": True}),
    "same run name, other config": Row(cfg(name="tiny"), "already exists", store="untouched"),
    # -- devices
    # a GPU that is not there: all of them without CUDA, the 100th with it
    "a CUDA device this machine lacks": Row(
        cfg(),
        "CUDA device(s)" if torch.cuda.is_available() else "CUDA is not available",
        args=("--device", "cuda:99"),
    ),
    "a device that does not exist": Row(cfg(device="tpu"), "device 'tpu'"),
    "--address without dask": Row(
        cfg(),
        "--address and --workers need --executor dask",
        args=("--address", "tcp://127.0.0.1:8786"),
    ),
    # -- recorded, not errors
    "NaN and inf losses mid-sweep": Row(
        cfg(step={"probe": "test-nan-mid-sweep"}), "", store="recorded"
    ),
    "a diverging training run": Row(
        cfg(
            step={
                "probe": "train",
                "lr": 1e30,
                "epochs": 2,
                "batch_size": 0,
                "points": None,
                "directions": None,
            }
        ),
        "",
        store="recorded",
    ),
}


def _clean(data: Any) -> Any:
    """Drop options set to None (rows that swap the probe drop its options this way)."""
    if isinstance(data, dict):
        out = {k: _clean(v) for k, v in data.items() if v is not None}
        if "steps" in out:
            out["steps"] = [{k: v for k, v in s.items() if v is not None} for s in out["steps"]]
        return out
    return data


def _snapshot(path: Path, under: str = "") -> dict[str, str]:
    root = path / under if under else path
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def earlier_store(tmp_path_factory: pytest.TempPathFactory, toml: Any) -> Path:
    """A store holding a complete, earlier run 'tiny' (copied for each row)."""
    import tomllib

    from lossatlas.engine.config import parse_config
    from lossatlas.engine.runner import run_pipeline

    path = tmp_path_factory.mktemp("earlier") / "store.zarr"
    config = parse_config(tomllib.loads(toml(cfg(name="tiny", step={"directions": 2}))))
    run_pipeline(config, str(path), make_registry())
    return path


@pytest.mark.parametrize("case", list(ROWS))
def test_bad_input(
    case: str,
    tmp_path: Path,
    earlier_store: Path,
    write_config: Any,
    run_cli: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = ROWS[case]
    import lossatlas.engine.cli as cli_module

    monkeypatch.setattr(
        cli_module,
        "make_registry",
        lambda: make_registry(
            plugins=[("test-plugins", TestPlugins()), ("fancy", BrokenOnImport())]
        ),
    )
    store = tmp_path / "store.zarr"
    shutil.copytree(earlier_store, store)
    data = row.config(tmp_path) if callable(row.config) else row.config
    config = write_config(_clean(data) if isinstance(data, dict) else data)
    if "config_path" in row.extra:
        config = tmp_path / row.extra["config_path"]
    if row.extra.get("read_only"):
        for p in [store, *store.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        if os.geteuid() == 0:  # root writes anyway: let the store see what a user would
            real = os.access
            monkeypatch.setattr(
                "lossatlas.engine.store.os.access",
                lambda p, mode, **kw: False if mode & os.W_OK else real(p, mode, **kw),
            )
    before, earlier = _snapshot(store), _snapshot(store, "tiny")

    result = run_cli("run", config, "--store", store, "-q", *row.args)

    if row.extra.get("read_only"):
        for p in [store, *store.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    assert "Traceback" not in result.output
    if row.store == "recorded":
        assert result.exit_code == 0, result.output
        _check_recorded(case, store)
    else:
        assert result.exit_code != 0
        line = result.stderr.strip()
        assert line.startswith("lossatlas: error: ") and "\n" not in line, line
        assert row.words in line, line
        assert "internal error" not in line, line
    assert _snapshot(store, "tiny") == earlier
    if row.store == "untouched":
        assert _snapshot(store) == before
    assert not (tmp_path / "pwned").exists()


def _check_recorded(case: str, store: Path) -> None:
    st = Store(store)
    assert st.run_attrs("bad")["status"] == "complete"
    ds = st.open_step("bad", "line").load()
    assert ds.attrs["status"] == "complete"
    if case.startswith("NaN"):
        assert ds[STATUS_VAR].values.tolist() == [1, STATUS_NONFINITE, STATUS_NONFINITE]
        assert ds.attrs["cells_nonfinite"] == 2
        assert np.isnan(ds["train_loss"].values[1, 0])
        assert np.isinf(ds["validation_loss"].values[2, -1])
    else:
        assert int(ds["diverged"]) == 1


def test_the_table_has_at_least_25_rows() -> None:
    assert len(ROWS) >= 25


def test_docs_list_every_row() -> None:
    doc = Path(__file__).parents[2] / "docs" / "errors.md"
    text = doc.read_text(encoding="utf-8")
    missing = [case for case in ROWS if case not in text]
    assert not missing, f"docs/errors.md lacks rows: {missing}"
