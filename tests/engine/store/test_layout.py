"""The store keeps its promises to plugins: what ``finalize`` may write, scratch space,
no-op reruns, plugin identity on resume — tested through a third-party probe installed
by entry point (``meanprobe/``), as a plugin author's package is."""

from __future__ import annotations

import hashlib
import importlib
import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from lossatlas.engine import PluginError, StoreError, make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import STATUS_DONE, STATUS_VAR, Store

PACKAGE = Path(__file__).parent / "meanprobe"

CONFIG = """
name = "m"
dtype = "float64"
[model]
plugin = "mlp"
hidden = [4]
[dataset]
plugin = "digits"
limit = 100
[[steps]]
name = "mean"
probe = "mean-probe"
mode = "{mode}"
"""


def install(site: Path, version: str = "0.1.0") -> None:
    """What ``pip install`` leaves for importlib.metadata: a dist-info with the entry point."""
    for old in site.glob("lossatlas_meanprobe-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    info = site / f"lossatlas_meanprobe-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: lossatlas-meanprobe\nVersion: {version}\n"
    )
    (info / "entry_points.txt").write_text("[lossatlas]\nmeanprobe = lossatlas_meanprobe.plugin\n")
    importlib.invalidate_caches()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "site"
    install(folder)
    monkeypatch.syspath_prepend(str(PACKAGE))
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    return folder


def run(mode: str, store: Path, **kw: Any) -> Store:
    config = parse_config(tomllib.loads(CONFIG.format(mode=mode)), source="m.toml")
    run_pipeline(config, str(store), make_registry(), **kw)
    return Store(store)


@pytest.mark.parametrize("mode", ["assign", "dataset"])
def test_finalize_returning_ds_assign_keeps_every_result(
    site: Path, tmp_path: Path, mode: str
) -> None:
    """Reproduction 1: ``ds.assign(mean=...)`` from finalize used to delete the probe's
    results and cell_status and write back NaN; now only the new variable is added."""
    st = run(mode, tmp_path / "s.zarr")
    ds = st.open_step("m", "mean").load()
    assert ds.attrs["status"] == "complete"
    assert np.all(ds[STATUS_VAR].values == STATUS_DONE)
    loss = ds["loss"].values
    assert loss.shape == (3, 4) and np.all(np.isfinite(loss))
    np.testing.assert_allclose(ds["mean_loss"].values, loss.mean(1))
    assert ds.attrs["summary_vars"] == ["mean_loss"]
    assert ds["mean_loss"].attrs["units"] == "1" and ds["mean_loss"].attrs["long_name"]
    # The plugin is named as the third party it is.
    assert ds.attrs["probe_plugin"] == "meanprobe (lossatlas-meanprobe 0.1.0)"


def test_finalize_changing_a_planned_variable_is_one_error_and_loses_nothing(
    site: Path, tmp_path: Path
) -> None:
    with pytest.raises(PluginError, match="finalize returned variable 'loss'") as info:
        run("overwrite", tmp_path / "s.zarr")
    assert "\n" not in str(info.value)
    ds = Store(tmp_path / "s.zarr").open_step("m", "mean").load()
    assert np.all(ds[STATUS_VAR].values == STATUS_DONE)
    assert np.all(np.isfinite(ds["loss"].values))
    assert ds.attrs["status"] == "failed"


def test_finalize_may_add_a_dim_with_its_coordinate(site: Path, tmp_path: Path) -> None:
    ds = run("newdim", tmp_path / "s.zarr").open_step("m", "mean").load()
    assert ds["loss_quartiles"].dims == ("stat", "direction")
    np.testing.assert_allclose(ds["stat"].values, [0.25, 0.75])
    np.testing.assert_allclose(
        ds["loss_quartiles"].values, np.quantile(ds["loss"].values, [0.25, 0.75], axis=1)
    )


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_no_op_rerun_changes_nothing(site: Path, tmp_path: Path) -> None:
    """Reproduction 10: the timestamps of a complete run are not rewritten."""
    store = tmp_path / "s.zarr"
    st = run("assign", store)
    before = _snapshot(store)
    run("assign", store)
    assert _snapshot(store) == before
    assert not st.sidecar.exists() or not any(st.sidecar.rglob("*.lease"))


def test_a_resumed_step_refuses_a_changed_plugin(site: Path, tmp_path: Path) -> None:
    """Reproduction 7: a partial step resumed after its plugin changed version."""
    store = tmp_path / "s.zarr"
    st = run("assign", store)
    # Make the step partial, as a kill would leave it: one cell not run.
    g = zarr.open_group(str(store), path="m/mean", mode="r+", use_consolidated=False)
    g[STATUS_VAR][1] = 0
    g.attrs["status"] = "interrupted"
    install(site, "0.2.0")
    with pytest.raises(StoreError) as info:
        run("assign", store)
    text = str(info.value)
    assert "lossatlas-meanprobe 0.1.0" in text and "lossatlas-meanprobe 0.2.0" in text
    assert "--allow-plugin-change" in text and "\n" not in text
    assert int(st.cell_status("m", "mean")[1]) == 0  # nothing recomputed

    run("assign", store, allow_plugin_change=True)
    ds = st.open_step("m", "mean")
    assert ds.attrs["status"] == "complete"
    log = json.loads(ds.attrs["plugin_changes"])
    assert log[0]["probe_plugin"] == {
        "was": "meanprobe (lossatlas-meanprobe 0.1.0)",
        "now": "meanprobe (lossatlas-meanprobe 0.2.0)",
    }


def test_cell_scratch_lives_beside_the_store_and_goes_when_the_step_completes(
    tmp_path: Path,
) -> None:
    st = Store(tmp_path / "s.zarr")
    folder = st.cell_scratch("r", "s", {"pair": 0, "threshold": 2})
    assert folder.is_dir() and not folder.is_relative_to(st.path)
    (folder / "x.pt").write_bytes(b"1")
    st.clear_scratch("r", "s")
    assert not folder.exists()


def test_template_is_not_allocated(tmp_path: Path) -> None:
    """A large planned result is a template of fill values: no chunk written up front."""
    from lossatlas.engine import Plan, Variable

    st = Store(tmp_path / "s.zarr")
    st.ensure_run("r", {"status": "running"})
    plan = Plan(
        coords={"a": np.arange(20_000), "b": np.arange(5_000)},
        variables={"v": Variable(("a", "b"), "big")},  # 800 MB if allocated
        cell_dims=("a",),
    )
    st.write_template("r", "s", plan, {"probe": "x"})
    files = [p for p in (tmp_path / "s.zarr").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 2_000_000
    assert st.pending_cells("r", "s")[:2] == [(0,), (1,)]
    ds = st.open_step("r", "s")
    assert ds.attrs["Conventions"] == "CF-1.11" and np.isnan(float(ds["v"][3, 7]))
