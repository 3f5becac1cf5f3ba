"""The store commands as a user meets them: verify (+ repair), rm, export, inspect --json,
check, run --rerun; and the mistakes that must be one line with nothing written
(run names, impossible sizes, non-finite options, a full disk)."""

from __future__ import annotations

import csv
import errno
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from lossatlas.engine.store import STATUS_DONE, Store


@pytest.fixture
def stored(tmp_path: Path, tiny_config: Any, write_config: Any, run_cli: Any) -> tuple[Path, Path]:
    """A complete tiny run (random-line, 4 directions × 9 points) and its config."""
    config = write_config(tiny_config())
    store = tmp_path / "s.zarr"
    result = run_cli("run", config, "--store", store, "-q")
    assert result.exit_code == 0, result.output
    return store, config


def _chunk(store: Path, var: str, cell: int) -> Path:
    return store / "tiny" / "line" / var / "c" / str(cell) / "0"


def test_a_corrupted_chunk_is_found_by_verify_and_recomputed_after_repair(
    stored: tuple[Path, Path], run_cli: Any
) -> None:
    """Reproduction 6: garbage in a finished chunk used to pass as complete."""
    store, config = stored
    want = Store(store).open_step("tiny", "line").load()
    chunk = _chunk(store, "train_loss", 2)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))

    plot = run_cli("plot", store, "tiny/line", "-o", store.parent / "p.png")
    assert plot.exit_code == 2 and "lossatlas verify" in plot.stderr, plot.stderr
    found = run_cli("verify", store)
    assert found.exit_code == 1
    assert "tiny/line: cell direction=2: 'train_loss' is unreadable" in found.stdout
    assert "checksum" in found.stdout

    fixed = run_cli("verify", store, "--repair")
    assert "marked 1 cell(s) not run" in fixed.stdout
    st = Store(store)
    assert st.cell_status("tiny", "line").tolist() == [1, 1, 0, 1]
    assert "[partial]" in run_cli("inspect", store).stdout

    again = run_cli("run", config, "--store", store)
    assert again.exit_code == 0 and "1 cell(s) computed" in again.stdout
    assert run_cli("verify", store).exit_code == 0
    got = st.open_step("tiny", "line").load()
    for name in want.data_vars:
        assert np.asarray(got[name]).tobytes() == np.asarray(want[name]).tobytes(), name


def test_verify_finds_a_cell_marked_done_without_data(
    stored: tuple[Path, Path], run_cli: Any
) -> None:
    store, _ = stored
    _chunk(store, "validation_loss", 1).unlink()  # a lost chunk reads as NaN
    found = run_cli("verify", store)
    assert found.exit_code == 1
    assert "cell direction=1: marked done but 'validation_loss' holds NaN/inf" in found.stdout


def test_rm_removes_a_step_and_a_run_and_keeps_metadata_right(
    stored: tuple[Path, Path], run_cli: Any
) -> None:
    store, config = stored
    refused = run_cli("rm", store, "tiny/line")  # no terminal to ask on: needs --yes
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert run_cli("rm", store, "tiny/lin", "--yes").exit_code == 2
    assert run_cli("rm", store, "tiny/line", "--yes").exit_code == 0
    tree = xr.open_datatree(str(store), engine="zarr")
    assert "line" not in tree["tiny"].children
    assert run_cli("run", config, "--store", store, "-q").exit_code == 0  # recomputed
    assert run_cli("rm", store, "tiny", "--yes").exit_code == 0
    assert Store(store).runs() == []
    assert list(xr.open_datatree(str(store), engine="zarr").children) == []


def test_rerun_recomputes_the_step_and_what_follows(
    tmp_path: Path, tiny_config: Any, write_config: Any, run_cli: Any
) -> None:
    data = tiny_config()
    data["steps"].append({"name": "line2", "probe": "random-line", "points": 5, "directions": 2})
    config = write_config(data)
    store = tmp_path / "s.zarr"
    assert run_cli("run", config, "--store", store, "-q").exit_code == 0
    before = Store(store).open_step("tiny", "line2").load()
    result = run_cli("run", config, "--store", store, "--rerun", "line2")
    assert result.exit_code == 0
    assert "step line: already complete" in result.stdout
    assert "step line2: 2 cell(s) computed" in result.stdout
    after = Store(store).open_step("tiny", "line2").load()
    assert after["train_loss"].values.tobytes() == before["train_loss"].values.tobytes()
    bad = run_cli("run", config, "--store", store, "--rerun", "lin")
    assert bad.exit_code == 2 and "did you mean 'line'" in bad.stderr


