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
        ("line.txt", "use a .png, .svg, .pdf, .eps, .jpg or .jpeg file name"),
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


def test_plot_checks_the_output_before_it_reads_the_store(tmp_path: Path, run_cli: Any) -> None:
    result = run_cli("plot", tmp_path / "missing.zarr", "r/s", "-o", tmp_path / "line.txt")
    assert result.exit_code == 2
    assert "use a .png, .svg, .pdf, .eps, .jpg or .jpeg file name" in result.stderr


def test_plot_writes_each_format(store: Path, tmp_path: Path, run_cli: Any) -> None:
    formats = {".png": b"\x89PNG", ".svg": b"<?xml", ".pdf": b"%PDF", ".eps": b"%!PS-Adobe"}
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
    assert "the format follows the suffix (.png, .svg, .pdf, .eps, .jpg, .jpeg)" in text


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


def test_export_names_what_is_there_as_plot_does(store: Path, tmp_path: Path, run_cli: Any):
    out = tmp_path / "x.csv"
    result = run_cli("export", store, "tiny", "--format", "csv", "-o", out)
    assert result.exit_code == 2
    assert "must be RUN/STEP" in result.stderr and "tiny/line" in result.stderr
    result = run_cli("export", store, "tiny/lin", "--format", "csv", "-o", out)
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("steps of run 'tiny' with results: line")
    assert not out.exists()


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
    from lossatlas.engine import runner

    monkeypatch.setattr(runner, "check_earlier_steps", lambda *args: None)
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


# ------------------------------------------------------------ usage errors


def _one_error_line(result: Any) -> str:
    """The single ``lossatlas: error: ...`` line of a failed command (exit 2)."""
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.startswith("lossatlas: error: ") and "\n" not in line, result.stderr
    assert "Usage:" not in line and "Try '" not in line
    return line.removeprefix("lossatlas: error: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--dtype", "float16"),
            "--dtype: 'float16' is not one of 'float32', 'float64' (see lossatlas run --help)",
        ),
        (("--seed", "abc"), "--seed: 'abc' is not a valid integer (see lossatlas run --help)"),
        (("--seed", "-1"), "--seed: must be non-negative, got -1 (see lossatlas run --help)"),
        (
            ("--executor", "dask", "--workers", "0"),
            "--workers: must be at least 1, got 0 (see lossatlas run --help)",
        ),
        (("--bogus",), "no such option '--bogus' (see lossatlas run --help)"),
        (("--sed", "1"), "no such option '--sed' (did you mean '--seed'?)"),
        (("--seed",), "option '--seed' requires an argument (see lossatlas run --help)"),
        (("--workers", "2"), "--address and --workers need --executor dask"),
    ],
    ids=[
        "choice",
        "not-int",
        "negative-seed",
        "zero-workers",
        "unknown",
        "close",
        "no-value",
        "no-dask",
    ],
)
def test_run_option_errors_are_one_line_before_the_store(
    tmp_path: Path,
    tiny_config: Any,
    write_config: Any,
    run_cli: Any,
    args: tuple[str, ...],
    message: str,
) -> None:
    path = tmp_path / "s.zarr"
    result = run_cli("run", write_config(tiny_config()), "--store", path, *args)
    assert message in _one_error_line(result)
    assert not path.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run",), "missing argument 'CONFIG.toml' (see lossatlas run --help)"),
        (("inspect",), "missing argument 'STORE' (see lossatlas inspect --help)"),
        (("plot", "s.zarr", "x/y", "-o"), "option '-o' requires an argument (see lossatlas plot"),
        (("report", "s.zarr", "--dpi", "x"), "--dpi: 'x' is not a valid integer"),
        (
            ("bogus",),
            "no such command 'bogus'; commands: check, export, inspect, plot, plugins, report, rm, "
            "run, verify",
        ),
        (("runn", "x.toml"), "no such command 'runn' (did you mean 'run'?)"),
        (("--bogus",), "no such option '--bogus' (see lossatlas --help)"),
    ],
)
def test_usage_errors_of_every_command_are_one_line(
    run_cli: Any, args: tuple[str, ...], message: str
) -> None:
    assert message in _one_error_line(run_cli(*args))


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_option_names_the_command_help(run_cli: Any, command: str) -> None:
    line = _one_error_line(run_cli(command, "--nope"))
    assert line == f"no such option '--nope' (see lossatlas {command} --help)"


