"""Pipelines end to end: template, cells, resume, provenance, point references."""

from __future__ import annotations

import json
import tomllib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr

from lossatlas.engine import (
    ConfigError,
    Plan,
    PointRef,
    Probe,
    StoreError,
    Variable,
    hookimpl,
    make_registry,
)
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import STATUS_DONE, STATUS_NONFINITE, Store

BASE = """
name = "t"
seed = 4
dtype = "float64"
[model]
plugin = "mlp"
hidden = [6]
[dataset]
plugin = "digits"
limit = 150
"""

LINE = (
    BASE
    + """
[[steps]]
name = "line"
probe = "random-line"
points = 9
directions = 4
span = 0.5
"""
)


def config(text: str):
    return parse_config(tomllib.loads(text), source="test.toml")


class Interrupt(Exception):
    pass


@dataclass
class PointOptions:
    scale: float = 1.0
    nan_at: int = -1


class PointProbe(Probe):
    """A test probe: 'moves' the init point and exports it as ``point``; can fail or NaN."""

    name = "test-point"
    Options = PointOptions
    points = ("point",)
    #: A cell index at which compute raises, as if the process were killed there.
    fail_at = -1

    def plan(self, options, ctx):
        D = ctx.objective.D
        return Plan(
            coords={"k": np.arange(5), "param": np.arange(D)},
            cell_dims=("k",),
            variables={"value": Variable(("k",), "a number")},
            static={
                "point": (
                    ("param",),
                    (ctx.init_point() * options.scale).cpu().numpy(),
                    {"description": "the point"},
                )
            },
        )

    def compute(self, options, ctx, cell):
        if cell.index["k"] == self.fail_at:
            raise Interrupt("killed")
        if cell.index["k"] == options.nan_at:
            return {"value": float("nan")}
        return {"value": torch.rand((), generator=cell.generator()).item()}


@dataclass
class UseOptions:
    at: PointRef = PointRef("init")
    others: list[PointRef] = field(default_factory=list)


class UsePoint(Probe):
    name = "test-use"
    Options = UseOptions

    def plan(self, options, ctx):
        return Plan(coords={}, variables={"norm": Variable((), "‖x‖")})

    def compute(self, options, ctx, cell):
        return {"norm": float(ctx.resolve_point(options.at).norm())}


def registry():
    mod = types.ModuleType("testprobes")

    @hookimpl
    def lossatlas_register_probes():
        return [PointProbe(), UsePoint()]

    mod.lossatlas_register_probes = lossatlas_register_probes
    return make_registry(plugins=[("testprobes", mod)])


def load_all(path: Path, run: str, step: str) -> xr.Dataset:
    return Store(path).open_step(run, step).load()


