"""JSON Schemas: each component's options (``lossatlas plugins NAME --schema``) and a
whole config (``lossatlas plugins --schema``), which every example config satisfies and
which refuses what parse_options refuses."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from lossatlas.engine import make_registry, option, options_schema
from lossatlas.engine.schema import config_schema

jsonschema = pytest.importorskip("jsonschema")

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.toml"))


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = config_schema(make_registry())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_config_satisfies_the_schema(validator: Any, path: Path) -> None:
    errors = list(validator.iter_errors(tomllib.loads(path.read_text())))
    assert not errors, [e.message for e in errors]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d["steps"][0].update(points=4.5), "is not of type 'integer'"),
        (lambda d: d["steps"][0].update(pointz=5), "Additional properties"),
        (lambda d: d["model"].update(plugin="mlpp"), "is not one of"),
        (lambda d: d.update(dtype="float16"), "is not one of"),
        (
            lambda d: d["steps"].__setitem__(
                0, {"name": "hd", "probe": "hessian-directions", "points": 4}
            ),
            "should not be valid under {'multipleOf': 2}",
        ),
    ],
    ids=["type", "unknown-option", "unknown-plugin", "dtype", "odd"],
)
def test_the_schema_refuses_what_the_engine_refuses(
    validator: Any, tiny_config: Any, change: Any, words: str
) -> None:
    data = tiny_config()
    assert not list(validator.iter_errors(data))
    change(data)
    messages = " | ".join(e.message for e in validator.iter_errors(data)) + " | ".join(
        sub.message for e in validator.iter_errors(data) for sub in e.context or []
    )
    assert words in messages


def test_constraints_are_in_the_schema_and_the_help() -> None:
    from dataclasses import dataclass

    @dataclass
    class Opts:
        points: int = option(5, doc="grid points", ge=3, odd=True)
        lr: float = option(0.1, doc="step", gt=0)
        maps: list[str] = option(["a"], doc="maps", choices=("a", "b"), min_items=1)

    s = options_schema(Opts)["properties"]
    assert s["points"] == {
        "type": "integer",
        "minimum": 3,
        "not": {"multipleOf": 2},
        "description": "grid points (odd and at least 3)",
        "default": 5,
    }
    assert s["lr"]["exclusiveMinimum"] == 0
    assert (
        s["maps"]["items"] == {"type": "string", "enum": ["a", "b"]} and s["maps"]["minItems"] == 1
    )


def test_cli_schema_of_one_component_and_of_a_config(run_cli: Any) -> None:
    one = json.loads(run_cli("plugins", "random-line", "--schema").output)
    assert one["title"] == "probe 'random-line'" and one["additionalProperties"] is False
    assert one["properties"]["at"]["type"] == "string"
    whole = json.loads(run_cli("plugins", "--schema").output)
    assert whole["$schema"].endswith("2020-12/schema")
    assert "random-line" in whole["properties"]["steps"]["items"]["properties"]["probe"]["enum"]
