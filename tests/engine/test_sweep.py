"""Units of work: several cells of the last cell dim computed together and written as
one chunk give the numbers of one cell per chunk, bit for bit; a stopped unit leaves all
its cells not run and is recomputed whole; verify's repair rewrites a damaged unit."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lossatlas.engine import make_registry
from lossatlas.engine.config import parse_config
from lossatlas.engine.context import StepContext
from lossatlas.engine.runner import run_pipeline
from lossatlas.engine.store import STATUS_DONE, STATUS_PENDING, Store
from lossatlas.engine.sweep import MIN_UNITS, rows_per_cell

CASES = {
    # the MLP fast path: every point its own products, whatever shares its batch
    "mlp-float32": {"dtype": "float32", "model": {"plugin": "mlp", "hidden": [16]}},
    "mlp-float64": {"dtype": "float64", "model": {"plugin": "mlp", "hidden": [16]}},
    # the generic functional_call + vmap forward (a CNN): oneDNN picks its grouped
    # convolution's kernel by the batch's size, so the last bit may differ
    "cnn-float64": {"dtype": "float64", "model": {"plugin": "cnn", "channels": [3]}},
}
#: Units in last places a batch of another size may change (the generic path only).
ULPS = {"cnn-float64": 4}


def config(case: str, rows: int, **top: Any) -> dict[str, Any]:
    return {
        "name": "u",
        "seed": 5,
        "dataset": {"plugin": "digits", "limit": 120},
        "rows_per_cell": rows,
        "steps": [
            {"name": "maps", "probe": "hessian-directions", "points": 7, "maps": ["random"]},
            {"name": "line", "probe": "random-line", "points": 5, "directions": 6},
        ],
        **CASES[case],
        **top,
    }


def run(path: Path, data: dict[str, Any], to_toml: Any) -> Store:
    cfg = parse_config(tomllib.loads(to_toml(data)), source="u.toml")
    run_pipeline(cfg, str(path), make_registry())
    return Store(path)


def same(a: Store, b: Store, ulps: int = 0) -> None:
    """Every variable equal bit for bit (or within ``ulps`` units in the last place)."""
    for step in ("maps", "line"):
        x, y = a.open_step("u", step).load(), b.open_step("u", step).load()
        for name in y.data_vars:
            got, want = np.asarray(x[name]), np.asarray(y[name])
            if ulps and got.dtype.kind == "f":
                np.testing.assert_array_max_ulp(got, want, maxulp=ulps)
            else:
                assert got.tobytes() == want.tobytes(), (step, name)


@pytest.mark.parametrize("case", sorted(CASES))
def test_multi_row_units_give_the_numbers_of_one_row_per_cell(
    tmp_path: Path, case: str, toml: Any
) -> None:
    one = run(tmp_path / "one.zarr", config(case, 1), toml)
    # 3 rows: 7 rows of the map and 6 directions split unevenly (a short last unit)
    three = run(tmp_path / "three.zarr", config(case, 3), toml)
    assert one.rows_per_cell("u", "maps") == 1 and three.rows_per_cell("u", "maps") == 3
    assert three.rows_per_cell("u", "line") == 3
    assert three.step_attrs("u", "maps")["rows_per_cell"] == 3
    same(three, one, ULPS.get(case, 0))
    # the chunks are the units: 3 rows of the map's α per chunk, cell_status likewise
    g = three.step_group("u", "maps")
    assert g["train_loss"].chunks == (1, 3, 7) and g["cell_status"].chunks == (1, 3)


def test_a_stopped_unit_leaves_all_its_cells_not_run_and_resumes_exactly(
    tmp_path: Path, toml: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lossatlas.plugins.probes.random_line import RandomLine

    want = run(tmp_path / "want.zarr", config("mlp-float32", 4), toml)
    real = RandomLine.compute_block
    calls = {"n": 0}

    def second_fails(self: Any, options: Any, ctx: Any, cells: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("stopped in the second unit")
        return real(self, options, ctx, cells)

    monkeypatch.setattr(RandomLine, "compute_block", second_fails)
    path = tmp_path / "got.zarr"
    with pytest.raises(RuntimeError, match="second unit"):
        run(path, config("mlp-float32", 4), toml)
    st = Store(path)
    # directions 0-3 are the first unit (done), 4-5 the second (stopped): not run
    assert st.cell_status("u", "line").tolist() == [STATUS_DONE] * 4 + [STATUS_PENDING] * 2
    assert np.isnan(st.open_step("u", "line")["train_loss"].values[4:]).all()
    monkeypatch.setattr(RandomLine, "compute_block", real)
    same(run(path, config("mlp-float32", 4), toml), want)


def test_repair_rewrites_a_damaged_unit_whole(tmp_path: Path, toml: Any, run_cli: Any) -> None:
    path = tmp_path / "s.zarr"
    st = run(path, config("mlp-float32", 3), toml)
    want = st.open_step("u", "line").load()
    chunk = path / "u" / "line" / "train_loss" / "c" / "1" / "0"  # directions 3-5
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    found = run_cli("verify", path)
    assert found.exit_code == 1
    for d in (3, 4, 5):
        assert f"u/line: cell direction={d}: 'train_loss' is unreadable" in found.stdout
    assert "marked 3 cell(s) not run" in run_cli("verify", path, "--repair").stdout
    assert st.cell_status("u", "line").tolist() == [1, 1, 1, 0, 0, 0]
    run(path, config("mlp-float32", 3), toml)
    assert run_cli("verify", path).exit_code == 0
    got = st.open_step("u", "line").load()
    for name in want.data_vars:
        assert np.asarray(got[name]).tobytes() == np.asarray(want[name]).tobytes(), name


def _ctx(data: dict[str, Any], step: str, toml: Any) -> StepContext:
    cfg = parse_config(tomllib.loads(toml(data)), source="u.toml")
    return StepContext(make_registry(), cfg, cfg.step(step))


def test_the_rule_sizes_units_by_work(toml: Any) -> None:
    # A 51 × 51 plane of the digits MLP: a row (51 points on 1797 samples) is too little
    # work for a unit of its own, so a unit holds several rows, and at least MIN_UNITS
    # units remain.
    data = config("mlp-float32", 0, dataset={"plugin": "digits"})
    data["model"] = {"plugin": "mlp", "hidden": [100, 100]}
    data["steps"][0]["points"] = 51
    ctx = _ctx(data, "maps", toml)
    est = ctx.probe.estimate(ctx.options, ctx)
    rows = rows_per_cell(ctx, est, (1, 51))
    assert 1 < rows <= -(-51 // MIN_UNITS)
    # what the config asks for wins; a probe that does not declare units gets 1
    assert rows_per_cell(ctx, est, (1, 51), requested=5) == 5
    assert rows_per_cell(ctx, est, (1, 51), requested=99) == 51
    train = _ctx({**data, "steps": [{"name": "t", "probe": "train", "epochs": 1}]}, "t", toml)
    assert rows_per_cell(train, train.probe.estimate(train.options, train), (4,)) == 1
    assert rows_per_cell(ctx, None, (1, 51)) == 1


def test_rows_per_cell_is_not_part_of_the_science(toml: Any) -> None:
    a = parse_config(tomllib.loads(toml(config("mlp-float32", 0))))
    b = parse_config(tomllib.loads(toml(config("mlp-float32", 3))))
    assert a.science() == b.science() and b.to_dict()["rows_per_cell"] == 3
    with pytest.raises(Exception, match="rows_per_cell"):
        parse_config({**config("mlp-float32", -1)})