def test_run_writes_a_labelled_dataset_with_provenance(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    report = run_pipeline(config(LINE), str(path), make_registry())
    assert report.steps[0].computed == 4
    ds = load_all(path, "t", "line")
    assert ds["train_loss"].dims == ("direction", "alpha")
    assert ds.sizes == {"direction": 4, "alpha": 9}
    assert (ds["cell_status"] == STATUS_DONE).all()
    assert 0.0 in ds["alpha"].values
    for v in ("train_loss", "validation_accuracy"):
        assert ds[v].attrs["description"] and "units" in ds[v].attrs
    for key in (
        "config",
        "torch_version",
        "python_version",
        "lossatlas_version",
        "device",
        "dtype",
        "seed",
        "started",
        "finished",
        "status",
    ):
        assert key in ds.attrs, key
    assert ds.attrs["status"] == "complete" and ds.attrs["dtype"] == "float64"
    assert json.loads(ds.attrs["config"])["model"]["hidden"] == [6]
    # the centre of every line is the point itself
    centre = ds["train_loss"].sel(alpha=0.0).values
    assert np.allclose(centre, centre[0], rtol=1e-12)
    tree = xr.open_datatree(path, engine="zarr")
    assert "t/line" in tree.groups or "/t/line" in tree.groups
    assert Store(path).run_attrs("t")["status"] == "complete"


def test_rerun_skips_and_results_do_not_depend_on_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    run_pipeline(config(LINE), str(a), make_registry())
    again = run_pipeline(config(LINE), str(a), make_registry())
    assert again.steps[0].skipped
    # same run into another store, cells in reverse order: identical numbers
    from lossatlas.plugins.executors.local import LocalExecutor

    class Reverse(LocalExecutor):
        def run(self, options, job, cells, on_done):
            super().run(options, job, list(cells)[::-1], on_done)

    reg = make_registry()
    reg.components["executor"]["local"] = (Reverse(), reg.components["executor"]["local"][1])
    run_pipeline(config(LINE), str(b), reg)
    xr.testing.assert_identical(
        load_all(a, "t", "line").drop_attrs(), load_all(b, "t", "line").drop_attrs()
    )


def test_interrupted_run_resumes_to_the_same_numbers(tmp_path: Path, monkeypatch) -> None:
    text = BASE + '[[steps]]\nname = "p"\nprobe = "test-point"\n'
    whole, broken = tmp_path / "whole.zarr", tmp_path / "broken.zarr"
    run_pipeline(config(text), str(whole), registry())
    monkeypatch.setattr(PointProbe, "fail_at", 3)
    with pytest.raises(Interrupt):
        run_pipeline(config(text), str(broken), registry())
    monkeypatch.setattr(PointProbe, "fail_at", -1)
    ds = Store(broken).open_step("t", "p").load()
    assert list(ds["cell_status"].values) == [1, 1, 1, 0, 0]
    # the store says the step stopped and why, not that it still runs
    stopped = "interrupted" if issubclass(Interrupt, KeyboardInterrupt) else "failed"
    assert ds.attrs["status"] == stopped and "Interrupt" in ds.attrs["error"]
    run_attrs = Store(broken).run_attrs("t")
    assert run_attrs["status"] == stopped and run_attrs["error"] == ds.attrs["error"]
    # a half-written chunk of a pending cell is overwritten on resume
    chunk = broken / "t" / "p" / "value" / "c" / "3"
    chunk.parent.mkdir(parents=True, exist_ok=True)
    chunk.write_bytes(b"\x00garbage")
    # resuming with the same config (the failure gone) computes only the rest
    report = run_pipeline(config(text), str(broken), registry())
    assert report.steps[0].computed == 2
    resumed = Store(broken)
    assert resumed.open_step("t", "p").attrs["status"] == "complete"
    assert resumed.open_step("t", "p").attrs["error"] == ""
    assert resumed.run_attrs("t")["status"] == "complete" and not resumed.run_attrs("t")["error"]
    np.testing.assert_array_equal(
        load_all(whole, "t", "p")["value"], load_all(broken, "t", "p")["value"]
    )


def test_a_different_config_under_the_same_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    run_pipeline(config(LINE), str(path), make_registry())
    with pytest.raises(StoreError, match=r"different config \(differs at steps\[0\]\.points"):
        run_pipeline(config(LINE.replace("points = 9", "points = 11")), str(path), make_registry())
    # a device change is not a different experiment
    run_pipeline(
        config(LINE.replace('dtype = "float64"', 'dtype = "float64"\ndevice = "cpu"')),
        str(path),
        make_registry(),
    )


def test_nonfinite_cells_are_recorded_not_lost(tmp_path: Path) -> None:
    text = BASE + '[[steps]]\nname = "p"\nprobe = "test-point"\nnan_at = 2\n'
    path = tmp_path / "s.zarr"
    report = run_pipeline(config(text), str(path), registry())
    assert report.steps[0].nonfinite == 1
    ds = load_all(path, "t", "p")
    assert list(ds["cell_status"].values) == [1, 1, STATUS_NONFINITE, 1, 1]
    assert ds.attrs["status"] == "complete" and ds.attrs["cells_nonfinite"] == 1


def test_later_steps_use_earlier_points(tmp_path: Path) -> None:
    text = (
        BASE
        + """
[[steps]]
name = "p"
probe = "test-point"
scale = 2.0
[[steps]]
name = "use"
probe = "test-use"
at = "p"
"""
    )
    path = tmp_path / "s.zarr"
    run_pipeline(config(text), str(path), registry())
    p = load_all(path, "t", "p")["point"].values
    assert float(load_all(path, "t", "use")["norm"]) == pytest.approx(np.linalg.norm(p))
    # another run in the same store can use it by RUN/STEP
    other = text.replace('name = "t"', 'name = "u"').replace('at = "p"', 'at = "t/p.point"')
    run_pipeline(config(other), str(path), registry())
    assert float(load_all(path, "u", "use")["norm"]) == pytest.approx(np.linalg.norm(p))
    assert Store(path).runs() == ["t", "u"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('at = "later"', "names no earlier step"),
        ('at = "nope/p"', "the store has no step 'p' of run 'nope'"),
        ('others = ["p", 3]', r"others'\[1\]: expected a point reference"),
        ('at = "checkpoint:/no/such.pt"', "does not exist"),
        ("bogus = 1", "unknown option 'bogus'"),
        ('at = "init:x"', "'init:N' needs a non-negative integer seed"),
        # earlier steps that exist but do not hold the point: refused before they run
        ('at = "p.bogus"', r"step 'p' \(probe 'test-point'\) has no point 'bogus'"),
        ('at = "line"', r"step 'line' \(probe 'random-line'\) has no point 'point'.*none"),
        (
            'at = "checkpoint:{wrong}"',
            r"does not fit the model: .*1.weight is \[3, 3\] in the checkpoint but \[6, 64\]",
        ),
    ],
)
def test_bad_references_fail_before_the_store_is_touched(
    tmp_path: Path, extra: str, message: str
) -> None:
    wrong = tmp_path / "wrong.pt"
    torch.save({"1.weight": torch.zeros(3, 3)}, wrong)
    earlier = '[[steps]]\nname = "p"\nprobe = "test-point"\n'
    earlier += '[[steps]]\nname = "line"\nprobe = "random-line"\npoints = 3\n'
    extra = extra.replace("{wrong}", str(wrong))
    text = BASE + earlier + f'[[steps]]\nname = "use"\nprobe = "test-use"\n{extra}\n'
    path = tmp_path / "s.zarr"
    with pytest.raises((ConfigError, StoreError, Exception), match=message):
        run_pipeline(config(text), str(path), registry())
    assert not path.exists()


