"""Errors carry structured context (what a caller acts on instead of message text), kept
through pickling (an error raised on a Dask worker)."""

from __future__ import annotations

import pickle

import pytest

from lossatlas.engine import ConfigError, PluginError, make_registry, parse_options
from lossatlas.engine.errors import MissingStepError


def test_context_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(MissingStepError("left out", step="b", needed="a")))
    assert isinstance(err, MissingStepError) and str(err) == "left out"
    assert err.context == {"step": "b", "needed": "a"}


def test_options_and_registry_errors_name_what_failed() -> None:
    reg = make_registry()
    with pytest.raises(PluginError) as unknown:
        reg.get("probe", "random-lin")
    assert unknown.value.context == {"kind": "probe", "name": "random-lin"}
    options = reg.get("probe", "random-line").Options
    with pytest.raises(ConfigError) as bad:
        parse_options(options, {"points": 4}, "step 'line'")
    assert bad.value.context == {"component": "step 'line'", "option": "points"}
    with pytest.raises(ConfigError) as extra:
        parse_options(options, {"pointz": 5}, "step 'line'")
    assert extra.value.context["option"] == "pointz"
