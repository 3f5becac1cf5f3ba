"""The CLI's own checks: ``plot`` refuses a bad output before drawing, and ``inspect``
tells a stopped run from a running one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lossatlas.engine.store import Store


@pytest.fixture
def store(tmp_path: Path, tiny_config: Any, write_config: Any, run_cli: Any) -> Path:
    path = tmp_path / "s.zarr"
    result = run_cli("run", write_config(tiny_config()), "--store", path, "-q")
    assert result.exit_code == 0, result.output
    return path


@pytest.mark.parametrize(
    ("output", "words"),
    [
        ("missing-folder/line.png", "does not exist; create it first"),
        ("line.txt", "use a .png, .svg or .pdf file name"),
    ],
)
def test_plot_refuses_a_bad_output_in_one_line(
    store: Path, tmp_path: Path, run_cli: Any, output: str, words: str
) -> None:
    result = run_cli("plot", store, "tiny/line", "-o", tmp_path / output)
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith("lossatlas: error: ") and "\n" not in line and words in line
    assert not (tmp_path / output).exists()


def test_plot_writes_each_format(store: Path, tmp_path: Path, run_cli: Any) -> None:
    for suffix, magic in ((".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")):
        out = tmp_path / f"line{suffix}"
        result = run_cli("plot", store, "tiny/line", "-o", out)
        assert result.exit_code == 0, result.output
        assert out.read_bytes().startswith(magic)


def test_inspect_shows_why_a_run_stopped(store: Path, run_cli: Any) -> None:
    st = Store(str(store))
    st.set_run_attrs("tiny", {"status": "failed", "error": "ValueError: boom"})
    st.set_step_attrs("tiny", "line", {"status": "failed", "error": "ValueError: boom"})
    result = run_cli("inspect", store)
    assert result.exit_code == 0
    assert "run tiny  [failed]" in result.output
    assert ": ValueError: boom" in result.output and "error: ValueError: boom" in result.output
    assert "run the same command again to resume" in result.output
