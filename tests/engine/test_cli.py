"""The CLI's own checks: ``plot`` refuses a bad output before drawing, ``inspect``
tells a stopped run from a running one, ``--debug`` works before and after the command,
a closed pipe ends quietly, errors list what is there, ``run --step`` refuses a missing
earlier step, per-step lines print under CI, and ``plugins NAME`` shows options."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lossatlas.engine import ConfigError, StoreError
from lossatlas.engine.cli import EXIT_BROKEN_PIPE, IMAGE_SUFFIXES
from lossatlas.engine.store import Store

COMMANDS = ["run", "plot", "inspect", "report", "plugins"]


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
        ("line.txt", "use a .png, .svg, .pdf, .jpg or .jpeg file name"),
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
    formats = {".png": b"\x89PNG", ".svg": b"<?xml", ".pdf": b"%PDF"}
    formats.update({".jpg": b"\xff\xd8\xff", ".jpeg": b"\xff\xd8\xff"})
    assert tuple(formats) == IMAGE_SUFFIXES
    for suffix, magic in formats.items():
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


def test_plot_help_lists_exactly_the_accepted_suffixes(run_cli: Any) -> None:
    text = " ".join(run_cli("plot", "--help").output.split())
    assert "the format follows the suffix (.png, .svg, .pdf, .jpg, .jpeg)" in text


# ------------------------------------------------------------------------ --debug


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_debug_after_it(run_cli: Any, command: str) -> None:
    result = run_cli(command, "--help")
    assert "--debug" in result.output


@pytest.mark.parametrize(
    "args",
    [("--debug", "run", "{missing}"), ("run", "{missing}", "--debug")],
    ids=["before", "after"],
)
def test_debug_before_or_after_the_command_shows_the_traceback(
    tmp_path: Path, run_cli: Any, args: tuple[str, ...]
) -> None:
    missing = str(tmp_path / "missing.toml")
    with pytest.raises(ConfigError):  # the exception itself, not a one-line error
        run_cli(*(a.format(missing=missing) for a in args))


def test_debug_after_inspect_shows_the_traceback(tmp_path: Path, run_cli: Any) -> None:
    with pytest.raises(StoreError):
        run_cli("inspect", tmp_path / "none.zarr", "--debug")


def test_without_debug_an_error_is_one_line(tmp_path: Path, run_cli: Any) -> None:
    result = run_cli("run", tmp_path / "missing.toml")
    assert result.exit_code == 2
    assert result.stderr.startswith("lossatlas: error: ") and result.stderr.count("\n") == 1


# ------------------------------------------------------------------- closed pipe


def test_a_closed_pipe_ends_quietly(lossatlas_command: Any) -> None:
    proc = subprocess.Popen(
        lossatlas_command("plugins"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line (like `| head -0`)
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE, stderr
    assert stderr == ""


# ------------------------------------------------------- errors list what is there


def test_plot_group_without_a_slash_lists_the_results(store: Path, tmp_path: Path, run_cli: Any):
    result = run_cli("plot", store, "tiny", "-o", tmp_path / "x.png")
    assert result.exit_code == 2
    assert "must be RUN/STEP" in result.stderr and "results in" in result.stderr
    assert "tiny/line" in result.stderr


def test_plot_unknown_run_lists_the_runs(store: Path, tmp_path: Path, run_cli: Any) -> None:
    result = run_cli("plot", store, "tinny/line", "-o", tmp_path / "x.png")
    assert result.exit_code == 2
    assert "has no run 'tinny' (did you mean 'tiny'?); runs: tiny" in result.stderr


def test_plot_missing_step_lists_the_steps(store: Path, tmp_path: Path, run_cli: Any) -> None:
    result = run_cli("plot", store, "tiny/lin", "-o", tmp_path / "x.png")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "no result for step 'lin' of run 'tiny' (did you mean 'line'?)" in line
    assert line.endswith("steps of run 'tiny' with results: line")


def test_inspect_unknown_run_lists_the_runs(store: Path, run_cli: Any) -> None:
    result = run_cli("inspect", store, "--run", "tin")
    assert result.exit_code == 2
    assert "has no run 'tin' (did you mean 'tiny'?); runs: tiny" in result.stderr


# -------------------------------------------------------------------- run --step


def _two_steps(tiny_config: Any) -> dict[str, Any]:
    data = tiny_config(step={"at": "perm"})
    data["steps"].insert(0, {"name": "perm", "probe": "permute-units"})
    return data


def test_run_help_points_to_the_docs_and_explains_step(run_cli: Any) -> None:
    text = " ".join(run_cli("run", "--help").output.split())
    for words in ("docs/config.md", "examples/", "lossatlas plugins", "must already be in the"):
        assert words in text


def test_step_without_the_earlier_result_is_refused_before_the_store(
    tmp_path: Path, tiny_config: Any, write_config: Any, run_cli: Any
) -> None:
    path = tmp_path / "s.zarr"
    result = run_cli(
        "run", write_config(_two_steps(tiny_config)), "--store", path, "--step", "line"
    )
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line
    assert "--step line: it uses point 'perm' of step 'perm', which has no result" in line
    assert "--step perm --step line" in line
    assert not path.exists()  # refused before the store is touched


def test_step_with_the_earlier_result_in_the_store_runs(
    tmp_path: Path, tiny_config: Any, write_config: Any, run_cli: Any
) -> None:
    path, config = tmp_path / "s.zarr", write_config(_two_steps(tiny_config))
    assert run_cli("run", config, "--store", path, "-q", "--step", "perm").exit_code == 0
    result = run_cli("run", config, "--store", path, "-q", "--step", "line")
    assert result.exit_code == 0, result.output
    assert Store(str(path)).step_ready("tiny", "line")


def test_a_missing_step_the_check_cannot_see_is_explained(
    tmp_path: Path, tiny_config: Any, write_config: Any, run_cli: Any, monkeypatch: Any
) -> None:
    from lossatlas.engine import cli

    monkeypatch.setattr(cli, "_check_earlier_steps", lambda *args: None)
    path = tmp_path / "s.zarr"
    result = run_cli(
        "run", write_config(_two_steps(tiny_config)), "--store", path, "--step", "line"
    )
    assert result.exit_code == 2
    assert "no result for step 'perm' of run 'tiny' (left out by --step)" in result.stderr
    assert "--step perm --step line" in result.stderr


# ------------------------------------------------------------- per-step lines


@pytest.mark.parametrize(("quiet", "shown"), [((), True), (("-q",), False)])
def test_per_step_lines_print_under_ci_unless_quiet(
    tmp_path: Path,
    tiny_config: Any,
    write_config: Any,
    run_cli: Any,
    monkeypatch: Any,
    quiet: tuple[str, ...],
    shown: bool,
) -> None:
    monkeypatch.setenv("CI", "1")
    result = run_cli("run", write_config(tiny_config()), "--store", tmp_path / "s.zarr", *quiet)
    assert result.exit_code == 0, result.output
    assert ("step line: 4 cell(s) computed in" in result.output) is shown


# ---------------------------------------------------------------- plugins NAME


def test_plugins_name_shows_types_defaults_and_docs(run_cli: Any) -> None:
    result = run_cli("plugins", "permute-units")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("probe 'permute-units'")
    assert "at  (point reference; default 'init')" in out and "the point to copy" in out
    assert "units  (list of int; default [0, 1])" in out
    assert 'used as: [[steps]] probe = "permute-units"' in out


def test_plugins_name_shared_by_two_kinds_shows_both(run_cli: Any) -> None:
    result = run_cli("plugins", "permutation", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["kind"] for r in rows] == ["model", "dataset"]
    hidden = next(o for o in rows[0]["options"] if o["name"] == "hidden")
    assert hidden == {"name": "hidden", "type": "int", "default": "3", "doc": "hidden ReLU units"}


def test_plugins_unknown_name_is_one_line_with_a_suggestion(run_cli: Any) -> None:
    result = run_cli("plugins", "random-lin")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and "(did you mean 'random-line'?)" in line