def test_export_netcdf_and_csv(stored: tuple[Path, Path], run_cli: Any) -> None:
    store, _ = stored
    nc = store.parent / "line.nc"
    assert run_cli("export", store, "tiny/line", "--format", "netcdf", "-o", nc).exit_code == 0
    want = Store(store).open_step("tiny", "line").load()
    got = xr.open_dataset(nc, engine="h5netcdf").load()
    np.testing.assert_array_equal(got["train_loss"].values, want["train_loss"].values)
    assert got.attrs["Conventions"] == "CF-1.11"
    assert json.loads(got.attrs["cell_dims"]) == ["direction"]

    out = store.parent / "line.csv"
    result = run_cli(
        "export", store, "tiny/line", "--format", "csv", "-o", out, "--var", "train_loss"
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 * 9 and set(rows[0]) == {
        "variable",
        "direction",
        "alpha",
        "value",
        "units",
    }
    first = rows[0]
    assert float(first["value"]) == pytest.approx(float(want["train_loss"][0, 0]))
    wrong = run_cli("export", store, "tiny/line", "--format", "csv", "-o", store.parent / "x.nc")
    assert wrong.exit_code == 2 and ".csv" in wrong.stderr


def test_export_formats_match_the_cli_choices() -> None:
    from lossatlas.engine.cli.export import export
    from lossatlas.engine.store.export import EXPORTERS

    choice = next(p for p in export.params if p.name == "fmt")
    assert list(choice.type.choices) == list(EXPORTERS)


def test_inspect_json_and_check(stored: tuple[Path, Path], run_cli: Any) -> None:
    store, config = stored
    doc = json.loads(run_cli("inspect", store, "--json").stdout)
    step = doc[0]["steps"][0]
    assert doc[0]["state"] == "complete" and step["cells"] == {
        "done": 4,
        "total": 4,
        "nonfinite": 0,
    }
    checked = run_cli("check", config)
    assert checked.exit_code == 0, checked.output
    assert 'scale = "relative"' in checked.stdout  # a default filled in
    assert "line: 4 cell(s), 36 loss evaluations" in checked.stdout
    as_json = json.loads(run_cli("check", config, "--json").stdout)
    assert as_json["config"]["steps"][0]["span"] == 1.0


def test_check_writes_nothing(
    tmp_path: Path, tiny_config: Any, write_config: Any, run_cli: Any
) -> None:
    config = write_config(tiny_config())
    before = sorted(p.name for p in tmp_path.iterdir())
    assert run_cli("check", config, "--store", tmp_path / "none.zarr").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("name", ["a/b", "../../evil2", ".hidden", "a b"])
def test_run_names_from_the_cli_are_checked_like_the_configs(
    name: str, tmp_path: Path, tiny_config: Any, write_config: Any, run_cli: Any
) -> None:
    """Reproduction 5."""
    config = write_config(tiny_config())
    result = run_cli("run", config, "--store", tmp_path / "s.zarr", "--name", name)
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and "must be letters, digits" in line
    assert not (tmp_path / "s.zarr").exists()


def test_an_impossible_grid_is_refused_before_anything_is_allocated(
    tmp_path: Path, tiny_config: Any, write_config: Any, lossatlas_command: Any
) -> None:
    """Reproduction 4: a 1e9-point grid, in a process limited to 6 GiB of address space."""
    config = write_config(tiny_config(step={"directions": 1_000_000, "points": 1001}))
    store = tmp_path / "s.zarr"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))

    proc = subprocess.run(
        lossatlas_command("run", config, "--store", store, "--max-store", "10GB"),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "'directions'" in line and "--max-store" in line
    assert "1,000,000 cell(s)" in line and "29.8 GiB" in line
    assert not store.exists()


def test_memory_per_cell_over_the_limit_is_refused(
    tmp_path: Path, tiny_config: Any, write_config: Any, run_cli: Any
) -> None:
    config = write_config(tiny_config(step={"points": 100_001}))
    result = run_cli("run", config, "--store", tmp_path / "s.zarr", "--max-memory", "100MB")
    assert result.exit_code == 2 and "--max-memory" in result.stderr and "'points'" in result.stderr
    bad = run_cli("run", config, "--store", tmp_path / "s.zarr", "--max-memory", "lots")
    assert bad.exit_code == 2 and "is not a size" in bad.stderr


def test_non_finite_options_are_refused(
    tmp_path: Path, tiny_config: Any, write_config: Any, run_cli: Any
) -> None:
    """Reproduction 9: ``span = inf`` used to run (α = [nan nan 0 nan inf])."""
    text = (
        write_config(tiny_config())
        .read_text()
        .replace('probe = "random-line"', 'probe = "random-line"\nspan = inf')
    )
    config = tmp_path / "inf.toml"
    config.write_text(text)
    result = run_cli("run", config, "--store", tmp_path / "s.zarr")
    assert result.exit_code == 2 and "expected a finite number, got inf" in result.stderr
    assert not (tmp_path / "s.zarr").exists()


def test_a_full_disk_is_one_line_marks_the_run_failed_and_resumes(
    tmp_path: Path,
    tiny_config: Any,
    write_config: Any,
    run_cli: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reproduction 8."""
    from lossatlas.engine import sweep

    config = write_config(tiny_config())
    store = tmp_path / "s.zarr"
    real = sweep.StepRuntime.run_cell
    calls = {"n": 0}

    def full(self: Any, index: tuple[int, ...]) -> int:
        calls["n"] += 1
        if calls["n"] == 3:
            chunk = store / "tiny" / "line" / "train_loss" / "c" / str(index[0]) / "0"
            raise OSError(errno.ENOSPC, "No space left on device", str(chunk))
        return real(self, index)

    monkeypatch.setattr(sweep.StepRuntime, "run_cell", full)
    result = run_cli("run", config, "--store", store, "-q")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and "No space left on device" in line and "train_loss" in line
    assert "internal error" not in line and "resume" in line
    st = Store(store)
    assert st.run_attrs("tiny")["status"] == "failed"
    monkeypatch.setattr(sweep.StepRuntime, "run_cell", real)
    assert run_cli("run", config, "--store", store, "-q").exit_code == 0
    assert (st.cell_status("tiny", "line") == STATUS_DONE).all()


def test_complex_and_far_out_labels_are_refused(tmp_path: Path) -> None:
    """Reproduction 9: complex inputs were cast with a warning; labels up to 1e9 tried a
    32 GB model."""
    from lossatlas.engine import DataError
    from lossatlas.plugins.datasets.arrays import bundle_from_arrays

    x = np.ones((10, 3))
    with pytest.raises(DataError, match="complex"):
        bundle_from_arrays(x + 1j, np.arange(10) % 2, source="c.npz")
    with pytest.raises(DataError, match=r"class index 1000000000 is outside \[0, 100000\)"):
        bundle_from_arrays(x, np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 10**9]), source="y.npz")


def test_the_engine_refuses_labels_outside_n_outputs(tmp_path: Path) -> None:
    import torch

    from lossatlas.engine import DataBundle, DataError, Split
    from lossatlas.engine.context import check_bundle

    split = Split(torch.zeros(4, 2), torch.tensor([0, 1, 2, 3]))
    bundle = DataBundle(split, split, "classification", n_outputs=3)
    with pytest.raises(DataError, match=r"class label 3, outside \[0, 3\)"):
        check_bundle(bundle, "dataset 'mine'")
    cbundle = DataBundle(
        Split(torch.zeros(4, 2, dtype=torch.complex64), split.targets),
        split,
        "classification",
        n_outputs=4,
    )
    with pytest.raises(DataError, match="complex"):
        check_bundle(cbundle, "dataset 'mine'")


def test_the_cli_module_stays_light() -> None:
    code = (
        "import sys, lossatlas.engine.cli as c; "
        "print(','.join(m for m in ('torch', 'zarr', 'xarray', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # lossatlas itself imports the engine (accessor registration); no command module
    # may add more: what it imports is what it imported before this change.
    assert "matplotlib" not in out.stdout