def test_quiet_run_prints_one_line(
    tmp_path: Path, tiny_config: Any, write_config: Any, run_cli: Any
) -> None:
    path = tmp_path / "s.zarr"
    result = run_cli("run", write_config(tiny_config()), "--store", path, "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"Results of run 'tiny' are in {path}"]
    assert result.stderr == ""
    loud = run_cli("run", write_config(tiny_config()), "--store", path)
    assert "Open them with:" in loud.stdout and "lossatlas report" in loud.stdout


# ------------------------------------------------- config errors name the file


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": {"plugin": "mlp", "hiden": [16]}}, "[model] 'mlp': unknown option 'hiden'"),
        ({"model": {"plugin": "mlpp"}}, "unknown model 'mlpp' (did you mean 'mlp'?)"),
        ({"step": {"at": "checkpoint:nope.pt"}}, "checkpoint 'nope.pt' does not exist"),
        ({"step": {"probe": "random-lin"}}, "unknown probe 'random-lin'"),
        ({"sed": 1}, "unknown key 'sed' (did you mean 'seed'?)"),
        ({"seed": -1}, "key 'seed' must be non-negative, got -1"),
    ],
    ids=["option", "model", "checkpoint", "probe", "key", "seed"],
)
def test_every_config_error_starts_with_the_file(
    tmp_path: Path,
    tiny_config: Any,
    write_config: Any,
    run_cli: Any,
    monkeypatch: Any,
    change: dict[str, Any],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    write_config(tiny_config(**change), name="bad.toml")
    line = _one_error_line(run_cli("run", "bad.toml", "--store", "s.zarr"))
    assert line.startswith(f"bad.toml: {message}") or line.startswith("bad.toml: step 'line': ")
    assert message in line and line.count("bad.toml") == 1


def test_a_missing_config_file_is_named_once(tmp_path: Path, run_cli: Any) -> None:
    missing = tmp_path / "missing.toml"
    assert _one_error_line(run_cli("run", missing)) == f"config file '{missing}' does not exist"


def test_a_store_error_of_run_does_not_blame_the_config(
    store: Path, tiny_config: Any, write_config: Any, run_cli: Any
) -> None:
    config = write_config(tiny_config())
    line = _one_error_line(run_cli("run", config, "--store", store, "--no-resume"))
    assert line == f"run 'tiny' exists in '{store}' and --no-resume was given"


# ---------------------------------------------------- reading what is no store


@pytest.mark.parametrize("command", ["inspect", "plot", "report"])
@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("empty", "is not a lossatlas store (no Zarr metadata; the folder is empty)"),
        ("files", "is not a lossatlas store (no Zarr metadata)"),
        ("file", "is a file, not a lossatlas store"),
        ("zarr", "is a Zarr store that lossatlas did not make"),
    ],
)
def test_reading_commands_refuse_what_is_not_a_store(
    tmp_path: Path, run_cli: Any, command: str, make: str, message: str
) -> None:
    import zarr

    path = tmp_path / "notstore"
    if make == "file":
        path.write_text("x")
    else:
        path.mkdir()
    if make == "files":
        (path / "notes.txt").write_text("x")
    if make == "zarr":
        zarr.open_group(str(path), mode="w")
    extra = {"plot": ("a/b", "-o", tmp_path / "x.png"), "report": ("-o", tmp_path / "r.html")}
    line = _one_error_line(run_cli(command, path, *extra.get(command, ())))
    assert line == f"'{path}' {message}; give the path of a store written by lossatlas run"


def test_run_still_writes_into_an_empty_folder(
    tmp_path: Path, tiny_config: Any, write_config: Any, run_cli: Any
) -> None:
    path = tmp_path / "empty"
    path.mkdir()
    result = run_cli("run", write_config(tiny_config()), "--store", path, "-q")
    assert result.exit_code == 0, result.output
    assert run_cli("inspect", path).exit_code == 0


# ------------------------------------------------------------------ plugins


