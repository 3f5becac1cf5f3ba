"""Shared fixtures: a fresh plugin registry, tiny configs, and two ways to run the CLI.

- ``registry``: a new :class:`~lossatlas.engine.Registry` from the entry points.
- ``tiny_config(**top)``: a small pipeline as a dict (digits with 300 samples, an MLP with
  one hidden layer of 16, one random-line step); keyword arguments replace top-level
  keys, ``step={...}`` updates the first step. ``to_toml(data)`` writes it as TOML.
- ``toml(data)``: the TOML text of ``data``.
- ``write_config(data, name="run.toml")``: the TOML file of ``data`` in ``tmp_path``.
- ``run_cli(*args)``: ``lossatlas ARGS`` in this process (click's CliRunner).
- ``run_cli_subprocess(*args, timeout=120)``: ``python -m lossatlas.engine.cli ARGS``
  in a child process (for tests that need a clean interpreter);
  ``lossatlas_command(*args)`` is its command line, for tests that kill it.
- ``device``: a test using it runs once per torch device: CPU always, CUDA where torch
  sees one (skipped with a reason where not).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner, Result

from lossatlas.engine import Registry, make_registry

#: lossatlas's own pytest fixtures (lossatlas_run, lossatlas_registry, lossatlas_context),
#: as a plugin author's conftest.py loads them.
pytest_plugins = ["lossatlas.testing"]

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "dtype": "float64",
    "model": {"plugin": "mlp", "hidden": [16]},
    "dataset": {"plugin": "digits", "limit": 300},
    "steps": [{"name": "line", "probe": "random-line", "points": 9, "directions": 4}],
}

#: Device parameters: CPU always; CUDA where torch sees one, else skipped with a reason.
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason="no CUDA device on this machine"
        ),
    ),
]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not (isinstance(v, float) and v != v) else "nan"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(data: dict[str, Any]) -> str:
    """A TOML document of ``data``: scalars first, then tables, then ``[[steps]]``."""
    lines = [
        f"{k} = {_toml_value(v)}"
        for k, v in data.items()
        if not isinstance(v, dict) and k != "steps"
    ]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    for step in data.get("steps", []):
        lines += ["", "[[steps]]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in step.items()]
    return "\n".join(lines) + "\n"


def make_tiny(step: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """The tiny pipeline with top-level keys replaced and the first step updated."""
    data = copy.deepcopy(TINY)
    data.update(copy.deepcopy(top))
    if step:
        data["steps"][0].update(step)
    return data


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """Each available torch device in turn (CUDA skipped with a reason where absent)."""
    return str(request.param)


@pytest.fixture
def registry() -> Registry:
    """A fresh registry of every installed plugin."""
    return make_registry()


@pytest.fixture(scope="session")
def toml() -> Callable[[dict[str, Any]], str]:
    """The TOML writer used by ``write_config`` (for configs built in a test)."""
    return to_toml


@pytest.fixture
def lossatlas_command() -> Callable[..., list[str]]:
    """``lossatlas ARGS`` as a child-process command line (for Popen and kill)."""
    return cli_command


@pytest.fixture
def tiny_config() -> Callable[..., dict[str, Any]]:
    return make_tiny


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    def write(data: dict[str, Any] | str, name: str = "run.toml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else to_toml(data), encoding="utf-8")
        return path

    return write


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Invoke ``lossatlas ARGS`` in-process; the result has exit_code, stdout, stderr."""
    from lossatlas.engine.cli import cli

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


def cli_command(*args: Any) -> list[str]:
    """The command line of ``lossatlas ARGS`` in a child interpreter."""
    return [sys.executable, "-m", "lossatlas.engine.cli", *(str(a) for a in args)]


@pytest.fixture
def run_cli_subprocess() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``lossatlas ARGS`` in a child process (quiet, one torch thread)."""

    def invoke(*args: Any, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(
            cli_command(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )

    return invoke
