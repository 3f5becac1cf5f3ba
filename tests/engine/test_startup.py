"""Start-up: what ``import lossatlas`` and the light commands import, the lazy public names
of lossatlas.engine, the ``.atlas`` accessors whatever the import order, and the console
script's exit codes. Each check runs in a fresh interpreter (imports are per process)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import lossatlas.engine

ROOT = Path(__file__).parents[2]
HEAVY = ("torch", "xarray", "zarr", "pandas", "matplotlib", "scipy", "lossatlas.plugins")


def _fresh(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def _imported_by(args: list[str]) -> tuple[int, list[str], str]:
    """Run ``lossatlas ARGS`` in a fresh process; its exit code, which of HEAVY it
    imported, and its stderr."""
    code = f"""
import json, sys
sys.argv = ["lossatlas", *{args!r}]
from lossatlas.engine.cli import cli
try:
    cli(prog_name="lossatlas")
    rc = 0
except SystemExit as exc:
    rc = exc.code or 0
print(json.dumps([rc, [m for m in {HEAVY!r} if m in sys.modules]]), file=sys.stderr)
"""
    proc = _fresh(code)
    rc, heavy = json.loads(proc.stderr.strip().splitlines()[-1])
    return rc, heavy, proc.stderr


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lossatlas import run

    path = tmp_path_factory.mktemp("startup") / "s.zarr"
    config = {
        "name": "r",
        "model": {"plugin": "mlp", "hidden": [4]},
        "dataset": {"plugin": "digits"},
        "steps": [{"probe": "random-line", "directions": 1, "points": 3}],
    }
    run(config, store=path, progress=False)
    return path


def test_import_lossatlas_imports_no_torch_and_no_xarray() -> None:
    proc = _fresh(
        "import sys, lossatlas, lossatlas.engine\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_help_imports_nothing_heavy() -> None:
    rc, heavy, err = _imported_by(["--help"])
    assert rc == 0, err
    assert heavy == []
    for command in ("run", "plot", "export", "report"):
        rc, heavy, err = _imported_by([command, "--help"])
        assert (rc, heavy) == (0, []), (command, err)


def test_store_commands_read_with_zarr_alone(small_store: Path) -> None:
    for args in (
        ["inspect", str(small_store)],
        ["inspect", str(small_store), "--json"],
        ["verify", str(small_store)],
        ["rm", str(small_store), "r/nosuch", "--yes"],
    ):
        rc, heavy, err = _imported_by(args)
        assert rc == (2 if "rm" in args else 0), err
        assert set(heavy) <= {"zarr"}, (args, heavy)


def test_every_public_name_resolves_from_its_declared_module() -> None:
    """``_MODULES`` (what the lazy loader imports) and the ``TYPE_CHECKING`` imports
    (what type checkers and the docs read) name the same things, and ``__all__`` them."""
    tree = ast.parse((ROOT / "engine" / "__init__.py").read_text())
    declared: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.level == 1
                for alias in imp.names:
                    declared[alias.name] = imp.module or alias.name
    lazy = {**lossatlas.engine._EXPORTS, **{m: m for m in lossatlas.engine._SUBMODULES}}
    assert declared == lazy
    assert sorted(lossatlas.engine.__all__) == sorted(lazy)
    for name in lossatlas.engine.__all__:
        value = getattr(lossatlas.engine, name)
        assert value is not None
        if name not in lossatlas.engine._SUBMODULES:
            module = sys.modules[f"lossatlas.engine.{lazy[name]}"]
            assert getattr(module, name) is value
    with pytest.raises(AttributeError, match="no attribute 'Nonesuch'"):
        lossatlas.engine.Nonesuch  # noqa: B018


@pytest.mark.parametrize(
    "code",
    [
        "import lossatlas\nimport xarray as xr",  # lossatlas first: registered on import
        "import xarray as xr\nimport lossatlas",  # xarray first: registered at once
        "import xarray as xr\nimport lossatlas.engine",
        "import lossatlas.engine.errors\nimport xarray.core.dataset\nimport xarray as xr",
    ],
)
def test_atlas_accessors_whatever_the_import_order(code: str) -> None:
    proc = _fresh(
        code + "\nimport sys\n"
        "ds = xr.Dataset()\n"
        "print(type(ds.atlas).__name__, type(xr.DataTree().atlas).__name__, "
        "'torch' in sys.modules)"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["AtlasAccessor", "AtlasTreeAccessor", "False"]


def test_console_script_exit_codes(tmp_path: Path) -> None:
    """The console script ends through ``os._exit``: its codes and output are those of
    ``sys.exit``, with every line flushed (stdout to a file, errors on stderr). The
    installed script where it stands beside this Python, else ``python -m
    lossatlas.engine.cli``, which calls the same ``main``."""
    script = Path(sys.executable).with_name("lossatlas")
    exe = [str(script)] if script.exists() else [sys.executable, "-m", "lossatlas.engine.cli"]

    def lossatlas(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        kw.setdefault("capture_output", True)
        return subprocess.run([*exe, *args], text=True, timeout=300, **kw)  # type: ignore[call-overload]

    ok = lossatlas("--help")
    assert ok.returncode == 0 and "Usage: lossatlas" in ok.stdout
    missing = lossatlas("inspect", str(tmp_path / "none.zarr"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        f"lossatlas: error: store '{tmp_path / 'none.zarr'}' does not exist"
    )
    unknown = lossatlas("nosuch")
    assert unknown.returncode == 2 and "no such command 'nosuch'" in unknown.stderr
    out = tmp_path / "plugins.txt"
    with out.open("w") as f:
        listed = lossatlas("plugins", capture_output=False, stdout=f, stderr=subprocess.PIPE)
    assert listed.returncode == 0, listed.stderr
    assert "random-line" in out.read_text()