def test_an_unknown_plugin_to_disable_is_a_warning(run_cli: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("LOSSATLAS_DISABLE_PLUGINS", "bogus")
    result = run_cli("plugins")
    assert result.exit_code == 0
    assert result.stderr.startswith(
        "lossatlas: warning: LOSSATLAS_DISABLE_PLUGINS names no plugin 'bogus'; the plugins are: "
    )
    assert result.stderr.count("\n") == 1 and "probes" in result.stderr
    assert "random-line" in result.stdout  # nothing is disabled
    json.loads(run_cli("plugins", "--json").stdout)  # the warning stays off stdout


def _bad_signature() -> Any:
    """A plugin that pluggy refuses: its hookimpl takes an argument the hookspec lacks."""
    import types

    from lossatlas.engine import hookimpl

    mod = types.ModuleType("bad_signature")

    @hookimpl
    def lossatlas_register_probes(registry):  # type: ignore[no-untyped-def]
        return []

    mod.lossatlas_register_probes = lossatlas_register_probes  # type: ignore[attr-defined]
    return mod


@pytest.fixture
def with_badsig(monkeypatch: Any) -> None:
    from lossatlas.engine import cli, make_registry

    plugin = _bad_signature()
    monkeypatch.setattr(cli, "make_registry", lambda: make_registry(plugins=[("badsig", plugin)]))


@pytest.mark.usefixtures("with_badsig")
def test_a_plugin_pluggy_refuses_is_one_line_in_plugins(run_cli: Any) -> None:
    result = run_cli("plugins")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("badsig "))
    assert lines[at].endswith("[FAILED]")
    assert lines[at + 1].startswith("    error: PluginValidationError: ")
    assert "lossatlas_register_probes(registry)" in lines[at + 1]
    assert "can not be found in the hookspec" in lines[at + 1]
    assert at + 2 == len(lines) or not lines[at + 2].startswith("    ")


@pytest.mark.usefixtures("with_badsig")
def test_an_unknown_model_names_failed_plugins_briefly(
    tmp_path: Path, tiny_config: Any, write_config: Any, run_cli: Any
) -> None:
    config = write_config(tiny_config(model={"plugin": "mlpp"}))
    line = _one_error_line(run_cli("run", config, "--store", tmp_path / "s.zarr"))
    assert line.startswith(f"{config}: unknown model 'mlpp' (did you mean 'mlp'?)")
    assert "plugins that failed to load (they may provide it): 'badsig'" in line
    assert "PluginValidationError" not in line and "hookimpl" not in line


# ------------------------------------------------------------ partial plots


def _titles(monkeypatch: Any) -> list[str]:
    from lossatlas.engine import plotting

    titles: list[str] = []
    original = plotting.title_figure

    def record(fig: Any, title: str) -> None:
        titles.append(title)
        original(fig, title)

    monkeypatch.setattr(plotting, "title_figure", record)
    return titles


def test_plot_of_a_partial_step_warns_and_says_so_in_the_title(
    store: Path, tmp_path: Path, run_cli: Any, monkeypatch: Any
) -> None:
    import zarr

    group = zarr.open_group(str(store), path="tiny/line", mode="r+")
    group["cell_status"][1:] = 0  # 1 of the 4 directions done
    group.attrs["status"] = "interrupted"
    titles = _titles(monkeypatch)
    result = run_cli("plot", store, "tiny/line", "-o", tmp_path / "x.png")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "lossatlas: warning: step 'line' of run 'tiny' is partial (1/4 cells done); "
        "the plot shows what exists\n"
    )
    assert titles == ["tiny/line (partial: 1/4 cells)"]
    assert (tmp_path / "x.png").exists()


def test_plot_of_a_complete_step_does_not_warn(
    store: Path, tmp_path: Path, run_cli: Any, monkeypatch: Any
) -> None:
    titles = _titles(monkeypatch)
    result = run_cli("plot", store, "tiny/line", "-o", tmp_path / "x.png")
    assert result.exit_code == 0 and result.stderr == ""
    assert titles == ["tiny/line"]


def test_executor_options_on_the_command_line(
    tmp_path: Path, tiny_config: Any, write_config: Any, run_cli: Any
) -> None:
    """-E KEY=VALUE reaches any executor's options (here: one the local executor lacks)."""
    config = write_config(tiny_config())
    result = run_cli("run", config, "--store", tmp_path / "s.zarr", "-E", "block=2")
    assert result.exit_code == 2
    assert "executor 'local': unknown option 'block'" in result.stderr
    assert not (tmp_path / "s.zarr").exists()