def test_a_foreign_directory_is_never_written(tmp_path: Path) -> None:
    foreign = tmp_path / "mydata"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(StoreError, match="not a Zarr store"):
        run_pipeline(config(LINE), str(foreign), make_registry())
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.tex"]


def test_a_failed_run_shows_failed_in_the_consolidated_view(tmp_path: Path, monkeypatch) -> None:
    """xr.open_datatree reads the consolidated metadata: it must say why the run stopped."""
    text = BASE + '[[steps]]\nname = "p"\nprobe = "test-point"\n'
    path = tmp_path / "s.zarr"
    monkeypatch.setattr(PointProbe, "fail_at", 2)
    with pytest.raises(Interrupt):
        run_pipeline(config(text), str(path), registry())
    tree = xr.open_datatree(path, engine="zarr")
    assert tree["t"].attrs["status"] == "failed" and "Interrupt" in tree["t"].attrs["error"]
    assert tree["t/p"].attrs["status"] == "failed"


@pytest.mark.filterwarnings("ignore:Object at notes.partial is not recognized")
def test_leftovers_of_killed_writes_are_removed_on_resume(tmp_path: Path, monkeypatch) -> None:
    text = BASE + '[[steps]]\nname = "p"\nprobe = "test-point"\n'
    path = tmp_path / "s.zarr"
    monkeypatch.setattr(PointProbe, "fail_at", 2)
    with pytest.raises(Interrupt):
        run_pipeline(config(text), str(path), registry())
    monkeypatch.setattr(PointProbe, "fail_at", -1)
    # what zarr's atomic writes leave behind when the process dies between write and rename
    hexa = "0123456789abcdef" * 2
    chunk_tmp = path / "t" / "p" / "value" / "c" / f"2.{hexa}.partial"
    chunk_tmp.parent.mkdir(parents=True, exist_ok=True)
    chunk_tmp.write_bytes(b"half")
    root_tmp = path / f"zarr.{hexa}.partial"
    root_tmp.write_bytes(b"{")
    mine = path / "t" / "notes.partial"  # not zarr's pattern: not ours to delete
    mine.write_text("keep")
    run_pipeline(config(text), str(path), registry())
    assert not chunk_tmp.exists() and not root_tmp.exists() and mine.exists()
    assert load_all(path, "t", "p").attrs["status"] == "complete"


def test_a_small_run_imports_nothing_it_does_not_use(tmp_path: Path, tiny_config: Any) -> None:
    """A run of a map on digits imports none of the modules that cost a second and do no
    work here: sympy (torch's, for nll_loss under vmap and grad_outputs), scikit-learn
    (the digits file is read directly), dask.array (xarray's first Variable),
    scipy.sparse.linalg (HessianOperator). The run itself is checked complete."""
    import json as _json
    import subprocess
    import sys

    data = tiny_config(
        steps=[{"name": "m", "probe": "hessian-directions", "points": 3, "maps": ["random"]}]
    )
    code = (
        "import json, sys\n"
        "from lossatlas.engine import make_registry\n"
        "from lossatlas.engine.config import parse_config\n"
        "from lossatlas.engine.runner import run_pipeline\n"
        f"cfg = parse_config(json.loads({_json.dumps(_json.dumps(data))}))\n"
        f"run_pipeline(cfg, {str(tmp_path / 's.zarr')!r}, make_registry())\n"
        "mods = ('sympy', 'sklearn', 'dask.array', 'scipy.sparse.linalg')\n"
        "print(json.dumps([m for m in mods if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert _json.loads(out.stdout.strip().splitlines()[-1]) == []
    from lossatlas.engine.store import Store

    assert Store(tmp_path / "s.zarr").step_status("tiny", "m") == "complete"


def test_dask_arrays_still_work_after_the_lazy_lookup() -> None:
    """xarray finds dask arrays once dask.array is imported (the lazy lookup of
    engine/store/layout.py changes when dask is looked for, not what is found)."""
    import dask.array as da
    import xarray as xr

    import lossatlas.engine.store  # noqa: F401

    v = xr.Variable(("x",), da.ones(4, chunks=2))
    assert v.chunks == ((2, 2),)
    masked = da.ma.masked_array(da.arange(4.0, chunks=2), mask=[0, 1, 0, 0])
    assert np.isnan(xr.Variable(("x",), masked).values[1])
