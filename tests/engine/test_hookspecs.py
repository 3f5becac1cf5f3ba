"""Every hook is typed, documented in docs/plugins.md with its exact signature, tested,
and implemented by a built-in plugin."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from lossatlas.engine import hookspecs, make_registry

ROOT = Path(__file__).parents[2]
SPECS = [
    (name, f)
    for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith("lossatlas_")
]


def signature_text(f) -> str:
    sig = inspect.signature(f)
    ret = sig.return_annotation
    params = ", ".join(str(p) for p in sig.parameters.values())
    return f"{f.__name__}({params}) -> {ret}"


def test_there_are_hooks_for_every_kind() -> None:
    names = {n for n, _ in SPECS}
    assert names == {
        "lossatlas_register_models",
        "lossatlas_register_datasets",
        "lossatlas_register_losses",
        "lossatlas_register_subspaces",
        "lossatlas_register_probes",
        "lossatlas_register_executors",
    }


@pytest.mark.parametrize(("name", "spec"), SPECS, ids=[n for n, _ in SPECS])
def test_hook_is_typed_and_has_a_docstring(name: str, spec) -> None:
    assert inspect.signature(spec).return_annotation is not inspect.Signature.empty
    doc = inspect.getdoc(spec) or ""
    assert "Return" in doc and len(doc) > 80


@pytest.mark.parametrize(("name", "spec"), SPECS, ids=[n for n, _ in SPECS])
def test_hook_is_documented_with_its_signature(name: str, spec) -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### `{signature_text(spec)}`" in docs


@pytest.mark.parametrize(("name", "spec"), SPECS, ids=[n for n, _ in SPECS])
def test_hook_is_implemented_by_a_builtin(name: str, spec) -> None:
    reg = make_registry()
    impls = getattr(reg.pm.hook, name).get_hookimpls()
    assert any(i.plugin_name.startswith("lossatlas:") for i in impls)
    answers = [a for a in getattr(reg.pm.hook, name)() if a]
    assert answers, f"no built-in registers anything through {name}"
