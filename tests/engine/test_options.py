"""Options back as a config's table (``to_table``): what ``lossatlas check`` prints and a
step's ``resolved_options`` records."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lossatlas.engine.options import PointRef, parse_options, to_table


@dataclass
class Inner:
    start: PointRef = field(default=PointRef("init"), metadata={"key": "from"})
    weights: tuple[float, ...] = (0.5, 0.5)


@dataclass
class Outer:
    points: list[PointRef] = field(default_factory=lambda: [PointRef("init"), PointRef("a")])
    inner: Inner = field(default_factory=Inner)
    table: dict[int, Inner] = field(default_factory=lambda: {1: Inner(PointRef("b"))})
    lr: float = 0.1


@dataclass
class Preset:
    preset: str = "big"
    size: int | None = None

    def resolved(self) -> dict[str, Any]:
        return {"size": self.size if self.size is not None else 100}


def test_the_keys_a_config_writes_all_the_way_down() -> None:
    table = to_table(Outer())
    assert table == {
        "points": ["init", "a"],
        "inner": {"from": "init", "weights": [0.5, 0.5]},
        "table": {"1": {"from": "b", "weights": [0.5, 0.5]}},
        "lr": 0.1,
    }
    assert type(table["points"][0]) is str  # plain data, not PointRef
    assert json.loads(json.dumps(table)) == table


def test_a_resolved_hook_gives_the_values_as_used() -> None:
    assert to_table(Preset()) == {"size": 100}
    assert to_table(Preset(size=3)) == {"size": 3}
    assert to_table(Outer(inner=Inner())) == to_table(Outer())


def test_what_is_not_options_is_an_empty_table() -> None:
    assert to_table(None) == {}
    assert to_table(Outer) == {}  # the class, not parsed options


def test_parsed_options_round_trip_through_their_table() -> None:
    opts = parse_options(Inner, {"from": "b", "weights": [0.25, 0.75]}, "t")
    table = to_table(opts)
    assert table == {"from": "b", "weights": [0.25, 0.75]}
    assert parse_options(Inner, table, "t") == opts
